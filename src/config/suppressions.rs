//! The suppressions file (`suppressions.toml`): accepted risks, each with a reason, an
//! owner and an end date, reviewed like code. This module reads and writes the format;
//! what an entry does to a run's findings is `crate::verdict::suppressions`.
//!
//! ```toml
//! [[suppress]]
//! suite       = "bandit"                 # optional: limit to one suite
//! rule        = "B105"                   # rule id, and/or:
//! fingerprint = "076eb15941a7b51d"       # one finding exactly
//! path        = "app/settings.py"        # optional glob, repo-relative
//! reason      = "demo fixture"           # required
//! owner       = "appsec@example.com"     # required
//! expires     = 2027-03-01               # required, a TOML date
//! ticket      = "SEC-123"                # optional
//! ```
//!
//! Every problem is a [`ConfigError`] naming file, line and key: an entry that cannot be
//! read must never become one that silently never expires.

use std::fmt;
use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::de::Source;
use super::error::{ConfigError, ConfigErrorKind, Location};
use super::values::{Name, checked_str};
use crate::findings::Fingerprint;

/// The file's name next to `phalanx.toml` when the project does not name another.
pub const DEFAULT_SUPPRESSIONS_FILE: &str = "suppressions.toml";

/// The array-of-tables key every entry is under.
const ENTRY_KEY: &str = "suppress";

/// Where the suppressions are and how their dates are judged (`phalanx.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionSettings {
    pub file: PathBuf,
    /// Named by the user (`suppressions = …` or `--suppressions`): then a missing file is
    /// an error, where the default file may simply not exist.
    pub explicit: bool,
    /// Entries expiring within this many days are listed as expiring.
    pub warn_days: u32,
    /// Entries may not expire further ahead than this many days (`None`: no limit).
    pub max_days: Option<u32>,
}

impl SuppressionSettings {
    /// These settings with `file` in place of the configured one, when given
    /// (`--suppressions`, a project's `suppressions`): a file named so must exist.
    pub fn with_file(&self, file: Option<&Path>) -> SuppressionSettings {
        let mut settings = self.clone();
        if let Some(file) = file {
            settings.file = file.to_path_buf();
            settings.explicit = true;
        }
        settings
    }
}

impl Default for SuppressionSettings {
    fn default() -> Self {
        SuppressionSettings {
            file: PathBuf::from(DEFAULT_SUPPRESSIONS_FILE),
            explicit: false,
            warn_days: 14,
            max_days: None,
        }
    }
}

/// A repo-relative path glob (`app/**/*.py`): `*` stays within one folder, `**` crosses them.
#[derive(Debug, Clone)]
pub struct PathGlob {
    pub text: String,
    matcher: GlobMatcher,
}

