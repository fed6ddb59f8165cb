//! `phalanx suppress FINGERPRINT …`: appends an entry for one finding to the suppressions
//! file, so nobody writes one by hand from a report.
//!
//! The finding is looked up in the last run's merged SARIF (`<reports>/results.sarif`),
//! whose results carry `fingerprints["phalanx/v1"]`; its rule, place and message go into a
//! comment above the entry. The file is only ever appended to, and the whole file with the
//! new entry must read back without error before anything is written.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde_json::Value;

use crate::config::ConfigError;
use crate::config::suppressions::{
    Horizon, NewEntry, SuppressionSettings, entry_toml, parse_suppressions,
};
use crate::findings::Fingerprint;

/// What `phalanx suppress` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub fingerprint: Fingerprint,
    pub suite: Option<String>,
    pub reason: String,
    pub owner: String,
    pub expires: NaiveDate,
    pub ticket: Option<String>,
    /// Write the entry even when no report knows the fingerprint.
    pub force: bool,
}

/// A finding of the last run, as the merged SARIF has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownFinding {
    pub suite: String,
    pub rule: String,
    pub place: String,
    pub message: String,
}

/// Why no entry was written.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(
        "no finding with fingerprint {fingerprint}{in_suite} in {}; run the suites first, check the fingerprint, or pass --force to add the entry anyway",
        looked_in.display()
    )]
    Unknown {
        fingerprint: Fingerprint,
        in_suite: String,
        looked_in: PathBuf,
    },
    #[error("cannot read {}: {error}", path.display())]
    Reports { path: PathBuf, error: String },
    #[error("--expires {expires} is before today ({today}): the entry would never be in force")]
    InThePast {
        expires: NaiveDate,
        today: NaiveDate,
    },
    /// The file, with the entry, would not read back (the file itself may be broken).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// What was appended, for the command to print.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub file: PathBuf,
    pub text: String,
    pub finding: Option<KnownFinding>,
}

/// Appends the entry `request` describes to the file of `settings`, creating it if needed.
pub fn accept(
    request: &Request,
    reports_dir: &Path,
    settings: &SuppressionSettings,
    today: NaiveDate,
) -> Result<Accepted, AcceptError> {
    if request.expires < today {
        return Err(AcceptError::InThePast {
            expires: request.expires,
            today,
        });
    }
    let sarif = reports_dir.join("results.sarif");
    let found = find(&sarif, request.fingerprint, request.suite.as_deref())?;
    if found.is_empty() && !request.force {
        return Err(AcceptError::Unknown {
            fingerprint: request.fingerprint,
            in_suite: request
                .suite
                .as_ref()
                .map(|s| format!(" of suite {s}"))
                .unwrap_or_default(),
            looked_in: sarif,
        });
    }
    // Fingerprints are numbered per suite: scope the entry to the suite it was found in.
    let suite = request.suite.clone().or_else(|| match found.as_slice() {
        [only] => Some(only.suite.clone()),
        _ => None,
    });
    let entry = NewEntry {
        suite,
        fingerprint: request.fingerprint,
        reason: request.reason.clone(),
        owner: request.owner.clone(),
        expires: request.expires,
        ticket: request.ticket.clone(),
    };
    let finding = found.into_iter().next();
    let comment = match &finding {
        Some(f) => vec![format!(
            "{} at {} ({}): {}",
            f.rule, f.place, f.suite, f.message
        )],
        None => vec!["not found in the last run's reports (added with --force)".to_string()],
    };
    let text = entry_toml(&entry, &comment);
    append_checked(
        &settings.file,
        &text,
        Horizon {
            today,
            max_days: settings.max_days,
        },
    )?;
    Ok(Accepted {
        file: settings.file.clone(),
        text,
        finding,
    })
}

/// Appends `entry` to `file` once the file with it reads back without error.
fn append_checked(file: &Path, entry: &str, horizon: Horizon) -> Result<(), AcceptError> {
    let write_err = |error| AcceptError::Write {
        path: file.to_path_buf(),
        error,
    };
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => return Err(write_err(e)),
    };
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let appended = format!("{separator}{entry}");
    parse_suppressions(file, &format!("{existing}{appended}"), horizon)
        .map_err(AcceptError::Invalid)?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(write_err)?;
    out.write_all(appended.as_bytes()).map_err(write_err)?;
    out.sync_all().map_err(write_err)
}

/// The results of the merged SARIF at `path` whose Phalanx fingerprint is `fingerprint`
/// (in `suite` only, when given). No file is no finding; a file that is not JSON is an error.
pub fn find(
    path: &Path,
    fingerprint: Fingerprint,
    suite: Option<&str>,
) -> Result<Vec<KnownFinding>, AcceptError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(AcceptError::Reports {
                path: path.to_path_buf(),
                error: e.to_string(),
            });
        }
    };
    let log: Value = serde_json::from_str(&text).map_err(|e| AcceptError::Reports {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    let wanted = fingerprint.to_string();
    let mut found = Vec::new();
    for run in log["runs"].as_array().into_iter().flatten() {
        // `bandit` or `bandit/2` (a suite with several runs): suite names have no `/`.
        let id = run["automationDetails"]["id"].as_str().unwrap_or_default();
        let run_suite = id.split('/').next().unwrap_or_default();
        if suite.is_some_and(|s| s != run_suite) {
            continue;
        }
        for result in run["results"].as_array().into_iter().flatten() {
            if result["fingerprints"]["phalanx/v1"].as_str() == Some(wanted.as_str()) {
                found.push(known(run_suite, result));
            }
        }
    }
    Ok(found)
}

fn known(suite: &str, result: &Value) -> KnownFinding {
    let physical = &result["locations"][0]["physicalLocation"];
    let uri = physical["artifactLocation"]["uri"]
        .as_str()
        .unwrap_or("(no location)");
    let place = match physical["region"]["startLine"].as_u64() {
        Some(line) => format!("{uri}:{line}"),
        None => uri.to_string(),
    };
    let rule = result["ruleId"]
        .as_str()
        .or(result["rule"]["id"].as_str())
        .unwrap_or("(no rule)");
    KnownFinding {
        suite: suite.to_string(),
        rule: rule.to_string(),
        place,
        message: result["message"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}
