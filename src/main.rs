//! The `phalanx` command line: parses arguments, calls the library, writes the reports and
//! maps every failure to its exit code (DESIGN.md: 0 passed, 1 failed, 2 usage or
//! configuration, 3 infrastructure or suite error, 130/143 interrupted).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use phalanx::config::{self, ConfigError, LoadedSuites, ProjectConfig, Suite};
use phalanx::engine::Engine;
use phalanx::engine::docker::{DockerEngine, absolute_target};
use phalanx::findings::Severity;
use phalanx::history::{self, History};
use phalanx::images;
use phalanx::outcome::{InvalidSuite, RunReport};
use phalanx::plan;
use phalanx::progress::{Progress, ProgressMode};
use phalanx::report::{ReportInput, json, junit, sarif, summary, write_html, write_markdown};
use phalanx::run::{self, RunPlan};
use phalanx::runner::RunContext;
use phalanx::schedule::{ScheduleOptions, StopReason, StopSignal};

const PROJECT_FILE: &str = "phalanx.toml";

/// Run security test suites in parallel, each in its own hardened Docker container, and
/// report what they found as JUnit XML, merged SARIF, JSON and a readable summary.
#[derive(Parser)]
#[command(name = "phalanx", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the suites: name, tags, image and description.
    List {
        #[command(flatten)]
        suites: SuitesDir,
        /// Only suites carrying this tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// Check every suite file and report all errors (exit 2 if there is any).
    Validate {
        #[command(flatten)]
        suites: SuitesDir,
    },
    /// Run the selected suites (all of them without --suite or --tag).
    Run(RunArgs),
    /// Build the images the selected suites need (all suites without --suite or --tag),
    /// so that runs start at once. Images that exist are left as they are.
    Images(ImagesArgs),
    /// Remove every container, volume and network of Phalanx runs, including runs still
    /// going on this engine (use --run for one run). Leftovers of killed runs alone are
    /// removed by every `run` and `clean` anyway.
    /// Check what a run needs (engine, storage, free disk, images, debootstrap, reports
    /// folder, config files) and say for each problem the command that fixes it. Exit 0
    /// when a run would work, 3 when it would not.
    Doctor(DoctorArgs),
    Clean {
        /// Only what this run left (its id is in run.json and in the container labels).
        #[arg(long = "run", value_name = "RUN_ID")]
        run_id: Option<String>,
    },
}

