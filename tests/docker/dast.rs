//! Dynamic testing (README "Dynamic testing"): services started on the run's private
//! network, and the suites that need them.
//!
//! - with the shipped dynamic suites and the demo apps as the service: sqlmap and Wapiti
//!   find the planted SQL injection in `examples/vulnerable-app` (rule, URL and parameter
//!   in the merged SARIF and in JUnit), and everything passes on `examples/clean-app`;
//! - isolation, from inside a `network = "target"` suite: the service answers by name,
//!   while the host, a container of the test's own on the default bridge and (so) anything
//!   beyond do not; a `network = "none"` suite of the same run cannot reach the service;
//!   the service is started once for the two suites that need it;
//! - a service that exits at once and one that never gets ready make their suites errors
//!   quoting the last readiness failure and the end of the service's log;
//! - a dynamic suite that times out, and a run interrupted by SIGINT during one, leave no
//!   container or network behind.
//!
//! Every address tried is one of a container this test started, or of a listener it runs
//! itself; nothing else is ever addressed.

use crate::hostile_probe::{PORT, listener_log, start_listener};
use crate::runs::{self, assert_nothing_left, finished, probe_suite, read};
use crate::support::{self, Workspace, probe_image, unique};

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// The probe as a service that accepts TCP connections on 8080 (and prints each peer).
fn listening_service(image: &str, extra: &str) -> String {
    format!(
        "image = {image:?}\ncommand = [\"/probe\", \"listen\", \"8080\", \"600\"]\nport = 8080\n\
         ready_timeout = \"30s\"\n[ready]\ntcp = true\n{extra}"
    )
}

/// A suite in the Debian base (bash, for `/dev/tcp` and name lookups) running `script`.
fn bash_suite(script: &str, needs: &[&str], network: &str, env: &str) -> String {
    let needs: Vec<String> = needs.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "image = \"phalanx/base:bookworm\"\ncommand = [\"bash\", \"-c\", {script:?}]\n\
         needs = [{}]\nenv = {{ {env} }}\ntimeout = \"2m\"\n[policy]\nnetwork = {network:?}\n",
        needs.join(", ")
    )
}

/// The base image the bash suites run in (and the readiness check needs), made once.
async fn base_image() {
    let _lock = support::image_build_lock();
    let log = std::env::temp_dir()
        .join(unique("phalanx-dast-base"))
        .with_extension("log");
    phalanx::engine::base::ensure_base(&support::docker().await, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
}

/// Tries each `name host port` of the arguments and writes `name reached|blocked why` lines
/// to /results/reach.txt. `gateway` as the host means the default route's gateway: the
/// host's end of the network, if it had one.
const REACH: &str = r#"
out=/results/reach.txt
gw=$(awk 'NR > 1 && $2 == "00000000" { print $3; exit }' /proc/net/route)
gateway=none
[ -n "$gw" ] && gateway=$(printf '%d.%d.%d.%d' "0x${gw:6:2}" "0x${gw:4:2}" "0x${gw:2:2}" "0x${gw:0:2}")
set -- $TRIES
while [ "$#" -ge 3 ]; do
  name=$1 host=$2 port=$3; shift 3
  [ "$host" = gateway ] && host=$gateway
  if timeout 6 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/tmp/why; then
    echo "$name reached $host:$port" >> $out
  else
    echo "$name blocked $host:$port $(tr '\n' ' ' < /tmp/why)" >> $out
  fi
done
cat $out
"#;

fn reach_lines(ws: &Workspace, suite: &str) -> Vec<String> {
    read(&ws.reports_dir().join(format!("results/{suite}/reach.txt")))
        .lines()
        .map(str::to_string)
        .collect()
}

fn line_of<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} was not tried: {lines:?}"))
}

/// The events of `--events PATH`, one JSON object each.
fn events(path: &Path) -> Vec<Value> {
    read(path)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event is JSON"))
        .collect()
}

