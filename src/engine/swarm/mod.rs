//! The Docker Swarm backend: each suite attempt is one service on a swarm manager, run once
//! to completion (see [`spec`] for why not a `replicated-job`), so the same scheduler
//! spreads a run over a cluster's nodes.
//!
//! The trait's steps map as follows. `create` builds (once per image per run) the layer the
//! task runs ([`layer`]) and returns the service's name; `start` creates the service (a
//! service runs as soon as it exists); `logs` follows the manager's service logs and takes
//! the framed `/results` out of them ([`frame`]); `wait` polls the task until it is over;
//! `stop` removes the service, which stops the task with its grace period; `download` hands
//! out the framed tar; `remove` removes the service and its network. Images are built on
//! the manager's own engine, as the Docker backend builds them.

pub mod frame;
pub mod gaps;
mod layer;
mod results;
mod spec;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{NetworkCreateRequest, TaskState};
use bollard::query_parameters::{
    ListImagesOptionsBuilder, ListNetworksOptionsBuilder, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder, LogsOptionsBuilder, RemoveImageOptionsBuilder,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::sync::watch;
use tokio::time::Instant;

pub use gaps::PolicyGap;

use self::frame::{Deframer, Framed, Piece};
use super::docker::{DockerEngine, is_not_found, label_filter, timed};
use super::orphans::{orphaned, run_labels};
use super::{
    ContainerSpec, Engine, EngineError, ExitStatus, ImageInfo, LogChunk, ProbeFile, RESULTS_DIR,
    RUN_LABEL, Readiness, ReadyProbe, ServiceSpec, TargetView,
};
use crate::config::{NetworkMode, Suite};

/// `[swarm]` in `phalanx.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmSettings {
    /// `host:port` of the registry every node pulls from; Phalanx pushes the run's images
    /// there. Without one, tasks run on the manager node only.
    pub registry: Option<String>,
    /// Constraints for every suite (`node.labels.scanner == true`), with the suite's own.
    pub placement: Vec<String>,
    /// Gaps the project accepts: suites with other gaps are refused.
    pub allow_gaps: BTreeSet<PolicyGap>,
}

/// How long a task's log is still read after the task ended without the frame's end line
/// (killed, never started), for output on its way from the node: until it has been quiet
/// this long, and at least [`FRAME_WAIT`] after the end. The wrapper always ends with the
/// frame unless it was killed, and a remote node's log can lag behind its task's state.
const DRAIN: Duration = Duration::from_secs(2);
const FRAME_WAIT: Duration = Duration::from_secs(10);
/// After a stop, how long past the grace period the log is still read.
const STOP_SLACK: Duration = Duration::from_secs(3);
/// The grace period every task is created with: the longest the runner ever asks for.
const GRACE: Duration = Duration::from_secs(5);
/// The most bytes of framed tar kept: the extractor's cap plus room for tar headers.
const MAX_TAR: usize = (spec::RESULTS_BYTES as usize) + (64 << 20);
/// Most characters of a swarm message kept for errors and the log.
const WHY_MAX: usize = 300;
/// How long a per-task network removal is retried while its task is still going away.
const NETWORK_REMOVAL: Duration = Duration::from_secs(30);

/// Where a task's log reader is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// The task is over (seen then); output may still be on its way.
    Ended {
        at: Instant,
    },
    /// The service was removed; the task has until then to finish.
    Stopping {
        until: Instant,
    },
}

/// One suite attempt: a service, its network, its log reader's findings.
struct Attempt {
    spec: ContainerSpec,
    service: String,
    /// The layer image the task runs.
    image: String,
    nonce: String,
    /// The network the task is attached to, and whether it is its own (removed with it).
    network: String,
    own_network: bool,
    phase: watch::Sender<Phase>,
    /// Set by the log reader when the stream is over.
    sent: watch::Sender<Option<Arc<Sent>>>,
    /// The last state seen by `wait`, for the wait after a stop and for the log.
    last: Mutex<Option<TaskSeen>>,
    /// The service's task ids, looked up before a stop removes it (and with it the way to
    /// find them), so the removal can wait for them to go.
    tasks: Mutex<Vec<String>>,
}

#[derive(Debug, Clone)]
struct TaskSeen {
    state: TaskState,
    /// The task's error or message (`no suitable node …`), already short.
    why: String,
    exit_code: Option<i64>,
}

