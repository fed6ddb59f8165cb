//! Why a suite did not pass: one typed value per way a suite can end badly, made where the
//! thing happened and read by everyone after (reports, progress, retries, the event
//! stream). Its [`Display`](std::fmt::Display) is the one human sentence; nothing decides
//! anything by reading that sentence back.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::engine::EngineError;
use crate::findings::{Gate, Severity};
use crate::stop::{Signal, StopReason};

/// Why a suite ended as it did, for anything but a pass. Serialised as an object whose
/// `kind` names the variant (kebab-case), with the variant's fields beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Cause {
    /// An engine call failed or the engine could not be reached.
    Engine { error: EngineError },
    /// No engine answered when the run began, so no suite could start.
    NoEngine { error: EngineError },
    /// The engine answered during the run but not after it: the suite's engine error was
    /// the connection going away.
    LostEngine {
        location: String,
        during: Box<Cause>,
    },
    /// The image is not on the engine and the suite has no `build`.
    ImageMissing { image: String },
    ImageBuildFailed {
        image: String,
        message: String,
        log: PathBuf,
    },
    /// The suite's log file could not be created.
    LogUnwritable { path: PathBuf, message: String },
    /// The container ended but the engine did not say how.
    ExitStatusUnknown,
    /// The kernel's OOM killer ended the container.
    OutOfMemory { limit_bytes: u64, exit_code: i64 },
    TimedOut {
        #[serde(rename = "limit_secs", serialize_with = "secs")]
        limit: Duration,
    },
    /// The container was stopped because the run stopped.
    Stopped { reason: StopReason },
    /// The suite never got a slot because the run stopped.
    NotStarted { reason: StopReason },
    /// The tool's exit code is not in `ok_exit_codes`.
    ExitCode { code: i64, expected: Vec<i64> },
    /// The result path did not exist, or held nothing.
    ResultMissing { exit_code: i64, path: String },
    /// The result path held files, none of the suite's format.
    ResultOfFormatMissing {
        exit_code: i64,
        path: String,
        /// Patterns looked for, like `*.sarif`.
        wanted: Vec<String>,
        /// The first few files found instead.
        found: Vec<String>,
    },
    /// A result file could not be read or is not valid for its format.
    ResultInvalid { message: String },
    /// The results are bigger than the extraction limits allow.
    ResultTooLarge { message: String },
    /// The results could not be copied out of the container.
    ResultNotCopied { error: EngineError },
    /// The results could not be written to the reports folder.
    ResultNotExtracted { message: String },
    /// Unsuppressed findings at or above the suite's `fail_on` (new ones only, under
    /// `gate = "new"`).
    Findings {
        /// How many findings are at or above `fail_on` and count under `gate`.
        count: usize,
        fail_on: Severity,
        gate: Gate,
        /// The first finding of the highest severity: where a reader should start.
        worst: WorstFinding,
    },
    /// Test cases of a JUnit suite failed or errored.
    TestsFailed {
        tests: usize,
        failures: usize,
        errors: usize,
        /// `class.name` of the first failing case.
        first: String,
    },
    /// A service the suite needs could not be started: its image could not be made, or
    /// the engine refused its container. `error` is what happened to the service.
    ServiceNotStarted { service: String, error: Box<Cause> },
    /// A service the suite needs did not get ready within its `ready_timeout`.
    ServiceNotReady {
        service: String,
        #[serde(rename = "limit_secs", serialize_with = "secs")]
        limit: Duration,
        /// What the last readiness check saw (`connection refused`, `HTTP 503`…).
        last_failure: String,
        /// The end of the service's output (sanitised, at most a few KB).
        log_tail: String,
    },
    /// A service the suite needs exited before the suite was done with it, so what the
    /// suite found (or did not) cannot be trusted.
    ServiceExited {
        service: String,
        /// `None` when the engine could not say.
        exit_code: Option<i64>,
        log_tail: String,
    },
    /// Something every suite of the run needs is missing (`doctor::preflight`), so none
    /// was started.
    PrerequisiteMissing { missing: String, fix: String },
    /// A bug or a panic in Phalanx itself, or in a task it ran.
    Internal { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorstFinding {
    pub rule: String,
    pub severity: Severity,
    /// `path:line`, when the finding has a location.
    pub location: Option<String>,
}

impl Cause {
    /// Whether another attempt may cure this: only infrastructure hiccups (an engine call
    /// failing, the engine briefly unreachable). Findings, exit codes and broken results
    /// are the tool's verdict, and running it again would only hide them.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Cause::Engine {
                error: EngineError::Api { .. } | EngineError::Unreachable { .. }
            }
        )
    }

    /// The suite ended because an engine call failed (what a lost connection looks like
    /// from inside the run).
    pub fn is_engine_error(&self) -> bool {
        matches!(self, Cause::Engine { .. })
    }

    /// The run was interrupted while the suite's container ran.
    pub fn is_interruption(&self) -> bool {
        matches!(
            self,
            Cause::Stopped {
                reason: StopReason::Interrupted { .. }
            }
        )
    }

    /// The interrupting signal, for a suite that was stopped or never started because of one.
    pub fn signal(&self) -> Option<Signal> {
        match self {
            Cause::Stopped {
                reason: StopReason::Interrupted { signal },
            }
            | Cause::NotStarted {
                reason: StopReason::Interrupted { signal },
            } => Some(*signal),
            _ => None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Cause::Internal {
            message: message.into(),
        }
    }

    /// Calls `f` on every text the cause holds, so secrets can be redacted from it.
    pub fn visit_text(&mut self, f: &mut dyn FnMut(&mut String)) {
        match self {
            Cause::Engine { error }
            | Cause::NoEngine { error }
            | Cause::ResultNotCopied { error } => error.visit_text(f),
            Cause::LostEngine { location, during } => {
                f(location);
                during.visit_text(f);
            }
            Cause::ImageMissing { image } => f(image),
            Cause::ImageBuildFailed { image, message, .. } => {
                f(image);
                f(message);
            }
            Cause::LogUnwritable { message, .. }
            | Cause::ResultInvalid { message }
            | Cause::ResultTooLarge { message }
            | Cause::ResultNotExtracted { message }
            | Cause::Internal { message } => f(message),
            Cause::PrerequisiteMissing { missing, fix } => {
                f(missing);
                f(fix);
            }
            Cause::ResultMissing { path, .. } => f(path),
            Cause::ResultOfFormatMissing { path, found, .. } => {
                f(path);
                found.iter_mut().for_each(f);
            }
            Cause::Findings { worst, .. } => {
                f(&mut worst.rule);
                if let Some(location) = &mut worst.location {
                    f(location);
                }
            }
            Cause::TestsFailed { first, .. } => f(first),
            Cause::ServiceNotStarted { service, error } => {
                f(service);
                error.visit_text(f);
            }
            Cause::ServiceNotReady {
                service,
                last_failure,
                log_tail,
                ..
            } => {
                f(service);
                f(last_failure);
                f(log_tail);
            }
            Cause::ServiceExited {
                service, log_tail, ..
            } => {
                f(service);
                f(log_tail);
            }
            Cause::Stopped { reason } | Cause::NotStarted { reason } => {
                if let StopReason::FailFast { after } = reason {
                    f(after);
                }
            }
            Cause::ExitStatusUnknown
            | Cause::OutOfMemory { .. }
            | Cause::TimedOut { .. }
            | Cause::ExitCode { .. } => {}
        }
    }
}

