//! A hostile suite cannot escape its policy: the probe tries to modify the target, read
//! another suite's results and logs, reach the network, gain privileges (a setuid-root
//! binary, setuid(0), CAP_SYS_ADMIN mounts, a user namespace, raw sockets, devices, chown)
//! and reach the Docker socket. Every attempt must fail, as the probe itself reports, and
//! the target must be byte-for-byte what it was.

use crate::runs;
use crate::support;

use std::collections::HashMap;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use futures::StreamExt;
use runs::{probe_suite, read, tree_digest};
use serde_json::Value;
use support::{Workspace, probe_image, unique};

/// Port the listening container accepts connections on.
pub(crate) const PORT: &str = "8080";

/// Starts a probe that accepts connections on the default bridge network: the one address
/// a suite could try to reach (only containers of our own, never any other host). Returns
/// its id and IP address.
pub(crate) async fn start_listener(image: &str, run_id: &str) -> (String, String) {
    let docker = support::docker().await;
    let body = ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(["/probe", "listen", PORT, "120"].map(String::from).to_vec()),
        labels: Some(HashMap::from([(
            "phalanx.run".to_string(),
            run_id.to_string(),
        )])),
        ..Default::default()
    };
    let name = unique("phalanx-listener");
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let id = docker
        .create_container(Some(options), body)
        .await
        .unwrap()
        .id;
    docker.start_container(&id, None).await.unwrap();
    for _ in 0..100 {
        if listener_log(&id).await.contains("listening") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inspect = docker.inspect_container(&id, None).await.unwrap();
    let ip = inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove("bridge"))
        .and_then(|bridge| bridge.ip_address)
        .filter(|ip| !ip.is_empty())
        .expect("the listener has an address on the default bridge");
    (id, ip)
}

pub(crate) async fn listener_log(id: &str) -> String {
    let docker = support::docker().await;
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(Ok(frame)) = logs.next().await {
        text.push_str(&frame.to_string());
    }
    text
}

fn attempts(report: &Value) -> Vec<(String, bool, String)> {
    report["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["allowed"].as_bool().unwrap(),
                a["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_hostile_suite_cannot_escape_its_policy() {
    let image = probe_image().await;
    let ws = Workspace::new();
    // Writable by anyone, so only the read-only mount stands between a suite and the files.
    for (file, text) in [
        ("README", "the target\n"),
        ("src/app.py", "print('hello')\n"),
    ] {
        let path = ws.target_file(file, text);
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
    }
    for dir in [ws.target_dir(), ws.target_dir().join("src")] {
        std::fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
    }
    // Reports inside the target, as with the defaults (`--target .`, `./reports`).
    let reports = ws.target_dir().join("out");
    let before = tree_digest(&ws.target_dir(), &["out"]);
    let listener_run = unique("listener");
    let (listener, ip) = start_listener(&image, &listener_run).await;
    let address = format!("connect:{ip}:{PORT}");

    // Plan order is name order and -j 1 runs them one by one: the victim finishes first.
    let victim = format!("a-{}", unique("victim"));
    let hostile = format!("b-{}", unique("hostile"));
    let control = format!("c-{}", unique("control"));
    ws.suite(
        &victim,
        &probe_suite(
            &image,
            &[
                "print",
                "victim log line",
                "--",
                "write",
                "/results/secret.txt",
                "victim data",
            ],
            "",
        ),
    );
    let victim_result = format!("read:/target/out/results/{victim}/secret.txt");
    let victim_log = format!("read:/target/out/logs/{victim}.log");
    ws.suite(
        &hostile,
        &probe_suite(
            &image,
            &[
                "escape-report",
                "/results/escape.json",
                &victim_result,
                &victim_log,
                &address,
                "write:/target/escaped",
            ],
            "",
        ),
    );
    // The same connection attempt from a suite whose policy allows egress: proof that the
    // attempt works, so the hostile suite's failure is the policy's doing.
    ws.suite(
        &control,
        &probe_suite(
            &image,
            &["escape-report", "/results/escape.json", &address],
            "[policy]\nnetwork = \"egress\"",
        ),
    );

    let output = ws
        .phalanx([
            "run",
            "--progress",
            "plain",
            "--target",
            "target",
            "--reports",
            "target/out",
            "-j",
            "1",
        ])
        .output()
        .unwrap();
    let run = runs::finished_in(&reports, output);
    let accepted = listener_log(&listener).await;
    support::remove_labelled(&listener_run).await;
    runs::assert_nothing_left(run.run_id()).await;

    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&read(
        &reports.join(format!("results/{hostile}/escape.json")),
    ))
    .unwrap();
    assert_eq!(report["euid"], 65534, "{report}");
    let tried = attempts(&report);
    for name in [
        "target_create",
        "target_append",
        "target_unlink",
        "setuid_binary",
        "setuid_syscall",
        "mount_tmpfs",
        "userns_mount",
        "docker_socket:/var/run/docker.sock",
        &victim_result,
        &victim_log,
        &address,
    ] {
        assert!(
            tried.iter().any(|(n, _, _)| n == name),
            "{name} was not tried: {report}"
        );
    }
    let escaped: Vec<_> = tried.iter().filter(|(_, allowed, _)| *allowed).collect();
    assert!(
        escaped.is_empty(),
        "the sandbox let these through: {escaped:?}"
    );
    // The setuid-root binary ran, but as nobody.
    let setuid = tried.iter().find(|(n, _, _)| n == "setuid_binary").unwrap();
    assert!(setuid.2.contains("euid=65534"), "{setuid:?}");

    let control: Value = serde_json::from_str(&read(
        &reports.join(format!("results/{control}/escape.json")),
    ))
    .unwrap();
    let reached = attempts(&control);
    let connect = reached.iter().find(|(n, _, _)| n == &address).unwrap();
    assert!(
        connect.1,
        "the egress control could not connect: {connect:?}"
    );
    assert_eq!(
        accepted.matches("accepted").count(),
        1,
        "only the control connected: {accepted}"
    );

    assert_eq!(
        tree_digest(&ws.target_dir(), &["out"]),
        before,
        "the target changed"
    );
}
