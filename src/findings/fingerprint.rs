//! Stable fingerprints: the identity of a finding across runs, so a release manager can
//! tell what is new since the last release and a suppression can follow the code.
//!
//! A fingerprint is a hash of the rule id, the normalised repo-relative path and one
//! *basis*, in order of preference:
//! 1. the tool's own `fingerprints`/`partialFingerprints` (GitHub's `primaryLocationLineHash`
//!    and friends are computed from the content around the finding, not its line number);
//! 2. the code snippet of the region, whitespace-normalised;
//! 3. the message, whitespace-normalised and with mentions of its own line number removed
//!    ("… at line 12" must not change when the code moves down).
//!
//! The line number itself never goes in, so inserting lines above a finding leaves its
//! fingerprint unchanged. Identical findings in one file (same rule, same snippet) would
//! collide; the second and later get an occurrence suffix (`…:2`), as GitHub does.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

/// Bumped if the recipe changes, so old and new fingerprints never compare equal by chance.
const RECIPE: &[u8] = b"phalanx-fingerprint-v1";

/// A finding's stable identity: 64 bits of SHA-256, plus an occurrence number for
/// findings that would otherwise be indistinguishable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    pub hash: u64,
    /// 1 for the first finding with this hash in the suite, 2 for the next, …
    pub occurrence: u32,
}

impl fmt::Display for Fingerprint {
    /// `3f2a9c0d1e4b5a67`, or `3f2a9c0d1e4b5a67:2` for a repeated one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.hash)?;
        if self.occurrence > 1 {
            write!(f, ":{}", self.occurrence)?;
        }
        Ok(())
    }
}

/// `3f2a9c0d1e4b5a67` or `3f2a9c0d1e4b5a67:2`, as [`Fingerprint`] displays it: how
/// suppression files and `phalanx suppress` name one finding.
impl std::str::FromStr for Fingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "expected a fingerprint of 16 hex digits, optionally followed by `:N` (as in the reports), found {s:?}"
            )
        };
        let (hex, occurrence) = match s.split_once(':') {
            Some((hex, n)) => (
                hex,
                n.parse::<u32>().ok().filter(|n| *n >= 2).ok_or_else(bad)?,
            ),
            None => (s, 1),
        };
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let hash = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
        Ok(Fingerprint { hash, occurrence })
    }
}

/// A 128-bit digest of text the reader does not need to keep (snippets, tool fingerprints):
/// hashing while parsing means a 50 MB log's snippets are never all in memory at once.
pub type Digest16 = [u8; 16];

/// What, besides rule and path, identifies a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// Digest of the tool's own fingerprints ([`tool_digest`]).
    Tool(Digest16),
    /// Digest of the normalised snippet ([`snippet_digest`]).
    Snippet(Digest16),
    /// The normalised message ([`normalise_message`]).
    Message(String),
}

/// Digest of a tool's fingerprint map, independent of the order its keys were written in.
pub fn tool_digest(pairs: &mut [(String, String)]) -> Digest16 {
    pairs.sort();
    let mut h = Sha256::new();
    for (k, v) in pairs.iter() {
        field(&mut h, k.as_bytes());
        field(&mut h, v.as_bytes());
    }
    truncate(h)
}

/// Digest of a snippet with every run of whitespace turned into one space: re-indenting
/// or re-wrapping code does not make a finding new.
pub fn snippet_digest(snippet: &str) -> Digest16 {
    let mut h = Sha256::new();
    for word in snippet.split_whitespace() {
        field(&mut h, word.as_bytes());
    }
    truncate(h)
}

/// The message as the fingerprint sees it: whitespace collapsed, and each mention of the
/// finding's own line (one of `lines`) replaced by `#`. A mention is a number equal to one
/// of `lines` that follows `line`, `lines`, `ln`, `L` or a `:` (`at line 12`, `L12`,
/// `app.py:12`) and is not glued to the next word; other numbers (`CVE-2021-12`,
/// `12 secrets`) stay.
pub fn normalise_message(message: &str, lines: &[u64]) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(flat.len());
    let mut rest = flat.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let (before, from_digits) = rest.split_at(start);
        let len = from_digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(from_digits.len());
        let (digits, after) = from_digits.split_at(len);
        out.push_str(before);
        let is_own_line = digits.parse::<u64>().is_ok_and(|n| lines.contains(&n));
        let replace = is_own_line
            && !after.starts_with(|c: char| c.is_ascii_alphanumeric())
            && introduces_line(&out);
        out.push_str(if replace { "#" } else { digits });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Whether `before` ends in words that introduce a line number.
