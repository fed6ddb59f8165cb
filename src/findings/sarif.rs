//! Reading SARIF 2.1.0 logs into [`SuiteFindings`].
//!
//! Files are read with serde straight from a buffered reader into structs that keep only
//! what findings need; everything else (artifact contents, code flows, graphs…) is skipped
//! while parsing, and snippets and tool fingerprints are hashed as they are read. So a
//! 50 MB log costs roughly its findings in memory, never its text. The merged SARIF writer
//! streams the files again from disk to preserve what this reader drops.
//!
//! Semantics follow SARIF 2.1.0 and GitHub code scanning (see `Severity::from_score`):
//! - rules are found by `ruleIndex`, `rule.index`, `ruleId` or `rule.id`, in the driver or
//!   in the extension `rule.toolComponent` names;
//! - `level` defaults to the rule's `defaultConfiguration.level`, then `warning`;
//! - only `kind: fail` (the default) is a finding; `notApplicable` is remembered per rule;
//! - a result is suppressed when it has suppressions and none is `underReview` or
//!   `rejected` (a suppression without `status` is in effect, as Semgrep writes `nosem`;
//!   the schema's misspelling `state` is read too);
//! - a run without `results`, or whose invocation says it did not succeed, means the tool
//!   did not run properly: an error, never a clean pass.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::Severity;
use super::fingerprint::{self, Basis, Digest16, Occurrences};
use super::model::{Finding, Location, Origin, Rule, SuiteFindings, Suppression, Tool};
use super::path::{self, BaseIds};

/// Rule id used for results that name no rule at all.
pub const NO_RULE: &str = "(no rule id)";

/// Big enough that a 50 MB file is read in few system calls, small enough not to matter.
const READ_BUFFER: usize = 256 << 10;

/// A SARIF file could not be read as findings. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SarifError {
    #[error("cannot open SARIF file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not JSON, truncated, or not shaped like SARIF 2.1.0; serde's message says what was
    /// expected and where (line and column).
    #[error("{} is not valid SARIF 2.1.0: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Well-formed, but the log itself says the results cannot be trusted.
    #[error("{}: {problem}", path.display())]
    Unusable { path: PathBuf, problem: String },
}

/// Reads every file into one suite's findings. Blocking: call from `spawn_blocking`.
pub fn read_files(suite: &str, files: &[PathBuf]) -> Result<SuiteFindings, SarifError> {
    let mut builder = Builder::new(suite);
    for (i, path) in files.iter().enumerate() {
        let log = parse_file(path)?;
        builder.add_log(log, i as u32, path)?;
    }
    Ok(builder.out)
}

