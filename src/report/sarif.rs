//! The merged SARIF log (`results.sarif`): one SARIF 2.1.0 file for code-scanning tools,
//! with every run of every SARIF suite, each run's `automationDetails.id` set to its suite.
//!
//! Nothing the tools wrote is dropped: each suite's files are streamed again from the
//! results folder and copied run by run, so the tool, its rules, artifacts, code flows and
//! anything else survive as written. Each result that is a finding gains our view of it:
//! `properties["phalanx/severity"]`, `properties["phalanx/blocking"]` (whether it failed the
//! suite) and `fingerprints["phalanx/v1"]`. Results are held one at a time, so a 50 MB
//! input costs about one result of memory here, not the file.
//!
//! With a baseline (`--baseline`), every finding's result gains `baselineState` (`new` or
//! `unchanged`). The baseline's findings that are gone (absent) are not written as
//! results: GitHub code scanning ignores `baselineState` and opens an alert for every
//! result it is given, so an absent result would keep a fixed alert open. They are listed
//! in the properties of the suite's first run instead, as `phalanx/absent`.
//!
//! A result covered by an entry of the suppressions file gains an `external` suppression
//! (`status: accepted`, the entry's reason as justification, owner, expiry and ticket in
//! its properties). SARIF wants either every result of a run to have `suppressions` or
//! none, so the other results of such a run get an empty array.
//!
//! Suites whose SARIF could not be read (errors) are left out rather than written as empty
//! runs: code scanning closes the alerts of a category that reports no results, and a
//! scanner that crashed must not look like one that found everything fixed.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use super::{ReportError, atomic_write_with};
use crate::findings::{
    Finding, FindingRecord, Gate, Severity, SuiteFindings, SuiteResults, Suppression,
};
use crate::outcome::{RunReport, SuiteReport};

/// The `$schema` written at the top; most SARIF producers use this one.
pub const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Big reads and writes: the files can be tens of megabytes.
const BUFFER: usize = 256 << 10;

/// The merged SARIF could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A suite's SARIF file, read fine during the run, could not be read again.
    #[error("cannot read {} again: {error}", path.display())]
    Source { path: PathBuf, error: String },
}

/// Writes the merged log to `path` atomically.
pub fn write_sarif(run: &RunReport, path: &Path) -> Result<(), ReportError> {
    atomic_write_with(path, |out| {
        write_merged(run, out).map_err(|error| ReportError::Sarif {
            path: path.to_path_buf(),
            error,
        })
    })
}

/// Streams the merged log into `out`.
pub fn write_merged(run: &RunReport, out: &mut dyn Write) -> Result<(), MergeError> {
    write!(
        out,
        "{{\"$schema\":{},\"version\":\"2.1.0\",\"runs\":[",
        Value::from(SCHEMA_URI)
    )?;
    let mut emitter = Emitter {
        out,
        error: None,
        first_run: true,
    };
    for suite in &run.suites {
        if let Some(SuiteResults::Sarif(findings)) = suite.results.as_deref() {
            copy_suite(&mut emitter, suite, findings)?;
        }
    }
    emitter.out.write_all(b"]}\n")?;
    Ok(())
}

fn copy_suite(
    emitter: &mut Emitter,
    suite: &SuiteReport,
    findings: &SuiteFindings,
) -> Result<(), MergeError> {
    let fail_on = suite
        .findings
        .as_ref()
        .map_or(Severity::High, |f| f.fail_on);
    let gate = suite.findings.as_ref().map_or(Gate::All, |f| f.gate);
    let absent = suite.findings.as_ref().map_or(&[][..], |f| &f.absent[..]);
    let mut suite_run = SuiteRun {
        suite: &suite.name,
        runs: findings.runs,
        next_run: 1,
        findings: &findings.findings,
        cursor: 0,
        fail_on,
        gate,
        absent,
        external_runs: findings
            .findings
            .iter()
            .filter(|f| matches!(f.suppression, Suppression::External(_)))
            .map(|f| (f.origin.file, f.origin.run))
            .collect(),
    };
    for (index, source) in findings.sources.iter().enumerate() {
        copy_file(emitter, &mut suite_run, index as u32, source)?;
    }
    Ok(())
}

fn copy_file(
    emitter: &mut Emitter,
    suite: &mut SuiteRun,
    file: u32,
    path: &Path,
) -> Result<(), MergeError> {
    let source_err = |error: String| MergeError::Source {
        path: path.to_path_buf(),
        error,
    };
    let reader = File::open(path).map_err(|e| source_err(e.to_string()))?;
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(BUFFER, reader));
    let seed = LogSeed {
        emitter,
        suite,
        file,
    };
    let copied = de.deserialize_map(seed);
    if let Some(e) = emitter.error.take() {
        return Err(MergeError::Io(e));
    }
    copied.map_err(|e| source_err(e.to_string()))
}

