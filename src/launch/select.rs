//! Which suites a run runs: the loaded suite files, the names and tags asked for, the CI
//! shard, the project's limits and the run's overrides, in that order. Shared by
//! `phalanx run` and the server, so a selection means the same from both.

use crate::config::{ConfigError, LoadedSuites, ProjectSpec, Suite};
use crate::engine::EngineKind;
use crate::engine::swarm::{SwarmSettings, gaps};
use crate::findings::{Gate, Severity};
use crate::outcome::InvalidSuite;
use crate::plan::{self, Partition, PlanError};

/// What a run asks for, before the suite files are read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wanted {
    pub names: Vec<String>,
    pub tags: Vec<String>,
    pub partition: Option<Partition>,
    /// Over every suite's own `fail_on` and `gate`.
    pub fail_on: Option<Severity>,
    pub gate: Option<Gate>,
}

impl Wanted {
    /// `self`, with `project`'s default selection when nothing is named, and its
    /// `fail_on`/`gate` where `self` has none.
    pub fn over_project(mut self, project: &ProjectSpec) -> Wanted {
        if self.names.is_empty() && self.tags.is_empty() {
            self.names = project.default_suites.clone();
            self.tags = project.default_tags.clone();
        }
        self.fail_on = self.fail_on.or(project.fail_on);
        self.gate = self.gate.or(project.gate);
        self
    }
}

/// The backend a selection is for. Swarm refuses the suites it cannot run as their policy
/// says, unless the project accepts the gap (`[swarm] allow_gaps`).
#[derive(Debug, Clone, Copy, Default)]
pub enum Backend<'a> {
    #[default]
    Docker,
    Swarm(&'a SwarmSettings),
}

impl<'a> Backend<'a> {
    /// The backend of `kind`, with the project's swarm settings.
    pub fn of(kind: EngineKind, swarm: &'a SwarmSettings) -> Backend<'a> {
        match kind {
            EngineKind::Docker => Backend::Docker,
            EngineKind::Swarm => Backend::Swarm(swarm),
        }
    }
}

/// The suites to run and the selected ones that cannot be.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub suites: Vec<Suite>,
    /// Broken suite files, suites asking for more than their project allows and suites the
    /// backend cannot run as their policy says: reported (outcome `invalid`), never run.
    pub invalid: Vec<InvalidSuite>,
}

/// Picks what `wanted` names from `loaded` (broken files included, as invalid suites),
/// refuses what exceeds `project`'s limits and what `backend` cannot run, and applies the
/// overrides.
pub fn select(
    loaded: &LoadedSuites,
    wanted: &Wanted,
    project: Option<&ProjectSpec>,
    backend: Backend<'_>,
) -> Result<Selected, PlanError> {
    let invalid = invalid_suites(&loaded.errors, &wanted.names, &wanted.tags);
    // Names of broken files are known, just not runnable: they are not "unknown suites".
    let runnable_names: Vec<String> = wanted
        .names
        .iter()
        .filter(|n| !invalid.iter().any(|i| &i.name == *n))
        .cloned()
        .collect();
    let suites = if !wanted.names.is_empty() && runnable_names.is_empty() && wanted.tags.is_empty()
    {
        Vec::new()
    } else {
        plan::select(&loaded.suites, &runnable_names, &wanted.tags)?
    };
    let selected = shard(suites, invalid, wanted.partition);
    let selected = match project {
        Some(project) => refuse(selected, |suite| {
            project
                .violations(suite)
                .iter()
                .map(ToString::to_string)
                .collect()
        }),
        None => selected,
    };
    let mut selected = match backend {
        Backend::Docker => selected,
        Backend::Swarm(settings) => refuse(selected, |suite| gaps::fit(suite, settings).refusals()),
    };
    for suite in &mut selected.suites {
        if let Some(fail_on) = wanted.fail_on {
            suite.results.fail_on = fail_on;
        }
        if let Some(gate) = wanted.gate {
            suite.results.gate = gate;
        }
    }
    Ok(selected)
}

/// Keeps what belongs to this CI shard, broken suite files included, so that every suite
/// is reported by exactly one shard.
fn shard(suites: Vec<Suite>, invalid: Vec<InvalidSuite>, partition: Option<Partition>) -> Selected {
    let Some(partition) = partition else {
        return Selected { suites, invalid };
    };
    Selected {
        suites: partition.apply(suites),
        invalid: invalid
            .into_iter()
            .filter(|i| partition.contains(&i.name))
            .collect(),
    }
}

/// Moves every suite with `reasons` to the invalid ones, one error (naming its file) per
/// reason: a limit of its project it exceeds, a policy gap of the backend.
fn refuse(selected: Selected, reasons: impl Fn(&Suite) -> Vec<String>) -> Selected {
    let Selected {
        suites,
        mut invalid,
    } = selected;
    let mut allowed = Vec::with_capacity(suites.len());
    for suite in suites {
        let reasons = reasons(&suite);
        if reasons.is_empty() {
            allowed.push(suite);
            continue;
        }
        let file = suite.source.display().to_string();
        invalid.push(InvalidSuite {
            errors: reasons.iter().map(|r| format!("{file}: {r}")).collect(),
            name: suite.name,
            file: suite.source,
        });
    }
    Selected {
        suites: allowed,
        invalid,
    }
}

