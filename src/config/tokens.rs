//! `[[tokens]]` in `phalanx.toml`: who may use `phalanx serve`'s API. Each entry holds a
//! token's name, role, projects and the SHA-256 of its text (never the text itself), as
//! `phalanx token new` prints it:
//!
//! ```toml
//! [[tokens]]
//! name = "qa-bot"
//! role = "runner"          # viewer | runner | admin
//! projects = ["web"]       # or ["*"]: every project
//! sha256 = "9f86d08…"      # 64 hex digits
//! ```
//!
//! The entries are read apart from the rest of the file, each on its own, so that every
//! error names the entry's own key (`tokens.role`) and line.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::{Deserialize, Deserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::de::Source;
use super::error::{ConfigError, ConfigErrorKind, Location};
use super::values::{Name, checked_str};
use crate::access::{Role, Scope, TokenSpec, parse_sha256};

/// The key of the entries in `phalanx.toml`.
pub(crate) const KEY: &str = "tokens";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<Name>,
    role: Role,
    projects: Spanned<Vec<Spanned<ProjectRef>>>,
    sha256: Spanned<Hash>,
}

/// A project name, or `*` for every project.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProjectRef {
    All,
    Named(String),
}

impl<'de> Deserialize<'de> for ProjectRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a project name or \"*\"", |s| match s {
            "*" => Ok(ProjectRef::All),
            name => super::values::check_name(name).map(|()| ProjectRef::Named(name.to_owned())),
        })
    }
}

#[derive(Debug)]
struct Hash([u8; 32]);

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str =
            "the token's SHA-256 as 64 hex digits, as `phalanx token new` prints it";
        checked_str(d, EXPECTING, |s| {
            parse_sha256(&s.to_ascii_lowercase())
                .map(Hash)
                .ok_or_else(|| format!("expected {EXPECTING}, found {s:?}"))
        })
    }
}

/// Reads the `[[tokens]]` entries out of a parsed `phalanx.toml` (removing them, so the
/// rest of the file is read without them). `known` are the configured project names: a
/// token naming another is an error at that name, with the closest known one suggested.
/// Returns every error, in file order.
pub(crate) fn take(
    src: &Source,
    root: &mut Spanned<DeTable<'_>>,
    known: &BTreeSet<String>,
) -> Result<Vec<TokenSpec>, Vec<ConfigError>> {
    let Some(value) = root.get_mut().remove(KEY) else {
        return Ok(Vec::new());
    };
    let DeValue::Array(items) = value.get_ref() else {
        return Err(vec![not_an_entry(src, value.span())]);
    };
    let mut errors = Vec::new();
    let mut specs: Vec<Parsed> = Vec::new();
    for item in items {
        let DeValue::Table(table) = item.get_ref() else {
            errors.push(not_an_entry(src, item.span()));
            continue;
        };
        match entry(src, Spanned::new(item.span(), table.clone()), known) {
            Ok(spec) => {
                if let Some(e) = duplicate(src, &specs, &spec) {
                    errors.push(e);
                }
                specs.push(spec);
            }
            Err(entry_errors) => errors.extend(entry_errors),
        }
    }
    match errors.is_empty() {
        true => Ok(specs.into_iter().map(|p| p.spec).collect()),
        // In entry order, each entry's most useful error first.
        false => Err(errors),
    }
}

fn not_an_entry(src: &Source, span: Range<usize>) -> ConfigError {
    src.error(
        Some(span),
        ConfigErrorKind::InvalidValue,
        Some(KEY.into()),
        format!("expected [[{KEY}]] tables, each one API token"),
    )
}

/// One entry: its keys, then its projects against the configured ones.
fn entry(
    src: &Source,
    table: Spanned<DeTable<'_>>,
    known: &BTreeSet<String>,
) -> Result<Parsed, Vec<ConfigError>> {
    let header = Location::from_offset(src.text, table.span().start);
    let raw: RawToken = src.deserialize_all(table).map_err(|errors| {
        let mut errors: Vec<ConfigError> = errors
            .into_iter()
            .map(|mut e| {
                // The entry's keys are relative to it; name them as the file has them.
                e.key = e.key.map(|k| format!("{KEY}.{k}"));
                // A missing key has no place of its own: it is the entry's, at its header.
                if e.location.is_none_or(|at| at < header) {
                    e.location = Some(header);
                }
                e
            })
            .collect();
        // A misspelt key also makes its key missing: the misspelling, with its "did you
        // mean", is the more useful first error.
        errors.sort_by_key(|e| (e.kind == ConfigErrorKind::MissingKey, e.location));
        errors
    })?;
    let scope = scope(src, &raw.projects, known)?;
    Ok(Parsed {
        name_span: raw.name.span(),
        hash_span: raw.sha256.span(),
        spec: TokenSpec {
            name: raw.name.into_inner().0,
            role: raw.role,
            scope,
            sha256: raw.sha256.into_inner().0,
        },
    })
}

