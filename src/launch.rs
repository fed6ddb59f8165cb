//! One run from its plan to its reports and its record: the part of `phalanx run` that
//! `phalanx serve` shares, so that a run started either way is the same run. Nothing here
//! prints: what a person should read comes back as [`Note`]s, and where they go is the
//! caller's choice.

pub mod select;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cause::Cause;
use crate::config::Suite;
use crate::engine::Engine;
use crate::engine::any::{AnyEngine, EngineChoice};
use crate::event::Subscriber;
use crate::outcome::RunReport;
use crate::report::from_store::RunHistory;
use crate::report::input::ReportInput;
use crate::report::{ReportError, html, json, junit, markdown, sarif};
use crate::run::{self, RunPlan};
use crate::stop::StopSignal;
use crate::store::{QueryError, RunFacts, RunRecorder, Store};
use crate::target::{TargetMode, TargetRequest};

/// Where a run's report files go.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPaths {
    /// Logs and collected results go under it too.
    pub dir: PathBuf,
    pub junit: PathBuf,
    pub json: PathBuf,
    pub sarif: PathBuf,
    /// `None` when turned off (`--no-html`, `--no-markdown`).
    pub html: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
}

impl ReportPaths {
    /// Every report in `dir` under its usual name.
    pub fn under(dir: PathBuf) -> ReportPaths {
        ReportPaths {
            junit: dir.join("junit.xml"),
            json: dir.join("run.json"),
            sarif: dir.join("results.sarif"),
            html: Some(dir.join("report.html")),
            markdown: Some(dir.join("report.md")),
            dir,
        }
    }

    /// The files written, in the order the summary lists them.
    pub fn files(&self) -> Vec<&Path> {
        let machine = [&self.junit, &self.sarif, &self.json].map(PathBuf::as_path);
        let human = self.html.iter().chain(&self.markdown).map(PathBuf::as_path);
        machine.into_iter().chain(human).collect()
    }
}

/// A line for the person behind the run: the CLI prints it to stderr, the server logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Worth saying whatever the display.
    Info(String),
    /// Worth saying where progress is shown line by line (a terminal's bars show it).
    Detail(String),
    Warning(String),
    Error(String),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Info(text) | Note::Detail(text) => write!(f, "phalanx: {text}"),
            Note::Warning(text) => write!(f, "warning: {text}"),
            Note::Error(text) => write!(f, "error: {text}"),
        }
    }
}

/// Where a run's notes go.
pub type Notes<'a> = &'a (dyn Fn(Note) + Send + Sync);

/// A run, planned, with where its reports go and what the store records of it.
pub struct Launch {
    pub plan: RunPlan,
    pub paths: ReportPaths,
    pub facts: RunFacts,
    pub target_mode: TargetMode,
    /// Most bytes a copied target may hold.
    pub target_max_size: u64,
    /// Show a bar while the target is copied (a terminal is watching).
    pub show_copy_progress: bool,
    /// The back end the suites run on.
    pub engine: EngineChoice,
}

/// Who follows a run's events.
#[derive(Default)]
pub struct Followers {
    /// Told everything: the event log, the server's live streams, the store's record.
    pub always: Vec<Box<dyn Subscriber>>,
    /// Told only when suites can start: the live display, which would otherwise repeat
    /// for every suite the one error line of a run that cannot start.
    pub display: Vec<Box<dyn Subscriber>>,
}

/// A run that ended, its reports written (those that could be) and recorded.
pub struct Finished {
    pub report: RunReport,
    pub paths: ReportPaths,
    /// What the store recorded of the run besides its report (target, git, project).
    pub facts: RunFacts,
    /// The report files that could not be written.
    pub write_errors: Vec<ReportError>,
}

/// The chosen engine, once what `suites` need is known to be there
/// ([`crate::doctor::preflight`]): no engine or a missing prerequisite is the cause every
/// suite of the run fails with, before any starts.
pub async fn connect(
    choice: &EngineChoice,
    suites: &[Suite],
    reports: &Path,
) -> Result<AnyEngine, Cause> {
    let engine = AnyEngine::connect(choice)
        .await
        .map_err(|error| Cause::NoEngine { error })?;
    check(&engine, suites, reports).await?;
    Ok(engine)
}

/// What [`connect`] checks, on an engine already connected (the server's).
pub async fn check(engine: &AnyEngine, suites: &[Suite], reports: &Path) -> Result<(), Cause> {
    crate::doctor::preflight(engine.local(), suites, reports)
        .await
        .map_err(|missing| Cause::PrerequisiteMissing {
            missing: missing.cause(),
            fix: missing.fix(),
        })
}

