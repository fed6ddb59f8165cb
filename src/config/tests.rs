//! Loader tests: real files in temporary directories, errors checked for line and key.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::*;

const FULL: &str = r#"# suites/bandit.toml
name        = "bandit"
description = "Python SAST with Bandit"
tags        = ["sast", "python"]
image       = "phalanx/bandit:1"
build       = "../docker/bandit"
command     = ["bandit", "-r", "/target", "-f", "sarif", "-o", "/results/bandit.sarif"]
env         = { PYTHONDONTWRITEBYTECODE = "1" }
timeout     = "5m"
retries     = 2
weight      = 3

[results]
format     = "sarif"
path       = "/results/bandit.sarif"
ok_exit_codes = [0, 1]
fail_on    = "medium"

[policy]
network   = "target"
user      = "1000:1000"
read_only = false
cap_add   = ["cap_net_raw", "NET_BIND_SERVICE", "NET_RAW"]
memory    = "1.5g"
cpus      = 0.5
pids      = 128
"#;

/// A project folder with a `suites/` directory holding the given files.
struct Project {
    dir: TempDir,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Project {
        let dir = TempDir::new().unwrap();
        fs::create_dir(dir.path().join("suites")).unwrap();
        let project = Project { dir };
        for (name, text) in files {
            project.write(&format!("suites/{name}"), text);
        }
        project
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(relative);
        fs::write(&path, text).unwrap();
        path
    }

    fn suites_dir(&self) -> PathBuf {
        self.dir.path().join("suites")
    }

    fn load(&self) -> LoadedSuites {
        self.load_with(&ProjectConfig::default())
    }

    fn load_with(&self, project: &ProjectConfig) -> LoadedSuites {
        load_suites(&self.suites_dir(), project).unwrap()
    }
}

/// The errors from loading a single suite file `s.toml` with the given text.
fn errors_of(text: &str) -> Vec<ConfigError> {
    let loaded = Project::new(&[("s.toml", text)]).load();
    assert!(
        loaded.suites.is_empty(),
        "expected the suite to be rejected: {:?}",
        loaded.suites
    );
    loaded.errors
}

/// Asserts that `text` fails with exactly one error, at `line`, about `key`, saying `says`.
#[track_caller]
fn assert_one_error(text: &str, line: u32, key: &str, says: &str) -> ConfigError {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = errors.into_iter().next().unwrap();
    let shown = e.to_string();
    assert_eq!(e.location.map(|l| l.line), Some(line), "{shown}");
    assert_eq!(e.key.as_deref(), Some(key), "{shown}");
    // Either the dotted key, or its last part and the table it is in.
    let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let names_leaf = shown.contains(&format!("`{leaf}`")) && shown.contains(&format!("[{table}]"));
    assert!(
        shown.contains(&format!("`{key}`")) || names_leaf,
        "message must name the key: {shown}"
    );
    assert!(shown.contains(says), "expected {says:?} in: {shown}");
    assert!(shown.contains(&format!("s.toml:{line}:")), "{shown}");
    e
}

fn only_suite(loaded: LoadedSuites) -> Suite {
    assert!(loaded.errors.is_empty(), "{:#?}", loaded.errors);
    assert_eq!(loaded.suites.len(), 1);
    loaded.suites.into_iter().next().unwrap()
}

#[test]
fn full_suite_file() {
    let p = Project::new(&[("bandit.toml", FULL)]);
    let s = only_suite(p.load());
    assert_eq!(s.name, "bandit");
    assert_eq!(s.description, "Python SAST with Bandit");
    assert_eq!(s.tags, ["sast", "python"]);
    assert_eq!(s.image, "phalanx/bandit:1");
    assert_eq!(s.build, Some(p.suites_dir().join("../docker/bandit")));
    assert_eq!(s.command.as_ref().unwrap()[0], "bandit");
    assert_eq!(s.command.as_ref().unwrap().len(), 7);
    assert_eq!(
        s.env.get("PYTHONDONTWRITEBYTECODE").map(String::as_str),
        Some("1")
    );
    assert_eq!(s.timeout, Duration::from_secs(300));
    assert_eq!((s.retries, s.weight), (2, 3));
    let r = &s.results;
    assert_eq!(r.format, ResultFormat::Sarif);
    assert_eq!(r.path, "/results/bandit.sarif");
    assert_eq!(r.ok_exit_codes, [0, 1]);
    assert_eq!(r.fail_on, Severity::Medium);
    let expected = Policy {
        network: NetworkMode::Target,
        user: "1000:1000".into(),
        read_only: false,
        cap_add: vec!["NET_RAW".into(), "NET_BIND_SERVICE".into()],
        memory: 3 << 29,
        cpus: 0.5,
        pids: 128,
    };
    assert_eq!(s.policy, expected);
    assert_eq!(s.source, p.suites_dir().join("bandit.toml"));
}

