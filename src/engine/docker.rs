//! The real engine: the Docker Engine API through bollard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
    NetworkCreateRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use self::local_results::Local;
use super::{
    ContainerSpec, Engine, EngineError, ExitStatus, ImageInfo, LogChunk, ProbeFile, RESULTS_DIR,
    RUN_LABEL, TARGET_DIR, TargetView, base,
};
use crate::config::{NetworkMode, Suite};

/// Size of the private `/tmp` each suite gets (it counts against the memory limit).
const TMP_SIZE: &str = "256m";

/// Where the prepared result volume is mounted in the short-lived preparation container.
const PREP_MOUNT_PARENT: &str = "/phalanx-prep";

mod diagnose;
mod local_results;
mod service;
mod target;

pub use target::EMPTY_IMAGE;

pub use diagnose::EngineFacts;

/// Hidden switch: with `PHALANX_RESULTS_VIA_API=1`, results are always copied through the
/// engine's archive API, never read from the volume on this host (for tests of that path).
const VIA_API_ENV: &str = "PHALANX_RESULTS_VIA_API";

/// How much of the image's `/results` is read to see whether it is an empty directory.
const LOOK_LIMIT: usize = 64 * 1024;

/// Hidden switch for profiling: with `PHALANX_TIMINGS=1`, every engine call prints
/// `phalanx-timing <step> <ms> <container>` to stderr.
const TIMINGS_ENV: &str = "PHALANX_TIMINGS";

fn timings_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(TIMINGS_ENV).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// Runs `fut`, printing how long it took when [`TIMINGS_ENV`] is set.
pub(crate) async fn timed<T>(
    step: &str,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> T {
    if !timings_enabled() {
        return fut.await;
    }
    let clock = std::time::Instant::now();
    let out = fut.await;
    eprintln!(
        "phalanx-timing {step} {:.1} {what}",
        clock.elapsed().as_secs_f64() * 1e3
    );
    out
}

/// A container created (or not) once, by whoever asks first; an error as text.
type Created = tokio::sync::OnceCell<Result<String, String>>;

pub struct DockerEngine {
    docker: Docker,
    /// Images already known to exist, so each is inspected (or built) once per run.
    images: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<ImageInfo>>>>,
    /// What the engine copies from each image into a fresh result volume: looked at once
    /// per image per run, by the first suite that needs it.
    image_results: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<ImageResults>>>>,
    /// Containers created ahead of time by [`Engine::prepare`] (or by [`Engine::create`],
    /// whichever asked first), by container name; an error is kept as text.
    prepared: Mutex<HashMap<String, Arc<Created>>>,
    /// The prepared (named) result volume of each container that has one, removed with it.
    volumes: Mutex<HashMap<String, String>>,
    /// Where each container's result volume lives on this host, when we can read it there
    /// (learned from the inspection after the wait, so it costs no call).
    results_on_host: Mutex<HashMap<String, PathBuf>>,
    /// Removals still under way: [`Engine::remove`] returns at once so the suite's slot is
    /// free for the next one; [`Engine::remove_labelled`] waits for all of them.
    removals: super::removals::Removals,
    /// The internal network for `network = "target"` suites, per run id.
    target_networks: tokio::sync::Mutex<HashMap<String, String>>,
}

/// Where the client looks for the engine, for error messages.
pub fn engine_location() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => format!("{host} (from DOCKER_HOST)"),
        _ => "unix:///var/run/docker.sock".to_string(),
    }
}

impl DockerEngine {
    /// Connects, negotiates the API version (the engine may be older than bollard's
    /// default) and checks the engine answers.
    pub async fn connect() -> Result<Self, EngineError> {
        let unreachable = |e: BollardError| EngineError::Unreachable {
            location: engine_location(),
            message: e.to_string(),
        };
        let docker = Docker::connect_with_defaults().map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        Ok(DockerEngine {
            docker,
            images: Default::default(),
            image_results: Default::default(),
            prepared: Default::default(),
            volumes: Default::default(),
            results_on_host: Default::default(),
            removals: Default::default(),
            target_networks: Default::default(),
        })
    }

