//! Runs through the server on the real engine, with the probe image: a triggered run's
//! event stream shows every suite start and finish and the run's end, a client that
//! reconnects with `Last-Event-ID` misses nothing, then the findings and reports are read
//! through the API and the metrics count the run; a project's queue beyond `max_queued`
//! answers 429 with Retry-After, and cancel stops runs queued or running.

use std::time::Duration;

use serde_json::Value;

use crate::findings_common::probe_bandit_suite;
use crate::harness::{As, Server, Sse, projects_toml, wait_finished};
use crate::runs::{self, probe_suite};
use crate::support::{Workspace, probe_image, unique};

fn kinds(events: &[Sse]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.event.clone().unwrap_or_default())
        .collect()
}

fn of_suite<'a>(events: &'a [Sse], kind: &str, suite: &str) -> Vec<&'a Sse> {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some(kind) && e.json()["suite"] == suite)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_triggered_run_streams_every_suite_then_its_findings_reports_and_metrics_are_read() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let sast = unique("sast");
    let quick = unique("quick");
    ws.suite(&sast, &probe_bandit_suite(&image, |_| {}));
    ws.suite(&quick, &probe_suite(&image, &["print", "hello"], ""));
    let config = projects_toml(&ws, "");
    let server = Server::start(ws, &config);

    let body = format!(r#"{{"suites": ["{sast}", "{quick}"]}}"#);
    let reply = server.post("/api/v1/projects/app/runs", Some(As::Runner), &body);
    assert_eq!(reply.status, 202, "{}", reply.body);
    let triggered = reply.json();
    let run_id = triggered["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/runs/{run_id}").as_str())
    );
    assert_eq!(triggered["events"], format!("/api/v1/runs/{run_id}/events"));

    // Follow it live (whatever happened before we connect is replayed first).
    let path = format!("/api/v1/runs/{run_id}/events");
    let stream = server.events(&path, As::Viewer, None);
    assert_eq!(stream.status, 200);
    assert!(
        stream.content_type.starts_with("text/event-stream"),
        "{}",
        stream.content_type
    );
    let events = stream.until_end(Duration::from_secs(300));
    let kinds = kinds(&events);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("run-started"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("run-finished"),
        "{kinds:?}"
    );
    for (i, event) in events.iter().enumerate() {
        // id = the run's sequence number: 1, 2, … with no gap; data = its JSON line.
        assert_eq!(event.id.as_deref(), Some((i + 1).to_string().as_str()));
        let line = event.json();
        assert_eq!(line["seq"], i as u64 + 1);
        assert_eq!(line["run_id"], run_id);
        assert_eq!(line["project"], "app");
        assert_eq!(line["event"].as_str(), event.event.as_deref());
    }
    for suite in [&sast, &quick] {
        assert_eq!(
            of_suite(&events, "suite-started", suite).len(),
            1,
            "{suite}: {kinds:?}"
        );
        assert_eq!(
            of_suite(&events, "suite-finished", suite).len(),
            1,
            "{suite}: {kinds:?}"
        );
    }
    assert_eq!(
        of_suite(&events, "suite-finished", &sast)[0].json()["outcome"],
        "failed"
    );
    assert_eq!(
        of_suite(&events, "suite-finished", &quick)[0].json()["outcome"],
        "passed"
    );

    // A client that had the first few reconnects and is replayed exactly the rest.
    let had = 3.min(events.len() - 1);
    let again = server.events(&path, As::Viewer, Some(&had.to_string()));
    let rest = again.until_end(Duration::from_secs(60));
    assert_eq!(rest, events[had..].to_vec());

    let run = wait_finished(&server, &run_id, As::Viewer);
    assert_eq!(run["state"], "finished", "{run}");
    assert_eq!(run["exit_code"], 1, "{run}");
    assert_eq!(run["project"], "app");
    let suites: Vec<&str> = run["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(suites.len(), 2, "{run}");

    let findings = server
        .get(
            &format!("/api/v1/runs/{run_id}/findings?state=new"),
            Some(As::Viewer),
        )
        .json();
    let rules: Vec<&str> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["B602", "B105"], "{findings}");
    let high = server
        .get(
            &format!("/api/v1/runs/{run_id}/findings?severity=high&suite={sast}"),
            Some(As::Viewer),
        )
        .json();
    assert_eq!(high["findings"].as_array().unwrap().len(), 1, "{high}");

    let report = |name: &str| {
        let reply = server.get(
            &format!("/api/v1/runs/{run_id}/reports/{name}"),
            Some(As::Viewer),
        );
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        reply.body
    };
    let junit = report("junit.xml");
    assert!(roxmltree::Document::parse(&junit).is_ok(), "{junit}");
    assert!(junit.contains(&sast), "{junit}");
    let sarif: Value = serde_json::from_str(&report("results.sarif")).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let json: Value = serde_json::from_str(&report("run.json")).unwrap();
    assert_eq!(json["run_id"], run_id);

    assert_metrics(&server, &sast);
    runs::assert_nothing_left(&run_id).await;
}