#[test]
fn defaults_come_from_the_file_stem_and_the_project() {
    let p = Project::new(&[("trivy-fs.toml", "image = \"phalanx/trivy:1\"\n")]);
    let project = ProjectConfig {
        timeout: Duration::from_secs(42),
        fail_on: Severity::Critical,
        ..ProjectConfig::default()
    };
    let s = only_suite(p.load_with(&project));
    assert_eq!(s.name, "trivy-fs");
    assert_eq!(s.description, "");
    assert!(s.tags.is_empty() && s.env.is_empty());
    assert_eq!((s.build, s.command), (None, None));
    assert_eq!(s.timeout, Duration::from_secs(42));
    assert_eq!((s.retries, s.weight), (0, 1));
    assert_eq!(s.results.format, ResultFormat::ExitCode);
    assert_eq!(s.results.path, "/results");
    assert_eq!(s.results.ok_exit_codes, [0]);
    assert_eq!(s.results.fail_on, Severity::Critical);
    assert_eq!(s.policy, Policy::default());
}

#[test]
fn the_documented_example_error() {
    let text = "name = \"bandit\"\nimage = \"x\"\n\n\n\n\ntimeout = \"5 minutes please\"\n";
    let p = Project::new(&[("bandit.toml", text)]);
    let errors = p.load().errors;
    assert_eq!(errors.len(), 1);
    let file = p.suites_dir().join("bandit.toml");
    assert_eq!(
        errors[0].to_string(),
        format!(
            "{}:7:11: key `timeout`: expected a duration such as \"90s\" or \"5m\", found \"5 minutes please\"",
            file.display()
        )
    );
    assert_eq!(errors[0].suite.as_deref(), Some("bandit"));
    assert_eq!(errors[0].kind, ConfigErrorKind::InvalidValue);
}

#[test]
fn unknown_key_names_the_table_the_choices_and_a_guess() {
    let e = assert_one_error(
        "name = \"x\"\nimage = \"y\"\nimgae = \"x\"\n",
        3,
        "imgae",
        "did you mean `image`?",
    );
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
    assert_eq!(e.location.unwrap().column, 1);
    assert!(e.message.starts_with("unknown key `imgae` in the suite table, expected one of: name, description, tags, image,"), "{e}");
    let e = assert_one_error(
        "image = \"x\"\n[policy]\nmemroy = \"1g\"\n",
        3,
        "policy.memroy",
        "did you mean `memory`?",
    );
    assert!(e.message.contains("in the [policy] table"), "{e}");
    assert_one_error(
        "image = \"x\"\n[results]\nformat = \"sarif\"\nfmt = 1\n",
        4,
        "results.fmt",
        "in the [results] table",
    );
    assert_one_error(
        "image = \"x\"\n[policy.extra]\na = 1\n",
        2,
        "policy.extra",
        "unknown key `extra`",
    );
}

#[test]
fn missing_image_is_reported_on_line_one() {
    let e = assert_one_error("name = \"x\"\n", 1, "image", "missing required key `image`");
    assert_eq!(e.kind, ConfigErrorKind::MissingKey);
}

#[test]
fn top_level_value_rules() {
    let img = "image = \"x\"\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "name = \"bad name\"\n",
            "name",
            "expected a name of letters",
        ),
        ("name = \"-x\"\n", "name", "starts with a letter or digit"),
        (
            &format!("name = \"{}\"\n", "a".repeat(65)),
            "name",
            "at most 64 characters",
        ),
        ("name = 5\n", "name", "found integer `5`"),
        (
            "description = [\"x\"]\n",
            "description",
            "expected a string",
        ),
        (
            "tags = \"sast\"\n",
            "tags",
            "expected an array, found string \"sast\"",
        ),
        ("tags = [\"ok\", \"not ok\"]\n", "tags", "expected a name"),
        ("build = \"\"\n", "build", "expected a non-empty path"),
        (
            "command = []\n",
            "command",
            "expected a non-empty array, found []",
        ),
        (
            "command = \"bandit -r\"\n",
            "command",
            "expected a non-empty array",
        ),
        (
            "command = [\"\", \"x\"]\n",
            "command",
            "the program to run as the first element",
        ),
        (
            "command = [\"a\", 1]\n",
            "command",
            "expected a string, found integer `1`",
        ),
        (
            "env = { A = 1 }\n",
            "env.A",
            "expected a string, or a table such as { from_env = \"CI_TOKEN\", secret = true }, found integer `1`",
        ),
        (
            "env = { A = { from_env = \"PHALANX_TEST_UNSET_7f3c\" } }\n",
            "env.A",
            "the host environment variable `PHALANX_TEST_UNSET_7f3c` (from_env) is not set",
        ),
        (
            "env = { A = { from_env = \"PATH\", secret = \"yes\" } }\n",
            "env.A",
            "expected a boolean",
        ),
        (
            "env = { A = { from = \"PATH\" } }\n",
            "env.A",
            "unknown field `from`",
        ),
        (
            "env = { A = { secret = true } }\n",
            "env.A",
            "missing field `from_env`",
        ),
        (
            "env = { A = { from_env = \"X=Y\" } }\n",
            "env.A",
            "to name a host environment variable",
        ),
        (
            "env = { A = [\"x\"] }\n",
            "env.A",
            "expected a string, or a table",
        ),
        ("env = { \"A=B\" = \"x\" }\n", "env.A=B", "without `=`"),
        ("timeout = \"0s\"\n", "timeout", "greater than zero"),
        (
            "timeout = 90\n",
            "timeout",
            "expected a duration such as \"90s\" or \"5m\", found integer `90`",
        ),
        (
            "retries = 11\n",
            "retries",
            "expected an integer from 0 to 10, found 11",
        ),
        (
            "retries = -1\n",
            "retries",
            "expected an integer from 0 to 10, found -1",
        ),
        (
            "retries = \"3\"\n",
            "retries",
            "expected an integer from 0 to 10, found string \"3\"",
        ),
        (
            "weight = 0\n",
            "weight",
            "expected an integer from 1 to 4294967295, found 0",
        ),
        ("weight = 1.5\n", "weight", "found floating point `1.5`"),
        ("results = 5\n", "results", "found integer `5`"),
    ];
    for (line, key, says) in cases {
        // The bad line is line 2, after the image.
        assert_one_error(&format!("{img}{line}"), 2, key, says);
    }
    assert_one_error(
        "image = \"\"\n",
        1,
        "image",
        "expected a non-empty string without spaces, found \"\"",
    );
}

