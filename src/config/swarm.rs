//! `[swarm]` in `phalanx.toml` and the placement constraints it shares with suite files
//! (`placement = [...]`). Each value is checked where it is written, so that a typo is an
//! error at its line instead of a task the swarm never schedules.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer};

use super::suggest::closest;
use super::values::checked_str;
use crate::engine::swarm::{PolicyGap, SwarmSettings};

/// `[swarm]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSwarm {
    registry: Option<Registry>,
    placement: Option<Vec<Constraint>>,
    allow_gaps: Option<Vec<GapKey>>,
}

impl RawSwarm {
    pub(crate) fn resolve(self) -> SwarmSettings {
        SwarmSettings {
            registry: self.registry.map(|r| r.0),
            placement: constraints(self.placement),
            allow_gaps: self
                .allow_gaps
                .unwrap_or_default()
                .into_iter()
                .map(|g| g.0)
                .collect(),
        }
    }
}

/// The constraints as written, each once, in their first-seen order.
pub(crate) fn constraints(written: Option<Vec<Constraint>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for Constraint(text) in written.unwrap_or_default() {
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

const REGISTRY_EXPECTING: &str = "a registry address `host:port` such as \"10.9.0.1:5000\", \
     \"registry.example.com:443\" or \"[fd00::1]:5000\" (no scheme, no path)";

/// `registry`: where every node pulls the run's images from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registry(pub String);

impl<'de> Deserialize<'de> for Registry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, REGISTRY_EXPECTING, |s| {
            check_registry(s)
                .map(|()| Registry(s.to_owned()))
                .map_err(|why| format!("expected {REGISTRY_EXPECTING}, found {s:?}: {why}"))
        })
    }
}

/// Checks `host:port`: a host name, an IPv4 address or a bracketed IPv6 address, and a
/// port from 1 to 65535. Docker names images by this address (`host:port/name`), so a
/// scheme or a path would make every image name the engine is given wrong.
pub(crate) fn check_registry(text: &str) -> Result<(), String> {
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "leave out the scheme `{scheme}://`: Docker decides between HTTPS and HTTP itself"
        ));
    }
    if text.contains('/') {
        return Err("a registry address has no path; images are named under it".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing `]`")?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{ip}` is not an IPv6 address"))?;
        let port = port
            .strip_prefix(':')
            .ok_or("the port is missing after the address: write `[address]:port`")?;
        (None, port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (Some(host), port),
            None => return Err("the port is missing: write `host:port`".into()),
        }
    };
    if let Some(host) = host {
        check_host(host)?;
    }
    match port.parse::<u32>() {
        Ok(1..=65535) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!(
            "the port must be a number from 1 to 65535, not `{port}`"
        )),
    }
}

/// A DNS name (labels of letters, digits and inner `-`) or a dotted IPv4 address.
fn check_host(host: &str) -> Result<(), String> {
    if host.contains(':') {
        return Err("an IPv6 address goes in brackets: `[address]:port`".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    let numeric = labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    if numeric {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("`{host}` is not an IPv4 address")),
        };
    }
    let label_ok = |l: &&str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    if host.len() <= 253 && labels.iter().all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a host name (letters, digits and `-` between dots)"
        ))
    }
}

const CONSTRAINT_EXPECTING: &str = "a swarm placement constraint `<key> == <value>` or `<key> != <value>`, such as \
     \"node.labels.scanner == true\" or \"node.role != manager\"";

/// The attributes a swarm constraint can test, besides `node.labels.*` and
/// `engine.labels.*` (swarmkit's `constraint.NodeMatches`). A key it does not know
/// matches no node, so the task would wait unscheduled until the suite times out.
const CONSTRAINT_KEYS: &[&str] = &[
    "node.id",
    "node.hostname",
    "node.ip",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
];
const LABEL_PREFIXES: &[&str] = &["node.labels.", "engine.labels."];

/// One placement constraint, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Constraint(pub String);

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, CONSTRAINT_EXPECTING, |s| {
            check_constraint(s)
                .map(|()| Constraint(s.to_owned()))
                .map_err(|why| format!("expected {CONSTRAINT_EXPECTING}, found {s:?}: {why}"))
        })
    }
}

