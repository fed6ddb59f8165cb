//! Attempts that ended in an infrastructure error and were retried: recorded on the suite's
//! report, shown as `flaky`/`retried` in run.json, and as `<flakyError>` (the suite passed in
//! the end) or `<rerunError>` (it did not) in JUnit (see `report::reruns`).
//!
//! Only infrastructure errors are ever retried (see `runner::run_suite` and
//! [`Cause::retryable`]): findings and failing exit codes are the tool's verdict, and
//! running it again would only hide them.

use crate::cause::Cause;
use crate::outcome::{Outcome, RetriedAttempt, SuiteReport};

/// What an attempt that is about to be retried leaves behind.
pub fn retried_attempt(report: SuiteReport) -> RetriedAttempt {
    RetriedAttempt {
        attempt: report.attempts,
        started_at: report.started_at,
        duration: report.duration,
        cause: report
            .cause
            .unwrap_or_else(|| Cause::internal("retried without a cause")),
    }
}

/// Puts the retried attempts on the final report; a pass after a retry is flaky.
pub fn record(report: &mut SuiteReport, retried: Vec<RetriedAttempt>) {
    report.flaky = report.outcome == Outcome::Passed && !retried.is_empty();
    report.retried = retried;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    #[test]
    fn a_retried_attempt_keeps_its_cause_and_a_pass_after_it_is_flaky() {
        let mut failed = SuiteReport::not_run("s", "img", Outcome::Error, None);
        failed.attempts = 1;
        failed.cause = Some(Cause::from(EngineError::api(
            "container create",
            "conflict",
        )));
        let retried = retried_attempt(failed);
        assert!(retried.cause.retryable());
        let mut passed = SuiteReport::not_run("s", "img", Outcome::Passed, None);
        record(&mut passed, vec![retried]);
        assert!(passed.flaky);
        let json = serde_json::to_value(&passed).unwrap();
        assert_eq!(
            json["retried"][0]["reason"],
            "Docker container create failed: conflict"
        );
        assert_eq!(json["retried"][0]["cause"]["kind"], "engine");
        assert_eq!(json["retried"][0]["cause"]["error"]["kind"], "api");
    }
}
