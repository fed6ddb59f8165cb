//! Runs the planned suites concurrently: at most `jobs` weight units at once, in the order
//! given, with fail-fast and cancellation. While suites wait for a slot, the engine is
//! asked to prepare the containers of the next few, so that a freed slot goes straight to
//! starting one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::cause::Cause;
use crate::config::Suite;
use crate::engine::Engine;
use crate::event::{EventKind, EventSender};
use crate::outcome::{Outcome, SuiteReport};
use crate::runner::{self, RunContext};
use crate::stop::{StopReason, StopSignal};

#[derive(Debug, Clone, Copy)]
pub struct ScheduleOptions {
    /// Weight units that may run at once (at least 1).
    pub jobs: usize,
    pub fail_fast: bool,
}

/// Runs `suites`; every suite's report goes out as one [`EventKind::SuiteFinished`],
/// whether it ran or not.
pub async fn run_all<E: Engine>(
    engine: Arc<E>,
    suites: Vec<Suite>,
    ctx: Arc<RunContext>,
    options: ScheduleOptions,
    stop: StopSignal,
    events: EventSender,
) {
    let jobs = options.jobs.max(1);
    let mut scheduler = Scheduler {
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
    let mut queue: VecDeque<(usize, Suite)> = suites.into_iter().enumerate().collect();
    let mut lookahead = Lookahead::default();
    while let Some((_, next)) = queue.front() {
        if stop.is_stopped() {
            break;
        }
        lookahead.hint(&engine, &ctx, &queue, jobs, slots.available_permits());
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
                let (index, suite) = queue.pop_front().expect("peeked");
                let (engine, ctx, stop, events) = (engine.clone(), ctx.clone(), stop.clone(), events.clone());
                // The slots go back only once the report is recorded, so that a failure
                // stops the run (fail-fast) before anything else can take them.
                let handle = scheduler.running.spawn(async move {
                    let report = runner::run_suite(&*engine, &suite, &ctx, &stop, &events).await;
                    (report, permit)
                });
                scheduler.task_index.insert(handle.id(), index);
            }
        }
    }
    while let Some(joined) = scheduler.running.join_next_with_id().await {
        scheduler.record(joined);
    }
    // What is being prepared finishes before the run's final sweep looks for leftovers.
    lookahead.finish().await;
    scheduler.finish_unstarted(queue.into_iter().map(|(i, _)| i))
}

/// Asks the engine to prepare the first attempt of the next queued suites: as many as
/// there are slots, so that at most about twice `jobs` containers exist at once. A hint the
/// engine could not act on yet (its image is not ready) is given again at the next event.
#[derive(Default)]
struct Lookahead {
    /// Plan indices hinted (and not to be hinted again).
    hinted: std::collections::HashSet<usize>,
    /// Each hint's plan index, and whether to give it again.
    preparing: JoinSet<(usize, bool)>,
}

impl Lookahead {
    fn hint<E: Engine>(
        &mut self,
        engine: &Arc<E>,
        ctx: &Arc<RunContext>,
        queue: &VecDeque<(usize, Suite)>,
        jobs: usize,
        free: usize,
    ) {
        while let Some(done) = self.preparing.try_join_next() {
            if let Ok((index, true)) = done {
                self.hinted.remove(&index);
            }
        }
        // The suites that get their slots at once would only race their own creation.
        let mut left = free;
        let skip = queue
            .iter()
            .take_while(|(_, s)| {
                let weight = s.weight.clamp(1, jobs as u32) as usize;
                let fits = weight <= left;
                left = left.saturating_sub(weight);
                fits
            })
            .count();
        for (index, suite) in queue.iter().skip(skip).take(jobs) {
            if self.hinted.insert(*index) {
                let spec = runner::container_spec(suite, ctx, 1);
                let (engine, index) = (engine.clone(), *index);
                self.preparing
                    .spawn(async move { (index, engine.prepare(&spec).await) });
            }
        }
    }

    async fn finish(self) {
        self.preparing.join_all().await;
    }
}

struct Scheduler {
    /// Name and image of each planned suite, for suites that never start.
    names: Vec<(String, String)>,
    running: JoinSet<(SuiteReport, OwnedSemaphorePermit)>,
    task_index: HashMap<tokio::task::Id, usize>,
    options: ScheduleOptions,
    stop: StopSignal,
    events: EventSender,
}

