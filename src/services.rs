//! The applications under test of a run's dynamic suites: each needed [`Service`] is
//! started once, on the run's private network under its name, as soon as its image is
//! there; its suites take slots only once it is ready, and get `PHALANX_TARGET_URL` and
//! friends in their environment. When the last suite that needs it ends, it is stopped and
//! removed, its output kept in `<reports>/logs/service-<name>.log`. A service that cannot
//! start, never gets ready or exits while its suites use it makes those suites errors that
//! say why ([`Cause::ServiceNotReady`] and its siblings), never passes; the rest of the
//! run goes on.
//!
//! The scheduler drives this like the image builds: it reads each service's
//! [`ServiceState`] and tells [`Services::suite_done`] when a suite ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::builds::ImageState;
use crate::cause::Cause;
use crate::collect::pump::LogPump;
use crate::collect::{CaptureLimits, OutputCapture};
use crate::config::{Service, Suite};
use crate::engine::{Engine, EngineError, RUN_LABEL, Readiness, ReadyProbe, ServiceSpec};
use crate::event::{EventKind, EventSender};
use crate::outcome::{Outcome, SuiteReport};
use crate::runner::RunContext;
use crate::stop::StopSignal;

/// Label naming the service a container belongs to (its own, or its readiness check's).
pub const SERVICE_LABEL: &str = "phalanx.service";

/// The URL of the (first) service a suite needs: `http://<name>:<port>`.
pub const TARGET_URL_ENV: &str = "PHALANX_TARGET_URL";
/// Its host name and port, for tools that take them apart.
pub const TARGET_HOST_ENV: &str = "PHALANX_TARGET_HOST";
pub const TARGET_PORT_ENV: &str = "PHALANX_TARGET_PORT";
/// Its `endpoints` as full URLs, one per line, its root first.
pub const TARGET_ENDPOINTS_ENV: &str = "PHALANX_TARGET_ENDPOINTS";

/// How long a service gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Lines and bytes of a service's log quoted in a cause.
const TAIL_LINES: usize = 20;
const TAIL_BYTES: u64 = 4096;

/// Where a service's output goes: `<reports>/logs/service-<name>.log`.
pub fn log_path(reports: &Path, service: &str) -> PathBuf {
    reports.join("logs").join(format!("service-{service}.log"))
}

/// The image build log of a service: `<reports>/logs/service-<name>.build.log`.
pub fn build_log_path(reports: &Path, service: &str) -> PathBuf {
    reports
        .join("logs")
        .join(format!("service-{service}.build.log"))
}

/// The services that `suites` need, in the order first needed. Names are checked when the
/// files are read; one that is not in `services` is left out here, and its suites fail
/// for want of it ([`Services::blocked`]).
pub fn needed(suites: &[Suite], services: &[Service]) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for name in suites.iter().flat_map(|s| &s.needs) {
        if out.iter().any(|s| &s.name == name) {
            continue;
        }
        if let Some(service) = services.iter().find(|s| &s.name == name) {
            out.push(service.clone());
        }
    }
    out
}

/// `http://<name>:<port>`: how the suites reach a service.
pub fn url(service: &Service) -> String {
    format!("http://{}:{}", service.name, service.port)
}

/// What a suite that needs services gets in its environment: `PHALANX_TARGET_*` for the
/// first, and `PHALANX_SERVICE_<NAME>_URL` (upper case, `-` as `_`) for each.
pub fn target_env(suite: &Suite, services: &[Service]) -> Vec<(String, String)> {
    let needed: Vec<&Service> = suite
        .needs
        .iter()
        .filter_map(|n| services.iter().find(|s| &s.name == n))
        .collect();
    let mut env = Vec::new();
    if let Some(first) = needed.first() {
        let root = url(first);
        let endpoints: Vec<String> = std::iter::once(format!("{root}/"))
            .chain(first.endpoints.iter().map(|p| format!("{root}{p}")))
            .collect();
        env.push((TARGET_URL_ENV.to_string(), root));
        env.push((TARGET_HOST_ENV.to_string(), first.name.clone()));
        env.push((TARGET_PORT_ENV.to_string(), first.port.to_string()));
        env.push((TARGET_ENDPOINTS_ENV.to_string(), endpoints.join("\n")));
    }
    for service in needed {
        let key = service.name.to_ascii_uppercase().replace('-', "_");
        env.push((format!("PHALANX_SERVICE_{key}_URL"), url(service)));
    }
    env
}

