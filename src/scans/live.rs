//! The events of the runs a server is running, as they happen: each run keeps the lines
//! it has sent so far and a broadcast channel, under one lock, so that a client that
//! joins late is replayed exactly what it missed and then follows, with neither a gap nor
//! a repeat. Every line also goes to the server-wide stream and to the store's writer.
//! Nothing here waits for a client: a client that cannot keep up lags behind a bounded
//! channel and is told so.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::event::{Event, EventKind};
use crate::event_log;
use crate::store::live::StoredEvent;

/// Lines a client may fall behind before it is told it lagged.
pub const CLIENT_BUFFER: usize = 1024;

/// One event of a served run, for every stream: the global one names its run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanEvent {
    pub project: String,
    pub run_id: String,
    pub line: Arc<StoredEvent>,
}

/// A run's events for one client: what happened before it came, then what follows.
pub struct RunEvents {
    pub replay: Vec<Arc<StoredEvent>>,
    /// `None` when the run has ended: the replay is everything.
    pub live: Option<broadcast::Receiver<Arc<StoredEvent>>>,
}

/// One running run's event record.
pub struct LiveLog {
    project: String,
    run_id: String,
    state: Mutex<LogState>,
    global: broadcast::Sender<Arc<ScanEvent>>,
    store: std::sync::mpsc::Sender<super::ToWriter>,
}

struct LogState {
    lines: Vec<Arc<StoredEvent>>,
    /// `None` once the run has ended, so that every receiver sees the end.
    sender: Option<broadcast::Sender<Arc<StoredEvent>>>,
    /// Suites with a container being prepared or running.
    running: BTreeSet<String>,
}

impl LiveLog {
    pub fn new(
        project: &str,
        run_id: &str,
        global: broadcast::Sender<Arc<ScanEvent>>,
        store: std::sync::mpsc::Sender<super::ToWriter>,
    ) -> Arc<LiveLog> {
        Arc::new(LiveLog {
            project: project.to_owned(),
            run_id: run_id.to_owned(),
            state: Mutex::new(LogState {
                lines: Vec::new(),
                sender: Some(broadcast::channel(CLIENT_BUFFER).0),
                running: BTreeSet::new(),
            }),
            global,
            store,
        })
    }

    /// Publishes one event of the run to everyone following it.
    pub fn publish(&self, event: &Event) {
        let line = Arc::new(self.line(event));
        let mut state = self.lock();
        match &event.kind {
            EventKind::SuiteStarted { name, .. } => {
                state.running.insert(name.clone());
            }
            EventKind::SuiteRetrying { name, .. } => {
                state.running.remove(name);
            }
            EventKind::SuiteFinished(report) => {
                state.running.remove(&report.name);
            }
            _ => {}
        }
        state.lines.push(line.clone());
        if let Some(sender) = &state.sender {
            // No receiver is fine: nobody is watching.
            let _ = sender.send(line.clone());
        }
        drop(state);
        let _ = self.global.send(Arc::new(ScanEvent {
            project: self.project.clone(),
            run_id: self.run_id.clone(),
            line: line.clone(),
        }));
        // The writer outlives every run; if it is gone the store is, and the run goes on.
        let _ = self
            .store
            .send(super::ToWriter::Line(self.run_id.clone(), line));
    }

    /// The lines after `after` and, unless the run has ended, a receiver for the rest.
    pub fn follow(&self, after: Option<u64>) -> RunEvents {
        let state = self.lock();
        let replay = state
            .lines
            .iter()
            .filter(|l| after.is_none_or(|n| l.seq > n))
            .cloned()
            .collect();
        RunEvents {
            replay,
            live: state.sender.as_ref().map(broadcast::Sender::subscribe),
        }
    }

    /// The run has ended: receivers see their stream close after the last line.
    pub fn close(&self) {
        self.lock().sender = None;
    }

    /// Suites of this run with a container now.
    pub fn running_suites(&self) -> usize {
        self.lock().running.len()
    }

    /// The event as the event log writes it, with the run and project it belongs to.
    fn line(&self, event: &Event) -> StoredEvent {
        let mut value = event_log::line(event);
        if let Value::Object(fields) = &mut value {
            fields.insert("run_id".into(), Value::String(self.run_id.clone()));
            fields.insert("project".into(), Value::String(self.project.clone()));
        }
        StoredEvent {
            seq: event.seq,
            kind: event.kind.name().to_owned(),
            body: value.to_string(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        super::lock(&self.state)
    }
}
