//! The store against real database files: migrations, every failure mode, recording,
//! retention, the history import and concurrent writers.

use crate::cause::Cause;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::findings::{SuiteResults, sarif};
use crate::outcome::{Outcome, RunReport, SuiteReport};

const MOVED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sarif/moved");

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn suite(name: &str, outcome: Outcome, secs: u64) -> SuiteReport {
    let mut s = SuiteReport::not_run(name, "img:1", outcome, Some(Cause::internal("why")));
    s.duration = Duration::from_secs(secs);
    s.exit_code = Some(0);
    s.attempts = 1;
    s
}

/// A suite whose results are the SARIF fixture `file`.
fn sarif_suite(name: &str, file: &str) -> SuiteReport {
    let text = std::fs::read_to_string(Path::new(MOVED).join(file)).unwrap();
    let findings = sarif::read_str(name, &text).unwrap();
    let mut s = suite(name, Outcome::Failed, 3);
    s.findings = Some(findings.summary(
        crate::findings::Severity::High,
        crate::findings::Gate::All,
        None,
    ));
    s.results = Some(Arc::new(SuiteResults::Sarif(findings)));
    s
}

fn run(id: &str, start: i64, suites: Vec<SuiteReport>) -> RunReport {
    RunReport {
        run_id: id.into(),
        phalanx_version: "0.1.0".into(),
        started_at: at(start),
        finished_at: at(start + 5),
        interrupted: None,
        suites,
        invalid_suites: Vec::new(),
        partition: None,
        suppressions: Default::default(),
        target: None,
        baseline: None,
    }
}

fn facts() -> RunFacts {
    RunFacts {
        project: None,
        target: PathBuf::from("/work/app"),
        selection: Selection::default(),
        git: Some(GitInfo {
            commit: Some("ab".repeat(20)),
            branch: Some("main".into()),
            dirty: Some(false),
        }),
    }
}

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deeper/phalanx.db");
    (dir, path)
}

fn pragma<T: rusqlite::types::FromSql>(store: &Store, name: &str) -> T {
    store
        .connection()
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_new_store_is_created_at_the_current_schema_in_wal_mode_with_incremental_vacuum() {
    let (_dir, path) = fresh();
    let store = Store::open(&path).unwrap();
    assert_eq!(pragma::<u32>(&store, "user_version"), schema::VERSION);
    assert_eq!(pragma::<String>(&store, "journal_mode"), "wal");
    assert_eq!(pragma::<i64>(&store, "auto_vacuum"), 2, "incremental");
    assert_eq!(pragma::<i64>(&store, "foreign_keys"), 1);
    let status = Store::check(&path).unwrap();
    assert_eq!(
        (status.schema, status.known, status.runs),
        (schema::VERSION, schema::VERSION, 0)
    );
}

/// Every earlier version, each with a run recorded by that version's schema where it has
/// one, opens and migrates to the current one. With a new version, add its sample row.
#[test]
fn every_earlier_schema_version_migrates_to_the_current_one() {
    for from in 0..schema::VERSION {
        let (_dir, path) = fresh();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            for step in &schema::MIGRATIONS[..from as usize] {
                conn.execute_batch(step).unwrap();
            }
            conn.pragma_update(None, "user_version", from).unwrap();
        }
        let mut store = Store::open(&path).unwrap_or_else(|e| panic!("from v{from}: {e}"));
        assert_eq!(
            pragma::<u32>(&store, "user_version"),
            schema::VERSION,
            "from v{from}"
        );
        store
            .record(
                &run("r1", 0, vec![sarif_suite("s", "before.sarif")]),
                &facts(),
            )
            .unwrap();
        assert_eq!(store.runs(&RunFilter::default()).unwrap().len(), 1);
    }
    // A zero-byte file is version 0 too.
    let (_dir, path) = fresh();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(pragma::<u32>(&store, "user_version"), schema::VERSION);
}