type Layer = tokio::sync::OnceCell<Result<String, String>>;

/// What the wrapper sent back after the tool, once the log is over.
#[derive(Debug)]
struct Sent {
    framed: Framed,
    /// The task's memory cgroup counted an OOM kill.
    oom_killed: bool,
}

/// The run's copy of the target, as an image, and the run's labels.
#[derive(Debug, Clone)]
struct RunTarget {
    image: String,
    labels: HashMap<String, String>,
}

pub struct SwarmEngine {
    /// The manager's own engine: images are built and checked there.
    local: DockerEngine,
    docker: Docker,
    settings: SwarmSettings,
    /// The manager's node id: without a registry, the run's images exist only there.
    manager_node: String,
    /// What `connect` found worth saying (a multi-node swarm without a registry).
    notes: Vec<String>,
    attempts: Mutex<HashMap<String, Arc<Attempt>>>,
    /// The layer tag (or the error making it) per suite image and target image.
    layers: Mutex<HashMap<(String, String), Arc<Layer>>>,
    /// The target [`Engine::copy_target`] imported, so that [`Engine::ensure_image`] can
    /// build each suite image's layer while the suite's time has not started yet.
    target: Mutex<Option<RunTarget>>,
    /// The egress network per run id.
    egress: tokio::sync::Mutex<HashMap<String, String>>,
    removals: crate::engine::removals::Removals,
}

impl SwarmEngine {
    /// Connects to the engine `DOCKER_HOST` names and checks it is a swarm manager.
    pub async fn connect(settings: SwarmSettings) -> Result<Self, EngineError> {
        let local = DockerEngine::connect().await?;
        let docker = local.client().clone();
        let info = docker
            .info()
            .await
            .map_err(|e| EngineError::api("info", e))?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available != Some(true) {
            return Err(EngineError::Unreachable {
                location: super::docker::engine_location(),
                message: "this engine is not a swarm manager (`docker info` shows Swarm: \
                          inactive, or a worker): run `docker swarm init` there, or point \
                          DOCKER_HOST at a manager"
                    .into(),
            });
        }
        let manager_node = swarm.node_id.unwrap_or_default();
        let nodes = swarm.nodes.unwrap_or(1);
        let mut notes = Vec::new();
        if settings.registry.is_none() && nodes > 1 {
            notes.push(format!(
                "the swarm has {nodes} nodes but no registry is set ([swarm] registry in \
                 phalanx.toml): every task runs on the manager node, the only one with this \
                 run's images"
            ));
        }
        Ok(SwarmEngine {
            local,
            docker,
            settings,
            manager_node,
            notes,
            attempts: Default::default(),
            layers: Default::default(),
            target: Default::default(),
            egress: Default::default(),
            removals: Default::default(),
        })
    }

    /// The manager's own engine, where images are built.
    pub fn local(&self) -> &DockerEngine {
        &self.local
    }

