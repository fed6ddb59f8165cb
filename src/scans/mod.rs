//! The scan service behind `phalanx serve`: it takes requests to scan a configured
//! project, queues them fairly between projects, runs them on the engine's one set of
//! slots (`jobs`, shared by every run), streams their events, keeps them in the store,
//! and cancels or stops them. It knows nothing of HTTP: the server's handlers are thin
//! calls into it.
//!
//! A run is one [`crate::launch`] run, exactly as `phalanx run --project NAME` would do
//! it; its reports go to `<reports>/runs/<run id>/`.

mod live;
mod queue;

pub use live::{CLIENT_BUFFER, RunEvents, ScanEvent};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore, broadcast};

use crate::config::{self, ProjectConfig, ProjectSpec};
use crate::engine::any::EngineChoice;
use crate::event::{Event, Subscriber};
use crate::findings::Severity;
use crate::launch::select::{self, Selected, Wanted};
use crate::launch::{self, Followers, Launch, Note, ReportPaths};
use crate::plan::PlanError;
use crate::run::{self, RunPlan};
use crate::runner::RunContext;
use crate::schedule::ScheduleOptions;
use crate::stop::{Signal, StopReason, StopSignal};
use crate::store::live::{LiveRun, LiveState, StoredEvent};
use crate::store::{self, RunFacts, RunRecorder, Store, StoreError, StoreSettings};
use crate::verdict::{self, Baseline, BaselineRef, Suppressions};
use live::LiveLog;
use queue::{Queue, Waiting};

/// How long a client told "queue full" is asked to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the service is started with.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// `phalanx.toml`, with its `[projects.NAME]`.
    pub config: ProjectConfig,
    /// Engine slots shared by every run (a suite takes `weight` of them).
    pub jobs: usize,
    pub image_jobs: usize,
    pub store: StoreSettings,
}

/// A request to scan a project: its default selection unless `suites` or `tags` say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerRequest {
    pub suites: Vec<String>,
    pub tags: Vec<String>,
    pub fail_on: Option<Severity>,
    /// Who asked (a token's name), kept with the run.
    pub requested_by: Option<String>,
}

