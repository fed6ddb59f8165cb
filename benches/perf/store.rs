//! The **store** section: what the run store costs, without Docker (see the doc comment of
//! `benches/perf.rs`). The big run is the one `tests/offline/findings_large.rs` checks: a
//! generated SARIF log read into findings through the real reader, as a suite's verdict
//! reads it, so the store sees exactly what `phalanx run` would hand it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phalanx::config::ResultFormat;
use phalanx::findings::Severity;
use phalanx::outcome::RunReport;
use phalanx::store::{DEFAULT_KEEP_RUNS, RunFacts, RunFilter, Selection, Store};

use crate::findings_common::{judged, run_of, suite, write_big_sarif};
use crate::{Config, Result, median, ratio_line};

/// The share of report-writing time recording may add, and the read-back limits.
const RECORD_TARGET: f64 = 1.25;
const DIFF_TARGET: Duration = Duration::from_secs(1);
const RUNS_TARGET: Duration = Duration::from_millis(100);

pub fn store(config: &Config) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let dir = dir.path();
    let bytes = config.store_mib << 20;
    println!(
        "\n== store: a {} MiB SARIF log recorded, diffed; `phalanx runs` on {} runs ==",
        config.store_mib, config.store_runs
    );
    let head = big_run(dir, "big.sarif", bytes)?;
    record_against_reports(dir, &head, config.store_reps)?;
    diff_two_runs(dir, &head, bytes, config.store_reps)?;
    runs_listing(dir, config.store_runs, config.store_reps)
}

/// Writes a log of at least `bytes` as `name` in `dir` and judges it as suite `big` would be.
fn big_run(dir: &Path, name: &str, bytes: u64) -> Result<RunReport> {
    let clock = Instant::now();
    let big = write_big_sarif(&dir.join(name), bytes);
    let generated = clock.elapsed();
    let clock = Instant::now();
    let report = run_of(vec![judged(&big_suite(), dir, &[name])]);
    let read = clock.elapsed();
    if report.suites[0].findings.as_ref().map(|f| f.total) != Some(big.results) {
        return Err(format!(
            "{name}: the reader did not find all {} results",
            big.results
        ));
    }
    println!(
        "  {name}: {:.1} MiB, {} results; generated in {}, read in {}",
        big.bytes as f64 / f64::from(1 << 20),
        big.results,
        secs(generated),
        secs(read)
    );
    Ok(report)
}

fn big_suite() -> phalanx::config::Suite {
    suite("big", ResultFormat::Sarif, Severity::High)
}

fn facts(dir: &Path) -> RunFacts {
    RunFacts {
        project: None,
        target: dir.join("target"),
        selection: Selection::default(),
        git: None,
    }
}

/// Times the three report writers against what the store adds after them (open, record,
/// prune: what `RunRecorder` does for a run), each rep into a fresh store; prints the ratio
/// and the bytes per finding.
fn record_against_reports(dir: &Path, report: &RunReport, reps: usize) -> Result<()> {
    let (mut writing, mut with_store) = (Vec::new(), Vec::new());
    let (mut writing_cpu, mut with_store_cpu) = (Vec::new(), Vec::new());
    let (mut findings, mut db_bytes) = (0, 0);
    for rep in 0..reps {
        let cpu = CpuTimes::now();
        let reports = write_reports(dir, report)?;
        let reports_cpu = CpuTimes::now().own - cpu.own;
        let db = dir.join(format!("record-{rep}.db"));
        let cpu = CpuTimes::now();
        let clock = Instant::now();
        let mut store = Store::open(&db).map_err(|e| e.to_string())?;
        findings = store
            .record(report, &facts(dir))
            .map_err(|e| e.to_string())?
            .findings;
        store.prune(DEFAULT_KEEP_RUNS).map_err(|e| e.to_string())?;
        let recording = clock.elapsed();
        let recording_cpu = CpuTimes::now().own - cpu.own;
        db_bytes = checkpointed_size(&store, &db)?;
        drop(store);
        remove_db(&db);
        writing.push(reports.as_secs_f64());
        with_store.push((reports + recording).as_secs_f64());
        writing_cpu.push(reports_cpu);
        with_store_cpu.push(reports_cpu + recording_cpu);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "  reports (junit.xml, results.sarif, run.json) {:.2} s; and the store (open, record {findings} findings, prune) {:.2} s; medians of {reps}",
        median(&writing),
        median(&with_store)
    );
    println!("  ratios (of medians; of best runs):");
    ratio_line(
        "(reports + recording) / reports",
        median(&with_store) / median(&writing),
        best(&with_store) / best(&writing),
        Some(RECORD_TARGET),
    );
    // CPU time is what the load of a shared machine disturbs least.
    ratio_line(
        "the same in CPU time",
        median(&with_store_cpu) / median(&writing_cpu).max(0.01),
        best(&with_store_cpu) / best(&writing_cpu).max(0.01),
        Some(RECORD_TARGET),
    );
    println!(
        "  on disk: {db_bytes} bytes for one run, {:.0} bytes per finding",
        db_bytes as f64 / findings.max(1) as f64
    );
    Ok(())
}

fn write_reports(dir: &Path, report: &RunReport) -> Result<Duration> {
    use phalanx::report::{json, junit, sarif};
    let clock = Instant::now();
    junit::write_junit(report, &dir.join("junit.xml")).map_err(|e| e.to_string())?;
    sarif::write_sarif(report, &dir.join("results.sarif")).map_err(|e| e.to_string())?;
    json::write_json(report, &dir.join("run.json")).map_err(|e| e.to_string())?;
    Ok(clock.elapsed())
}