/// Reads SARIF text already in memory (tests, small tools); errors name `<memory>`.
pub fn read_str(suite: &str, text: &str) -> Result<SuiteFindings, SarifError> {
    let path = Path::new("<memory>");
    let log: RawLog = serde_json::from_str(text).map_err(|source| SarifError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    check_version(&log, path)?;
    let mut builder = Builder::new(suite);
    builder.add_log(log, 0, path)?;
    Ok(builder.out)
}

fn parse_file(path: &Path) -> Result<RawLog, SarifError> {
    let file = File::open(path).map_err(|source| SarifError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = BufReader::with_capacity(READ_BUFFER, file);
    let invalid = |source| SarifError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let log = RawLog::deserialize(&mut de).map_err(invalid)?;
    // Trailing garbage after the log means the file is not what the tool meant to write.
    de.end().map_err(invalid)?;
    check_version(&log, path)?;
    Ok(log)
}

fn check_version(log: &RawLog, path: &Path) -> Result<(), SarifError> {
    if log.version == "2.1.0" {
        return Ok(());
    }
    Err(SarifError::Unusable {
        path: path.to_path_buf(),
        problem: format!(
            "SARIF version `{}` is not supported (expected 2.1.0)",
            log.version
        ),
    })
}

// ---- What is read from the file -------------------------------------------------------

#[derive(Deserialize)]
struct RawLog {
    version: String,
    runs: Vec<RawRun>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRun {
    tool: RawTool,
    /// `None` when absent or null: SARIF's way to say the tool did not run.
    results: Option<Vec<RawResult>>,
    #[serde(default)]
    original_uri_base_ids: HashMap<String, RawArtifactLocation>,
    #[serde(default)]
    artifacts: Vec<RawArtifact>,
    #[serde(default)]
    invocations: Vec<RawInvocation>,
}

#[derive(Deserialize)]
struct RawTool {
    driver: RawComponent,
    #[serde(default)]
    extensions: Vec<RawComponent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawComponent {
    name: String,
    version: Option<String>,
    semantic_version: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    id: String,
    name: Option<String>,
    short_description: Option<RawText>,
    default_configuration: Option<RawConfiguration>,
    #[serde(default)]
    properties: RawProperties,
    #[serde(default)]
    message_strings: HashMap<String, RawText>,
}

#[derive(Deserialize)]
struct RawText {
    text: Option<String>,
}

#[derive(Deserialize)]
struct RawConfiguration {
    level: Option<Level>,
}

/// Only `security-severity` is read from property bags. A value that is not a number
/// (some tools write `"high"`) is ignored rather than failing the log: it is a GitHub
/// convention, not part of SARIF.
#[derive(Deserialize, Default)]
struct RawProperties {
    #[serde(rename = "security-severity", default, deserialize_with = "score")]
    security_severity: Option<f64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "camelCase")]
enum Level {
    Error,
    Warning,
    Note,
    None,
}

impl Level {
    fn severity(self) -> Severity {
        match self {
            Level::Error => Severity::High,
            Level::Warning => Severity::Medium,
            Level::Note => Severity::Low,
            Level::None => Severity::Info,
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "camelCase")]
enum Kind {
    Fail,
    Pass,
    Open,
    Review,
    Informational,
    NotApplicable,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResult {
    rule_id: Option<String>,
    rule_index: Option<i64>,
    rule: Option<RawRuleReference>,
    kind: Option<Kind>,
    level: Option<Level>,
    message: RawMessage,
    #[serde(default, rename = "locations", deserialize_with = "first_location")]
    location: Option<RawLocation>,
    #[serde(default, deserialize_with = "map_digest")]
    fingerprints: Option<Digest16>,
    #[serde(default, deserialize_with = "map_digest")]
    partial_fingerprints: Option<Digest16>,
    suppressions: Option<Vec<RawSuppression>>,
    #[serde(default)]
    properties: RawProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRuleReference {
    id: Option<String>,
    index: Option<i64>,
    tool_component: Option<RawComponentReference>,
}

#[derive(Deserialize)]
struct RawComponentReference {
    name: Option<String>,
    index: Option<i64>,
}

#[derive(Deserialize)]
struct RawMessage {
    text: Option<String>,
    id: Option<String>,
    #[serde(default)]
    arguments: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLocation {
    physical_location: Option<RawPhysicalLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPhysicalLocation {
    artifact_location: Option<RawArtifactLocation>,
    region: Option<RawRegion>,
    context_region: Option<RawRegion>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct RawArtifactLocation {
    uri: Option<String>,
    uri_base_id: Option<String>,
    index: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRegion {
    start_line: Option<u64>,
    start_column: Option<u64>,
    end_line: Option<u64>,
    #[serde(default, deserialize_with = "snippet_digest")]
    snippet: Option<Digest16>,
}

#[derive(Deserialize)]
struct RawArtifact {
    location: Option<RawArtifactLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInvocation {
    execution_successful: bool,
    #[serde(default)]
    tool_execution_notifications: Vec<RawNotification>,
}

#[derive(Deserialize)]
struct RawNotification {
    message: Option<RawText>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum SuppressionStatus {
    Accepted,
    UnderReview,
    Rejected,
}

/// SARIF 2.1.0 names the field `status`; the published JSON schema misspells it `state`
/// (oasis-tcs/sarif-spec#449), and tools generated from that schema write `state`. Both
/// are read, `status` first.
#[derive(Deserialize)]
struct RawSuppression {
    status: Option<SuppressionStatus>,
    state: Option<SuppressionStatus>,
    justification: Option<String>,
}

impl RawSuppression {
    fn status(&self) -> Option<&SuppressionStatus> {
        self.status.as_ref().or(self.state.as_ref())
    }
}

/// `"7.5"` or `7.5` → 7.5; anything else → none.
fn score<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|s: &f64| s.is_finite()))
}

/// Keeps the first location (the one every consumer shows) and skips the rest unparsed.
fn first_location<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawLocation>, D::Error> {
    struct First;
    impl<'de> serde::de::Visitor<'de> for First {
        type Value = Option<RawLocation>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of locations")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let first = seq.next_element()?;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_any(First)
}

/// A string map (fingerprints) hashed as soon as it is read. Empty values are left out:
/// Gitleaks without git history writes `commitSha: ""` and the like, which identify
/// nothing, so a map of only empty values counts as no fingerprint at all.
fn map_digest<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Digest16>, D::Error> {
    let map: Option<HashMap<String, String>> = Option::deserialize(d)?;
    let mut pairs: Vec<(String, String)> = map
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    Ok((!pairs.is_empty()).then(|| fingerprint::tool_digest(&mut pairs)))
}

/// A snippet (`{"text": …}`) hashed as soon as it is read.
fn snippet_digest<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Digest16>, D::Error> {
    let snippet: Option<RawText> = Option::deserialize(d)?;
    Ok(snippet
        .and_then(|s| s.text)
        .filter(|t| !t.trim().is_empty())
        .map(|t| fingerprint::snippet_digest(&t)))
}

// ---- From what was read to findings ----------------------------------------------------

/// What results of one run are resolved against.
struct RunContext<'a> {
    tool: usize,
    /// The driver first, then the extensions.
    components: Vec<&'a RawComponent>,
    /// Per component: rule id → index in its `rules`.
    rule_ids: Vec<HashMap<&'a str, usize>>,
    bases: BaseIds,
    artifacts: &'a [RawArtifact],
}

/// Accumulates one suite's findings across files and runs.
struct Builder {
    out: SuiteFindings,
    tools: HashMap<(String, Option<String>), usize>,
    rules: HashMap<(usize, String), usize>,
    occurrences: Occurrences,
}

impl Builder {
    fn new(suite: &str) -> Self {
        Builder {
            out: SuiteFindings {
                suite: suite.to_string(),
                ..SuiteFindings::default()
            },
            tools: HashMap::new(),
            rules: HashMap::new(),
            occurrences: Occurrences::default(),
        }
    }

    fn add_log(&mut self, log: RawLog, file: u32, path: &Path) -> Result<(), SarifError> {
        self.out.sources.push(path.to_path_buf());
        for (r, run) in log.runs.into_iter().enumerate() {
            self.add_run(run, file, r as u32)
                .map_err(|problem| SarifError::Unusable {
                    path: path.to_path_buf(),
                    problem: format!("run {r}: {problem}"),
                })?;
        }
        Ok(())
    }

    fn add_run(&mut self, run: RawRun, file: u32, run_index: u32) -> Result<(), String> {
        let RawRun {
            tool,
            results,
            original_uri_base_ids,
            artifacts,
            invocations,
        } = run;
        check_invocations(&invocations)?;
        let results = results.ok_or(
            "it has no `results`, which in SARIF means the tool did not run (an empty list means no findings)",
        )?;
        self.out.runs += 1;
        let ctx = self.run_context(&tool, original_uri_base_ids, &artifacts);
        for (i, raw) in results.into_iter().enumerate() {
            let origin = Origin {
                file,
                run: run_index,
                result: i as u32,
            };
            self.add_result(raw, &ctx, origin)
                .map_err(|e| format!("result {i}: {e}"))?;
        }
        Ok(())
    }

    fn run_context<'a>(
        &mut self,
        tool: &'a RawTool,
        bases: HashMap<String, RawArtifactLocation>,
        artifacts: &'a [RawArtifact],
    ) -> RunContext<'a> {
        let driver = &tool.driver;
        let version = driver.version.clone().or(driver.semantic_version.clone());
        let tool_index = self.tool(&driver.name, version);
        let components: Vec<&RawComponent> =
            std::iter::once(driver).chain(&tool.extensions).collect();
        for component in &components {
            for rule in &component.rules {
                self.rule(tool_index, &rule.id, Some(rule), true);
            }
        }
        let rule_ids = components
            .iter()
            .map(|c| {
                c.rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id.as_str(), i))
                    .collect()
            })
            .collect();
        let bases = bases
            .into_iter()
            .map(|(k, v)| (k, (v.uri, v.uri_base_id)))
            .collect();
        RunContext {
            tool: tool_index,
            components,
            rule_ids,
            bases,
            artifacts,
        }
    }

    fn tool(&mut self, name: &str, version: Option<String>) -> usize {
        let key = (name.to_string(), version.clone());
        if let Some(&i) = self.tools.get(&key) {
            return i;
        }
        self.out.tools.push(Tool {
            name: name.to_string(),
            version,
        });
        self.tools.insert(key, self.out.tools.len() - 1);
        self.out.tools.len() - 1
    }

    /// The suite's index of rule `id` of `tool`, registering it on first sight; a rule
    /// first seen in a result and declared later (another run) becomes declared.
    fn rule(&mut self, tool: usize, id: &str, raw: Option<&RawRule>, declared: bool) -> usize {
        if let Some(&i) = self.rules.get(&(tool, id.to_string())) {
            let rule = &mut self.out.rules[i];
            rule.declared |= declared;
            if let Some(raw) = raw {
                rule.name = rule.name.take().or_else(|| raw.name.clone());
                rule.short_description = rule.short_description.take().or_else(|| description(raw));
            }
            return i;
        }
        self.out.rules.push(Rule {
            id: id.to_string(),
            tool,
            name: raw.and_then(|r| r.name.clone()),
            short_description: raw.and_then(description),
            declared,
            not_applicable: 0,
        });
        let index = self.out.rules.len() - 1;
        self.rules.insert((tool, id.to_string()), index);
        index
    }

    fn add_result(
        &mut self,
        raw: RawResult,
        ctx: &RunContext,
        origin: Origin,
    ) -> Result<(), String> {
        let (rule_id, rule) = resolve_rule(&raw, ctx)?;
        let rule_index = self.rule(ctx.tool, &rule_id, rule, false);
        match raw.kind.unwrap_or(Kind::Fail) {
            Kind::Fail => {}
            Kind::NotApplicable => {
                self.out.rules[rule_index].not_applicable += 1;
                return Ok(());
            }
            _ => return Ok(()),
        }
        let finding = self.finding(raw, ctx, rule, &rule_id, rule_index, origin);
        self.out.findings.push(finding);
        Ok(())
    }

    fn finding(
        &mut self,
        raw: RawResult,
        ctx: &RunContext,
        rule: Option<&RawRule>,
        rule_id: &str,
        rule_index: usize,
        origin: Origin,
    ) -> Finding {
        let severity = severity(&raw, rule);
        let suppression = suppression(raw.suppressions.as_deref());
        let region = raw
            .location
            .as_ref()
            .and_then(|l| l.physical_location.as_ref());
        let location = region.and_then(|p| location(p, ctx));
        let message = message_text(raw.message, rule);
        let basis = basis(
            &raw.fingerprints,
            &raw.partial_fingerprints,
            region,
            &message,
        );
        let path = location.as_ref().map_or("", |l| l.path.as_str());
        let fingerprint = self
            .occurrences
            .next(fingerprint::base_hash(rule_id, path, &basis));
        Finding {
            rule: rule_index,
            severity,
            message,
            location,
            fingerprint,
            suppression,
            baseline: None,
            origin,
        }
    }
}

fn description(rule: &RawRule) -> Option<String> {
    rule.short_description.as_ref().and_then(|d| d.text.clone())
}

/// An invocation that says it did not succeed makes the whole log untrustworthy.
fn check_invocations(invocations: &[RawInvocation]) -> Result<(), String> {
    let Some(failed) = invocations.iter().find(|i| !i.execution_successful) else {
        return Ok(());
    };
    let said = failed
        .tool_execution_notifications
        .iter()
        .find_map(|n| n.message.as_ref().and_then(|m| m.text.as_deref()))
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    Err(format!(
        "the tool reported that it did not run successfully{said}"
    ))
}

/// The result's rule: its id and, when the tool declared it, its descriptor.
fn resolve_rule<'a>(
    raw: &RawResult,
    ctx: &RunContext<'a>,
) -> Result<(String, Option<&'a RawRule>), String> {
    let reference = raw.rule.as_ref();
    let component = component_of(reference, ctx)?;
    let index = raw
        .rule_index
        .or(reference.and_then(|r| r.index))
        .filter(|i| *i >= 0);
    let id = raw
        .rule_id
        .as_deref()
        .or(reference.and_then(|r| r.id.as_deref()));
    let rules = &ctx.components[component].rules;
    let rule = match (index, id) {
        (Some(i), _) => Some(rules.get(i as usize).ok_or_else(|| {
            format!(
                "ruleIndex {i} is out of range: the tool declares {} rule(s)",
                rules.len()
            )
        })?),
        (None, Some(id)) => find_rule_by_id(id, component, ctx),
        (None, None) => None,
    };
    let id = id
        .map(str::to_string)
        .or_else(|| rule.map(|r| r.id.clone()))
        .unwrap_or_else(|| NO_RULE.to_string());
    Ok((id, rule))
}

/// Which component declares the rule: `rule.toolComponent` by index or name, else the
/// driver.
fn component_of(reference: Option<&RawRuleReference>, ctx: &RunContext) -> Result<usize, String> {
    let Some(component) = reference.and_then(|r| r.tool_component.as_ref()) else {
        return Ok(0);
    };
    if let Some(i) = component.index.filter(|i| *i >= 0) {
        // toolComponent.index counts extensions only.
        let index = i as usize + 1;
        return if index < ctx.components.len() {
            Ok(index)
        } else {
            Err(format!(
                "rule.toolComponent.index {i} is out of range: the tool has {} extension(s)",
                ctx.components.len() - 1
            ))
        };
    }
    let name = component.name.as_deref();
    Ok(ctx
        .components
        .iter()
        .position(|c| Some(c.name.as_str()) == name)
        .unwrap_or(0))
}

/// By id in the given component first, then anywhere in the run's tool.
fn find_rule_by_id<'a>(id: &str, component: usize, ctx: &RunContext<'a>) -> Option<&'a RawRule> {
    let in_component = |c: usize| {
        ctx.rule_ids[c]
            .get(id)
            .map(|&i| &ctx.components[c].rules[i])
    };
    in_component(component).or_else(|| (0..ctx.components.len()).find_map(in_component))
}

/// `security-severity` (result, then rule), else the level (result, then the rule's
/// default, then `warning`).
fn severity(raw: &RawResult, rule: Option<&RawRule>) -> Severity {
    let score = raw
        .properties
        .security_severity
        .or(rule.and_then(|r| r.properties.security_severity));
    if let Some(score) = score {
        return Severity::from_score(score);
    }
    raw.level
        .or(rule
            .and_then(|r| r.default_configuration.as_ref())
            .and_then(|c| c.level))
        .unwrap_or(Level::Warning)
        .severity()
}

/// Suppressed when every suppression is in effect (accepted or without status).
fn suppression(suppressions: Option<&[RawSuppression]>) -> Suppression {
    let Some(list) = suppressions.filter(|l| !l.is_empty()) else {
        return Suppression::None;
    };
    let in_effect = list
        .iter()
        .all(|s| matches!(s.status(), None | Some(SuppressionStatus::Accepted)));
    if !in_effect {
        return Suppression::None;
    }
    let justification = list
        .iter()
        .find_map(|s| s.justification.clone().filter(|j| !j.trim().is_empty()));
    Suppression::InSource { justification }
}

fn location(physical: &RawPhysicalLocation, ctx: &RunContext) -> Option<Location> {
    let artifact = physical.artifact_location.as_ref()?;
    // The location may only point at `run.artifacts[index]`.
    let from_index = artifact
        .index
        .filter(|i| *i >= 0)
        .and_then(|i| ctx.artifacts.get(i as usize))
        .and_then(|a| a.location.as_ref());
    let uri = artifact
        .uri
        .as_deref()
        .or(from_index.and_then(|l| l.uri.as_deref()))?;
    let base = artifact
        .uri_base_id
        .as_deref()
        .or(from_index.and_then(|l| l.uri_base_id.as_deref()));
    let region = physical.region.as_ref();
    Some(Location {
        path: path::resolve(uri, base, &ctx.bases),
        start_line: region.and_then(|r| r.start_line),
        start_column: region.and_then(|r| r.start_column),
    })
}

/// `message.text`, else the rule's message string `message.id` with its `{n}` arguments.
fn message_text(message: RawMessage, rule: Option<&RawRule>) -> String {
    if let Some(text) = message.text {
        return text;
    }
    let template = message
        .id
        .as_deref()
        .and_then(|id| rule?.message_strings.get(id))
        .and_then(|m| m.text.as_deref());
    let Some(template) = template else {
        return String::new();
    };
    let mut text = template.to_string();
    for (i, arg) in message.arguments.iter().enumerate() {
        text = text.replace(&format!("{{{i}}}"), arg);
    }
    text
}

/// The tool's fingerprints, else the snippet, else the message (see `fingerprint`).
fn basis(
    fingerprints: &Option<Digest16>,
    partial: &Option<Digest16>,
    physical: Option<&RawPhysicalLocation>,
    message: &str,
) -> Basis {
    match (fingerprints, partial) {
        (Some(a), Some(b)) => return Basis::Tool(combine(a, b)),
        (Some(d), None) | (None, Some(d)) => return Basis::Tool(*d),
        (None, None) => {}
    }
    let region = physical.and_then(|p| p.region.as_ref());
    let snippet = region.and_then(|r| r.snippet).or(physical
        .and_then(|p| p.context_region.as_ref())
        .and_then(|r| r.snippet));
    if let Some(snippet) = snippet {
        return Basis::Snippet(snippet);
    }
    let lines: Vec<u64> = region
        .map(|r| [r.start_line, r.end_line].into_iter().flatten().collect())
        .unwrap_or_default();
    Basis::Message(fingerprint::normalise_message(message, &lines))
}

fn combine(a: &Digest16, b: &Digest16) -> Digest16 {
    let mut pairs = vec![
        ("fingerprints".to_string(), hex(a)),
        ("partialFingerprints".to_string(), hex(b)),
    ];
    fingerprint::tool_digest(&mut pairs)
}

fn hex(d: &Digest16) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
