//! Runs one suite to its outcome through an [`Engine`]: image, container, output, timeout,
//! results, removal — and retries after infrastructure errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
// tokio's clock, which is the system clock except under paused time in tests, where
// durations then match the virtual time the suites ran.
use tokio::time::Instant;

use chrono::Utc;

use crate::cause::Cause;
use crate::collect::CollectError;
use crate::collect::{self, CaptureLimits, ExtractLimits, OutputCapture};
use crate::config::Suite;
use crate::engine::{ContainerSpec, Engine, EngineError, ExitStatus, RUN_LABEL};
use crate::event::{EventKind, EventSender};
use crate::findings::verdict::{self, Evidence};
use crate::outcome::{Outcome, SuiteReport};
use crate::stop::{Signal, StopReason, StopSignal};

/// Label naming the suite a container belongs to.
pub const SUITE_LABEL: &str = "phalanx.suite";

/// How long a stopped container gets between SIGTERM and SIGKILL.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);
/// Interrupted runs stop faster: the user is waiting.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// What every suite of one run shares.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    /// Absolute path of what the suites inspect.
    pub target: PathBuf,
    /// The run's copy of the target on the engine, mounted instead of `target` when the
    /// engine does not see this filesystem (see [`crate::target`]).
    pub target_volume: Option<String>,
    pub reports_dir: PathBuf,
    /// The suppressions file's entries, applied to every SARIF suite's findings.
    pub suppressions: Arc<crate::verdict::Suppressions>,
    /// The findings of an earlier run (`--baseline`), compared with every SARIF suite's.
    pub baseline: Option<Arc<crate::verdict::Baseline>>,
    /// The project's swarm placement constraints (`[swarm] placement`), put before each
    /// suite's own in [`ContainerSpec::placement`].
    pub placement: Vec<String>,
}

impl RunContext {
    pub fn log_path(&self, suite: &str) -> PathBuf {
        self.reports_dir.join("logs").join(format!("{suite}.log"))
    }

    pub fn build_log_path(&self, suite: &str) -> PathBuf {
        self.reports_dir
            .join("logs")
            .join(format!("{suite}.build.log"))
    }

    pub fn results_dir(&self, suite: &str) -> PathBuf {
        self.reports_dir.join("results").join(suite)
    }
}

/// Runs `suite`, retrying up to `suite.retries` times after infrastructure errors only.
pub async fn run_suite<E: Engine>(
    engine: &E,
    suite: &Suite,
    ctx: &RunContext,
    stop: &StopSignal,
    events: &EventSender,
) -> SuiteReport {
    let mut attempt = 1;
    let mut retried = Vec::new();
    loop {
        events.send(EventKind::SuiteStarted {
            name: suite.name.clone(),
            attempt,
        });
        let mut report = run_attempt(engine, suite, ctx, stop, attempt).await;
        crate::secrets::scrub_report(&mut report, suite);
        report.attempts = attempt;
        let retryable = report.cause.as_ref().is_some_and(Cause::retryable);
        if !(retryable && attempt <= suite.retries && !stop.is_stopped()) {
            crate::retries::record(&mut report, retried);
            return report;
        }
        let again = crate::retries::retried_attempt(report);
        events.send(EventKind::SuiteRetrying {
            name: suite.name.clone(),
            attempt,
            cause: again.cause.clone(),
        });
        retried.push(again);
        attempt += 1;
    }
}

/// How the container's run ended, before results are looked at.
enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Stopped(StopReason),
}

async fn run_attempt<E: Engine>(
    engine: &E,
    suite: &Suite,
    ctx: &RunContext,
    stop: &StopSignal,
    attempt: u32,
) -> SuiteReport {
    let mut report = SuiteReport::not_run(&suite.name, &suite.image, Outcome::Error, None);
    report.started_at = Some(Utc::now());
    let clock = Instant::now();

    let build_log = ctx.build_log_path(&suite.name);
    let image = tokio::select! {
        image = engine.ensure_image(suite, &build_log) => image,
        () = stop.stopped() => return stopped_before_start(report, stop),
    };
    let image = match image {
        Ok(image) => image,
        Err(e) => return engine_failure(report, clock, e),
    };
    report.image_digest = image.digest;
    // A suite's time is its own run, not the image build some other suite may have waited for.
    let (clock, started_at) = (Instant::now(), Utc::now());
    report.started_at = Some(started_at);

    let spec = container_spec(suite, ctx, attempt);
    let id = match engine.create(&spec).await {
        Ok(id) => id,
        Err(e) => return engine_failure(report, clock, e),
    };
    report.container_id = Some(id.clone());
    let report = run_container(engine, suite, ctx, stop, &id, report, clock).await;
    // Removal also cleans up after an error; what it fails to remove, the run's final
    // sweep by label removes.
    let _ = engine.remove(&id).await;
    report
}