    /// The client, for a back end built on this one (the swarm manager is a Docker engine).
    pub(crate) fn client(&self) -> &Docker {
        &self.docker
    }

    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, EngineError> {
        match timed("image-inspect", image, self.docker.inspect_image(image)).await {
            Ok(inspect) => Ok(Some(ImageInfo {
                id: inspect.id.unwrap_or_default(),
                digest: inspect.repo_digests.and_then(|d| d.into_iter().next()),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(EngineError::api("image inspect", e)),
        }
    }

    async fn find_or_build(
        &self,
        suite: &Suite,
        build_log: &Path,
    ) -> Result<ImageInfo, EngineError> {
        if let Some(info) = self.inspect_image(&suite.image).await? {
            return Ok(info);
        }
        let Some(context) = &suite.build else {
            return Err(EngineError::ImageMissing {
                image: suite.image.clone(),
            });
        };
        base::build_image(&self.docker, context, &suite.image, build_log).await?;
        self.inspect_image(&suite.image)
            .await?
            .ok_or_else(|| EngineError::Build {
                image: suite.image.clone(),
                message: "the build finished but the image is not there".into(),
                log: build_log.to_path_buf(),
            })
    }

    /// A labelled volume for `/results`, made writable for whatever user the suite runs as.
    ///
    /// A fresh volume is owned by root with mode 755, and the archive API skips the `.`
    /// entry of an upload, so the volume root cannot be chmod-ed through the suite's own
    /// (read-only) container. A never-started preparation container that mounts the volume
    /// one level down can: extracting a `results/` directory entry with mode 1777 onto the
    /// mount point changes the volume root. Any image works; nothing runs in it.
    async fn prepared_results_volume(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let name = format!("{}-results", spec.name);
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(spec.labels.clone()),
            ..Default::default()
        };
        timed("volume-create", &name, self.docker.create_volume(request))
            .await
            .map_err(|e| EngineError::api("volume create", e))?;
        let prep_name = format!("{}-prep", spec.name);
        let prep = ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(spec.labels.clone()),
            entrypoint: Some(vec!["/phalanx-never-started".into()]),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![volume_mount(
                    &name,
                    &format!("{PREP_MOUNT_PARENT}/results"),
                )]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&prep_name)
            .build();
        let created = timed(
            "prep-create",
            &prep_name,
            self.docker.create_container(Some(opts), prep),
        )
        .await;
        let upload = match &created {
            Ok(c) => {
                let opts = UploadToContainerOptionsBuilder::default()
                    .path(PREP_MOUNT_PARENT)
                    .build();
                let upload = self.docker.upload_to_container(
                    &c.id,
                    Some(opts),
                    bollard::body_full(results_dir_tar()),
                );
                timed("prep-upload", &prep_name, upload)
                    .await
                    .map_err(|e| EngineError::api("results volume preparation", e))
            }
            Err(e) => Err(EngineError::api("results volume preparation", e)),
        };
        if let Ok(c) = &created {
            timed(
                "prep-remove",
                &prep_name,
                self.force_remove_container(&c.id),
            )
            .await;
        }
        match upload {
            Ok(()) => Ok(name),
            Err(e) => {
                self.remove_volume(&name).await;
                Err(e)
            }
        }
    }

    /// Creates the container with a writable [`RESULTS_DIR`], the cheap way when the
    /// image allows it.
    ///
    /// The cheap way: an anonymous volume that the engine fills from the image's own
    /// `/results` at create time, taking its owner and mode. That is only right when the
    /// image's directory is empty (nothing stale can pass for a result) and writable by the
    /// suite's user; otherwise a prepared named volume. The first suite of each image in a
    /// run finds out by creating its container the cheap way and looking at the volume
    /// before anything runs; the verdict holds for the image for the rest of the run.
    async fn create_for(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let network_mode = self.network_mode(spec).await?;
        let cell = {
            let mut known = self.image_results.lock().unwrap();
            known.entry(spec.image.clone()).or_default().clone()
        };
        let mut own = None;
        let found = *cell
            .get_or_try_init(|| async {
                let id = self
                    .create_with(spec, &network_mode, ResultsMount::CopyUp)
                    .await?;
                let found = self.look_at_results(&id, &spec.name).await;
                own = Some(id);
                Ok::<_, EngineError>(found)
            })
            .await?;
        let cheap = found.writable_by(&spec.policy.user);
        if let Some(id) = own {
            if cheap {
                return Ok(id);
            }
            // It has the suite's name: gone before the real one is created.
            self.force_remove_container(&id).await;
        }
        let results = if cheap {
            ResultsMount::CopyUp
        } else {
            ResultsMount::Prepared(self.prepared_results_volume(spec).await?)
        };
        self.create_with(spec, &network_mode, results).await
    }

    async fn create_with(
        &self,
        spec: &ContainerSpec,
        network_mode: &str,
        results: ResultsMount,
    ) -> Result<String, EngineError> {
        let body = container_body(spec, &results, network_mode.to_string());
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = timed(
            "create",
            &spec.name,
            self.docker.create_container(Some(opts), body),
        )
        .await;
        match (created, results) {
            (Ok(created), ResultsMount::Prepared(volume)) => {
                self.volumes
                    .lock()
                    .unwrap()
                    .insert(created.id.clone(), volume);
                Ok(created.id)
            }
            (Ok(created), ResultsMount::CopyUp) => Ok(created.id),
            (Err(e), results) => {
                if let ResultsMount::Prepared(volume) = &results {
                    self.remove_volume(volume).await;
                }
                Err(EngineError::api("container create", e))
            }
        }
    }

    /// What the engine copied from the image into the (created, never started) container's
    /// result volume: read on this host when possible, else through the archive API. Any
    /// failure means "unknown", which only costs the slower preparation.
    async fn look_at_results(&self, id: &str, name: &str) -> ImageResults {
        let inspect = timed(
            "look-inspect",
            name,
            self.docker.inspect_container(id, None),
        )
        .await;
        if let Some(dir) = inspect.ok().as_ref().and_then(results_on_host) {
            return ImageResults::from_dir(&dir);
        }
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(RESULTS_DIR)
            .build();
        let mut tar = self.docker.download_from_container(id, Some(opts));
        let read = async {
            let mut all = Vec::new();
            while let Some(chunk) = tar.next().await {
                all.extend_from_slice(&chunk?);
                // An empty directory is a couple of KiB of tar; more is content.
                if all.len() > LOOK_LIMIT {
                    return Ok(None);
                }
            }
            Ok(Some(all))
        };
        match timed("look-download", name, read).await {
            Ok(Some(tar)) => ImageResults::from_tar(&tar),
            Ok(None) => ImageResults::Unsuitable,
            Err(e) if is_not_found(&e) => ImageResults::Missing,
            Err(_) => ImageResults::Unknown,
        }
    }

    /// Removes the container (and its prepared volume) in a task of its own.
    fn remove_in_background(&self, id: String, volume: Option<String>) {
        let docker = self.docker.clone();
        let task = async move {
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            let _ = timed("remove", &id, docker.remove_container(&id, Some(opts))).await;
            if let Some(volume) = volume {
                let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
                let removed = docker.remove_volume(&volume, Some(opts));
                let _ = timed("volume-remove", &volume, removed).await;
            }
        };
        self.removals.spawn(task);
    }

    async fn target_network(
        &self,
        run_id: &str,
        labels: &HashMap<String, String>,
    ) -> Result<String, EngineError> {
        let mut networks = self.target_networks.lock().await;
        if let Some(name) = networks.get(run_id) {
            return Ok(name.clone());
        }
        let name = format!("phalanx-{run_id}-target");
        // The run's labels only: the network outlives the suite or service that made it.
        let labels = super::orphans::run_labels(labels);
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                internal: Some(true),
                labels: Some(labels),
                options: Some(service::network_options()),
                ..Default::default()
            })
            .await
            .map_err(|e| EngineError::api("network create", e))?;
        networks.insert(run_id.to_string(), name.clone());
        Ok(name)
    }

    async fn network_mode(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        Ok(match spec.policy.network {
            NetworkMode::None => "none".into(),
            NetworkMode::Egress => "bridge".into(),
            NetworkMode::Target => {
                let run_id = spec.labels.get(RUN_LABEL).cloned().unwrap_or_default();
                self.target_network(&run_id, &spec.labels).await?
            }
        })
    }

    async fn force_remove_container(&self, id: &str) -> bool {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        self.docker.remove_container(id, Some(opts)).await.is_ok()
    }

    async fn remove_volume(&self, name: &str) {
        let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
        let _ = self.docker.remove_volume(name, Some(opts)).await;
    }
}

