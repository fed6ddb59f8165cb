//! What a suite's policy asks for that Docker Swarm's service API (1.41, this engine's) cannot
//! express. A gap is never papered over: the suite is refused unless the project accepts that
//! gap by name (`[swarm] allow_gaps`), and `phalanx validate --engine swarm` lists it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::SwarmSettings;
use crate::config::{NetworkMode, Policy, Suite};

/// One hardening the Docker backend applies that a swarm task cannot get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyGap {
    /// `no-new-privileges`: the 1.41 `ContainerSpec.Privileges` has no field for it (a task
    /// was measured with `NoNewPrivs: 0`). With every capability dropped a setuid binary
    /// still changes the uid, which the flag would have prevented.
    NoNewPrivileges,
    /// Swap on top of the memory limit: the service API has no `MemorySwap`, and on cgroup v1
    /// the engine then allows as much swap again (`memory.memsw.limit_in_bytes` measured at
    /// twice the limit). Only matters on nodes that have swap.
    MemorySwap,
    /// `network = "none"`: a swarm task cannot be left without a network. It gets a network
    /// of its own, internal, but the swarm ignores the bridge driver's options on
    /// swarm-scoped networks (`inhibit_ipv4`, `enable_icc` were dropped when tried), so the
    /// bridge has a gateway address on the node and the task can reach what listens on the
    /// node's addresses.
    NetworkNone,
}

impl PolicyGap {
    pub const ALL: [PolicyGap; 3] = [
        PolicyGap::NoNewPrivileges,
        PolicyGap::MemorySwap,
        PolicyGap::NetworkNone,
    ];

    /// The name `allow_gaps` uses.
    pub fn key(self) -> &'static str {
        match self {
            PolicyGap::NoNewPrivileges => "no-new-privileges",
            PolicyGap::MemorySwap => "memory-swap",
            PolicyGap::NetworkNone => "network-none",
        }
    }

    pub fn from_key(key: &str) -> Option<PolicyGap> {
        PolicyGap::ALL.into_iter().find(|gap| gap.key() == key)
    }

    /// What the suite loses, for `validate` and the refusal.
    pub fn consequence(self) -> &'static str {
        match self {
            PolicyGap::NoNewPrivileges => {
                "the service API (1.41) cannot set no-new-privileges, so a setuid binary in the \
                 image can still change the task's user"
            }
            PolicyGap::MemorySwap => {
                "the service API (1.41) cannot forbid swap, so on a node with swap the task may \
                 use as much swap again as its memory limit"
            }
            PolicyGap::NetworkNone => {
                "a swarm task always has a network: network = \"none\" becomes an internal \
                 network of the task's own, from which it can still reach services listening \
                 on its node's addresses"
            }
        }
    }
}

impl fmt::Display for PolicyGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The gaps `policy` has on swarm: every policy has the first two, `network = "none"` the
/// third (egress is what the Docker backend gives too).
pub fn policy_gaps(policy: &Policy) -> Vec<PolicyGap> {
    let mut gaps = vec![PolicyGap::NoNewPrivileges, PolicyGap::MemorySwap];
    if policy.network == NetworkMode::None {
        gaps.push(PolicyGap::NetworkNone);
    }
    gaps
}

