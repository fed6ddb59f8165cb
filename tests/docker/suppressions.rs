//! Suppressions end to end against the real Docker engine: the probe writes Bandit's SARIF
//! (B602 high at app/run.py:17, B105 low), `suppressions.toml` accepts some of it, and
//! the run's exit code, run.json, summary, JUnit and merged SARIF must follow. "Today" is
//! fixed with PHALANX_TODAY, so no assertion depends on the clock's date.

use crate::findings_common;
use crate::runs;
use crate::support;

use serde_json::Value;
use support::{Workspace, probe_image, unique};

const TODAY: &str = "2026-05-01";

fn entry(suite: &str, rule: &str, expires: &str) -> String {
    format!(
        "[[suppress]]\nsuite = \"{suite}\"\nrule = \"{rule}\"\nreason = \"accepted for {suite}\"\nowner = \"appsec@example.com\"\nexpires = {expires}\nticket = \"SEC-1\"\n\n"
    )
}

async fn run(ws: &Workspace) -> runs::Run {
    let args = ["run", "--progress", "plain", "--target", "target"];
    let output = ws
        .phalanx(args)
        .env("PHALANX_TODAY", TODAY)
        .output()
        .expect("phalanx runs");
    let run = runs::finished(ws, output);
    runs::assert_nothing_left(run.run_id()).await;
    run
}

fn lines(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect()
}

fn sarif(ws: &Workspace) -> Value {
    serde_json::from_str(&runs::read(&ws.reports_dir().join("results.sarif"))).unwrap()
}

/// The results of the merged SARIF run of `suite`.
fn results<'a>(sarif: &'a Value, suite: &str) -> &'a Vec<Value> {
    sarif["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["automationDetails"]["id"] == suite)
        .unwrap_or_else(|| panic!("no run {suite}"))["results"]
        .as_array()
        .unwrap()
}

fn rule_result<'a>(results: &'a [Value], rule: &str) -> &'a Value {
    results.iter().find(|r| r["ruleId"] == rule).unwrap()
}