impl Engine for DockerEngine {
    async fn ensure_image(
        &self,
        suite: &Suite,
        build_log: &Path,
    ) -> Result<ImageInfo, EngineError> {
        let cell = {
            let mut images = self.images.lock().unwrap();
            images.entry(suite.image.clone()).or_default().clone()
        };
        // One inspection (or build) per image per run; suites sharing an image wait for it.
        cell.get_or_try_init(|| self.find_or_build(suite, build_log))
            .await
            .cloned()
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        // The same cell as a hint's (which is never removed, so a late hint cannot create a
        // second container): whoever comes first creates, the other waits for it.
        let cell = self
            .prepared
            .lock()
            .unwrap()
            .entry(spec.name.clone())
            .or_default()
            .clone();
        let mut own_error = None;
        let made = cell
            .get_or_init(|| async {
                self.create_for(spec).await.map_err(|e| {
                    let message = e.to_string();
                    own_error = Some(e);
                    message
                })
            })
            .await;
        match (made, own_error) {
            (Ok(id), _) => Ok(id.clone()),
            (Err(_), Some(e)) => Err(e),
            // The hint failed: that decides nothing, try again.
            (Err(_), None) => self.create_for(spec).await,
        }
    }

    /// Only for images this run already has and has looked at: a hint never builds an
    /// image or makes the first look, which stay with the suite that needs them.
    async fn prepare(&self, spec: &ContainerSpec) -> bool {
        if !known(&self.images, &spec.image) || !known(&self.image_results, &spec.image) {
            return true;
        }
        let cell = {
            let mut prepared = self.prepared.lock().unwrap();
            if prepared.contains_key(&spec.name) {
                return false;
            }
            prepared.entry(spec.name.clone()).or_default().clone()
        };
        cell.get_or_init(|| async { self.create_for(spec).await.map_err(|e| e.to_string()) })
            .await;
        false
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        timed("start", id, self.docker.start_container(id, None))
            .await
            .map_err(|e| EngineError::api("container start", e))
    }

