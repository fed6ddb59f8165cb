//! Runs serde over a TOML file and turns *every* error into a positioned [`ConfigError`].
//!
//! serde stops at the first error. To report them all, the offending entry is dropped from
//! the parsed document and deserialization runs again, until it succeeds or an error cannot
//! be pinned to an entry. Files are small and each round removes an entry, so this is cheap
//! and always ends. The types stay plain `#[derive(Deserialize)]` + `deny_unknown_fields`.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

use super::error::{ConfigError, ConfigErrorKind, Location};
use super::suggest::closest;

/// A config file being read: where it is, its text, and what its top table is called in
/// messages ("suite", "project").
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub what: &'static str,
}

impl Source<'_> {
    /// An error at byte `span` of this file (no position if there is no span).
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        kind: ConfigErrorKind,
        key: Option<String>,
        message: String,
    ) -> ConfigError {
        ConfigError {
            file: self.path.to_owned(),
            location: span.map(|s| Location::from_offset(self.text, s.start)),
            kind,
            key,
            suite: None,
            message,
        }
    }

    /// Parses the TOML syntax, reporting every syntax error the parser can recover from.
    /// The document is returned even with errors: what was recovered (e.g. the suite's
    /// name) still helps to describe the failure; it must not be deserialized.
    pub(crate) fn parse(&self) -> (Spanned<DeTable<'_>>, Vec<ConfigError>) {
        let (root, errors) = DeTable::parse_recoverable(self.text);
        let mut errors: Vec<ConfigError> = errors.iter().map(|e| self.syntax_error(e)).collect();
        errors.sort_by_key(|e| e.location);
        (root, errors)
    }

    fn syntax_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        // The parser says "duplicate key" without the key; the span is the key itself.
        let key = span
            .clone()
            .and_then(|s| self.text.get(s))
            .filter(|_| e.message() == "duplicate key");
        let message = match key {
            Some(key) => format!("invalid TOML: duplicate key `{key}`"),
            None => format!("invalid TOML: {}", e.message()),
        };
        self.error(
            span,
            ConfigErrorKind::Syntax,
            key.map(str::to_owned),
            message,
        )
    }

    /// Deserializes `root` into `T`, collecting all errors (sorted by position).
    pub(crate) fn deserialize_all<T: DeserializeOwned>(
        &self,
        mut root: Spanned<DeTable<'_>>,
    ) -> Result<T, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut removed: Vec<Vec<String>> = Vec::new();
        loop {
            let err = match T::deserialize(Deserializer::from(root.clone())) {
                Ok(value) if errors.is_empty() => return Ok(value),
                Ok(_) => break,
                Err(err) => err,
            };
            if let Some(field) = missing_field(err.message()) {
                errors.extend(self.missing_key(&root, &removed, &field, err.span()));
                break; // serde checks required keys after all the others: nothing is left
            }
            let path = err
                .span()
                .map(|s| entry_at(root.get_ref(), s.start))
                .unwrap_or_default();
            errors.push(self.describe(&err, &path));
            if path.is_empty() || !remove_entry(root.get_mut(), &path) {
                break;
            }
            removed.push(path);
        }
        errors.sort_by_key(|e| e.location);
        Err(errors)
    }

    /// The error for a required key that is absent, unless it is absent because its bad
    /// entry was already reported and dropped.
    fn missing_key(
        &self,
        root: &Spanned<DeTable<'_>>,
        removed: &[Vec<String>],
        field: &str,
        span: Option<Range<usize>>,
    ) -> Option<ConfigError> {
        let table = table_with_span(root, span.clone());
        let path = [&table[..], &[field.to_owned()]].concat();
        if removed.contains(&path) {
            return None;
        }
        let message = format!(
            "missing required key `{field}` in {}",
            self.table_name(&table)
        );
        // The root table's span is empty at offset 0, which gives the "1:1" position.
        let span = span.or(Some(0..0));
        Some(self.error(
            span,
            ConfigErrorKind::MissingKey,
            Some(dotted(&path)),
            message,
        ))
    }

    /// Turns a serde error about the entry at `path` into a message naming the key.
    fn describe(&self, err: &toml::de::Error, path: &[String]) -> ConfigError {
        let span = err.span();
        if let Some((unknown, expected)) = unknown_field(err.message()) {
            let table = &path[..path.len().saturating_sub(1)];
            let mut message = format!(
                "unknown key `{unknown}` in {}, expected one of: {}",
                self.table_name(table),
                expected.join(", ")
            );
            if let Some(hint) = closest(&unknown, expected.iter().map(String::as_str)) {
                message.push_str(&format!("; did you mean `{hint}`?"));
            }
            return self.error(
                span,
                ConfigErrorKind::UnknownKey,
                Some(dotted(path)),
                message,
            );
        }
        let detail = reword(err.message());
        let (key, message) = match path {
            [] => (None, detail),
            _ => (
                Some(dotted(path)),
                format!("key `{}`: {detail}", dotted(path)),
            ),
        };
        self.error(span, ConfigErrorKind::InvalidValue, key, message)
    }

    fn table_name(&self, table: &[String]) -> String {
        match table {
            [] => format!("the {} table", self.what),
            _ => format!("the [{}] table", dotted(table)),
        }
    }
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// The key in serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.strip_suffix('`')?.to_owned())
}

