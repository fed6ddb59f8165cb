//! JUnit XML for CI systems (GitLab, GitHub annotators, Jenkins, Azure), written with
//! quick-junit, the writer cargo-nextest uses.
//!
//! Shape: `<testsuites name="phalanx">` with totals; one `<testsuite>` per suite with its
//! `<properties>`; inside it the suite's test cases ([`suite_cases`]): one per rule for a
//! SARIF suite, the suite's own for a JUnit suite, and a single case named after the suite
//! for exit-code suites and for any suite whose results could not be read.
//!
//! Scanner output is arbitrary bytes turned into text: every string goes through
//! [`xml_text`] so the file stays well-formed whatever a tool printed.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SubsecRound, Utc};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{ReportError, atomic_write, junit_cases};
use crate::cause::Cause;
use crate::findings::SuiteResults;
use crate::outcome::{InvalidSuite, Outcome, RunReport, SuiteReport};

/// Cap per captured stream, in bytes. The collector already caps output; this is a second
/// guard, because GitLab skips oversized nodes and rejects files over 30 MB.
pub const MAX_STREAM_BYTES: usize = 1 << 20;

/// `message` attributes are shown as one-line titles (GitHub annotations, Jenkins); the
/// full text goes in the element body.
const MAX_MESSAGE_CHARS: usize = 200;

/// The run as JUnit XML.
pub fn junit_xml(run: &RunReport) -> Result<String, ReportError> {
    junit_report(run, suite_cases)
        .to_string()
        .map_err(|error| ReportError::Junit { error })
}

/// Writes [`junit_xml`] to `path` atomically.
pub fn write_junit(run: &RunReport, path: &Path) -> Result<(), ReportError> {
    atomic_write(path, junit_xml(run)?.as_bytes())
}

/// The whole report; `cases` gives each suite's test cases (see [`exit_code_cases`]).
pub fn junit_report(run: &RunReport, cases: impl Fn(&SuiteReport) -> Vec<TestCase>) -> Report {
    let mut report = Report::new(match &run.partition {
        Some(shard) => format!("phalanx {shard}"),
        None => "phalanx".to_string(),
    });
    report.set_timestamp(whole_seconds(run.started_at));
    report.set_time(elapsed(run.started_at, run.finished_at));
    for suite in &run.suites {
        report.add_test_suite(test_suite(run, suite, cases(suite)));
    }
    for invalid in &run.invalid_suites {
        report.add_test_suite(invalid_suite(invalid));
    }
    report
}

/// One `<testsuite>` holding `cases`; counts are derived from the cases.
pub fn test_suite(run: &RunReport, suite: &SuiteReport, cases: Vec<TestCase>) -> TestSuite {
    let mut ts = TestSuite::new(xml_text(&suite.name));
    if let Some(started) = suite.started_at {
        ts.set_timestamp(whole_seconds(started));
    }
    ts.set_time(suite.duration);
    ts.add_properties(properties(run, suite));
    ts.add_test_cases(super::reruns::junit_reruns(cases, suite));
    ts
}

/// A suite file that could not be read shows in CI as an `<error>`, so a typo in a suite
/// file is as visible as a failing scanner, not just a line in the job log.
fn invalid_suite(invalid: &InvalidSuite) -> TestSuite {
    let name = xml_text(&invalid.name);
    let body = xml_text(&invalid.errors.join("\n"));
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status
        .set_type("invalid-suite")
        .set_message(one_line(&format!(
            "invalid suite file {}",
            invalid.file.display()
        )))
        .set_description(body);
    let mut case = TestCase::new(name.clone(), status);
    case.set_classname(name.clone());
    let mut ts = TestSuite::new(name);
    ts.add_property(Property::new(
        "suite.file",
        xml_text(&invalid.file.display().to_string()),
    ));
    ts.add_test_case(case);
    ts
}

