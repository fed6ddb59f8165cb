//! The JUnit side of retried attempts (see `crate::retries`): `<flakyError>` under a case
//! whose suite passed in the end, `<rerunError>` under one that did not.

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestRerun};

use super::text::{one_line, xml_text};
use crate::outcome::{RetriedAttempt, SuiteReport};

/// `type` of the JUnit rerun elements: what kind of error made the attempt be retried.
pub const RERUN_TYPE: &str = "infrastructure";

/// Longest rerun `message` attribute; the full reason goes in the element's body.
const MAX_MESSAGE_CHARS: usize = 200;

/// Adds one rerun per retried attempt to each of the suite's cases: `<flakyError>` under a
/// passing case, `<rerunError>` under a failing one. Skipped cases take none.
pub fn junit_reruns(mut cases: Vec<TestCase>, suite: &SuiteReport) -> Vec<TestCase> {
    if suite.retried.is_empty() {
        return cases;
    }
    for case in &mut cases {
        if matches!(case.status, TestCaseStatus::Skipped { .. }) {
            continue;
        }
        case.status.add_reruns(suite.retried.iter().map(rerun));
    }
    cases
}

fn rerun(attempt: &RetriedAttempt) -> TestRerun {
    let reason = attempt.cause.to_string();
    let text = xml_text(&reason);
    let mut rerun = TestRerun::new(NonSuccessKind::Error);
    rerun
        .set_type(RERUN_TYPE)
        .set_message(one_line(
            &format!("attempt {}: {reason}", attempt.attempt),
            MAX_MESSAGE_CHARS,
        ))
        .set_description(text);
    // No `time`/`timestamp`: the schema CI tools validate against has neither on reruns;
    // run.json has both.
    rerun
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Cause;
    use crate::engine::EngineError;
    use crate::outcome::Outcome;
    use crate::retries::record;
    use std::time::Duration;

    fn attempt(n: u32, reason: &str) -> RetriedAttempt {
        RetriedAttempt {
            attempt: n,
            started_at: None,
            duration: Duration::from_millis(300),
            cause: Cause::from(EngineError::api("container create", reason)),
        }
    }

    fn suite(outcome: Outcome, retried: Vec<RetriedAttempt>) -> SuiteReport {
        let mut s = SuiteReport::not_run("s", "img", outcome, None);
        s.attempts = retried.len() as u32 + 1;
        record(&mut s, retried);
        s
    }

    fn xml(suite: &SuiteReport, status: TestCaseStatus) -> String {
        let cases = junit_reruns(vec![TestCase::new("s", status)], suite);
        let mut ts = quick_junit::TestSuite::new("s");
        ts.add_test_cases(cases);
        let mut report = quick_junit::Report::new("r");
        report.add_test_suite(ts);
        report.to_string().unwrap()
    }

    #[test]
    fn a_pass_after_a_retry_is_flaky() {
        let s = suite(Outcome::Passed, vec![attempt(1, "conflict")]);
        assert!(s.flaky);
        let xml = xml(&s, TestCaseStatus::success());
        assert!(xml.contains("<flakyError"), "{xml}");
        assert!(xml.contains(r#"type="infrastructure""#), "{xml}");
        assert!(
            xml.contains("attempt 1: Docker container create failed: conflict"),
            "{xml}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["flaky"], true);
        assert_eq!(json["retried"][0]["attempt"], 1);
        assert_eq!(json["retried"][0]["duration"], 0.3);
    }

    #[test]
    fn a_failure_after_retries_carries_reruns_and_is_not_flaky() {
        let s = suite(
            Outcome::Error,
            vec![attempt(1, "refused"), attempt(2, "refused again")],
        );
        assert!(!s.flaky);
        let xml = xml(&s, TestCaseStatus::non_success(NonSuccessKind::Error));
        assert_eq!(xml.matches("<rerunError").count(), 2, "{xml}");
        assert!(!xml.contains("flaky"), "{xml}");
    }

    #[test]
    fn without_retries_nothing_changes() {
        let s = suite(Outcome::Passed, Vec::new());
        assert!(!s.flaky);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("flaky").is_none() && json.get("retried").is_none());
        let xml = xml(&s, TestCaseStatus::success());
        assert!(!xml.contains("flaky") && !xml.contains("rerun"), "{xml}");
    }
}
