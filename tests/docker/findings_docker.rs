//! Findings end to end against the real Docker engine: a container (the probe) writes SARIF
//! or JUnit into its result path, and the run's exit code, `junit.xml`, `results.sarif`,
//! `run.json` and summary must say what the results say. Every test has its own workspace
//! and suite names and checks that nothing labelled with its run id is left.

use crate::findings_common;
use crate::junit_schema;
use crate::support;

use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use support::{Workspace, probe_image, unique};

/// One finished `phalanx run`.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    json: Value,
    junit: String,
    sarif: Value,
}

impl Run {
    fn suite(&self, name: &str) -> &Value {
        self.json["suites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no suite {name} in run.json:\n{}", self.json))
    }

    fn outcome(&self, name: &str) -> &str {
        self.suite(name)["outcome"].as_str().unwrap()
    }

    fn reason(&self, name: &str) -> &str {
        self.suite(name)["reason"].as_str().unwrap_or_default()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `phalanx run --progress plain ARGS` in the workspace, reads the reports and checks
/// the run left nothing behind.
async fn run(ws: &Workspace, args: &[&str]) -> Run {
    let mut all = vec!["run", "--progress", "plain", "--target", "target"];
    all.extend_from_slice(args);
    let output = ws.phalanx(&all).output().expect("phalanx runs");
    let reports = ws.reports_dir();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json: Value = serde_json::from_str(&read(&reports.join("run.json")))
        .unwrap_or_else(|e| panic!("run.json: {e}\n{stderr}"));
    let run_id = json["run_id"].as_str().unwrap().to_string();
    for leftovers in [
        support::containers_with_label(&run_id).await,
        support::volumes_with_label(&run_id).await,
        support::networks_with_label(&run_id).await,
    ] {
        assert_eq!(leftovers, Vec::<String>::new(), "left behind by {run_id}");
    }
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        json,
        junit: read(&reports.join("junit.xml")),
        sarif: serde_json::from_str(&read(&reports.join("results.sarif"))).unwrap(),
    }
}

#[derive(Serialize)]
struct SuiteFile<'a> {
    image: &'a str,
    command: Vec<String>,
    results: Results<'a>,
}

#[derive(Serialize)]
struct Results<'a> {
    format: &'a str,
    path: &'a str,
    ok_exit_codes: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_on: Option<&'a str>,
}

/// A suite running the probe with `steps`, written with the TOML serialiser so SARIF and
/// XML text survive as command arguments whatever they contain.
fn probe_suite(image: &str, steps: &[&str], results: Results) -> String {
    let command = std::iter::once("/probe")
        .chain(steps.iter().copied())
        .map(str::to_string)
        .collect();
    toml::to_string(&SuiteFile {
        image,
        command,
        results,
    })
    .expect("a suite file")
}

fn sarif_results<'a>(path: &'a str, fail_on: Option<&'a str>) -> Results<'a> {
    Results {
        format: "sarif",
        path,
        ok_exit_codes: vec![0, 1],
        fail_on,
    }
}

/// A fixture as one line of text, for the probe's `write` step.
fn fixture_text(rel: &str) -> String {
    let text = read(&findings_common::fixtures().join(rel));
    match serde_json::from_str::<Value>(&text) {
        Ok(json) => json.to_string(),
        Err(_) => text, // not JSON (XML, or deliberately broken)
    }
}

fn testcase<'a>(
    doc: &'a roxmltree::Document<'a>,
    suite: &str,
    name: &str,
) -> roxmltree::Node<'a, 'a> {
    doc.descendants()
        .find(|n| {
            n.has_tag_name("testcase")
                && n.attribute("classname") == Some(suite)
                && n.attribute("name") == Some(name)
        })
        .unwrap_or_else(|| panic!("no testcase {suite}/{name}"))
}

fn child<'a>(n: roxmltree::Node<'a, 'a>, tag: &str) -> Option<roxmltree::Node<'a, 'a>> {
    n.children().find(|c| c.has_tag_name(tag))
}

fn assert_valid_sarif(run: &Run) {
    if let Some(validator) = findings_common::sarif_validator() {
        findings_common::assert_valid_sarif(&validator, &run.sarif, "results.sarif");
    }
}

