//! Bad input gets a clear error and no crash: every file under `fuzz/regressions/` (hostile
//! seeds and whatever the fuzzers once found) is read by the parser it was made for, and
//! must come back as a suite or as errors naming the file and a sensible position. The
//! fuzzers themselves run with `scripts/fuzz`; this keeps their findings fixed in CI.

use std::path::{Path, PathBuf};

use phalanx::config::{ConfigError, ProjectConfig, load_suites, parse_project, parse_suite};
use phalanx::findings::{junit, sarif};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

fn check_error(error: &ConfigError, file: &str, text: &str) {
    let shown = error.to_string();
    assert!(shown.starts_with(file), "{shown}");
    assert!(!error.message.trim().is_empty(), "{shown}");
    if let Some(at) = error.location {
        let lines = text.lines().count() as u32 + 1;
        assert!(at.line >= 1 && at.line <= lines, "{shown}");
    }
}

#[test]
fn hostile_suite_files_give_positioned_errors() {
    for input in inputs("suite_parser") {
        let data = std::fs::read(&input).unwrap();
        let text = String::from_utf8_lossy(&data);
        let path = Path::new("suites/input.toml");
        match parse_suite(path, &text, &ProjectConfig::default()) {
            Ok(suite) => assert!(!suite.name.is_empty()),
            Err(errors) => {
                assert!(!errors.is_empty(), "{}", input.display());
                for e in &errors {
                    check_error(e, "suites/input.toml", &text);
                }
            }
        }
    }
}

#[test]
fn hostile_project_files_give_positioned_errors() {
    for input in inputs("project_parser") {
        let data = std::fs::read(&input).unwrap();
        let text = String::from_utf8_lossy(&data);
        if let Err(e) = parse_project(Path::new("phalanx.toml"), &text) {
            check_error(&e, "phalanx.toml", &text);
        }
    }
}

#[test]
fn hostile_junit_from_suites_is_read_or_refused_by_name() {
    for input in inputs("junit_reader") {
        let data = std::fs::read(&input).unwrap();
        let started = std::time::Instant::now();
        match junit::read_cases(data.as_slice(), Path::new("results/input.xml")) {
            Ok(cases) => {
                let counts = junit::count(&cases);
                assert_eq!(counts.tests, cases.len());
                let mut suite = quick_junit::TestSuite::new("s");
                suite.add_test_cases(cases);
                let mut report = quick_junit::Report::new("phalanx");
                report.add_test_suite(suite);
                let xml = report.to_string().unwrap();
                // Entities are not expanded into a billion laughs.
                assert!(
                    xml.len() < 1 << 20,
                    "{}: {} bytes",
                    input.display(),
                    xml.len()
                );
            }
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.contains("results/input.xml"), "{shown}");
            }
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "{} is slow",
            input.display()
        );
    }
}

#[test]
fn hostile_sarif_from_suites_is_read_or_refused_by_name() {
    for input in inputs("sarif_reader") {
        let data = std::fs::read(&input).unwrap();
        let text = String::from_utf8_lossy(&data);
        match sarif::read_str("s", &text) {
            Ok(found) => {
                for finding in &found.findings {
                    let _ = found.rule_of(finding);
                }
            }
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.starts_with("<memory>"), "{shown}");
            }
        }
    }
}

/// Read from disk, a file that is not UTF-8 is one clear error for that file, and the
/// other suites still load.
#[test]
fn a_suite_file_that_is_not_utf8_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), b"image = \"\xff\xfe\"\n").unwrap();
    std::fs::write(dir.path().join("good.toml"), "image = \"x\"\n").unwrap();
    let loaded = load_suites(dir.path(), &ProjectConfig::default()).unwrap();
    assert_eq!(loaded.suites.len(), 1);
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    let shown = loaded.errors[0].to_string();
    assert!(
        shown.contains("bad.toml") && shown.contains("UTF-8"),
        "{shown}"
    );
}