/// Where one service stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceState {
    /// Waiting for its image, starting, or not ready yet.
    Pending,
    Ready,
    /// Its suites end (or are judged) as errors with this cause.
    Failed(Cause),
    /// Stopped: its last suite ended, or the run stopped.
    Stopped,
}

/// The services of one run, each in a task of its own.
pub struct Services {
    board: watch::Receiver<HashMap<String, ServiceState>>,
    /// Suites still to end, per service.
    remaining: HashMap<String, usize>,
    /// Tells a service's task that no suite needs it any more.
    release: HashMap<String, oneshot::Sender<()>>,
    tasks: JoinSet<()>,
}

/// What every service task shares.
struct Shared<E> {
    engine: Arc<E>,
    ctx: Arc<RunContext>,
    stop: StopSignal,
    events: EventSender,
    board: watch::Sender<HashMap<String, ServiceState>>,
}

impl Services {
    /// Starts every service in `services` (those `suites` need, see [`needed`]) as soon as
    /// `images` says its image is ready.
    pub fn start<E: Engine>(
        engine: Arc<E>,
        services: Vec<Service>,
        suites: &[Suite],
        ctx: Arc<RunContext>,
        images: watch::Receiver<HashMap<String, ImageState>>,
        stop: StopSignal,
        events: EventSender,
    ) -> Services {
        // Their logs, causes and every report are redacted of them from now on.
        crate::secrets::protect_values(services.iter().flat_map(Service::secret_values));
        let pending = services
            .iter()
            .map(|s| (s.name.clone(), ServiceState::Pending))
            .collect();
        let (board, watching) = watch::channel(pending);
        let shared = Arc::new(Shared {
            engine,
            ctx,
            stop,
            events,
            board,
        });
        let mut remaining = HashMap::new();
        let mut release = HashMap::new();
        let mut tasks = JoinSet::new();
        for service in services {
            let users: Vec<String> = suites
                .iter()
                .filter(|s| s.needs.contains(&service.name))
                .map(|s| s.name.clone())
                .collect();
            remaining.insert(service.name.clone(), users.len());
            let (tx, rx) = oneshot::channel();
            release.insert(service.name.clone(), tx);
            let (shared, images) = (Arc::clone(&shared), images.clone());
            tasks.spawn(async move { serve(shared, service, users, images, rx).await });
        }
        Services {
            board: watching,
            remaining,
            release,
            tasks,
        }
    }

    pub fn state(&self, service: &str) -> Option<ServiceState> {
        self.board.borrow().get(service).cloned()
    }

    /// Whether every service in `needs` (a suite's) is ready.
    pub fn ready_for(&self, needs: &[String]) -> bool {
        let board = self.board.borrow();
        needs
            .iter()
            .all(|n| matches!(board.get(n), Some(ServiceState::Ready)))
    }

    /// Why a suite that needs `needs` cannot run: a service failed, or is not declared.
    pub fn blocked(&self, needs: &[String]) -> Option<Cause> {
        let board = self.board.borrow();
        needs.iter().find_map(|n| match board.get(n) {
            Some(ServiceState::Failed(cause)) => Some(cause.clone()),
            Some(_) => None,
            None => Some(Cause::ServiceNotStarted {
                service: n.clone(),
                error: Box::new(Cause::internal(format!(
                    "the service `{n}` is not declared"
                ))),
            }),
        })
    }

    /// Marks the current states as seen: [`Services::changed`] then waits for a newer one.
    pub fn mark_seen(&mut self) {
        self.board.borrow_and_update();
    }

