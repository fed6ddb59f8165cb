//! Suppressions in a run: which entries of the suppressions file are in force today, which
//! findings they cover, and, at the end, which entries expired, expire soon or matched
//! nothing (stale).
//!
//! An entry is in force up to and including its `expires` day. An expired entry covers
//! nothing, so its findings gate again. A finding the tool itself reported suppressed
//! (in source, e.g. `# nosec`) stays in-source: an entry matching only such findings
//! is not needed, and is listed as stale. The first entry in force that matches a finding,
//! in file order, is the one it is attributed to.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;

use crate::config::ConfigError;
use crate::config::suppressions::{
    Horizon, SuppressionEntry, SuppressionSettings, SuppressionsFile, load_suppressions,
};
use crate::findings::{Finding, SuiteFindings, Suppression};
use crate::outcome::SuiteReport;

/// The environment variable that sets "today" for expiry dates (`YYYY-MM-DD`), so tests
/// and reruns of an old pipeline judge dates the same way whatever the clock says.
pub const TODAY_VAR: &str = "PHALANX_TODAY";

/// Today, from [`TODAY_VAR`] when set, else the local calendar date.
pub fn today_from_env() -> Result<NaiveDate, String> {
    today_from(std::env::var(TODAY_VAR).ok())
}

fn today_from(var: Option<String>) -> Result<NaiveDate, String> {
    match var {
        Some(text) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map_err(|e| format!("{TODAY_VAR}={text:?}: expected a date such as 2027-03-01 ({e})")),
        None => Ok(chrono::Local::now().date_naive()),
    }
}

/// Where an entry stands on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryState {
    InForce,
    /// In force, for `days_left` more days (0: today is the last).
    Expiring {
        days_left: i64,
    },
    Expired,
}

/// The run's suppressions: the file's entries, judged against one "today".
#[derive(Debug, Clone)]
pub struct Suppressions {
    file: Option<PathBuf>,
    entries: Vec<Arc<SuppressionEntry>>,
    today: NaiveDate,
    warn_days: u32,
}

impl Default for Suppressions {
    /// No suppressions file: nothing is suppressed but what the tools suppressed.
    fn default() -> Self {
        Suppressions {
            file: None,
            entries: Vec::new(),
            today: NaiveDate::default(),
            warn_days: SuppressionSettings::default().warn_days,
        }
    }
}

impl Suppressions {
    pub fn new(file: SuppressionsFile, today: NaiveDate, warn_days: u32) -> Self {
        Suppressions {
            file: file.path,
            entries: file.entries.into_iter().map(Arc::new).collect(),
            today,
            warn_days,
        }
    }

    /// Reads the file `settings` names and judges it against `today`.
    pub fn load(
        settings: &SuppressionSettings,
        today: NaiveDate,
    ) -> Result<Suppressions, Vec<ConfigError>> {
        let horizon = Horizon {
            today,
            max_days: settings.max_days,
        };
        let file = load_suppressions(settings, horizon)?;
        Ok(Suppressions::new(file, today, settings.warn_days))
    }

    pub fn entries(&self) -> &[Arc<SuppressionEntry>] {
        &self.entries
    }

    pub fn today(&self) -> NaiveDate {
        self.today
    }

    pub fn state(&self, entry: &SuppressionEntry) -> EntryState {
        let days_left = (entry.expires - self.today).num_days();
        if days_left < 0 {
            EntryState::Expired
        } else if days_left <= i64::from(self.warn_days) {
            EntryState::Expiring { days_left }
        } else {
            EntryState::InForce
        }
    }

    /// Marks the findings of `findings` that an entry in force covers. Runs before the
    /// suite's verdict, so suppressed findings never fail it.
    pub fn apply(&self, findings: &mut SuiteFindings) {
        let suite = findings.suite.as_str();
        let candidates: Vec<&Arc<SuppressionEntry>> = self
            .entries
            .iter()
            .filter(|e| self.state(e) != EntryState::Expired)
            .filter(|e| e.suite.as_deref().is_none_or(|s| s == suite))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let rules = &findings.rules;
        for finding in &mut findings.findings {
            if finding.suppression != Suppression::None {
                continue;
            }
            let rule = rules[finding.rule].id.as_str();
            if let Some(entry) = candidates.iter().find(|e| covers(e, rule, finding)) {
                finding.suppression = Suppression::External(Arc::clone(entry));
            }
        }
    }

