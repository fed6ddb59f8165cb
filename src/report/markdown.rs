//! `report.md`: the run in GitHub/GitLab-flavoured Markdown, for a merge-request note or
//! `$GITHUB_STEP_SUMMARY`: the verdict, the counts, the new findings (first
//! [`MAX_NEW`]), the suites that did not run to the end and the suppressions that need a
//! decision. Never more than [`MAX_BYTES`], whatever the run: a comment holds 65,536
//! characters.
//!
//! Every string from a tool or a suite file goes through [`md`] or [`md_code`].

use std::fmt::Write as _;
use std::path::Path;

use super::escape::{md, md_code};
use super::groups::{location, rule_groups};
use super::input::{
    AcceptedRisk, Comparison, ReportInput, RiskState, Verdict, cause, finding_counts,
    verdict_detail,
};
use super::summary::suite_duration;
use super::{ReportError, atomic_write};
use crate::findings::{Severity, SeverityCounts};
use crate::outcome::{Outcome, RunReport};

/// The size limit of `report.md`, in bytes.
pub const MAX_BYTES: usize = 60 * 1024;
/// New findings listed; the rest are counted.
pub const MAX_NEW: usize = 20;
/// Rows of the suites table; the rest are counted (the HTML has them all).
const MAX_SUITES: usize = 60;
/// Suites listed under "did not run to the end", and suppressions under attention.
const MAX_LISTED: usize = 30;
const TEXT_CHARS: usize = 160;
const CAUSE_CHARS: usize = 240;

/// Writes the Markdown report to `path` atomically.
pub fn write_markdown(input: &ReportInput, path: &Path) -> Result<(), ReportError> {
    atomic_write(path, markdown_report(input).as_bytes())
}

/// The whole Markdown report, at most [`MAX_BYTES`].
pub fn markdown_report(input: &ReportInput) -> String {
    let run = input.run;
    let mut out = String::with_capacity(16 << 10);
    verdict(&mut out, input);
    suites(&mut out, run);
    counts(&mut out, run);
    changes(&mut out, input);
    not_run(&mut out, run);
    suppressions(&mut out, input);
    trend(&mut out, input);
    let _ = writeln!(
        out,
        "\n<sub>Phalanx {} · run {}</sub>",
        md_code(&run.phalanx_version, 40),
        md_code(&run.run_id, 80)
    );
    cap(out)
}

fn verdict(out: &mut String, input: &ReportInput) {
    let run = input.run;
    let v = Verdict::of(run);
    let mark = match v {
        Verdict::Passed => "✅",
        Verdict::Failed => "❌",
        Verdict::NotTrustworthy => "⚠️",
    };
    let _ = writeln!(
        out,
        "## {mark} Phalanx: {} (exit code {})\n",
        v.label().to_uppercase(),
        run.exit_code()
    );
    // Made of counts and words of ours alone: nothing to escape.
    let _ = writeln!(out, "**{}**\n", verdict_detail(run));
    let mut facts = vec![format!("**Target** {}", md_code(&input.target, TEXT_CHARS))];
    if let Some(git) = &input.git {
        let state = match git.dirty {
            Some(true) => ", uncommitted changes",
            Some(false) => ", clean",
            None => "",
        };
        let branch = git
            .branch
            .as_deref()
            .map_or("detached HEAD".into(), |b| md(b, 80));
        facts.push(format!(
            "**Commit** {} ({branch}{state})",
            md_code(&git.commit, 64)
        ));
    }
    let took = (run.finished_at - run.started_at)
        .to_std()
        .unwrap_or_default();
    facts.push(format!(
        "**When** {} ({})",
        run.started_at.format("%Y-%m-%d %H:%M UTC"),
        super::summary::human_duration(took)
    ));
    let _ = writeln!(out, "{}\n", facts.join(" · "));
    if let Some(note) = input.provenance.note() {
        let _ = writeln!(out, "_{}_\n", md(note, 400));
    }
    if let Some(url) = input.report_url.as_deref().and_then(safe_url) {
        let _ = writeln!(out, "[Full report (HTML)]({url})\n");
    }
}

