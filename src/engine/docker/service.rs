//! Services on the run's private network: their containers, and the readiness check that
//! runs beside them.
//!
//! The check runs in a small container of its own on the same network, so it sees the
//! service exactly as the suites will: by its name, through the network's own DNS, with
//! no route anywhere else. That also works on a remote engine, whose networks this process
//! cannot reach. It is a bash loop in [`BASE_IMAGE`] (bash's `/dev/tcp`, coreutils'
//! `timeout`): nothing to build, and the base is there wherever Phalanx's images are.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use futures::StreamExt;

use super::{DockerEngine, hardened, target_mount, timed};
use crate::config::{Policy, ReadyCheck};
use crate::engine::base::{BASE_IMAGE, ensure_base};
use crate::engine::{EngineError, LogChunk, Readiness, ReadyProbe, ServiceSpec};

/// Size of a service's private `/tmp`, as a suite's.
const TMP_SIZE: &str = super::TMP_SIZE;

/// How long one readiness attempt may take before it counts as "no answer".
const ATTEMPT_SECS: u64 = 5;

/// Beyond its own timeout, how long the checker may take to start and stop.
const CHECKER_SLACK: Duration = Duration::from_secs(60);

/// Most of the checker's output that is read back.
const CHECKER_OUTPUT_LIMIT: usize = 64 * 1024;

/// Lines the checker prints for a failed attempt start with this.
const NOT_READY: &str = "phalanx-not-ready: ";

