//! Suite files (`suites/*.toml`, format v1): one suite per file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::de::Source;
use super::error::{ConfigError, ConfigErrorKind, Location};
use super::policy::RawPolicy;
use super::values::{
    Bounded, Command, EnvName, EnvValue, Name, NonEmptyVec, PathText, ResultsPath, Timeout, Word,
    check_name,
};
use super::{ProjectConfig, ResultFormat, ResultsSpec, Suite};
use crate::findings::{Gate, Severity};

/// Where a suite's results are looked for when `[results] path` is not set.
pub const DEFAULT_RESULTS_PATH: &str = "/results";

/// The suites found in a directory: the good ones, and what was wrong with the others.
#[derive(Debug, Default)]
pub struct LoadedSuites {
    /// Valid suites, sorted by name, names unique.
    pub suites: Vec<Suite>,
    /// Every problem found, in file-name order then position order.
    pub errors: Vec<ConfigError>,
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
}

/// Reads every `*.toml` file directly in `dir` (sorted by file name) as a suite.
///
/// A broken file does not stop the others: its errors are collected in
/// [`LoadedSuites::errors`]. The outer error is only for `dir` itself being unreadable.
pub fn load_suites(dir: &Path, project: &ProjectConfig) -> Result<LoadedSuites, ConfigError> {
    let (files, mut errors) = suite_files(dir)?;
    let mut suites = Vec::new();
    let mut first_seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        match load_suite_file(&file, project) {
            Ok(Parsed { suite, name_at }) => match first_seen.get(&suite.name) {
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
    Ok(LoadedSuites { suites, errors })
}

/// The `*.toml` files directly in `dir`, sorted by name, plus errors for entries that could
/// not be inspected. Dotfiles are skipped: editors leave `.#x.toml`-style lock files around.
fn suite_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<ConfigError>), ConfigError> {
    let unreadable =
        |e: std::io::Error| ConfigError::io(dir, format!("cannot read the suites directory: {e}"));
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
        policy: raw.policy.unwrap_or_default().over(&project.policy),
        source: src.path.to_owned(),
    };
    Ok(Parsed { suite, name_at })
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

fn env_entry((name, value): (EnvName, EnvValue)) -> (String, String) {
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
