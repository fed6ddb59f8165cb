//! Reading a stopped container's results straight from its volume, when the engine keeps
//! its volumes on this host and we may read them (running as root next to the engine).
//!
//! The archive API has to mount the container's root filesystem to copy anything out of
//! it, which on this project's engines (fuse-overlayfs) is about as much engine work as
//! starting the container. The result volume is a plain directory on the host, so the same
//! tar can be written from it directly: the layout Docker's archive API uses (the
//! requested directory as the first entry, or the single file), symbolic links, hard links
//! and devices as such, so [`crate::collect::extract_results`] applies exactly the same
//! rules to it. Nothing is followed: every path is examined with `lstat`, a file is read
//! only if what was opened is what was examined, and the container has stopped, so nothing
//! changes the volume meanwhile. Whatever this cannot handle the same way as the archive
//! API (a path through a symbolic link, a path outside the volume) is left to the API.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::collect::chunked::{ChunkWriter, blocking_stream};
use crate::engine::{EngineError, RESULTS_DIR};

/// What reading `path` locally gives.
pub(super) enum Local {
    /// The tar, as the archive API would stream it.
    Tar(BoxStream<'static, Result<Bytes, EngineError>>),
    /// The path does not exist in the volume.
    Missing,
    /// Not something to read locally; ask the engine.
    UseApi,
}

/// Whether this process may read any file a suite writes: only root can, whatever modes
/// the suite chose. `/proc/self` belongs to the process's effective user.
pub(super) fn can_read_volumes() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0))
}

/// `path` inside the container, read from `volume`, the host directory mounted at
/// [`RESULTS_DIR`].
pub(super) fn results_tar(volume: &Path, path: &str) -> Local {
    let Some(rel) = path.strip_prefix(RESULTS_DIR) else {
        return Local::UseApi;
    };
    if !(rel.is_empty() || rel.starts_with('/')) {
        return Local::UseApi; // `/resultsx`: another directory
    }
    let mut parts = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_owned()),
            Component::ParentDir | Component::Prefix(_) => return Local::UseApi,
        }
    }
    let mut host = volume.to_path_buf();
    let mut meta = match fs::symlink_metadata(&host) {
        Ok(m) if m.is_dir() => m,
        _ => return Local::UseApi,
    };
    for part in &parts {
        if !meta.is_dir() {
            return Local::Missing;
        }
        host.push(part);
        meta = match fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Local::Missing,
            Err(_) => return Local::UseApi,
        };
        if meta.file_type().is_symlink() {
            // The engine resolves links inside the container; leave that to it.
            return Local::UseApi;
        }
    }
    if !(meta.is_dir() || meta.is_file()) {
        return Local::UseApi;
    }
    let name = parts
        .last()
        .cloned()
        .unwrap_or_else(|| Path::new(RESULTS_DIR).file_name().unwrap().to_owned());
    Local::Tar(stream(host, PathBuf::from(name), meta))
}

/// Writes the tar on a blocking thread, handing it over in chunks; stops when the reader
/// goes away (the extractor stops reading at its limits).
fn stream(
    host: PathBuf,
    name: PathBuf,
    meta: Metadata,
) -> BoxStream<'static, Result<Bytes, EngineError>> {
    blocking_stream(CHUNK, None, move |writer| {
        write_tar(writer, &host, &name, meta)
    })
    .map(|chunk| chunk.map_err(|e| EngineError::api("result copy", e)))
    .boxed()
}

const CHUNK: usize = 64 * 1024;

fn write_tar(out: ChunkWriter, host: &Path, name: &Path, meta: Metadata) -> io::Result<()> {
    let mut tar = Tarball {
        builder: tar::Builder::new(out),
        seen: HashMap::new(),
    };
    tar.builder.mode(tar::HeaderMode::Complete);
    if meta.is_dir() {
        // Depth first, names sorted, like the engine's own walk; no recursion, so no depth
        // a suite creates can exhaust the stack.
        let mut stack = vec![(host.to_path_buf(), name.to_path_buf(), meta)];
        while let Some((host, name, meta)) = stack.pop() {
            tar.entry(&host, &name, &meta)?;
            if !meta.is_dir() {
                continue;
            }
            let mut children: Vec<_> = fs::read_dir(&host)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            children.sort();
            for child in children.into_iter().rev() {
                let child_host = host.join(&child);
                let child_meta = fs::symlink_metadata(&child_host)?;
                stack.push((child_host, name.join(&child), child_meta));
            }
        }
    } else {
        tar.entry(host, name, &meta)?;
    }
    let mut out = tar.builder.into_inner()?;
    out.flush()
}

struct Tarball {
    builder: tar::Builder<ChunkWriter>,
    /// Regular files with several links, by (device, inode): later ones become hard links.
    seen: HashMap<(u64, u64), PathBuf>,
}

