//! The container engine behind a small trait, so the scheduler can be unit-tested with an
//! in-memory engine and later drive other back ends. `docker` is the real one.

pub mod any;
pub mod base;
pub mod docker;
pub mod lost;
pub mod masks;
pub mod memory;
pub mod orphans;
pub mod removals;
pub mod swarm;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::config::{Policy, ReadyCheck, Suite};

/// The label every container, volume and network Phalanx creates carries: `phalanx.run=<run id>`.
pub const RUN_LABEL: &str = "phalanx.run";

/// Where the suite's writable result volume is mounted inside the container.
pub const RESULTS_DIR: &str = "/results";

/// Where the target is mounted, read-only, inside the container.
pub const TARGET_DIR: &str = "/target";

/// Which backend runs the suites: `engine` in `phalanx.toml`, `--engine` on the command line.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// One Docker engine (`DOCKER_HOST` or the local socket).
    #[default]
    Docker,
    /// A Docker Swarm manager: each suite attempt is a one-task service.
    Swarm,
}

/// What to create for one attempt of one suite.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub policy: Policy,
    /// Absolute host path mounted read-only at [`TARGET_DIR`], unless `target_volume`.
    pub target: PathBuf,
    /// The run's copy of the target (see [`crate::target`]), mounted read-only at
    /// [`TARGET_DIR`] instead of `target` when the engine cannot see this filesystem.
    pub target_volume: Option<String>,
    /// Paths under [`TARGET_DIR`] covered by an empty read-only tmpfs (see [`masks`]).
    pub hidden: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Swarm placement constraints (the project's and the suite's); the Docker backend has
    /// one node and ignores them.
    pub placement: Vec<String>,
}

/// A service container (see [`crate::services`]) to start on the run's private network,
/// where dynamic suites reach it as `alias`. It sees the target as suites do, read-only.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The container's name.
    pub name: String,
    pub run_id: String,
    /// Its host name on the run's private network: the service's name.
    pub alias: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub policy: Policy,
    /// Writable tmpfs mounts besides `/tmp`.
    pub tmpfs: Vec<String>,
    pub target: PathBuf,
    pub target_volume: Option<String>,
    pub hidden: Vec<String>,
    pub labels: HashMap<String, String>,
}

/// A readiness check of a service, made from inside the run's private network (the view
/// its suites will have), repeated until it passes or `timeout` is up.
#[derive(Debug, Clone)]
pub struct ReadyProbe {
    /// The name of whatever the engine runs for the check.
    pub name: String,
    pub run_id: String,
    /// The service's name on the network.
    pub host: String,
    pub port: u16,
    pub check: ReadyCheck,
    pub timeout: Duration,
    pub labels: HashMap<String, String>,
    /// Where anything built for the check logs (the checker's image, if it must be made).
    pub build_log: PathBuf,
}

/// What the readiness check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// It was still failing when the time was up; `last_failure` says how (already
    /// sanitised and short).
    NotReady {
        last_failure: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub id: String,
    /// `repo@sha256:…` when the image came from a registry; locally built images have none.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i64,
    /// The kernel's OOM killer ended the container (its memory limit was hit).
    pub oom_killed: bool,
}

/// A small file of the target as this process sees it, for [`Engine::probe_target`]: only
/// the very same directory has the same file with the same size, mtime and content.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeFile {
    /// Relative to the target, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Seconds since the epoch (what a tar header holds).
    pub mtime: u64,
    pub content: Vec<u8>,
}

/// What the engine sees at the target's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetView {
    /// The same files: a bind mount shows the suites this very directory.
    Same,
    /// Nothing at that path: the engine runs elsewhere (another host, a job container's
    /// socket).
    Absent,
    /// A directory whose files differ from ours: another filesystem at the same path.
    Different,
}

/// One chunk of container output. Chunks are not lines.
#[derive(Debug, Clone, PartialEq)]
pub enum LogChunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {location}: {message}")]
    Unreachable { location: String, message: String },
    #[error(
        "image `{image}` is not present and the suite has no `build` to make it (no registry is used)"
    )]
    ImageMissing { image: String },
    #[error("building image `{image}` failed: {message} (build log: {})", log.display())]
    Build {
        image: String,
        message: String,
        log: PathBuf,
    },
    #[error("Docker {operation} failed: {message}")]
    Api {
        operation: &'static str,
        message: String,
    },
}

impl EngineError {
    pub fn api(operation: &'static str, err: impl std::fmt::Display) -> Self {
        EngineError::Api {
            operation,
            message: err.to_string(),
        }
    }

