//! The SARIF reader on logs shaped like what real tools write (`tests/fixtures/sarif/`):
//! several runs, `ruleIndex` only, no rules array, `security-severity`, suppressions,
//! kinds other than `fail`, `file://` and relative URIs, fingerprints that survive code
//! moving, and files that are not valid SARIF.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use phalanx::findings::sarif::{self, NO_RULE, SarifError};
use phalanx::findings::{Finding, Gate, Severity, SuiteFindings};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sarif")
        .join(name)
}

fn read(name: &str) -> SuiteFindings {
    sarif::read_files("suite", &[fixture(name)]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn read_err(name: &str) -> String {
    match sarif::read_files("suite", &[fixture(name)]) {
        Ok(_) => panic!("{name} should not be readable as SARIF"),
        Err(e) => e.to_string(),
    }
}

/// `(rule id, severity, path:line)` for each finding, in file order.
fn summary(f: &SuiteFindings) -> Vec<(String, Severity, String)> {
    f.findings
        .iter()
        .map(|x| {
            let at = x
                .location
                .as_ref()
                .map(|l| l.to_string())
                .unwrap_or_default();
            (f.rule_of(x).id.clone(), x.severity, at)
        })
        .collect()
}

fn by_message<'a>(f: &'a SuiteFindings, text: &str) -> &'a Finding {
    f.findings
        .iter()
        .find(|x| x.message.contains(text))
        .unwrap_or_else(|| panic!("no finding with message {text:?}"))
}

fn row(rule: &str, sev: Severity, at: &str) -> (String, Severity, String) {
    (rule.to_string(), sev, at.to_string())
}

#[test]
fn bandit_levels_absolute_target_paths_and_keys_in_any_order() {
    let f = read("bandit.sarif");
    assert_eq!(f.tools.len(), 1);
    assert_eq!(f.tools[0].name, "Bandit");
    assert_eq!(f.tools[0].version.as_deref(), Some("1.7.9"));
    assert_eq!(f.runs, 1);
    assert_eq!(
        summary(&f),
        vec![
            row("B105", Severity::Low, "app/settings.py:4"),
            row("B602", Severity::High, "app/run.py:17"),
        ]
    );
    let declared: Vec<_> = f
        .rules
        .iter()
        .filter(|r| r.declared)
        .map(|r| &r.id)
        .collect();
    assert_eq!(declared, ["B105", "B602", "B101"]);
    assert_eq!(
        f.rules[0].name.as_deref(),
        Some("hardcoded_password_string")
    );
    let first = &f.findings[0];
    assert_eq!(first.location.as_ref().unwrap().start_column, Some(16));
    assert!(!first.is_suppressed());
}

#[test]
fn trivy_security_severity_and_base_ids() {
    let f = read("trivy.sarif");
    assert_eq!(
        summary(&f),
        vec![
            row("CVE-2023-32681", Severity::Medium, "requirements.txt:1"),
            row("CVE-2024-35195", Severity::Medium, "requirements.txt:1"),
            row("CVE-2022-40897", Severity::High, "requirements.txt:2"),
            row("CVE-2021-44228", Severity::Critical, "java/pom.xml:12"),
        ]
    );
    let rule = f.rule_of(&f.findings[3]);
    assert_eq!(
        rule.short_description.as_deref(),
        Some("log4j-core: Remote code execution in Log4j 2.x")
    );
    assert_eq!(f.blocking(Severity::High, Gate::All).count(), 2);
    assert_eq!(f.blocking(Severity::Critical, Gate::All).count(), 1);
}

#[test]
fn codeql_extension_rules_tool_components_and_artifact_indexes() {
    let f = read("codeql.sarif");
    assert_eq!(f.tools[0].name, "CodeQL");
    assert_eq!(f.tools[0].version.as_deref(), Some("2.19.3"));
    assert_eq!(
        summary(&f),
        vec![
            row("py/sql-injection", Severity::High, "app/db.py:27"),
            row(
                "py/clear-text-logging-sensitive-data",
                Severity::High,
                "app/log.py:8"
            ),
            // No security-severity and no level: the rule's default `note`.
            row("py/unused-import", Severity::Low, "app/db.py:1"),
        ]
    );
    assert!(f.rules.iter().all(|r| r.declared));
}

#[test]
fn semgrep_nosem_suppressions_and_declared_clean_rules() {
    let f = read("semgrep.sarif");
    let md5 = by_message(&f, "MD5");
    assert!(
        md5.is_suppressed(),
        "a suppression without status is in effect"
    );
    assert_eq!(md5.location.as_ref().unwrap().path, "app/crypto.py");
    let ssti = by_message(&f, "template");
    assert_eq!(ssti.severity, Severity::Medium);
    let clean = f
        .rules
        .iter()
        .find(|r| r.id.ends_with("sql-injection-using-raw"))
        .unwrap();
    assert!(clean.declared);
    assert_eq!(f.by_rule()[2], Vec::<usize>::new());
    assert_eq!(f.blocking(Severity::Medium, Gate::All).count(), 1);
}