/// What CI users need to reproduce or trace a suite. Unknown values are left out rather
/// than written empty, so "absent" and "empty" are not confused.
fn properties(run: &RunReport, suite: &SuiteReport) -> Vec<Property> {
    let known = [
        ("image", Some(suite.image.clone())),
        ("image.digest", suite.image_digest.clone()),
        ("exit.code", suite.exit_code.map(|c| c.to_string())),
        ("container.id", suite.container_id.clone()),
        ("attempts", Some(suite.attempts.to_string())),
        ("phalanx.version", Some(run.phalanx_version.clone())),
        ("run.id", Some(run.run_id.clone())),
    ];
    known
        .into_iter()
        .filter_map(|(name, value)| Some(Property::new(name, xml_text(&value?))))
        .collect()
}

/// Each suite's cases: per rule for SARIF suites, carried over for JUnit suites, and one
/// named after the suite otherwise, which includes every suite whose results were not read
/// (an exit code outside `ok_exit_codes`, missing or invalid results, a timeout).
pub fn suite_cases(suite: &SuiteReport) -> Vec<TestCase> {
    match suite.results.as_deref() {
        Some(SuiteResults::Sarif(findings)) => junit_cases::rule_cases(suite, findings),
        Some(SuiteResults::Junit(results)) => junit_cases::carried_cases(suite, results),
        None => exit_code_cases(suite),
    }
}

/// An exit-code suite has one case, named after the suite (classname too, because GitLab
/// shows the classname as the suite and Azure shows only the name).
pub fn exit_code_cases(suite: &SuiteReport) -> Vec<TestCase> {
    let name = xml_text(&suite.name);
    let mut case = TestCase::new(name.clone(), exit_code_status(suite));
    case.set_classname(name);
    case.set_time(suite.duration);
    if suite.outcome.is_failure() {
        attach_output(&mut case, suite);
    }
    vec![case]
}

/// Outcome → JUnit status. Timeouts are failures, as nextest writes them; errors are
/// `<error>` because the tool could not give a verdict at all.
fn exit_code_status(suite: &SuiteReport) -> TestCaseStatus {
    let reason = reason(suite);
    match suite.outcome {
        Outcome::Passed => TestCaseStatus::success(),
        Outcome::Failed => non_success(NonSuccessKind::Failure, "exit-code", suite),
        Outcome::TimedOut => non_success(NonSuccessKind::Failure, "timeout", suite),
        Outcome::Error => non_success(NonSuccessKind::Error, "error", suite),
        Outcome::Skipped => skipped(&reason),
        // A stopped container's cause already says "cancelled"; a never-started one not.
        Outcome::Cancelled if suite.cause.as_ref().is_some_and(Cause::is_interruption) => {
            skipped(&reason)
        }
        Outcome::Cancelled => skipped(&format!("cancelled: {reason}")),
    }
}

fn non_success(kind: NonSuccessKind, ty: &str, suite: &SuiteReport) -> TestCaseStatus {
    let reason = reason(suite);
    let mut status = TestCaseStatus::non_success(kind);
    status
        .set_type(ty)
        .set_message(one_line(&reason))
        .set_description(failure_body(suite, &reason));
    status
}

fn skipped(message: &str) -> TestCaseStatus {
    let mut status = TestCaseStatus::skipped();
    status.set_message(one_line(message));
    status
}

/// The full reason, then where to look next. GitLab and Jenkins show this body.
fn failure_body(suite: &SuiteReport, reason: &str) -> String {
    let mut body = xml_text(reason);
    if let Some(code) = suite.exit_code {
        body.push_str(&format!("\nexit code: {code}"));
    }
    if let Some(log) = &suite.log_path {
        body.push_str(&xml_text(&format!("\nfull log: {}", log.display())));
    }
    body
}

fn reason(suite: &SuiteReport) -> Cow<'_, str> {
    match suite.cause.as_ref().map(Cause::to_string) {
        Some(r) if !r.trim().is_empty() => Cow::Owned(r),
        _ => Cow::Borrowed(default_reason(suite.outcome)),
    }
}

/// Used only when the producer gave no reason, so a non-pass is never unexplained.
fn default_reason(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "the suite failed",
        Outcome::TimedOut => "the suite timed out",
        Outcome::Error => "the suite could not run or its results are unusable",
        Outcome::Skipped => "not run",
        Outcome::Cancelled => "cancelled: the run was interrupted",
    }
}