impl PathGlob {
    pub fn new(text: &str) -> Result<PathGlob, String> {
        let glob = GlobBuilder::new(text)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("expected a path glob such as `app/**/*.py`: {e}"))?;
        Ok(PathGlob {
            text: text.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `[[suppress]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SuppressionEntry {
    /// Position in the file, from 0.
    pub index: usize,
    /// Line of the entry's `[[suppress]]` header, for reports.
    pub line: u32,
    pub suite: Option<String>,
    pub rule: Option<String>,
    pub fingerprint: Option<Fingerprint>,
    pub path: Option<PathGlob>,
    pub reason: String,
    pub owner: String,
    /// The last day the entry is in force.
    pub expires: NaiveDate,
    pub ticket: Option<String>,
}

impl SuppressionEntry {
    /// `B105 app/settings.py` / `fingerprint 076eb15941a7b51d in bandit`: what it covers.
    pub fn scope(&self) -> String {
        let mut parts = Vec::new();
        if let Some(rule) = &self.rule {
            parts.push(rule.clone());
        }
        if let Some(fp) = &self.fingerprint {
            parts.push(format!("fingerprint {fp}"));
        }
        if let Some(path) = &self.path {
            parts.push(format!("at {path}"));
        }
        if let Some(suite) = &self.suite {
            parts.push(format!("in {suite}"));
        }
        parts.join(" ")
    }
}

/// A suppressions file, read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SuppressionsFile {
    /// `None` when there is no file (the default one does not exist).
    pub path: Option<PathBuf>,
    pub entries: Vec<SuppressionEntry>,
}

/// What dates an entry may have: today is injectable so tests never depend on the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    pub today: NaiveDate,
    pub max_days: Option<u32>,
}

/// An entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    suite: Option<Name>,
    rule: Option<Text>,
    fingerprint: Option<FingerprintText>,
    path: Option<GlobText>,
    reason: Text,
    owner: Text,
    expires: Spanned<Expiry>,
    ticket: Option<Text>,
}

/// A string with something in it besides whitespace.
#[derive(Debug)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a non-empty string";
        checked_str(d, EXPECTING, |s| {
            if s.trim().is_empty() {
                Err(format!("expected {EXPECTING}, found {s:?}"))
            } else {
                Ok(Text(s.to_owned()))
            }
        })
    }
}

#[derive(Debug)]
struct FingerprintText(Fingerprint);

impl<'de> Deserialize<'de> for FingerprintText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a fingerprint such as \"076eb15941a7b51d\"", |s| {
            s.parse().map(FingerprintText)
        })
    }
}

#[derive(Debug)]
struct GlobText(PathGlob);

impl<'de> Deserialize<'de> for GlobText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a path glob", |s| {
            if s.trim().is_empty() {
                return Err("expected a non-empty path glob".into());
            }
            PathGlob::new(s).map(GlobText)
        })
    }
}

/// `expires = 2027-03-01`: a TOML local date; a string, a time or an offset is refused so
/// nobody writes an end date that means something other than what it says.
#[derive(Debug)]
struct Expiry(NaiveDate);

const EXPIRY_EXPECTING: &str = "a TOML date such as `expires = 2027-03-01` (no quotes, no time)";

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let datetime = toml::value::Datetime::deserialize(d)
            .map_err(|e| de::Error::custom(format!("expected {EXPIRY_EXPECTING}: {e}")))?;
        let date = match (datetime.date, datetime.time, datetime.offset) {
            (Some(date), None, None) => date,
            _ => {
                return Err(de::Error::custom(format!(
                    "expected {EXPIRY_EXPECTING}, found {datetime}"
                )));
            }
        };
        NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into())
            .map(Expiry)
            .ok_or_else(|| de::Error::custom(format!("{date} is not a date of the calendar")))
    }
}

/// Reads the suppressions file of `settings`. The default file may be absent (no
/// suppressions); a file the user named must exist.
pub fn load_suppressions(
    settings: &SuppressionSettings,
    horizon: Horizon,
) -> Result<SuppressionsFile, Vec<ConfigError>> {
    let path = settings.file.as_path();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound && !settings.explicit => {
            return Ok(SuppressionsFile::default());
        }
        Err(e) => {
            let message = format!("cannot read the suppressions file: {e}");
            return Err(vec![ConfigError::io(path, message)]);
        }
    };
    parse_suppressions(path, &text, horizon)
}

/// Reads a suppressions file's `text` as if it were the file at `path`. Every error is
/// returned, each naming its line and key.
pub fn parse_suppressions(
    path: &Path,
    text: &str,
    horizon: Horizon,
) -> Result<SuppressionsFile, Vec<ConfigError>> {
    let src = Source {
        path,
        text,
        what: "[[suppress]]",
    };
    let (root, syntax_errors) = src.parse();
    if !syntax_errors.is_empty() {
        return Err(syntax_errors
            .into_iter()
            .map(|e| name_key_on_line(e, text))
            .collect());
    }
    let mut errors = Vec::new();
    let mut entries = Vec::new();
    for (key, value) in root.get_ref().iter() {
        if key.get_ref() != ENTRY_KEY {
            errors.push(src.error(
                Some(key.span()),
                ConfigErrorKind::UnknownKey,
                Some(key.get_ref().to_string()),
                format!(
                    "unknown key `{}` in the suppressions file, expected only [[{ENTRY_KEY}]] entries",
                    key.get_ref()
                ),
            ));
            continue;
        }
        let DeValue::Array(items) = value.get_ref() else {
            errors.push(not_an_entry(&src, value.span()));
            continue;
        };
        for item in items {
            let DeValue::Table(table) = item.get_ref() else {
                errors.push(not_an_entry(&src, item.span()));
                continue;
            };
            match entry(&src, Spanned::new(item.span(), table.clone()), horizon) {
                Ok(entry) => entries.push(entry),
                Err(entry_errors) => errors.extend(entry_errors),
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.location);
        return Err(errors);
    }
    for (i, e) in entries.iter_mut().enumerate() {
        e.index = i;
    }
    Ok(SuppressionsFile {
        path: Some(path.to_owned()),
        entries,
    })
}

fn not_an_entry(src: &Source, span: Range<usize>) -> ConfigError {
    src.error(
        Some(span),
        ConfigErrorKind::InvalidValue,
        Some(ENTRY_KEY.into()),
        format!("expected [[{ENTRY_KEY}]] tables, each one suppression"),
    )
}

/// One entry: its keys, then the rules across keys (a rule or a fingerprint; the horizon).
fn entry(
    src: &Source,
    table: Spanned<DeTable<'_>>,
    horizon: Horizon,
) -> Result<SuppressionEntry, Vec<ConfigError>> {
    let span = table.span();
    let line = Location::from_offset(src.text, span.start).line;
    let raw: RawEntry = src.deserialize_all(table).map_err(|errors| {
        errors
            .into_iter()
            .map(|mut e| {
                // The entry's own keys are relative to it; name them as the file has them.
                e.key = e.key.map(|k| format!("{ENTRY_KEY}.{k}"));
                e
            })
            .collect::<Vec<_>>()
    })?;
    if raw.rule.is_none() && raw.fingerprint.is_none() {
        return Err(vec![src.error(
            Some(span),
            ConfigErrorKind::MissingKey,
            Some(format!("{ENTRY_KEY}.rule")),
            "a [[suppress]] entry needs `rule` or `fingerprint` (or both): without them it would suppress everything".into(),
        )]);
    }
    let expires = raw.expires.get_ref().0;
    if let Some(max) = horizon.max_days {
        let days = (expires - horizon.today).num_days();
        if days > i64::from(max) {
            return Err(vec![src.error(
                Some(raw.expires.span()),
                ConfigErrorKind::InvalidValue,
                Some(format!("{ENTRY_KEY}.expires")),
                format!(
                    "key `expires`: {expires} is {days} days ahead, more than the {max} days `suppressions_max_days` allows; choose a date until {}",
                    horizon.today + chrono::Days::new(max.into())
                ),
            )]);
        }
    }
    Ok(SuppressionEntry {
        index: 0, // numbered once every entry is read
        line,
        suite: raw.suite.map(|n| n.0),
        rule: raw.rule.map(|t| t.0),
        fingerprint: raw.fingerprint.map(|f| f.0),
        path: raw.path.map(|g| g.0),
        reason: raw.reason.0,
        owner: raw.owner.0,
        expires,
        ticket: raw.ticket.map(|t| t.0),
    })
}

/// A date the TOML parser already refuses (`expires = 2027-02-30`) is a syntax error
/// without a key; the key is the one the error's line assigns.
fn name_key_on_line(mut error: ConfigError, text: &str) -> ConfigError {
    if error.key.is_some() {
        return error;
    }
    let Some(at) = error.location else {
        return error;
    };
    let line = text.lines().nth(at.line as usize - 1).unwrap_or_default();
    if let Some((key, _)) = line.split_once('=') {
        let key = key.trim();
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            error.message = format!("key `{key}`: {}", error.message);
            error.key = Some(format!("{ENTRY_KEY}.{key}"));
        }
    }
    error
}

/// A new entry, for `phalanx suppress`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub suite: Option<String>,
    pub fingerprint: Fingerprint,
    pub reason: String,
    pub owner: String,
    pub expires: NaiveDate,
    pub ticket: Option<String>,
}

/// The TOML text of `entry`, preceded by `comment` lines, starting with a blank line so it
/// can be appended to any file. Whatever the comment lines hold (a tool's message), they
/// stay comments: control characters, line breaks included, are dropped.
pub fn entry_toml(entry: &NewEntry, comment: &[String]) -> String {
    let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut out = String::from("\n");
    for line in comment {
        out.push_str("# ");
        out.push_str(&comment_text(line));
        out.push('\n');
    }
    out.push_str(&format!("[[{ENTRY_KEY}]]\n"));
    if let Some(suite) = &entry.suite {
        out.push_str(&format!("suite = {}\n", quoted(suite)));
    }
    out.push_str(&format!(
        "fingerprint = {}\n",
        quoted(&entry.fingerprint.to_string())
    ));
    out.push_str(&format!("reason = {}\n", quoted(&entry.reason)));
    out.push_str(&format!("owner = {}\n", quoted(&entry.owner)));
    out.push_str(&format!("expires = {}\n", entry.expires.format("%Y-%m-%d")));
    if let Some(ticket) = &entry.ticket {
        out.push_str(&format!("ticket = {}\n", quoted(ticket)));
    }
    out
}

/// One line of comment text: TOML comments end at a line break and may not hold control
/// characters, so those go (and whitespace runs collapse), capped at 200 characters.
fn comment_text(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match flat.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests;