#[test]
fn gitleaks_without_levels_is_medium_and_empty_fingerprints_are_ignored() {
    let f = read("gitleaks.sarif");
    assert!(f.findings.iter().all(|x| x.severity == Severity::Medium));
    let prints: BTreeSet<String> = f
        .findings
        .iter()
        .map(|x| x.fingerprint.to_string())
        .collect();
    assert_eq!(prints.len(), 2, "{prints:?}");
    assert!(
        prints.iter().all(|p| !p.contains(':')),
        "the two secrets differ by snippet, so neither is an occurrence of the other: {prints:?}"
    );
}

#[test]
fn several_runs_keep_their_tools_apart() {
    let f = read("several-runs.sarif");
    assert_eq!(f.runs, 2);
    let tools: Vec<_> = f.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["Hadolint", "checkov"]);
    let shared: Vec<_> = f.rules.iter().filter(|r| r.id == "shared-id").collect();
    assert_eq!(shared.len(), 2, "same id, two tools, two rules");
    assert_ne!(shared[0].tool, shared[1].tool);
    assert_eq!(
        summary(&f),
        vec![
            row("DL3008", Severity::Medium, "Dockerfile:4"),
            row("DL3002", Severity::High, "Dockerfile:9"),
            row("shared-id", Severity::Low, "Dockerfile:2"),
            row("CKV_DOCKER_2", Severity::High, "Dockerfile:1"),
        ]
    );
    let origins: Vec<_> = f
        .findings
        .iter()
        .map(|x| (x.origin.run, x.origin.result))
        .collect();
    assert_eq!(origins, [(0, 0), (0, 1), (0, 2), (1, 0)]);
}

#[test]
fn rule_index_only_resolves_ids_and_default_levels() {
    let f = read("rule-index-only.sarif");
    assert_eq!(
        summary(&f),
        vec![
            row("IDX001", Severity::High, "src/a.c:10"),
            row("IDX002", Severity::Low, "src/b.c:20"),
            row("IDX002", Severity::Medium, "src/b.c:30"),
        ]
    );
    assert!(f.rules.iter().any(|r| r.id == "IDX003" && r.declared));
}

#[test]
fn no_rules_array_levels_and_results_without_rule() {
    let f = read("no-rules.sarif");
    assert_eq!(
        summary(&f),
        vec![
            row("BARE1", Severity::High, "x.sh:1"),
            row("BARE2", Severity::Medium, "y.sh:2"),
            row("BARE2", Severity::Info, ""),
            row(NO_RULE, Severity::Low, ""),
        ]
    );
    assert!(f.rules.iter().all(|r| !r.declared));
}

#[test]
fn security_severity_beats_levels_and_results_beat_rules() {
    let f = read("security-severity.sarif");
    let sev = |text: &str| by_message(&f, text).severity;
    assert_eq!(sev("rule says 9.0"), Severity::Critical);
    assert_eq!(sev("rule says 7.0"), Severity::High);
    assert_eq!(sev("numeric 4.0"), Severity::Medium);
    assert_eq!(sev("0.1 beats level error"), Severity::Low);
    assert_eq!(sev("0.0 is info"), Severity::Info);
    assert_eq!(sev("not a number"), Severity::High);
    assert_eq!(sev("the result's own score wins"), Severity::Critical);
}

#[test]
fn only_suppressions_in_effect_suppress() {
    let f = read("suppressions.sarif");
    let s = |text: &str| by_message(&f, text).is_suppressed();
    assert!(s("accepted external"));
    assert!(s("in source without status"));
    assert!(!s("under review"));
    assert!(!s("rejected is not"));
    assert!(!s("accepted and rejected"));
    assert!(!s("empty list"));
    assert!(s("schema spelling state accepted"));
    assert_eq!(
        by_message(&f, "accepted external").justification(),
        Some("false positive, reviewed by alice")
    );
    // Suppressed findings are counted, but never gate.
    let summary = f.summary(Severity::High, Gate::All, None);
    assert_eq!((summary.total, summary.blocking), (7, 4));
    assert_eq!(summary.suppressed.high, 3);
}

#[test]
fn only_kind_fail_is_a_finding() {
    let f = read("kinds.sarif");
    assert_eq!(f.findings.len(), 2);
    assert!(f.findings.iter().all(|x| f.rule_of(x).id == "K-FAIL"));
    let na = f.rules.iter().find(|r| r.id == "K-NA").unwrap();
    assert_eq!(na.not_applicable, 1);
    let ids: BTreeSet<_> = f.rules.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.is_superset(&BTreeSet::from(["K-PASS", "K-OPEN", "K-REVIEW", "K-INFO"])));
}

