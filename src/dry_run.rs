//! `phalanx run --dry-run`: the resolved plan of a run, without running anything. Which
//! suites would start and in what order, how long the store expects each to take, which
//! images exist and which would be built, each suite's effective policy (after the project's
//! and the suite's overrides) and the shard. Rendered as text for people or as one JSON
//! document for scripts; nothing here talks to the engine: the caller says what it knows
//! of each image.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::{NetworkMode, Policy, ResultFormat, Suite};
use crate::findings::Severity;
use crate::outcome::InvalidSuite;

/// Bumped when a field of the JSON document changes meaning; fields are only ever added.
pub const SCHEMA: u32 = 1;

/// What is known of a suite's image before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageState {
    /// On the engine already.
    Present,
    /// Missing; the suite's `build` context would make it.
    WouldBuild,
    /// Missing and nothing can make it: a real run ends the suite in error.
    Missing,
    /// The engine could not be asked.
    Unknown,
}

impl ImageState {
    fn describe(self) -> &'static str {
        match self {
            ImageState::Present => "present",
            ImageState::WouldBuild => "would be built",
            ImageState::Missing => "MISSING (no `build`; the suite would end in error)",
            ImageState::Unknown => "unknown (engine not reachable)",
        }
    }
}

/// Everything a run would do, in the order it would start things.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub schema: u32,
    pub jobs: usize,
    pub target: PathBuf,
    /// `hash:M/N` when the run is one shard of the selection.
    pub partition: Option<String>,
    /// In the order they would start (longest expected first).
    pub suites: Vec<PlannedSuite>,
    /// Each distinct image once, with what would happen to it.
    pub images: Vec<PlannedImage>,
    /// Selected suite files a real run would report as invalid (it would exit 2).
    pub invalid_suites: Vec<InvalidSuite>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedSuite {
    pub name: String,
    pub file: PathBuf,
    pub image: String,
    pub image_state: ImageState,
    /// Seconds the store expects, from earlier runs; absent for a suite never run.
    pub expected_secs: Option<f64>,
    pub timeout_secs: u64,
    pub weight: u32,
    pub retries: u32,
    pub format: ResultFormat,
    pub fail_on: Severity,
    pub policy: EffectivePolicy,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedImage {
    pub image: String,
    pub state: ImageState,
    /// The suites that use it.
    pub suites: Vec<String>,
}

/// A suite's policy as it would be applied, in the units of the suite file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectivePolicy {
    pub network: NetworkMode,
    pub user: String,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: i64,
}

impl From<&Policy> for EffectivePolicy {
    fn from(p: &Policy) -> Self {
        EffectivePolicy {
            network: p.network,
            user: p.user.clone(),
            read_only: p.read_only,
            cap_add: p.cap_add.clone(),
            memory_bytes: p.memory,
            cpus: p.cpus,
            pids: p.pids,
        }
    }
}

/// What the caller knows about the run it would start.
pub struct Inputs<'a> {
    pub suites: &'a [Suite],
    /// Indices into `suites`, in start order (`plan::longest_first`).
    pub order: &'a [usize],
    pub expected: &'a dyn Fn(&Suite) -> Option<Duration>,
    pub images: &'a HashMap<String, ImageState>,
    pub jobs: usize,
    pub target: PathBuf,
    pub partition: Option<String>,
    pub invalid_suites: Vec<InvalidSuite>,
}

impl DryRun {
    pub fn new(inputs: Inputs<'_>) -> DryRun {
        let state = |image: &str| {
            inputs
                .images
                .get(image)
                .copied()
                .unwrap_or(ImageState::Unknown)
        };
        let suites: Vec<PlannedSuite> = inputs
            .order
            .iter()
            .map(|&i| &inputs.suites[i])
            .map(|s| PlannedSuite {
                name: s.name.clone(),
                file: s.source.clone(),
                image: s.image.clone(),
                image_state: state(&s.image),
                expected_secs: (inputs.expected)(s).map(|d| round_ms(d.as_secs_f64())),
                timeout_secs: s.timeout.as_secs(),
                weight: s.weight,
                retries: s.retries,
                format: s.results.format,
                fail_on: s.results.fail_on,
                policy: EffectivePolicy::from(&s.policy),
            })
            .collect();
        let mut images: Vec<PlannedImage> = Vec::new();
        for suite in &suites {
            match images.iter_mut().find(|i| i.image == suite.image) {
                Some(known) => known.suites.push(suite.name.clone()),
                None => images.push(PlannedImage {
                    image: suite.image.clone(),
                    state: suite.image_state,
                    suites: vec![suite.name.clone()],
                }),
            }
        }
        DryRun {
            schema: SCHEMA,
            jobs: inputs.jobs,
            target: inputs.target,
            partition: inputs.partition,
            suites,
            images,
            invalid_suites: inputs.invalid_suites,
        }
    }

    /// The exit code of `--dry-run`: 2 when a real run would refuse something (a selected
    /// suite file is invalid), else 0.
    pub fn exit_code(&self) -> u8 {
        if self.invalid_suites.is_empty() {
            crate::exit::PASSED
        } else {
            crate::exit::USAGE
        }
    }

