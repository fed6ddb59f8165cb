//! What `phalanx doctor` asks the engine: where it is, which API it speaks, how it stores
//! images and whether an image is there. Typed answers, so that these queries can move
//! behind the `Engine` trait without their callers changing.

use std::path::PathBuf;

use super::{DockerEngine, engine_location};
use crate::engine::EngineError;

/// The engine as `docker info` and `docker version` describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineFacts {
    /// Where the client reached it (`DOCKER_HOST` or the default socket).
    pub location: String,
    /// The API version negotiated with the engine (`1.41`).
    pub api_version: String,
    /// The engine's own version (`20.10.24`), when it says.
    pub server_version: Option<String>,
    /// `overlay2`, `fuse-overlayfs`, `vfs`, …
    pub storage_driver: Option<String>,
    /// The engine's data root (`/var/lib/docker`): where images and volumes take space.
    /// It is a path on the engine's host, which is this one only for a local engine.
    pub data_root: Option<PathBuf>,
    /// Whether the engine is reached over a unix socket, so its data root is on this host
    /// (or in a filesystem this host sees under the same path).
    pub local: bool,
}

impl DockerEngine {
    /// Asks the engine what it is; one `info` call.
    pub async fn facts(&self) -> Result<EngineFacts, EngineError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| EngineError::api("info", e))?;
        let location = engine_location();
        Ok(EngineFacts {
            local: location.starts_with("unix://"),
            location,
            api_version: self.docker.client_version().to_string(),
            server_version: info.server_version,
            storage_driver: info.driver,
            data_root: info.docker_root_dir.map(PathBuf::from),
        })
    }
}
