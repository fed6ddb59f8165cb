use super::*;
use crate::findings::model::Origin;
use crate::findings::{Finding, Gate, Location, Rule, Suppression, Tool};

fn fp(hash: u64, occurrence: u32) -> Fingerprint {
    Fingerprint { hash, occurrence }
}

fn record(hash: u64, occurrence: u32) -> FindingRecord {
    FindingRecord {
        fingerprint: fp(hash, occurrence),
        rule: "B602".into(),
        severity: Severity::High,
        path: Some("app/run.py".into()),
        line: Some(17),
        message: "shell".into(),
    }
}

fn findings(suite: &str, prints: &[(u64, u32)]) -> SuiteFindings {
    let finding = |(i, &(hash, occurrence)): (usize, &(u64, u32))| Finding {
        rule: 0,
        severity: Severity::High,
        message: "m".into(),
        location: Some(Location {
            path: "app/run.py".into(),
            start_line: Some(1),
            start_column: None,
        }),
        fingerprint: fp(hash, occurrence),
        suppression: Suppression::None,
        baseline: None,
        origin: Origin {
            file: 0,
            run: 0,
            result: i as u32,
        },
    };
    SuiteFindings {
        suite: suite.into(),
        sources: Vec::new(),
        runs: 1,
        tools: vec![Tool {
            name: "Bandit".into(),
            version: None,
        }],
        rules: vec![Rule {
            id: "B602".into(),
            tool: 0,
            name: None,
            short_description: None,
            declared: true,
            not_applicable: 0,
        }],
        findings: prints.iter().enumerate().map(finding).collect(),
    }
}

fn states(f: &SuiteFindings) -> Vec<BaselineState> {
    f.findings.iter().map(|f| f.baseline.unwrap()).collect()
}

#[test]
fn refs_parse_into_files_and_store_runs() {
    let store = |r| Ok(BaselineRef::Store(r));
    let file = |p: &str| Ok(BaselineRef::File(PathBuf::from(p)));
    let parse = |t: &str| BaselineRef::parse(t).map_err(|e| e.to_string());
    assert_eq!(parse("last"), store(StoreRef::Last { back: 0 }));
    assert_eq!(parse("last~3"), store(StoreRef::Last { back: 3 }));
    assert_eq!(parse("3f2a9c"), store(StoreRef::Id("3f2a9c".into())));
    assert_eq!(parse("branch:main"), store(StoreRef::Branch("main".into())));
    assert_eq!(
        parse("branch:feature/x"),
        store(StoreRef::Branch("feature/x".into())),
        "a branch name may hold a slash"
    );
    // Files that do not exist are still files when they look like one.
    assert_eq!(parse("old/results.sarif"), file("old/results.sarif"));
    assert_eq!(parse("run.json"), file("run.json"));
    assert_eq!(parse("reports/last"), file("reports/last"));
    // An existing file wins over a store reference of the same spelling.
    let dir = tempfile::tempdir().unwrap();
    let last = dir.path().join("last");
    std::fs::write(&last, "{}").unwrap();
    assert_eq!(
        parse(last.to_str().unwrap()),
        Ok(BaselineRef::File(last.clone()))
    );
    for bad in ["", "  ", "branch:", "last~x", "what is this?"] {
        let err = parse(bad).unwrap_err();
        assert!(err.starts_with("--baseline"), "{bad:?}: {err}");
    }
    assert_eq!(StoreRef::Last { back: 2 }.to_string(), "last~2");
    assert_eq!(StoreRef::Branch("main".into()).to_string(), "branch:main");
}

#[test]
fn branch_refs_are_store_refs_even_with_a_slash() {
    // `branch:` is checked before the path test would see the slash.
    let r = BaselineRef::parse("branch:release/1.2");
    assert!(
        matches!(r, Ok(BaselineRef::Store(StoreRef::Branch(ref n))) if n == "release/1.2"),
        "{r:?}"
    );
}

#[test]
fn matching_is_a_multiset_per_suite() {
    let mut baseline = Baseline::new("test");
    baseline.add("bandit", record(1, 1));
    baseline.add("bandit", record(1, 1)); // the same fingerprint twice
    baseline.add("bandit", record(2, 1));
    baseline.add("other", record(3, 1));
    let mut now = findings("bandit", &[(1, 1), (1, 1), (1, 1), (3, 1)]);
    let absent = baseline.compare(&mut now);
    use BaselineState::{New, Unchanged};
    // Two copies in the baseline cover two of the three; 3 is another suite's.
    assert_eq!(states(&now), [Unchanged, Unchanged, New, New]);
    assert_eq!(absent, vec![record(2, 1)]);
}

#[test]
fn a_suite_the_baseline_does_not_know_has_only_new_findings() {
    let baseline = Baseline::new("test");
    let mut now = findings("new-suite", &[(1, 1)]);
    assert!(baseline.compare(&mut now).is_empty());
    assert_eq!(states(&now), [BaselineState::New]);
}