    /// Things the run should tell its user about this engine.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    fn attempt(&self, id: &str) -> Result<Arc<Attempt>, EngineError> {
        self.attempts
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::api("task", format!("no attempt {id} on this engine")))
    }

    /// The layer for `image` over the run's target, built (and pushed) once per run; its
    /// build's output goes to `log`.
    async fn layer_for(
        &self,
        image: &str,
        target: &RunTarget,
        log: &Path,
    ) -> Result<String, EngineError> {
        let cell = {
            let mut layers = self.layers.lock().unwrap();
            let key = (image.to_string(), target.image.clone());
            layers.entry(key).or_default().clone()
        };
        let mut own_error = None;
        let made = cell
            .get_or_init(|| async {
                self.make_layer(image, target, log).await.map_err(|e| {
                    let text = e.to_string();
                    own_error = Some(e);
                    text
                })
            })
            .await;
        match (made, own_error) {
            (Ok(tag), _) => Ok(tag.clone()),
            (Err(_), Some(e)) => Err(e),
            (Err(text), None) => Err(EngineError::api("task image", text)),
        }
    }

    async fn make_layer(
        &self,
        image: &str,
        target: &RunTarget,
        log: &Path,
    ) -> Result<String, EngineError> {
        let run_id = target.labels.get(RUN_LABEL).cloned().unwrap_or_default();
        let inspect = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|e| EngineError::api("image inspect", e))?;
        let config = inspect.config.unwrap_or_default();
        let req = layer::LayerRequest {
            suite_image: image.to_string(),
            target_image: target.image.clone(),
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            tag: layer::layer_tag(self.settings.registry.as_deref(), &run_id, image),
            labels: target.labels.clone(),
        };
        layer::build(&self.docker, &req, log).await?;
        if self.settings.registry.is_some() {
            layer::push(&self.docker, &req.tag).await?;
        }
        Ok(req.tag)
    }

    /// The run's egress network: a swarm-scoped bridge, so each node makes its own with NAT.
    async fn egress_network(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let run_id = spec.labels.get(RUN_LABEL).cloned().unwrap_or_default();
        let mut networks = self.egress.lock().await;
        if let Some(name) = networks.get(&run_id) {
            return Ok(name.clone());
        }
        let name = format!("phalanx-{run_id}-egress");
        self.create_network(&name, false, &spec.labels).await?;
        networks.insert(run_id, name.clone());
        Ok(name)
    }

    /// A swarm-scoped bridge network. `isolated`: internal, and the task's alone on it. The
    /// options ask for no address on the host side and no traffic between endpoints, but
    /// swarm drops bridge options on swarm-scoped networks (hence [`PolicyGap::NetworkNone`]);
    /// they stay for an engine that honours them.
    async fn create_network(
        &self,
        name: &str,
        isolated: bool,
        labels: &HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let options = if isolated {
            HashMap::from([
                (
                    "com.docker.network.bridge.inhibit_ipv4".to_string(),
                    "true".to_string(),
                ),
                (
                    "com.docker.network.bridge.enable_icc".to_string(),
                    "false".to_string(),
                ),
            ])
        } else {
            HashMap::new()
        };
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                scope: Some("swarm".into()),
                internal: Some(isolated),
                labels: Some(run_labels(labels)),
                options: Some(options),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| EngineError::api("network create", e))
    }

    fn constraints(&self, spec: &ContainerSpec) -> Vec<String> {
        let mut constraints = spec.placement.clone();
        if self.settings.registry.is_none() && !self.manager_node.is_empty() {
            constraints.push(format!("node.id=={}", self.manager_node));
        }
        constraints
    }

    /// The task of service `name`, if the manager still has it.
    async fn task_of(&self, name: &str) -> Result<Option<TaskSeen>, EngineError> {
        let filters = HashMap::from([("service".to_string(), vec![name.to_string()])]);
        let opts = ListTasksOptionsBuilder::default().filters(&filters).build();
        let tasks = match timed("task-list", name, self.docker.list_tasks(Some(opts))).await {
            Ok(tasks) => tasks,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(EngineError::api("task list", e)),
        };
        let Some(status) = tasks.into_iter().find_map(|t| t.status) else {
            return Ok(None);
        };
        let why = status
            .err
            .filter(|e| !e.is_empty())
            .or(status.message)
            .unwrap_or_default();
        Ok(Some(TaskSeen {
            state: status.state.unwrap_or(TaskState::NEW),
            // One short line: it goes into errors and the log.
            why: crate::report::text::one_line(&why, WHY_MAX),
            exit_code: status.container_status.and_then(|c| c.exit_code),
        }))
    }

    /// Removes the service and, once its task has let go of it, its own network.
    fn remove_in_background(&self, attempt: Arc<Attempt>) {
        let docker = self.docker.clone();
        let task = async move {
            // Removed from the cluster while a node still has the task's container
            // attached, the node would keep the network; and the run's final sweep removes
            // images, which a stopping task still holds: wait for the task to go.
            let known = attempt.tasks.lock().unwrap().clone();
            remove_service_and_wait(&docker, &attempt.service, known).await;
            if attempt.own_network {
                remove_network_patiently(&docker, &attempt.network).await;
            }
        };
        self.removals.spawn(task);
    }

    /// Removes the services `keep` does not keep among those labelled [`RUN_LABEL`]
    /// (`=run_id` when given), then what the manager's engine has of them, then their
    /// images (last: a task still stopping holds its image); returns how many services
    /// and containers went.
    async fn remove_swarm_objects(
        &self,
        run_id: Option<&str>,
        keep: impl Fn(Option<&HashMap<String, String>>) -> bool,
    ) -> Result<usize, EngineError> {
        let filters = label_filter(run_id);
        let opts = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = self
            .docker
            .list_services(Some(opts))
            .await
            .map_err(|e| EngineError::api("service list", e))?;
        let mut removed = 0;
        for service in services {
            let labels = service.spec.as_ref().and_then(|s| s.labels.as_ref());
            if keep(labels) {
                continue;
            }
            if let Some(id) = service.id.as_deref()
                && remove_service_and_wait(&self.docker, id, Vec::new()).await
            {
                removed += 1;
            }
        }
        // The run's networks, each until the node has let go of it too.
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let networks = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(|e| EngineError::api("network list", e))?;
        for network in networks {
            if keep(network.labels.as_ref()) {
                continue;
            }
            if let Some(id) = network.id.as_deref() {
                remove_network_patiently(&self.docker, id).await;
            }
        }
        let containers = match run_id {
            Some(_) => self.local.remove_labelled(run_id).await?,
            None => self.local.remove_orphans().await?,
        };
        let opts = ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let images = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(|e| EngineError::api("image list", e))?;
        let force = RemoveImageOptionsBuilder::default().force(true).build();
        for image in images {
            if keep(Some(&image.labels)) {
                continue;
            }
            // An image another live run still uses is refused: fine.
            let _ = self
                .docker
                .remove_image(&image.id, Some(force.clone()), None)
                .await;
        }
        Ok(removed + containers)
    }
}

