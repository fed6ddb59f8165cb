//! `phalanx run --engine swarm` against the host engine as a single-node swarm manager: the
//! same outcomes as the Docker backend, the policy seen from inside a task, results back
//! through the log stream, and nothing left (services, containers, networks, images).
//!
//! CI makes the host engine a swarm manager for the test run (`.ci/run`) and sets
//! `PHALANX_REQUIRE_SWARM=1`, so there a missing swarm fails these tests; elsewhere they
//! skip with a message. The two-node test is `swarm_two_node`, run through
//! `scripts/swarm-two-node`.

use std::collections::HashMap;

use bollard::query_parameters::{ListImagesOptionsBuilder, ListServicesOptionsBuilder};
use serde_json::Value;

use crate::runs::{self, Run, assert_nothing_left, probe_suite, read};
use crate::support::{self, Workspace, probe_image, unique};

/// Every gap, accepted: these tests are about what runs, not about the refusal.
pub const ALLOW_ALL_GAPS: &str =
    "[swarm]\nallow_gaps = [\"no-new-privileges\", \"memory-swap\", \"network-none\"]\n";

/// Whether the host engine is a swarm manager; when it is not, says why the test skips, or
/// fails where CI requires the swarm.
pub async fn swarm_ready() -> bool {
    let info = support::docker().await.info().await.expect("docker info");
    let manager = info
        .swarm
        .and_then(|s| s.control_available)
        .unwrap_or(false);
    if !manager {
        let required = std::env::var_os("PHALANX_REQUIRE_SWARM").is_some_and(|v| v == "1");
        assert!(
            !required,
            "PHALANX_REQUIRE_SWARM=1 but the engine is not a swarm manager"
        );
        eprintln!(
            "skipping: the Docker engine is not a swarm manager (`docker swarm init \
             --advertise-addr 127.0.0.1` makes it one; .ci/run does)"
        );
    }
    manager
}

/// Builds the swarm task helper image once, under the host-wide image lock: a Phalanx
/// process builds it (and the base under it) on first use, and two at once would both
/// bootstrap the base.
pub async fn task_image() {
    static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let _lock = support::image_build_lock();
            let docker = support::docker().await;
            let image = "phalanx/swarm-task:1";
            if docker.inspect_image(image).await.is_ok() {
                return;
            }
            let context =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/swarm-task");
            let log = std::env::temp_dir().join(unique("swarm-task-build"));
            phalanx::engine::base::build_image(&docker, &context, image, &log)
                .await
                .unwrap_or_else(|e| panic!("building {image}: {e}"));
        })
        .await;
}

/// `phalanx run --engine swarm` in `ws`; checks that nothing of the run is left.
pub async fn run_on_swarm(ws: &Workspace, args: &[&str]) -> Run {
    let mut all = vec!["--engine", "swarm"];
    all.extend_from_slice(args);
    let run = runs::run(ws, &all).await;
    assert_nothing_left_on_swarm(run.run_id()).await;
    run
}

/// No service and no image labelled with the run (containers, volumes and networks are
/// checked by [`assert_nothing_left`]).
pub async fn assert_nothing_left_on_swarm(run_id: &str) {
    assert_nothing_left(run_id).await;
    let docker = support::docker().await;
    let filters = HashMap::from([("label", vec![format!("phalanx.run={run_id}")])]);
    let services = docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .expect("listing services");
    let names: Vec<_> = services
        .into_iter()
        .filter_map(|s| s.spec.and_then(|s| s.name))
        .collect();
    assert_eq!(names, Vec::<String>::new(), "services left");
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .expect("listing images");
    let tags: Vec<_> = images.into_iter().flat_map(|i| i.repo_tags).collect();
    assert_eq!(tags, Vec::<String>::new(), "images left");
}

