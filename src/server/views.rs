//! The API's JSON documents. They are the contract with clients, so they are their own
//! types, built from the store's and the scan service's values, rather than those values
//! serialised as they happen to be: the store can change without the API changing.
//! Each derives `ToSchema`, which is what the OpenAPI document is made of.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::findings::{Severity, SeverityCounts};
use crate::outcome::Outcome;
use crate::store::live::{LiveRun, LiveState, StoredEvent};
use crate::store::query::OutcomeCounts;
use crate::store::record::outcome_from_name;
use crate::store::{RunSummary, StoredFinding, StoredSuite};

/// `GET /healthz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    pub version: String,
}

/// Where a run is: waiting for slots, going on, or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Queued,
    Running,
    Finished,
    /// Stopped by a signal, a cancel or a server shutdown before it finished.
    Interrupted,
}

/// Suites per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Outcomes {
    pub passed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub error: u64,
    pub skipped: u64,
    pub cancelled: u64,
    /// Selected suite files that could not be read.
    pub invalid: u64,
}

impl From<OutcomeCounts> for Outcomes {
    fn from(c: OutcomeCounts) -> Self {
        Outcomes {
            passed: c.passed,
            failed: c.failed,
            timed_out: c.timed_out,
            error: c.error,
            skipped: c.skipped,
            cancelled: c.cancelled,
            invalid: c.invalid,
        }
    }
}

/// Findings per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Severities {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub info: u64,
}

impl From<SeverityCounts> for Severities {
    fn from(c: SeverityCounts) -> Self {
        Severities {
            critical: c.critical as u64,
            high: c.high as u64,
            medium: c.medium as u64,
            low: c.low as u64,
            info: c.info as u64,
        }
    }
}

/// What a run was asked to run (both empty: the project's default selection, or all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SelectionView {
    pub suites: Vec<String>,
    pub tags: Vec<String>,
}

/// The target's git state when the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GitView {
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub dirty: Option<bool>,
}

/// One run, as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub run_id: String,
    /// The project it scanned; `null` for a `phalanx run` made without `--project`.
    pub project: Option<String>,
    pub state: RunState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds from start to end (so far, for a running run).
    pub duration: Option<f64>,
    /// The exit code `phalanx run` would have given (finished runs only).
    pub exit_code: Option<i32>,
    /// `SIGINT`, `SIGTERM` or `cancelled` when the run was stopped.
    pub interrupted: Option<String>,
    pub outcomes: Outcomes,
    /// Unsuppressed findings per severity.
    pub findings: Severities,
    pub suppressed: u64,
    pub selection: SelectionView,
    pub partition: Option<String>,
    pub git: Option<GitView>,
    /// This run's API address.
    pub url: String,
}

impl RunView {
    /// A finished run from the store.
    pub fn finished(run: &RunSummary) -> RunView {
        let state = match run.interrupted {
            Some(_) => RunState::Interrupted,
            None => RunState::Finished,
        };
        RunView {
            url: run_url(&run.run_id),
            run_id: run.run_id.clone(),
            project: run.project.clone(),
            state,
            started_at: Some(run.started_at),
            finished_at: Some(run.finished_at),
            duration: Some(secs(run.duration)),
            exit_code: Some(run.exit_code),
            interrupted: run.interrupted.clone(),
            outcomes: run.outcomes.into(),
            findings: run.findings.into(),
            suppressed: run.suppressed,
            selection: SelectionView {
                suites: run.selection.suites.clone(),
                tags: run.selection.tags.clone(),
            },
            partition: run.partition.clone(),
            git: run.git.as_ref().map(|g| GitView {
                commit: g.commit.clone(),
                branch: g.branch.clone(),
                dirty: g.dirty,
            }),
        }
    }
}

pub fn run_url(run_id: &str) -> String {
    format!("/api/v1/runs/{run_id}")
}

pub(crate) fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    pub runs: Vec<RunView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Where a suite of a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SuiteState {
    Queued,
    Running,
    Passed,
    Failed,
    TimedOut,
    Error,
    Skipped,
    Cancelled,
}

/// One suite of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SuiteView {
    pub name: String,
    pub state: SuiteState,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    /// Why it ended as it did, in one sentence (`null` for a pass).
    pub reason: Option<String>,
    /// The same as an object whose `kind` says what happened (README, "Event stream").
    #[schema(value_type = Option<Object>)]
    pub cause: Option<serde_json::Value>,
    pub exit_code: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    /// Seconds.
    pub duration: Option<f64>,
    pub attempts: u32,
    pub flaky: bool,
    /// Its SARIF was read: its findings are complete.
    pub has_findings: bool,
    pub fail_on: Option<String>,
    /// Findings at or above `fail_on` that failed it.
    pub blocking: Option<u64>,
}

