//! `phalanx images --self`: Phalanx's own image, for CI jobs that run in a container and
//! reach the host's engine through its socket (`docker/phalanx/Dockerfile`).
//!
//! The image carries the binary that is running, so a release of it is simply that binary
//! run once with `images --self` (scripts/phalanx-image builds the static binary first).
//! Only a statically linked binary is accepted: a dynamically linked one would need the
//! glibc of the machine that built it, which the image's Debian may not have. The build
//! context is staged in a temporary folder from the checkout (Dockerfile, binary,
//! suites/ and docker/): sending the checkout itself would send target/ too.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::images::ImageJob;

/// The image's repository; the tag is the crate's version.
pub const REPO: &str = "phalanx/phalanx";

/// What the context is staged from, relative to the checkout.
const DOCKERFILE: &str = "docker/phalanx/Dockerfile";
const FOLDERS: [&str; 3] = ["suites", "services", "docker"];

/// `phalanx/phalanx:<version of this binary>`.
pub fn default_image() -> String {
    format!("{REPO}:{}", env!("CARGO_PKG_VERSION"))
}

#[derive(Debug, thiserror::Error)]
pub enum SelfImageError {
    #[error(
        "{} is missing: run `phalanx images --self` from a checkout of Phalanx \
         (it needs {DOCKERFILE}, suites/ and docker/)",
        path.display()
    )]
    NotACheckout { path: PathBuf },
    #[error(
        "{} is dynamically linked (it asks for the loader {loader}): the image needs a \
         static phalanx; scripts/phalanx-image builds one \
         (RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release \
         --target x86_64-unknown-linux-gnu)",
        binary.display()
    )]
    Dynamic { binary: PathBuf, loader: String },
    #[error("{} is not a 64-bit little-endian ELF executable: {why}", binary.display())]
    NotElf { binary: PathBuf, why: &'static str },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// A build context ready for the engine; the folder is removed when this is dropped.
pub struct Staged {
    _dir: TempDir,
    pub job: ImageJob,
}

/// Stages the context of `image` from `checkout`, with `binary` as `phalanx`.
pub fn stage(checkout: &Path, binary: &Path, image: &str) -> Result<Staged, SelfImageError> {
    check_static(binary)?;
    let dockerfile = checkout.join(DOCKERFILE);
    for path in std::iter::once(dockerfile.clone()).chain(FOLDERS.map(|f| checkout.join(f))) {
        if !path.exists() {
            return Err(SelfImageError::NotACheckout { path });
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("phalanx-self-image-")
        .tempdir()
        .map_err(|source| io_error("create a folder in", std::env::temp_dir(), source))?;
    copy_file(&dockerfile, &dir.path().join("Dockerfile"))?;
    copy_file(binary, &dir.path().join("phalanx"))?;
    for folder in FOLDERS {
        copy_tree(&checkout.join(folder), &dir.path().join(folder))?;
    }
    let job = ImageJob {
        image: image.to_string(),
        context: Some(dir.path().to_path_buf()),
        suites: vec!["phalanx".to_string()],
    };
    Ok(Staged { _dir: dir, job })
}

/// An error unless `binary` is an ELF executable without a program interpreter
/// (`PT_INTERP`), which is what static and static-pie executables look like.
pub fn check_static(binary: &Path) -> Result<(), SelfImageError> {
    let mut bytes = Vec::new();
    fs::File::open(binary)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut bytes))
        .map_err(|source| io_error("read", binary.to_path_buf(), source))?;
    match interpreter(&bytes) {
        Ok(None) => Ok(()),
        Ok(Some(loader)) => Err(SelfImageError::Dynamic {
            binary: binary.to_path_buf(),
            loader,
        }),
        Err(why) => Err(SelfImageError::NotElf {
            binary: binary.to_path_buf(),
            why,
        }),
    }
}

const PT_INTERP: u32 = 3;

/// The loader an ELF64 (little-endian) file names, if any. The program headers sit near
/// the start of the file, so the first MiB is plenty.
fn interpreter(elf: &[u8]) -> Result<Option<String>, &'static str> {
    if elf.get(..4) != Some(b"\x7fELF") {
        return Err("no ELF magic");
    }
    if elf.get(4..6) != Some(&[2, 1]) {
        return Err("not 64-bit little-endian");
    }
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    let truncated = "truncated program headers";
    let phoff = u64_at(0x20).and_then(|v| usize::try_from(v).ok());
    let (Some(phoff), Some(size), Some(count)) = (phoff, u16_at(0x36), u16_at(0x38)) else {
        return Err(truncated);
    };
    for i in 0..usize::from(count) {
        let header = phoff + i * usize::from(size);
        if u32_at(header).ok_or(truncated)? != PT_INTERP {
            continue;
        }
        let offset = u64_at(header + 8).ok_or(truncated)? as usize;
        let length = u64_at(header + 32).ok_or(truncated)? as usize;
        let name = elf
            .get(offset..offset.saturating_add(length))
            .ok_or(truncated)?;
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        return Ok(Some(String::from_utf8_lossy(name).into_owned()));
    }
    Ok(None)
}

