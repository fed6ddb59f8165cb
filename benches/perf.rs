//! Phalanx's performance benchmark: `scripts/bench` (or `cargo bench --bench perf`).
//!
//! Measured in one run, side by side on this machine and engine, and printed as ratios
//! because shared machines are noisy:
//!
//! - **overhead**: N trivial suites (the probe image, `exit 0`) through `phalanx run -j J`,
//!   against `xargs -P J docker run --rm` with the same policy flags, and against a minimal
//!   bollard client doing only create → start → wait → remove with J tasks (the floor the
//!   engine allows); also that client plus the copy of `/results` that Phalanx must make.
//!   Each contender runs R times, in rotating order; medians are compared.
//! - **makespan**: 16 suites sleeping 1–12 s, named so that plan order starts the longest
//!   last, at `-j 4`: a first run without history and a second run with it, against the
//!   lower bound `max(longest, total / J)`.
//! - **memory**: peak RSS of `phalanx run` with M queued trivial suites (GNU time).
//! - **profile**: where one `phalanx run` of N suites spends its engine calls
//!   (`PHALANX_TIMINGS`).
//! - **store** (no Docker needed): the run store's cost on the big run of
//!   `tests/offline/findings_large.rs` (a generated 50 MB SARIF log, about 75,000 findings,
//!   read through the real reader): the report writers (junit.xml, results.sarif,
//!   run.json) against the same plus opening the store, recording the run and pruning
//!   (target: at most 25 % more); `phalanx diff` of two such runs (target ≤ 1 s);
//!   `phalanx runs` on a store of 10,000 runs (target ≤ 100 ms); bytes on disk per finding.
//! - **server**: `phalanx serve`: `GET /api/v1/runs` p50/p99 on a store of 10,000 runs
//!   (target p99 ≤ 20 ms); 200 subscribers on `/api/v1/events` during a run of 100 trivial
//!   suites, each getting every event (the run's wall time against the same run alone,
//!   target ≤ 1.05; the p99 delay from event to subscriber); the server's peak RSS idle
//!   and after that load (target ≤ 64 MB). See `benches/perf/server.rs`.
//!
//! Sizes come from environment variables (see [`Config`]); `--quick` or `BENCH_QUICK=1`
//! picks sizes that finish in well under a minute, for CI smoke runs. Everything started
//! here is labelled `phalanx.run=<bench id>` or belongs to a Phalanx run, and removed.

#[path = "../tests/findings_common/mod.rs"]
mod findings_common;
#[path = "perf/server.rs"]
mod server;
#[path = "perf/store.rs"]
mod store;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use phalanx::engine::RUN_LABEL;
use support::{Workspace, hardened};

type Result<T> = std::result::Result<T, String>;

/// Sizes, from `BENCH_*` environment variables.
#[derive(Debug, Clone)]
struct Config {
    /// `BENCH_SUITES`: trivial suites in the overhead comparison (50; quick 8).
    suites: usize,
    /// `BENCH_JOBS`: concurrency of every overhead contender (8; quick 4).
    jobs: usize,
    /// `BENCH_REPS`: repetitions of each overhead contender (5; quick 1).
    reps: usize,
    /// `BENCH_MAKESPAN_SCALE`: factor on the 1–12 s sleeps (1.0; quick 0.15).
    makespan_scale: f64,
    /// `BENCH_MAKESPAN_JOBS`: slots for the makespan runs (4).
    makespan_jobs: usize,
    /// `BENCH_MAKESPAN_REPS`: pairs of first and second runs (3; quick 1).
    makespan_reps: usize,
    /// `BENCH_MEM_SUITES`: queued suites in the memory run (500; quick 40).
    mem_suites: usize,
    /// `BENCH_STORE_MB`: size of the generated SARIF log of the store section (50; quick 5).
    store_mib: u64,
    /// `BENCH_STORE_RUNS`: runs in the store `phalanx runs` lists (10000; quick 1000).
    store_runs: usize,
    /// `BENCH_STORE_REPS`: repetitions of each store measurement (3; quick 1).
    store_reps: usize,
    /// `BENCH_SERVER_RUNS`: runs in the store `GET /api/v1/runs` pages (10000; quick 1000).
    server_runs: usize,
    /// `BENCH_SERVER_SUBSCRIBERS`: clients on `/api/v1/events` during a run (200; quick 20).
    server_subscribers: usize,
    /// `BENCH_SERVER_SUITES`: trivial suites in that run (100; quick 10).
    server_suites: usize,
    /// `BENCH_SERVER_REPS`: runs alone and followed, alternating (2; quick 1).
    server_reps: usize,
    /// `BENCH_ONLY`: comma-separated sections to run (overhead,makespan,memory,profile,store,server).
    only: Vec<String>,
    /// `BENCH_BASELINE`: another `phalanx` binary to add to the overhead comparison.
    baseline: Option<std::path::PathBuf>,
}

