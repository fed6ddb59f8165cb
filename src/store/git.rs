//! The git facts of a target: commit, branch and whether the work tree has changes, read
//! from `.git` directly rather than by running `git` (which may not be installed where
//! Phalanx runs, and whose output would be one more thing to parse).
//!
//! A full git library (gix with its `status` feature) was measured at 162 crates and two
//! minutes of extra build time on a 2-core machine; the few files needed here are simple.
//!
//! What is read: `HEAD`, loose refs and `packed-refs` (following a linked work tree's
//! `gitdir:` file and `commondir`), and the index. **Dirty** follows `git describe
//! --dirty`: a tracked file differs from the index, or the index from `HEAD` is not
//! checked; untracked files do not count. It is decided conservatively, from the index's
//! cached file sizes, times and modes, without hashing contents: a file whose stat data
//! differs from the index (say, touched but unchanged) counts as changed, as does a file
//! modified in the same second the index was written ("racy git"), a conflict, or an
//! intent-to-add entry. So `dirty = false` means clean; `true` means probably changed.
//! Anything unreadable (reftable refs, SHA-256 indexes, a damaged file) gives `None`
//! rather than a guess.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What git says about the work tree holding a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitInfo {
    /// The commit `HEAD` points at; `None` on an unborn branch or unreadable refs.
    pub commit: Option<String>,
    /// The branch `HEAD` names; `None` when detached.
    pub branch: Option<String>,
    /// Tracked files differ from the index (see the module comment); `None` when the
    /// index could not be read.
    pub dirty: Option<bool>,
}