#[tokio::test]
async fn outcomes_match_the_docker_backend() {
    if !swarm_ready().await {
        return;
    }
    task_image().await;
    let image = probe_image().await;
    let ws = Workspace::new();
    ws.project(ALLOW_ALL_GAPS);
    ws.target_file("README", "the target");
    let [pass, fail, slow, missing, writer, nowhere, oom, bomb] = [
        "pass", "fail", "slow", "missing", "writer", "nowhere", "oom", "forkbomb",
    ]
    .map(unique);
    ws.suite(&pass, &probe_suite(&image, &["print", "all good"], ""));
    ws.suite(
        &fail,
        &probe_suite(
            &image,
            &["eprint", "found a problem", "--", "exit", "3"],
            "",
        ),
    );
    let stuck = [
        "print",
        "started",
        "--",
        "ignore-term",
        "--",
        "sleep",
        "600",
    ];
    // Long enough for a loaded 2-core swarm to start the task before it times out: the
    // timeout counts from the service's creation, and the log must show it ran.
    ws.suite(&slow, &probe_suite(&image, &stuck, "timeout = \"10s\""));
    ws.suite(
        &missing,
        &probe_suite("phalanx-test/absent:1", &["exit", "0"], ""),
    );
    let writes = [
        "write",
        "/results/nested/found.txt",
        "hello",
        "--",
        "cat",
        "/target/README",
    ];
    ws.suite(&writer, &probe_suite(&image, &writes, ""));
    let unplaceable = "timeout = \"3s\"\nplacement = [\"node.labels.phalanx.test.absent == yes\"]";
    ws.suite(&nowhere, &probe_suite(&image, &["exit", "0"], unplaceable));

    ws.suite(
        &oom,
        &probe_suite(&image, &["alloc", "512m"], "[policy]\nmemory = \"64m\""),
    );
    ws.suite(
        &bomb,
        &probe_suite(
            &image,
            &["forkbomb"],
            "timeout = \"60s\"\n[policy]\npids = 64",
        ),
    );

    let run = run_on_swarm(&ws, &["--jobs", "8"]).await;

    // An error (the missing image) makes the run untrustworthy, as on Docker.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.outcome(&pass), "passed", "{}", run.stderr);
    assert_eq!(run.outcome(&fail), "failed");
    assert_eq!(run.suite(&fail)["exit_code"], 3);
    assert_eq!(run.outcome(&slow), "timed-out");
    assert_eq!(run.outcome(&missing), "error");
    assert!(
        run.reason(&missing).contains("phalanx-test/absent:1"),
        "{}",
        run.reason(&missing)
    );
    assert_eq!(run.outcome(&writer), "passed", "{}", run.reason(&writer));
    // Out of memory: an error saying so, not a bare exit 137, as on Docker.
    assert_eq!(run.outcome(&oom), "error", "{}", run.suite(&oom));
    assert!(
        run.reason(&oom).contains("out of memory"),
        "{}",
        run.reason(&oom)
    );
    // The pids limit held: the bomb gave up and failed, it did not time out.
    assert_eq!(run.outcome(&bomb), "failed", "{}", run.suite(&bomb));
    // No node meets its constraint: it waits, times out, and its log says why.
    assert_eq!(run.outcome(&nowhere), "timed-out");

    let log = |name: &str| read(&ws.reports_dir().join(format!("logs/{name}.log")));
    assert_eq!(log(&pass), "all good\n", "the frame is not in the log");
    assert!(log(&fail).contains("found a problem"));
    assert!(log(&slow).contains("started"));
    // The task read the target from its image layer, not from this host.
    assert_eq!(log(&writer), "the target");
    let pending = log(&nowhere);
    assert!(
        pending.contains("phalanx: the swarm task was pending: no suitable node"),
        "{pending}"
    );
    let results = ws.reports_dir().join(format!("results/{writer}"));
    assert_eq!(read(&results.join("nested/found.txt")), "hello");
}

#[tokio::test]
async fn the_policy_is_enforced_inside_the_task_and_its_gaps_are_real() {
    if !swarm_ready().await {
        return;
    }
    task_image().await;
    let image = probe_image().await;
    let ws = Workspace::new();
    ws.project(ALLOW_ALL_GAPS);
    ws.target_file("README", "the target");
    let probe = unique("policy");
    ws.suite(
        &probe,
        &probe_suite(&image, &["policy-report", "/results/policy.json"], ""),
    );

    let run = run_on_swarm(&ws, &[]).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&read(
        &ws.reports_dir()
            .join(format!("results/{probe}/policy.json")),
    ))
    .unwrap();
    assert_eq!(report["uid"], 65534, "{report}");
    assert_eq!(report["gid"], 65534, "{report}");
    assert_eq!(report["write_root"], false, "read-only root: {report}");
    assert_eq!(report["write_target"], false, "read-only target: {report}");
    assert_eq!(report["can_read_target"], true, "{report}");
    assert_eq!(report["write_results"], true, "{report}");
    assert_eq!(report["write_tmp"], true, "{report}");
    assert_eq!(report["cap_eff"], "0000000000000000", "{report}");
    assert_eq!(report["docker_socket_exists"], false, "{report}");
    // The gaps the suite had to accept, as the task sees them.
    assert_eq!(report["no_new_privs"], false, "no-new-privileges: {report}");
    assert_ne!(
        report["net_interfaces"],
        serde_json::json!(["lo"]),
        "network-none: {report}"
    );
}