/// The database's size with the write-ahead log folded in, as it stays on disk.
fn checkpointed_size(store: &Store, db: &Path) -> Result<u64> {
    store
        .connection()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(|e| format!("checkpoint: {e}"))?;
    std::fs::metadata(db)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", db.display()))
}

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(path));
    }
}

/// `phalanx diff` of a base run (a log 5 % smaller: the same results, fewer of them)
/// against `head`: the head's extra findings are new, the rest unchanged.
fn diff_two_runs(dir: &Path, head: &RunReport, bytes: u64, reps: usize) -> Result<()> {
    let mut base = big_run(dir, "base.sarif", bytes / 20 * 19)?;
    base.run_id = "base".into();
    let db = dir.join("diff.db");
    let mut store = Store::open(&db).map_err(|e| e.to_string())?;
    for run in [&base, head] {
        store.record(run, &facts(dir)).map_err(|e| e.to_string())?;
    }
    let clock = Instant::now();
    let diff = store.diff_refs(None, None).map_err(|e| e.to_string())?;
    let in_process = clock.elapsed();
    println!(
        "  diff in process: {} ({} new, {} fixed, {} unchanged); store of the two runs: {} bytes",
        secs(in_process),
        diff.new.len(),
        diff.fixed.len(),
        diff.unchanged.len(),
        checkpointed_size(&store, &db)?
    );
    drop(store);
    let times = phalanx_times(dir, &["diff"], &db, reps)?;
    time_line("`phalanx diff` of the two runs", &times, DIFF_TARGET);
    Ok(())
}

/// `phalanx runs` (its default 20 newest) on a store of `n` small runs.
fn runs_listing(dir: &Path, n: usize, reps: usize) -> Result<()> {
    let db = dir.join("many.db");
    let mut store = Store::open(&db).map_err(|e| e.to_string())?;
    let mut run = run_of(Vec::new());
    let start = run.started_at;
    let clock = Instant::now();
    for i in 0..n {
        run.run_id = format!("run-{i:05}");
        // An hour apart, as runs of a busy CI would be.
        run.started_at = start + chrono::Duration::hours(i as i64);
        run.finished_at = run.started_at + chrono::Duration::seconds(10);
        store.record(&run, &facts(dir)).map_err(|e| e.to_string())?;
    }
    let recorded = clock.elapsed();
    let clock = Instant::now();
    let listed = store
        .runs(&RunFilter {
            limit: Some(20),
            target: None,
        })
        .map_err(|e| e.to_string())?;
    println!(
        "  {n} runs recorded in {}; the newest {} listed in process in {}",
        secs(recorded),
        listed.len(),
        secs(clock.elapsed())
    );
    drop(store);
    let times = phalanx_times(dir, &["runs"], &db, reps)?;
    time_line(&format!("`phalanx runs` on {n} runs"), &times, RUNS_TARGET);
    Ok(())
}

/// Wall times of `phalanx ARGS --store DB` (a whole process, as a user waits for it) after
/// one untimed warm-up, output discarded.
fn phalanx_times(dir: &Path, args: &[&str], db: &Path, reps: usize) -> Result<Vec<Timed>> {
    let bin = env!("CARGO_BIN_EXE_phalanx");
    let once = || -> Result<Timed> {
        let cpu = CpuTimes::now();
        let clock = Instant::now();
        let output = Command::new(bin)
            .args(args)
            .arg("--store")
            .arg(db)
            .current_dir(dir)
            .env_remove("PHALANX_STORE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("phalanx: {e}"))?;
        let wall = clock.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(format!(
                "phalanx {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(Timed {
            wall,
            cpu: CpuTimes::now().children - cpu.children,
        })
    };
    once()?;
    (0..reps.max(3)).map(|_| once()).collect()
}

/// One process's wall time and CPU time (user + system), in seconds.
struct Timed {
    wall: f64,
    cpu: f64,
}

/// The median wall time against `target`, with the median CPU time beside it: on a loaded
/// machine the wall time waits for a core, the CPU time does not.
fn time_line(what: &str, times: &[Timed], target: Duration) {
    let walls: Vec<f64> = times.iter().map(|t| t.wall).collect();
    let cpus: Vec<f64> = times.iter().map(|t| t.cpu).collect();
    let m = median(&walls);
    let limit = target.as_secs_f64();
    let verdict = if m <= limit { "met" } else { "NOT met" };
    let runs: Vec<String> = walls.iter().map(|w| format!("{w:.3}")).collect();
    println!(
        "    {what:<38} {m:>6.3} s (CPU {:.3} s)   target <= {limit:.2} s: {verdict}   runs: {}",
        median(&cpus),
        runs.join(" ")
    );
}

/// CPU time (user + system, seconds) of this process and of its waited-for children, from
/// `/proc/self/stat`; zero where that cannot be read.
struct CpuTimes {
    own: f64,
    children: f64,
}

impl CpuTimes {
    fn now() -> CpuTimes {
        // Fields 14-17 (utime, stime, cutime, cstime), counted after the parenthesised
        // command name, in clock ticks of 1/100 s (USER_HZ on Linux).
        let ticks = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<f64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(4)
                    .map(|f| f.parse().ok())
                    .collect::<Option<_>>()?;
                (fields.len() == 4).then_some(fields)
            })
            .unwrap_or_else(|| vec![0.0; 4]);
        CpuTimes {
            own: (ticks[0] + ticks[1]) / 100.0,
            children: (ticks[2] + ticks[3]) / 100.0,
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
