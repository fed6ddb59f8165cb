//! Running `phalanx run` from the reliability and security tests (`faults_*`, `hostile_*`):
//! the finished run's reports, suite files for the probe, and what must be left behind.
//! Use with `mod support; mod runs;`.

#![allow(dead_code)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, Workspace};

/// One finished `phalanx run`.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
}

impl Run {
    pub fn suite(&self, name: &str) -> &Value {
        self.json["suites"]
            .as_array()
            .expect("suites array")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no suite {name} in run.json:\n{}", self.json))
    }

    pub fn outcome(&self, name: &str) -> &str {
        self.suite(name)["outcome"].as_str().unwrap()
    }

    pub fn reason(&self, name: &str) -> &str {
        self.suite(name)["reason"].as_str().unwrap_or("")
    }

    pub fn run_id(&self) -> &str {
        self.json["run_id"].as_str().unwrap()
    }
}

/// Reads the reports of a `phalanx run` that has exited; run.json must be at its default place.
pub fn finished(ws: &Workspace, output: Output) -> Run {
    finished_in(&ws.reports_dir(), output)
}

pub fn finished_in(reports: &Path, output: Output) -> Run {
    let run_json = reports.join("run.json");
    let text = std::fs::read_to_string(&run_json).unwrap_or_else(|e| {
        panic!(
            "no {}: {e}\nstderr:\n{}",
            run_json.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        json: serde_json::from_str(&text).expect("run.json is JSON"),
    }
}

/// Runs `phalanx run --progress plain --target target ARGS` and checks nothing is left.
pub async fn run(ws: &Workspace, args: &[&str]) -> Run {
    let mut all = vec!["run", "--progress", "plain", "--target", "target"];
    all.extend_from_slice(args);
    let output = ws.phalanx(&all).output().expect("phalanx runs");
    let run = finished(ws, output);
    assert_nothing_left(run.run_id()).await;
    run
}

pub async fn assert_nothing_left(run_id: &str) {
    assert_eq!(
        support::containers_with_label(run_id).await,
        Vec::<String>::new(),
        "containers left"
    );
    assert_eq!(
        support::volumes_with_label(run_id).await,
        Vec::<String>::new(),
        "volumes left"
    );
    assert_eq!(
        support::networks_with_label(run_id).await,
        Vec::<String>::new(),
        "networks left"
    );
}

/// A suite file running the probe with `steps` (the probe's `--`-separated script).
pub fn probe_suite(image: &str, steps: &[&str], extra: &str) -> String {
    let command: Vec<String> = std::iter::once("/probe")
        .chain(steps.iter().copied())
        .map(|s| format!("{s:?}"))
        .collect();
    format!(
        "image = {image:?}\ncommand = [{}]\n{extra}\n",
        command.join(", ")
    )
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Polls the engine until a container labelled `phalanx.suite=<suite>` is running; returns
/// its id.
pub async fn wait_until_running(suite: &str) -> String {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let docker = support::docker().await;
    let filters = std::collections::HashMap::from([
        ("label", vec![format!("phalanx.suite={suite}")]),
        ("status", vec!["running".to_string()]),
    ]);
    for _ in 0..1200 {
        let options = ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = docker.list_containers(Some(options)).await.unwrap();
        if let Some(id) = list.into_iter().find_map(|c| c.id) {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the suite {suite} never started");
}

/// Runs `phalanx run --progress plain --target target`, sends it SIGINT once `suite` is
/// running, and returns the finished run after checking that nothing is left.
pub async fn interrupted_while(ws: &Workspace, suite: &str) -> Run {
    let child = ws
        .phalanx(["run", "--progress", "plain", "--target", "target"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_running(suite).await;
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let run = finished(ws, output);
    assert_nothing_left(run.run_id()).await;
    run
}

/// A digest of everything under `dir` (names, types, modes, sizes, times, contents), except
/// the subtrees named in `skip` (relative paths), to show that nothing changed it.
pub fn tree_digest(dir: &Path, skip: &[&str]) -> String {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).unwrap();
            if skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mut line = format!(
                "{} mode={:o} uid={} size={} mtime={}.{}",
                rel.display(),
                meta.mode(),
                meta.uid(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec()
            );
            if meta.is_file() {
                line.push_str(&format!(
                    " content={:x}",
                    fnv(&std::fs::read(&path).unwrap())
                ));
            }
            if meta.file_type().is_symlink() {
                let to = std::fs::read_link(&path).unwrap();
                line.push_str(&format!(" -> {}", to.display()));
            }
            out.push(line);
            if meta.is_dir() {
                walk(root, &path, skip, out);
            }
        }
    }
    let mut lines = Vec::new();
    walk(dir, dir, skip, &mut lines);
    lines.join("\n")
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Peak resident memory (VmHWM, bytes) of a running process, polled until it exits:
/// the kernel keeps the high-water mark, so the last reading before exit is the peak.
pub fn watch_peak_rss(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kb) = text.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        {
            peak = peak.max(kb * 1024);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
