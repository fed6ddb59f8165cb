//! How the suites see the target: bind-mounted where the engine shares this filesystem,
//! else sent once per run through the engine's API into one labelled volume.
//!
//! A bind mount names a path on the engine's host. When Phalanx talks to an engine on
//! another host (`DOCKER_HOST=tcp://…`, GitLab's `docker:dind`, a context over SSH) or runs
//! in a CI job container using the host's socket, that path is not the directory Phalanx
//! sees, and the suites would scan nothing or something else. `auto` therefore checks
//! (never guesses from `DOCKER_HOST`) and copies unless the engine sees the same files.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::cause::Cause;
use crate::collect::chunked::{ChunkWriter, OnChunk, blocking_stream};
use crate::engine::orphans::{OWNER_LABEL, owner_label};
use crate::engine::{Engine, ProbeFile, RUN_LABEL, TargetView};

/// `--target-mode` / `target_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    /// `bind` when the engine is checked to see the same directory, else `copy`.
    #[default]
    Auto,
    /// Bind-mount the directory: the engine must share this filesystem.
    Bind,
    /// Send the target into a volume through the engine's API.
    Copy,
}

/// Default of `target_max_size`: 2 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 2 << 30;

/// Largest file the probe compares (it reads each whole, here and through the engine).
pub const PROBE_MAX: u64 = 64 * 1024;
/// How many files the probe compares.
const PROBE_FILES: usize = 3;

/// What to prepare for one run.
#[derive(Debug, Clone)]
pub struct TargetRequest {
    pub mode: TargetMode,
    /// Absolute and canonical.
    pub target: PathBuf,
    /// Left out of the copy (only its empty folder goes, for the mask's mount point).
    pub reports_dir: PathBuf,
    pub run_id: String,
    pub max_size: u64,
    /// Show a progress bar while copying (a terminal is watching).
    pub show_progress: bool,
}

/// How the run's suites see the target; `run.json` has it as `target`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetChoice {
    pub requested: TargetMode,
    /// `bind` or `copy`.
    pub mode: TargetMode,
    /// What the engine saw at the target's path, when it was probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<TargetView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyStats>,
    /// The volume holding the copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

impl TargetChoice {
    /// The one line `--progress plain` prints.
    pub fn line(&self) -> String {
        let why = match self.probe {
            Some(TargetView::Same) => " (the engine sees this directory)",
            Some(TargetView::Absent) => " (the engine does not see this directory)",
            Some(TargetView::Different) => " (the engine sees other files at this path)",
            None => "",
        };
        let mode = match self.mode {
            TargetMode::Copy => "copy",
            _ => "bind",
        };
        match &self.copy {
            Some(c) => format!(
                "target: {mode}{why}: {} file(s), {} byte(s) sent in {:.1}s{}",
                c.files,
                c.bytes,
                c.seconds,
                match c.skipped.len() {
                    0 => String::new(),
                    n => format!(", {n} special file(s) or outward link(s) skipped"),
                }
            ),
            None => format!("target: {mode}{why}"),
        }
    }
}

/// What a copy sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyStats {
    pub files: u64,
    /// File content, without tar headers.
    pub bytes: u64,
    pub seconds: f64,
    /// Sockets, fifos, devices and links climbing out of the target, left out; relative
    /// to the target.
    pub skipped: Vec<String>,
}

/// Probes (for `auto`) and copies (when needed); on failure, what every suite ends with.
pub async fn prepare<E: Engine>(engine: &E, req: &TargetRequest) -> Result<TargetChoice, Cause> {
    let labels = labels(&req.run_id);
    let probe = match req.mode {
        TargetMode::Copy => None,
        TargetMode::Auto | TargetMode::Bind => Some(probe(engine, req, &labels).await?),
    };
    let bind = match (req.mode, probe) {
        (_, Some(TargetView::Same)) => true,
        (TargetMode::Bind, Some(view)) => return Err(bind_impossible(&req.target, view)),
        _ => false,
    };
    if bind {
        return Ok(TargetChoice {
            requested: req.mode,
            mode: TargetMode::Bind,
            probe,
            copy: None,
            volume: None,
        });
    }
    let volume = format!("phalanx-{}-target", req.run_id);
    let copy = copy(engine, req, &volume, &labels).await?;
    Ok(TargetChoice {
        requested: req.mode,
        mode: TargetMode::Copy,
        probe,
        copy: Some(copy),
        volume: Some(volume),
    })
}