async fn run_container<E: Engine>(
    engine: &E,
    suite: &Suite,
    ctx: &RunContext,
    stop: &StopSignal,
    id: &str,
    mut report: SuiteReport,
    clock: Instant,
) -> SuiteReport {
    let log_path = ctx.log_path(&suite.name);
    let capture = match OutputCapture::create(&log_path, CaptureLimits::default()).await {
        Ok(capture) => capture,
        Err(e) => {
            let cause = Cause::LogUnwritable {
                path: log_path,
                message: e.to_string(),
            };
            return local_failure(report, clock, cause);
        }
    };
    report.log_path = Some(log_path);
    if let Err(e) = engine.start(id).await {
        return engine_failure(report, clock, e);
    }
    // Follow the output from the start so nothing is missed, in its own task so a chatty
    // suite never slows the wait.
    let logs = crate::secrets::redact_logs(engine.logs(id), suite);
    let pump = crate::collect::pump::LogPump::spawn(logs, capture);

    let ending = wait_or_stop(engine, suite, stop, id).await;
    let (status, ending) = match ending {
        Ok(Ending::Exited(status)) => (Some(status), None),
        Ok(other) => (engine.wait(id).await.ok(), Some(other)),
        Err(e) => {
            report.output = pump.finish().await;
            return engine_failure(report, clock, e);
        }
    };
    report.output = pump.finish().await;
    report.exit_code = status.map(|s| s.code);

    let found = collect_results(engine, suite, ctx, id, &mut report).await;
    finish(&mut report, clock);
    match ending {
        Some(Ending::TimedOut) => {
            report.outcome = Outcome::TimedOut;
            report.cause = Some(Cause::TimedOut {
                limit: suite.timeout,
            });
        }
        Some(Ending::Stopped(reason)) => stopped_outcome(&mut report, &reason),
        _ => {
            let Some(status) = status else {
                return local_failure(report, clock, Cause::ExitStatusUnknown);
            };
            judge(&mut report, suite, status, found, ctx).await;
        }
    }
    report
}

async fn judge(
    report: &mut SuiteReport,
    suite: &Suite,
    status: ExitStatus,
    found: Result<bool, Cause>,
    ctx: &RunContext,
) {
    let result_path_found = match found {
        Ok(found) => found,
        Err(problem) => {
            report.outcome = Outcome::Error;
            report.cause = Some(problem);
            return;
        }
    };
    let evidence = Evidence {
        status,
        results_dir: report.results_dir.clone(),
        result_files: report.result_files.clone(),
        result_path_found,
    };
    let suppressions = Arc::clone(&ctx.suppressions);
    verdict::judge(suite, evidence, suppressions, ctx.baseline.clone())
        .await
        .apply(report);
}

async fn wait_or_stop<E: Engine>(
    engine: &E,
    suite: &Suite,
    stop: &StopSignal,
    id: &str,
) -> Result<Ending, EngineError> {
    tokio::select! {
        status = engine.wait(id) => status.map(Ending::Exited),
        () = tokio::time::sleep(suite.timeout) => {
            engine.stop(id, TIMEOUT_GRACE).await?;
            Ok(Ending::TimedOut)
        }
        () = stop.stopped() => {
            let reason = stop_reason(stop);
            let grace = match reason {
                StopReason::Interrupted { .. } | StopReason::Cancelled { .. } => INTERRUPT_GRACE,
                StopReason::FailFast { .. } => TIMEOUT_GRACE,
            };
            engine.stop(id, grace).await?;
            Ok(Ending::Stopped(reason))
        }
    }
}

/// Copies the suite's result path out of the container. `Ok(false)`: the path does not exist.
async fn collect_results<E: Engine>(
    engine: &E,
    suite: &Suite,
    ctx: &RunContext,
    id: &str,
    report: &mut SuiteReport,
) -> Result<bool, Cause> {
    let dest = ctx.results_dir(&suite.name);
    let _ = tokio::fs::remove_dir_all(&dest).await;
    let tar = match engine.download(id, &suite.results.path).await {
        Ok(Some(tar)) => tar,
        Ok(None) => return Ok(false),
        Err(error) => return Err(Cause::ResultNotCopied { error }),
    };
    tokio::fs::create_dir_all(&dest)
        .await
        .map_err(|e| Cause::ResultNotExtracted {
            message: format!("cannot create {}: {e}", dest.display()),
        })?;
    let extracted = collect::extract_results(tar, &dest, ExtractLimits::default())
        .await
        .map_err(extraction_cause)?;
    report.results_dir = Some(dest);
    report.result_files = extracted.files;
    report.result_warnings = extracted.warnings;
    Ok(true)
}

