//! Where the human reports' outside facts come from: accepted risk from the suppressions
//! report, what changed from `--baseline` states or from a real run store's diff, the
//! trend from the store's earlier runs, and a stored run rebuilt for `phalanx report`.

use crate::report_common;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use phalanx::findings::{FindingRecord, Gate, Severity, SuiteFindings, SuiteResults};
use phalanx::outcome::{Outcome, RunReport};
use phalanx::report::from_store::{RunHistory, run_report};
use phalanx::report::input::{
    AcceptedRisk, Changes, Comparison, Provenance, ReportInput, RiskState, Trend, Verdict,
};
use phalanx::report::{html_report, markdown_report};
use phalanx::store::{RunFacts, Selection, Store};
use phalanx::verdict::{Baseline, EntryReport, EntryState, SuppressionsReport};
use report_common::{F, at, sarif_suite};

fn entry(line: u32, state: EntryState, findings: usize) -> EntryReport {
    EntryReport {
        line,
        suite: None,
        rule: Some(format!("rule-{line}")),
        fingerprint: None,
        path: None,
        reason: format!("reason {line}"),
        owner: "alice@example.com".into(),
        expires: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
        ticket: Some(format!("SEC-{line}")),
        state,
        findings,
        suites: Vec::new(),
        scope: format!("rule-{line}"),
    }
}

#[test]
fn accepted_risk_lists_every_judged_entry_once_in_file_order() {
    assert_eq!(AcceptedRisk::from_suppressions(None), None);
    let expiring = EntryState::Expiring { days_left: 3 };
    let report = SuppressionsReport {
        file: PathBuf::from("suppressions.toml"),
        today: NaiveDate::from_ymd_opt(2026, 5, 29).unwrap(),
        warn_days: 14,
        suppressed_findings: 3,
        in_source_findings: 0,
        applied: vec![entry(3, EntryState::InForce, 1), entry(5, expiring, 2)],
        expired: vec![entry(1, EntryState::Expired, 0)],
        expiring: vec![entry(5, expiring, 2), entry(7, expiring, 0)],
        stale: vec![entry(7, expiring, 0)],
    };
    let risks = AcceptedRisk::from_suppressions(Some(&report)).unwrap();
    let seen: Vec<(&str, RiskState, usize)> = risks
        .iter()
        .map(|r| (r.selector.as_str(), r.state, r.matched))
        .collect();
    assert_eq!(
        seen,
        [
            ("rule-1", RiskState::Expired, 0),
            ("rule-3", RiskState::InForce, 1),
            ("rule-5", RiskState::Expiring, 2),
            ("rule-7", RiskState::Stale, 0),
        ]
    );
    assert_eq!(risks[2].owner, "alice@example.com");
    assert_eq!(risks[2].ticket.as_deref(), Some("SEC-5"));
    assert_eq!(risks[2].expires, NaiveDate::from_ymd_opt(2026, 6, 1));
}

/// A run of one SARIF suite with `findings` (rule 0 is High, rule 1 Medium).
fn run_with(id: &str, secs: i64, findings: &[F]) -> RunReport {
    let mut run = report_common::passing_run();
    run.run_id = id.into();
    run.started_at = at(secs);
    run.finished_at = at(secs + 30);
    run.suites = vec![sarif_suite(
        "semgrep",
        Outcome::Passed,
        &[("eval", "eval on input"), ("md5", "weak hash")],
        findings,
    )];
    run
}

