//! `report.html`: the release manager's page. One self-contained file (inline CSS, inline
//! SVG, no script, no request to any address: a Content-Security-Policy forbids them, in
//! case an escaping bug ever let markup through), readable on screen and printed on A4.
//!
//! The page is also well-formed XML (every element closed, attributes quoted, only XML's
//! own entities), so the tests can parse it strictly.
//!
//! Size: at most [`MAX_ROWS`] finding rows, [`MAX_GROUPS`] rule groups and capped strings,
//! whatever the number of findings; the rest is counted and left to the merged SARIF.

use std::fmt::Write as _;
use std::path::Path;

use super::escape::{html, push_html};
use super::groups::{RuleGroup, location, rule_groups};
use super::input::{
    AcceptedRisk, ChangedFinding, Comparison, Provenance, ReportInput, RiskState, TrendPoint,
    Verdict, cause, finding_counts, verdict_detail,
};
use super::summary::{human_duration, suite_duration};
use super::{ReportError, atomic_write};
use crate::findings::{Severity, SeverityCounts};
use crate::outcome::{Outcome, RunReport, SuiteReport};

/// Finding rows on the page, over all groups.
pub const MAX_ROWS: usize = 1000;
/// Finding rows shown for one rule group.
pub const PER_GROUP: usize = 20;
/// Rule groups on the page; the rest are counted.
pub const MAX_GROUPS: usize = 300;
/// Rows of each list of new or fixed findings, and of in-source suppressions.
pub const MAX_LIST: usize = 200;
const MESSAGE_CHARS: usize = 300;
const PATH_CHARS: usize = 200;
const NAME_CHARS: usize = 160;
const CAUSE_CHARS: usize = 2000;

/// Writes the page to `path` atomically.
pub fn write_html(input: &ReportInput, path: &Path) -> Result<(), ReportError> {
    atomic_write(path, html_report(input).as_bytes())
}

/// The whole page.
pub fn html_report(input: &ReportInput) -> String {
    let run = input.run;
    let verdict = Verdict::of(run);
    let mut out = String::with_capacity(64 << 10);
    head(&mut out, input, verdict);
    banner(&mut out, input, verdict);
    scanned(&mut out, input);
    suites(&mut out, run);
    changes(&mut out, &input.comparison);
    findings(&mut out, input);
    accepted_risk(&mut out, input);
    trend(&mut out, input);
    let _ = write!(
        out,
        "<footer>Phalanx {} · run {}</footer>\n</body>\n</html>\n",
        html(&run.phalanx_version),
        html(&run.run_id)
    );
    out
}

const CSS: &str = include_str!("report.css");

fn head(out: &mut String, input: &ReportInput, verdict: Verdict) {
    let _ = write!(
        out,
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n",
            // Nothing may load or run: the page is read offline, from CI artifacts.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; ",
            "style-src 'unsafe-inline'; img-src data:\"/>\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n",
            "<title>Phalanx: {} — {}</title>\n<style>\n{}</style>\n</head>\n<body>\n"
        ),
        verdict.label(),
        html(&super::one_line(&input.target, NAME_CHARS)),
        CSS
    );
}

fn banner(out: &mut String, input: &ReportInput, verdict: Verdict) {
    let run = input.run;
    let mark = match verdict {
        Verdict::Passed => "✔",
        Verdict::Failed => "✘",
        Verdict::NotTrustworthy => "⚠",
    };
    let _ = write!(
        out,
        "<header class=\"banner {}\" role=\"banner\"><div class=\"verdict\">{mark} {}</div>\
         <div class=\"detail\">{}",
        verdict.class(),
        verdict.label().to_uppercase(),
        html(&verdict_detail(run)),
    );
    if run.suites.iter().any(|s| s.findings.is_some()) {
        let new = match &input.comparison {
            Comparison::Against(c) => format!("; {} new since the baseline", c.new.total()),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<br/>Findings: {}{new}",
            html(&finding_counts(run).to_string())
        );
    }
    let _ = writeln!(
        out,
        "</div><div class=\"exit\">exit code {}</div></header>",
        run.exit_code()
    );
}