    fn logs(&self, id: &str) -> BoxStream<'static, Result<LogChunk, EngineError>> {
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        self.docker
            .logs(id, Some(opts))
            .filter_map(|frame| async move {
                match frame {
                    Ok(LogOutput::StdOut { message }) => Some(Ok(LogChunk::Stdout(message))),
                    Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk::Stderr(message))),
                    Ok(LogOutput::Console { message }) => Some(Ok(LogChunk::Stdout(message))),
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(e) => Some(Err(EngineError::api("log stream", e))),
                }
            })
            .boxed()
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus, EngineError> {
        let opts = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let waited = timed(
            "wait",
            id,
            self.docker.wait_container(id, Some(opts)).next(),
        )
        .await;
        let code = match waited {
            Some(Ok(r)) => r.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(EngineError::api("container wait", e)),
            None => {
                return Err(EngineError::api(
                    "container wait",
                    "the wait stream ended early",
                ));
            }
        };
        let inspect = timed("inspect", id, self.docker.inspect_container(id, None))
            .await
            .map_err(|e| EngineError::api("container inspect", e))?;
        if let Some(host) = results_on_host(&inspect) {
            self.results_on_host
                .lock()
                .unwrap()
                .insert(id.to_string(), host);
        }
        let oom_killed = inspect.state.and_then(|s| s.oom_killed).unwrap_or(false);
        Ok(ExitStatus { code, oom_killed })
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let secs = grace.as_secs().max(1);
        let opts = StopContainerOptionsBuilder::default()
            .t(secs as i32)
            .build();
        // The engine answers only after the grace period: give the request room for it.
        let client = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(secs + 60));
        match client.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(EngineError::api("container stop", e)),
        }
    }

    async fn download(
        &self,
        id: &str,
        path: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, EngineError>>>, EngineError> {
        let on_host = self.results_on_host.lock().unwrap().get(id).cloned();
        if let Some(volume) = on_host {
            match local_results::results_tar(&volume, path) {
                Local::Tar(tar) => return Ok(Some(tar)),
                Local::Missing => return Ok(None),
                Local::UseApi => {}
            }
        }
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut tar = self.docker.download_from_container(id, Some(opts)).boxed();
        // The engine answers a missing path with 404 before any byte: peek at the first item.
        let first = match timed("download", id, tar.next()).await {
            None => return Ok(Some(stream::empty().boxed())),
            Some(Err(e)) if is_not_found(&e) => return Ok(None),
            Some(Err(e)) => return Err(EngineError::api("result download", e)),
            Some(Ok(bytes)) => bytes,
        };
        let rest = tar.map_err(|e| EngineError::api("result download", e));
        Ok(Some(stream::once(async { Ok(first) }).chain(rest).boxed()))
    }

    /// Starts removing the container and returns: the suite's slot is free at once. What
    /// this fails to remove, the run's final sweep ([`Engine::remove_labelled`]) removes
    /// after waiting for every removal under way.
    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        self.results_on_host.lock().unwrap().remove(id);
        let volume = self.volumes.lock().unwrap().remove(id);
        self.remove_in_background(id.to_string(), volume);
        Ok(())
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        Ok(self.inspect_image(image).await?.is_some())
    }

    async fn build_image(
        &self,
        context: &Path,
        image: &str,
        log: &Path,
    ) -> Result<(), EngineError> {
        super::base::build_image(&self.docker, context, image, log).await
    }

    async fn probe_target(
        &self,
        target_path: &Path,
        probe: &[ProbeFile],
        labels: &HashMap<String, String>,
    ) -> Result<TargetView, EngineError> {
        let run_id = labels.get(RUN_LABEL).map_or("none", String::as_str);
        let name = format!("phalanx-{run_id}-target-probe");
        target::probe(&self.docker, &name, target_path, probe, labels).await
    }

    async fn copy_target(
        &self,
        volume: &str,
        labels: &HashMap<String, String>,
        tar: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<(), EngineError> {
        target::copy(&self.docker, volume, labels, tar).await
    }

    async fn remove_orphans(&self) -> Result<usize, EngineError> {
        super::orphans::remove_orphans(&self.docker).await
    }

    async fn start_service(&self, spec: &super::ServiceSpec) -> Result<String, EngineError> {
        self.start_service_container(spec).await
    }

    async fn await_ready(
        &self,
        probe: &super::ReadyProbe,
    ) -> Result<super::Readiness, EngineError> {
        self.run_ready_check(probe).await
    }

    async fn remove_labelled(&self, run_id: Option<&str>) -> Result<usize, EngineError> {
        self.removals.finish().await;
        let filters = label_filter(run_id);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| EngineError::api("container list", e))?;
        let mut removed = 0;
        for id in containers.into_iter().filter_map(|c| c.id) {
            removed += usize::from(self.force_remove_container(&id).await);
        }
        let opts = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let volumes = self
            .docker
            .list_volumes(Some(opts))
            .await
            .map_err(|e| EngineError::api("volume list", e))?;
        for volume in volumes.volumes.unwrap_or_default() {
            self.remove_volume(&volume.name).await;
        }
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let networks = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(|e| EngineError::api("network list", e))?;
        for network in networks.into_iter().filter_map(|n| n.id) {
            let _ = self.docker.remove_network(&network).await;
        }
        Ok(removed)
    }
}

