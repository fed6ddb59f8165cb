//! The scan service behind `phalanx serve`, driven as a library on the real engine with the
//! probe image: a triggered run streams every event in order and is recorded with its
//! project; a request that cannot run queues nothing; the queue refuses beyond
//! `max_queued`; cancelling a running and a queued run records both as cancelled; a
//! shutdown stops what runs and records it as interrupted. Nothing is left on the engine.

use std::collections::BTreeSet;
use std::path::Path;

use phalanx::config::load_project;
use phalanx::scans::{RunEvents, ScanSettings, Scans, TriggerError, TriggerRequest};
use phalanx::stop::Signal;
use phalanx::store::{RunFilter, Store};
use serde_json::Value;

use crate::runs::{assert_nothing_left, probe_suite, wait_until_running};
use crate::support::{Workspace, probe_image, unique};

/// A workspace whose phalanx.toml has one project, `demo`, over its target.
fn workspace(max_queued: usize) -> Workspace {
    let ws = Workspace::new();
    ws.project(&format!(
        "[store]\npath = \"phalanx.db\"\n\n[projects.demo]\ntarget = \"target\"\nmax_queued = {max_queued}\n"
    ));
    ws
}

fn start(ws: &Workspace, jobs: usize) -> Scans {
    let config = load_project(&ws.root().join("phalanx.toml")).unwrap();
    Scans::start(ScanSettings {
        store: config.store.clone(),
        config,
        jobs,
        image_jobs: 1,
    })
    .unwrap()
}

fn store(ws: &Workspace) -> Store {
    Store::open_existing(&ws.root().join("phalanx.db")).unwrap()
}

/// Every line of a run's stream from `after` on, until the run ends.
async fn drain(events: RunEvents) -> Vec<Value> {
    let mut lines: Vec<Value> = events
        .replay
        .iter()
        .map(|l| serde_json::from_str(&l.body).unwrap())
        .collect();
    if let Some(mut live) = events.live {
        while let Ok(line) = live.recv().await {
            lines.push(serde_json::from_str(&line.body).unwrap());
        }
    }
    lines
}

fn request(suites: &[&str]) -> TriggerRequest {
    TriggerRequest {
        suites: suites.iter().map(|s| s.to_string()).collect(),
        requested_by: Some("test".into()),
        ..TriggerRequest::default()
    }
}

#[tokio::test]
async fn a_triggered_run_streams_every_event_and_is_recorded_with_its_project() {
    let image = probe_image().await;
    let ws = workspace(4);
    let (a, b) = (unique("scan-a"), unique("scan-b"));
    ws.suite(&a, &probe_suite(&image, &["print", "hello"], ""));
    ws.suite(&b, &probe_suite(&image, &["exit", "3"], ""));
    let scans = start(&ws, 2);

    let triggered = scans.trigger("demo", TriggerRequest::default()).unwrap();
    let names: BTreeSet<&str> = triggered.suites.iter().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from([a.as_str(), b.as_str()]));
    let lines = drain(scans.events(&triggered.run_id, None).unwrap()).await;

    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=lines.len() as u64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"run-started"));
    assert_eq!(kinds.last(), Some(&"run-finished"));
    assert_eq!(kinds.iter().filter(|k| **k == "suite-started").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "suite-finished").count(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l["project"] == "demo" && l["run_id"] == triggered.run_id.as_str())
    );

    let store = store(&ws);
    let runs = store.runs(&RunFilter::default()).unwrap();
    let run = runs.iter().find(|r| r.run_id == triggered.run_id).unwrap();
    assert_eq!(run.project.as_deref(), Some("demo"));
    assert_eq!((run.outcomes.passed, run.outcomes.failed), (1, 1));
    assert!(
        store.live_runs().unwrap().is_empty(),
        "recorded runs leave live_runs"
    );
    // A client that saw up to seq 2 is replayed the rest from the store.
    let rest = drain(scans.events(&triggered.run_id, Some(2)).unwrap()).await;
    assert_eq!(rest.len(), lines.len() - 2);
    assert_eq!(rest[0]["seq"], 3);
    let reports = ws.reports_dir().join("runs").join(&triggered.run_id);
    for file in ["junit.xml", "results.sarif", "run.json", "report.html"] {
        assert!(
            reports.join(file).is_file(),
            "{file} in {}",
            reports.display()
        );
    }
    assert_nothing_left(&triggered.run_id).await;
}