/// An entry read, with where its name and hash are (for the duplicate checks).
struct Parsed {
    spec: TokenSpec,
    name_span: Range<usize>,
    hash_span: Range<usize>,
}

fn scope(
    src: &Source,
    projects: &Spanned<Vec<Spanned<ProjectRef>>>,
    known: &BTreeSet<String>,
) -> Result<Scope, Vec<ConfigError>> {
    let key = Some(format!("{KEY}.projects"));
    let error = |span, message| {
        src.error(
            Some(span),
            ConfigErrorKind::InvalidValue,
            key.clone(),
            message,
        )
    };
    let items = projects.get_ref();
    if items.is_empty() {
        return Err(vec![error(
            projects.span(),
            format!(
                "key `{KEY}.projects`: expected at least one project name, or [\"*\"] for every project"
            ),
        )]);
    }
    let mut names = BTreeSet::new();
    let mut errors = Vec::new();
    for item in items {
        match item.get_ref() {
            ProjectRef::All if items.len() == 1 => return Ok(Scope::All),
            ProjectRef::All => errors.push(error(
                item.span(),
                format!("key `{KEY}.projects`: \"*\" (every project) stands alone, without names beside it"),
            )),
            ProjectRef::Named(name) if !known.contains(name) => {
                let mut message = format!(
                    "key `{KEY}.projects`: no project `{name}` in this file (its [projects.NAME] tables: {})",
                    listed(known)
                );
                if let Some(hint) = super::closest(name, known.iter().map(String::as_str)) {
                    message.push_str(&format!("; did you mean `{hint}`?"));
                }
                errors.push(error(item.span(), message));
            }
            ProjectRef::Named(name) => {
                names.insert(name.clone());
            }
        }
    }
    match errors.is_empty() {
        true => Ok(Scope::Only(names)),
        false => Err(errors),
    }
}

