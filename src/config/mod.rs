//! Suite files (`suites/*.toml`, format v1) and the optional project file (`phalanx.toml`).
//!
//! Everything here is plain data once loaded: durations and sizes are parsed, relative
//! paths are resolved against the file that named them, and policy defaults are merged in.
//!
//! Entry points: [`load_project`] then [`load_suites`]. Every problem is a [`ConfigError`]
//! that names the file, line, column and key; a broken suite file never hides the others.

mod de;
mod error;
mod policy;
mod project_file;
pub mod projects;
mod service_file;
mod suggest;
mod suite_file;
pub mod suppressions;
mod swarm;
mod tokens;
pub mod units;
pub(crate) mod values;

#[cfg(test)]
mod tests;

/// Suites for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A plain exit-code suite named `name` with the default policy and no env.
    pub fn suite(name: &str) -> Suite {
        let project = ProjectConfig::default();
        Suite {
            name: name.into(),
            description: String::new(),
            tags: Vec::new(),
            image: "img".into(),
            build: None,
            command: None,
            env: BTreeMap::new(),
            secret_env: BTreeSet::new(),
            timeout: project.timeout,
            retries: 0,
            weight: 1,
            results: ResultsSpec {
                format: ResultFormat::ExitCode,
                path: DEFAULT_RESULTS_PATH.into(),
                ok_exit_codes: vec![0],
                fail_on: project.fail_on,
                gate: project.gate,
            },
            policy: Policy::default(),
            needs: Vec::new(),
            placement: Vec::new(),
            source: PathBuf::from("suites/test.toml"),
        }
    }
}

pub use error::{ConfigError, ConfigErrorKind, Location};
pub use project_file::{load_project, parse_project};
pub use projects::{LimitViolation, ProjectSpec};
pub use service_file::{
    DEFAULT_READY_TIMEOUT, LoadedServices, SERVICE_TMPFS_SIZE, load_services, parse_service,
};
pub use suite_file::{DEFAULT_RESULTS_PATH, LoadedSuites, load_suites, parse_suite};
pub use suppressions::SuppressionSettings;
pub use values::{CAPABILITIES, MAX_NAME_LEN, MIN_MEMORY, check_name};

pub(crate) use suggest::closest;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::findings::{Gate, Severity};

/// One security test suite, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub image: String,
    /// Build context directory, resolved against the suite file's folder.
    pub build: Option<PathBuf>,
    /// Command to run; `None` keeps the image's own entrypoint/cmd.
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Names of the `env` entries whose values are secret (`{ from_env = …, secret = true }`):
    /// passed to the container, redacted from every log and report (`crate::secrets`).
    pub secret_env: BTreeSet<String>,
    pub timeout: Duration,
    pub retries: u32,
    /// Concurrency slots this suite occupies (at least 1).
    pub weight: u32,
    pub results: ResultsSpec,
    pub policy: Policy,
    /// The services (by name) this suite tests: started on the run's private network
    /// before it runs, reached by name (`network = "target"`).
    pub needs: Vec<String>,
    /// Swarm placement constraints (`node.labels.scanner == true`), ANDed with the
    /// project's `[swarm] placement`; the Docker backend ignores them.
    pub placement: Vec<String>,
    /// The file this suite was read from.
    pub source: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResultsSpec {
    pub format: ResultFormat,
    /// File or directory inside the container that holds the suite's results.
    pub path: String,
    pub ok_exit_codes: Vec<i64>,
    pub fail_on: Severity,
    /// Whether only findings new since the run's baseline fail the suite.
    pub gate: Gate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultFormat {
    Sarif,
    Junit,
    ExitCode,
}

impl Suite {
    /// The values of the suite's secret environment entries.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secret_env
            .iter()
            .filter_map(|name| self.env.get(name))
            .map(String::as_str)
    }
}

/// An application under test that dynamic suites attack: started by Phalanx once per run on
/// the run's private network, under its name, and stopped when the last suite that needs
/// it ends (see [`crate::services`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Also its host name on the private network, so a DNS label.
    pub name: String,
    pub description: String,
    pub image: String,
    /// Build context directory, resolved against the file that declared the service.
    pub build: Option<PathBuf>,
    /// Command to run; `None` keeps the image's own.
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Names of the secret `env` entries, redacted like a suite's.
    pub secret_env: BTreeSet<String>,
    /// The TCP port it serves on: in `PHALANX_TARGET_URL`, and what the readiness check
    /// connects to.
    pub port: u16,
    pub ready: ReadyCheck,
    /// How long it may take to get ready before its suites end as errors.
    pub ready_timeout: Duration,
    /// Paths (with example query strings) scanners start from, beside `/`; given to the
    /// suites as full URLs in `PHALANX_TARGET_ENDPOINTS`.
    pub endpoints: Vec<String>,
    /// Its container policy; `network` is always [`NetworkMode::Target`].
    pub policy: Policy,
    /// Writable tmpfs mounts besides `/tmp` (each [`SERVICE_TMPFS_SIZE`]), for a
    /// service with a read-only root filesystem.
    pub tmpfs: Vec<String>,
    /// The file this service was declared in (`services/*.toml` or `phalanx.toml`).
    pub source: PathBuf,
}

