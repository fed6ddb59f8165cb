//! `phalanx run` end to end against the real Docker engine, with the probe image as the
//! workload. Every test uses its own workspace and suite names, and checks that nothing
//! labelled with its run id is left on the engine.

use crate::junit_schema;
use crate::runs;
use crate::support;

use runs::{assert_nothing_left, probe_suite, read, run, wait_until_running};
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

    let run = runs::interrupted_while(&ws, &sleeper).await;

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

/// Reads `phalanx run --events -` line by line while the run goes on: each line parsed as
/// JSON (stdout carries nothing else), handed over as it arrives.
fn follow_events(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<Value> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("stdout is text");
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn a_reader_follows_the_event_stream_while_the_run_goes_on() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let (quick, blocker) = (unique("quick"), unique("blocker"));
    ws.suite(&quick, &probe_suite(&image, &["print", "done"], ""));
    // Runs until this test kills it, which it does only once it has read that `quick`
    // finished: the run cannot end before the reader has seen that.
    ws.suite(&blocker, &probe_suite(&image, &["sleep", "600"], ""));

    let mut child = ws
        .phalanx([
            "run",
            "--progress",
            "plain",
            "--target",
            "target",
            "-j",
            "2",
            "--events",
            "-",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let human = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let events = follow_events(child.stdout.take().unwrap());
    // Only a guard against a hung run; nothing is asserted about time.
    let next = || {
        events
            .recv_timeout(std::time::Duration::from_secs(300))
            .expect("the next event")
    };
    let is = |e: &Value, kind: &str, suite: &str| e["event"] == kind && e["suite"] == suite;

    let mut seen = Vec::new();
    while !seen.iter().any(|e| is(e, "suite-finished", &quick))
        || !seen.iter().any(|e| is(e, "suite-started", &blocker))
    {
        seen.push(next());
    }
    assert!(
        !seen
            .iter()
            .any(|e| is(e, "suite-finished", &blocker) || e["event"] == "run-finished"),
        "{seen:?}"
    );
    let quick_done = seen
        .iter()
        .find(|e| is(e, "suite-finished", &quick))
        .unwrap();
    assert_eq!(quick_done["outcome"], "passed", "{quick_done}");
    assert_eq!(quick_done["cause"], Value::Null);
    assert!(
        quick_done.get("output").is_none(),
        "no captured output in events"
    );

    let id = wait_until_running(&blocker).await;
    support::docker()
        .await
        .kill_container(&id, None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .unwrap();
    // The rest, up to the end of the stream (the process closing stdout).
    while let Ok(event) = events.recv_timeout(std::time::Duration::from_secs(300)) {
        seen.push(event);
    }
    let output = child.wait_with_output().unwrap();
    let human = human.join().unwrap();
    assert_eq!(output.status.code(), Some(1), "{human}");
    assert!(human.contains(&format!("FAIL     {blocker}")), "{human}");

    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seen.len() as u64).collect::<Vec<_>>());
    for event in &seen {
        assert_eq!(event["schema"], 1, "{event}");
        let at = event["at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{event}");
    }
    assert_eq!(seen[0]["event"], "run-started");
    let blocked = seen
        .iter()
        .find(|e| is(e, "suite-finished", &blocker))
        .unwrap();
    assert_eq!(blocked["outcome"], "failed", "{blocked}");
    assert_eq!(blocked["cause"]["kind"], "exit-code", "{blocked}");
    assert_eq!(blocked["cause"]["code"], 137, "{blocked}");
    let last = seen.last().unwrap();
    assert_eq!(last["event"], "run-finished", "{last}");
    assert_eq!(last["exit_code"], 1);
    assert_eq!(last["counts"]["total"], 2);

    let run = runs::finished_in(&ws.reports_dir(), output);
    assert_nothing_left(run.run_id()).await;
    assert_eq!(run.json["run_id"], seen[0]["run_id"]);
    assert_eq!(run.suite(&blocker)["cause"]["kind"], "exit-code");
}

#[tokio::test]
async fn without_an_engine_the_event_log_still_tells_the_whole_run() {
    let ws = Workspace::new();
    let name = unique("any");
    ws.suite(&name, "image = \"whatever:1\"\n");
    let events = ws.root().join("events.jsonl");
    let output = ws
        .phalanx([
            "run",
            "--progress",
            "none",
            "--target",
            "target",
            "--events",
        ])
        .arg(&events)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let lines: Vec<Value> = read(&events)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["run-started", "suite-finished", "run-finished"]);
    assert_eq!(lines[1]["suite"], name.as_str());
    assert_eq!(lines[1]["cause"]["kind"], "no-engine");
    assert_eq!(lines[2]["exit_code"], 3);
}