/// The scrape parses as the Prometheus text format, every metric has its HELP, and the
/// run is counted: one failed run of app, its suites' durations, its findings.
fn assert_metrics(server: &Server, suite: &str) {
    let reply = server.get("/metrics", Some(As::Watcher));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain"),
        "{reply:?}"
    );
    let lines = reply.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format");
    let names: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for name in &names {
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        let has_help = scrape.docs.contains_key(*name) || scrape.docs.contains_key(family);
        assert!(has_help, "{name} has no # HELP:\n{}", reply.body);
    }
    let value = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in:\n{}", reply.body));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            ref other => panic!("{metric}: {other:?}"),
        }
    };
    assert_eq!(
        value(
            "phalanx_runs_total",
            &[("project", "app"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "phalanx_suite_duration_seconds_count",
            &[("project", "app"), ("suite", suite)]
        ),
        1.0
    );
    let high_new = [("project", "app"), ("severity", "high"), ("state", "new")];
    assert_eq!(value("phalanx_findings", &high_new), 1.0);
    let high_suppressed = [
        ("project", "app"),
        ("severity", "high"),
        ("state", "suppressed"),
    ];
    assert_eq!(value("phalanx_findings", &high_suppressed), 0.0);
    assert_eq!(value("phalanx_running_suites", &[]), 0.0);
    assert_eq!(value("phalanx_store_errors_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_429_and_cancel_stops_queued_and_running_runs() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let slow = unique("slow");
    ws.suite(&slow, &probe_suite(&image, &["sleep", "120"], ""));
    let config = projects_toml(&ws, "max_queued = 1");
    let server = Server::start(ws, &config);
    let trigger = || server.post("/api/v1/projects/app/runs", Some(As::Runner), "");

    // The first runs; the second waits (the same suite never runs twice at once on one
    // target); the third finds the queue full.
    let first = trigger();
    assert_eq!(first.status, 202, "{}", first.body);
    let first = first.json()["run_id"].as_str().unwrap().to_string();
    runs::wait_until_running(&slow).await;
    let second = trigger();
    assert_eq!(second.status, 202, "{}", second.body);
    let second = second.json()["run_id"].as_str().unwrap().to_string();
    let full = trigger();
    let doc = full.problem(429);
    let retry: u64 = full.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert!(
        doc["detail"].as_str().unwrap().contains("max_queued"),
        "{doc}"
    );

    let queue = server.get("/api/v1/queue", Some(As::Viewer)).json();
    let states: Vec<(&str, &str)> = queue["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&(first.as_str(), "running")), "{queue}");
    assert!(states.contains(&(second.as_str(), "queued")), "{queue}");
    assert_eq!(queue["queued"]["app"], 1, "{queue}");
    // A live run has no findings yet: 409, not an empty list that looks clean.
    server
        .get(&format!("/api/v1/runs/{first}/findings"), Some(As::Viewer))
        .problem(409);

    for run in [&second, &first] {
        let reply = server.post(&format!("/api/v1/runs/{run}/cancel"), Some(As::Runner), "");
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert_eq!(reply.json()["state"], "cancelling");
    }
    for run in [&first, &second] {
        let done = wait_finished(&server, run, As::Viewer);
        assert_eq!(done["suites"][0]["state"], "cancelled", "{done}");
    }
    server
        .post(
            &format!("/api/v1/runs/{first}/cancel"),
            Some(As::Runner),
            "",
        )
        .problem(409);
    runs::assert_nothing_left(&first).await;
}
