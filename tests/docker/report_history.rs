//! report.html and report.md with history, end to end against the real Docker engine:
//! two runs of one target (the probe writes Bandit's SARIF; a B602 flaw is added in
//! `app/jobs.py` before the second), recorded in the workspace's own run store, with a
//! suppressions entry about to expire. The second run's pages show the new finding, the
//! trend of both runs and the accepted risk; `phalanx report last~1` draws the first
//! run's pages again from the store. "Today" is fixed with PHALANX_TODAY.

use crate::findings_common;
use crate::runs;
use crate::support;

use serde_json::Value;
use support::{Workspace, probe_image, unique};

const TODAY: &str = "2026-05-01";

/// A second B602, in a file of its own: a new fingerprint.
fn add_flaw(results: &mut Vec<Value>) {
    let mut added = results
        .iter()
        .find(|r| r["ruleId"] == "B602")
        .unwrap()
        .clone();
    let at = &mut added["locations"][0]["physicalLocation"];
    at["artifactLocation"]["uri"] = Value::from("/target/app/jobs.py");
    at["region"]["snippet"]["text"] = Value::from("os.system(command, shell=True)\n");
    results.push(added);
}

fn phalanx(ws: &Workspace, args: &[&str]) -> std::process::Output {
    ws.phalanx(args)
        .env("PHALANX_TODAY", TODAY)
        .output()
        .expect("phalanx runs")
}

async fn run(ws: &Workspace) -> runs::Run {
    let output = phalanx(ws, &["run", "--progress", "plain", "--target", "target"]);
    let run = runs::finished(ws, output);
    runs::assert_nothing_left(run.run_id()).await;
    run
}

fn section<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}"));
    let rest = &page[start..];
    &rest[..rest.find("</section>").unwrap()]
}

#[tokio::test]
async fn the_second_run_shows_what_is_new_the_trend_and_accepted_risk() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let name = unique("bandit");
    ws.suite(&name, &findings_common::probe_bandit_suite(&image, |_| {}));
    let risk = format!(
        "[[suppress]]\nsuite = \"{name}\"\nrule = \"B105\"\nreason = \"test fixture password\"\nowner = \"appsec@example.com\"\nexpires = 2026-05-06\nticket = \"SEC-7\"\n"
    );
    std::fs::write(ws.root().join("suppressions.toml"), risk).unwrap();

    let first = run(&ws).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    let first_md = runs::read(&ws.reports_dir().join("report.md"));
    assert!(
        first_md.contains("No baseline: first run of this target."),
        "{first_md}"
    );

    ws.suite(
        &name,
        &findings_common::probe_bandit_suite(&image, add_flaw),
    );
    let second = run(&ws).await;
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(!second.stderr.contains("warning"), "{}", second.stderr);

    let html = runs::read(&ws.reports_dir().join("report.html"));
    assert!(html.contains("1 new since the baseline"), "{html}");
    let changes = section(&html, "changes");
    assert!(changes.contains(first.run_id()), "{changes}");
    assert!(changes.contains("app/jobs.py"), "{changes}");
    let trend = section(&html, "trend");
    assert!(trend.contains("The last 2 runs of this target"), "{trend}");
    assert!(trend.contains(first.run_id()) && trend.contains(second.run_id()));
    let risk = section(&html, "risk");
    for shown in [
        "B105",
        "appsec@example.com",
        "test fixture password",
        "SEC-7",
        "2026-05-06",
        "expiring",
    ] {
        assert!(risk.contains(shown), "{shown} in {risk}");
    }

    let md = runs::read(&ws.reports_dir().join("report.md"));
    assert!(md.contains("### What changed since run "), "{md}");
    assert!(md.contains("| new | 0 | 1 | 0 | 0 | 0 | 1 |"), "{md}");
    assert!(md.contains("app/jobs.py"), "{md}");
    assert!(md.contains("**Trend** (last 2 runs"), "{md}");
    assert!(md.contains("### Suppressions expiring or expired"), "{md}");
    assert!(md.contains("| expiring |"), "{md}");

    // The first run's pages again, from the store alone.
    let (old_html, old_md) = (ws.root().join("old.html"), ws.root().join("old.md"));
    let out = phalanx(
        &ws,
        &[
            "report",
            "last~1",
            "--html",
            old_html.to_str().unwrap(),
            "--markdown",
            old_md.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let page = runs::read(&old_html);
    assert!(page.contains(first.run_id()) && !page.contains(second.run_id()));
    assert!(page.contains("Rebuilt from the run store"));
    assert!(page.contains("No baseline: first run of this target."));
    assert!(
        page.contains("app/run.py"),
        "the stored findings are listed"
    );
    let text = runs::read(&old_md);
    assert!(text.contains("FAILED (exit code 1)"), "{text}");

    // Against a named run: the second compared with itself has nothing new.
    let out = phalanx(
        &ws,
        &[
            "report",
            "last",
            "--baseline",
            "last",
            "--html",
            old_html.to_str().unwrap(),
            "--markdown",
            old_md.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(runs::read(&old_md).contains("No new finding."));

    // Without the store there is nothing to compare with or to draw.
    let output = phalanx(
        &ws,
        &[
            "run",
            "--progress",
            "plain",
            "--target",
            "target",
            "--no-store",
        ],
    );
    let off = runs::finished(&ws, output);
    runs::assert_nothing_left(off.run_id()).await;
    let md = runs::read(&ws.reports_dir().join("report.md"));
    assert!(md.contains("No baseline: no run store is in use."), "{md}");
    assert!(!md.contains("**Trend**"), "{md}");
    let html = runs::read(&ws.reports_dir().join("report.html"));
    assert!(section(&html, "trend").contains("no run store is in use"));

    let missing = phalanx(&ws, &["report", "last~5"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("last~5"));
}
