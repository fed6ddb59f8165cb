//! `phalanx run --events PATH`: every event as one JSON object per line, written and
//! flushed as it happens, for CI dashboards, `jq` scripts and anything else that follows a
//! run while it goes on. The layout is versioned by [`SCHEMA`]: within one version fields
//! are only ever added. README.md ("Event stream") documents it.
//!
//! A broken event log never takes the run down: the first write error is reported once,
//! and the run carries on without the log.

use std::io::Write;

use chrono::SecondsFormat;
use serde_json::{Value, json};

use crate::event::{Event, EventKind, Subscriber};
use crate::outcome::SuiteReport;

/// Version of the event line layout (`"schema"` in every line).
pub const SCHEMA: u32 = 1;

/// Writes the event stream as JSON lines to `out`.
pub struct EventLog<W: Write + Send> {
    out: Option<W>,
    /// Named in the one warning a write error gives.
    name: String,
}

impl<W: Write + Send> EventLog<W> {
    pub fn new(out: W, name: impl Into<String>) -> Self {
        EventLog {
            out: Some(out),
            name: name.into(),
        }
    }
}

impl<W: Write + Send> Subscriber for EventLog<W> {
    fn handle(&mut self, event: &Event) {
        let Some(out) = &mut self.out else {
            return;
        };
        let mut line = line(event).to_string();
        line.push('\n');
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            eprintln!(
                "warning: cannot write the event log {}: {e}; the run goes on without it",
                self.name
            );
            self.out = None;
        }
    }
}

/// One event as its JSON line (without the newline).
pub fn line(event: &Event) -> Value {
    let mut line = json!({
        "schema": SCHEMA,
        "seq": event.seq,
        "at": event.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "event": event.kind.name(),
    });
    if let (Value::Object(line), Value::Object(fields)) = (&mut line, fields(&event.kind)) {
        line.extend(fields);
    }
    line
}

fn fields(kind: &EventKind) -> Value {
    match kind {
        EventKind::RunStarted {
            run_id,
            suites,
            jobs,
            invalid_suites,
            partition,
        } => json!({
            "run_id": run_id,
            "suites": suites,
            "jobs": jobs,
            "invalid_suites": invalid_suites,
            "partition": partition,
        }),
        EventKind::ImageBuildStarted { image, suites } => json!({
            "image": image,
            "suites": suites,
        }),
        EventKind::ImageBuildFinished {
            image,
            suites,
            outcome,
            duration,
            cause,
        } => json!({
            "image": image,
            "suites": suites,
            "outcome": outcome,
            "duration": seconds(*duration),
            "reason": cause.as_ref().map(ToString::to_string),
            "cause": cause,
        }),
        EventKind::SuiteStarted { name, attempt } => json!({
            "suite": name,
            "attempt": attempt,
        }),
        EventKind::SuiteRetrying {
            name,
            attempt,
            cause,
        } => json!({
            "suite": name,
            "attempt": attempt,
            "reason": cause.to_string(),
            "cause": cause,
        }),
        EventKind::SuiteFinished(report) => suite_finished(report),
        EventKind::ServiceStarted {
            name,
            image,
            suites,
        } => json!({
            "service": name,
            "image": image,
            "suites": suites,
        }),
        EventKind::ServiceReady { name, after } => json!({
            "service": name,
            "after": seconds(*after),
        }),
        EventKind::ServiceFinished {
            name,
            cause,
            log_path,
        } => json!({
            "service": name,
            "reason": cause.as_ref().map(ToString::to_string),
            "cause": cause,
            "log_path": log_path,
        }),
        EventKind::Stopping { reason } => json!({
            "reason": reason.to_string(),
            "cause": reason,
        }),
        EventKind::RunFinished {
            exit_code,
            counts,
            interrupted,
        } => json!({
            "exit_code": exit_code,
            "counts": counts,
            "interrupted": interrupted,
        }),
    }
}

