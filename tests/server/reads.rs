//! Reading recorded runs through the API: pages newest first with a cursor, one run with
//! its suites, findings filtered by severity, suite and state, and the run's report files,
//! served only by their fixed names. The runs are recorded into the server's real store
//! before it starts, so these tests need no engine.

use crate::harness::{As, Server, projects_toml, seed_run};
use crate::support::Workspace;

fn server_with_runs() -> Server {
    let ws = Workspace::new();
    for (i, id) in ["a1", "a2", "a3", "a4", "a5"].iter().enumerate() {
        seed_run(&ws, Some("app"), id, i as i64 * 60);
    }
    seed_run(&ws, Some("other"), "o1", 30);
    seed_run(&ws, None, "cli1", 90);
    let config = projects_toml(&ws, "");
    Server::start(ws, &config)
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn runs_come_newest_first_a_page_at_a_time_and_only_those_the_token_sees() {
    let server = server_with_runs();
    // The viewer of app: app's runs only, two at a time, no repeat, no gap.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/runs?limit=2&cursor={c}"),
            None => "/api/v1/runs?limit=2".to_string(),
        };
        let page = server.get(&path, Some(As::Viewer));
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        seen.extend(ids(&page));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["a5", "a4", "a3", "a2", "a1"]);

    // Every project's token sees every run, the one made without a project too.
    let all = server.get("/api/v1/runs", Some(As::Admin)).json();
    assert_eq!(ids(&all), ["a5", "a4", "a3", "cli1", "a2", "o1", "a1"]);
    let run = &all["runs"][0];
    assert_eq!(run["project"], "app");
    assert_eq!(run["state"], "finished");
    assert_eq!(run["url"], "/api/v1/runs/a5");
    assert_eq!(run["findings"]["low"], 1);

    let other = server
        .get("/api/v1/runs?project=other", Some(As::Admin))
        .json();
    assert_eq!(ids(&other), ["o1"]);
    // Asking for another project's runs by name is refused, not silently emptied.
    let refused = server.get("/api/v1/runs?project=other", Some(As::Viewer));
    refused.problem(403);

    let bad = server.get("/api/v1/runs?cursor=../../x", Some(As::Viewer));
    assert!(
        bad.problem(400)["detail"]
            .as_str()
            .unwrap()
            .contains("cursor")
    );
    server
        .get("/api/v1/runs?limit=0", Some(As::Viewer))
        .problem(400);
    let unknown = server.get("/api/v1/runs?limt=2", Some(As::Viewer));
    assert!(
        unknown.problem(400)["detail"]
            .as_str()
            .unwrap()
            .contains("limt")
    );
}

#[test]
fn a_run_and_its_findings_filtered_by_severity_suite_and_state() {
    let server = server_with_runs();
    let run = server.get("/api/v1/runs/a3", Some(As::Viewer));
    assert_eq!(run.status, 200, "{}", run.body);
    let run = run.json();
    assert_eq!(run["run_id"], "a3");
    assert_eq!(run["suites"][0]["name"], "bandit");
    // Judged before the test suppressed its high finding: failed.
    assert_eq!(run["suites"][0]["state"], "failed");
    assert_eq!(run["links"]["findings"], "/api/v1/runs/a3/findings");
    assert_eq!(
        run["links"]["reports"]["results.sarif"],
        "/api/v1/runs/a3/reports/results.sarif"
    );

    let findings = |query: &str| {
        let reply = server.get(
            &format!("/api/v1/runs/a3/findings{query}"),
            Some(As::Viewer),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let page = reply.json();
        page["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {} {}",
                    f["rule"].as_str().unwrap(),
                    f["severity"].as_str().unwrap(),
                    f["state"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    // Most severe first.
    assert_eq!(findings(""), ["B602 high suppressed", "B105 low unchanged"]);
    assert_eq!(findings("?severity=low"), ["B105 low unchanged"]);
    assert_eq!(
        findings("?severity=critical,high"),
        ["B602 high suppressed"]
    );
    assert_eq!(findings("?state=suppressed"), ["B602 high suppressed"]);
    assert_eq!(findings("?state=unchanged"), ["B105 low unchanged"]);
    assert!(findings("?state=new").is_empty());
    assert!(findings("?suite=zap").is_empty());
    assert_eq!(findings("?suite=bandit&limit=1").len(), 1);

    // A page of one, then the next from its cursor.
    let first = server
        .get("/api/v1/runs/a3/findings?limit=1", Some(As::Viewer))
        .json();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = server
        .get(
            &format!("/api/v1/runs/a3/findings?limit=1&cursor={cursor}"),
            Some(As::Viewer),
        )
        .json();
    assert_eq!(second["findings"][0]["rule"], "B105");
    assert!(second["next_cursor"].is_null());

    let bad = server.get("/api/v1/runs/a3/findings?severity=urgent", Some(As::Viewer));
    assert!(
        bad.problem(400)["detail"]
            .as_str()
            .unwrap()
            .contains("urgent")
    );
    server
        .get("/api/v1/runs/a3/findings?state=fixed", Some(As::Viewer))
        .problem(400);
    server
        .get("/api/v1/runs/nope", Some(As::Viewer))
        .problem(404);
}

#[test]
fn reports_are_served_by_their_fixed_names_from_the_run_folder_only() {
    let server = server_with_runs();
    let dir = server.ws.reports_dir().join("runs").join("a2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("junit.xml"), "<testsuites/>").unwrap();
    std::fs::write(dir.join("report.html"), "<html>not served</html>").unwrap();
    std::fs::write(server.ws.root().join("secret.txt"), "TOP-SECRET-CONTENT").unwrap();

    let junit = server.get("/api/v1/runs/a2/reports/junit.xml", Some(As::Viewer));
    assert_eq!(junit.status, 200, "{}", junit.body);
    assert_eq!(junit.body, "<testsuites/>");
    assert_eq!(junit.header("content-type"), Some("application/xml"));

    // Written files other than the three, and anything outside, are never served.
    for path in [
        "/api/v1/runs/a2/reports/report.html",
        "/api/v1/runs/a2/reports/..%2F..%2F..%2Fsecret.txt",
        "/api/v1/runs/a2/reports/%2E%2E",
        "/api/v1/runs/..%2F..%2Fsecret.txt/reports/junit.xml",
        "/api/v1/runs/a2/reports/junit.xml%00",
    ] {
        let reply = server.get(path, Some(As::Viewer));
        assert!(!reply.body.contains("TOP-SECRET"), "{path}: {}", reply.body);
        assert!(!reply.body.contains("not served"), "{path}: {}", reply.body);
        reply.problem(404);
    }
    // A name it serves, but not written for this run: 404 saying so.
    let missing = server.get("/api/v1/runs/a2/reports/run.json", Some(As::Viewer));
    assert!(
        missing.problem(404)["detail"]
            .as_str()
            .unwrap()
            .contains("run.json")
    );
}