/// The container for `attempt` of `suite`; the scheduler asks the engine to prepare the first
/// one ahead of time.
pub fn container_spec(suite: &Suite, ctx: &RunContext, attempt: u32) -> ContainerSpec {
    let labels = [
        (RUN_LABEL.to_string(), ctx.run_id.clone()),
        (SUITE_LABEL.to_string(), suite.name.clone()),
        // Lets a later run tell what this process left if it is killed (engine::orphans).
        (
            crate::engine::orphans::OWNER_LABEL.to_string(),
            crate::engine::orphans::owner_label(),
        ),
    ];
    ContainerSpec {
        name: format!("phalanx-{}-{}-{attempt}", ctx.run_id, suite.name),
        image: suite.image.clone(),
        command: suite.command.clone(),
        env: suite
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        policy: suite.policy.clone(),
        target: ctx.target.clone(),
        target_volume: ctx.target_volume.clone(),
        // Unresolvable only if the reports folder cannot be made: then it holds nothing.
        hidden: crate::engine::masks::hidden_paths(&ctx.target, &ctx.reports_dir)
            .unwrap_or_default(),
        labels: labels.into_iter().collect(),
        placement: placement(&ctx.placement, &suite.placement),
    }
}

/// The project's constraints, then the suite's (swarm ANDs them all), each once.
fn placement(project: &[String], suite: &[String]) -> Vec<String> {
    let mut all: Vec<String> = Vec::with_capacity(project.len() + suite.len());
    for constraint in project.iter().chain(suite) {
        if !all.contains(constraint) {
            all.push(constraint.clone());
        }
    }
    all
}

fn finish(report: &mut SuiteReport, clock: Instant) {
    report.finished_at = Some(Utc::now());
    report.duration = clock.elapsed();
}

/// Limits hit while extracting are a cause of their own: the results exist but are too big.
fn extraction_cause(error: CollectError) -> Cause {
    let message = error.to_string();
    match error {
        CollectError::ArchiveTooLarge { .. }
        | CollectError::TooLarge { .. }
        | CollectError::TooManyEntries { .. } => Cause::ResultTooLarge { message },
        _ => Cause::ResultNotExtracted { message },
    }
}

/// Why the run stopped; a stop without a reason can only have come from a signal.
fn stop_reason(stop: &StopSignal) -> StopReason {
    stop.reason().unwrap_or(StopReason::Interrupted {
        signal: Signal::Interrupt,
    })
}

fn stopped_outcome(report: &mut SuiteReport, reason: &StopReason) {
    report.outcome = match reason {
        StopReason::FailFast { .. } => Outcome::Skipped,
        StopReason::Interrupted { .. } | StopReason::Cancelled { .. } => Outcome::Cancelled,
    };
    report.cause = Some(Cause::Stopped {
        reason: reason.clone(),
    });
}

fn stopped_before_start(mut report: SuiteReport, stop: &StopSignal) -> SuiteReport {
    stopped_outcome(&mut report, &stop_reason(stop));
    report
}

fn engine_failure(report: SuiteReport, clock: Instant, error: EngineError) -> SuiteReport {
    local_failure(report, clock, Cause::from(error))
}

fn local_failure(mut report: SuiteReport, clock: Instant, cause: Cause) -> SuiteReport {
    finish(&mut report, clock);
    report.outcome = Outcome::Error;
    report.cause = Some(cause);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::suite;

    #[test]
    fn a_container_is_placed_by_the_projects_constraints_then_the_suites() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = RunContext {
            run_id: "r".into(),
            target: dir.path().join("target"),
            target_volume: None,
            reports_dir: dir.path().join("reports"),
            suppressions: Arc::default(),
            baseline: None,
            placement: vec!["node.labels.scanner == true".into()],
        };
        let mut s = suite("a");
        s.placement = vec![
            "node.role == worker".into(),
            "node.labels.scanner == true".into(),
        ];
        assert_eq!(
            container_spec(&s, &ctx, 1).placement,
            ["node.labels.scanner == true", "node.role == worker"]
        );
        assert_eq!(container_spec(&suite("b"), &ctx, 1).placement.len(), 1);
    }
}