/// The unknown key and the accepted keys in serde's "unknown field `x`, expected one of
/// `a`, `b`" message (or "expected `a` or `b`", or "there are no fields").
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    message.strip_prefix("unknown field `")?;
    // Backtick-quoted words sit at the odd positions once the message is split on backticks.
    let mut quoted = message.split('`').skip(1).step_by(2).map(str::to_owned);
    let unknown = quoted.next()?;
    Some((unknown, quoted.collect()))
}

/// Rewrites serde's "invalid type: X, expected Y" into the "expected Y, found X" shape that
/// the validated types use, so every message reads the same way, in TOML's words.
fn reword(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((found, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.rsplit_once(", expected "))
        {
            return format!(
                "expected {}, found {}",
                toml_words(expected),
                toml_words(found)
            );
        }
    }
    if let Some((variant, expected)) = message
        .strip_prefix("unknown variant `")
        .and_then(|rest| rest.rsplit_once("`, expected "))
    {
        return format!("expected {expected}, found {variant:?}");
    }
    message.to_owned()
}

/// serde's data-model names for what TOML calls arrays and tables.
fn toml_words(serde_words: &str) -> &str {
    match serde_words {
        "a sequence" | "sequence" => "an array",
        "a map" | "map" => "a table",
        other => other,
    }
}

/// Path of the innermost entry whose key or value covers byte `pos`. Sub-tables are searched
/// first because a `[table]` header's span covers only the header, not its entries.
fn entry_at(table: &DeTable<'_>, pos: usize) -> Vec<String> {
    let covers =
        |r: Range<usize>| r.start <= pos && (pos < r.end || r.is_empty() && pos == r.start);
    for (key, value) in table.iter() {
        // An array of tables (`[[alerts]]`) is searched like a table: the entry's line
        // says which element it is.
        let inner: Vec<&DeTable<'_>> = match value.get_ref() {
            DeValue::Table(inner) => vec![inner],
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::Table(t) => Some(t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for inner in inner {
            let sub = entry_at(inner, pos);
            if !sub.is_empty() {
                return [vec![key.get_ref().to_string()], sub].concat();
            }
        }
        if covers(key.span()) || covers(value.span()) {
            return vec![key.get_ref().to_string()];
        }
    }
    Vec::new()
}

/// Path of the table whose span is exactly `span` (the root when none matches): serde
/// reports a missing key with the span of the table it is missing from.
fn table_with_span(root: &Spanned<DeTable<'_>>, span: Option<Range<usize>>) -> Vec<String> {
    fn find(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<String>> {
        table.iter().find_map(|(key, value)| {
            let DeValue::Table(inner) = value.get_ref() else {
                return None;
            };
            let name = key.get_ref().to_string();
            if value.span() == *span {
                return Some(vec![name]);
            }
            find(inner, span).map(|sub| [vec![name], sub].concat())
        })
    }
    span.filter(|s| *s != root.span())
        .and_then(|s| find(root.get_ref(), &s))
        .unwrap_or_default()
}

/// Removes the entry at `path`; false if it is not there.
fn remove_entry(table: &mut DeTable<'_>, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(last.as_str()).is_some(),
        [first, rest @ ..] => match table.get_mut(first.as_str()).map(|v| v.get_mut()) {
            Some(DeValue::Table(inner)) => remove_entry(inner, rest),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_are_reworded() {
        assert_eq!(
            reword("invalid type: integer `5`, expected a string"),
            "expected a string, found integer `5`"
        );
        assert_eq!(
            reword("unknown variant `nne`, expected one of `none`, `target`, `egress`"),
            "expected one of `none`, `target`, `egress`, found \"nne\""
        );
        assert_eq!(
            reword("invalid type: map, expected a sequence"),
            "expected an array, found a table"
        );
        assert_eq!(reword("something else"), "something else");
    }

    #[test]
    fn unknown_field_messages_are_parsed() {
        let (k, e) =
            unknown_field("unknown field `imgae`, expected one of `name`, `image`").unwrap();
        assert_eq!(
            (k.as_str(), e),
            ("imgae", vec!["name".to_owned(), "image".to_owned()])
        );
        let (k, e) = unknown_field("unknown field `x`, there are no fields").unwrap();
        assert_eq!((k.as_str(), e.len()), ("x", 0));
        assert_eq!(
            missing_field("missing field `image`").as_deref(),
            Some("image")
        );
    }
}
