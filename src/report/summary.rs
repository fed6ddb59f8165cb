//! The end-of-run summary printed for people: one row per suite (its verdict, time, the
//! findings per severity of a SARIF suite or the test counts of a JUnit suite, and why it
//! did not pass), a totals line with the exit code, and where the report files are.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::json::Counts;
use super::one_line;
use crate::findings::SeverityCounts;
use crate::outcome::{Outcome, RunReport, SuiteReport};
use crate::verdict::{EntryState, SuppressionsReport};

/// Reasons are cut to this many characters so a row fits a terminal; the reports have them
/// in full.
const MAX_REASON_CHARS: usize = 80;

/// Names longer than this do not widen the table further (their row is just longer).
const MAX_NAME_COLUMN: usize = 32;

/// Width of the outcome column: the longest label, `TIMEOUT`, plus one.
pub const LABEL_WIDTH: usize = 8;

/// The summary, ending in a newline. `reports` are the files written for this run, listed
/// on the last line so the reader knows where to look next.
pub fn summary_table(run: &RunReport, reports: &[&Path]) -> String {
    let name_width = run
        .suites
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(MAX_NAME_COLUMN);
    let mut out = String::new();
    for suite in &run.suites {
        out.push_str(suite_row(suite, name_width).trim_end());
        out.push('\n');
    }
    for invalid in &run.invalid_suites {
        let row = format!(
            "{:<LABEL_WIDTH$} {:<name_width$}  {:>6}  invalid suite file {}",
            "INVALID",
            invalid.name,
            "-",
            invalid.file.display()
        );
        out.push_str(&row);
        out.push('\n');
    }
    if !run.suites.is_empty() || !run.invalid_suites.is_empty() {
        out.push('\n');
    }
    out.push_str(&error_causes(run));
    if let Some(line) = findings_line(run) {
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(report) = run.suppressions.report(&run.suites) {
        out.push_str(&suppressions_lines(&report));
    }
    out.push_str(&baseline_lines(run));
    out.push_str(&totals_line(run));
    out.push('\n');
    if !reports.is_empty() {
        let list: Vec<_> = reports.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(out, "reports: {}", list.join(", "));
    }
    out
}

/// `FAIL     semgrep    12.0s  exit code 2 not in ok_exit_codes [0, 1]`, or for a suite
/// whose results were read
/// `FAIL     bandit      4.0s  [1 critical, 2 high; 1 suppressed]  3 findings at or above …`
fn suite_row(suite: &SuiteReport, name_width: usize) -> String {
    let results = results_text(suite)
        .map(|t| format!("[{t}]  "))
        .unwrap_or_default();
    format!(
        "{:<LABEL_WIDTH$} {:<name_width$}  {:>6}  {results}{}",
        suite.outcome.label(),
        suite.name,
        suite_duration(suite),
        short_reason(suite),
    )
}

/// Findings per severity (`no findings` when clean, suppressed ones counted apart), or a
/// JUnit suite's test counts.
pub fn results_text(suite: &SuiteReport) -> Option<String> {
    if let Some(f) = &suite.findings {
        let suppressed = f.suppressed.total();
        let mut text = if f.counts.total() == 0 {
            "no findings".to_string()
        } else {
            f.counts.to_string()
        };
        if suppressed > 0 {
            text.push_str(&format!("; {suppressed} suppressed"));
        }
        if let Some(b) = &f.baseline {
            text.push_str(&format!("; {} new, {} unchanged", b.new, b.unchanged));
        }
        return Some(text);
    }
    let t = suite.tests?;
    let parts: Vec<String> = [
        (t.failures, "failed"),
        (t.errors, "errored"),
        (t.skipped, "skipped"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let tests = if t.tests == 1 { "test" } else { "tests" };
    Some(if parts.is_empty() {
        format!("{} {tests} passed", t.tests)
    } else {
        format!("{} {tests}: {}", t.tests, parts.join(", "))
    })
}

/// Each distinct cause of an error once, in full, after the rows that cut it to fit:
/// the end of a cause is often what to do about it. Suites with the same cause (by its
/// text) share one line: `10 suites: building image … failed: …`. A cause its one row
/// already shows whole is not repeated; empty when there is nothing to add.
fn error_causes(run: &RunReport) -> String {
    let mut causes: Vec<(String, Vec<&str>)> = Vec::new();
    // Grouped by the text a reader sees, so equal causes group whatever produced them.
    let errored = run.suites.iter().filter(|s| s.outcome == Outcome::Error);
    for suite in errored {
        let text = suite
            .cause
            .as_ref()
            .map_or_else(|| "no reason given".to_string(), ToString::to_string);
        let cause = one_line(&text, usize::MAX);
        match causes.iter_mut().find(|(c, _)| *c == cause) {
            Some((_, names)) => names.push(&suite.name),
            None => causes.push((cause, vec![&suite.name])),
        }
    }
    causes.retain(|(cause, names)| names.len() > 1 || cause.chars().count() > MAX_REASON_CHARS);
    if causes.is_empty() {
        return String::new();
    }
    let mut out = String::from("errors:\n");
    for (cause, names) in causes {
        let who = match names.as_slice() {
            [one] => one.to_string(),
            many => format!("{} suites", many.len()),
        };
        let _ = writeln!(out, "  {who}: {cause}");
    }
    out.push('\n');
    out
}

/// `findings: 1 critical, 4 high, 2 low in 3 suites` over the whole run; `None` when no
/// suite's findings were read.
fn findings_line(run: &RunReport) -> Option<String> {
    let read: Vec<_> = run
        .suites
        .iter()
        .filter_map(|s| s.findings.as_ref())
        .collect();
    if read.is_empty() {
        return None;
    }
    let mut total = SeverityCounts::default();
    for f in &read {
        total.merge(&f.counts);
    }
    let suites = if read.len() == 1 { "suite" } else { "suites" };
    Some(format!(
        "findings: {total} in {} SARIF {suites}",
        read.len()
    ))
}

/// `suppressions: 3 findings suppressed by suppressions.toml (2 entries), 1 in source;
/// 1 expired, 1 expiring, 1 stale`, then one line per entry that needs attention.
fn suppressions_lines(report: &SuppressionsReport) -> String {
    if report.is_quiet() {
        return String::new();
    }
    let file = report.file.display();
    let mut first = format!(
        "suppressions: {} suppressed by {file} ({} {})",
        plural(report.suppressed_findings, "finding", "findings"),
        report.applied.len(),
        if report.applied.len() == 1 {
            "entry"
        } else {
            "entries"
        },
    );
    if report.in_source_findings > 0 {
        first.push_str(&format!(", {} in source", report.in_source_findings));
    }
    let attention: Vec<String> = [
        (report.expired.len(), "expired"),
        (report.expiring.len(), "expiring"),
        (report.stale.len(), "stale"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !attention.is_empty() {
        first.push_str(&format!("; {}", attention.join(", ")));
    }
    let mut out = first + "\n";
    let lists = [
        ("expired", &report.expired),
        ("expiring", &report.expiring),
        ("stale", &report.stale),
    ];
    for (what, entries) in lists {
        for e in entries {
            let when = match (what, e.state) {
                ("expired", _) => format!("expired {}", e.expires),
                (_, EntryState::Expiring { days_left }) => {
                    format!(
                        "expires {} (in {})",
                        e.expires,
                        plural(days_left as usize, "day", "days")
                    )
                }
                _ => format!("until {}", e.expires),
            };
            let line = format!(
                "  {what:<8} {file}:{}  {}  {}, {when}",
                e.line,
                one_line(&e.scope, MAX_REASON_CHARS),
                one_line(&e.owner, MAX_REASON_CHARS),
            );
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// `baseline reports/old/results.sarif: 1 new, 3 unchanged, 1 absent (fixed)`, then the
/// absent findings (a few of them); empty without a baseline.
fn baseline_lines(run: &RunReport) -> String {
    const MAX_ABSENT_LISTED: usize = 10;
    let Some(baseline) = &run.baseline else {
        return String::new();
    };
    let r = baseline.report(&run.suites);
    let mut out = format!(
        "baseline {}: {} new, {} unchanged, {} absent (fixed)\n",
        one_line(&r.source, MAX_REASON_CHARS),
        r.counts.new,
        r.counts.unchanged,
        r.counts.absent
    );
    let absent = run.suites.iter().flat_map(|s| {
        s.findings
            .iter()
            .flat_map(|f| &f.absent)
            .map(move |a| (&s.name, a))
    });
    for (suite, a) in absent.take(MAX_ABSENT_LISTED) {
        let _ = writeln!(
            out,
            "  absent   {suite}: {} {}  {}",
            a.rule,
            a.place(),
            one_line(&a.message, MAX_REASON_CHARS)
        );
    }
    if r.counts.absent > MAX_ABSENT_LISTED {
        let _ = writeln!(
            out,
            "  … and {} more in run.json",
            r.counts.absent - MAX_ABSENT_LISTED
        );
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `-` for a suite that never started: a `0.0s` would suggest it ran and did nothing.
pub fn suite_duration(suite: &SuiteReport) -> String {
    if suite.started_at.is_none() && suite.duration.is_zero() {
        "-".to_string()
    } else {
        human_duration(suite.duration)
    }
}

/// The reason on one line, or nothing for a pass.
pub fn short_reason(suite: &SuiteReport) -> String {
    suite
        .cause
        .as_ref()
        .map(|c| one_line(&c.to_string(), MAX_REASON_CHARS))
        .unwrap_or_default()
}

/// `12 suites: 9 passed, 2 failed, 1 error  (exit 3)`; outcomes with no suite are left out.
pub fn totals_line(run: &RunReport) -> String {
    let c = Counts::of(run);
    let parts: Vec<String> = [
        (c.passed, "passed", "passed"),
        (c.failed, "failed", "failed"),
        (c.timed_out, "timed out", "timed out"),
        (c.error, "error", "errors"),
        (c.skipped, "skipped", "skipped"),
        (c.cancelled, "cancelled", "cancelled"),
    ]
    .into_iter()
    .filter(|(n, _, _)| *n > 0)
    .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
    .chain(invalid_part(run))
    .collect();
    let suites = if c.total == 1 { "suite" } else { "suites" };
    let exit = match &run.interrupted {
        Some(signal) => format!("interrupted by {signal}, exit {}", run.exit_code()),
        None => format!("exit {}", run.exit_code()),
    };
    if parts.is_empty() {
        format!("{} {suites}  ({exit})", c.total)
    } else {
        format!("{} {suites}: {}  ({exit})", c.total, parts.join(", "))
    }
}

fn invalid_part(run: &RunReport) -> Option<String> {
    match run.invalid_suites.len() {
        0 => None,
        1 => Some("1 invalid suite file".into()),
        n => Some(format!("{n} invalid suite files")),
    }
}

/// `4.2s`, `5m03s`, `1h02m`: precise where it matters, short where it does not.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64().round() as u64;
    // Compare after rounding, so 59.96 s reads `1m00s`, not `60.0s`.
    if (d.as_secs_f64() * 10.0).round() < 600.0 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Cause;
    use crate::outcome::Outcome;
    use chrono::{TimeZone, Utc};

    fn ran(name: &str, outcome: Outcome, secs: f64, reason: Option<&str>) -> SuiteReport {
        let mut s = SuiteReport::not_run(name, "img", outcome, None);
        s.cause = reason.map(Cause::internal);
        s.started_at = Some(Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap());
        s.duration = Duration::from_secs_f64(secs);
        s
    }

    fn run(suites: Vec<SuiteReport>, interrupted: Option<crate::stop::Signal>) -> RunReport {
        let t = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        RunReport {
            run_id: "r".into(),
            phalanx_version: "0.1.0".into(),
            started_at: t,
            finished_at: t,
            interrupted,
            suites,
            invalid_suites: Vec::new(),
            partition: None,
            suppressions: Default::default(),
            target: None,
            baseline: None,
        }
    }

    #[test]
    fn table_rows_totals_and_reports() {
        let r = run(
            vec![
                ran("bandit", Outcome::Passed, 4.2, None),
                ran(
                    "semgrep",
                    Outcome::Failed,
                    12.0,
                    Some("exit code 2 not in ok_exit_codes [0, 1]"),
                ),
                ran("zap", Outcome::TimedOut, 300.0, Some("timed out after 5m")),
                ran(
                    "trivy",
                    Outcome::Error,
                    1.0,
                    Some("image missing\nsecond line"),
                ),
                SuiteReport::not_run(
                    "gitleaks",
                    "img",
                    Outcome::Skipped,
                    Some(Cause::internal("fail-fast")),
                ),
            ],
            None,
        );
        let text = summary_table(&r, &[Path::new("reports/junit.xml"), Path::new("r.json")]);
        let expected = "\
PASS     bandit      4.2s
FAIL     semgrep    12.0s  exit code 2 not in ok_exit_codes [0, 1]
TIMEOUT  zap        5m00s  timed out after 5m
ERROR    trivy       1.0s  image missing second line
SKIP     gitleaks       -  fail-fast

5 suites: 1 passed, 1 failed, 1 timed out, 1 error, 1 skipped  (exit 3)
reports: reports/junit.xml, r.json
";
        assert_eq!(text, expected);
    }

    #[test]
    fn totals_pluralise_and_show_interruption() {
        let r = run(
            vec![
                ran("a", Outcome::Error, 1.0, Some("x")),
                ran("b", Outcome::Error, 1.0, Some("y")),
                SuiteReport::not_run(
                    "c",
                    "img",
                    Outcome::Cancelled,
                    Some(Cause::internal("interrupted")),
                ),
            ],
            Some(crate::stop::Signal::Interrupt),
        );
        assert_eq!(
            totals_line(&r),
            "3 suites: 2 errors, 1 cancelled  (interrupted by SIGINT, exit 130)"
        );
        let one = run(vec![ran("a", Outcome::Passed, 1.0, None)], None);
        assert_eq!(totals_line(&one), "1 suite: 1 passed  (exit 0)");
        assert_eq!(totals_line(&run(vec![], None)), "0 suites  (exit 0)");
    }

    #[test]
    fn reasons_are_cleaned_and_cut() {
        let long = format!("\x1b[31m{}\x1b[0m", "y".repeat(200));
        let s = ran("a", Outcome::Failed, 1.0, Some(&long));
        let reason = short_reason(&s);
        assert_eq!(reason, format!("{}…", "y".repeat(MAX_REASON_CHARS)));
    }

    #[test]
    fn each_error_cause_is_shown_once_in_full() {
        let long = format!(
            "building image phalanx/base:bookworm failed: {}; install it with `apt-get install debootstrap`",
            "x".repeat(100)
        );
        let mut suites: Vec<SuiteReport> = (0..10)
            .map(|i| {
                SuiteReport::not_run(
                    &format!("s{i}"),
                    "img",
                    Outcome::Error,
                    Some(Cause::internal(long.clone())),
                )
            })
            .collect();
        suites.push(ran("other", Outcome::Error, 1.0, Some("engine went away")));
        suites.push(ran("fine", Outcome::Failed, 1.0, Some("3 findings")));
        let text = summary_table(&run(suites, None), &[]);
        assert!(
            text.lines().next().unwrap().ends_with('…'),
            "rows stay cut: {text}"
        );
        let expected = format!("errors:\n  10 suites: {long}\n\n");
        assert!(text.contains(&expected), "{text}");
        assert_eq!(
            text.matches("apt-get install debootstrap").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(human_duration(Duration::from_millis(59_960)), "1m00s");
        assert_eq!(human_duration(Duration::from_secs(303)), "5m03s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
    }
}
