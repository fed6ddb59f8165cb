//! `phalanx run` end to end against the real Docker engine, with the probe image as the
//! workload. Every test uses its own workspace and suite names, and checks that nothing
//! labelled with its run id is left on the engine.

use crate::junit_schema;
use crate::runs;
use crate::support;

use runs::{assert_nothing_left, finished, probe_suite, read, run, wait_until_running};
use serde_json::Value;
use support::{Workspace, probe_image, unique};

#[tokio::test]
async fn exit_codes_decide_pass_and_fail() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let (pass, fail, allowed) = (unique("pass"), unique("fail"), unique("allowed"));
    ws.suite(&pass, &probe_suite(&image, &["print", "all good"], ""));
    ws.suite(
        &fail,
        &probe_suite(
            &image,
            &["eprint", "found a problem", "--", "exit", "3"],
            "",
        ),
    );
    let extra = "[results]\nok_exit_codes = [0, 1]";
    ws.suite(&allowed, &probe_suite(&image, &["exit", "1"], extra));

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(&pass), "passed");
    assert_eq!(run.outcome(&fail), "failed");
    assert_eq!(run.outcome(&allowed), "passed");
    assert_eq!(run.suite(&fail)["exit_code"], 3);
    assert!(
        run.suite(&fail)["reason"]
            .as_str()
            .unwrap()
            .contains("exit code 3")
    );
    assert!(read(&ws.reports_dir().join(format!("logs/{pass}.log"))).contains("all good"));
    let junit = read(&ws.reports_dir().join("junit.xml"));
    assert!(
        junit.contains("found a problem"),
        "failed suites carry their output"
    );
    assert!(
        run.stdout.contains(&format!("FAIL     {fail}")),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_suite_that_ignores_sigterm_is_killed_after_its_timeout() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let stuck = unique("stuck");
    let steps = [
        "print",
        "started",
        "--",
        "ignore-term",
        "--",
        "sleep",
        "600",
    ];
    ws.suite(&stuck, &probe_suite(&image, &steps, "timeout = \"2s\""));

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 1);
    assert_eq!(run.outcome(&stuck), "timed-out");
    // Far below the 600 s the probe wanted: it was killed, not waited for.
    let duration = run.suite(&stuck)["duration"].as_f64().unwrap();
    assert!(duration < 120.0, "ran {duration} s");
    assert!(
        read(&ws.reports_dir().join(format!("logs/{stuck}.log"))).contains("started"),
        "partial log kept"
    );
}

#[tokio::test]
async fn a_missing_image_is_an_error_and_the_run_goes_on() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let (missing, fine) = (unique("missing"), unique("fine"));
    ws.suite(&missing, "image = \"phalanx-test/does-not-exist:1\"\n");
    ws.suite(&fine, &probe_suite(&image, &["exit", "0"], ""));

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 3);
    assert_eq!(run.outcome(&missing), "error");
    assert!(
        run.suite(&missing)["reason"]
            .as_str()
            .unwrap()
            .contains("phalanx-test/does-not-exist:1")
    );
    assert_eq!(run.outcome(&fine), "passed");
}

/// Runs `count` suites that stamp when they start and end (sleeping `secs` between) with
/// `-j jobs`, and returns each suite's (start, end) in unix milliseconds, as the
/// containers themselves recorded them.
async fn stamped_intervals(count: usize, secs: &str, jobs: &str) -> Vec<(u64, u64)> {
    let image = probe_image().await;
    let ws = Workspace::new();
    let names: Vec<String> = (0..count).map(|i| unique(&format!("stamp{i}"))).collect();
    let steps = [
        "stamp",
        "/results/start",
        "--",
        "sleep",
        secs,
        "--",
        "stamp",
        "/results/end",
    ];
    for name in &names {
        ws.suite(name, &probe_suite(&image, &steps, ""));
    }

    let run = run(&ws, &["-j", jobs]).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let stamp = |name: &str, which: &str| -> u64 {
        read(&ws.reports_dir().join(format!("results/{name}/{which}")))
            .trim()
            .parse()
            .unwrap()
    };
    names
        .iter()
        .map(|n| (stamp(n, "start"), stamp(n, "end")))
        .collect()
}