/// Checks a constraint as swarm parses it (swarmkit's `constraint.Parse`: the first of
/// `==`, `!=` it contains splits it; the key and the value have their own alphabets), and
/// that its key is one swarm can match.
pub(crate) fn check_constraint(text: &str) -> Result<(), String> {
    let Some((key, value)) = ["==", "!="]
        .iter()
        .find_map(|op| text.split_once(op))
        .map(|(k, v)| (k.trim(), v.trim()))
    else {
        return Err("it has no `==` or `!=`".into());
    };
    let mut key_chars = key.chars();
    let key_shape = key_chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.len() >= 2
        && key_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !key_shape {
        return Err(format!(
            "the key `{key}` is not one swarm accepts (a letter or `_`, then letters, digits, \
             `-`, `_`, `.`)"
        ));
    }
    // Swarm's value pattern; its `\s` (RE2) is ASCII white space only.
    let value_char = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
            || ":-_.*()?+[]\\^$|/".contains(c)
    };
    if value.is_empty() || !value.chars().all(value_char) {
        return Err(format!(
            "the value `{value}` is not one swarm accepts (letters, digits, spaces and \
             `:-_.*()?+[]\\^$|/`)"
        ));
    }
    let lower = key.to_ascii_lowercase();
    let labelled = LABEL_PREFIXES
        .iter()
        .any(|p| lower.len() > p.len() && lower.starts_with(p));
    if labelled || CONSTRAINT_KEYS.contains(&lower.as_str()) {
        return Ok(());
    }
    let mut why = format!(
        "swarm matches no node on `{key}`: use node.labels.NAME, engine.labels.NAME or one \
         of {}",
        CONSTRAINT_KEYS.join(", ")
    );
    if let Some(hint) = closest(&lower, CONSTRAINT_KEYS.iter().copied()) {
        why.push_str(&format!("; did you mean `{hint}`?"));
    }
    Err(why)
}

/// A gap the project accepts, by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GapKey(pub PolicyGap);

