//! Faults around suites: the engine connection dropping mid-run, and infrastructure errors
//! that a retry cures (reported as flaky). The engine is reached through a proxy that can
//! fail chosen requests or drop every connection (`engine_proxy`).

use crate::engine_proxy;
use crate::junit_schema;
use crate::runs;
use crate::support;

use std::time::Duration;

use engine_proxy::EngineProxy;
use runs::{probe_suite, read};
use support::{Workspace, probe_image, unique};

/// Runs `phalanx run` through `proxy` without blocking the runtime the proxy lives on.
fn spawn_run(ws: &Workspace, proxy: &EngineProxy, args: &[&str]) -> tokio::process::Child {
    let mut all = vec!["run", "--progress", "plain", "--target", "target"];
    all.extend_from_slice(args);
    let mut cmd = tokio::process::Command::from(ws.phalanx(&all));
    cmd.env("DOCKER_HOST", proxy.docker_host())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

async fn wait_for(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("phalanx did not end after the engine went away")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_engine_mid_run_errors_the_suites_and_still_reports() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let running = format!("a-{}", unique("running"));
    let queued = format!("b-{}", unique("queued"));
    let steps = ["print", "started", "--", "sleep", "600"];
    ws.suite(&running, &probe_suite(&image, &steps, ""));
    ws.suite(&queued, &probe_suite(&image, &["exit", "0"], ""));
    let proxy = EngineProxy::start();

    let child = spawn_run(&ws, &proxy, &["-j", "1"]);
    let container = runs::wait_until_running(&running).await;
    // Cut only once phalanx has received the output, which also crosses the proxy.
    wait_for_log(
        &ws.reports_dir().join(format!("logs/{running}.log")),
        "started",
    )
    .await;
    proxy.cut();
    let output = wait_for(child).await;
    let run = runs::finished(&ws, output);
    // The engine itself is fine: the test removes what phalanx could no longer reach.
    support::remove_labelled(run.run_id()).await;
    let _ = container;

    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.outcome(&running), "error", "{}", run.suite(&running));
    assert_eq!(run.outcome(&queued), "error", "{}", run.suite(&queued));
    for suite in [&running, &queued] {
        let lost = format!(
            "lost the connection to the Docker engine at {}",
            proxy.docker_host()
        );
        assert!(
            run.reason(suite).starts_with(&lost),
            "the reason names the engine: {}",
            run.reason(suite)
        );
    }
    assert!(
        run.stderr
            .contains("lost the connection to the Docker engine")
            && run.stderr.contains("2 suite(s) ended as errors"),
        "{}",
        run.stderr
    );
    assert!(ws.reports_dir().join("junit.xml").is_file());
    let log = read(&ws.reports_dir().join(format!("logs/{running}.log")));
    assert!(log.contains("started"), "partial log kept: {log:?}");
}

/// Polls `log` until it holds `text` (phalanx writes a quiet suite's output out promptly).
async fn wait_for_log(log: &std::path::Path, text: &str) {
    for _ in 0..600 {
        if std::fs::read_to_string(log).is_ok_and(|l| l.contains(text)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} never showed {text:?}", log.display());
}

/// Whether a request creates the main container of `suite`'s attempt `attempt` (not the
/// short-lived helper containers an engine may make on the way).
fn creates(method: &str, path: &str, suite: &str, attempt: u32) -> bool {
    let name = format!("-{suite}-{attempt}");
    method == "POST"
        && path.starts_with("/containers/create")
        && path.split(['?', '&']).any(|param| {
            param
                .strip_prefix("name=")
                .is_some_and(|n| n.ends_with(&name))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_infrastructure_errors_are_retried_and_a_pass_on_retry_is_flaky() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let flaky = unique("flaky");
    let failing = unique("failing");
    let broken = unique("broken");
    ws.suite(
        &flaky,
        &probe_suite(&image, &["print", "ok"], "retries = 2"),
    );
    ws.suite(
        &failing,
        &probe_suite(&image, &["exit", "3"], "retries = 2"),
    );
    ws.suite(&broken, &probe_suite(&image, &["exit", "0"], "retries = 1"));
    let proxy = EngineProxy::start();
    let name = flaky.clone();
    proxy.fail(1, 500, move |m, p| creates(m, p, &name, 1));
    let name = broken.clone();
    proxy.fail(10, 500, move |m, p| {
        creates(m, p, &name, 1) || creates(m, p, &name, 2)
    });

    let output = wait_for(spawn_run(&ws, &proxy, &[])).await;
    let run = runs::finished(&ws, output);
    runs::assert_nothing_left(run.run_id()).await;

    assert_eq!(run.code, 3, "{}", run.stderr);
    // Passed on its second attempt: flaky.
    assert_eq!(run.outcome(&flaky), "passed", "{}", run.suite(&flaky));
    assert_eq!(run.suite(&flaky)["attempts"], 2);
    assert_eq!(run.suite(&flaky)["flaky"], true);
    let retried = &run.suite(&flaky)["retried"];
    assert!(
        retried[0]["reason"]
            .as_str()
            .unwrap()
            .contains("injected by the test proxy"),
        "{retried}"
    );
    // A failing exit code is the tool's verdict: never retried.
    assert_eq!(run.outcome(&failing), "failed");
    assert_eq!(run.suite(&failing)["attempts"], 1);
    assert!(run.suite(&failing).get("flaky").is_none());
    // Still broken after its one retry: an error, not flaky.
    assert_eq!(run.outcome(&broken), "error");
    assert_eq!(run.suite(&broken)["attempts"], 2);
    assert!(run.suite(&broken).get("flaky").is_none());
    let injected = proxy.seen().iter().filter(|(_, failed)| *failed).count();
    assert_eq!(injected, 3, "{:?}", proxy.seen());

    let junit = read(&ws.reports_dir().join("junit.xml"));
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let case = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name}"))
    };
    let children = |name: &str| -> Vec<String> {
        case(name)
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name().to_string())
            .collect()
    };
    assert_eq!(children(&flaky), ["flakyError"], "{junit}");
    let flaky_error = case(&flaky)
        .children()
        .find(|n| n.has_tag_name("flakyError"))
        .unwrap();
    assert_eq!(flaky_error.attribute("type"), Some("infrastructure"));
    assert!(
        flaky_error
            .attribute("message")
            .unwrap()
            .contains("injected by the test proxy")
    );
    assert!(!children(&failing).iter().any(|c| c.contains("rerun")));
    assert_eq!(children(&broken), ["error", "rerunError"], "{junit}");
    if let Some((xmllint, xsd)) = junit_schema::validator() {
        let stripped = ws.root().join("junit-stripped.xml");
        std::fs::write(&stripped, junit_schema::strip_extensions(&junit)).unwrap();
        if let Err(msg) = junit_schema::validate(&xmllint, &xsd, &stripped) {
            panic!("junit.xml with reruns does not validate:\n{msg}\n{junit}");
        }
    }
}