#[test]
fn a_run_is_recorded_with_its_suites_findings_and_facts() {
    let (_dir, path) = fresh();
    let mut store = Store::open(&path).unwrap();
    let mut errored = suite("broken", Outcome::Error, 0);
    errored.cause = Some(Cause::ImageMissing {
        image: "img:1".into(),
    });
    errored.image_digest = Some("sha256:00".into());
    let report = run(
        "run-1",
        0,
        vec![sarif_suite("scan", "before.sarif"), errored],
    );
    let mut facts = facts();
    facts.selection = Selection::new(&["scan".into(), "broken".into(), "scan".into()], &[]);
    let recorded = store.record(&report, &facts).unwrap();
    assert_eq!((recorded.suites, recorded.findings), (2, 4));

    let summary = store.resolve("last").unwrap();
    assert_eq!(summary.run_id, "run-1");
    assert_eq!(summary.exit_code, 3);
    assert_eq!((summary.outcomes.failed, summary.outcomes.error), (1, 1));
    assert_eq!(summary.findings.high, 4);
    assert_eq!(summary.selection.suites, ["broken", "scan"]);
    assert_eq!(summary.target, Path::new("/work/app"));
    assert_eq!(summary.git, facts.git);
    assert_eq!(summary.duration, Duration::from_secs(5));

    let detail = store.detail(summary).unwrap();
    assert_eq!(detail.suites.len(), 2);
    let broken = &detail.suites[1];
    assert_eq!(broken.outcome, Outcome::Error);
    assert_eq!(
        broken.reason.as_deref(),
        Some(
            "image `img:1` is not present and the suite has no `build` to make it (no registry is used)"
        )
    );
    assert_eq!(broken.image_digest.as_deref(), Some("sha256:00"));
    assert!(detail.suites[0].has_findings && !broken.has_findings);
    let f = &detail.findings[0];
    assert_eq!((f.suite.as_str(), f.tool.as_str()), ("scan", "mover"));
    assert_eq!(f.path.as_deref(), Some("app.py"));
    assert!(f.line.is_some() && f.fingerprint.len() >= 16);
}

#[test]
fn the_durations_are_a_running_estimate_per_suite_and_image() {
    let (_dir, path) = fresh();
    let mut store = Store::open(&path).unwrap();
    let never_ran = suite("skipped", Outcome::Skipped, 0);
    store
        .record(
            &run("a", 0, vec![suite("s", Outcome::Passed, 10), never_ran]),
            &facts(),
        )
        .unwrap();
    store
        .record(
            &run("b", 10, vec![suite("s", Outcome::Passed, 20)]),
            &facts(),
        )
        .unwrap();
    let history = store.expected_durations().unwrap();
    let entry = history.get("s", "img:1").unwrap();
    assert_eq!(
        (entry.expected_secs, entry.last_secs, entry.runs),
        (15.0, 20.0, 2)
    );
    assert!(history.get("skipped", "img:1").is_none());
}

#[test]
fn references_name_runs_by_position_id_or_unique_prefix() {
    let (_dir, path) = fresh();
    let mut store = Store::open(&path).unwrap();
    assert!(matches!(
        store.resolve("last"),
        Err(QueryError::NoRuns { .. })
    ));
    for (i, id) in ["abc111", "abc222", "def333"].iter().enumerate() {
        store
            .record(&run(id, i as i64 * 10, vec![]), &facts())
            .unwrap();
    }
    assert_eq!(store.resolve("last").unwrap().run_id, "def333");
    assert_eq!(store.resolve("last~2").unwrap().run_id, "abc111");
    assert_eq!(store.resolve("abc2").unwrap().run_id, "abc222");
    assert_eq!(store.resolve("def333").unwrap().run_id, "def333");
    match store.resolve("abc") {
        Err(e @ QueryError::Ambiguous { .. }) => {
            let text = e.to_string();
            assert!(text.contains("abc111") && text.contains("abc222"), "{text}");
            assert_eq!(e.exit_code(), 2);
        }
        other => panic!("{other:?}"),
    }
    let missing = store.resolve("zzz").unwrap_err();
    assert!(missing.to_string().contains("`zzz`"), "{missing}");
    let far = store.resolve("last~3").unwrap_err();
    assert!(far.to_string().contains("holds 3"), "{far}");
}