/// Puts the captured output in the case's `<system-out>`/`<system-err>`, with a note at
/// the top when the middle was dropped, so nobody mistakes a cut log for the whole story.
pub fn attach_output(case: &mut TestCase, suite: &SuiteReport) {
    let out = &suite.output;
    let log = suite.log_path.as_deref();
    if !out.stdout.is_empty() {
        case.set_system_out(stream_text(&out.stdout, out.truncated, log));
    }
    if !out.stderr.is_empty() {
        case.set_system_err(stream_text(&out.stderr, out.truncated, log));
    }
}

fn stream_text(text: &str, truncated: bool, log: Option<&Path>) -> String {
    let (text, cut) = head_and_tail(text, MAX_STREAM_BYTES);
    if !(truncated || cut) {
        return xml_text(&text);
    }
    let mut note = String::from("[output truncated] the middle of the output was dropped");
    if let Some(log) = log {
        note.push_str(&format!("; full log: {}", log.display()));
    }
    xml_text(&format!("{note}\n{text}"))
}

/// Keeps the first and last `max / 2` bytes (on char boundaries) when `text` is longer
/// than `max`: the head shows how the tool started, the tail how it ended.
fn head_and_tail(text: &str, max: usize) -> (Cow<'_, str>, bool) {
    if text.len() <= max {
        return (Cow::Borrowed(text), false);
    }
    let head_end = floor_char_boundary(text, max / 2);
    let tail_start = ceil_char_boundary(text, text.len() - max / 2);
    let dropped = tail_start - head_end;
    let joined = format!(
        "{}\n[... {dropped} bytes dropped ...]\n{}",
        &text[..head_end],
        &text[tail_start..]
    );
    (Cow::Owned(joined), true)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

pub use super::text::xml_text;

/// `message` attributes are one short line: XML attribute normalisation would turn
/// newlines into spaces anyway, and consumers show the message as a title.
fn one_line(s: &str) -> String {
    super::one_line(s, MAX_MESSAGE_CHARS)
}

/// CI tools compare and display timestamps to the second; sub-second digits are noise.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.trunc_subsecs(0).fixed_offset()
}

