//! `phalanx run --partition hash:M/N` against the real engine: N shards run every selected
//! suite exactly once between them, each JUnit file says which shard it is, and a bad
//! partition is a usage error. Also: the run records durations in the store that order the next one.

use crate::support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{Workspace, probe_image, unique};

fn run(ws: &Workspace, args: &[&str]) -> (i32, String, Value) {
    let mut all = vec!["run", "--progress", "none", "--target", "target"];
    all.extend_from_slice(args);
    let output = ws.phalanx(&all).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = std::fs::read_to_string(ws.reports_dir().join("run.json"))
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or(Value::Null);
    (output.status.code().unwrap(), stderr, json)
}

fn names(json: &Value) -> BTreeSet<String> {
    json["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn shards_split_the_suites_and_name_themselves_in_the_junit() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let all: BTreeSet<String> = (0..6).map(|i| unique(&format!("shard{i}"))).collect();
    for name in &all {
        ws.suite(
            name,
            &format!("image = {image:?}\ncommand = [\"/probe\", \"exit\", \"0\"]\n"),
        );
    }
    // A broken file belongs to one shard too, so it is reported once.
    let broken = unique("broken");
    ws.suite(&broken, &format!("image = {image:?}\ntimeout = \"soon\"\n"));

    let mut seen = BTreeSet::new();
    let mut broken_reported = 0;
    for shard in 1..=3 {
        let partition = format!("hash:{shard}/3");
        let (code, stderr, json) = run(&ws, &["-j", "4", "--partition", &partition]);
        let mine = names(&json);
        assert!(mine.is_disjoint(&seen), "{mine:?} ran twice");
        seen.extend(mine.iter().cloned());
        let junit = std::fs::read_to_string(ws.reports_dir().join("junit.xml")).unwrap();
        let doc = roxmltree::Document::parse(&junit).unwrap();
        assert_eq!(
            doc.root_element().attribute("name"),
            Some(format!("phalanx {partition}").as_str()),
            "{junit}"
        );
        assert_eq!(json["partition"], partition.as_str());
        let has_broken = junit.contains(&broken);
        broken_reported += usize::from(has_broken);
        let expected = if has_broken { 2 } else { 0 };
        assert_eq!(code, expected, "{stderr}");
        support::remove_labelled(json["run_id"].as_str().unwrap()).await;
    }
    assert_eq!(seen, all);
    assert_eq!(broken_reported, 1);
}

#[test]
fn a_bad_partition_is_a_usage_error() {
    let ws = Workspace::new();
    ws.suite("any", "image = \"whatever:1\"\n");
    for bad in ["hash:0/2", "hash:3/2", "hash:1/0", "slice:1/2", "hash:x"] {
        let output = ws
            .phalanx(["run", "--partition", bad, "--target", "target"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("--partition") && stderr.contains("hash:M/N"),
            "{bad}: {stderr}"
        );
        assert!(!ws.reports_dir().join("run.json").exists());
    }
}

#[tokio::test]
async fn a_run_records_durations_and_survives_a_corrupt_history() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let name = unique("timed");
    ws.suite(
        &name,
        &format!("image = {image:?}\ncommand = [\"/probe\", \"sleep\", \"0.2\"]\n"),
    );
    // The durations file of earlier versions, broken: the store's one-time import warns
    // and leaves it alone.
    let history = ws.root().join(".phalanx/history.json");
    std::fs::create_dir_all(history.parent().unwrap()).unwrap();
    std::fs::write(&history, "{ this is not json").unwrap();

    let (code, stderr, _) = run(&ws, &[]);

    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: ignoring the run history") && stderr.contains("history.json"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&history).unwrap(),
        "{ this is not json"
    );
    let store = phalanx::store::Store::open(&ws.root().join(".phalanx/phalanx.db")).unwrap();
    let durations = store.expected_durations().unwrap();
    let entry = durations.get(&name, &image).expect("the suite's duration");
    assert!(entry.expected_secs >= 0.2, "{entry:?}");

    // The next run does not import it again; the old option only warns that it is old.
    let (code, stderr, _) = run(&ws, &["--history", ".phalanx/history.json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("ignoring"), "{stderr}");
    assert!(stderr.contains("--history is deprecated"), "{stderr}");
}