/// The broken suite files the user asked for: all of them when nothing is selected, else
/// those named (a broken file's tags cannot be trusted).
fn invalid_suites(errors: &[ConfigError], names: &[String], tags: &[String]) -> Vec<InvalidSuite> {
    let mut invalid: Vec<InvalidSuite> = Vec::new();
    for error in errors {
        let Some(name) = error.suite.clone() else {
            continue;
        };
        let asked = (names.is_empty() && tags.is_empty()) || names.contains(&name);
        if !asked {
            continue;
        }
        match invalid.iter_mut().find(|i| i.file == error.file) {
            Some(known) => known.errors.push(error.to_string()),
            None => invalid.push(InvalidSuite {
                name,
                file: error.file.clone(),
                errors: vec![error.to_string()],
            }),
        }
    }
    invalid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkMode;
    use crate::config::projects::Limits;
    use crate::config::tests_support::suite;

    fn project(limits: Limits) -> ProjectSpec {
        ProjectSpec {
            name: "shop".into(),
            target: "/srv/shop".into(),
            suites_dir: "suites".into(),
            reports_dir: None,
            default_suites: vec!["a".into()],
            default_tags: Vec::new(),
            fail_on: Some(Severity::Critical),
            gate: None,
            suppressions: None,
            baseline: None,
            max_queued: 8,
            limits,
            alerts: Vec::new(),
        }
    }

    fn loaded(suites: Vec<Suite>) -> LoadedSuites {
        LoadedSuites {
            suites,
            services: Vec::new(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_suite_over_its_projects_limits_is_refused_naming_each_key() {
        let mut greedy = suite("greedy");
        greedy.policy.network = NetworkMode::Egress;
        greedy.policy.memory = 4 << 30;
        let limits = Limits {
            allow_network: Some(vec![NetworkMode::None]),
            max_memory: Some(1 << 30),
            allow_writable_root: true,
            ..Limits::default()
        };
        let wanted = Wanted::default();
        let selected = select(
            &loaded(vec![suite("fine"), greedy]),
            &wanted,
            Some(&project(limits)),
            Backend::Docker,
        )
        .unwrap();
        let names: Vec<&str> = selected.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fine"]);
        let refused = &selected.invalid[0];
        assert_eq!(refused.name, "greedy");
        assert_eq!(refused.errors.len(), 2, "{:?}", refused.errors);
        assert!(
            refused.errors[0].contains(
                r#"policy.network = "egress" is more than project `shop` allows (allow_network = ["none"])"#
            ),
            "{}",
            refused.errors[0]
        );
        assert!(
            refused.errors[1].contains(r#"policy.memory = "4g""#),
            "{}",
            refused.errors[1]
        );
    }

    #[test]
    fn the_projects_defaults_fill_what_the_request_leaves_open() {
        let wanted = Wanted::default().over_project(&project(Limits::default()));
        assert_eq!(wanted.names, ["a"]);
        assert_eq!(wanted.fail_on, Some(Severity::Critical));
        let asked = Wanted {
            tags: vec!["sast".into()],
            fail_on: Some(Severity::Low),
            ..Wanted::default()
        }
        .over_project(&project(Limits::default()));
        assert!(asked.names.is_empty());
        assert_eq!(asked.fail_on, Some(Severity::Low));
        let selected = select(
            &loaded(vec![suite("a"), suite("b")]),
            &wanted,
            Some(&project(Limits::default())),
            Backend::Docker,
        )
        .unwrap();
        assert_eq!(selected.suites.len(), 1);
        assert_eq!(selected.suites[0].results.fail_on, Severity::Critical);
    }

    #[test]
    fn swarm_refuses_each_gap_the_project_does_not_accept_and_docker_refuses_none() {
        use crate::engine::swarm::PolicyGap;
        let mut dynamic = suite("dast");
        dynamic.policy.network = NetworkMode::Target;
        let all = loaded(vec![suite("a"), dynamic]);
        let wanted = Wanted::default();
        let docker = select(&all, &wanted, None, Backend::Docker).unwrap();
        assert_eq!((docker.suites.len(), docker.invalid.len()), (2, 0));
        let strict = SwarmSettings::default();
        let refused = select(&all, &wanted, None, Backend::Swarm(&strict)).unwrap();
        assert!(refused.suites.is_empty());
        let a = refused.invalid.iter().find(|i| i.name == "a").unwrap();
        assert_eq!(a.errors.len(), 3, "one per gap: {:?}", a.errors);
        for (error, gap) in a.errors.iter().zip(PolicyGap::ALL) {
            assert!(
                error.starts_with("suites/test.toml: ")
                    && error.contains(&format!("gap `{gap}`"))
                    && error.contains(gap.consequence())
                    && error.contains("under [swarm]"),
                "{error}"
            );
        }
        let lenient = SwarmSettings {
            allow_gaps: PolicyGap::ALL.into(),
            ..SwarmSettings::default()
        };
        let selected = select(
            &all,
            &wanted,
            None,
            Backend::of(EngineKind::Swarm, &lenient),
        )
        .unwrap();
        let names: Vec<&str> = selected.suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(selected.invalid.len(), 1);
        assert!(selected.invalid[0].errors[0].contains("network = \"target\""));
    }
}
