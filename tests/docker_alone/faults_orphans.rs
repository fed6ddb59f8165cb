//! Phalanx killed with SIGKILL leaves its containers behind; the next `phalanx run` or
//! `phalanx clean` removes them first and says how many, while a run still going on the
//! same engine is left alone. (One test in this binary: the sweeps of concurrent tests would
//! race for the same orphans.)

use crate::runs;
use crate::support;

use std::process::{Child, Stdio};

use runs::probe_suite;
use support::{Workspace, probe_image, unique};

const SLEEP: [&str; 4] = ["print", "started", "--", "sleep"];

/// A `phalanx run` of one suite that sleeps for a long time, in the background.
fn spawn_sleeper(ws: &Workspace, image: &str, name: &str) -> Child {
    let steps = [&SLEEP[..], &["600"]].concat();
    ws.suite(name, &probe_suite(image, &steps, ""));
    ws.phalanx(["run", "--progress", "plain", "--target", "target"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn container_labels(id: &str) -> std::collections::HashMap<String, String> {
    let docker = support::docker().await;
    let inspect = docker.inspect_container(id, None).await.unwrap();
    inspect.config.and_then(|c| c.labels).unwrap_or_default()
}

async fn exists(id: &str) -> bool {
    let docker = support::docker().await;
    docker.inspect_container(id, None).await.is_ok()
}

fn kill(child: &mut Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The number in "removed N container(s) left by earlier Phalanx runs that were killed".
fn orphans_removed(stderr: &str) -> usize {
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("phalanx: removed ")?
                .strip_suffix(" container(s) left by earlier Phalanx runs that were killed")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn orphans_of_killed_runs_are_removed_and_live_runs_are_not() {
    let image = probe_image().await;

    // A live run that must survive every sweep below.
    let live_ws = Workspace::new();
    let live = unique("live");
    let mut live_run = spawn_sleeper(&live_ws, &image, &live);
    let live_container = runs::wait_until_running(&live).await;

    // A run killed with SIGKILL: its container outlives it.
    let killed_ws = Workspace::new();
    let killed = unique("killed");
    let mut killed_run = spawn_sleeper(&killed_ws, &image, &killed);
    let orphan = runs::wait_until_running(&killed).await;
    let labels = container_labels(&orphan).await;
    let owner = &labels["phalanx.owner"];
    assert!(
        owner.contains(&format!(":{}:", killed_run.id())),
        "the owner label names the process: {owner}"
    );
    let killed_run_id = labels["phalanx.run"].clone();
    kill(&mut killed_run, "-KILL");
    killed_run.wait().unwrap();
    assert!(exists(&orphan).await, "SIGKILL leaves the container");
    assert!(!support::volumes_with_label(&killed_run_id).await.is_empty());

    // The next run removes it first and says so.
    let next_ws = Workspace::new();
    let next = unique("next");
    next_ws.suite(&next, &probe_suite(&image, &["exit", "0"], ""));
    let run = runs::run(&next_ws, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let removed = orphans_removed(&run.stderr);
    assert!(
        removed >= 1,
        "the run did not report the orphan: {}",
        run.stderr
    );
    assert!(!exists(&orphan).await, "the orphan is still there");
    runs::assert_nothing_left(&killed_run_id).await;
    assert!(
        exists(&live_container).await,
        "a live run's container was removed"
    );

    // `phalanx clean --run <another run>` removes orphans too.
    let killed_ws = Workspace::new();
    let killed = unique("killed-again");
    let mut killed_run = spawn_sleeper(&killed_ws, &image, &killed);
    let orphan = runs::wait_until_running(&killed).await;
    let killed_run_id = container_labels(&orphan).await["phalanx.run"].clone();
    kill(&mut killed_run, "-KILL");
    killed_run.wait().unwrap();
    let clean = next_ws
        .phalanx(["clean", "--run", &unique("no-such-run")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&clean.stderr);
    assert_eq!(clean.status.code(), Some(0), "{stderr}");
    assert!(orphans_removed(&stderr) >= 1, "{stderr}");
    runs::assert_nothing_left(&killed_run_id).await;
    assert!(
        exists(&live_container).await,
        "a live run's container was removed"
    );

    // The live run was never disturbed: interrupted now, it ends cancelled, not errored.
    kill(&mut live_run, "-INT");
    let output = live_run.wait_with_output().unwrap();
    let live_result = runs::finished(&live_ws, output);
    runs::assert_nothing_left(live_result.run_id()).await;
    assert_eq!(
        live_result.outcome(&live),
        "cancelled",
        "{}",
        live_result.stderr
    );
    let log = runs::read(&live_ws.reports_dir().join(format!("logs/{live}.log")));
    assert!(log.contains("started"));
}
