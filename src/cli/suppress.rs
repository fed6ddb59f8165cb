//! The command line's side of suppressions: loading the run's suppressions file and the
//! `phalanx suppress` command. The logic lives in `phalanx::verdict`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::NaiveDate;
use clap::Args;

use phalanx::config::{ProjectConfig, SuppressionSettings};
use phalanx::findings::Fingerprint;
use phalanx::verdict::Suppressions;
use phalanx::verdict::accept::{self, AcceptError, Request};
use phalanx::verdict::suppressions::today_from_env;

use super::Failure;

#[derive(Args)]
pub struct SuppressArgs {
    /// The finding's fingerprint, as the reports show it (`076eb15941a7b51d`).
    #[arg(value_name = "FINGERPRINT", value_parser = parse_fingerprint)]
    fingerprint: Fingerprint,
    /// Why the risk is accepted.
    #[arg(long)]
    reason: String,
    /// Who accepted it (a person or team address).
    #[arg(long)]
    owner: String,
    /// The last day the suppression is in force (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    expires: NaiveDate,
    /// A ticket tracking the fix.
    #[arg(long)]
    ticket: Option<String>,
    /// Limit the entry to this suite [default: the suite the finding was found in].
    #[arg(long, value_name = "NAME")]
    suite: Option<String>,
    /// Suppressions file to append to [default: from phalanx.toml, else `suppressions.toml`].
    #[arg(long, value_name = "PATH")]
    suppressions: Option<std::path::PathBuf>,
    /// Folder of the last run's reports, where the finding is looked up [default: from
    /// phalanx.toml, else `reports`].
    #[arg(long, value_name = "DIR")]
    reports: Option<std::path::PathBuf>,
    /// Add the entry even when the last run's reports do not know the fingerprint.
    #[arg(long)]
    force: bool,
}

fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    s.parse()
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}

fn settings(project: &ProjectConfig, file: Option<&Path>) -> SuppressionSettings {
    project.suppressions.with_file(file)
}

fn today() -> Result<NaiveDate, Failure> {
    today_from_env().map_err(Failure::Usage)
}

/// The run's suppressions (`--suppressions` over phalanx.toml); a broken file is a
/// configuration error (exit 2) that names every problem.
pub fn load(project: &ProjectConfig, file: Option<&Path>) -> Result<Arc<Suppressions>, Failure> {
    let settings = settings(project, file);
    match Suppressions::load(&settings, today()?) {
        Ok(s) => Ok(Arc::new(s)),
        Err(errors) => {
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(Failure::Usage(all.join("\nerror: ")))
        }
    }
}

/// `phalanx suppress`: exit 0 with the entry appended, 2 when it cannot be.
pub fn command(project: &ProjectConfig, args: SuppressArgs) -> Result<ExitCode, Failure> {
    let settings = settings(project, args.suppressions.as_deref());
    let reports = args.reports.unwrap_or_else(|| project.reports_dir.clone());
    let request = Request {
        fingerprint: args.fingerprint,
        suite: args.suite,
        reason: args.reason,
        owner: args.owner,
        expires: args.expires,
        ticket: args.ticket,
        force: args.force,
    };
    match accept::accept(&request, &reports, &settings, today()?) {
        Ok(done) => {
            print!("appended to {}:\n{}", done.file.display(), done.text);
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ AcceptError::Write { .. }) => Err(Failure::Infra(e.to_string())),
        Err(e) => Err(Failure::Usage(e.to_string())),
    }
}
