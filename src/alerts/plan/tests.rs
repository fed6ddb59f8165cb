//! Planning digests from a run and what the channel knows, without a store or a network.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::alerts::config::{AlertSpec, Format, UrlSource};
use crate::cause::Cause;
use crate::findings::{Gate, sarif};
use crate::outcome::{RunReport, SuiteReport};

const BANDIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sarif/bandit.sarif"
);

fn spec(on: &[EventKind]) -> AlertSpec {
    AlertSpec {
        name: "ops".into(),
        url: UrlSource::Env("UNUSED".into()),
        format: Format::Json,
        on: on.to_vec(),
        min_severity: Severity::High,
        branches: Vec::new(),
        secret_from_env: None,
        timeout: std::time::Duration::from_secs(1),
    }
}

fn sarif_suite(name: &str) -> SuiteReport {
    let text = std::fs::read_to_string(BANDIT).unwrap();
    let findings = sarif::read_str(name, &text).unwrap();
    let mut s = SuiteReport::not_run(name, "img:1", Outcome::Failed, None);
    s.findings = Some(findings.summary(Severity::High, Gate::All, None));
    s.results = Some(Arc::new(SuiteResults::Sarif(findings)));
    s
}

fn report(suites: Vec<SuiteReport>) -> RunReport {
    RunReport {
        run_id: "r2".into(),
        phalanx_version: "0.1.0".into(),
        started_at: Utc::now(),
        finished_at: Utc::now(),
        interrupted: None,
        suites,
        invalid_suites: Vec::new(),
        partition: None,
        suppressions: Default::default(),
        target: None,
        baseline: None,
    }
}

fn events(report: &RunReport, previous: Option<HashSet<String>>) -> RunEvents {
    let git = GitInfo {
        commit: Some("a1b2c3d4e5f6".repeat(3)),
        branch: Some("main".into()),
        dirty: Some(false),
    };
    let subject = subject(report, Path::new("/work/shop"), Some(&git), None, None);
    RunEvents::of(report, subject, &mut |_| previous.clone())
}

fn b602(report: &RunReport) -> StateKey {
    let Some(SuiteResults::Sarif(f)) = report.suites[0].results.as_deref() else {
        unreachable!()
    };
    let finding = f
        .findings
        .iter()
        .find(|x| f.rule_of(x).id == "B602")
        .unwrap();
    StateKey {
        kind: "new-finding".into(),
        scope: "bandit".into(),
        key: finding.fingerprint.to_string(),
    }
}

#[test]
fn a_first_run_alerts_its_findings_at_or_above_the_minimum_once() {
    let run = report(vec![sarif_suite("bandit")]);
    let plan = plan_channel(
        &spec(&[EventKind::NewFinding]),
        &events(&run, None),
        &HashMap::new(),
    );
    let digest = plan.digest.expect("a digest");
    assert_eq!(digest.events, [EventKind::NewFinding]);
    assert_eq!(
        digest.new_findings.len(),
        1,
        "B105 is low, under the minimum"
    );
    let f = &digest.new_findings[0];
    assert_eq!(
        (f.rule.as_str(), f.location.as_deref()),
        ("B602", Some("app/run.py:17"))
    );
    assert_eq!(
        digest.summary(&events(&run, None).subject),
        "1 new high finding in shop@a1b2c3d"
    );
    assert_eq!(plan.mark, [b602(&run)]);

    let told = HashMap::from([(b602(&run), Known::Told)]);
    let again = plan_channel(&spec(&[EventKind::NewFinding]), &events(&run, None), &told);
    assert!(
        again.digest.is_none(),
        "told once, not again while it stays"
    );
    let owed = HashMap::from([(b602(&run), Known::Owed)]);
    let owed_plan = plan_channel(&spec(&[EventKind::NewFinding]), &events(&run, None), &owed);
    assert_eq!(
        owed_plan.digest.unwrap().new_findings.len(),
        1,
        "a failed delivery is owed"
    );
}

