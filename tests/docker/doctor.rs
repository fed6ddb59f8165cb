//! `phalanx doctor` and the run's prerequisite check, against machine states where each
//! check fails: an unreachable `DOCKER_HOST`, a missing `debootstrap` while the base image
//! is missing, a reports folder that cannot be written, invalid config files. Each runs the
//! real binary in a workspace of its own against the real engine (or none).
//!
//! How the states are made, without touching what other tests on this engine use:
//! - no engine: `DOCKER_HOST` names a socket in a fresh temp dir that does not exist;
//! - base image missing: the engine is reached through the test proxy (`engine_proxy`),
//!   which answers 404 for that image (and refuses builds and imports, so nothing is made);
//! - no debootstrap: `PATH` lacks it, and since Phalanx also looks in the sbin directories
//!   (CI shells often lack them on `PATH`), the child runs in a private mount namespace
//!   (`unshare --mount`) with `/dev/null` bound over each debootstrap there;
//! - unwritable reports: root ignores permission bits, so the folder is below a regular
//!   file (`ENOTDIR` stops root too).

use crate::engine_proxy;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use engine_proxy::EngineProxy;
use serde_json::Value;
use support::{Workspace, unique};

const BASE: &str = "phalanx/base:bookworm";
/// Absolute, because the child's `PATH` is an empty folder.
const UNSHARE: &str = "/usr/bin/unshare";
const MOUNT: &str = "/usr/bin/mount";

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("phalanx runs"))
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A suite whose image does not exist and is built `FROM` the base image.
fn suite_built_from_base(ws: &Workspace, name: &str, image: &str) {
    let ctx = ws.root().join(format!("ctx-{name}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {BASE}\nRUN true\n")).unwrap();
    ws.suite(
        name,
        &format!("image = \"{image}\"\nbuild = \"../ctx-{name}\"\ncommand = [\"true\"]\n"),
    );
}

fn doctor_json(out: &Output) -> Value {
    serde_json::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{}", text(&out.stdout)))
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {doc}"))
}

fn run_json(path: &Path) -> Value {
    let body =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no {}: {e}", path.display()));
    serde_json::from_str(&body).unwrap()
}

/// Every suite of the run ended in error with a reason containing `cause`.
fn assert_all_errored(run: &Value, names: &[&str], cause: &str) {
    let suites = run["suites"].as_array().unwrap();
    assert_eq!(suites.len(), names.len(), "{run}");
    for suite in suites {
        assert!(names.contains(&suite["name"].as_str().unwrap()), "{suite}");
        assert_eq!(suite["outcome"], "error", "{suite}");
        let reason = suite["reason"].as_str().unwrap();
        assert!(reason.contains(cause), "{reason}");
    }
}

#[tokio::test]
async fn an_unreachable_engine_is_named_with_its_fix_and_fails_the_run_at_once() {
    let ws = Workspace::new();
    ws.suite("a", "image = \"phalanx-test/none:1\"\n");
    ws.suite("b", "image = \"phalanx-test/none:1\"\n");
    let gone = tempfile::tempdir().unwrap();
    let host = format!("unix://{}", gone.path().join("docker.sock").display());

    let mut cmd = ws.phalanx(["doctor"]);
    cmd.env("DOCKER_HOST", &host);
    let out = output(cmd).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("FAIL  engine") && stdout.contains(&host),
        "{stdout}"
    );
    assert!(stdout.contains("fix: start the Docker engine"), "{stdout}");
    assert!(stdout.contains("unset DOCKER_HOST"), "{stdout}");

    let mut cmd = ws.phalanx(["doctor", "--json"]);
    cmd.env("DOCKER_HOST", &host);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(3));
    let doc = doctor_json(&out);
    assert_eq!(doc["ok"], false);
    assert_eq!(check(&doc, "engine")["status"], "fail");
    assert!(
        check(&doc, "engine")["fix"]
            .as_str()
            .unwrap()
            .contains("DOCKER_HOST")
    );
    assert_eq!(check(&doc, "suite files")["status"], "ok");

    let mut cmd = ws.phalanx(["run", "--progress", "plain", "--target", "target"]);
    cmd.env("DOCKER_HOST", &host);
    let out = output(cmd).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        stderr.matches("cannot reach the Docker engine").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("Set DOCKER_HOST"), "{stderr}");
    let run = run_json(&ws.reports_dir().join("run.json"));
    assert_all_errored(&run, &["a", "b"], "cannot reach the Docker engine");
    assert!(ws.reports_dir().join("junit.xml").is_file());
}

