//! A fixed run shaped like the demo target's (a SAST suite with findings, one suppressed in
//! source, a JUnit suite, a flaky retry, an errored and a skipped suite) and the optional
//! inputs of the HTML and Markdown reports. Use with `mod report_common;`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use phalanx::findings::{
    Finding, Fingerprint, Location, Rule, Severity, SeverityCounts, SuiteFindings, SuiteResults,
    TestCounts, Tool, model::Origin,
};
use phalanx::outcome::{Outcome, RetriedAttempt, RunReport, SuiteReport};
use phalanx::report::input::{
    AcceptedRisk, ChangedFinding, Changes, Comparison, GitFacts, ReportInput, RiskState, Trend,
    TrendPoint,
};

pub fn at(secs: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

pub fn ran(name: &str, outcome: Outcome, reason: Option<&str>, secs: u64) -> SuiteReport {
    let cause = reason.map(phalanx::cause::Cause::internal);
    let mut s = SuiteReport::not_run(name, &format!("phalanx/{name}:1"), outcome, cause);
    s.exit_code = Some(0);
    s.attempts = 1;
    s.started_at = Some(at(1));
    s.finished_at = Some(at(1 + secs as i64));
    s.duration = Duration::from_secs(secs);
    s
}

/// One finding of `rule` (an index into `rules`) for [`sarif_suite`].
pub struct F<'a> {
    pub rule: usize,
    pub severity: Severity,
    pub path: &'a str,
    pub line: u64,
    pub message: &'a str,
    pub suppressed: Option<&'a str>,
}

/// A SARIF suite's report with these rules (`(id, description)`) and findings.
pub fn sarif_suite(
    name: &str,
    outcome: Outcome,
    rules: &[(&str, &str)],
    findings: &[F],
) -> SuiteReport {
    let mut suite = ran(name, outcome, None, 6);
    let rules = rules
        .iter()
        .map(|(id, desc)| Rule {
            id: id.to_string(),
            tool: 0,
            name: None,
            short_description: Some(desc.to_string()),
            declared: true,
            not_applicable: 0,
        })
        .collect();
    let findings = findings
        .iter()
        .enumerate()
        .map(|(i, f)| Finding {
            rule: f.rule,
            severity: f.severity,
            message: f.message.to_string(),
            location: Some(Location {
                path: f.path.to_string(),
                start_line: Some(f.line),
                start_column: None,
            }),
            fingerprint: Fingerprint {
                hash: 0x1000_0000_0000_0000 + i as u64 * 0x1111,
                occurrence: 1,
            },
            suppression: match f.suppressed {
                Some(why) => phalanx::findings::Suppression::InSource {
                    justification: Some(why.to_string()),
                },
                None => phalanx::findings::Suppression::None,
            },
            baseline: None,
            origin: Origin {
                file: 0,
                run: 0,
                result: i as u32,
            },
        })
        .collect();
    set_findings(&mut suite, rules, findings);
    suite
}

/// Puts `findings` on `suite` as the SARIF reader would, with its summary.
pub fn set_findings(suite: &mut SuiteReport, rules: Vec<Rule>, findings: Vec<Finding>) {
    let sf = SuiteFindings {
        suite: suite.name.clone(),
        sources: vec![PathBuf::from(format!("{}.sarif", suite.name))],
        runs: 1,
        tools: vec![Tool {
            name: suite.name.clone(),
            version: Some("1.2.3".into()),
        }],
        rules,
        findings,
    };
    suite.findings = Some(sf.summary(Severity::High, phalanx::findings::Gate::All, None));
    suite.results = Some(Arc::new(SuiteResults::Sarif(sf)));
}