/// The output and the first write error (serde's error type cannot carry an `io::Error`,
/// so it is kept aside and reported after the parse stops).
struct Emitter<'w> {
    out: &'w mut dyn Write,
    error: Option<io::Error>,
    first_run: bool,
}

impl Emitter<'_> {
    fn raw<E: de::Error>(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.out.write_all(bytes).map_err(|e| self.fail(e))
    }

    fn value<E: de::Error>(&mut self, value: &Value) -> Result<(), E> {
        serde_json::to_writer(&mut *self.out, value).map_err(|e| self.fail(e.into()))
    }

    fn fail<E: de::Error>(&mut self, e: io::Error) -> E {
        let message = e.to_string();
        self.error.get_or_insert(e);
        E::custom(format!("writing the merged SARIF failed: {message}"))
    }
}

/// Where we are in one suite: which run is next and which finding is next.
struct SuiteRun<'a> {
    suite: &'a str,
    /// Runs the suite has in all; one run keeps the plain suite name as its id.
    runs: usize,
    next_run: usize,
    /// The suite's findings, in file order, to match against results as they stream by.
    findings: &'a [Finding],
    cursor: usize,
    fail_on: Severity,
    gate: Gate,
    /// Baseline findings gone from this suite, to list in its first run; emptied once
    /// written.
    absent: &'a [FindingRecord],
    /// `(file, run)` of the runs with a result suppressed by the suppressions file.
    external_runs: HashSet<(u32, u32)>,
}

impl SuiteRun<'_> {
    /// `bandit` for a suite's only run; `bandit/1`, `bandit/2`… when it has several, so
    /// each run has its own id while code scanning still groups them by suite (the part
    /// before the last `/` is the category).
    fn automation_id(&mut self) -> String {
        let n = self.next_run;
        self.next_run += 1;
        if self.runs <= 1 {
            self.suite.to_string()
        } else {
            format!("{}/{n}", self.suite)
        }
    }

    /// The finding made from result `result` of run `run` in file `file`, if any.
    fn finding_at(&mut self, file: u32, run: u32, result: u32) -> Option<&Finding> {
        let here = (file, run, result);
        let key = |f: &Finding| (f.origin.file, f.origin.run, f.origin.result);
        while self
            .findings
            .get(self.cursor)
            .is_some_and(|f| key(f) < here)
        {
            self.cursor += 1;
        }
        let found = self.findings.get(self.cursor).filter(|f| key(f) == here)?;
        self.cursor += 1;
        Some(found)
    }
}

/// The top level of a SARIF file: only `runs` is copied (the merged log has its own
/// `$schema` and `version`).
struct LogSeed<'e, 'w, 's, 'a> {
    emitter: &'e mut Emitter<'w>,
    suite: &'s mut SuiteRun<'a>,
    file: u32,
}

impl<'de> Visitor<'de> for LogSeed<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a SARIF log object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "runs" {
                map.next_value_seed(RunsSeed {
                    emitter: &mut *self.emitter,
                    suite: &mut *self.suite,
                    file: self.file,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct RunsSeed<'e, 'w, 's, 'a> {
    emitter: &'e mut Emitter<'w>,
    suite: &'s mut SuiteRun<'a>,
    file: u32,
}

impl<'de> DeserializeSeed<'de> for RunsSeed<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RunsSeed<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of SARIF runs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut run = 0u32;
        loop {
            let seed = RunSeed {
                emitter: &mut *self.emitter,
                suite: &mut *self.suite,
                file: self.file,
                run,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            run += 1;
        }
    }
}

/// One run, copied key by key; `results` is streamed and `automationDetails` set.
struct RunSeed<'e, 'w, 's, 'a> {
    emitter: &'e mut Emitter<'w>,
    suite: &'s mut SuiteRun<'a>,
    file: u32,
    run: u32,
}

impl<'de> DeserializeSeed<'de> for RunSeed<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RunSeed<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a SARIF run object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let e = self.emitter;
        let id = self.suite.automation_id();
        let absent = std::mem::take(&mut self.suite.absent);
        let mut has_properties = false;
        e.raw(if e.first_run { b"{" } else { b",{" })?;
        e.first_run = false;
        let mut first = true;
        let mut has_automation = false;
        while let Some(key) = map.next_key::<String>()? {
            e.raw(if first { b"" } else { b"," })?;
            first = false;
            e.value(&Value::from(key.as_str()))?;
            e.raw(b":")?;
            match key.as_str() {
                "results" => map.next_value_seed(ResultsSeed {
                    emitter: &mut *e,
                    suite: &mut *self.suite,
                    file: self.file,
                    run: self.run,
                })?,
                "automationDetails" => {
                    has_automation = true;
                    let details = automation_details(map.next_value()?, &id);
                    e.value(&details)?;
                }
                "properties" => {
                    has_properties = true;
                    e.value(&with_absent(map.next_value()?, absent))?;
                }
                _ => e.value(&map.next_value::<Value>()?)?,
            }
        }
        if !has_automation {
            e.raw(if first { b"" } else { b"," })?;
            e.raw(b"\"automationDetails\":")?;
            e.value(&json!({ "id": id }))?;
        }
        if !has_properties && !absent.is_empty() {
            e.raw(b",\"properties\":")?;
            e.value(&with_absent(Value::Object(Map::new()), absent))?;
        }
        e.raw(b"}")
    }
}

