//! SIGTERM while a scan runs: the server stops the run (its containers removed), records
//! it interrupted, drops the queued one as interrupted, ends the event streams with the
//! run's end, and exits 0; the next server on the same store shows both as interrupted.

use std::time::Duration;

use crate::harness::{As, Server, projects_toml};
use crate::runs::{self, probe_suite};
use crate::support::{Workspace, probe_image, unique};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_scan_leaves_nothing_and_the_runs_are_recorded_interrupted() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let slow = unique("slow");
    ws.suite(&slow, &probe_suite(&image, &["sleep", "120"], ""));
    let config = projects_toml(&ws, "");
    let server = Server::start(ws, &config);
    let trigger = || {
        let reply = server.post("/api/v1/projects/app/runs", Some(As::Runner), "");
        assert_eq!(reply.status, 202, "{}", reply.body);
        reply.json()["run_id"].as_str().unwrap().to_string()
    };
    let running = trigger();
    runs::wait_until_running(&slow).await;
    let queued = trigger();
    let stream = server.events(&format!("/api/v1/runs/{running}/events"), As::Viewer, None);

    let (code, stderr, ws) = server.stop("TERM");
    assert_eq!(code, Some(0), "{stderr}");
    let events = stream.until_end(Duration::from_secs(60));
    let last = events.last().expect("events").json();
    assert_eq!(last["event"], "run-finished", "{events:#?}");
    assert_eq!(last["interrupted"], "SIGTERM", "{last}");
    runs::assert_nothing_left(&running).await;

    let server = Server::start(ws, &config);
    let run = server
        .get(&format!("/api/v1/runs/{running}"), Some(As::Viewer))
        .json();
    assert_eq!(run["state"], "interrupted", "{run}");
    assert_eq!(run["interrupted"], "SIGTERM", "{run}");
    assert_eq!(run["suites"][0]["state"], "cancelled", "{run}");
    let cut = server
        .get(&format!("/api/v1/runs/{queued}"), Some(As::Viewer))
        .json();
    assert_eq!(cut["state"], "interrupted", "{cut}");
    let list = server.get("/api/v1/runs", Some(As::Viewer)).json();
    let listed: Vec<&str> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&running.as_str()) && listed.contains(&queued.as_str()),
        "{list}"
    );
}
