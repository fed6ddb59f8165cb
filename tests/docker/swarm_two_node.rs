//! `--engine swarm` on a real two-node swarm: the host engine as manager and a second
//! dockerd in a network namespace as worker, with a registry (`scripts/swarm-two-node`).
//! Ignored by plain `cargo test`; `.ci/run` runs it as
//! `scripts/swarm-two-node run -- cargo test --test docker swarm_two_node -- --ignored`.
//!
//! Suites constrained to the worker must run there (the worker pulls the run's layer from
//! the registry, which it only does for a task placed on it), their results and logs must
//! come back through the manager, and nothing of the run may be left on either node.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveImageOptionsBuilder,
};

use crate::runs::{probe_suite, read};
use crate::support::{Workspace, probe_image, unique};
use crate::swarm::{ALLOW_ALL_GAPS, run_on_swarm, swarm_ready, task_image};

/// What `scripts/swarm-two-node` exports.
struct TwoNode {
    worker: Docker,
    registry: String,
    /// `key=value` of the worker's node label.
    label: (String, String),
}

fn two_node() -> TwoNode {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run this test through scripts/swarm-two-node run -- \
                 cargo test --test docker swarm_two_node -- --ignored"
            )
        })
    };
    let sock = var("PHALANX_SWARM_WORKER_SOCK");
    let worker = Docker::connect_with_unix(&sock, 120, bollard::API_DEFAULT_VERSION)
        .expect("a client for the worker's engine");
    let label = var("PHALANX_SWARM_WORKER_LABEL");
    let (key, value) = label.split_once('=').expect("label is key=value");
    TwoNode {
        worker,
        registry: var("PHALANX_SWARM_REGISTRY"),
        label: (key.to_string(), value.to_string()),
    }
}

#[tokio::test]
#[ignore = "needs the two-node swarm of scripts/swarm-two-node"]
async fn suites_placed_on_the_worker_run_there_and_leave_nothing() {
    let cluster = two_node();
    assert!(swarm_ready().await, "the host engine must be the manager");
    task_image().await;
    let image = probe_image().await;
    let ws = Workspace::new();
    ws.project(&format!(
        "{ALLOW_ALL_GAPS}registry = {:?}\n",
        cluster.registry
    ));
    ws.target_file("README", "the target");
    let on_worker = format!(
        "placement = [\"node.labels.{} == {}\"]",
        cluster.label.0, cluster.label.1
    );
    let [writer, failing, anywhere] = ["writer", "failing", "anywhere"].map(unique);
    let writes = [
        "write",
        "/results/found.txt",
        "from the worker",
        "--",
        "cat",
        "/target/README",
    ];
    ws.suite(&writer, &probe_suite(&image, &writes, &on_worker));
    ws.suite(
        &failing,
        &probe_suite(
            &image,
            &["eprint", "bad news", "--", "exit", "3"],
            &on_worker,
        ),
    );
    ws.suite(&anywhere, &probe_suite(&image, &["print", "ok"], ""));

    let run = run_on_swarm(&ws, &["--jobs", "3"]).await;
    let run_id = run.run_id().to_string();

    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(&writer), "passed", "{}", run.reason(&writer));
    assert_eq!(run.outcome(&failing), "failed");
    assert_eq!(run.suite(&failing)["exit_code"], 3);
    assert_eq!(run.outcome(&anywhere), "passed");
    let log = |name: &str| read(&ws.reports_dir().join(format!("logs/{name}.log")));
    assert_eq!(log(&writer), "the target");
    assert!(log(&failing).contains("bad news"));
    let found = ws.reports_dir().join(format!("results/{writer}/found.txt"));
    assert_eq!(read(&found), "from the worker");

    // The worker pulled the run's layer: a task was placed there.
    let pulled = worker_images(&cluster.worker, &run_id).await;
    assert!(
        !pulled.is_empty(),
        "the worker has no image of run {run_id}: nothing ran there"
    );
    // The worker removes its copy of a network shortly after the cluster does: allow it
    // that moment, no more.
    let mut left = worker_objects(&cluster.worker, &run_id).await;
    for _ in 0..30 {
        if left == (Vec::new(), Vec::new()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        left = worker_objects(&cluster.worker, &run_id).await;
    }
    assert_eq!(
        left,
        (Vec::new(), Vec::new()),
        "containers and networks of the run left on the worker"
    );
    // Pulled images stay on a node (Phalanx cannot reach its engine): the test removes its own.
    let force = RemoveImageOptionsBuilder::default().force(true).build();
    for id in pulled {
        let _ = cluster
            .worker
            .remove_image(&id, Some(force.clone()), None)
            .await;
    }
}

fn run_filter(run_id: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("phalanx.run={run_id}")])])
}

async fn worker_images(worker: &Docker, run_id: &str) -> Vec<String> {
    let filters = run_filter(run_id);
    let opts = ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let images = worker.list_images(Some(opts)).await.expect("worker images");
    images.into_iter().map(|i| i.id).collect()
}

async fn worker_objects(worker: &Docker, run_id: &str) -> (Vec<String>, Vec<String>) {
    let filters = run_filter(run_id);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = worker
        .list_containers(Some(opts))
        .await
        .expect("worker containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let opts = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    let networks = worker
        .list_networks(Some(opts))
        .await
        .expect("worker networks")
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    (containers, networks)
}
