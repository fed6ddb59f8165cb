//! Runs the planned suites concurrently: at most `jobs` weight units at once, in plan
//! order, with fail-fast and cancellation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Suite;
use crate::engine::Engine;
use crate::event::{Event, EventSender};
use crate::outcome::{Outcome, SuiteReport};
use crate::runner::{self, RunContext};

/// Why a run stops before every suite has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// `--fail-fast`, after the named suite failed.
    FailFast { after: String },
    /// SIGINT or SIGTERM.
    Interrupted { signal: &'static str },
}

/// Tells every running suite to stop, and remembers the first reason given.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl StopSignal {
    /// Stops the run. Only the first reason counts.
    pub fn stop(&self, reason: StopReason) {
        self.reason.lock().unwrap().get_or_insert(reason);
        self.token.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.lock().unwrap().clone()
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ScheduleOptions {
    /// Weight units that may run at once (at least 1).
    pub jobs: usize,
    pub fail_fast: bool,
}

/// Runs `suites` and returns one report per suite, in the same order.
pub async fn run_all<E: Engine>(
    engine: Arc<E>,
    suites: Vec<Suite>,
    ctx: Arc<RunContext>,
    options: ScheduleOptions,
    stop: StopSignal,
    events: EventSender,
) -> Vec<SuiteReport> {
    let jobs = options.jobs.max(1);
    let mut scheduler = Scheduler {
        reports: vec![None; suites.len()],
        names: suites
            .iter()
            .map(|s| (s.name.clone(), s.image.clone()))
            .collect(),
        running: JoinSet::new(),
        task_index: HashMap::new(),
        options,
        stop: stop.clone(),
        events: events.clone(),
    };
    let slots = Arc::new(Semaphore::new(jobs));
    let mut queue = suites.into_iter().enumerate().peekable();
    while let Some((_, next)) = queue.peek() {
        if stop.is_stopped() {
            break;
        }
        // A suite heavier than the whole budget still runs, alone.
        let weight = next.weight.clamp(1, jobs as u32);
        tokio::select! {
            biased;
            () = stop.stopped() => break,
            Some(joined) = scheduler.running.join_next_with_id(), if !scheduler.running.is_empty() => {
                scheduler.record(joined);
            }
            permit = slots.clone().acquire_many_owned(weight) => {
                let permit = permit.expect("the semaphore is never closed");
                let (index, suite) = queue.next().expect("peeked");
                let (engine, ctx, stop, events) = (engine.clone(), ctx.clone(), stop.clone(), events.clone());
                let handle = scheduler.running.spawn(async move {
                    let report = runner::run_suite(&*engine, &suite, &ctx, &stop, &events).await;
                    drop(permit);
                    report
                });
                scheduler.task_index.insert(handle.id(), index);
            }
        }
    }
    while let Some(joined) = scheduler.running.join_next_with_id().await {
        scheduler.record(joined);
    }
    scheduler.finish_unstarted(queue.map(|(i, _)| i))
}

struct Scheduler {
    reports: Vec<Option<SuiteReport>>,
    /// Name and image of each planned suite, for suites that never start.
    names: Vec<(String, String)>,
    running: JoinSet<SuiteReport>,
    task_index: HashMap<tokio::task::Id, usize>,
    options: ScheduleOptions,
    stop: StopSignal,
    events: EventSender,
}

impl Scheduler {
    fn record(&mut self, joined: Result<(tokio::task::Id, SuiteReport), tokio::task::JoinError>) {
        let (index, report) = match joined {
            Ok((id, report)) => (self.task_index[&id], report),
            Err(e) => {
                let index = self.task_index[&e.id()];
                let (name, image) = &self.names[index];
                let reason = format!("internal error while running the suite: {e}");
                (
                    index,
                    SuiteReport::not_run(name, image, Outcome::Error, reason),
                )
            }
        };
        if self.options.fail_fast && report.outcome.is_failure() {
            self.stop.stop(StopReason::FailFast {
                after: report.name.clone(),
            });
        }
        let _ = self
            .events
            .send(Event::SuiteFinished(Box::new(report.clone())));
        self.reports[index] = Some(report);
    }

    /// Reports the suites that never got a slot as skipped (fail-fast) or cancelled.
    fn finish_unstarted(mut self, unstarted: impl Iterator<Item = usize>) -> Vec<SuiteReport> {
        let (outcome, reason) = match self.stop.reason() {
            Some(StopReason::FailFast { after }) => (
                Outcome::Skipped,
                format!("not started: --fail-fast stopped the run after `{after}` failed"),
            ),
            Some(StopReason::Interrupted { signal }) => (
                Outcome::Cancelled,
                format!("not started: the run was interrupted by {signal}"),
            ),
            None => (Outcome::Error, "not started".to_string()),
        };
        for index in unstarted {
            let (name, image) = &self.names[index];
            let report = SuiteReport::not_run(name, image, outcome, reason.clone());
            let _ = self
                .events
                .send(Event::SuiteFinished(Box::new(report.clone())));
            self.reports[index] = Some(report);
        }
        self.reports.into_iter().flatten().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::{Policy, ResultFormat, ResultsSpec};
    use crate::engine::memory::MemoryEngine;
    use crate::findings::Severity;

    fn suite(name: &str, script: &[&str]) -> Suite {
        Suite {
            name: name.into(),
            description: String::new(),
            tags: vec![],
            image: "img".into(),
            build: None,
            command: Some(script.iter().map(|s| s.to_string()).collect()),
            env: BTreeMap::new(),
            secret_env: Default::default(),
            timeout: Duration::from_secs(60),
            retries: 0,
            weight: 1,
            results: ResultsSpec {
                format: ResultFormat::ExitCode,
                path: "/results".into(),
                ok_exit_codes: vec![0],
                fail_on: Severity::High,
            },
            policy: Policy::default(),
            source: "test.toml".into(),
        }
    }

    async fn run(
        engine: Arc<MemoryEngine>,
        suites: Vec<Suite>,
        jobs: usize,
        fail_fast: bool,
        stop: StopSignal,
    ) -> Vec<SuiteReport> {
        let reports_dir = tempfile::tempdir().unwrap().keep();
        let ctx = RunContext {
            run_id: "test".into(),
            target: "/".into(),
            reports_dir,
        };
        let (events, _inbox) = tokio::sync::mpsc::unbounded_channel();
        let options = ScheduleOptions { jobs, fail_fast };
        run_all(engine, suites, Arc::new(ctx), options, stop, events).await
    }

    fn outcomes(reports: &[SuiteReport]) -> Vec<(&str, Outcome)> {
        reports
            .iter()
            .map(|r| (r.name.as_str(), r.outcome))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn never_runs_more_than_jobs_at_once_and_keeps_plan_order() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = (0..7)
            .map(|i| suite(&format!("s{i}"), &["1000", "0"]))
            .collect();
        let reports = run(engine.clone(), suites, 3, false, StopSignal::default()).await;
        assert_eq!(engine.max_running(), 3);
        let names: Vec<_> = reports.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
        assert!(reports.iter().all(|r| r.outcome == Outcome::Passed));
        assert_eq!(engine.leftover(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_heavy_suite_takes_several_slots() {
        let engine = Arc::new(MemoryEngine::default());
        let mut heavy = suite("heavy", &["1000", "0"]);
        heavy.weight = 4;
        let suites = vec![
            suite("a", &["1000", "0"]),
            heavy,
            suite("b", &["1000", "0"]),
        ];
        run(engine.clone(), suites, 4, false, StopSignal::default()).await;
        let intervals = engine.intervals();
        let heavy = intervals.iter().find(|i| i.suite == "heavy").unwrap();
        for other in intervals.iter().filter(|i| i.suite != "heavy") {
            let overlaps = other.start < heavy.end && heavy.start < other.end;
            assert!(!overlaps, "{} overlapped the heavy suite", other.suite);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_follow_exit_codes_and_missing_images() {
        let engine = Arc::new(MemoryEngine::default());
        let mut missing = suite("missing", &["10", "0"]);
        missing.image = "missing".into();
        let mut allowed = suite("allowed", &["10", "1"]);
        allowed.results.ok_exit_codes = vec![0, 1];
        let mut slow = suite("slow", &["100000", "0"]);
        slow.timeout = Duration::from_secs(5);
        let suites = vec![
            suite("ok", &["10", "0"]),
            suite("bad", &["10", "3"]),
            allowed,
            missing,
            slow,
        ];
        let reports = run(engine, suites, 2, false, StopSignal::default()).await;
        assert_eq!(
            outcomes(&reports),
            [
                ("ok", Outcome::Passed),
                ("bad", Outcome::Failed),
                ("allowed", Outcome::Passed),
                ("missing", Outcome::Error),
                ("slow", Outcome::TimedOut),
            ]
        );
        assert!(
            reports[1]
                .reason
                .as_deref()
                .unwrap()
                .contains("exit code 3")
        );
        assert!(reports[3].reason.as_deref().unwrap().contains("`missing`"));
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_memory_is_an_error_with_that_reason() {
        let engine = Arc::new(MemoryEngine::default());
        let reports = run(
            engine,
            vec![suite("hog", &["10", "137", "oom"])],
            1,
            false,
            StopSignal::default(),
        )
        .await;
        assert_eq!(reports[0].outcome, Outcome::Error);
        assert!(
            reports[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("out of memory")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fail_fast_skips_the_rest() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = vec![
            suite("fails", &["10", "1"]),
            suite("running", &["100000", "0"]),
            suite("queued", &["10", "0"]),
        ];
        let reports = run(engine.clone(), suites, 2, true, StopSignal::default()).await;
        assert_eq!(
            outcomes(&reports),
            [
                ("fails", Outcome::Failed),
                ("running", Outcome::Skipped),
                ("queued", Outcome::Skipped)
            ]
        );
        assert_eq!(engine.leftover(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_cancels_running_and_queued_suites() {
        let engine = Arc::new(MemoryEngine::default());
        let stop = StopSignal::default();
        let suites = vec![
            suite("quick", &["10", "0"]),
            suite("long", &["100000", "0"]),
            suite("long2", &["100000", "0"]),
            suite("queued", &["10", "0"]),
        ];
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.stop(StopReason::Interrupted { signal: "SIGINT" });
        });
        let reports = run(engine.clone(), suites, 2, false, stop).await;
        assert_eq!(
            outcomes(&reports),
            [
                ("quick", Outcome::Passed),
                ("long", Outcome::Cancelled),
                ("long2", Outcome::Cancelled),
                ("queued", Outcome::Cancelled),
            ]
        );
        assert_eq!(engine.leftover(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_after_infrastructure_errors() {
        let engine = Arc::new(MemoryEngine::default());
        let mut flaky = suite("flaky", &["10", "0", "fail-create:1"]);
        flaky.retries = 2;
        let mut failing = suite("failing", &["10", "1"]);
        failing.retries = 2;
        let mut broken = suite("broken", &["10", "0", "fail-create:5"]);
        broken.retries = 1;
        let reports = run(
            engine,
            vec![flaky, failing, broken],
            1,
            false,
            StopSignal::default(),
        )
        .await;
        assert_eq!(
            outcomes(&reports),
            [
                ("flaky", Outcome::Passed),
                ("failing", Outcome::Failed),
                ("broken", Outcome::Error)
            ]
        );
        let attempts: Vec<u32> = reports.iter().map(|r| r.attempts).collect();
        assert_eq!(attempts, [2, 1, 2]);
    }
}
