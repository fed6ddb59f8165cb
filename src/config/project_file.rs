//! The optional project file, `phalanx.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::Path;

use serde::Deserialize;

use super::ProjectConfig;
use super::SuppressionSettings;
use super::de::Source;
use super::error::ConfigError;
use super::policy::RawPolicy;
use super::projects::{self, RawProjectSpec};
use super::swarm::RawSwarm;
use super::tokens;
use super::values::{AtLeastOne, Bounded, ByteSize, Name, PathText, Timeout};
use crate::alerts::config::{AlertSettings, RawAlerts};
use crate::engine::EngineKind;
use crate::findings::{Gate, Severity};
use crate::store::StoreSettings;
use crate::target::TargetMode;

/// `phalanx.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    suites: Option<PathText>,
    jobs: Option<AtLeastOne>,
    image_jobs: Option<AtLeastOne>,
    timeout: Option<Timeout>,
    reports: Option<PathText>,
    fail_on: Option<Severity>,
    gate: Option<Gate>,
    policy: Option<RawPolicy>,
    suppressions: Option<PathText>,
    suppressions_warn_days: Option<Bounded<0, 3650>>,
    suppressions_max_days: Option<Bounded<1, 36500>>,
    target_mode: Option<TargetMode>,
    target_max_size: Option<ByteSize>,
    store: Option<RawStore>,
    projects: Option<BTreeMap<Name, RawProjectSpec>>,
    alerts: Option<RawAlerts>,
    alerts_deadline: Option<Timeout>,
    services_dir: Option<PathText>,
    services: Option<Vec<toml::Spanned<super::service_file::RawService>>>,
    engine: Option<EngineKind>,
    swarm: Option<RawSwarm>,
}

/// `[store]`: where the run store is and how many runs it keeps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<PathText>,
    keep_runs: Option<AtLeastOne>,
}

/// Reads the project file at `path`; a missing file means [`ProjectConfig::default()`].
///
/// Relative paths, including the default `suites` and `reports` folders, resolve against
/// the file's folder, so the project behaves the same from any working directory. The
/// `[policy]` table is merged over the hardened [`Policy::default()`](super::Policy) and
/// becomes the base every suite's own `[policy]` is merged over.
///
/// Returns the first problem in file order; every error names its line and key.
pub fn load_project(path: &Path) -> Result<ProjectConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ProjectConfig::default()),
        Err(e) => {
            return Err(ConfigError::io(
                path,
                format!("cannot read the project file: {e}"),
            ));
        }
    };
    parse_project(path, &text)
}

/// Reads a project file's `text` as if it were the file at `path` (which names the file in
/// errors and anchors relative paths). For callers that have the text, such as fuzzers.
pub fn parse_project(path: &Path, text: &str) -> Result<ProjectConfig, ConfigError> {
    let src = Source {
        path,
        text,
        what: "project",
    };
    let (mut root, syntax_errors) = src.parse();
    if let Some(first) = syntax_errors.into_iter().next() {
        return Err(first);
    }
    let tokens_src = Source {
        what: "[[tokens]]",
        ..src
    };
    let known = project_names(&root);
    let tokens = tokens::take(&tokens_src, &mut root, &known);
    match (src.deserialize_all::<RawProject>(root), tokens) {
        (Ok(mut raw), Ok(tokens)) => {
            let inline = raw.services.take().unwrap_or_default();
            let mut project = resolve(raw, path.parent().unwrap_or(Path::new("")));
            project.services = super::service_file::resolve_inline(inline, &src, &project)?;
            project.tokens = tokens;
            Ok(project)
        }
        // The first of each part's first errors (each part has put its best one first).
        (raw, tokens) => [raw.err(), tokens.err()]
            .into_iter()
            .filter_map(|errors| errors?.into_iter().next())
            .min_by_key(|e| e.location)
            .map_or_else(|| unreachable!("one part failed"), Err),
    }
}

/// The names of the `[projects.NAME]` tables, as written (the tokens name them).
fn project_names(root: &toml::Spanned<toml::de::DeTable<'_>>) -> BTreeSet<String> {
    match root.get_ref().get("projects").map(|v| v.get_ref()) {
        Some(toml::de::DeValue::Table(projects)) => {
            projects.keys().map(|k| k.get_ref().to_string()).collect()
        }
        _ => BTreeSet::new(),
    }
}

fn resolve(raw: RawProject, folder: &Path) -> ProjectConfig {
    let defaults = ProjectConfig::default();
    let dir = |given: Option<PathText>, default: &Path| match given {
        Some(path) => folder.join(path.0),
        None => folder.join(default),
    };
    let suites_dir = dir(raw.suites, &defaults.suites_dir);
    ProjectConfig {
        projects: projects::resolve(raw.projects.unwrap_or_default(), folder, &suites_dir),
        suites_dir,
        jobs: raw.jobs.map(|j| usize::try_from(j.0).unwrap_or(usize::MAX)),
        image_jobs: raw
            .image_jobs
            .map(|j| usize::try_from(j.0).unwrap_or(usize::MAX)),
        timeout: raw.timeout.map_or(defaults.timeout, |t| t.0),
        reports_dir: dir(raw.reports, &defaults.reports_dir),
        fail_on: raw.fail_on.unwrap_or(defaults.fail_on),
        gate: raw.gate.unwrap_or(defaults.gate),
        policy: raw.policy.unwrap_or_default().over(&defaults.policy),
        suppressions: SuppressionSettings {
            explicit: raw.suppressions.is_some(),
            file: dir(raw.suppressions, &defaults.suppressions.file),
            // Both are bounded above, so they fit.
            warn_days: raw
                .suppressions_warn_days
                .map_or(defaults.suppressions.warn_days, |d| d.0 as u32),
            max_days: raw.suppressions_max_days.map(|d| d.0 as u32),
        },
        store: match raw.store {
            None => defaults.store,
            Some(store) => StoreSettings {
                path: store.path.map_or(defaults.store.path, |p| folder.join(p.0)),
                keep_runs: store.keep_runs.map_or(defaults.store.keep_runs, |k| {
                    usize::try_from(k.0).unwrap_or(usize::MAX)
                }),
            },
        },
        target_mode: raw.target_mode.unwrap_or(defaults.target_mode),
        target_max_size: raw
            .target_max_size
            .map_or(defaults.target_max_size, |s| s.0),
        alerts: AlertSettings::resolve(raw.alerts, raw.alerts_deadline),
        services_dir: raw.services_dir.map(|d| folder.join(d.0)),
        services: Vec::new(),
        tokens: Vec::new(),
        engine: raw.engine.unwrap_or(defaults.engine),
        swarm: raw.swarm.unwrap_or_default().resolve(),
    }
}