fn scanned(out: &mut String, input: &ReportInput) {
    let run = input.run;
    out.push_str("<section id=\"scanned\"><h2>What was scanned</h2>\n<table class=\"facts\">");
    fact(out, "Target", &input.target);
    match &input.git {
        Some(git) => {
            let dirty = match git.dirty {
                Some(true) => ", uncommitted changes",
                Some(false) => ", clean",
                None => "",
            };
            let branch = git.branch.as_deref().unwrap_or("detached HEAD");
            fact(out, "Commit", &format!("{} ({branch}{dirty})", git.commit));
        }
        None => fact(out, "Commit", "not a git work tree"),
    }
    let when = format!(
        "{} to {}",
        run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        run.finished_at.format("%H:%M:%S UTC")
    );
    fact(out, "When", &when);
    let took = (run.finished_at - run.started_at)
        .to_std()
        .unwrap_or_default();
    fact(out, "Duration", &human_duration(took));
    fact(out, "Phalanx", &run.phalanx_version);
    fact(out, "Run id", &run.run_id);
    if let Some(p) = &run.partition {
        fact(out, "Shard", p);
    }
    if let Some(note) = input.provenance.note() {
        fact(out, "Note", note);
    }
    out.push_str("<tr><th>Reproduce</th><td><code class=\"cmd\">");
    push_html(out, &input.command_line);
    out.push_str("</code></td></tr>\n</table></section>\n");
}

fn fact(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(out, "<tr><th>{name}</th><td>{}</td></tr>", html(value));
}

fn suites(out: &mut String, run: &RunReport) {
    out.push_str(concat!(
        "<section id=\"suites\"><h2>Suites</h2>\n<table class=\"suites\"><thead><tr>",
        "<th>Suite</th><th>Outcome</th><th class=\"num\">Time</th><th>Image</th>",
        "<th class=\"num\">Findings</th><th class=\"num\">Attempts</th><th>Cause</th>",
        "</tr></thead>\n<tbody>\n"
    ));
    for suite in &run.suites {
        suite_row(out, suite);
    }
    for invalid in &run.invalid_suites {
        let _ = writeln!(
            out,
            "<tr class=\"o-error\"><td>{}</td><td><span class=\"pill error\">INVALID</span></td>\
             <td class=\"num\">-</td><td>-</td><td class=\"num\">-</td><td class=\"num\">-</td>\
             <td class=\"cause\">{}: {}</td></tr>",
            html(&invalid.name),
            html(&invalid.file.display().to_string()),
            html(&clip(&invalid.errors.join("\n"), CAUSE_CHARS))
        );
    }
    out.push_str("</tbody></table></section>\n");
}

fn suite_row(out: &mut String, suite: &SuiteReport) {
    let class = outcome_class(suite.outcome);
    let _ = write!(
        out,
        "<tr class=\"o-{class}\"><td>{}</td><td><span class=\"pill {class}\">{}</span></td>\
         <td class=\"num\">{}</td><td class=\"image\">{}",
        html(&clip(&suite.name, NAME_CHARS)),
        suite.outcome.label(),
        suite_duration(suite),
        html(&clip(&suite.image, NAME_CHARS)),
    );
    if let Some(digest) = &suite.image_digest {
        let _ = write!(
            out,
            "<br/><small>{}</small>",
            html(&clip(digest, NAME_CHARS))
        );
    }
    out.push_str("</td><td class=\"num\">");
    match (&suite.findings, &suite.tests) {
        (Some(f), _) => {
            counts_inline(out, &f.counts);
            if f.suppressed.total() > 0 {
                let _ = write!(
                    out,
                    "<br/><small>{} suppressed</small>",
                    f.suppressed.total()
                );
            }
        }
        (None, Some(t)) => {
            let _ = write!(
                out,
                "{} tests, {} failed, {} errors",
                t.tests, t.failures, t.errors
            );
        }
        (None, None) => out.push('-'),
    }
    let _ = write!(out, "</td><td class=\"num\">{}", suite.attempts);
    if suite.flaky {
        out.push_str(" <span class=\"pill flaky\">flaky</span>");
    }
    out.push_str("</td><td class=\"cause\">");
    if suite.outcome != Outcome::Passed || suite.flaky {
        let why = match (suite.outcome, cause(suite)) {
            (Outcome::Passed, _) => format!("passed on attempt {}", suite.attempts),
            (_, Some(why)) => why,
            (_, None) => "no cause given".into(),
        };
        push_html(out, &clip(&why, CAUSE_CHARS));
        for retry in &suite.retried {
            let _ = write!(
                out,
                "<br/><small>attempt {} retried: {}</small>",
                retry.attempt,
                html(&clip(&retry.cause.to_string(), CAUSE_CHARS))
            );
        }
    }
    out.push_str("</td></tr>\n");
}

