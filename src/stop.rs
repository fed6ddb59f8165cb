//! Why and how a run stops before every suite has run. Its own module so that the
//! scheduler (which stops the run on fail-fast) and the runner (which stops containers)
//! both depend on it rather than on each other.

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::exit;

/// The signal that interrupted a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Signal {
    #[serde(rename = "SIGINT")]
    Interrupt,
    #[serde(rename = "SIGTERM")]
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// The exit code of a run this signal interrupted (128 + the signal number).
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => exit::SIGINT,
            Signal::Terminate => exit::SIGTERM,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a run stops before every suite has run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StopReason {
    /// `--fail-fast`, after the named suite failed.
    FailFast { after: String },
    /// SIGINT or SIGTERM.
    Interrupted { signal: Signal },
    /// Someone cancelled the run (`POST /runs/{id}/cancel`); `by` names their token.
    Cancelled { by: String },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::FailFast { after } => write!(f, "--fail-fast: `{after}` failed"),
            StopReason::Interrupted { signal } => write!(f, "interrupted by {signal}"),
            StopReason::Cancelled { by } => write!(f, "cancelled by {by}"),
        }
    }
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
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
        self.token.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }
}
