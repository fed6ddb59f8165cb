//! The findings model: what the readers produce and the report writers consume.
//!
//! A suite's findings are held as tables ([`SuiteFindings`]: tools, rules, findings) rather
//! than one self-contained record per finding, because a 50 MB SARIF log holds tens of
//! thousands of findings and repeating the suite, tool and rule strings in each would
//! multiply the memory a run needs. [`SuiteFindings::rule_of`] and
//! [`SuiteFindings::tool_of`] give the full picture of one finding.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::{Fingerprint, Severity};
use crate::config::suppressions::SuppressionEntry;

/// The tool (SARIF `tool.driver`) that produced some of a suite's results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tool {
    pub name: String,
    pub version: Option<String>,
}

/// A rule (SARIF `reportingDescriptor`), declared by a tool or referred to by a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// Index into [`SuiteFindings::tools`].
    pub tool: usize,
    pub name: Option<String>,
    pub short_description: Option<String>,
    /// The tool listed it among its rules, so it ran: a declared rule with no finding is a
    /// passing test case, which keeps JUnit test counts stable from run to run.
    pub declared: bool,
    /// Results of this rule with `kind: notApplicable`: it did not apply to the target.
    pub not_applicable: usize,
}

/// Where a finding is, relative to the scanned target (`/target` in the container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Repo-relative path with `/` separators; absolute only when the tool pointed outside
    /// the target.
    pub path: String,
    pub start_line: Option<u64>,
    pub start_column: Option<u64>,
}

impl fmt::Display for Location {
    /// `src/app.py:12`, as CI logs and editors print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start_line {
            Some(line) => write!(f, "{}:{line}", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// Where a finding came from in the suite's SARIF files, so the merged SARIF writer can
/// annotate the original result when it streams the file again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// Index into [`SuiteFindings::sources`].
    pub file: u32,
    /// Index of the run within that file.
    pub run: u32,
    /// Index of the result within that run.
    pub result: u32,
}

/// One result the tool reported as a problem (SARIF `kind: fail`).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Index into [`SuiteFindings::rules`].
    pub rule: usize,
    pub severity: Severity,
    pub message: String,
    pub location: Option<Location>,
    pub fingerprint: Fingerprint,
    /// Whether an accepted suppression covers it: then it is reported, never gating.
    pub suppression: Suppression,
    pub origin: Origin,
}

impl Finding {
    /// Whether this finding fails a suite whose threshold is `fail_on`.
    pub fn is_blocking(&self, fail_on: Severity) -> bool {
        !self.is_suppressed() && self.severity >= fail_on
    }

    pub fn is_suppressed(&self) -> bool {
        !matches!(self.suppression, Suppression::None)
    }

    /// Why it is suppressed: the tool's justification or the entry's reason.
    pub fn justification(&self) -> Option<&str> {
        match &self.suppression {
            Suppression::None => None,
            Suppression::InSource { justification } => justification.as_deref(),
            Suppression::External(entry) => Some(&entry.reason),
        }
    }
}

/// Who accepted a finding, if anyone did.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Suppression {
    #[default]
    None,
    /// The tool reported it suppressed (SARIF `suppressions` in effect, e.g. `# nosec`).
    InSource { justification: Option<String> },
    /// An entry of the suppressions file in force today (`crate::verdict::suppressions`).
    External(Arc<SuppressionEntry>),
}

/// Everything read from one suite's SARIF files.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SuiteFindings {
    pub suite: String,
    /// The SARIF files read, in order; [`Origin::file`] indexes this.
    pub sources: Vec<PathBuf>,
    /// SARIF runs across all sources.
    pub runs: usize,
    pub tools: Vec<Tool>,
    pub rules: Vec<Rule>,
    /// In file order: source, run, result.
    pub findings: Vec<Finding>,
}

impl SuiteFindings {
    pub fn rule_of(&self, finding: &Finding) -> &Rule {
        &self.rules[finding.rule]
    }

    pub fn tool_of(&self, rule: &Rule) -> &Tool {
        &self.tools[rule.tool]
    }