/// A TCP listener on every address of this host, on a free port, counting connections:
/// what a container would reach if the network had a way to the host.
fn host_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_dynamic_suite_reaches_its_service_by_name_and_nothing_else() {
    let image = probe_image().await;
    base_image().await;
    let ws = Workspace::new();
    let service = unique("svc");
    ws.service(&service, &listening_service(&image, ""));
    let listener_run = unique("listener");
    let (listener, bridge_ip) = start_listener(&image, &listener_run).await;
    let (host_port, host_accepted) = host_listener();

    let inside = format!("a-{}", unique("inside"));
    let second = format!("b-{}", unique("second"));
    let outside = format!("c-{}", unique("outside"));
    let tries =
        format!("service {service} 8080 bridge {bridge_ip} {PORT} host gateway {host_port}");
    ws.suite(
        &inside,
        &bash_suite(REACH, &[&service], "target", &format!("TRIES = {tries:?}")),
    );
    let again = format!("service {service} 8080");
    ws.suite(
        &second,
        &bash_suite(REACH, &[&service], "target", &format!("TRIES = {again:?}")),
    );
    ws.suite(
        &outside,
        &bash_suite(REACH, &[], "none", &format!("TRIES = {again:?}")),
    );
    let events_path = ws.root().join("events.jsonl");
    let output = ws
        .phalanx([
            "run",
            "--progress",
            "plain",
            "--target",
            "target",
            "--events",
            events_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let run = finished(&ws, output);
    let bridge_log = listener_log(&listener).await;
    support::remove_labelled(&listener_run).await;
    assert_nothing_left(run.run_id()).await;

    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.json);
    let inside_lines = reach_lines(&ws, &inside);
    assert!(
        line_of(&inside_lines, "service").starts_with("service reached "),
        "{inside_lines:?}"
    );
    for name in ["bridge", "host"] {
        assert!(
            line_of(&inside_lines, name).contains(" blocked "),
            "{name}: {inside_lines:?}"
        );
    }
    assert!(
        line_of(&reach_lines(&ws, &second), "service").contains(" reached "),
        "the second suite of the service"
    );
    let outside_lines = reach_lines(&ws, &outside);
    assert!(
        line_of(&outside_lines, "service").contains(" blocked "),
        "a network = none suite reached the service: {outside_lines:?}"
    );
    assert_eq!(
        host_accepted.load(Ordering::SeqCst),
        0,
        "the host was reached"
    );
    assert!(
        !bridge_log.contains("accepted"),
        "the default bridge was reached: {bridge_log}"
    );
    // Started once, for both suites, and its log kept.
    let events = events(&events_path);
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "service-started")
        .collect();
    assert_eq!(started.len(), 1, "{events:?}");
    assert_eq!(started[0]["service"], service.as_str());
    assert_eq!(started[0]["suites"], serde_json::json!([inside, second]));
    let log = read(&ws.reports_dir().join(format!("logs/service-{service}.log")));
    assert_eq!(log.matches("listening on 8080").count(), 1, "{log}");
    // The readiness check and the two suites that need it; not the `none` one.
    assert_eq!(log.matches("accepted").count(), 3, "{log}");
}

#[tokio::test]
async fn a_service_that_dies_or_never_gets_ready_makes_its_suites_errors() {
    let image = probe_image().await;
    base_image().await;
    let ws = Workspace::new();
    let dies = unique("dies");
    let sleepy = unique("sleepy");
    ws.service(
        &dies,
        &format!(
            "image = {image:?}\ncommand = [\"/probe\", \"print\", \"cannot open the database\", \
             \"--\", \"exit\", \"3\"]\nport = 8080\n"
        ),
    );
    ws.service(
        &sleepy,
        &format!(
            "image = {image:?}\ncommand = [\"/probe\", \"print\", \"warming up forever\", \
             \"--\", \"sleep\", \"600\"]\nport = 8080\nready_timeout = \"3s\"\n\
             [ready]\nhttp = \"/health\"\n"
        ),
    );
    let on_dies = unique("on-dies");
    let on_sleepy = unique("on-sleepy");
    let plain = unique("plain");
    let target = "[policy]\nnetwork = \"target\"";
    ws.suite(
        &on_dies,
        &probe_suite(
            &image,
            &["exit", "0"],
            &format!("needs = [{dies:?}]\n{target}"),
        ),
    );
    ws.suite(
        &on_sleepy,
        &probe_suite(
            &image,
            &["exit", "0"],
            &format!("needs = [{sleepy:?}]\n{target}"),
        ),
    );
    ws.suite(&plain, &probe_suite(&image, &["exit", "0"], ""));

    let run = runs::run(&ws, &[]).await;

    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.outcome(&plain), "passed");
    let died = run.suite(&on_dies);
    assert_eq!(died["outcome"], "error", "{died}");
    assert_eq!(died["cause"]["kind"], "service-exited", "{died}");
    assert_eq!(died["cause"]["service"], dies.as_str());
    assert_eq!(died["cause"]["exit_code"], 3);
    assert!(
        died["cause"]["log_tail"]
            .as_str()
            .unwrap()
            .contains("cannot open the database"),
        "{died}"
    );
    let waited = run.suite(&on_sleepy);
    assert_eq!(waited["outcome"], "error", "{waited}");
    assert_eq!(waited["cause"]["kind"], "service-not-ready", "{waited}");
    assert_eq!(waited["cause"]["limit_secs"], 3.0);
    let last = waited["cause"]["last_failure"].as_str().unwrap();
    assert!(last.contains("refused"), "{waited}");
    assert!(
        waited["reason"]
            .as_str()
            .unwrap()
            .contains("warming up forever"),
        "{waited}"
    );
    // The suites that needed them never ran.
    assert!(died["container_id"].is_null() && waited["container_id"].is_null());
    for service in [&dies, &sleepy] {
        let log = ws.reports_dir().join(format!("logs/service-{service}.log"));
        assert!(log.is_file(), "{}", log.display());
    }
}

