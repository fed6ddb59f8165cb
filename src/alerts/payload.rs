//! The bodies a channel is sent: Phalanx's own JSON document ([`SCHEMA`]) or a Slack
//! incoming-webhook message.
//!
//! Both list at most [`LISTED`] findings, most severe first, and the count of the rest: a
//! digest is read by a person. Everything in them that a tool or a file wrote is one line
//! and bounded (`crate::report::one_line`); in the Slack message it only ever goes into
//! `plain_text` objects, so a finding's message cannot mention `@channel`, format or link.

use serde::Serialize;
use serde_json::{Value, json};

use super::config::{EventKind, Format};
use super::plan::{AlertFinding, Digest, RunFailure, Subject, SuiteProblem};
use crate::findings::SeverityCounts;
use crate::report::one_line;
use crate::store::GitInfo;
use crate::verdict::EntryReport;

/// The `schema` of the JSON document. A receiver checks it; a change that could break one
/// gets a new number.
pub const SCHEMA: &str = "phalanx.alert/v1";

/// Findings listed in a message; the rest are counted.
pub const LISTED: usize = 10;

/// Phalanx's JSON document for one digest.
#[derive(Debug, Serialize)]
pub struct AlertDocument<'a> {
    pub schema: &'static str,
    /// `digest`, or `test` for `phalanx alerts test`.
    pub kind: &'static str,
    pub channel: &'a str,
    pub events: &'a [EventKind],
    pub summary: &'a str,
    pub phalanx_version: &'static str,
    pub project: Option<&'a str>,
    pub run: RunPart<'a>,
    pub target: TargetPart<'a>,
    pub git: Option<&'a GitInfo>,
    /// git's branch, else the one the CI names (a detached checkout).
    pub branch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_findings: Option<FindingsPart<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub suite_errors: &'a [SuiteProblem],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_failed: Option<&'a RunFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressions: Option<SuppressionsPart<'a>>,
}

#[derive(Debug, Serialize)]
pub struct RunPart<'a> {
    pub id: &'a str,
    /// The run's page on the Phalanx server, when there is one.
    pub url: Option<&'a str>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub exit_code: u8,
    pub counts: &'a crate::outcome::Counts,
}

#[derive(Debug, Serialize)]
pub struct TargetPart<'a> {
    pub name: &'a str,
    pub path: &'a std::path::Path,
}

#[derive(Debug, Serialize)]
pub struct FindingsPart<'a> {
    /// How many are new (all of them, listed or not).
    pub total: usize,
    pub counts: SeverityCounts,
    /// The first [`LISTED`], most severe first.
    pub listed: &'a [AlertFinding],
    /// How many are not listed.
    pub more: usize,
}

#[derive(Debug, Serialize)]
pub struct SuppressionsPart<'a> {
    pub expiring: &'a [EntryReport],
    pub expired: &'a [EntryReport],
}

/// The body of `digest` in `format`.
pub fn body(format: Format, digest: &Digest, subject: &Subject) -> Vec<u8> {
    let summary = digest.summary(subject);
    // The document is written straight from its type, so `schema` comes first.
    let bytes = match format {
        Format::Json => serde_json::to_vec(&document(digest, subject, &summary)),
        Format::Slack => serde_json::to_vec(&slack(digest, subject, &summary)),
    };
    bytes.expect("an alert serialises")
}

fn document<'a>(digest: &'a Digest, subject: &'a Subject, summary: &'a str) -> AlertDocument<'a> {
    let listed = &digest.new_findings[..digest.new_findings.len().min(LISTED)];
    let has_risks = !digest.expiring.is_empty() || !digest.expired.is_empty();
    AlertDocument {
        schema: SCHEMA,
        kind: "digest",
        channel: &digest.channel,
        events: &digest.events,
        summary,
        phalanx_version: env!("CARGO_PKG_VERSION"),
        project: subject.project.as_deref(),
        run: RunPart {
            id: &subject.run_id,
            url: subject.run_url.as_deref(),
            started_at: subject.started_at,
            finished_at: subject.finished_at,
            exit_code: subject.exit_code,
            counts: &subject.counts,
        },
        target: TargetPart {
            name: &subject.name,
            path: &subject.target,
        },
        git: subject.git.as_ref(),
        branch: subject.branch(),
        new_findings: (!digest.new_findings.is_empty()).then(|| FindingsPart {
            total: digest.new_findings.len(),
            counts: digest.new_counts(),
            listed,
            more: digest.new_findings.len() - listed.len(),
        }),
        suite_errors: &digest.suite_errors,
        run_failed: digest.run_failed.as_ref(),
        suppressions: has_risks.then_some(SuppressionsPart {
            expiring: &digest.expiring,
            expired: &digest.expired,
        }),
    }
}