#[test]
fn the_gate_lets_unchanged_findings_through_only_when_new() {
    let mut baseline = Baseline::new("test");
    baseline.add("bandit", record(1, 1));
    let mut now = findings("bandit", &[(1, 1), (2, 1)]);
    let absent = baseline.compare(&mut now);
    assert_eq!(now.blocking(Severity::High, Gate::All).count(), 2);
    let new: Vec<_> = now.blocking(Severity::High, Gate::New).collect();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].fingerprint, fp(2, 1));
    let summary = now.summary(Severity::High, Gate::New, Some(absent));
    assert_eq!(summary.blocking, 1);
    assert_eq!(
        summary.baseline,
        Some(BaselineCounts {
            new: 1,
            unchanged: 1,
            absent: 0
        })
    );
    // Without a baseline nothing is unchanged: gate new blocks like gate all.
    let plain = findings("bandit", &[(1, 1), (2, 1)]);
    assert_eq!(plain.blocking(Severity::High, Gate::New).count(), 2);
}

#[test]
fn a_store_ref_without_a_store_says_so() {
    let r = BaselineRef::Store(StoreRef::Branch("main".into()));
    let err = resolve(&r, Path::new("/src"), None).unwrap_err();
    assert!(matches!(err, BaselineError::NoStore { .. }), "{err}");
    assert!(err.to_string().contains("branch:main"), "{err}");
}

struct OneRun(Baseline);

impl BaselineStore for OneRun {
    fn baseline(
        &self,
        reference: &StoreRef,
        _target: &Path,
    ) -> Result<Option<Baseline>, Box<dyn std::error::Error + Send + Sync>> {
        Ok((*reference == StoreRef::Last { back: 0 }).then(|| self.0.clone()))
    }
}

#[test]
fn a_store_ref_the_store_does_not_know_is_an_error() {
    let store = OneRun(Baseline::new("run 1"));
    let last = BaselineRef::Store(StoreRef::Last { back: 0 });
    assert_eq!(
        resolve(&last, Path::new("/src"), Some(&store))
            .unwrap()
            .source,
        "run 1"
    );
    let older = BaselineRef::Store(StoreRef::Last { back: 5 });
    let err = resolve(&older, Path::new("/src"), Some(&store)).unwrap_err();
    assert!(matches!(err, BaselineError::NotInStore { .. }), "{err}");
    assert!(err.to_string().contains("last~5"), "{err}");
}

#[test]
fn files_that_name_nothing_or_are_not_ours_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sarif");
    assert!(matches!(
        read_file(&missing),
        Err(BaselineError::NoSuchFile { .. })
    ));
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let tool_sarif = write(
        "tool.sarif",
        r#"{"runs":[{"tool":{"driver":{"name":"x"}},"results":[{"ruleId":"R","message":{"text":"m"}}]}]}"#,
    );
    let err = read_file(&tool_sarif).unwrap_err().to_string();
    assert!(err.contains("phalanx/v1"), "{err}");
    let other = write("other.json", r#"{"hello":1}"#);
    assert!(matches!(
        read_file(&other),
        Err(BaselineError::NotPhalanx { .. })
    ));
    let old_run = write(
        "run.json",
        r#"{"suites":[{"name":"bandit","findings":{"total":2}}]}"#,
    );
    let err = read_file(&old_run).unwrap_err().to_string();
    assert!(err.contains("results.sarif"), "{err}");
    let broken = write("broken.json", "{");
    assert!(matches!(
        read_file(&broken),
        Err(BaselineError::Unreadable { .. })
    ));
}

#[test]
fn merged_sarif_and_run_json_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let sarif = dir.path().join("results.sarif");
    std::fs::write(
        &sarif,
        r#"{"runs":[{"automationDetails":{"id":"bandit/2"},"results":[
            {"ruleId":"B602","message":{"text":"shell"},"baselineState":"new",
             "locations":[{"physicalLocation":{"artifactLocation":{"uri":"/target/app/run.py"},"region":{"startLine":17}}}],
             "fingerprints":{"phalanx/v1":"0000000000000001"},"properties":{"phalanx/severity":"high"}},
            {"ruleId":"B602","message":{"text":"gone"},"baselineState":"absent",
             "fingerprints":{"phalanx/v1":"0000000000000009"}},
            {"ruleId":"P","kind":"pass","message":{"text":"ok"}}
        ]}]}"#,
    )
    .unwrap();
    let b = read_file(&sarif).unwrap();
    assert_eq!(b.of_suite("bandit"), [record(1, 1)]);
    assert_eq!(b.len(), 1, "absent results and non-findings are not in it");

    let json = dir.path().join("run.json");
    let list = serde_json::to_string(&vec![record(1, 1), record(1, 2)]).unwrap();
    std::fs::write(
        &json,
        format!(r#"{{"schema_version":1,"suites":[{{"name":"bandit","findings":{{"total":2,"list":{list}}}}},{{"name":"zap"}}]}}"#),
    )
    .unwrap();
    let b = read_file(&json).unwrap();
    assert_eq!(b.of_suite("bandit"), [record(1, 1), record(1, 2)]);
}