#[tokio::test]
async fn a_timed_out_or_interrupted_dynamic_suite_leaves_nothing_behind() {
    let image = probe_image().await;
    base_image().await;
    let ws = Workspace::new();
    let service = unique("svc");
    ws.service(&service, &listening_service(&image, ""));
    let slow = unique("slow");
    let needs = format!("needs = [{service:?}]\ntimeout = \"3s\"\n[policy]\nnetwork = \"target\"");
    ws.suite(&slow, &probe_suite(&image, &["sleep", "600"], &needs));

    let run = runs::run(&ws, &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(&slow), "timed-out");

    // The same suite without a time limit, interrupted while it runs.
    let ws = Workspace::new();
    ws.service(&service, &listening_service(&image, ""));
    let needs = format!("needs = [{service:?}]\n[policy]\nnetwork = \"target\"");
    ws.suite(&slow, &probe_suite(&image, &["sleep", "600"], &needs));
    let run = runs::interrupted_while(&ws, &slow).await;
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert_eq!(run.outcome(&slow), "cancelled");
    assert!(
        ws.reports_dir()
            .join(format!("logs/service-{service}.log"))
            .is_file()
    );
}

/// `phalanx images` for the dynamic suites and their service, once per test process.
async fn dast_images() {
    static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let _lock = support::image_build_lock();
            let ws = Workspace::new();
            let repo = repo();
            let output = ws
                .phalanx(["images", "--tag", "dast", "--suites"])
                .arg(repo.join("suites"))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        })
        .await;
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `phalanx run --tag dast` with the shipped suites and service on a demo app.
async fn dast_run(app: &str) -> (Workspace, runs::Run) {
    dast_images().await;
    let ws = Workspace::new();
    let output = ws
        .phalanx(["run", "--progress", "plain", "--tag", "dast", "--suites"])
        .arg(repo().join("suites"))
        .arg("--target")
        .arg(repo().join(app))
        .arg("--reports")
        .arg(ws.reports_dir())
        .arg("--no-store")
        .output()
        .unwrap();
    let run = finished(&ws, output);
    assert_nothing_left(run.run_id()).await;
    (ws, run)
}

/// The results of the merged SARIF run of `suite`.
fn sarif_results(ws: &Workspace, suite: &str) -> Vec<Value> {
    let sarif: Value =
        serde_json::from_str(&read(&ws.reports_dir().join("results.sarif"))).unwrap();
    sarif["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["automationDetails"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(suite))
        })
        .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn the_dynamic_suites_find_the_planted_sql_injection_and_pass_the_clean_app() {
    let (ws, run) = dast_run("examples/vulnerable-app").await;
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.json);
    assert_eq!(run.outcome("sqlmap"), "failed", "{}", run.reason("sqlmap"));
    assert_eq!(run.outcome("wapiti"), "failed", "{}", run.reason("wapiti"));
    assert_eq!(run.outcome("nmap"), "passed", "{}", run.reason("nmap"));

    let sqli: Vec<Value> = sarif_results(&ws, "sqlmap")
        .into_iter()
        .filter(|r| r["ruleId"] == "sqlmap.sql-injection")
        .collect();
    assert_eq!(sqli.len(), 1, "{sqli:?}");
    let request = &sqli[0]["webRequest"];
    assert_eq!(request["method"], "GET");
    assert_eq!(request["target"], "http://app:8080/notes?author=alice");
    assert_eq!(request["parameters"]["author"], "alice");
    assert_eq!(sqli[0]["properties"]["parameter"], "author");
    let uri = &sqli[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"];
    assert_eq!(uri, "http://app:8080/notes");
    let wapiti: Vec<String> = sarif_results(&ws, "wapiti")
        .iter()
        .map(|r| format!("{} {}", r["ruleId"].as_str().unwrap(), r["message"]["text"]))
        .collect();
    for expected in [
        "wapiti.sql-injection",
        "wapiti.command-execution",
        "wapiti.http-secure-headers",
    ] {
        assert!(
            wapiti.iter().any(|r| r.starts_with(expected)),
            "{expected} not in {wapiti:?}"
        );
    }

    let junit = read(&ws.reports_dir().join("junit.xml"));
    let case = junit
        .split("<testcase")
        .find(|c| c.contains("name=\"sqlmap.sql-injection\""))
        .unwrap_or_else(|| panic!("no sqlmap.sql-injection case in {junit}"));
    assert!(case.contains("<failure"), "{case}");
    assert!(case.contains("http://app:8080/notes"), "{case}");
    assert!(case.contains("parameter `author`"), "{case}");

    let (_ws, clean) = dast_run("examples/clean-app").await;
    assert_eq!(clean.code, 0, "{}\n{}", clean.stderr, clean.json);
    for suite in ["sqlmap", "wapiti", "nmap"] {
        assert_eq!(
            clean.outcome(suite),
            "passed",
            "{suite}: {}",
            clean.reason(suite)
        );
    }
}

#[test]
fn the_host_listener_counts_what_reaches_it() {
    // The isolation test trusts this listener to notice a connection from a container.
    let (port, accepted) = host_listener();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
