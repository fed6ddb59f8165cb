//! `[projects.NAME]` in `phalanx.toml`: the applications this configuration scans, each
//! with its own target, suites, selection and policy. `phalanx serve` scans nothing else,
//! and `phalanx run --project NAME` runs one with exactly the same settings, so that CI
//! and the server agree.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::values::{AtLeastOne, Bounded, Capability, Cpus, Memory, Name, PathText, Timeout};
use super::{NetworkMode, Suite};
use crate::alerts::config::{AlertSpec, RawAlerts};
use crate::findings::{Gate, Severity};

/// Queued runs a project may have waiting when `max_queued` is not set.
pub const DEFAULT_MAX_QUEUED: usize = 8;

/// One `[projects.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProjectSpec {
    target: PathText,
    suites: Option<PathText>,
    reports: Option<PathText>,
    /// The selection of a run that names no suite and no tag.
    default_suites: Option<Vec<Name>>,
    default_tags: Option<Vec<Name>>,
    fail_on: Option<Severity>,
    gate: Option<Gate>,
    suppressions: Option<PathText>,
    baseline: Option<String>,
    max_queued: Option<Bounded<0, 10_000>>,
    limits: Option<RawLimits>,
    alerts: Option<RawAlerts>,
}

/// `[projects.NAME.limits]`: the most a suite of this project may ask for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    allow_network: Option<Vec<NetworkMode>>,
    allow_cap_add: Option<Vec<Capability>>,
    allow_writable_root: Option<bool>,
    max_memory: Option<Memory>,
    max_cpus: Option<Cpus>,
    max_pids: Option<AtLeastOne>,
    max_timeout: Option<Timeout>,
}

/// A project, resolved: paths absolute against `phalanx.toml`'s folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectSpec {
    pub name: String,
    /// The one directory this project's runs scan; no request can name another.
    pub target: PathBuf,
    pub suites_dir: PathBuf,
    /// Where the project's runs write their reports (`None`: the top-level `reports`).
    pub reports_dir: Option<PathBuf>,
    pub default_suites: Vec<String>,
    pub default_tags: Vec<String>,
    /// Overrides every suite's `fail_on` and `gate` when set, like `--fail-on`/`--gate`.
    pub fail_on: Option<Severity>,
    pub gate: Option<Gate>,
    /// The suppressions file (`None`: the top-level one).
    pub suppressions: Option<PathBuf>,
    /// A baseline reference as `--baseline` takes it (`last`, `branch:main`, a file).
    pub baseline: Option<String>,
    pub max_queued: usize,
    pub limits: Limits,
    /// `[[projects.NAME.alerts]]`: channels for this project's runs, besides the
    /// top-level `[[alerts]]`.
    pub alerts: Vec<AlertSpec>,
}

/// What a project's suites may ask for; `None` (or an empty list) allows anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub allow_network: Option<Vec<NetworkMode>>,
    pub allow_cap_add: Option<Vec<String>>,
    /// `false` refuses suites that turn `read_only` off.
    pub allow_writable_root: bool,
    pub max_memory: Option<u64>,
    pub max_cpus: Option<f64>,
    pub max_pids: Option<i64>,
    pub max_timeout: Option<Duration>,
}

/// One thing a suite asks for that its project does not allow. Its `Display` is the
/// sentence the suite is refused with.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitViolation {
    pub project: String,
    /// The suite file's key, like `policy.memory`.
    pub key: &'static str,
    pub asked: String,
    pub allowed: String,
}

impl fmt::Display for LimitViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} is more than project `{}` allows ({})",
            self.key, self.asked, self.project, self.allowed
        )
    }
}

