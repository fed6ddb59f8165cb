//! `GET /metrics`: the Prometheus text format (0.0.4), from the `prometheus-client` crate.
//! Every metric has its `# HELP`.
//!
//! Counters and the histogram move with the events of the server's runs ([`Metrics::observe`]);
//! gauges that describe a state (queue depth, running suites, the latest run's findings)
//! are set when scraped, from the scan service and the store, so they are right after a
//! restart too.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::exit;
use crate::findings::Severity;
use crate::scans::{QueueStatus, ScanEvent, Scans};
use crate::store::pages::FindingState;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub project: String,
    /// `passed`, `failed`, `error`, `config-error` or `interrupted`.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SuiteLabels {
    pub project: String,
    pub suite: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub project: String,
    pub severity: String,
    /// `new`, `unchanged` or `suppressed`.
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectLabels {
    pub project: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Suite durations, in seconds: from a second to an hour.
fn duration_histogram() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ])
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    suite_duration: Family<SuiteLabels, Histogram, fn() -> Histogram>,
    findings: Family<FindingLabels, Gauge>,
    queue_depth: Family<ProjectLabels, Gauge>,
    running_suites: Gauge,
    running_runs: Gauge,
    store_errors: Counter,
    /// The scan service's own count of store failures when last scraped.
    scans_store_errors: AtomicU64,
    webhook_deliveries: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("phalanx");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs",
            "Runs the server finished, by project and outcome (passed, failed, error, config-error, interrupted)",
            runs.clone(),
        );
        let suite_duration =
            Family::<SuiteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        registry.register(
            "suite_duration_seconds",
            "How long each suite of the server's runs took, from start to outcome, by project and suite",
            suite_duration.clone(),
        );
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "findings",
            "Findings of each project's latest recorded run, by severity and state (new, unchanged, suppressed)",
            findings.clone(),
        );
        let queue_depth = Family::<ProjectLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Runs waiting for engine slots, by project",
            queue_depth.clone(),
        );
        let running_suites = Gauge::default();
        registry.register(
            "running_suites",
            "Suites with a container now, over every run",
            running_suites.clone(),
        );
        let running_runs = Gauge::default();
        registry.register(
            "running_runs",
            "Runs going on now, over every project",
            running_runs.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Reads or writes of the run store that failed",
            store_errors.clone(),
        );
        // The hook for alerts (webhooks): they call `webhook_delivery` once per attempt.
        let webhook_deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries of alerts, by result (delivered, failed, retried)",
            webhook_deliveries.clone(),
        );
        Metrics {
            registry,
            runs,
            suite_duration,
            findings,
            queue_depth,
            running_suites,
            running_runs,
            store_errors,
            scans_store_errors: AtomicU64::new(0),
            webhook_deliveries,
        }
    }

    /// Follows one event of a served run (its JSON line, as the event log writes it).
    pub fn observe(&self, event: &ScanEvent) {
        let kind = event.line.kind.as_str();
        if kind != "suite-finished" && kind != "run-finished" {
            return;
        }
        let Ok(line) = serde_json::from_str::<Value>(&event.line.body) else {
            return;
        };
        let project = event.project.clone();
        match kind {
            "suite-finished" => {
                let (Some(suite), Some(secs)) = (line["suite"].as_str(), line["duration"].as_f64())
                else {
                    return;
                };
                let labels = SuiteLabels {
                    project,
                    suite: suite.to_string(),
                };
                self.suite_duration.get_or_create(&labels).observe(secs);
            }
            _ => {
                let exit_code = line["exit_code"].as_u64().unwrap_or(u64::from(exit::INFRA));
                let exit_code = u8::try_from(exit_code).unwrap_or(exit::INFRA);
                let labels = RunLabels {
                    project,
                    outcome: run_outcome(exit_code, !line["interrupted"].is_null()).to_string(),
                };
                self.runs.get_or_create(&labels).inc();
            }
        }
    }

    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// One webhook delivery attempt of an alert ended with `result`.
    pub fn webhook_delivery(&self, result: &str) {
        let labels = ResultLabels {
            result: result.to_string(),
        };
        self.webhook_deliveries.get_or_create(&labels).inc();
    }

    /// The gauges, from what the scan service says now and the store's latest runs;
    /// `store_errors` counts the scan service's failures beside the readers'.
    /// `latest` is `None` when the store could not say: the findings keep their values.
    pub fn set_state(
        &self,
        status: &QueueStatus,
        latest: Option<&[(String, Severity, FindingState, u64)]>,
    ) {
        self.queue_depth.clear();
        for (project, queued) in &status.queued {
            let labels = ProjectLabels {
                project: project.clone(),
            };
            self.queue_depth.get_or_create(&labels).set(*queued as i64);
        }
        self.running_suites.set(status.running_suites as i64);
        self.running_runs.set(status.running_runs as i64);
        let seen = self
            .scans_store_errors
            .swap(status.store_errors, Ordering::Relaxed);
        self.store_errors
            .inc_by(status.store_errors.saturating_sub(seen));
        let Some(latest) = latest else {
            return;
        };
        self.findings.clear();
        let projects: BTreeSet<&String> = latest.iter().map(|(p, ..)| p).collect();
        // Every severity and state of a project is a series, zero included, so a graph
        // of "new high findings" shows a fix as a drop to 0 rather than a gap.
        for project in projects {
            for severity in Severity::DESCENDING {
                for state in FindingState::ALL {
                    let count = latest
                        .iter()
                        .find(|(p, s, st, _)| p == project && *s == severity && *st == state)
                        .map_or(0, |(.., n)| *n);
                    let labels = FindingLabels {
                        project: project.clone(),
                        severity: severity.as_str().to_string(),
                        state: state.as_str().to_string(),
                    };
                    self.findings.get_or_create(&labels).set(count as i64);
                }
            }
        }
    }

    /// The scrape's text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Follows every served run's events into `metrics`, for as long as the service runs.
/// Counting is best effort: a lag (the buffer of the events stream overflowed) skips
/// events rather than slowing any run.
pub async fn follow(scans: Scans, metrics: Arc<Metrics>) {
    let mut events = scans.all_events();
    loop {
        match events.recv().await {
            Ok(event) => metrics.observe(&event),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

/// A run's outcome label, from its exit code (DESIGN.md's codes).
pub fn run_outcome(exit_code: u8, interrupted: bool) -> &'static str {
    match exit_code {
        _ if interrupted => "interrupted",
        exit::PASSED => "passed",
        exit::FAILED => "failed",
        exit::USAGE => "config-error",
        exit::SIGINT | exit::SIGTERM => "interrupted",
        _ => "error",
    }
}
