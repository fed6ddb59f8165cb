//! `phalanx alerts log | test`, and the alerts of a finished `phalanx run`. Thin: what to
//! send, how, and what is recorded live in `phalanx::alerts` and `phalanx::store`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use phalanx::alerts::{self, AlertRun, DeliveryOutcome};
use phalanx::config::ProjectConfig;
use phalanx::outcome::RunReport;
use phalanx::store::{self, Store};

use super::stored::{open_existing, query_failure};
use super::{Failure, StoreArg, store_settings};

#[derive(Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// The alerts sent, newest first, with every attempt and its result.
    Log {
        #[command(flatten)]
        store: StoreArg,
        /// Only the alerts of this run (a run id, the start of one, `last` or `last~N`).
        #[arg(long = "run", value_name = "RUN")]
        run: Option<String>,
        /// At most this many alerts.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Send a clearly marked test message to each configured channel (or to NAME) and
    /// report the HTTP result; exit 0 when every one was delivered, 3 when not.
    Test {
        #[command(flatten)]
        store: StoreArg,
        /// The channel (`name` of an [[alerts]] entry) [default: all of them].
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
}

pub async fn command(project: &ProjectConfig, args: AlertsArgs) -> Result<ExitCode, Failure> {
    match args.command {
        AlertsCommand::Log {
            store,
            run,
            limit,
            json,
        } => log(project, &store, run.as_deref(), limit, json),
        AlertsCommand::Test { store, name } => test(project, &store, name.as_deref()).await,
    }
}

fn log(
    project: &ProjectConfig,
    arg: &StoreArg,
    run: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<ExitCode, Failure> {
    let store = open_existing(project, arg)?;
    let run = run
        .map(|r| store.resolve(r))
        .transpose()
        .map_err(query_failure)?;
    let rows = store
        .alert_log(run.as_ref(), limit)
        .map_err(|e| query_failure(e.into()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialise")
        );
    } else {
        print!("{}", store::view::alert_log(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `phalanx alerts test [NAME]`.
async fn test(
    project: &ProjectConfig,
    store: &StoreArg,
    name: Option<&str>,
) -> Result<ExitCode, Failure> {
    let settings = &project.alerts;
    let channels: Vec<&alerts::AlertSpec> = match name {
        Some(name) => vec![settings.channel(name).ok_or_else(|| {
            let known: Vec<&str> = settings.channels.iter().map(|c| c.name.as_str()).collect();
            Failure::Usage(format!(
                "no [[alerts]] entry is called `{name}` (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?],
        None if settings.channels.is_empty() => {
            return Err(Failure::Usage(
                "phalanx.toml has no [[alerts]] entry to test (README: \"Alerts\")".into(),
            ));
        }
        None => settings.channels.iter().collect(),
    };
    alerts::protect(&settings.channels);
    // Recorded when there is a store already; a test never creates one.
    let store = Store::open_existing(&store_settings(project, store).path).ok();
    let mut delivered = true;
    for spec in channels {
        let outcome = alerts::send_test(spec, store.as_ref(), settings.deadline).await;
        delivered &= print_outcome(&outcome, false);
    }
    Ok(ExitCode::from(if delivered {
        phalanx::exit::PASSED
    } else {
        phalanx::exit::INFRA
    }))
}

/// The alerts of a finished run: sent after its reports are written and it is recorded,
/// for at most `alerts_deadline`. The run's exit code never depends on them.
pub async fn after_run(
    project: &ProjectConfig,
    report: &RunReport,
    store: Option<&Store>,
    facts: &store::RunFacts,
) {
    let channels = project.alert_channels(facts.project.as_deref());
    if channels.is_empty() {
        return;
    }
    let run = AlertRun {
        report,
        store,
        git: facts.git.as_ref(),
        target: &facts.target,
        project: facts.project.as_deref(),
        server_url: None,
    };
    let outcome = alerts::after_run(run, &channels, project.alerts.deadline).await;
    print_outcome(&outcome, true);
}

/// Prints what happened to each message (stderr: stdout may carry the event stream);
/// true when all were delivered.
fn print_outcome(outcome: &DeliveryOutcome, quiet_when_delivered: bool) -> bool {
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    let mut delivered = true;
    for channel in &outcome.channels {
        if channel.status == alerts::DeliveryStatus::Delivered {
            if !quiet_when_delivered {
                println!("{channel}");
            } else {
                eprintln!("phalanx: {channel}");
            }
        } else {
            delivered = false;
            eprintln!("warning: {channel}");
        }
    }
    delivered
}

/// Registers the channels' URLs and secrets as secrets before any report is written.
pub fn protect(project: &ProjectConfig) {
    alerts::protect(&project.alerts.channels);
    for spec in project.projects.values() {
        alerts::protect(&spec.alerts);
    }
}
