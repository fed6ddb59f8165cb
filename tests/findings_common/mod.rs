//! Helpers shared by the `findings_*` tests: suites judged from fixture files, the SARIF
//! schema from the shared folder, and a generator for large SARIF logs.
//! Use with `mod findings_common;`.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use phalanx::config::{Policy, ResultFormat, ResultsSpec, Suite};
use phalanx::engine::ExitStatus;
use phalanx::findings::Severity;
use phalanx::findings::verdict::{self, Evidence};
use phalanx::outcome::{Outcome, RunReport, SuiteReport};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The project's shared folder: `$PHALANX_SHARED`, else `../shared` beside the checkout.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("PHALANX_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// A probe suite (tests/probe) whose container writes Bandit's SARIF fixture, changed by
/// `edit` (the results of its one run), and exits 1 as Bandit does on findings.
pub fn probe_bandit_suite(image: &str, edit: impl FnOnce(&mut Vec<Value>)) -> String {
    let text = std::fs::read_to_string(fixtures().join("sarif/bandit.sarif")).unwrap();
    let mut log: Value = serde_json::from_str(&text).unwrap();
    edit(log["runs"][0]["results"].as_array_mut().unwrap());
    let command: Vec<toml::Value> = [
        "/probe",
        "write",
        "/results/bandit.sarif",
        &log.to_string(),
        "--",
        "exit",
        "1",
    ]
    .into_iter()
    .map(|s| toml::Value::String(s.into()))
    .collect();
    format!(
        "image = {}\ncommand = {}\n[results]\nformat = \"sarif\"\npath = \"/results/bandit.sarif\"\nok_exit_codes = [0, 1]\n",
        toml::Value::String(image.into()),
        toml::Value::Array(command)
    )
}

/// A validator for the SARIF 2.1.0 schema, or `None` after saying why the check is
/// skipped, so a clone without the shared folder still passes.
pub fn sarif_validator() -> Option<jsonschema::Validator> {
    let path = shared_dir().join("schemas/sarif-schema-2.1.0.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!(
                "skipping the SARIF schema check: {} not readable ({e}); set PHALANX_SHARED",
                path.display()
            );
            return None;
        }
    };
    let mut schema: Value = serde_json::from_str(&text).expect("the SARIF schema is JSON");
    escape_stray_bracket(&mut schema);
    allow_suppression_status(&mut schema);
    Some(jsonschema::validator_for(&schema).expect("the SARIF schema compiles"))
}

/// The published schema's `language` patterns (on `run` and `toolComponent`) end in a
/// lone `]`: a literal in ECMAScript regexes, but rejected by jsonschema's check that
/// patterns are valid regexes. Escaping it keeps each pattern's meaning.
fn escape_stray_bracket(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value.as_str() {
                    Some(p) if key == "pattern" && p.ends_with("{2}]?$") => {
                        *value = Value::from(format!("{}\\]?$", &p[..p.len() - 3]));
                    }
                    _ => escape_stray_bracket(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(escape_stray_bracket),
        _ => {}
    }
}

/// The published schema misspells `suppression.status` (SARIF 2.1.0 §3.35.3) as `state`
/// (oasis-tcs/sarif-spec#449, fixed in the errata schema). Tools write `status`, the merge
/// copies it as written, so `status` is allowed beside `state`, with the same values.
/// Nothing else in the schema is changed.
fn allow_suppression_status(schema: &mut Value) {
    let props = &mut schema["definitions"]["suppression"]["properties"];
    if props.get("status").is_none()
        && let Some(state) = props.get("state").cloned()
    {
        props["status"] = state;
    }
}

/// Panics with every schema violation (up to 20) when `log` is not valid SARIF 2.1.0.
pub fn assert_valid_sarif(validator: &jsonschema::Validator, log: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(log)
        .take(20)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} is not valid SARIF 2.1.0:\n{}",
        errors.join("\n")
    );
}

/// A suite as the config loader would make it.
pub fn suite(name: &str, format: ResultFormat, fail_on: Severity) -> Suite {
    Suite {
        name: name.to_string(),
        description: String::new(),
        tags: Vec::new(),
        image: format!("phalanx/{name}:1"),
        build: None,
        command: None,
        env: BTreeMap::new(),
        secret_env: Default::default(),
        timeout: Duration::from_secs(60),
        retries: 0,
        weight: 1,
        results: ResultsSpec {
            format,
            path: "/results".into(),
            ok_exit_codes: vec![0, 1],
            fail_on,
            gate: Default::default(),
        },
        policy: Policy::default(),
        needs: Vec::new(),
        placement: Vec::new(),
        source: PathBuf::from(format!("suites/{name}.toml")),
    }
}

/// The report of `suite` after its tool exited 0 leaving `files` (relative to `dir`).
pub fn judged(suite: &Suite, dir: &Path, files: &[&str]) -> SuiteReport {
    let mut report = SuiteReport::not_run(&suite.name, &suite.image, Outcome::Error, None);
    let start = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 1).unwrap();
    report.started_at = Some(start);
    report.finished_at = Some(start + chrono::Duration::seconds(4));
    report.duration = Duration::from_secs(4);
    report.exit_code = Some(0);
    report.attempts = 1;
    report.results_dir = Some(dir.to_path_buf());
    report.result_files = files.iter().map(PathBuf::from).collect();
    let evidence = Evidence {
        status: ExitStatus {
            code: 0,
            oom_killed: false,
        },
        results_dir: report.results_dir.clone(),
        result_files: report.result_files.clone(),
        result_path_found: true,
    };
    verdict::decide(suite, &evidence).apply(&mut report);
    report
}

