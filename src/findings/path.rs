//! Turning the URIs tools write into repo-relative paths.
//!
//! Suites see the target at `/target`, so tools write `file:///target/src/app.py`,
//! `/target/src/app.py`, `src/app.py`, `./src/app.py` or a URI relative to a base id
//! (`%SRCROOT%`) that the run defines in `originalUriBaseIds`. All of these name
//! `src/app.py` in the repository, and findings must compare equal across tools and runs,
//! so they are normalised to that form. Paths outside the target stay absolute; other
//! schemes (`https://…`) are kept as written.

use std::collections::HashMap;

/// Where suites see the target.
pub const TARGET_MOUNT: &str = "/target";

/// How deep `uriBaseId` chains are followed before giving up (they may form a cycle).
const MAX_BASE_DEPTH: usize = 8;

/// A run's `originalUriBaseIds`: base id → (uri, its own base id).
pub type BaseIds = HashMap<String, (Option<String>, Option<String>)>;

/// The repo-relative path of `uri`, resolving `base_id` through `bases` first.
pub fn resolve(uri: &str, base_id: Option<&str>, bases: &BaseIds) -> String {
    repo_relative(&absolutise(uri, base_id, bases, 0))
}

/// Prefixes a relative `uri` with its base's URI, recursively. An unknown base leaves the
/// URI relative, which then counts as relative to the target.
fn absolutise(uri: &str, base_id: Option<&str>, bases: &BaseIds, depth: usize) -> String {
    let (Some(id), true) = (base_id, is_relative(uri)) else {
        return uri.to_string();
    };
    let Some((Some(base_uri), base_base)) = bases.get(id) else {
        return uri.to_string();
    };
    if depth >= MAX_BASE_DEPTH {
        return uri.to_string();
    }
    let base = absolutise(base_uri, base_base.as_deref(), bases, depth + 1);
    if base.is_empty() || base.ends_with('/') {
        format!("{base}{uri}")
    } else {
        format!("{base}/{uri}")
    }
}

fn is_relative(uri: &str) -> bool {
    !(uri.starts_with('/') || uri.starts_with('\\') || has_scheme(uri))
}

/// `scheme:` per RFC 3986, but not a Windows drive letter (`C:`).
fn has_scheme(uri: &str) -> bool {
    match uri.find(':') {
        Some(i) if i > 1 => {
            let scheme = &uri[..i];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        _ => false,
    }
}

/// The repo-relative form of an absolute or relative URI or path.
pub fn repo_relative(uri: &str) -> String {
    let lower = uri.to_ascii_lowercase();
    let path = if lower.starts_with("file:") {
        file_uri_path(&uri[5..])
    } else if has_scheme(uri) {
        return uri.to_string();
    } else {
        uri
    };
    let decoded = percent_decode(path).replace('\\', "/");
    let normal = normalise_segments(&decoded);
    match normal.strip_prefix(TARGET_MOUNT) {
        Some("") => String::new(),
        Some(rest) if rest.starts_with('/') => rest[1..].to_string(),
        _ => normal,
    }
}

/// The path of a `file:` URI, after the scheme: `///p`, `//localhost/p` and `/p` all
/// mean `/p`.
fn file_uri_path(rest: &str) -> &str {
    match rest.strip_prefix("//") {
        Some(authority_and_path) => match authority_and_path.find('/') {
            Some(i) => &authority_and_path[i..],
            None => "/",
        },
        None => rest,
    }
}

/// Drops `.` and empty segments and resolves `..` lexically; a `..` that would climb above
/// a relative path's start is kept, above `/` dropped.
fn normalise_segments(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            _ => parts.push(seg),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// `%20` → space; malformed escapes are kept as written. Invalid UTF-8 after decoding is
/// replaced, as the path is only used for display and comparison.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_uris_become_repo_relative() {
        for uri in [
            "file:///target/src/app.py",
            "file://localhost/target/src/app.py",
            "file:/target/src/app.py",
            "/target/src/app.py",
            "/target/./src/../src/app.py",
            "src/app.py",
            "./src/app.py",
            "src\\app.py",
            "FILE:///target/src/app.py",
        ] {
            assert_eq!(repo_relative(uri), "src/app.py", "{uri}");
        }
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(repo_relative("file:///target/my%20file.py"), "my file.py");
        assert_eq!(repo_relative("a%2"), "a%2");
        assert_eq!(repo_relative("caf%C3%A9.py"), "café.py");
    }

    #[test]
    fn outside_the_target_stays_absolute_and_other_schemes_untouched() {
        assert_eq!(repo_relative("file:///usr/lib/x.so"), "/usr/lib/x.so");
        assert_eq!(repo_relative("/targets/x"), "/targets/x");
        assert_eq!(repo_relative("/../etc/passwd"), "/etc/passwd");
        assert_eq!(repo_relative("../up.py"), "../up.py");
        assert_eq!(
            repo_relative("https://example.test/a.js"),
            "https://example.test/a.js"
        );
        assert_eq!(repo_relative("file:///target"), "");
    }

    #[test]
    fn base_ids_are_followed() {
        let mut bases = BaseIds::new();
        bases.insert("SRCROOT".into(), (Some("src/".into()), Some("ROOT".into())));
        bases.insert("ROOT".into(), (Some("file:///target/".into()), None));
        bases.insert("LOOP".into(), (Some("x/".into()), Some("LOOP".into())));
        assert_eq!(resolve("app.py", Some("SRCROOT"), &bases), "src/app.py");
        assert_eq!(resolve("app.py", Some("UNKNOWN"), &bases), "app.py");
        assert_eq!(
            resolve("/abs/app.py", Some("SRCROOT"), &bases),
            "/abs/app.py"
        );
        // A cycle ends instead of recursing forever.
        assert!(resolve("a.py", Some("LOOP"), &bases).ends_with("a.py"));
    }
}