#[test]
fn results_rules() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "format = \"xml\"",
            "results.format",
            "expected one of `sarif`, `junit`, `exit-code`, found \"xml\"",
        ),
        (
            "path = \"/tmp/out\"",
            "results.path",
            "/results or under /results/",
        ),
        ("path = \"results/x\"", "results.path", "an absolute path"),
        (
            "path = \"/resultsx\"",
            "results.path",
            "found \"/resultsx\"",
        ),
        (
            "path = \"/results/../etc\"",
            "results.path",
            "writable volume",
        ),
        (
            "ok_exit_codes = []",
            "results.ok_exit_codes",
            "expected a non-empty array",
        ),
        (
            "ok_exit_codes = [0, 256]",
            "results.ok_exit_codes",
            "expected an integer from 0 to 255, found 256",
        ),
        (
            "fail_on = \"severe\"",
            "results.fail_on",
            "one of `info`, `low`, `medium`, `high`, `critical`",
        ),
        (
            "gate = \"newest\"",
            "results.gate",
            "expected `all` or `new`, found \"newest\"",
        ),
    ];
    for (line, key, says) in cases {
        let e = assert_one_error(
            &format!("image = \"x\"\n\n[results]\n{line}\n"),
            4,
            key,
            says,
        );
        // Points into the value: at it, or at the bad element of an array.
        assert!(
            e.location.unwrap().column as usize >= line.find('=').unwrap() + 3,
            "{e}"
        );
    }
    for ok in ["/results", "/results/", "/results/a/b.sarif"] {
        let text = format!("image = \"x\"\n[results]\npath = \"{ok}\"\n");
        assert_eq!(
            only_suite(Project::new(&[("s.toml", &text)]).load())
                .results
                .path,
            ok
        );
    }
}

#[test]
fn policy_rules() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "network = \"host\"",
            "policy.network",
            "expected one of `none`, `target`, `egress`, found \"host\"",
        ),
        ("user = \"\"", "policy.user", "expected a non-empty string"),
        (
            "read_only = \"yes\"",
            "policy.read_only",
            "expected a boolean",
        ),
        (
            "cap_add = [\"NET_RAWW\"]",
            "policy.cap_add",
            "did you mean `NET_RAW`?",
        ),
        ("cap_add = [\"ALL\"]", "policy.cap_add", "not allowed"),
        (
            "cap_add = \"NET_RAW\"",
            "policy.cap_add",
            "expected an array",
        ),
        (
            "memory = \"1m\"",
            "policy.memory",
            "at least 4m (4194304 bytes), found \"1m\"",
        ),
        ("memory = 4000", "policy.memory", "at least 4m"),
        (
            "memory = \"lots\"",
            "policy.memory",
            "expected a size such as \"512m\"",
        ),
        ("memory = true", "policy.memory", "found boolean `true`"),
        ("cpus = 0", "policy.cpus", "greater than 0"),
        ("cpus = -1.5", "policy.cpus", "greater than 0"),
        ("cpus = \"2\"", "policy.cpus", "found string \"2\""),
        (
            "pids = 0",
            "policy.pids",
            "expected an integer of at least 1, found 0",
        ),
    ];
    for (line, key, says) in cases {
        assert_one_error(&format!("image = \"x\"\n[policy]\n{line}\n"), 3, key, says);
    }
    // An explicit root user is the suite's choice, not an error; sizes accept integers.
    let text = "image = \"x\"\n[policy]\nuser = \"0:0\"\nmemory = 8388608\ncpus = 2\n";
    let s = only_suite(Project::new(&[("s.toml", text)]).load());
    assert_eq!(
        (s.policy.user.as_str(), s.policy.memory, s.policy.cpus),
        ("0:0", 8 << 20, 2.0)
    );
}

