//! The target on an engine that may not share this filesystem: the probe that tells, and
//! the copy into a volume when it does not (see [`crate::target`]).
//!
//! Both go through never-started containers of [`EMPTY_IMAGE`], an image with no files
//! imported through the API (no registry, nothing to build): the archive API mounts a
//! created container's volumes and binds, so it can read a bind-mounted directory and
//! write into a volume without running anything.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::engine::{EngineError, ProbeFile, TargetView};

/// An image without a single file: what the probe and copy containers are made from.
pub const EMPTY_IMAGE: &str = "phalanx/empty:1";

/// Where the probe container mounts the target, and the copy container the volume.
const PROBE_MOUNT: &str = "/phalanx-probe";
const COPY_MOUNT: &str = "/phalanx-target";

/// Most a probed file's tar may be: a header, the file (at most `target::PROBE_MAX`), padding.
const PROBE_TAR_LIMIT: usize = 128 * 1024;

/// Imports [`EMPTY_IMAGE`] from an empty tar unless the engine has it.
async fn ensure_empty_image(docker: &Docker) -> Result<(), EngineError> {
    match docker.inspect_image(EMPTY_IMAGE).await {
        Ok(_) => return Ok(()),
        Err(e) if super::is_not_found(&e) => {}
        Err(e) => return Err(EngineError::api("image inspect", e)),
    }
    let (repo, tag) = EMPTY_IMAGE.split_once(':').expect("the name has a tag");
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec!["LABEL phalanx.built-by=phalanx".into()])
        .build();
    // Two blocks of zeros: the end of an empty archive.
    let empty = Bytes::from(vec![0u8; 1024]);
    let mut stream = docker.create_image(Some(options), Some(bollard::body_full(empty)), None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| EngineError::api("empty image import", e))?;
    }
    Ok(())
}

/// A never-started container of [`EMPTY_IMAGE`] with `mount`; `Ok(None)` when the engine
/// refuses the mount because its source does not exist there.
async fn helper_container(
    docker: &Docker,
    name: &str,
    mount: Mount,
    labels: &HashMap<String, String>,
) -> Result<Option<String>, EngineError> {
    ensure_empty_image(docker).await?;
    let body = ContainerCreateBody {
        image: Some(EMPTY_IMAGE.into()),
        labels: Some(labels.clone()),
        entrypoint: Some(vec!["/phalanx-never-started".into()]),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            mounts: Some(vec![mount]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(name).build();
    match docker.create_container(Some(opts), body).await {
        Ok(created) => Ok(Some(created.id)),
        Err(e) if is_missing_bind_source(&e) => Ok(None),
        Err(e) => Err(EngineError::api("container create", e)),
    }
}

/// The engine's answer to a bind mount whose source it cannot find.
fn is_missing_bind_source(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError { status_code: 400, message }
            if message.contains("bind source path does not exist")
    )
}

async fn remove_helper(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let _ = docker.remove_container(id, Some(opts)).await;
}

/// See [`crate::engine::Engine::probe_target`].
pub async fn probe(
    docker: &Docker,
    name: &str,
    target: &Path,
    files: &[ProbeFile],
    labels: &HashMap<String, String>,
) -> Result<TargetView, EngineError> {
    let mount = Mount {
        target: Some(PROBE_MOUNT.into()),
        source: Some(target.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    };
    let Some(id) = helper_container(docker, name, mount, labels).await? else {
        return Ok(TargetView::Absent);
    };
    let mut view = TargetView::Same;
    for file in files {
        match probed_file(docker, &id, &file.path).await {
            Ok(Some(seen)) if seen == *file => {}
            Ok(_) => {
                view = TargetView::Different;
                break;
            }
            Err(e) => {
                remove_helper(docker, &id).await;
                return Err(e);
            }
        }
    }
    remove_helper(docker, &id).await;
    Ok(view)
}

/// `path` (relative to the target) as the engine sees it; `None` when it is not a small
/// regular file there.
async fn probed_file(
    docker: &Docker,
    id: &str,
    path: &str,
) -> Result<Option<ProbeFile>, EngineError> {
    let opts = DownloadFromContainerOptionsBuilder::default()
        .path(&format!("{PROBE_MOUNT}/{path}"))
        .build();
    let mut tar = docker.download_from_container(id, Some(opts));
    let mut all = Vec::new();
    while let Some(chunk) = tar.next().await {
        match chunk {
            Ok(bytes) => all.extend_from_slice(&bytes),
            Err(e) if super::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(EngineError::api("target probe", e)),
        }
        if all.len() > PROBE_TAR_LIMIT {
            return Ok(None);
        }
    }
    Ok(read_single_file(&all, path))
}

/// The single regular file of a tar, as a [`ProbeFile`] named `path`.
fn read_single_file(tar: &[u8], path: &str) -> Option<ProbeFile> {
    use std::io::Read;
    let mut archive = tar::Archive::new(tar);
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    if !entry.header().entry_type().is_file() {
        return None;
    }
    let (size, mtime) = (entry.header().size().ok()?, entry.header().mtime().ok()?);
    let mut content = Vec::new();
    entry.read_to_end(&mut content).ok()?;
    Some(ProbeFile {
        path: path.to_string(),
        size,
        mtime,
        content,
    })
}

/// See [`crate::engine::Engine::copy_target`]. The volume is left for the run's sweep by
/// label when anything fails.
pub async fn copy(
    docker: &Docker,
    volume: &str,
    labels: &HashMap<String, String>,
    tar: BoxStream<'static, std::io::Result<Bytes>>,
) -> Result<(), EngineError> {
    let request = VolumeCreateRequest {
        name: Some(volume.to_string()),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    docker
        .create_volume(request)
        .await
        .map_err(|e| EngineError::api("volume create", e))?;
    let mount = Mount {
        target: Some(COPY_MOUNT.into()),
        source: Some(volume.to_string()),
        typ: Some(MountType::VOLUME),
        ..Default::default()
    };
    let name = format!("{volume}-copy");
    let id = helper_container(docker, &name, mount, labels)
        .await?
        .ok_or_else(|| EngineError::api("target copy", "the volume mount was refused"))?;
    let opts = UploadToContainerOptionsBuilder::default()
        .path(COPY_MOUNT)
        .build();
    // bollard's request timeout also covers sending the body: a big target over a slow
    // link needs far more than its default 120 s.
    let client = docker
        .clone()
        .with_timeout(std::time::Duration::from_secs(3600));
    let uploaded = client
        .upload_to_container(&id, Some(opts), bollard::body_try_stream(tar.into_stream()))
        .await
        .map_err(|e| EngineError::api("target copy", e));
    remove_helper(docker, &id).await;
    uploaded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probed_file_is_read_from_its_tar() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mtime(1234);
        h.set_mode(0o644);
        builder.append_data(&mut h, "a", &b"hi"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let seen = read_single_file(&tar, "x/a").unwrap();
        assert_eq!(
            seen,
            ProbeFile {
                path: "x/a".into(),
                size: 2,
                mtime: 1234,
                content: b"hi".to_vec()
            }
        );
        assert_eq!(read_single_file(b"", "a"), None);
    }
}
