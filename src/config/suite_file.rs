//! Suite files (`suites/*.toml`, format v1): one suite per file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::de::Source;
use super::error::{ConfigError, ConfigErrorKind, Location};
use super::policy::RawPolicy;
use super::service_file::{LoadedServices, load_services};
use super::swarm::Constraint;
use super::values::{
    Bounded, Command, EnvName, EnvValue, Name, NonEmptyVec, PathText, ResultsPath, ServiceName,
    Timeout, Word, check_name,
};
use super::{NetworkMode, ProjectConfig, ResultFormat, ResultsSpec, Service, Suite};
use crate::findings::{Gate, Severity};

/// Where a suite's results are looked for when `[results] path` is not set.
pub const DEFAULT_RESULTS_PATH: &str = "/results";

/// The suites found in a directory: the good ones, and what was wrong with the others.
#[derive(Debug, Default)]
pub struct LoadedSuites {
    /// Valid suites, sorted by name, names unique.
    pub suites: Vec<Suite>,
    /// Every problem found, in file-name order then position order (the service files'
    /// first).
    pub errors: Vec<ConfigError>,
    /// The services the suites may need (`services/*.toml` and `[[services]]` in
    /// `phalanx.toml`), sorted by name, names unique.
    pub services: Vec<Service>,
}

/// A suite file as written; defaults are applied by [`resolve`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    name: Option<Spanned<Name>>,
    description: Option<String>,
    tags: Option<Vec<Name>>,
    image: Word,
    build: Option<PathText>,
    command: Option<Command>,
    env: Option<BTreeMap<EnvName, EnvValue>>,
    timeout: Option<Timeout>,
    retries: Option<Bounded<0, 10>>,
    weight: Option<Bounded<1, { u32::MAX as i64 }>>,
    results: Option<RawResults>,
    policy: Option<RawPolicy>,
    needs: Option<Spanned<Vec<ServiceName>>>,
    placement: Option<Vec<Constraint>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResults {
    format: Option<ResultFormat>,
    path: Option<ResultsPath>,
    ok_exit_codes: Option<NonEmptyVec<Bounded<0, 255>>>,
    fail_on: Option<Severity>,
    gate: Option<Gate>,
}

/// A suite read from one file, with where its name was declared (for duplicate reports).
struct Parsed {
    suite: Suite,
    name_at: Location,
    /// Where `needs` was declared, for an error naming a service that does not exist.
    needs_at: Option<Location>,
}

/// Reads every `*.toml` file directly in `dir` (sorted by file name) as a suite.
///
/// A broken file does not stop the others: its errors are collected in
/// [`LoadedSuites::errors`]. The outer error is only for `dir` itself being unreadable.
///
/// The services come first: from `services_dir` in `phalanx.toml`, else the `services`
/// folder beside `dir`, and the project file's `[[services]]`. A suite whose `needs` names
/// no valid service is an error of that suite.
pub fn load_suites(dir: &Path, project: &ProjectConfig) -> Result<LoadedSuites, ConfigError> {
    let (files, file_errors) = toml_files(dir, "suites")?;
    let services_dir = project
        .services_dir
        .clone()
        .unwrap_or_else(|| dir.parent().unwrap_or(Path::new("")).join("services"));
    let services = load_services(&services_dir, project);
    let mut errors = services.errors.clone();
    errors.extend(file_errors);
    let mut suites = Vec::new();
    let mut first_seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let parsed = load_suite_file(&file, project).and_then(|p| check_needs(p, &services));
        match parsed {
            Ok(Parsed { suite, name_at, .. }) => match first_seen.get(&suite.name) {
                Some(first) => errors.push(duplicate(&suite, name_at, first)),
                None => {
                    first_seen.insert(suite.name.clone(), file);
                    suites.push(suite);
                }
            },
            Err(file_errors) => errors.extend(file_errors),
        }
    }
    suites.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(LoadedSuites {
        suites,
        errors,
        services: services.services,
    })
}