#[tokio::test]
async fn suites_run_in_parallel_up_to_jobs() {
    let intervals = stamped_intervals(3, "3", "3").await;
    let latest_start = intervals.iter().map(|i| i.0).max().unwrap();
    let earliest_end = intervals.iter().map(|i| i.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "all three suites should have been running at once (latest start {latest_start}, earliest end {earliest_end})"
    );
}

#[tokio::test]
async fn jobs_one_runs_suites_one_after_another() {
    let intervals = stamped_intervals(2, "1", "1").await;
    let (a, b) = (intervals[0], intervals[1]);
    let overlap = a.0 < b.1 && b.0 < a.1;
    assert!(
        !overlap,
        "with -j 1 the suites must not overlap: {intervals:?}"
    );
}

#[tokio::test]
async fn the_container_policy_is_enforced() {
    let image = probe_image().await;
    let ws = Workspace::new();
    ws.target_file("README", "the target");
    let probe = unique("policy");
    ws.suite(
        &probe,
        &probe_suite(&image, &["policy-report", "/results/policy.json"], ""),
    );

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&read(
        &ws.reports_dir()
            .join(format!("results/{probe}/policy.json")),
    ))
    .unwrap();
    assert_eq!(report["uid"], 65534, "{report}");
    assert_eq!(report["gid"], 65534, "{report}");
    assert_eq!(
        report["write_root"], false,
        "root filesystem must be read-only: {report}"
    );
    assert_eq!(
        report["write_target"], false,
        "target must be read-only: {report}"
    );
    assert_eq!(report["can_read_target"], true, "{report}");
    assert_eq!(report["write_results"], true, "{report}");
    assert_eq!(report["write_tmp"], true, "{report}");
    assert_eq!(
        report["net_interfaces"],
        serde_json::json!(["lo"]),
        "{report}"
    );
    assert_eq!(report["cap_eff"], "0000000000000000", "{report}");
    assert_eq!(report["no_new_privs"], true, "{report}");
    assert_eq!(report["docker_socket_exists"], false, "{report}");
}

#[tokio::test]
async fn result_files_come_back() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let writer = unique("writer");
    let steps = [
        "write",
        "/results/nested/found.txt",
        "hello",
        "--",
        "write",
        "/results/top.txt",
        "x",
    ];
    ws.suite(&writer, &probe_suite(&image, &steps, ""));

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let results = ws.reports_dir().join(format!("results/{writer}"));
    assert_eq!(read(&results.join("nested/found.txt")), "hello");
    let files = run.suite(&writer)["result_files"].to_string();
    assert!(
        files.contains("nested/found.txt") && files.contains("top.txt"),
        "{files}"
    );
}

#[tokio::test]
async fn an_invalid_suite_file_is_exit_2_naming_file_and_line() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let (broken, fine) = (unique("broken"), unique("fine"));
    ws.suite(&broken, &format!("image = {image:?}\ntimeout = \"soon\"\n"));
    ws.suite(&fine, &probe_suite(&image, &["exit", "0"], ""));

    let validate = ws.phalanx(["validate"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&validate.stderr);
    assert_eq!(validate.status.code(), Some(2));
    assert!(stderr.contains(&format!("{broken}.toml:2:")), "{stderr}");
    assert!(stderr.contains("timeout"), "{stderr}");

    // The run still runs the good suite and reports the broken one.
    let run = run(&ws, &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.outcome(&fine), "passed");
    assert!(
        run.stderr.contains(&format!("{broken}.toml:2:")),
        "{}",
        run.stderr
    );
    let junit = read(&ws.reports_dir().join("junit.xml"));
    assert!(
        junit.contains("invalid-suite") && junit.contains(&broken),
        "{junit}"
    );
}