#[tokio::test]
async fn an_event_log_that_cannot_be_written_costs_only_the_log() {
    let ws = Workspace::new();
    ws.suite(&unique("any"), "image = \"whatever:1\"\n");
    let output = ws
        .phalanx([
            "run",
            "--progress",
            "none",
            "--target",
            "target",
            "--events",
        ])
        .arg(ws.root().join("no/such/dir/events.jsonl"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "the run's own exit code: {stderr}"
    );
    assert!(stderr.contains("cannot create the event log"), "{stderr}");
    assert!(ws.reports_dir().join("run.json").is_file(), "{stderr}");
}

/// Missing images are built by the run's build phase: a broken build fails every suite that
/// needs it, once (one build, one cause), while a suite whose image builds runs.
#[tokio::test]
async fn a_broken_build_fails_its_suites_once_and_the_others_run() {
    let probe = probe_image().await;
    let ws = Workspace::new();
    let tag = unique("build");
    let (broken_image, built_image) = (
        format!("phalanx-test/broken-{tag}:1"),
        format!("phalanx-test/built-{tag}:1"),
    );
    for (dir, body) in [
        (
            "broken",
            format!("FROM {probe}\nRUN [\"/probe\", \"exit\", \"7\"]\n"),
        ),
        ("built", format!("FROM {probe}\nLABEL phalanx.test={tag}\n")),
    ] {
        std::fs::create_dir_all(ws.root().join(dir)).unwrap();
        std::fs::write(ws.root().join(dir).join("Dockerfile"), body).unwrap();
    }
    let (first, second, ok) = (unique("first"), unique("second"), unique("ok"));
    for name in [&first, &second] {
        let extra = "build = \"../broken\"";
        ws.suite(name, &probe_suite(&broken_image, &["exit", "0"], extra));
    }
    let extra = "build = \"../built\"";
    ws.suite(&ok, &probe_suite(&built_image, &["exit", "0"], extra));

    let run = run(
        &ws,
        &["--events", "reports/events.jsonl", "--image-jobs", "2"],
    )
    .await;
    let _ = support::docker()
        .await
        .remove_image(
            &built_image,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;

    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.outcome(&ok), "passed", "{}", run.stderr);
    for name in [&first, &second] {
        assert_eq!(run.outcome(name), "error");
        assert_eq!(run.suite(name)["cause"]["kind"], "image-build-failed");
        assert!(
            run.reason(name).contains(&broken_image),
            "{}",
            run.reason(name)
        );
    }
    let events: Vec<Value> = read(&ws.reports_dir().join("events.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str, image: &str| -> Vec<&Value> {
        let matching = events
            .iter()
            .filter(|e| e["event"] == kind && e["image"] == image);
        matching.collect()
    };
    assert_eq!(of("image-build-started", &broken_image).len(), 1);
    let ended = of("image-build-finished", &broken_image);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["outcome"], "failed");
    assert_eq!(ended[0]["suites"].as_array().unwrap().len(), 2);
    assert_eq!(
        of("image-build-finished", &built_image)[0]["outcome"],
        "built"
    );
}