impl Scheduler {
    fn record(
        &mut self,
        joined: Result<
            (tokio::task::Id, (SuiteReport, OwnedSemaphorePermit)),
            tokio::task::JoinError,
        >,
    ) {
        let (report, permit) = match joined {
            Ok((_, (report, permit))) => (report, Some(permit)),
            Err(e) => {
                let (name, image) = &self.names[self.task_index[&e.id()]];
                let cause = Cause::internal(format!("internal error while running the suite: {e}"));
                let report = SuiteReport::not_run(name, image, Outcome::Error, Some(cause));
                (report, None)
            }
        };
        if self.options.fail_fast && report.outcome.is_failure() {
            self.stop.stop(StopReason::FailFast {
                after: report.name.clone(),
            });
        }
        self.events.send(EventKind::SuiteFinished(Box::new(report)));
        drop(permit);
    }

    /// Reports the suites that never got a slot as skipped (fail-fast) or cancelled.
    fn finish_unstarted(self, unstarted: impl Iterator<Item = usize>) {
        let (outcome, cause) = match self.stop.reason() {
            Some(reason @ StopReason::FailFast { .. }) => {
                (Outcome::Skipped, Cause::NotStarted { reason })
            }
            Some(reason @ StopReason::Interrupted { .. }) => {
                (Outcome::Cancelled, Cause::NotStarted { reason })
            }
            None => (Outcome::Error, Cause::internal("not started")),
        };
        for index in unstarted {
            let (name, image) = &self.names[index];
            let report = SuiteReport::not_run(name, image, outcome, Some(cause.clone()));
            self.events.send(EventKind::SuiteFinished(Box::new(report)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::memory::MemoryEngine;

    fn suite(name: &str, script: &[&str]) -> Suite {
        let mut suite = crate::config::tests_support::suite(name);
        suite.command = Some(script.iter().map(|s| s.to_string()).collect());
        suite.timeout = Duration::from_secs(60);
        suite
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
            target_volume: None,
            reports_dir,
            suppressions: Default::default(),
            baseline: None,
        };
        let (events, inbox) = crate::event::channel();
        events.send(crate::event::EventKind::RunStarted {
            run_id: "test".into(),
            suites: suites.iter().map(|s| s.name.clone()).collect(),
            jobs,
            invalid_suites: Vec::new(),
            partition: None,
        });
        let options = ScheduleOptions { jobs, fail_fast };
        let mut hub = crate::event::Hub::new(Vec::new());
        let schedule = run_all(engine, suites, Arc::new(ctx), options, stop, events);
        tokio::join!(schedule, hub.follow(inbox));
        hub.finish().suites
    }

    fn reason(report: &SuiteReport) -> String {
        report.cause.as_ref().unwrap().to_string()
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
    async fn queued_suites_are_prepared_once_each_in_order() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = (0..6)
            .map(|i| suite(&format!("s{i}"), &["1000", "0"]))
            .collect();
        run(engine.clone(), suites, 2, false, StopSignal::default()).await;
        // Not s0 and s1: they got their slots at once.
        let names: Vec<String> = (2..6).map(|i| format!("phalanx-test-s{i}-1")).collect();
        assert_eq!(engine.prepared(), names);
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
        assert!(reason(&reports[1]).contains("exit code 3"));
        assert!(matches!(
            reports[3].cause,
            Some(Cause::ImageMissing { ref image }) if image == "missing"
        ));
        assert!(reason(&reports[3]).contains("`missing`"));
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
        assert!(matches!(
            reports[0].cause,
            Some(Cause::OutOfMemory { exit_code: 137, .. })
        ));
        assert!(reason(&reports[0]).contains("out of memory"));
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
    async fn after_a_failure_with_fail_fast_nothing_more_starts() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = vec![
            suite("fails", &["10", "1"]),
            suite("next", &["10", "0"]),
            suite("later", &["10", "0"]),
        ];
        let reports = run(engine.clone(), suites, 1, true, StopSignal::default()).await;
        let started: Vec<String> = engine.intervals().into_iter().map(|i| i.suite).collect();
        assert_eq!(started, ["fails"]);
        assert_eq!(reports[1].outcome, Outcome::Skipped);
        assert_eq!(reports[2].outcome, Outcome::Skipped);
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
            stopper.stop(StopReason::Interrupted {
                signal: crate::stop::Signal::Interrupt,
            });
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
