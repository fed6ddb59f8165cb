//! Load: 200 trivial suites at `-j 16` are each accounted for exactly once in JUnit and
//! run.json, and nothing is left on the engine (about 20 s on a 2-core machine).
//! `PHALANX_LOAD_SUITES=N` runs another count.

use crate::runs;
use crate::support;

use std::collections::BTreeMap;
use std::process::Stdio;

use runs::probe_suite;
use support::{Workspace, probe_image, unique};

const DEFAULT_SUITES: usize = 200;

#[tokio::test]
async fn every_suite_of_a_load_run_is_reported_exactly_once() {
    let count: usize = std::env::var("PHALANX_LOAD_SUITES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_SUITES);
    let image = probe_image().await;
    let ws = Workspace::new();
    let prefix = unique("load");
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:03}")).collect();
    for name in &names {
        ws.suite(name, &probe_suite(&image, &["print", name], ""));
    }

    let mut child = ws
        .phalanx([
            "run",
            "--progress",
            "plain",
            "--target",
            "target",
            "-j",
            "16",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let peak_rss = runs::watch_peak_rss(&mut child);
    let run = runs::finished(&ws, child.wait_with_output().unwrap());
    runs::assert_nothing_left(run.run_id()).await;
    eprintln!(
        "{count} suites at -j 16: {} s, phalanx peak RSS {} MiB",
        run.json["duration"],
        peak_rss >> 20
    );

    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["counts"]["total"], count);
    assert_eq!(run.json["counts"]["passed"], count);
    let mut in_json: BTreeMap<String, usize> = BTreeMap::new();
    for suite in run.json["suites"].as_array().unwrap() {
        *in_json
            .entry(suite["name"].as_str().unwrap().to_string())
            .or_default() += 1;
        assert_eq!(suite["outcome"], "passed", "{suite}");
    }
    let junit = runs::read(&ws.reports_dir().join("junit.xml"));
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let mut in_junit: BTreeMap<String, usize> = BTreeMap::new();
    for ts in doc.descendants().filter(|n| n.has_tag_name("testsuite")) {
        *in_junit
            .entry(ts.attribute("name").unwrap().to_string())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = names.iter().map(|n| (n.clone(), 1)).collect();
    assert_eq!(in_json, expected, "run.json");
    assert_eq!(in_junit, expected, "junit.xml");
    let root = doc.root_element();
    assert_eq!(root.attribute("tests"), Some(count.to_string().as_str()));
    // Each suite's own output went to its own log.
    for name in names.iter().step_by(17) {
        let log = runs::read(&ws.reports_dir().join(format!("logs/{name}.log")));
        assert_eq!(log, format!("{name}\n"));
    }
    assert!(peak_rss < 256 << 20, "peak RSS {} MiB", peak_rss >> 20);
}
