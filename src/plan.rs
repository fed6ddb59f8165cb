//! Selection: which of the loaded suites a run executes (names, tags, a CI shard), and in
//! what order they start.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{Suite, closest};
use crate::history::History;

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

/// `--partition hash:M/N`: shard M of N. A suite belongs to the shard its name hashes to,
/// so each suite stays in its shard when other suites are added or removed, and N CI jobs
/// given 1/N … N/N run every selected suite exactly once between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 1-based.
    pub shard: u64,
    pub total: u64,
}

impl Partition {
    pub fn contains(&self, suite_name: &str) -> bool {
        shard_hash(suite_name) % self.total == self.shard - 1
    }

    /// The selected suites that belong to this shard, in their order.
    pub fn apply(&self, suites: Vec<Suite>) -> Vec<Suite> {
        suites
            .into_iter()
            .filter(|s| self.contains(&s.name))
            .collect()
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hash:{}/{}", self.shard, self.total)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why} (expected hash:M/N with 1 <= M <= N, e.g. hash:1/3)")]
pub struct PartitionError {
    why: &'static str,
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let err = |why| PartitionError { why };
        let Some(spec) = given.strip_prefix("hash:") else {
            return Err(err("the only kind is `hash`"));
        };
        let (m, n) = spec
            .split_once('/')
            .ok_or_else(|| err("no `/` between M and N"))?;
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("M and N must be whole numbers"));
            }
            s.parse::<u64>().map_err(|_| err("the number is too large"))
        };
        let (shard, total) = (number(m)?, number(n)?);
        if total == 0 {
            return Err(err("N must be at least 1"));
        }
        if shard == 0 || shard > total {
            return Err(err("M must be between 1 and N"));
        }
        Ok(Partition { shard, total })
    }
}

/// 64-bit FNV-1a of the name: simple, and the same on every machine and in every version,
/// which shard assignment needs (std's hasher is neither).
fn shard_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The order to start `suites` in, as indices into it: longest expected first, so that the
/// long ones do not start last and stretch the run (longest-processing-time-first list
/// scheduling).
///
/// The expected duration is what the history says for the suite and its image, never more
/// than its timeout; a suite the history does not know is expected to take its timeout, so
/// new suites start early rather than risk being the long one that starts last. Ties go to
/// the heavier suite (it needs more free slots at once), then to plan order.
pub fn longest_first(suites: &[Suite], history: &History) -> Vec<usize> {
    let expected: Vec<Duration> = suites
        .iter()
        .map(|s| history.expected(s).map_or(s.timeout, |d| d.min(s.timeout)))
        .collect();
    let mut order: Vec<usize> = (0..suites.len()).collect();
    // Stable: equal keys keep plan order.
    order.sort_by(|&a, &b| {
        expected[b]
            .cmp(&expected[a])
            .then(suites[b].weight.cmp(&suites[a].weight))
    });
    order
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn suite(name: &str, tags: &[&str]) -> Suite {
        let mut suite = crate::config::tests_support::suite(name);
        suite.tags = tags.iter().map(|t| t.to_string()).collect();
        suite.timeout = Duration::from_secs(60);
        suite
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

    fn timed(name: &str, timeout_secs: u64, weight: u32) -> Suite {
        let mut s = suite(name, &[]);
        s.timeout = Duration::from_secs(timeout_secs);
        s.weight = weight;
        s
    }

    fn history_of(durations: &[(&str, u64)]) -> History {
        let reports: Vec<_> = durations
            .iter()
            .map(|&(name, secs)| {
                let mut r = crate::outcome::SuiteReport::not_run(
                    name,
                    "img",
                    crate::outcome::Outcome::Passed,
                    None,
                );
                r.duration = Duration::from_secs(secs);
                r
            })
            .collect();
        let mut history = History::default();
        history.record(&reports, chrono::Utc::now());
        history
    }

    fn ordered<'a>(suites: &'a [Suite], order: &[usize]) -> Vec<&'a str> {
        order.iter().map(|&i| suites[i].name.as_str()).collect()
    }

    #[test]
    fn longest_expected_first_with_unknown_suites_at_their_timeout() {
        let suites = vec![
            timed("short", 600, 1),
            timed("long", 600, 1),
            timed("new", 120, 1),
            timed("capped", 30, 1),
            timed("middle", 600, 1),
        ];
        let history = history_of(&[("short", 5), ("long", 300), ("middle", 60), ("capped", 900)]);
        let order = longest_first(&suites, &history);
        // new: unknown, so its 120 s timeout; capped: 900 s known but never past 30 s.
        assert_eq!(
            ordered(&suites, &order),
            ["long", "new", "middle", "capped", "short"]
        );
    }

    #[test]
    fn without_history_order_is_by_timeout_then_weight_then_plan_order() {
        let suites = vec![
            timed("a", 60, 1),
            timed("b", 60, 2),
            timed("c", 300, 1),
            timed("d", 60, 1),
        ];
        let order = longest_first(&suites, &History::default());
        assert_eq!(ordered(&suites, &order), ["c", "b", "a", "d"]);
    }

    #[test]
    fn partitions_parse_and_reject_with_reasons() {
        assert_eq!(
            "hash:2/3".parse::<Partition>(),
            Ok(Partition { shard: 2, total: 3 })
        );
        assert_eq!(
            "hash:1/1".parse::<Partition>().unwrap().to_string(),
            "hash:1/1"
        );
        for (bad, why) in [
            ("hash:0/3", "between 1 and N"),
            ("hash:4/3", "between 1 and N"),
            ("hash:1/0", "at least 1"),
            ("hash:1", "no `/`"),
            ("hash:a/3", "whole numbers"),
            ("hash:-1/3", "whole numbers"),
            ("hash: 1/3", "whole numbers"),
            ("slice:1/3", "only kind"),
            ("1/3", "only kind"),
            ("hash:1/99999999999999999999999", "too large"),
        ] {
            let err = bad.parse::<Partition>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("hash:M/N"), "{err}");
        }
    }

    #[test]
    fn shards_cover_every_suite_once_and_are_stable_when_suites_are_added() {
        let names: Vec<String> = (0..200).map(|i| format!("suite-{i}")).collect();
        let suites: Vec<Suite> = names.iter().map(|n| suite(n, &[])).collect();
        let shard_of = |total: u64, name: &str| -> u64 {
            (1..=total)
                .filter(|&shard| Partition { shard, total }.contains(name))
                .collect::<Vec<_>>()
                .pop()
                .unwrap()
        };
        for total in [1, 2, 3, 7] {
            let mut seen = 0;
            for shard in 1..=total {
                let part = Partition { shard, total }.apply(suites.clone());
                seen += part.len();
                // Every shard gets a fair share of 200 suites.
                assert!(
                    part.len() as u64 >= 200 / total / 2,
                    "{total}: {}",
                    part.len()
                );
            }
            assert_eq!(seen, suites.len());
        }
        // Pinned: the assignment must not change between versions or machines.
        // (FNV-1a 64 of "bandit", checked with an independent implementation.)
        assert_eq!(shard_hash("bandit"), 0x898e_eeb1_aaf4_31eb);
        assert_eq!(shard_of(3, "bandit"), 1);
        assert_eq!(shard_of(4, "bandit"), 4);
        let before: Vec<u64> = names.iter().map(|n| shard_of(4, n)).collect();
        let mut more = names.clone();
        more.extend((0..50).map(|i| format!("added-{i}")));
        let after: Vec<u64> = more.iter().take(200).map(|n| shard_of(4, n)).collect();
        assert_eq!(before, after);
    }
}
