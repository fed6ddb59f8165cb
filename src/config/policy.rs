//! The `[policy]` table, shared by suite files and `phalanx.toml`.

use serde::Deserialize;

use super::values::{AtLeastOne, Capability, Cpus, Memory, TmpfsPath, Word};
use super::{NetworkMode, Policy};

/// `[policy]` as written: every key optional, so that only the keys present override the
/// layer below (suite over project over the hardened built-in default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    network: Option<NetworkMode>,
    user: Option<Word>,
    read_only: Option<bool>,
    cap_add: Option<Vec<Capability>>,
    memory: Option<Memory>,
    cpus: Option<Cpus>,
    pids: Option<AtLeastOne>,
}

impl RawPolicy {
    /// The keys set here replace the same keys of `base`. `cap_add` is replaced, not merged:
    /// a suite that lists capabilities gets exactly those, so it reads as it runs.
    pub(crate) fn over(self, base: &Policy) -> Policy {
        Policy {
            network: self.network.unwrap_or(base.network),
            user: self.user.map_or_else(|| base.user.clone(), |u| u.0),
            read_only: self.read_only.unwrap_or(base.read_only),
            cap_add: self
                .cap_add
                .map_or_else(|| base.cap_add.clone(), dedup_caps),
            memory: self.memory.map_or(base.memory, |m| m.0),
            cpus: self.cpus.map_or(base.cpus, |c| c.0),
            pids: self.pids.map_or(base.pids, |p| p.0),
        }
    }
}

/// A service's `[policy]`: a suite's without `network` (a service is always on the run's
/// private network, nothing else), and with the `tmpfs` paths it may write.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServicePolicy {
    user: Option<Word>,
    read_only: Option<bool>,
    cap_add: Option<Vec<Capability>>,
    memory: Option<Memory>,
    cpus: Option<Cpus>,
    pids: Option<AtLeastOne>,
    tmpfs: Option<Vec<TmpfsPath>>,
}

impl RawServicePolicy {
    /// The policy over `base` (as for a suite, with `network = "target"`) and the tmpfs
    /// paths, each once.
    pub(crate) fn over(self, base: &Policy) -> (Policy, Vec<String>) {
        let mut tmpfs: Vec<String> = Vec::new();
        for TmpfsPath(path) in self.tmpfs.unwrap_or_default() {
            if !tmpfs.contains(&path) {
                tmpfs.push(path);
            }
        }
        let as_suite = RawPolicy {
            network: Some(NetworkMode::Target),
            user: self.user,
            read_only: self.read_only,
            cap_add: self.cap_add,
            memory: self.memory,
            cpus: self.cpus,
            pids: self.pids,
        };
        (as_suite.over(base), tmpfs)
    }
}

/// Capability names in their first-seen order, each once (`NET_RAW` and `CAP_NET_RAW` are one).
fn dedup_caps(caps: Vec<Capability>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(caps.len());
    for Capability(cap) in caps {
        if !out.contains(&cap) {
            out.push(cap);
        }
    }
    out
}
