//! The report files, byte for byte, for a small fixed run. CI systems and scripts read
//! these files; a change here (a quick-junit upgrade, a renamed JSON field) must be a
//! decision, not an accident.
//!
//! After an intended change, regenerate with
//! `PHALANX_BLESS=1 cargo test --test offline report_golden::`
//! and review the diff of `tests/fixtures/report/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use phalanx::cause::Cause;
use phalanx::outcome::{CapturedOutput, Outcome, RunReport, SuiteReport};
use phalanx::report::{json::run_json, junit_xml, summary_table};
use phalanx::stop::StopReason;

fn at(secs: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn ran(name: &str, outcome: Outcome, cause: Option<Cause>, exit: i64, secs: u64) -> SuiteReport {
    let mut s = SuiteReport::not_run(name, &format!("phalanx/{name}:1"), outcome, None);
    s.cause = cause;
    s.exit_code = Some(exit);
    s.container_id = Some(format!("{name}-container"));
    s.attempts = 1;
    s.started_at = Some(at(1));
    s.finished_at = Some(at(1 + secs as i64));
    s.duration = Duration::from_secs(secs);
    s.log_path = Some(PathBuf::from(format!("reports/logs/{name}.log")));
    s.results_dir = Some(PathBuf::from(format!("reports/results/{name}")));
    s
}

fn fixed_run() -> RunReport {
    let mut passed = ran("bandit", Outcome::Passed, None, 0, 4);
    passed.image_digest = Some("phalanx/bandit@sha256:0123abcd".into());
    passed.result_files = vec![PathBuf::from("bandit.sarif")];
    let mut failed = ran(
        "semgrep",
        Outcome::Failed,
        Some(Cause::ExitCode {
            code: 2,
            expected: vec![0, 1],
        }),
        2,
        12,
    );
    failed.output = CapturedOutput {
        stdout: "scanning 42 files\n\x1b[31merror\x1b[0m: rule crashed".into(),
        stderr: "Traceback (most recent call last):\n  boom".into(),
        truncated: false,
    };
    let mut errored = ran(
        "trivy",
        Outcome::Error,
        Some(Cause::ResultMissing {
            exit_code: 0,
            path: "/results/trivy.sarif".into(),
        }),
        0,
        3,
    );
    errored.attempts = 2;
    let skipped = SuiteReport::not_run(
        "zap",
        "phalanx/zap:1",
        Outcome::Skipped,
        Some(Cause::NotStarted {
            reason: StopReason::FailFast {
                after: "semgrep".into(),
            },
        }),
    );
    RunReport {
        run_id: "20260501-120000-abcd".into(),
        phalanx_version: "0.1.0".into(),
        started_at: at(0),
        finished_at: at(16),
        interrupted: None,
        suites: vec![passed, failed, errored, skipped],
        invalid_suites: Vec::new(),
        partition: None,
        suppressions: Default::default(),
        target: None,
        baseline: None,
    }
}

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report")
        .join(name);
    if std::env::var_os("PHALANX_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with PHALANX_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from what is now written (PHALANX_BLESS=1 to accept):\n{actual}",
        path.display()
    );
}

#[test]
fn junit_matches_fixture() {
    check("junit.xml", &junit_xml(&fixed_run()).unwrap());
}

#[test]
fn run_json_matches_fixture() {
    check("run.json", &run_json(&fixed_run()).unwrap());
}

#[test]
fn summary_matches_fixture() {
    let reports = [
        Path::new("reports/junit.xml"),
        Path::new("reports/run.json"),
    ];
    check("summary.txt", &summary_table(&fixed_run(), &reports));
}