pub fn demo_run() -> RunReport {
    let mut sast = sarif_suite(
        "semgrep",
        Outcome::Failed,
        &[
            ("python.lang.security.eval", "eval() on user input"),
            ("python.flask.debug", "Flask debug mode enabled"),
            ("python.lang.md5", "Weak hash MD5"),
        ],
        &[
            F {
                rule: 0,
                severity: Severity::High,
                path: "app/views.py",
                line: 42,
                message: "User input reaches eval().",
                suppressed: None,
            },
            F {
                rule: 0,
                severity: Severity::High,
                path: "app/admin.py",
                line: 7,
                message: "User input reaches eval().",
                suppressed: None,
            },
            F {
                rule: 1,
                severity: Severity::Medium,
                path: "app/__init__.py",
                line: 3,
                message: "Debug mode exposes the Werkzeug console.",
                suppressed: None,
            },
            F {
                rule: 2,
                severity: Severity::Low,
                path: "app/auth.py",
                line: 19,
                message: "MD5 used for a checksum.",
                suppressed: Some("checksum only, not a password"),
            },
        ],
    );
    sast.cause = Some(phalanx::cause::Cause::internal(
        "2 high findings (threshold high)",
    ));
    sast.image_digest = Some("phalanx/semgrep@sha256:5e1f00d".into());
    let secrets = sarif_suite(
        "gitleaks",
        Outcome::Passed,
        &[("generic-api-key", "Generic API key")],
        &[F {
            rule: 0,
            severity: Severity::Medium,
            path: "tests/fixtures/key.txt",
            line: 1,
            message: "Possible API key.",
            suppressed: None,
        }],
    );
    let mut unit = ran("auth-tests", Outcome::Passed, None, 9);
    unit.tests = Some(TestCounts {
        tests: 12,
        failures: 0,
        errors: 0,
        skipped: 0,
    });
    unit.flaky = true;
    unit.attempts = 2;
    unit.retried = vec![RetriedAttempt {
        attempt: 1,
        started_at: Some(at(1)),
        duration: Duration::from_secs(2),
        cause: phalanx::cause::Cause::internal("the engine lost the container"),
    }];
    let mut trivy = ran(
        "trivy",
        Outcome::Error,
        Some("result file /results/trivy.sarif is missing"),
        3,
    );
    trivy.exit_code = Some(1);
    let zap = SuiteReport::not_run(
        "zap",
        "phalanx/zap:1",
        Outcome::Skipped,
        Some(phalanx::cause::Cause::internal("fail-fast: semgrep failed")),
    );
    RunReport {
        run_id: "20260501-120000-abcd".into(),
        phalanx_version: "0.1.0".into(),
        started_at: at(0),
        finished_at: at(16),
        interrupted: None,
        suites: vec![sast, secrets, unit, trivy, zap],
        invalid_suites: Vec::new(),
        partition: None,
        suppressions: Default::default(),
        target: None,
        baseline: None,
    }
}

/// A run in which everything ran and passed.
pub fn passing_run() -> RunReport {
    let mut run = demo_run();
    run.suites.retain(|s| s.name == "gitleaks");
    run
}

fn changed(
    rule: &str,
    severity: Severity,
    location: &str,
    message: &str,
    fp: &str,
) -> ChangedFinding {
    ChangedFinding {
        suite: "semgrep".into(),
        rule: rule.into(),
        severity,
        location: Some(location.into()),
        message: message.into(),
        fingerprint: fp.into(),
    }
}

pub fn demo_changes() -> Changes {
    Changes {
        baseline_label: "run 20260430-090000-ffff (main)".into(),
        new: SeverityCounts {
            high: 1,
            ..Default::default()
        },
        fixed: SeverityCounts {
            critical: 1,
            low: 2,
            ..Default::default()
        },
        unchanged: SeverityCounts {
            high: 1,
            medium: 2,
            ..Default::default()
        },
        new_findings: vec![changed(
            "python.lang.security.eval",
            Severity::High,
            "app/admin.py:7",
            "User input reaches eval().",
            "1000000000001111",
        )],
        fixed_findings: vec![changed(
            "python.sql.injection",
            Severity::Critical,
            "app/db.py:88",
            "SQL built from a request parameter.",
            "2000000000000001",
        )],
    }
}

pub fn demo_risk() -> Vec<AcceptedRisk> {
    let entry = |selector: &str, state, expires: Option<(i32, u32, u32)>, matched| AcceptedRisk {
        selector: selector.into(),
        owner: "alice@example.com".into(),
        reason: "Debug only in the dev image".into(),
        ticket: Some("SEC-142".into()),
        expires: expires.map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap()),
        state,
        matched,
    };
    vec![
        entry(
            "python.flask.debug",
            RiskState::InForce,
            Some((2026, 9, 30)),
            1,
        ),
        entry(
            "generic-api-key:tests/**",
            RiskState::Expiring,
            Some((2026, 5, 10)),
            1,
        ),
        entry("CVE-2024-0001", RiskState::Expired, Some((2026, 4, 1)), 0),
        entry("old-rule", RiskState::Stale, None, 0),
    ]
}

pub fn demo_trend() -> Vec<TrendPoint> {
    (0..6)
        .map(|i| TrendPoint {
            run_id: format!("20260{}-run", 424 + i),
            when: at(-86_400 * (7 - i)),
            counts: SeverityCounts {
                critical: (i < 2) as usize,
                high: 3 - (i as usize / 2),
                medium: 2,
                low: 4 - i as usize / 2,
                info: 1,
            },
            suites_failing: 2 - (i as usize / 3),
        })
        .collect()
}

/// The demo run with every optional input given.
pub fn full_input(run: &RunReport) -> ReportInput<'_> {
    ReportInput {
        git: Some(GitFacts {
            commit: "3f2a9c0d1e4b5a67890abcdef0123456789abcde".into(),
            branch: Some("release/1.4".into()),
            dirty: Some(false),
        }),
        command_line: "phalanx run --target examples/vulnerable-app --reports reports".into(),
        sarif_path: Some("reports/results.sarif".into()),
        comparison: Comparison::Against(demo_changes()),
        accepted_risk: Some(demo_risk()),
        trend: Trend::Runs(demo_trend()),
        report_url: Some("https://ci.example.test/jobs/7/artifacts/report.html".into()),
        ..ReportInput::new(run, "/work/examples/vulnerable-app")
    }
}
