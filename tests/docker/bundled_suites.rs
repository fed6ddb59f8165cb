//! The bundled quick checks (`suites/private-keys.toml` and friends) through `phalanx run`
//! itself, against the real engine: what the README's main command does, on a target with
//! a planted problem and on a clean one. Their image is built on first use.

use crate::support;

use serde_json::Value;
use support::Workspace;

const BUNDLED: [&str; 3] = ["private-keys", "file-permissions", "merge-markers"];

fn run_bundled(ws: &Workspace) -> (i32, Value) {
    let suites = concat!(env!("CARGO_MANIFEST_DIR"), "/suites");
    let mut args = vec![
        "run",
        "--progress",
        "plain",
        "--suites",
        suites,
        "--target",
        "target",
    ];
    for name in BUNDLED {
        args.extend(["--suite", name]);
    }
    // The run builds the suites' image (and the base image) when missing.
    let _images = support::image_build_lock();
    let output = ws.phalanx(&args).output().expect("phalanx runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json = std::fs::read_to_string(ws.reports_dir().join("run.json"))
        .unwrap_or_else(|e| panic!("no run.json ({e}):\n{stderr}"));
    (
        output.status.code().unwrap(),
        serde_json::from_str(&json).unwrap(),
    )
}

fn outcome<'a>(run: &'a Value, suite: &str) -> &'a str {
    run["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == suite)
        .and_then(|s| s["outcome"].as_str())
        .unwrap_or_else(|| panic!("no {suite} in {run}"))
}

#[tokio::test]
async fn a_planted_private_key_fails_only_the_private_keys_suite() {
    let ws = Workspace::new();
    // Assembled here so that scanning this repository never finds a key in the test itself.
    let key = format!("-----BEGIN {} PRIVATE KEY-----\nMIIE\n", "RSA");
    ws.target_file("config/deploy.pem", &key);
    ws.target_file("src/app.py", "print('hello')\n");

    let (code, run) = run_bundled(&ws);

    assert_eq!(code, 1, "{run}");
    assert_eq!(outcome(&run, "private-keys"), "failed");
    assert_eq!(outcome(&run, "file-permissions"), "passed");
    assert_eq!(outcome(&run, "merge-markers"), "passed");
    let hits =
        std::fs::read_to_string(ws.reports_dir().join("results/private-keys/hits.txt")).unwrap();
    assert!(
        hits.contains("config/deploy.pem:1: private key (RSA PRIVATE KEY)"),
        "{hits}"
    );
    assert!(
        !hits.contains("MIIE"),
        "secrets are located, never printed: {hits}"
    );
}

#[tokio::test]
async fn a_clean_target_passes_every_bundled_suite() {
    let ws = Workspace::new();
    ws.target_file("src/app.py", "print('hello')\n");
    ws.target_file("README.md", "# A clean project\n");

    let (code, run) = run_bundled(&ws);

    assert_eq!(code, 0, "{run}");
    for name in BUNDLED {
        assert_eq!(outcome(&run, name), "passed", "{name}");
    }
}
