//! junit.xml stays valid XML, and valid against the Jenkins xUnit JUnit schema, whatever the
//! scanners printed.
//!
//! The schema check needs `xmllint` (Debian: libxml2-utils) and the project's shared
//! folder (`$PHALANX_SHARED`, else `../shared` beside the checkout); without either it
//! says why and checks only well-formedness, so a clone elsewhere still passes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use phalanx::cause::Cause;
use phalanx::outcome::{CapturedOutput, Outcome, RunReport, SuiteReport};
use phalanx::report::write_junit;

use crate::junit_schema;
use junit_schema::{strip_extensions, validate, validator};

/// Everything a misbehaving tool can print that once broke a JUnit writer.
const NASTY: &str = "\x1b[31mred\x1b[0m NUL:\0: BEL:\x07: cdata-end:]]>: html:<script>&</script> \
     quote:\"'\" emoji:🦀🔥 replacement:\u{fffd} nonchars:\u{fffe}\u{ffff} c1:\u{85}\u{9b}: \
     tab:\tx cr:\r\n";

fn nasty_output() -> CapturedOutput {
    // ~250 KB raw (~210 KB once escapes are stripped), well past typical buffers, and still under the writer's 1 MiB guard.
    let filler = "line of scanner output with a \x1b[1mbold\x1b[0m word\n".repeat(5_200);
    CapturedOutput {
        stdout: format!("{NASTY}{filler}{NASTY}END-OF-STDOUT"),
        stderr: format!("{NASTY}END-OF-STDERR"),
        truncated: true,
    }
}

fn suite(name: &str, outcome: Outcome, reason: &str) -> SuiteReport {
    let t = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
    let mut s = SuiteReport::not_run(
        name,
        "phalanx/scanner:1",
        outcome,
        Some(Cause::internal(reason)),
    );
    s.image_digest = Some("phalanx/scanner@sha256:0123".into());
    s.exit_code = Some(2);
    s.container_id = Some("c0ffee".into());
    s.attempts = 1;
    s.started_at = Some(t);
    s.finished_at = Some(t + chrono::Duration::seconds(4));
    s.duration = Duration::from_millis(4_200);
    s.log_path = Some(PathBuf::from("reports/logs/x.log"));
    if outcome.is_failure() {
        s.output = nasty_output();
    }
    s
}

fn run_with_every_outcome() -> RunReport {
    let t = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
    RunReport {
        run_id: "run-1".into(),
        phalanx_version: "0.1.0".into(),
        started_at: t,
        finished_at: t + chrono::Duration::seconds(30),
        interrupted: None,
        suites: vec![
            suite("passed", Outcome::Passed, "ok"),
            suite("failed", Outcome::Failed, &format!("exit code 2: {NASTY}")),
            suite("timed-out", Outcome::TimedOut, "timed out after 5m"),
            suite(
                "errored",
                Outcome::Error,
                "result file missing <&>\nsecond line",
            ),
            suite("skipped", Outcome::Skipped, "fail-fast: failed failed"),
            suite("cancelled", Outcome::Cancelled, "run interrupted by SIGINT"),
        ],
        invalid_suites: Vec::new(),
        partition: None,
        suppressions: Default::default(),
        target: None,
        baseline: None,
    }
}

fn write_report(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("reports/junit.xml");
    write_junit(&run_with_every_outcome(), &path).unwrap();
    let xml = std::fs::read_to_string(&path).unwrap();
    (path, xml)
}

#[test]
fn junit_parses_and_keeps_the_text_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (_, xml) = write_report(dir.path());
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");

    let case = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap()
    };
    let child_text = |n: roxmltree::Node, tag: &str| {
        let c = n.children().find(|c| c.has_tag_name(tag));
        c.and_then(|c| c.text()).unwrap_or_default().to_string()
    };

    let failed = case("failed");
    let out = child_text(failed, "system-out");
    assert!(out.starts_with("[output truncated]"), "{}", &out[..80]);
    assert!(out.len() > 200_000, "output kept whole: {}", out.len());
    assert!(out.ends_with("END-OF-STDOUT"));
    for kept in [
        "red",
        "cdata-end:]]>:",
        "<script>&</script>",
        "🦀🔥",
        "\u{fffd}",
    ] {
        assert!(out.contains(kept), "{kept:?} missing");
    }
    for gone in [
        '\x1b', '\0', '\x07', '\u{fffe}', '\u{ffff}', '\u{85}', '\u{9b}',
    ] {
        assert!(!out.contains(gone), "{gone:?} survived");
    }
    assert!(
        out.contains("tab: ") && !out.contains("tab:x"),
        "tab expanded, not dropped"
    );
    assert!(child_text(failed, "system-err").ends_with("END-OF-STDERR"));

    let message = |name: &str, tag: &str| {
        let n = case(name).children().find(|c| c.has_tag_name(tag)).unwrap();
        n.attribute("message").unwrap().to_string()
    };
    assert!(!message("failed", "failure").contains('\n'));
    assert_eq!(
        message("errored", "error"),
        "result file missing <&> second line"
    );
    assert_eq!(message("timed-out", "failure"), "timed out after 5m");
    assert_eq!(
        message("cancelled", "skipped"),
        "cancelled: run interrupted by SIGINT"
    );
    assert!(child_text(case("passed"), "system-out").is_empty());
}

#[test]
fn junit_validates_against_the_schema() {
    let Some((xmllint, xsd)) = validator() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (path, xml) = write_report(dir.path());

    let stripped = dir.path().join("junit-stripped.xml");
    std::fs::write(&stripped, strip_extensions(&xml)).unwrap();
    if let Err(msg) = validate(&xmllint, &xsd, &stripped) {
        panic!(
            "junit.xml does not validate against {}:\n{msg}",
            xsd.display()
        );
    }

    // The check must be able to fail: the unstripped file carries attributes the schema
    // does not know, and xmllint has to say so.
    let msg = validate(&xmllint, &xsd, &path).expect_err("extension attributes must be rejected");
    assert!(
        msg.contains("skipped") || msg.contains("timestamp"),
        "{msg}"
    );
}