impl ProjectSpec {
    /// Every way `suite` exceeds this project's limits, in key order (empty: allowed).
    pub fn violations(&self, suite: &Suite) -> Vec<LimitViolation> {
        let limits = &self.limits;
        let policy = &suite.policy;
        let violation = |key, asked: String, allowed: String| LimitViolation {
            project: self.name.clone(),
            key,
            asked,
            allowed,
        };
        let mut found = Vec::new();
        if let Some(allowed) = &limits.allow_network
            && !allowed.contains(&policy.network)
        {
            found.push(violation(
                "policy.network",
                format!("{:?}", network_name(policy.network)),
                format!(
                    "allow_network = {}",
                    quoted(allowed.iter().map(|n| network_name(*n)))
                ),
            ));
        }
        if let Some(allowed) = &limits.allow_cap_add {
            let extra: Vec<&str> = policy
                .cap_add
                .iter()
                .filter(|c| !allowed.contains(c))
                .map(String::as_str)
                .collect();
            if !extra.is_empty() {
                found.push(violation(
                    "policy.cap_add",
                    quoted(extra.into_iter()),
                    format!(
                        "allow_cap_add = {}",
                        quoted(allowed.iter().map(String::as_str))
                    ),
                ));
            }
        }
        if !policy.read_only && !limits.allow_writable_root {
            found.push(violation(
                "policy.read_only",
                "false".into(),
                "allow_writable_root = false".into(),
            ));
        }
        if let Some(max) = limits.max_memory
            && policy.memory > max
        {
            found.push(violation(
                "policy.memory",
                crate::config::units::format_size(policy.memory),
                format!("max_memory = {}", crate::config::units::format_size(max)),
            ));
        }
        if let Some(max) = limits.max_cpus
            && policy.cpus > max
        {
            found.push(violation(
                "policy.cpus",
                policy.cpus.to_string(),
                format!("max_cpus = {max}"),
            ));
        }
        if let Some(max) = limits.max_pids
            && policy.pids > max
        {
            found.push(violation(
                "policy.pids",
                policy.pids.to_string(),
                format!("max_pids = {max}"),
            ));
        }
        if let Some(max) = limits.max_timeout
            && suite.timeout > max
        {
            found.push(violation(
                "timeout",
                humantime::format_duration(suite.timeout).to_string(),
                format!("max_timeout = {}", humantime::format_duration(max)),
            ));
        }
        found
    }
}

fn network_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::None => "none",
        NetworkMode::Target => "target",
        NetworkMode::Egress => "egress",
    }
}

/// `["a", "b"]`, as TOML writes a list of strings.
fn quoted<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let inner: Vec<String> = items.map(|s| format!("{s:?}")).collect();
    format!("[{}]", inner.join(", "))
}

/// Resolves every `[projects.NAME]` against `folder`, `phalanx.toml`'s folder.
pub(crate) fn resolve(
    raw: BTreeMap<Name, RawProjectSpec>,
    folder: &Path,
    default_suites_dir: &Path,
) -> BTreeMap<String, ProjectSpec> {
    raw.into_iter()
        .map(|(Name(name), spec)| {
            let project = resolve_one(name.clone(), spec, folder, default_suites_dir);
            (name, project)
        })
        .collect()
}

fn resolve_one(
    name: String,
    raw: RawProjectSpec,
    folder: &Path,
    default_suites_dir: &Path,
) -> ProjectSpec {
    let path = |p: PathText| folder.join(p.0);
    let names =
        |list: Option<Vec<Name>>| list.unwrap_or_default().into_iter().map(|n| n.0).collect();
    let limits = raw.limits.unwrap_or_default();
    ProjectSpec {
        name,
        target: path(raw.target),
        suites_dir: raw
            .suites
            .map_or_else(|| default_suites_dir.to_path_buf(), path),
        reports_dir: raw.reports.map(path),
        default_suites: names(raw.default_suites),
        default_tags: names(raw.default_tags),
        fail_on: raw.fail_on,
        gate: raw.gate,
        suppressions: raw.suppressions.map(path),
        baseline: raw.baseline,
        max_queued: raw.max_queued.map_or(DEFAULT_MAX_QUEUED, |n| n.0 as usize),
        alerts: raw.alerts.map(|a| a.0).unwrap_or_default(),
        limits: Limits {
            allow_network: limits.allow_network,
            allow_cap_add: limits
                .allow_cap_add
                .map(|caps| caps.into_iter().map(|c| c.0).collect()),
            allow_writable_root: limits.allow_writable_root.unwrap_or(true),
            max_memory: limits.max_memory.map(|m| m.0),
            max_cpus: limits.max_cpus.map(|c| c.0),
            max_pids: limits.max_pids.map(|p| p.0),
            max_timeout: limits.max_timeout.map(|t| t.0),
        },
    }
}