impl Engine for SwarmEngine {
    /// The suite's image on the manager, then its layer over the run's target (in the
    /// suite's build log): building it is image time, not the suite's.
    async fn ensure_image(
        &self,
        suite: &Suite,
        build_log: &Path,
    ) -> Result<ImageInfo, EngineError> {
        let info = self.local.ensure_image(suite, build_log).await?;
        let target = self.target.lock().unwrap().clone();
        if let Some(target) = target {
            self.layer_for(&suite.image, &target, build_log).await?;
        }
        Ok(info)
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let Some(volume) = spec.target_volume.as_deref() else {
            return Err(EngineError::api(
                "task create",
                "the swarm engine sends the target in an image: it needs the target copied \
                 (target mode copy or auto), not bind-mounted",
            ));
        };
        if spec.policy.network == NetworkMode::Target {
            return Err(EngineError::api(
                "task create",
                "network = \"target\" is not supported by the swarm engine yet",
            ));
        }
        let target = RunTarget {
            image: layer::target_image(volume),
            labels: run_labels(&spec.labels),
        };
        // Built by ensure_image already, unless the target came some other way.
        let log = std::env::temp_dir().join(format!("{}-layer.log", spec.name));
        let image = self.layer_for(&spec.image, &target, &log).await?;
        let service = spec::service_name(&spec.name);
        let (network, own_network) = match spec.policy.network {
            NetworkMode::Egress => (self.egress_network(spec).await?, false),
            _ => (format!("{service}-net"), true),
        };
        let attempt = Attempt {
            spec: spec.clone(),
            service: service.clone(),
            image,
            nonce: frame::nonce(),
            network,
            own_network,
            phase: watch::Sender::new(Phase::Running),
            sent: watch::Sender::new(None),
            last: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        };
        self.attempts
            .lock()
            .unwrap()
            .insert(service.clone(), Arc::new(attempt));
        Ok(service)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        let attempt = self.attempt(id)?;
        if attempt.own_network {
            let made = self.create_network(&attempt.network, true, &attempt.spec.labels);
            timed("network-create", id, made).await?;
        }
        let plan = spec::TaskPlan {
            spec: &attempt.spec,
            service: &attempt.service,
            image: &attempt.image,
            nonce: &attempt.nonce,
            network: &attempt.network,
            constraints: self.constraints(&attempt.spec),
            grace: GRACE,
        };
        let created = self.docker.create_service(spec::service_spec(&plan), None);
        timed("service-create", id, created)
            .await
            .map(|_| ())
            .map_err(|e| EngineError::api("service create", e))
    }