    /// The plan for a person: one block per suite in start order, then the images.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let shard = self
            .partition
            .as_deref()
            .map(|p| format!(", shard {p}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "dry run: {} suite(s) on {} slot(s), target {}{shard}; nothing is started",
            self.suites.len(),
            self.jobs,
            self.target.display()
        );
        for (n, suite) in self.suites.iter().enumerate() {
            write_suite(&mut out, n + 1, suite);
        }
        if !self.images.is_empty() {
            let _ = writeln!(out, "images:");
            for image in &self.images {
                let _ = writeln!(
                    out,
                    "  {}  {}  (used by {})",
                    image.image,
                    image.state.describe(),
                    image.suites.join(", ")
                );
            }
        }
        for invalid in &self.invalid_suites {
            let _ = writeln!(
                out,
                "invalid: {} ({}): a real run reports it and exits 2",
                invalid.name,
                invalid.file.display()
            );
            for error in &invalid.errors {
                let _ = writeln!(out, "  {error}");
            }
        }
        out
    }
}

fn write_suite(out: &mut String, n: usize, s: &PlannedSuite) {
    let expected = s
        .expected_secs
        .map_or("no earlier run".to_string(), |secs| format!("~{secs:.1}s"));
    let _ = writeln!(
        out,
        "{n:>3}. {}  expected {expected}, timeout {}s, weight {}, retries {}  ({})",
        s.name,
        s.timeout_secs,
        s.weight,
        s.retries,
        s.file.display()
    );
    let _ = writeln!(
        out,
        "     image {} ({}); results {}, fail on {}",
        s.image,
        s.image_state.describe(),
        word(&s.format),
        s.fail_on
    );
    let p = &s.policy;
    let caps = if p.cap_add.is_empty() {
        "none".to_string()
    } else {
        p.cap_add.join(",")
    };
    let _ = writeln!(
        out,
        "     policy: network {}, user {}, read-only {}, cap_add {caps}, memory {} MiB, cpus {}, pids {}",
        word(&p.network),
        p.user,
        p.read_only,
        p.memory_bytes >> 20,
        p.cpus,
        p.pids
    );
}

/// A value as the suite file spells it (`exit-code`, `none`): its serde name.
fn word(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(name: &str, image: &str) -> Suite {
        let mut suite = crate::config::tests_support::suite(name);
        suite.image = image.into();
        suite
    }

    fn dry_run(invalid: Vec<InvalidSuite>) -> DryRun {
        let mut slow = suite("slow", "img/a:1");
        slow.policy.cap_add = vec!["NET_RAW".into()];
        let suites = vec![suite("quick", "img/a:1"), slow, suite("new", "img/b:1")];
        let images = HashMap::from([
            ("img/a:1".to_string(), ImageState::Present),
            ("img/b:1".to_string(), ImageState::WouldBuild),
        ]);
        let expected = |s: &Suite| match s.name.as_str() {
            "slow" => Some(Duration::from_millis(12_345)),
            "quick" => Some(Duration::from_secs(1)),
            _ => None,
        };
        DryRun::new(Inputs {
            suites: &suites,
            order: &[1, 0, 2],
            expected: &expected,
            images: &images,
            jobs: 4,
            target: PathBuf::from("/t"),
            partition: Some("hash:1/2".into()),
            invalid_suites: invalid,
        })
    }

    #[test]
    fn suites_come_in_start_order_with_their_expectations_and_policy() {
        let plan = dry_run(Vec::new());
        let names: Vec<_> = plan.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["slow", "quick", "new"]);
        assert_eq!(plan.suites[0].expected_secs, Some(12.345));
        assert_eq!(plan.suites[2].expected_secs, None);
        assert_eq!(plan.suites[0].policy.cap_add, ["NET_RAW"]);
        assert_eq!(plan.images.len(), 2);
        assert_eq!(plan.images[0].suites, ["slow", "quick"]);
        assert_eq!(plan.images[1].state, ImageState::WouldBuild);
        assert_eq!(plan.exit_code(), 0);
        let text = plan.to_text();
        assert!(text.contains("shard hash:1/2"), "{text}");
        assert!(text.contains("  1. slow  expected ~12.3s"), "{text}");
        assert!(text.contains("img/b:1  would be built"), "{text}");
        assert!(text.contains("cap_add NET_RAW"), "{text}");
        assert!(text.contains("policy: network none,"), "{text}");
    }

    #[test]
    fn json_is_one_versioned_document() {
        let json = serde_json::to_value(dry_run(Vec::new())).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["suites"][0]["image_state"], "present");
        assert_eq!(json["suites"][2]["image_state"], "would-build");
        assert_eq!(json["suites"][0]["policy"]["network"], "none");
        assert_eq!(json["partition"], "hash:1/2");
    }

    #[test]
    fn an_invalid_selected_suite_makes_it_exit_2() {
        let plan = dry_run(vec![InvalidSuite {
            name: "broken".into(),
            file: PathBuf::from("suites/broken.toml"),
            errors: vec!["suites/broken.toml:3:1: key `image`: missing".into()],
        }]);
        assert_eq!(plan.exit_code(), 2);
        assert!(plan.to_text().contains("invalid: broken"));
    }
}
