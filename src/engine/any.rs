//! The back end a run was configured with, behind the one [`Engine`] trait: the scheduler,
//! runner and launch stay generic and are compiled once for this type.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

use super::docker::DockerEngine;
use super::swarm::{SwarmEngine, SwarmSettings};
use super::{
    ContainerSpec, Engine, EngineError, EngineKind, ExitStatus, ImageInfo, LogChunk, ProbeFile,
    Readiness, ReadyProbe, ServiceSpec, TargetView,
};
use crate::config::Suite;

/// Which back end, and what the swarm one needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineChoice {
    pub kind: EngineKind,
    pub swarm: SwarmSettings,
}

pub enum AnyEngine {
    Docker(DockerEngine),
    /// Boxed: it holds a Docker engine of its own besides its state.
    Swarm(Box<SwarmEngine>),
}

impl AnyEngine {
    pub async fn connect(choice: &EngineChoice) -> Result<Self, EngineError> {
        Ok(match choice.kind {
            EngineKind::Docker => AnyEngine::Docker(DockerEngine::connect().await?),
            EngineKind::Swarm => {
                AnyEngine::Swarm(Box::new(SwarmEngine::connect(choice.swarm.clone()).await?))
            }
        })
    }

    /// The engine images are built and checked on: the one Docker engine, or the manager's.
    pub fn local(&self) -> &DockerEngine {
        match self {
            AnyEngine::Docker(engine) => engine,
            AnyEngine::Swarm(engine) => engine.local(),
        }
    }

    /// What the run should tell its user about the engine.
    pub fn notes(&self) -> &[String] {
        match self {
            AnyEngine::Docker(_) => &[],
            AnyEngine::Swarm(engine) => engine.notes(),
        }
    }
}

/// Calls the same method on whichever engine this is.
macro_rules! both {
    ($self:ident, $engine:ident => $call:expr) => {
        match $self {
            AnyEngine::Docker($engine) => $call,
            AnyEngine::Swarm($engine) => $call,
        }
    };
}

impl Engine for AnyEngine {
    async fn ensure_image(
        &self,
        suite: &Suite,
        build_log: &Path,
    ) -> Result<ImageInfo, EngineError> {
        both!(self, e => e.ensure_image(suite, build_log).await)
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        both!(self, e => e.create(spec).await)
    }

    async fn prepare(&self, spec: &ContainerSpec) -> bool {
        both!(self, e => e.prepare(spec).await)
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        both!(self, e => e.start(id).await)
    }

    fn logs(&self, id: &str) -> BoxStream<'static, Result<LogChunk, EngineError>> {
        both!(self, e => e.logs(id))
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus, EngineError> {
        both!(self, e => e.wait(id).await)
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        both!(self, e => e.stop(id, grace).await)
    }

    async fn download(
        &self,
        id: &str,
        path: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, EngineError>>>, EngineError> {
        both!(self, e => e.download(id, path).await)
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        both!(self, e => e.remove(id).await)
    }

    async fn remove_labelled(&self, run_id: Option<&str>) -> Result<usize, EngineError> {
        both!(self, e => e.remove_labelled(run_id).await)
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        both!(self, e => e.image_exists(image).await)
    }

    async fn build_image(
        &self,
        context: &Path,
        image: &str,
        log: &Path,
    ) -> Result<(), EngineError> {
        both!(self, e => e.build_image(context, image, log).await)
    }

    async fn probe_target(
        &self,
        target: &Path,
        probe: &[ProbeFile],
        labels: &HashMap<String, String>,
    ) -> Result<TargetView, EngineError> {
        both!(self, e => e.probe_target(target, probe, labels).await)
    }

    async fn copy_target(
        &self,
        volume: &str,
        labels: &HashMap<String, String>,
        tar: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<(), EngineError> {
        both!(self, e => e.copy_target(volume, labels, tar).await)
    }

    async fn remove_orphans(&self) -> Result<usize, EngineError> {
        both!(self, e => e.remove_orphans().await)
    }

    async fn start_service(&self, spec: &ServiceSpec) -> Result<String, EngineError> {
        both!(self, e => e.start_service(spec).await)
    }

    async fn await_ready(&self, probe: &ReadyProbe) -> Result<Readiness, EngineError> {
        both!(self, e => e.await_ready(probe).await)
    }
}