/// What the swarm engine cannot run at all, whatever the project allows: one sentence each.
pub fn unsupported(suite: &Suite) -> Vec<String> {
    let mut found = Vec::new();
    if suite.policy.network == NetworkMode::Target {
        found.push(
            "network = \"target\" is not supported by the swarm engine yet (the run's private \
             network and its services stay on the Docker backend)"
                .to_string(),
        );
    }
    if !suite.needs.is_empty() {
        found.push(format!(
            "needs = [{}]: services are not supported by the swarm engine yet",
            suite
                .needs
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    found
}

/// What the swarm engine makes of one suite under the project's `[swarm]` settings: what
/// `phalanx validate --engine swarm` lists and what a swarm run refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmFit {
    /// Each gap of the suite's policy, with whether `allow_gaps` accepts it.
    pub gaps: Vec<(PolicyGap, bool)>,
    /// What swarm cannot run at all ([`unsupported`]).
    pub unsupported: Vec<String>,
    /// The gaps the project accepts, for the fix a refusal suggests.
    allowed: Vec<PolicyGap>,
}

/// How `suite` fares on swarm with `settings`.
pub fn fit(suite: &Suite, settings: &SwarmSettings) -> SwarmFit {
    SwarmFit {
        gaps: policy_gaps(&suite.policy)
            .into_iter()
            .map(|gap| (gap, settings.allow_gaps.contains(&gap)))
            .collect(),
        unsupported: unsupported(suite),
        allowed: settings.allow_gaps.iter().copied().collect(),
    }
}

impl SwarmFit {
    /// Whether a swarm run refuses the suite.
    pub fn refused(&self) -> bool {
        self.gaps.iter().any(|&(_, allowed)| !allowed) || !self.unsupported.is_empty()
    }

    /// One sentence per reason the suite is refused: each gap the project does not accept
    /// (what it costs and how to accept it), each thing swarm cannot run.
    pub fn refusals(&self) -> Vec<String> {
        let gaps = self
            .gaps
            .iter()
            .filter(|(_, allowed)| !allowed)
            .map(|&(gap, _)| {
                format!(
                    "the swarm engine cannot enforce this suite's policy: gap `{gap}`: {}; to \
                     run it there anyway, accept the gap in phalanx.toml with {} under [swarm] \
                     (or run it with --engine docker)",
                    gap.consequence(),
                    self.allow_line(gap)
                )
            });
        let unsupported = self.unsupported.iter().map(|what| {
            format!("the swarm engine cannot run this suite: {what}; run it with --engine docker")
        });
        gaps.chain(unsupported).collect()
    }

    /// The `allow_gaps` line that accepts `gap` besides those accepted already.
    pub fn allow_line(&self, gap: PolicyGap) -> String {
        let mut keys = self.allowed.clone();
        keys.push(gap);
        keys.sort();
        keys.dedup();
        let keys: Vec<String> = keys.iter().map(|g| format!("\"{g}\"")).collect();
        format!("allow_gaps = [{}]", keys.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::suite;

    #[test]
    fn gap_keys_read_back() {
        for gap in PolicyGap::ALL {
            assert_eq!(PolicyGap::from_key(gap.key()), Some(gap));
        }
        assert_eq!(PolicyGap::from_key("seccomp"), None);
    }

    #[test]
    fn only_a_suite_without_network_has_the_network_gap() {
        let mut s = suite("a");
        assert!(policy_gaps(&s.policy).contains(&PolicyGap::NetworkNone));
        s.policy.network = NetworkMode::Egress;
        assert_eq!(
            policy_gaps(&s.policy),
            [PolicyGap::NoNewPrivileges, PolicyGap::MemorySwap]
        );
    }

    #[test]
    fn dynamic_suites_are_unsupported_and_static_ones_are_not() {
        let mut s = suite("a");
        assert!(unsupported(&s).is_empty());
        s.policy.network = NetworkMode::Target;
        s.needs = vec!["app".into()];
        let found = unsupported(&s);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].contains("\"app\""), "{found:?}");
    }

    #[test]
    fn a_suite_is_refused_for_each_gap_not_allowed_and_for_what_swarm_cannot_run() {
        let s = suite("a");
        let none = fit(&s, &SwarmSettings::default());
        assert!(none.refused());
        let refusals = none.refusals();
        assert_eq!(refusals.len(), 3, "{refusals:?}");
        assert!(
            refusals[0].contains("gap `no-new-privileges`")
                && refusals[0].contains(PolicyGap::NoNewPrivileges.consequence())
                && refusals[0].contains(r#"allow_gaps = ["no-new-privileges"] under [swarm]"#),
            "{}",
            refusals[0]
        );
        let some = SwarmSettings {
            allow_gaps: [PolicyGap::MemorySwap, PolicyGap::NetworkNone].into(),
            ..SwarmSettings::default()
        };
        let refusals = fit(&s, &some).refusals();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert!(
            refusals[0]
                .contains(r#"allow_gaps = ["no-new-privileges", "memory-swap", "network-none"]"#),
            "the fix keeps what is accepted already: {}",
            refusals[0]
        );
        let all = SwarmSettings {
            allow_gaps: PolicyGap::ALL.into(),
            ..SwarmSettings::default()
        };
        let fine = fit(&s, &all);
        assert!(!fine.refused(), "{:?}", fine.refusals());
        assert!(fine.gaps.iter().all(|&(_, allowed)| allowed));
        let mut dynamic = suite("d");
        dynamic.policy.network = NetworkMode::Target;
        let refusals = fit(&dynamic, &all).refusals();
        assert_eq!(refusals.len(), 1, "never allowable: {refusals:?}");
        assert!(refusals[0].contains("--engine docker"), "{}", refusals[0]);
    }
}