/// Whether the per-image cell for `image` holds its answer already.
fn known<T>(cells: &Mutex<HashMap<String, Arc<tokio::sync::OnceCell<T>>>>, image: &str) -> bool {
    cells
        .lock()
        .unwrap()
        .get(image)
        .is_some_and(|c| c.initialized())
}

/// The host directory of the container's [`RESULTS_DIR`] volume, if this process runs next
/// to the engine and may read it. A path that merely looks right is not enough: it must
/// be a directory here.
fn results_on_host(inspect: &bollard::models::ContainerInspectResponse) -> Option<PathBuf> {
    if std::env::var_os(VIA_API_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    if !local_results::can_read_volumes() {
        return None;
    }
    let mount = inspect.mounts.as_ref()?.iter().find(|m| {
        m.destination.as_deref() == Some(RESULTS_DIR) && m.typ.as_deref() == Some("volume")
    })?;
    let source = PathBuf::from(mount.source.as_ref()?);
    let meta = std::fs::symlink_metadata(&source).ok()?;
    meta.is_dir().then_some(source)
}

/// How a container's [`RESULTS_DIR`] is made writable.
enum ResultsMount {
    /// An anonymous volume filled from the image's own empty, writable `/results`; it goes
    /// with the container (`remove` with `v`).
    CopyUp,
    /// A named volume whose root was made world-writable by a preparation container.
    Prepared(String),
}

/// What an image has at [`RESULTS_DIR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageResults {
    /// An empty directory with this owner and mode.
    EmptyDir {
        uid: u64,
        gid: u64,
        mode: u32,
    },
    /// Something else: a directory with content, a file, a link.
    Unsuitable,
    Missing,
    /// It could not be looked at.
    Unknown,
}

