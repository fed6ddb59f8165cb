//! The text `phalanx runs`, `show` and `diff` print. (`--json` prints the same values with
//! serde instead.)

use std::fmt::Write as _;
use std::time::Duration;

use super::alerts::DeliveryRow;
use super::diff::{Diff, DiffFinding};
use super::query::{OutcomeCounts, RunDetail, RunSummary, StoredFinding};

/// `phalanx runs`: one line per run, newest first.
pub fn runs_table(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "no runs recorded\n".into();
    }
    let header = [
        "RUN", "STARTED", "DURATION", "EXIT", "SUITES", "FINDINGS", "GIT", "TARGET",
    ];
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                duration(r.duration),
                r.exit_code.to_string(),
                outcomes(&r.outcomes),
                r.findings.to_string(),
                git(r),
                r.target.display().to_string(),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// `phalanx show`: the run, its suites, then its findings, most severe first.
pub fn run_detail(detail: &RunDetail) -> String {
    let r = &detail.run;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}  started {}  took {}  exit {}",
        r.run_id,
        r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        duration(r.duration),
        r.exit_code
    );
    let _ = writeln!(
        out,
        "target {}  git {}",
        clean(&r.target.display().to_string()),
        clean(&git(r))
    );
    if let Some(b) = &detail.baseline {
        let _ = writeln!(
            out,
            "baseline {}: {} new, {} unchanged, {} absent (fixed)",
            clean(&b.source),
            b.new,
            b.unchanged,
            b.absent
        );
    }
    let selection = &r.selection;
    if !selection.suites.is_empty() || !selection.tags.is_empty() || r.partition.is_some() {
        let _ = writeln!(
            out,
            "selection: suites [{}] tags [{}]{}",
            selection.suites.join(", "),
            selection.tags.join(", "),
            r.partition
                .as_deref()
                .map(|p| format!(" partition {p}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "suites: {}; findings: {} (+{} suppressed)\n",
        outcomes(&r.outcomes),
        r.findings,
        r.suppressed
    );
    let rows: Vec<Vec<String>> = detail
        .suites
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.outcome.label().to_string(),
                duration(s.duration),
                s.attempts.to_string(),
                s.image.clone(),
                s.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "SUITE", "OUTCOME", "DURATION", "ATTEMPTS", "IMAGE", "REASON",
        ],
        &rows,
    ));
    if !detail.findings.is_empty() {
        let _ = writeln!(out, "\n{} finding(s):", detail.findings.len());
        for f in &detail.findings {
            out.push_str(&finding_line("", f, None));
        }
    }
    out
}

/// `phalanx diff`: counts per kind and severity, then the new and the fixed findings.
pub fn diff(d: &Diff) -> String {
    let mut out = String::new();
    for (what, r) in [("base", &d.base), ("head", &d.head)] {
        let _ = writeln!(
            out,
            "{what} {}  started {}  git {}",
            r.run_id,
            r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            git(r)
        );
    }
    let _ = writeln!(
        out,
        "new: {}\nfixed: {}\nunchanged: {}",
        d.counts.new, d.counts.fixed, d.counts.unchanged
    );
    for n in &d.not_compared {
        let _ = writeln!(out, "not compared: {} ({})", n.suite, n.why);
    }
    let list = |out: &mut String, title: &str, mark: &str, items: &[DiffFinding]| {
        if !items.is_empty() {
            let _ = writeln!(out, "\n{title} ({}):", items.len());
            for d in items {
                out.push_str(&finding_line(mark, &d.finding, None));
            }
        }
    };
    list(&mut out, "new", "+ ", &d.new);
    list(&mut out, "fixed", "- ", &d.fixed);
    let moved: Vec<&DiffFinding> = d
        .unchanged
        .iter()
        .filter(|u| u.base_line != u.finding.line)
        .collect();
    if !moved.is_empty() {
        let _ = writeln!(out, "\nunchanged but moved ({}):", moved.len());
        for m in moved {
            out.push_str(&finding_line("= ", &m.finding, Some(m.base_line)));
        }
    }
    out
}

