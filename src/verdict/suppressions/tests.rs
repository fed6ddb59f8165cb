//! Matching (suite, rule, fingerprint, path glob), expiry on both sides of today, and the
//! expired, expiring and stale lists.

use std::path::Path;

use super::*;
use crate::config::suppressions::{Horizon, parse_suppressions};
use crate::findings::model::Origin;
use crate::findings::{Fingerprint, Location, Rule, Severity, Tool};
use crate::outcome::Outcome;

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const TODAY: &str = "2026-05-01";

fn suppressions(text: &str, today: &str) -> Suppressions {
    let horizon = Horizon {
        today: date(today),
        max_days: None,
    };
    let file = parse_suppressions(Path::new("suppressions.toml"), text, horizon).unwrap();
    Suppressions::new(file, date(today), 14)
}

fn entry(keys: &str, expires: &str) -> String {
    format!(
        "[[suppress]]\n{keys}\nreason = \"accepted\"\nowner = \"appsec@example.com\"\nexpires = {expires}\n\n"
    )
}

fn fp(hash: u64) -> Fingerprint {
    Fingerprint {
        hash,
        occurrence: 1,
    }
}

/// A bandit suite with B105 at app/settings.py (fingerprint 1), B105 at lib/x.py (2),
/// B602 at app/run.py (3) and B101 in-source suppressed at app/t.py (4).
fn findings(suite: &str) -> SuiteFindings {
    let rule = |id: &str| Rule {
        id: id.into(),
        tool: 0,
        name: None,
        short_description: None,
        declared: true,
        not_applicable: 0,
    };
    let finding = |rule: usize, path: &str, hash: u64, suppression: Suppression| Finding {
        rule,
        severity: Severity::High,
        message: "m".into(),
        location: Some(Location {
            path: path.into(),
            start_line: Some(1),
            start_column: None,
        }),
        fingerprint: fp(hash),
        suppression,
        baseline: None,
        origin: Origin {
            file: 0,
            run: 0,
            result: hash as u32,
        },
    };
    SuiteFindings {
        suite: suite.into(),
        sources: Vec::new(),
        runs: 1,
        tools: vec![Tool {
            name: "Bandit".into(),
            version: None,
        }],
        rules: vec![rule("B105"), rule("B602"), rule("B101")],
        findings: vec![
            finding(0, "app/settings.py", 1, Suppression::None),
            finding(0, "lib/x.py", 2, Suppression::None),
            finding(1, "app/run.py", 3, Suppression::None),
            finding(
                2,
                "app/t.py",
                4,
                Suppression::InSource {
                    justification: Some("nosec".into()),
                },
            ),
        ],
    }
}

/// The fingerprints (hashes) an entry of `text` suppressed in suite `suite`, in order.
fn suppressed(text: &str, suite: &str, today: &str) -> Vec<u64> {
    let mut f = findings(suite);
    suppressions(text, today).apply(&mut f);
    f.findings
        .iter()
        .filter(|f| matches!(f.suppression, Suppression::External(_)))
        .map(|f| f.fingerprint.hash)
        .collect()
}

#[test]
fn a_rule_covers_every_finding_of_that_rule() {
    assert_eq!(
        suppressed(&entry("rule = \"B105\"", "2027-01-01"), "bandit", TODAY),
        [1, 2]
    );
}

#[test]
fn a_fingerprint_covers_one_finding() {
    let text = entry("fingerprint = \"0000000000000003\"", "2027-01-01");
    assert_eq!(suppressed(&text, "bandit", TODAY), [3]);
    let both = entry(
        "rule = \"B105\"\nfingerprint = \"0000000000000003\"",
        "2027-01-01",
    );
    assert_eq!(
        suppressed(&both, "bandit", TODAY),
        Vec::<u64>::new(),
        "both must match"
    );
}

#[test]
fn suite_limits_an_entry_to_one_suite() {
    let text = entry("suite = \"bandit\"\nrule = \"B105\"", "2027-01-01");
    assert_eq!(suppressed(&text, "bandit", TODAY), [1, 2]);
    assert_eq!(suppressed(&text, "semgrep", TODAY), Vec::<u64>::new());
}

