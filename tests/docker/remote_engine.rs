//! Phalanx against an engine on "another host": a second `dockerd` in its own network
//! namespace (reached over TCP through a veth pair) and its own mount namespace, with a
//! private `/tmp` holding its data root. It cannot see this machine's `/tmp`, where the
//! test's target lives, exactly like GitLab's `docker:dind` service or a remote build
//! host. Issue 12 has the recipe. Everything is torn down by [`RemoteEngine`]'s `Drop`,
//! also when an assertion fails.
//!
//! When the second daemon cannot be started here (not root, no `ip`, no netns permission),
//! the remote test says so and passes without checking anything.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};

use crate::runs::{self, Run};
use crate::support::{self, Workspace};

/// How long the daemon may take to answer: an unauthenticated TCP listener waits ~15 s on
/// purpose before it starts.
const START_LIMIT: Duration = Duration::from_secs(90);

/// A second engine, and everything made for it.
struct RemoteEngine {
    name: String,
    daemon: Option<Child>,
    /// `tcp://10.231.X.2:2375`.
    host: String,
    files: Vec<PathBuf>,
}

impl RemoteEngine {
    /// Starts the daemon; `Err` says why it cannot run on this machine.
    fn start() -> Result<RemoteEngine, String> {
        let pid = std::process::id();
        // Short (interface names have 15 bytes) and unique per test process.
        let name = format!("phx{}", pid % 100_000);
        let subnet = 100 + pid % 100;
        let mut engine = RemoteEngine {
            name: name.clone(),
            daemon: None,
            host: format!("tcp://10.231.{subnet}.2:2375"),
            files: Vec::new(),
        };
        let (host_if, remote_if) = (format!("{name}h"), format!("{name}r"));
        let netns = format!("/var/run/netns/{name}");
        sh(&["ip", "netns", "add", &name])?;
        sh(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &remote_if,
        ])?;
        sh(&["ip", "link", "set", &remote_if, "netns", &name])?;
        let host_addr = format!("10.231.{subnet}.1/30");
        sh(&["ip", "addr", "add", &host_addr, "dev", &host_if])?;
        sh(&["ip", "link", "set", &host_if, "up"])?;
        let inside = format!(
            "ip addr add 10.231.{subnet}.2/30 dev {remote_if} && ip link set {remote_if} up \
             && ip link set lo up"
        );
        sh(&["nsenter", &format!("--net={netns}"), "sh", "-c", &inside])?;

