//! One `phalanx run`: plan what to run, schedule it on the engine, and record the run's
//! report from its events. Writing the report files is the caller's job, so nothing here
//! decides where output goes.

use std::sync::Arc;

use crate::cause::Cause;
use crate::config::{Service, Suite};
use crate::engine::Engine;
use crate::event::{self, EventKind, EventSender, Hub, Subscriber};
use crate::history::History;
use crate::outcome::{InvalidSuite, Outcome, RunReport, SuiteReport};
use crate::plan;
use crate::runner::RunContext;
use crate::schedule::{self, ScheduleOptions};
use crate::stop::{StopReason, StopSignal};

pub struct RunPlan {
    pub run_id: String,
    pub suites: Vec<Suite>,
    pub context: RunContext,
    pub options: ScheduleOptions,
    /// Selected suite files that could not be read: reported, not run.
    pub invalid_suites: Vec<InvalidSuite>,
    /// Durations from earlier runs: suites start longest expected first. The reports keep
    /// the order of `suites`.
    pub history: History,
    /// `hash:M/N` when this run is one CI shard of the selection; named in the reports.
    pub partition: Option<String>,
    /// The services the suites may need (all those declared: the ones the selected suites
    /// need are started, see [`crate::services`]).
    pub services: Vec<Service>,
}

/// A run id that is unique on this engine: time, process and a per-process counter.
pub fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40) ^ u64::from(n);
    format!("{:012x}", mixed & 0xffff_ffff_ffff)
}

/// Runs the plan to the end (or until `stop`), handing every event in order to each of
/// `subscribers`, and removes everything the run created before returning the report the
/// events make.
pub async fn execute<E: Engine>(
    engine: Arc<E>,
    plan: RunPlan,
    stop: StopSignal,
    subscribers: Vec<Box<dyn Subscriber>>,
) -> RunReport {
    let (events, inbox) = event::channel();
    events.send(run_started(&plan));
    let mut hub = Hub::new(subscribers);
    let follow = tokio::spawn(async move {
        hub.follow(inbox).await;
        hub
    });
    let watcher = announce_stop(stop.clone(), events.clone());
    let suppressions = Arc::clone(&plan.context.suppressions);
    let baseline = plan.context.baseline.clone();
    let order = plan::longest_first(&plan.suites, &plan.history);
    let mut planned: Vec<Option<Suite>> = plan.suites.into_iter().map(Some).collect();
    let started: Vec<Suite> = order.iter().filter_map(|&i| planned[i].take()).collect();
    schedule::run_with_services(
        engine.clone(),
        started,
        plan.services,
        Arc::new(plan.context),
        plan.options,
        stop.clone(),
        events.clone(),
    )
    .await;
    watcher.abort();
    if watcher.await.is_err()
        && let Some(reason) = stop.reason()
    {
        // The run stopped as it ended, before the watcher could say so.
        events.send(EventKind::Stopping { reason });
    }
    // Whatever a suite could not remove (an engine hiccup, a cancelled removal) goes now.
    let _ = engine.remove_labelled(Some(&plan.run_id)).await;
    drop(events);
    let mut report = match follow.await {
        Ok(hub) => hub.finish(),
        // Only a panicking subscriber gets here; its panic is the bug to fix.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    report.suppressions = suppressions;
    report.baseline = baseline;
    report
}

fn run_started(plan: &RunPlan) -> EventKind {
    EventKind::RunStarted {
        run_id: plan.run_id.clone(),
        suites: plan.suites.iter().map(|s| s.name.clone()).collect(),
        jobs: plan.options.jobs,
        invalid_suites: plan.invalid_suites.clone(),
        partition: plan.partition.clone(),
    }
}

/// A run that cannot start any suite (no engine answers, or it was cancelled while
/// queued): every suite ends with `cause`, told to `subscribers` like any run. The
/// outcome is what the cause makes it: cancelled or skipped for a run stopped before it
/// began, an error otherwise.
pub fn not_started(
    plan: &RunPlan,
    cause: &Cause,
    subscribers: Vec<Box<dyn Subscriber>>,
) -> RunReport {
    let mut hub = Hub::new(subscribers);
    hub.publish(run_started(plan));
    let outcome = match cause {
        Cause::NotStarted {
            reason: StopReason::FailFast { .. },
        } => Outcome::Skipped,
        Cause::NotStarted { .. } => Outcome::Cancelled,
        _ => Outcome::Error,
    };
    for suite in &plan.suites {
        let report = SuiteReport::not_run(&suite.name, &suite.image, outcome, Some(cause.clone()));
        hub.publish(EventKind::SuiteFinished(Box::new(report)));
    }
    hub.finish()
}

/// Tells the subscribers once when and why the run starts stopping early.
fn announce_stop(stop: StopSignal, events: EventSender) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        stop.stopped().await;
        if let Some(reason) = stop.reason() {
            events.send(EventKind::Stopping { reason });
        }
    })
}
