//! Shared helpers for the integration tests, which always run against the real Docker engine.
//! Included once per test binary by `#[path]` in `tests/<binary>/main.rs` (and by the
//! benchmark); a test module reaches it as `crate::support`.
//!
//! The workload is the probe (`tests/probe`): no registry can be reached here, so it is built
//! as a static binary and imported as a tiny image, once per test process.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use phalanx::engine::RUN_LABEL;
use tokio::sync::OnceCell;

pub mod hardened;
pub mod rootfs;

pub use rootfs::Rootfs;

/// Repository of the imported probe image; the tag is a hash of its content.
pub const PROBE_REPO: &str = "phalanx-test/probe";

/// Bump when the image layout (not the binary) changes, so the tag changes with it.
const LAYOUT_VERSION: &str = "probe-image-v2";

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// A client for the local engine. Not cached: each `#[tokio::test]` has its own runtime, and
/// a client's pooled connections must not outlive the runtime that opened them.
pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .expect("Docker client")
        .negotiate_version()
        .await
        .expect("the Docker engine must be running for integration tests")
}

/// `phalanx-test/probe:<hash>`, built and imported on first use in this process.
pub async fn probe_image() -> String {
    static IMAGE: OnceCell<String> = OnceCell::const_new();
    IMAGE
        .get_or_init(|| async {
            let binary = build_probe().await;
            let bytes = tokio::fs::read(&binary).await.expect("reading the probe");
            import_probe(&bytes).await
        })
        .await
        .clone()
}

/// Builds `tests/probe` as a static binary; returns its path.
pub async fn build_probe() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/Cargo.toml");
    let target = target_dir().join("probe");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = tokio::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            TRIPLE,
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // It would take precedence over RUSTFLAGS and drop the static linking.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .await
        .expect("running cargo to build the probe");
    assert!(
        out.status.success(),
        "building the probe failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join(TRIPLE).join("release/probe")
}

/// The main crate's target directory, found from this test binary (`<target>/debug/deps/…`),
/// which is right whatever CARGO_TARGET_DIR or `--target` said.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test binary");
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Imports the probe unless an image with its content hash exists. A host-wide lock keeps
/// concurrent test processes (and worktrees) from importing the same tag twice.
async fn import_probe(binary: &[u8]) -> String {
    let image = format!(
        "{PROBE_REPO}:{}",
        rootfs::content_hash(&[LAYOUT_VERSION.as_bytes(), binary])
    );
    let docker = docker().await;
    if docker.inspect_image(&image).await.is_ok() {
        return image;
    }
    let lock_path = std::env::temp_dir().join("phalanx-test-probe-import.lock");
    let _lock = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&lock_path).expect("creating the import lock");
        file.lock().expect("taking the import lock");
        file
    })
    .await
    .unwrap();
    if docker.inspect_image(&image).await.is_ok() {
        return image; // another process imported it while we waited
    }
    let changes = vec![r#"CMD ["/probe", "help"]"#.to_string()];
    probe_rootfs(binary).import(&docker, &image, changes).await;
    image
}

/// The probe's root filesystem, with a sticky world-writable `/results` (a fresh volume
/// takes its ownership and mode from the image's directory) and a setuid-root copy
/// `/probe-suid`, for the escalation attempt of the probe's `escape-report`: under
/// `no-new-privileges` it must run with the caller's ids, not root's.
fn probe_rootfs(binary: &[u8]) -> Rootfs {
    let mut rootfs = Rootfs::for_probe(binary);
    rootfs.dir("results", 0o1777, 0);
    rootfs.file("probe-suid", 0o4755, binary);
    rootfs
}

/// Held while a test builds the bundled images (or runs Phalanx on suites that build them
/// on first use): on a fresh engine the base image's debootstrap takes minutes, and
/// Phalanx's own lock against a second bootstrap is per process. Host-wide, so tests sharing
/// one test binary, and other test processes, wait for the first build instead of repeating it.
pub fn image_build_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("phalanx-test-image-build.lock");
    let file = std::fs::File::create(&path).expect("creating the image build lock");
    file.lock().expect("taking the image build lock");
    file
}