impl ImageResults {
    /// Looks at the volume's directory on this host, without following anything.
    fn from_dir(dir: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            return ImageResults::Unknown;
        };
        if !meta.is_dir() {
            return ImageResults::Unsuitable;
        }
        match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
            Ok(true) => ImageResults::EmptyDir {
                uid: u64::from(meta.uid()),
                gid: u64::from(meta.gid()),
                mode: meta.mode() & 0o7777,
            },
            Ok(false) => ImageResults::Unsuitable,
            Err(_) => ImageResults::Unknown,
        }
    }

    /// Reads the tar the engine returns for the path: a lone directory entry means empty.
    fn from_tar(tar: &[u8]) -> Self {
        let mut archive = tar::Archive::new(tar);
        let Ok(mut entries) = archive.entries() else {
            return ImageResults::Unknown;
        };
        let dir = match entries.next() {
            Some(Ok(entry)) if entry.header().entry_type().is_dir() => {
                let h = entry.header();
                match (h.uid(), h.gid(), h.mode()) {
                    (Ok(uid), Ok(gid), Ok(mode)) => ImageResults::EmptyDir { uid, gid, mode },
                    _ => return ImageResults::Unknown,
                }
            }
            Some(Ok(_)) => return ImageResults::Unsuitable,
            _ => return ImageResults::Unknown,
        };
        match entries.next() {
            None => dir,
            Some(_) => ImageResults::Unsuitable,
        }
    }

    /// Whether `user` (`uid[:gid]` or a name, as in the policy) can create files in the
    /// directory. Names cannot be resolved here, so for them only "anyone may write" counts.
    /// No capability can override the mode: every capability is dropped.
    fn writable_by(&self, user: &str) -> bool {
        let ImageResults::EmptyDir { uid, gid, mode } = *self else {
            return false;
        };
        let (user_part, group_part) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        let numeric = |s: &str| s.parse::<u64>().ok();
        mode & 0o002 != 0
            || (numeric(user_part) == Some(uid) && mode & 0o200 != 0)
            || (group_part.and_then(numeric) == Some(gid) && mode & 0o020 != 0)
    }
}