        // The host's daemon.json sets a data root: this daemon needs a config of its own.
        let config = PathBuf::from(format!("/run/{name}.json"));
        let (exec_root, pidfile, log) = (
            PathBuf::from(format!("/run/{name}-exec")),
            PathBuf::from(format!("/run/{name}.pid")),
            PathBuf::from(format!("/run/{name}.log")),
        );
        engine.files = vec![
            config.clone(),
            exec_root.clone(),
            pidfile.clone(),
            log.clone(),
        ];
        std::fs::write(
            &config,
            r#"{"data-root": "/tmp/phx-remote-data", "storage-driver": "fuse-overlayfs"}"#,
        )
        .map_err(|e| e.to_string())?;
        let dockerd = format!(
            "mount -t tmpfs none /tmp && exec dockerd --config-file {} --exec-root {} -H {} \
             --pidfile {} --iptables=false --bridge=none",
            config.display(),
            exec_root.display(),
            engine.host,
            pidfile.display()
        );
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        // `nsenter --net`, not `ip netns exec`, which remounts /sys and hides the cgroups.
        let daemon = Command::new("nsenter")
            .args([&format!("--net={netns}"), "unshare", "-m", "--propagation"])
            .args(["private", "sh", "-c", &dockerd])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("nsenter: {e}"))?;
        engine.daemon = Some(daemon);
        engine.wait_until_up(&log)?;
        Ok(engine)
    }

    fn wait_until_up(&mut self, log: &PathBuf) -> Result<(), String> {
        let clock = Instant::now();
        while clock.elapsed() < START_LIMIT {
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(Child::try_wait) {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(format!("dockerd exited ({status}): {tail}"));
            }
            if self
                .docker_cli(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!("dockerd did not answer within {START_LIMIT:?}"))
    }

    /// The docker CLI against this engine.
    fn docker_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// Copies `image` from the local engine (the remote one has no route out).
    fn seed(&self, image: &str) {
        let script = format!(
            "docker -H unix:///var/run/docker.sock save {image} | DOCKER_HOST={} docker load",
            self.host
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(
            out.status.success(),
            "seeding {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn client(&self) -> Docker {
        let addr = self.host.trim_start_matches("tcp://");
        Docker::connect_with_http(addr, 60, bollard::API_DEFAULT_VERSION)
            .unwrap()
            .negotiate_version()
            .await
            .unwrap()
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let pid = daemon.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let clock = Instant::now();
            while clock.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = daemon.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        // The data root was in the daemon's private tmpfs: it went with its namespace.
        let _ = sh(&["ip", "netns", "del", &self.name]);
        let _ = sh(&["ip", "link", "del", &format!("{}h", self.name)]);
        for path in &self.files {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

async fn labelled_on(docker: &Docker, run_id: &str) -> (Vec<String>, Vec<String>) {
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("phalanx.run={run_id}")],
    )]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker.list_containers(Some(opts)).await.unwrap();
    let opts = ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let volumes = docker.list_volumes(Some(opts)).await.unwrap();
    (
        containers.into_iter().filter_map(|c| c.id).collect(),
        volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect(),
    )
}

/// A target with a nested file, and two links out of it to a file only this host has.
fn workspace(image: &str) -> Workspace {
    let ws = Workspace::new();
    ws.target_file("hello.txt", "hello from the target\n");
    ws.target_file("src/deep/code.py", "print('deep')\n");
    let secret = ws.root().join("host-secret.txt");
    std::fs::write(&secret, "HOST-ONLY-SECRET\n").unwrap();
    let target = ws.target_dir();
    std::os::unix::fs::symlink(&secret, target.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("../host-secret.txt", target.join("relative-link")).unwrap();
    ws.suite(
        "reader",
        &runs::probe_suite(
            image,
            &[
                "cat",
                "/target/hello.txt",
                "--",
                "cat",
                "/target/src/deep/code.py",
                "--",
                "write",
                "/results/out.txt",
                "read it",
            ],
            "",
        ),
    );
    for (name, link) in [("absolute", "absolute-link"), ("relative", "relative-link")] {
        ws.suite(
            name,
            &runs::probe_suite(image, &["cat", &format!("/target/{link}")], ""),
        );
    }
    ws
}

fn run_on(ws: &Workspace, docker_host: Option<&str>) -> Run {
    let mut cmd = ws.phalanx([
        "run",
        "--progress",
        "plain",
        "--target",
        "target",
        "--jobs",
        "2",
    ]);
    cmd.env("PHALANX_TIMINGS", "1");
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    runs::finished(ws, cmd.output().expect("phalanx runs"))
}

#[tokio::test]
async fn a_remote_engine_scans_a_copy_of_the_target() {
    let image = support::probe_image().await;
    let remote = match RemoteEngine::start() {
        Ok(remote) => remote,
        Err(why) => {
            eprintln!("SKIPPED: cannot start a second dockerd on this machine: {why}");
            return;
        }
    };
    remote.seed(&image);
    let ws = workspace(&image);
    let run = run_on(&ws, Some(&remote.host));

    let target = &run.json["target"];
    assert_eq!(target["mode"], "copy", "{}", run.stderr);
    assert_eq!(target["probe"], "absent", "{target}");
    assert_eq!(target["copy"]["files"], 2, "{target}");
    assert!(
        run.stderr.contains("phalanx: target: copy"),
        "{}",
        run.stderr
    );

    assert_eq!(run.outcome("reader"), "passed", "{}", run.reason("reader"));
    let log = runs::read(&ws.reports_dir().join("logs/reader.log"));
    assert!(
        log.contains("hello from the target") && log.contains("print('deep')"),
        "{log}"
    );
    let out = runs::read(&ws.reports_dir().join("results/reader/out.txt"));
    assert_eq!(out, "read it");
    // The remote engine's volumes are not on this host: results came through the API.
    assert!(
        run.stderr.contains("phalanx-timing download"),
        "results were not read through the archive API:\n{}",
        run.stderr
    );

    for name in ["absolute", "relative"] {
        assert_ne!(run.outcome(name), "passed", "{name} link read something");
        let log = runs::read(&ws.reports_dir().join(format!("logs/{name}.log")));
        assert!(!log.contains("HOST-ONLY-SECRET"), "{name}: {log}");
        assert!(log.contains("No such file"), "{name}: {log}");
    }

    let (containers, volumes) = labelled_on(&remote.client().await, run.run_id()).await;
    assert_eq!(
        (containers, volumes),
        (vec![], vec![]),
        "left on the remote engine"
    );
    runs::assert_nothing_left(run.run_id()).await;
}

#[tokio::test]
async fn the_local_engine_binds_the_target_without_copying() {
    let image = support::probe_image().await;
    let ws = workspace(&image);
    let run = run_on(&ws, None);
    let target = &run.json["target"];
    assert_eq!(target["mode"], "bind", "{target}");
    assert_eq!(target["probe"], "same", "{target}");
    assert!(target.get("copy").is_none(), "{target}");
    assert_eq!(run.outcome("reader"), "passed", "{}", run.reason("reader"));
    let log = runs::read(&ws.reports_dir().join("logs/reader.log"));
    assert!(log.contains("hello from the target"), "{log}");
    runs::assert_nothing_left(run.run_id()).await;
}
