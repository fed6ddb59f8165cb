//! The `phalanx` command line: parses arguments, calls the library, writes the reports and
//! maps every failure to its exit code (DESIGN.md: 0 passed, 1 failed, 2 usage or
//! configuration, 3 infrastructure or suite error, 130/143 interrupted).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use phalanx::cause::Cause;
use phalanx::config::{self, ConfigError, LoadedSuites, ProjectConfig, ProjectSpec, Suite};
use phalanx::engine::any::EngineChoice;
use phalanx::engine::docker::{DockerEngine, absolute_target};
use phalanx::engine::swarm::gaps;
use phalanx::engine::{Engine, EngineKind};
use phalanx::event::{Event, Subscriber};
use phalanx::event_log::EventLog;
use phalanx::exit;
use phalanx::findings::{Gate, Severity};
use phalanx::history;
use phalanx::images;
use phalanx::launch::select::{Backend, Selected, Wanted};
use phalanx::launch::{self, Finished, Followers, Launch, Note, ReportPaths};
use phalanx::plan;
use phalanx::progress::{Progress, ProgressMode};
use phalanx::report::summary;
use phalanx::run::{self, RunPlan};
use phalanx::runner::RunContext;
use phalanx::schedule::ScheduleOptions;
use phalanx::self_image;
use phalanx::stop::{Signal, StopReason, StopSignal};
use phalanx::store::{self, Store, StoreSettings};
use phalanx::target::TargetMode;

/// `phalanx alerts log | test`, and the alerts of a finished run.
#[path = "cli/alerts.rs"]
mod alerts_cli;
/// `phalanx serve` and `phalanx token new` (the server is `phalanx::server`).
#[path = "cli/serve.rs"]
mod serve;
/// `phalanx runs | show | diff | report | prune`: reading the run store back.
#[path = "cli/stored.rs"]
mod stored;
/// `phalanx suppress` and the run's suppressions (CLI side; the logic is `phalanx::verdict`).
#[path = "cli/suppress.rs"]
mod suppress;

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
    /// Check every suite file and report all errors (exit 2 if there is any). With
    /// `--engine swarm`, also list each suite's policy gaps on swarm (accepted by
    /// `[swarm] allow_gaps` or not) and what swarm cannot run: exit 2 if a swarm run would
    /// refuse a suite.
    Validate {
        #[command(flatten)]
        suites: SuitesDir,
        #[command(flatten)]
        engine: EngineArg,
    },
    /// Run the selected suites (all of them without --suite or --tag).
    Run(Box<RunArgs>),
    /// Build the images the selected suites need (all suites without --suite or --tag),
    /// so that runs start at once. Images that exist are left as they are.
    Images(ImagesArgs),
    /// Check what a run needs (engine, storage, free disk, images, debootstrap, reports
    /// folder, config files) and say for each problem the command that fixes it. Exit 0
    /// when a run would work, 3 when it would not.
    Doctor(DoctorArgs),
    /// Accept the risk of one finding: append an entry for it, with a reason, an owner and
    /// an end date, to the suppressions file.
    Suppress(suppress::SuppressArgs),
    /// Remove every container, volume and network of Phalanx runs (with `--engine swarm`,
    /// also their services and the run's images on the manager), including runs still
    /// going on this engine (use --run for one run). Leftovers of killed runs alone are
    /// removed by every `run` and `clean` anyway.
    Clean {
        /// Only what this run left (its id is in run.json and in the container labels).
        #[arg(long = "run", value_name = "RUN_ID")]
        run_id: Option<String>,
        #[command(flatten)]
        engine: EngineArg,
    },
    /// List the recorded runs, newest first.
    Runs {
        #[command(flatten)]
        store: StoreArg,
        /// At most this many runs.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Only runs of this target.
        #[arg(long, value_name = "PATH")]
        target: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// One recorded run's suites and findings.
    Show {
        #[command(flatten)]
        store: StoreArg,
        /// A run id, the start of one, `last` or `last~N`.
        #[arg(value_name = "RUN")]
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Findings of HEAD [default: last] against BASE [default: the run before HEAD of the
    /// same target and selection]: new, fixed and unchanged, matched by fingerprint.
    Diff {
        #[command(flatten)]
        store: StoreArg,
        #[arg(value_name = "BASE")]
        base: Option<String>,
        #[arg(value_name = "HEAD")]
        head: Option<String>,
        #[arg(long)]
        json: bool,
        /// Exit 1 when a new, unsuppressed finding is at or above this severity.
        #[arg(long, value_name = "SEVERITY")]
        fail_on_new: Option<Severity>,
    },
    /// Write report.html and report.md of a recorded run, compared with the run before it
    /// of the same target and selection (or with --baseline), with the target's trend.
    Report(ReportArgs),
    /// The alerts (webhooks) of phalanx.toml's [[alerts]]: what was sent, and a test message.
    Alerts(alerts_cli::AlertsArgs),
    /// Delete all but the newest N runs from the run store, with their findings.
    Prune {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long, value_name = "N")]
        keep: usize,
    },
    /// Serve the API (trigger and read scans of the [projects.NAME] of phalanx.toml, live
    /// events, metrics) and the dashboard, until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// API tokens for `phalanx serve`.
    Token {
        #[command(subcommand)]
        command: serve::TokenCommand,
    },
}