#[test]
fn every_error_in_a_file_is_reported_in_order() {
    let text = "imgae = \"x\"\nretries = 99\n[results]\npath = \"/tmp\"\n[policy]\nmemory = \"1k\"\npids = 0\n";
    let errors = errors_of(text);
    let keys: Vec<_> = errors.iter().map(|e| e.key.clone().unwrap()).collect();
    // `image` is also missing: the typo does not hide it.
    assert_eq!(
        keys,
        [
            "imgae",
            "image",
            "retries",
            "results.path",
            "policy.memory",
            "policy.pids"
        ]
    );
    let lines: Vec<_> = errors.iter().map(|e| e.location.unwrap().line).collect();
    assert_eq!(lines, [1, 1, 2, 4, 6, 7]);
    assert!(errors.iter().all(|e| e.suite.as_deref() == Some("s")));
}

#[test]
fn a_key_with_a_bad_value_is_not_also_reported_missing() {
    let errors = errors_of("image = 5\n");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].key.as_deref(), Some("image"));
}

#[test]
fn syntax_errors_have_positions() {
    let errors = errors_of("image = \"x\"\nname = \"unterminated\n");
    assert!(!errors.is_empty());
    assert!(errors.iter().all(|e| e.kind == ConfigErrorKind::Syntax));
    assert_eq!(errors[0].location.unwrap().line, 2, "{}", errors[0]);
    assert!(
        errors[0].message.starts_with("invalid TOML: "),
        "{}",
        errors[0]
    );
}

#[test]
fn duplicate_keys_are_named() {
    let errors = errors_of("image = \"x\"\nimage = \"y\"\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location, Some(Location { line: 2, column: 1 }));
    assert_eq!(errors[0].message, "invalid TOML: duplicate key `image`");
}

#[test]
fn a_file_stem_that_is_no_valid_name_needs_a_name_key() {
    let p = Project::new(&[("bad stem.toml", "image = \"x\"\n")]);
    let errors = p.load().errors;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].location, Some(Location { line: 1, column: 1 }));
    assert_eq!(errors[0].key.as_deref(), Some("name"));
    assert!(
        errors[0].message.contains("rename the file or set `name`"),
        "{}",
        errors[0]
    );
    let p = Project::new(&[("bad stem.toml", "name = \"good\"\nimage = \"x\"\n")]);
    assert_eq!(only_suite(p.load()).name, "good");
}

#[test]
fn errors_are_filed_under_the_presumed_suite_name() {
    let p = Project::new(&[
        ("a.toml", "name = \"alpha\"\nimage = 1\n"),
        ("b.toml", "name = \"not valid!\"\nimage = \"x\"\n"),
        ("c.toml", "name = \"gamma\"\n = broken"),
    ]);
    let errors = p.load().errors;
    let suites: Vec<_> = errors.iter().map(|e| e.suite.as_deref().unwrap()).collect();
    assert_eq!(suites[..2], ["alpha", "b"]);
    assert!(
        suites[2..].iter().all(|s| *s == "gamma"),
        "the name survives syntax errors: {suites:?}"
    );
    let p = Project::new(&[("d.toml", "image = [\n")]);
    let errors = p.load().errors;
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.suite.as_deref() == Some("d")),
        "{errors:#?}"
    );
}

#[test]
fn duplicate_names_keep_the_first_and_name_both_files() {
    let p = Project::new(&[
        ("a.toml", "name = \"dup\"\nimage = \"first\"\n"),
        (
            "b.toml",
            "description = \"d\"\nname = \"dup\"\nimage = \"second\"\n",
        ),
        ("dup.toml", "image = \"third\"\n"),
    ]);
    let loaded = p.load();
    assert_eq!(loaded.suites.len(), 1);
    assert_eq!(loaded.suites[0].image, "first");
    assert_eq!(loaded.errors.len(), 2, "{:#?}", loaded.errors);
    let e = &loaded.errors[0];
    assert_eq!(e.kind, ConfigErrorKind::DuplicateSuite);
    assert_eq!(e.file, p.suites_dir().join("b.toml"));
    assert_eq!(e.location, Some(Location { line: 2, column: 8 }));
    let shown = e.to_string();
    assert!(
        shown.contains("b.toml:2:8: duplicate suite name `dup`"),
        "{shown}"
    );
    assert!(
        shown.contains(&p.suites_dir().join("a.toml").display().to_string()),
        "{shown}"
    );
    assert_eq!(loaded.errors[1].file, p.suites_dir().join("dup.toml"));
    assert_eq!(
        loaded.errors[1].location,
        Some(Location { line: 1, column: 1 })
    );
}

