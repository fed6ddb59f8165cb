//! Baselines: the findings of an earlier run, to tell this run's findings apart into
//! **new** and **unchanged**, and to list what the baseline held that is gone (**absent**,
//! fixed). With `gate = "new"` only new findings fail a suite.
//!
//! A baseline comes from a file (the merged `results.sarif` of an earlier run, whose
//! results carry `fingerprints["phalanx/v1"]`, or its `run.json`, whose suites list their
//! findings) or from the run store ([`BaselineStore`], plugged in by the caller). Matching
//! is by suite and fingerprint, as a multiset: two identical findings in the baseline
//! cover two in this run, not three. Fingerprints leave line numbers out
//! (`crate::findings::fingerprint`), so moved code stays unchanged; the path is part of
//! them, so a renamed file makes its findings new (and the old ones absent).
//!
//! A reference that names nothing is an error, never an empty baseline: an empty one
//! would make every finding new, and a wrong one could make them all unchanged.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, ErrorKind};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::findings::{
    BaselineCounts, BaselineState, FindingRecord, Fingerprint, Severity, SuiteFindings,
};
use crate::outcome::SuiteReport;

/// Where `--baseline REF` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaselineRef {
    /// An earlier `results.sarif` or `run.json` of Phalanx.
    File(PathBuf),
    /// A run in the run store.
    Store(StoreRef),
}

/// A run in the run store, as `--baseline` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRef {
    /// `last` (`back` 0), `last~N`: the latest run of this target, or the Nth before it.
    Last { back: u32 },
    /// A run id or a unique prefix of one.
    Id(String),
    /// `branch:NAME`: the latest run of this target on git branch `NAME`.
    Branch(String),
}

impl fmt::Display for StoreRef {
    /// As it was written: `last`, `last~2`, `3f2a9c`, `branch:main`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreRef::Last { back: 0 } => f.write_str("last"),
            StoreRef::Last { back } => write!(f, "last~{back}"),
            StoreRef::Id(id) => f.write_str(id),
            StoreRef::Branch(name) => write!(f, "branch:{name}"),
        }
    }
}

impl fmt::Display for BaselineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineRef::File(path) => write!(f, "{}", path.display()),
            BaselineRef::Store(r) => r.fmt(f),
        }
    }
}

impl BaselineRef {
    /// Reads `--baseline REF`: `branch:NAME`; else a file when `REF` exists or looks like
    /// one (a `/` in it, or a `.sarif`/`.json` ending); else a store reference.
    pub fn parse(text: &str) -> Result<BaselineRef, BaselineError> {
        let bad = |why: &str| BaselineError::BadRef {
            text: text.to_string(),
            why: why.to_string(),
        };
        if text.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        // Before the path test: branch names may hold a `/`.
        if let Some(name) = text.strip_prefix("branch:") {
            if name.is_empty() {
                return Err(bad("`branch:` needs a branch name, as in `branch:main`"));
            }
            return Ok(BaselineRef::Store(StoreRef::Branch(name.to_string())));
        }
        let path = Path::new(text);
        let lower = text.to_ascii_lowercase();
        if path.exists()
            || text.contains(std::path::MAIN_SEPARATOR)
            || text.contains('/')
            || lower.ends_with(".sarif")
            || lower.ends_with(".json")
        {
            return Ok(BaselineRef::File(path.to_path_buf()));
        }
        if text == "last" {
            return Ok(BaselineRef::Store(StoreRef::Last { back: 0 }));
        }
        if let Some(n) = text.strip_prefix("last~") {
            let back = n
                .parse::<u32>()
                .map_err(|_| bad("`last~N` needs a number, as in `last~1`"))?;
            return Ok(BaselineRef::Store(StoreRef::Last { back }));
        }
        if text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Ok(BaselineRef::Store(StoreRef::Id(text.to_string())));
        }
        Err(bad(
            "expected a results.sarif or run.json file, `last`, `last~N`, a run id, or `branch:NAME`",
        ))
    }
}

