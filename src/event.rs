//! The event stream a run emits: the record of what happened, in order. Every stage sends
//! [`EventKind`]s into one channel; one task numbers and timestamps them and hands each
//! [`Event`] to every [`Subscriber`] in turn (progress, the event log, the
//! [`Recorder`](crate::recorder::Recorder) that builds the run's report). Subscribers only
//! read: nothing they do flows back into the run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::cause::Cause;
use crate::outcome::{InvalidSuite, RunReport, SuiteReport};
use crate::recorder::Recorder;
use crate::report::json::Counts;
use crate::stop::{Signal, StopReason};

/// One thing that happened, numbered and timestamped in the order subscribers see it.
#[derive(Debug, Clone)]
pub struct Event {
    /// 1 for the first event of a run, then one more for each: no gaps, no repeats.
    pub seq: u64,
    /// When the event was numbered (microseconds after it was sent).
    pub at: DateTime<Utc>,
    pub kind: EventKind,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    RunStarted {
        run_id: String,
        /// The suites to run, in plan order (the order of the reports).
        suites: Vec<String>,
        jobs: usize,
        /// Selected suite files that could not be read: reported, never run.
        invalid_suites: Vec<InvalidSuite>,
        /// `hash:M/N` when the run is one CI shard of the selection.
        partition: Option<String>,
    },
    /// A missing image started building (with its own concurrency, `image_jobs`, not the
    /// suites' slots); `suites` wait for it.
    ImageBuildStarted {
        image: String,
        suites: Vec<String>,
    },
    /// A build that started has ended. A failed build fails its suites with `cause`; it is
    /// never tried again in the same run.
    ImageBuildFinished {
        image: String,
        suites: Vec<String>,
        outcome: BuildOutcome,
        duration: Duration,
        /// Why it failed (`None` unless `outcome` is `Failed`).
        cause: Option<Cause>,
    },
    /// A suite got its slots and its container is being prepared (image, create, start).
    SuiteStarted {
        name: String,
        attempt: u32,
    },
    /// An infrastructure error ended an attempt; the suite will be tried again.
    SuiteRetrying {
        name: String,
        attempt: u32,
        cause: Cause,
    },
    SuiteFinished(Box<SuiteReport>),
    /// A service's container started on the run's private network (see
    /// [`crate::services`]); `suites` are the ones that need it.
    ServiceStarted {
        name: String,
        image: String,
        suites: Vec<String>,
    },
    /// The service passed its readiness check `after` its start.
    ServiceReady {
        name: String,
        after: Duration,
    },
    /// The service is gone: stopped after its last suite (`cause` is `None`), or failed
    /// (its suites end as errors with `cause`). Its output is in `log_path`.
    ServiceFinished {
        name: String,
        cause: Option<Cause>,
        log_path: Option<std::path::PathBuf>,
    },
    /// The run is stopping early (fail-fast or a signal).
    Stopping {
        reason: StopReason,
    },
    /// The last event of every run.
    RunFinished {
        exit_code: u8,
        counts: Counts,
        interrupted: Option<Signal>,
    },
}

impl EventKind {
    /// The kind's name in the event log (`suite-finished`).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run-started",
            EventKind::ImageBuildStarted { .. } => "image-build-started",
            EventKind::ImageBuildFinished { .. } => "image-build-finished",
            EventKind::SuiteStarted { .. } => "suite-started",
            EventKind::SuiteRetrying { .. } => "suite-retrying",
            EventKind::SuiteFinished(_) => "suite-finished",
            EventKind::ServiceStarted { .. } => "service-started",
            EventKind::ServiceReady { .. } => "service-ready",
            EventKind::ServiceFinished { .. } => "service-finished",
            EventKind::Stopping { .. } => "stopping",
            EventKind::RunFinished { .. } => "run-finished",
        }
    }
}

/// How an image build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildOutcome {
    Built,
    Failed,
    /// The run stopped (fail-fast or a signal) while it was building.
    Cancelled,
}

/// Where the stages send their events. Sending never fails: once the run's subscriber
/// task is gone there is nobody left to tell.
#[derive(Debug, Clone)]
pub struct EventSender(mpsc::UnboundedSender<EventKind>);

impl EventSender {
    pub fn send(&self, kind: EventKind) {
        let _ = self.0.send(kind);
    }
}

pub type EventReceiver = mpsc::UnboundedReceiver<EventKind>;

/// One ordered stream: the sender for the stages, the receiver for the [`Hub`].
pub fn channel() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (EventSender(tx), rx)
}

/// Something that follows a run. Called from one task, in `seq` order.
pub trait Subscriber: Send {
    fn handle(&mut self, event: &Event);
}

impl<F: FnMut(&Event) + Send> Subscriber for F {
    fn handle(&mut self, event: &Event) {
        self(event)
    }
}

/// Numbers and timestamps events, hands them to the subscribers, and records the run.
pub struct Hub {
    next_seq: u64,
    recorder: Recorder,
    subscribers: Vec<Box<dyn Subscriber>>,
}

impl Hub {
    pub fn new(subscribers: Vec<Box<dyn Subscriber>>) -> Self {
        Hub {
            next_seq: 1,
            recorder: Recorder::default(),
            subscribers,
        }
    }

    pub fn publish(&mut self, kind: EventKind) {
        let event = Event {
            seq: self.next_seq,
            at: Utc::now(),
            kind,
        };
        self.next_seq += 1;
        for subscriber in &mut self.subscribers {
            subscriber.handle(&event);
        }
        // Last, and by value: the recorder keeps the reports the event carries.
        self.recorder.record(event);
    }

    /// Reads `inbox` until every sender is gone.
    pub async fn follow(&mut self, mut inbox: EventReceiver) {
        while let Some(kind) = inbox.recv().await {
            self.publish(kind);
        }
    }

    /// Publishes [`EventKind::RunFinished`] and returns the recorded run.
    pub fn finish(mut self) -> RunReport {
        let finished = self.recorder.finished();
        self.publish(finished);
        self.recorder.into_report()
    }
}
