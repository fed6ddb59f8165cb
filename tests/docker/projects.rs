//! `phalanx run --project NAME`: the project's target, suites and limits, as the server
//! would run it. A suite asking for more than the project allows is refused by key; the
//! others run; the run is recorded under the project's name.

use phalanx::store::{RunFilter, Store};

use crate::runs::{assert_nothing_left, finished, probe_suite};
use crate::support::{Workspace, probe_image, unique};

const PROJECT: &str = "[store]\npath = \"phalanx.db\"\n\n[projects.shop]\ntarget = \"target\"\n\n[projects.shop.limits]\nallow_network = [\"none\"]\nmax_memory = \"1g\"\n";

#[tokio::test]
async fn a_project_run_refuses_suites_over_its_limits_and_records_its_name() {
    let image = probe_image().await;
    let ws = Workspace::new();
    ws.project(PROJECT);
    let (fine, greedy) = (unique("proj-fine"), unique("proj-greedy"));
    ws.suite(&fine, &probe_suite(&image, &["print", "ok"], ""));
    let greedy_policy = "[policy]\nnetwork = \"egress\"\nmemory = \"2g\"";
    ws.suite(
        &greedy,
        &probe_suite(&image, &["print", "ok"], greedy_policy),
    );

    let output = ws
        .phalanx(["run", "--progress", "plain", "--project", "shop"])
        .output()
        .unwrap();
    let run = finished(&ws, output);

    assert_eq!(
        run.code, 2,
        "a refused suite is a configuration error: {}",
        run.stderr
    );
    assert_eq!(run.outcome(&fine), "passed");
    let invalid = run.json["invalid_suites"].as_array().unwrap();
    let refused = invalid
        .iter()
        .find(|i| i["name"] == greedy.as_str())
        .unwrap();
    let errors = refused["errors"].to_string();
    assert!(
        errors.contains("policy.network = \\\"egress\\\" is more than project `shop` allows"),
        "{errors}"
    );
    assert!(errors.contains("policy.memory"), "{errors}");
    let store = Store::open_existing(&ws.root().join("phalanx.db")).unwrap();
    let runs = store.runs(&RunFilter::default()).unwrap();
    assert_eq!(runs[0].project.as_deref(), Some("shop"));
    assert_eq!(runs[0].target, ws.target_dir().canonicalize().unwrap());
    assert_nothing_left(run.run_id()).await;
}

#[test]
fn an_unknown_project_or_a_target_beside_one_is_a_usage_error() {
    let ws = Workspace::new();
    ws.project(PROJECT);
    let unknown = ws.phalanx(["run", "--project", "shap"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("unknown project `shap`; phalanx.toml has shop"),
        "{stderr}"
    );
    let both = ws
        .phalanx(["run", "--project", "shop", "--target", "elsewhere"])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("--target cannot be combined with --project shop"),
        "{stderr}"
    );
}