impl Config {
    fn from_env(quick: bool) -> Config {
        let pick = |full, small| if quick { small } else { full };
        Config {
            suites: env_or("BENCH_SUITES", pick(50, 8)),
            jobs: env_or("BENCH_JOBS", pick(8, 4)),
            reps: env_or("BENCH_REPS", pick(5, 1)).max(1),
            makespan_scale: env_or("BENCH_MAKESPAN_SCALE", if quick { 0.15 } else { 1.0 }),
            makespan_jobs: env_or("BENCH_MAKESPAN_JOBS", 4),
            makespan_reps: env_or("BENCH_MAKESPAN_REPS", pick(3, 1)).max(1),
            mem_suites: env_or("BENCH_MEM_SUITES", pick(500, 40)),
            store_mib: env_or("BENCH_STORE_MB", if quick { 5 } else { 50 }),
            store_runs: env_or("BENCH_STORE_RUNS", pick(10_000, 1_000)),
            store_reps: env_or("BENCH_STORE_REPS", pick(3, 1)).max(1),
            server_runs: env_or("BENCH_SERVER_RUNS", pick(10_000, 1_000)),
            server_subscribers: env_or("BENCH_SERVER_SUBSCRIBERS", pick(200, 20)),
            server_suites: env_or("BENCH_SERVER_SUITES", pick(100, 10)),
            server_reps: env_or("BENCH_SERVER_REPS", pick(2, 1)).max(1),
            only: std::env::var("BENCH_ONLY")
                .unwrap_or_else(|_| SECTIONS.join(","))
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            baseline: std::env::var_os("BENCH_BASELINE").map(Into::into),
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section)
    }

    /// Whether a selected section needs the Docker engine (all but `store` do).
    fn needs_docker(&self) -> bool {
        self.only.iter().any(|s| s != "store")
    }
}

const SECTIONS: [&str; 6] = [
    "overhead", "makespan", "memory", "profile", "store", "server",
];

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// The mixed workload: seconds of sleep per suite, in plan (name) order: shortest first,
/// so first-come-first-served starts the longest last.
const MIXED: [f64; 16] = [
    1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0, 7.0, 8.0, 10.0, 12.0,
];

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let config = Config::from_env(quick);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = runtime.block_on(bench(config)) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

async fn bench(config: Config) -> Result<()> {
    if let Some(unknown) = config.only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        return Err(format!(
            "BENCH_ONLY: there is no section {unknown:?} (sections: {})",
            SECTIONS.join(",")
        ));
    }
    let outcome = if config.needs_docker() {
        engine_sections(&config).await
    } else {
        print_machine(&config, "no engine needed");
        Ok(())
    };
    let outcome = outcome.and_then(|()| {
        if config.runs("store") {
            store::store(&config)
        } else {
            Ok(())
        }
    });
    println!("\nload average at the end: {}", load_average());
    outcome
}

/// The sections that run containers, and the cleanup of what they labelled.
async fn engine_sections(config: &Config) -> Result<()> {
    let docker = support::docker().await;
    let image = support::probe_image().await;
    let bench_id = support::unique("bench");
    print_machine(config, &describe_engine(&docker, &image).await);

    let outcome = async {
        if config.runs("overhead") {
            overhead(&docker, &image, config, &bench_id).await?;
        }
        if config.runs("makespan") {
            makespan(&image, config).await?;
        }
        if config.runs("memory") {
            memory(&image, config).await?;
        }
        if config.runs("profile") {
            profile(&image, config).await?;
        }
        if config.runs("server") {
            server::server(&image, config).await?;
        }
        Ok(())
    }
    .await;
    for contender in ["xargs", "minimal", "minimal-copy"] {
        support::remove_labelled(&format!("{bench_id}-{contender}")).await;
    }
    outcome
}