impl From<EngineError> for Cause {
    /// A missing image or a failed build is a cause of its own; any other engine error is
    /// [`Cause::Engine`].
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::ImageMissing { image } => Cause::ImageMissing { image },
            EngineError::Build {
                image,
                message,
                log,
            } => Cause::ImageBuildFailed {
                image,
                message,
                log,
            },
            error => Cause::Engine { error },
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Engine { error } => write!(f, "{error}"),
            Cause::NoEngine { error } => write!(
                f,
                "{error}. Is the Docker engine running? Set DOCKER_HOST to use another one."
            ),
            Cause::LostEngine { location, during } => write!(
                f,
                "lost the connection to the Docker engine at {location}: {during}"
            ),
            Cause::ImageMissing { image } => write!(
                f,
                "{}",
                EngineError::ImageMissing {
                    image: image.clone()
                }
            ),
            Cause::ImageBuildFailed {
                image,
                message,
                log,
            } => write!(
                f,
                "building image `{image}` failed: {message} (build log: {})",
                log.display()
            ),
            Cause::LogUnwritable { path, message } => {
                write!(f, "cannot write the log {}: {message}", path.display())
            }
            Cause::ExitStatusUnknown => {
                f.write_str("the container's exit status could not be read")
            }
            Cause::OutOfMemory {
                limit_bytes,
                exit_code,
            } => write!(
                f,
                "out of memory: the container reached its {} memory limit and was killed (exit code {exit_code})",
                crate::findings::verdict::human_bytes(*limit_bytes)
            ),
            Cause::TimedOut { limit } => write!(
                f,
                "timed out after {} and was stopped",
                humantime::format_duration(*limit)
            ),
            Cause::Stopped {
                reason: StopReason::FailFast { after },
            } => write!(f, "stopped by --fail-fast after `{after}` failed"),
            Cause::Stopped {
                reason: StopReason::Interrupted { signal },
            } => write!(f, "cancelled: the run was interrupted by {signal}"),
            Cause::NotStarted {
                reason: StopReason::FailFast { after },
            } => write!(
                f,
                "not started: --fail-fast stopped the run after `{after}` failed"
            ),
            Cause::NotStarted {
                reason: StopReason::Interrupted { signal },
            } => write!(f, "not started: the run was interrupted by {signal}"),
            Cause::Stopped {
                reason: StopReason::Cancelled { by },
            } => write!(f, "cancelled: the run was cancelled by {by}"),
            Cause::NotStarted {
                reason: StopReason::Cancelled { by },
            } => write!(f, "not started: the run was cancelled by {by}"),
            Cause::ExitCode { code, expected } => {
                write!(f, "exit code {code} (expected {})", code_list(expected))
            }
            Cause::ResultMissing { exit_code, path } => write!(
                f,
                "the tool exited {exit_code} but left no result file at {path}"
            ),
            Cause::ResultOfFormatMissing {
                exit_code,
                path,
                wanted,
                found,
            } => write!(
                f,
                "the tool exited {exit_code} but {path} holds no {} file (found: {})",
                wanted.join(" or "),
                found.join(", ")
            ),
            Cause::ResultInvalid { message } | Cause::Internal { message } => f.write_str(message),
            Cause::PrerequisiteMissing { missing, fix } => write!(f, "{missing}; {fix}"),
            Cause::ServiceNotStarted { service, error } => {
                write!(f, "the service `{service}` could not be started: {error}")
            }
            Cause::ServiceNotReady {
                service,
                limit,
                last_failure,
                log_tail,
            } => write!(
                f,
                "the service `{service}` was not ready after {}; last check: {last_failure}{}",
                humantime::format_duration(*limit),
                tail_note(log_tail)
            ),
            Cause::ServiceExited {
                service,
                exit_code,
                log_tail,
            } => {
                let code = exit_code.map_or_else(
                    || "with an unknown status".into(),
                    |c| format!("with code {c}"),
                );
                write!(
                    f,
                    "the service `{service}` exited {code} before the suite was done with it{}",
                    tail_note(log_tail)
                )
            }
            Cause::ResultTooLarge { message } | Cause::ResultNotExtracted { message } => {
                write!(f, "could not extract the results: {message}")
            }
            Cause::ResultNotCopied { error } => {
                write!(f, "could not copy the results out: {error}")
            }
            Cause::Findings {
                count,
                fail_on,
                gate,
                worst,
            } => {
                let noun = match (gate, *count == 1) {
                    (Gate::All, true) => "finding",
                    (Gate::All, false) => "findings",
                    (Gate::New, true) => "new finding",
                    (Gate::New, false) => "new findings",
                };
                let at = worst
                    .location
                    .as_ref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                write!(
                    f,
                    "{count} {noun} at or above {fail_on}; worst: {} ({}){at}",
                    worst.rule, worst.severity
                )
            }
            Cause::TestsFailed {
                tests,
                failures,
                errors,
                first,
            } => write!(
                f,
                "{} of {tests} test cases failed ({failures} failed, {errors} errored), first: {first}",
                failures + errors
            ),
        }
    }
}