fn outcome_class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::TimedOut => "timeout",
        Outcome::Error => "error",
        Outcome::Skipped => "skipped",
        Outcome::Cancelled => "cancelled",
    }
}

/// `2 C · 5 H · 1 L`, each coloured; `none` when empty.
fn counts_inline(out: &mut String, counts: &SeverityCounts) {
    if counts.total() == 0 {
        out.push_str("none");
        return;
    }
    let parts: Vec<String> = Severity::DESCENDING
        .iter()
        .filter(|s| counts.get(**s) > 0)
        .map(|s| {
            format!(
                "<span class=\"sev {s}\" title=\"{s}\">{} {}</span>",
                counts.get(*s),
                s.as_str()
            )
        })
        .collect();
    out.push_str(&parts.join(" "));
}

/// A table of counts per severity, one row per line of `rows`.
fn counts_table(out: &mut String, rows: &[(&str, &SeverityCounts)]) {
    out.push_str("<table class=\"counts\"><thead><tr><th></th>");
    for s in Severity::DESCENDING {
        let _ = write!(out, "<th class=\"num sev-h {s}\">{s}</th>");
    }
    out.push_str("<th class=\"num\">total</th></tr></thead><tbody>\n");
    for (label, counts) in rows {
        let _ = write!(out, "<tr><th>{label}</th>");
        for s in Severity::DESCENDING {
            let _ = write!(out, "<td class=\"num\">{}</td>", counts.get(s));
        }
        let _ = writeln!(out, "<td class=\"num\">{}</td></tr>", counts.total());
    }
    out.push_str("</tbody></table>\n");
}

fn changes(out: &mut String, comparison: &Comparison) {
    out.push_str("<section id=\"changes\"><h2>What changed</h2>\n");
    let changes = match comparison {
        Comparison::NoStore => {
            out.push_str(
                "<p class=\"na\">Not available: no run store is in use, so there is no \
                 baseline to compare with.</p></section>\n",
            );
            return;
        }
        Comparison::FirstRun => {
            out.push_str("<p class=\"na\">No baseline: first run of this target.</p></section>\n");
            return;
        }
        Comparison::Against(c) => c,
    };
    let _ = writeln!(out, "<p>Against {}.</p>", html(&changes.baseline_label));
    counts_table(
        out,
        &[
            ("new", &changes.new),
            ("fixed", &changes.fixed),
            ("unchanged", &changes.unchanged),
        ],
    );
    changed_list(out, "New findings", &changes.new_findings, true);
    changed_list(out, "Fixed findings", &changes.fixed_findings, false);
    out.push_str("</section>\n");
}

fn changed_list(out: &mut String, title: &str, list: &[ChangedFinding], open: bool) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<details{}><summary>{title} ({})</summary>",
        if open { " open=\"open\"" } else { "" },
        list.len()
    );
    finding_table_head(out, true);
    for f in list.iter().take(MAX_LIST) {
        let _ = write!(
            out,
            "<tr><td><span class=\"sev {s}\">{s}</span></td><td>{}</td><td>{}</td>",
            html(&clip(&f.suite, NAME_CHARS)),
            html(&clip(&f.rule, NAME_CHARS)),
            s = f.severity
        );
        finding_cells(
            out,
            f.location.as_deref().unwrap_or("-"),
            &f.message,
            &f.fingerprint,
        );
    }
    out.push_str("</tbody></table>\n");
    more(out, list.len(), MAX_LIST, "");
    out.push_str("</details>\n");
}

fn finding_table_head(out: &mut String, with_rule: bool) {
    out.push_str("<table class=\"findings\"><thead><tr>");
    if with_rule {
        out.push_str("<th>Severity</th><th>Suite</th><th>Rule</th>");
    }
    out.push_str("<th>Location</th><th>Message</th><th>Fingerprint</th></tr></thead><tbody>\n");
}

fn finding_cells(out: &mut String, location: &str, message: &str, fingerprint: &str) {
    let _ = writeln!(
        out,
        "<td class=\"loc\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
        html(&clip(location, PATH_CHARS)),
        html(&clip(message, MESSAGE_CHARS)),
        html(&clip(fingerprint, NAME_CHARS))
    );
}

fn more(out: &mut String, total: usize, shown: usize, where_: &str) {
    if total > shown {
        let _ = writeln!(
            out,
            "<p class=\"more\">… and {} more{}.</p>",
            total - shown,
            html(where_)
        );
    }
}

