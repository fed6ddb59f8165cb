//! From what a suite's container did to the suite's outcome.

use std::path::PathBuf;

use crate::config::{ResultFormat, Suite};
use crate::engine::ExitStatus;
use crate::outcome::Outcome;

/// What came back from a container that ran to its end.
pub struct Evidence<'a> {
    pub status: ExitStatus,
    /// Result files extracted from the suite's result path, relative to its results folder.
    pub result_files: &'a [PathBuf],
    /// False when the result path did not exist in the container at all.
    pub result_path_found: bool,
}

/// Decides a suite's outcome and, for anything but a pass, says why.
pub fn decide(suite: &Suite, evidence: &Evidence) -> (Outcome, Option<String>) {
    let results = &suite.results;
    let code = evidence.status.code;
    if evidence.status.oom_killed {
        let limit = human_bytes(suite.policy.memory);
        return (
            Outcome::Error,
            Some(format!(
                "out of memory: the container reached its {limit} memory limit and was killed (exit code {code})"
            )),
        );
    }
    if !results.ok_exit_codes.contains(&code) {
        return (
            Outcome::Failed,
            Some(format!(
                "exit code {code} (expected {})",
                list(&results.ok_exit_codes)
            )),
        );
    }
    match results.format {
        ResultFormat::ExitCode => (Outcome::Passed, None),
        // Reading SARIF and JUnit results is the findings stage's next step; until then
        // such a suite cannot be judged, and an unjudged suite is never reported clean.
        ResultFormat::Sarif | ResultFormat::Junit => {
            if !evidence.result_path_found || evidence.result_files.is_empty() {
                (
                    Outcome::Error,
                    Some(format!(
                        "the tool exited {code} but left no result file at {}",
                        results.path
                    )),
                )
            } else {
                (
                    Outcome::Error,
                    Some(format!(
                        "reading `{}` results is not supported yet",
                        format_name(results.format)
                    )),
                )
            }
        }
    }
}

fn format_name(format: ResultFormat) -> &'static str {
    match format {
        ResultFormat::Sarif => "sarif",
        ResultFormat::Junit => "junit",
        ResultFormat::ExitCode => "exit-code",
    }
}

fn list(codes: &[i64]) -> String {
    match codes {
        [one] => one.to_string(),
        _ => {
            let all: Vec<String> = codes.iter().map(i64::to_string).collect();
            format!("one of {}", all.join(", "))
        }
    }
}

/// `1073741824` → `1 GiB`, for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
