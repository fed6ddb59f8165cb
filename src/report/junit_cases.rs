//! Test cases for suites whose results were read (DESIGN.md, "JUnit mapping"):
//! - SARIF suites get one case per rule (`classname` = suite, `name` = rule id), so test
//!   counts stay stable between runs and the rules the tool declared but did not trigger
//!   show as passing. A rule fails when an unsuppressed finding is at or above `fail_on`;
//!   a rule whose findings are all suppressed is skipped; findings below the threshold
//!   leave it passing but are listed in its `<system-out>`. Under `gate = "new"`, findings
//!   the baseline holds (unchanged) do not fail their rule; a rule that passes only
//!   because of them says so in its `<system-out>`.
//! - JUnit suites get their own cases, carried over.

use std::collections::{HashMap, HashSet};

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, XmlString};

use super::junit::{attach_output, xml_text};
use crate::config::suppressions::SuppressionEntry;
use crate::findings::{Finding, Gate, JunitResults, Rule, Severity, SuiteFindings, Suppression};
use crate::outcome::SuiteReport;

/// Findings listed per case at most; GitLab skips oversized nodes, and every finding is in
/// the merged SARIF anyway.
pub const MAX_LISTED: usize = 200;

/// Characters of a finding's message shown in a listing line.
const MAX_LINE_MESSAGE: usize = 300;

/// One case per rule of a SARIF suite.
pub fn rule_cases(suite: &SuiteReport, findings: &SuiteFindings) -> Vec<TestCase> {
    let fail_on = suite
        .findings
        .as_ref()
        .map_or(Severity::High, |f| f.fail_on);
    let gate = suite.findings.as_ref().map_or(Gate::All, |f| f.gate);
    let groups = findings.by_rule();
    let names = case_names(findings);
    let mut cases: Vec<TestCase> = findings
        .rules
        .iter()
        .zip(&groups)
        .zip(names)
        .map(|((rule, group), name)| {
            let list: Vec<&Finding> = group.iter().map(|&i| &findings.findings[i]).collect();
            rule_case(&suite.name, rule, &list, name, (fail_on, gate))
        })
        .collect();
    if cases.is_empty() {
        cases.push(lone_case(
            suite,
            "the tool declared no rules and reported no findings",
        ));
    }
    attach_to_first_failure(&mut cases, suite);
    cases
}

/// The suite's own cases, carried over as they were, their text made XML-safe like ours.
pub fn carried_cases(suite: &SuiteReport, results: &JunitResults) -> Vec<TestCase> {
    let mut cases: Vec<TestCase> = results.cases.iter().map(sanitised).collect();
    if cases.is_empty() {
        cases.push(lone_case(
            suite,
            "the suite's JUnit report holds no test case",
        ));
    }
    attach_to_first_failure(&mut cases, suite);
    cases
}

/// The case with every text field through [`xml_text`]. The reader takes any XML it can
/// parse, and characters such as U+FFFE that a lenient tool wrote must not make our own
/// junit.xml unreadable.
fn sanitised(case: &TestCase) -> TestCase {
    let clean = |s: &XmlString| XmlString::new(xml_text(s.as_str()));
    let mut case = case.clone();
    case.name = clean(&case.name);
    case.classname = case.classname.as_ref().map(clean);
    case.system_out = case.system_out.as_ref().map(clean);
    case.system_err = case.system_err.as_ref().map(clean);
    match &mut case.status {
        TestCaseStatus::NonSuccess {
            message,
            ty,
            description,
            ..
        }
        | TestCaseStatus::Skipped {
            message,
            ty,
            description,
        } => {
            for field in [message, ty, description] {
                *field = field.as_ref().map(clean);
            }
        }
        TestCaseStatus::Success { .. } => {}
    }
    case
}

/// A passing case named after the suite, so a suite with nothing to list still shows.
fn lone_case(suite: &SuiteReport, note: &str) -> TestCase {
    let name = xml_text(&suite.name);
    let mut case = TestCase::new(name.clone(), TestCaseStatus::success());
    case.set_classname(name);
    case.set_system_out(note);
    case
}