#[test]
fn one_broken_file_does_not_stop_the_others() {
    let p = Project::new(&[
        ("zap.toml", "image = \"zap\"\n"),
        ("broken.toml", "image = \"x\"\ntimeout = \"soon\"\n"),
        ("bandit.toml", "image = \"bandit\"\ntags = [\"sast\"]\n"),
        ("notes.txt", "not a suite"),
        (".#zap.toml", "editor lock file"),
    ]);
    fs::create_dir(p.suites_dir().join("nested.toml")).unwrap();
    let loaded = p.load();
    let names: Vec<_> = loaded.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bandit", "zap"]);
    assert_eq!(loaded.errors.len(), 1, "{:#?}", loaded.errors);
    assert_eq!(loaded.errors[0].suite.as_deref(), Some("broken"));
    assert_eq!(loaded.errors[0].location.unwrap().line, 2);
}

#[test]
fn suites_are_sorted_by_name_not_file_name() {
    let p = Project::new(&[
        ("1.toml", "name = \"zz\"\nimage = \"x\"\n"),
        ("2.toml", "name = \"aa\"\nimage = \"x\"\n"),
    ]);
    let names: Vec<_> = p.load().suites.into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["aa", "zz"]);
}

#[test]
fn a_missing_directory_is_the_outer_error() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope");
    let e = load_suites(&missing, &ProjectConfig::default()).unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::Io);
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the suites directory",
            missing.display()
        )),
        "{e}"
    );
}

#[test]
fn a_missing_project_file_gives_the_defaults() {
    let dir = TempDir::new().unwrap();
    assert_eq!(
        load_project(&dir.path().join("phalanx.toml")).unwrap(),
        ProjectConfig::default()
    );
}

#[test]
fn project_file_values_and_relative_paths() {
    let p = Project::new(&[]);
    let text = "suites = \"checks\"\njobs = 4\ntimeout = \"15m\"\nreports = \"/abs/reports\"\nfail_on = \"medium\"\n";
    let file = p.write("phalanx.toml", text);
    let project = load_project(&file).unwrap();
    assert_eq!(project.suites_dir, p.dir.path().join("checks"));
    assert_eq!(project.reports_dir, Path::new("/abs/reports"));
    assert_eq!(project.jobs, Some(4));
    assert_eq!(project.image_jobs, None);
    assert_eq!(project.timeout, Duration::from_secs(900));
    assert_eq!(project.fail_on, Severity::Medium);
    assert_eq!(project.policy, Policy::default());
    let file = p.write("phalanx.toml", "image_jobs = 6\n");
    assert_eq!(load_project(&file).unwrap().image_jobs, Some(6));
    // Keys left out fall back to the defaults, still relative to the project folder.
    let file = p.write("phalanx.toml", "jobs = 2\n");
    assert_eq!(
        load_project(&file).unwrap().suites_dir,
        p.dir.path().join("suites")
    );
}

#[test]
fn project_policy_sits_between_the_default_and_the_suite() {
    let p = Project::new(&[
        ("plain.toml", "image = \"x\"\n"),
        (
            "own.toml",
            "image = \"x\"\ntimeout = \"1m\"\n[policy]\nnetwork = \"none\"\nuser = \"0\"\ncap_add = []\n[results]\nfail_on = \"low\"\n",
        ),
    ]);
    let text = "timeout = \"20m\"\nfail_on = \"critical\"\n[policy]\nnetwork = \"egress\"\nmemory = \"2g\"\ncap_add = [\"NET_RAW\"]\n";
    let project = load_project(&p.write("phalanx.toml", text)).unwrap();
    let base = Policy {
        network: NetworkMode::Egress,
        memory: 2 << 30,
        cap_add: vec!["NET_RAW".into()],
        ..Policy::default()
    };
    assert_eq!(project.policy, base);

    let loaded = p.load_with(&project);
    assert!(loaded.errors.is_empty(), "{:#?}", loaded.errors);
    let (own, plain) = (&loaded.suites[0], &loaded.suites[1]);
    assert_eq!(plain.policy, base);
    assert_eq!(
        (plain.timeout, plain.results.fail_on),
        (Duration::from_secs(1200), Severity::Critical)
    );
    let overridden = Policy {
        network: NetworkMode::None,
        user: "0".into(),
        cap_add: vec![],
        ..base
    };
    assert_eq!(own.policy, overridden);
    assert_eq!(
        (own.timeout, own.results.fail_on),
        (Duration::from_secs(60), Severity::Low)
    );
}

#[test]
fn project_file_errors_name_line_and_key() {
    let p = Project::new(&[]);
    let file = p.write("phalanx.toml", "jobs = 0\n");
    let e = load_project(&file).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:1:8: key `jobs`: expected an integer of at least 1, found 0",
            file.display()
        )
    );
    assert_eq!(e.suite, None);
    let file = p.write("phalanx.toml", "jobs = 2\nimage_jobs = 0\n");
    assert_eq!(
        load_project(&file).unwrap_err().to_string(),
        format!(
            "{}:2:14: key `image_jobs`: expected an integer of at least 1, found 0",
            file.display()
        )
    );
    let file = p.write(
        "phalanx.toml",
        "jobs = 2\n[policy]\ncpus = 1\nmemory = \"3m\"\nsuits = 1\n",
    );
    let e = load_project(&file).unwrap_err();
    assert_eq!(
        (e.location.unwrap().line, e.key.as_deref()),
        (4, Some("policy.memory")),
        "{e}"
    );
    let file = p.write("phalanx.toml", "suits = \"x\"\n");
    let e = load_project(&file).unwrap_err();
    assert!(
        e.message.contains("in the project table") && e.message.contains("did you mean `suites`?"),
        "{e}"
    );
}