#[tokio::test]
async fn a_sarif_suite_fails_on_high_findings_and_every_report_says_so() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let bandit = unique("bandit");
    let text = fixture_text("sarif/bandit.sarif");
    // Bandit exits 1 when it finds something.
    let steps = ["write", "/results/bandit.sarif", &text, "--", "exit", "1"];
    let results = sarif_results("/results/bandit.sarif", None);
    ws.suite(&bandit, &probe_suite(&image, &steps, results));

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(&bandit), "failed");
    assert_eq!(
        run.reason(&bandit),
        "1 finding at or above high; worst: B602 (high) at app/run.py:17"
    );
    let findings = &run.suite(&bandit)["findings"];
    assert_eq!(findings["fail_on"], "high");
    assert_eq!(findings["counts"]["high"], 1);
    assert_eq!(findings["counts"]["low"], 1);
    assert_eq!(findings["tools"][0]["name"], "Bandit");

    let doc = roxmltree::Document::parse(&run.junit).unwrap();
    let b602 = testcase(&doc, &bandit, "B602");
    let failure = child(b602, "failure").expect("B602 fails");
    let body = failure.text().unwrap();
    assert!(
        body.contains(
            "app/run.py:17  subprocess call with shell=True identified, security issue.  ["
        ),
        "{body}"
    );
    assert_eq!(b602.attribute("file"), Some("app/run.py"));
    assert_eq!(b602.attribute("line"), Some("17"));
    let b105 = testcase(&doc, &bandit, "B105");
    assert!(
        child(b105, "failure").is_none(),
        "low is below the threshold"
    );
    assert!(child(testcase(&doc, &bandit, "B101"), "failure").is_none());

    let sarif_runs = run.sarif["runs"].as_array().unwrap();
    assert_eq!(sarif_runs.len(), 1);
    assert_eq!(sarif_runs[0]["automationDetails"]["id"], bandit.as_str());
    assert_eq!(sarif_runs[0]["tool"]["driver"]["name"], "Bandit");
    let severities: Vec<_> = sarif_runs[0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["properties"]["phalanx/severity"].as_str().unwrap())
        .collect();
    assert_eq!(severities, ["low", "high"]);
    assert_valid_sarif(&run);

    assert!(
        run.stdout.contains(&format!("FAIL     {bandit}"))
            && run.stdout.contains("[1 high, 1 low]"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("results.sarif"), "{}", run.stdout);
}

#[tokio::test]
async fn fail_on_comes_from_the_suite_the_project_or_the_command_line() {
    let image = probe_image().await;
    let ws = Workspace::new();
    ws.project("fail_on = \"medium\"\n");
    // Semgrep's log: one medium finding, and one medium under `nosem`.
    let text = fixture_text("sarif/semgrep.sarif");
    let steps = ["write", "/results/semgrep.sarif", &text];
    let (project, own) = (unique("project-default"), unique("own-threshold"));
    let results = |fail_on| sarif_results("/results/semgrep.sarif", fail_on);
    ws.suite(&project, &probe_suite(&image, &steps, results(None)));
    ws.suite(&own, &probe_suite(&image, &steps, results(Some("high"))));

    let defaults = run(&ws, &[]).await;

    assert_eq!(defaults.code, 1, "{}", defaults.stderr);
    assert_eq!(
        defaults.outcome(&project),
        "failed",
        "phalanx.toml's medium applies"
    );
    assert_eq!(
        defaults.outcome(&own),
        "passed",
        "the suite's own high applies"
    );

    let overridden = run(&ws, &["--fail-on", "high"]).await;

    assert_eq!(overridden.code, 0, "{}", overridden.stderr);
    for name in [&project, &own] {
        assert_eq!(overridden.outcome(name), "passed");
        let findings = &overridden.suite(name)["findings"];
        assert_eq!(findings["fail_on"], "high");
        assert_eq!(findings["counts"]["medium"], 1, "still reported");
        assert_eq!(findings["suppressed"]["medium"], 1);
    }
}

#[tokio::test]
async fn a_directory_of_sarif_files_is_one_suite_with_a_run_per_tool() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let scans = unique("scans");
    let (trivy, gitleaks) = (
        fixture_text("sarif/trivy.sarif"),
        fixture_text("sarif/gitleaks.sarif"),
    );
    let steps = [
        "write",
        "/results/trivy.sarif",
        &trivy,
        "--",
        "write",
        "/results/secrets/gitleaks.json",
        &gitleaks,
        "--",
        "write",
        "/results/notes.txt",
        "not results",
    ];
    let results = sarif_results("/results", Some("critical"));
    ws.suite(&scans, &probe_suite(&image, &steps, results));

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 1, "{}", run.stderr);
    let findings = &run.suite(&scans)["findings"];
    assert_eq!(findings["total"], 4 + 2);
    let ids: Vec<_> = run.sarif["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["automationDetails"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [format!("{scans}/1"), format!("{scans}/2")]);
    assert_valid_sarif(&run);
}