/// `phalanx alerts log`: each delivery, newest first, with its summary and attempts.
pub fn alert_log(rows: &[DeliveryRow]) -> String {
    if rows.is_empty() {
        return "no alerts recorded\n".into();
    }
    let mut out = String::new();
    for d in rows {
        let run = d
            .run_id
            .as_deref()
            .map_or("test message".into(), |r| format!("run {r}"));
        let _ = writeln!(
            out,
            "#{}  {}  {}  {} ({})  {}",
            d.id,
            d.created_at.format("%Y-%m-%d %H:%M:%S"),
            run,
            clean(&d.channel),
            clean(&d.endpoint),
            d.status.as_str()
        );
        let _ = writeln!(out, "    {}", clean(&d.summary));
        for a in &d.attempts {
            let status = a
                .http_status
                .map(|s| format!("  HTTP {s}"))
                .unwrap_or_default();
            let detail = a
                .detail
                .as_deref()
                .map(|t| format!("  {}", clean(t)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    attempt {}  {}  {}{status}  {}{detail}",
                a.attempt,
                a.started_at.format("%H:%M:%S"),
                a.result,
                duration(a.duration)
            );
        }
    }
    out
}

fn finding_line(mark: &str, f: &StoredFinding, moved_from: Option<Option<u64>>) -> String {
    let place = match (&f.path, f.line) {
        (Some(p), Some(l)) => format!("{p}:{l}"),
        (Some(p), None) => p.clone(),
        (None, _) => "-".into(),
    };
    let from = match moved_from {
        Some(Some(line)) => format!(" (was line {line})"),
        _ => String::new(),
    };
    let suppressed = if f.suppressed { " [suppressed]" } else { "" };
    format!(
        "{mark}{:<8} {} {}/{} {}{from}: {}{suppressed} [{}]\n",
        f.severity.as_str(),
        clean(&f.suite),
        clean(&f.tool),
        clean(&f.rule),
        clean(&place),
        shorten(&clean(&f.message)),
        clean(&f.fingerprint)
    )
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Everything here came from suite files and tools' output: one line per item, and no
/// control characters that would move the cursor or recolour the terminal.
fn clean(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().filter(|c| !c.is_control()).collect()
}

fn outcomes(c: &OutcomeCounts) -> String {
    let parts: Vec<String> = [
        (c.passed, "passed"),
        (c.failed, "failed"),
        (c.timed_out, "timed out"),
        (c.error, "error"),
        (c.skipped, "skipped"),
        (c.cancelled, "cancelled"),
        (c.invalid, "invalid"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, w)| format!("{n} {w}"))
    .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn git(r: &RunSummary) -> String {
    let Some(g) = &r.git else {
        return "-".into();
    };
    let commit = g
        .commit
        .as_deref()
        .map_or("(no commit)", |c| &c[..c.len().min(10)]);
    let dirty = if g.dirty == Some(true) { "+dirty" } else { "" };
    match &g.branch {
        Some(b) => format!("{b}@{commit}{dirty}"),
        None => format!("{commit}{dirty}"),
    }
}

fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let rows = rows.as_slice();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:w$}  ", w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Severity;

    #[test]
    fn tool_text_cannot_reach_the_terminal_as_control_characters() {
        let f = StoredFinding {
            suite: "s".into(),
            tool: "t\x1b]0;title\x07".into(),
            rule: "R\n1".into(),
            severity: Severity::High,
            fingerprint: "00ab".into(),
            path: Some("a.py".into()),
            line: Some(3),
            message: "bad\x1b[31m red\r\nsecond line".into(),
            suppressed: false,
            justification: None,
        };
        let line = finding_line("+ ", &f, None);
        assert_eq!(
            line,
            "+ high     s t]0;title/R 1 a.py:3: bad[31m red second line [00ab]\n"
        );
    }
}