impl From<Outcome> for SuiteState {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Passed => SuiteState::Passed,
            Outcome::Failed => SuiteState::Failed,
            Outcome::TimedOut => SuiteState::TimedOut,
            Outcome::Error => SuiteState::Error,
            Outcome::Skipped => SuiteState::Skipped,
            Outcome::Cancelled => SuiteState::Cancelled,
        }
    }
}

impl From<&StoredSuite> for SuiteView {
    fn from(s: &StoredSuite) -> Self {
        SuiteView {
            name: s.name.clone(),
            state: s.outcome.into(),
            image: Some(s.image.clone()),
            image_digest: s.image_digest.clone(),
            reason: s.reason.clone(),
            cause: s.cause.clone(),
            exit_code: s.exit_code,
            started_at: s.started_at,
            duration: Some(secs(s.duration)),
            attempts: s.attempts,
            flaky: s.flaky,
            has_findings: s.has_findings,
            fail_on: s.fail_on.map(|f| f.as_str().to_string()),
            blocking: s.blocking,
        }
    }
}

/// What a run was compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BaselineView {
    pub source: String,
    pub findings: u64,
    pub new: u64,
    pub unchanged: u64,
    /// Baseline findings this run did not find again (fixed).
    pub absent: u64,
}

/// The addresses of what belongs to a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunLinks {
    pub findings: String,
    pub events: String,
    pub cancel: String,
    /// `junit.xml`, `results.sarif` and `run.json`, once the run has finished.
    pub reports: BTreeMap<String, String>,
}

impl RunLinks {
    pub fn of(run_id: &str, finished: bool) -> RunLinks {
        let base = run_url(run_id);
        let reports = match finished {
            true => super::api::REPORTS
                .iter()
                .map(|name| (name.to_string(), format!("{base}/reports/{name}")))
                .collect(),
            false => BTreeMap::new(),
        };
        RunLinks {
            findings: format!("{base}/findings"),
            events: format!("{base}/events"),
            cancel: format!("{base}/cancel"),
            reports,
        }
    }
}

/// One run with its suites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunDetailView {
    #[serde(flatten)]
    pub run: RunView,
    pub suites: Vec<SuiteView>,
    pub baseline: Option<BaselineView>,
    pub links: RunLinks,
}

/// A finding's place against the run's baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FindingState {
    /// Not in the run's baseline (every finding of a run without a baseline).
    New,
    /// In the baseline too.
    Unchanged,
    /// Accepted by a suppression.
    Suppressed,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingView {
    pub suite: String,
    pub tool: String,
    pub rule: String,
    #[schema(value_type = String, example = "high")]
    pub severity: Severity,
    pub state: FindingState,
    pub fingerprint: String,
    pub path: Option<String>,
    pub line: Option<u64>,
    /// The tool's words: untrusted text, to be shown as text.
    pub message: String,
    /// Why it was suppressed, when it was.
    pub justification: Option<String>,
}

impl FindingView {
    pub fn of(f: StoredFinding, state: FindingState) -> FindingView {
        FindingView {
            suite: f.suite,
            tool: f.tool,
            rule: f.rule,
            severity: f.severity,
            state,
            fingerprint: f.fingerprint,
            path: f.path,
            line: f.line,
            message: f.message,
            justification: f.justification,
        }
    }
}

/// A page of a run's findings, most severe first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FindingPage {
    pub run_id: String,
    pub findings: Vec<FindingView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl RunView {
    /// A queued, running or cut-off run of the server, as its live row says.
    pub fn live(run: &LiveRun) -> RunView {
        let state = match run.state {
            LiveState::Queued => RunState::Queued,
            LiveState::Running => RunState::Running,
            LiveState::Interrupted => RunState::Interrupted,
        };
        let duration = run
            .started_at
            .filter(|_| run.state == LiveState::Running)
            .map(|t| secs((Utc::now() - t).to_std().unwrap_or_default()));
        RunView {
            url: run_url(&run.run_id),
            run_id: run.run_id.clone(),
            project: Some(run.project.clone()),
            state,
            started_at: run.started_at,
            finished_at: None,
            duration,
            exit_code: None,
            interrupted: (run.state == LiveState::Interrupted).then(|| "server-stopped".into()),
            outcomes: Outcomes::default(),
            findings: Severities::default(),
            suppressed: 0,
            selection: SelectionView {
                suites: run.selection.suites.clone(),
                tags: run.selection.tags.clone(),
            },
            partition: None,
            git: None,
        }
    }
}

/// `POST /projects/{project}/runs`: what to run. Every key is optional: without `suites`
/// and `tags`, the project's default selection (else every suite). Nothing else is
/// accepted: a run scans its project's configured target, never a path of the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// Suites by name (with `tags`, the union).
    #[serde(default)]
    pub suites: Vec<String>,
    /// Suites carrying any of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Findings at or above it fail their suite, over every suite's `fail_on`.
    #[schema(value_type = Option<String>, example = "high")]
    pub fail_on: Option<Severity>,
}