#[test]
fn uris_become_repo_relative() {
    let f = read("uris.sarif");
    let path = |text: &str| {
        by_message(&f, text)
            .location
            .as_ref()
            .map(|l| l.path.clone())
    };
    assert_eq!(path("file uri").as_deref(), Some("src/a.py"));
    assert_eq!(path("relative").as_deref(), Some("src/b.py"));
    assert_eq!(path("dot relative").as_deref(), Some("src/c.py"));
    assert_eq!(path("plain absolute").as_deref(), Some("src/d.py"));
    assert_eq!(path("chained base ids").as_deref(), Some("src/e.py"));
    assert_eq!(path("escaped").as_deref(), Some("src/my file.py"));
    assert_eq!(
        path("outside the target").as_deref(),
        Some("/usr/lib/python3/os.py")
    );
    assert_eq!(
        path("artifact index only").as_deref(),
        Some("from/artifact.py")
    );
    assert_eq!(path("no location"), None);
    assert_eq!(path("empty locations"), None);
}

#[test]
fn fingerprints_survive_code_moving_down_ten_lines() {
    let before = read("moved/before.sarif");
    let after = read("moved/after.sarif");
    let prints = |f: &SuiteFindings| -> Vec<String> {
        f.findings
            .iter()
            .map(|x| x.fingerprint.to_string())
            .collect()
    };
    let (old, new) = (prints(&before), prints(&after));
    assert_eq!(new.len(), old.len() + 1);
    // Every old finding is found again, each line 10 further down…
    assert_eq!(&new[1..], &old[..], "fingerprints changed when code moved");
    for (a, b) in before.findings.iter().zip(&after.findings[1..]) {
        let line = |x: &Finding| x.location.as_ref().unwrap().start_line.unwrap();
        assert_eq!(line(b), line(a) + 10);
    }
    // …and the inserted one is new. The same snippet twice is two findings, not one.
    assert!(!old.contains(&new[0]));
    assert!(old[1].ends_with(":2"), "{old:?}");
    let unique: BTreeSet<_> = old.iter().collect();
    assert_eq!(unique.len(), old.len());
}

#[test]
fn fingerprints_differ_by_rule_and_path() {
    let a = sarif::read_str("s", &one_result("A", "x.py", "same snippet")).unwrap();
    let b = sarif::read_str("s", &one_result("B", "x.py", "same snippet")).unwrap();
    let c = sarif::read_str("s", &one_result("A", "y.py", "same snippet")).unwrap();
    let again = sarif::read_str("s", &one_result("A", "x.py", "same   snippet\n")).unwrap();
    let fp = |f: &SuiteFindings| f.findings[0].fingerprint;
    assert_ne!(fp(&a), fp(&b));
    assert_ne!(fp(&a), fp(&c));
    assert_eq!(fp(&a), fp(&again), "whitespace in snippets does not matter");
}

fn one_result(rule: &str, uri: &str, snippet: &str) -> String {
    serde_json::json!({
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "t"}}, "results": [{
            "ruleId": rule, "message": {"text": "m"},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": uri},
                "region": {"startLine": 3, "snippet": {"text": snippet}}}}]
        }]}]
    })
    .to_string()
}

#[test]
fn message_strings_fill_in_missing_text() {
    let text = serde_json::json!({
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "t", "rules": [{
            "id": "R", "messageStrings": {"default": {"text": "'{0}' is used in {1}"}}}]}},
          "results": [{"ruleId": "R", "message": {"id": "default", "arguments": ["eval", "main"]}}]}]
    });
    let f = sarif::read_str("s", &text.to_string()).unwrap();
    assert_eq!(f.findings[0].message, "'eval' is used in main");
}

#[test]
fn several_files_are_one_suite() {
    let files = [fixture("bandit.sarif"), fixture("trivy.sarif")];
    let f = sarif::read_files("suite", &files).unwrap();
    assert_eq!(f.sources, files);
    assert_eq!(f.runs, 2);
    assert_eq!(f.findings.len(), 6);
    assert_eq!(f.findings[2].origin.file, 1);
}

#[test]
fn invalid_sarif_is_an_error_naming_the_file_and_what_was_expected() {
    let cases = [
        (
            "invalid/not-json.sarif",
            "expected value at line 1 column 1",
        ),
        ("invalid/truncated.sarif", "EOF while parsing"),
        ("invalid/trailing-garbage.sarif", "trailing characters"),
        (
            "invalid/wrong-version.sarif",
            "version `2.0.0` is not supported",
        ),
        ("invalid/no-runs.sarif", "missing field `runs`"),
        ("invalid/no-driver-name.sarif", "missing field `name`"),
        ("invalid/no-message.sarif", "missing field `message`"),
        ("invalid/bad-level.sarif", "unknown variant `critical`"),
        (
            "invalid/bad-rule-index.sarif",
            "ruleIndex 5 is out of range",
        ),
        ("invalid/no-results.sarif", "has no `results`"),
        (
            "invalid/execution-failed.sarif",
            "did not run successfully: could not parse config.yaml",
        ),
    ];
    for (name, expected) in cases {
        let message = read_err(name);
        assert!(message.contains(expected), "{name}: {message}");
        assert!(
            message.contains(name),
            "{name}: the error names the file: {message}"
        );
    }
}

#[test]
fn a_missing_file_is_an_error() {
    let err = sarif::read_files("suite", &[fixture("nope.sarif")]).unwrap_err();
    assert!(matches!(err, SarifError::Open { .. }), "{err}");
    assert!(err.to_string().contains("nope.sarif"));
}
