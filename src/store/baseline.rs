//! The store as a source of baselines (`phalanx run --baseline last | ID | branch:NAME`):
//! the findings of an earlier run of the same target, as the verdict stage compares them.

use std::error::Error;
use std::path::Path;

use super::query::{RunFilter, RunSummary};
use super::{QueryError, Store};
use crate::findings::FindingRecord;
use crate::verdict::{Baseline, BaselineStore, StoreRef};

impl BaselineStore for Store {
    fn baseline(
        &self,
        reference: &StoreRef,
        target: &Path,
    ) -> Result<Option<Baseline>, Box<dyn Error + Send + Sync>> {
        let Some(run) = self.baseline_run(reference, target)? else {
            return Ok(None);
        };
        let branch = run
            .git
            .as_ref()
            .and_then(|g| g.branch.as_deref())
            .map(|b| format!(", branch {b}"))
            .unwrap_or_default();
        let mut baseline = Baseline::new(format!("run {} ({reference}{branch})", run.run_id));
        for finding in self.findings_of(run.seq)? {
            let record = FindingRecord {
                fingerprint: finding.fingerprint.parse()?,
                rule: finding.rule,
                severity: finding.severity,
                path: finding.path,
                line: finding.line,
                message: crate::report::one_line(&finding.message, FindingRecord::MAX_MESSAGE),
            };
            baseline.add(&finding.suite, record);
        }
        Ok(Some(baseline))
    }
}

impl Store {
    /// The run `reference` names. `last` and `branch:` look only at runs of `target`, so a
    /// baseline never comes from another project; an id names one run wherever it was.
    fn baseline_run(
        &self,
        reference: &StoreRef,
        target: &Path,
    ) -> Result<Option<RunSummary>, QueryError> {
        let of_target = |limit| RunFilter {
            limit,
            target: Some(target.to_path_buf()),
        };
        Ok(match reference {
            StoreRef::Last { back } => {
                let back = *back as usize;
                self.runs(&of_target(Some(back + 1)))?.into_iter().nth(back)
            }
            StoreRef::Branch(name) => self.runs(&of_target(None))?.into_iter().find(|run| {
                run.git.as_ref().and_then(|g| g.branch.as_deref()) == Some(name.as_str())
            }),
            StoreRef::Id(prefix) => match self.resolve(prefix) {
                Ok(run) => Some(run),
                Err(QueryError::NotFound { .. } | QueryError::NoRuns { .. }) => None,
                Err(other) => return Err(other),
            },
        })
    }
}
