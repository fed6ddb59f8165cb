//! Tiny images made from a tar of a few files and imported without a registry or a
//! Dockerfile: the probe image and the test images built around the probe binary.

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;

/// A root filesystem being built as a tar archive; every entry has mtime 0, so the same
/// content gives the same bytes.
pub struct Rootfs {
    tar: tar::Builder<Vec<u8>>,
}

impl Rootfs {
    /// What a hardened container needs to start the probe as nobody: `/etc/passwd` and
    /// `/etc/group` with root and nobody, the mount points, a sticky world-writable `/tmp`
    /// and the probe binary at `/probe`. No `/results`: callers lay it out.
    pub fn for_probe(binary: &[u8]) -> Rootfs {
        let mut rootfs = Rootfs {
            tar: tar::Builder::new(Vec::new()),
        };
        for dir in ["etc", "target", "proc", "sys", "dev"] {
            rootfs.dir(dir, 0o755, 0);
        }
        rootfs.dir("tmp", 0o1777, 0);
        rootfs.file("probe", 0o755, binary);
        let passwd = "root:x:0:0:root:/:/probe\nnobody:x:65534:65534:nobody:/nonexistent:/probe\n";
        rootfs.file("etc/passwd", 0o644, passwd.as_bytes());
        let group = "root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n";
        rootfs.file("etc/group", 0o644, group.as_bytes());
        rootfs
    }

    /// A directory owned by `owner` (uid and gid).
    pub fn dir(&mut self, path: &str, mode: u32, owner: u64) -> &mut Self {
        self.entry(path, mode, owner, b"", tar::EntryType::Directory)
    }

    /// A root-owned regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(path, mode, 0, data, tar::EntryType::Regular)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        owner: u64,
        data: &[u8],
        kind: tar::EntryType,
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        self.tar
            .append_data(&mut h, path, data)
            .expect("building a rootfs tar in memory");
        self
    }

    /// Imports the tar as `image` (`repo:tag`), with Dockerfile-style `changes` such as
    /// `CMD [...]`.
    pub async fn import(self, docker: &Docker, image: &str, changes: Vec<String>) {
        let rootfs = self
            .tar
            .into_inner()
            .expect("building a rootfs tar in memory");
        let (repo, tag) = image.split_once(':').expect("image is repo:tag");
        let mut options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag);
        if !changes.is_empty() {
            options = options.changes(changes);
        }
        let options = options.build();
        let mut progress =
            docker.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
        while let Some(step) = progress.next().await {
            step.unwrap_or_else(|e| panic!("importing {image}: {e}"));
        }
    }
}

/// 64-bit FNV-1a of `parts` in order, as 12 hex digits: stable across toolchains and
/// processes, unlike `DefaultHasher`, and plenty to tell image contents apart in a tag.
pub fn content_hash(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")[..12].to_string()
}
