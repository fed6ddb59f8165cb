//! What findings become in the reports: JUnit cases per rule and carried-over JUnit cases,
//! the merged SARIF log (valid against the SARIF 2.1.0 schema, nothing dropped), run.json
//! counts and the summary rows.

use crate::findings_common;
use crate::junit_schema;

use std::path::Path;

use findings_common::{
    assert_valid_sarif, fixtures, judged, reason, run_of, sarif_validator, suite,
};
use phalanx::config::ResultFormat;
use phalanx::findings::Severity;
use phalanx::outcome::{Outcome, RunReport, SuiteReport};
use phalanx::report::{json::run_json, junit_xml, sarif, summary_table};
use serde_json::Value;

fn sarif_suite(name: &str, files: &[&str], fail_on: Severity) -> SuiteReport {
    let s = suite(name, ResultFormat::Sarif, fail_on);
    judged(&s, &fixtures().join("sarif"), files)
}

fn junit_suite(name: &str, files: &[&str]) -> SuiteReport {
    let s = suite(name, ResultFormat::Junit, Severity::High);
    judged(&s, &fixtures().join("junit"), files)
}

fn merged(run: &RunReport) -> Value {
    let mut out = Vec::new();
    sarif::write_merged(run, &mut out).expect("merging");
    serde_json::from_slice(&out).expect("the merged SARIF is JSON")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// ---- Verdicts --------------------------------------------------------------------------

#[test]
fn findings_at_or_above_fail_on_fail_the_suite_and_below_do_not() {
    let high = sarif_suite("bandit", &["bandit.sarif"], Severity::High);
    assert_eq!(high.outcome, Outcome::Failed);
    let why = reason(&high).unwrap();
    assert_eq!(
        why,
        "1 finding at or above high; worst: B602 (high) at app/run.py:17"
    );
    let cause = serde_json::to_value(&high.cause).unwrap();
    assert_eq!(cause["kind"], "findings");
    assert_eq!(cause["fail_on"], "high");
    assert_eq!(cause["worst"]["rule"], "B602");
    let critical = sarif_suite("bandit", &["bandit.sarif"], Severity::Critical);
    assert_eq!(critical.outcome, Outcome::Passed);
    assert_eq!(critical.cause, None);
    // Findings below the threshold are still reported.
    let counts = critical.findings.as_ref().unwrap();
    assert_eq!((counts.counts.high, counts.counts.low), (1, 1));
    assert_eq!(counts.blocking, 0);
}

#[test]
fn the_reason_names_the_worst_blocking_finding() {
    let trivy = sarif_suite("trivy", &["trivy.sarif"], Severity::High);
    assert_eq!(
        reason(&trivy).as_deref(),
        Some("2 findings at or above high; worst: CVE-2021-44228 (critical) at java/pom.xml:12")
    );
}

#[test]
fn suppressed_findings_never_fail_a_suite() {
    // Semgrep's only medium-or-above finding outside `nosem` is a warning (medium).
    assert_eq!(
        sarif_suite("semgrep", &["semgrep.sarif"], Severity::High).outcome,
        Outcome::Passed
    );
    let s = sarif_suite("semgrep", &["semgrep.sarif"], Severity::Medium);
    assert_eq!(s.outcome, Outcome::Failed);
    assert_eq!(s.findings.as_ref().unwrap().blocking, 1);
    assert_eq!(s.findings.as_ref().unwrap().suppressed.medium, 1);
}

#[test]
fn unreadable_or_missing_results_are_errors() {
    let truncated = sarif_suite("bad", &["invalid/truncated.sarif"], Severity::High);
    assert_eq!(truncated.outcome, Outcome::Error);
    assert!(
        reason(&truncated)
            .as_deref()
            .unwrap()
            .contains("EOF while parsing"),
        "{:?}",
        truncated.cause
    );
    assert!(truncated.results.is_none() && truncated.findings.is_none());

    let nothing = sarif_suite("none", &[], Severity::High);
    assert_eq!(nothing.outcome, Outcome::Error);
    assert_eq!(
        reason(&nothing).as_deref(),
        Some("the tool exited 0 but left no result file at /results")
    );

    let wrong_kind = junit_suite("html", &["not-junit.xml"]);
    assert_eq!(wrong_kind.outcome, Outcome::Error);
}

#[test]
fn a_directory_is_read_by_extension_and_other_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["bandit.sarif", "trivy.sarif"] {
        std::fs::copy(fixtures().join("sarif").join(name), dir.path().join(name)).unwrap();
    }
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::copy(
        fixtures().join("sarif/gitleaks.sarif"),
        dir.path().join("nested/gitleaks.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("scan.log"), "not results").unwrap();
    let s = suite("multi", ResultFormat::Sarif, Severity::Critical);
    let report = judged(
        &s,
        dir.path(),
        &[
            "trivy.sarif",
            "scan.log",
            "nested/gitleaks.json",
            "bandit.sarif",
        ],
    );
    assert_eq!(report.outcome, Outcome::Failed, "{:?}", report.cause);
    let f = report.findings.as_ref().unwrap();
    assert_eq!(f.total, 2 + 4 + 2);
    let tools: Vec<_> = f.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["Bandit", "gitleaks", "Trivy"], "sorted by path");

    let only_logs = judged(&s, dir.path(), &["scan.log"]);
    assert_eq!(only_logs.outcome, Outcome::Error);
    let why = reason(&only_logs).unwrap();
    assert!(
        why.contains("holds no *.sarif or *.json file (found: scan.log)"),
        "{why}"
    );
}

#[test]
fn junit_suites_fail_on_failed_or_errored_cases() {
    let failing = junit_suite("pytest", &["pytest.xml"]);
    assert_eq!(failing.outcome, Outcome::Failed);
    assert_eq!(
        reason(&failing).as_deref(),
        Some(
            "2 of 4 test cases failed (1 failed, 1 errored), first: tests.test_auth.test_session_cookie_is_secure"
        )
    );
    let passing = junit_suite("surefire", &["surefire.xml"]);
    assert_eq!(passing.outcome, Outcome::Passed);
    assert_eq!(passing.tests.unwrap().tests, 2);
}

// ---- JUnit -----------------------------------------------------------------------------

fn cases<'a>(doc: &'a roxmltree::Document<'a>, suite: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    let ts = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some(suite))
        .unwrap_or_else(|| panic!("no <testsuite name={suite:?}>"));
    ts.children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect()
}

