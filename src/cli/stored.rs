//! `phalanx runs`, `show`, `diff`, `report` and `prune`: the run store read back, as
//! tables or JSON. Thin: the queries and the rendering live in `phalanx::store` and
//! `phalanx::report`.

use std::path::PathBuf;
use std::process::ExitCode;

use phalanx::config::ProjectConfig;
use phalanx::engine::docker::absolute_target;
use phalanx::findings::Severity;
use phalanx::report::ReportInput;
use phalanx::report::from_store;
use phalanx::report::input::{GitFacts, Provenance, report_url_from_env};
use phalanx::store::{self, QueryError, RunFilter, Store};

use super::{Failure, ReportArgs, StoreArg, store_settings};
use phalanx::launch::{history_of, write_human_reports};

pub(super) fn open_existing(project: &ProjectConfig, arg: &StoreArg) -> Result<Store, Failure> {
    Store::open_existing(&store_settings(project, arg).path).map_err(|e| query_failure(e.into()))
}

pub(super) fn query_failure(e: QueryError) -> Failure {
    match e.exit_code() {
        2 => Failure::Usage(e.to_string()),
        _ => Failure::Infra(e.to_string()),
    }
}

/// Prints `value` as JSON, or as the text `render` makes of it.
fn print_view<T: serde::Serialize>(json: bool, value: &T, render: impl Fn(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("views serialise")
        );
    } else {
        print!("{}", render(value));
    }
}

pub(super) fn runs(
    project: &ProjectConfig,
    arg: &StoreArg,
    limit: usize,
    target: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let store = open_existing(project, arg)?;
    let target = target.map(|t| {
        absolute_target(&t)
            .or_else(|_| std::path::absolute(&t))
            .unwrap_or(t)
    });
    let filter = RunFilter {
        limit: Some(limit),
        target,
    };
    let list = store.runs(&filter).map_err(|e| query_failure(e.into()))?;
    print_view(json, &list, |l| store::view::runs_table(l));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn show(
    project: &ProjectConfig,
    arg: &StoreArg,
    run: &str,
    json: bool,
) -> Result<ExitCode, Failure> {
    let store = open_existing(project, arg)?;
    let run = store.resolve(run).map_err(query_failure)?;
    let detail = store.detail(run).map_err(|e| query_failure(e.into()))?;
    print_view(json, &detail, store::view::run_detail);
    Ok(ExitCode::SUCCESS)
}

pub(super) fn diff(
    project: &ProjectConfig,
    arg: &StoreArg,
    base: Option<String>,
    head: Option<String>,
    json: bool,
    fail_on_new: Option<Severity>,
) -> Result<ExitCode, Failure> {
    let store = open_existing(project, arg)?;
    let diff = store
        .diff_refs(base.as_deref(), head.as_deref())
        .map_err(query_failure)?;
    print_view(json, &diff, store::view::diff);
    let gate = fail_on_new.is_some_and(|t| diff.new_at_or_above(t) > 0);
    Ok(ExitCode::from(u8::from(gate)))
}

/// `phalanx report`: the human reports of a stored run, rebuilt from what the store
/// keeps (the pages say what it does not).
pub(super) fn report(project: &ProjectConfig, args: ReportArgs) -> Result<ExitCode, Failure> {
    let store = open_existing(project, &args.store)?;
    let run = store.resolve(&args.run).map_err(query_failure)?;
    let history =
        history_of(&store, &run.run_id, args.baseline.as_deref()).map_err(query_failure)?;
    let detail = store.detail(run).map_err(|e| query_failure(e.into()))?;
    let report = from_store::run_report(&detail);
    let input = ReportInput {
        git: detail.run.git.as_ref().map(GitFacts::of),
        command_line: from_store::rerun_command(&detail.run),
        provenance: Provenance::Stored,
        report_url: report_url_from_env(),
        ..ReportInput::new(&report, detail.run.target.display().to_string())
    }
    .with_history(history);
    let html = args
        .html
        .unwrap_or_else(|| project.reports_dir.join("report.html"));
    let markdown = args
        .markdown
        .unwrap_or_else(|| project.reports_dir.join("report.md"));
    let written = write_human_reports(&input, Some(&html), Some(&markdown));
    if let Some(e) = written.into_iter().find_map(Result::err) {
        return Err(Failure::Infra(format!("cannot write the reports: {e}")));
    }
    println!(
        "run {}: {} and {}",
        report.run_id,
        html.display(),
        markdown.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn prune(
    project: &ProjectConfig,
    arg: &StoreArg,
    keep: usize,
) -> Result<ExitCode, Failure> {
    let mut store = open_existing(project, arg)?;
    let deleted = store.prune(keep).map_err(|e| query_failure(e.into()))?;
    println!("deleted {deleted} run(s); {keep} newest kept at most");
    Ok(ExitCode::SUCCESS)
}