#[tokio::test]
async fn suppressions_accept_expire_go_stale_and_can_be_added_from_a_report() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let (accepted, expired) = (unique("accepted"), unique("expired"));
    ws.suite(
        &accepted,
        &findings_common::probe_bandit_suite(&image, |_| {}),
    );
    ws.suite(
        &expired,
        &findings_common::probe_bandit_suite(&image, |_| {}),
    );
    let file = [
        entry(&accepted, "B602", "2026-05-10"), // line 1: in force, expiring in 9 days
        entry(&expired, "B602", "2026-04-30"),  // line 9: expired yesterday
        entry(&accepted, "B999", "2027-01-01"), // line 17: matches nothing: stale
    ]
    .concat();
    std::fs::write(ws.root().join("suppressions.toml"), &file).unwrap();

    let first = run(&ws).await;

    assert_eq!(first.code, 1, "{}", first.stderr);
    assert_eq!(
        first.outcome(&accepted),
        "passed",
        "{}",
        first.reason(&accepted)
    );
    assert_eq!(first.outcome(&expired), "failed");
    assert!(
        first.reason(&expired).contains("B602"),
        "{}",
        first.reason(&expired)
    );
    let findings = &first.suite(&accepted)["findings"];
    assert_eq!(findings["suppressed"]["high"], 1, "reported and counted");
    assert_eq!(findings["suppressed_by"][0]["line"], 1);

    let s = &first.json["suppressions"];
    assert_eq!(s["today"], TODAY);
    assert_eq!(s["suppressed_findings"], 1);
    assert_eq!(lines(&s["applied"]), [1]);
    assert_eq!(s["applied"][0]["owner"], "appsec@example.com");
    assert_eq!(s["applied"][0]["ticket"], "SEC-1");
    assert_eq!(s["applied"][0]["findings"], 1);
    assert_eq!(lines(&s["expired"]), [9]);
    assert_eq!(lines(&s["expiring"]), [1]);
    assert_eq!(lines(&s["stale"]), [17]);
    assert!(
        first
            .stdout
            .contains("suppressions: 1 finding suppressed by")
            && first.stdout.contains("1 expired, 1 expiring, 1 stale")
            && first.stdout.contains("suppressions.toml:17"),
        "{}",
        first.stdout
    );

    // The merged SARIF: an accepted external suppression, and `[]` on the run's others.
    let log = sarif(&ws);
    if let Some(validator) = findings_common::sarif_validator() {
        findings_common::assert_valid_sarif(&validator, &log, "results.sarif");
    }
    let ok = results(&log, &accepted);
    let b602 = rule_result(ok, "B602");
    let suppression = &b602["suppressions"][0];
    assert_eq!(suppression["kind"], "external");
    assert_eq!(suppression["status"], "accepted");
    assert_eq!(
        suppression["justification"],
        format!("accepted for {accepted}")
    );
    assert_eq!(suppression["properties"]["owner"], "appsec@example.com");
    assert_eq!(suppression["properties"]["expires"], "2026-05-10");
    assert_eq!(
        rule_result(ok, "B105")["suppressions"],
        Value::Array(vec![])
    );
    let failing = rule_result(results(&log, &expired), "B602");
    assert!(
        failing.get("suppressions").is_none(),
        "expired entries suppress nothing"
    );

    // JUnit: the accepted rule is skipped, saying who accepted it.
    let junit = runs::read(&ws.reports_dir().join("junit.xml"));
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let case = doc
        .descendants()
        .find(|n| {
            n.attribute("classname") == Some(&accepted) && n.attribute("name") == Some("B602")
        })
        .unwrap();
    let skipped = case
        .children()
        .find(|c| c.has_tag_name("skipped"))
        .expect("skipped");
    let message = skipped.attribute("message").unwrap();
    assert!(
        message.contains("appsec@example.com") && message.contains("accepted for"),
        "{message}"
    );

    // `phalanx suppress` accepts the expired suite's finding from the report, and the
    // next run passes with it.
    let fingerprint = failing["fingerprints"]["phalanx/v1"].as_str().unwrap();
    let suppress = |fp: &str| {
        ws.phalanx([
            "suppress",
            fp,
            "--reason",
            "fixed in the next release",
            "--owner",
            "dev@example.com",
            "--expires",
            "2026-06-01",
        ])
        .env("PHALANX_TODAY", TODAY)
        .output()
        .unwrap()
    };
    let unknown = suppress("00000000000000aa");
    assert_eq!(
        unknown.status.code(),
        Some(2),
        "an unknown fingerprint is an error"
    );
    let added = suppress(fingerprint);
    assert_eq!(
        added.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let now = runs::read(&ws.root().join("suppressions.toml"));
    assert!(now.starts_with(&file), "existing content is kept as it was");
    assert!(
        now.contains("# B602 at ") && now.contains(&format!("suite = \"{expired}\"")),
        "{now}"
    );

    let second = run(&ws).await;

    assert_eq!(second.code, 0, "{}\n{}", second.stderr, second.stdout);
    assert_eq!(second.outcome(&expired), "passed");
    // The appended entry: a blank line, its comment, then the header on line 27.
    assert_eq!(lines(&second.json["suppressions"]["applied"]), [1, 27]);
}

#[tokio::test]
async fn a_broken_suppressions_file_is_a_configuration_error_naming_line_and_key() {
    let ws = Workspace::new();
    ws.suite("never-runs", "image = \"phalanx-test/none:1\"\n");
    let broken =
        "[[suppress]]\nrule = \"B105\"\nreason = \"r\"\nowner = \"o\"\nexpires = \"2027-01-01\"\n";
    std::fs::write(ws.root().join("mine.toml"), broken).unwrap();
    let output = ws
        .phalanx([
            "run",
            "--progress",
            "plain",
            "--target",
            "target",
            "--suppressions",
            "mine.toml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("mine.toml:5:11: key `expires`"), "{stderr}");
}