#[derive(Args)]
struct SuitesDir {
    /// Folder of suite files [default: from phalanx.toml, else `suites`].
    #[arg(long = "suites", value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args)]
struct ImagesArgs {
    #[command(flatten)]
    suites: SuitesDir,
    /// The images of this suite (repeatable; combined with --tag as a union).
    #[arg(long = "suite", value_name = "NAME")]
    names: Vec<String>,
    /// The images of the suites carrying this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Folder whose logs/ receives the build logs [default: from phalanx.toml, else `reports`].
    #[arg(long, value_name = "DIR")]
    reports: Option<PathBuf>,
}

#[derive(Args)]
struct DoctorArgs {
    #[command(flatten)]
    suites: SuitesDir,
    /// Check for this suite (repeatable; combined with --tag as a union).
    #[arg(long = "suite", value_name = "NAME")]
    names: Vec<String>,
    /// Check for the suites carrying this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// The reports folder a run would use [default: from phalanx.toml, else `reports`].
    #[arg(long, value_name = "DIR")]
    reports: Option<PathBuf>,
    /// One JSON document instead of text: `checks` with name, status (ok, warn, fail),
    /// detail and fix.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    suites: SuitesDir,
    /// Run this suite (repeatable; combined with --tag as a union).
    #[arg(long = "suite", value_name = "NAME")]
    names: Vec<String>,
    /// Run the suites carrying this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// What the suites inspect, mounted read-only at /target.
    #[arg(long, value_name = "PATH", default_value = ".")]
    target: PathBuf,
    /// Concurrency slots (a suite takes `weight` of them) [default: from phalanx.toml, else
    /// the number of CPUs].
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// Folder for logs and collected results [default: from phalanx.toml, else `reports`].
    #[arg(long, value_name = "DIR")]
    reports: Option<PathBuf>,
    /// JUnit XML report [default: <reports>/junit.xml].
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// JSON report of the run [default: <reports>/run.json].
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Merged SARIF log of every SARIF suite [default: <reports>/results.sarif].
    #[arg(long, value_name = "PATH")]
    sarif: Option<PathBuf>,
    /// The release manager's self-contained HTML page [default: <reports>/report.html].
    #[arg(long, value_name = "PATH", conflicts_with = "no_html")]
    html: Option<PathBuf>,
    /// Do not write the HTML report.
    #[arg(long)]
    no_html: bool,
    /// Markdown summary for a merge-request note or job summary, at most 60 KB
    /// [default: <reports>/report.md]; links to the HTML at $PHALANX_REPORT_URL when set.
    #[arg(long, value_name = "PATH", conflicts_with = "no_markdown")]
    markdown: Option<PathBuf>,
    /// Do not write the Markdown report.
    #[arg(long)]
    no_markdown: bool,
    /// Fail suites on unsuppressed findings at or above this severity (critical, high,
    /// medium, low, info), overriding every suite's `fail_on` for this run.
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<Severity>,
    /// Stop starting suites, and stop the running ones, after the first failure.
    #[arg(long)]
    fail_fast: bool,
    /// Progress display: bars on a terminal, one line per event otherwise.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Run only shard M of N of the selected suites (by a stable hash of each name), so
    /// that N CI jobs given 1/N … N/N split them.
    #[arg(long, value_name = "hash:M/N")]
    partition: Option<plan::Partition>,
    /// Suite durations of earlier runs, used to start the longest suites first, and
    /// updated after the run.
    #[arg(long, value_name = "PATH", default_value = history::DEFAULT_PATH)]
    history: PathBuf,
}

/// A failure that ends the command, with the exit code it maps to.
#[derive(Debug)]
enum Failure {
    /// Usage or configuration error (exit 2).
    Usage(String),
    /// Infrastructure error (exit 3).
    Infra(String),
}

impl Failure {
    fn report(&self) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("error: {m}");
                ExitCode::from(2)
            }
            Failure::Infra(m) => {
                eprintln!("error: {m}");
                ExitCode::from(3)
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return Failure::Infra(format!("cannot start the async runtime: {e}")).report(),
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

async fn dispatch(command: Command) -> Result<ExitCode, Failure> {
    // Doctor reports a broken phalanx.toml as one of its findings.
    let command = match command {
        Command::Doctor(args) => return Ok(doctor(args).await),
        other => other,
    };
    let project = load_project()?;
    match command {
        Command::List { suites, tags } => list(&project, &suites, &tags),
        Command::Validate { suites } => validate(&project, &suites),
        Command::Run(args) => run(&project, args).await,
        Command::Images(args) => build_images(&project, args).await,
        Command::Clean { run_id } => clean(run_id.as_deref()).await,
        Command::Doctor(_) => unreachable!("handled above"),
    }
}

async fn doctor(args: DoctorArgs) -> ExitCode {
    let options = phalanx::doctor::DoctorOptions {
        project_file: PathBuf::from(PROJECT_FILE),
        suites_dir: args.suites.dir,
        names: args.names,
        tags: args.tags,
        reports_dir: args.reports,
    };
    let diagnosis = phalanx::doctor::diagnose(&options).await;
    match args.json {
        true => println!("{}", diagnosis.to_json()),
        false => print!("{}", diagnosis.render()),
    }
    ExitCode::from(diagnosis.exit_code())
}

fn load_project() -> Result<ProjectConfig, Failure> {
    config::load_project(Path::new(PROJECT_FILE)).map_err(|e| Failure::Usage(e.to_string()))
}

fn load_suites(project: &ProjectConfig, dir: &SuitesDir) -> Result<LoadedSuites, Failure> {
    let dir = dir
        .dir
        .clone()
        .unwrap_or_else(|| project.suites_dir.clone());
    config::load_suites(&dir, project).map_err(|e| Failure::Usage(e.to_string()))
}

fn print_config_errors(errors: &[ConfigError]) {
    for error in errors {
        eprintln!("error: {error}");
    }
}

fn list(project: &ProjectConfig, dir: &SuitesDir, tags: &[String]) -> Result<ExitCode, Failure> {
    let loaded = load_suites(project, dir)?;
    let shown: Vec<&Suite> = loaded
        .suites
        .iter()
        .filter(|s| tags.is_empty() || s.tags.iter().any(|t| tags.contains(t)))
        .collect();
    print!("{}", suite_table(&shown));
    print_config_errors(&loaded.errors);
    Ok(exit_for_errors(&loaded.errors))
}

fn suite_table(suites: &[&Suite]) -> String {
    let rows: Vec<[String; 4]> = suites
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.tags.join(","),
                s.image.clone(),
                s.description.clone(),
            ]
        })
        .collect();
    let header = ["NAME", "TAGS", "IMAGE", "DESCRIPTION"].map(String::from);
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn validate(project: &ProjectConfig, dir: &SuitesDir) -> Result<ExitCode, Failure> {
    let loaded = load_suites(project, dir)?;
    print_config_errors(&loaded.errors);
    let count = loaded.suites.len();
    if loaded.errors.is_empty() {
        println!("{count} suite(s) valid");
    } else {
        eprintln!("{} error(s); {count} suite(s) valid", loaded.errors.len());
    }
    Ok(exit_for_errors(&loaded.errors))
}