fn finding(rule: usize, line: u64, message: &'static str) -> F<'static> {
    F {
        rule,
        severity: if rule == 0 {
            Severity::High
        } else {
            Severity::Medium
        },
        path: "app.py",
        line,
        message,
        suppressed: None,
    }
}

#[test]
fn a_baseline_gives_new_unchanged_and_fixed_from_the_findings_states() {
    let mut run = run_with(
        "r2",
        100,
        &[finding(0, 1, "eval here"), finding(1, 2, "md5 there")],
    );
    let suite = &mut run.suites[0];
    let Some(SuiteResults::Sarif(found)) = suite.results.as_deref() else {
        panic!("a SARIF suite");
    };
    let mut found: SuiteFindings = found.clone();
    let mut baseline = Baseline::new("run r1 (main)");
    // The Medium finding was there before; a Low one was fixed since.
    baseline.add("semgrep", FindingRecord::of(&found, &found.findings[1]));
    let mut gone = FindingRecord::of(&found, &found.findings[1]);
    gone.fingerprint.hash ^= 1;
    gone.severity = Severity::Low;
    baseline.add("semgrep", gone);
    let absent = baseline.compare(&mut found);
    suite.findings = Some(found.summary(Severity::High, Gate::New, Some(absent)));
    suite.results = Some(Arc::new(SuiteResults::Sarif(found)));
    assert_eq!(Changes::from_baseline(&run), None);
    run.baseline = Some(Arc::new(baseline));

    let changes = Changes::from_baseline(&run).unwrap();
    assert_eq!(changes.baseline_label, "run r1 (main)");
    assert_eq!((changes.new.high, changes.new.total()), (1, 1));
    assert_eq!(
        (changes.unchanged.medium, changes.unchanged.total()),
        (1, 1)
    );
    assert_eq!((changes.fixed.low, changes.fixed.total()), (1, 1));
    assert_eq!(changes.new_findings[0].message, "eval here");
    assert_eq!(
        changes.new_findings[0].location.as_deref(),
        Some("app.py:1")
    );
    // A run's own input keeps the baseline comparison over the store's.
    let input = ReportInput::for_run(&run, "/t".as_ref(), None, None).with_history(RunHistory {
        comparison: Comparison::FirstRun,
        trend: Trend::Runs(Vec::new()),
    });
    assert!(matches!(input.comparison, Comparison::Against(ref c) if c.new.total() == 1));
}

fn facts() -> RunFacts {
    RunFacts {
        project: None,
        target: PathBuf::from("/work/target"),
        selection: Selection::default(),
        git: None,
    }
}

#[test]
fn the_store_compares_with_the_previous_run_and_draws_the_trend() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("phalanx.db")).unwrap();
    let first = run_with("r1", 100, &[finding(1, 2, "md5 there")]);
    // The helper's fingerprints follow the order: the md5 finding keeps its identity.
    let second = run_with(
        "r2",
        200,
        &[finding(1, 3, "md5 there"), finding(0, 1, "eval here")],
    );
    store.record(&first, &facts()).unwrap();
    store.record(&second, &facts()).unwrap();

    let head = store.resolve("last").unwrap();
    let history = RunHistory::of(&store, &head, None).unwrap();
    let Comparison::Against(changes) = &history.comparison else {
        panic!("compared with r1: {:?}", history.comparison);
    };
    assert!(changes.baseline_label.starts_with("run r1 "));
    assert_eq!((changes.new.high, changes.new.total()), (1, 1));
    assert_eq!(changes.unchanged.total(), 1);
    assert_eq!(changes.fixed.total(), 0);
    let Trend::Runs(points) = &history.trend else {
        panic!("a trend");
    };
    let ids: Vec<&str> = points.iter().map(|p| p.run_id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    assert_eq!(points[1].counts.total(), 2);

    // The first run's history is as it was then: nothing to compare, one point.
    let old = store.resolve("last~1").unwrap();
    let then = RunHistory::of(&store, &old, None).unwrap();
    assert_eq!(then.comparison, Comparison::FirstRun);
    assert!(matches!(&then.trend, Trend::Runs(p) if p.len() == 1));

    // Against a named base (`--baseline REF`) even when it is the newer run.
    let against = RunHistory::of(&store, &old, Some(head)).unwrap();
    assert!(matches!(&against.comparison, Comparison::Against(c) if c.fixed.total() == 1));
}

#[test]
fn a_stored_run_is_rebuilt_with_its_findings_and_says_what_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("phalanx.db")).unwrap();
    let mut run = run_with("r1", 100, &[finding(0, 1, "eval <here>")]);
    run.suites[0].outcome = Outcome::Failed;
    run.suites.push(report_common::ran(
        "zap",
        Outcome::Error,
        Some("the image is missing"),
        0,
    ));
    store.record(&run, &facts()).unwrap();
    let detail = store.detail(store.resolve("r1").unwrap()).unwrap();

    let rebuilt = run_report(&detail);
    assert_eq!(rebuilt.run_id, "r1");
    assert_eq!(rebuilt.exit_code(), run.exit_code());
    assert_eq!(Verdict::of(&rebuilt), Verdict::NotTrustworthy);
    let counts = phalanx::report::input::finding_counts(&rebuilt);
    assert_eq!(counts, phalanx::report::input::finding_counts(&run));

    let input = ReportInput {
        provenance: Provenance::Stored,
        ..ReportInput::new(&rebuilt, "/work/target")
    };
    let page = html_report(&input);
    assert!(page.contains("Rebuilt from the run store"), "{page}");
    assert!(page.contains("the run store keeps no suppressions-file entries"));
    assert!(page.contains("eval &lt;here&gt;"));
    assert!(page.contains("the image is missing"));
    let md = markdown_report(&input);
    assert!(md.contains("Rebuilt from the run store"), "{md}");
}
