//! Checks the test support itself against the real engine: the probe image imports and runs
//! hardened, `ignore-term` really outlives SIGTERM under docker-init, and Docker's archive
//! layout is what `collect::extract_results` expects.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};
use phalanx::collect::{CaptureLimits, ExtractLimits, OutputCapture, extract_results};
use phalanx::engine::{EngineError, LogChunk, RESULTS_DIR, RUN_LABEL, TARGET_DIR};
use support::{
    Workspace, containers_with_label, probe_image, remove_labelled, unique, volumes_with_label,
};

/// The hardened policy from DESIGN.md, with the probe's command.
fn hardened(image: &str, cmd: &[&str], run_id: &str, target: &Path) -> ContainerCreateBody {
    let labels = HashMap::from([(RUN_LABEL.to_string(), run_id.to_string())]);
    ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        user: Some(support::hardened::user()),
        tty: Some(false),
        labels: Some(labels.clone()),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:{TARGET_DIR}:ro", target.display())]),
            mounts: Some(vec![Mount {
                target: Some(RESULTS_DIR.into()),
                typ: Some(MountType::VOLUME),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(labels),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..support::hardened::host_config()
        }),
        ..Default::default()
    }
}

async fn create_started(docker: &Docker, body: ContainerCreateBody) -> String {
    let name = unique("phalanx-smoke");
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let id = docker
        .create_container(Some(options), body)
        .await
        .expect("create")
        .id;
    docker.start_container(&id, None).await.expect("start");
    id
}

/// Exit code once the container is not running (bollard reports non-zero codes as errors).
async fn wait_exit(docker: &Docker, id: &str) -> i64 {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    match docker.wait_container(id, Some(options)).next().await {
        Some(Ok(r)) => r.status_code,
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => code,
        other => panic!("waiting for {id}: {other:?}"),
    }
}

/// Whole output of a container, as Phalanx's engine will hand it to `OutputCapture`.
fn log_chunks(docker: &Docker, id: &str, follow: bool) -> impl futures::Stream<Item = LogChunk> {
    let options = LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .build();
    docker
        .logs(id, Some(options))
        .filter_map(|frame| async move {
            match frame.expect("reading logs") {
                LogOutput::StdOut { message } => Some(LogChunk::Stdout(message)),
                LogOutput::StdErr { message } => Some(LogChunk::Stderr(message)),
                _ => None,
            }
        })
}

async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    docker
        .remove_container(id, Some(options))
        .await
        .expect("remove");
}