fn exit_for_errors(errors: &[ConfigError]) -> ExitCode {
    ExitCode::from(if errors.is_empty() { 0 } else { 2 })
}

/// `phalanx images`: exit 0 when every image is there, 3 when a build failed.
async fn build_images(project: &ProjectConfig, args: ImagesArgs) -> Result<ExitCode, Failure> {
    let loaded = load_suites(project, &args.suites)?;
    print_config_errors(&loaded.errors);
    let suites = plan::select(&loaded.suites, &args.names, &args.tags)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let reports = args.reports.unwrap_or_else(|| project.reports_dir.clone());
    let engine = connect().await?;
    let jobs = images::jobs(&suites);
    let done = images::build_all(engine.client(), &jobs, &reports, &mut std::io::stdout()).await;
    let counts = images::tally(&done);
    println!(
        "{} image(s): {} built, {} present, {} failed",
        done.len(),
        counts["built"],
        counts["present"],
        counts["failed"]
    );
    let failed = counts["failed"] > 0;
    Ok(match (failed, loaded.errors.is_empty()) {
        (true, _) => ExitCode::from(3),
        (false, false) => ExitCode::from(2),
        (false, true) => ExitCode::SUCCESS,
    })
}

async fn clean(run_id: Option<&str>) -> Result<ExitCode, Failure> {
    let engine = connect().await?;
    remove_orphans(&engine).await;
    let removed = engine
        .remove_labelled(run_id)
        .await
        .map_err(|e| Failure::Infra(e.to_string()))?;
    println!(
        "removed {removed} container(s) left by Phalanx runs, with their volumes and networks"
    );
    Ok(ExitCode::SUCCESS)
}

/// Removes what killed Phalanx processes left on the engine (never a live run's objects)
/// and says how many containers that was; a failure only warns.
async fn remove_orphans(engine: &DockerEngine) {
    match phalanx::engine::orphans::remove_orphans(engine.client()).await {
        Ok(0) => {}
        Ok(n) => eprintln!(
            "phalanx: removed {n} container(s) left by earlier Phalanx runs that were killed"
        ),
        Err(e) => eprintln!("phalanx: warning: could not look for leftovers of killed runs: {e}"),
    }
}

async fn connect() -> Result<DockerEngine, Failure> {
    DockerEngine::connect().await.map_err(|e| {
        Failure::Infra(format!(
            "{e}. Is the Docker engine running? Set DOCKER_HOST to use another one."
        ))
    })
}

/// The engine, once what every suite needs is known to be there (`doctor::preflight`):
/// a missing prerequisite fails the whole run before any suite starts.
async fn connect_for_run(suites: &[Suite], reports: &Path) -> Result<DockerEngine, Failure> {
    let engine = connect().await?;
    match phalanx::doctor::preflight(&engine, suites, reports).await {
        Ok(()) => Ok(engine),
        Err(missing) => Err(Failure::Infra(missing.to_string())),
    }
}