async fn describe_engine(docker: &Docker, image: &str) -> String {
    let version = docker.version().await.ok();
    let info = docker.info().await.ok();
    let engine = version
        .as_ref()
        .map(|v| {
            format!(
                "Docker {} (API {})",
                v.version.as_deref().unwrap_or("?"),
                v.api_version.as_deref().unwrap_or("?")
            )
        })
        .unwrap_or_else(|| "Docker ?".into());
    let driver = info
        .as_ref()
        .and_then(|i| i.driver.clone())
        .unwrap_or_else(|| "?".into());
    format!("{engine}, storage driver {driver}; image {image}")
}

fn print_machine(config: &Config, engine: &str) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    println!("Phalanx benchmark");
    println!("machine: {cpus} CPUs, kernel {kernel}; {engine}");
    println!("load average at the start: {}", load_average());
    println!(
        "sizes: {} suites at -j {} x {} repetitions; makespan scale {} at -j {} x {}; memory {} suites; store {} MiB log, {} runs x {}",
        config.suites,
        config.jobs,
        config.reps,
        config.makespan_scale,
        config.makespan_jobs,
        config.makespan_reps,
        config.mem_suites,
        config.store_mib,
        config.store_runs,
        config.store_reps
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------
// Overhead

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Contender {
    Xargs,
    Minimal,
    MinimalCopy,
    Phalanx,
    /// Another `phalanx` binary (`BENCH_BASELINE`), e.g. one built from an older commit.
    Baseline,
}

impl Contender {
    fn all(config: &Config) -> Vec<Contender> {
        let mut all = vec![
            Contender::Xargs,
            Contender::Minimal,
            Contender::MinimalCopy,
            Contender::Phalanx,
        ];
        if config.baseline.is_some() {
            all.push(Contender::Baseline);
        }
        all
    }

    fn label(self, jobs: usize) -> String {
        match self {
            Contender::Xargs => format!("xargs -P {jobs} docker run --rm"),
            Contender::Minimal => "minimal client (create/start/wait/remove)".into(),
            Contender::MinimalCopy => "minimal client + copy of /results".into(),
            Contender::Phalanx => format!("phalanx run -j {jobs}"),
            Contender::Baseline => format!("baseline phalanx run -j {jobs}"),
        }
    }
}

async fn overhead(docker: &Docker, image: &str, config: &Config, bench_id: &str) -> Result<()> {
    let (n, jobs) = (config.suites, config.jobs);
    let ws = Workspace::new();
    for i in 0..n {
        ws.suite(
            &format!("t{i:04}"),
            &format!("image = {image:?}\ncommand = [\"/probe\", \"exit\", \"0\"]\n"),
        );
    }
    let target = ws.target_dir();
    let run = |contender: Contender, count: usize| {
        let (ws, target) = (&ws, &target);
        async move {
            match contender {
                Contender::Xargs => {
                    let label = format!("{bench_id}-xargs");
                    xargs_docker_run(image, count, jobs, target, &label).await
                }
                Contender::Minimal | Contender::MinimalCopy => {
                    let copy = contender == Contender::MinimalCopy;
                    let label = format!(
                        "{bench_id}-{}",
                        if copy { "minimal-copy" } else { "minimal" }
                    );
                    minimal_client(docker, image, count, jobs, target, &label, copy).await
                }
                Contender::Phalanx | Contender::Baseline => {
                    let suites: Vec<String> = if count == n {
                        Vec::new()
                    } else {
                        (0..count)
                            .flat_map(|i| ["--suite".to_string(), format!("t{i:04}")])
                            .collect()
                    };
                    let program = match contender {
                        Contender::Baseline => config.baseline.clone(),
                        _ => None,
                    };
                    phalanx_run_with(ws, jobs, &suites, |command| {
                        if let Some(program) = program {
                            replace_program(command, |_| std::process::Command::new(&program));
                        }
                    })
                    .await
                    .map(|r| r.wall)
                }
            }
        }
    };

    println!("\n== overhead: {n} trivial suites, {jobs} at a time ==");
    // Warm up every path (image layers, engine caches, the binaries) untimed.
    let contenders = Contender::all(config);
    for &contender in &contenders {
        run(contender, jobs.min(n)).await?;
    }
    let mut times: BTreeMap<Contender, Vec<f64>> = BTreeMap::new();
    for rep in 0..config.reps {
        for k in 0..contenders.len() {
            let contender = contenders[(k + rep) % contenders.len()];
            let took = run(contender, n).await?;
            times.entry(contender).or_default().push(took.as_secs_f64());
        }
    }
    let median_of = |c: Contender| median(&times[&c]);
    let best_of = |c: Contender| times[&c].iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "  {:<44} {:>9} {:>9} {:>10}   runs (s)",
        "contender", "median", "best", "per suite"
    );
    for &contender in &contenders {
        let runs: Vec<String> = times[&contender]
            .iter()
            .map(|t| format!("{t:.2}"))
            .collect();
        let m = median_of(contender);
        println!(
            "  {:<44} {:>7.2} s {:>7.2} s {:>7.0} ms   {}",
            contender.label(jobs),
            m,
            best_of(contender),
            m * 1000.0 / n as f64,
            runs.join(" ")
        );
    }
    println!("  ratios (of medians; of best runs, the least disturbed by other load):");
    let mut ratios = vec![
        ("phalanx / xargs docker run", Contender::Xargs, Some(1.0)),
        ("phalanx / minimal client", Contender::Minimal, Some(1.10)),
        (
            "phalanx / minimal client + copy",
            Contender::MinimalCopy,
            None,
        ),
    ];
    if config.baseline.is_some() {
        ratios.push(("phalanx / baseline phalanx", Contender::Baseline, None));
    }
    for (what, other, target) in ratios {
        ratio_line(
            what,
            median_of(Contender::Phalanx) / median_of(other),
            best_of(Contender::Phalanx) / best_of(other),
            target,
        );
    }
    Ok(())
}