/// A suite whose `needs` names a service that is not declared (or whose file is broken) is
/// an error at its `needs` key.
fn check_needs(parsed: Parsed, services: &LoadedServices) -> Result<Parsed, Vec<ConfigError>> {
    let suite = &parsed.suite;
    let Some(missing) = suite
        .needs
        .iter()
        .find(|n| !services.services.iter().any(|s| &s.name == *n))
    else {
        return Ok(parsed);
    };
    let message = if services.broken.contains(missing) {
        format!(
            "key `needs`: the service `{missing}` is declared, but its definition has errors \
             (listed with its file)"
        )
    } else {
        let known: Vec<&str> = services.services.iter().map(|s| s.name.as_str()).collect();
        let mut message = match known.is_empty() {
            true => format!(
                "key `needs`: no service `{missing}` is declared (none is: add \
                 services/{missing}.toml or a [[services]] entry in phalanx.toml)"
            ),
            false => format!(
                "key `needs`: no service `{missing}` is declared; known services: {}",
                known.join(", ")
            ),
        };
        if let Some(hint) = super::closest(missing, known.iter().copied()) {
            message.push_str(&format!("; did you mean `{hint}`?"));
        }
        message
    };
    Err(vec![ConfigError {
        file: suite.source.clone(),
        location: parsed.needs_at,
        kind: ConfigErrorKind::InvalidValue,
        key: Some("needs".into()),
        suite: Some(suite.name.clone()),
        message,
    }])
}

/// The `*.toml` files directly in `dir`, sorted by name, plus errors for entries that could
/// not be inspected. Dotfiles are skipped: editors leave `.#x.toml`-style lock files around.
/// `what` names the folder in errors ("suites", "services").
pub(super) fn toml_files(
    dir: &Path,
    what: &str,
) -> Result<(Vec<PathBuf>, Vec<ConfigError>), ConfigError> {
    let unreadable =
        |e: std::io::Error| ConfigError::io(dir, format!("cannot read the {what} directory: {e}"));
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => {
                errors.push(unreadable(e));
                continue;
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".toml") && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok((files, errors))
}

/// Reads and validates one suite file; every error carries the presumed suite name.
fn load_suite_file(path: &Path, project: &ProjectConfig) -> Result<Parsed, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let error = ConfigError::io(path, format!("cannot read the suite file: {e}"));
        with_suite(vec![error], &stem_of(path))
    })?;
    parse_suite_text(path, &text, project)
}

/// Reads a suite file's `text` as if it were the file at `path` (which names the file in
/// errors, gives the default suite name and anchors `build`). For callers that have the
/// text, such as fuzzers. Every error is returned, each naming its line and key.
pub fn parse_suite(
    path: &Path,
    text: &str,
    project: &ProjectConfig,
) -> Result<Suite, Vec<ConfigError>> {
    parse_suite_text(path, text, project).map(|parsed| parsed.suite)
}

fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Files every error under the presumed suite name.
fn with_suite(errors: Vec<ConfigError>, suite: &str) -> Vec<ConfigError> {
    let tag = |e: ConfigError| ConfigError {
        suite: Some(suite.to_owned()),
        ..e
    };
    errors.into_iter().map(tag).collect()
}

fn parse_suite_text(
    path: &Path,
    text: &str,
    project: &ProjectConfig,
) -> Result<Parsed, Vec<ConfigError>> {
    let stem = stem_of(path);
    let src = Source {
        path,
        text,
        what: "suite",
    };
    let (root, syntax_errors) = src.parse();
    let presumed = presumed_name(root.get_ref()).unwrap_or(stem.clone());
    if !syntax_errors.is_empty() {
        return Err(with_suite(syntax_errors, &presumed));
    }
    let raw: RawSuite = src
        .deserialize_all(root)
        .map_err(|e| with_suite(e, &presumed))?;
    resolve(raw, &src, &stem, project).map_err(|e| with_suite(vec![e], &presumed))
}

/// The `name` key if it is present and valid, so that errors are filed under the suite
/// name a reader expects; `None` falls back to the file stem.
fn presumed_name(root: &DeTable<'_>) -> Option<String> {
    match root.get("name").map(|v| v.get_ref()) {
        Some(DeValue::String(name)) if check_name(name).is_ok() => Some(name.to_string()),
        _ => None,
    }
}

