//! Phalanx in its own image (`docker/phalanx/Dockerfile`, `phalanx images --self`), run
//! the way a CI job runs it: a container of the image, the host's socket mounted, the
//! socket's group added, scanning a folder that only that container has. The engine cannot
//! see that folder at its path, so `--target-mode auto` must pick `copy`.
//!
//! The image needs a statically linked phalanx. This test builds one with cargo in its own
//! target directory (`<target>/phalanx-image`, debug without debuginfo, crt-static; a
//! static-pie of 36 MB): the first time on a machine that is a full build of the
//! dependencies, about 2 minutes of CPU (6.5 minutes of wall time on this shared, heavily
//! loaded 2-core machine); afterwards only the crate itself. The test then takes about 40 s
//! (image build from the cached base, two runs). A release build would take several times
//! longer for nothing this test checks. Only this test builds it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::runs;
use crate::support;

const TRIPLE: &str = "x86_64-unknown-linux-gnu";
const SOCKET: &str = "/var/run/docker.sock";

/// Builds phalanx as a static binary; returns its path.
fn static_phalanx() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let target = support::target_dir().join("phalanx-image");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--bin", "phalanx", "--target", TRIPLE])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // It would take precedence over RUSTFLAGS and drop the static linking.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // Debuginfo would make the binary, and the image, several times larger.
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_PROFILE_DEV_STRIP", "debuginfo")
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running cargo to build a static phalanx");
    assert!(
        out.status.success(),
        "building a static phalanx failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join(TRIPLE).join("debug/phalanx")
}

/// The docker CLI; panics with its stderr unless it succeeds.
fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

/// The test's container and image tag, removed also when an assertion fails.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.container]);
        let _ = docker_output(&["rmi", &self.image]);
    }
}

#[tokio::test]
async fn phalanx_in_its_image_scans_a_folder_only_its_container_has() {
    let probe = support::probe_image().await;
    let binary = static_phalanx();
    let tag = support::unique("t");
    let cleanup = Cleanup {
        container: support::unique("phalanx-test-self"),
        image: format!("phalanx-test/phalanx:{tag}"),
    };
    let reports = tempfile::tempdir().unwrap();

    // Built by the static binary itself, from this checkout; the base image may have to
    // be bootstrapped first.
    let built = {
        let _images = support::image_build_lock();
        Command::new(&binary)
            .args(["images", "--self", "--image", &cleanup.image, "--reports"])
            .arg(reports.path())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("phalanx images --self runs")
    };
    assert!(
        built.status.success(),
        "phalanx images --self:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );

    let gid = std::fs::metadata(SOCKET).unwrap().gid().to_string();
    let volume = format!("{SOCKET}:{SOCKET}");
    docker(&[
        "run",
        "-d",
        "--name",
        &cleanup.container,
        "--group-add",
        &gid,
        "-v",
        &volume,
        "--entrypoint",
        "sleep",
        &cleanup.image,
        "600",
    ]);
    assert_eq!(
        docker(&["exec", &cleanup.container, "id", "-u"]).trim(),
        "10001"
    );

    // A folder, and a suite reading it, that exist only inside the container.
    let target = format!("/tmp/{}", support::unique("phx-only"));
    assert!(!Path::new(&target).exists(), "{target} is on the host too");
    let suite = runs::probe_suite(&probe, &["cat", "/target/only-here.txt"], "");
    let setup = format!(
        "mkdir -p /tmp/w/suites {target} && printf '%s' \"$SUITE\" > /tmp/w/suites/reader.toml \
         && echo 'only in the container' > {target}/only-here.txt"
    );
    let suite_env = format!("SUITE={suite}");
    docker(&[
        "exec",
        "-e",
        &suite_env,
        &cleanup.container,
        "sh",
        "-c",
        &setup,
    ]);

    let run = docker_output(&[
        "exec",
        "-w",
        "/tmp/w",
        &cleanup.container,
        "phalanx",
        "run",
        "--progress",
        "plain",
        "--target",
        &target,
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    let json = docker_output(&["exec", &cleanup.container, "cat", "/tmp/w/reports/run.json"]);
    assert!(json.status.success(), "no run.json:\n{stderr}");
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert_eq!(
        json["target"]["mode"], "copy",
        "{}\n{stderr}",
        json["target"]
    );
    assert!(stderr.contains("phalanx: target: copy"), "{stderr}");
    let log = docker(&[
        "exec",
        &cleanup.container,
        "cat",
        "/tmp/w/reports/logs/reader.log",
    ]);
    assert!(log.contains("only in the container"), "{log}");
    let run_id = json["run_id"].as_str().unwrap().to_string();
    runs::assert_nothing_left(&run_id).await;

    // Out of the box: the bundled suites from the default working directory.
    let key = format!("-----BEGIN {} PRIVATE KEY-----\\nMIIE\\n", "RSA");
    let plant = format!("printf '%b' '{key}' > {target}/deploy.pem");
    docker(&["exec", &cleanup.container, "sh", "-c", &plant]);
    let bundled = {
        let _images = support::image_build_lock();
        docker_output(&[
            "exec",
            &cleanup.container,
            "phalanx",
            "run",
            "--progress",
            "plain",
            "--target",
            &target,
            "--suite",
            "private-keys",
        ])
    };
    let stderr = String::from_utf8_lossy(&bundled.stderr).into_owned();
    assert_eq!(
        bundled.status.code(),
        Some(1),
        "the key is a finding:\n{stderr}"
    );
    let hits = docker(&[
        "exec",
        &cleanup.container,
        "cat",
        "/opt/phalanx/reports/results/private-keys/hits.txt",
    ]);
    assert!(hits.contains("deploy.pem:1: private key"), "{hits}");
    let json = docker(&[
        "exec",
        &cleanup.container,
        "cat",
        "/opt/phalanx/reports/run.json",
    ]);
    let json: Value = serde_json::from_str(&json).unwrap();
    runs::assert_nothing_left(json["run_id"].as_str().unwrap()).await;
    drop(cleanup);
}