#[test]
fn the_store_table_sets_path_and_retention_with_errors_naming_line_and_key() {
    let p = Project::new(&[]);
    let file = p.write(
        "phalanx.toml",
        "[store]\npath = \"ci/runs.db\"\nkeep_runs = 20\n",
    );
    let project = load_project(&file).unwrap();
    assert_eq!(project.store.path, p.dir.path().join("ci/runs.db"));
    assert_eq!(project.store.keep_runs, 20);
    let file = p.write("phalanx.toml", "[store]\nkeep_runs = 7\n");
    let store = load_project(&file).unwrap().store;
    assert_eq!(
        store.path,
        crate::store::StoreSettings::default().path,
        "the working directory's"
    );
    let file = p.write("phalanx.toml", "jobs = 1\n[store]\nkeep_runs = 0\n");
    let e = load_project(&file).unwrap_err();
    assert_eq!(
        (e.location.unwrap().line, e.key.as_deref()),
        (3, Some("store.keep_runs")),
        "{e}"
    );
    let file = p.write("phalanx.toml", "store = \"runs.db\"\n");
    let e = load_project(&file).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("store"), "{e}");
}

#[test]
fn shipped_fixtures_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let project = load_project(&root.join("phalanx.toml")).unwrap();
    assert_eq!(project.suites_dir, root.join("suites"));
    let loaded = load_suites(&project.suites_dir, &project).unwrap();
    let names: Vec<_> = loaded.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bandit", "minimal"]);
    let broken: Vec<_> = loaded
        .errors
        .iter()
        .map(|e| (e.location.unwrap().line, e.key.clone().unwrap()))
        .collect();
    assert_eq!(
        broken,
        [
            (1, "image".to_owned()),
            (3, "imgae".to_owned()),
            (7, "timeout".to_owned())
        ]
    );
    assert!(
        loaded
            .errors
            .iter()
            .all(|e| e.suite.as_deref() == Some("broken"))
    );
}

#[test]
fn env_values_can_come_from_the_host_and_be_secret() {
    // PATH is set wherever tests run; setting variables here would race other tests.
    let path = std::env::var("PATH").unwrap();
    let suite = only_suite(
        Project::new(&[(
            "s.toml",
            "image = \"x\"\nenv = { TOKEN = { from_env = \"PATH\", secret = true }, \
             SEARCH = { from_env = \"PATH\" }, PLAIN = \"1\" }\n",
        )])
        .load(),
    );
    assert_eq!(suite.env["TOKEN"], path);
    assert_eq!(suite.env["SEARCH"], path);
    assert_eq!(suite.env["PLAIN"], "1");
    assert_eq!(
        suite.secret_env.iter().collect::<Vec<_>>(),
        vec!["TOKEN"],
        "only entries marked secret are secret"
    );
    assert_eq!(
        suite.secret_values().collect::<Vec<_>>(),
        vec![path.as_str()]
    );
}

#[test]
fn every_missing_host_variable_is_reported() {
    let errors = errors_of(
        "image = \"x\"\nenv = { A = { from_env = \"PHALANX_TEST_UNSET_1\" } }\n\
         [policy]\nmemory = \"1k\"\n",
    );
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{shown:#?}");
    assert!(shown[0].contains("s.toml:2:") && shown[0].contains("PHALANX_TEST_UNSET_1"));
    assert!(shown[1].contains("s.toml:4:") && shown[1].contains("policy.memory"));
}

#[test]
fn target_mode_and_size_come_from_the_project_file_with_line_errors() {
    use crate::target::{DEFAULT_MAX_SIZE, TargetMode};
    let p = Project::new(&[]);
    let file = p.write(
        "phalanx.toml",
        "target_mode = \"copy\"\ntarget_max_size = \"512m\"\n",
    );
    let project = load_project(&file).unwrap();
    assert_eq!(project.target_mode, TargetMode::Copy);
    assert_eq!(project.target_max_size, 512 << 20);
    let file = p.write("phalanx.toml", "jobs = 2\n");
    let project = load_project(&file).unwrap();
    assert_eq!(
        (project.target_mode, project.target_max_size),
        (TargetMode::Auto, DEFAULT_MAX_SIZE)
    );
    let file = p.write("phalanx.toml", "jobs = 2\ntarget_mode = \"mount\"\n");
    let e = load_project(&file).unwrap_err();
    assert_eq!(
        (e.location.unwrap().line, e.key.as_deref()),
        (2, Some("target_mode")),
        "{e}"
    );
    assert!(e.message.contains("copy"), "{e}");
    let file = p.write("phalanx.toml", "\n\ntarget_max_size = \"lots\"\n");
    let e = load_project(&file).unwrap_err();
    assert_eq!(
        (e.location.unwrap().line, e.key.as_deref()),
        (3, Some("target_max_size")),
        "{e}"
    );
}

#[test]
fn gate_comes_from_the_suite_then_the_project_and_defaults_to_all() {
    use crate::findings::Gate;
    let p = Project::new(&[
        ("plain.toml", "image = \"x\"\n"),
        ("own.toml", "image = \"x\"\n[results]\ngate = \"all\"\n"),
    ]);
    let loaded = p.load();
    assert!(loaded.suites.iter().all(|s| s.results.gate == Gate::All));
    let project = load_project(&p.write("phalanx.toml", "gate = \"new\"\n")).unwrap();
    assert_eq!(project.gate, Gate::New);
    let loaded = p.load_with(&project);
    let (own, plain) = (&loaded.suites[0], &loaded.suites[1]);
    assert_eq!(
        (own.results.gate, plain.results.gate),
        (Gate::All, Gate::New)
    );
    let file = p.write("phalanx.toml", "jobs = 2\ngate = \"fresh\"\n");
    let e = load_project(&file).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2:", file.display())) && e.contains("key `gate`"),
        "{e}"
    );
}

