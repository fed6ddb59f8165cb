//! Service files (`services/*.toml`, one service each) and `[[services]]` in `phalanx.toml`:
//! the applications under test that dynamic suites (`needs = ["app"]`) attack.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::de::Source;
use super::error::{ConfigError, ConfigErrorKind, Location};
use super::policy::RawServicePolicy;
use super::values::{
    Bounded, Command, EnvName, EnvValue, HttpPath, PathText, ServiceName, Timeout, Word,
    check_service_name,
};
use super::{ProjectConfig, ReadyCheck, Service};

/// How long a service may take to get ready when `ready_timeout` does not say.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Size of each `tmpfs` mount of a service (it counts against the memory limit).
pub const SERVICE_TMPFS_SIZE: &str = "64m";

/// A service as written, in its own file or as one `[[services]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    name: Option<Spanned<ServiceName>>,
    description: Option<String>,
    image: Word,
    build: Option<PathText>,
    command: Option<Command>,
    env: Option<BTreeMap<EnvName, EnvValue>>,
    port: Bounded<1, 65535>,
    ready: Option<RawReady>,
    ready_timeout: Option<Timeout>,
    endpoints: Option<Vec<HttpPath>>,
    policy: Option<RawServicePolicy>,
}

/// `[ready]`: exactly one of `http = "/path"` and `tcp = true`.
#[derive(Debug)]
struct RawReady(ReadyCheck);

impl<'de> Deserialize<'de> for RawReady {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            http: Option<HttpPath>,
            tcp: Option<bool>,
        }
        let table = Table::deserialize(d)?;
        match (table.http, table.tcp) {
            (Some(HttpPath(path)), None | Some(false)) => Ok(RawReady(ReadyCheck::Http { path })),
            (None, Some(true)) => Ok(RawReady(ReadyCheck::Tcp)),
            _ => Err(serde::de::Error::custom(
                "expected exactly one readiness check: `http = \"/path\"` (a GET that must \
                 answer 2xx or 3xx) or `tcp = true` (a connection to `port` is accepted)",
            )),
        }
    }
}

/// The services of a folder and of the project file, with what was wrong with the others.
#[derive(Debug, Default)]
pub struct LoadedServices {
    /// Valid services, sorted by name, names unique.
    pub services: Vec<Service>,
    pub errors: Vec<ConfigError>,
    /// Names (presumed, as for suites) of service files that could not be read: a suite
    /// that needs one is told so rather than that the service is unknown.
    pub broken: Vec<String>,
}

/// Reads every `*.toml` file directly in `dir` as a service, then adds the project's
/// `[[services]]`. A missing folder holds no services; it is not an error.
pub fn load_services(dir: &Path, project: &ProjectConfig) -> LoadedServices {
    let mut loaded = LoadedServices::default();
    let files = match super::suite_file::toml_files(dir, "services") {
        Ok((files, errors)) => {
            loaded.errors.extend(errors);
            files
        }
        Err(_) if !dir.exists() => Vec::new(),
        Err(e) => {
            loaded.errors.push(e);
            Vec::new()
        }
    };
    let declared = files
        .iter()
        .map(|file| (file.clone(), load_service_file(file, project)))
        .collect::<Vec<_>>();
    let inline = project
        .services
        .iter()
        .cloned()
        .map(|s| (s.source.clone(), Ok(s)));
    for (file, parsed) in declared.into_iter().chain(inline) {
        match parsed {
            Ok(service) => match loaded.services.iter().find(|s| s.name == service.name) {
                Some(first) => loaded.errors.push(duplicate(&service, &first.source)),
                None => loaded.services.push(service),
            },
            Err((name, errors)) => {
                loaded.errors.extend(errors);
                loaded.broken.push(name.unwrap_or_else(|| stem_of(&file)));
            }
        }
    }
    loaded.services.sort_by(|a, b| a.name.cmp(&b.name));
    loaded
}

type Failed = (Option<String>, Vec<ConfigError>);

fn load_service_file(path: &Path, project: &ProjectConfig) -> Result<Service, Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let error = ConfigError::io(path, format!("cannot read the service file: {e}"));
        (None, vec![error])
    })?;
    parse(path, &text, project)
}