    /// Waits until some service's state changes after [`Services::mark_seen`]; never
    /// returns once every service task has ended.
    pub async fn changed(&mut self) {
        if self.board.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// `report`'s suite has ended: a service it needed that failed meanwhile makes it an
    /// error (what it found against a dead service proves nothing), and a service no
    /// suite needs any more is stopped.
    pub fn suite_done(&mut self, needs: &[String], report: &mut SuiteReport) {
        if let Some(cause) = self.blocked(needs)
            && !matches!(report.outcome, Outcome::Skipped | Outcome::Cancelled)
        {
            report.outcome = Outcome::Error;
            report.cause = Some(cause);
        }
        self.release(needs);
    }

    /// A suite that needs `needs` ended without running: a service no suite needs any
    /// more is stopped.
    pub fn release(&mut self, needs: &[String]) {
        for name in needs {
            let Some(left) = self.remaining.get_mut(name) else {
                continue;
            };
            *left = left.saturating_sub(1);
            if *left == 0
                && let Some(release) = self.release.remove(name)
            {
                let _ = release.send(());
            }
        }
    }

    /// Stops what still runs (the run stopped, or suites never started) and waits until
    /// every service is removed and its log written.
    pub async fn finish(mut self) {
        for (_, release) in self.release.drain() {
            let _ = release.send(());
        }
        while self.tasks.join_next().await.is_some() {}
    }
}

impl<E> Shared<E> {
    fn settle(&self, service: &str, state: ServiceState) {
        self.board.send_modify(|board| {
            board.insert(service.to_string(), state);
        });
    }
}

/// How a started service's time on the network ended.
enum Ending {
    /// No suite needs it any more, or the run stopped: stop it.
    Released,
    /// It exited by itself, with this code (if known).
    Exited(Option<i64>),
    /// It was still not ready when its time was up; the last check said this.
    NotReady(String),
    /// The readiness check itself could not run.
    Unchecked(EngineError),
}

/// One service's life: image, start, readiness, serving, stop.
async fn serve<E: Engine>(
    shared: Arc<Shared<E>>,
    service: Service,
    users: Vec<String>,
    images: watch::Receiver<HashMap<String, ImageState>>,
    mut release: oneshot::Receiver<()>,
) {
    let name = service.name.clone();
    let not_started = |error: Cause| Cause::ServiceNotStarted {
        service: name.clone(),
        error: Box::new(error),
    };
    match image_ready(&shared, &service, images, &mut release).await {
        Ok(true) => {}
        Ok(false) => return shared.settle(&name, ServiceState::Stopped),
        Err(cause) => return fail(&shared, &name, not_started(cause), None),
    }
    let log = log_path(&shared.ctx.reports_dir, &name);
    let (id, pump) = match start(&shared, &service, users, &log).await {
        Ok(started) => started,
        Err(cause) => return fail(&shared, &name, not_started(cause), None),
    };
    let ending = until_the_end(&shared, &service, &id, &mut release).await;
    let tail = stopped_tail(&*shared.engine, &id, pump, &log).await;
    let cause = match ending {
        Ending::Released => {
            shared.settle(&name, ServiceState::Stopped);
            shared.events.send(EventKind::ServiceFinished {
                name,
                cause: None,
                log_path: Some(log),
            });
            return;
        }
        Ending::Exited(exit_code) => Cause::ServiceExited {
            service: name.clone(),
            exit_code,
            log_tail: tail,
        },
        Ending::NotReady(last_failure) => Cause::ServiceNotReady {
            service: name.clone(),
            limit: service.ready_timeout,
            last_failure,
            log_tail: tail,
        },
        Ending::Unchecked(e) => not_started(Cause::from(e)),
    };
    fail(&shared, &name, cause, Some(log));
}

/// Starts the service's container and follows its output into `log`.
async fn start<E: Engine>(
    shared: &Shared<E>,
    service: &Service,
    users: Vec<String>,
    log: &Path,
) -> Result<(String, LogPump), Cause> {
    let capture = OutputCapture::create(log, CaptureLimits::default())
        .await
        .map_err(|e| Cause::LogUnwritable {
            path: log.to_path_buf(),
            message: e.to_string(),
        })?;
    let engine = &*shared.engine;
    let id = engine
        .start_service(&service_spec(service, &shared.ctx))
        .await
        .map_err(Cause::from)?;
    shared.events.send(EventKind::ServiceStarted {
        name: service.name.clone(),
        image: service.image.clone(),
        suites: users,
    });
    let logs = crate::secrets::redact_registered(engine.logs(&id));
    Ok((id, LogPump::spawn(logs, capture)))
}

/// Waits for the service to get ready, then serves until no suite needs it, the run stops,
/// or it exits by itself (it may do that at any moment, ready or not).
async fn until_the_end<E: Engine>(
    shared: &Shared<E>,
    service: &Service,
    id: &str,
    release: &mut oneshot::Receiver<()>,
) -> Ending {
    let engine = &*shared.engine;
    let exited = engine.wait(id);
    tokio::pin!(exited);
    let clock = Instant::now();
    let probe = ready_probe(service, &shared.ctx);
    let readiness = tokio::select! {
        ready = engine.await_ready(&probe) => ready,
        status = &mut exited => return Ending::Exited(status.ok().map(|s| s.code)),
        () = shared.stop.stopped() => return Ending::Released,
        _ = &mut *release => return Ending::Released,
    };
    match readiness {
        Ok(Readiness::Ready) => {}
        Ok(Readiness::NotReady { last_failure }) => return Ending::NotReady(last_failure),
        Err(e) => return Ending::Unchecked(e),
    }
    // Told before the suites can start, so events come in the order things happen.
    shared.events.send(EventKind::ServiceReady {
        name: service.name.clone(),
        after: clock.elapsed(),
    });
    shared.settle(&service.name, ServiceState::Ready);
    tokio::select! {
        status = &mut exited => Ending::Exited(status.ok().map(|s| s.code)),
        () = shared.stop.stopped() => Ending::Released,
        _ = release => Ending::Released,
    }
}

/// Waits until the service's image can be used: `Ok(false)` when the run stopped or no
/// suite needs the service any more before then.
async fn image_ready<E>(
    shared: &Shared<E>,
    service: &Service,
    mut images: watch::Receiver<HashMap<String, ImageState>>,
    release: &mut oneshot::Receiver<()>,
) -> Result<bool, Cause> {
    loop {
        let state = images.borrow_and_update().get(&service.image).cloned();
        match state {
            None | Some(ImageState::Present | ImageState::Built { .. } | ImageState::Unknown) => {
                return Ok(true);
            }
            Some(ImageState::Failed(cause)) => return Err(cause),
            Some(ImageState::Cancelled) => return Ok(false),
            Some(ImageState::Pending) => {}
        }
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return Ok(true) },
            () = shared.stop.stopped() => return Ok(false),
            _ = &mut *release => return Ok(false),
        }
    }
}

