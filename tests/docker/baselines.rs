//! Baselines end to end against the real Docker engine: the probe writes Bandit's SARIF
//! (B602 high at app/run.py:17, B105 low at app/settings.py:4), a first run's
//! results.sarif and run.json become the baseline, and later runs change the SARIF the
//! probe writes: one flaw added, one moved down ten lines, one file renamed, one fixed.
//! The exit code, run.json, summary, JUnit and merged SARIF must follow `--gate new`.

use crate::findings_common;
use crate::runs;
use crate::support;

use serde_json::Value;
use support::{Workspace, probe_image, unique};

fn result_of<'a>(results: &'a mut [Value], rule: &str) -> &'a mut Value {
    results.iter_mut().find(|r| r["ruleId"] == rule).unwrap()
}

fn physical(result: &mut Value) -> &mut Value {
    &mut result["locations"][0]["physicalLocation"]
}

/// B602 ten lines further down (same code), B105's file renamed, and a new B602 in a new
/// file.
fn moved_renamed_and_added(results: &mut Vec<Value>) {
    let b602 = result_of(results, "B602");
    let region = &mut physical(b602)["region"];
    region["startLine"] = Value::from(27);
    region["endLine"] = Value::from(27);
    let mut added = b602.clone();
    let b105 = result_of(results, "B105");
    physical(b105)["artifactLocation"]["uri"] = Value::from("/target/app/config.py");
    let at = physical(&mut added);
    at["artifactLocation"]["uri"] = Value::from("/target/app/jobs.py");
    at["region"]["snippet"]["text"] = Value::from("os.system(command, shell=True)\n");
    results.push(added);
}

async fn run(ws: &Workspace, args: &[&str]) -> runs::Run {
    let mut all = vec!["run", "--progress", "plain", "--target", "target"];
    all.extend_from_slice(args);
    let output = ws.phalanx(&all).output().expect("phalanx runs");
    let run = runs::finished(ws, output);
    runs::assert_nothing_left(run.run_id()).await;
    run
}

fn sarif(ws: &Workspace) -> Value {
    let log = serde_json::from_str(&runs::read(&ws.reports_dir().join("results.sarif"))).unwrap();
    if let Some(validator) = findings_common::sarif_validator() {
        findings_common::assert_valid_sarif(&validator, &log, "results.sarif");
    }
    log
}

/// `(uri, baselineState)` of every result of the suite's run.
fn states(log: &Value, suite: &str) -> Vec<(String, String)> {
    let run = suite_run(log, suite);
    let mut found: Vec<(String, String)> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .trim_start_matches("/target/")
                .to_string();
            (uri, r["baselineState"].as_str().unwrap_or("-").to_string())
        })
        .collect();
    found.sort();
    found
}