/// A failed suite's captured output goes with its first failing case (GitLab reads output
/// only inside `<testcase>`), unless that case brought its own.
fn attach_to_first_failure(cases: &mut [TestCase], suite: &SuiteReport) {
    if !suite.outcome.is_failure() {
        return;
    }
    let first = cases.iter_mut().find(|c| {
        matches!(c.status, TestCaseStatus::NonSuccess { .. })
            && c.system_out.is_none()
            && c.system_err.is_none()
    });
    if let Some(case) = first {
        attach_output(case, suite);
    }
}

/// Case names: the rule id, or `tool/rule` when two tools of the suite share a rule id,
/// then ` (2)`, ` (3)`… for whatever still collides, so every name is unique.
fn case_names(findings: &SuiteFindings) -> Vec<String> {
    let mut tools_per_id: HashMap<&str, HashSet<usize>> = HashMap::new();
    for rule in &findings.rules {
        tools_per_id.entry(&rule.id).or_default().insert(rule.tool);
    }
    let mut used = HashSet::new();
    findings
        .rules
        .iter()
        .map(|rule| {
            let base = if tools_per_id[rule.id.as_str()].len() > 1 {
                format!("{}/{}", findings.tool_of(rule).name, rule.id)
            } else {
                rule.id.clone()
            };
            let base = xml_text(&base);
            let mut name = base.clone();
            let mut n = 1;
            while !used.insert(name.clone()) {
                n += 1;
                name = format!("{base} ({n})");
            }
            name
        })
        .collect()
}

fn rule_case(
    suite: &str,
    rule: &Rule,
    findings: &[&Finding],
    name: String,
    (fail_on, gate): (Severity, Gate),
) -> TestCase {
    let (suppressed, open): (Vec<&Finding>, Vec<&Finding>) =
        findings.iter().partition(|f| f.is_suppressed());
    let (at_threshold, below): (Vec<&Finding>, Vec<&Finding>) =
        open.iter().partition(|f| f.severity >= fail_on);
    let (mut blocking, baselined): (Vec<&Finding>, Vec<&Finding>) =
        at_threshold.iter().partition(|f| !f.is_baselined(gate));
    blocking.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let status = if !blocking.is_empty() {
        failure(
            rule,
            &blocking,
            &below,
            &suppressed,
            (fail_on, gate),
            &baselined,
        )
    } else if open.is_empty() && !suppressed.is_empty() {
        skipped_suppressed(&suppressed)
    } else if findings.is_empty() && rule.not_applicable > 0 {
        skipped("not applicable to the target")
    } else {
        TestCaseStatus::success()
    };
    let mut case = TestCase::new(name, status);
    case.set_classname(xml_text(suite));
    if blocking.is_empty() && !(below.is_empty() && baselined.is_empty()) {
        let mut text = String::new();
        if !baselined.is_empty() {
            text.push_str(&section(
                &format!(
                    "passes only because these findings at or above {fail_on} are in the baseline (gate new)"
                ),
                &baselined,
            ));
        }
        if !below.is_empty() {
            text.push_str(&section(
                &format!("below the fail_on threshold ({fail_on})"),
                &below,
            ));
        }
        case.set_system_out(xml_text(&text));
    }
    let first = blocking
        .first()
        .or(baselined.first())
        .or(below.first())
        .or(suppressed.first());
    if let Some(location) = first.and_then(|f| f.location.as_ref()) {
        case.extra
            .insert("file".into(), xml_text(&location.path).into());
        if let Some(line) = location.start_line {
            case.extra.insert("line".into(), line.to_string().into());
        }
    }
    case
}

