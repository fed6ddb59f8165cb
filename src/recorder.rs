//! Builds the run's [`RunReport`] from its events, the way cargo-nextest's aggregator does:
//! the report is what the event stream said happened, so the report files and any other
//! subscriber of the stream cannot disagree.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::event::{Event, EventKind};
use crate::outcome::{self, Counts, InvalidSuite, RunReport, SuiteReport};
use crate::stop::{Signal, StopReason};

#[derive(Debug, Default)]
pub struct Recorder {
    run_id: String,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// Plan index of each suite named in `RunStarted`.
    index: HashMap<String, usize>,
    /// One slot per planned suite, in plan order.
    suites: Vec<Option<SuiteReport>>,
    /// Reports of suites the plan did not name (or named twice): kept, after the others.
    unplanned: Vec<SuiteReport>,
    invalid_suites: Vec<InvalidSuite>,
    partition: Option<String>,
    interrupted: Option<Signal>,
}

impl Recorder {
    pub fn record(&mut self, event: Event) {
        match event.kind {
            EventKind::RunStarted {
                run_id,
                suites,
                invalid_suites,
                partition,
                ..
            } => {
                self.run_id = run_id;
                self.started_at = Some(event.at);
                self.suites = vec![None; suites.len()];
                self.index = suites
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| (n, i))
                    .collect();
                self.invalid_suites = invalid_suites;
                self.partition = partition;
            }
            EventKind::SuiteFinished(report) => self.place(*report),
            EventKind::Stopping {
                reason: StopReason::Interrupted { signal },
            } => self.interrupted = Some(signal),
            EventKind::RunFinished { .. } => self.finished_at = Some(event.at),
            // Builds are in the event stream and the build logs, not the report.
            EventKind::ImageBuildStarted { .. }
            | EventKind::ImageBuildFinished { .. }
            | EventKind::SuiteStarted { .. }
            | EventKind::SuiteRetrying { .. }
            | EventKind::ServiceStarted { .. }
            | EventKind::ServiceReady { .. }
            | EventKind::ServiceFinished { .. }
            | EventKind::Stopping { .. } => {}
        }
    }

    fn place(&mut self, report: SuiteReport) {
        match self.index.get(&report.name).map(|&i| &mut self.suites[i]) {
            Some(slot @ None) => *slot = Some(report),
            _ => self.unplanned.push(report),
        }
    }

    fn outcomes(&self) -> impl Iterator<Item = outcome::Outcome> + '_ {
        let planned = self.suites.iter().flatten();
        planned.chain(&self.unplanned).map(|s| s.outcome)
    }

    /// The run's last event, from what has been recorded so far.
    pub fn finished(&self) -> EventKind {
        let counts = Counts::of_outcomes(self.outcomes());
        EventKind::RunFinished {
            exit_code: outcome::exit_code(
                &counts,
                !self.invalid_suites.is_empty(),
                self.interrupted,
            ),
            counts,
            interrupted: self.interrupted,
        }
    }

    /// The report, suites in plan order. A planned suite that never reported (which the
    /// scheduler does not allow) is left out rather than invented.
    pub fn into_report(self) -> RunReport {
        let now = Utc::now();
        let started_at = self.started_at.unwrap_or(now);
        let mut suites: Vec<SuiteReport> = self.suites.into_iter().flatten().collect();
        suites.extend(self.unplanned);
        RunReport {
            run_id: self.run_id,
            phalanx_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
            finished_at: self.finished_at.unwrap_or(now),
            interrupted: self.interrupted,
            suites,
            invalid_suites: self.invalid_suites,
            partition: self.partition,
            // The run's suppressions are not an event; `run::execute` puts them back.
            suppressions: Default::default(),
            target: None,
            baseline: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::cause::Cause;
    use crate::config::Suite;
    use crate::engine::memory::MemoryEngine;
    use crate::event::Subscriber;
    use crate::outcome::Outcome;
    use crate::run::{self, RunPlan};
    use crate::runner::RunContext;
    use crate::schedule::ScheduleOptions;
    use crate::stop::StopSignal;

    fn suite(name: &str, script: &[&str]) -> Suite {
        let mut suite = crate::config::tests_support::suite(name);
        suite.command = Some(script.iter().map(|s| s.to_string()).collect());
        suite.timeout = Duration::from_secs(60);
        suite
    }

    fn plan(suites: Vec<Suite>, fail_fast: bool) -> RunPlan {
        let reports_dir = tempfile::tempdir().unwrap().keep();
        RunPlan {
            run_id: "rec".into(),
            suites,
            context: RunContext {
                run_id: "rec".into(),
                target: "/".into(),
                target_volume: None,
                reports_dir,
                suppressions: Default::default(),
                baseline: None,
                placement: Vec::new(),
            },
            options: ScheduleOptions {
                jobs: 2,
                image_jobs: 2,
                fail_fast,
                shared_slots: None,
            },
            invalid_suites: Vec::new(),
            history: Default::default(),
            partition: None,
            services: Vec::new(),
        }
    }

    /// Runs `plan` on the in-memory engine; returns the report and every event seen.
    async fn run(plan: RunPlan, stop: StopSignal) -> (RunReport, Vec<Event>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let follower: Box<dyn Subscriber> =
            Box::new(move |e: &Event| log.lock().unwrap().push(e.clone()));
        let engine = Arc::new(MemoryEngine::default());
        let report = run::execute(engine, plan, stop, vec![follower]).await;
        let events = seen.lock().unwrap().clone();
        (report, events)
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_numbered_from_one_without_gaps_and_end_with_run_finished() {
        let suites = vec![
            suite("slow", &["5000", "0"]),
            suite("fails", &["10", "1"]),
            suite("quick", &["10", "0"]),
        ];
        let (report, events) = run(plan(suites, false), StopSignal::default()).await;
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(matches!(events[0].kind, EventKind::RunStarted { .. }));
        let EventKind::RunFinished {
            exit_code, counts, ..
        } = &events.last().unwrap().kind
        else {
            panic!("the last event is {:?}", events.last());
        };
        assert_eq!(*exit_code, report.exit_code());
        assert_eq!(*exit_code, crate::exit::FAILED);
        assert_eq!((counts.total, counts.passed, counts.failed), (3, 2, 1));
        // Reports in plan order, whatever order they finished in.
        let names: Vec<&str> = report.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["slow", "fails", "quick"]);
        assert_eq!(report.started_at, events[0].at);
        assert_eq!(report.finished_at, events.last().unwrap().at);
        let finished = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::SuiteFinished(_)))
            .count();
        assert_eq!(finished, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_is_recorded_as_the_run_being_interrupted() {
        let stop = StopSignal::default();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.stop(StopReason::Interrupted {
                signal: Signal::Terminate,
            });
        });
        let suites = vec![
            suite("long", &["100000", "0"]),
            suite("queued", &["10", "0"]),
        ];
        let mut plan = plan(suites, false);
        plan.options.jobs = 1;
        let (report, events) = run(plan, stop).await;
        assert_eq!(report.interrupted, Some(Signal::Terminate));
        assert_eq!(report.exit_code(), crate::exit::SIGTERM);
        assert!(events.iter().any(|e| matches!(
            e.kind,
            EventKind::Stopping {
                reason: StopReason::Interrupted { .. }
            }
        )));
        assert_eq!(report.suites[0].outcome, Outcome::Cancelled);
        assert!(report.suites[0].cause.as_ref().unwrap().is_interruption());
        assert!(matches!(
            report.suites[1].cause,
            Some(Cause::NotStarted { .. })
        ));
    }

    #[test]
    fn a_run_that_cannot_start_reports_every_suite_with_the_cause() {
        let cause = Cause::NoEngine {
            error: crate::engine::EngineError::Unreachable {
                location: "unix:///none".into(),
                message: "refused".into(),
            },
        };
        let plan = plan(
            vec![suite("a", &["1", "0"]), suite("b", &["1", "0"])],
            false,
        );
        let report = run::not_started(&plan, &cause, Vec::new());
        assert_eq!(report.exit_code(), crate::exit::INFRA);
        assert!(
            report
                .suites
                .iter()
                .all(|s| s.cause.as_ref() == Some(&cause))
        );
        assert!(cause.to_string().contains("Is the Docker engine running?"));
    }
}