/// The run store, as baselines need it: the lead's `phalanx::store` implements this.
pub trait BaselineStore {
    /// The findings of the run `reference` names among the runs of `target`, or `None`
    /// when it names no run (the caller turns that into [`BaselineError::NotInStore`]).
    fn baseline(
        &self,
        reference: &StoreRef,
        target: &Path,
    ) -> Result<Option<Baseline>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Why a baseline could not be used; each is a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("--baseline {text:?}: {why}")]
    BadRef { text: String, why: String },
    #[error(
        "--baseline {}: no such file (looked for an earlier results.sarif or run.json of Phalanx)",
        path.display()
    )]
    NoSuchFile { path: PathBuf },
    #[error("--baseline {}: cannot read it: {error}", path.display())]
    Unreadable { path: PathBuf, error: String },
    #[error("--baseline {}: {why}", path.display())]
    NotPhalanx { path: PathBuf, why: String },
    #[error(
        "--baseline {reference}: names a run in the run store, and no run store is available; give a results.sarif or run.json of an earlier run instead"
    )]
    NoStore { reference: StoreRef },
    #[error(
        "--baseline {reference}: no run in the store matches it for target {}",
        target.display()
    )]
    NotInStore {
        reference: StoreRef,
        target: PathBuf,
    },
    #[error("--baseline {reference}: the run store failed: {source}")]
    Store {
        reference: StoreRef,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The findings of an earlier run, per suite, as a multiset of fingerprints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Baseline {
    /// What it was read from, for reports: `reports/results.sarif`, `run 3f2a9c (main)`.
    pub source: String,
    suites: BTreeMap<String, Vec<FindingRecord>>,
}

impl Baseline {
    pub fn new(source: impl Into<String>) -> Self {
        Baseline {
            source: source.into(),
            suites: BTreeMap::new(),
        }
    }

    /// Adds one finding of `suite` (the store fills a baseline this way).
    pub fn add(&mut self, suite: &str, record: FindingRecord) {
        self.suites
            .entry(suite.to_string())
            .or_default()
            .push(record);
    }

    /// Findings in all suites.
    pub fn len(&self) -> usize {
        self.suites.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The baseline's findings of `suite`.
    pub fn of_suite(&self, suite: &str) -> &[FindingRecord] {
        self.suites.get(suite).map_or(&[], Vec::as_slice)
    }

    /// Marks each finding of `findings` new or unchanged, and returns the baseline's
    /// findings of that suite that were not matched (absent), in baseline order.
    pub fn compare(&self, findings: &mut SuiteFindings) -> Vec<FindingRecord> {
        let known = self.of_suite(&findings.suite);
        let mut left: HashMap<Fingerprint, usize> = HashMap::new();
        for record in known {
            *left.entry(record.fingerprint).or_default() += 1;
        }
        for finding in &mut findings.findings {
            let state = match left.get_mut(&finding.fingerprint) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    BaselineState::Unchanged
                }
                _ => BaselineState::New,
            };
            finding.baseline = Some(state);
        }
        let mut absent = Vec::new();
        for record in known {
            if let Some(n) = left.get_mut(&record.fingerprint).filter(|n| **n > 0) {
                *n -= 1;
                absent.push(record.clone());
            }
        }
        absent
    }
}

/// The baseline part of `run.json`: what it was and how the run's findings compare.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineReport {
    pub source: String,
    /// Findings the baseline holds, in every suite.
    pub findings: usize,
    /// Over the suites whose findings were read.
    #[serde(flatten)]
    pub counts: BaselineCounts,
}

impl Baseline {
    /// The totals over `suites`; suites whose findings were not read (errors, other
    /// formats) compare nothing, so their baseline findings are not counted absent.
    pub fn report(&self, suites: &[SuiteReport]) -> BaselineReport {
        let mut counts = BaselineCounts::default();
        for c in suites
            .iter()
            .filter_map(|s| s.findings.as_ref()?.baseline.as_ref())
        {
            counts.merge(c);
        }
        BaselineReport {
            source: self.source.clone(),
            findings: self.len(),
            counts,
        }
    }
}

/// The baseline `reference` names; `store` is `None` until the run store is wired in, and
/// then a store reference is an error saying so.
pub fn resolve(
    reference: &BaselineRef,
    target: &Path,
    store: Option<&dyn BaselineStore>,
) -> Result<Baseline, BaselineError> {
    match reference {
        BaselineRef::File(path) => read_file(path),
        BaselineRef::Store(r) => {
            let store = store.ok_or_else(|| BaselineError::NoStore {
                reference: r.clone(),
            })?;
            match store.baseline(r, target) {
                Ok(Some(baseline)) => Ok(baseline),
                Ok(None) => Err(BaselineError::NotInStore {
                    reference: r.clone(),
                    target: target.to_path_buf(),
                }),
                Err(source) => Err(BaselineError::Store {
                    reference: r.clone(),
                    source,
                }),
            }
        }
    }
}

/// A `results.sarif` (it has `runs`) or a `run.json` (it has `suites`) of Phalanx.
pub fn read_file(path: &Path) -> Result<Baseline, BaselineError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => BaselineError::NoSuchFile {
            path: path.to_path_buf(),
        },
        _ => BaselineError::Unreadable {
            path: path.to_path_buf(),
            error: e.to_string(),
        },
    })?;
    let doc: AnyDoc =
        serde_json::from_reader(BufReader::with_capacity(256 << 10, file)).map_err(|e| {
            BaselineError::Unreadable {
                path: path.to_path_buf(),
                error: format!("not the JSON of a results.sarif or run.json: {e}"),
            }
        })?;
    let not_ours = |why: &str| BaselineError::NotPhalanx {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let source = path.display().to_string();
    match doc {
        AnyDoc {
            runs: Some(runs),
            suites: None,
        } => from_sarif(source, runs).map_err(not_ours),
        AnyDoc {
            runs: None,
            suites: Some(suites),
        } => from_run_json(source, suites).map_err(not_ours),
        _ => Err(not_ours(
            "neither a SARIF log (`runs`) nor a run.json (`suites`) of Phalanx",
        )),
    }
}

