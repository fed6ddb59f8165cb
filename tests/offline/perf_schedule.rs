//! Longest-first scheduling from history, end to end through `run::execute` with the
//! in-memory engine under paused tokio time: the makespans are exact, not measured.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use phalanx::config::{self, ProjectConfig, Suite};
use phalanx::engine::memory::MemoryEngine;
use phalanx::history::{self, History};
use phalanx::outcome::{Outcome, RunReport};
use phalanx::run::{self, RunPlan};
use phalanx::runner::RunContext;
use phalanx::schedule::ScheduleOptions;
use phalanx::stop::StopSignal;

/// The benchmark's mixed workload: 16 suites of 1–12 s whose names sort shortest first,
/// the worst order for first-come-first-served.
const SECONDS: [u64; 16] = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8, 10, 12];

/// Suite files for the in-memory engine (its command is `[millis, exit code]`), loaded
/// the way `phalanx run` loads them.
fn suites(dir: &Path, seconds: &[u64]) -> Vec<Suite> {
    let suites_dir = dir.join("suites");
    std::fs::create_dir_all(&suites_dir).unwrap();
    for (i, secs) in seconds.iter().enumerate() {
        let body = format!(
            "image = \"mem:1\"\ncommand = [\"{}\", \"0\"]\n",
            secs * 1000
        );
        std::fs::write(suites_dir.join(format!("s{i:02}.toml")), body).unwrap();
    }
    let loaded = config::load_suites(&suites_dir, &ProjectConfig::default()).unwrap();
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.suites
}

/// One run of `suites` with `jobs` slots and the history file at `history`, which the run
/// then updates as `phalanx run` does. Returns the report and the makespan.
async fn run_once(dir: &Path, suites: Vec<Suite>, jobs: usize) -> (RunReport, Duration) {
    let history_path = dir.join(".phalanx/history.json");
    let (history, warning) = History::load(&history_path);
    assert_eq!(warning, None);
    let engine = Arc::new(MemoryEngine::default());
    let plan = RunPlan {
        run_id: "perf".into(),
        context: RunContext {
            run_id: "perf".into(),
            target: dir.to_path_buf(),
            target_volume: None,
            reports_dir: dir.join("reports"),
            suppressions: Default::default(),
            baseline: None,
            placement: Vec::new(),
        },
        options: ScheduleOptions {
            jobs,
            image_jobs: 2,
            fail_fast: false,
            shared_slots: None,
        },
        suites,
        invalid_suites: Vec::new(),
        history,
        partition: None,
        services: Vec::new(),
    };
    let report = run::execute(engine.clone(), plan, StopSignal::default(), Vec::new()).await;
    assert_eq!(history::record_run(&history_path, &report.suites), None);
    let intervals = engine.intervals();
    let start = intervals.iter().map(|i| i.start).min().unwrap();
    let end = intervals.iter().map(|i| i.end).max().unwrap();
    (report, end - start)
}

/// `max(longest, total / jobs)`: no schedule can be shorter.
fn lower_bound(seconds: &[u64], jobs: u64) -> Duration {
    let total: u64 = seconds.iter().sum();
    let longest = *seconds.iter().max().unwrap();
    Duration::from_secs_f64((total as f64 / jobs as f64).max(longest as f64))
}

fn ratio(makespan: Duration, bound: Duration) -> f64 {
    makespan.as_secs_f64() / bound.as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn the_second_run_starts_the_longest_first_and_nears_the_lower_bound() {
    let dir = tempfile::tempdir().unwrap();
    let bound = lower_bound(&SECONDS, 4);

    let (first, fifo) = run_once(dir.path(), suites(dir.path(), &SECONDS), 4).await;
    assert!(first.suites.iter().all(|s| s.outcome == Outcome::Passed));
    // Without history every suite is unknown with the same timeout: plan order, which
    // starts the 12 s suite last.
    assert!(
        ratio(fifo, bound) > 1.15,
        "first run {fifo:?} vs bound {bound:?}"
    );

    let (second, lpt) = run_once(dir.path(), suites(dir.path(), &SECONDS), 4).await;
    println!(
        "bound {bound:?}; first run {fifo:?} ({:.3}), second run {lpt:?} ({:.3})",
        ratio(fifo, bound),
        ratio(lpt, bound)
    );
    assert!(
        ratio(lpt, bound) <= 1.10,
        "second run {lpt:?} vs bound {bound:?} (first run {fifo:?})"
    );
    // Reports stay in plan order whatever order the suites started in.
    let names = |r: &RunReport| r.suites.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&first), names(&second));
}

#[tokio::test(start_paused = true)]
async fn a_new_suite_starts_before_the_known_short_ones() {
    let dir = tempfile::tempdir().unwrap();
    let known = [1, 1, 1, 1, 2, 2, 2, 2];
    run_once(dir.path(), suites(dir.path(), &known), 2).await;
    // Add an unknown 9 s suite that sorts last in plan order.
    let mut with_new = known.to_vec();
    with_new.push(9);
    let (report, makespan) = run_once(dir.path(), suites(dir.path(), &with_new), 2).await;
    assert_eq!(report.suites.len(), 9);
    // Started first, the 9 s suite runs beside the 12 s of short ones: 11 s. Started
    // last (plan order), it would follow them: 6 + 9 = 15 s.
    assert!(
        makespan < Duration::from_secs(12),
        "the unknown suite started late: {makespan:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_estimate_follows_a_suite_that_got_longer() {
    let dir = tempfile::tempdir().unwrap();
    // Two slots; "s00" is short at first, then becomes the long one.
    run_once(dir.path(), suites(dir.path(), &[1, 5, 5, 1]), 2).await;
    run_once(dir.path(), suites(dir.path(), &[20, 5, 5, 1]), 2).await;
    let (history, _) = History::load(&dir.path().join(".phalanx/history.json"));
    let s00 = suites(dir.path(), &[20, 5, 5, 1])
        .into_iter()
        .next()
        .unwrap();
    // Halfway between 1 s and 20 s (plus the engine's few milliseconds).
    let expected = history.expected(&s00).unwrap().as_secs_f64();
    assert!((10.0..11.0).contains(&expected), "{expected}");
}
