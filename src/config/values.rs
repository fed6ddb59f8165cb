//! Validated value types for config keys.
//!
//! Each type checks its value inside its `Deserialize` impl. That way the TOML deserializer
//! attaches the value's own span to the error, and the message can point at the exact
//! line and column of the bad value instead of at the table around it.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::suggest::closest;
use super::units::{DURATION_EXAMPLE, SIZE_EXAMPLE, parse_duration, parse_size};

/// Longest suite name: names end up in container and report file names.
pub const MAX_NAME_LEN: usize = 64;
/// Smallest memory limit accepted (4 MiB); below that a container cannot even start a shell.
pub const MIN_MEMORY: u64 = 4 << 20;

/// Visits a string and hands it to `check`, whose error is the whole message.
struct StrVisitor<F> {
    expecting: &'static str,
    check: F,
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for StrVisitor<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.check)(v).map_err(E::custom)
    }
}

/// Deserializes a string checked by `check`; non-strings are reported as "expected `expecting`".
pub(crate) fn checked_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_str(StrVisitor { expecting, check })
}

const NAME_EXPECTING: &str = "a name of letters, digits, `.`, `_` and `-` that starts with a letter or digit (at most 64 characters)";

/// Checks a suite name (or tag): `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 characters,
/// because names are used in container and file names.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && name.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(format!("expected {NAME_EXPECTING}, found {name:?}"))
    }
}

/// A suite name or tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Name(pub String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, NAME_EXPECTING, |s| {
            check_name(s).map(|()| Name(s.to_owned()))
        })
    }
}

/// A non-empty string without whitespace: an image reference or a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word(pub String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a non-empty string without spaces";
        checked_str(d, EXPECTING, |s| {
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                Err(format!("expected {EXPECTING}, found {s:?}"))
            } else {
                Ok(Word(s.to_owned()))
            }
        })
    }
}

/// A non-empty path as written; the loader resolves it against the file's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathText(pub String);

impl<'de> Deserialize<'de> for PathText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a non-empty path";
        checked_str(d, EXPECTING, |s| {
            if s.trim().is_empty() {
                Err(format!("expected {EXPECTING}, found {s:?}"))
            } else {
                Ok(PathText(s.to_owned()))
            }
        })
    }
}

/// A timeout: a human duration greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, DURATION_EXAMPLE, |s| match parse_duration(s)? {
            Duration::ZERO => Err(format!(
                "expected a duration greater than zero, found {s:?}"
            )),
            t => Ok(Timeout(t)),
        })
    }
}

/// A memory limit in bytes: a size string or an integer, at least [`MIN_MEMORY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memory(pub u64);

impl Memory {
    fn check<E: de::Error>(bytes: u64, found: &dyn fmt::Debug) -> Result<Memory, E> {
        if bytes >= MIN_MEMORY {
            Ok(Memory(bytes))
        } else {
            Err(E::custom(format!(
                "expected a memory limit of at least 4m ({MIN_MEMORY} bytes), found {found:?}"
            )))
        }
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Memory;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_EXAMPLE)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Memory, E> {
                Memory::check(parse_size(v).map_err(E::custom)?, &v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Memory, E> {
                Memory::check(v, &v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Memory, E> {
                Memory::check(u64::try_from(v).unwrap_or(0), &v)
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes greater than zero: a size string or an integer (`target_max_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn positive<E: de::Error>(bytes: u64, found: &dyn fmt::Debug) -> Result<ByteSize, E> {
            match bytes {
                0 => Err(E::custom(format!(
                    "expected {SIZE_EXAMPLE} above zero, found {found:?}"
                ))),
                n => Ok(ByteSize(n)),
            }
        }
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_EXAMPLE)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                positive(parse_size(v).map_err(E::custom)?, &v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                positive(v, &v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                positive(u64::try_from(v).unwrap_or(0), &v)
            }
        }
        d.deserialize_any(V)
    }
}

/// A CPU quota: a number of CPUs greater than zero (`0.5`, `2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cpus(pub f64);

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Cpus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of CPUs greater than 0, such as 0.5 or 2")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cpus, E> {
                if v.is_finite() && v > 0.0 {
                    Ok(Cpus(v))
                } else {
                    Err(E::custom(format!(
                        "expected a number of CPUs greater than 0, such as 0.5 or 2, found {v}"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cpus, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cpus, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer in `MIN..=MAX`, so that range errors point at the number itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounded<const MIN: i64, const MAX: i64>(pub i64);

/// An integer of at least 1 (weights, pids, jobs).
pub(crate) type AtLeastOne = Bounded<1, { i64::MAX }>;

impl<const MIN: i64, const MAX: i64> Bounded<MIN, MAX> {
    fn describe(f: &mut dyn fmt::Write) -> fmt::Result {
        if MAX == i64::MAX {
            write!(f, "an integer of at least {MIN}")
        } else {
            write!(f, "an integer from {MIN} to {MAX}")
        }
    }

    fn check<E: de::Error>(v: i128) -> Result<Self, E> {
        match i64::try_from(v) {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Bounded(n)),
            _ => {
                let mut msg = String::from("expected ");
                let _ = Self::describe(&mut msg);
                Err(E::custom(format!("{msg}, found {v}")))
            }
        }
    }
}

impl<'de, const MIN: i64, const MAX: i64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: i64, const MAX: i64>;
        impl<const MIN: i64, const MAX: i64> Visitor<'_> for V<MIN, MAX> {
            type Value = Bounded<MIN, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                Bounded::<MIN, MAX>::describe(f)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Bounded::check(v.into())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Bounded::check(v.into())
            }
        }
        d.deserialize_i64(V::<MIN, MAX>)
    }
}

/// An array that must not be empty (a command, the accepted exit codes).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NonEmptyVec<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmptyVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(items)
            }
        }
        let items = d.deserialize_seq(V(PhantomData))?;
        if items.is_empty() {
            return Err(de::Error::custom("expected a non-empty array, found []"));
        }
        Ok(NonEmptyVec(items))
    }
}

/// A command: a non-empty array of strings whose first element names the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command(pub Vec<String>);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let NonEmptyVec(argv) = NonEmptyVec::<String>::deserialize(d)?;
        if argv[0].trim().is_empty() {
            return Err(de::Error::custom(format!(
                "expected the program to run as the first element, found {:?}",
                argv[0]
            )));
        }
        Ok(Command(argv))
    }
}