impl<'de> Deserialize<'de> for GapKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a policy gap such as \"no-new-privileges\"", |s| {
            PolicyGap::from_key(s).map(GapKey).ok_or_else(|| {
                let keys = PolicyGap::ALL.map(PolicyGap::key);
                let mut message = format!(
                    "expected a policy gap swarm has, one of {}, found {s:?}",
                    keys.map(|k| format!("`{k}`")).join(", ")
                );
                if let Some(hint) = closest(s, keys) {
                    message.push_str(&format!("; did you mean `{hint}`?"));
                }
                message
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{ConfigError, ProjectConfig, parse_project, parse_suite};
    use crate::engine::EngineKind;

    fn project(text: &str) -> Result<ProjectConfig, ConfigError> {
        parse_project(Path::new("phalanx.toml"), text)
    }

    /// The one error of `text` as a project file: its line, key and message.
    #[track_caller]
    fn project_error(text: &str, line: u32, key: &str, says: &str) {
        let e = project(text).unwrap_err();
        let shown = e.to_string();
        assert_eq!(e.location.map(|l| l.line), Some(line), "{shown}");
        assert_eq!(e.key.as_deref(), Some(key), "{shown}");
        assert!(
            shown.starts_with(&format!("phalanx.toml:{line}:")),
            "{shown}"
        );
        // Either the dotted key, or its last part and the table it is in.
        let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
        let names_leaf = shown.contains(&format!("`{leaf}` in the [{table}] table"));
        assert!(shown.contains(&format!("`{key}`")) || names_leaf, "{shown}");
        assert!(shown.contains(says), "expected {says:?} in: {shown}");
    }

    #[test]
    fn the_engine_and_the_swarm_table_are_read() {
        let p = project(
            "engine = \"swarm\"\n[swarm]\nregistry = \"10.9.0.1:5000\"\n\
             placement = [\"node.labels.scanner == true\", \"node.role!=manager\", \
             \"node.labels.scanner == true\"]\nallow_gaps = [\"memory-swap\", \"no-new-privileges\"]\n",
        )
        .unwrap();
        assert_eq!(p.engine, EngineKind::Swarm);
        assert_eq!(p.swarm.registry.as_deref(), Some("10.9.0.1:5000"));
        assert_eq!(
            p.swarm.placement,
            ["node.labels.scanner == true", "node.role!=manager"],
            "each constraint once"
        );
        assert_eq!(
            p.swarm.allow_gaps.into_iter().collect::<Vec<_>>(),
            [PolicyGap::NoNewPrivileges, PolicyGap::MemorySwap]
        );
        let defaults = project("").unwrap();
        assert_eq!(defaults.engine, EngineKind::Docker);
        assert_eq!(defaults.swarm, SwarmSettings::default());
        assert_eq!(
            project("engine = \"docker\"\n").unwrap().engine,
            EngineKind::Docker
        );
    }

    #[test]
    fn a_bad_engine_or_swarm_key_names_its_line() {
        project_error(
            "jobs = 2\nengine = \"k8s\"\n",
            2,
            "engine",
            "expected `docker` or `swarm`, found \"k8s\"",
        );
        project_error(
            "[swarm]\nregistery = \"r:5000\"\n",
            2,
            "swarm.registery",
            "did you mean `registry`?",
        );
        project_error("swarm = 1\n", 1, "swarm", "expected");
    }

    #[test]
    fn registry_addresses_are_host_and_port() {
        for ok in [
            "10.9.0.1:5000",
            "localhost:5000",
            "registry.example.com:443",
            "[::1]:5000",
            "[fd00::9:1]:65535",
            "Reg-1.example:1",
        ] {
            assert_eq!(check_registry(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("https://10.9.0.1:5000", "scheme `https://`"),
            ("10.9.0.1:5000/v2", "no path"),
            ("10.9.0.1", "port is missing"),
            ("10.9.0.1:0", "from 1 to 65535"),
            ("10.9.0.1:65536", "from 1 to 65535"),
            ("10.9.0.1:+80", "from 1 to 65535"),
            ("10.9.0.1:", "from 1 to 65535"),
            ("300.1.1.1:5000", "not an IPv4 address"),
            ("::1:5000", "in brackets"),
            ("[::g]:5000", "not an IPv6 address"),
            ("[::1]5000", "port is missing"),
            ("[::1:5000", "closing `]`"),
            ("-reg:5000", "not a host name"),
            ("reg..example:5000", "not a host name"),
            ("reg_1:5000", "not a host name"),
            (":5000", "not a host name"),
        ] {
            let e = check_registry(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        project_error(
            "[swarm]\nregistry = \"http://reg:5000\"\n",
            2,
            "swarm.registry",
            "leave out the scheme",
        );
    }

    #[test]
    fn constraints_have_the_shape_swarm_parses() {
        for ok in [
            "node.labels.scanner == true",
            "node.role==worker",
            "node.hostname != node-2",
            "engine.labels.operatingsystem==ubuntu 22.04",
            "NODE.PLATFORM.ARCH == x86_64",
            "node.ip == 10.9.0.0/24",
            "node.id == 2ivku8v2gvtg4",
        ] {
            assert_eq!(check_constraint(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "no `==` or `!=`"),
            ("node.role = worker", "no `==` or `!=`"),
            ("node.role >= worker", "no `==` or `!=`"),
            (" == worker", "the key ``"),
            ("1node.role == worker", "the key `1node.role`"),
            ("node.labels.a b == x", "the key"),
            ("node.role ==", "the value ``"),
            ("node.role == a=b", "the value `a=b`"),
            ("node.labels.x == \"q\"", "the value"),
            ("node.labels.x == a\u{2003}b", "the value"),
            ("node.labels. == x", "matches no node"),
            ("node.rol == worker", "did you mean `node.role`?"),
            ("labels.scanner == true", "node.labels.NAME"),
        ] {
            let e = check_constraint(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        project_error(
            "[swarm]\nregistry = \"r:1\"\nplacement = [\n  \"node.role == worker\",\n  \"node.rol == worker\",\n]\n",
            5,
            "swarm.placement",
            "did you mean `node.role`?",
        );
    }

    #[test]
    fn allowed_gaps_are_known_keys() {
        project_error(
            "[swarm]\nallow_gaps = [\"memory-swap\", \"no-new-privilege\"]\n",
            2,
            "swarm.allow_gaps",
            "one of `no-new-privileges`, `memory-swap`, `network-none`, found \"no-new-privilege\"; did you mean `no-new-privileges`?",
        );
        project_error(
            "[swarm]\nallow_gaps = [\"seccomp\"]\n",
            2,
            "swarm.allow_gaps",
            "found \"seccomp\"",
        );
        project_error(
            "[swarm]\nallow_gaps = \"memory-swap\"\n",
            2,
            "swarm.allow_gaps",
            "an array",
        );
    }

    #[test]
    fn a_suite_has_its_own_placement() {
        let path = Path::new("suites/s.toml");
        let defaults = ProjectConfig::default();
        let s = parse_suite(
            path,
            "image = \"i\"\nplacement = [\"node.labels.gpu == yes\"]\n",
            &defaults,
        )
        .unwrap();
        assert_eq!(s.placement, ["node.labels.gpu == yes"]);
        assert!(
            parse_suite(path, "image = \"i\"\n", &defaults)
                .unwrap()
                .placement
                .is_empty()
        );
        let errors = parse_suite(
            path,
            "image = \"i\"\nplacement = [\"node.labels.gpu = yes\"]\n",
            &defaults,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let shown = errors[0].to_string();
        assert_eq!(errors[0].key.as_deref(), Some("placement"), "{shown}");
        assert!(
            shown.starts_with("suites/s.toml:2:") && shown.contains("no `==` or `!=`"),
            "{shown}"
        );
    }
}
