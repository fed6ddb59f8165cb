//! Against the real Docker engine: makes the base image without a registry, builds
//! `docker/basic-checks` through `build_image`, and runs every bundled suite's command in a
//! hardened container against a target with planted problems, a clean one and an
//! unreadable one. The first run bootstraps Debian (a minute or two); later runs reuse it.

use crate::support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use phalanx::engine::EngineError;
use phalanx::engine::base::{BASE_IMAGE, build_image, ensure_base_image};

const IMAGE: &str = "phalanx/basic-checks:2";

async fn docker() -> Option<Docker> {
    let connected = match Docker::connect_with_defaults() {
        Ok(docker) => docker.negotiate_version().await,
        Err(e) => Err(e),
    };
    match connected {
        Ok(docker) if docker.ping().await.is_ok() => Some(docker),
        Ok(_) => None,
        Err(e) => {
            eprintln!("skipping: the Docker engine is not reachable ({e})");
            None
        }
    }
}

/// Unwraps, or fails with the end of the build log (the temp dir holding it is removed).
fn or_show_log(result: Result<(), EngineError>, log: &Path) {
    if let Err(e) = result {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!("{e}\n--- end of the build log ---\n{}", tail.join("\n"));
    }
}

/// One bundled suite, read straight from its TOML (independent of the config module).
struct BundledSuite {
    name: String,
    command: Vec<String>,
    user: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled suites that run `docker/basic-checks` (the real scanners' suites have their
/// own images and are tested in `e2e_scanners.rs`).
fn bundled_suites() -> Vec<BundledSuite> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo().join("suites"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| {
            let text = fs::read_to_string(p).unwrap();
            let table: toml::Table = toml::from_str(&text).unwrap();
            table.get("build").and_then(|b| b.as_str()) == Some("../docker/basic-checks")
        })
        .collect();
    files.sort();
    files.iter().map(|f| read_suite(f)).collect()
}

fn read_suite(file: &Path) -> BundledSuite {
    let table: toml::Table = toml::from_str(&fs::read_to_string(file).unwrap()).unwrap();
    let text = |v: &toml::Value| v.as_str().unwrap().to_string();
    assert_eq!(table["image"].as_str(), Some(IMAGE), "{}", file.display());
    assert_eq!(table["build"].as_str(), Some("../docker/basic-checks"));
    assert_eq!(table["results"]["format"].as_str(), Some("exit-code"));
    assert_eq!(table["policy"]["network"].as_str(), Some("none"));
    assert_eq!(table["policy"]["read_only"].as_bool(), Some(true));
    let user = text(&table["policy"]["user"]);
    assert!(
        !user.starts_with("0:") && user != "0",
        "suites must not run as root"
    );
    BundledSuite {
        name: text(&table["name"]),
        command: table["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect(),
        user,
    }
}

/// What one container run produced.
struct Run {
    code: i64,
    stdout: String,
    stderr: String,
    hits: String,
}

/// Runs `command` the way the engine does: non-root, read-only rootfs, no capabilities,
/// no network, `/tmp` tmpfs, the target read-only at `/target`, `/results` writable.
async fn run_check(docker: &Docker, suite: &BundledSuite, target: &Path) -> Run {
    let results = tempfile::tempdir().unwrap();
    fs::set_permissions(results.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let bind = |src: &Path, dst: &str, read_only| Mount {
        source: Some(src.display().to_string()),
        target: Some(dst.into()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(suite.command.clone()),
        user: Some(suite.user.clone()),
        labels: Some(HashMap::from([(
            "phalanx.test".into(),
            "base_image".into(),
        )])),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            mounts: Some(vec![
                bind(target, "/target", true),
                bind(results.path(), "/results", false),
            ]),
            ..support::hardened::host_config()
        }),
        ..Default::default()
    };
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .unwrap()
        .id;
    docker.start_container(&id, None).await.unwrap();
    let (stdout, stderr) = collect_logs(docker, &id).await;
    let code = wait(docker, &id).await;
    let remove = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    docker.remove_container(&id, Some(remove)).await.unwrap();
    let hits = fs::read_to_string(results.path().join("hits.txt")).unwrap_or_default();
    Run {
        code,
        stdout,
        stderr,
        hits,
    }
}

async fn collect_logs(docker: &Docker, id: &str) -> (String, String) {
    let options = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let (mut out, mut err) = (String::new(), String::new());
    let mut logs = docker.logs(id, Some(options));
    while let Some(frame) = logs.next().await {
        match frame.unwrap() {
            bollard::container::LogOutput::StdOut { message } => {
                out.push_str(&String::from_utf8_lossy(&message))
            }
            other => err.push_str(&other.to_string()),
        }
    }
    (out, err)
}

async fn wait(docker: &Docker, id: &str) -> i64 {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    match docker.wait_container(id, Some(options)).next().await {
        Some(Ok(response)) => response.status_code,
        // bollard reports a non-zero exit as an error.
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => code,
        other => panic!("waiting for {id}: {other:?}"),
    }
}

fn write(dir: &Path, rel: &str, text: &str, mode: u32) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A target readable by any uid (temp dirs are 0700), like a normal checkout.
fn target() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    write(dir.path(), "README.md", "# demo\n\nTitle\n=======\n", 0o644);
    write(dir.path(), "src/main.sh", "#!/bin/sh\necho hi\n", 0o755);
    dir
}

/// Secrets and conflict markers are assembled at run time so that scanning this
/// repository (or its test binaries) never finds them.
fn planted_target() -> tempfile::TempDir {
    let dir = target();
    let pem = format!("-----BEGIN {} PRIVATE KEY-----", "RSA");
    let key_id = format!("AKIA{}", "Q7EXAMPLEKEYID42");
    write(
        dir.path(),
        "deploy/id_rsa",
        &format!("{pem}\nMIIEabc\n"),
        0o644,
    );
    write(
        dir.path(),
        "app/settings.py",
        &format!("DEBUG = 1\nKEY = \"{key_id}\"\n"),
        0o644,
    );
    let (ours, theirs) = ("<".repeat(7), ">".repeat(7));
    let merge = format!("a\n{ours} HEAD\nb\n=======\nc\n{theirs} topic\n");
    write(dir.path(), "src/lib.txt", &merge, 0o644);
    write(dir.path(), "tmp/open.log", "x\n", 0o666);
    write(dir.path(), "bin/helper", "#!/bin/sh\n", 0o4755);
    dir
}

fn expected_findings(suite: &str) -> &'static [&'static str] {
    match suite {
        "private-keys" => &[
            "app/settings.py:2: AWS access key id (AKIA...ID42)",
            "deploy/id_rsa:1: private key (RSA PRIVATE KEY)",
        ],
        "file-permissions" => &[
            "bin/helper: setuid file (mode 4755)",
            "tmp/open.log: world-writable file (mode 666)",
        ],
        "merge-markers" => &[
            "src/lib.txt:2: merge conflict marker <<<<<<<",
            "src/lib.txt:6: merge conflict marker >>>>>>>",
        ],
        other => panic!("no expectations for bundled suite `{other}`; add them here"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn base_image_builds_and_bundled_checks_work() {
    let Some(docker) = docker().await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("build.log");
    let context = repo().join("docker/basic-checks");

    // Other tests' Phalanx runs bootstrap the base too, in their own processes.
    let _images = support::image_build_lock();
    // Two suites needing the base at once must share one bootstrap.
    let started = Instant::now();
    let (a, b) = tokio::join!(
        ensure_base_image(&docker, &context, &log),
        ensure_base_image(&docker, &context, &log)
    );
    or_show_log(a, &log);
    or_show_log(b, &log);
    eprintln!("base image ready in {:.1?}", started.elapsed());
    assert!(docker.inspect_image(BASE_IMAGE).await.is_ok());

    let started = Instant::now();
    or_show_log(build_image(&docker, &context, IMAGE, &log).await, &log);
    eprintln!("{IMAGE} built in {:.1?}", started.elapsed());

    let suites = bundled_suites();
    assert_eq!(suites.len(), 3);
    let (planted, clean) = (planted_target(), target());
    for suite in &suites {
        let run = run_check(&docker, suite, planted.path()).await;
        let expected = expected_findings(&suite.name);
        assert_eq!(run.code, 1, "{}: {}{}", suite.name, run.stdout, run.stderr);
        assert_eq!(
            run.stdout.lines().collect::<Vec<_>>(),
            expected,
            "{}",
            suite.name
        );
        assert_eq!(
            run.hits, run.stdout,
            "{}: hits.txt lists the findings",
            suite.name
        );
        assert!(
            !run.stdout.contains("Q7EXAMPLEKEYID42"),
            "secrets are never printed"
        );

        let run = run_check(&docker, suite, clean.path()).await;
        assert_eq!(run.code, 0, "{}: {}{}", suite.name, run.stdout, run.stderr);
        assert_eq!((run.stdout.as_str(), run.hits.as_str()), ("", ""));
    }
}

/// A scan that could not read everything is not clean: exit 2, naming what it missed.
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_files_are_an_error_not_a_pass() {
    let Some(docker) = docker().await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let context = repo().join("docker/basic-checks");
    let log = logs.path().join("build.log");
    or_show_log(build_image(&docker, &context, IMAGE, &log).await, &log);
    let dir = target();
    write(dir.path(), "private/notes.txt", "secret\n", 0o600);
    let suite = read_suite(&repo().join("suites/private-keys.toml"));
    let run = run_check(&docker, &suite, dir.path()).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("private/notes.txt"), "{}", run.stderr);
}

/// A failing build names the image, quotes the last real output line and points to the log.
#[tokio::test(flavor = "multi_thread")]
async fn failed_build_says_why() {
    let Some(docker) = docker().await else {
        return;
    };
    let context = tempfile::tempdir().unwrap();
    let dockerfile = format!("FROM {BASE_IMAGE}\nRUN echo phalanx-clue-4711 && exit 3\n");
    fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    let log = context.path().join("logs/build.log");
    let err = build_image(&docker, context.path(), "phalanx/test-broken:1", &log)
        .await
        .unwrap_err();
    match &err {
        EngineError::Build {
            image,
            message,
            log: at,
        } => {
            assert_eq!(image, "phalanx/test-broken:1");
            assert!(message.contains("phalanx-clue-4711"), "{message}");
            assert!(message.contains("non-zero code: 3"), "{message}");
            assert_eq!(at, &log);
        }
        other => panic!("expected a build error, got {other}"),
    }
    assert!(
        fs::read_to_string(&log)
            .unwrap()
            .contains("phalanx-clue-4711")
    );
}
