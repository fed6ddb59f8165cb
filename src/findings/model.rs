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

use serde::{Deserialize, Serialize};

use super::{Fingerprint, Gate, Severity};
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
    /// Whether the run's baseline holds it; `None` when the run has no baseline.
    pub baseline: Option<BaselineState>,
    pub origin: Origin,
}

impl Finding {
    /// Whether this finding fails a suite whose threshold is `fail_on` under `gate`.
    pub fn is_blocking(&self, fail_on: Severity, gate: Gate) -> bool {
        self.is_at_threshold(fail_on) && !self.is_baselined(gate)
    }

    /// Unsuppressed and at or above `fail_on`: blocking unless the gate lets it through.
    pub fn is_at_threshold(&self, fail_on: Severity) -> bool {
        !self.is_suppressed() && self.severity >= fail_on
    }

    /// Whether `gate` lets it through because the baseline holds it.
    pub fn is_baselined(&self, gate: Gate) -> bool {
        gate == Gate::New && self.baseline == Some(BaselineState::Unchanged)
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

/// A finding compared with the run's baseline (SARIF `baselineState`). Baseline findings
/// that are gone are not findings of this run: they are listed apart, as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BaselineState {
    New,
    Unchanged,
}

impl BaselineState {
    pub fn as_str(self) -> &'static str {
        match self {
            BaselineState::New => "new",
            BaselineState::Unchanged => "unchanged",
        }
    }
}

/// One finding in a few fields: what `run.json` lists per finding (so a later run can use
/// it as a baseline) and what a baseline remembers of each of its findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    #[serde(with = "fingerprint_text")]
    pub fingerprint: Fingerprint,
    pub rule: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Cut to [`FindingRecord::MAX_MESSAGE`] characters: the full text is in the SARIF.
    #[serde(default)]
    pub message: String,
}

impl FindingRecord {
    pub const MAX_MESSAGE: usize = 200;

    pub fn of(findings: &SuiteFindings, f: &Finding) -> Self {
        FindingRecord {
            fingerprint: f.fingerprint,
            rule: findings.rule_of(f).id.clone(),
            severity: f.severity,
            path: f.location.as_ref().map(|l| l.path.clone()),
            line: f.location.as_ref().and_then(|l| l.start_line),
            message: crate::report::one_line(&f.message, Self::MAX_MESSAGE),
        }
    }

    /// `app/run.py:17`, or `(no location)`.
    pub fn place(&self) -> String {
        match (&self.path, self.line) {
            (Some(path), Some(line)) => format!("{path}:{line}"),
            (Some(path), None) => path.clone(),
            (None, _) => "(no location)".into(),
        }
    }
}

/// Fingerprints as the reports spell them (`3f2a9c0d1e4b5a67:2`).
mod fingerprint_text {
    use super::Fingerprint;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(f: &Fingerprint, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(f)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Fingerprint, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// How a suite's findings compare with the baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BaselineCounts {
    pub new: usize,
    pub unchanged: usize,
    /// Baseline findings this run did not find: fixed (or moved to another file).
    pub absent: usize,
}

impl BaselineCounts {
    pub fn merge(&mut self, other: &BaselineCounts) {
        self.new += other.new;
        self.unchanged += other.unchanged;
        self.absent += other.absent;
    }
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

    /// The findings that fail the suite at threshold `fail_on` under `gate`.
    pub fn blocking(&self, fail_on: Severity, gate: Gate) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.is_blocking(fail_on, gate))
    }

    /// Indexes into `findings`, grouped by rule (`result[rule]`), in file order.
    pub fn by_rule(&self) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); self.rules.len()];
        for (i, f) in self.findings.iter().enumerate() {
            groups[f.rule].push(i);
        }
        groups
    }

    /// The counts that go into `run.json` and the summary. `absent` is what the baseline
    /// held that this suite no longer finds; `None` when the run has no baseline.
    pub fn summary(
        &self,
        fail_on: Severity,
        gate: Gate,
        absent: Option<Vec<FindingRecord>>,
    ) -> FindingsSummary {
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
            gate,
            total: self.findings.len(),
            blocking: self.blocking(fail_on, gate).count(),
            counts,
            suppressed,
            suppressed_by,
            baseline: absent
                .as_ref()
                .map(|absent| self.baseline_counts(absent.len())),
            absent: absent.unwrap_or_default(),
            tools: self.tools.clone(),
            rules,
            list: self
                .findings
                .iter()
                .map(|f| FindingRecord::of(self, f))
                .collect(),
        }
    }

    fn baseline_counts(&self, absent: usize) -> BaselineCounts {
        let unchanged = self
            .findings
            .iter()
            .filter(|f| f.baseline == Some(BaselineState::Unchanged))
            .count();
        BaselineCounts {
            new: self.findings.len() - unchanged,
            unchanged,
            absent,
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

/// A SARIF suite's findings in `run.json`: counts per severity, tools and rules, and a
/// compact list of the findings.
///
/// The findings in full, with code flows and snippets, are in the merged SARIF
/// (`results.sarif`); `list` keeps only what a later run needs to use this `run.json` as
/// its baseline (fingerprint, rule, severity, place, the start of the message), far
/// smaller than the scanners' own output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingsSummary {
    /// The threshold the suite was judged against.
    pub fail_on: Severity,
    /// Which findings at or above `fail_on` could fail it.
    pub gate: Gate,
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
    /// New, unchanged and absent findings; only when the run had a baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineCounts>,
    /// The baseline's findings of this suite that this run did not find (fixed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<FindingRecord>,
    pub tools: Vec<Tool>,
    /// Rules with at least one finding, most severe first.
    pub rules: Vec<RuleSummary>,
    /// Every finding, in file order.
    pub list: Vec<FindingRecord>,
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
