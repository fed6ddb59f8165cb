//! The store as `phalanx run` uses it, in two calls: [`RunRecorder::open`] before the run
//! (expected durations for the order), [`RunRecorder::record`] after the reports are
//! written. Neither can fail the run: every problem comes back as one warning line.

use std::path::Path;

use super::record::RunFacts;
use super::{Store, StoreSettings};
use crate::history::History;
use crate::outcome::RunReport;

/// The store of one run, or none (`--no-store`, or it could not be opened).
#[derive(Debug)]
pub struct RunRecorder {
    store: Option<Store>,
    keep_runs: usize,
}

/// What opening the store for a run gives: the recorder, the expected durations, and
/// warnings to print (each one line).
pub struct Opened {
    pub recorder: RunRecorder,
    pub history: History,
    pub warnings: Vec<String>,
}

impl RunRecorder {
    /// A recorder that records nothing (`--no-store`).
    pub fn off() -> RunRecorder {
        RunRecorder {
            store: None,
            keep_runs: 0,
        }
    }

    /// Opens the store, imports `history_file` into it once (the durations file earlier
    /// Phalanx versions wrote), and reads the expected durations.
    pub fn open(settings: &StoreSettings, history_file: &Path) -> Opened {
        let mut warnings = Vec::new();
        let mut store = match Store::open(&settings.path) {
            Ok(store) => store,
            Err(e) => {
                warnings.push(format!("{e}; this run is not recorded"));
                return Opened {
                    recorder: RunRecorder::off(),
                    history: History::default(),
                    warnings,
                };
            }
        };
        match store.import_history_once(history_file) {
            Ok(Some((_, Some(warning)))) => warnings.push(warning),
            Ok(_) => {}
            Err(e) => warnings.push(format!("{e}; {} was not imported", history_file.display())),
        }
        let history = store.expected_durations().unwrap_or_else(|e| {
            warnings.push(format!("{e}; suites start in plan order"));
            History::default()
        });
        Opened {
            recorder: RunRecorder {
                store: Some(store),
                keep_runs: settings.keep_runs,
            },
            history,
            warnings,
        }
    }

    /// The open store, for reading this run's history back after it is recorded.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Records the finished run and applies retention. Returns a warning line when the
    /// run could not be recorded or old runs could not be pruned.
    pub fn record(&mut self, report: &RunReport, facts: &RunFacts) -> Option<String> {
        let store = self.store.as_mut()?;
        if let Err(e) = store.record(report, facts) {
            return Some(format!("{e}; this run is not recorded"));
        }
        match store.prune(self.keep_runs) {
            Ok(_) => None,
            Err(e) => Some(format!("{e}; old runs were not pruned")),
        }
    }
}