fn suite_run<'a>(log: &'a Value, suite: &str) -> &'a Value {
    log["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["automationDetails"]["id"] == suite)
        .unwrap_or_else(|| panic!("no run {suite}"))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The `<testcase>` of `rule` in junit.xml: its failure message, or its system-out.
fn junit_case(ws: &Workspace, suite: &str, rule: &str) -> (Option<String>, String) {
    let junit = runs::read(&ws.reports_dir().join("junit.xml"));
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let case = doc
        .descendants()
        .find(|n| n.attribute("classname") == Some(suite) && n.attribute("name") == Some(rule))
        .unwrap_or_else(|| panic!("no case {suite}.{rule}"));
    let failure = case
        .children()
        .find(|c| c.has_tag_name("failure"))
        .and_then(|f| f.attribute("message"))
        .map(ToString::to_string);
    let out = case
        .children()
        .find(|c| c.has_tag_name("system-out"))
        .and_then(|o| o.text())
        .unwrap_or_default()
        .to_string();
    (failure, out)
}

#[tokio::test]
async fn gate_new_fails_only_on_new_findings_and_lists_fixed_ones() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let suite = unique("bandit");
    ws.suite(&suite, &findings_common::probe_bandit_suite(&image, |_| {}));

    // The first run: no baseline, B602 is high and fails it. Its reports are the baseline.
    let first = run(&ws, &[]).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert!(first.json.get("baseline").is_none());
    let list = first.suite(&suite)["findings"]["list"].as_array().unwrap();
    assert_eq!(list.len(), 2, "run.json lists every finding");
    assert!(list.iter().all(|f| f["fingerprint"].is_string()));
    let base = ws.root().join("base");
    std::fs::create_dir(&base).unwrap();
    for file in ["results.sarif", "run.json"] {
        std::fs::copy(ws.reports_dir().join(file), base.join(file)).unwrap();
    }

    // One flaw added, one moved down ten lines, one file renamed: exactly the added high
    // finding fails; the moved one is unchanged; the renamed one is new (the path is part
    // of the fingerprint) but low, and its old self is absent.
    ws.suite(
        &suite,
        &findings_common::probe_bandit_suite(&image, moved_renamed_and_added),
    );
    let second = run(&ws, &["--baseline", "base/results.sarif", "--gate", "new"]).await;
    assert_eq!(second.code, 1, "{}", second.stderr);
    let reason = second.reason(&suite);
    assert!(
        reason.starts_with("1 new finding at or above high") && reason.contains("app/jobs.py"),
        "{reason}"
    );
    let findings = &second.suite(&suite)["findings"];
    assert_eq!(findings["gate"], "new");
    assert_eq!(findings["blocking"], 1);
    assert_eq!(
        findings["baseline"],
        serde_json::json!({"new": 2, "unchanged": 1, "absent": 1})
    );
    assert_eq!(findings["absent"][0]["path"], "app/settings.py");
    let b = &second.json["baseline"];
    assert_eq!(b["source"], "base/results.sarif");
    assert_eq!(
        (b["new"].clone(), b["absent"].clone()),
        (2.into(), 1.into())
    );
    assert_eq!(second.suite(&suite)["cause"]["gate"], "new");
    let log = sarif(&ws);
    assert_eq!(
        states(&log, &suite),
        pairs(&[
            ("app/config.py", "new"),
            ("app/jobs.py", "new"),
            ("app/run.py", "unchanged"),
        ])
    );
    let absent = &suite_run(&log, &suite)["properties"]["phalanx/absent"];
    assert_eq!(absent[0]["rule"], "B105");
    assert_eq!(absent[0]["baselineState"], "absent");
    let (failure, out) = junit_case(&ws, &suite, "B602");
    let failure = failure.expect("B602 fails");
    assert!(
        failure.starts_with("1 new finding at or above high"),
        "{failure}"
    );
    assert!(!out.contains("passes only because"), "{out}");
    assert!(
        second
            .stdout
            .contains("baseline base/results.sarif: 2 new, 1 unchanged, 1 absent"),
        "{}",
        second.stdout
    );

    // B602 fixed, against the first run's run.json: reported absent, and the run passes.
    ws.suite(
        &suite,
        &findings_common::probe_bandit_suite(&image, |r| r.retain(|r| r["ruleId"] != "B602")),
    );
    let third = run(&ws, &["--baseline", "base/run.json", "--gate", "new"]).await;
    assert_eq!(third.code, 0, "{}\n{}", third.stdout, third.stderr);
    let findings = &third.suite(&suite)["findings"];
    assert_eq!(
        findings["baseline"],
        serde_json::json!({"new": 0, "unchanged": 1, "absent": 1})
    );
    assert_eq!(findings["absent"][0]["rule"], "B602");
    assert_eq!(findings["absent"][0]["severity"], "high");
    assert!(
        third.stdout.contains("1 absent (fixed)") && third.stdout.contains("B602 app/run.py:17"),
        "{}",
        third.stdout
    );
    assert_eq!(
        states(&sarif(&ws), &suite),
        pairs(&[("app/settings.py", "unchanged")])
    );

    // Nothing changed, gate new from phalanx.toml: B602 is high but in the baseline, so
    // the run passes, and its JUnit case says why.
    ws.suite(&suite, &findings_common::probe_bandit_suite(&image, |_| {}));
    ws.project("gate = \"new\"\n");
    let fourth = run(&ws, &["--baseline", "base/results.sarif"]).await;
    assert_eq!(fourth.code, 0, "{}\n{}", fourth.stdout, fourth.stderr);
    let (failure, out) = junit_case(&ws, &suite, "B602");
    assert_eq!(failure, None);
    assert!(
        out.contains("passes only because these findings at or above high are in the baseline"),
        "{out}"
    );
    // Same findings under gate all: the baseline changes nothing but the states.
    let fifth = run(&ws, &["--baseline", "base/results.sarif", "--gate", "all"]).await;
    assert_eq!(fifth.code, 1, "{}", fifth.stderr);
    assert!(
        fifth
            .reason(&suite)
            .starts_with("1 finding at or above high")
    );
}

