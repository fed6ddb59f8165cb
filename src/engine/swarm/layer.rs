//! The per-run images a swarm task runs: the suite's image with the run's target at
//! `/target` and the task wrapper, built on the manager's engine and pushed to the
//! registry when there is one.
//!
//! A task may land on any node, so nothing it needs can be a path or a volume of the machine
//! running Phalanx. The target copy (the same tar as `--target-mode copy`, reports folder
//! left out) is imported once per run as an image of its own; each suite image then gets a
//! thin layer over it, built once per run.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{CreateImageOptionsBuilder, PushImageOptionsBuilder};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::Digest;

use crate::engine::{EngineError, TARGET_DIR, base};

/// The helper image with the static busybox (`docker/swarm-task`).
pub const TASK_IMAGE: &str = "phalanx/swarm-task:1";
const TASK_DOCKERFILE: &str = include_str!("../../../docker/swarm-task/Dockerfile");
/// The wrapper every task runs (see [`super::frame`]).
pub const TASK_SCRIPT: &str = include_str!("task.sh");
/// Where the layer puts the busybox and the wrapper.
const HELPER_DIR: &str = "/.phalanx";
/// The mode of the `/results` and `/tmp` mount points the layer lays over the image's. A
/// swarm tmpfs takes the mode of the image's directory under it, not the mount's `Mode`
/// (measured: over a 0755 `/results` it came up 0755 root, unwritable for the suite's user,
/// with Mode 01777 asked), so the layer makes both world-writable with the sticky bit, as
/// the Docker backend's result volume is.
const MOUNT_POINT_MODE: u32 = 0o1777;

/// The image holding the run's copy of the target, named after its "volume".
pub fn target_image(volume: &str) -> String {
    format!("{volume}:copy")
}

/// Imports the target tar (paths relative to the target) as [`target_image`].
pub async fn import_target(
    docker: &Docker,
    image: &str,
    labels: &HashMap<String, String>,
    tar: BoxStream<'static, std::io::Result<Bytes>>,
) -> Result<(), EngineError> {
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let opts = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![label_instruction(labels)])
        .build();
    // A big target over a slow link takes long: the default request timeout is 120 s.
    let client = docker
        .clone()
        .with_timeout(std::time::Duration::from_secs(3600));
    let mut progress = client.create_image(Some(opts), Some(bollard::body_try_stream(tar)), None);
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| EngineError::api("target import", e))?;
        if let Some(error) = step.error_detail.and_then(|d| d.message) {
            return Err(EngineError::api("target import", error));
        }
    }
    Ok(())
}

/// What one suite image's layer is made of.
#[derive(Debug, Clone)]
pub struct LayerRequest {
    pub suite_image: String,
    pub target_image: String,
    /// The suite image's own entrypoint and command, which the wrapper runs.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// The tag to build: `[registry/]phalanx-run/<run>:<hash>`.
    pub tag: String,
    pub labels: HashMap<String, String>,
}

/// `[registry/]phalanx-run/<run id>:<hash of the suite image>`.
pub fn layer_tag(registry: Option<&str>, run_id: &str, suite_image: &str) -> String {
    let hash = sha2::Sha256::digest(suite_image.as_bytes());
    let short: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    let repo = format!("phalanx-run/{run_id}");
    match registry {
        Some(registry) => format!("{registry}/{repo}:{short}"),
        None => format!("{repo}:{short}"),
    }
}

/// The layer's Dockerfile. The wrapper becomes the entrypoint with the image's own
/// entrypoint as its arguments; `CMD` is set again because a new `ENTRYPOINT` clears it.
pub fn dockerfile(req: &LayerRequest) -> String {
    let mut entrypoint = vec![
        format!("{HELPER_DIR}/busybox"),
        "sh".to_string(),
        format!("{HELPER_DIR}/task.sh"),
    ];
    entrypoint.extend(req.entrypoint.iter().cloned());
    let json = |v: &[String]| serde_json::to_string(v).expect("strings always serialise");
    // Everything the layer adds is put together in a scratch stage and copied in one go:
    // each instruction that changes files commits a layer, and on this engine's storage
    // driver (fuse-overlayfs, diffed naively) a commit walks the whole image, which made a
    // five-step layer over a big scanner image take about 20 s.
    let mut text = format!(
        "FROM {task} AS phalanx-task\n\
         FROM {target} AS phalanx-target\n\
         FROM scratch AS phalanx-files\n\
         COPY files/ /\n\
         COPY --from=phalanx-task /bin/busybox {HELPER_DIR}/busybox\n\
         COPY --from=phalanx-target / {TARGET_DIR}/\n\
         FROM {suite}\n\
         COPY --from=phalanx-files / /\n\
         ENTRYPOINT {entrypoint}\n",
        task = TASK_IMAGE,
        target = req.target_image,
        suite = req.suite_image,
        entrypoint = json(&entrypoint),
    );
    if !req.cmd.is_empty() {
        text.push_str(&format!("CMD {}\n", json(&req.cmd)));
    }
    text.push_str(&label_instruction(&req.labels));
    text.push('\n');
    text
}