fn copy_file(from: &Path, to: &Path) -> Result<(), SelfImageError> {
    fs::copy(from, to).map_err(|source| io_error("copy", from.to_path_buf(), source))?;
    Ok(())
}

/// Copies a folder of regular files and folders; links are kept as links (the build
/// context is packed without following them).
fn copy_tree(from: &Path, to: &Path) -> Result<(), SelfImageError> {
    fs::create_dir_all(to).map_err(|source| io_error("create", to.to_path_buf(), source))?;
    let entries =
        fs::read_dir(from).map_err(|source| io_error("list", from.to_path_buf(), source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io_error("list", from.to_path_buf(), source))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .map_err(|source| io_error("inspect", src.clone(), source))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let link =
                fs::read_link(&src).map_err(|source| io_error("read", src.clone(), source))?;
            std::os::unix::fs::symlink(link, &dst)
                .map_err(|source| io_error("create", dst.clone(), source))?;
        } else if kind.is_file() {
            copy_file(&src, &dst)?;
        }
    }
    Ok(())
}

fn io_error(action: &'static str, path: PathBuf, source: io::Error) -> SelfImageError {
    SelfImageError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_judged_by_its_loader() {
        // Test binaries are built without crt-static here: they name the loader.
        let exe = std::env::current_exe().unwrap();
        let bytes = fs::read(&exe).unwrap();
        let found = interpreter(&bytes).unwrap();
        let static_build = cfg!(target_feature = "crt-static");
        assert_eq!(found.is_none(), static_build, "{found:?}");
        if let Some(loader) = found {
            assert!(loader.contains("ld-linux"), "{loader}");
            let err = check_static(&exe).unwrap_err();
            assert!(matches!(err, SelfImageError::Dynamic { .. }), "{err}");
            assert!(err.to_string().contains("scripts/phalanx-image"), "{err}");
        }
    }

    #[test]
    fn rejects_what_is_not_an_elf_file() {
        assert_eq!(interpreter(b"#!/bin/sh\n"), Err("no ELF magic"));
        assert_eq!(
            interpreter(b"\x7fELF\x01\x01"),
            Err("not 64-bit little-endian")
        );
        assert_eq!(
            interpreter(b"\x7fELF\x02\x01\0\0"),
            Err("truncated program headers")
        );
    }

    #[test]
    fn stages_only_what_the_dockerfile_copies() {
        let checkout = tempfile::tempdir().unwrap();
        let c = checkout.path();
        for dir in [
            "docker/phalanx",
            "docker/x",
            "suites",
            "services",
            "target/debug",
        ] {
            fs::create_dir_all(c.join(dir)).unwrap();
        }
        fs::write(c.join(DOCKERFILE), "FROM phalanx/base:bookworm\n").unwrap();
        fs::write(c.join("suites/a.toml"), "image = \"x:1\"\n").unwrap();
        fs::write(c.join("services/s.toml"), "image = \"x:1\"\nport = 1\n").unwrap();
        fs::write(c.join("docker/x/Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(c.join("target/debug/big"), "not sent").unwrap();
        let binary = c.join("fake-phalanx");
        fs::write(&binary, b"#!/bin/sh\n").unwrap();
        assert!(matches!(
            stage(c, &binary, "t:1"),
            Err(SelfImageError::NotElf { .. })
        ));

        // A folder that is not a checkout is named as such.
        let static_elf = minimal_static_elf();
        fs::write(&binary, &static_elf).unwrap();
        let err = stage(&c.join("suites"), &binary, "t:1").err().unwrap();
        assert!(matches!(err, SelfImageError::NotACheckout { .. }), "{err}");

        let staged = stage(c, &binary, "t:1").unwrap();
        let dir = staged.job.context.clone().unwrap();
        assert_eq!(staged.job.image, "t:1");
        assert!(dir.join("Dockerfile").is_file());
        assert_eq!(fs::read(dir.join("phalanx")).unwrap(), static_elf);
        assert!(dir.join("suites/a.toml").is_file());
        assert!(dir.join("services/s.toml").is_file());
        assert!(dir.join("docker/x/Dockerfile").is_file());
        assert!(!dir.join("target").exists());
        drop(staged);
        assert!(!dir.exists(), "the staged context outlived its build");
    }

    /// An ELF64 header with one `PT_LOAD` program header and no interpreter.
    fn minimal_static_elf() -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        elf
    }
}