    /// What the run did with the file, from the suites' reports; `None` without a file.
    pub fn report(&self, suites: &[SuiteReport]) -> Option<SuppressionsReport> {
        let file = self.file.clone()?;
        let mut report = SuppressionsReport {
            file,
            today: self.today,
            warn_days: self.warn_days,
            suppressed_findings: 0,
            in_source_findings: 0,
            applied: Vec::new(),
            expired: Vec::new(),
            expiring: Vec::new(),
            stale: Vec::new(),
        };
        let mut uses: Vec<(usize, Vec<String>)> = vec![(0, Vec::new()); self.entries.len()];
        for suite in suites {
            let Some(summary) = &suite.findings else {
                continue;
            };
            let mut external = 0;
            for used in &summary.suppressed_by {
                if let Some((n, names)) = uses.get_mut(used.entry) {
                    *n += used.findings;
                    names.push(suite.name.clone());
                }
                external += used.findings;
            }
            report.suppressed_findings += external;
            report.in_source_findings += summary.suppressed.total().saturating_sub(external);
        }
        for (entry, (findings, names)) in self.entries.iter().zip(uses) {
            let state = self.state(entry);
            let shown = EntryReport::new(entry, state, findings, names);
            match state {
                EntryState::Expired => report.expired.push(shown),
                _ if findings > 0 => {
                    if matches!(state, EntryState::Expiring { .. }) {
                        report.expiring.push(shown.clone());
                    }
                    report.applied.push(shown);
                }
                _ => {
                    if matches!(state, EntryState::Expiring { .. }) {
                        report.expiring.push(shown.clone());
                    }
                    if was_checked(entry, suites) {
                        report.stale.push(shown);
                    }
                }
            }
        }
        Some(report)
    }
}

/// Whether `entry` covers `finding` of rule `rule` (the suite was checked by the caller).
fn covers(entry: &SuppressionEntry, rule: &str, finding: &Finding) -> bool {
    entry.rule.as_deref().is_none_or(|r| r == rule)
        && entry.fingerprint.is_none_or(|f| f == finding.fingerprint)
        && entry.path.as_ref().is_none_or(|glob| {
            finding
                .location
                .as_ref()
                .is_some_and(|l| glob.is_match(&l.path))
        })
}

/// An entry can only be stale if this run read findings it could have matched: its suite's
/// (or, without `suite`, any suite's). A suite that was not selected, or that errored,
/// says nothing about the entry.
fn was_checked(entry: &SuppressionEntry, suites: &[SuiteReport]) -> bool {
    suites
        .iter()
        .any(|s| s.findings.is_some() && entry.suite.as_deref().is_none_or(|name| name == s.name))
}

/// The suppressions part of `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuppressionsReport {
    pub file: PathBuf,
    /// The day expiry was judged against (`PHALANX_TODAY` or the local date).
    pub today: NaiveDate,
    pub warn_days: u32,
    /// Findings covered by an entry of the file.
    pub suppressed_findings: usize,
    /// Findings the tools themselves reported suppressed (`# nosec`, `nosem`…).
    pub in_source_findings: usize,
    /// Entries in force that covered at least one finding.
    pub applied: Vec<EntryReport>,
    /// Entries past their date: they covered nothing, their findings gate again.
    pub expired: Vec<EntryReport>,
    /// Entries in force that end within `warn_days` (they are also applied or stale).
    pub expiring: Vec<EntryReport>,
    /// Entries in force that matched nothing in this run: fixed, or written wrong.
    pub stale: Vec<EntryReport>,
}

impl SuppressionsReport {
    pub fn is_quiet(&self) -> bool {
        self.suppressed_findings == 0
            && self.expired.is_empty()
            && self.expiring.is_empty()
            && self.stale.is_empty()
    }
}

/// One entry as reports show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryReport {
    pub line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub reason: String,
    pub owner: String,
    pub expires: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub state: EntryState,
    /// Findings it covered in this run.
    pub findings: usize,
    /// The suites those findings are in.
    pub suites: Vec<String>,
    #[serde(skip)]
    pub scope: String,
}

impl EntryReport {
    fn new(
        entry: &SuppressionEntry,
        state: EntryState,
        findings: usize,
        suites: Vec<String>,
    ) -> Self {
        EntryReport {
            line: entry.line,
            suite: entry.suite.clone(),
            rule: entry.rule.clone(),
            fingerprint: entry.fingerprint.map(|f| f.to_string()),
            path: entry.path.as_ref().map(|p| p.text.clone()),
            reason: entry.reason.clone(),
            owner: entry.owner.clone(),
            expires: entry.expires,
            ticket: entry.ticket.clone(),
            state,
            findings,
            suites,
            scope: entry.scope(),
        }
    }
}

#[cfg(test)]
mod tests;
