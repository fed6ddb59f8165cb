//! The run store end to end: real `phalanx run`s against the Docker engine (the probe
//! writes the SARIF each test gives it) recorded into real database files, read back with
//! `phalanx runs`, `show` and `diff`; a broken store costs a run nothing; two runs at once
//! are both recorded.

use crate::runs;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use support::{Workspace, probe_image, unique};

/// A SARIF log of `(rule, line, snippet)` results in `app.py`.
fn sarif(results: &[(&str, u64, &str)]) -> String {
    let results: Vec<Value> = results
        .iter()
        .map(|(rule, line, snippet)| {
            json!({
                "ruleId": rule,
                "level": "error",
                "message": {"text": format!("{rule} flaw at line {line}")},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": "app.py"},
                    "region": {"startLine": line, "snippet": {"text": snippet}}
                }}]
            })
        })
        .collect();
    json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "scanner"}}, "results": results}]})
        .to_string()
}

/// A suite whose probe writes `sarif` and exits 0; high findings fail it (exit 1).
fn sarif_suite(ws: &Workspace, image: &str, name: &str, sarif: &str) {
    let steps = ["write", "/results/out.sarif", sarif];
    let extra = "[results]\nformat = \"sarif\"\npath = \"/results/out.sarif\"\n";
    ws.suite(name, &runs::probe_suite(image, &steps, extra));
}

/// `phalanx ARGS` in the workspace (not a run): exit code, stdout, stderr.
fn phalanx(ws: &Workspace, args: &[&str]) -> (i32, String, String) {
    let out = ws
        .phalanx(args)
        .env_remove("PHALANX_STORE")
        .output()
        .unwrap();
    text(out)
}