/// A run accepted into the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TriggeredView {
    pub run_id: String,
    pub project: String,
    /// The suites it will run, in plan order.
    pub suites: Vec<String>,
    /// Runs of the project waiting before it.
    pub queued_ahead: usize,
    pub url: String,
    pub events: String,
}

/// `POST /runs/{id}/cancel` accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelView {
    pub run_id: String,
    /// `cancelling`: the run stops, its containers are removed, and it is recorded with
    /// its suites cancelled.
    pub state: String,
    pub url: String,
}

/// A suite a project's folder holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProjectSuite {
    pub name: String,
    pub tags: Vec<String>,
    pub description: String,
}

/// What a project's suites may ask for (`null`: anything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LimitsView {
    pub allow_network: Option<Vec<String>>,
    pub allow_cap_add: Option<Vec<String>>,
    pub allow_writable_root: bool,
    /// Bytes.
    pub max_memory: Option<u64>,
    pub max_cpus: Option<f64>,
    pub max_pids: Option<i64>,
    /// Seconds.
    pub max_timeout: Option<f64>,
}

/// One configured project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectView {
    pub name: String,
    /// The one directory its runs scan, on the server's host.
    pub target: String,
    /// Its suites; `null` when the folder cannot be read (`suites_error` says why).
    pub suites: Option<Vec<ProjectSuite>>,
    pub suites_error: Option<String>,
    /// What a run that names nothing runs (both empty: every suite).
    pub default_suites: Vec<String>,
    pub default_tags: Vec<String>,
    pub fail_on: Option<String>,
    pub gate: Option<String>,
    pub baseline: Option<String>,
    pub max_queued: usize,
    pub limits: LimitsView,
    pub queued: usize,
    pub running: usize,
    /// Its newest recorded run.
    pub latest_run: Option<RunView>,
    /// Where to POST a run.
    pub runs: String,
}

/// The shared queue, as far as the token sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Engine slots shared by every run.
    pub jobs: usize,
    /// Suites with a container now, over every run (of every project).
    pub running_suites: usize,
    /// Queued runs per project.
    pub queued: BTreeMap<String, usize>,
    /// Queued and running runs, newest request first.
    pub runs: Vec<RunView>,
}

/// A live run's suites, from its events so far: queued until started, running until
/// finished, then their outcome.
pub fn suites_of_events(lines: &[std::sync::Arc<StoredEvent>]) -> Vec<SuiteView> {
    let mut suites: Vec<SuiteView> = Vec::new();
    for line in lines {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line.body) else {
            continue;
        };
        let name = |key: &str| event[key].as_str().map(str::to_owned);
        match line.kind.as_str() {
            "run-started" => {
                for suite in event["suites"].as_array().into_iter().flatten() {
                    if let Some(name) = suite.as_str() {
                        suites.push(SuiteView::queued(name));
                    }
                }
            }
            "suite-started" => {
                if let Some(suite) = name("suite").and_then(|n| find(&mut suites, &n)) {
                    suite.state = SuiteState::Running;
                    suite.attempts = event["attempt"].as_u64().unwrap_or(1) as u32;
                    suite.started_at = event["at"].as_str().and_then(|t| t.parse().ok());
                }
            }
            "suite-finished" => {
                if let Some(suite) = name("suite").and_then(|n| find(&mut suites, &n)) {
                    suite.finish(&event);
                }
            }
            _ => {}
        }
    }
    suites
}

fn find<'a>(suites: &'a mut [SuiteView], name: &str) -> Option<&'a mut SuiteView> {
    suites.iter_mut().find(|s| s.name == name)
}

impl SuiteView {
    fn queued(name: &str) -> SuiteView {
        SuiteView {
            name: name.to_string(),
            state: SuiteState::Queued,
            image: None,
            image_digest: None,
            reason: None,
            cause: None,
            exit_code: None,
            started_at: None,
            duration: None,
            attempts: 0,
            flaky: false,
            has_findings: false,
            fail_on: None,
            blocking: None,
        }
    }

    /// A `suite-finished` line's facts.
    fn finish(&mut self, event: &serde_json::Value) {
        // An outcome this server does not know is never shown as a pass.
        self.state = event["outcome"]
            .as_str()
            .and_then(outcome_from_name)
            .unwrap_or(Outcome::Error)
            .into();
        let text = |key: &str| event[key].as_str().map(str::to_owned);
        self.reason = text("reason");
        self.cause = Some(event["cause"].clone()).filter(|c| !c.is_null());
        self.duration = event["duration"].as_f64();
        self.exit_code = event["exit_code"].as_i64();
        self.attempts = event["attempts"].as_u64().unwrap_or(1) as u32;
        self.flaky = event["flaky"].as_bool().unwrap_or(false);
        self.image = text("image");
        self.image_digest = text("image_digest");
        self.has_findings = event["findings"].is_object();
    }
}