/// A name unique across tests, test processes and time: `<prefix>-<pid>-<n>-<ms hex>`.
/// Usable as a container name or a run id.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{prefix}-{}-{n}-{ms:x}", std::process::id())
}

/// A project directory of its own: `suites/`, `target/`, `reports/`; removed on drop.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("phalanx-it-")
            .tempdir()
            .expect("creating a workspace");
        for sub in ["suites", "target", "reports"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        // Containers run as nobody and must be able to reach and read the target mount.
        for p in [dir.path().to_path_buf(), dir.path().join("target")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Workspace { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn suites_dir(&self) -> PathBuf {
        self.root().join("suites")
    }

    pub fn target_dir(&self) -> PathBuf {
        self.root().join("target")
    }

    pub fn reports_dir(&self) -> PathBuf {
        self.root().join("reports")
    }

    /// Writes `suites/<name>.toml`; returns its path.
    pub fn suite(&self, name: &str, toml_body: &str) -> PathBuf {
        let path = self.suites_dir().join(format!("{name}.toml"));
        std::fs::write(&path, toml_body).expect("writing a suite file");
        path
    }

    /// Writes `services/<name>.toml` (the folder beside `suites/`); returns its path.
    pub fn service(&self, name: &str, toml_body: &str) -> PathBuf {
        let dir = self.root().join("services");
        std::fs::create_dir_all(&dir).expect("creating the services folder");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml_body).expect("writing a service file");
        path
    }

    /// Writes the project file `phalanx.toml`; returns its path.
    pub fn project(&self, toml_body: &str) -> PathBuf {
        let path = self.root().join("phalanx.toml");
        std::fs::write(&path, toml_body).expect("writing phalanx.toml");
        path
    }

    /// Writes a file under `target/` (parents created, world-readable); returns its path.
    pub fn target_file(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.target_dir().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).expect("writing a target file");
        path
    }

    /// The `phalanx` binary with `args`, run in this workspace.
    pub fn phalanx<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        // option_env! rather than env!, so this module compiles before the binary target
        // exists; only tests that run the CLI need it.
        let Some(bin) = option_env!("CARGO_BIN_EXE_phalanx") else {
            panic!("the `phalanx` binary target (src/main.rs) is missing");
        };
        self.command(bin, args)
    }

    /// Any program with `args`, run in this workspace.
    pub fn command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(self.root());
        cmd
    }
}

fn label_filter(run_id: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("{RUN_LABEL}={run_id}")])])
}

/// Ids of containers labelled `phalanx.run=<run_id>`, in any state.
pub async fn containers_with_label(run_id: &str) -> Vec<String> {
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&label_filter(run_id))
        .build();
    let list = docker()
        .await
        .list_containers(Some(options))
        .await
        .expect("listing containers");
    list.into_iter().filter_map(|c| c.id).collect()
}

/// Names of volumes labelled `phalanx.run=<run_id>`.
pub async fn volumes_with_label(run_id: &str) -> Vec<String> {
    let options = ListVolumesOptionsBuilder::default()
        .filters(&label_filter(run_id))
        .build();
    let list = docker()
        .await
        .list_volumes(Some(options))
        .await
        .expect("listing volumes");
    list.volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect()
}

/// Ids of networks labelled `phalanx.run=<run_id>`.
pub async fn networks_with_label(run_id: &str) -> Vec<String> {
    let options = ListNetworksOptionsBuilder::default()
        .filters(&label_filter(run_id))
        .build();
    let list = docker()
        .await
        .list_networks(Some(options))
        .await
        .expect("listing networks");
    list.into_iter().filter_map(|n| n.id).collect()
}

/// Removes whatever a test left labelled `phalanx.run=<run_id>`, so a failing test does
/// not leak into the next run. Errors are ignored: this is cleanup, not an assertion.
pub async fn remove_labelled(run_id: &str) {
    let docker = docker().await;
    let force = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    for id in containers_with_label(run_id).await {
        let _ = docker.remove_container(&id, Some(force.clone())).await;
    }
    for name in volumes_with_label(run_id).await {
        let _ = docker
            .remove_volume(
                &name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
    for id in networks_with_label(run_id).await {
        let _ = docker.remove_network(&id).await;
    }
}