    /// The findings that fail the suite at threshold `fail_on`.
    pub fn blocking(&self, fail_on: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.is_blocking(fail_on))
    }

    /// Indexes into `findings`, grouped by rule (`result[rule]`), in file order.
    pub fn by_rule(&self) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.rules.len()];
        for (i, f) in self.findings.iter().enumerate() {
            groups[f.rule].push(i);
        }
        groups
    }

    /// The counts that go into `run.json` and the summary.
    pub fn summary(&self, fail_on: Severity) -> FindingsSummary {
        let mut counts = SeverityCounts::default();
        let mut suppressed = SeverityCounts::default();
        let mut per_rule = vec![(SeverityCounts::default(), 0usize); self.rules.len()];
        let mut suppressed_by: Vec<EntryUse> = Vec::new();
        for f in &self.findings {
            if let Suppression::External(entry) = &f.suppression {
                match suppressed_by.iter_mut().find(|u| u.entry == entry.index) {
                    Some(known) => known.findings += 1,
                    None => suppressed_by.push(EntryUse {
                        entry: entry.index,
                        line: entry.line,
                        findings: 1,
                    }),
                }
            }
            if f.is_suppressed() {
                suppressed.add(f.severity);
                per_rule[f.rule].1 += 1;
            } else {
                counts.add(f.severity);
                per_rule[f.rule].0.add(f.severity);
            }
        }
        let mut rules: Vec<RuleSummary> = per_rule
            .into_iter()
            .enumerate()
            .filter(|(_, (c, s))| c.total() + s > 0)
            .map(|(i, (counts, suppressed))| self.rule_summary(i, counts, suppressed))
            .collect();
        // Most severe first; ties keep the tool's order (the sort is stable).
        rules.sort_by_key(|r| std::cmp::Reverse(r.counts.key()));
        FindingsSummary {
            fail_on,
            total: self.findings.len(),
            blocking: self.blocking(fail_on).count(),
            counts,
            suppressed,
            suppressed_by,
            tools: self.tools.clone(),
            rules,
        }
    }

    fn rule_summary(&self, i: usize, counts: SeverityCounts, suppressed: usize) -> RuleSummary {
        let rule = &self.rules[i];
        RuleSummary {
            id: rule.id.clone(),
            tool: self.tools[rule.tool].name.clone(),
            short_description: rule.short_description.clone(),
            counts,
            suppressed,
        }
    }
}

/// How many findings of each severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeverityCounts {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub info: usize,
}

impl SeverityCounts {
    pub fn add(&mut self, severity: Severity) {
        *self.slot(severity) += 1;
    }

    pub fn get(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }

    fn slot(&mut self, severity: Severity) -> &mut usize {
        match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Info => &mut self.info,
        }
    }

    pub fn total(&self) -> usize {
        Severity::DESCENDING.iter().map(|s| self.get(*s)).sum()
    }

    /// Sorts by the most severe count first (more criticals beat any number of highs).
    fn key(&self) -> [usize; 5] {
        Severity::DESCENDING.map(|s| self.get(s))
    }

    pub fn merge(&mut self, other: &SeverityCounts) {
        for s in Severity::DESCENDING {
            *self.slot(s) += other.get(s);
        }
    }
}

impl fmt::Display for SeverityCounts {
    /// `1 critical, 2 high, 5 low`: only the severities that occur; `none` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Severity::DESCENDING
            .iter()
            .filter(|s| self.get(**s) > 0)
            .map(|s| format!("{} {s}", self.get(*s)))
            .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A SARIF suite's findings in `run.json`: counts per severity, tools and rules.
///
/// The findings themselves, with locations and fingerprints, are in the merged SARIF
/// (`results.sarif`); repeating tens of thousands of them here would make `run.json` as
/// large as the scanners' own output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingsSummary {
    /// The threshold the suite was judged against.
    pub fail_on: Severity,
    /// Every finding, suppressed or not.
    pub total: usize,
    /// Unsuppressed findings at or above `fail_on`: those that fail the suite.
    pub blocking: usize,
    /// Unsuppressed findings per severity.
    pub counts: SeverityCounts,
    /// Findings under an accepted suppression (in source or external), per severity.
    pub suppressed: SeverityCounts,
    /// The suppressions-file entries that matched findings of this suite, in file order,
    /// so the run can tell which entries matched nothing (stale).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed_by: Vec<EntryUse>,
    pub tools: Vec<Tool>,
    /// Rules with at least one finding, most severe first.
    pub rules: Vec<RuleSummary>,
}

/// How many of a suite's findings one suppressions-file entry covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EntryUse {
    /// [`SuppressionEntry::index`].
    #[serde(skip)]
    pub entry: usize,
    /// The entry's line in the suppressions file.
    pub line: u32,
    pub findings: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSummary {
    pub id: String,
    pub tool: String,
    pub short_description: Option<String>,
    /// Unsuppressed findings per severity.
    pub counts: SeverityCounts,
    pub suppressed: usize,
}

/// Test cases of a JUnit suite, in `run.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TestCounts {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
}

/// What a JUnit suite's own report said.
#[derive(Debug, Clone, PartialEq)]
pub struct JunitResults {
    /// The JUnit files read, in order.
    pub sources: Vec<PathBuf>,
    /// Every test case of every `<testsuite>` in them, to be carried over into our report.
    pub cases: Vec<quick_junit::TestCase>,
    pub counts: TestCounts,
}

/// What was read from a suite's result files, for the report writers.
#[derive(Debug, Clone, PartialEq)]
pub enum SuiteResults {
    Sarif(SuiteFindings),
    Junit(JunitResults),
}