/// The labels of what the target needs on the engine: removed with the run, or as an
/// orphan when the process dies first.
fn labels(run_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (RUN_LABEL.to_string(), run_id.to_string()),
        (OWNER_LABEL.to_string(), owner_label()),
    ])
}

async fn probe<E: Engine>(
    engine: &E,
    req: &TargetRequest,
    labels: &HashMap<String, String>,
) -> Result<TargetView, Cause> {
    let target = req.target.clone();
    let files = tokio::task::spawn_blocking(move || probe_files(&target))
        .await
        .map_err(|e| Cause::internal(e.to_string()))?;
    if files.is_empty() {
        // Nothing only this directory has: a bind cannot be shown to be right.
        return Ok(TargetView::Different);
    }
    engine
        .probe_target(&req.target, &files, labels)
        .await
        .map_err(|error| Cause::PrerequisiteMissing {
            missing: format!(
                "cannot check whether the engine sees {}: {error}",
                req.target.display()
            ),
            fix: "use --target-mode copy to send the target through the engine's API".into(),
        })
}

fn bind_impossible(target: &Path, view: TargetView) -> Cause {
    let seen = match view {
        TargetView::Absent => "does not exist on the engine's host",
        _ => "holds other files on the engine's host (or nothing to compare)",
    };
    Cause::PrerequisiteMissing {
        missing: format!(
            "--target-mode bind: the target {} {seen}, so a bind mount cannot show it to the suites",
            target.display()
        ),
        fix: "use --target-mode copy (or auto) to send it through the engine's API, or run \
              Phalanx where the engine's filesystem is"
            .into(),
    }
}

