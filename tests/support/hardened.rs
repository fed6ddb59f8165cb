//! The hardened container settings of DESIGN.md for containers that tests and the benchmark
//! start themselves, without Phalanx: one bollard `HostConfig`, and the `docker run` flags
//! made from it, so the two never drift apart. Limits come from Phalanx's default policy.

use std::collections::HashMap;

use bollard::models::{HostConfig, Mount, MountType};
use phalanx::config::Policy;

/// The `/tmp` tmpfs Phalanx gives every suite.
pub const TMPFS: &str = "rw,nosuid,nodev,size=256m,mode=1777";

/// The user every suite runs as by default.
pub fn user() -> String {
    Policy::default().user
}

/// No network, no capabilities, no new privileges, read-only root, docker-init, the default
/// policy's limits (no swap on top of the memory limit) and a `/tmp` tmpfs. Callers add
/// mounts and override what their test is about with struct update syntax.
pub fn host_config() -> HostConfig {
    let policy = Policy::default();
    HostConfig {
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        readonly_rootfs: Some(policy.read_only),
        init: Some(true),
        pids_limit: Some(policy.pids),
        memory: Some(policy.memory as i64),
        memory_swap: Some(policy.memory as i64),
        nano_cpus: Some((policy.cpus * 1e9) as i64),
        tmpfs: Some(HashMap::from([("/tmp".to_string(), TMPFS.to_string())])),
        ..Default::default()
    }
}

/// `config` as `docker run` flags (with `--user`), for the fields [`host_config`] sets and
/// bind and volume mounts. Panics on a field it cannot express rather than dropping it.
pub fn docker_run_flags(config: &HostConfig, user: &str) -> Vec<String> {
    let mut flags: Vec<String> = vec!["--user".into(), user.into()];
    let mut flag = |name: &str, value: String| flags.extend([name.to_string(), value]);
    if let Some(network) = &config.network_mode {
        flag("--network", network.clone());
    }
    for cap in config.cap_drop.iter().flatten() {
        flag("--cap-drop", cap.clone());
    }
    for opt in config.security_opt.iter().flatten() {
        flag("--security-opt", opt.clone());
    }
    if let Some(pids) = config.pids_limit {
        flag("--pids-limit", pids.to_string());
    }
    if let Some(memory) = config.memory {
        flag("--memory", format!("{memory}b"));
    }
    if let Some(swap) = config.memory_swap {
        flag("--memory-swap", format!("{swap}b"));
    }
    if let Some(nano) = config.nano_cpus {
        flag("--cpus", format!("{}", nano as f64 / 1e9));
    }
    for (path, options) in config.tmpfs.iter().flatten() {
        flag("--tmpfs", format!("{path}:{options}"));
    }
    for mount in config.mounts.iter().flatten() {
        flag("--mount", mount_flag(mount));
    }
    if config.readonly_rootfs == Some(true) {
        flags.push("--read-only".into());
    }
    if config.init == Some(true) {
        flags.push("--init".into());
    }
    flags
}

fn mount_flag(mount: &Mount) -> String {
    let target = mount.target.as_deref().expect("a mount has a target");
    let mut spec = match mount.typ {
        Some(MountType::BIND) => {
            let source = mount.source.as_deref().expect("a bind mount has a source");
            format!("type=bind,src={source},dst={target}")
        }
        Some(MountType::VOLUME) => {
            assert!(
                mount.volume_options.is_none(),
                "volume options have no docker run flag here"
            );
            format!("type=volume,dst={target}")
        }
        ref other => panic!("no docker run flag for a {other:?} mount"),
    };
    if mount.read_only == Some(true) {
        spec.push_str(",readonly");
    }
    spec
}