fn child<'a>(n: roxmltree::Node<'a, 'a>, tag: &str) -> Option<roxmltree::Node<'a, 'a>> {
    n.children().find(|c| c.has_tag_name(tag))
}

#[test]
fn one_case_per_rule_with_findings_in_the_failure_body() {
    let run = run_of(vec![sarif_suite("trivy", &["trivy.sarif"], Severity::High)]);
    let xml = junit_xml(&run).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases = cases(&doc, "trivy");
    let names: Vec<_> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(
        names,
        [
            "CVE-2023-32681",
            "CVE-2024-35195",
            "CVE-2022-40897",
            "CVE-2021-44228"
        ]
    );
    assert!(
        cases
            .iter()
            .all(|c| c.attribute("classname") == Some("trivy"))
    );
    let log4j = cases[3];
    let failure = child(log4j, "failure").expect("critical finding fails its rule");
    assert_eq!(failure.attribute("type"), Some("findings"));
    assert_eq!(
        failure.attribute("message"),
        Some("1 finding at or above high: log4j-core: Remote code execution in Log4j 2.x")
    );
    let body = failure.text().unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("java/pom.xml:12  "))
        .unwrap_or_else(|| panic!("no finding line in:\n{body}"));
    // path:line  message  [fingerprint]
    let parts: Vec<_> = line.split("  ").collect();
    assert_eq!(parts.len(), 3, "{line}");
    assert!(parts[1].starts_with("Package: org.apache.logging.log4j:log4j-core"));
    assert!(parts[2].starts_with('[') && parts[2].len() == 18, "{line}");
    assert_eq!(log4j.attribute("file"), Some("java/pom.xml"));
    assert_eq!(log4j.attribute("line"), Some("12"));
    // Medium findings under a high threshold pass, listed in the case's output.
    let medium = cases[0];
    assert!(child(medium, "failure").is_none());
    let out = child(medium, "system-out").unwrap().text().unwrap();
    assert!(out.starts_with("below the fail_on threshold (high): 1 medium\nrequirements.txt:1  "));
}