/// `; its log ends: …` when there is a log tail to quote.
fn tail_note(tail: &str) -> String {
    match tail.trim() {
        "" => "; it printed nothing".into(),
        tail => format!("; its log ends:\n{tail}"),
    }
}

/// `0` or `one of 0, 1`.
fn code_list(codes: &[i64]) -> String {
    match codes {
        [one] => one.to_string(),
        _ => {
            let all: Vec<String> = codes.iter().map(i64::to_string).collect();
            format!("one of {}", all.join(", "))
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Writes a suite's cause as two keys: `reason`, the sentence people read, and `cause`,
/// the object programs read. Used with `#[serde(flatten)]`.
pub fn serialize_reason_and_cause<S: serde::Serializer>(
    cause: &Option<Cause>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Both<'a> {
        reason: Option<String>,
        cause: &'a Option<Cause>,
    }
    Both {
        reason: cause.as_ref().map(Cause::to_string),
        cause,
    }
    .serialize(s)
}

/// [`serialize_reason_and_cause`] for a cause that is always there.
pub fn serialize_retried_cause<S: serde::Serializer>(
    cause: &Cause,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Both<'a> {
        reason: String,
        cause: &'a Cause,
    }
    Both {
        reason: cause.to_string(),
        cause,
    }
    .serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_engine_hiccups_are_retryable() {
        let api = Cause::from(EngineError::api("container create", "conflict"));
        assert!(api.retryable() && api.is_engine_error());
        let unreachable = Cause::from(EngineError::Unreachable {
            location: "unix:///x".into(),
            message: "refused".into(),
        });
        assert!(unreachable.retryable());
        let missing = Cause::from(EngineError::ImageMissing {
            image: "x:1".into(),
        });
        assert_eq!(
            missing,
            Cause::ImageMissing {
                image: "x:1".into()
            }
        );
        assert!(!missing.retryable() && !missing.is_engine_error());
        let exit = Cause::ExitCode {
            code: 1,
            expected: vec![0],
        };
        assert!(!exit.retryable());
    }

    #[test]
    fn sentences_read_as_before() {
        let cases = [
            (
                Cause::ExitCode {
                    code: 3,
                    expected: vec![0],
                },
                "exit code 3 (expected 0)",
            ),
            (
                Cause::OutOfMemory {
                    limit_bytes: 64 << 20,
                    exit_code: 137,
                },
                "out of memory: the container reached its 64 MiB memory limit and was killed \
                 (exit code 137)",
            ),
            (
                Cause::TimedOut {
                    limit: Duration::from_secs(90),
                },
                "timed out after 1m 30s and was stopped",
            ),
            (
                Cause::Stopped {
                    reason: StopReason::Interrupted {
                        signal: Signal::Terminate,
                    },
                },
                "cancelled: the run was interrupted by SIGTERM",
            ),
            (
                Cause::NotStarted {
                    reason: StopReason::FailFast { after: "a".into() },
                },
                "not started: --fail-fast stopped the run after `a` failed",
            ),
            (
                Cause::Findings {
                    count: 2,
                    fail_on: Severity::High,
                    gate: Gate::All,
                    worst: WorstFinding {
                        rule: "CVE-1".into(),
                        severity: Severity::Critical,
                        location: Some("pom.xml:12".into()),
                    },
                },
                "2 findings at or above high; worst: CVE-1 (critical) at pom.xml:12",
            ),
            (
                Cause::Findings {
                    count: 1,
                    fail_on: Severity::High,
                    gate: Gate::New,
                    worst: WorstFinding {
                        rule: "B602".into(),
                        severity: Severity::High,
                        location: None,
                    },
                },
                "1 new finding at or above high; worst: B602 (high)",
            ),
        ];
        for (cause, sentence) in cases {
            assert_eq!(cause.to_string(), sentence);
        }
    }

    #[test]
    fn serialises_as_a_kebab_case_kind_with_fields() {
        let cause = Cause::Stopped {
            reason: StopReason::Interrupted {
                signal: Signal::Interrupt,
            },
        };
        assert_eq!(
            serde_json::to_value(&cause).unwrap(),
            json!({"kind": "stopped", "reason": {"kind": "interrupted", "signal": "SIGINT"}})
        );
        let engine = Cause::from(EngineError::api("container wait", "reset"));
        assert_eq!(
            serde_json::to_value(&engine).unwrap(),
            json!({"kind": "engine", "error": {
                "kind": "api", "operation": "container wait", "message": "reset"
            }})
        );
        let of_format = Cause::ResultOfFormatMissing {
            exit_code: 0,
            path: "/results".into(),
            wanted: vec!["*.xml".into()],
            found: vec!["a.log".into()],
        };
        let v = serde_json::to_value(&of_format).unwrap();
        assert_eq!(v["kind"], "result-of-format-missing");
    }

    #[test]
    fn every_text_is_visited_for_redaction() {
        let mut cause = Cause::LostEngine {
            location: "unix:///s".into(),
            during: Box::new(Cause::from(EngineError::api("wait", "token s3cr3t"))),
        };
        cause.visit_text(&mut |t| *t = t.replace("s3cr3t", "[REDACTED]"));
        assert!(!cause.to_string().contains("s3cr3t"), "{cause}");
    }
}
