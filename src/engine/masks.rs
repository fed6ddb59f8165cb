//! What a suite must not see inside its read-only `/target`.
//!
//! The reports folder often lives inside the target (`phalanx run` with the defaults runs
//! on `.` and writes to `./reports`). Mounted as it is, every suite could read the logs and
//! result files of the suites that ran before it. The reports folder is therefore covered
//! by an empty read-only tmpfs in every container.

use std::io;
use std::path::Path;

use super::TARGET_DIR;

/// Mount options of the empty, read-only tmpfs laid over each hidden path.
pub const MASK_OPTIONS: &str = "ro,nosuid,nodev,noexec,size=4k,mode=0555";

/// The paths inside the container (under [`TARGET_DIR`]) to cover with an empty tmpfs:
/// the reports folder when it is strictly inside the target. It is created if missing,
/// since a mount point cannot be made inside the read-only target mount.
///
/// `target` must be absolute and canonical (see `docker::absolute_target`).
pub fn hidden_paths(target: &Path, reports_dir: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir_all(reports_dir)?;
    let reports = std::fs::canonicalize(reports_dir)?;
    Ok(match reports.strip_prefix(target) {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            vec![format!("{TARGET_DIR}/{}", rel.display())]
        }
        // Outside the target, or the target itself (then hiding it would hide the target).
        _ => Vec::new(),
    })
}

/// The tmpfs entries (`path → options`) that hide `hidden`.
pub fn mask_mounts(hidden: &[String]) -> impl Iterator<Item = (String, String)> + '_ {
    hidden
        .iter()
        .map(|path| (path.clone(), MASK_OPTIONS.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_inside_the_target_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let target = std::fs::canonicalize(dir.path()).unwrap();
        let hidden = hidden_paths(&target, &target.join("out/reports")).unwrap();
        assert_eq!(hidden, vec!["/target/out/reports".to_string()]);
        assert!(
            target.join("out/reports").is_dir(),
            "created for the mount point"
        );
    }

    #[test]
    fn reports_elsewhere_or_equal_to_the_target_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let target = root.join("target");
        std::fs::create_dir(&target).unwrap();
        assert!(
            hidden_paths(&target, &root.join("reports"))
                .unwrap()
                .is_empty()
        );
        assert!(hidden_paths(&target, &target).unwrap().is_empty());
        assert!(hidden_paths(&target, &root).unwrap().is_empty());
    }

    #[test]
    fn a_relative_reports_path_is_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let target = std::fs::canonicalize(dir.path()).unwrap();
        let via_dots = target.join("a/../reports");
        std::fs::create_dir_all(target.join("a")).unwrap();
        let hidden = hidden_paths(&target, &via_dots).unwrap();
        assert_eq!(hidden, vec!["/target/reports".to_string()]);
    }
}