#[tokio::test]
async fn a_junit_suite_carries_its_cases_over() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let pytest = unique("pytest");
    let text = fixture_text("junit/pytest.xml");
    let steps = [
        "write",
        "/results/junit/report.xml",
        &text,
        "--",
        "exit",
        "1",
    ];
    let results = Results {
        format: "junit",
        path: "/results/junit",
        ok_exit_codes: vec![0, 1],
        fail_on: None,
    };
    ws.suite(&pytest, &probe_suite(&image, &steps, results));

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(&pytest), "failed");
    assert_eq!(
        run.suite(&pytest)["tests"],
        serde_json::json!({"tests": 4, "failures": 1, "errors": 1, "skipped": 1})
    );
    let doc = roxmltree::Document::parse(&run.junit).unwrap();
    let ts = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some(pytest.as_str()))
        .unwrap();
    let names: Vec<_> = ts
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "test_login_rejects_bad_password",
            "test_session_cookie_is_secure",
            "test_csp_header",
            "test_hsts"
        ]
    );
    assert_eq!(ts.attribute("failures"), Some("1"));
    assert_eq!(ts.attribute("errors"), Some("1"));
    assert_eq!(
        run.sarif["runs"],
        serde_json::json!([]),
        "JUnit suites are not SARIF"
    );
    if let Some((xmllint, xsd)) = junit_schema::validator() {
        let stripped = ws.root().join("junit-stripped.xml");
        std::fs::write(&stripped, junit_schema::strip_extensions(&run.junit)).unwrap();
        junit_schema::validate(&xmllint, &xsd, &stripped)
            .unwrap_or_else(|msg| panic!("junit.xml does not validate:\n{msg}"));
    }
}

#[tokio::test]
async fn missing_or_unreadable_results_are_errors_never_passes() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let (silent, truncated, broken_xml) =
        (unique("silent"), unique("truncated"), unique("brokenxml"));
    // Exits 0 without writing anything.
    ws.suite(
        &silent,
        &probe_suite(
            &image,
            &["exit", "0"],
            sarif_results("/results/out.sarif", None),
        ),
    );
    let text = fixture_text("sarif/invalid/truncated.sarif");
    ws.suite(
        &truncated,
        &probe_suite(
            &image,
            &["write", "/results/out.sarif", &text],
            sarif_results("/results/out.sarif", None),
        ),
    );
    let xml = fixture_text("junit/invalid.xml");
    let junit = Results {
        format: "junit",
        path: "/results",
        ok_exit_codes: vec![0],
        fail_on: None,
    };
    ws.suite(
        &broken_xml,
        &probe_suite(&image, &["write", "/results/report.xml", &xml], junit),
    );

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 3, "{}", run.stderr);
    for name in [&silent, &truncated, &broken_xml] {
        assert_eq!(run.outcome(name), "error", "{name}");
    }
    assert_eq!(
        run.reason(&silent),
        "the tool exited 0 but left no result file at /results/out.sarif"
    );
    assert!(
        run.reason(&truncated)
            .contains("is not valid SARIF 2.1.0: EOF while parsing")
    );
    assert!(run.reason(&broken_xml).contains("is not well-formed XML"));
    let doc = roxmltree::Document::parse(&run.junit).unwrap();
    for name in [&silent, &truncated, &broken_xml] {
        assert!(
            child(testcase(&doc, name, name), "error").is_some(),
            "{name}"
        );
    }
    assert_eq!(run.sarif["runs"], serde_json::json!([]));
    assert_valid_sarif(&run);
}

#[tokio::test]
async fn an_exit_code_outside_ok_exit_codes_fails_before_results_are_read() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let crashed = unique("crashed");
    let text = fixture_text("sarif/bandit.sarif");
    let steps = ["write", "/results/bandit.sarif", &text, "--", "exit", "2"];
    ws.suite(
        &crashed,
        &probe_suite(&image, &steps, sarif_results("/results/bandit.sarif", None)),
    );

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(&crashed), "failed");
    assert_eq!(run.reason(&crashed), "exit code 2 (expected one of 0, 1)");
    assert!(run.suite(&crashed).get("findings").is_none());
    let doc = roxmltree::Document::parse(&run.junit).unwrap();
    let failure = child(testcase(&doc, &crashed, &crashed), "failure").unwrap();
    assert_eq!(failure.attribute("type"), Some("exit-code"));
}
