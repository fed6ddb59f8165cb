//! What changed between two runs' findings: matched by suite and fingerprint, as a
//! multiset (two findings with one fingerprint match two), so a finding whose code moved
//! (fingerprints leave line numbers out) is unchanged rather than fixed-and-new.
//!
//! Only suites whose SARIF was read in both runs are compared: a suite that errored in
//! one run has no findings there, which says nothing about whether they were fixed.

use std::collections::HashMap;

use serde::Serialize;

use super::Store;
use super::error::QueryError;
use super::query::{RunSummary, StoredFinding};
use crate::findings::{Severity, SeverityCounts};

/// A finding of a diff; for an unchanged one, also the line it had in the base run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffFinding {
    #[serde(flatten)]
    pub finding: StoredFinding,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_line: Option<u64>,
}

/// Counts per severity of each kind of change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    pub new: SeverityCounts,
    pub fixed: SeverityCounts,
    pub unchanged: SeverityCounts,
}

/// A suite left out of the comparison, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotCompared {
    pub suite: String,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub base: RunSummary,
    pub head: RunSummary,
    pub counts: DiffCounts,
    /// In HEAD, not in BASE.
    pub new: Vec<DiffFinding>,
    /// In BASE, not in HEAD.
    pub fixed: Vec<DiffFinding>,
    /// In both (HEAD's copy, with BASE's line).
    pub unchanged: Vec<DiffFinding>,
    pub not_compared: Vec<NotCompared>,
}

impl Diff {
    /// The new findings that are not suppressed and at least `threshold`: what
    /// `--fail-on-new` gates on.
    pub fn new_at_or_above(&self, threshold: Severity) -> usize {
        self.new
            .iter()
            .filter(|d| !d.finding.suppressed && d.finding.severity >= threshold)
            .count()
    }
}

impl Store {
    /// `phalanx diff`: `head` defaults to `last`, `base` to the run before `head` of the
    /// same target, selection and partition.
    pub fn diff_refs(&self, base: Option<&str>, head: Option<&str>) -> Result<Diff, QueryError> {
        let head = self.resolve(head.unwrap_or("last"))?;
        let base = match base {
            Some(reference) => self.resolve(reference)?,
            None => self
                .previous_like(&head)?
                .ok_or_else(|| QueryError::NoBase {
                    head: head.run_id.clone(),
                    target: head.target.display().to_string(),
                })?,
        };
        Ok(self.diff(base, head)?)
    }

    pub fn diff(&self, base: RunSummary, head: RunSummary) -> Result<Diff, super::StoreError> {
        let base_suites = self.suites_with_findings(base.seq)?;
        let head_suites = self.suites_with_findings(head.seq)?;
        let compared = |s: &String| base_suites.contains(s) && head_suites.contains(s);
        let mut not_compared: Vec<NotCompared> = Vec::new();
        for (suites, why) in [
            (&base_suites, "findings only in the base run"),
            (&head_suites, "findings only in the head run"),
        ] {
            for s in suites.iter().filter(|s| !compared(s)) {
                not_compared.push(NotCompared {
                    suite: s.clone(),
                    why,
                });
            }
        }
        let keep =
            |f: &StoredFinding| base_suites.contains(&f.suite) && head_suites.contains(&f.suite);
        let before: Vec<StoredFinding> = self
            .findings_of(base.seq)?
            .into_iter()
            .filter(keep)
            .collect();
        let after: Vec<StoredFinding> = self
            .findings_of(head.seq)?
            .into_iter()
            .filter(keep)
            .collect();
        let (new, fixed, unchanged) = compare(before, after);
        let tally = |list: &[DiffFinding]| {
            let mut c = SeverityCounts::default();
            list.iter().for_each(|d| c.add(d.finding.severity));
            c
        };
        Ok(Diff {
            counts: DiffCounts {
                new: tally(&new),
                fixed: tally(&fixed),
                unchanged: tally(&unchanged),
            },
            base,
            head,
            new,
            fixed,
            unchanged,
            not_compared,
        })
    }
}

type Split = (Vec<DiffFinding>, Vec<DiffFinding>, Vec<DiffFinding>);

/// Splits two runs' findings into new, fixed and unchanged, keeping each list in the
/// order the findings were recorded.
pub fn compare(before: Vec<StoredFinding>, after: Vec<StoredFinding>) -> Split {
    let mut waiting: HashMap<(String, String), Vec<StoredFinding>> = HashMap::new();
    for f in before.into_iter().rev() {
        waiting
            .entry((f.suite.clone(), f.fingerprint.clone()))
            .or_default()
            .push(f);
    }
    let (mut new, mut unchanged) = (Vec::new(), Vec::new());
    for f in after {
        let key = (f.suite.clone(), f.fingerprint.clone());
        match waiting.get_mut(&key).and_then(Vec::pop) {
            Some(old) => unchanged.push(DiffFinding {
                base_line: old.line,
                finding: f,
            }),
            None => new.push(DiffFinding {
                finding: f,
                base_line: None,
            }),
        }
    }
    let mut fixed: Vec<StoredFinding> = waiting.into_values().flatten().collect();
    fixed.sort_by(|a, b| (&a.suite, &a.path, a.line).cmp(&(&b.suite, &b.path, b.line)));
    let fixed = fixed
        .into_iter()
        .map(|finding| DiffFinding {
            finding,
            base_line: None,
        })
        .collect();
    (new, fixed, unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(fp: &str, line: u64) -> StoredFinding {
        StoredFinding {
            suite: "s".into(),
            tool: "t".into(),
            rule: "R".into(),
            severity: Severity::High,
            fingerprint: fp.into(),
            path: Some("a.py".into()),
            line: Some(line),
            message: "m".into(),
            suppressed: false,
            justification: None,
        }
    }

    #[test]
    fn fingerprints_match_as_a_multiset() {
        let before = vec![finding("a", 1), finding("a", 2), finding("b", 3)];
        let after = vec![
            finding("a", 11),
            finding("a", 12),
            finding("a", 13),
            finding("c", 4),
        ];
        let (new, fixed, unchanged) = compare(before, after);
        let fps = |l: &[DiffFinding]| {
            l.iter()
                .map(|d| d.finding.fingerprint.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(fps(&new), ["a", "c"]);
        assert_eq!(fps(&fixed), ["b"]);
        assert_eq!(fps(&unchanged), ["a", "a"]);
        assert_eq!(unchanged[0].base_line, Some(1));
        assert_eq!(unchanged[1].base_line, Some(2));
    }

    #[test]
    fn the_same_fingerprint_in_another_suite_is_another_finding() {
        let mut other = finding("a", 1);
        other.suite = "other".into();
        let (new, fixed, unchanged) = compare(vec![finding("a", 1)], vec![other]);
        assert_eq!((new.len(), fixed.len(), unchanged.len()), (1, 1, 0));
    }
}