#[tokio::test]
async fn a_baseline_that_names_nothing_is_a_usage_error() {
    let ws = Workspace::new();
    ws.suite(
        &unique("never"),
        "image = \"phalanx-never-pulled:1\"\n[results]\nformat = \"sarif\"\n",
    );
    let cases = [
        ("missing/results.sarif", "no such file"),
        ("last", "run store"),
        ("branch:main", "run store"),
    ];
    for (reference, says) in cases {
        let output = ws
            .phalanx([
                "run",
                "--progress",
                "plain",
                "--target",
                "target",
                "--baseline",
                reference,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{reference}: {stderr}");
        assert!(
            stderr.contains(reference) && stderr.contains(says),
            "{reference}: {stderr}"
        );
        assert!(
            !ws.reports_dir().join("run.json").exists(),
            "nothing ran, so no reports"
        );
    }
}

#[tokio::test]
async fn a_baseline_from_the_run_store_gates_on_what_is_new_since_that_run() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let suite = unique("bandit");
    ws.suite(&suite, &findings_common::probe_bandit_suite(&image, |_| {}));

    // The first run is recorded in the workspace's store (.phalanx/phalanx.db).
    let first = run(&ws, &[]).await;
    assert_eq!(first.code, 1, "{}", first.stderr);

    // Against `last` (the first run, looked up before this one is recorded), only the
    // added flaw is new; the moved one is unchanged and the renamed one new but low.
    ws.suite(
        &suite,
        &findings_common::probe_bandit_suite(&image, moved_renamed_and_added),
    );
    let second = run(&ws, &["--baseline", "last", "--gate", "new"]).await;
    assert_eq!(second.code, 1, "{}", second.stderr);
    let baseline = &second.json["baseline"];
    assert!(
        baseline["source"]
            .as_str()
            .unwrap()
            .contains(first.run_id()),
        "{baseline}"
    );
    assert_eq!(
        (
            &baseline["new"],
            &baseline["unchanged"],
            &baseline["absent"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(1)),
        "{baseline}"
    );
    assert!(
        second
            .reason(&suite)
            .starts_with("1 new finding at or above"),
        "{}",
        second.reason(&suite)
    );

    // `phalanx show` says what the recorded run was compared with, and how it came out.
    let show = ws
        .phalanx(["show", second.run_id(), "--json"])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&show.stdout).expect("show --json");
    assert_eq!(shown["baseline"]["new"], 2, "{shown}");
    assert_eq!(shown["baseline"]["unchanged"], 1, "{shown}");
    assert_eq!(shown["baseline"]["absent"], 1, "{shown}");
    let text = ws.phalanx(["show", second.run_id()]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("2 new, 1 unchanged, 1 absent (fixed)"),
        "{text}"
    );

    // The same run named by a prefix of its id gives the same comparison; with nothing
    // new since the second run, the gate passes.
    let prefix = &first.run_id()[..6];
    let again = run(&ws, &["--baseline", prefix, "--gate", "new"]).await;
    assert_eq!(again.json["baseline"]["new"], 2, "{}", again.stderr);
    let third = run(&ws, &["--baseline", "last", "--gate", "new"]).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(third.json["baseline"]["new"], 0);
}