impl Tarball {
    fn entry(&mut self, host: &Path, name: &Path, meta: &Metadata) -> io::Result<()> {
        let kind = meta.file_type();
        if kind.is_socket() {
            return Ok(()); // the engine's archive leaves sockets out too
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        if kind.is_dir() {
            header.set_size(0);
            let mut dir_name = name.as_os_str().to_owned();
            dir_name.push("/");
            return self.builder.append_data(&mut header, dir_name, io::empty());
        }
        if kind.is_symlink() {
            let target = fs::read_link(host)?;
            header.set_size(0);
            return self.builder.append_link(&mut header, name, target);
        }
        if kind.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.seen.get(&key) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    let first = first.clone();
                    return self.builder.append_link(&mut header, name, first);
                }
                self.seen.insert(key, name.to_path_buf());
            }
            let file = File::open(host)?;
            let opened = file.metadata()?;
            if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
                return Err(io::Error::other(format!(
                    "{} changed while it was read",
                    host.display()
                )));
            }
            return self
                .builder
                .append_data(&mut header, name, file.take(meta.len()));
        }
        // Devices and fifos: the header alone (the extractor skips them with a warning).
        header.set_size(0);
        self.builder.append_data(&mut header, name, io::empty())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::collect::{ExtractLimits, extract_results};

    async fn collect(stream: BoxStream<'static, Result<Bytes, EngineError>>) -> Vec<u8> {
        let mut all = Vec::new();
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk.unwrap());
        }
        all
    }

    fn names(tar: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    /// A volume with nested files, a link out of it, a hard link and a fifo.
    fn volume() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("nested/deeper")).unwrap();
        fs::write(root.join("top.txt"), "top").unwrap();
        fs::write(root.join("nested/deeper/found.sarif"), "{}").unwrap();
        symlink("/etc/passwd", root.join("escape")).unwrap();
        fs::hard_link(root.join("top.txt"), root.join("again.txt")).unwrap();
        // No libc dependency for one mkfifo: the `mkfifo` tool does it.
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .unwrap();
        assert!(made.success());
        dir
    }

    #[tokio::test]
    async fn a_directory_comes_out_in_the_engine_layout() {
        let vol = volume();
        let Local::Tar(stream) = results_tar(vol.path(), "/results") else {
            panic!("not read locally")
        };
        let tar = collect(stream).await;
        use tar::EntryType as T;
        assert_eq!(
            names(&tar),
            [
                ("results/".to_string(), T::Directory),
                ("results/again.txt".into(), T::Regular),
                ("results/escape".into(), T::Symlink),
                ("results/nested/".into(), T::Directory),
                ("results/nested/deeper/".into(), T::Directory),
                ("results/nested/deeper/found.sarif".into(), T::Regular),
                ("results/pipe".into(), T::Fifo),
                ("results/top.txt".into(), T::Link),
            ]
        );
    }

    #[tokio::test]
    async fn extraction_treats_it_like_the_engine_archive() {
        let vol = volume();
        let Local::Tar(stream) = results_tar(vol.path(), "/results/") else {
            panic!("not read locally")
        };
        let dest = tempfile::tempdir().unwrap();
        let out = extract_results(stream, &dest.path().join("r"), ExtractLimits::default())
            .await
            .unwrap();
        let mut files: Vec<_> = out.files.iter().map(|p| p.display().to_string()).collect();
        files.sort();
        assert_eq!(files, ["again.txt", "nested/deeper/found.sarif"]);
        assert_eq!(out.warnings.len(), 3, "{:?}", out.warnings);
        assert_eq!(
            fs::read_to_string(dest.path().join("r/nested/deeper/found.sarif")).unwrap(),
            "{}"
        );
    }

    #[tokio::test]
    async fn single_files_missing_paths_and_links_on_the_way() {
        let vol = volume();
        let Local::Tar(stream) = results_tar(vol.path(), "/results/nested/deeper/found.sarif")
        else {
            panic!("not read locally")
        };
        assert_eq!(
            names(&collect(stream).await),
            [("found.sarif".to_string(), tar::EntryType::Regular)]
        );
        let Local::Tar(stream) = results_tar(vol.path(), "/results/nested") else {
            panic!("not read locally")
        };
        assert_eq!(names(&collect(stream).await)[0].0, "nested/");
        assert!(matches!(
            results_tar(vol.path(), "/results/none.sarif"),
            Local::Missing
        ));
        assert!(matches!(
            results_tar(vol.path(), "/results/top.txt/below"),
            Local::Missing
        ));
        for api in [
            "/results/escape",
            "/results/escape/x",
            "/results/../etc",
            "/tmp/out",
            "/resultsx",
            "/results/pipe",
        ] {
            assert!(
                matches!(results_tar(vol.path(), api), Local::UseApi),
                "{api}"
            );
        }
        assert!(matches!(
            results_tar(&vol.path().join("absent"), "/results"),
            Local::UseApi
        ));
    }

    #[tokio::test]
    async fn a_reader_that_stops_stops_the_writer() {
        let vol = tempfile::tempdir().unwrap();
        for i in 0..50 {
            fs::write(vol.path().join(format!("f{i}")), vec![b'x'; 100_000]).unwrap();
        }
        let Local::Tar(mut stream) = results_tar(vol.path(), "/results") else {
            panic!("not read locally")
        };
        let first = stream.next().await.unwrap().unwrap();
        assert!(!first.is_empty());
        drop(stream); // the writer thread gets BrokenPipe and ends quietly
    }
}