/// Where the run's report files go.
struct ReportPaths {
    dir: PathBuf,
    junit: PathBuf,
    json: PathBuf,
    sarif: PathBuf,
    /// `None` when turned off (`--no-html`, `--no-markdown`).
    html: Option<PathBuf>,
    markdown: Option<PathBuf>,
    target: PathBuf,
}

async fn run(project: &ProjectConfig, args: RunArgs) -> Result<ExitCode, Failure> {
    let loaded = load_suites(project, &args.suites)?;
    let (suites, invalid_suites) = select(loaded, &args.names, &args.tags)?;
    let (mut suites, invalid_suites) = shard(suites, invalid_suites, args.partition);
    if let Some(fail_on) = args.fail_on {
        for suite in &mut suites {
            suite.results.fail_on = fail_on;
        }
    }
    phalanx::secrets::protect(&suites);
    let target = absolute_target(&args.target)
        .map_err(|e| Failure::Usage(format!("--target {}: {e}", args.target.display())))?;
    let dir = args
        .reports
        .clone()
        .unwrap_or_else(|| project.reports_dir.clone());
    let paths = ReportPaths {
        junit: args.junit.clone().unwrap_or_else(|| dir.join("junit.xml")),
        json: args.json.clone().unwrap_or_else(|| dir.join("run.json")),
        sarif: args
            .sarif
            .clone()
            .unwrap_or_else(|| dir.join("results.sarif")),
        html: (!args.no_html).then(|| args.html.clone().unwrap_or_else(|| dir.join("report.html"))),
        markdown: (!args.no_markdown).then(|| {
            args.markdown
                .clone()
                .unwrap_or_else(|| dir.join("report.md"))
        }),
        target: target.clone(),
        dir,
    };
    let jobs = args
        .jobs
        .map(|j| j as usize)
        .or(project.jobs)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let run_id = run::new_run_id();
    let plan = RunPlan {
        run_id: run_id.clone(),
        context: RunContext {
            run_id,
            target,
            reports_dir: paths.dir.clone(),
        },
        options: ScheduleOptions {
            jobs,
            fail_fast: args.fail_fast,
        },
        suites,
        invalid_suites,
        history: load_history(&args.history),
        partition: args.partition.map(|p| p.to_string()),
    };
    let report = match connect_for_run(&plan.suites, &paths.dir).await {
        Ok(engine) => {
            remove_orphans(&engine).await;
            let mut report = execute(engine, plan, args.progress).await;
            if let Some(note) = phalanx::engine::lost::after_run(&mut report).await {
                eprintln!("error: {note}");
            }
            report
        }
        Err(Failure::Infra(message)) => unreachable_report(plan, &message),
        Err(other) => return Err(other),
    };
    if let Some(warning) = history::record_run(&args.history, &report.suites) {
        eprintln!("warning: {warning}");
    }
    write_reports(&report, &paths)?;
    Ok(ExitCode::from(report.exit_code() as u8))
}

/// Splits the suites into what to run and the broken files that were asked for.
fn select(
    loaded: LoadedSuites,
    names: &[String],
    tags: &[String],
) -> Result<(Vec<Suite>, Vec<InvalidSuite>), Failure> {
    print_config_errors(&loaded.errors);
    let invalid = invalid_suites(&loaded.errors, names, tags);
    // Names of broken files are known, just not runnable: they are not "unknown suites".
    let runnable_names: Vec<String> = names
        .iter()
        .filter(|n| !invalid.iter().any(|i| &i.name == *n))
        .cloned()
        .collect();
    if !names.is_empty() && runnable_names.is_empty() && tags.is_empty() {
        return Ok((Vec::new(), invalid));
    }
    match plan::select(&loaded.suites, &runnable_names, tags) {
        Ok(suites) => Ok((suites, invalid)),
        Err(e) => Err(Failure::Usage(e.to_string())),
    }
}