#[test]
fn declared_clean_rules_pass_and_suppressed_only_rules_are_skipped() {
    let run = run_of(vec![sarif_suite(
        "semgrep",
        &["semgrep.sarif"],
        Severity::Medium,
    )]);
    let xml = junit_xml(&run).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases = cases(&doc, "semgrep");
    assert_eq!(cases.len(), 3);
    let by_suffix = |s: &str| {
        *cases
            .iter()
            .find(|c| c.attribute("name").unwrap().ends_with(s))
            .unwrap()
    };
    assert!(child(by_suffix("render-template-string"), "failure").is_some());
    let md5 = child(by_suffix("insecure-hash-algorithm-md5"), "skipped").unwrap();
    assert_eq!(md5.attribute("message"), Some("suppressed: 1 finding"));
    let clean = by_suffix("sql-injection-using-raw");
    assert_eq!(
        clean.children().filter(|c| c.is_element()).count(),
        0,
        "a bare pass"
    );
}

#[test]
fn case_names_are_unique_when_tools_share_a_rule_id() {
    let run = run_of(vec![sarif_suite(
        "docker",
        &["several-runs.sarif"],
        Severity::High,
    )]);
    let xml = junit_xml(&run).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let names: Vec<_> = cases(&doc, "docker")
        .iter()
        .map(|c| c.attribute("name").unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"Hadolint/shared-id".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"checkov/shared-id".to_string()),
        "{names:?}"
    );
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[test]
fn junit_suites_carry_their_cases_over() {
    let run = run_of(vec![junit_suite("pytest", &["pytest.xml"])]);
    let xml = junit_xml(&run).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases = cases(&doc, "pytest");
    assert_eq!(cases.len(), 4);
    assert_eq!(cases[1].attribute("classname"), Some("tests.test_auth"));
    assert!(child(cases[1], "failure").is_some());
    assert!(child(cases[2], "error").is_some());
    assert!(child(cases[3], "skipped").is_some());
    let ts = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(ts.attribute("tests"), Some("4"));
    assert_eq!(ts.attribute("failures"), Some("1"));
    assert_eq!(ts.attribute("errors"), Some("1"));
}

#[test]
fn carried_over_cases_cannot_break_our_xml() {
    // A lenient tool's report: a noncharacter, a C1 control and ANSI escapes.
    let run = run_of(vec![junit_suite("odd", &["odd-characters.xml"])]);
    let xml = junit_xml(&run).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("our junit.xml stays well-formed");
    let case = cases(&doc, "odd")[0];
    assert_eq!(case.attribute("name"), Some("noncharacter  in a name"));
    let failure = child(case, "failure").unwrap();
    assert_eq!(failure.attribute("message"), Some("C1 control  and ANSI"));
    assert_eq!(failure.text(), Some("body with  and ]]> end"));
    assert_eq!(
        child(case, "system-out").unwrap().text(),
        Some("bold output")
    );
}

#[test]
fn junit_with_findings_validates_against_the_schema() {
    let run = run_of(vec![
        sarif_suite("trivy", &["trivy.sarif"], Severity::High),
        sarif_suite("semgrep", &["semgrep.sarif"], Severity::Medium),
        sarif_suite("docker", &["several-runs.sarif"], Severity::High),
        junit_suite("pytest", &["pytest.xml"]),
        junit_suite("surefire", &["surefire.xml"]),
        junit_suite("odd", &["odd-characters.xml"]),
    ]);
    let xml = junit_xml(&run).unwrap();
    roxmltree::Document::parse(&xml).expect("well-formed");
    let Some((xmllint, xsd)) = junit_schema::validator() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("junit.xml");
    std::fs::write(&stripped, junit_schema::strip_extensions(&xml)).unwrap();
    if let Err(msg) = junit_schema::validate(&xmllint, &xsd, &stripped) {
        panic!("junit.xml does not validate:\n{msg}\n{xml}");
    }
}

// ---- Merged SARIF ----------------------------------------------------------------------

const ALL_FIXTURES: [&str; 10] = [
    "bandit.sarif",
    "trivy.sarif",
    "codeql.sarif",
    "semgrep.sarif",
    "gitleaks.sarif",
    "several-runs.sarif",
    "rule-index-only.sarif",
    "no-rules.sarif",
    "suppressions.sarif",
    "uris.sarif",
];

fn every_fixture_run() -> RunReport {
    let mut suites: Vec<SuiteReport> = ALL_FIXTURES
        .iter()
        .map(|f| sarif_suite(f.trim_end_matches(".sarif"), &[f], Severity::High))
        .collect();
    suites.push(sarif_suite("kinds", &["kinds.sarif"], Severity::High));
    suites.push(sarif_suite(
        "broken",
        &["invalid/truncated.sarif"],
        Severity::High,
    ));
    suites.push(junit_suite("pytest", &["pytest.xml"]));
    run_of(suites)
}