    /// Calls `f` on every text the error holds (see [`crate::cause::Cause::visit_text`]).
    pub fn visit_text(&mut self, f: &mut dyn FnMut(&mut String)) {
        match self {
            EngineError::Unreachable { location, message } => {
                f(location);
                f(message);
            }
            EngineError::ImageMissing { image } => f(image),
            EngineError::Build { image, message, .. } => {
                f(image);
                f(message);
            }
            EngineError::Api { message, .. } => f(message),
        }
    }
}

/// The container lifecycle the scheduler drives: image → create → start → logs → wait →
/// (stop) → download results → remove.
pub trait Engine: Send + Sync + 'static {
    /// Makes sure the suite's image exists, building it from `suite.build` when missing.
    /// The build log goes to `build_log`.
    fn ensure_image(
        &self,
        suite: &Suite,
        build_log: &Path,
    ) -> impl Future<Output = Result<ImageInfo, EngineError>> + Send;

    /// Creates the container (not started) with a writable [`RESULTS_DIR`]; returns its id.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;

    /// Creates the container for `spec` ahead of time, while its suite still waits for a
    /// slot, so that [`Engine::create`] with the same spec then returns it at once. Only a
    /// hint: an engine may do nothing (the default), and `create` must work whether or not
    /// `prepare` ran, finished or failed. Whatever it creates is labelled like the rest.
    /// Returns true when it could not prepare yet but might later (the image is not ready),
    /// so the hint is worth giving again.
    fn prepare(&self, spec: &ContainerSpec) -> impl Future<Output = bool> + Send {
        let _ = spec;
        async { false }
    }

    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Follows the container's output until it stops.
    fn logs(&self, id: &str) -> BoxStream<'static, Result<LogChunk, EngineError>>;

    /// Waits until the container is no longer running.
    fn wait(&self, id: &str) -> impl Future<Output = Result<ExitStatus, EngineError>> + Send;

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// A tar stream of `path` inside the (stopped) container; `Ok(None)` if it does not exist.
    fn download(
        &self,
        id: &str,
        path: &str,
    ) -> impl Future<
        Output = Result<Option<BoxStream<'static, Result<Bytes, EngineError>>>, EngineError>,
    > + Send;

    /// Removes the container and its anonymous volumes, whatever state it is in. The removal
    /// may finish in the background; [`Engine::remove_labelled`] waits for it.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Waits for removals under way, then removes everything labelled [`RUN_LABEL`] (for one
    /// run id, or for any run when `None`); returns how many containers were removed.
    fn remove_labelled(
        &self,
        run_id: Option<&str>,
    ) -> impl Future<Output = Result<usize, EngineError>> + Send;

    /// Whether `image` is on the engine. Never builds or pulls.
    fn image_exists(&self, image: &str) -> impl Future<Output = Result<bool, EngineError>> + Send;

    /// Builds `image` from the folder `context` (which holds its Dockerfile), appending the
    /// build's output to `log`.
    fn build_image(
        &self,
        context: &Path,
        image: &str,
        log: &Path,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Whether the engine sees, at `target`'s path, the directory this process sees, by
    /// comparing `probe` through a throwaway container that bind-mounts it read-only. The
    /// target itself is never written. Whatever it creates carries `labels`.
    fn probe_target(
        &self,
        target: &Path,
        probe: &[ProbeFile],
        labels: &HashMap<String, String>,
    ) -> impl Future<Output = Result<TargetView, EngineError>> + Send;

    /// Creates the volume `volume` (labelled `labels`) and extracts `tar` into it through
    /// the engine's API, so suites can mount it at [`TARGET_DIR`] on an engine that does
    /// not share this filesystem.
    fn copy_target(
        &self,
        volume: &str,
        labels: &HashMap<String, String>,
        tar: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Removes what killed Phalanx processes left on the engine, never a live run's objects
    /// (see [`orphans`]); returns how many containers were removed.
    fn remove_orphans(&self) -> impl Future<Output = Result<usize, EngineError>> + Send;

    /// Creates and starts a service container on the run's private network (made on first
    /// use, `internal`, labelled like everything else) under its alias; returns its id. Its
    /// image must exist. Follow, wait for, stop and remove it as any container.
    fn start_service(
        &self,
        spec: &ServiceSpec,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;

    /// Checks, from inside the run's private network, until the service answers as
    /// `probe.check` wants or `probe.timeout` is up. Whatever it runs is labelled
    /// `probe.labels` and gone when it returns.
    fn await_ready(
        &self,
        probe: &ReadyProbe,
    ) -> impl Future<Output = Result<Readiness, EngineError>> + Send;
}