/// Where a suite leaves its results: `/results` or a path under it, because `/results` is
/// the only writable volume Phalanx collects from (the root filesystem is read-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResultsPath(pub String);

impl<'de> Deserialize<'de> for ResultsPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "an absolute path that is /results or under /results/ \
             (the writable volume results are collected from)";
        checked_str(d, EXPECTING, |s| {
            let under = s == "/results" || s.starts_with("/results/");
            // `..` could climb out of the volume; `.` is harmless but never needed.
            let tidy = !s.split('/').any(|part| part == ".." || part == ".");
            if under && tidy && !s.contains('\0') {
                Ok(ResultsPath(s.to_owned()))
            } else {
                Err(format!("expected {EXPECTING}, found {s:?}"))
            }
        })
    }
}

/// Checks a service name: a DNS label (`[a-z0-9]`, `-` inside, at most 63 characters),
/// because it is the host name dynamic suites reach the service by.
pub(crate) fn check_service_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let label = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(label)
        && bytes.last().is_some_and(label)
        && bytes.iter().all(|b| label(b) || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a service name that can serve as a host name: lower-case letters, \
             digits and `-` (not first or last), at most 63 characters, found {name:?}"
        ))
    }
}

/// A service name (see [`check_service_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceName(pub String);

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a service name such as \"app\"", |s| {
            check_service_name(s).map(|()| ServiceName(s.to_owned()))
        })
    }
}

/// The path part of an HTTP request to a service, with an optional query: starts with `/`,
/// printable ASCII without spaces, so it can go into a request line and a URL as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpPath(pub String);

impl<'de> Deserialize<'de> for HttpPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a request path such as \"/health\" or \"/notes?author=alice\" (printable ASCII, no spaces)";
        checked_str(d, EXPECTING, |s| {
            let printable = s.bytes().all(|b| b.is_ascii_graphic());
            if s.starts_with('/') && printable && s.len() <= 2048 {
                Ok(HttpPath(s.to_owned()))
            } else {
                Err(format!("expected {EXPECTING}, found {s:?}"))
            }
        })
    }
}

/// Where a service may write: an absolute path for a tmpfs, not the root nor a path
/// Phalanx mounts itself (`/tmp`, `/target`, `/results`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TmpfsPath(pub String);

impl<'de> Deserialize<'de> for TmpfsPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "an absolute path such as \"/var/lib/app\" (not `/`, `/tmp`, \
             `/target` or `/results`, which are the root or mounted already)";
        checked_str(d, EXPECTING, |s| {
            let tidy = !s.split('/').any(|part| part == ".." || part == ".");
            let trimmed = s.trim_end_matches('/');
            let taken = ["", "/tmp", "/target", "/results"].contains(&trimmed)
                || trimmed.starts_with("/target/")
                || trimmed.starts_with("/results/");
            let plain = s.starts_with('/') && !s.contains(['\0', ',', ':']) && s.len() <= 1024;
            if tidy && plain && !taken && !s.chars().any(char::is_whitespace) {
                Ok(TmpfsPath(trimmed.to_owned()))
            } else {
                Err(format!("expected {EXPECTING}, found {s:?}"))
            }
        })
    }
}

