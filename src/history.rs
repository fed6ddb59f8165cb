//! How long each suite took in earlier runs, so the next run can start the longest first
//! (see [`crate::plan::longest_first`]).
//!
//! [`History`] is the in-memory estimate the plan reads; `phalanx run` fills it from the
//! run store ([`crate::store::Store::expected_durations`]), which keeps it with the same
//! running-estimate rule ([`History::record`]). The file format below is what Phalanx
//! wrote before the store: it is still read, to import it into a store once.
//!
//! A small JSON file, `.phalanx/history.json` by default, keyed by suite name and image
//! (a new image may well change how long a suite takes). It is only a hint: a missing file
//! is an empty history, and an unreadable or corrupt one is ignored with a warning and
//! rewritten; a run never fails because of it. Writes go to a temporary file in the same
//! folder that is then renamed over the old one, so a reader never sees half a file.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Suite;
use crate::outcome::{Outcome, SuiteReport};

/// Where the history lives unless told otherwise, relative to the working directory.
pub const DEFAULT_PATH: &str = ".phalanx/history.json";

/// Bumped when the file's meaning changes; a file of another version is ignored.
const VERSION: u32 = 1;

/// Entries not refreshed for this long are dropped when the file is written.
const FORGET_AFTER: chrono::Duration = chrono::Duration::days(90);

/// Weight of the newest duration in the running estimate: recent runs count most, one
/// outlier does not decide alone.
const NEWEST_WEIGHT: f64 = 0.5;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    entries: HashMap<(String, String), Entry>,
}

/// What is known about one suite (with one image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub image: String,
    /// The running estimate of its duration, in seconds.
    pub expected_secs: f64,
    /// The last duration seen, in seconds.
    pub last_secs: f64,
    /// How many runs went into the estimate.
    pub runs: u32,
    pub updated: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    suites: Vec<Entry>,
}