/// Reads a service file's `text` as if it were the file at `path` (which names the file in
/// errors, gives the default name and anchors `build`). Every error names its line and key.
pub fn parse_service(
    path: &Path,
    text: &str,
    project: &ProjectConfig,
) -> Result<Service, Vec<ConfigError>> {
    parse(path, text, project).map_err(|(_, errors)| errors)
}

fn parse(path: &Path, text: &str, project: &ProjectConfig) -> Result<Service, Failed> {
    let src = Source {
        path,
        text,
        what: "service",
    };
    let (root, syntax_errors) = src.parse();
    let presumed = match root.get_ref().get("name").map(|v| v.get_ref()) {
        Some(toml::de::DeValue::String(name)) if check_service_name(name).is_ok() => {
            Some(name.to_string())
        }
        _ => None,
    };
    if !syntax_errors.is_empty() {
        return Err((presumed, syntax_errors));
    }
    let raw: RawService = src
        .deserialize_all(root)
        .map_err(|e| (presumed.clone(), e))?;
    let stem = stem_of(path);
    let name = match &raw.name {
        Some(name) => name.get_ref().0.clone(),
        None => check_service_name(&stem).map(|()| stem).map_err(|why| {
            let message = format!(
                "the service has no `name` key and its file name cannot serve as one: {why}; \
                 rename the file or set `name`"
            );
            let error = src.error(
                Some(0..0),
                ConfigErrorKind::InvalidValue,
                Some("name".into()),
                message,
            );
            (None, vec![error])
        })?,
    };
    Ok(resolve(raw, name, path, project))
}

/// The `[[services]]` of `phalanx.toml` (whose path is `src.path`): each needs a `name`,
/// there being no file name to take it from.
pub(crate) fn resolve_inline(
    raw: Vec<Spanned<RawService>>,
    src: &Source<'_>,
    project: &ProjectConfig,
) -> Result<Vec<Service>, ConfigError> {
    let mut services = Vec::new();
    for entry in raw {
        let span = entry.span();
        let raw = entry.into_inner();
        let Some(name) = raw.name.as_ref().map(|n| n.get_ref().0.clone()) else {
            return Err(src.error(
                Some(span),
                ConfigErrorKind::MissingKey,
                Some("services.name".into()),
                "missing required key `name` in a [[services]] entry".into(),
            ));
        };
        services.push(resolve(raw, name, src.path, project));
    }
    Ok(services)
}

fn resolve(raw: RawService, name: String, source: &Path, project: &ProjectConfig) -> Service {
    let folder = source.parent().unwrap_or(Path::new(""));
    let env = raw.env.unwrap_or_default();
    let secret_env = env
        .iter()
        .filter(|(_, v)| matches!(v, EnvValue::FromEnv { secret: true, .. }))
        .map(|(name, _)| name.0.clone())
        .collect();
    let (policy, tmpfs) = raw.policy.unwrap_or_default().over(&project.policy);
    Service {
        name,
        description: raw.description.unwrap_or_default(),
        image: raw.image.0,
        build: raw.build.map(|b| folder.join(b.0)),
        command: raw.command.map(|c| c.0),
        env: env.into_iter().map(super::suite_file::env_entry).collect(),
        secret_env,
        // Bounded to 1..=65535.
        port: raw.port.0 as u16,
        ready: raw.ready.map_or(ReadyCheck::Tcp, |r| r.0),
        ready_timeout: raw.ready_timeout.map_or(DEFAULT_READY_TIMEOUT, |t| t.0),
        endpoints: raw
            .endpoints
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.0)
            .collect(),
        policy,
        tmpfs,
        source: source.to_owned(),
    }
}

fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn duplicate(service: &Service, first: &Path) -> ConfigError {
    ConfigError {
        file: service.source.clone(),
        location: Some(Location { line: 1, column: 1 }),
        kind: ConfigErrorKind::DuplicateSuite,
        key: Some("name".into()),
        suite: None,
        message: format!(
            "duplicate service name `{}`: already defined in {} (that one is kept, this one is ignored)",
            service.name,
            first.display()
        ),
    }
}
