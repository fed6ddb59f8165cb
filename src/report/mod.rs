//! Reports written at the end of a run: JUnit XML for CI, the merged SARIF log for
//! code-scanning tools, `run.json` for machines, the human summary printed to the
//! terminal, and the release manager's `report.html` and `report.md` ([`input`] says
//! what they are made of).
//!
//! Every file goes through [`atomic_write`], so a CI step that picks up a report, or a run
//! interrupted by Ctrl-C half-way through writing it, never sees a truncated file.

pub mod escape;
pub mod from_store;
mod groups;
pub mod html;
pub mod input;
pub mod json;
pub mod junit;
mod junit_cases;
pub mod markdown;
pub mod reruns;
pub mod sarif;
pub mod summary;
pub mod text;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use html::{html_report, write_html};
pub use input::ReportInput;
pub use json::write_json;
pub use junit::{junit_xml, write_junit};
pub use markdown::{markdown_report, write_markdown};
pub use sarif::write_sarif;
pub use summary::summary_table;
pub use text::one_line;

/// A report could not be produced. Each variant names the file concerned, and its message
/// carries the underlying cause, so printing it alone is enough for the user.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write report {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },
    #[error("cannot serialise the JUnit report: {error}")]
    Junit { error: quick_junit::SerializeError },
    #[error("cannot serialise report {}: {error}", path.display())]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("cannot write the merged SARIF {}: {error}", path.display())]
    Sarif {
        path: PathBuf,
        error: sarif::MergeError,
    },
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new
/// one: the data goes to a temporary file in the same directory (a rename is only atomic
/// within one filesystem), is flushed to disk, then renamed over `path`.
/// Parent directories are created as needed.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    atomic_write_with(path, |out| {
        out.write_all(bytes).map_err(|error| ReportError::Write {
            path: path.to_path_buf(),
            error,
        })
    })
}

/// [`atomic_write`] for reports too big to build in memory first: `write` streams the
/// content into a buffered temporary file. If it fails, the temporary file is removed and
/// `path` is left as it was.
pub fn atomic_write_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let err = |error| ReportError::Write {
        path: path.to_path_buf(),
        error,
    };
    let dir = parent_dir(path);
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = temp_file_beside(path, dir).map_err(err)?;
    let mut buffered = io::BufWriter::with_capacity(256 << 10, tmp);
    // The last line of defence for secret values: see `crate::secrets`.
    let mut scrubbed = crate::secrets::ScrubWriter::new(&mut buffered);
    write(&mut scrubbed)?;
    scrubbed.finish().map_err(err)?;
    let tmp = buffered.into_inner().map_err(|e| err(e.into_error()))?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    // Make the rename itself durable; a failure here leaves a complete file in place, so
    // it is not worth failing the run over.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `Path::parent` is `Some("")` for a bare file name; that means the current directory.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden temporary file named after the target, so a leftover from a killed process is
/// easy to recognise. Created with mode 0666 minus the umask, like a plain `File::create`,
/// rather than tempfile's private 0600, so the final report has ordinary permissions.
fn temp_file_beside(path: &Path, dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let stem = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{stem}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_creates_parents_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/report.xml");
        atomic_write(&path, b"first").unwrap();
        atomic_write(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.xml")]);
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_gives_the_permissions_of_a_plain_create() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        fs::File::create(&plain).unwrap();
        let path = dir.path().join("run.json");
        atomic_write(&path, b"{}").unwrap();
        // Same umask applied to 0666, not tempfile's private 0600.
        assert_eq!(mode(&path), mode(&plain));
    }

    #[test]
    fn atomic_write_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        // A regular file where a directory is needed makes create_dir_all fail.
        let path = blocker.join("junit.xml");
        let err = atomic_write(&path, b"x").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn one_line_is_plain_flat_and_short() {
        assert_eq!(
            one_line("\x1b[31mred\x1b[0m\n  next\tline\x07", 80),
            "red next line"
        );
        let long = one_line(&"x".repeat(500), 10);
        assert_eq!(long, format!("{}…", "x".repeat(10)));
        assert_eq!(one_line("🦀🦀🦀", 2), "🦀🦀…");
    }

    #[test]
    fn report_error_works_with_anyhow() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<ReportError>();
    }

    #[test]
    fn bare_file_name_is_written_in_current_dir_terms() {
        assert_eq!(parent_dir(Path::new("junit.xml")), Path::new("."));
        assert_eq!(parent_dir(Path::new("out/junit.xml")), Path::new("out"));
    }
}