#[test]
fn projects_resolve_their_paths_selection_and_limits() {
    let p = Project::new(&[]);
    let text = r#"
[projects.shop]
target = "apps/shop"
default_tags = ["sast"]
fail_on = "critical"
max_queued = 2

[projects.shop.limits]
allow_network = ["none"]
max_memory = "512m"

[projects.blog]
target = "/srv/blog"
suites = "blog-suites"
"#;
    let config = load_project(&p.write("phalanx.toml", text)).unwrap();
    let names: Vec<&str> = config.projects.keys().map(String::as_str).collect();
    assert_eq!(names, ["blog", "shop"]);
    let shop = &config.projects["shop"];
    assert_eq!(shop.target, p.dir.path().join("apps/shop"));
    assert_eq!(shop.suites_dir, config.suites_dir);
    assert_eq!(shop.default_tags, ["sast"]);
    assert_eq!(shop.fail_on, Some(Severity::Critical));
    assert_eq!(shop.max_queued, 2);
    assert_eq!(shop.limits.allow_network, Some(vec![NetworkMode::None]));
    assert_eq!(shop.limits.max_memory, Some(512 << 20));
    let blog = &config.projects["blog"];
    assert_eq!(blog.target, Path::new("/srv/blog"));
    assert_eq!(blog.suites_dir, p.dir.path().join("blog-suites"));
    assert_eq!(blog.max_queued, projects::DEFAULT_MAX_QUEUED);
}

#[test]
fn project_table_errors_name_line_and_key() {
    let p = Project::new(&[]);
    let file = p.write(
        "phalanx.toml",
        "[projects.shop]\ntarget = \"x\"\n[projects.shop.limits]\nallow_network = [\"wide\"]\n",
    );
    let e = load_project(&file).unwrap_err();
    assert_eq!(
        (e.location.map(|l| l.line), e.key.as_deref()),
        (Some(4), Some("projects.shop.limits.allow_network")),
        "{e}"
    );
    let file = p.write("phalanx.toml", "[projects.shop]\nsuites = \"s\"\n");
    let e = load_project(&file).unwrap_err();
    assert!(e.to_string().contains("target"), "{e}");
}

// --- services and `needs` ---

const SERVICE: &str = r#"# services/app.toml
description = "the app"
image       = "demo/app:1"
build       = "../docker/app"
command     = ["app", "--serve"]
env         = { MODE = "test" }
port        = 8080
endpoints   = ["/notes?author=alice"]
ready_timeout = "20s"

[ready]
http = "/health"

[policy]
user   = "10001:10001"
memory = "256m"
tmpfs  = ["/var/lib/app", "/var/lib/app/"]
"#;

const DYNAMIC: &str =
    "image = \"x:1\"\nneeds = [\"app\", \"app\"]\n[policy]\nnetwork = \"target\"\n";

impl Project {
    fn service(&self, name: &str, text: &str) -> PathBuf {
        fs::create_dir_all(self.dir.path().join("services")).unwrap();
        self.write(&format!("services/{name}"), text)
    }
}

#[test]
fn a_service_file_is_read_with_its_defaults_and_the_suites_that_need_it() {
    let project = Project::new(&[("dyn.toml", DYNAMIC)]);
    let file = project.service("app.toml", SERVICE);
    let loaded = project.load();
    assert!(loaded.errors.is_empty(), "{:#?}", loaded.errors);
    let [service] = &loaded.services[..] else {
        panic!("{:?}", loaded.services)
    };
    assert_eq!(service.name, "app", "named after its file");
    assert_eq!(service.port, 8080);
    assert_eq!(
        service.ready,
        ReadyCheck::Http {
            path: "/health".into()
        }
    );
    assert_eq!(service.ready_timeout, Duration::from_secs(20));
    assert_eq!(service.endpoints, ["/notes?author=alice"]);
    assert_eq!(service.tmpfs, ["/var/lib/app"]);
    assert_eq!(service.policy.network, NetworkMode::Target);
    assert_eq!(service.policy.memory, 256 << 20);
    assert!(service.policy.read_only, "hardened by default");
    assert_eq!(
        service.build,
        Some(file.parent().unwrap().join("../docker/app"))
    );
    let suite = only_suite(loaded);
    assert_eq!(suite.needs, ["app"], "each once");
}