#[test]
fn a_path_glob_limits_an_entry_to_matching_files() {
    let text = entry("rule = \"B105\"\npath = \"app/**\"", "2027-01-01");
    assert_eq!(suppressed(&text, "bandit", TODAY), [1]);
    let exact = entry("rule = \"B105\"\npath = \"lib/x.py\"", "2027-01-01");
    assert_eq!(suppressed(&exact, "bandit", TODAY), [2]);
}

#[test]
fn in_source_suppressions_stay_in_source() {
    let mut f = findings("bandit");
    suppressions(&entry("rule = \"B101\"", "2027-01-01"), TODAY).apply(&mut f);
    assert_eq!(
        f.findings[3].suppression,
        Suppression::InSource {
            justification: Some("nosec".into())
        }
    );
}

#[test]
fn an_entry_is_in_force_through_its_last_day_and_not_after() {
    let text = entry("rule = \"B602\"", "2026-05-01");
    assert_eq!(suppressed(&text, "bandit", "2026-04-30"), [3]);
    assert_eq!(
        suppressed(&text, "bandit", "2026-05-01"),
        [3],
        "the last day"
    );
    assert_eq!(
        suppressed(&text, "bandit", "2026-05-02"),
        Vec::<u64>::new(),
        "expired"
    );
}

#[test]
fn states_on_both_sides_of_the_warning_window() {
    let s = suppressions("", TODAY);
    let at = |expires: &str| {
        let text = entry("rule = \"x\"", expires);
        let file = suppressions(&text, TODAY);
        s.state(&file.entries()[0])
    };
    assert_eq!(at("2026-05-16"), EntryState::InForce);
    assert_eq!(at("2026-05-15"), EntryState::Expiring { days_left: 14 });
    assert_eq!(at("2026-05-01"), EntryState::Expiring { days_left: 0 });
    assert_eq!(at("2026-04-30"), EntryState::Expired);
}

/// A suite report holding `findings`, judged like the verdict does.
fn report_of(f: SuiteFindings) -> SuiteReport {
    let mut r = SuiteReport::not_run(&f.suite.clone(), "img", Outcome::Passed, None);
    r.findings = Some(f.summary(Severity::High, Default::default(), None));
    r
}

#[test]
fn the_report_lists_applied_expired_expiring_and_stale_entries() {
    let text = [
        entry("rule = \"B105\"", "2027-01-01"), // line 1: applied
        entry("rule = \"B602\"", "2026-04-01"), // line 7: expired
        entry("fingerprint = \"0000000000000009\"", "2026-05-10"), // line 13: stale, expiring
        entry("suite = \"zap\"\nrule = \"X\"", "2027-01-01"), // line 19: zap did not run
    ]
    .concat();
    let s = suppressions(&text, TODAY);
    let mut f = findings("bandit");
    s.apply(&mut f);
    let report = s.report(&[report_of(f)]).unwrap();
    let lines = |list: &[EntryReport]| list.iter().map(|e| e.line).collect::<Vec<_>>();
    assert_eq!(lines(&report.applied), [1]);
    assert_eq!(report.applied[0].findings, 2);
    assert_eq!(report.applied[0].suites, ["bandit"]);
    assert_eq!(lines(&report.expired), [7]);
    assert_eq!(lines(&report.expiring), [13]);
    assert_eq!(lines(&report.stale), [13], "zap's entry was not checked");
    assert_eq!(report.suppressed_findings, 2);
    assert_eq!(report.in_source_findings, 1);
    assert_eq!(report.today, date(TODAY));
}

#[test]
fn no_file_no_report() {
    assert_eq!(Suppressions::default().report(&[]), None);
}

#[test]
fn today_comes_from_the_environment_when_set() {
    assert_eq!(
        today_from(Some("2031-02-03".into())),
        Ok(date("2031-02-03"))
    );
    assert!(
        today_from(Some("soon".into()))
            .unwrap_err()
            .contains("PHALANX_TODAY")
    );
    assert!(today_from(None).is_ok());
}
