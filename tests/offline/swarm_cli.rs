//! `--engine swarm` before any engine is asked: `phalanx validate --engine swarm` lists each
//! suite's policy gaps and fails while one is not accepted, and `phalanx run --engine swarm`
//! refuses such a suite as invalid (exit 2) without reaching Docker.

use std::path::Path;
use std::process::{Command, Output};

fn phalanx(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phalanx"))
        .args(args)
        .current_dir(dir)
        // Nothing listens there: whatever needs an engine fails instead of using the host's.
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no-engine.sock", dir.display()),
        )
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn both(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

/// A project with a static suite `sast` (placed on workers) and a dynamic suite `dast`.
fn project(phalanx_toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("suites")).unwrap();
    std::fs::write(
        dir.path().join("suites/sast.toml"),
        "image = \"alpine:3\"\ncommand = [\"true\"]\nplacement = [\"node.role == worker\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("phalanx.toml"), phalanx_toml).unwrap();
    dir
}

fn add_dynamic_suite(dir: &Path) {
    std::fs::write(
        dir.join("suites/dast.toml"),
        "image = \"alpine:3\"\n[policy]\nnetwork = \"target\"\n",
    )
    .unwrap();
}

#[test]
fn validate_lists_the_gaps_and_fails_until_the_project_accepts_them() {
    let strict = project("");
    let out = phalanx(strict.path(), &["validate", "--engine", "swarm"]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let listed = stdout(&out);
    assert!(
        listed.contains("sast (suites/sast.toml): refused"),
        "{listed}"
    );
    assert!(
        listed.contains("gap no-new-privileges: not allowed: the service API (1.41) cannot set")
            && listed
                .contains(r#"accept it with allow_gaps = ["no-new-privileges"] under [swarm]"#)
            && listed.contains("gap memory-swap: not allowed"),
        "{listed}"
    );
    assert!(
        both(&out).contains("engine swarm: 1 of 1 suite(s) would be refused"),
        "{}",
        both(&out)
    );

    // The docker engine says nothing new, and a placement is no problem there.
    let docker = phalanx(strict.path(), &["validate"]);
    assert_eq!(docker.status.code(), Some(0), "{}", both(&docker));
    assert_eq!(stdout(&docker), "1 suite(s) valid\n");

    let lenient = project(
        "engine = \"swarm\"\n[swarm]\nplacement = [\"node.labels.scanner == true\"]\n\
         allow_gaps = [\"no-new-privileges\", \"memory-swap\", \"network-none\"]\n",
    );
    // `engine` in phalanx.toml chooses swarm without the flag.
    let out = phalanx(lenient.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", both(&out));
    let listed = stdout(&out);
    assert!(
        listed.contains("sast (suites/sast.toml): runs")
            && listed.contains("gap no-new-privileges: allowed")
            && listed.contains("gap memory-swap: allowed")
            && listed.contains("engine swarm: every suite can run"),
        "{listed}"
    );
    // The flag overrides the file.
    let out = phalanx(lenient.path(), &["validate", "--engine", "docker"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "1 suite(s) valid\n")
    );

    // What swarm cannot run at all is refused whatever the project accepts.
    add_dynamic_suite(lenient.path());
    let out = phalanx(lenient.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        stdout(&out).contains("dast (suites/dast.toml): refused")
            && stdout(&out).contains("unsupported: network = \"target\""),
        "{}",
        both(&out)
    );
}

#[test]
fn a_bad_swarm_table_is_a_configuration_error_naming_its_line() {
    let dir = project("[swarm]\nregistry = \"https://10.9.0.1:5000\"\n");
    let out = phalanx(dir.path(), &["validate", "--engine", "swarm"]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(
        both(&out).contains("phalanx.toml:2:12: key `swarm.registry`: expected a registry address"),
        "{}",
        both(&out)
    );
}

#[test]
fn a_swarm_run_refuses_a_suite_with_a_gap_as_invalid_without_an_engine() {
    let dir = project("[swarm]\nallow_gaps = [\"memory-swap\", \"network-none\"]\n");
    let out = phalanx(
        dir.path(),
        &[
            "run",
            "--engine",
            "swarm",
            "--no-store",
            "--progress",
            "plain",
            "--reports",
            "out",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let said = both(&out);
    assert!(
        said.contains("error: suites/sast.toml: the swarm engine cannot enforce this suite's policy: gap `no-new-privileges`")
            && said.contains(r#"allow_gaps = ["no-new-privileges", "memory-swap", "network-none"] under [swarm]"#),
        "{said}"
    );
    assert!(!said.contains("gap `memory-swap`"), "accepted: {said}");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/run.json")).unwrap()).unwrap();
    assert_eq!(run["exit_code"], 2);
    assert_eq!(run["invalid_suites"][0]["name"], "sast");
    assert_eq!(
        run["invalid_suites"][0]["errors"].as_array().unwrap().len(),
        1
    );
    assert_eq!(run["suites"].as_array().unwrap().len(), 0);
}