fn failure(
    rule: &Rule,
    blocking: &[&Finding],
    below: &[&Finding],
    suppressed: &[&Finding],
    (fail_on, gate): (Severity, Gate),
    baselined: &[&Finding],
) -> TestCaseStatus {
    let n = blocking.len();
    // Under gate new, with a baseline, only new findings can block: say so.
    let new = gate == Gate::New && blocking.iter().any(|f| f.baseline.is_some());
    let noun = match (new, n == 1) {
        (false, true) => "finding",
        (false, false) => "findings",
        (true, true) => "new finding",
        (true, false) => "new findings",
    };
    let what = rule
        .short_description
        .as_deref()
        .or(rule.name.as_deref())
        .unwrap_or(&rule.id);
    let mut body = String::new();
    if let Some(description) = &rule.short_description {
        body.push_str(description);
        body.push_str("\n\n");
    }
    body.push_str(&section(&format!("at or above {fail_on}"), blocking));
    if !below.is_empty() {
        body.push('\n');
        body.push_str(&section(&format!("below {fail_on}"), below));
    }
    if !baselined.is_empty() {
        body.push('\n');
        body.push_str(&section(
            "in the baseline (unchanged, not gating)",
            baselined,
        ));
    }
    if !suppressed.is_empty() {
        body.push('\n');
        body.push_str(&section("suppressed", suppressed));
    }
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    status
        .set_type("findings")
        .set_message(super::one_line(
            &format!("{n} {noun} at or above {fail_on}: {what}"),
            200,
        ))
        .set_description(xml_text(&body));
    status
}

/// `suppressed: 2 findings`, and for findings accepted in the suppressions file who
/// accepted them and why: `…; accepted by appsec@example.com until 2027-03-01: demo fixture`.
fn skipped_suppressed(suppressed: &[&Finding]) -> TestCaseStatus {
    let n = suppressed.len();
    let noun = if n == 1 { "finding" } else { "findings" };
    let mut message = format!("suppressed: {n} {noun}");
    let mut entries: Vec<&SuppressionEntry> = Vec::new();
    for f in suppressed {
        if let Suppression::External(entry) = &f.suppression
            && !entries.iter().any(|e| e.index == entry.index)
        {
            entries.push(entry);
        }
    }
    for entry in entries {
        let ticket = entry
            .ticket
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        message.push_str(&format!(
            "; accepted by {} until {}{ticket}: {}",
            entry.owner, entry.expires, entry.reason
        ));
    }
    let mut status = skipped(&message);
    status.set_description(xml_text(&section("suppressed", suppressed)));
    status
}

fn skipped(message: &str) -> TestCaseStatus {
    let mut status = TestCaseStatus::skipped();
    status.set_message(super::one_line(message, 200));
    status
}

/// `<title>: 1 critical, 2 high` then one line per finding, capped at [`MAX_LISTED`].
fn section(title: &str, findings: &[&Finding]) -> String {
    let mut counts = crate::findings::SeverityCounts::default();
    for f in findings {
        counts.add(f.severity);
    }
    let mut text = format!("{title}: {counts}\n");
    for f in findings.iter().take(MAX_LISTED) {
        text.push_str(&finding_line(f));
        text.push('\n');
    }
    if findings.len() > MAX_LISTED {
        text.push_str(&format!(
            "… and {} more; every finding is in the merged SARIF report\n",
            findings.len() - MAX_LISTED
        ));
    }
    text
}

/// `src/app.py:12  Hardcoded password  [3f2a9c0d1e4b5a67]`, with the suppression's
/// justification when there is one.
pub fn finding_line(f: &Finding) -> String {
    let at = f
        .location
        .as_ref()
        .map_or_else(|| "(no location)".to_string(), |l| l.to_string());
    let message = super::one_line(&f.message, MAX_LINE_MESSAGE);
    let mut line = format!("{at}  {message}  [{}]", f.fingerprint);
    match &f.suppression {
        Suppression::None => {}
        Suppression::InSource { justification } => {
            if let Some(why) = justification {
                line.push_str(&format!("  (suppressed: {})", super::one_line(why, 120)));
            }
        }
        Suppression::External(entry) => line.push_str(&format!(
            "  (suppressed by {}: {})",
            super::one_line(&entry.owner, 80),
            super::one_line(&entry.reason, 120)
        )),
    }
    line
}