/// A test message: says what it is, to which channel, and nothing else.
pub fn test_body(format: Format, channel: &str, summary: &str) -> Vec<u8> {
    let value = match format {
        Format::Json => json!({
            "schema": SCHEMA,
            "kind": "test",
            "channel": channel,
            "events": [],
            "summary": summary,
            "phalanx_version": env!("CARGO_PKG_VERSION"),
        }),
        Format::Slack => json!({
            "text": slack_text(summary),
            "blocks": [
                { "type": "header", "text": plain(&one_line(summary, 150)) },
                { "type": "context", "elements": [plain("Sent by phalanx alerts test: nothing needs doing.")] },
            ],
        }),
    };
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

/// A Slack `plain_text` object: Slack shows it as written, no mentions, links or markup.
fn plain(text: &str) -> Value {
    json!({ "type": "plain_text", "text": text, "emoji": false })
}

/// The notification text (`text`), which Slack reads as mrkdwn: `&`, `<` and `>` are the
/// characters it asks to escape, and what makes a mention or link.
fn slack_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack message for `digest`: a header with the summary, the run's facts, then one
/// section per kind of event. Section texts stay under Slack's 3,000 characters: at most
/// [`LISTED`] lines of at most ~250.
fn slack(digest: &Digest, subject: &Subject, summary: &str) -> Value {
    let mut blocks = vec![json!({ "type": "header", "text": plain(&one_line(summary, 150)) })];
    let mut facts = vec![format!("Target: {}", subject.target.display())];
    if let Some(branch) = subject.branch() {
        facts.push(format!("Branch: {branch}"));
    }
    if let Some(commit) = subject.git.as_ref().and_then(|g| g.commit.as_deref()) {
        facts.push(format!("Commit: {commit}"));
    }
    facts.push(format!(
        "Run: {} (exit {})",
        subject.run_id, subject.exit_code
    ));
    blocks.push(
        json!({ "type": "context", "elements": [plain(&one_line(&facts.join("  ·  "), 1000))] }),
    );
    if !digest.new_findings.is_empty() {
        let lines: Vec<String> = digest
            .new_findings
            .iter()
            .take(LISTED)
            .map(|f| {
                let place = f.location.as_deref().unwrap_or("(no location)");
                format!(
                    "{}  {} · {}  {}  {} [{}]",
                    f.severity.as_str().to_uppercase(),
                    f.suite,
                    one_line(&f.rule, 40),
                    one_line(place, 60),
                    one_line(&f.message, 60),
                    f.fingerprint
                )
            })
            .collect();
        blocks.push(section("New findings", &lines));
        let more = digest.new_findings.len().saturating_sub(LISTED);
        if more > 0 {
            blocks.push(
                json!({ "type": "context", "elements": [plain(&format!("and {more} more"))] }),
            );
        }
    }
    if !digest.suite_errors.is_empty() {
        let lines: Vec<String> = digest
            .suite_errors
            .iter()
            .map(|p| format!("{} ({}): {}", p.suite, p.outcome, one_line(&p.reason, 150)))
            .collect();
        blocks.push(section(
            "Could not run: these results cannot be trusted",
            &lines,
        ));
    }
    if let Some(failure) = &digest.run_failed {
        let line = format!("Exit {}: {}", failure.exit_code, failure.meaning);
        blocks.push(section("Run failed", &[line]));
    }
    for (title, entries) in [
        ("Accepted risks expiring", &digest.expiring),
        (
            "Accepted risks expired (their findings gate again)",
            &digest.expired,
        ),
    ] {
        if entries.is_empty() {
            continue;
        }
        let lines: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "{} — until {}, owner {}: {}",
                    one_line(&e.scope, 120),
                    e.expires,
                    one_line(&e.owner, 60),
                    one_line(&e.reason, 80)
                )
            })
            .collect();
        blocks.push(section(title, &lines));
    }
    if let Some(url) = &subject.run_url {
        blocks.push(json!({
            "type": "actions",
            "elements": [{ "type": "button", "text": plain("Open the run"), "url": url }],
        }));
    }
    json!({ "text": slack_text(summary), "blocks": blocks })
}

/// A section of a title and at most [`LISTED`] bullet lines, within Slack's 3,000
/// characters.
fn section(title: &str, lines: &[String]) -> Value {
    let mut text = std::iter::once(title.to_string())
        .chain(lines.iter().take(LISTED).map(|l| format!("• {l}")))
        .collect::<Vec<_>>()
        .join("\n");
    if lines.len() > LISTED {
        text.push_str(&format!("\n… and {} more", lines.len() - LISTED));
    }
    if text.chars().count() > SLACK_SECTION_CHARS {
        text = text.chars().take(SLACK_SECTION_CHARS - 1).collect();
        text.push('…');
    }
    json!({ "type": "section", "text": plain(&text) })
}

/// Slack refuses a section text longer than 3,000 characters.
const SLACK_SECTION_CHARS: usize = 3000;