fn ratio_line(what: &str, of_medians: f64, of_best: f64, target: Option<f64>) {
    let verdict = match target {
        Some(t) if of_medians <= t => format!("   target <= {t:.2}: met"),
        Some(t) if of_best <= t => format!("   target <= {t:.2}: met by the best runs only"),
        Some(t) => format!("   target <= {t:.2}: NOT met"),
        None => String::new(),
    };
    println!("    {what:<38} {of_medians:>6.3} {of_best:>6.3}{verdict}");
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The same policy Phalanx applies by default (DESIGN.md), as `docker run` flags.
fn policy_flags(target: &Path, label: &str) -> Vec<String> {
    let mut flags = vec![
        "--rm".into(),
        "--label".into(),
        format!("{RUN_LABEL}={label}"),
    ];
    let config = policy_host_config(target, None);
    flags.extend(hardened::docker_run_flags(&config, &hardened::user()));
    flags
}

/// The default policy (`tests/support/hardened.rs`) with the mounts every suite gets: the
/// target read-only and a fresh volume at `/results`, labelled when `volume_labels` is given.
fn policy_host_config(target: &Path, volume_labels: Option<HashMap<String, String>>) -> HostConfig {
    HostConfig {
        mounts: Some(vec![
            Mount {
                target: Some("/target".into()),
                source: Some(target.display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            },
            Mount {
                target: Some("/results".into()),
                typ: Some(MountType::VOLUME),
                volume_options: volume_labels.map(|labels| MountVolumeOptions {
                    labels: Some(labels),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..hardened::host_config()
    }
}

async fn xargs_docker_run(
    image: &str,
    n: usize,
    jobs: usize,
    target: &Path,
    label: &str,
) -> Result<Duration> {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new("xargs");
    command
        .args(["-P", &jobs.to_string(), "-n", "1", "docker", "run"])
        .args(policy_flags(target, label))
        .args([image, "/probe", "exit"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let clock = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("xargs: {e}"))?;
    // Each line is the last argument of one `docker run`: `/probe exit 0`.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all("0\n".repeat(n).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    drop(stdin);
    let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
    let took = clock.elapsed();
    if !output.status.success() {
        return Err(format!(
            "xargs docker run failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(took)
}

/// The body Phalanx would send, minus what only Phalanx needs (its log settings).
fn minimal_body(image: &str, target: &Path, label: &str) -> ContainerCreateBody {
    let labels = HashMap::from([(RUN_LABEL.to_string(), label.to_string())]);
    ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(vec!["/probe".into(), "exit".into(), "0".into()]),
        user: Some(hardened::user()),
        labels: Some(labels.clone()),
        tty: Some(false),
        network_disabled: Some(true),
        host_config: Some(policy_host_config(target, Some(labels))),
        ..Default::default()
    }
}

async fn minimal_client(
    docker: &Docker,
    image: &str,
    n: usize,
    jobs: usize,
    target: &Path,
    label: &str,
    copy: bool,
) -> Result<Duration> {
    let body = minimal_body(image, target, label);
    let next = Arc::new(AtomicUsize::new(0));
    let clock = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let (docker, body, next) = (docker.clone(), body.clone(), next.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                one_container(&docker, body.clone(), copy).await?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(clock.elapsed())
}

async fn one_container(docker: &Docker, body: ContainerCreateBody, copy: bool) -> Result<()> {
    let api = |what: &'static str| move |e: DockerError| format!("{what}: {e}");
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .map_err(api("create"))?
        .id;
    docker
        .start_container(&id, None)
        .await
        .map_err(api("start"))?;
    let opts = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    match docker.wait_container(&id, Some(opts)).next().await {
        Some(Ok(_)) | Some(Err(DockerError::DockerContainerWaitError { .. })) => {}
        Some(Err(e)) => return Err(format!("wait: {e}")),
        None => return Err("wait: no answer".into()),
    }
    if copy {
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path("/results")
            .build();
        let mut tar = docker.download_from_container(&id, Some(opts));
        while let Some(chunk) = tar.next().await {
            chunk.map_err(api("download"))?;
        }
    }
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    docker
        .remove_container(&id, Some(opts))
        .await
        .map_err(api("remove"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Phalanx runs

struct PhalanxRun {
    wall: Duration,
    json: serde_json::Value,
    stderr: String,
}

async fn phalanx_run(ws: &Workspace, jobs: usize, extra: &[String]) -> Result<PhalanxRun> {
    phalanx_run_with(ws, jobs, extra, |_| {}).await
}

async fn phalanx_run_with(
    ws: &Workspace,
    jobs: usize,
    extra: &[String],
    adjust: impl FnOnce(&mut std::process::Command),
) -> Result<PhalanxRun> {
    let mut args: Vec<String> = [
        "run",
        "--progress",
        "none",
        "--target",
        "target",
        "-j",
        &jobs.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend_from_slice(extra);
    let mut command = ws.phalanx(&args);
    adjust(&mut command);
    let mut command = tokio::process::Command::from(command);
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let clock = Instant::now();
    let output = command
        .output()
        .await
        .map_err(|e| format!("phalanx: {e}"))?;
    let wall = clock.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.code() != Some(0) {
        return Err(format!("phalanx run failed ({}):\n{stderr}", output.status));
    }
    let text = std::fs::read_to_string(ws.reports_dir().join("run.json"))
        .map_err(|e| format!("run.json: {e}"))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let run_id = json["run_id"].as_str().unwrap_or_default();
    let left = support::containers_with_label(run_id).await;
    if !left.is_empty() {
        return Err(format!("phalanx left {} container(s) behind", left.len()));
    }
    Ok(PhalanxRun { wall, json, stderr })
}

/// Replaces `command`'s program by what `make` builds from it (given the old program), with
/// the same arguments, working directory and environment.
fn replace_program(
    command: &mut std::process::Command,
    make: impl FnOnce(&std::ffi::OsStr) -> std::process::Command,
) {
    let mut new = make(command.get_program());
    new.args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        new.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => new.env(key, value),
            None => new.env_remove(key),
        };
    }
    *command = new;
}

// ---------------------------------------------------------------------------------------
// Makespan

async fn makespan(image: &str, config: &Config) -> Result<()> {
    let jobs = config.makespan_jobs;
    let secs: Vec<f64> = MIXED.iter().map(|s| s * config.makespan_scale).collect();
    let total: f64 = secs.iter().sum();
    let longest = secs.iter().copied().fold(0.0, f64::max);
    let bound = longest.max(total / jobs as f64);
    let ws = Workspace::new();
    for (i, s) in secs.iter().enumerate() {
        ws.suite(
            &format!("mk{:02}-{:.2}s", i + 1, s),
            &format!("image = {image:?}\ncommand = [\"/probe\", \"sleep\", \"{s:.3}\"]\n"),
        );
    }
    println!(
        "\n== makespan: {} suites sleeping {:.2}-{:.2} s (total {:.2} s), -j {jobs} ==",
        secs.len(),
        secs[0],
        longest,
        total
    );
    println!("  lower bound max(longest, total / J) = {bound:.2} s");
    // Pairs of runs: the first with a fresh run store (no durations: plan order, FIFO),
    // the second with the durations the first recorded.
    let (mut fifo, mut lpt, mut against_measured) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..config.makespan_reps {
        let store = ws.root().join(format!("store-{rep}.db"));
        let args = ["--store".to_string(), store.display().to_string()];
        let first = phalanx_run(&ws, jobs, &args).await?;
        let second = phalanx_run(&ws, jobs, &args).await?;
        fifo.push(first.wall.as_secs_f64());
        lpt.push(second.wall.as_secs_f64());
        // The same bound from the suites' measured durations (sleep plus each suite's own
        // container overhead) separates the ordering from the per-suite overhead.
        let durations: Vec<f64> = second.json["suites"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["duration"].as_f64()).collect())
            .unwrap_or_default();
        let measured_total: f64 = durations.iter().sum();
        let measured_longest = durations.iter().copied().fold(0.0, f64::max);
        let measured_bound = measured_longest.max(measured_total / jobs as f64);
        against_measured.push(second.wall.as_secs_f64() / measured_bound);
    }
    for (what, walls, target) in [
        ("first run, no history (plan order: FIFO)", &fifo, None),
        ("second run, with history (longest first)", &lpt, Some(1.10)),
    ] {
        let wall = median(walls);
        let ratio = wall / bound;
        let verdict = match target {
            Some(t) if ratio <= t => format!("   target <= {t:.2}: met"),
            Some(t) => format!("   target <= {t:.2}: NOT met"),
            None => String::new(),
        };
        let runs: Vec<String> = walls.iter().map(|w| format!("{w:.2}")).collect();
        println!(
            "  {what:<44} {wall:>7.2} s  {ratio:.3} x bound{verdict}   runs: {}",
            runs.join(" ")
        );
    }
    println!(
        "  second runs against the bound of their own measured durations: {:.3} x (median)",
        median(&against_measured)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Memory

async fn memory(image: &str, config: &Config) -> Result<()> {
    let n = config.mem_suites;
    let jobs = config.jobs;
    println!("\n== memory: {n} queued trivial suites, -j {jobs} ==");
    let gnu_time = Path::new("/usr/bin/time");
    if !gnu_time.exists() {
        println!("  skipped: /usr/bin/time (GNU time) is not installed");
        return Ok(());
    }
    let ws = Workspace::new();
    for i in 0..n {
        ws.suite(
            &format!("m{i:05}"),
            &format!("image = {image:?}\ncommand = [\"/probe\", \"exit\", \"0\"]\n"),
        );
    }
    let rss_file = ws.root().join("rss.txt");
    let rss_path = rss_file.clone();
    let run = phalanx_run_with(&ws, jobs, &[], move |command| {
        // Run phalanx under GNU time, which writes its peak RSS (KiB) to rss.txt.
        replace_program(command, |program| {
            let mut time = std::process::Command::new("/usr/bin/time");
            time.arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(&rss_path)
                .arg(program);
            time
        });
    })
    .await?;
    let kib: f64 = std::fs::read_to_string(&rss_file)
        .map_err(|e| format!("reading the peak RSS: {e}"))?
        .trim()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("GNU time wrote no peak RSS")?;
    let mib = kib / 1024.0;
    let verdict = if mib <= 64.0 { "met" } else { "NOT met" };
    println!(
        "  peak RSS {mib:.1} MiB over the whole run ({:.1} s, {} suites reported)   target <= 64 MiB: {verdict}",
        run.wall.as_secs_f64(),
        run.json["suites"].as_array().map_or(0, |a| a.len())
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Profile

async fn profile(image: &str, config: &Config) -> Result<()> {
    let (n, jobs) = (config.suites, config.jobs);
    let ws = Workspace::new();
    for i in 0..n {
        ws.suite(
            &format!("p{i:04}"),
            &format!("image = {image:?}\ncommand = [\"/probe\", \"exit\", \"0\"]\n"),
        );
    }
    let run = phalanx_run_with(&ws, jobs, &[], |c| {
        c.env("PHALANX_TIMINGS", "1");
    })
    .await?;
    println!(
        "\n== profile: engine calls of one phalanx run, {n} suites, -j {jobs} ({:.2} s) ==",
        run.wall.as_secs_f64()
    );
    println!("  (latency under {jobs}-way concurrency, so waits on the engine are included)");
    let mut steps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in run.stderr.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("phalanx-timing") {
            continue;
        }
        if let (Some(step), Some(ms)) = (words.next(), words.next().and_then(|w| w.parse().ok())) {
            steps.entry(step.to_string()).or_default().push(ms);
        }
    }
    println!(
        "  {:<16} {:>6} {:>10} {:>10}",
        "step", "calls", "mean ms", "median ms"
    );
    for (step, ms) in &steps {
        println!(
            "  {step:<16} {:>6} {:>10.1} {:>10.1}",
            ms.len(),
            ms.iter().sum::<f64>() / ms.len() as f64,
            median(ms)
        );
    }
    Ok(())
}