#[test]
fn a_finding_of_the_previous_run_is_not_new() {
    let run = report(vec![sarif_suite("bandit")]);
    let previous = HashSet::from([b602(&run).key]);
    let plan = plan_channel(
        &spec(&[EventKind::NewFinding]),
        &events(&run, Some(previous)),
        &HashMap::new(),
    );
    assert!(plan.digest.is_none());
}

#[test]
fn what_is_gone_from_a_read_suite_is_forgotten_but_not_from_one_that_errored() {
    let run = report(vec![sarif_suite("bandit")]);
    let gone_here = StateKey {
        kind: "new-finding".into(),
        scope: "bandit".into(),
        key: "00000000000000aa".into(),
    };
    let elsewhere = StateKey {
        kind: "new-finding".into(),
        scope: "zap".into(),
        key: "00000000000000bb".into(),
    };
    let known = HashMap::from([
        (b602(&run), Known::Told),
        (gone_here.clone(), Known::Told),
        (elsewhere, Known::Told),
    ]);
    let plan = plan_channel(&spec(&[EventKind::NewFinding]), &events(&run, None), &known);
    assert_eq!(
        plan.forget,
        [gone_here],
        "zap's findings were not read: unknown, not gone"
    );
}

#[test]
fn broken_suites_and_a_failed_run_are_in_one_digest_with_the_findings() {
    let mut broken = SuiteReport::not_run(
        "zap",
        "img:1",
        Outcome::TimedOut,
        Some(Cause::internal("took too long")),
    );
    broken.outcome = Outcome::TimedOut;
    let run = report(vec![sarif_suite("bandit"), broken]);
    let all = spec(&EventKind::ALL);
    let events = events(&run, None);
    let digest = plan_channel(&all, &events, &HashMap::new()).digest.unwrap();
    assert_eq!(
        digest.events,
        [
            EventKind::NewFinding,
            EventKind::SuiteError,
            EventKind::RunFailed
        ]
    );
    assert_eq!(digest.suite_errors[0].outcome, "timed-out");
    assert_eq!(digest.run_failed.as_ref().unwrap().exit_code, 1);
    assert_eq!(
        digest.summary(&events.subject),
        "1 new high finding in shop@a1b2c3d; 1 suite could not run (zap); run failed (exit 1)"
    );
}

#[test]
fn a_channel_for_other_branches_hears_nothing() {
    let run = report(vec![sarif_suite("bandit")]);
    let mut release = spec(&EventKind::ALL);
    release.branches = vec![crate::config::suppressions::PathGlob::new("release/*").unwrap()];
    let plan = plan_channel(&release, &events(&run, None), &HashMap::new());
    assert!(plan.digest.is_none() && plan.mark.is_empty() && plan.forget.is_empty());
}

#[test]
fn the_summary_counts_mixed_severities() {
    let finding = |severity| AlertFinding {
        suite: "s".into(),
        severity,
        rule: "R".into(),
        location: None,
        path: None,
        line: None,
        fingerprint: "f".into(),
        message: "m".into(),
    };
    let phrase = findings_phrase(&[
        finding(Severity::Critical),
        finding(Severity::High),
        finding(Severity::High),
    ]);
    assert_eq!(phrase, "3 new findings (1 critical, 2 high)");
    assert_eq!(
        findings_phrase(&[finding(Severity::High), finding(Severity::High)]),
        "2 new high findings"
    );
}

#[test]
fn a_detached_ci_checkout_takes_the_branch_the_ci_names() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(
        ci_branch(vars(&[("CI_COMMIT_BRANCH", "main")])).as_deref(),
        Some("main")
    );
    assert_eq!(
        ci_branch(vars(&[
            ("GITHUB_REF_TYPE", "branch"),
            ("GITHUB_REF_NAME", "release/2")
        ]))
        .as_deref(),
        Some("release/2")
    );
    assert_eq!(
        ci_branch(vars(&[
            ("GITHUB_REF_TYPE", "tag"),
            ("GITHUB_REF_NAME", "v1.0")
        ])),
        None,
        "a tag is no branch"
    );
    assert_eq!(
        ci_branch(vars(&[("BRANCH_NAME", "PR-12")])).as_deref(),
        Some("PR-12")
    );
    assert_eq!(ci_branch(vars(&[])), None);
}
