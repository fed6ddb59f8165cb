//! Containers prepared ahead of time for queued suites, against the real engine: a suite
//! that gets its slot uses its prepared container, and the prepared containers of suites
//! that never start (here: `--fail-fast`) are removed with the run.

use crate::support;

use serde_json::Value;
use support::{Workspace, probe_image, unique};

#[tokio::test]
async fn prepared_containers_of_suites_that_never_start_are_removed() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let prefix = unique("prep");
    // Names sort in plan order; without history every suite has the same timeout, so they
    // start in that order. Two slots: `a` fails after 4 s; `b` ends at once, and while `c`
    // runs, `d` and `e` wait with prepared containers until `a` stops the run.
    let suites = [
        ("a", r#""sleep", "4", "--", "exit", "1""#),
        ("b", r#""exit", "0""#),
        ("c", r#""sleep", "30""#),
        ("d", r#""exit", "0""#),
        ("e", r#""exit", "0""#),
    ];
    for (name, steps) in suites {
        ws.suite(
            &format!("{prefix}-{name}"),
            &format!("image = {image:?}\ncommand = [\"/probe\", {steps}]\n"),
        );
    }
    let output = ws
        .phalanx([
            "run",
            "--progress",
            "none",
            "--target",
            "target",
            "-j",
            "2",
            "--fail-fast",
        ])
        .env("PHALANX_TIMINGS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(ws.reports_dir().join("run.json")).unwrap())
            .unwrap();
    let run_id = json["run_id"].as_str().unwrap();
    assert!(support::containers_with_label(run_id).await.is_empty());
    assert!(support::volumes_with_label(run_id).await.is_empty());
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let outcome = |name: &str| {
        json["suites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == format!("{prefix}-{name}"))
            .map(|s| s["outcome"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(outcome("a"), "failed");
    assert_eq!(outcome("b"), "passed");
    assert_eq!(outcome("c"), "skipped");
    assert_eq!(outcome("d"), "skipped");
    assert_eq!(outcome("e"), "skipped");
    // a, b and c ran; d (at least) was created ahead of time and never started.
    let created = stderr.matches("phalanx-timing create ").count();
    let started = stderr.matches("phalanx-timing start ").count();
    assert_eq!(started, 3, "{stderr}");
    assert!(created > started, "nothing was prepared:\n{stderr}");
}