/// `LABEL "k"="v" …`, in a stable order.
fn label_instruction(labels: &HashMap<String, String>) -> String {
    let mut pairs: Vec<_> = labels.iter().collect();
    pairs.sort();
    let quoted = |s: &str| serde_json::to_string(s).expect("strings always serialise");
    let body: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", quoted(k), quoted(v)))
        .collect();
    format!("LABEL {}", body.join(" "))
}

/// Builds the layer on the manager's engine, the helper image first when missing. The
/// build's output goes to `log`.
pub async fn build(docker: &Docker, req: &LayerRequest, log: &Path) -> Result<(), EngineError> {
    ensure_task_image(docker, log).await?;
    let context = context_tar(req).map_err(|e| EngineError::Build {
        image: req.tag.clone(),
        message: format!("cannot pack the build context: {e}"),
        log: log.to_path_buf(),
    })?;
    base::build_from_tar(docker, context, &req.tag, log).await
}

/// [`TASK_IMAGE`], built from its embedded Dockerfile (over the base image) when missing.
async fn ensure_task_image(docker: &Docker, log: &Path) -> Result<(), EngineError> {
    if docker.inspect_image(TASK_IMAGE).await.is_ok() {
        return Ok(());
    }
    let staged = stage_helper().map_err(|e| EngineError::Build {
        image: TASK_IMAGE.to_string(),
        message: format!("cannot stage the build context: {e}"),
        log: log.to_path_buf(),
    })?;
    base::build_image(docker, staged.path(), TASK_IMAGE, log).await
}

fn stage_helper() -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("phalanx-swarm-task-")
        .tempdir()?;
    std::fs::write(dir.path().join("Dockerfile"), TASK_DOCKERFILE)?;
    Ok(dir)
}

/// The layer's context, packed here so the mount points keep their mode: `Dockerfile`,
/// and under `files/` what the layer adds (`.phalanx/task.sh`, `results/`, `tmp/`).
fn context_tar(req: &LayerRequest) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, body: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_mtime(0);
        if path.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
        } else {
            header.set_size(body.len() as u64);
        }
        tar.append_data(&mut header, path, body)
    };
    add("Dockerfile", 0o644, dockerfile(req).as_bytes())?;
    add("files/", 0o755, b"")?;
    add(&format!("files{HELPER_DIR}/"), 0o755, b"")?;
    add(
        &format!("files{HELPER_DIR}/task.sh"),
        0o644,
        TASK_SCRIPT.as_bytes(),
    )?;
    add("files/results/", MOUNT_POINT_MODE, b"")?;
    add("files/tmp/", MOUNT_POINT_MODE, b"")?;
    tar.into_inner()
}

/// Pushes `tag` to its registry (the part before the first `/`).
pub async fn push(docker: &Docker, tag: &str) -> Result<(), EngineError> {
    let (name, version) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let opts = PushImageOptionsBuilder::default().tag(version).build();
    let client = docker
        .clone()
        .with_timeout(std::time::Duration::from_secs(3600));
    let mut progress = client.push_image(name, Some(opts), None);
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| EngineError::api("image push", e))?;
        if let Some(error) = step.error_detail.and_then(|d| d.message) {
            return Err(EngineError::api("image push", format!("{tag}: {error}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> LayerRequest {
        LayerRequest {
            suite_image: "phalanx/bandit:2".into(),
            target_image: "phalanx-abc-target:copy".into(),
            entrypoint: vec!["/usr/bin/tini".into(), "--".into()],
            cmd: vec!["run \"quoted\"".into()],
            tag: layer_tag(None, "abc", "phalanx/bandit:2"),
            labels: HashMap::from([("phalanx.run".into(), "abc".into())]),
        }
    }

    #[test]
    fn the_wrapper_runs_the_images_own_entrypoint_and_command() {
        let text = dockerfile(&request());
        assert!(text.contains(
            r#"ENTRYPOINT ["/.phalanx/busybox","sh","/.phalanx/task.sh","/usr/bin/tini","--"]"#
        ));
        assert!(text.contains(r#"CMD ["run \"quoted\""]"#), "{text}");
        assert!(text.contains("COPY --from=phalanx-target / /target/"));
        // One copy into the suite's image: one commit over it.
        let after_suite = text.split("FROM phalanx/bandit:2\n").nth(1).unwrap();
        assert_eq!(after_suite.matches("COPY").count(), 1, "{text}");
        assert!(text.contains(r#"LABEL "phalanx.run"="abc""#));
        assert!(text.starts_with("FROM phalanx/swarm-task:1 AS phalanx-task\n"));
    }

    #[test]
    fn layer_tags_name_the_run_and_the_registry() {
        let local = layer_tag(None, "abc", "img:1");
        assert!(local.starts_with("phalanx-run/abc:"), "{local}");
        let pushed = layer_tag(Some("10.0.0.1:5000"), "abc", "img:1");
        assert_eq!(pushed, format!("10.0.0.1:5000/{local}"));
        assert_ne!(local, layer_tag(None, "abc", "img:2"));
    }
}