#[tokio::test]
async fn fail_fast_skips_what_has_not_run() {
    let image = probe_image().await;
    let ws = Workspace::new();
    // Names sort in plan order: the failing suite runs first, alone (-j 1).
    let first = format!("a-{}", unique("fails"));
    let later = format!("b-{}", unique("later"));
    ws.suite(&first, &probe_suite(&image, &["exit", "1"], ""));
    ws.suite(&later, &probe_suite(&image, &["exit", "0"], ""));

    let run = run(&ws, &["-j", "1", "--fail-fast"]).await;

    assert_eq!(run.code, 1);
    assert_eq!(run.outcome(&first), "failed");
    assert_eq!(run.outcome(&later), "skipped");
}

#[tokio::test]
async fn sigint_stops_the_run_writes_reports_and_leaves_nothing() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let sleeper = unique("sleeper");
    ws.suite(
        &sleeper,
        &probe_suite(&image, &["print", "waiting", "--", "sleep", "600"], ""),
    );

    let child = ws
        .phalanx(["run", "--progress", "plain", "--target", "target"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_running(&sleeper).await;
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let run = finished(&ws, output);
    assert_nothing_left(run.run_id()).await;

    assert_eq!(run.code, 130, "{}", run.stderr);
    assert_eq!(run.outcome(&sleeper), "cancelled");
    assert_eq!(run.json["interrupted"], "SIGINT");
    assert!(ws.reports_dir().join("junit.xml").is_file());
}

#[tokio::test]
async fn junit_stays_valid_whatever_the_suite_prints() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let noisy = unique("noisy");
    ws.suite(
        &noisy,
        &probe_suite(&image, &["nasty", "--", "exit", "1"], ""),
    );

    let run = run(&ws, &[]).await;

    assert_eq!(run.code, 1);
    let junit_path = ws.reports_dir().join("junit.xml");
    let junit = read(&junit_path);
    roxmltree::Document::parse(&junit).expect("junit.xml is well-formed XML");
    let Some((xmllint, xsd)) = junit_schema::validator() else {
        return;
    };
    let stripped = ws.root().join("junit-stripped.xml");
    std::fs::write(&stripped, junit_schema::strip_extensions(&junit)).unwrap();
    if let Err(msg) = junit_schema::validate(&xmllint, &xsd, &stripped) {
        panic!(
            "junit.xml does not validate against {}:\n{msg}\n{junit}",
            xsd.display()
        );
    }
}

#[tokio::test]
async fn an_unreachable_engine_is_exit_3_with_one_clear_sentence() {
    let ws = Workspace::new();
    ws.suite(&unique("any"), "image = \"whatever:1\"\n");
    let output = ws
        .phalanx(["run", "--progress", "none", "--target", "target"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("unix:///nonexistent/docker.sock"),
        "{stderr}"
    );
    assert!(
        ws.reports_dir().join("junit.xml").is_file(),
        "reports are still written"
    );
}

#[tokio::test]
async fn clean_removes_what_a_killed_run_left() {
    use bollard::models::ContainerCreateBody;
    let image = probe_image().await;
    let ws = Workspace::new();
    let run_id = unique("orphan");
    let docker = support::docker().await;
    let labels = std::collections::HashMap::from([("phalanx.run".to_string(), run_id.clone())]);
    let body = ContainerCreateBody {
        image: Some(image),
        cmd: Some(vec!["/probe".into(), "sleep".into(), "600".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let created = docker.create_container(None, body).await.unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    assert_eq!(support::containers_with_label(&run_id).await.len(), 1);

    let output = ws.phalanx(["clean", "--run", &run_id]).output().unwrap();

    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("removed 1 container"));
    assert_nothing_left(&run_id).await;
}