#[test]
fn a_moved_finding_is_unchanged_and_the_default_base_is_the_same_target_and_selection() {
    let (_dir, path) = fresh();
    let mut store = Store::open(&path).unwrap();
    store
        .record(
            &run("before", 0, vec![sarif_suite("scan", "before.sarif")]),
            &facts(),
        )
        .unwrap();
    let mut elsewhere = facts();
    elsewhere.target = PathBuf::from("/other");
    store.record(&run("other", 5, vec![]), &elsewhere).unwrap();
    store
        .record(
            &run("after", 10, vec![sarif_suite("scan", "after.sarif")]),
            &facts(),
        )
        .unwrap();
    let diff = store.diff_refs(None, None).unwrap();
    assert_eq!(
        (diff.base.run_id.as_str(), diff.head.run_id.as_str()),
        ("before", "after")
    );
    // before: SNIP@5, SNIP@9 (same snippet), MSG@12, TOOLFP@20; after: a new SNIP@2 with
    // another snippet, both SNIPs and the rest moved down by ten lines.
    assert_eq!(diff.new.len(), 1, "{:#?}", diff.new);
    assert_eq!(diff.new[0].finding.line, Some(2));
    assert_eq!(diff.fixed.len(), 0);
    assert_eq!(diff.unchanged.len(), 4);
    assert!(
        diff.unchanged
            .iter()
            .all(|u| u.finding.line.unwrap() == u.base_line.unwrap() + 10)
    );
    assert_eq!(diff.new_at_or_above(crate::findings::Severity::High), 1);
    assert_eq!(diff.new_at_or_above(crate::findings::Severity::Critical), 0);
    let no_base = store.diff_refs(None, Some("other")).unwrap_err();
    assert!(matches!(no_base, QueryError::NoBase { .. }), "{no_base}");
}

#[test]
fn a_suite_without_findings_in_one_run_is_not_compared() {
    let (_dir, path) = fresh();
    let mut store = Store::open(&path).unwrap();
    store
        .record(
            &run("a", 0, vec![sarif_suite("scan", "before.sarif")]),
            &facts(),
        )
        .unwrap();
    store
        .record(
            &run("b", 10, vec![suite("scan", Outcome::Error, 0)]),
            &facts(),
        )
        .unwrap();
    let diff = store.diff_refs(None, None).unwrap();
    assert_eq!(diff.fixed.len(), 0, "an error is not a fix");
    assert_eq!(diff.not_compared.len(), 1);
}