/// A proxy to the real engine on which the base image is missing, and on which nothing
/// can be built or imported (so a test that went wrong cannot replace the real image).
fn proxy_without_base() -> EngineProxy {
    let proxy = EngineProxy::start();
    let base_paths = [
        format!("/images/{BASE}/json"),
        format!("/images/{}/json", BASE.replace('/', "%2F")),
    ];
    proxy.fail(u32::MAX, 404, move |method, path| {
        let path = path.split_once("/images/").map_or(path, |(_, rest)| rest);
        method == "GET" && base_paths.iter().any(|p| p.ends_with(path))
    });
    proxy.fail(u32::MAX, 500, |method, path| {
        method == "POST" && (path.contains("/build") || path.contains("/images/create"))
    });
    proxy
}

/// Every debootstrap Phalanx could find: on the standard directories it searches.
fn debootstraps() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .filter_map(|dir| Path::new(dir).join("debootstrap").canonicalize().ok())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// `phalanx ARGS` in a private mount namespace where no debootstrap exists and `PATH` is
/// an empty folder; `None` when this machine does not allow a mount namespace.
fn without_debootstrap(ws: &Workspace, proxy: &EngineProxy, args: &[&str]) -> Option<Command> {
    let allowed = Command::new(UNSHARE)
        .args(["--mount", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!(
            "skipping: `unshare --mount` is not allowed here, so debootstrap cannot be hidden"
        );
        return None;
    }
    let masks: Vec<String> = debootstraps()
        .iter()
        .map(|p| format!("{MOUNT} --bind /dev/null {} && ", p.display()))
        .collect();
    let script = format!("{}exec \"$0\" \"$@\"", masks.concat());
    let empty = ws.root().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = ws.command(
        UNSHARE,
        [
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    cmd.arg(env!("CARGO_BIN_EXE_phalanx"))
        .args(args)
        .env("DOCKER_HOST", proxy.docker_host())
        .env("PATH", &empty);
    Some(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_debootstrap_is_said_once_with_its_fix_and_no_suite_starts() {
    let ws = Workspace::new();
    let images = [
        unique("phalanx-test/doctor-a"),
        unique("phalanx-test/doctor-b"),
    ];
    let names = ["one", "two", "three"];
    suite_built_from_base(&ws, "one", &format!("{}:1", images[0]));
    suite_built_from_base(&ws, "two", &format!("{}:1", images[0]));
    suite_built_from_base(&ws, "three", &format!("{}:1", images[1]));
    let proxy = proxy_without_base();

    let Some(cmd) = without_debootstrap(&ws, &proxy, &["doctor"]) else {
        return;
    };
    let out = output(cmd).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("FAIL  base image"), "{stdout}");
    assert!(
        stdout.contains("fix: install it with `apt-get install debootstrap`"),
        "{stdout}"
    );
    assert!(stdout.contains("one, two, three"), "{stdout}");

    let args = ["run", "--progress", "plain", "--target", "target"];
    let cmd = without_debootstrap(&ws, &proxy, &args).unwrap();
    let out = output(cmd).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    // One whole message on stderr, with the fix, instead of one cut line per suite.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("debootstrap"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = lines[0];
    assert!(
        line.starts_with("error: building image phalanx/base:bookworm needs `debootstrap`"),
        "{line}"
    );
    assert!(
        line.ends_with("or make the image by hand as docker/base/README.md describes"),
        "{line}"
    );
    // The summary groups the three suites under that one cause, in full.
    assert!(
        stdout.contains("  3 suites: building image phalanx/base:bookworm"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("apt-get install debootstrap").count(),
        1,
        "{stdout}"
    );
    let run = run_json(&ws.reports_dir().join("run.json"));
    assert_all_errored(&run, &names, "apt-get install debootstrap");
    assert!(ws.reports_dir().join("junit.xml").is_file());
    assert!(ws.reports_dir().join("results.sarif").is_file());
    let started: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|(line, _)| line.starts_with("POST"))
        .collect();
    assert!(
        started.is_empty(),
        "nothing may be built or created: {started:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_reports_folder_is_said_once_and_the_other_reports_are_written() {
    let ws = Workspace::new();
    suite_built_from_base(
        &ws,
        "one",
        &format!("{}:1", unique("phalanx-test/doctor-r")),
    );
    ws.suite("two", "image = \"phalanx-test/none:1\"\n");
    let file = ws.root().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let reports = file.join("reports");
    let reports_arg = reports.to_str().unwrap();
    let proxy = EngineProxy::start();

    let mut cmd = ws.phalanx(["doctor", "--reports", reports_arg]);
    cmd.env("DOCKER_HOST", proxy.docker_host());
    let out = output(cmd).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("FAIL  reports") && stdout.contains("is not a directory"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: choose a writable folder with --reports DIR"),
        "{stdout}"
    );

    let elsewhere = ws.root().join("elsewhere");
    let json = elsewhere.join("run.json");
    let junit = elsewhere.join("junit.xml");
    let mut cmd = ws.phalanx([
        "run",
        "--progress",
        "plain",
        "--target",
        "target",
        "--reports",
        reports_arg,
    ]);
    cmd.arg("--json").arg(&json).arg("--junit").arg(&junit);
    cmd.env("DOCKER_HOST", proxy.docker_host());
    let out = output(cmd).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "error: the reports folder {reports_arg} cannot be written"
        )),
        "{stderr}"
    );
    assert!(first.contains("--reports DIR"), "{stderr}");
    // The reports outside that folder are still written, every suite naming the cause.
    assert_all_errored(&run_json(&json), &["one", "two"], "cannot be written");
    assert!(junit.is_file());
    let started: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|(line, _)| line.starts_with("POST"))
        .collect();
    assert!(started.is_empty(), "no suite may start: {started:?}");
}

#[tokio::test]
async fn invalid_config_files_are_named_by_file_and_line() {
    let ws = Workspace::new();
    ws.suite("good", "image = \"phalanx-test/none:1\"\n");
    ws.suite("bad", "image = \"x:1\"\n\nimgae = \"typo\"\n");
    let out = output(ws.phalanx(["doctor"])).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("FAIL  suite files"), "{stdout}");
    assert!(stdout.contains("bad.toml:3:1"), "{stdout}");
    assert!(
        stdout.contains("fix: correct the file at the line named; `phalanx validate`"),
        "{stdout}"
    );

    ws.project("jobs = \"many\"\n");
    let out = output(ws.phalanx(["doctor", "--json"])).await;
    assert_eq!(out.status.code(), Some(3));
    let doc = doctor_json(&out);
    let project = check(&doc, "phalanx.toml");
    assert_eq!(project["status"], "fail", "{doc}");
    assert!(
        project["detail"]
            .as_str()
            .unwrap()
            .contains("phalanx.toml:1:"),
        "{doc}"
    );
}

