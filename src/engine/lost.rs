//! A run whose Docker engine went away: the suites it was running ended with engine
//! errors (each attempt's reason is whatever call broke first: a wait cut short, a refused
//! connection). Once the run is over, if the engine no longer answers, those reasons are
//! prefixed with what really happened and the user gets one sentence saying so.

use super::docker::{DockerEngine, engine_location};
use crate::outcome::{Outcome, RunReport};

/// How [`super::EngineError`] spells an engine that answered with an error, and one that
/// could not be reached; pinned by a test below.
const API_ERROR_PREFIX: &str = "Docker ";
const UNREACHABLE_PREFIX: &str = "cannot reach the Docker engine";

/// After a run with errors: if the engine no longer answers, says so in the reason of every
/// suite that ended in an engine error, and returns one sentence for the user.
pub async fn after_run(report: &mut RunReport) -> Option<String> {
    if report.count(Outcome::Error) == 0 || DockerEngine::connect().await.is_ok() {
        return None;
    }
    Some(mark_lost(report, &engine_location()))
}

/// Prefixes the reasons of suites that ended in an engine error with the lost connection;
/// returns the sentence for the user.
pub fn mark_lost(report: &mut RunReport, location: &str) -> String {
    let lost = format!("lost the connection to the Docker engine at {location}");
    let mut affected = 0;
    for suite in &mut report.suites {
        let Some(reason) = &suite.reason else {
            continue;
        };
        let engine_error =
            reason.starts_with(API_ERROR_PREFIX) || reason.starts_with(UNREACHABLE_PREFIX);
        if suite.outcome == Outcome::Error && engine_error {
            suite.reason = Some(format!("{lost}: {reason}"));
            affected += 1;
        }
    }
    format!(
        "{lost} during the run; {affected} suite(s) ended as errors because of it. Containers \
         it was running may still exist: the next `phalanx run` or `phalanx clean` removes \
         them once the engine answers again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;
    use crate::outcome::SuiteReport;

    #[test]
    fn engine_errors_are_spelled_as_expected() {
        let api = EngineError::api("container wait", "connection reset").to_string();
        assert!(api.starts_with(API_ERROR_PREFIX), "{api}");
        let unreachable = EngineError::Unreachable {
            location: "unix:///x".into(),
            message: "refused".into(),
        };
        assert!(unreachable.to_string().starts_with(UNREACHABLE_PREFIX));
    }

    #[test]
    fn only_engine_errors_are_marked() {
        let now = chrono::Utc::now();
        let api = EngineError::api("container wait", "connection reset").to_string();
        let suites = vec![
            SuiteReport::not_run("waiting", "img", Outcome::Error, api.clone()),
            SuiteReport::not_run("oom", "img", Outcome::Error, "out of memory: …"),
            SuiteReport::not_run("failed", "img", Outcome::Failed, "exit code 1"),
        ];
        let mut report = RunReport {
            run_id: "r".into(),
            phalanx_version: "0".into(),
            started_at: now,
            finished_at: now,
            interrupted: None,
            suites,
            invalid_suites: Vec::new(),
            partition: None,
            suppressions: Default::default(),
        };
        let note = mark_lost(&mut report, "unix:///x.sock");
        assert!(
            note.contains("unix:///x.sock") && note.contains("1 suite(s)"),
            "{note}"
        );
        let reasons: Vec<_> = report
            .suites
            .iter()
            .map(|s| s.reason.clone().unwrap())
            .collect();
        assert_eq!(
            reasons[0],
            format!("lost the connection to the Docker engine at unix:///x.sock: {api}")
        );
        assert_eq!(reasons[1], "out of memory: …");
        assert_eq!(reasons[2], "exit code 1");
    }
}
