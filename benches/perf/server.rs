//! The **server** section (see the doc comment of `benches/perf.rs`): `phalanx serve` as
//! a client sees it.
//!
//! - `GET /api/v1/runs` (a page of 50) on a store of `BENCH_SERVER_RUNS` runs, one client
//!   after another on a kept-alive connection: p50 and p99 (target p99 ≤ 20 ms);
//! - `BENCH_SERVER_SUBSCRIBERS` clients on `GET /api/v1/events` while one run of
//!   `BENCH_SERVER_SUITES` trivial suites goes on: every subscriber must get every event
//!   of the run; the run's wall time (as the server recorded it) against the same run with
//!   no subscriber (target ≤ 1.05), and the delay from each event's timestamp to its
//!   arrival at a subscriber (p50, p99);
//! - the server's peak RSS idle and after all of it (VmHWM; target ≤ 64 MB).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use phalanx::access::{Role, Scope, new_token, toml_entry};
use phalanx::store::{RunFacts, Selection, Store};
use serde_json::Value;

use crate::findings_common::run_of;
use crate::{Config, Result, median};

const RUNS_P99_TARGET_MS: f64 = 20.0;
const WALL_TARGET: f64 = 1.05;
const RSS_TARGET: u64 = 64 << 20;

/// A `phalanx serve` of the benchmark.
struct Served {
    child: Child,
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts the server in `dir` (whose phalanx.toml gets `projects` and an admin token).
    fn start(dir: &Path, projects: &str, jobs: usize) -> Result<Served> {
        let made = new_token().map_err(|e| e.to_string())?;
        let entry = toml_entry("bench", Role::Admin, &Scope::All, &made.sha256);
        std::fs::write(dir.join("phalanx.toml"), format!("{projects}\n{entry}"))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_phalanx"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--jobs",
                &jobs.to_string(),
            ])
            .current_dir(dir)
            .env_remove("PHALANX_STORE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("phalanx serve: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "phalanx serve printed no address".to_string())?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Served {
            child,
            base,
            token: made.token,
            agent,
        })
    }

    fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .map_err(|e| format!("GET {path}: {e}"))?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((response.status().as_u16(), body))
    }

    fn post(&self, path: &str, body: &str) -> Result<Value> {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| format!("POST {path}: {e}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("POST {path}: {e}: {text}"))
    }

    /// The high-water mark of the server's resident memory so far.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }
}

pub async fn server(image: &str, config: &Config) -> Result<()> {
    println!(
        "\n== server: GET /runs on {} runs; {} subscribers on a run of {} trivial suites (-j {}) ==",
        config.server_runs, config.server_subscribers, config.server_suites, config.jobs
    );
    let ws = crate::support::Workspace::new();
    let dir = ws.root();
    for i in 0..config.server_suites {
        let body = format!("image = {image:?}\ncommand = [\"/probe\", \"exit\", \"0\"]\n");
        ws.suite(&format!("s{i:03}"), &body);
    }
    seed_store(&dir.join(".phalanx/phalanx.db"), dir, config.server_runs)?;
    let projects = "[projects.app]\ntarget = \"target\"\nsuites = \"suites\"\n";
    let served = Served::start(dir, projects, config.jobs)?;
    // Let it settle, then read its idle footprint.
    std::thread::sleep(Duration::from_millis(500));
    let idle = served.peak_rss();

    runs_latency(&served, config.server_reps.max(1) * 250)?;

    // Alternate: no subscriber, subscribers, … so that drift on a shared machine hits both.
    let (mut alone, mut followed) = (Vec::new(), Vec::new());
    let mut delays = Vec::new();
    for _ in 0..config.server_reps.max(1) {
        alone.push(run_wall(&served, None)?.0);
        let (wall, d) = run_wall(&served, Some(config.server_subscribers))?;
        followed.push(wall);
        delays.extend(d);
    }
    let peak = served.peak_rss();
    drop(served);
    let ratio = median(&followed) / median(&alone);
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!(
        "  run wall time: {:.2} s alone, {:.2} s with {} subscribers (medians of {}): ratio {ratio:.3}   target <= {WALL_TARGET:.2}: {}",
        median(&alone),
        median(&followed),
        config.server_subscribers,
        alone.len(),
        verdict(ratio <= WALL_TARGET)
    );
    delays.sort_by(f64::total_cmp);
    println!(
        "  event -> subscriber delay over {} deliveries: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0.0)
    );
    println!(
        "  server peak RSS: {:.1} MiB idle, {:.1} MiB after the load   target <= {} MiB: {}",
        idle as f64 / f64::from(1 << 20),
        peak as f64 / f64::from(1 << 20),
        RSS_TARGET >> 20,
        verdict(peak <= RSS_TARGET)
    );
    Ok(())
}

