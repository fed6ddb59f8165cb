//! The one error type of the config stage: every problem found in a suite or project file,
//! positioned as `file:line:column: message` so that editors and CI logs can jump to it.

use std::fmt;
use std::path::PathBuf;

/// A position in a config file; both numbers start at 1 and columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    // u32 keeps `ConfigError` small enough to return by value (clippy::result_large_err).
    pub line: u32,
    pub column: u32,
}

impl Location {
    /// The line and column of byte `offset` in `text` (clamped to the text).
    pub fn from_offset(text: &str, offset: usize) -> Location {
        let mut end = offset.min(text.len());
        // Spans come from the TOML parser and are char-aligned, but never panic on a bad one.
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let clamp = |n: usize| u32::try_from(n + 1).unwrap_or(u32::MAX);
        Location {
            line: clamp(before.matches('\n').count()),
            column: clamp(before[line_start..].chars().count()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What kind of problem a [`ConfigError`] is, for callers that react differently to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigErrorKind {
    /// A file or directory could not be read.
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// A key the format does not know (usually a typo).
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value has the wrong type, is out of range or is malformed.
    InvalidValue,
    /// Two suite files declare the same suite name.
    DuplicateSuite,
}

/// A problem in a suite file, the suites directory or the project file.
///
/// Displays as `file:line:column: message`, or `file: message` when there is no position
/// (an unreadable file or directory).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or directory) the problem is in, as it was given to the loader.
    pub file: PathBuf,
    pub location: Option<Location>,
    pub kind: ConfigErrorKind,
    /// Dotted path of the key the problem is about (`policy.memory`), when there is one.
    pub key: Option<String>,
    /// The suite this error belongs to: its `name` key when readable and valid, else the
    /// file stem. Lets a run report a broken suite as an errored entry instead of losing it.
    pub suite: Option<String>,
    /// The human explanation, already naming the key and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(f, "{}:{at}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl ConfigError {
    /// An error about a file as a whole, with no position (e.g. it cannot be read).
    pub(crate) fn io(file: impl Into<PathBuf>, message: String) -> ConfigError {
        ConfigError {
            file: file.into(),
            location: None,
            kind: ConfigErrorKind::Io,
            key: None,
            suite: None,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_char_columns() {
        let text = "a = 1\nné = \"x\"\n";
        assert_eq!(
            Location::from_offset(text, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::from_offset(text, 4),
            Location { line: 1, column: 5 }
        );
        // `é` is two bytes but one column.
        let eq = text.find('=').unwrap();
        let second = text[eq + 1..].find('=').unwrap() + eq + 1;
        assert_eq!(
            Location::from_offset(text, second),
            Location { line: 2, column: 4 }
        );
        assert_eq!(
            Location::from_offset(text, 999),
            Location { line: 3, column: 1 }
        );
    }

    #[test]
    fn display_has_file_line_column_and_message() {
        let mut e = ConfigError::io("suites/x.toml", "boom".into());
        assert_eq!(e.to_string(), "suites/x.toml: boom");
        e.location = Some(Location {
            line: 7,
            column: 11,
        });
        assert_eq!(e.to_string(), "suites/x.toml:7:11: boom");
    }
}