#[tokio::test]
async fn probe_runs_hardened_and_reports_its_sandbox() {
    let image = probe_image().await;
    let docker = support::docker().await;
    let ws = Workspace::new();
    ws.target_file("app/main.py", "print('hi')\n");
    let run = unique("smoke-policy");
    let cmd = [
        "/probe",
        "policy-report",
        "-",
        "--",
        "print",
        "hello",
        "--",
        "eprint",
        "oops",
    ];
    let id = create_started(&docker, hardened(&image, &cmd, &run, &ws.target_dir())).await;
    assert_eq!(wait_exit(&docker, &id).await, 0);

    let chunks: Vec<LogChunk> = log_chunks(&docker, &id, false).collect().await;
    let text = |want_stdout: bool| -> String {
        let bytes: Vec<u8> = chunks
            .iter()
            .filter_map(|c| match c {
                LogChunk::Stdout(b) if want_stdout => Some(b.to_vec()),
                LogChunk::Stderr(b) if !want_stdout => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        String::from_utf8(bytes).unwrap()
    };
    let (stdout, stderr) = (text(true), text(false));
    assert_eq!(stderr, "oops\n");
    let (json, rest) = stdout.split_once('\n').unwrap();
    assert_eq!(rest, "hello\n");

    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    let expected = serde_json::json!({
        "uid": 65534, "gid": 65534,
        "write_root": false, "write_target": false, "write_tmp": true, "write_results": true,
        "net_interfaces": ["lo"], "cap_eff": "0000000000000000", "no_new_privs": true,
        "can_read_target": true, "docker_socket_exists": false,
    });
    for (key, want) in expected.as_object().unwrap() {
        assert_eq!(&report[key], want, "{key} in {report}");
    }

    remove(&docker, &id).await;
    assert!(containers_with_label(&run).await.is_empty());
    assert!(
        volumes_with_label(&run).await.is_empty(),
        "the results volume leaked"
    );
}

/// The benchmark's `docker run` contender takes its flags from `support::hardened`: they
/// must give the probe the same sandbox as the bollard body made from the same settings.
#[tokio::test]
async fn docker_run_flags_give_the_same_sandbox_as_the_body() {
    let image = probe_image().await;
    let docker = support::docker().await;
    let ws = Workspace::new();
    let run = unique("smoke-flags");
    let cmd = ["/probe", "policy-report", "-"];
    let id = create_started(&docker, hardened(&image, &cmd, &run, &ws.target_dir())).await;
    assert_eq!(wait_exit(&docker, &id).await, 0);
    let from_body: Vec<u8> = log_chunks(&docker, &id, false)
        .filter_map(|c| async move {
            match c {
                LogChunk::Stdout(b) => Some(b.to_vec()),
                _ => None,
            }
        })
        .concat()
        .await;
    remove(&docker, &id).await;

    let config = HostConfig {
        mounts: Some(vec![
            Mount {
                target: Some(TARGET_DIR.into()),
                source: Some(ws.target_dir().display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            },
            Mount {
                target: Some(RESULTS_DIR.into()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            },
        ]),
        ..support::hardened::host_config()
    };
    let output = std::process::Command::new("docker")
        .args(["run", "--rm", "--label", &format!("{RUN_LABEL}={run}")])
        .args(support::hardened::docker_run_flags(
            &config,
            &support::hardened::user(),
        ))
        .arg(&image)
        .args(cmd)
        .output()
        .expect("running docker");
    remove_labelled(&run).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&from_body)
    );
}

/// Runs `cmd` until it prints `ready`, stops it with a 2 s grace; returns (exit code, time
/// the stop took).
async fn stop_after_ready(cmd: &[&str]) -> (i64, Duration) {
    let image = probe_image().await;
    let docker = support::docker().await;
    let ws = Workspace::new();
    let run = unique("smoke-term");
    let id = create_started(&docker, hardened(&image, cmd, &run, &ws.target_dir())).await;
    let ready = log_chunks(&docker, &id, true)
        .any(|c| async move { matches!(c, LogChunk::Stdout(b) if b.starts_with(b"ready")) });
    assert!(
        tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .unwrap()
    );

    let started = Instant::now();
    let stop = StopContainerOptionsBuilder::default().t(2).build();
    docker.stop_container(&id, Some(stop)).await.expect("stop");
    let took = started.elapsed();
    let code = wait_exit(&docker, &id).await;
    remove_labelled(&run).await;
    (code, took)
}

#[tokio::test]
async fn ignore_term_outlives_sigterm_under_docker_init() {
    let (code, took) = stop_after_ready(&[
        "/probe",
        "ignore-term",
        "--",
        "print",
        "ready",
        "--",
        "sleep",
        "600",
    ])
    .await;
    assert_eq!(code, 137, "SIGKILLed after the grace period");
    assert!(
        took >= Duration::from_millis(1900),
        "stopped after {took:?}"
    );

    // Control: without ignore-term, docker-init forwards SIGTERM and the probe dies at once.
    let (code, took) = stop_after_ready(&["/probe", "print", "ready", "--", "sleep", "600"]).await;
    assert_eq!(code, 143);
    assert!(took < Duration::from_millis(1900), "stopped after {took:?}");
}

fn download(
    docker: &Docker,
    id: &str,
    path: &str,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, EngineError>> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    docker
        .download_from_container(id, Some(options))
        .map_err(|e| EngineError::api("download", e))
        .boxed()
}

#[tokio::test]
async fn docker_archives_and_logs_go_through_collect() {
    let image = probe_image().await;
    let docker = support::docker().await;
    let ws = Workspace::new();
    let run = unique("smoke-collect");
    let cmd = [
        "/probe",
        "write",
        "/results/a/b.txt",
        "hello",
        "--",
        "write",
        "/results/top.sarif",
        "{}",
        "--",
        "symlink",
        "/etc/passwd",
        "/results/evil",
        "--",
        "nasty",
        "--",
        "spam",
        "300k",
        "--",
        "eprint",
        "done",
    ];
    let id = create_started(&docker, hardened(&image, &cmd, &run, &ws.target_dir())).await;

    let limits = CaptureLimits {
        log_bytes: 100_000,
        head_bytes: 1024,
        tail_bytes: 1024,
    };
    let log = ws.reports_dir().join("logs/smoke.log");
    let mut capture = OutputCapture::create(&log, limits).await.unwrap();
    let mut chunks = std::pin::pin!(log_chunks(&docker, &id, true));
    while let Some(chunk) = chunks.next().await {
        capture.push(chunk).await.unwrap();
    }
    assert_eq!(wait_exit(&docker, &id).await, 0);
    assert!(capture.log_truncated());
    let output = capture.finish().await.unwrap();
    assert!(output.truncated);
    assert!(output.stdout.starts_with("nasty stdout: \u{1b}[31mred"));
    assert!(output.stdout.contains("bytes omitted"));
    assert!(output.stderr.starts_with("nasty stderr:") && output.stderr.ends_with("done\n"));
    let on_disk = std::fs::metadata(&log).unwrap().len();
    assert!(
        (100_000..100_100).contains(&on_disk),
        "log is {on_disk} bytes"
    );

    let dest = ws.reports_dir().join("results/smoke");
    let got = extract_results(
        download(&docker, &id, RESULTS_DIR),
        &dest,
        ExtractLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        got.files,
        [PathBuf::from("a/b.txt"), PathBuf::from("top.sarif")]
    );
    assert_eq!(
        got.warnings,
        ["skipped symlink `results/evil` -> `/etc/passwd`"]
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("a/b.txt")).unwrap(),
        "hello"
    );

    let single = ws.reports_dir().join("results/single");
    let got = extract_results(
        download(&docker, &id, "/results/top.sarif"),
        &single,
        ExtractLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(got.files, [PathBuf::from("top.sarif")]);
    assert_eq!(
        std::fs::read_to_string(single.join("top.sarif")).unwrap(),
        "{}"
    );

    remove_labelled(&run).await;
    assert!(containers_with_label(&run).await.is_empty());
}