fn elapsed(start: DateTime<Utc>, end: DateTime<Utc>) -> Duration {
    (end - start).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::CapturedOutput;
    use chrono::TimeZone;
    use std::path::PathBuf;

    fn run_with(suites: Vec<SuiteReport>) -> RunReport {
        let start = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        RunReport {
            run_id: "r-1".into(),
            phalanx_version: "0.1.0".into(),
            started_at: start + chrono::Duration::milliseconds(250),
            finished_at: start + chrono::Duration::seconds(30),
            interrupted: None,
            suites,
            invalid_suites: Vec::new(),
            partition: None,
            suppressions: Default::default(),
            target: None,
            baseline: None,
        }
    }

    fn suite(name: &str, outcome: Outcome, reason: Option<&str>) -> SuiteReport {
        let mut s = SuiteReport::not_run(name, "phalanx/x:1", outcome, None);
        s.cause = reason.map(Cause::internal);
        s.attempts = 1;
        s.duration = Duration::from_millis(4200);
        s.started_at = Some(Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 1).unwrap());
        s
    }

    fn xml_of(suites: Vec<SuiteReport>) -> String {
        junit_xml(&run_with(suites)).unwrap()
    }

    fn doc_case<'a>(doc: &'a roxmltree::Document<'a>) -> roxmltree::Node<'a, 'a> {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase"))
            .unwrap()
    }

    fn child<'a>(n: roxmltree::Node<'a, 'a>, tag: &str) -> Option<roxmltree::Node<'a, 'a>> {
        n.children().find(|c| c.has_tag_name(tag))
    }

    #[test]
    fn passed_is_a_bare_success_case() {
        let xml = xml_of(vec![suite("bandit", Outcome::Passed, None)]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let case = doc_case(&doc);
        assert_eq!(case.attribute("name"), Some("bandit"));
        assert_eq!(case.attribute("classname"), Some("bandit"));
        assert_eq!(case.attribute("time"), Some("4.200"));
        assert!(case.children().all(|c| !c.is_element()), "{xml}");
    }

    #[test]
    fn failed_is_an_exit_code_failure_with_reason_and_output() {
        let mut s = suite(
            "semgrep",
            Outcome::Failed,
            Some("exit code 2 not in [0, 1]"),
        );
        s.exit_code = Some(2);
        s.output = CapturedOutput {
            stdout: "out line".into(),
            stderr: "err line".into(),
            truncated: false,
        };
        let xml = xml_of(vec![s]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let case = doc_case(&doc);
        let failure = child(case, "failure").unwrap();
        assert_eq!(failure.attribute("type"), Some("exit-code"));
        assert_eq!(
            failure.attribute("message"),
            Some("exit code 2 not in [0, 1]")
        );
        let body = failure.text().unwrap();
        assert!(
            body.starts_with("exit code 2 not in [0, 1]\nexit code: 2"),
            "{body}"
        );
        assert_eq!(child(case, "system-out").unwrap().text(), Some("out line"));
        assert_eq!(child(case, "system-err").unwrap().text(), Some("err line"));
    }

    #[test]
    fn timed_out_is_a_timeout_failure() {
        let xml = xml_of(vec![suite(
            "zap",
            Outcome::TimedOut,
            Some("timed out after 5m"),
        )]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let failure = child(doc_case(&doc), "failure").unwrap();
        assert_eq!(failure.attribute("type"), Some("timeout"));
        assert_eq!(failure.attribute("message"), Some("timed out after 5m"));
    }

    #[test]
    fn error_is_an_error_element() {
        let xml = xml_of(vec![suite(
            "trivy",
            Outcome::Error,
            Some("result file missing"),
        )]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let case = doc_case(&doc);
        let error = child(case, "error").unwrap();
        assert_eq!(error.attribute("type"), Some("error"));
        assert_eq!(error.attribute("message"), Some("result file missing"));
        assert_eq!(error.text(), Some("result file missing"));
        assert!(child(case, "failure").is_none());
    }

    #[test]
    fn skipped_and_cancelled_are_skipped_without_output() {
        let mut skip = suite("a", Outcome::Skipped, Some("fail-fast: semgrep failed"));
        skip.output.stdout = "should not appear".into();
        let cancel = suite("b", Outcome::Cancelled, Some("run interrupted by SIGINT"));
        let xml = xml_of(vec![skip, cancel]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let skipped: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("skipped"))
            .map(|n| n.attribute("message").unwrap().to_string())
            .collect();
        assert_eq!(
            skipped,
            [
                "fail-fast: semgrep failed",
                "cancelled: run interrupted by SIGINT"
            ]
        );
        assert!(!xml.contains("should not appear"));
    }

    #[test]
    fn missing_reason_gets_a_default_message() {
        let xml = xml_of(vec![suite("x", Outcome::Error, None)]);
        assert!(xml.contains(r#"message="the suite could not run"#), "{xml}");
    }

    #[test]
    fn totals_and_root_attributes() {
        let xml = xml_of(vec![
            suite("a", Outcome::Passed, None),
            suite("b", Outcome::Failed, Some("f")),
            suite("c", Outcome::TimedOut, Some("t")),
            suite("d", Outcome::Error, Some("e")),
            suite("e", Outcome::Skipped, Some("s")),
            suite("f", Outcome::Cancelled, Some("c")),
        ]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let attr = |k| root.attribute(k).unwrap();
        assert_eq!(attr("name"), "phalanx");
        assert_eq!(
            (
                attr("tests"),
                attr("failures"),
                attr("errors"),
                attr("skipped")
            ),
            ("6", "2", "1", "2")
        );
        assert_eq!(attr("time"), "29.750");
        assert_eq!(attr("timestamp"), "2026-05-01T12:00:00.000+00:00");
        assert_eq!(root.children().filter(|n| n.is_element()).count(), 6);
    }

    #[test]
    fn testsuite_has_time_timestamp_and_properties() {
        let mut s = suite("bandit", Outcome::Passed, None);
        s.image_digest = Some("phalanx/x@sha256:abc".into());
        s.exit_code = Some(0);
        s.container_id = Some("c0ffee".into());
        s.attempts = 2;
        let xml = xml_of(vec![s]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let ts = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(ts.attribute("name"), Some("bandit"));
        assert_eq!(ts.attribute("time"), Some("4.200"));
        assert_eq!(
            ts.attribute("timestamp"),
            Some("2026-05-01T12:00:01.000+00:00")
        );
        let props: Vec<_> = ts
            .descendants()
            .filter(|n| n.has_tag_name("property"))
            .map(|n| (n.attribute("name").unwrap(), n.attribute("value").unwrap()))
            .collect();
        assert_eq!(
            props,
            [
                ("image", "phalanx/x:1"),
                ("image.digest", "phalanx/x@sha256:abc"),
                ("exit.code", "0"),
                ("container.id", "c0ffee"),
                ("attempts", "2"),
                ("phalanx.version", "0.1.0"),
                ("run.id", "r-1"),
            ]
        );
    }

    #[test]
    fn unknown_properties_are_omitted() {
        let xml = xml_of(vec![SuiteReport::not_run(
            "a",
            "img",
            Outcome::Skipped,
            Some(Cause::internal("fail-fast")),
        )]);
        assert!(!xml.contains("image.digest"));
        assert!(!xml.contains("exit.code"));
        assert!(!xml.contains("container.id"));
        assert!(
            xml.contains(r#"<property name="attempts" value="0"/>"#),
            "{xml}"
        );
    }

    #[test]
    fn truncated_output_says_so_and_points_to_the_log() {
        let mut s = suite("a", Outcome::Failed, Some("f"));
        s.log_path = Some(PathBuf::from("reports/logs/a.log"));
        s.output = CapturedOutput {
            stdout: "head\ntail".into(),
            stderr: String::new(),
            truncated: true,
        };
        let xml = xml_of(vec![s]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let case = doc_case(&doc);
        let out = child(case, "system-out").unwrap().text().unwrap();
        assert!(out.starts_with("[output truncated]"), "{out}");
        assert!(out.contains("full log: reports/logs/a.log"), "{out}");
        assert!(
            child(case, "system-err").is_none(),
            "empty stream is omitted"
        );
        let body = child(case, "failure").unwrap().text().unwrap();
        assert!(body.contains("full log: reports/logs/a.log"));
    }

    #[test]
    fn oversized_output_is_capped_head_and_tail() {
        let text = format!("{}{}", "h".repeat(MAX_STREAM_BYTES), "t".repeat(100));
        let (capped, cut) = head_and_tail(&text, MAX_STREAM_BYTES);
        assert!(cut);
        assert!(capped.len() < MAX_STREAM_BYTES + 100);
        assert!(capped.starts_with('h') && capped.ends_with('t'));
        // Multi-byte characters are never split.
        let emoji = "🦀".repeat(10);
        let (capped, _) = head_and_tail(&emoji, 9);
        assert!(capped.starts_with('🦀') && capped.ends_with('🦀'));
    }

    #[test]
    fn xml_text_removes_what_xmlstring_keeps_and_keeps_what_it_drops() {
        assert_eq!(xml_text("a\u{fffe}b\u{ffff}c\u{85}d\u{7f}e"), "abcde");
        assert_eq!(xml_text("ab\tc"), "ab      c");
        assert_eq!(xml_text("1%\r2%\r\n"), "1%\n2%\n");
        assert_eq!(xml_text("ok 🦀 \u{fffd}"), "ok 🦀 \u{fffd}");
    }

    #[test]
    fn message_is_one_short_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let long = one_line(&"x".repeat(500));
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn seam_accepts_many_cases_per_suite() {
        let run = run_with(vec![suite(
            "sarif-suite",
            Outcome::Failed,
            Some("2 findings"),
        )]);
        let report = junit_report(&run, |s| {
            let mut ok = TestCase::new("rule-a", TestCaseStatus::success());
            ok.set_classname(s.name.as_str());
            let mut bad = TestCase::new(
                "rule-b",
                TestCaseStatus::non_success(NonSuccessKind::Failure),
            );
            bad.set_classname(s.name.as_str());
            vec![ok, bad]
        });
        assert_eq!((report.tests, report.failures), (2, 1));
        assert_eq!(report.test_suites[0].test_cases.len(), 2);
    }
}