/// The run's properties with `phalanx/absent`: the baseline's findings that are gone.
fn with_absent(properties: Value, absent: &[FindingRecord]) -> Value {
    if absent.is_empty() {
        return properties;
    }
    let mut obj = match properties {
        Value::Object(obj) => obj,
        // Not SARIF as written (properties must be an object); ours must be valid.
        other => Map::from_iter([("phalanx/originalProperties".to_string(), other)]),
    };
    let list: Vec<Value> = absent
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert("baselineState".into(), Value::from("absent"));
            }
            v
        })
        .collect();
    obj.insert("phalanx/absent".into(), Value::Array(list));
    Value::Object(obj)
}

/// Sets `id` to the suite's; a different id the tool gave is kept in the properties.
fn automation_details(details: Value, id: &str) -> Value {
    let Value::Object(mut obj) = details else {
        return json!({ "id": id });
    };
    let original = obj.insert("id".into(), Value::from(id));
    if let Some(original) = original.filter(|o| o.as_str() != Some(id))
        && let Value::Object(props) = obj
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()))
    {
        props.insert("phalanx/originalId".into(), original);
    }
    Value::Object(obj)
}

struct ResultsSeed<'e, 'w, 's, 'a> {
    emitter: &'e mut Emitter<'w>,
    suite: &'s mut SuiteRun<'a>,
    file: u32,
    run: u32,
}

impl<'de> DeserializeSeed<'de> for ResultsSeed<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResultsSeed<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of SARIF results")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.emitter.raw(b"null")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.emitter.raw(b"[")?;
        let mut index = 0u32;
        while let Some(mut result) = seq.next_element::<Value>()? {
            if index > 0 {
                self.emitter.raw(b",")?;
            }
            let (fail_on, gate) = (self.suite.fail_on, self.suite.gate);
            let external = self.suite.external_runs.contains(&(self.file, self.run));
            let finding = self.suite.finding_at(self.file, self.run, index);
            if let Some(finding) = finding {
                annotate(&mut result, finding, fail_on, gate);
            }
            if external {
                add_suppressions(&mut result, finding);
            }
            self.emitter.value(&result)?;
            index += 1;
        }
        self.emitter.raw(b"]")
    }
}

/// Adds our severity, verdict, fingerprint and baseline state to a result, leaving the
/// rest as it was.
fn annotate(result: &mut Value, finding: &Finding, fail_on: Severity, gate: Gate) {
    let Value::Object(obj) = result else {
        return;
    };
    if let Some(state) = finding.baseline {
        obj.insert("baselineState".into(), Value::from(state.as_str()));
    }
    if let Value::Object(props) = obj
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        props.insert(
            "phalanx/severity".into(),
            Value::from(finding.severity.as_str()),
        );
        props.insert(
            "phalanx/blocking".into(),
            Value::from(finding.is_blocking(fail_on, gate)),
        );
    }
    if let Value::Object(prints) = obj
        .entry("fingerprints")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        prints.insert(
            "phalanx/v1".into(),
            Value::from(finding.fingerprint.to_string()),
        );
    }
}

/// Gives `result` a `suppressions` array (keeping what the tool wrote), with our external
/// suppression when an entry of the suppressions file covers the finding.
fn add_suppressions(result: &mut Value, finding: Option<&Finding>) {
    let Value::Object(obj) = result else {
        return;
    };
    let list = obj
        .entry("suppressions")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        // Not SARIF as written; ours must still be an array for the run to be valid.
        *list = Value::Array(Vec::new());
    }
    let Some(Suppression::External(entry)) = finding.map(|f| &f.suppression) else {
        return;
    };
    let mut properties = Map::new();
    properties.insert("owner".into(), Value::from(entry.owner.as_str()));
    properties.insert(
        "expires".into(),
        Value::from(entry.expires.format("%Y-%m-%d").to_string()),
    );
    if let Some(ticket) = &entry.ticket {
        properties.insert("ticket".into(), Value::from(ticket.as_str()));
    }
    properties.insert("phalanx/entryLine".into(), Value::from(entry.line));
    if let Value::Array(items) = list {
        items.push(json!({
            "kind": "external",
            "status": "accepted",
            "justification": entry.reason,
            "properties": properties,
        }));
    }
}