fn container_body(
    spec: &ContainerSpec,
    results: &ResultsMount,
    network_mode: String,
) -> ContainerCreateBody {
    let policy = &spec.policy;
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user: Some(policy.user.clone()),
        labels: Some(spec.labels.clone()),
        tty: Some(false),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        network_disabled: Some(policy.network == NetworkMode::None),
        host_config: Some(HostConfig {
            tmpfs: Some(
                HashMap::from([(
                    "/tmp".to_string(),
                    format!("rw,nosuid,nodev,size={TMP_SIZE},mode=1777"),
                )])
                .into_iter()
                .chain(super::masks::mask_mounts(&spec.hidden))
                .collect(),
            ),
            mounts: Some(vec![
                target_mount(&spec.target, spec.target_volume.as_deref()),
                match results {
                    ResultsMount::CopyUp => copy_up_mount(RESULTS_DIR, &spec.labels),
                    ResultsMount::Prepared(volume) => volume_mount(volume, RESULTS_DIR),
                },
            ]),
            ..hardened(policy, network_mode)
        }),
        ..Default::default()
    }
}

/// What every container Phalanx runs gets from its policy: no capabilities but those it
/// names, no new privileges, the limits, an init process, and a log that never rotates.
fn hardened(policy: &crate::config::Policy, network_mode: String) -> HostConfig {
    HostConfig {
        network_mode: Some(network_mode),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(policy.cap_add.clone()),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        readonly_rootfs: Some(policy.read_only),
        privileged: Some(false),
        init: Some(true),
        pids_limit: Some(policy.pids),
        memory: Some(policy.memory as i64),
        // Same as memory: no swap on top of the limit.
        memory_swap: Some(policy.memory as i64),
        nano_cpus: Some((policy.cpus * 1e9) as i64),
        // Following a container's log across a rotation of the engine's log file ends
        // the stream early on this engine (the output's tail is lost), so the engine's
        // copy must not rotate for any realistic output. It is deleted with the
        // container; our own copy is capped by the collector. json-file stores each
        // line with ~70 bytes of JSON around it: 1 GB of 63-byte lines is 2.1 GB on
        // disk, which a 2g limit cut off at 948 MB.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), "8g".to_string()),
                ("max-file".to_string(), "1".to_string()),
            ])),
        }),
        auto_remove: Some(false),
        ..Default::default()
    }
}