/// The published report's address as a link target, when it is a plain http(s) URL:
/// the variable is set by the pipeline, but a link is still no place for markup.
fn safe_url(url: &str) -> Option<String> {
    let url = url.trim();
    let plain = (url.starts_with("https://") || url.starts_with("http://"))
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[]`\"'\\".contains(c));
    plain.then(|| url.to_string())
}

fn suites(out: &mut String, run: &RunReport) {
    if run.suites.is_empty() && run.invalid_suites.is_empty() {
        return;
    }
    out.push_str("| Suite | Outcome | Time | Findings | Cause |\n|---|---|--:|---|---|\n");
    for suite in run.suites.iter().take(MAX_SUITES) {
        let findings = match (&suite.findings, &suite.tests) {
            (Some(f), _) => f.counts.to_string(),
            (None, Some(t)) => format!("{} tests, {} failed", t.tests, t.failures),
            (None, None) => "-".into(),
        };
        let why = match suite.outcome {
            Outcome::Passed => String::new(),
            _ => md(&cause(suite).unwrap_or_default(), CAUSE_CHARS),
        };
        let flaky = if suite.flaky { " (flaky)" } else { "" };
        let _ = writeln!(
            out,
            "| {} | {}{flaky} | {} | {findings} | {why} |",
            md(&suite.name, TEXT_CHARS),
            outcome_word(suite.outcome),
            suite_duration(suite)
        );
    }
    for invalid in run.invalid_suites.iter().take(MAX_SUITES) {
        let _ = writeln!(
            out,
            "| {} | **INVALID** | - | - | {} |",
            md(&invalid.name, TEXT_CHARS),
            md(&invalid.errors.join("; "), CAUSE_CHARS)
        );
    }
    let rows = run.suites.len() + run.invalid_suites.len();
    if run.suites.len() > MAX_SUITES || run.invalid_suites.len() > MAX_SUITES {
        let _ = writeln!(
            out,
            "\n… {rows} suites in all: the HTML report lists every one."
        );
    }
    out.push('\n');
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "PASS",
        Outcome::Failed => "**FAIL**",
        Outcome::TimedOut => "**TIMEOUT**",
        Outcome::Error => "**ERROR**",
        Outcome::Skipped => "**SKIP**",
        Outcome::Cancelled => "**CANCEL**",
    }
}

fn counts(out: &mut String, run: &RunReport) {
    if run.suites.iter().all(|s| s.findings.is_none()) {
        return;
    }
    let suppressed: usize = run
        .suites
        .iter()
        .filter_map(|s| s.findings.as_ref())
        .map(|f| f.suppressed.total())
        .sum();
    let _ = writeln!(
        out,
        "**Findings:** {} unsuppressed ({}), {suppressed} suppressed\n",
        finding_counts(run).total(),
        finding_counts(run)
    );
}

fn changes(out: &mut String, input: &ReportInput) {
    match &input.comparison {
        Comparison::Against(c) => {
            let _ = writeln!(
                out,
                "### What changed since {}\n",
                md(&c.baseline_label, 120)
            );
            counts_table(
                out,
                &[
                    ("new", &c.new),
                    ("fixed", &c.fixed),
                    ("unchanged", &c.unchanged),
                ],
            );
            if c.new_findings.is_empty() {
                out.push_str("No new finding.\n\n");
                return;
            }
            out.push_str(
                "| Severity | Suite | Rule | Location | Message |\n|---|---|---|---|---|\n",
            );
            for f in c.new_findings.iter().take(MAX_NEW) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    f.severity,
                    md(&f.suite, 60),
                    md(&f.rule, 80),
                    md(f.location.as_deref().unwrap_or("-"), TEXT_CHARS),
                    md(&f.message, TEXT_CHARS)
                );
            }
            more(out, c.new_findings.len(), "new findings");
        }
        other => {
            let why = match other {
                Comparison::FirstRun => "No baseline: first run of this target.",
                _ => "No baseline: no run store is in use.",
            };
            if input.run.suites.iter().all(|s| s.findings.is_none()) {
                // "None" would read as clean when nothing was read at all.
                let _ = writeln!(
                    out,
                    "### Findings\n\n{why} No suite produced SARIF findings.\n"
                );
                return;
            }
            let _ = writeln!(out, "### Findings\n\n{why} The most severe findings:\n");
            top_findings(out, input.run);
        }
    }
}

/// Without a baseline every finding is "new": the most severe ones are listed.
fn top_findings(out: &mut String, run: &RunReport) {
    let groups = rule_groups(run, false);
    let total: usize = groups.iter().map(|g| g.findings.len()).sum();
    if total == 0 {
        out.push_str("None.\n\n");
        return;
    }
    out.push_str("| Severity | Suite | Rule | Location | Message |\n|---|---|---|---|---|\n");
    let rows = groups
        .iter()
        .flat_map(|g| g.findings.iter().map(move |f| (g, *f)))
        .take(MAX_NEW);
    for (g, f) in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            g.severity,
            md(&g.suite.suite, 60),
            md(&g.rule.id, 80),
            md(&location(f), TEXT_CHARS),
            md(&f.message, TEXT_CHARS)
        );
    }
    more(out, total, "findings");
}

fn more(out: &mut String, total: usize, what: &str) {
    if total > MAX_NEW {
        let _ = writeln!(
            out,
            "\n… and {} more {what}: see the HTML report and results.sarif.",
            total - MAX_NEW
        );
    }
    out.push('\n');
}

fn counts_table(out: &mut String, rows: &[(&str, &SeverityCounts)]) {
    out.push_str("| |");
    for s in Severity::DESCENDING {
        let _ = write!(out, " {s} |");
    }
    out.push_str(" total |\n|---|");
    out.push_str(&"--:|".repeat(Severity::DESCENDING.len() + 1));
    out.push('\n');
    for (label, c) in rows {
        let _ = write!(out, "| {label} |");
        for s in Severity::DESCENDING {
            let _ = write!(out, " {} |", c.get(s));
        }
        let _ = writeln!(out, " {} |", c.total());
    }
    out.push('\n');
}

fn not_run(out: &mut String, run: &RunReport) {
    let bad: Vec<_> = run
        .suites
        .iter()
        .filter(|s| !matches!(s.outcome, Outcome::Passed | Outcome::Failed))
        .collect();
    if bad.is_empty() && run.invalid_suites.is_empty() {
        return;
    }
    out.push_str("### Did not run to the end (not checked)\n\n");
    for s in bad.iter().take(MAX_LISTED) {
        let _ = writeln!(
            out,
            "- **{}** {}: {}",
            md(&s.name, TEXT_CHARS),
            s.outcome.label(),
            md(
                &cause(s).unwrap_or_else(|| "no cause given".into()),
                CAUSE_CHARS
            )
        );
    }
    for i in run.invalid_suites.iter().take(MAX_LISTED) {
        let _ = writeln!(
            out,
            "- **{}** invalid suite file {}",
            md(&i.name, TEXT_CHARS),
            md_code(&i.file.display().to_string(), TEXT_CHARS)
        );
    }
    let listed = bad.len().min(MAX_LISTED) + run.invalid_suites.len().min(MAX_LISTED);
    let all = bad.len() + run.invalid_suites.len();
    if all > listed {
        let _ = writeln!(out, "- … and {} more", all - listed);
    }
    out.push('\n');
}

/// One line per measure, oldest to newest: the charts are in the HTML.
fn trend(out: &mut String, input: &ReportInput) {
    let Some(points) = input.trend.points(input.run) else {
        return;
    };
    let findings: Vec<String> = points
        .iter()
        .map(|p| p.counts.total().to_string())
        .collect();
    let failing: Vec<String> = points
        .iter()
        .map(|p| p.suites_failing.to_string())
        .collect();
    let _ = writeln!(
        out,
        "**Trend** (last {} {}, oldest first): findings {} · suites not passing {}\n",
        points.len(),
        if points.len() == 1 { "run" } else { "runs" },
        findings.join(" → "),
        failing.join(" → ")
    );
}

fn suppressions(out: &mut String, input: &ReportInput) {
    let Some(entries) = &input.accepted_risk else {
        return;
    };
    let mut due: Vec<&AcceptedRisk> = entries
        .iter()
        .filter(|e| matches!(e.state, RiskState::Expired | RiskState::Expiring))
        .collect();
    if due.is_empty() {
        return;
    }
    due.sort_by_key(|e| (e.state != RiskState::Expired, e.expires));
    out.push_str("### Suppressions expiring or expired\n\n");
    out.push_str("| State | Matches | Owner | Expires | Ticket |\n|---|---|---|---|---|\n");
    for e in due.iter().take(MAX_LISTED) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            e.state.label(),
            md_code(&e.selector, 80),
            md(&e.owner, 60),
            e.expires.map_or("never".into(), |d| d.to_string()),
            md(e.ticket.as_deref().unwrap_or("-"), 60)
        );
    }
    if due.len() > MAX_LISTED {
        let _ = writeln!(out, "\n… and {} more.", due.len() - MAX_LISTED);
    }
    out.push('\n');
}

/// The last guard of [`MAX_BYTES`]: the caps above keep ordinary runs well under it, and
/// a run with hundreds of suites is cut at a line boundary with a note.
fn cap(mut out: String) -> String {
    if out.len() <= MAX_BYTES {
        return out;
    }
    const NOTE: &str = "\n\n… cut to fit a comment: the HTML report has the rest.\n";
    let mut cut = MAX_BYTES - NOTE.len();
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    let line_end = out[..cut].rfind('\n').unwrap_or(0);
    out.truncate(line_end);
    out.push_str(NOTE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_at_a_line_within_the_limit() {
        let long = "x".repeat(100) + "\n";
        let out = cap(long.repeat(2000));
        assert!(out.len() <= MAX_BYTES);
        assert!(out.ends_with("the HTML report has the rest.\n"));
        assert!(
            out.lines()
                .filter(|l| l.starts_with('x'))
                .all(|l| l.len() == 100)
        );
    }

    #[test]
    fn only_a_plain_http_url_becomes_a_link() {
        assert_eq!(
            safe_url(" https://ci.example/r/1/report.html "),
            Some("https://ci.example/r/1/report.html".into())
        );
        assert_eq!(safe_url("javascript:alert(1)"), None);
        assert_eq!(safe_url("https://x/a)[b](javascript:1"), None);
    }
}