#[test]
fn pruning_keeps_the_newest_runs_and_takes_suites_and_findings_along() {
    let (_dir, path) = fresh();
    let mut store = Store::open(&path).unwrap();
    for i in 0..5 {
        let report = run(
            &format!("r{i}"),
            i * 10,
            vec![sarif_suite("scan", "before.sarif")],
        );
        store.record(&report, &facts()).unwrap();
    }
    let rows = |table: &str| -> i64 {
        store
            .connection()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!((rows("suites"), rows("findings")), (5, 20));
    assert_eq!(store.prune(2).unwrap(), 3);
    let left: Vec<String> = store
        .runs(&RunFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(left, ["r4", "r3"]);
    let rows = |table: &str| -> i64 {
        store
            .connection()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!((rows("suites"), rows("findings")), (2, 8));
    assert_eq!(
        pragma::<i64>(&store, "freelist_count"),
        0,
        "freed pages are handed back"
    );
    assert_eq!(store.prune(2).unwrap(), 0);
}

#[test]
fn a_history_file_is_imported_once_and_left_alone() {
    let (dir, path) = fresh();
    let file = dir.path().join("history.json");
    let mut old = crate::history::History::default();
    old.record(&[suite("slow", Outcome::Passed, 300)], Utc::now());
    old.save(&file, Utc::now()).unwrap();
    let before = std::fs::read(&file).unwrap();

    let mut store = Store::open(&path).unwrap();
    let (imported, warning) = store.import_history_once(&file).unwrap().unwrap();
    assert_eq!((imported, warning), (1, None));
    assert_eq!(
        store
            .expected_durations()
            .unwrap()
            .get("slow", "img:1")
            .unwrap()
            .expected_secs,
        300.0
    );
    // Changed or not, it is not imported again.
    old.record(&[suite("other", Outcome::Passed, 1)], Utc::now());
    old.save(&file, Utc::now()).unwrap();
    assert_eq!(store.import_history_once(&file).unwrap(), None);
    assert!(
        store
            .expected_durations()
            .unwrap()
            .get("other", "img:1")
            .is_none()
    );
    old.save(&file, Utc::now()).unwrap();
    assert_ne!(
        std::fs::read(&file).unwrap(),
        before,
        "the file is only read"
    );
}

#[test]
fn garbage_is_a_corrupt_store() {
    let (_dir, path) = fresh();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("phalanx.db") && text.contains("move it aside"),
        "{text}"
    );
    assert!(matches!(
        Store::check(&path),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_newer_schema_is_refused_with_both_versions() {
    let (_dir, path) = fresh();
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 7).unwrap();
    drop(conn);
    let e = Store::open(&path).unwrap_err();
    assert!(
        matches!(e, StoreError::NewerSchema { found: 7, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains(&format!("schema 7, this one knows {}", schema::VERSION)),
        "{e}"
    );
    assert!(matches!(
        Store::check(&path),
        Err(StoreError::NewerSchema { found: 7, .. })
    ));
}

#[test]
fn a_store_locked_past_the_timeout_says_so() {
    let (_dir, path) = fresh();
    drop(Store::open(&path).unwrap());
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut store = Store::open_with_timeout(&path, Duration::from_millis(200)).unwrap();
    let e = store.record(&run("r", 0, vec![]), &facts()).unwrap_err();
    assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("locked by another process"), "{e}");
    holder.execute_batch("ROLLBACK").unwrap();
    store.record(&run("r", 0, vec![]), &facts()).unwrap();
}

#[test]
fn a_path_that_cannot_be_a_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let e = Store::open(&file.join("phalanx.db")).unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
    let e = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(e, StoreError::Io { .. } | StoreError::Corrupt { .. }),
        "{e:?}"
    );
}

/// Sets or clears the immutable attribute: as root, permission bits do not stop writes,
/// but the kernel refuses to change an immutable file (ext4, xfs, btrfs).
fn immutable(path: &Path, on: bool) -> bool {
    std::process::Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_store_that_cannot_be_written_is_read_only() {
    let (_dir, path) = fresh();
    drop(Store::open(&path).unwrap());
    let folder = path.parent().unwrap().to_path_buf();
    if !immutable(&path, true) {
        eprintln!("skipped: chattr +i is not supported here");
        return;
    }
    immutable(&folder, true);
    let result = Store::open(&path).and_then(|mut s| s.record(&run("r", 0, vec![]), &facts()));
    immutable(&folder, false);
    immutable(&path, false);
    let e = result.unwrap_err();
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e:?}");
    assert!(e.to_string().contains("cannot be written"), "{e}");

    // A writable file in a folder that takes no new file (for the WAL beside it).
    let (_dir, path) = fresh();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();
    let folder = path.parent().unwrap().to_path_buf();
    immutable(&folder, true);
    let result = Store::open(&path).and_then(|mut s| s.record(&run("r", 0, vec![]), &facts()));
    immutable(&folder, false);
    let e = result.unwrap_err();
    assert!(matches!(e, StoreError::ReadOnly { .. }), "{e:?}");
    assert!(e.to_string().contains("its folder"), "{e}");
}

#[test]
fn two_writers_with_their_own_connections_both_record_everything() {
    let (_dir, path) = fresh();
    drop(Store::open(&path).unwrap());
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&path).unwrap();
                for i in 0..20 {
                    let report = run(
                        &format!("w{w}-{i}"),
                        i,
                        vec![sarif_suite("scan", "after.sarif")],
                    );
                    store.record(&report, &facts()).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count_runs().unwrap(), 40);
    let findings: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM findings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(findings, 40 * 5);
}

#[test]
fn runs_are_listed_newest_first_limited_and_by_target() {
    let (_dir, path) = fresh();
    let mut store = Store::open(&path).unwrap();
    let mut other = facts();
    other.target = PathBuf::from("/elsewhere");
    store.record(&run("old", 0, vec![]), &facts()).unwrap();
    store.record(&run("mid", 10, vec![]), &other).unwrap();
    store.record(&run("new", 20, vec![]), &facts()).unwrap();
    let ids = |filter: RunFilter| -> Vec<String> {
        store
            .runs(&filter)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect()
    };
    assert_eq!(ids(RunFilter::default()), ["new", "mid", "old"]);
    assert_eq!(
        ids(RunFilter {
            limit: Some(2),
            target: None
        }),
        ["new", "mid"]
    );
    let app = RunFilter {
        limit: None,
        target: Some(PathBuf::from("/work/app")),
    };
    assert_eq!(ids(app), ["new", "old"]);
    let text = view::runs_table(&store.runs(&RunFilter::default()).unwrap());
    assert!(text.starts_with("RUN "), "{text}");
    assert!(text.contains("main@ababababab"), "{text}");
}
