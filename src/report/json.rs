//! `run.json`: the whole run for machines (dashboards, alert hooks, later diffing against
//! a baseline). Its shape is versioned by `schema_version`; bump it when a field changes
//! meaning or disappears, not when one is added.

use std::path::Path;

use serde::Serialize;

use super::{ReportError, atomic_write};
use crate::outcome::RunReport;
use crate::verdict::SuppressionsReport;
use crate::verdict::baseline::BaselineReport;

/// Version of the `run.json` layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The file's top level: the run report's own fields plus what readers would otherwise
/// have to recompute (exit code, counts, duration).
///
/// The derived fields come first and the run's own last, so `suites`, the long part,
/// ends the file and a person opening it sees the verdict at the top.
#[derive(Debug, Serialize)]
pub struct RunJson<'a> {
    pub schema_version: u32,
    pub exit_code: u8,
    pub counts: Counts,
    /// Wall-clock seconds from start to finish.
    pub duration: f64,
    /// What the suppressions file did: entries applied, expired, expiring, stale. Absent
    /// when the run had no suppressions file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressions: Option<SuppressionsReport>,
    /// The baseline (`--baseline`) and how many findings are new, unchanged and absent;
    /// each suite's `findings` has its own counts and absent findings. Absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineReport>,
    #[serde(flatten)]
    pub run: &'a RunReport,
}

pub use crate::outcome::Counts;

impl<'a> RunJson<'a> {
    pub fn new(run: &'a RunReport) -> Self {
        let secs = (run.finished_at - run.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        RunJson {
            schema_version: SCHEMA_VERSION,
            exit_code: run.exit_code(),
            counts: Counts::of(run),
            duration: secs,
            suppressions: run.suppressions.report(&run.suites),
            baseline: run.baseline.as_ref().map(|b| b.report(&run.suites)),
            run,
        }
    }
}

/// `run.json` as pretty-printed text, ending in a newline.
pub fn run_json(run: &RunReport) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&RunJson::new(run))?;
    text.push('\n');
    Ok(text)
}

/// Writes [`run_json`] to `path` atomically.
pub fn write_json(run: &RunReport, path: &Path) -> Result<(), ReportError> {
    let text = run_json(run).map_err(|error| ReportError::Json {
        path: path.to_path_buf(),
        error,
    })?;
    atomic_write(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Cause;
    use crate::outcome::Outcome;
    use crate::outcome::SuiteReport;
    use chrono::{TimeZone, Utc};
    use serde_json::{Value, json};
    use std::path::PathBuf;
    use std::time::Duration;

    fn run() -> RunReport {
        let start = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let mut passed = SuiteReport::not_run("bandit", "phalanx/bandit:1", Outcome::Passed, None);
        passed.exit_code = Some(0);
        passed.image_digest = Some("sha256:abc".into());
        passed.container_id = Some("c0ffee".into());
        passed.attempts = 1;
        passed.started_at = Some(start);
        passed.finished_at = Some(start + chrono::Duration::milliseconds(4200));
        passed.duration = Duration::from_millis(4200);
        passed.log_path = Some("reports/logs/bandit.log".into());
        passed.results_dir = Some("reports/results/bandit".into());
        passed.result_files = vec![PathBuf::from("bandit.sarif")];
        passed.output.stdout = "captured text stays out of run.json".into();
        let timed_out = SuiteReport::not_run(
            "zap",
            "phalanx/zap:1",
            Outcome::TimedOut,
            Some(Cause::TimedOut {
                limit: Duration::from_secs(300),
            }),
        );
        RunReport {
            run_id: "r-1".into(),
            phalanx_version: "0.1.0".into(),
            started_at: start,
            finished_at: start + chrono::Duration::milliseconds(30_500),
            interrupted: None,
            suites: vec![passed, timed_out],
            invalid_suites: Vec::new(),
            partition: None,
            suppressions: Default::default(),
            target: None,
            baseline: None,
        }
    }

    fn parsed() -> Value {
        serde_json::from_str(&run_json(&run()).unwrap()).unwrap()
    }

    #[test]
    fn top_level_fields() {
        let v = parsed();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["run_id"], "r-1");
        assert_eq!(v["phalanx_version"], "0.1.0");
        assert_eq!(v["started_at"], "2026-05-01T12:00:00Z");
        assert_eq!(v["finished_at"], "2026-05-01T12:00:30.500Z");
        assert_eq!(v["duration"], 30.5);
        assert_eq!(v["interrupted"], Value::Null);
        assert_eq!(v["exit_code"], 1);
    }

    #[test]
    fn counts_cover_every_outcome_and_match_outcome_spelling() {
        let v = parsed();
        let counts = v["counts"].as_object().unwrap();
        assert_eq!(counts["total"], 2);
        assert_eq!(counts["passed"], 1);
        assert_eq!(counts["timed-out"], 1);
        for outcome in [
            Outcome::Passed,
            Outcome::Failed,
            Outcome::TimedOut,
            Outcome::Error,
            Outcome::Skipped,
            Outcome::Cancelled,
        ] {
            let key = serde_json::to_value(outcome).unwrap();
            assert!(counts.contains_key(key.as_str().unwrap()), "{key}");
        }
    }

    #[test]
    fn suites_carry_every_field() {
        let v = parsed();
        let s = &v["suites"][0];
        let expected = json!({
            "name": "bandit",
            "image": "phalanx/bandit:1",
            "image_digest": "sha256:abc",
            "outcome": "passed",
            "reason": null,
            "cause": null,
            "exit_code": 0,
            "container_id": "c0ffee",
            "started_at": "2026-05-01T12:00:00Z",
            "finished_at": "2026-05-01T12:00:04.200Z",
            "duration": 4.2,
            "attempts": 1,
            "log_path": "reports/logs/bandit.log",
            "results_dir": "reports/results/bandit",
            "result_files": ["bandit.sarif"],
            "result_warnings": [],
        });
        assert_eq!(s, &expected);
        assert_eq!(v["suites"][1]["outcome"], "timed-out");
        assert_eq!(
            v["suites"][1]["reason"],
            "timed out after 5m and was stopped"
        );
        assert_eq!(
            v["suites"][1]["cause"],
            json!({"kind": "timed-out", "limit_secs": 300.0})
        );
    }

    #[test]
    fn write_json_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports/run.json");
        write_json(&run(), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), parsed());
    }
}