/// Up to [`PROBE_FILES`] small, non-empty regular files of the target's first two levels,
/// chosen by name so repeated runs probe the same ones. Nothing here writes to the target.
pub fn probe_files(target: &Path) -> Vec<ProbeFile> {
    let mut found = Vec::new();
    let mut dirs = vec![(target.to_path_buf(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<_> = entries.filter_map(Result::ok).collect();
        names.sort_by_key(|e| e.file_name());
        for entry in names {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() && depth == 0 {
                dirs.insert(0, (entry.path(), format!("{rel}/"), depth + 1));
            } else if meta.is_file()
                && meta.len() > 0
                && meta.len() <= PROBE_MAX
                && let Ok(content) = fs::read(entry.path())
            {
                found.push(ProbeFile {
                    path: rel,
                    size: content.len() as u64,
                    mtime: meta.mtime().max(0) as u64,
                    content,
                });
            }
            if found.len() == PROBE_FILES {
                return found;
            }
        }
    }
    found
}

async fn copy<E: Engine>(
    engine: &E,
    req: &TargetRequest,
    volume: &str,
    labels: &HashMap<String, String>,
) -> Result<CopyStats, Cause> {
    let clock = Instant::now();
    let (target, reports) = (req.target.clone(), req.reports_dir.clone());
    let plan = tokio::task::spawn_blocking(move || CopyPlan::walk(&target, &reports))
        .await
        .map_err(|e| Cause::internal(e.to_string()))?
        .map_err(|e| copy_failed(&req.target, e))?;
    if plan.bytes > req.max_size {
        return Err(Cause::PrerequisiteMissing {
            missing: format!(
                "the target {} holds {} in {} file(s), more than target_max_size ({}) allows \
                 to copy to the engine",
                req.target.display(),
                human_bytes(plan.bytes),
                plan.files,
                human_bytes(req.max_size)
            ),
            fix: "point --target at a smaller folder, raise target_max_size in phalanx.toml, \
                  or run where the engine sees the target (--target-mode bind)"
                .into(),
        });
    }
    for skipped in &plan.skipped {
        eprintln!(
            "warning: target copy: {skipped} left out (not a file, folder or link inside the target)"
        );
    }
    let (files, bytes, skipped) = (plan.files, plan.bytes, plan.skipped.clone());
    let bar = req.show_progress.then(|| progress_bar(bytes));
    let tar = plan.into_tar(bar.clone());
    engine
        .copy_target(volume, labels, tar)
        .await
        .map_err(|e| copy_failed(&req.target, io::Error::other(e.to_string())))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(CopyStats {
        files,
        bytes,
        seconds: clock.elapsed().as_secs_f64(),
        skipped,
    })
}

fn copy_failed(target: &Path, e: io::Error) -> Cause {
    Cause::PrerequisiteMissing {
        missing: format!(
            "cannot copy the target {} to the engine: {e}",
            target.display()
        ),
        fix: "check that the target is readable and the engine has room for it".into(),
    }
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "copying the target to the engine {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// One entry of the copy, relative to the target.
#[derive(Debug)]
enum Entry {
    Dir(PathBuf, Metadata),
    /// Opened and examined again when sent.
    File(PathBuf),
    /// Kept as a link, never followed: where it points is the suite container's business.
    Link(PathBuf, Metadata, PathBuf),
}

/// What the copy sends, walked before anything is sent so the size is known up front.
#[derive(Debug)]
pub struct CopyPlan {
    root: PathBuf,
    entries: Vec<Entry>,
    pub files: u64,
    pub bytes: u64,
    /// Relative paths of what is left out, with why.
    pub skipped: Vec<String>,
}

impl CopyPlan {
    /// Walks `target` without following any link. The reports folder, when inside, is
    /// sent as an empty folder: suites must not read earlier results, and the mask's tmpfs
    /// needs its mount point.
    pub fn walk(target: &Path, reports_dir: &Path) -> io::Result<CopyPlan> {
        let reports = fs::canonicalize(reports_dir).ok();
        let mut plan = CopyPlan {
            root: target.to_path_buf(),
            entries: Vec::new(),
            files: 0,
            bytes: 0,
            skipped: Vec::new(),
        };
        let mut dirs = vec![PathBuf::new()];
        while let Some(rel) = dirs.pop() {
            let mut children: Vec<_> = fs::read_dir(target.join(&rel))?
                .collect::<io::Result<Vec<_>>>()?
                .into_iter()
                .map(|e| e.file_name())
                .collect();
            children.sort();
            for name in children {
                let rel = rel.join(name);
                let full = target.join(&rel);
                let meta = fs::symlink_metadata(&full)?;
                let kind = meta.file_type();
                if kind.is_dir() {
                    if reports.as_deref() != Some(full.as_path()) {
                        dirs.push(rel.clone());
                    }
                    plan.entries.push(Entry::Dir(rel, meta));
                } else if kind.is_file() {
                    plan.files += 1;
                    plan.bytes += meta.len();
                    plan.entries.push(Entry::File(rel));
                } else if kind.is_symlink() {
                    let to = fs::read_link(&full)?;
                    if climbs_out(&rel, &to) {
                        // The engine refuses such links (they could redirect the
                        // extraction), and they name nothing of the target anyway.
                        plan.skipped
                            .push(format!("{} (a link out of the target)", rel.display()));
                    } else {
                        plan.entries.push(Entry::Link(rel, meta, to));
                    }
                } else {
                    plan.skipped.push(rel.display().to_string());
                }
            }
        }
        Ok(plan)
    }

    /// The tar of the plan, written on a blocking thread as it is read. A file that
    /// changed kind since the walk is left out; one that changed size is sent as it is now.
    pub fn into_tar(
        self,
        bar: Option<indicatif::ProgressBar>,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let on_chunk: Option<OnChunk> =
            bar.map(|bar| Box::new(move |n: usize| bar.inc(n as u64)) as OnChunk);
        blocking_stream(CHUNK, on_chunk, move |writer| self.write(writer))
    }

    fn write(self, writer: ChunkWriter) -> io::Result<()> {
        let mut builder = tar::Builder::new(writer);
        for entry in &self.entries {
            match entry {
                Entry::Dir(rel, meta) => {
                    let mut h = header(meta, tar::EntryType::Directory, 0);
                    builder.append_data(&mut h, rel, io::empty())?;
                }
                Entry::Link(rel, meta, to) => {
                    let mut h = header(meta, tar::EntryType::Symlink, 0);
                    builder.append_link(&mut h, rel, to)?;
                }
                Entry::File(rel) => {
                    let Ok(file) = File::open(self.root.join(rel)) else {
                        continue;
                    };
                    let meta = file.metadata()?;
                    if !meta.is_file() {
                        continue;
                    }
                    let mut h = header(&meta, tar::EntryType::Regular, meta.len());
                    builder.append_data(&mut h, rel, file.take(meta.len()))?;
                }
            }
        }
        builder.into_inner()?.flush()
    }
}

/// Whether the relative link `to`, found at `link` (relative to the target), climbs above
/// the target with `..`. Absolute links resolve inside the suite's container, not here.
fn climbs_out(link: &Path, to: &Path) -> bool {
    use std::path::Component;
    if to.is_absolute() {
        return false;
    }
    let mut depth = link.components().count() as i64 - 1;
    for part in to.components() {
        match part {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// A header keeping what a bind mount would show: mode, owner, mtime.
fn header(meta: &Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(size);
    h
}

/// Chunks of the target's tar as handed to the engine.
const CHUNK: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::engine::memory::MemoryEngine;

    fn request(target: &Path, mode: TargetMode, max_size: u64) -> TargetRequest {
        TargetRequest {
            mode,
            target: target.to_path_buf(),
            reports_dir: target.join("reports"),
            run_id: "t1".into(),
            max_size,
            show_progress: false,
        }
    }

    fn sample() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src/deep")).unwrap();
        fs::write(root.join("README"), "hello").unwrap();
        fs::write(root.join("src/deep/a.py"), "print(1)").unwrap();
        fs::create_dir_all(root.join("reports/logs")).unwrap();
        fs::write(root.join("reports/logs/old.log"), "secret result").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("src/climb")).unwrap();
        std::os::unix::fs::symlink("../README", root.join("src/up")).unwrap();
        // A socket: a special file, like a fifo or a device.
        std::os::unix::net::UnixListener::bind(root.join("fifo")).unwrap();
        dir
    }

    async fn tar_of(plan: CopyPlan) -> Vec<u8> {
        let mut tar = plan.into_tar(None);
        let mut all = Vec::new();
        while let Some(chunk) = tar.next().await {
            all.extend_from_slice(&chunk.unwrap());
        }
        all
    }

    #[tokio::test]
    async fn the_copy_keeps_links_skips_specials_and_leaves_the_reports_out() {
        let dir = sample();
        let root = fs::canonicalize(dir.path()).unwrap();
        let plan = CopyPlan::walk(&root, &root.join("reports")).unwrap();
        assert_eq!(
            plan.skipped,
            vec![
                "fifo".to_string(),
                "src/climb (a link out of the target)".to_string()
            ]
        );
        assert_eq!((plan.files, plan.bytes), (2, 13));
        let tar = tar_of(plan).await;
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let link = entry.link_name().unwrap().map(|l| l.display().to_string());
            seen.push((path, entry.header().entry_type(), link));
        }
        let names: Vec<&str> = seen.iter().map(|(p, ..)| p.as_str()).collect();
        assert!(names.contains(&"reports"), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("old.log")), "{names:?}");
        let escape = seen.iter().find(|(p, ..)| p == "escape").unwrap();
        assert_eq!(escape.1, tar::EntryType::Symlink);
        assert_eq!(escape.2.as_deref(), Some("/etc/passwd"));
        assert!(names.contains(&"src/deep/a.py"), "{names:?}");
        assert!(names.contains(&"src/up"), "{names:?}");
        assert!(!names.contains(&"src/climb"), "{names:?}");
    }

    #[tokio::test]
    async fn auto_binds_when_the_engine_sees_the_directory_and_copy_copies() {
        let dir = sample();
        let root = fs::canonicalize(dir.path()).unwrap();
        let engine = MemoryEngine::default();
        let auto = prepare(&engine, &request(&root, TargetMode::Auto, DEFAULT_MAX_SIZE))
            .await
            .unwrap();
        assert_eq!(
            (auto.mode, auto.probe),
            (TargetMode::Bind, Some(TargetView::Same))
        );
        let copy = prepare(&engine, &request(&root, TargetMode::Copy, DEFAULT_MAX_SIZE))
            .await
            .unwrap();
        assert_eq!(copy.mode, TargetMode::Copy);
        assert_eq!(copy.volume.as_deref(), Some("phalanx-t1-target"));
        assert!(engine.target_copy("phalanx-t1-target").unwrap() > 13);
        assert!(
            copy.line().contains("2 file(s), 13 byte(s)"),
            "{}",
            copy.line()
        );
    }

    #[tokio::test]
    async fn a_target_over_the_cap_is_an_error_saying_so() {
        let dir = sample();
        let root = fs::canonicalize(dir.path()).unwrap();
        let engine = MemoryEngine::default();
        let err = prepare(&engine, &request(&root, TargetMode::Copy, 10))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("target_max_size"), "{err}");
        assert_eq!(engine.target_copy("phalanx-t1-target"), None);
    }

    #[test]
    fn the_probe_reads_small_files_and_never_follows_links() {
        let dir = sample();
        let files = probe_files(dir.path());
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        // Second-level folders are not entered; the link is never read.
        assert_eq!(paths, vec!["README"]);
        assert!(!paths.contains(&"escape"));
        assert_eq!(files[0].content, b"hello");
    }
}