/// When a service counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyCheck {
    /// `GET path` on its port answers with a 2xx or 3xx status.
    Http { path: String },
    /// A TCP connection to its port is accepted.
    Tcp,
}

impl Service {
    /// The values of the service's secret environment entries.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secret_env
            .iter()
            .filter_map(|name| self.env.get(name))
            .map(String::as_str)
    }
}

/// The container policy a suite runs under, after merging its own `[policy]` over the
/// project's defaults over the hardened built-in defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub network: NetworkMode,
    /// `uid:gid` (or a name the image knows).
    pub user: String,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    /// Memory limit in bytes (swap is not allowed on top of it).
    pub memory: u64,
    pub cpus: f64,
    pub pids: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            network: NetworkMode::None,
            user: "65534:65534".into(),
            read_only: true,
            cap_add: Vec::new(),
            memory: 1 << 30,
            cpus: 1.0,
            pids: 512,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Loopback only.
    None,
    /// An internal network shared only with the run's target containers.
    Target,
    /// Outbound access through the default bridge.
    Egress,
}

/// `phalanx.toml`, with defaults filled in when the file or a key is absent.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectConfig {
    pub suites_dir: PathBuf,
    pub jobs: Option<usize>,
    /// Image builds at once (`None`: [`crate::builds::DEFAULT_IMAGE_JOBS`]).
    pub image_jobs: Option<usize>,
    pub timeout: Duration,
    pub reports_dir: PathBuf,
    pub fail_on: Severity,
    /// The default `gate` of every suite.
    pub gate: Gate,
    pub policy: Policy,
    /// The suppressions file and its date rules.
    pub suppressions: SuppressionSettings,
    /// `[store]`: the run store's path (relative to the file's folder; without the table,
    /// `.phalanx/phalanx.db` in the working directory) and `keep_runs`.
    pub store: crate::store::StoreSettings,
    /// How suites see the target (`target_mode`); `--target-mode` overrides it.
    pub target_mode: crate::target::TargetMode,
    /// Most bytes of file content a copied target may hold (`target_max_size`).
    pub target_max_size: u64,
    /// `[projects.NAME]`: the applications `phalanx serve` and `run --project` scan.
    pub projects: BTreeMap<String, projects::ProjectSpec>,
    /// `[[alerts]]` and `alerts_deadline` (`crate::alerts`).
    pub alerts: crate::alerts::AlertSettings,
    /// Folder of service files (`services_dir`); `None`: `services` beside the suites folder.
    pub services_dir: Option<PathBuf>,
    /// `[[services]]` declared in the project file itself.
    pub services: Vec<Service>,
    /// `[[tokens]]`: who may use `phalanx serve`'s API (only hashes are kept).
    pub tokens: Vec<crate::access::TokenSpec>,
    /// Which backend runs the suites (`engine`); `--engine` overrides it.
    pub engine: crate::engine::EngineKind,
    /// `[swarm]`: the registry, placement and accepted policy gaps of the swarm engine.
    pub swarm: crate::engine::swarm::SwarmSettings,
}

impl ProjectConfig {
    /// The alert channels of a run: every top-level `[[alerts]]` entry, then those of
    /// its project (`None`: a run of no project).
    pub fn alert_channels(&self, project: Option<&str>) -> Vec<crate::alerts::AlertSpec> {
        let own = project
            .and_then(|name| self.projects.get(name))
            .map(|p| p.alerts.as_slice())
            .unwrap_or_default();
        self.alerts.channels.iter().chain(own).cloned().collect()
    }
}

impl Default for ProjectConfig {
    fn default() -> Self {
        ProjectConfig {
            suites_dir: PathBuf::from("suites"),
            jobs: None,
            image_jobs: None,
            timeout: Duration::from_secs(600),
            reports_dir: PathBuf::from("reports"),
            fail_on: Severity::High,
            gate: Gate::All,
            policy: Policy::default(),
            suppressions: SuppressionSettings::default(),
            store: crate::store::StoreSettings::default(),
            target_mode: crate::target::TargetMode::default(),
            target_max_size: crate::target::DEFAULT_MAX_SIZE,
            projects: BTreeMap::new(),
            alerts: crate::alerts::AlertSettings::default(),
            services_dir: None,
            services: Vec::new(),
            tokens: Vec::new(),
            engine: crate::engine::EngineKind::default(),
            swarm: crate::engine::swarm::SwarmSettings::default(),
        }
    }
}