/// The sentence a report's cause reads as.
pub fn reason(report: &SuiteReport) -> Option<String> {
    report.cause.as_ref().map(ToString::to_string)
}

pub fn run_of(suites: Vec<SuiteReport>) -> RunReport {
    let start = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
    RunReport {
        run_id: "run-1".into(),
        phalanx_version: "0.1.0".into(),
        started_at: start,
        finished_at: start + chrono::Duration::seconds(10),
        interrupted: None,
        suites,
        invalid_suites: Vec::new(),
        partition: None,
        suppressions: Default::default(),
        target: None,
        baseline: None,
    }
}

/// What [`write_big_sarif`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BigLog {
    pub bytes: u64,
    pub results: usize,
    pub rules: usize,
    /// Results under a suppression (every fiftieth).
    pub suppressed: usize,
    /// Unsuppressed results at or above `high`: what fails the suite at the default
    /// threshold (rule 0 is critical, every fifth rule high).
    pub blocking: usize,
}

pub const BIG_RULES: usize = 200;

/// Writes a Semgrep/CodeQL-shaped log of at least `min_bytes` (one run, [`BIG_RULES`]
/// rules, results with snippets, related locations and code flows) and says what is in it.
/// Streamed, so making a 50 MB file costs no memory to speak of.
pub fn write_big_sarif(path: &Path, min_bytes: u64) -> BigLog {
    let file = std::fs::File::create(path).expect("creating the big SARIF file");
    let mut out = CountingWriter {
        inner: BufWriter::new(file),
        bytes: 0,
    };
    let rules: Vec<Value> = (0..BIG_RULES).map(big_rule).collect();
    let head = serde_json::json!({
        "name": "bigscan", "version": "9.9.9", "informationUri": "https://example.test/bigscan",
        "rules": rules,
    });
    write!(
        out,
        "{{\"$schema\":\"https://json.schemastore.org/sarif-2.1.0.json\",\"version\":\"2.1.0\",\"runs\":[{{\"tool\":{{\"driver\":{head}}},\"results\":["
    )
    .unwrap();
    let mut log = BigLog {
        rules: BIG_RULES,
        ..BigLog::default()
    };
    while out.bytes < min_bytes {
        let i = log.results;
        if i > 0 {
            out.write_all(b",").unwrap();
        }
        out.write_all(big_result(i).as_bytes()).unwrap();
        if is_suppressed(i) {
            log.suppressed += 1;
        } else if rule_severity(i % BIG_RULES) >= 7.0 {
            log.blocking += 1;
        }
        log.results += 1;
    }
    out.write_all(b"],\"columnKind\":\"utf16CodeUnits\"}]}\n")
        .unwrap();
    out.inner.flush().unwrap();
    log.bytes = out.bytes;
    log
}

/// 9.5 for rule 0, 7.5 for every fifth, 5.0 and 2.0 for the rest.
fn rule_severity(rule: usize) -> f64 {
    match rule {
        0 => 9.5,
        r if r % 5 == 0 => 7.5,
        r if r % 2 == 0 => 5.0,
        _ => 2.0,
    }
}

fn is_suppressed(i: usize) -> bool {
    i.is_multiple_of(50)
}

fn big_rule(i: usize) -> Value {
    serde_json::json!({
        "id": format!("BIG{i:03}"),
        "name": format!("big-rule-{i}"),
        "shortDescription": {"text": format!("Big rule number {i} finds a made-up problem")},
        "fullDescription": {"text": "A rule of the generated log used to measure how Phalanx handles large SARIF files."},
        "defaultConfiguration": {"level": "warning"},
        "help": {"text": "Fix it.", "markdown": "**Fix it.**"},
        "properties": {"security-severity": format!("{:.1}", rule_severity(i)), "tags": ["security", "generated"]}
    })
}

/// One result as JSON text. Formatted directly rather than built as a `Value`: the test
/// runs unoptimised, and building 75 000 trees would dominate its time.
fn big_result(i: usize) -> String {
    let rule = i % BIG_RULES;
    let file = format!("file:///target/src/pkg{}/module_{}.py", i % 37, i % 1013);
    let line = 1 + (i * 7) % 4000;
    let related = line.saturating_sub(3).max(1);
    let mut extra = String::new();
    if i.is_multiple_of(3) {
        let hash = i.wrapping_mul(2_654_435_761);
        extra.push_str(&format!(
            r#","partialFingerprints":{{"primaryLocationLineHash":"{hash:016x}:1"}}"#
        ));
    }
    if is_suppressed(i) {
        extra.push_str(
            r#","suppressions":[{"kind":"inSource","justification":"generated suppression"}]"#,
        );
    }
    format!(
        concat!(
            r#"{{"ruleId":"BIG{rule:03}","ruleIndex":{rule},"level":"warning","#,
            r#""message":{{"text":"Generated finding {i}: the value flowing into this call comes from an untrusted source and is used without validation."}},"#,
            r#""locations":[{{"physicalLocation":{{"artifactLocation":{{"uri":"{file}"}},"#,
            r#""region":{{"startLine":{line},"startColumn":5,"endLine":{line},"endColumn":60,"#,
            r#""snippet":{{"text":"    result = dangerous_call(user_input_{i}, flag=True)  # generated"}}}}}}}}],"#,
            r#""relatedLocations":[{{"id":1,"physicalLocation":{{"artifactLocation":{{"uri":"{file}"}},"region":{{"startLine":{related}}}}},"message":{{"text":"source"}}}}],"#,
            r#""properties":{{"generated":true}}{extra}}}"#
        ),
        rule = rule,
        i = i,
        file = file,
        line = line,
        related = related,
        extra = extra,
    )
}

struct CountingWriter<W: Write> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
