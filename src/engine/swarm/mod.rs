//! The Docker Swarm backend: each suite attempt is one `replicated-job` service on a swarm
//! manager, so the same scheduler spreads a run over a cluster's nodes.

pub mod gaps;

use std::collections::BTreeSet;

pub use gaps::PolicyGap;

/// `[swarm]` in `phalanx.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmSettings {
    /// `host:port` of the registry every node pulls from; Phalanx pushes the run's images
    /// there. Without one, tasks run on the manager node only.
    pub registry: Option<String>,
    /// Constraints for every suite (`node.labels.scanner == true`), with the suite's own.
    pub placement: Vec<String>,
    /// Gaps the project accepts: suites with other gaps are refused.
    pub allow_gaps: BTreeSet<PolicyGap>,
}
