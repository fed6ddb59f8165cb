//! A run whose Docker engine went away: the suites it was running ended with engine
//! errors (each attempt's cause is whatever call broke first: a wait cut short, a refused
//! connection). Once the run is over, if the engine no longer answers, those causes are
//! wrapped in what really happened and the user gets one sentence saying so.

use super::docker::{DockerEngine, engine_location};
use crate::cause::Cause;
use crate::outcome::{Outcome, RunReport};

/// After a run with errors: if the engine no longer answers, says so in the cause of every
/// suite that ended in an engine error, and returns one sentence for the user.
pub async fn after_run(report: &mut RunReport) -> Option<String> {
    if report.count(Outcome::Error) == 0 || DockerEngine::connect().await.is_ok() {
        return None;
    }
    Some(mark_lost(report, &engine_location()))
}

/// Wraps the causes of suites that ended in an engine error in [`Cause::LostEngine`];
/// returns the sentence for the user.
pub fn mark_lost(report: &mut RunReport, location: &str) -> String {
    let mut affected = 0;
    for suite in &mut report.suites {
        let engine_error = suite.cause.as_ref().is_some_and(Cause::is_engine_error);
        if suite.outcome != Outcome::Error || !engine_error {
            continue;
        }
        if let Some(during) = suite.cause.take() {
            suite.cause = Some(Cause::LostEngine {
                location: location.to_string(),
                during: Box::new(during),
            });
            affected += 1;
        }
    }
    format!(
        "lost the connection to the Docker engine at {location} during the run; {affected} \
         suite(s) ended as errors because of it. Containers it was running may still exist: \
         the next `phalanx run` or `phalanx clean` removes them once the engine answers again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;
    use crate::outcome::SuiteReport;

    #[test]
    fn only_engine_errors_are_marked() {
        let now = chrono::Utc::now();
        let api = Cause::from(EngineError::api("container wait", "connection reset"));
        let oom = Cause::OutOfMemory {
            limit_bytes: 64 << 20,
            exit_code: 137,
        };
        let exit = Cause::ExitCode {
            code: 1,
            expected: vec![0],
        };
        let suites = vec![
            SuiteReport::not_run("waiting", "img", Outcome::Error, Some(api.clone())),
            SuiteReport::not_run("oom", "img", Outcome::Error, Some(oom.clone())),
            SuiteReport::not_run("failed", "img", Outcome::Failed, Some(exit.clone())),
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
            target: None,
            baseline: None,
        };
        let note = mark_lost(&mut report, "unix:///x.sock");
        assert!(
            note.contains("unix:///x.sock") && note.contains("1 suite(s)"),
            "{note}"
        );
        let causes: Vec<_> = report.suites.iter().map(|s| s.cause.clone()).collect();
        assert_eq!(
            causes[0].as_ref().unwrap().to_string(),
            "lost the connection to the Docker engine at unix:///x.sock: Docker container \
             wait failed: connection reset"
        );
        assert!(matches!(causes[0], Some(Cause::LostEngine { ref during, .. }) if **during == api));
        assert_eq!(causes[1], Some(oom));
        assert_eq!(causes[2], Some(exit));
    }
}