/// Seconds, to the millisecond.
fn seconds(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// What a follower needs of a finished suite: the verdict and why, not the captured output
/// or the results (those are in the report files).
fn suite_finished(report: &SuiteReport) -> Value {
    json!({
        "suite": report.name,
        "outcome": report.outcome,
        "reason": report.cause.as_ref().map(ToString::to_string),
        "cause": report.cause,
        "duration": seconds(report.duration),
        "exit_code": report.exit_code,
        "attempts": report.attempts,
        "flaky": report.flaky,
        "image": report.image,
        "image_digest": report.image_digest,
        "findings": report.findings.as_ref().map(|f| &f.counts),
        "tests": report.tests,
        "log_path": report.log_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Cause;
    use crate::outcome::Outcome;
    use crate::stop::{Signal, StopReason};

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            at: chrono::DateTime::parse_from_rfc3339("2026-05-01T12:00:00.250Z")
                .unwrap()
                .to_utc(),
            kind,
        }
    }

    #[test]
    fn a_finished_suite_is_one_line_with_its_verdict_and_cause() {
        let mut report = SuiteReport::not_run(
            "semgrep",
            "img",
            Outcome::Failed,
            Some(Cause::ExitCode {
                code: 2,
                expected: vec![0, 1],
            }),
        );
        report.output.stdout = "bulky output".into();
        report.exit_code = Some(2);
        let text = line(&event(7, EventKind::SuiteFinished(Box::new(report)))).to_string();
        assert!(!text.contains('\n') && !text.contains("bulky"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["seq"], 7);
        assert_eq!(v["at"], "2026-05-01T12:00:00.250Z");
        assert_eq!(v["event"], "suite-finished");
        assert_eq!(v["suite"], "semgrep");
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["reason"], "exit code 2 (expected one of 0, 1)");
        assert_eq!(v["cause"]["kind"], "exit-code");
        assert_eq!(v["cause"]["expected"], json!([0, 1]));
        assert_eq!(v["exit_code"], 2);
    }

    #[test]
    fn stopping_and_the_end_carry_typed_values() {
        let reason = StopReason::Interrupted {
            signal: Signal::Terminate,
        };
        let v = line(&event(3, EventKind::Stopping { reason }));
        assert_eq!(v["event"], "stopping");
        assert_eq!(v["reason"], "interrupted by SIGTERM");
        assert_eq!(
            v["cause"],
            json!({"kind": "interrupted", "signal": "SIGTERM"})
        );
        let end = EventKind::RunFinished {
            exit_code: 143,
            counts: Default::default(),
            interrupted: Some(Signal::Terminate),
        };
        let v = line(&event(4, end));
        assert_eq!(v["event"], "run-finished");
        assert_eq!(v["exit_code"], 143);
        assert_eq!(v["interrupted"], "SIGTERM");
        assert_eq!(v["counts"]["timed-out"], 0);
    }

    #[test]
    fn builds_say_which_image_for_whom_and_how_it_ended() {
        let started = EventKind::ImageBuildStarted {
            image: "phalanx/bandit:1".into(),
            suites: vec!["bandit".into()],
        };
        let v = line(&event(2, started));
        assert_eq!(v["event"], "image-build-started");
        assert_eq!(v["image"], "phalanx/bandit:1");
        assert_eq!(v["suites"], json!(["bandit"]));
        let cause = Cause::ImageBuildFailed {
            image: "phalanx/bandit:1".into(),
            message: "pip failed".into(),
            log: "reports/logs/bandit.build.log".into(),
        };
        let finished = EventKind::ImageBuildFinished {
            image: "phalanx/bandit:1".into(),
            suites: vec!["bandit".into()],
            outcome: crate::event::BuildOutcome::Failed,
            duration: std::time::Duration::from_millis(12_345),
            cause: Some(cause),
        };
        let v = line(&event(3, finished));
        assert_eq!(v["event"], "image-build-finished");
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["duration"], 12.345);
        assert_eq!(v["cause"]["kind"], "image-build-failed");
        assert!(v["reason"].as_str().unwrap().contains("pip failed"));
    }

    #[test]
    fn a_broken_writer_is_given_up_once_and_never_panics() {
        struct Broken(u32);
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                self.0 += 1;
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut log = EventLog::new(Broken(0), "x.jsonl");
        let started = EventKind::SuiteStarted {
            name: "a".into(),
            attempt: 1,
        };
        log.handle(&event(1, started.clone()));
        log.handle(&event(2, started));
        assert!(log.out.is_none());
    }
}