fn listed(known: &BTreeSet<String>) -> String {
    match known.is_empty() {
        true => "none".into(),
        false => known
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Two entries with one name would make logs ambiguous; two with one hash are one token
/// with two sets of rights.
fn duplicate(src: &Source, earlier: &[Parsed], parsed: &Parsed) -> Option<ConfigError> {
    let spec = &parsed.spec;
    let same_name = earlier.iter().any(|e| e.spec.name == spec.name);
    let same_hash = earlier.iter().find(|e| e.spec.sha256 == spec.sha256);
    let (key, span, message) = match (same_name, same_hash) {
        (true, _) => (
            "name",
            &parsed.name_span,
            format!(
                "key `{KEY}.name`: a token named `{}` is listed above already; give each token its own name",
                spec.name
            ),
        ),
        (false, Some(e)) => (
            "sha256",
            &parsed.hash_span,
            format!(
                "key `{KEY}.sha256`: the same hash as token `{}` above: one token cannot have two entries",
                e.spec.name
            ),
        ),
        (false, None) => return None,
    };
    Some(src.error(
        Some(span.clone()),
        ConfigErrorKind::InvalidValue,
        Some(format!("{KEY}.{key}")),
        message,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::access::{Role, Scope, sha256, to_hex};
    use crate::config::{ConfigError, ProjectConfig, parse_project};

    fn parse(text: &str) -> Result<ProjectConfig, ConfigError> {
        parse_project(Path::new("/p/phalanx.toml"), text)
    }

    fn hash(token: &str) -> String {
        to_hex(&sha256(token))
    }

    const PROJECTS: &str =
        "[projects.web]\ntarget = \"web\"\n\n[projects.api]\ntarget = \"api\"\n\n";

    #[test]
    fn entries_are_read_with_role_scope_and_hash() {
        let text = format!(
            "[[tokens]]\nname = \"ci\"\nrole = \"runner\"\nprojects = [\"*\"]\nsha256 = \"{}\"\n\n\
             [[tokens]]\nname = \"ro\"\nrole = \"viewer\"\nprojects = [\"*\"]\nsha256 = \"{}\"\n",
            hash("phx_1"),
            hash("phx_2").to_uppercase()
        );
        let project = parse(&text).unwrap();
        assert_eq!(project.tokens.len(), 2);
        assert_eq!(project.tokens[0].name, "ci");
        assert_eq!(project.tokens[0].role, Role::Runner);
        assert_eq!(project.tokens[0].scope, Scope::All);
        assert_eq!(project.tokens[1].sha256, sha256("phx_2"));
    }

    #[test]
    fn a_bad_key_is_named_with_its_line() {
        let text = format!(
            "jobs = 2\n\n[[tokens]]\nname = \"ci\"\nrole = \"owner\"\nprojects = [\"*\"]\nsha256 = \"{}\"\n",
            hash("x")
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tokens.role"), "{e}");
        assert_eq!(e.location.unwrap().line, 5, "{e}");
        assert!(e.to_string().starts_with("/p/phalanx.toml:5:"), "{e}");
        assert!(e.message.contains("viewer"), "{e}");

        let e = parse(
            "[[tokens]]\nname = \"ci\"\nrole = \"admin\"\nprojects = [\"*\"]\nsha256 = \"abc\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tokens.sha256"), "{e}");
        assert!(e.message.contains("64 hex digits"), "{e}");

        let e = parse("[[tokens]]\nname = \"ci\"\nrol = \"admin\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tokens.rol"), "{e}");
        assert!(e.message.contains("did you mean `role`"), "{e}");
        assert!(e.message.contains("[[tokens]]"), "{e}");
    }

    #[test]
    fn a_token_is_never_kept_as_text_and_entries_are_unique() {
        let entry = |name: &str, token: &str| {
            format!(
                "[[tokens]]\nname = \"{name}\"\nrole = \"viewer\"\nprojects = [\"*\"]\nsha256 = \"{}\"\n",
                hash(token)
            )
        };
        let e = parse(&format!("{}{}", entry("a", "t1"), entry("a", "t2"))).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tokens.name"), "{e}");
        assert_eq!(e.location.unwrap().line, 7, "{e}");
        let e = parse(&format!("{}{}", entry("a", "t1"), entry("b", "t1"))).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tokens.sha256"), "{e}");
        let e = parse(
            "[[tokens]]\nname = \"a\"\nrole = \"viewer\"\nprojects = [\"*\"]\ntoken = \"phx_x\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tokens.token"), "{e}");
    }

    #[test]
    fn projects_must_be_configured_and_star_stands_alone() {
        let text = |projects: &str| {
            format!(
                "{PROJECTS}[[tokens]]\nname = \"a\"\nrole = \"viewer\"\nprojects = {projects}\nsha256 = \"{}\"\n",
                hash("t")
            )
        };
        let errors = |projects: &str| {
            // `take` alone: the `[projects]` tables are the project file's business.
            let text = text(projects);
            let src = super::Source {
                path: Path::new("/p/phalanx.toml"),
                text: &text,
                what: "[[tokens]]",
            };
            let (mut root, _) = src.parse();
            let known = ["api".to_string(), "web".to_string()].into();
            super::take(&src, &mut root, &known).map_err(|e| e.into_iter().next().unwrap())
        };
        let scope = errors("[\"web\"]").unwrap()[0].scope.clone();
        assert_eq!(scope, Scope::Only(["web".to_string()].into()));
        let e = errors("[\"wbe\"]").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tokens.projects"), "{e}");
        assert!(e.message.contains("did you mean `web`"), "{e}");
        assert_eq!(e.location.unwrap().line, 10, "{e}");
        let e = errors("[\"*\", \"web\"]").unwrap_err();
        assert!(e.message.contains("stands alone"), "{e}");
        let e = errors("[]").unwrap_err();
        assert!(e.message.contains("at least one project"), "{e}");

        // The same through the whole file, whose [projects] tables name the projects.
        let project = parse(&text("[\"api\"]")).unwrap();
        assert_eq!(
            project.tokens[0].scope,
            Scope::Only(["api".to_string()].into())
        );
        assert!(project.projects.contains_key("api"));
        let e = parse(&text("[\"ap\"]")).unwrap_err();
        assert!(e.to_string().starts_with("/p/phalanx.toml:10:"), "{e}");
    }
}