#[tokio::test]
async fn requests_that_cannot_run_queue_nothing() {
    let image = probe_image().await;
    let ws = workspace(4);
    let a = unique("scan-only");
    ws.suite(&a, &probe_suite(&image, &["print", "x"], ""));
    let scans = start(&ws, 1);
    assert!(matches!(
        scans.trigger("nope", TriggerRequest::default()),
        Err(TriggerError::UnknownProject(_))
    ));
    let unknown = scans
        .trigger("demo", request(&["no-such-suite"]))
        .unwrap_err();
    assert!(unknown.to_string().contains("no-such-suite"), "{unknown}");
    assert!(scans.live_runs().is_empty());
    assert_eq!(scans.status().queued.len(), 0);
}

#[tokio::test]
async fn the_queue_refuses_beyond_max_queued_and_cancelled_runs_are_recorded() {
    let image = probe_image().await;
    let ws = workspace(1);
    let slow = unique("scan-slow");
    ws.suite(&slow, &probe_suite(&image, &["sleep", "120"], ""));
    let scans = start(&ws, 1);

    let running = scans.trigger("demo", request(&[&slow])).unwrap();
    wait_until_running(&slow).await;
    // The same suite of the same project waits for the first run to end.
    let queued = scans.trigger("demo", request(&[&slow])).unwrap();
    assert_eq!(scans.status().queued.get("demo"), Some(&1));
    let full = scans.trigger("demo", request(&[&slow])).unwrap_err();
    assert!(
        matches!(full, TriggerError::QueueFull { queued: 1, .. }),
        "{full}"
    );

    scans.cancel(&queued.run_id, "test").unwrap();
    scans.cancel(&running.run_id, "test").unwrap();
    for run in [&running, &queued] {
        let lines = drain(scans.events(&run.run_id, None).unwrap()).await;
        let finished = lines
            .iter()
            .find(|l| l["event"] == "suite-finished")
            .unwrap();
        assert_eq!(finished["outcome"], "cancelled", "{finished}");
    }
    wait_recorded(&ws, &[&running.run_id, &queued.run_id]).await;
    let store = store(&ws);
    for run in [&running, &queued] {
        let recorded = store.resolve(&run.run_id).unwrap();
        assert_eq!(recorded.exit_code, 3, "a cancelled run is never a pass");
    }
    assert!(
        scans.cancel(&running.run_id, "test").is_err(),
        "a finished run is not live"
    );
    assert_nothing_left(&running.run_id).await;
}

#[tokio::test]
async fn a_shutdown_stops_running_runs_and_records_them_as_interrupted() {
    let image = probe_image().await;
    let ws = workspace(4);
    let slow = unique("scan-term");
    ws.suite(&slow, &probe_suite(&image, &["sleep", "120"], ""));
    let scans = start(&ws, 1);
    let run = scans.trigger("demo", request(&[&slow])).unwrap();
    wait_until_running(&slow).await;

    scans.shutdown(Signal::Terminate).await;

    let store = store(&ws);
    let recorded = store.resolve(&run.run_id).unwrap();
    assert_eq!(recorded.interrupted.as_deref(), Some("SIGTERM"));
    assert_eq!(recorded.outcomes.cancelled, 1);
    assert!(matches!(
        scans.trigger("demo", request(&[&slow])),
        Err(TriggerError::ShuttingDown)
    ));
    assert_nothing_left(&run.run_id).await;
}

/// Waits until the store has recorded every run of `ids` (the stream ends just before).
async fn wait_recorded(ws: &Workspace, ids: &[&str]) {
    let path = ws.root().join("phalanx.db");
    for _ in 0..600 {
        if recorded(&path, ids) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("runs {ids:?} were never recorded");
}

fn recorded(path: &Path, ids: &[&str]) -> bool {
    let Ok(store) = Store::open_existing(path) else {
        return false;
    };
    ids.iter().all(|id| store.resolve(id).is_ok())
}