/// The git facts of the work tree holding `target`, or `None` when it is not in one.
pub fn read(target: &Path) -> Option<GitInfo> {
    let repo = Repo::find(target)?;
    let head = fs::read_to_string(repo.git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let (branch, commit) = match head.strip_prefix("ref: ") {
        Some(name) => (
            name.strip_prefix("refs/heads/").map(str::to_string),
            repo.resolve(name, 0),
        ),
        None => (None, is_object_id(head).then(|| head.to_string())),
    };
    Some(GitInfo {
        commit,
        branch,
        dirty: repo.dirty(),
    })
}

struct Repo {
    work_tree: PathBuf,
    /// Holds `HEAD` and the index (per work tree).
    git_dir: PathBuf,
    /// Holds refs and `packed-refs` (shared by linked work trees).
    common_dir: PathBuf,
}

impl Repo {
    /// The nearest `.git` at or above `start`: a folder, or a file saying `gitdir: …`.
    fn find(start: &Path) -> Option<Repo> {
        for dir in start.ancestors() {
            let dot_git = dir.join(".git");
            let Ok(meta) = fs::metadata(&dot_git) else {
                continue;
            };
            let git_dir = if meta.is_dir() {
                dot_git
            } else {
                let text = fs::read_to_string(&dot_git).ok()?;
                let target = text.trim().strip_prefix("gitdir:")?.trim();
                dir.join(target)
            };
            let common_dir = match fs::read_to_string(git_dir.join("commondir")) {
                Ok(rel) => git_dir.join(rel.trim()),
                Err(_) => git_dir.clone(),
            };
            return Some(Repo {
                work_tree: dir.to_path_buf(),
                git_dir,
                common_dir,
            });
        }
        None
    }

    /// The object id a ref names, following symbolic refs a few levels deep.
    fn resolve(&self, name: &str, depth: u32) -> Option<String> {
        if depth > 5 || name.contains("..") {
            return None;
        }
        let loose = [&self.git_dir, &self.common_dir]
            .iter()
            .find_map(|d| fs::read_to_string(d.join(name)).ok());
        if let Some(text) = loose {
            let text = text.trim();
            return match text.strip_prefix("ref: ") {
                Some(next) => self.resolve(next, depth + 1),
                None => is_object_id(text).then(|| text.to_string()),
            };
        }
        let packed = fs::read_to_string(self.common_dir.join("packed-refs")).ok()?;
        packed
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
            .filter_map(|l| l.split_once(' '))
            .find(|(_, r)| *r == name)
            .map(|(id, _)| id.to_string())
            .filter(|id| is_object_id(id))
    }

    fn dirty(&self) -> Option<bool> {
        let path = self.git_dir.join("index");
        let written = fs::metadata(&path).ok()?;
        let bytes = fs::read(&path).ok()?;
        let entries = parse_index(&bytes)?;
        let index_mtime = (written.mtime(), written.mtime_nsec());
        Some(
            entries
                .iter()
                .any(|e| e.changed(&self.work_tree, index_mtime)),
        )
    }
}

fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One index entry, with what is compared against the work tree.
#[derive(Debug, PartialEq, Eq)]
struct IndexEntry {
    path: String,
    mtime: (u32, u32),
    mode: u32,
    size: u32,
    /// A conflict or an intent-to-add entry: a change whatever the files say.
    unresolved: bool,
    /// `skip-worktree` or `assume-unchanged`: git itself does not look at the file.
    ignored: bool,
}

const GITLINK: u32 = 0o160000;
const SYMLINK: u32 = 0o120000;

impl IndexEntry {
    fn changed(&self, work_tree: &Path, index_mtime: (i64, i64)) -> bool {
        if self.ignored || self.mode == GITLINK {
            return false;
        }
        if self.unresolved {
            return true;
        }
        let Ok(meta) = fs::symlink_metadata(work_tree.join(&self.path)) else {
            return true; // deleted
        };
        let kind_differs = if self.mode & 0o170000 == SYMLINK {
            !meta.file_type().is_symlink()
        } else {
            !meta.is_file() || (meta.mode() & 0o100) != (self.mode & 0o100)
        };
        // The index keeps the low 32 bits of each value.
        let mtime = (meta.mtime() as u32, meta.mtime_nsec() as u32);
        let nsec_differs = self.mtime.1 != 0 && mtime.1 != self.mtime.1;
        // Changed in the same instant the index was written: git would hash it; we may not.
        let racy = (meta.mtime(), meta.mtime_nsec()) >= index_mtime;
        kind_differs
            || meta.size() as u32 != self.size
            || mtime.0 != self.mtime.0
            || nsec_differs
            || racy
    }
}

/// Parses index versions 2 to 4 with SHA-1 object ids; `None` for anything else.
fn parse_index(bytes: &[u8]) -> Option<Vec<IndexEntry>> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(4)? != b"DIRC" {
        return None;
    }
    let version = r.u32()?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = r.u32()?;
    let mut entries = Vec::with_capacity(count.min(1 << 20) as usize);
    let mut previous = String::new();
    for _ in 0..count {
        let start = r.at;
        r.take(8)?; // ctime
        let mtime = (r.u32()?, r.u32()?);
        r.take(8)?; // dev, ino
        let mode = r.u32()?;
        r.take(8)?; // uid, gid
        let size = r.u32()?;
        r.take(20)?; // object id
        let flags = r.u16()?;
        let extended = if flags & 0x4000 != 0 && version >= 3 {
            r.u16()?
        } else {
            0
        };
        let path = if version == 4 {
            let strip = r.varint()? as usize;
            let keep = previous.len().checked_sub(strip)?;
            let mut p = previous.get(..keep)?.to_string();
            p.push_str(std::str::from_utf8(r.until_nul()?).ok()?);
            p
        } else {
            let p = std::str::from_utf8(r.until_nul()?).ok()?.to_string();
            // Entries are NUL-padded to a multiple of 8 bytes (the NUL read counts).
            let len = r.at - start;
            r.take((8 - len % 8) % 8)?;
            p
        };
        previous.clone_from(&path);
        entries.push(IndexEntry {
            path,
            mtime,
            mode,
            size,
            unresolved: flags & 0x3000 != 0 || extended & 0x2000 != 0,
            ignored: flags & 0x8000 != 0 || extended & 0x4000 != 0,
        });
    }
    Some(entries)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn until_nul(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let len = memchr::memchr(0, rest)?;
        let s = &rest[..len];
        self.at += len + 1;
        Some(s)
    }

    /// Git's offset varint (index v4 path prefixes).
    fn varint(&mut self) -> Option<u64> {
        let mut c = self.take(1)?[0];
        let mut value = u64::from(c & 0x7f);
        while c & 0x80 != 0 {
            c = self.take(1)?[0];
            value = value.checked_add(1)?.checked_mul(128)? | u64::from(c & 0x7f);
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A repository with one commit, whose index is older than the files' last change
    /// by more than a tick (so nothing is "racy").
    fn repo(index_version: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q"]);
        std::fs::create_dir(d.join("src")).unwrap();
        std::fs::write(d.join("src/app.py"), "print(1)\n").unwrap();
        std::fs::write(d.join("README"), "hi\n").unwrap();
        git(d, &["add", "."]);
        git(d, &["commit", "-q", "-m", "one"]);
        git(d, &["update-index", "--index-version", index_version]);
        // Age the files, then refresh the index so it is newer than all of them.
        for f in ["src/app.py", "README"] {
            let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            std::fs::File::options()
                .write(true)
                .open(d.join(f))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        git(d, &["update-index", "--refresh"]);
        dir
    }

    #[test]
    fn a_clean_repository_is_read_like_git_reads_it() {
        for version in ["2", "3", "4"] {
            let dir = repo(version);
            let d = dir.path();
            let info = read(&d.join("src")).expect("a work tree");
            assert_eq!(
                info.commit.as_deref(),
                Some(git(d, &["rev-parse", "HEAD"]).as_str())
            );
            assert_eq!(info.branch.as_deref(), Some("main"));
            assert_eq!(info.dirty, Some(false), "index v{version}");
        }
    }

    #[test]
    fn a_changed_deleted_or_staged_file_is_dirty_and_untracked_ones_are_not() {
        let dir = repo("2");
        let d = dir.path();
        std::fs::write(d.join("new.txt"), "untracked").unwrap();
        assert_eq!(read(d).unwrap().dirty, Some(false));
        std::fs::write(d.join("src/app.py"), "print(2)\n").unwrap();
        assert_eq!(read(d).unwrap().dirty, Some(true));
        git(d, &["checkout", "--", "src/app.py"]);
        git(d, &["update-index", "--refresh"]);
        std::fs::remove_file(d.join("README")).unwrap();
        assert_eq!(read(d).unwrap().dirty, Some(true));
    }

    #[test]
    fn packed_refs_detached_heads_and_unborn_branches() {
        let dir = repo("2");
        let d = dir.path();
        let head = git(d, &["rev-parse", "HEAD"]);
        git(d, &["pack-refs", "--all"]);
        assert!(!d.join(".git/refs/heads/main").exists());
        assert_eq!(read(d).unwrap().commit, Some(head.clone()));
        git(d, &["checkout", "-q", "--detach"]);
        let info = read(d).unwrap();
        assert_eq!((info.commit, info.branch), (Some(head), None));
        git(d, &["checkout", "-q", "--orphan", "fresh"]);
        let info = read(d).unwrap();
        assert_eq!((info.commit, info.branch.as_deref()), (None, Some("fresh")));
    }

    #[test]
    fn a_linked_work_tree_reads_its_own_head_and_the_shared_refs() {
        let dir = repo("2");
        let d = dir.path();
        let linked = d.join("wt");
        git(
            d,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "side",
                linked.to_str().unwrap(),
            ],
        );
        let info = read(&linked).unwrap();
        assert_eq!(info.branch.as_deref(), Some("side"));
        assert_eq!(
            info.commit.as_deref(),
            Some(git(d, &["rev-parse", "HEAD"]).as_str())
        );
    }

    #[test]
    fn outside_a_work_tree_there_are_no_facts_and_garbage_is_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        assert_eq!(parse_index(b"DIRC\0\0\0\x02\0\0\0\x05"), None);
        assert_eq!(parse_index(b"nonsense"), None);
    }
}
