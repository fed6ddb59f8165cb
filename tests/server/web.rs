//! What a browser gets: the dashboard page from the binary with a strict
//! Content-Security-Policy (no inline script), and the security headers on every
//! response, API errors and metrics included.

use crate::harness::{As, Reply, Server, projects_toml};
use crate::support::Workspace;

fn assert_secured(reply: &Reply, what: &str) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
}

#[test]
fn every_response_carries_the_security_headers_and_the_page_has_no_inline_script() {
    let ws = Workspace::new();
    let config = projects_toml(&ws, "");
    let server = Server::start(ws, &config);
    let page = server.get("/", None);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_secured(&page, "/");
    // No inline script: every <script> has a src, and no element has an on* handler.
    let lower = page.body.to_ascii_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag = &lower[i..i + lower[i..].find('>').unwrap()];
        assert!(tag.contains(" src="), "inline script: {tag}");
    }
    assert!(
        !lower.contains(" onload=") && !lower.contains(" onclick="),
        "{}",
        page.body
    );

    let css = server.get("/assets/app.css", None);
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    for path in [
        "/assets/nothing.js",
        "/assets/../phalanx.toml",
        "/assets/%2e%2e/phalanx.toml",
    ] {
        let reply = server.get(path, None);
        assert!(!reply.body.contains("[[tokens]]"), "{path}");
        reply.problem(404);
    }

    for (path, who) in [
        ("/healthz", None),
        ("/api/v1/runs", None),
        ("/api/v1/runs", Some(As::Viewer)),
        ("/metrics", Some(As::Admin)),
        ("/api/v1/openapi.json", None),
        ("/nothing", None),
    ] {
        let reply = server.get(path, who);
        assert_secured(&reply, path);
        if path.starts_with("/api/") {
            assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
        }
    }
}
