//! One `phalanx run`: plan what to run, schedule it on the engine, and gather the run's
//! report. Writing the report files is the caller's job, so nothing here decides where
//! output goes.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;

use crate::config::Suite;
use crate::engine::Engine;
use crate::event::Event;
use crate::history::History;
use crate::outcome::{InvalidSuite, Outcome, RunReport, SuiteReport};
use crate::plan;
use crate::runner::RunContext;
use crate::schedule::{self, ScheduleOptions, StopReason, StopSignal};

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

/// Runs the plan to the end (or until `stop`), feeding `on_event` with every event in order,
/// and removes everything the run created before returning.
pub async fn execute<E: Engine>(
    engine: Arc<E>,
    plan: RunPlan,
    stop: StopSignal,
    mut on_event: impl FnMut(&Event) + Send + 'static,
) -> RunReport {
    let started_at = Utc::now();
    let (events, mut inbox) = mpsc::unbounded_channel();
    let _ = events.send(Event::RunStarted {
        run_id: plan.run_id.clone(),
        total: plan.suites.len(),
        jobs: plan.options.jobs,
    });
    let subscriber = tokio::spawn(async move {
        while let Some(event) = inbox.recv().await {
            on_event(&event);
        }
    });
    let watcher = announce_stop(stop.clone(), events.clone());
    let suppressions = Arc::clone(&plan.context.suppressions);
    let order = plan::longest_first(&plan.suites, &plan.history);
    let mut planned: Vec<Option<Suite>> = plan.suites.into_iter().map(Some).collect();
    let started: Vec<Suite> = order.iter().filter_map(|&i| planned[i].take()).collect();
    let reports = schedule::run_all(
        engine.clone(),
        started,
        Arc::new(plan.context),
        plan.options,
        stop.clone(),
        events,
    )
    .await;
    let suites = in_plan_order(reports, &order);
    watcher.abort();
    let _ = subscriber.await;
    // Whatever a suite could not remove (an engine hiccup, a cancelled removal) goes now.
    let _ = engine.remove_labelled(Some(&plan.run_id)).await;
    RunReport {
        run_id: plan.run_id,
        phalanx_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        finished_at: Utc::now(),
        interrupted: match stop.reason() {
            Some(StopReason::Interrupted { signal }) => Some(signal.to_string()),
            _ => None,
        },
        suites,
        invalid_suites: plan.invalid_suites,
        partition: plan.partition,
        suppressions,
    }
}

/// Puts reports made in start `order` (indices into the plan) back in plan order.
fn in_plan_order(reports: Vec<SuiteReport>, order: &[usize]) -> Vec<SuiteReport> {
    let mut placed: Vec<Option<SuiteReport>> = vec![None; order.len()];
    for (report, &index) in reports.into_iter().zip(order) {
        placed[index] = Some(report);
    }
    placed.into_iter().flatten().collect()
}

/// Tells the subscribers once when and why the run starts stopping early.
fn announce_stop(
    stop: StopSignal,
    events: crate::event::EventSender,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        stop.stopped().await;
        let reason = match stop.reason() {
            Some(StopReason::FailFast { after }) => format!("--fail-fast: `{after}` failed"),
            Some(StopReason::Interrupted { signal }) => format!("interrupted by {signal}"),
            None => "stopping".into(),
        };
        let _ = events.send(Event::Stopping { reason });
    })
}

/// Reports for suites that cannot run at all (for example the engine is unreachable).
pub fn all_errored(suites: &[Suite], reason: &str) -> Vec<SuiteReport> {
    suites
        .iter()
        .map(|s| SuiteReport::not_run(&s.name, &s.image, Outcome::Error, reason))
        .collect()
}
