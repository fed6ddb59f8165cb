//! The OpenAPI document the server publishes: an OpenAPI 3.1 document whose references
//! all resolve, that lists every route the server answers and only those, each operation
//! with its responses and (but for the open ones) the bearer token; and, where Python's
//! `openapi-spec-validator` is installed (.ci/run installs it), valid by that validator.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{As, Server, projects_toml};
use crate::support::Workspace;

fn document() -> (Server, Value) {
    let ws = Workspace::new();
    let config = projects_toml(&ws, "");
    let server = Server::start(ws, &config);
    let reply = server.get("/api/v1/openapi.json", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    (server, doc)
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_1_and_covers_every_route() {
    let (server, doc) = document();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    assert!(!all_refs.is_empty());
    for r in all_refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the schemas: {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }

    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/api/v1/openapi.json", "get"),
        ("/api/v1/projects", "get"),
        ("/api/v1/projects/{project}/runs", "post"),
        ("/api/v1/runs", "get"),
        ("/api/v1/runs/{run_id}", "get"),
        ("/api/v1/runs/{run_id}/findings", "get"),
        ("/api/v1/runs/{run_id}/cancel", "post"),
        ("/api/v1/runs/{run_id}/reports/{name}", "get"),
        ("/api/v1/runs/{run_id}/events", "get"),
        ("/api/v1/events", "get"),
        ("/api/v1/queue", "get"),
    ];
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            documented.push((path.clone(), method.clone()));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            let open = path == "/healthz" || path == "/api/v1/openapi.json";
            assert_eq!(
                op["security"].is_array(),
                !open,
                "{method} {path}: security"
            );
            // Each parameter of the path is declared.
            for param in path.split('/').filter_map(|s| s.strip_prefix('{')) {
                let name = param.trim_end_matches('}');
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{method} {path}: parameter {name}");
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // And the server answers each of them (no "no such route"), as documented.
    for (path, method) in &documented {
        let concrete = path
            .replace("{project}", "app")
            .replace("{run_id}", "nosuchrun")
            .replace("{name}", "run.json");
        let reply = match method.as_str() {
            "get" if concrete.ends_with("/events") && concrete.starts_with("/api/v1/events") => {
                continue; // a live stream that does not end: its route is checked by access
            }
            "get" => server.get(&concrete, Some(As::Admin)),
            _ => server.post(&concrete, Some(As::Viewer), "{}"),
        };
        let body: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        let kind = body["type"].as_str().unwrap_or("").to_string();
        assert!(
            reply.status != 405 && !kind.ends_with("no-such-route"),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    }
}

#[test]
fn the_document_passes_openapi_spec_validator() {
    let check = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output();
    if !check.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipping: Python's openapi-spec-validator is not installed (pip install openapi-spec-validator)"
        );
        return;
    }
    let (_server, doc) = document();
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(sys.stdin))\nprint('valid')",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenAPI document is invalid:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