/// A run accepted into the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Triggered {
    pub run_id: String,
    pub project: String,
    /// The suites it will run, in plan order.
    pub suites: Vec<String>,
    /// Runs of the project ahead of it.
    pub queued_ahead: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no project `{0}` is configured")]
    UnknownProject(String),
    #[error(transparent)]
    Selection(#[from] PlanError),
    /// Every suite selected is invalid or refused by the project's limits.
    #[error("nothing to run: {}", .0.join("; "))]
    NothingRunnable(Vec<String>),
    #[error("project `{project}` has {queued} run(s) queued, its max_queued")]
    QueueFull {
        project: String,
        queued: usize,
        retry_after: Duration,
    },
    /// The project's own configuration cannot be used (its suites folder, suppressions
    /// file or baseline): the server's operator must fix it.
    #[error("project `{project}` is misconfigured: {message}")]
    ProjectConfig { project: String, message: String },
    #[error("the server is shutting down")]
    ShuttingDown,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CancelError {
    #[error("no queued or running run `{0}`")]
    NotFound(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ScansError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A configured project as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectView {
    pub spec: ProjectSpec,
    /// The suites its folder holds (name, tags), or why it cannot be read.
    pub suites: Result<Vec<SuiteView>, String>,
    pub queued: usize,
    pub running: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SuiteView {
    pub name: String,
    pub tags: Vec<String>,
    pub description: String,
}

/// The queue and what runs, for `/metrics` and the dashboard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStatus {
    /// Queued runs per project.
    pub queued: BTreeMap<String, usize>,
    pub running_runs: usize,
    /// Suites with a container now, over every run.
    pub running_suites: usize,
    pub jobs: usize,
    /// Store operations that failed since the server started.
    pub store_errors: u64,
}

/// The scan service; clones share it.
#[derive(Clone)]
pub struct Scans {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ScanSettings,
    slots: Arc<Semaphore>,
    queue: Mutex<Queue<Pending>>,
    /// Live logs of queued and running runs, by run id.
    logs: Mutex<HashMap<String, Running>>,
    global: broadcast::Sender<Arc<ScanEvent>>,
    store_writer: std::sync::mpsc::Sender<ToWriter>,
    store_errors: Arc<AtomicU64>,
    wake: Notify,
    /// Told each time a run ends, for `shutdown`.
    ended: Notify,
    stopping: AtomicBool,
}

/// A run between its trigger and its end.
struct Running {
    log: Arc<LiveLog>,
    stop: StopSignal,
    state: LiveRun,
}

/// What a queued run carries until it starts.
struct Pending {
    launch: Launch,
    recorder: RunRecorder,
    stop: StopSignal,
    log: Arc<LiveLog>,
}

impl Scans {
    /// Starts the service: runs the store says were queued or running are marked
    /// interrupted (no run can be going on in a store a starting server opens).
    pub fn start(settings: ScanSettings) -> Result<Scans, ScansError> {
        let store = Store::open(&settings.store.path)?;
        store.interrupt_live_runs()?;
        retry_pending_alerts(&settings, &store);
        drop(store);
        let store_errors = Arc::new(AtomicU64::new(0));
        let store_writer = spawn_store_writer(settings.store.path.clone(), store_errors.clone());
        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(settings.jobs.max(1))),
            settings,
            queue: Mutex::new(Queue::default()),
            logs: Mutex::new(HashMap::new()),
            global: broadcast::channel(CLIENT_BUFFER).0,
            store_writer,
            store_errors,
            wake: Notify::new(),
            ended: Notify::new(),
            stopping: AtomicBool::new(false),
        });
        tokio::spawn(dispatch(inner.clone()));
        Ok(Scans { inner })
    }

    pub fn settings(&self) -> &ScanSettings {
        &self.inner.settings
    }

    /// The configured projects, with their suites and how many runs each has.
    pub fn projects(&self) -> Vec<ProjectView> {
        let config = &self.inner.settings.config;
        let queue = lock(&self.inner.queue);
        let logs = lock(&self.inner.logs);
        config
            .projects
            .values()
            .map(|spec| ProjectView {
                suites: config::load_suites(&spec.suites_dir, config)
                    .map(|loaded| {
                        loaded
                            .suites
                            .iter()
                            .map(|s| SuiteView {
                                name: s.name.clone(),
                                tags: s.tags.clone(),
                                description: s.description.clone(),
                            })
                            .collect()
                    })
                    .map_err(|e| e.to_string()),
                queued: queue.queued(&spec.name),
                running: logs
                    .values()
                    .filter(|r| r.state.project == spec.name && r.state.state == LiveState::Running)
                    .count(),
                spec: spec.clone(),
            })
            .collect()
    }

    /// Queues a run of `project`. Everything a run needs is checked here, so that a
    /// request that cannot run is refused with its reason and nothing is queued.
    pub fn trigger(
        &self,
        project: &str,
        request: TriggerRequest,
    ) -> Result<Triggered, TriggerError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(TriggerError::ShuttingDown);
        }
        let config = &self.inner.settings.config;
        let spec = config
            .projects
            .get(project)
            .ok_or_else(|| TriggerError::UnknownProject(project.to_owned()))?;
        let queued = lock(&self.inner.queue).queued(project);
        if queued >= spec.max_queued {
            return Err(TriggerError::QueueFull {
                project: project.to_owned(),
                queued,
                retry_after: RETRY_AFTER,
            });
        }
        let pending = self.prepare(spec, &request)?;
        let run_id = pending.launch.plan.run_id.clone();
        let suites: Vec<String> = pending
            .launch
            .plan
            .suites
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let state = LiveRun {
            run_id: run_id.clone(),
            project: project.to_owned(),
            state: LiveState::Queued,
            requested_at: Utc::now(),
            started_at: None,
            selection: pending.launch.facts.selection.clone(),
            target: pending.launch.facts.target.clone(),
            requested_by: request.requested_by.clone(),
        };
        self.inner.store_op(|store| store.insert_live(&state));
        lock(&self.inner.logs).insert(
            run_id.clone(),
            Running {
                log: pending.log.clone(),
                stop: pending.stop.clone(),
                state,
            },
        );
        let mut queue = lock(&self.inner.queue);
        let queued_ahead = queue.queued(project);
        queue.push(Waiting {
            run_id: run_id.clone(),
            project: project.to_owned(),
            suites: suites.iter().cloned().collect::<BTreeSet<_>>(),
            item: pending,
        });
        drop(queue);
        self.inner.wake.notify_one();
        Ok(Triggered {
            run_id,
            project: project.to_owned(),
            suites,
            queued_ahead,
        })
    }

    /// Stops a running run, or ends a queued one before it starts; either way it is
    /// recorded, its suites cancelled. `by` names who asked.
    pub fn cancel(&self, run_id: &str, by: &str) -> Result<(), CancelError> {
        let stop = lock(&self.inner.logs)
            .get(run_id)
            .map(|r| r.stop.clone())
            .ok_or_else(|| CancelError::NotFound(run_id.to_owned()))?;
        stop.stop(StopReason::Cancelled { by: by.to_owned() });
        // A queued run starts now, sees that it is stopped, and is recorded at once.
        if let Some(waiting) = lock(&self.inner.queue).remove(run_id) {
            tokio::spawn(run_one(self.inner.clone(), waiting.item, false));
        }
        Ok(())
    }

    /// A queued or running run, as the store's `live_runs` row has it.
    pub fn live_run(&self, run_id: &str) -> Option<LiveRun> {
        lock(&self.inner.logs).get(run_id).map(|r| r.state.clone())
    }

    /// Every queued or running run, newest request first.
    pub fn live_runs(&self) -> Vec<LiveRun> {
        let mut runs: Vec<LiveRun> = lock(&self.inner.logs)
            .values()
            .map(|r| r.state.clone())
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.requested_at));
        runs
    }

    /// A run's events after `after`: from its live log while it is queued or running,
    /// else from the store. `None` when the store has none of it either.
    pub fn events(&self, run_id: &str, after: Option<u64>) -> Option<RunEvents> {
        if let Some(running) = lock(&self.inner.logs).get(run_id) {
            return Some(running.log.follow(after));
        }
        let store = Store::open_existing(&self.inner.settings.store.path).ok()?;
        let lines = store.events_after(run_id, after).ok()?;
        let known = !lines.is_empty()
            || store
                .events_after(run_id, None)
                .is_ok_and(|l| !l.is_empty());
        known.then(|| RunEvents {
            replay: lines.into_iter().map(Arc::new).collect(),
            live: None,
        })
    }

    /// Every event of every run from now on.
    pub fn all_events(&self) -> broadcast::Receiver<Arc<ScanEvent>> {
        self.inner.global.subscribe()
    }

    pub fn status(&self) -> QueueStatus {
        let queued = lock(&self.inner.queue).depths();
        let logs = lock(&self.inner.logs);
        QueueStatus {
            queued,
            running_runs: logs
                .values()
                .filter(|r| r.state.state == LiveState::Running)
                .count(),
            running_suites: logs.values().map(|r| r.log.running_suites()).sum(),
            jobs: self.inner.settings.jobs,
            store_errors: self.inner.store_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops the service for `signal`: queued runs are dropped as interrupted, running
    /// runs are stopped (their containers removed) and recorded as interrupted. Returns
    /// once every run has been recorded.
    pub async fn shutdown(&self, signal: Signal) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let dropped = lock(&self.inner.queue).drain();
        for waiting in dropped {
            lock(&self.inner.logs).remove(&waiting.run_id);
            waiting.item.log.close();
            self.inner.store_op(|store| {
                store.set_live_state(&waiting.run_id, LiveState::Interrupted, None)
            });
        }
        let reason = StopReason::Interrupted { signal };
        loop {
            let ended = self.inner.ended.notified();
            let running: Vec<StopSignal> = lock(&self.inner.logs)
                .values()
                .map(|r| r.stop.clone())
                .collect();
            if running.is_empty() {
                return;
            }
            for stop in running {
                stop.stop(reason.clone());
            }
            ended.await;
        }
    }

    /// Everything a run of `spec` needs, from the request over the project's defaults.
    fn prepare(
        &self,
        spec: &ProjectSpec,
        request: &TriggerRequest,
    ) -> Result<Pending, TriggerError> {
        let settings = &self.inner.settings;
        let misconfigured = |message: String| TriggerError::ProjectConfig {
            project: spec.name.clone(),
            message,
        };
        let loaded = config::load_suites(&spec.suites_dir, &settings.config)
            .map_err(|e| misconfigured(e.to_string()))?;
        let wanted = Wanted {
            names: request.suites.clone(),
            tags: request.tags.clone(),
            fail_on: request.fail_on,
            ..Wanted::default()
        }
        .over_project(spec);
        let config = &settings.config;
        let backend = select::Backend::of(config.engine, &config.swarm);
        let Selected { suites, invalid } = select::select(&loaded, &wanted, Some(spec), backend)?;
        if suites.is_empty() {
            let why = invalid.iter().flat_map(|i| i.errors.clone()).collect();
            return Err(TriggerError::NothingRunnable(why));
        }
        crate::secrets::protect(&suites);
        let target = crate::engine::docker::absolute_target(&spec.target)
            .map_err(|e| misconfigured(format!("target {}: {e}", spec.target.display())))?;
        let opened = RunRecorder::open(&settings.store, Path::new(crate::history::DEFAULT_PATH));
        for warning in opened.warnings {
            note(&spec.name, Note::Warning(warning));
        }
        let suppressions = self.suppressions(spec).map_err(misconfigured)?;
        let baseline = self.baseline(spec, &target).map_err(misconfigured)?;
        let run_id = run::new_run_id();
        let root = spec
            .reports_dir
            .clone()
            .unwrap_or_else(|| settings.config.reports_dir.clone());
        let paths = ReportPaths::under(root.join("runs").join(&run_id));
        let facts = RunFacts {
            project: Some(spec.name.clone()),
            ..RunFacts::gather(&target, store::Selection::new(&wanted.names, &wanted.tags))
        };
        let plan = RunPlan {
            run_id: run_id.clone(),
            context: RunContext {
                run_id: run_id.clone(),
                target,
                target_volume: None,
                reports_dir: paths.dir.clone(),
                suppressions,
                baseline,
                placement: settings.config.swarm.placement.clone(),
            },
            options: ScheduleOptions {
                jobs: settings.jobs.max(1),
                image_jobs: settings.image_jobs.max(1),
                fail_fast: false,
                shared_slots: Some(self.inner.slots.clone()),
            },
            suites,
            services: loaded.services.clone(),
            invalid_suites: invalid,
            history: opened.history,
            partition: None,
        };
        let log = LiveLog::new(
            &spec.name,
            &run_id,
            self.inner.global.clone(),
            self.inner.store_writer.clone(),
        );
        Ok(Pending {
            launch: Launch {
                plan,
                paths,
                facts,
                target_mode: settings.config.target_mode,
                target_max_size: settings.config.target_max_size,
                show_copy_progress: false,
                engine: EngineChoice {
                    kind: settings.config.engine,
                    swarm: settings.config.swarm.clone(),
                },
            },
            recorder: opened.recorder,
            stop: StopSignal::default(),
            log,
        })
    }

    fn suppressions(&self, spec: &ProjectSpec) -> Result<Arc<Suppressions>, String> {
        let settings = self
            .inner
            .settings
            .config
            .suppressions
            .with_file(spec.suppressions.as_deref());
        let today = verdict::suppressions::today_from_env()?;
        Suppressions::load(&settings, today)
            .map(Arc::new)
            .map_err(|errors| {
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                all.join("; ")
            })
    }

    fn baseline(&self, spec: &ProjectSpec, target: &Path) -> Result<Option<Arc<Baseline>>, String> {
        let Some(text) = spec.baseline.as_deref() else {
            return Ok(None);
        };
        let reference = BaselineRef::parse(text).map_err(|e| e.to_string())?;
        let store = Store::open_existing(&self.inner.settings.store.path).ok();
        let store = store.as_ref().map(|s| s as &dyn verdict::BaselineStore);
        match verdict::baseline::resolve(&reference, target, store) {
            Ok(found) => Ok(Some(Arc::new(found))),
            // The project's first run has nothing to compare with: every finding is new.
            Err(verdict::BaselineError::NotInStore { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Inner {
    /// A store operation whose failure is counted and said, never fatal to a run.
    fn store_op(&self, op: impl FnOnce(&Store) -> Result<(), StoreError>) {
        let result = Store::open(&self.settings.store.path).and_then(|store| op(&store));
        if let Err(e) = result {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("phalanx serve: warning: {e}");
        }
    }
}

/// Starts queued runs as the queue allows, until the service stops.
async fn dispatch(inner: Arc<Inner>) {
    loop {
        inner.wake.notified().await;
        loop {
            let next = lock(&inner.queue).next(inner.settings.jobs.max(1));
            let Some(waiting) = next else { break };
            tokio::spawn(run_one(inner.clone(), waiting.item, true));
        }
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Runs one run to its end and lets the queue go on. `queued` is false for a run that
/// was cancelled while it waited and so never held a place among the running.
async fn run_one(inner: Arc<Inner>, pending: Pending, queued: bool) {
    let Pending {
        launch,
        mut recorder,
        stop,
        log,
    } = pending;
    let run_id = launch.plan.run_id.clone();
    let project = launch.facts.project.clone().unwrap_or_default();
    if !stop.is_stopped() {
        let now = Utc::now();
        if let Some(running) = lock(&inner.logs).get_mut(&run_id) {
            running.state.state = LiveState::Running;
            running.state.started_at = Some(now);
        }
        inner.store_op(|store| store.set_live_state(&run_id, LiveState::Running, Some(now)));
    }
    let engine = launch::connect(&launch.engine, &launch.plan.suites, &launch.paths.dir)
        .await
        .map(Arc::new);
    let publisher = log.clone();
    let follower: Box<dyn Subscriber> = Box::new(move |event: &Event| publisher.publish(event));
    let followers = Followers {
        always: vec![follower],
        display: Vec::new(),
    };
    let say = |n: Note| note(&format!("{project} {run_id}"), n);
    let finished = launch::run(launch, engine, followers, stop, &mut recorder, &say).await;
    for error in &finished.write_errors {
        note(
            &run_id,
            Note::Error(format!("cannot write a report: {error}")),
        );
    }
    send_alerts(&inner, &finished, recorder.store());
    // The store has every line before the run leaves the live set, so that a client
    // that comes after is replayed all of it from there.
    let (done, flushed) = tokio::sync::oneshot::channel();
    if inner.store_writer.send(ToWriter::Flush(done)).is_ok() {
        let _ = flushed.await;
    }
    log.close();
    lock(&inner.logs).remove(&run_id);
    if queued {
        lock(&inner.queue).finished(&run_id);
    }
    inner.ended.notify_waiters();
    inner.wake.notify_one();
}

/// The run's alerts (the top-level channels and its project's), planned and recorded now
/// and delivered in the background: the queue never waits for a webhook.
fn send_alerts(inner: &Inner, finished: &launch::Finished, store: Option<&Store>) {
    let config = &inner.settings.config;
    let channels = config.alert_channels(finished.facts.project.as_deref());
    if channels.is_empty() {
        return;
    }
    let run = crate::alerts::AlertRun {
        report: &finished.report,
        store,
        git: finished.facts.git.as_ref(),
        target: &finished.facts.target,
        project: finished.facts.project.as_deref(),
        server_url: None,
    };
    let delivery = crate::alerts::after_run(run, &channels, config.alerts.deadline);
    tokio::spawn(delivery);
}

/// Keeps every channel's URL and secret out of what the server prints and writes, and
/// sends again what a server that stopped left pending.
fn retry_pending_alerts(settings: &ScanSettings, store: &Store) {
    let config = &settings.config;
    let mut channels = config.alert_channels(None);
    for project in config.projects.values() {
        channels.extend(project.alerts.iter().cloned());
    }
    crate::alerts::protect(&channels);
    if channels.is_empty() {
        return;
    }
    tokio::spawn(crate::alerts::retry_pending(
        store,
        &channels,
        config.alerts.deadline,
    ));
}

/// What the store's writer is sent.
pub(crate) enum ToWriter {
    Line(String, Arc<StoredEvent>),
    /// Answered once every line sent before it is written (or given up on).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Writes the runs' events to the store, in batches, on a thread of its own so that no
/// run waits for the disk. A store that fails is counted and the lines are dropped.
fn spawn_store_writer(path: PathBuf, errors: Arc<AtomicU64>) -> std::sync::mpsc::Sender<ToWriter> {
    let (sender, receiver) = std::sync::mpsc::channel::<ToWriter>();
    std::thread::spawn(move || {
        let mut store: Option<Store> = None;
        while let Ok(first) = receiver.recv() {
            let mut batch: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
            let mut flushed = Vec::new();
            for message in std::iter::once(first).chain(receiver.try_iter()) {
                match message {
                    ToWriter::Line(run, line) => {
                        batch.entry(run).or_default().push((*line).clone())
                    }
                    ToWriter::Flush(done) => flushed.push(done),
                }
            }
            write_batch(&path, &mut store, &batch, &errors);
            for done in flushed {
                let _ = done.send(());
            }
        }
    });
    sender
}

fn write_batch(
    path: &Path,
    store: &mut Option<Store>,
    batch: &BTreeMap<String, Vec<StoredEvent>>,
    errors: &AtomicU64,
) {
    if batch.is_empty() {
        return;
    }
    if store.is_none() {
        *store = Store::open(path).ok();
    }
    let Some(open) = store.as_mut() else {
        errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    for (run, lines) in batch {
        if let Err(e) = open.append_events(run, lines) {
            errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("phalanx serve: warning: {e}; events of run {run} are not kept");
            *store = None;
            return;
        }
    }
}

/// Says a run's note on stderr, prefixed with what it is about.
fn note(about: &str, note: Note) {
    eprintln!("[{about}] {note}");
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
