//! Who may do what: 401 without a token or with one the server does not know, 403 for a
//! role or project the token does not have, 404 for a run of a project it does not see
//! (as for a run that does not exist, so that nothing leaks), `/healthz` open.

use crate::harness::{As, Server, projects_toml, seed_run};
use crate::support::Workspace;

fn server() -> Server {
    let ws = Workspace::new();
    seed_run(&ws, Some("app"), "apprun", 0);
    seed_run(&ws, Some("other"), "otherrun", 10);
    let config = projects_toml(&ws, "");
    Server::start(ws, &config)
}

#[test]
fn no_token_or_an_unknown_one_is_401_and_health_is_open() {
    let server = server();
    assert_eq!(server.get("/healthz", None).status, 200);
    for path in [
        "/api/v1/runs",
        "/api/v1/projects",
        "/api/v1/runs/apprun",
        "/api/v1/queue",
        "/api/v1/events",
        "/metrics",
    ] {
        let reply = server.get(path, None);
        reply.problem(401);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"phalanx\"")
        );
        for header in [
            "Bearer phx_0000",
            "Basic dXNlcjpwYXNz",
            "phx_0000",
            "Bearer ",
        ] {
            let reply = server.get_with(path, &[("Authorization", header)]);
            reply.problem(401);
        }
    }
    // A token is checked whole: its start is not enough.
    let token = server.token(As::Admin);
    let cut = format!("Bearer {}", &token[..token.len() - 1]);
    server
        .get_with("/api/v1/runs", &[("Authorization", &cut)])
        .problem(401);
    // The scheme is case-insensitive (RFC 9110).
    let lower = format!("bearer {token}");
    assert_eq!(
        server
            .get_with("/api/v1/runs", &[("Authorization", &lower)])
            .status,
        200
    );
    server
        .post("/api/v1/projects/app/runs", None, "{}")
        .problem(401);
}

#[test]
fn roles_and_projects_are_enforced_and_other_projects_runs_do_not_exist() {
    let server = server();
    // Projects: each token sees its own.
    let names = |who| {
        let reply = server.get("/api/v1/projects", Some(who));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(As::Viewer), ["app"]);
    assert_eq!(names(As::OtherRunner), ["other"]);
    assert_eq!(names(As::Admin), ["app", "other"]);

    // A run of another project is a 404 everywhere, exactly like a run that is not there.
    let hidden = [
        "/api/v1/runs/otherrun",
        "/api/v1/runs/otherrun/findings",
        "/api/v1/runs/otherrun/events",
        "/api/v1/runs/otherrun/reports/run.json",
    ];
    for path in hidden {
        let reply = server.get(path, Some(As::Viewer));
        let absent = server.get(&path.replace("otherrun", "nosuchrun"), Some(As::Viewer));
        let doc = reply.problem(404);
        let absent_doc = absent.problem(404);
        assert_eq!(doc["type"], absent_doc["type"], "{path}");
        assert_eq!(
            doc["detail"].as_str().unwrap().replace("otherrun", "X"),
            absent_doc["detail"]
                .as_str()
                .unwrap()
                .replace("nosuchrun", "X"),
            "{path}"
        );
    }
    server
        .post("/api/v1/runs/otherrun/cancel", Some(As::Runner), "")
        .problem(404);
    assert_eq!(
        server.get("/api/v1/runs/apprun", Some(As::Viewer)).status,
        200
    );
    assert_eq!(
        server
            .get("/api/v1/runs/otherrun", Some(As::OtherRunner))
            .status,
        200
    );

    // Role: a viewer may not trigger or cancel; project: a runner only its own.
    let doc = server
        .post("/api/v1/projects/app/runs", Some(As::Viewer), "{}")
        .problem(403);
    assert!(doc["detail"].as_str().unwrap().contains("runner"), "{doc}");
    server
        .post("/api/v1/projects/app/runs", Some(As::OtherRunner), "{}")
        .problem(403);
    server
        .post("/api/v1/projects/other/runs", Some(As::Runner), "{}")
        .problem(403);
    server
        .post("/api/v1/runs/apprun/cancel", Some(As::Viewer), "")
        .problem(403);
    // A recorded run cannot be cancelled: 409, for one who may cancel.
    server
        .post("/api/v1/runs/apprun/cancel", Some(As::Runner), "")
        .problem(409);
    // A project that is not configured is 404 for everyone.
    server
        .post("/api/v1/projects/nope/runs", Some(As::Admin), "{}")
        .problem(404);

    // Metrics span every project: a token for some projects only may not read them.
    server.get("/metrics", Some(As::Viewer)).problem(403);
    assert_eq!(server.get("/metrics", Some(As::Watcher)).status, 200);
}
