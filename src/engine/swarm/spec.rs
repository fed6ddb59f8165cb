//! One suite attempt as a swarm service: a `replicated-job` that runs once, never restarts,
//! and carries the suite's policy as far as the 1.41 service API can express it (what it
//! cannot is in [`super::gaps`]).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    Limit, Mount, MountTmpfsOptions, MountType, NetworkAttachmentConfig, ResourceObject,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec,
    TaskSpecLogDriver, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use sha2::Digest;

use crate::engine::{ContainerSpec, RESULTS_DIR};

/// Size of the private `/tmp` (as on the Docker backend; it counts against the memory limit).
const TMP_BYTES: i64 = 256 << 20;
/// Size of `/results`, a tmpfs here: what the extractor accepts at most.
pub const RESULTS_BYTES: i64 = 256 << 20;
/// Longest service name swarm accepts (a DNS label).
const MAX_SERVICE_NAME: usize = 63;

/// The environment variable that hands the wrapper its frame marker.
pub const FRAME_ENV: &str = "PHALANX_FRAME";

/// What, besides the suite's own spec, one task needs.
pub struct TaskPlan<'a> {
    pub spec: &'a ContainerSpec,
    pub service: &'a str,
    /// The per-run layer to run (see [`super::layer`]).
    pub image: &'a str,
    pub nonce: &'a str,
    pub network: &'a str,
    /// The project's and suite's constraints, plus the manager's node without a registry.
    pub constraints: Vec<String>,
    pub grace: Duration,
}

/// A DNS-label service name for a container name: the same when it already is one, else
/// lower-cased, `_`/`.` made `-`, cut to length, and made unique again by a short hash.
pub fn service_name(container_name: &str) -> String {
    let clean: String = container_name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if clean == container_name && clean.len() <= MAX_SERVICE_NAME {
        return clean;
    }
    let hash = sha2::Sha256::digest(container_name.as_bytes());
    let short: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    let keep = MAX_SERVICE_NAME - short.len() - 1;
    let head = clean[..clean.len().min(keep)].trim_end_matches('-');
    format!("{head}-{short}")
}

/// The service for one attempt.
pub fn service_spec(plan: &TaskPlan<'_>) -> ServiceSpec {
    let spec = plan.spec;
    let policy = &spec.policy;
    let nano_cpus = (policy.cpus * 1e9) as i64;
    let memory = policy.memory as i64;
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("{FRAME_ENV}={}", plan.nonce));
    let container = TaskSpecContainerSpec {
        image: Some(plan.image.to_string()),
        labels: Some(spec.labels.clone()),
        args: spec.command.clone(),
        env: Some(env),
        user: Some(policy.user.clone()),
        read_only: Some(policy.read_only),
        init: Some(true),
        tty: Some(false),
        open_stdin: Some(false),
        capability_drop: Some(vec!["ALL".into()]),
        capability_add: Some(policy.cap_add.iter().map(|c| capability(c)).collect()),
        mounts: Some(vec![
            tmpfs("/tmp", TMP_BYTES),
            tmpfs(RESULTS_DIR, RESULTS_BYTES),
        ]),
        stop_grace_period: Some(plan.grace.as_nanos() as i64),
        ..Default::default()
    };
    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: Some(nano_cpus),
                memory_bytes: Some(memory),
                pids: Some(policy.pids),
            }),
            // Reserved too, so the swarm only places a task where it fits.
            reservations: Some(ResourceObject {
                nano_cpus: Some(nano_cpus),
                memory_bytes: Some(memory),
                ..Default::default()
            }),
            ..Default::default()
        }),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
            max_attempts: Some(0),
            ..Default::default()
        }),
        placement: Some(TaskSpecPlacement {
            constraints: Some(plan.constraints.clone()),
            ..Default::default()
        }),
        networks: Some(vec![NetworkAttachmentConfig {
            target: Some(plan.network.to_string()),
            ..Default::default()
        }]),
        // As on the Docker backend: the engine's copy must not rotate under the reader.
        log_driver: Some(TaskSpecLogDriver {
            name: Some("json-file".into()),
            options: Some(HashMap::from([
                ("max-size".to_string(), "8g".to_string()),
                ("max-file".to_string(), "1".to_string()),
            ])),
        }),
        ..Default::default()
    };
    ServiceSpec {
        name: Some(plan.service.to_string()),
        labels: Some(spec.labels.clone()),
        task_template: Some(task),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The service API wants `CAP_`-prefixed names; suites may write either.
fn capability(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn tmpfs(target: &str, size: i64) -> Mount {
    Mount {
        target: Some(target.into()),
        typ: Some(MountType::TMPFS),
        tmpfs_options: Some(MountTmpfsOptions {
            size_bytes: Some(size),
            mode: Some(0o1777),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;

    fn container(name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "img".into(),
            command: Some(vec!["scan".into()]),
            env: vec![("A".into(), "1".into())],
            policy: Policy {
                cap_add: vec!["net_raw".into()],
                ..Policy::default()
            },
            target: "/t".into(),
            target_volume: Some("phalanx-abc-target".into()),
            hidden: Vec::new(),
            labels: HashMap::from([("phalanx.run".into(), "abc".into())]),
            placement: Vec::new(),
        }
    }

    #[test]
    fn service_names_are_dns_labels_and_stay_unique() {
        assert_eq!(
            service_name("phalanx-abc-gitleaks-1"),
            "phalanx-abc-gitleaks-1"
        );
        let dotted = service_name("phalanx-abc-my.suite-1");
        let under = service_name("phalanx-abc-my_suite-1");
        assert_ne!(dotted, under);
        assert!(dotted.starts_with("phalanx-abc-my-suite-1-"), "{dotted}");
        let long = service_name(&format!("phalanx-abc-{}-1", "x".repeat(64)));
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn the_policy_becomes_limits_reservations_and_a_locked_down_container() {
        let spec = container("phalanx-abc-s-1");
        let plan = TaskPlan {
            spec: &spec,
            service: "phalanx-abc-s-1",
            image: "phalanx-run/abc:1234",
            nonce: "n",
            network: "phalanx-abc-s-1-net",
            constraints: vec!["node.role==manager".into()],
            grace: Duration::from_secs(5),
        };
        let service = service_spec(&plan);
        let task = service.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert_eq!(c.read_only, Some(true));
        assert_eq!(c.init, Some(true));
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(c.capability_add, Some(vec!["CAP_NET_RAW".to_string()]));
        assert_eq!(c.args, Some(vec!["scan".to_string()]));
        assert!(c.env.unwrap().contains(&"PHALANX_FRAME=n".to_string()));
        let resources = task.resources.unwrap();
        assert_eq!(resources.limits.unwrap().pids, Some(512));
        assert_eq!(resources.reservations.unwrap().memory_bytes, Some(1 << 30));
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let job = service.mode.unwrap().replicated_job.unwrap();
        assert_eq!(job.total_completions, Some(1));
    }
}
