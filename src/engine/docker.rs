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

use super::{
    ContainerSpec, Engine, EngineError, ExitStatus, ImageInfo, LogChunk, RESULTS_DIR, RUN_LABEL,
    TARGET_DIR, base,
};
use crate::config::{NetworkMode, Suite};

/// Size of the private `/tmp` each suite gets (it counts against the memory limit).
const TMP_SIZE: &str = "256m";

/// Where the prepared result volume is mounted in the short-lived preparation container.
const PREP_MOUNT_PARENT: &str = "/phalanx-prep";

pub struct DockerEngine {
    docker: Docker,
    /// Images already known to exist, so each is inspected (or built) once per run.
    images: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<ImageInfo>>>>,
    /// The result volume of each container we created, removed with it.
    volumes: Mutex<HashMap<String, String>>,
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
            volumes: Default::default(),
            target_networks: Default::default(),
        })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(image).await {
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
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(spec.labels.clone()),
                ..Default::default()
            })
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
        let created = self.docker.create_container(Some(opts), prep).await;
        let upload = match &created {
            Ok(c) => {
                let opts = UploadToContainerOptionsBuilder::default()
                    .path(PREP_MOUNT_PARENT)
                    .build();
                self.docker
                    .upload_to_container(&c.id, Some(opts), bollard::body_full(results_dir_tar()))
                    .await
                    .map_err(|e| EngineError::api("results volume preparation", e))
            }
            Err(e) => Err(EngineError::api("results volume preparation", e)),
        };
        if let Ok(c) = &created {
            self.force_remove_container(&c.id).await;
        }
        match upload {
            Ok(()) => Ok(name),
            Err(e) => {
                self.remove_volume(&name).await;
                Err(e)
            }
        }
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
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                internal: Some(true),
                labels: Some(labels.clone()),
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

    fn label_filter(run_id: Option<&str>) -> HashMap<String, Vec<String>> {
        let value = match run_id {
            Some(id) => format!("{RUN_LABEL}={id}"),
            None => RUN_LABEL.to_string(),
        };
        HashMap::from([("label".to_string(), vec![value])])
    }
}

impl Engine for DockerEngine {
    async fn ensure_image(
        &self,
        suite: &Suite,
        build_log: &Path,
    ) -> Result<ImageInfo, EngineError> {
        let cell = {
            let mut images = self.images.lock().await;
            images.entry(suite.image.clone()).or_default().clone()
        };
        // One inspection (or build) per image per run; suites sharing an image wait for it.
        cell.get_or_try_init(|| self.find_or_build(suite, build_log))
            .await
            .cloned()
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let network_mode = self.network_mode(spec).await?;
        let volume = self.prepared_results_volume(spec).await?;
        let body = container_body(spec, &volume, network_mode);
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(created) => {
                self.volumes
                    .lock()
                    .unwrap()
                    .insert(created.id.clone(), volume);
                Ok(created.id)
            }
            Err(e) => {
                self.remove_volume(&volume).await;
                Err(EngineError::api("container create", e))
            }
        }
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None)
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
        let waited = self.docker.wait_container(id, Some(opts)).next().await;
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
        let state = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| EngineError::api("container inspect", e))?
            .state;
        let oom_killed = state.and_then(|s| s.oom_killed).unwrap_or(false);
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
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut tar = self.docker.download_from_container(id, Some(opts)).boxed();
        // The engine answers a missing path with 404 before any byte: peek at the first item.
        let first = match tar.next().await {
            None => return Ok(Some(stream::empty().boxed())),
            Some(Err(e)) if is_not_found(&e) => return Ok(None),
            Some(Err(e)) => return Err(EngineError::api("result download", e)),
            Some(Ok(bytes)) => bytes,
        };
        let rest = tar.map_err(|e| EngineError::api("result download", e));
        Ok(Some(stream::once(async { Ok(first) }).chain(rest).boxed()))
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let removed = self.docker.remove_container(id, Some(opts)).await;
        let volume = self.volumes.lock().unwrap().remove(id);
        if let Some(volume) = volume {
            self.remove_volume(&volume).await;
        }
        match removed {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(EngineError::api("container remove", e)),
        }
    }

    async fn remove_labelled(&self, run_id: Option<&str>) -> Result<usize, EngineError> {
        let filters = Self::label_filter(run_id);
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

fn container_body(spec: &ContainerSpec, volume: &str, network_mode: String) -> ContainerCreateBody {
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
                target_mount(&spec.target),
                volume_mount(volume, RESULTS_DIR),
            ]),
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
        }),
        ..Default::default()
    }
}

fn target_mount(target: &Path) -> Mount {
    Mount {
        target: Some(TARGET_DIR.into()),
        source: Some(target.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
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

fn is_not_found(e: &BollardError) -> bool {
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