#[derive(Args)]
struct ReportArgs {
    #[command(flatten)]
    store: StoreArg,
    /// A run id, the start of one, `last` or `last~N`.
    #[arg(value_name = "RUN", default_value = "last")]
    run: String,
    /// Compare with this recorded run instead of the one before RUN.
    #[arg(long, value_name = "REF")]
    baseline: Option<String>,
    /// Where the HTML page goes [default: <reports>/report.html].
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// Where the Markdown report goes [default: <reports>/report.md].
    #[arg(long, value_name = "PATH")]
    markdown: Option<PathBuf>,
}

#[derive(Args)]
struct StoreArg {
    /// The run store [default: from phalanx.toml's [store] path, else .phalanx/phalanx.db].
    #[arg(long = "store", value_name = "PATH", env = "PHALANX_STORE")]
    path: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct EngineArg {
    /// Which backend runs the suites: `docker` (one engine) or `swarm` (a Docker Swarm
    /// cluster, through its manager) [default: `engine` in phalanx.toml, else docker].
    ///
    /// `docker`: one Docker engine (DOCKER_HOST or the local socket). `swarm`: a Docker
    /// Swarm manager (DOCKER_HOST) runs each suite attempt as a one-off service on the
    /// cluster's nodes; a suite whose policy swarm cannot enforce is refused unless
    /// phalanx.toml's [swarm] allow_gaps accepts the gap (`phalanx validate --engine swarm`
    /// lists them).
    #[arg(long = "engine", value_enum, value_name = "ENGINE")]
    kind: Option<EngineKind>,
}

impl EngineArg {
    /// The flag, else phalanx.toml's `engine`.
    pub(crate) fn resolve(&self, project: &ProjectConfig) -> EngineKind {
        self.kind.unwrap_or(project.engine)
    }
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
    /// Image builds at once [default: from phalanx.toml, else 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    image_jobs: Option<u32>,
    /// Build Phalanx's own image instead (docker/phalanx/Dockerfile), holding this
    /// statically linked binary and the current directory's suites/, services/ and
    /// docker/: run it from a checkout; scripts/phalanx-image builds the binary and then
    /// this.
    #[arg(long = "self", conflicts_with_all = ["names", "tags", "dir"])]
    self_image: bool,
    /// The tag of the image --self builds [default: phalanx/phalanx:<this version>].
    #[arg(long, value_name = "NAME:TAG", requires = "self_image")]
    image: Option<String>,
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
    #[command(flatten)]
    store: StoreArg,
    /// One JSON document instead of text: `checks` with name, status (ok, warn, fail),
    /// detail and fix.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    suites: SuitesDir,
    #[command(flatten)]
    engine: EngineArg,
    /// Run this suite (repeatable; combined with --tag as a union).
    #[arg(long = "suite", value_name = "NAME")]
    names: Vec<String>,
    /// Run the suites carrying this tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// What the suites inspect, mounted read-only at /target [default: .].
    #[arg(long, value_name = "PATH")]
    target: Option<PathBuf>,
    /// Run the project `[projects.NAME]` of phalanx.toml with its settings: its target,
    /// suites, default selection, fail_on, gate, suppressions, baseline and limits (as
    /// `phalanx serve` runs it). Flags given as well override its defaults.
    #[arg(long, value_name = "NAME")]
    project: Option<String>,
    /// How suites see the target: `bind` mounts this directory (the engine must share this
    /// filesystem), `copy` sends it once into a volume through the engine's API, `auto`
    /// binds only when a probe shows the engine sees the same files [default: from
    /// phalanx.toml, else auto].
    #[arg(long, value_enum, value_name = "MODE")]
    target_mode: Option<TargetMode>,
    /// Concurrency slots (a suite takes `weight` of them) [default: from phalanx.toml, else
    /// the number of CPUs].
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// Image builds at once, apart from the job slots; builds start as the run starts
    /// [default: from phalanx.toml, else 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    image_jobs: Option<u32>,
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
    /// Compare the findings with an earlier run's: its results.sarif or run.json, or a run
    /// of the run store (`last`, `last~N`, a run id or prefix, `branch:NAME`). Each finding
    /// is then new or unchanged, and the baseline's findings that are gone are absent.
    #[arg(long, value_name = "REF")]
    baseline: Option<String>,
    /// Which findings at or above the threshold fail a suite: `all`, or only `new` ones
    /// (not in the --baseline), overriding every suite's `gate` for this run. Without a
    /// baseline every finding is new.
    #[arg(long, value_name = "all|new")]
    gate: Option<Gate>,
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
    #[command(flatten)]
    store: StoreArg,
    /// Run without the run store: the run is not recorded and suites start in plan order.
    #[arg(long)]
    no_store: bool,
    /// Deprecated: durations now live in the run store. Names the old history file to
    /// import into it once [default: .phalanx/history.json].
    #[arg(long, value_name = "PATH", hide = true)]
    history: Option<PathBuf>,
    /// Accepted risks [default: from phalanx.toml, else `suppressions.toml`]. Expiry is
    /// judged against today, or PHALANX_TODAY=YYYY-MM-DD when set (for tests).
    #[arg(long, value_name = "PATH")]
    suppressions: Option<PathBuf>,
    /// Print the resolved plan and run nothing: the suites in start order with their
    /// expected durations, which images exist and which would be built, each suite's
    /// effective policy, and the shard. `--dry-run=json` prints it as one JSON document
    /// (`--json` already names run.json's path). Exit 0, or 2 for what a run would refuse.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "text")]
    dry_run: Option<DryRunFormat>,
    /// Write every event of the run to PATH as it happens, one JSON object per line
    /// (README: "Event stream"). `-` is stdout; everything else then goes to stderr.
    #[arg(long, value_name = "PATH")]
    events: Option<PathBuf>,
}

impl RunArgs {
    /// Whether stdout carries the event stream, so it must carry nothing else.
    fn events_on_stdout(&self) -> bool {
        self.events.as_deref() == Some(Path::new("-"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DryRunFormat {
    Text,
    Json,
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
                ExitCode::from(exit::USAGE)
            }
            Failure::Infra(m) => {
                eprintln!("error: {m}");
                ExitCode::from(exit::INFRA)
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
        Command::Validate { suites, engine } => {
            validate(&project, &suites, engine.resolve(&project))
        }
        Command::Run(args) => run(&project, *args).await,
        Command::Images(args) => build_images(&project, args).await,
        Command::Clean { run_id, engine } => {
            let choice = phalanx::engine::any::EngineChoice {
                kind: engine.resolve(&project),
                swarm: project.swarm.clone(),
            };
            clean(&choice, run_id.as_deref()).await
        }
        Command::Doctor(_) => unreachable!("handled above"),
        Command::Suppress(args) => suppress::command(&project, args),
        Command::Runs {
            store,
            limit,
            target,
            json,
        } => stored::runs(&project, &store, limit, target, json),
        Command::Show { store, run, json } => stored::show(&project, &store, &run, json),
        Command::Diff {
            store,
            base,
            head,
            json,
            fail_on_new,
        } => stored::diff(&project, &store, base, head, json, fail_on_new),
        Command::Report(args) => stored::report(&project, args),
        Command::Prune { store, keep } => stored::prune(&project, &store, keep),
        Command::Alerts(args) => alerts_cli::command(&project, args).await,
        Command::Serve(args) => serve::serve(project, args).await,
        Command::Token { command } => serve::token(&project, command),
    }
}

async fn doctor(args: DoctorArgs) -> ExitCode {
    let options = phalanx::doctor::DoctorOptions {
        project_file: PathBuf::from(PROJECT_FILE),
        suites_dir: args.suites.dir,
        names: args.names,
        tags: args.tags,
        reports_dir: args.reports,
        store: args.store.path,
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

/// The reasons the selection refused suites that are not broken files (a project's
/// limits, the engine's policy gaps): the broken files' errors are printed already.
fn print_refusals(invalid: &[phalanx::outcome::InvalidSuite], printed: &[ConfigError]) {
    let printed: Vec<String> = printed.iter().map(ToString::to_string).collect();
    for error in invalid.iter().flat_map(|i| &i.errors) {
        if !printed.contains(error) {
            eprintln!("error: {error}");
        }
    }
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
    if !loaded.services.is_empty() {
        println!();
        print!("{}", service_table(&loaded.services, &loaded.suites));
    }
    print_config_errors(&loaded.errors);
    Ok(exit_for_errors(&loaded.errors))
}

/// The services, each with the suites that need it: `phalanx list`.
fn service_table(services: &[config::Service], suites: &[Suite]) -> String {
    let rows: Vec<[String; 4]> = services
        .iter()
        .map(|service| {
            let users: Vec<&str> = suites
                .iter()
                .filter(|s| s.needs.contains(&service.name))
                .map(|s| s.name.as_str())
                .collect();
            let users = match users.is_empty() {
                true => "-".to_string(),
                false => users.join(","),
            };
            [
                service.name.clone(),
                phalanx::services::url(service),
                service.image.clone(),
                users,
            ]
        })
        .collect();
    aligned(
        ["SERVICE", "URL", "IMAGE", "NEEDED BY"].map(String::from),
        &rows,
    )
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
    aligned(header, &rows)
}

/// Rows under a header, each column as wide as its widest cell but the last.
fn aligned(header: [String; 4], rows: &[[String; 4]]) -> String {
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
    for row in std::iter::once(&header).chain(rows) {
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

fn validate(
    project: &ProjectConfig,
    dir: &SuitesDir,
    engine: EngineKind,
) -> Result<ExitCode, Failure> {
    let loaded = load_suites(project, dir)?;
    print_config_errors(&loaded.errors);
    let count = loaded.suites.len();
    let services = match loaded.services.len() {
        0 => String::new(),
        n => format!(", {n} service(s)"),
    };
    if loaded.errors.is_empty() {
        println!("{count} suite(s) valid{services}");
    } else {
        eprintln!(
            "{} error(s); {count} suite(s) valid{services}",
            loaded.errors.len()
        );
    }
    let refused = match engine {
        EngineKind::Docker => 0,
        EngineKind::Swarm => swarm_fit(&loaded.suites, &project.swarm),
    };
    Ok(match refused {
        0 => exit_for_errors(&loaded.errors),
        _ => ExitCode::from(exit::USAGE),
    })
}

/// `validate --engine swarm`: each suite's gaps on swarm and what swarm cannot run, on
/// stdout, and how many suites a swarm run would refuse (also said on stderr).
fn swarm_fit(suites: &[Suite], settings: &phalanx::engine::swarm::SwarmSettings) -> usize {
    let mut refused = 0;
    println!("engine swarm:");
    for suite in suites {
        let fit = gaps::fit(suite, settings);
        let verdict = match fit.refused() {
            true => "refused",
            false => "runs",
        };
        println!("  {} ({}): {verdict}", suite.name, suite.source.display());
        for &(gap, allowed) in &fit.gaps {
            match allowed {
                true => println!("    gap {gap}: allowed: {}", gap.consequence()),
                false => println!(
                    "    gap {gap}: not allowed: {}; accept it with {} under [swarm] in {PROJECT_FILE}",
                    gap.consequence(),
                    fit.allow_line(gap)
                ),
            }
        }
        for what in &fit.unsupported {
            println!("    unsupported: {what}");
        }
        refused += usize::from(fit.refused());
    }
    match refused {
        0 => println!("engine swarm: every suite can run"),
        n => eprintln!(
            "error: engine swarm: {n} of {} suite(s) would be refused (see above; `phalanx run --engine swarm` reports them as invalid)",
            suites.len()
        ),
    }
    refused
}

fn exit_for_errors(errors: &[ConfigError]) -> ExitCode {
    ExitCode::from(if errors.is_empty() {
        exit::PASSED
    } else {
        exit::USAGE
    })
}

/// `phalanx images`: exit 0 when every image is there, 3 when a build failed.
async fn build_images(project: &ProjectConfig, args: ImagesArgs) -> Result<ExitCode, Failure> {
    if args.self_image {
        return build_self_image(project, args).await;
    }
    let loaded = load_suites(project, &args.suites)?;
    print_config_errors(&loaded.errors);
    let suites = plan::select(&loaded.suites, &args.names, &args.tags)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let reports = args.reports.unwrap_or_else(|| project.reports_dir.clone());
    let engine = connect().await?;
    let mut jobs = images::jobs(&suites);
    let needed = phalanx::services::needed(&suites, &loaded.services);
    images::add_service_jobs(&mut jobs, &needed);
    let image_jobs = image_jobs(args.image_jobs, project);
    let done = images::build_all(
        Arc::new(engine),
        &jobs,
        &reports,
        image_jobs,
        &mut std::io::stdout(),
    )
    .await;
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
        (true, _) => ExitCode::from(exit::INFRA),
        (false, false) => ExitCode::from(exit::USAGE),
        (false, true) => ExitCode::from(exit::PASSED),
    })
}

/// `phalanx images --self`: Phalanx's own image from this binary and the checkout in the
/// current directory. Exit 0 when it is there, 3 when the build failed.
async fn build_self_image(project: &ProjectConfig, args: ImagesArgs) -> Result<ExitCode, Failure> {
    let binary = std::env::current_exe()
        .map_err(|e| Failure::Infra(format!("cannot find this executable: {e}")))?;
    let image = args.image.unwrap_or_else(self_image::default_image);
    let checkout = std::env::current_dir()
        .map_err(|e| Failure::Infra(format!("cannot read the current directory: {e}")))?;
    let staged =
        self_image::stage(&checkout, &binary, &image).map_err(|e| Failure::Usage(e.to_string()))?;
    let reports = args.reports.unwrap_or_else(|| project.reports_dir.clone());
    let engine = connect().await?;
    let jobs = [staged.job.clone()];
    // One image: a single build slot.
    let done =
        images::build_all(Arc::new(engine), &jobs, &reports, 1, &mut std::io::stdout()).await;
    let failed = images::tally(&done)["failed"] > 0;
    Ok(ExitCode::from(if failed {
        exit::INFRA
    } else {
        exit::PASSED
    }))
}

async fn clean(
    choice: &phalanx::engine::any::EngineChoice,
    run_id: Option<&str>,
) -> Result<ExitCode, Failure> {
    let engine = phalanx::engine::any::AnyEngine::connect(choice)
        .await
        .map_err(|error| Failure::Infra(Cause::NoEngine { error }.to_string()))?;
    launch::remove_orphans(&engine, &|note| eprintln!("{note}")).await;
    let removed = engine
        .remove_labelled(run_id)
        .await
        .map_err(|e| Failure::Infra(e.to_string()))?;
    let what = match choice.kind {
        EngineKind::Docker => "container(s)",
        EngineKind::Swarm => "service(s) and container(s)",
    };
    println!("removed {removed} {what} left by Phalanx runs, with their volumes and networks");
    Ok(ExitCode::SUCCESS)
}

async fn connect() -> Result<DockerEngine, Failure> {
    DockerEngine::connect()
        .await
        .map_err(|error| Failure::Infra(Cause::NoEngine { error }.to_string()))
}

async fn run(config: &ProjectConfig, args: RunArgs) -> Result<ExitCode, Failure> {
    let project = args
        .project
        .as_deref()
        .map(|name| find_project(config, name, &args))
        .transpose()?;
    let suites_dir = match (project, &args.suites.dir) {
        (Some(project), _) => project.suites_dir.clone(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => config.suites_dir.clone(),
    };
    let loaded =
        config::load_suites(&suites_dir, config).map_err(|e| Failure::Usage(e.to_string()))?;
    print_config_errors(&loaded.errors);
    let services = loaded.services.clone();
    let engine_kind = args.engine.resolve(config);
    let wanted = Wanted {
        names: args.names.clone(),
        tags: args.tags.clone(),
        partition: args.partition,
        fail_on: args.fail_on,
        gate: args.gate,
    };
    let wanted = match project {
        Some(project) => wanted.over_project(project),
        None => wanted,
    };
    let Selected {
        suites,
        invalid: invalid_suites,
    } = launch::select::select(
        &loaded,
        &wanted,
        project,
        Backend::of(engine_kind, &config.swarm),
    )
    .map_err(|e| Failure::Usage(e.to_string()))?;
    print_refusals(&invalid_suites, &loaded.errors);
    if let Some(partition) = args.partition
        && suites.is_empty()
        && invalid_suites.is_empty()
    {
        eprintln!("note: shard {partition} holds none of the selected suites; nothing to run");
    }
    phalanx::secrets::protect(&suites);
    alerts_cli::protect(config);
    let target_arg = match project {
        Some(project) => project.target.clone(),
        None => args.target.clone().unwrap_or_else(|| PathBuf::from(".")),
    };
    let target = absolute_target(&target_arg)
        .map_err(|e| Failure::Usage(format!("--target {}: {e}", target_arg.display())))?;
    let baseline_ref = args
        .baseline
        .clone()
        .or_else(|| project.and_then(|p| p.baseline.clone()));
    let baseline = match baseline_ref.as_deref() {
        // Looked up in the store as it is before this run, which is recorded at its end.
        Some(_) if !args.no_store => {
            let store = Store::open_existing(&store_settings(config, &args.store).path).ok();
            load_baseline(baseline_ref.as_deref(), &target, &suites, store.as_ref())?
        }
        reference => load_baseline(reference, &target, &suites, None)?,
    };
    let suppressions_file = args
        .suppressions
        .clone()
        .or_else(|| project.and_then(|p| p.suppressions.clone()));
    let project_reports = project.and_then(|p| p.reports_dir.clone());
    let project = config;
    let dir = args
        .reports
        .clone()
        .or(project_reports)
        .unwrap_or_else(|| project.reports_dir.clone());
    let paths = report_paths(&args, dir);
    let jobs = args
        .jobs
        .map(|j| j as usize)
        .or(project.jobs)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (mut recorder, history) = open_store(project, &args);
    let facts = store::RunFacts {
        project: args.project.clone(),
        ..store::RunFacts::gather(&target, store::Selection::new(&wanted.names, &wanted.tags))
    };
    let run_id = run::new_run_id();
    let plan = RunPlan {
        run_id: run_id.clone(),
        context: RunContext {
            run_id,
            target,
            target_volume: None,
            reports_dir: paths.dir.clone(),
            suppressions: suppress::load(project, suppressions_file.as_deref())?,
            baseline,
            placement: project.swarm.placement.clone(),
        },
        options: ScheduleOptions {
            jobs,
            image_jobs: image_jobs(args.image_jobs, project),
            fail_fast: args.fail_fast,
            shared_slots: None,
        },
        suites,
        invalid_suites,
        history,
        partition: args.partition.map(|p| p.to_string()),
        services,
    };
    if let Some(format) = args.dry_run {
        return Ok(dry_run(&plan, format).await);
    }
    let progress_mode = args.progress.resolve();
    let launch = Launch {
        paths,
        facts,
        target_mode: args.target_mode.unwrap_or(project.target_mode),
        target_max_size: project.target_max_size,
        show_copy_progress: progress_mode == ProgressMode::Bar,
        engine: EngineChoice {
            kind: engine_kind,
            swarm: config.swarm.clone(),
        },
        plan,
    };
    let engine = launch::connect(&launch.engine, &launch.plan.suites, &launch.paths.dir)
        .await
        .map(Arc::new);
    let followers = followers(&args, launch.plan.suites.len());
    let stop = StopSignal::default();
    let signals = tokio::spawn(stop_on_signals(stop.clone()));
    let say = move |note: Note| {
        if !matches!(note, Note::Detail(_)) || progress_mode == ProgressMode::Plain {
            eprintln!("{note}");
        }
    };
    let finished = launch::run(launch, engine, followers, stop, &mut recorder, &say).await;
    signals.abort();
    print_summary(&finished, args.events_on_stdout());
    // After the reports and the summary: delivery never holds them up, nor changes the
    // exit code.
    alerts_cli::after_run(config, &finished.report, recorder.store(), &finished.facts).await;
    match finished.write_errors.first() {
        Some(e) => Err(Failure::Infra(format!("cannot write the reports: {e}"))),
        None => Ok(ExitCode::from(finished.report.exit_code())),
    }
}

/// `--project NAME`'s settings. The project names its target and its suites, so a run of
/// it cannot be pointed elsewhere: `--target` and `--suites` with it are usage errors.
fn find_project<'a>(
    config: &'a ProjectConfig,
    name: &str,
    args: &RunArgs,
) -> Result<&'a ProjectSpec, Failure> {
    let Some(project) = config.projects.get(name) else {
        let known: Vec<&str> = config.projects.keys().map(String::as_str).collect();
        return Err(Failure::Usage(match known.is_empty() {
            true => {
                format!("unknown project `{name}`: {PROJECT_FILE} has no [projects.NAME] table")
            }
            false => format!(
                "unknown project `{name}`; {PROJECT_FILE} has {}",
                known.join(", ")
            ),
        }));
    };
    for (given, flag) in [
        (args.target.is_some(), "--target"),
        (args.suites.dir.is_some(), "--suites"),
    ] {
        if given {
            return Err(Failure::Usage(format!(
                "{flag} cannot be combined with --project {name}: the project sets it in {PROJECT_FILE}"
            )));
        }
    }
    Ok(project)
}

/// Where `phalanx run`'s reports go: each file's flag, else its usual name in `dir`.
fn report_paths(args: &RunArgs, dir: PathBuf) -> ReportPaths {
    let usual = ReportPaths::under(dir);
    let given = |flag: &Option<PathBuf>, usual: PathBuf| flag.clone().unwrap_or(usual);
    ReportPaths {
        junit: given(&args.junit, usual.junit),
        json: given(&args.json, usual.json),
        sarif: given(&args.sarif, usual.sarif),
        html: (!args.no_html).then(|| given(&args.html, usual.html.unwrap_or_default())),
        markdown: (!args.no_markdown)
            .then(|| given(&args.markdown, usual.markdown.unwrap_or_default())),
        dir: usual.dir,
    }
}

/// Image builds at once: `--image-jobs`, else `image_jobs` in phalanx.toml, else the default.
fn image_jobs(flag: Option<u32>, project: &ProjectConfig) -> usize {
    flag.map(|n| n as usize)
        .or(project.image_jobs)
        .unwrap_or(phalanx::builds::DEFAULT_IMAGE_JOBS)
}

/// `run --dry-run`: what the run would do, from the plan and what the engine (if it
/// answers) says of each image; nothing is started, written or recorded.
async fn dry_run(plan: &RunPlan, format: DryRunFormat) -> ExitCode {
    use phalanx::dry_run::{DryRun, ImageState, Inputs};
    let engine = DockerEngine::connect().await.ok();
    let mut images = std::collections::HashMap::new();
    for suite in &plan.suites {
        if images.contains_key(&suite.image) {
            continue;
        }
        let state = match &engine {
            None => ImageState::Unknown,
            Some(engine) => match engine.image_exists(&suite.image).await {
                Ok(true) => ImageState::Present,
                Ok(false) if suite.build.is_some() => ImageState::WouldBuild,
                Ok(false) => ImageState::Missing,
                Err(_) => ImageState::Unknown,
            },
        };
        images.insert(suite.image.clone(), state);
    }
    let order = plan::longest_first(&plan.suites, &plan.history);
    let expected = |suite: &Suite| plan.history.expected(suite);
    let dry = DryRun::new(Inputs {
        suites: &plan.suites,
        order: &order,
        expected: &expected,
        images: &images,
        jobs: plan.options.jobs,
        target: plan.context.target.clone(),
        partition: plan.partition.clone(),
        invalid_suites: plan.invalid_suites.clone(),
    });
    match format {
        DryRunFormat::Text => print!("{}", dry.to_text()),
        DryRunFormat::Json => match serde_json::to_string_pretty(&dry) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("error: cannot write the plan as JSON: {e}"),
        },
    }
    ExitCode::from(dry.exit_code())
}

/// The baseline `--baseline` names; one that names nothing is a usage error (exit 2),
/// never an empty baseline. `gate = "new"` without one gates on every finding, as `all`.
fn load_baseline(
    reference: Option<&str>,
    target: &Path,
    suites: &[Suite],
    store: Option<&Store>,
) -> Result<Option<Arc<phalanx::verdict::Baseline>>, Failure> {
    use phalanx::verdict::{BaselineRef, baseline};
    let Some(text) = reference else {
        if suites.iter().any(|s| s.results.gate == Gate::New) {
            eprintln!(
                "warning: gate new without --baseline: every finding counts as new, as with gate all"
            );
        }
        return Ok(None);
    };
    let usage = |e: phalanx::verdict::BaselineError| Failure::Usage(e.to_string());
    let reference = BaselineRef::parse(text).map_err(usage)?;
    let store = store.map(|s| s as &dyn phalanx::verdict::BaselineStore);
    let found = baseline::resolve(&reference, target, store).map_err(usage)?;
    Ok(Some(Arc::new(found)))
}

/// Who follows the run: the progress display, and the event log when asked for.
fn followers(args: &RunArgs, total: usize) -> Followers {
    let progress = Arc::new(Progress::new(args.progress, total));
    let display: Box<dyn Subscriber> = Box::new(move |event: &Event| progress.handle(event));
    Followers {
        always: event_log(args).into_iter().collect(),
        display: vec![display],
    }
}

fn event_log(args: &RunArgs) -> Option<Box<dyn Subscriber>> {
    match args.events.as_deref() {
        None => None,
        Some(path) if path == Path::new("-") => {
            Some(Box::new(EventLog::new(std::io::stdout(), "on stdout")))
        }
        // Like a write error later: the run goes on without its event log.
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => {
                let name = path.display().to_string();
                Some(Box::new(EventLog::new(
                    std::io::LineWriter::new(file),
                    name,
                )))
            }
            Err(e) => {
                eprintln!(
                    "warning: cannot create the event log {}: {e}; the run goes on without it",
                    path.display()
                );
                None
            }
        },
    }
}

/// The run store and the durations it expects; a store that cannot be used only costs
/// the ordering and the record, never the run.
fn open_store(project: &ProjectConfig, args: &RunArgs) -> (store::RunRecorder, history::History) {
    if args.history.is_some() {
        eprintln!(
            "warning: --history is deprecated: durations live in the run store, which imports that file once"
        );
    }
    if args.no_store {
        return (store::RunRecorder::off(), history::History::default());
    }
    let old = args
        .history
        .clone()
        .unwrap_or_else(|| history::DEFAULT_PATH.into());
    let opened = store::RunRecorder::open(&store_settings(project, &args.store), &old);
    for warning in opened.warnings {
        eprintln!("warning: {warning}");
    }
    (opened.recorder, opened.history)
}

fn store_settings(project: &ProjectConfig, arg: &StoreArg) -> StoreSettings {
    StoreSettings {
        path: arg
            .path
            .clone()
            .unwrap_or_else(|| project.store.path.clone()),
        keep_runs: project.store.keep_runs,
    }
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
        _ = int.recv() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    };
    stop.stop(StopReason::Interrupted { signal });
}

fn print_summary(finished: &Finished, on_stderr: bool) {
    let table = summary::summary_table(&finished.report, &finished.paths.files());
    if on_stderr {
        eprintln!("{table}");
    } else {
        println!("{table}");
    }
}
