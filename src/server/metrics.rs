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

use crate::event::{Event, EventKind};
use crate::findings::Severity;

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
    running_suites: Family<ProjectLabels, Gauge>,
    store_errors: Counter,
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
        let running_suites = Family::<ProjectLabels, Gauge>::default();
        registry.register(
            "running_suites",
            "Suites running now, by project",
            running_suites.clone(),
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
            store_errors,
            webhook_deliveries,
        }
    }

    /// Follows one event of a run of `project`.
    pub fn observe(&self, project: &str, event: &Event) {
        match &event.kind {
            EventKind::SuiteFinished(report) => {
                let labels = SuiteLabels {
                    project: project.to_string(),
                    suite: report.name.clone(),
                };
                self.suite_duration
                    .get_or_create(&labels)
                    .observe(report.duration.as_secs_f64());
            }
            EventKind::RunFinished {
                exit_code,
                interrupted,
                ..
            } => {
                let labels = RunLabels {
                    project: project.to_string(),
                    outcome: run_outcome(*exit_code, interrupted.is_some()).to_string(),
                };
                self.runs.get_or_create(&labels).inc();
            }
            _ => {}
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

    /// The queue and the running suites of every project, as the scan service says now.
    pub fn set_load(&self, per_project: &[(String, usize, usize)]) {
        self.queue_depth.clear();
        self.running_suites.clear();
        for (project, queued, running) in per_project {
            let labels = ProjectLabels {
                project: project.clone(),
            };
            self.queue_depth.get_or_create(&labels).set(*queued as i64);
            self.running_suites
                .get_or_create(&labels)
                .set(*running as i64);
        }
    }

    /// The findings of each project's latest run: `(project, severity, state, count)`.
    pub fn set_latest_findings(&self, counts: &[(String, Severity, &'static str, u64)]) {
        self.findings.clear();
        for (project, severity, state, count) in counts {
            let labels = FindingLabels {
                project: project.clone(),
                severity: severity.as_str().to_string(),
                state: state.to_string(),
            };
            self.findings.get_or_create(&labels).set(*count as i64);
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

/// A run's outcome label, from its exit code (DESIGN.md's codes).
pub fn run_outcome(exit_code: u8, interrupted: bool) -> &'static str {
    use crate::exit;
    match exit_code {
        _ if interrupted => "interrupted",
        exit::PASSED => "passed",
        exit::FAILED => "failed",
        exit::USAGE => "config-error",
        exit::SIGINT | exit::SIGTERM => "interrupted",
        _ => "error",
    }
}