fn findings(out: &mut String, input: &ReportInput) {
    let run = input.run;
    out.push_str("<section id=\"findings\"><h2>Findings</h2>\n");
    let read = run.suites.iter().filter(|s| s.findings.is_some()).count();
    if read == 0 {
        out.push_str("<p class=\"na\">No suite produced SARIF findings.</p></section>\n");
        return;
    }
    let total = finding_counts(run);
    counts_table(out, &[("unsuppressed", &total)]);
    let groups = rule_groups(run, false);
    let full = match &input.sarif_path {
        Some(p) => format!(" in the merged SARIF, {p}"),
        None => " in the merged SARIF".to_string(),
    };
    let listed = listed_rows(&groups);
    if listed < total.total() {
        let _ = writeln!(
            out,
            "<p class=\"more\">Listed: {listed} of {} findings (at most {PER_GROUP} per rule, \
             {MAX_ROWS} in all); every one is{}.</p>",
            total.total(),
            html(&full)
        );
    }
    let mut rows = 0;
    let mut current: Option<(Severity, &str)> = None;
    for group in groups.iter().take(MAX_GROUPS) {
        let heading = (group.severity, group.suite.suite.as_str());
        if current.map(|c| c.0) != Some(group.severity) {
            close_severity(out, current.is_some());
            let _ = write!(
                out,
                "<h3 class=\"sev-title {s}\">{s}: {}</h3>\n<div class=\"sev-block\">\n",
                total.get(group.severity),
                s = group.severity
            );
        }
        if current != Some(heading) {
            let _ = writeln!(out, "<h4>{}</h4>", html(&clip(heading.1, NAME_CHARS)));
        }
        current = Some(heading);
        rows += rule_group(out, group, MAX_ROWS - rows, &full);
    }
    close_severity(out, current.is_some());
    if groups.len() > MAX_GROUPS {
        let hidden: usize = groups[MAX_GROUPS..].iter().map(|g| g.findings.len()).sum();
        let _ = writeln!(
            out,
            "<p class=\"more\">… and {} more rule groups with {hidden} findings{}.</p>",
            groups.len() - MAX_GROUPS,
            html(&full)
        );
    }
    out.push_str("</section>\n");
}

/// How many finding rows [`rule_group`] will write for `groups`, given the caps.
fn listed_rows(groups: &[RuleGroup]) -> usize {
    groups.iter().take(MAX_GROUPS).fold(0, |rows, g| {
        rows + g.findings.len().min(PER_GROUP).min(MAX_ROWS - rows)
    })
}

fn close_severity(out: &mut String, open: bool) {
    if open {
        out.push_str("</div>\n");
    }
}

/// One rule's findings in a collapsed block; returns the rows written (at most `budget`).
fn rule_group(out: &mut String, group: &RuleGroup, budget: usize, full: &str) -> usize {
    let tool = &group.suite.tool_of(group.rule).name;
    let _ = writeln!(
        out,
        "<details><summary><span class=\"count\">{}</span> {} <small>({})</small></summary>",
        group.findings.len(),
        html(&clip(&group.title(), NAME_CHARS)),
        html(&clip(tool, NAME_CHARS))
    );
    let shown = group.findings.len().min(PER_GROUP).min(budget);
    if shown > 0 {
        finding_table_head(out, false);
        for f in &group.findings[..shown] {
            out.push_str("<tr>");
            finding_cells(out, &location(f), &f.message, &f.fingerprint.to_string());
        }
        out.push_str("</tbody></table>\n");
    }
    more(out, group.findings.len(), shown, full);
    out.push_str("</details>\n");
    shown
}

fn accepted_risk(out: &mut String, input: &ReportInput) {
    out.push_str("<section id=\"risk\"><h2>Accepted risk</h2>\n");
    match &input.accepted_risk {
        None if input.provenance == Provenance::Stored => out.push_str(
            "<p class=\"na\">Not known: the run store keeps no suppressions-file entries; \
             the suppressed findings are listed with the findings.</p>\n",
        ),
        None => out.push_str(
            "<p class=\"na\">No suppressions file is in use; only the tools' own in-source \
             suppressions are listed.</p>\n",
        ),
        Some(entries) if entries.is_empty() => {
            out.push_str("<p>The suppressions file has no entries.</p>\n")
        }
        Some(entries) => risk_table(out, entries),
    }
    in_source(out, input.run);
    out.push_str("</section>\n");
}

