//! Safe extraction of the tar that Docker's archive API returns for a suite's result path.
//!
//! The archive is untrusted: the container chose every name, type and size in it. It is
//! spooled to an anonymous temp file under a size cap first (so a stream that never ends
//! costs disk up to the cap, never memory), then unpacked on a blocking thread entry by
//! entry. Only regular files and directories are ever created; nothing is followed or
//! written through a link, and nothing lands outside `dest`.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tar::EntryType;
use tokio::io::AsyncWriteExt;

use crate::engine::EngineError;

/// Bounds on what one suite's results may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Total bytes of file content.
    pub max_bytes: u64,
    /// Entries in the archive, of any type.
    pub max_entries: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_bytes: 256 << 20,
            max_entries: 10_000,
        }
    }
}

impl ExtractLimits {
    /// Cap on the raw archive: content plus tar framing (a header, long-name records and
    /// padding per entry, generously counted at 8 KiB) plus the end-of-archive blocks.
    fn archive_bytes(&self) -> u64 {
        self.max_bytes + self.max_entries as u64 * 8192 + (1 << 20)
    }
}

/// What was extracted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files written, relative to `dest`, in archive order.
    pub files: Vec<PathBuf>,
    /// Entries that were skipped (links, devices, unsafe paths) and why; for the report.
    pub warnings: Vec<String>,
}

/// More warnings than this are summarised in one line, so a hostile archive cannot bloat
/// the report.
const MAX_WARNINGS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("downloading the results failed: {0}")]
    Download(#[source] EngineError),
    #[error("the result archive is larger than {limit} bytes")]
    ArchiveTooLarge { limit: u64 },
    #[error("the results hold more than {limit} bytes (at `{path}`)")]
    TooLarge { limit: u64, path: String },
    #[error("the result archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("the result archive is not a valid tar: {0}")]
    Corrupt(#[source] io::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("the extraction task failed: {0}")]
    Task(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> CollectError {
    let context = context.into();
    move |source| CollectError::Io { context, source }
}

/// Extracts a Docker archive (`GET /containers/{id}/archive?path=…`) into `dest`, which is
/// created if missing and should be empty.
///
/// Docker roots the archive at the basename of the requested path: for a directory the
/// first entry is that directory and its name is stripped (`/results/a/b.txt` lands at
/// `dest/a/b.txt`); a single file lands as `dest/<filename>`.
pub async fn extract_results(
    stream: BoxStream<'static, Result<Bytes, EngineError>>,
    dest: &Path,
    limits: ExtractLimits,
) -> Result<Extracted, CollectError> {
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(io_err(format!("creating {}", dest.display())))?;
    let spool_dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => dest.to_path_buf(),
    };
    let spooled = spool(stream, spool_dir, limits.archive_bytes()).await?;
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || unpack(spooled, &dest, limits))
        .await
        .map_err(|e| CollectError::Task(e.to_string()))?
}

/// Writes the stream to an anonymous temp file in `dir`, failing once it passes `cap`.
async fn spool(
    mut stream: BoxStream<'static, Result<Bytes, EngineError>>,
    dir: PathBuf,
    cap: u64,
) -> Result<fs::File, CollectError> {
    let context = format!("creating a temp file in {}", dir.display());
    let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
        .await
        .map_err(|e| CollectError::Task(e.to_string()))?
        .map_err(io_err(context))?;
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CollectError::Download)?;
        total += chunk.len() as u64;
        if total > cap {
            return Err(CollectError::ArchiveTooLarge { limit: cap });
        }
        out.write_all(&chunk)
            .await
            .map_err(io_err("spooling the result archive"))?;
    }
    out.flush()
        .await
        .map_err(io_err("spooling the result archive"))?;
    Ok(out.into_inner().into_std().await)
}