    fn logs(&self, id: &str) -> BoxStream<'static, Result<LogChunk, EngineError>> {
        let attempt = match self.attempt(id) {
            Ok(attempt) => attempt,
            Err(e) => return stream::once(async { Err(e) }).boxed(),
        };
        let (tx, rx) = futures::channel::mpsc::channel(64);
        tokio::spawn(follow(self.docker.clone(), attempt, tx));
        rx.boxed()
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus, EngineError> {
        let attempt = self.attempt(id)?;
        let mut pause = Duration::from_millis(100);
        loop {
            let seen = self.task_of(&attempt.service).await?;
            match seen {
                Some(seen) => {
                    *attempt.last.lock().unwrap() = Some(seen.clone());
                    if let Some(ended) = ending(&seen) {
                        attempt.phase.send_if_modified(|phase| {
                            let running = *phase == Phase::Running;
                            if running {
                                *phase = Phase::Ended { at: Instant::now() };
                            }
                            running
                        });
                        return match ended {
                            Ok(status) => Ok(with_oom(&attempt, status).await),
                            Err(e) => Err(e),
                        };
                    }
                }
                // Removed (by a stop): what was last seen is all there is.
                None if *attempt.phase.borrow() != Phase::Running => {
                    let last = attempt.last.lock().unwrap().clone();
                    return match last.as_ref().and_then(ending) {
                        Some(ended) => ended,
                        None => Err(EngineError::api(
                            "task wait",
                            "the service was removed before its task ended",
                        )),
                    };
                }
                None => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Removes the service: the task gets SIGTERM, then SIGKILL after its grace period
    /// (the wrapper passes SIGTERM on and still sends what the tool wrote).
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let attempt = self.attempt(id)?;
        let until = Instant::now() + grace.min(GRACE) + STOP_SLACK;
        attempt.phase.send_replace(Phase::Stopping { until });
        *attempt.tasks.lock().unwrap() = task_ids(&self.docker, &attempt.service).await;
        match self.docker.delete_service(&attempt.service).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(EngineError::api("service remove", e)),
        }
    }

    async fn download(
        &self,
        id: &str,
        path: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, EngineError>>>, EngineError> {
        let attempt = self.attempt(id)?;
        let sent = read_sent(&attempt, Duration::from_secs(30))
            .await
            .ok_or_else(|| EngineError::api("result download", "the task's log was never read"))?;
        let tar = match &sent.framed {
            Framed::Tar(tar) => tar.clone(),
            other => return Err(EngineError::api("result download", framed_problem(other))),
        };
        // The wrapper packs `/results` as the archive API would send it: the whole of it
        // needs no cutting (and no copy of up to the result cap).
        let subset = if path.trim_end_matches('/') == RESULTS_DIR {
            Some(tar)
        } else {
            let path = path.to_string();
            tokio::task::spawn_blocking(move || results::subset(&tar, &path))
                .await
                .map_err(|e| EngineError::api("result download", e))?
                .map_err(|e| EngineError::api("result download", format!("the framed tar: {e}")))?
                .map(Bytes::from)
        };
        Ok(subset.map(|tar| stream::once(async { Ok(tar) }).boxed()))
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let attempt = self.attempts.lock().unwrap().remove(id);
        if let Some(attempt) = attempt {
            self.remove_in_background(attempt);
        }
        Ok(())
    }

    async fn remove_labelled(&self, run_id: Option<&str>) -> Result<usize, EngineError> {
        self.removals.finish().await;
        let removed = self.remove_swarm_objects(run_id, |_| false).await?;
        if let Some(run_id) = run_id {
            self.egress.lock().await.remove(run_id);
        }
        Ok(removed)
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        self.local.image_exists(image).await
    }

    async fn build_image(
        &self,
        context: &Path,
        image: &str,
        log: &Path,
    ) -> Result<(), EngineError> {
        self.local.build_image(context, image, log).await
    }

    /// A task may run on any node: the target always travels in the run's images.
    async fn probe_target(
        &self,
        _target: &Path,
        _probe: &[ProbeFile],
        _labels: &HashMap<String, String>,
    ) -> Result<TargetView, EngineError> {
        Ok(TargetView::Absent)
    }

    async fn copy_target(
        &self,
        volume: &str,
        labels: &HashMap<String, String>,
        tar: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<(), EngineError> {
        let image = layer::target_image(volume);
        layer::import_target(&self.docker, &image, labels, tar).await?;
        *self.target.lock().unwrap() = Some(RunTarget {
            image,
            labels: run_labels(labels),
        });
        Ok(())
    }

    async fn remove_orphans(&self) -> Result<usize, EngineError> {
        self.remove_swarm_objects(None, |labels| !orphaned(labels))
            .await
    }

    async fn start_service(&self, spec: &ServiceSpec) -> Result<String, EngineError> {
        Err(EngineError::api(
            "service start",
            format!(
                "service `{}`: services are not supported by the swarm engine yet",
                spec.alias
            ),
        ))
    }

    async fn await_ready(&self, probe: &ReadyProbe) -> Result<Readiness, EngineError> {
        Err(EngineError::api(
            "readiness check",
            format!(
                "service `{}`: services are not supported by the swarm engine yet",
                probe.host
            ),
        ))
    }
}

/// What the log reader found after the tool, waiting up to `within` for the log to end.
/// The runner reads the whole log before it downloads, so a download only waits when it
/// did not; `wait` waits for it when the tool was killed, to learn whether by OOM.
async fn read_sent(attempt: &Attempt, within: Duration) -> Option<Arc<Sent>> {
    let mut sent = attempt.sent.subscribe();
    let waited = tokio::time::timeout(within, async {
        sent.wait_for(|f| f.is_some())
            .await
            .ok()
            .and_then(|f| f.clone())
    })
    .await;
    waited.ok().flatten()
}

/// `status`, with `oom_killed` from what the wrapper counted when the tool died of a
/// signal: the task state has no OOM flag, the task's memory cgroup does.
async fn with_oom(attempt: &Attempt, mut status: ExitStatus) -> ExitStatus {
    if status.code > 128 {
        let within = FRAME_WAIT + DRAIN + Duration::from_secs(5);
        if let Some(sent) = read_sent(attempt, within).await {
            status.oom_killed = sent.oom_killed;
        }
    }
    status
}

/// What a task in this state ended with, or `None` while it is not over.
fn ending(seen: &TaskSeen) -> Option<Result<ExitStatus, EngineError>> {
    let exited = |code| {
        Ok(ExitStatus {
            code,
            oom_killed: false,
        })
    };
    match seen.state {
        TaskState::COMPLETE => Some(exited(seen.exit_code.unwrap_or(0))),
        // A non-zero exit is a failed task with the code; anything else failed to start.
        TaskState::FAILED => Some(match seen.exit_code {
            Some(code) if code != 0 || seen.why.contains("non-zero exit") => exited(code),
            _ => Err(EngineError::api("task start", &seen.why)),
        }),
        TaskState::REJECTED => Some(Err(EngineError::api(
            "task",
            format!("the swarm rejected the task: {}", seen.why),
        ))),
        TaskState::SHUTDOWN | TaskState::REMOVE | TaskState::ORPHANED => {
            Some(Err(EngineError::api(
                "task",
                format!("the task was shut down before it ended: {}", seen.why),
            )))
        }
        _ => None,
    }
}

fn framed_problem(framed: &Framed) -> String {
    match framed {
        Framed::Tar(_) => "no problem".into(),
        Framed::Missing => "the task ended before its wrapper sent /results (killed, out of \
                            memory, or it never started)"
            .into(),
        Framed::Cut => "the task's log ended in the middle of /results".into(),
        Framed::PackFailed { status } => format!(
            "the task could not pack all of /results (tar exited with {status}): a file its \
             user cannot read?"
        ),
        Framed::TooLarge { limit } => format!("/results is larger than {limit} bytes as a tar"),
        Framed::Corrupt => "the framed /results in the task's log is not base64".into(),
    }
}

/// Follows the service's log into `tx` until the frame ends, the task is over and quiet,
/// or a stop's deadline passes; then keeps what the frame held on the attempt.
async fn follow(
    docker: Docker,
    attempt: Arc<Attempt>,
    mut tx: futures::channel::mpsc::Sender<Result<LogChunk, EngineError>>,
) {
    use futures::SinkExt;
    let opts = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.service_logs(&attempt.service, Some(opts)).boxed();
    let mut deframer = Deframer::new(&attempt.nonce, MAX_TAR);
    let mut phase = attempt.phase.subscribe();
    let mut tar_status = None;
    let mut oom_kills = 0;
    let mut heard = Instant::now();
    let mut output_seen = false;
    while !deframer.done() {
        let deadline = match *phase.borrow_and_update() {
            Phase::Running => None,
            Phase::Ended { at } => Some((heard + DRAIN).max(at + FRAME_WAIT)),
            Phase::Stopping { until } => Some(until),
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = logs.next() => {
                heard = Instant::now();
                let pieces = match item {
                    Some(Ok(LogOutput::StdOut { message })) => deframer.push(&message),
                    Some(Ok(LogOutput::StdErr { message })) => {
                        output_seen = true;
                        let _ = tx.send(Ok(LogChunk::Stderr(message))).await;
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(EngineError::api("service logs", e))).await;
                        break;
                    }
                    None => break,
                };
                for piece in pieces {
                    match piece {
                        Piece::Output(bytes) => {
                            output_seen = true;
                            let _ = tx.send(Ok(LogChunk::Stdout(bytes))).await;
                        }
                        Piece::Ended {
                            tar_status: status,
                            oom_kills: kills,
                        } => {
                            tar_status = Some(status);
                            oom_kills = kills;
                        }
                    }
                }
            }
            () = sleep => break,
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    for piece in deframer.finish() {
        if let Piece::Output(bytes) = piece {
            let _ = tx.send(Ok(LogChunk::Stdout(bytes))).await;
        }
    }
    // A task that never ran says nothing itself: say why, as the swarm put it.
    let last = attempt.last.lock().unwrap().clone();
    if !output_seen
        && !deframer.done()
        && let Some(seen) = last.filter(|s| !s.why.is_empty())
    {
        let note = format!("phalanx: the swarm task was {}: {}\n", seen.state, seen.why);
        let _ = tx.send(Ok(LogChunk::Stderr(Bytes::from(note)))).await;
    }
    attempt.sent.send_replace(Some(Arc::new(Sent {
        framed: deframer.into_framed(tar_status),
        oom_killed: oom_kills > 0,
    })));
}

/// The ids of service `name`'s tasks, while the service exists.
async fn task_ids(docker: &Docker, name: &str) -> Vec<String> {
    let filters = HashMap::from([("service".to_string(), vec![name.to_string()])]);
    let opts = ListTasksOptionsBuilder::default().filters(&filters).build();
    match docker.list_tasks(Some(opts)).await {
        Ok(tasks) => tasks.into_iter().filter_map(|t| t.id).collect(),
        Err(_) => Vec::new(),
    }
}

/// Removes service `name` and waits (up to [`NETWORK_REMOVAL`]) until the manager has
/// forgotten its tasks: their nodes have stopped and removed the containers. (A task list
/// filtered by a removed service fails, so the tasks are looked up first, by id.)
async fn remove_service_and_wait(docker: &Docker, name: &str, known: Vec<String>) -> bool {
    let mut tasks = task_ids(docker, name).await;
    tasks.extend(
        known
            .into_iter()
            .filter(|t| !tasks.contains(t))
            .collect::<Vec<_>>(),
    );
    let removed = match docker.delete_service(name).await {
        Ok(()) => true,
        Err(e) if is_not_found(&e) => false,
        Err(_) => return false,
    };
    let give_up = Instant::now() + NETWORK_REMOVAL;
    let mut pause = Duration::from_millis(100);
    for task in tasks {
        while Instant::now() < give_up && docker.inspect_task(&task).await.is_ok() {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
    removed
}

/// Retries the removal of a network its task is still leaving, up to [`NETWORK_REMOVAL`].
async fn remove_network_patiently(docker: &Docker, name: &str) {
    let give_up = Instant::now() + NETWORK_REMOVAL;
    let mut pause = Duration::from_millis(200);
    loop {
        match docker.remove_network(name).await {
            // The cluster forgets it at once; the node's own copy goes a moment later.
            Ok(()) => {
                while Instant::now() < give_up && docker.inspect_network(name, None).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return;
            }
            // A node's stale copy of a network the cluster no longer has answers "not
            // found" with a 500: it is gone as far as the swarm goes.
            Err(e) if is_not_found(&e) || e.to_string().contains("not found") => return,
            Err(_) if Instant::now() < give_up => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            // The run's final sweep (remove_labelled) tries again.
            Err(_) => return,
        }
    }
}