#[test]
fn the_fixtures_themselves_are_valid_sarif() {
    let Some(validator) = sarif_validator() else {
        return;
    };
    for name in ALL_FIXTURES
        .iter()
        .chain(&["kinds.sarif", "moved/before.sarif"])
    {
        let log = read_json(&fixtures().join("sarif").join(name));
        assert_valid_sarif(&validator, &log, name);
    }
}

#[test]
fn merged_sarif_is_valid_against_the_schema() {
    let Some(validator) = sarif_validator() else {
        return;
    };
    let log = merged(&every_fixture_run());
    assert_valid_sarif(&validator, &log, "the merged SARIF");
    // The check must be able to fail.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = Value::from("critical");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn merged_sarif_has_one_run_per_suite_run_and_drops_nothing() {
    let run = every_fixture_run();
    let log = merged(&run);
    assert_eq!(log["version"], "2.1.0");
    let runs = log["runs"].as_array().unwrap();
    // Every fixture has one run except several-runs (2); the broken and JUnit suites
    // are left out.
    assert_eq!(runs.len(), ALL_FIXTURES.len() + 1 + 1);
    let ids: Vec<_> = runs
        .iter()
        .map(|r| r["automationDetails"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"bandit") && ids.contains(&"kinds"), "{ids:?}");
    assert!(ids.contains(&"several-runs/1") && ids.contains(&"several-runs/2"));
    assert!(
        !ids.iter()
            .any(|id| id.starts_with("broken") || id.starts_with("pytest"))
    );

    // Each run is the tool's, with only our additions: compare after removing them.
    let originals: Vec<Value> = ALL_FIXTURES
        .iter()
        .chain(&["kinds.sarif"])
        .flat_map(|f| {
            let log = read_json(&fixtures().join("sarif").join(f));
            log["runs"].as_array().unwrap().clone()
        })
        .collect();
    for (mine, theirs) in runs.iter().zip(&originals) {
        assert_eq!(
            without_our_additions(mine),
            without_empty_maps(theirs),
            "run {}",
            mine["automationDetails"]["id"]
        );
    }
}

/// Removes what the merge adds: our result annotations and the automation id (restoring
/// the tool's own id where it had one).
fn without_our_additions(run: &Value) -> Value {
    let mut run = without_empty_maps(run);
    let obj = run.as_object_mut().unwrap();
    let details = obj.remove("automationDetails").unwrap();
    if let Some(original) = details["properties"].get("phalanx/originalId") {
        obj.insert(
            "automationDetails".into(),
            serde_json::json!({"id": original}),
        );
    }
    run
}

/// Drops empty `properties`/`fingerprints` objects of results (the merge may have created
/// the ones it annotated) and our annotations.
fn without_empty_maps(run: &Value) -> Value {
    let mut run = run.clone();
    let obj = run.as_object_mut().unwrap();
    for result in obj["results"].as_array_mut().unwrap() {
        let r = result.as_object_mut().unwrap();
        for (field, key) in [
            ("properties", "phalanx/severity"),
            ("properties", "phalanx/blocking"),
            ("fingerprints", "phalanx/v1"),
        ] {
            if let Some(Value::Object(map)) = r.get_mut(field) {
                map.remove(key);
                if map.is_empty() {
                    r.remove(field);
                }
            }
        }
    }
    run
}