#[tokio::test]
async fn a_machine_that_can_run_gets_exit_0() {
    let ws = Workspace::new();
    // Buildable whether or not the base image is there: this engine runs as root with
    // debootstrap installed.
    suite_built_from_base(
        &ws,
        "one",
        &format!("{}:1", unique("phalanx-test/doctor-ok")),
    );
    let out = output(ws.phalanx(["doctor", "--json"])).await;
    let doc = doctor_json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc}");
    assert_eq!(doc["ok"], true);
    for c in doc["checks"].as_array().unwrap() {
        assert!(c["status"] == "ok" || c["status"] == "warn", "{c}");
        assert!(c["detail"].is_string() && c.get("fix").is_some(), "{c}");
    }
    let engine = check(&doc, "engine")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        engine.contains("answers at") && engine.contains("API 1."),
        "{engine}"
    );
    let images = check(&doc, "images")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        images.contains("to build on first use: phalanx-test/doctor-ok"),
        "{images}"
    );
    assert!(ws.root().join("reports").is_dir());
}

#[tokio::test]
async fn a_corrupt_or_newer_store_is_a_warning_with_its_fix() {
    let ws = Workspace::new();
    ws.suite("good", "image = \"phalanx-test/none:1\"\n");
    let store = ws.root().join("state/phalanx.db");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();

    // No store yet: the first run makes it.
    let store_arg = store.to_str().unwrap();
    let out = output(ws.phalanx(["doctor", "--json", "--store", store_arg])).await;
    let doc = doctor_json(&out);
    assert_eq!(check(&doc, "run store")["status"], "ok", "{doc}");

    std::fs::write(
        &store,
        b"this is not a SQLite database, only bytes that say so",
    )
    .unwrap();
    let out = output(ws.phalanx(["doctor", "--store", store_arg])).await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("WARN  run store"), "{stdout}");
    assert!(stdout.contains("runs work but keep no history"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "fix: move it aside (`mv {store_arg} {store_arg}.broken`)"
        )),
        "{stdout}"
    );
    // A broken store never stops a run, so it does not fail the diagnosis by itself.
    assert_ne!(
        check(
            &doctor_json(&output(ws.phalanx(["doctor", "--json", "--store", store_arg])).await),
            "run store"
        )["status"],
        "fail"
    );
}