fn unpack(
    mut file: fs::File,
    dest: &Path,
    limits: ExtractLimits,
) -> Result<Extracted, CollectError> {
    file.rewind()
        .map_err(io_err("reading the spooled archive"))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut unpacker = Unpacker {
        dest,
        limits,
        root: None,
        first: true,
        entries: 0,
        bytes: 0,
        written: HashSet::new(),
        suppressed: 0,
        out: Extracted::default(),
    };
    for entry in archive.entries().map_err(CollectError::Corrupt)? {
        unpacker.entry(entry.map_err(CollectError::Corrupt)?)?;
    }
    Ok(unpacker.finish())
}

struct Unpacker<'a> {
    dest: &'a Path,
    limits: ExtractLimits,
    /// The archive's root directory name, stripped from every path (None: a single file).
    root: Option<PathBuf>,
    first: bool,
    entries: usize,
    bytes: u64,
    written: HashSet<PathBuf>,
    suppressed: usize,
    out: Extracted,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), CollectError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(CollectError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let kind = entry.header().entry_type();
        let raw = entry.path().map_err(CollectError::Corrupt)?.into_owned();
        let shown = raw.display().to_string();
        let Some(rel) = self.relative(&raw, kind) else {
            self.warn(format!(
                "skipped `{shown}`: absolute, `..` or outside the archive root"
            ));
            return Ok(());
        };
        match kind {
            EntryType::Directory => self.dir(&rel, &shown),
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                self.file(&rel, &shown, size, &mut entry)
            }
            EntryType::Symlink => {
                let target = entry.link_name().ok().flatten().unwrap_or_default();
                self.warn(format!(
                    "skipped symlink `{shown}` -> `{}`",
                    target.display()
                ));
                Ok(())
            }
            EntryType::Link => {
                self.warn(format!("skipped hard link `{shown}`"));
                Ok(())
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.warn(format!("skipped device or fifo `{shown}`"));
                Ok(())
            }
            // Metadata records the tar crate did not fold into an entry: nothing to write.
            EntryType::XGlobalHeader | EntryType::XHeader => Ok(()),
            other => {
                self.warn(format!(
                    "skipped `{shown}`: unsupported entry type {other:?}"
                ));
                Ok(())
            }
        }
    }

    /// `raw` as a path under `dest`, or None when it is unsafe or outside the root. The
    /// first entry decides the layout: a directory is the root to strip, anything else
    /// means the archive is a single file.
    fn relative(&mut self, raw: &Path, kind: EntryType) -> Option<PathBuf> {
        let mut parts = Vec::new();
        for c in raw.components() {
            match c {
                Component::Normal(p) => parts.push(p),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) | Component::ParentDir => return None,
            }
        }
        if std::mem::take(&mut self.first) && kind == EntryType::Directory {
            self.root = parts.first().map(PathBuf::from);
        }
        match &self.root {
            None => Some(parts.iter().collect()),
            Some(root) if parts.first().is_some_and(|p| p == root) => {
                Some(parts[1..].iter().collect())
            }
            Some(_) => None,
        }
    }

    fn dir(&mut self, rel: &Path, shown: &str) -> Result<(), CollectError> {
        if let Err(why) = self.ensure_dir(rel)? {
            self.warn(format!("skipped directory `{shown}`: {why}"));
        }
        Ok(())
    }

    fn file(
        &mut self,
        rel: &Path,
        shown: &str,
        size: u64,
        data: &mut impl Read,
    ) -> Result<(), CollectError> {
        if rel.as_os_str().is_empty() {
            self.warn(format!(
                "skipped `{shown}`: file where the root directory should be"
            ));
            return Ok(());
        }
        if self.bytes + size > self.limits.max_bytes {
            return Err(CollectError::TooLarge {
                limit: self.limits.max_bytes,
                path: shown.to_string(),
            });
        }
        if let Err(why) = self.ensure_dir(rel.parent().unwrap_or(Path::new("")))? {
            self.warn(format!("skipped `{shown}`: {why}"));
            return Ok(());
        }
        let path = self.dest.join(rel);
        if let Err(why) = self.clear_for_file(rel, &path)? {
            self.warn(format!("skipped `{shown}`: {why}"));
            return Ok(());
        }
        self.bytes += copy_new(data, &path, size)?;
        if self.written.insert(rel.to_path_buf()) {
            self.out.files.push(rel.to_path_buf());
        }
        Ok(())
    }

    /// Makes every component of `rel` a real directory under `dest`. Existing symlinks are
    /// never followed: a component that is not a directory makes the entry skipped
    /// (`Ok(Err(reason))`).
    fn ensure_dir(&self, rel: &Path) -> Result<Result<(), String>, CollectError> {
        let mut cur = self.dest.to_path_buf();
        for part in rel.components() {
            cur.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Ok(Err(format!(
                        "`{}` is not a directory",
                        part_display(&cur, self.dest)
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).map_err(io_err(format!("creating {}", cur.display())))?
                }
                Err(e) => return Err(io_err(format!("inspecting {}", cur.display()))(e)),
            }
        }
        Ok(Ok(()))
    }

    /// Removes what is at `path` (a file or link, never followed) so that the entry can be
    /// created fresh; a later duplicate entry replaces an earlier one, as tar does.
    fn clear_for_file(
        &mut self,
        rel: &Path,
        path: &Path,
    ) -> Result<Result<(), String>, CollectError> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(())),
            Err(e) => return Err(io_err(format!("inspecting {}", path.display()))(e)),
            Ok(m) if m.is_dir() => return Ok(Err("a directory of that name exists".into())),
            Ok(_) => {}
        }
        if self.written.contains(rel) {
            self.warn(format!(
                "`{}` appears twice in the archive; the later one is kept",
                rel.display()
            ));
        }
        fs::remove_file(path).map_err(io_err(format!("replacing {}", path.display())))?;
        Ok(Ok(()))
    }

    fn warn(&mut self, warning: String) {
        if self.out.warnings.len() < MAX_WARNINGS {
            self.out.warnings.push(warning);
        } else {
            self.suppressed += 1;
        }
    }

    fn finish(mut self) -> Extracted {
        if self.suppressed > 0 {
            let n = self.suppressed;
            self.out
                .warnings
                .push(format!("… and {n} more skipped entries"));
        }
        self.out
    }
}