fn text(out: Output) -> (i32, String, String) {
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(ws: &Workspace, args: &[&str]) -> Value {
    let (code, stdout, stderr) = phalanx(ws, args);
    assert_eq!(code, 0, "phalanx {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn two_runs_are_recorded_listed_shown_and_diffed() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let name = unique("scan");
    let target = ws.target_dir();
    ws.target_file("app.py", "print('hello')\n");
    git(&target, &["init", "-q", "-b", "main"]);
    git(&target, &["add", "."]);
    git(&target, &["commit", "-q", "-m", "one"]);
    let commit = git(&target, &["rev-parse", "HEAD"]);

    // Before: FIXED at 3 and MOVED at 20. After: FIXED is gone, ADDED appears at 5, and
    // MOVED is ten lines further down with the same code.
    sarif_suite(
        &ws,
        &image,
        &name,
        &sarif(&[("FIXED", 3, "os.system(x)"), ("MOVED", 20, "eval(y)")]),
    );
    let first = runs::run(&ws, &["--suite", &name]).await;
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert!(!first.stderr.contains("run store"), "{}", first.stderr);
    sarif_suite(
        &ws,
        &image,
        &name,
        &sarif(&[("ADDED", 5, "pickle.loads(z)"), ("MOVED", 30, "eval(y)")]),
    );
    let second = runs::run(&ws, &["--suite", &name]).await;
    assert_eq!(second.code, 1, "{}", second.stderr);

    // runs: newest first, with what the run said and where it ran.
    let list = json_of(&ws, &["runs", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["run_id"], second.run_id());
    assert_eq!(list[1]["run_id"], first.run_id());
    assert_eq!(list[0]["exit_code"], 1);
    assert_eq!(list[0]["outcomes"]["failed"], 1);
    assert_eq!(list[0]["findings"]["high"], 2);
    assert_eq!(list[0]["selection"]["suites"], json!([name]));
    assert_eq!(
        list[0]["target"],
        std::fs::canonicalize(&target).unwrap().to_str().unwrap()
    );
    assert_eq!(list[0]["git"]["commit"], commit.as_str());
    assert_eq!(list[0]["git"]["branch"], "main");
    let (code, table, _) = phalanx(&ws, &["runs", "--limit", "1"]);
    assert_eq!(code, 0);
    assert!(
        table.contains(second.run_id()) && !table.contains(first.run_id()),
        "{table}"
    );

    // show: the run recorded completely, as run.json has it.
    let shown = json_of(&ws, &["show", first.run_id(), "--json"]);
    assert_eq!(
        shown["started_at"].as_str().unwrap()[..19],
        first.json["started_at"].as_str().unwrap()[..19]
    );
    let suite = &shown["suites"][0];
    assert_eq!(suite["name"], name.as_str());
    assert_eq!(suite["outcome"], first.outcome(&name));
    assert_eq!(suite["reason"], first.reason(&name));
    assert_eq!(suite["image"], image.as_str());
    assert_eq!(suite["attempts"], first.suite(&name)["attempts"]);
    assert_eq!(suite["image_digest"], first.suite(&name)["image_digest"]);
    let rules: Vec<&str> = shown["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 2);
    assert!(
        rules.contains(&"FIXED") && rules.contains(&"MOVED"),
        "{rules:?}"
    );
    let prefix = &second.run_id()[..8];
    assert_eq!(
        json_of(&ws, &["show", prefix, "--json"])["run_id"],
        second.run_id()
    );
    assert_eq!(
        json_of(&ws, &["show", "last~1", "--json"])["run_id"],
        first.run_id()
    );

    // diff: exactly one new, one fixed, and the moved one unchanged.
    let diff = json_of(&ws, &["diff", "--json"]);
    assert_eq!(diff["base"]["run_id"], first.run_id());
    let rules_of = |key: &str| -> Vec<String> {
        diff[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(rules_of("new"), ["ADDED"]);
    assert_eq!(rules_of("fixed"), ["FIXED"]);
    assert_eq!(rules_of("unchanged"), ["MOVED"]);
    assert_eq!(diff["unchanged"][0]["base_line"], 20);
    assert_eq!(diff["unchanged"][0]["line"], 30);
    assert_eq!(diff["counts"]["new"]["high"], 1);
    let (code, text, _) = phalanx(&ws, &["diff", "--fail-on-new", "high"]);
    assert_eq!(code, 1, "a new high finding: {text}");
    assert!(text.contains("+ high") && text.contains("ADDED"), "{text}");
    let (code, _, _) = phalanx(&ws, &["diff", "--fail-on-new", "critical"]);
    assert_eq!(code, 0);
    let (code, _, _) = phalanx(
        &ws,
        &[
            "diff",
            second.run_id(),
            first.run_id(),
            "--fail-on-new",
            "high",
        ],
    );
    assert_eq!(code, 1, "the other way round, FIXED is new");

    // A reference that names nothing.
    let (code, _, stderr) = phalanx(&ws, &["show", "nothing-like-this"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no run matches `nothing-like-this`"),
        "{stderr}"
    );
}

/// Reports are written, the exit code is the run's, and stderr has one line about the store.
fn assert_run_unharmed(run: &runs::Run, store: &Path, says: &str) {
    assert_eq!(run.code, 1, "the failing suite's exit code: {}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("run store"))
        .collect();
    assert_eq!(lines.len(), 1, "one line about the store:\n{}", run.stderr);
    assert!(
        lines[0].contains(says) && lines[0].contains(&store.display().to_string()),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("this run is not recorded"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn a_corrupt_newer_or_read_only_store_costs_the_run_nothing() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let name = unique("failing");
    ws.suite(&name, &runs::probe_suite(&image, &["exit", "1"], ""));
    let store = ws.root().join("store.db");
    let store_arg = store.to_str().unwrap();
    let reports = ws.reports_dir();
    let reset = || {
        for f in ["junit.xml", "run.json", "results.sarif"] {
            let _ = std::fs::remove_file(reports.join(f));
        }
    };

    std::fs::write(
        &store,
        b"this is not a database, it is a text file that says so\n".repeat(100),
    )
    .unwrap();
    let run = runs::run(&ws, &["--suite", &name, "--store", store_arg]).await;
    assert_run_unharmed(&run, &store, "not a SQLite database");
    for f in ["junit.xml", "run.json", "results.sarif"] {
        assert!(reports.join(f).exists(), "{f}");
    }

    reset();
    std::fs::remove_file(&store).unwrap();
    let conn_done = phalanx(&ws, &["prune", "--keep", "1", "--store", store_arg]);
    assert_eq!(conn_done.0, 2, "no store yet: {}", conn_done.2);
    assert!(conn_done.2.contains("no run store at"), "{}", conn_done.2);
    phalanx::store::Store::open(&store)
        .unwrap()
        .connection()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let run = runs::run(&ws, &["--suite", &name, "--store", store_arg]).await;
    assert_run_unharmed(&run, &store, "schema 99, this one knows");

    reset();
    std::fs::remove_file(&store).unwrap();
    drop(phalanx::store::Store::open(&store).unwrap());
    let chattr = |flag: &str, path: &Path| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if chattr("+i", &store) {
        let run = runs::run(&ws, &["--suite", &name, "--store", store_arg]).await;
        chattr("-i", &store);
        assert_run_unharmed(&run, &store, "cannot be written");
        assert!(reports.join("run.json").exists());
    } else {
        eprintln!("chattr +i is not supported here: the read-only case is left to the unit test");
    }
}

#[tokio::test]
async fn two_runs_at_once_into_one_store_are_both_recorded_completely() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let names = [unique("left"), unique("right")];
    let findings: Vec<(&str, u64, &str)> = (0..50)
        .map(|i| ("R", i + 1, ["a", "b", "c", "d", "e"][i as usize % 5]))
        .collect();
    let log = sarif(&findings);
    for n in &names {
        sarif_suite(&ws, &image, n, &log);
    }
    let store = ws.root().join("shared.db");
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            let reports = ws.root().join(format!("reports-{n}"));
            ws.phalanx([
                "run",
                "--progress",
                "none",
                "--target",
                "target",
                "--suite",
                n,
            ])
            .arg("--reports")
            .arg(&reports)
            .env("PHALANX_STORE", &store)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for (child, n) in children.into_iter().zip(&names) {
        let out = child.wait_with_output().unwrap();
        let run = runs::finished_in(&ws.root().join(format!("reports-{n}")), out);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(!run.stderr.contains("run store"), "{}", run.stderr);
        runs::assert_nothing_left(run.run_id()).await;
        ids.push(run.run_id().to_string());
    }
    let store = phalanx::store::Store::open(&store).unwrap();
    let recorded = store.runs(&Default::default()).unwrap();
    assert_eq!(recorded.len(), 2);
    for run in recorded {
        assert!(ids.contains(&run.run_id));
        let detail = store.detail(run).unwrap();
        assert_eq!(detail.suites.len(), 1);
        assert_eq!(detail.findings.len(), 50);
    }
}

#[tokio::test]
async fn retention_applies_after_each_run_and_an_old_history_is_imported_once() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let name = unique("quick");
    ws.suite(&name, &runs::probe_suite(&image, &["exit", "0"], ""));
    ws.project("[store]\npath = \"state/runs.db\"\nkeep_runs = 2\n");
    let history = ws.root().join(".phalanx/history.json");
    std::fs::create_dir_all(history.parent().unwrap()).unwrap();
    let old = json!({"version": 1, "suites": [{"name": "ancient-suite", "image": "img:1",
        "expected_secs": 123.0, "last_secs": 120.0, "runs": 4, "updated": chrono::Utc::now()}]});
    std::fs::write(&history, old.to_string()).unwrap();
    let before = std::fs::read(&history).unwrap();

    let mut ids = Vec::new();
    for _ in 0..3 {
        let run = runs::run(&ws, &["--suite", &name]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        ids.push(run.run_id().to_string());
    }
    let db: PathBuf = ws.root().join("state/runs.db");
    let store = phalanx::store::Store::open(&db).unwrap();
    let kept: Vec<String> = store
        .runs(&Default::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(kept, [ids[2].clone(), ids[1].clone()]);
    let durations = store.expected_durations().unwrap();
    assert_eq!(
        durations
            .get("ancient-suite", "img:1")
            .unwrap()
            .expected_secs,
        123.0
    );
    assert_eq!(
        durations.get(&name, &image).unwrap().runs,
        3,
        "every run counted, pruned or not"
    );
    assert_eq!(
        std::fs::read(&history).unwrap(),
        before,
        "the old file is left alone"
    );
    drop(store);

    let (code, out, err) = phalanx(&ws, &["prune", "--keep", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted 1 run"), "{out}");
    let (_, list, _) = phalanx(&ws, &["runs"]);
    assert!(list.contains(&ids[2]) && !list.contains(&ids[1]), "{list}");

    // --no-store records nothing.
    let run = runs::run(&ws, &["--suite", &name, "--no-store"]).await;
    assert_eq!(run.code, 0);
    assert_eq!(
        json_of(&ws, &["runs", "--json"]).as_array().unwrap().len(),
        1
    );
}

#[test]
fn reading_without_a_store_says_where_it_looked() {
    let ws = Workspace::new();
    for args in [&["runs"][..], &["show", "last"], &["diff"]] {
        let (code, _, stderr) = phalanx(&ws, args);
        assert_eq!(code, 2, "{args:?}");
        assert!(
            stderr.contains("no run store at .phalanx/phalanx.db"),
            "{stderr}"
        );
    }
    drop(phalanx::store::Store::open(&ws.root().join(".phalanx/phalanx.db")).unwrap());
    let (code, _, stderr) = phalanx(&ws, &["show", "last"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("holds no runs"), "{stderr}");
}