/// Applies defaults (file stem, project timeout and threshold, project policy) to a raw suite.
fn resolve(
    raw: RawSuite,
    src: &Source<'_>,
    stem: &str,
    project: &ProjectConfig,
) -> Result<Parsed, ConfigError> {
    let (name, name_at) = match raw.name {
        Some(name) => (
            name.get_ref().0.clone(),
            Location::from_offset(src.text, name.span().start),
        ),
        None => (stem_name(src, stem)?, Location { line: 1, column: 1 }),
    };
    let folder = src.path.parent().unwrap_or(Path::new(""));
    let policy = raw.policy.unwrap_or_default().over(&project.policy);
    let (needs, needs_at) = match raw.needs {
        Some(needs) => {
            let at = Location::from_offset(src.text, needs.span().start);
            let mut names: Vec<String> = Vec::new();
            for ServiceName(name) in needs.into_inner() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            (names, Some(at))
        }
        None => (Vec::new(), None),
    };
    if !needs.is_empty() && policy.network != NetworkMode::Target {
        let message = format!(
            "key `needs`: a suite that needs services reaches them on the run's private \
             network only, so it must say `network = \"target\"` under [policy] (it has \
             `{}`)",
            network_word(policy.network)
        );
        return Err(ConfigError {
            file: src.path.to_owned(),
            location: needs_at,
            kind: ConfigErrorKind::InvalidValue,
            key: Some("needs".into()),
            suite: None,
            message,
        });
    }
    let env = raw.env.unwrap_or_default();
    let secret_env = env
        .iter()
        .filter(|(_, v)| matches!(v, EnvValue::FromEnv { secret: true, .. }))
        .map(|(name, _)| name.0.clone())
        .collect();
    let suite = Suite {
        name,
        description: raw.description.unwrap_or_default(),
        tags: raw
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.0)
            .collect(),
        image: raw.image.0,
        build: raw.build.map(|b| folder.join(b.0)),
        command: raw.command.map(|c| c.0),
        env: env.into_iter().map(env_entry).collect(),
        secret_env,
        timeout: raw.timeout.map_or(project.timeout, |t| t.0),
        retries: raw.retries.map_or(0, |r| r.0 as u32),
        weight: raw.weight.map_or(1, |w| w.0 as u32),
        results: results(raw.results.unwrap_or_default(), project),
        policy,
        needs,
        placement: super::swarm::constraints(raw.placement),
        source: src.path.to_owned(),
    };
    Ok(Parsed {
        suite,
        name_at,
        needs_at,
    })
}

fn network_word(network: NetworkMode) -> &'static str {
    match network {
        NetworkMode::None => "none",
        NetworkMode::Target => "target",
        NetworkMode::Egress => "egress",
    }
}

/// Without a `name` key the file stem is the name, so it must obey the same rules.
fn stem_name(src: &Source<'_>, stem: &str) -> Result<String, ConfigError> {
    check_name(stem).map(|()| stem.to_owned()).map_err(|why| {
        let message = format!(
            "the suite has no `name` key and its file name cannot serve as one: {why}; \
             rename the file or set `name`"
        );
        src.error(
            Some(0..0),
            ConfigErrorKind::InvalidValue,
            Some("name".into()),
            message,
        )
    })
}

pub(super) fn env_entry((name, value): (EnvName, EnvValue)) -> (String, String) {
    match value {
        EnvValue::Literal(text) => (name.0, text),
        EnvValue::FromEnv { value, .. } => (name.0, value),
    }
}

fn results(raw: RawResults, project: &ProjectConfig) -> ResultsSpec {
    ResultsSpec {
        format: raw.format.unwrap_or(ResultFormat::ExitCode),
        path: raw
            .path
            .map_or_else(|| DEFAULT_RESULTS_PATH.to_owned(), |p| p.0),
        ok_exit_codes: raw
            .ok_exit_codes
            .map_or_else(|| vec![0], |c| c.0.iter().map(|b| b.0).collect()),
        fail_on: raw.fail_on.unwrap_or(project.fail_on),
        gate: raw.gate.unwrap_or(project.gate),
    }
}

/// The later of two files declaring one name; the first one is kept.
fn duplicate(suite: &Suite, at: Location, first: &Path) -> ConfigError {
    ConfigError {
        file: suite.source.clone(),
        location: Some(at),
        kind: ConfigErrorKind::DuplicateSuite,
        key: Some("name".into()),
        suite: Some(suite.name.clone()),
        message: format!(
            "duplicate suite name `{}`: already defined in {} (that one is kept, this one is ignored)",
            suite.name,
            first.display()
        ),
    }
}