fn risk_table(out: &mut String, entries: &[AcceptedRisk]) {
    out.push_str(concat!(
        "<table class=\"risk\"><thead><tr><th>State</th><th>Matches</th><th>Owner</th>",
        "<th>Reason</th><th>Ticket</th><th>Expires</th><th class=\"num\">Findings</th>",
        "</tr></thead><tbody>\n"
    ));
    // Expired and expiring first: those need a decision.
    let mut sorted: Vec<&AcceptedRisk> = entries.iter().collect();
    sorted.sort_by_key(|e| risk_rank(e.state));
    for e in sorted {
        let state = e.state.label();
        let _ = writeln!(
            out,
            "<tr class=\"r-{}\"><td><span class=\"pill r-{}\">{state}</span></td><td><code>{}</code></td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            state.replace(' ', "-"),
            state.replace(' ', "-"),
            html(&clip(&e.selector, NAME_CHARS)),
            html(&clip(&e.owner, NAME_CHARS)),
            html(&clip(&e.reason, MESSAGE_CHARS)),
            html(&clip(e.ticket.as_deref().unwrap_or("-"), NAME_CHARS)),
            e.expires
                .map_or_else(|| "never".to_string(), |d| d.to_string()),
            e.matched
        );
    }
    out.push_str("</tbody></table>\n");
}

fn risk_rank(state: RiskState) -> u8 {
    match state {
        RiskState::Expired => 0,
        RiskState::Expiring => 1,
        RiskState::Stale => 2,
        RiskState::InForce => 3,
    }
}

fn in_source(out: &mut String, run: &RunReport) {
    let groups = rule_groups(run, true);
    let total: usize = groups.iter().map(|g| g.findings.len()).sum();
    if total == 0 {
        out.push_str("<p>No finding was suppressed.</p>\n");
        return;
    }
    let _ = writeln!(
        out,
        // Both kinds: a stored run does not say which entry covered a finding.
        "<details><summary>Suppressed findings, in source or by the suppressions file \
         ({total})</summary>"
    );
    out.push_str(concat!(
        "<table class=\"findings\"><thead><tr><th>Severity</th><th>Suite</th><th>Rule</th>",
        "<th>Location</th><th>Justification</th><th>Fingerprint</th></tr></thead><tbody>\n"
    ));
    let rows = groups
        .iter()
        .flat_map(|g| g.findings.iter().map(move |f| (g, *f)))
        .take(MAX_LIST);
    for (g, f) in rows {
        let _ = write!(
            out,
            "<tr><td><span class=\"sev {s}\">{s}</span></td><td>{}</td><td>{}</td>",
            html(&clip(&g.suite.suite, NAME_CHARS)),
            html(&clip(&g.rule.id, NAME_CHARS)),
            s = g.severity
        );
        let why = f.justification().unwrap_or("no justification given");
        finding_cells(out, &location(f), why, &f.fingerprint.to_string());
    }
    out.push_str("</tbody></table>\n");
    more(out, total, total.min(MAX_LIST), " in the merged SARIF");
    out.push_str("</details>\n");
}

fn trend(out: &mut String, input: &ReportInput) {
    out.push_str("<section id=\"trend\"><h2>Trend</h2>\n");
    let Some(points) = input.trend.points(input.run) else {
        out.push_str(
            "<p class=\"na\">Not available: no run store is in use, so there is no history.</p>\
             </section>\n",
        );
        return;
    };
    if points.len() < 2 {
        out.push_str("<p class=\"na\">No history yet: this is the first recorded run of this target.</p></section>\n");
        return;
    }
    let _ = write!(
        out,
        "<p>The last {} runs of this target, oldest first.</p>\n<div class=\"charts\">",
        points.len()
    );
    findings_chart(out, &points);
    failing_chart(out, &points);
    out.push_str("</div>\n");
    trend_table(out, &points);
    out.push_str("</section>\n");
}

const CHART_W: f64 = 460.0;
const CHART_H: f64 = 150.0;
const PAD: f64 = 24.0;

fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#7f1d1d",
        Severity::High => "#dc2626",
        Severity::Medium => "#f59e0b",
        Severity::Low => "#3b82f6",
        Severity::Info => "#9ca3af",
    }
}