/// Runs `launch` on `engine` (or, when there is none, ends every suite with the cause),
/// then writes the reports and records the run. A store that fails costs only the record
/// and the history; a report that cannot be written costs only itself.
pub async fn run(
    launch: Launch,
    engine: Result<Arc<AnyEngine>, Cause>,
    followers: Followers,
    stop: StopSignal,
    recorder: &mut RunRecorder,
    notes: Notes<'_>,
) -> Finished {
    let Launch {
        mut plan,
        paths,
        facts,
        target_mode,
        target_max_size,
        show_copy_progress,
        engine: _,
    } = launch;
    if let Some(reason) = stop.reason() {
        // Stopped before it began (a queued run cancelled): nothing to start or clean.
        let cause = Cause::NotStarted { reason };
        let report = run::not_started(&plan, &cause, followers.always);
        return finish(report, paths, facts, recorder, notes);
    }
    let engine = match engine {
        Ok(engine) => engine,
        Err(cause) => {
            let report = not_started(plan, cause, followers.always, notes);
            return finish(report, paths, facts, recorder, notes);
        }
    };
    for note in engine.notes() {
        notes(Note::Warning(note.clone()));
    }
    remove_orphans(&engine, notes).await;
    let request = TargetRequest {
        mode: target_mode,
        target: plan.context.target.clone(),
        reports_dir: paths.dir.clone(),
        run_id: plan.run_id.clone(),
        max_size: target_max_size,
        show_progress: show_copy_progress,
    };
    let choice = match crate::target::prepare(engine.as_ref(), &request).await {
        Ok(choice) => choice,
        Err(cause) => {
            let _ = engine.remove_labelled(Some(&plan.run_id)).await;
            let mut subscribers = followers.display;
            subscribers.extend(followers.always);
            let report = not_started(plan, cause, subscribers, notes);
            return finish(report, paths, facts, recorder, notes);
        }
    };
    notes(Note::Detail(choice.line()));
    plan.context.target_volume = choice.volume.clone();
    let mut subscribers = followers.display;
    subscribers.extend(followers.always);
    let mut report = run::execute(engine, plan, stop, subscribers).await;
    report.target = Some(choice);
    if let Some(note) = crate::engine::lost::after_run(&mut report).await {
        notes(Note::Error(note));
    }
    finish(report, paths, facts, recorder, notes)
}

/// The report of a run that started no suite: every suite an error naming `cause`, which
/// is said once, whole.
fn not_started(
    plan: RunPlan,
    cause: Cause,
    subscribers: Vec<Box<dyn Subscriber>>,
    notes: Notes<'_>,
) -> RunReport {
    notes(Note::Error(cause.to_string()));
    let mut report = run::not_started(&plan, &cause, subscribers);
    report.suppressions = plan.context.suppressions.clone();
    report
}

/// Removes what killed Phalanx processes left on the engine (never a live run's objects).
pub async fn remove_orphans(engine: &AnyEngine, notes: Notes<'_>) {
    match engine.remove_orphans().await {
        Ok(0) => {}
        Ok(n) => notes(Note::Info(format!(
            "removed {n} container(s) left by earlier Phalanx runs that were killed"
        ))),
        Err(e) => notes(Note::Warning(format!(
            "could not look for leftovers of killed runs: {e}"
        ))),
    }
}

/// Writes the machine reports of a run that ended, records it in the store, then writes
/// the human reports with what the store says around it.
fn finish(
    report: RunReport,
    paths: ReportPaths,
    facts: RunFacts,
    recorder: &mut RunRecorder,
    notes: Notes<'_>,
) -> Finished {
    let machine = [
        junit::write_junit(&report, &paths.junit),
        sarif::write_sarif(&report, &paths.sarif),
        json::write_json(&report, &paths.json),
    ];
    if let Some(warning) = recorder.record(&report, &facts) {
        notes(Note::Warning(warning));
    }
    let mut input = ReportInput::for_run(
        &report,
        &facts.target,
        facts.git.as_ref(),
        Some(&paths.sarif),
    );
    if let Some(store) = recorder.store() {
        match history_of(store, &report.run_id, None) {
            Ok(history) => input = input.with_history(history),
            Err(e) => notes(Note::Warning(format!("{e}; the reports show no history"))),
        }
    }
    let human = write_human_reports(&input, paths.html.as_deref(), paths.markdown.as_deref());
    let write_errors = machine
        .into_iter()
        .chain(human)
        .filter_map(Result::err)
        .collect();
    Finished {
        report,
        paths,
        facts,
        write_errors,
    }
}

/// Writes report.html and report.md (either may be turned off), each whatever became of
/// the other.
pub fn write_human_reports(
    input: &ReportInput,
    html: Option<&Path>,
    markdown: Option<&Path>,
) -> [Result<(), ReportError>; 2] {
    [
        html.map_or(Ok(()), |p| html::write_html(input, p)),
        markdown.map_or(Ok(()), |p| markdown::write_markdown(input, p)),
    ]
}

/// What the store says around one of its runs, compared with `base` or the run before.
pub fn history_of(store: &Store, run: &str, base: Option<&str>) -> Result<RunHistory, QueryError> {
    let head = store.resolve(run)?;
    let base = base.map(|b| store.resolve(b)).transpose()?;
    Ok(RunHistory::of(store, &head, base)?)
}