/// The target, read-only: this host's directory, or the run's copy of it in a volume.
fn target_mount(target: &Path, target_volume: Option<&str>) -> Mount {
    match target_volume {
        Some(volume) => Mount {
            read_only: Some(true),
            ..volume_mount(volume, TARGET_DIR)
        },
        None => Mount {
            target: Some(TARGET_DIR.into()),
            source: Some(target.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        },
    }
}

fn volume_mount(volume: &str, target: &str) -> Mount {
    Mount {
        target: Some(target.into()),
        source: Some(volume.into()),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An anonymous volume, labelled like everything else, filled at create time from what
/// the image has at `target` (owner and mode included).
fn copy_up_mount(target: &str, labels: &HashMap<String, String>) -> Mount {
    Mount {
        target: Some(target.into()),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(false),
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A tar holding one directory entry, `results/`, world-writable with the sticky bit
/// (like `/tmp`): any user may create files, only their owner may delete them.
fn results_dir_tar() -> Bytes {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o1777);
    header.set_size(0);
    header.set_mtime(0);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header, "results/", std::io::empty())
        .expect("writing a tar to memory cannot fail");
    Bytes::from(
        builder
            .into_inner()
            .expect("writing a tar to memory cannot fail"),
    )
}

/// The filter for objects labelled [`RUN_LABEL`] (`=run_id` when given).
pub(crate) fn label_filter(run_id: Option<&str>) -> HashMap<String, Vec<String>> {
    let value = match run_id {
        Some(id) => format!("{RUN_LABEL}={id}"),
        None => RUN_LABEL.to_string(),
    };
    HashMap::from([("label".to_string(), vec![value])])
}

pub(crate) fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Ensures `path` names an existing directory and returns its absolute form, for `/target`.
pub fn absolute_target(path: &Path) -> std::io::Result<PathBuf> {
    let abs = std::fs::canonicalize(path)?;
    if !abs.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            abs.display()
        )));
    }
    Ok(abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, u32, u64, bool)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for &(path, mode, owner, dir) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if dir {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(mode);
            h.set_uid(owner);
            h.set_gid(owner);
            h.set_size(if dir { 0 } else { 1 });
            let data: &[u8] = if dir { b"" } else { b"x" };
            builder.append_data(&mut h, path, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn only_a_lone_directory_entry_is_an_empty_results_dir() {
        let empty = tar_of(&[("results/", 0o1777, 0, true)]);
        assert_eq!(
            ImageResults::from_tar(&empty),
            ImageResults::EmptyDir {
                uid: 0,
                gid: 0,
                mode: 0o1777
            }
        );
        let full = tar_of(&[
            ("results/", 0o1777, 0, true),
            ("results/a", 0o644, 0, false),
        ]);
        assert_eq!(ImageResults::from_tar(&full), ImageResults::Unsuitable);
        let file = tar_of(&[("results", 0o666, 0, false)]);
        assert_eq!(ImageResults::from_tar(&file), ImageResults::Unsuitable);
        assert_eq!(ImageResults::from_tar(b""), ImageResults::Unknown);
    }

    #[test]
    fn a_volume_directory_on_this_host_is_looked_at_without_following_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let ImageResults::EmptyDir { mode, .. } = ImageResults::from_dir(&empty) else {
            panic!("not an empty dir")
        };
        assert_eq!(mode, 0o1777);
        std::fs::write(empty.join("stale"), "x").unwrap();
        assert_eq!(ImageResults::from_dir(&empty), ImageResults::Unsuitable);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert_eq!(ImageResults::from_dir(&link), ImageResults::Unsuitable);
        assert_eq!(
            ImageResults::from_dir(&dir.path().join("absent")),
            ImageResults::Unknown
        );
    }

    #[test]
    fn writable_by_follows_owner_group_and_other_bits() {
        let dir = |uid, gid, mode| ImageResults::EmptyDir { uid, gid, mode };
        assert!(dir(0, 0, 0o1777).writable_by("65534:65534"));
        assert!(dir(0, 0, 0o777).writable_by("nobody"));
        assert!(dir(10001, 10001, 0o755).writable_by("10001:10001"));
        assert!(dir(10001, 10001, 0o755).writable_by("10001"));
        assert!(!dir(10001, 10001, 0o755).writable_by("65534:65534"));
        assert!(!dir(10001, 10001, 0o755).writable_by("app"));
        assert!(dir(0, 10001, 0o775).writable_by("65534:10001"));
        assert!(!dir(0, 10001, 0o755).writable_by("65534:10001"));
        assert!(!dir(10001, 10001, 0o555).writable_by("10001:10001"));
        assert!(!ImageResults::Missing.writable_by("0:0"));
        assert!(!ImageResults::Unknown.writable_by("0:0"));
        assert!(!ImageResults::Unsuitable.writable_by("0:0"));
    }
}
