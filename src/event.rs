//! The event stream a run emits. Progress display and report aggregation subscribe to it.

use crate::outcome::SuiteReport;

#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        run_id: String,
        total: usize,
        jobs: usize,
    },
    /// A suite got its slots and its container is being prepared (image, create, start).
    SuiteStarted {
        name: String,
        attempt: u32,
    },
    /// A suite's image is being built because it was missing.
    ImageBuilding {
        name: String,
        image: String,
    },
    /// An infrastructure error ended an attempt; the suite will be tried again.
    SuiteRetrying {
        name: String,
        attempt: u32,
        reason: String,
    },
    SuiteFinished(Box<SuiteReport>),
    /// The run is stopping early (fail-fast or a signal); the reason says which.
    Stopping {
        reason: String,
    },
}

/// Where the stages send their events; the run's subscriber task reads them in order.
pub type EventSender = tokio::sync::mpsc::UnboundedSender<Event>;