/// Every Linux capability (`capabilities(7)`), without the `CAP_` prefix.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Normalises a capability name to upper case without `CAP_`, or explains what is wrong.
pub(crate) fn check_capability(text: &str) -> Result<String, String> {
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if CAPABILITIES.contains(&bare) {
        return Ok(bare.to_owned());
    }
    let mut msg = format!(
        "expected a Linux capability name such as \"NET_RAW\" or \"CAP_NET_BIND_SERVICE\", found {text:?}"
    );
    if bare == "ALL" {
        msg.push_str("; granting every capability is not allowed, list the ones the suite needs");
    } else if let Some(hint) = closest(bare, CAPABILITIES.iter().copied()) {
        msg.push_str(&format!("; did you mean `{hint}`?"));
    }
    Err(msg)
}

/// A Linux capability, normalised (`cap_net_raw` → `NET_RAW`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capability(pub String);

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a Linux capability name such as \"NET_RAW\"", |s| {
            check_capability(s).map(Capability)
        })
    }
}

/// An environment variable name: non-empty, without `=` or NUL (which cannot be passed on).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EnvName(pub String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "an environment variable name without `=`";
        checked_str(d, EXPECTING, |s| {
            if s.is_empty() || s.contains(['=', '\0']) {
                Err(format!("expected {EXPECTING}, found {s:?}"))
            } else {
                Ok(EnvName(s.to_owned()))
            }
        })
    }
}

/// The value of an `env` entry: a literal string, or a table taking the value from the host
/// environment when the suite file is loaded, `{ from_env = "CI_TOKEN", secret = true }`.
/// A secret value is redacted from everything Phalanx writes (see `crate::secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvValue {
    Literal(String),
    FromEnv {
        /// The host variable it was read from.
        var: String,
        value: String,
        secret: bool,
    },
}

const ENV_VALUE_EXPECTING: &str =
    "a string, or a table such as { from_env = \"CI_TOKEN\", secret = true }";

/// The table form as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FromEnvTable {
    from_env: String,
    secret: Option<bool>,
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ENV_VALUE_EXPECTING)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<EnvValue, E> {
                if s.contains('\0') {
                    Err(E::custom(format!(
                        "expected a string without NUL characters, found {s:?}"
                    )))
                } else {
                    Ok(EnvValue::Literal(s.to_owned()))
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<EnvValue, A::Error> {
                let table = FromEnvTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map_err(|e| {
                    // Not starting with serde's "unknown field": that is about the
                    // suite's own keys (see `de.rs`); this is inside one env value.
                    de::Error::custom(format!("expected {ENV_VALUE_EXPECTING}: {e}"))
                })?;
                from_host(&table.from_env, table.secret.unwrap_or(false)).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads `var` from the host environment, where Phalanx runs.
fn from_host(var: &str, secret: bool) -> Result<EnvValue, String> {
    if var.is_empty() || var.contains(['=', '\0']) {
        return Err(format!(
            "expected `from_env` to name a host environment variable, found {var:?}"
        ));
    }
    match std::env::var(var) {
        Ok(value) => Ok(EnvValue::FromEnv {
            var: var.to_owned(),
            value,
            secret,
        }),
        Err(std::env::VarError::NotPresent) => Err(format!(
            "the host environment variable `{var}` (from_env) is not set; set it where \
             Phalanx runs, or remove this entry"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "the host environment variable `{var}` (from_env) is not valid UTF-8"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["bandit", "a", "Zap-2.x_y", "0day", &"a".repeat(64)] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-x", ".x", "_x", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_names_are_host_names() {
        for ok in ["app", "a", "notes-2", "0db", &"a".repeat(63)] {
            assert_eq!(check_service_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "App", "-a", "a-", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(check_service_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capabilities_are_normalised_and_checked() {
        assert_eq!(check_capability("NET_RAW"), Ok("NET_RAW".into()));
        assert_eq!(check_capability("cap_net_raw"), Ok("NET_RAW".into()));
        assert_eq!(check_capability("Cap_Chown"), Ok("CHOWN".into()));
        assert_eq!(CAPABILITIES.len(), 41);
        let typo = check_capability("NET_RAWW").unwrap_err();
        assert!(typo.contains("did you mean `NET_RAW`?"), "{typo}");
        let all = check_capability("ALL").unwrap_err();
        assert!(all.contains("not allowed"), "{all}");
    }
}