#[tokio::test]
async fn a_suite_with_an_unaccepted_gap_is_refused_before_anything_runs() {
    if !swarm_ready().await {
        return;
    }
    let image = probe_image().await;
    let ws = Workspace::new();
    ws.project("[swarm]\nallow_gaps = [\"no-new-privileges\", \"memory-swap\"]\n");
    let (offline, online) = (unique("offline"), unique("online"));
    ws.suite(&offline, &probe_suite(&image, &["exit", "0"], ""));
    ws.suite(
        &online,
        &probe_suite(&image, &["exit", "0"], "[policy]\nnetwork = \"egress\""),
    );

    let run = run_on_swarm(&ws, &[]).await;

    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("network-none"), "{}", run.stderr);
    assert_eq!(run.outcome(&online), "passed", "{}", run.reason(&online));
}

#[tokio::test]
async fn the_services_of_a_killed_run_are_removed_by_the_next_run() {
    if !swarm_ready().await {
        return;
    }
    task_image().await;
    let image = probe_image().await;
    let ws = Workspace::new();
    ws.project(ALLOW_ALL_GAPS);
    let stuck = unique("stuck");
    ws.suite(
        &stuck,
        &probe_suite(&image, &["sleep", "600"], "timeout = \"20m\""),
    );
    let mut killed = ws
        .phalanx([
            "run",
            "--engine",
            "swarm",
            "--progress",
            "plain",
            "--target",
            "target",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("phalanx starts");
    let Some(run_id) = service_of_suite(&stuck).await else {
        killed.kill().unwrap();
        let out = killed.wait_with_output().unwrap();
        panic!(
            "the suite's service never appeared:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    killed.kill().expect("SIGKILL");
    killed.wait().unwrap();
    assert!(
        service_of_suite(&stuck).await.is_some(),
        "a killed run cannot remove its service"
    );

    // Any later run sweeps what a dead Phalanx left, and only that.
    let next = Workspace::new();
    next.project(ALLOW_ALL_GAPS);
    next.suite(&unique("next"), &probe_suite(&image, &["exit", "0"], ""));
    let run = run_on_swarm(&next, &[]).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("left by earlier Phalanx runs"),
        "{}",
        run.stderr
    );
    assert_nothing_left_on_swarm(&run_id).await;
}

/// The run id of the service running `suite`, waiting up to three minutes for it to exist
/// (the run builds its layer first, on a loaded engine).
async fn service_of_suite(suite: &str) -> Option<String> {
    let docker = support::docker().await;
    let filters = HashMap::from([("label", vec![format!("phalanx.suite={suite}")])]);
    for _ in 0..720 {
        let services = docker
            .list_services(Some(
                ListServicesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .expect("listing services");
        if let Some(labels) = services
            .into_iter()
            .find_map(|s| s.spec.and_then(|s| s.labels))
        {
            return labels.get("phalanx.run").cloned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    None
}

#[tokio::test]
async fn results_are_writable_and_fresh_whatever_the_image_has_at_results() {
    use crate::perf_results_dir::{Layout, image};
    if !swarm_ready().await {
        return;
    }
    task_image().await;
    let ws = Workspace::new();
    ws.project(ALLOW_ALL_GAPS);
    let mut names = Vec::new();
    for layout in [
        Layout::WorldWritable,
        Layout::OwnedBy10001,
        Layout::Missing,
        Layout::Stale,
    ] {
        let name = unique("layout");
        let image = image(layout).await;
        ws.suite(
            &name,
            &format!(
                "image = {image:?}\n\
                 command = [\"/probe\", \"write\", \"/results/out/found.txt\", \"written\"]\n\
                 [policy]\nuser = \"10001:10001\"\n"
            ),
        );
        names.push((layout, name));
    }

    // Links travel in the frame as links, for the extractor to refuse as on Docker.
    let links = unique("links");
    let steps = [
        "write",
        "/results/report.txt",
        "kept",
        "--",
        "symlink",
        "/etc/passwd",
        "/results/passwd",
        "--",
        "symlink",
        "../../../../etc",
        "/results/up",
    ];
    ws.suite(&links, &probe_suite(&probe_image().await, &steps, ""));

    let run = run_on_swarm(&ws, &["--jobs", "4"]).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let linked = ws.reports_dir().join(format!("results/{links}"));
    assert_eq!(read(&linked.join("report.txt")), "kept");
    let warnings = run.suite(&links)["result_warnings"].to_string();
    for refused in ["passwd", "up"] {
        assert!(
            std::fs::symlink_metadata(linked.join(refused)).is_err(),
            "{refused} came back"
        );
        assert!(warnings.contains(refused), "{warnings}");
    }
    for (layout, name) in &names {
        let results = ws.reports_dir().join("results").join(name);
        assert_eq!(
            read(&results.join("out/found.txt")),
            "written",
            "{layout:?}"
        );
        assert!(
            !results.join("stale.txt").exists(),
            "{layout:?}: what the image shipped in /results passed for a result"
        );
    }
}