fn introduces_line(before: &str) -> bool {
    if before.ends_with(':') {
        return true;
    }
    let t = before.trim_end_matches([' ', '#']);
    // The character before the word may be several bytes long (found by fuzzing).
    let word_start = t
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_ascii_alphabetic())
        .map_or(0, |(i, c)| i + c.len_utf8());
    matches!(
        t[word_start..].to_ascii_lowercase().as_str(),
        "line" | "lines" | "ln" | "l"
    )
}

/// The fingerprint before occurrence numbering.
pub fn base_hash(rule_id: &str, path: &str, basis: &Basis) -> u64 {
    let mut h = Sha256::new();
    field(&mut h, RECIPE);
    field(&mut h, rule_id.as_bytes());
    field(&mut h, path.as_bytes());
    match basis {
        Basis::Tool(d) => {
            field(&mut h, b"tool");
            field(&mut h, d);
        }
        Basis::Snippet(d) => {
            field(&mut h, b"snippet");
            field(&mut h, d);
        }
        Basis::Message(m) => {
            field(&mut h, b"message");
            field(&mut h, m.as_bytes());
        }
    }
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// Numbers repeated hashes within one suite, in the order findings are seen.
#[derive(Debug, Default)]
pub struct Occurrences {
    seen: HashMap<u64, u32>,
}

impl Occurrences {
    pub fn next(&mut self, hash: u64) -> Fingerprint {
        let n = self.seen.entry(hash).or_insert(0);
        *n += 1;
        Fingerprint {
            hash,
            occurrence: *n,
        }
    }
}

/// Length-prefixed, so `("ab", "c")` and `("a", "bc")` hash differently.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn truncate(h: Sha256) -> Digest16 {
    let digest = h.finalize();
    digest[..16].try_into().expect("SHA-256 has 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_hex_with_an_occurrence_suffix_after_the_first() {
        let one = Fingerprint {
            hash: 0xab,
            occurrence: 1,
        };
        let two = Fingerprint {
            hash: 0xab,
            occurrence: 2,
        };
        assert_eq!(one.to_string(), "00000000000000ab");
        assert_eq!(two.to_string(), "00000000000000ab:2");
    }

    #[test]
    fn tool_digest_ignores_key_order() {
        let mut a = vec![("b".into(), "2".into()), ("a".into(), "1".into())];
        let mut b = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        assert_eq!(tool_digest(&mut a), tool_digest(&mut b));
    }

    #[test]
    fn snippet_digest_ignores_whitespace_layout() {
        assert_eq!(
            snippet_digest("  password = 'x'\n"),
            snippet_digest("password  =\t'x'")
        );
        assert_ne!(snippet_digest("a b"), snippet_digest("ab"));
    }

    #[test]
    fn a_number_after_a_multi_byte_character_is_not_a_crash() {
        assert_eq!(
            normalise_message("eval() called \u{7d0}12 ߐline 12", &[12]),
            "eval() called \u{7d0}12 ߐline #"
        );
        assert_eq!(normalise_message("é12 €:12", &[12]), "é12 €:#");
    }

    #[test]
    fn line_mentions_are_removed_from_messages() {
        let lines = [12];
        assert_eq!(
            normalise_message("Hardcoded  password at line 12", &lines),
            "Hardcoded password at line #"
        );
        assert_eq!(
            normalise_message("see app.py:12:5", &lines),
            "see app.py:#:5"
        );
        assert_eq!(normalise_message("L12: bad", &lines), "L#: bad");
        assert_eq!(normalise_message("Line #12.", &lines), "Line ##.");
        // Numbers that are not this finding's line, or are part of a word, stay.
        assert_eq!(normalise_message("line 13", &lines), "line 13");
        assert_eq!(
            normalise_message("CVE-2021-12 found", &lines),
            "CVE-2021-12 found"
        );
        assert_eq!(normalise_message("12 secrets", &lines), "12 secrets");
    }

    #[test]
    fn different_fields_never_run_together() {
        let basis = Basis::Message("m".into());
        assert_ne!(base_hash("ab", "c", &basis), base_hash("a", "bc", &basis));
    }

    #[test]
    fn repeated_hashes_are_numbered() {
        let mut occ = Occurrences::default();
        assert_eq!(occ.next(7).occurrence, 1);
        assert_eq!(occ.next(8).occurrence, 1);
        assert_eq!(occ.next(7).occurrence, 2);
    }
}
