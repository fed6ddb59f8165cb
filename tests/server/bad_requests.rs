//! Requests the server must refuse before anything starts: a body naming a path or any
//! key it does not know, an unknown suite, a malformed or oversized body, the wrong media
//! type. Each is a 4xx problem document saying what was wrong, and the queue stays empty.

use crate::harness::{As, Server, projects_toml};
use crate::support::Workspace;

fn server() -> Server {
    let ws = Workspace::new();
    // Never started by these tests: the image need not exist.
    ws.suite(
        "probe",
        "image = \"phalanx-test/never-run:1\"\ntags = [\"quick\"]\ncommand = [\"/probe\", \"exit\", \"0\"]\n",
    );
    ws.suite(
        "wide",
        "image = \"phalanx-test/never-run:1\"\ntags = [\"wide\"]\n[policy]\nnetwork = \"egress\"\n",
    );
    let config = projects_toml(&ws, "[projects.app.limits]\nallow_network = [\"none\"]\n");
    Server::start(ws, &config)
}

fn assert_nothing_started(server: &Server) {
    let queue = server.get("/api/v1/queue", Some(As::Admin)).json();
    assert_eq!(queue["runs"], serde_json::json!([]), "{queue}");
    let runs = server.get("/api/v1/runs", Some(As::Admin)).json();
    assert_eq!(runs["runs"], serde_json::json!([]), "{runs}");
}

#[test]
fn bodies_that_name_a_path_or_an_unknown_key_or_suite_are_refused_naming_it() {
    let server = server();
    let post = |body: &str| server.post("/api/v1/projects/app/runs", Some(As::Runner), body);
    let cases: [(&str, u16, &str); 9] = [
        (
            r#"{"suites": ["probe"], "target": "/etc"}"#,
            400,
            "`target`",
        ),
        (r#"{"path": "/"}"#, 400, "`path`"),
        (
            r#"{"suites": ["probe"], "reports": "/tmp/x"}"#,
            400,
            "`reports`",
        ),
        (r#"{"suites": ["prbe"]}"#, 400, "did you mean `probe`"),
        (
            r#"{"suites": ["../../etc/passwd"]}"#,
            400,
            "../../etc/passwd",
        ),
        (r#"{"suites": "probe"}"#, 400, "sequence"),
        (r#"{"fail_on": "urgent"}"#, 400, "urgent"),
        (r#"{"tags": ["nope"]}"#, 400, "nope"),
        (r#"{"suites": ["probe""#, 400, "EOF"),
    ];
    for (body, status, said) in cases {
        let doc = post(body).problem(status);
        let detail = doc["detail"].as_str().unwrap();
        assert!(detail.contains(said), "{body}: {detail}");
        assert_eq!(doc["instance"], "/api/v1/projects/app/runs");
    }
    // Every suite selected refused by the project's limits: nothing to run.
    let doc = post(r#"{"tags": ["wide"]}"#).problem(422);
    assert!(doc["detail"].as_str().unwrap().contains("network"), "{doc}");
    assert_nothing_started(&server);
}

#[test]
fn oversized_non_json_and_malformed_bodies_are_refused() {
    let server = server();
    let big = format!(r#"{{"suites": ["{}"]}}"#, "a".repeat(70 * 1024));
    let doc = server
        .post("/api/v1/projects/app/runs", Some(As::Runner), &big)
        .problem(413);
    assert!(doc["detail"].as_str().unwrap().contains("64 KiB"), "{doc}");
    let doc = server
        .post_as(
            "/api/v1/projects/app/runs",
            Some(As::Runner),
            "text/plain",
            b"suites=probe",
        )
        .problem(415);
    assert!(
        doc["detail"].as_str().unwrap().contains("application/json"),
        "{doc}"
    );
    let binary = server.post_as(
        "/api/v1/projects/app/runs",
        Some(As::Runner),
        "application/json",
        &[0xff, 0xfe, 0x00, 0x7b],
    );
    binary.problem(400);
    server
        .get_with(
            "/api/v1/runs/x/events",
            &[
                (
                    "Authorization",
                    &format!("Bearer {}", server.token(As::Viewer)),
                ),
                ("Last-Event-ID", "-1"),
            ],
        )
        .problem(400);
    // Unknown routes and methods are problems too.
    server.get("/api/v1/nothing", Some(As::Viewer)).problem(404);
    let doc = server
        .get("/api/v1/projects/app/runs", Some(As::Runner))
        .problem(405);
    assert!(doc["detail"].as_str().unwrap().contains("Allow"), "{doc}");
    assert_nothing_started(&server);
}