/// The readiness loop. Arguments: host, port, `http` or `tcp`, path, timeout in seconds.
/// Each attempt runs under `timeout`, so a service that accepts and never answers counts
/// as not ready; what it printed (bash's own connect errors included) is the failure.
const CHECKER: &str = r#"
host=$1 port=$2 mode=$3 path=$4 limit=$5 attempt_secs=$6
attempt() {
  exec 3<>"/dev/tcp/$host/$port" || return 1
  [ "$mode" = tcp ] && { echo "connected"; return 0; }
  printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nUser-Agent: phalanx-ready\r\nConnection: close\r\n\r\n' \
    "$path" "$host" "$port" >&3
  IFS= read -r line <&3 || { echo "the connection closed without an answer"; return 1; }
  line=${line%$'\r'}
  code=${line#* }; code=${code%% *}
  case $code in
    [23][0-9][0-9]) echo "$line"; return 0 ;;
    *) echo "GET $path answered: ${line:0:200}"; return 1 ;;
  esac
}
export -f attempt
export host port mode path
start=$SECONDS n=0
while :; do
  n=$((n + 1))
  if out=$(timeout "$attempt_secs" bash -c attempt 2>&1); then
    echo "phalanx-ready: attempt $n: $out"
    exit 0
  fi
  [ -n "$out" ] || out="no answer within ${attempt_secs}s"
  out=${out//$'\n'/ }
  echo "phalanx-not-ready: attempt $n: $out"
  [ $((SECONDS - start)) -ge "$limit" ] && exit 1
  sleep 0.5
done
"#;

/// Driver options of the run's private network.
///
/// `internal` alone drops what leaves the network, but the bridge still has an address
/// on the host, and traffic to that address is the host's own input, not forwarded: a
/// container could reach every service the host listens on. Without an address on the
/// bridge there is no host end to talk to; the containers still reach each other.
pub(super) fn network_options() -> HashMap<String, String> {
    HashMap::from([(
        "com.docker.network.bridge.inhibit_ipv4".to_string(),
        "true".to_string(),
    )])
}

impl DockerEngine {
    pub(super) async fn start_service_container(
        &self,
        spec: &ServiceSpec,
    ) -> Result<String, EngineError> {
        let network = self.target_network(&spec.run_id, &spec.labels).await?;
        let body = service_body(spec, &network);
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = timed(
            "service-create",
            &spec.name,
            self.docker.create_container(Some(opts), body),
        )
        .await
        .map_err(|e| EngineError::api("service container create", e))?;
        let started = timed(
            "service-start",
            &spec.name,
            self.docker.start_container(&created.id, None),
        )
        .await;
        match started {
            Ok(()) => Ok(created.id),
            Err(e) => {
                self.force_remove_container(&created.id).await;
                Err(EngineError::api("service container start", e))
            }
        }
    }

    pub(super) async fn run_ready_check(
        &self,
        probe: &ReadyProbe,
    ) -> Result<Readiness, EngineError> {
        ensure_base(&self.docker, &probe.build_log).await?;
        let network = self.target_network(&probe.run_id, &probe.labels).await?;
        let body = checker_body(probe, &network);
        let opts = CreateContainerOptionsBuilder::default()
            .name(&probe.name)
            .build();
        let id = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| EngineError::api("readiness check create", e))?
            .id;
        let checked = async {
            self.docker
                .start_container(&id, None)
                .await
                .map_err(|e| EngineError::api("readiness check start", e))?;
            let waited = tokio::time::timeout(
                probe.timeout + CHECKER_SLACK,
                crate::engine::Engine::wait(self, &id),
            )
            .await;
            let status = match waited {
                Ok(status) => status?,
                Err(_) => {
                    return Ok(Readiness::NotReady {
                        last_failure: "the readiness check itself did not finish".into(),
                    });
                }
            };
            let output = self.checker_output(&id).await;
            Ok(match status.code {
                0 => Readiness::Ready,
                _ => Readiness::NotReady {
                    last_failure: last_failure(&output),
                },
            })
        }
        .await;
        // Whatever happened, the checker goes at once: it must not wait for the run's end.
        self.force_remove_container(&id).await;
        checked
    }

    /// The checker's output, bounded.
    async fn checker_output(&self, id: &str) -> String {
        let mut logs = crate::engine::Engine::logs(self, id);
        let mut all = Vec::new();
        while let Some(Ok(chunk)) = logs.next().await {
            let (LogChunk::Stdout(b) | LogChunk::Stderr(b)) = chunk;
            all.extend_from_slice(&b);
            if all.len() > CHECKER_OUTPUT_LIMIT {
                all.drain(..all.len() - CHECKER_OUTPUT_LIMIT);
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// What the last failed attempt said, made printable and short.
fn last_failure(output: &str) -> String {
    let line = output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(NOT_READY))
        .unwrap_or("the readiness check printed nothing");
    crate::report::one_line(line, 300)
}

fn service_body(spec: &ServiceSpec, network: &str) -> ContainerCreateBody {
    let policy = &spec.policy;
    let tmpfs = std::iter::once((
        "/tmp".to_string(),
        format!("rw,nosuid,nodev,size={TMP_SIZE},mode=1777"),
    ))
    .chain(spec.tmpfs.iter().map(|path| {
        (
            path.clone(),
            format!(
                "rw,nosuid,nodev,size={},mode=1777",
                crate::config::SERVICE_TMPFS_SIZE
            ),
        )
    }))
    .chain(crate::engine::masks::mask_mounts(&spec.hidden))
    .collect();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user: Some(policy.user.clone()),
        labels: Some(spec.labels.clone()),
        hostname: Some(spec.alias.clone()),
        tty: Some(false),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        networking_config: Some(on_network(network, Some(vec![spec.alias.clone()]))),
        host_config: Some(HostConfig {
            tmpfs: Some(tmpfs),
            mounts: Some(vec![target_mount(
                &spec.target,
                spec.target_volume.as_deref(),
            )]),
            ..hardened(policy, network.to_string())
        }),
        ..Default::default()
    }
}

/// The checker: the hardened defaults, small limits, nothing mounted but a `/tmp`.
fn checker_body(probe: &ReadyProbe, network: &str) -> ContainerCreateBody {
    let policy = Policy {
        memory: 64 << 20,
        cpus: 0.5,
        pids: 64,
        ..Policy::default()
    };
    let (mode, path) = match &probe.check {
        ReadyCheck::Http { path } => ("http", path.as_str()),
        ReadyCheck::Tcp => ("tcp", "/"),
    };
    let args = [
        "bash",
        "-c",
        CHECKER,
        "phalanx-ready",
        &probe.host,
        &probe.port.to_string(),
        mode,
        path,
        &probe.timeout.as_secs().max(1).to_string(),
        &ATTEMPT_SECS.to_string(),
    ];
    ContainerCreateBody {
        image: Some(BASE_IMAGE.into()),
        entrypoint: Some(Vec::new()),
        cmd: Some(args.iter().map(|s| s.to_string()).collect()),
        user: Some(policy.user.clone()),
        labels: Some(probe.labels.clone()),
        working_dir: Some("/".into()),
        networking_config: Some(on_network(network, None)),
        host_config: Some(HostConfig {
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,nosuid,nodev,size=1m,mode=1777".to_string(),
            )])),
            ..hardened(&policy, network.to_string())
        }),
        ..Default::default()
    }
}

fn on_network(network: &str, aliases: Option<Vec<String>>) -> NetworkingConfig {
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.to_string(),
            EndpointSettings {
                aliases,
                ..Default::default()
            },
        )])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_failed_attempt_is_quoted() {
        let output = "phalanx-not-ready: attempt 1: bash: connect: Connection refused\n\
                      phalanx-not-ready: attempt 2: GET / answered: HTTP/1.0 503 \x1b[31mBusy\n";
        assert_eq!(
            last_failure(output),
            "attempt 2: GET / answered: HTTP/1.0 503 Busy"
        );
        assert_eq!(last_failure(""), "the readiness check printed nothing");
    }
}