#[test]
fn a_service_may_be_declared_in_the_project_file() {
    let project = Project::new(&[("dyn.toml", DYNAMIC)]);
    let path = project.write(
        "phalanx.toml",
        "[[services]]\nname = \"app\"\nimage = \"demo/app:1\"\nport = 80\n",
    );
    let config = load_project(&path).unwrap();
    let loaded = project.load_with(&config);
    assert!(loaded.errors.is_empty(), "{:#?}", loaded.errors);
    assert_eq!(
        loaded.services[0].ready,
        ReadyCheck::Tcp,
        "the default check"
    );
    assert_eq!(loaded.services[0].ready_timeout, DEFAULT_READY_TIMEOUT);
    let unnamed = project.write("phalanx.toml", "[[services]]\nimage = \"a:1\"\nport = 80\n");
    let e = load_project(&unnamed).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("services.name"), "{e}");
    assert_eq!(e.location.map(|l| l.line), Some(1), "{e}");
}

#[test]
fn needs_must_name_a_declared_service_and_come_with_the_target_network() {
    let project = Project::new(&[
        (
            "typo.toml",
            "image = \"x:1\"\n\nneeds = [\"ap\"]\n[policy]\nnetwork = \"target\"\n",
        ),
        ("nonet.toml", "image = \"x:1\"\nneeds = [\"app\"]\n"),
        (
            "broken.toml",
            "image = \"x:1\"\nneeds = [\"bad\"]\n[policy]\nnetwork = \"target\"\n",
        ),
    ]);
    project.service("app.toml", SERVICE);
    project.service("bad.toml", "image = \"x:1\"\nport = 0\n");
    let loaded = project.load();
    assert!(loaded.suites.is_empty(), "{:?}", loaded.suites);
    let shown: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
    let find = |file: &str| {
        loaded
            .errors
            .iter()
            .find(|e| e.file.ends_with(file))
            .unwrap_or_else(|| panic!("no error for {file}: {shown:#?}"))
    };
    let typo = find("typo.toml");
    assert_eq!(
        (typo.key.as_deref(), typo.location.map(|l| l.line)),
        (Some("needs"), Some(3))
    );
    assert!(typo.message.contains("did you mean `app`?"), "{typo}");
    assert_eq!(typo.suite.as_deref(), Some("typo"));
    let nonet = find("nonet.toml");
    assert_eq!(nonet.key.as_deref(), Some("needs"));
    assert!(nonet.message.contains("network = \"target\""), "{nonet}");
    assert!(
        find("broken.toml").message.contains("has errors"),
        "{shown:#?}"
    );
    let bad = find("services/bad.toml");
    assert_eq!(bad.key.as_deref(), Some("port"), "{bad}");
}

#[test]
fn service_values_are_checked_where_they_are_written() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("svc.toml");
    let errors = |text: &str| parse_service(&path, text, &ProjectConfig::default()).unwrap_err();
    let cases = [
        (
            "name = \"App_1\"\nimage = \"a:1\"\nport = 1\n",
            "name",
            "host name",
        ),
        ("image = \"a:1\"\nport = 70000\n", "port", "from 1 to 65535"),
        (
            "image = \"a:1\"\nport = 1\n[ready]\nhttp = \"health\"\n",
            "ready",
            "request path",
        ),
        (
            "image = \"a:1\"\nport = 1\n[ready]\ntcp = true\nhttp = \"/\"\n",
            "ready",
            "exactly one",
        ),
        (
            "image = \"a:1\"\nport = 1\n[policy]\ntmpfs = [\"/target/x\"]\n",
            "policy",
            "absolute path",
        ),
        (
            "image = \"a:1\"\nport = 1\n[policy]\nnetwork = \"egress\"\n",
            "policy.network",
            "unknown key",
        ),
        (
            "image = \"a:1\"\nport = 1\nendpoints = [\"/a b\"]\n",
            "endpoints",
            "no spaces",
        ),
    ];
    for (text, key, says) in cases {
        let all = errors(text);
        let e = all
            .iter()
            .find(|e| e.to_string().contains(says))
            .unwrap_or_else(|| panic!("{says:?} in none of {all:#?}"));
        let shown = e.to_string();
        assert!(
            e.key.as_deref().is_some_and(|k| k.starts_with(key)),
            "{key}: {shown}"
        );
        assert!(shown.contains("svc.toml:"), "{shown}");
    }
}
