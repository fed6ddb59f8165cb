//! `phalanx run --dry-run`: the resolved plan against the real engine, with nothing
//! started, written or recorded.

use crate::runs;
use crate::support;

use runs::probe_suite;
use serde_json::Value;
use support::{Workspace, probe_image, unique};

fn dry_run(ws: &Workspace, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["run", "--target", "target"];
    all.extend_from_slice(args);
    let out = ws.phalanx(&all).output().expect("phalanx runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_plan_names_images_policies_and_order_and_nothing_runs() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let (present, built, missing) = (unique("present"), unique("built"), unique("missing"));
    ws.suite(
        &present,
        &probe_suite(&image, &["exit", "0"], "[policy]\ncap_add = [\"NET_RAW\"]"),
    );
    let never = format!("{}:1", unique("phalanx-test/never"));
    ws.suite(
        &built,
        &format!("image = \"{never}\"\nbuild = \"../nowhere\"\n"),
    );
    ws.suite(&missing, &format!("image = \"{never}-gone\"\n"));

    let (code, stdout, stderr) = dry_run(&ws, &["--dry-run=json", "-j", "3"]);
    assert_eq!(code, Some(0), "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(plan["schema"], 1);
    assert_eq!(plan["jobs"], 3);
    let suite = |name: &str| {
        plan["suites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {plan}"))
            .clone()
    };
    assert_eq!(suite(&present)["image_state"], "present");
    assert_eq!(suite(&present)["policy"]["cap_add"][0], "NET_RAW");
    assert_eq!(suite(&present)["policy"]["read_only"], true);
    assert_eq!(suite(&built)["image_state"], "would-build");
    assert_eq!(suite(&missing)["image_state"], "missing");

    let (code, text, _) = dry_run(&ws, &["--dry-run", "--suite", &present]);
    assert_eq!(code, Some(0));
    assert!(text.contains("dry run: 1 suite(s)"), "{text}");
    assert!(text.contains("cap_add NET_RAW"), "{text}");

    // Nothing ran: no reports, no store, nothing on the engine with the workspace's suites.
    assert!(!ws.reports_dir().join("run.json").exists());
    assert!(
        !ws.root().join(".phalanx/phalanx.db").exists() || {
            // Opening the store for expected durations may create it, but records nothing.
            let runs = ws.phalanx(["runs", "--json"]).output().unwrap();
            serde_json::from_slice::<Value>(&runs.stdout)
                .map(|v| v.as_array().is_some_and(|a| a.is_empty()))
                .unwrap_or(false)
        }
    );
}

#[tokio::test]
async fn an_invalid_selected_suite_file_makes_the_dry_run_exit_2() {
    let ws = Workspace::new();
    ws.suite(&unique("fine"), "image = \"phalanx-test/none:1\"\n");
    ws.suite(&unique("broken"), "image = \"x:1\"\n\nimgae = \"typo\"\n");
    let (code, stdout, stderr) = dry_run(&ws, &["--dry-run"]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("invalid: "), "{stdout}");
    assert!(!ws.reports_dir().join("run.json").exists());
}