/// Only what a baseline needs of either file; the rest is skipped unread.
#[derive(Deserialize)]
struct AnyDoc {
    runs: Option<Vec<SarifRun>>,
    suites: Option<Vec<JsonSuite>>,
}

#[derive(Deserialize)]
struct SarifRun {
    #[serde(rename = "automationDetails")]
    automation: Option<Value>,
    results: Option<Vec<SarifResult>>,
}

/// Kept as loose values: anything a tool wrote is copied into the merged SARIF, and an
/// odd field must not make a whole baseline unreadable.
#[derive(Deserialize)]
struct SarifResult {
    #[serde(rename = "ruleId")]
    rule_id: Option<Value>,
    rule: Option<Value>,
    message: Option<Value>,
    locations: Option<Value>,
    fingerprints: Option<Value>,
    properties: Option<Value>,
    #[serde(rename = "baselineState")]
    baseline_state: Option<Value>,
}

#[derive(Deserialize)]
struct JsonSuite {
    name: String,
    findings: Option<JsonFindings>,
}

#[derive(Deserialize)]
struct JsonFindings {
    total: usize,
    list: Option<Vec<FindingRecord>>,
}

fn from_sarif(source: String, runs: Vec<SarifRun>) -> Result<Baseline, &'static str> {
    let mut baseline = Baseline::new(source);
    let (mut results, mut ours) = (0usize, 0usize);
    for run in runs {
        // `bandit` or `bandit/2` (a suite with several runs): suite names have no `/`.
        let id = run
            .automation
            .as_ref()
            .and_then(|a| a["id"].as_str())
            .unwrap_or_default();
        let suite = id.split('/').next().unwrap_or_default().to_string();
        for result in run.results.into_iter().flatten() {
            results += 1;
            if result.baseline_state.as_ref().and_then(Value::as_str) == Some("absent") {
                continue;
            }
            if let Some(record) = sarif_record(&result) {
                ours += 1;
                baseline.add(&suite, record);
            }
        }
    }
    if results > 0 && ours == 0 {
        return Err(
            "its results carry no Phalanx fingerprints (`fingerprints[\"phalanx/v1\"]`): give the merged results.sarif of a Phalanx run, not a tool's own SARIF",
        );
    }
    Ok(baseline)
}

/// A result of the merged SARIF as a record; `None` for results that are not findings
/// (they have no Phalanx fingerprint).
fn sarif_record(result: &SarifResult) -> Option<FindingRecord> {
    let fingerprint: Fingerprint = result.fingerprints.as_ref()?["phalanx/v1"]
        .as_str()?
        .parse()
        .ok()?;
    let text = |v: &Option<Value>, key: &str| -> Option<String> {
        v.as_ref()
            .and_then(|v| v[key].as_str())
            .map(ToString::to_string)
    };
    let rule = result
        .rule_id
        .as_ref()
        .and_then(Value::as_str)
        .map(ToString::to_string)
        .or_else(|| text(&result.rule, "id"))
        .unwrap_or_default();
    let severity = result
        .properties
        .as_ref()
        .and_then(|p| p["phalanx/severity"].as_str())
        .and_then(|s| s.parse::<Severity>().ok())
        .unwrap_or(Severity::Info);
    let physical = result.locations.as_ref().map(|l| &l[0]["physicalLocation"]);
    let path = physical
        .and_then(|p| p["artifactLocation"]["uri"].as_str())
        .map(crate::findings::path::repo_relative);
    let line = physical.and_then(|p| p["region"]["startLine"].as_u64());
    let message = text(&result.message, "text").unwrap_or_default();
    Some(FindingRecord {
        fingerprint,
        rule,
        severity,
        path,
        line,
        message: crate::report::one_line(&message, FindingRecord::MAX_MESSAGE),
    })
}

fn from_run_json(source: String, suites: Vec<JsonSuite>) -> Result<Baseline, &'static str> {
    let mut baseline = Baseline::new(source);
    for suite in suites {
        let Some(findings) = suite.findings else {
            continue;
        };
        match findings.list {
            Some(list) => {
                for record in list {
                    baseline.add(&suite.name, record);
                }
            }
            None if findings.total > 0 => {
                return Err(
                    "this run.json does not list its findings (an older Phalanx wrote it): use the results.sarif of the same run",
                );
            }
            None => {}
        }
    }
    Ok(baseline)
}

#[cfg(test)]
mod tests;
