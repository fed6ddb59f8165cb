//! A run's findings grouped the way the release manager reads them: by severity, then
//! suite, then rule. Both human reports list these groups, each capped.

use crate::findings::{Finding, Rule, Severity, SuiteFindings, SuiteResults};
use crate::outcome::RunReport;

/// The findings of one rule of one suite at one severity.
pub struct RuleGroup<'a> {
    pub severity: Severity,
    pub suite: &'a SuiteFindings,
    pub rule: &'a Rule,
    /// In file order.
    pub findings: Vec<&'a Finding>,
}

impl RuleGroup<'_> {
    /// `rule-id — short description`, or the id alone.
    pub fn title(&self) -> String {
        match self
            .rule
            .short_description
            .as_deref()
            .or(self.rule.name.as_deref())
        {
            Some(d) if !d.is_empty() => format!("{} — {d}", self.rule.id),
            _ => self.rule.id.clone(),
        }
    }
}

/// The groups of findings with `suppressed == want_suppressed`: most severe first, suites
/// in run order, and within a suite the rules with most findings first.
pub fn rule_groups(run: &RunReport, want_suppressed: bool) -> Vec<RuleGroup<'_>> {
    let mut groups = Vec::new();
    for severity in Severity::DESCENDING {
        for suite in sarif_findings(run) {
            let mut by_rule: Vec<Vec<&Finding>> = vec![Vec::new(); suite.rules.len()];
            for f in &suite.findings {
                if f.severity == severity && f.is_suppressed() == want_suppressed {
                    by_rule[f.rule].push(f);
                }
            }
            let mut found: Vec<(usize, Vec<&Finding>)> = by_rule
                .into_iter()
                .enumerate()
                .filter(|(_, f)| !f.is_empty())
                .collect();
            found.sort_by_key(|(_, f)| std::cmp::Reverse(f.len()));
            groups.extend(found.into_iter().map(|(rule, findings)| RuleGroup {
                severity,
                suite,
                rule: &suite.rules[rule],
                findings,
            }));
        }
    }
    groups
}

/// The SARIF results read for each suite that has them, in run order.
pub fn sarif_findings(run: &RunReport) -> impl Iterator<Item = &SuiteFindings> {
    run.suites
        .iter()
        .filter_map(|s| s.results.as_deref())
        .filter_map(|r| match r {
            SuiteResults::Sarif(f) => Some(f),
            SuiteResults::Junit(_) => None,
        })
}

/// `path:line`, or `-` when the tool gave no location.
pub fn location(f: &Finding) -> String {
    f.location
        .as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}