#[test]
fn merged_results_carry_our_severity_verdict_and_fingerprint() {
    let run = run_of(vec![sarif_suite("trivy", &["trivy.sarif"], Severity::High)]);
    let log = merged(&run);
    let results = log["runs"][0]["results"].as_array().unwrap();
    let sev: Vec<_> = results
        .iter()
        .map(|r| r["properties"]["phalanx/severity"].as_str().unwrap())
        .collect();
    assert_eq!(sev, ["medium", "medium", "high", "critical"]);
    let blocking: Vec<_> = results
        .iter()
        .map(|r| r["properties"]["phalanx/blocking"].as_bool().unwrap())
        .collect();
    assert_eq!(blocking, [false, false, true, true]);
    let finding = &run.suites[0].results.as_deref().map(|r| match r {
        phalanx::findings::SuiteResults::Sarif(f) => f.findings[3].fingerprint.to_string(),
        _ => unreachable!(),
    });
    assert_eq!(
        results[3]["fingerprints"]["phalanx/v1"].as_str(),
        finding.as_deref()
    );
    // `kind: pass` and other non-findings are copied without annotations.
    let kinds = merged(&run_of(vec![sarif_suite(
        "k",
        &["kinds.sarif"],
        Severity::High,
    )]));
    let annotated = kinds["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("fingerprints").is_some())
        .count();
    assert_eq!(annotated, 2);
}

#[test]
fn the_tools_own_automation_id_is_kept_aside() {
    let log = merged(&run_of(vec![sarif_suite(
        "codeql",
        &["codeql.sarif"],
        Severity::High,
    )]));
    let details = &log["runs"][0]["automationDetails"];
    assert_eq!(details["id"], "codeql");
    assert_eq!(
        details["properties"]["phalanx/originalId"],
        "python-analysis/2026-05-01/"
    );
}

#[test]
fn an_empty_run_is_still_a_valid_log() {
    let log = merged(&run_of(Vec::new()));
    assert_eq!(log["runs"], serde_json::json!([]));
    if let Some(validator) = sarif_validator() {
        assert_valid_sarif(&validator, &log, "an empty merged log");
    }
}

#[test]
fn write_sarif_names_a_source_that_disappeared() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("sarif/bandit.sarif"),
        dir.path().join("b.sarif"),
    )
    .unwrap();
    let s = suite("gone", ResultFormat::Sarif, Severity::High);
    let report = judged(&s, dir.path(), &["b.sarif"]);
    std::fs::remove_file(dir.path().join("b.sarif")).unwrap();
    let out = dir.path().join("reports/results.sarif");
    let err = sarif::write_sarif(&run_of(vec![report]), &out).unwrap_err();
    assert!(err.to_string().contains("b.sarif"), "{err}");
    assert!(!out.exists(), "no partial file is left behind");
}

// ---- run.json and summary ----------------------------------------------------------------

#[test]
fn run_json_has_findings_per_suite_with_counts_per_severity() {
    let run = run_of(vec![
        sarif_suite("trivy", &["trivy.sarif"], Severity::High),
        junit_suite("pytest", &["pytest.xml"]),
    ]);
    let v: Value = serde_json::from_str(&run_json(&run).unwrap()).unwrap();
    let trivy = &v["suites"][0]["findings"];
    assert_eq!(trivy["fail_on"], "high");
    assert_eq!(trivy["total"], 4);
    assert_eq!(trivy["blocking"], 2);
    assert_eq!(
        trivy["counts"],
        serde_json::json!({"critical": 1, "high": 1, "medium": 2, "low": 0, "info": 0})
    );
    assert_eq!(trivy["tools"][0]["name"], "Trivy");
    assert_eq!(
        trivy["rules"][0]["id"], "CVE-2021-44228",
        "most severe first"
    );
    assert!(v["suites"][0].get("tests").is_none());
    let pytest = &v["suites"][1];
    assert_eq!(
        pytest["tests"],
        serde_json::json!({"tests": 4, "failures": 1, "errors": 1, "skipped": 1})
    );
    assert!(pytest.get("findings").is_none());
}

#[test]
fn summary_shows_findings_per_severity_and_the_verdict() {
    let run = run_of(vec![
        sarif_suite("trivy", &["trivy.sarif"], Severity::High),
        sarif_suite("semgrep", &["semgrep.sarif"], Severity::High),
        junit_suite("pytest", &["pytest.xml"]),
    ]);
    let text = summary_table(&run, &[]);
    let lines: Vec<_> = text.lines().collect();
    assert!(
        lines[0].starts_with(
            "FAIL     trivy      4.0s  [1 critical, 1 high, 2 medium]  2 findings at or above high"
        ),
        "{text}"
    );
    assert_eq!(
        lines[1], "PASS     semgrep    4.0s  [1 medium; 1 suppressed]",
        "{text}"
    );
    assert!(
        lines[2].starts_with(
            "FAIL     pytest     4.0s  [4 tests: 1 failed, 1 errored, 1 skipped]  2 of 4"
        ),
        "{text}"
    );
    assert!(
        text.contains("findings: 1 critical, 1 high, 3 medium in 2 SARIF suites"),
        "{text}"
    );
}