/// `n` finished runs of project `app`, an hour apart, recorded as `phalanx run` would.
fn seed_store(db: &Path, dir: &Path, n: usize) -> Result<()> {
    let mut store = Store::open(db).map_err(|e| e.to_string())?;
    let mut run = run_of(Vec::new());
    let start = run.started_at;
    let facts = RunFacts {
        project: Some("app".into()),
        target: dir.join("target"),
        selection: Selection::default(),
        git: None,
    };
    let clock = Instant::now();
    for i in 0..n {
        run.run_id = format!("seed{i:05}");
        run.started_at = start + chrono::Duration::hours(i as i64);
        run.finished_at = run.started_at + chrono::Duration::seconds(10);
        store.record(&run, &facts).map_err(|e| e.to_string())?;
    }
    println!(
        "  {n} runs recorded in {:.1} s",
        clock.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `n` sequential `GET /api/v1/runs` (after a warm-up): p50 and p99.
fn runs_latency(served: &Served, n: usize) -> Result<()> {
    for _ in 0..20 {
        served.get("/api/v1/runs")?;
    }
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let clock = Instant::now();
        let (status, body) = served.get("/api/v1/runs")?;
        ms.push(clock.elapsed().as_secs_f64() * 1000.0);
        if status != 200 || !body.contains("seed") {
            return Err(format!("GET /api/v1/runs: {status} {body}"));
        }
    }
    ms.sort_by(f64::total_cmp);
    let p99 = percentile(&ms, 0.99);
    println!(
        "  GET /api/v1/runs (50 of them) x{n}: p50 {:.2} ms, p99 {p99:.2} ms   target p99 <= {RUNS_P99_TARGET_MS} ms: {}",
        percentile(&ms, 0.50),
        if p99 <= RUNS_P99_TARGET_MS {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

/// One run of every suite, followed by `subscribers` clients on `/api/v1/events` when
/// given; returns its wall time as the server recorded it, and each delivery's delay (ms).
fn run_wall(served: &Served, subscribers: Option<usize>) -> Result<(f64, Vec<f64>)> {
    let count = subscribers.unwrap_or(0);
    let ready = Arc::new(Barrier::new(count + 1));
    let (tx, rx) = mpsc::channel::<Result<Vec<(String, u64, f64)>>>();
    let mut threads = Vec::new();
    for _ in 0..count {
        let (agent, url, token) = (
            served.agent.clone(),
            format!("{}/api/v1/events", served.base),
            served.token.clone(),
        );
        let (ready, tx) = (ready.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let response = agent
                .get(url)
                .header("Authorization", &format!("Bearer {token}"))
                .call();
            ready.wait();
            let _ = tx.send(subscribe(response));
        }));
    }
    drop(tx);
    ready.wait();
    let triggered = served.post("/api/v1/projects/app/runs", "")?;
    let run_id = triggered["run_id"].as_str().ok_or("no run id")?.to_string();
    let run = loop {
        let (status, body) = served.get(&format!("/api/v1/runs/{run_id}"))?;
        let run: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        if status == 200 && run["state"] == "finished" {
            break run;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wall = run["duration"].as_f64().ok_or("no duration")?;
    let mut delays = Vec::new();
    let mut expected: Option<usize> = None;
    for received in rx {
        let received = received?;
        let of_run: Vec<_> = received.iter().filter(|(r, ..)| *r == run_id).collect();
        // Every event, in order: 1, 2, … up to run-finished's number.
        let n = of_run.len();
        let in_order = of_run
            .iter()
            .enumerate()
            .all(|(i, (_, seq, _))| *seq == i as u64 + 1);
        if !in_order || *expected.get_or_insert(n) != n {
            return Err(format!(
                "a subscriber got {n} events of the run (in order: {in_order}), another {expected:?}"
            ));
        }
        delays.extend(of_run.iter().map(|(.., d)| *d));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok((wall, delays))
}

/// Reads an `/api/v1/events` stream until its run's `run-finished`: `(run, seq, delay ms)`
/// for each event.
fn subscribe(
    response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Vec<(String, u64, f64)>> {
    let response = response.map_err(|e| format!("subscribe: {e}"))?;
    let reader = BufReader::new(response.into_body().into_reader());
    let mut got = Vec::new();
    for line in reader.lines() {
        let line = line.map_err(|e| format!("stream: {e}"))?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let now = Utc::now();
        let event: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
        let at: DateTime<Utc> = event["at"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .ok_or("no at")?;
        let delay = (now - at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        let run = event["run_id"].as_str().unwrap_or("").to_string();
        let seq = event["seq"].as_u64().unwrap_or(0);
        got.push((run, seq, delay));
        if event["event"] == "run-finished" {
            return Ok(got);
        }
    }
    Err("the stream ended before the run did".into())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