impl History {
    /// Reads the history at `path`. A missing file is an empty history without a word; a
    /// file that cannot be used is an empty history and a warning saying why.
    pub fn load(path: &Path) -> (History, Option<String>) {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return (History::default(), None);
            }
            Err(e) => return (History::default(), Some(ignored(path, &e.to_string()))),
        };
        match Self::parse(&text) {
            Ok(history) => (history, None),
            Err(why) => (History::default(), Some(ignored(path, &why))),
        }
    }

    fn parse(text: &[u8]) -> Result<History, String> {
        let file: FileFormat = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if file.version != VERSION {
            return Err(format!(
                "version {} is not the {VERSION} this Phalanx writes",
                file.version
            ));
        }
        let entries = file
            .suites
            .into_iter()
            .filter(|e| e.expected_secs.is_finite() && e.expected_secs >= 0.0)
            .map(|e| ((e.name.clone(), e.image.clone()), e))
            .collect();
        Ok(History { entries })
    }

    /// A history of these entries (the run store keeps them in a table).
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> History {
        let entries = entries
            .into_iter()
            .filter(|e| e.expected_secs.is_finite() && e.expected_secs >= 0.0)
            .map(|e| ((e.name.clone(), e.image.clone()), e))
            .collect();
        History { entries }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// How long `suite` is expected to take, if it ran before with the same image.
    pub fn expected(&self, suite: &Suite) -> Option<Duration> {
        self.entries
            .get(&(suite.name.clone(), suite.image.clone()))
            .map(|e| Duration::from_secs_f64(e.expected_secs))
    }

    pub fn get(&self, name: &str, image: &str) -> Option<&Entry> {
        self.entries.get(&(name.to_string(), image.to_string()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the durations of the suites that ran to their end. Suites that never started,
    /// were cancelled, or failed before their container ran say nothing about how long they
    /// take; a time-out says "at least this long", which is worth keeping.
    pub fn record(&mut self, reports: &[SuiteReport], now: DateTime<Utc>) {
        for report in reports.iter().filter(|r| tells_duration(r)) {
            let secs = report.duration.as_secs_f64();
            let key = (report.name.clone(), report.image.clone());
            match self.entries.get_mut(&key) {
                Some(entry) => {
                    entry.expected_secs =
                        NEWEST_WEIGHT * secs + (1.0 - NEWEST_WEIGHT) * entry.expected_secs;
                    entry.last_secs = secs;
                    entry.runs = entry.runs.saturating_add(1);
                    entry.updated = now;
                }
                None => {
                    let entry = Entry {
                        name: report.name.clone(),
                        image: report.image.clone(),
                        expected_secs: secs,
                        last_secs: secs,
                        runs: 1,
                        updated: now,
                    };
                    self.entries.insert(key, entry);
                }
            }
        }
    }

    /// Writes the history atomically, leaving out entries older than [`FORGET_AFTER`].
    pub fn save(&self, path: &Path, now: DateTime<Utc>) -> std::io::Result<()> {
        let mut suites: Vec<Entry> = self
            .entries
            .values()
            .filter(|e| now - e.updated < FORGET_AFTER)
            .cloned()
            .collect();
        suites.sort_by(|a, b| (&a.name, &a.image).cmp(&(&b.name, &b.image)));
        let file = FileFormat {
            version: VERSION,
            suites,
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        text.push(b'\n');
        write_atomically(path, &text)
    }
}

/// Merges this run's durations into the history file at `path`. The file is read again
/// right before writing, so that runs finishing at the same time lose as little as
/// possible of each other's records. Returns a warning when the file could not be read or
/// written.
pub fn record_run(path: &Path, reports: &[SuiteReport]) -> Option<String> {
    let (mut history, warning) = History::load(path);
    let now = Utc::now();
    history.record(reports, now);
    match history.save(path, now) {
        Ok(()) => warning,
        Err(e) => Some(format!(
            "could not write the run history {}: {e}; the next run orders suites without it",
            path.display()
        )),
    }
}

fn tells_duration(report: &SuiteReport) -> bool {
    match report.outcome {
        Outcome::Passed | Outcome::Failed | Outcome::TimedOut => true,
        // An error after the container ran (out of memory, unreadable results) still took
        // the time it took; an error before (image missing) took none.
        Outcome::Error => report.exit_code.is_some(),
        Outcome::Skipped | Outcome::Cancelled => false,
    }
}

fn ignored(path: &Path, why: &str) -> String {
    format!("ignoring the run history {} ({why})", path.display())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, outcome: Outcome, secs: u64) -> SuiteReport {
        let mut r = SuiteReport::not_run(name, "img:1", outcome, None);
        r.duration = Duration::from_secs(secs);
        r.exit_code = Some(0);
        r
    }

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + day * 86_400, 0).unwrap()
    }

    #[test]
    fn records_what_ran_and_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deeper/history.json");
        let mut history = History::default();
        let mut before_container = report("no-image", Outcome::Error, 0);
        before_container.exit_code = None;
        history.record(
            &[
                report("a", Outcome::Passed, 10),
                report("b", Outcome::Failed, 4),
                report("c", Outcome::TimedOut, 60),
                report("d", Outcome::Cancelled, 3),
                report("e", Outcome::Skipped, 0),
                before_container,
            ],
            at(0),
        );
        let names: Vec<_> = {
            let mut n: Vec<_> = history.entries.keys().map(|k| k.0.as_str()).collect();
            n.sort();
            n
        };
        assert_eq!(names, ["a", "b", "c"]);
        history.save(&path, at(0)).unwrap();
        let (loaded, warning) = History::load(&path);
        assert_eq!(warning, None);
        assert_eq!(loaded, history);
    }

    #[test]
    fn the_estimate_moves_halfway_to_each_new_duration() {
        let mut history = History::default();
        history.record(&[report("a", Outcome::Passed, 10)], at(0));
        history.record(&[report("a", Outcome::Passed, 20)], at(1));
        let entry = history.get("a", "img:1").unwrap();
        assert_eq!(entry.expected_secs, 15.0);
        assert_eq!(entry.last_secs, 20.0);
        assert_eq!(entry.runs, 2);
        assert_eq!(entry.updated, at(1));
    }

    #[test]
    fn the_same_name_with_another_image_is_another_entry() {
        let mut history = History::default();
        let mut other = report("a", Outcome::Passed, 99);
        other.image = "img:2".into();
        history.record(&[report("a", Outcome::Passed, 10), other], at(0));
        assert_eq!(history.get("a", "img:1").unwrap().expected_secs, 10.0);
        assert_eq!(history.get("a", "img:2").unwrap().expected_secs, 99.0);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        for bad in [
            &b"{ not json"[..],
            br#"{"version": 99, "suites": []}"#,
            br#"[1, 2, 3]"#,
            b"\x00\xff",
        ] {
            std::fs::write(&path, bad).unwrap();
            let (history, warning) = History::load(&path);
            assert!(history.is_empty());
            let warning = warning.expect("a warning");
            assert!(warning.contains("history.json"), "{warning}");
        }
        // Recording over a corrupt file replaces it with a good one.
        std::fs::write(&path, b"garbage").unwrap();
        let warning = record_run(&path, &[report("a", Outcome::Passed, 5)]);
        assert!(warning.is_some());
        let (history, warning) = History::load(&path);
        assert_eq!(warning, None);
        assert_eq!(history.len(), 1);
    }

    #[test]
    fn a_missing_file_is_an_empty_history_without_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (history, warning) = History::load(&dir.path().join("none.json"));
        assert!(history.is_empty());
        assert_eq!(warning, None);
    }

    #[test]
    fn record_run_keeps_suites_it_did_not_run_and_forgets_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        let mut old = History::default();
        old.record(&[report("ancient", Outcome::Passed, 1)], at(-400));
        old.record(&[report("other-shard", Outcome::Passed, 7)], Utc::now());
        old.save(&path, at(-400)).unwrap();
        assert_eq!(record_run(&path, &[report("a", Outcome::Passed, 5)]), None);
        let (history, _) = History::load(&path);
        assert!(history.get("other-shard", "img:1").is_some());
        assert!(history.get("a", "img:1").is_some());
        assert!(history.get("ancient", "img:1").is_none());
    }

    #[test]
    fn an_unwritable_place_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        // A path below a regular file cannot be created.
        let warning = record_run(
            &file.join("history.json"),
            &[report("a", Outcome::Passed, 5)],
        );
        assert!(warning.unwrap().contains("could not write"));
    }
}
