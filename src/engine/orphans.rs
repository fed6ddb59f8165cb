//! Containers, volumes and networks left by a Phalanx process that was killed (SIGKILL, a
//! crash, a CI job cancelled hard) before it could clean up.
//!
//! Several runs may share one engine at once (parallel CI jobs on one host), so "labelled
//! `phalanx.run`" is not enough to call something an orphan: every object also carries
//! [`OWNER_LABEL`] = `<host>:<pid>:<start>:<boot>` (the owning process, its start time in
//! clock ticks since boot, and the boot id). An object is orphaned only when its owner ran
//! on this host and is gone: another boot, no such pid, or a pid now reused by another
//! process (a different start time). Objects of other hosts and objects without the label
//! (made by older versions) are never touched here; `phalanx clean` without `--run`
//! removes those too.

use std::collections::HashMap;
use std::sync::OnceLock;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};

use super::EngineError;

/// Label naming the process that created a container, volume or network.
pub const OWNER_LABEL: &str = "phalanx.owner";

/// A process, identified across pid reuse and reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat`, field 22).
    pub start: u64,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot: String,
}

impl Owner {
    /// This process.
    pub fn current() -> &'static Owner {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                host: hostname(),
                pid,
                start: start_time(pid).unwrap_or(0),
                boot: boot_id(),
            }
        })
    }

    /// The label value: `<host>:<pid>:<start>:<boot>`.
    pub fn label(&self) -> String {
        format!("{}:{}:{}:{}", self.host, self.pid, self.start, self.boot)
    }

    /// Reads a label value; `None` if it is not one this module wrote.
    pub fn parse(label: &str) -> Option<Owner> {
        let mut parts = label.rsplitn(4, ':');
        let boot = parts.next()?.to_string();
        let start = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        Some(Owner {
            host,
            pid,
            start,
            boot,
        })
    }

    /// Whether this owner is gone, as seen from `me`: same host, and another boot or a pid
    /// that no longer runs the process that started at `start`. `start_of(pid)` gives the
    /// start time of the process running as `pid` now, if any.
    pub fn is_gone(&self, me: &Owner, start_of: impl Fn(u32) -> Option<u64>) -> bool {
        if self.host != me.host {
            return false;
        }
        self.boot != me.boot || start_of(self.pid) != Some(self.start)
    }
}

/// The label value for objects this process creates.
pub fn owner_label() -> String {
    Owner::current().label()
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim().to_string())
        .unwrap_or_default()
}

/// Start time of the process `pid` (clock ticks after boot), or `None` if there is none.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself, so fields are counted after its last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: field 22 is the 20th from there.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The run's and owner's labels only, of a suite's `labels`: for what outlives one suite
/// (a run's network or image), so that it is removed with the run, or as an orphan.
pub fn run_labels(labels: &HashMap<String, String>) -> HashMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| *k == super::RUN_LABEL || *k == OWNER_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether an object with these labels belongs to a Phalanx process of this host that is gone.
pub fn orphaned(labels: Option<&HashMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(OWNER_LABEL))
        .and_then(|v| Owner::parse(v))
        .is_some_and(|owner| owner.is_gone(Owner::current(), start_time))
}

/// Removes the containers (with their volumes) and networks whose owner is gone; returns
/// how many containers were removed. Objects of live runs are left alone.
pub async fn remove_orphans(docker: &Docker) -> Result<usize, EngineError> {
    let filters = HashMap::from([("label".to_string(), vec![OWNER_LABEL.to_string()])]);

    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| EngineError::api("container list", e))?;
    let force = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let mut removed = 0;
    for container in containers {
        let Some(id) = container.id.as_deref() else {
            continue;
        };
        if orphaned(container.labels.as_ref())
            && docker
                .remove_container(id, Some(force.clone()))
                .await
                .is_ok()
        {
            removed += 1;
        }
    }

    let opts = ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let volumes = docker
        .list_volumes(Some(opts))
        .await
        .map_err(|e| EngineError::api("volume list", e))?;
    let force_volume = RemoveVolumeOptionsBuilder::default().force(true).build();
    for volume in volumes.volumes.unwrap_or_default() {
        if orphaned(Some(&volume.labels)) {
            // A volume still in use (by a container of a live run) is refused: fine.
            let _ = docker
                .remove_volume(&volume.name, Some(force_volume.clone()))
                .await;
        }
    }

    let opts = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    let networks = docker
        .list_networks(Some(opts))
        .await
        .map_err(|e| EngineError::api("network list", e))?;
    for network in networks {
        if let Some(id) = network.id.as_deref()
            && orphaned(network.labels.as_ref())
        {
            let _ = docker.remove_network(id).await;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(host: &str, pid: u32, start: u64, boot: &str) -> Owner {
        Owner {
            host: host.into(),
            pid,
            start,
            boot: boot.into(),
        }
    }

    #[test]
    fn labels_round_trip() {
        let o = owner("ci-runner-7.example", 4242, 987654, "1b2c-3d");
        assert_eq!(Owner::parse(&o.label()), Some(o));
        assert_eq!(Owner::parse("garbage"), None);
        assert_eq!(Owner::parse("h:notapid:1:b"), None);
        let me = Owner::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start > 0, "{me:?}");
        assert_eq!(Owner::parse(&owner_label()).as_ref(), Some(me));
    }

    #[test]
    fn only_dead_owners_on_this_host_are_gone() {
        let me = owner("h", 1, 10, "boot");
        let start_of = |pid: u32| match pid {
            100 => Some(500), // a live process started at 500
            _ => None,        // no such process
        };
        assert!(
            !owner("h", 100, 500, "boot").is_gone(&me, start_of),
            "alive"
        );
        assert!(
            owner("h", 100, 499, "boot").is_gone(&me, start_of),
            "pid reused"
        );
        assert!(
            owner("h", 200, 500, "boot").is_gone(&me, start_of),
            "no such pid"
        );
        assert!(
            owner("h", 100, 500, "old").is_gone(&me, start_of),
            "rebooted"
        );
        assert!(
            !owner("other", 200, 500, "boot").is_gone(&me, start_of),
            "other host"
        );
    }

    #[test]
    fn this_process_and_its_parent_are_alive() {
        let me = Owner::current();
        assert!(!me.is_gone(me, start_time));
        let dead = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(dead.is_gone(me, start_time));
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat =
            "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }
}
