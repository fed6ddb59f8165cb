//! Selection: which of the loaded suites a run executes.

use std::fmt;

use crate::config::{Suite, closest};

/// A requested suite name that no suite has, with the nearest existing name if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub name: String,
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.name)?;
        match &self.suggestion {
            Some(hint) => write!(f, " (did you mean `{hint}`?)"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Some `--suite` names match no suite. A typo must not silently shrink a security run.
    #[error("unknown suite {}", list(.unknown, ", "))]
    UnknownSuite { unknown: Vec<UnknownName> },
    /// The selection is empty: the tags match no suite (or there are no suites at all).
    /// Running nothing and passing would look like a clean result, so it is an error.
    #[error("{}", nothing_message(.tags, .known_tags))]
    NothingSelected {
        /// The tags asked for, none of which any suite carries.
        tags: Vec<String>,
        /// Every tag the loaded suites carry, sorted, for the message.
        known_tags: Vec<String>,
    },
}

fn list<T: fmt::Display>(items: &[T], sep: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

fn nothing_message(tags: &[String], known: &[String]) -> String {
    if tags.is_empty() {
        return "no suites to run: no valid suite was loaded".to_owned();
    }
    let wanted = list(
        &tags.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>(),
        " or ",
    );
    let mut msg = format!("no suite is tagged {wanted}");
    let hint = tags
        .iter()
        .find_map(|t| closest(t, known.iter().map(String::as_str)));
    if let Some(hint) = hint {
        msg.push_str(&format!(" (did you mean `{hint}`?)"));
    }
    if known.is_empty() {
        msg.push_str("; no suite has any tag");
    } else {
        msg.push_str(&format!("; known tags: {}", known.join(", ")));
    }
    msg
}

/// Picks the suites to run.
///
/// With no names and no tags, every suite. Otherwise the suites named plus the suites
/// carrying any of the tags, in the order of `suites`, each once. Every name must exist;
/// the result must not be empty.
pub fn select(
    suites: &[Suite],
    names: &[String],
    tags: &[String],
) -> Result<Vec<Suite>, PlanError> {
    check_names(suites, names)?;
    let everything = names.is_empty() && tags.is_empty();
    let wanted = |s: &&Suite| {
        everything || names.contains(&s.name) || s.tags.iter().any(|t| tags.contains(t))
    };
    let picked: Vec<Suite> = suites.iter().filter(wanted).cloned().collect();
    if picked.is_empty() {
        return Err(PlanError::NothingSelected {
            tags: tags.to_vec(),
            known_tags: known_tags(suites),
        });
    }
    Ok(picked)
}

/// Fails on names no suite has, reporting all of them at once.
fn check_names(suites: &[Suite], names: &[String]) -> Result<(), PlanError> {
    let mut unknown: Vec<UnknownName> = Vec::new();
    for name in names {
        let known = suites.iter().any(|s| &s.name == name);
        if !known && !unknown.iter().any(|u| &u.name == name) {
            let suggestion =
                closest(name, suites.iter().map(|s| s.name.as_str())).map(str::to_owned);
            unknown.push(UnknownName {
                name: name.clone(),
                suggestion,
            });
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(PlanError::UnknownSuite { unknown })
    }
}

fn known_tags(suites: &[Suite]) -> Vec<String> {
    let mut tags: Vec<String> = suites.iter().flat_map(|s| s.tags.iter().cloned()).collect();
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::{Policy, ResultFormat, ResultsSpec};
    use crate::findings::Severity;

    fn suite(name: &str, tags: &[&str]) -> Suite {
        Suite {
            name: name.into(),
            description: String::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            image: "img".into(),
            build: None,
            command: None,
            env: BTreeMap::new(),
            secret_env: Default::default(),
            timeout: Duration::from_secs(60),
            retries: 0,
            weight: 1,
            results: ResultsSpec {
                format: ResultFormat::ExitCode,
                path: "/results".into(),
                ok_exit_codes: vec![0],
                fail_on: Severity::High,
            },
            policy: Policy::default(),
            source: format!("suites/{name}.toml").into(),
        }
    }

    fn all() -> Vec<Suite> {
        vec![
            suite("bandit", &["sast", "python"]),
            suite("gitleaks", &["secrets"]),
            suite("semgrep", &["sast"]),
            suite("zap", &["dast"]),
        ]
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn names(picked: &[Suite]) -> Vec<&str> {
        picked.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn no_selector_selects_everything() {
        assert_eq!(
            names(&select(&all(), &[], &[]).unwrap()),
            ["bandit", "gitleaks", "semgrep", "zap"]
        );
    }

    #[test]
    fn names_and_tags_are_a_union_in_input_order_without_duplicates() {
        let picked = select(
            &all(),
            &strings(&["zap", "bandit", "zap"]),
            &strings(&["sast"]),
        )
        .unwrap();
        assert_eq!(names(&picked), ["bandit", "semgrep", "zap"]);
        let picked = select(&all(), &[], &strings(&["secrets", "nope"])).unwrap();
        assert_eq!(names(&picked), ["gitleaks"]);
    }

    #[test]
    fn unknown_names_are_all_reported_with_suggestions() {
        let err = select(&all(), &strings(&["banditt", "zap", "qwerty"]), &[]).unwrap_err();
        let PlanError::UnknownSuite { unknown } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(unknown.len(), 2);
        assert_eq!(unknown[0].suggestion.as_deref(), Some("bandit"));
        assert_eq!(unknown[1].suggestion, None);
        assert_eq!(
            err.to_string(),
            "unknown suite `banditt` (did you mean `bandit`?), `qwerty`"
        );
    }

    #[test]
    fn empty_selection_says_which_tags_matched_nothing() {
        let err = select(&all(), &[], &strings(&["sats", "web"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no suite is tagged `sats` or `web` (did you mean `sast`?); \
             known tags: dast, python, sast, secrets"
        );
        let err = select(&[], &[], &[]).unwrap_err();
        assert!(matches!(err, PlanError::NothingSelected { ref tags, .. } if tags.is_empty()));
        assert!(err.to_string().contains("no valid suite"), "{err}");
    }
}