/// Keeps what belongs to this CI shard, broken suite files included, so that every suite
/// is reported by exactly one shard.
fn shard(
    suites: Vec<Suite>,
    invalid: Vec<InvalidSuite>,
    partition: Option<plan::Partition>,
) -> (Vec<Suite>, Vec<InvalidSuite>) {
    let Some(partition) = partition else {
        return (suites, invalid);
    };
    let selected = suites.len() + invalid.len();
    let suites = partition.apply(suites);
    let invalid: Vec<InvalidSuite> = invalid
        .into_iter()
        .filter(|i| partition.contains(&i.name))
        .collect();
    if suites.is_empty() && invalid.is_empty() {
        eprintln!(
            "note: shard {partition} holds none of the {selected} selected suite(s); nothing to run"
        );
    }
    (suites, invalid)
}

/// The history of earlier runs; one that cannot be used only costs the ordering.
fn load_history(path: &Path) -> History {
    let (history, warning) = History::load(path);
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    history
}

/// The broken suite files the user asked for: all of them when nothing is selected, else
/// those named with --suite (a broken file's tags cannot be trusted).
fn invalid_suites(errors: &[ConfigError], names: &[String], tags: &[String]) -> Vec<InvalidSuite> {
    let mut invalid: Vec<InvalidSuite> = Vec::new();
    for error in errors {
        let Some(name) = error.suite.clone() else {
            continue;
        };
        let asked = (names.is_empty() && tags.is_empty()) || names.contains(&name);
        if !asked {
            continue;
        }
        match invalid.iter_mut().find(|i| i.file == error.file) {
            Some(known) => known.errors.push(error.to_string()),
            None => invalid.push(InvalidSuite {
                name,
                file: error.file.clone(),
                errors: vec![error.to_string()],
            }),
        }
    }
    invalid
}

async fn execute(engine: DockerEngine, plan: RunPlan, mode: ProgressMode) -> RunReport {
    let progress = Arc::new(Progress::new(mode, plan.suites.len()));
    let stop = StopSignal::default();
    let signals = tokio::spawn(stop_on_signals(stop.clone()));
    let shown = progress.clone();
    let report = run::execute(Arc::new(engine), plan, stop, move |event| {
        shown.handle(event)
    })
    .await;
    signals.abort();
    progress.finish();
    report
}

/// The first SIGINT or SIGTERM stops the run; the reports are still written.
async fn stop_on_signals(stop: StopSignal) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let signal = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    stop.stop(StopReason::Interrupted { signal });
}

/// The report of a run that started no suite (no engine, a missing prerequisite): every
/// suite an error naming `message`, which is printed once, whole.
fn unreachable_report(plan: RunPlan, message: &str) -> RunReport {
    eprintln!("error: {message}");
    let now = chrono::Utc::now();
    RunReport {
        run_id: plan.run_id,
        phalanx_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: now,
        finished_at: now,
        interrupted: None,
        suites: run::all_errored(&plan.suites, message),
        invalid_suites: plan.invalid_suites,
        partition: plan.partition,
    }
}

/// Writes every report, even when an earlier one failed, then the summary; the first
/// failure is returned.
fn write_reports(report: &RunReport, paths: &ReportPaths) -> Result<(), Failure> {
    let input = ReportInput::for_run(report, &paths.target, Some(&paths.sarif));
    let (html, markdown) = (paths.html.as_deref(), paths.markdown.as_deref());
    let written = [
        junit::write_junit(report, &paths.junit),
        sarif::write_sarif(report, &paths.sarif),
        json::write_json(report, &paths.json),
        html.map_or(Ok(()), |p| write_html(&input, p)),
        markdown.map_or(Ok(()), |p| write_markdown(&input, p)),
    ];
    let mut files = vec![
        paths.junit.as_path(),
        paths.sarif.as_path(),
        paths.json.as_path(),
    ];
    files.extend(html.into_iter().chain(markdown));
    println!("{}", summary::summary_table(report, &files));
    match written.into_iter().find_map(Result::err) {
        Some(e) => Err(Failure::Infra(format!("cannot write the reports: {e}"))),
        None => Ok(()),
    }
}