/// Stops and removes the service's container, and returns the end of its log.
async fn stopped_tail<E: Engine>(engine: &E, id: &str, pump: LogPump, log: &Path) -> String {
    let _ = engine.stop(id, STOP_GRACE).await;
    pump.finish().await;
    // What the final sweep of the run does not find removed, it removes.
    let _ = engine.remove(id).await;
    log_tail(log).await
}

/// Marks the service failed (its suites become errors with `cause`) and says so.
fn fail<E>(shared: &Shared<E>, name: &str, cause: Cause, log_path: Option<PathBuf>) {
    shared.settle(name, ServiceState::Failed(cause.clone()));
    shared.events.send(EventKind::ServiceFinished {
        name: name.to_string(),
        cause: Some(cause),
        log_path,
    });
}

/// The last lines of the log, each made printable and short: they go into causes, which
/// every report shows.
pub async fn log_tail(log: &Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut file) = tokio::fs::File::open(log).await else {
        return String::new();
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err()
        || file.read_to_end(&mut bytes).await.is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    // A cut first line is only a fragment.
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let from = lines.len().saturating_sub(TAIL_LINES);
    lines[from..]
        .iter()
        .map(|l| crate::report::one_line(l, 200))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The labels of everything made for `service`: the run's, its own, and the owner.
fn labels(service: &str, ctx: &RunContext) -> HashMap<String, String> {
    [
        (RUN_LABEL.to_string(), ctx.run_id.clone()),
        (SERVICE_LABEL.to_string(), service.to_string()),
        (
            crate::engine::orphans::OWNER_LABEL.to_string(),
            crate::engine::orphans::owner_label(),
        ),
    ]
    .into_iter()
    .collect()
}

/// The container of `service` in this run.
pub fn service_spec(service: &Service, ctx: &RunContext) -> ServiceSpec {
    ServiceSpec {
        name: format!("phalanx-{}-service-{}", ctx.run_id, service.name),
        run_id: ctx.run_id.clone(),
        alias: service.name.clone(),
        image: service.image.clone(),
        command: service.command.clone(),
        env: service
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        policy: service.policy.clone(),
        tmpfs: service.tmpfs.clone(),
        target: ctx.target.clone(),
        target_volume: ctx.target_volume.clone(),
        hidden: crate::engine::masks::hidden_paths(&ctx.target, &ctx.reports_dir)
            .unwrap_or_default(),
        labels: labels(&service.name, ctx),
    }
}

fn ready_probe(service: &Service, ctx: &RunContext) -> ReadyProbe {
    ReadyProbe {
        name: format!("phalanx-{}-ready-{}", ctx.run_id, service.name),
        run_id: ctx.run_id.clone(),
        host: service.name.clone(),
        port: service.port,
        check: service.ready.clone(),
        timeout: service.ready_timeout,
        labels: labels(&service.name, ctx),
        build_log: build_log_path(&ctx.reports_dir, &service.name),
    }
}
