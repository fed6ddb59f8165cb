//! Faults inside suites end as clear outcomes, and the rest of the run goes on: a suite
//! that runs out of memory, a fork bomb, 100 MB of output, and a result archive with links
//! pointing out and a file over the size cap, all in one run beside a well-behaved suite.
//! (Suites that ignore SIGTERM are covered in `run_docker.rs`.)

use crate::runs;
use crate::support;

use runs::{probe_suite, read};
use support::{Workspace, probe_image, unique};

/// What the chatty suite prints: big enough to overflow every cap, small enough to be quick
/// (the engine delivers logs at about 8 MB/s here).
const SPAM_BYTES: u64 = 100 << 20;
/// The log file cap of `CaptureLimits::default()`.
const LOG_CAP: u64 = 64 << 20;
/// The pids limit the fork bomb runs under.
const PIDS: u32 = 64;

#[tokio::test]
async fn faults_in_suites_end_as_clear_outcomes_and_the_run_goes_on() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let oom = unique("oom");
    let bomb = unique("forkbomb");
    let chatty = unique("chatty");
    let archive = unique("archive");
    let fine = unique("fine");
    ws.suite(
        &oom,
        &probe_suite(&image, &["alloc", "512m"], "[policy]\nmemory = \"64m\""),
    );
    ws.suite(
        &bomb,
        &probe_suite(
            &image,
            &["forkbomb"],
            &format!("timeout = \"60s\"\n[policy]\npids = {PIDS}"),
        ),
    );
    ws.suite(
        &chatty,
        &probe_suite(&image, &["spam", "100m", "--", "exit", "1"], ""),
    );
    ws.suite(
        &archive,
        &probe_suite(
            &image,
            &[
                "write",
                "/results/report.txt",
                "kept",
                "--",
                "symlink",
                "/etc/passwd",
                "/results/passwd",
                "--",
                "symlink",
                "../../../../../../etc",
                "/results/up",
            ],
            "",
        ),
    );
    ws.suite(&fine, &probe_suite(&image, &["print", "all good"], ""));

    let mut child = ws
        .phalanx([
            "run",
            "--progress",
            "plain",
            "--target",
            "target",
            "-j",
            "5",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let peak_rss = runs::watch_peak_rss(&mut child);
    let run = runs::finished(&ws, child.wait_with_output().unwrap());
    runs::assert_nothing_left(run.run_id()).await;

    // Some suites errored: the run as a whole is an error, and the others still count.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.outcome(&fine), "passed");

    // Out of memory: an error saying so, not a bare exit 137.
    assert_eq!(run.outcome(&oom), "error", "{}", run.suite(&oom));
    assert!(
        run.reason(&oom).contains("out of memory"),
        "{}",
        run.reason(&oom)
    );
    assert!(run.reason(&oom).contains("64 MiB"), "{}", run.reason(&oom));

    // The fork bomb hit the pids limit, gave up and failed; it did not time out.
    assert_eq!(run.outcome(&bomb), "failed", "{}", run.suite(&bomb));
    let bomb_log = read(&ws.reports_dir().join(format!("logs/{bomb}.log")));
    let processes: u32 = bomb_log
        .split(" forks, with ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no process count in the log: {bomb_log}"));
    assert!(
        processes <= PIDS,
        "{processes} processes: the pids limit of {PIDS} did not hold"
    );
    assert!(
        bomb_log.contains("Resource temporarily unavailable"),
        "{bomb_log}"
    );

    // 100 MB of output: a capped log file, head and tail in the report, bounded memory.
    assert_eq!(run.outcome(&chatty), "failed");
    let log = ws.reports_dir().join(format!("logs/{chatty}.log"));
    let log_len = std::fs::metadata(&log).unwrap().len();
    assert!(
        (LOG_CAP..LOG_CAP + 1024).contains(&log_len),
        "log is {log_len} bytes"
    );
    let junit = read(&ws.reports_dir().join("junit.xml"));
    assert!(junit.len() < 4 << 20, "junit.xml is {} bytes", junit.len());
    assert!(junit.contains("[output truncated]"), "no truncation marker");
    assert!(junit.contains("spam offset              0 "), "no head");
    let last_offset = junit
        .split("spam offset ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        last_offset > SPAM_BYTES - (64 << 10),
        "no tail: the last offset shown is {last_offset}"
    );
    assert!(
        peak_rss < 96 << 20,
        "phalanx peaked at {} MiB while a suite printed {} MiB",
        peak_rss >> 20,
        SPAM_BYTES >> 20
    );
    eprintln!("phalanx peak RSS: {} MiB", peak_rss >> 20);

    // The archive: the plain file is kept, the links are refused with warnings, and
    // nothing lands outside the suite's results folder.
    assert_eq!(run.outcome(&archive), "passed");
    let results = ws.reports_dir().join(format!("results/{archive}"));
    assert_eq!(read(&results.join("report.txt")), "kept");
    for refused in ["passwd", "up"] {
        assert!(
            std::fs::symlink_metadata(results.join(refused)).is_err(),
            "{refused} was extracted"
        );
    }
    let warnings = run.suite(&archive)["result_warnings"].to_string();
    for named in ["passwd", "up"] {
        assert!(
            warnings.contains(named),
            "no warning for {named}: {warnings}"
        );
    }
    assert_eq!(
        run.suite(&archive)["result_files"],
        serde_json::json!(["report.txt"])
    );
}

#[tokio::test]
async fn results_over_the_size_cap_are_an_error_that_says_so() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let huge = unique("huge");
    let steps = [
        "write",
        "/results/small.txt",
        "x",
        "--",
        "fill",
        "/results/huge.bin",
        "260m",
    ];
    ws.suite(&huge, &probe_suite(&image, &steps, ""));

    let run = runs::run(&ws, &[]).await;

    // Results over the size cap cannot be trusted whole: an error naming the cap.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.outcome(&huge), "error");
    assert!(
        run.reason(&huge).contains("more than 268435456 bytes"),
        "{}",
        run.reason(&huge)
    );
    let extracted = ws.reports_dir().join(format!("results/{huge}/huge.bin"));
    let kept = std::fs::metadata(&extracted).map_or(0, |m| m.len());
    assert!(kept <= 256 << 20, "{kept} bytes of huge.bin on disk");
}