/// Stacked bars of findings per severity, one bar per run.
fn findings_chart(out: &mut String, points: &[TrendPoint]) {
    let max = points
        .iter()
        .map(|p| p.counts.total())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    chart_open(out, "Findings per run, by severity", max, points);
    legend(out);
    let slot = (CHART_W - PAD) / points.len() as f64;
    for (i, p) in points.iter().enumerate() {
        let x = PAD + i as f64 * slot + slot * 0.15;
        let mut y = CHART_H - PAD;
        for s in Severity::DESCENDING.iter().rev() {
            let n = p.counts.get(*s);
            if n == 0 {
                continue;
            }
            let h = n as f64 / max * (CHART_H - 2.0 * PAD);
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\">\
                 <title>{}: {n} {s}</title></rect>",
                slot * 0.7,
                severity_colour(*s),
                html(&p.run_id)
            );
        }
    }
    out.push_str("</svg>\n");
}

/// Bars of suites that did not pass, one per run.
fn failing_chart(out: &mut String, points: &[TrendPoint]) {
    let max = points
        .iter()
        .map(|p| p.suites_failing)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    chart_open(out, "Suites not passing per run", max, points);
    let slot = (CHART_W - PAD) / points.len() as f64;
    for (i, p) in points.iter().enumerate() {
        let h = p.suites_failing as f64 / max * (CHART_H - 2.0 * PAD);
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#6b7280\">\
             <title>{}: {} not passing</title></rect>",
            PAD + i as f64 * slot + slot * 0.15,
            CHART_H - PAD - h,
            slot * 0.7,
            html(&p.run_id),
            p.suites_failing
        );
    }
    out.push_str("</svg>\n");
}

/// Which colour is which severity, along the top of the chart.
fn legend(out: &mut String) {
    for (i, s) in Severity::DESCENDING.iter().enumerate() {
        let x = 230.0 + i as f64 * 46.0;
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"6\" width=\"8\" height=\"8\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"14\" class=\"ax\">{s}</text>",
            severity_colour(*s),
            x + 11.0
        );
    }
}

fn chart_open(out: &mut String, title: &str, max: f64, points: &[TrendPoint]) {
    let base = CHART_H - PAD;
    // The first and last dates under the axis: the table below has every one.
    let (first, last) = (&points[0], &points[points.len() - 1]);
    let _ = write!(
        out,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {CHART_W} {CHART_H}\" \
         role=\"img\" aria-label=\"{title}\"><title>{title}</title>\
         <text x=\"{PAD}\" y=\"{}\" class=\"ax\">{}</text>\
         <text x=\"{CHART_W}\" y=\"{}\" class=\"ax\" text-anchor=\"end\">{}</text>",
        CHART_H - 8.0,
        first.when.format("%Y-%m-%d"),
        CHART_H - 8.0,
        last.when.format("%Y-%m-%d"),
    );
    let _ = write!(
        out,
        "<text x=\"{PAD}\" y=\"14\" class=\"ct\">{title}</text>\
         <line x1=\"{PAD}\" y1=\"{base}\" x2=\"{CHART_W}\" y2=\"{base}\" stroke=\"#9ca3af\"/>\
         <text x=\"{}\" y=\"{}\" class=\"ax\" text-anchor=\"end\">{max}</text>\
         <text x=\"{}\" y=\"{base}\" class=\"ax\" text-anchor=\"end\">0</text>",
        PAD - 4.0,
        PAD + 4.0,
        PAD - 4.0,
    );
}

fn trend_table(out: &mut String, points: &[TrendPoint]) {
    out.push_str("<details open=\"open\"><summary>The numbers</summary>\n<table class=\"counts\"><thead><tr><th>Run</th><th>When</th>");
    for s in Severity::DESCENDING {
        let _ = write!(out, "<th class=\"num\">{s}</th>");
    }
    out.push_str("<th class=\"num\">suites not passing</th></tr></thead><tbody>\n");
    for p in points {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td>",
            html(&p.run_id),
            p.when.format("%Y-%m-%d %H:%M")
        );
        for s in Severity::DESCENDING {
            let _ = write!(out, "<td class=\"num\">{}</td>", p.counts.get(s));
        }
        let _ = writeln!(out, "<td class=\"num\">{}</td></tr>", p.suites_failing);
    }
    out.push_str("</tbody></table></details>\n");
}

/// At most `max` characters of `s` (control characters kept for [`html`] to drop, lines
/// kept: cells wrap), ending in `…` when cut.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}