fn part_display(path: &Path, dest: &Path) -> String {
    path.strip_prefix(dest)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Copies exactly `size` bytes of `data` into a new file at `path`. `create_new` (O_EXCL)
/// fails on any existing name, a dangling symlink included, so nothing is written through
/// a link that appeared since [`Unpacker::clear_for_file`].
fn copy_new(data: &mut impl Read, path: &Path, size: u64) -> Result<u64, CollectError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    let mut out = BufWriter::new(file);
    let write_err = || io_err(format!("writing {}", path.display()));
    let mut data = data.take(size);
    let mut buf = vec![0u8; 64 << 10];
    let mut copied = 0u64;
    // By hand rather than io::copy, to tell a broken archive (read) from a full disk (write).
    loop {
        let n = data.read(&mut buf).map_err(CollectError::Corrupt)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(write_err())?;
        copied += n as u64;
    }
    out.flush().map_err(write_err())?;
    if copied != size {
        return Err(CollectError::Corrupt(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("`{}` is cut short", path.display()),
        )));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use tar::Header;

    /// A tar built entry by entry; names are written raw, so hostile ones are possible.
    struct TarBuilder(tar::Builder<Vec<u8>>);

    impl TarBuilder {
        fn new() -> Self {
            TarBuilder(tar::Builder::new(Vec::new()))
        }

        fn entry(mut self, name: &str, kind: EntryType, data: &[u8], link: Option<&str>) -> Self {
            let mut h = Header::new_gnu();
            let slot = &mut h.as_old_mut().name;
            slot[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(kind);
            h.set_mode(if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        fn dir(self, name: &str) -> Self {
            self.entry(name, EntryType::Directory, b"", None)
        }

        fn file(self, name: &str, data: &str) -> Self {
            self.entry(name, EntryType::Regular, data.as_bytes(), None)
        }

        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// The archive as Docker streams it: in arbitrary chunks.
    fn chunked(tar: Vec<u8>) -> BoxStream<'static, Result<Bytes, EngineError>> {
        let chunks: Vec<_> = tar
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(chunks).boxed()
    }

    async fn extract(tar: Vec<u8>, dest: &Path) -> Result<Extracted, CollectError> {
        extract_results(chunked(tar), dest, ExtractLimits::default()).await
    }

    fn read(p: PathBuf) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[tokio::test]
    async fn directory_archive_is_stripped_of_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let tar = TarBuilder::new()
            .dir("results/")
            .dir("results/a/")
            .file("results/a/b.txt", "hello")
            .file("results/top.sarif", "{}")
            .dir("results/empty/")
            .bytes();
        let got = extract(tar, &dest).await.unwrap();
        assert_eq!(
            got.files,
            [PathBuf::from("a/b.txt"), PathBuf::from("top.sarif")]
        );
        assert!(got.warnings.is_empty(), "{:?}", got.warnings);
        assert_eq!(read(dest.join("a/b.txt")), "hello");
        assert_eq!(read(dest.join("top.sarif")), "{}");
        assert!(dest.join("empty").is_dir());
    }

    #[tokio::test]
    async fn single_file_archive_lands_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let tar = TarBuilder::new().file("x.sarif", "{\"runs\":[]}").bytes();
        let got = extract(tar, dir.path()).await.unwrap();
        assert_eq!(got.files, [PathBuf::from("x.sarif")]);
        assert_eq!(read(dir.path().join("x.sarif")), "{\"runs\":[]}");
    }

    #[tokio::test]
    async fn empty_results_directory_gives_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let got = extract(TarBuilder::new().dir("results").bytes(), dir.path())
            .await
            .unwrap();
        assert_eq!(got, Extracted::default());
    }

    #[tokio::test]
    async fn absolute_and_parent_paths_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let tar = TarBuilder::new()
            .dir("results/")
            .file("/tmp/phalanx-absolute-escape", "x")
            .file("results/../escape.txt", "x")
            .file("../escape2.txt", "x")
            .file("other/file.txt", "x")
            .file("results/ok.txt", "ok")
            .bytes();
        let got = extract(tar, &dest).await.unwrap();
        assert_eq!(got.files, [PathBuf::from("ok.txt")]);
        assert_eq!(got.warnings.len(), 4, "{:?}", got.warnings);
        assert!(!Path::new("/tmp/phalanx-absolute-escape").exists());
        assert!(!dir.path().join("escape.txt").exists());
        assert!(!dir.path().join("escape2.txt").exists());
    }

    #[tokio::test]
    async fn links_devices_and_fifos_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let outside_s = outside.to_str().unwrap();
        let tar = TarBuilder::new()
            .dir("results/")
            .entry("results/etc", EntryType::Symlink, b"", Some("/etc"))
            .entry("results/esc", EntryType::Symlink, b"", Some(outside_s))
            // The classic attack: a file written through the link planted just before.
            .file("results/esc/pwned", "x")
            .entry("results/hard", EntryType::Link, b"", Some("/etc/passwd"))
            .entry("results/null", EntryType::Char, b"", None)
            .entry("results/disk", EntryType::Block, b"", None)
            .entry("results/pipe", EntryType::Fifo, b"", None)
            .bytes();
        let got = extract(tar, &dest).await.unwrap();
        assert_eq!(got.files, [PathBuf::from("esc/pwned")]);
        assert_eq!(got.warnings.len(), 6, "{:?}", got.warnings);
        assert!(got.warnings[0].contains("symlink `results/etc` -> `/etc`"));
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        assert!(fs::symlink_metadata(dest.join("esc")).unwrap().is_dir());
        for name in ["etc", "hard", "null", "disk", "pipe"] {
            assert!(fs::symlink_metadata(dest.join(name)).is_err(), "{name}");
        }
    }

    #[tokio::test]
    async fn existing_links_in_dest_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("f"), "original").unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), dest.join("f")).unwrap();
        let tar = TarBuilder::new()
            .dir("results/")
            .file("results/sub/x", "x")
            .file("results/f", "new")
            .bytes();
        let got = extract(tar, &dest).await.unwrap();
        assert_eq!(got.files, [PathBuf::from("f")]);
        assert!(
            got.warnings[0].contains("`sub` is not a directory"),
            "{:?}",
            got.warnings
        );
        assert_eq!(read(outside.join("f")), "original");
        assert!(!outside.join("x").exists());
        assert_eq!(read(dest.join("f")), "new");
    }

    #[tokio::test]
    async fn duplicate_entries_keep_the_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let tar = TarBuilder::new()
            .file("a.txt", "one")
            .file("a.txt", "two")
            .bytes();
        let got = extract(tar, dir.path()).await.unwrap();
        assert_eq!(got.files, [PathBuf::from("a.txt")]);
        assert_eq!(read(dir.path().join("a.txt")), "two");
        assert_eq!(got.warnings.len(), 1);
    }

    #[tokio::test]
    async fn content_over_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(2000);
        let tar = TarBuilder::new()
            .dir("results")
            .file("results/big", &big)
            .bytes();
        let limits = ExtractLimits {
            max_bytes: 1000,
            max_entries: 10,
        };
        let err = extract_results(chunked(tar), dir.path(), limits)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CollectError::TooLarge { limit: 1000, .. }),
            "{err}"
        );
        assert!(!dir.path().join("big").exists());
    }

    #[tokio::test]
    async fn an_endless_stream_stops_at_the_archive_cap() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ExtractLimits {
            max_bytes: 1 << 20,
            max_entries: 10,
        };
        let endless = stream::repeat_with(|| Ok(Bytes::from(vec![0u8; 1 << 16]))).boxed();
        let err = extract_results(endless, dir.path(), limits)
            .await
            .unwrap_err();
        assert!(matches!(err, CollectError::ArchiveTooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn too_many_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = TarBuilder::new().dir("results");
        for i in 0..20 {
            tar = tar.file(&format!("results/f{i}"), "x");
        }
        let limits = ExtractLimits {
            max_bytes: 1 << 20,
            max_entries: 10,
        };
        let err = extract_results(chunked(tar.bytes()), dir.path(), limits)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CollectError::TooManyEntries { limit: 10 }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn warnings_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = TarBuilder::new().dir("results");
        for i in 0..100 {
            tar = tar.entry(&format!("results/l{i}"), EntryType::Symlink, b"", Some("/"));
        }
        let got = extract(tar.bytes(), dir.path()).await.unwrap();
        assert_eq!(got.warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(
            got.warnings.last().unwrap(),
            "… and 50 more skipped entries"
        );
    }

    #[tokio::test]
    async fn garbage_and_stream_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = extract(vec![7u8; 4096], dir.path()).await.unwrap_err();
        assert!(matches!(err, CollectError::Corrupt(_)), "{err}");

        let failing = stream::iter([
            Ok(Bytes::from_static(b"partial")),
            Err(EngineError::api("download", "connection reset")),
        ])
        .boxed();
        let err = extract_results(failing, dir.path(), ExtractLimits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, CollectError::Download(_)), "{err}");
    }

    #[tokio::test]
    async fn a_truncated_archive_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = TarBuilder::new().file("a.txt", &"x".repeat(5000)).bytes();
        tar.truncate(2048);
        let err = extract(tar, dir.path()).await.unwrap_err();
        assert!(matches!(err, CollectError::Corrupt(_)), "{err}");
    }
}
