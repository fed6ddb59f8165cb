//! `phalanx serve`: the HTTP layer over the library. Handlers only check who asks, turn
//! the request into the library's typed values, and turn the answer into JSON; runs go
//! through the scan service and reads through the run store, as the CLI's do.
//!
//! - [`auth`]: bearer tokens (401 / 403 / 404);
//! - [`problem`]: every error as `application/problem+json` (RFC 9457);
//! - [`api`]: the `/api/v1` routes; [`views`]: the documents they answer;
//! - [`sse`]: the live event streams; [`metrics`]: `/metrics`;
//! - [`web`]: the embedded dashboard and the security headers;
//! - [`openapi`]: `/api/v1/openapi.json`, generated from the handlers.

pub mod api;
pub mod auth;
pub mod control;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod readers;
pub mod sse;
pub mod views;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;

use tokio_util::sync::CancellationToken;

use crate::access::Tokens;
use crate::config::ProjectConfig;
use crate::scans::{ScanSettings, Scans, ScansError};
use crate::stop::Signal;
use crate::store::{StoreError, StoreSettings};

use self::metrics::Metrics;
use self::readers::Readers;

/// Where `phalanx serve` listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// How long requests under way may take to finish once the runs have stopped.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The largest request body accepted (a trigger's selection is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the server is started with.
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub config: ProjectConfig,
    /// The run store: the server's runs are recorded in it and its reads come from it.
    pub store: StoreSettings,
    /// Engine slots shared by every run.
    pub jobs: usize,
    pub image_jobs: usize,
}

/// Why the server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scans(#[from] ScansError),
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler reaches: the tokens, the configuration, the scan service, the
/// store's readers and the metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    tokens: Tokens,
    config: ProjectConfig,
    scans: Scans,
    readers: Arc<Readers>,
    metrics: Arc<Metrics>,
    /// Cancelled once the runs have stopped at shutdown: the event streams end with it.
    closing: CancellationToken,
}

impl AppState {
    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    pub fn config(&self) -> &ProjectConfig {
        &self.0.config
    }

    pub fn scans(&self) -> &Scans {
        &self.0.scans
    }

    pub fn readers(&self) -> &Arc<Readers> {
        &self.0.readers
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    pub fn closing(&self) -> &CancellationToken {
        &self.0.closing
    }
}

/// A server bound to its address, not yet answering.
pub struct Server {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Server {
    /// Opens the store, starts the scan service (runs a previous server left queued or
    /// running are marked interrupted) and binds the address (port 0: any free port;
    /// [`Server::local_addr`] says which).
    pub async fn bind(settings: ServerSettings) -> Result<Server, ServeError> {
        let metrics = Arc::new(Metrics::new());
        let counted = Arc::clone(&metrics);
        let readers = Readers::open(&settings.store.path, move |_| counted.store_error())?;
        let scans = Scans::start(ScanSettings {
            config: settings.config.clone(),
            jobs: settings.jobs,
            image_jobs: settings.image_jobs,
            store: settings.store.clone(),
        })?;
        tokio::spawn(metrics::follow(scans.clone(), Arc::clone(&metrics)));
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let state = AppState(Arc::new(Inner {
            tokens: Tokens::new(settings.config.tokens.clone()),
            config: settings.config,
            scans,
            readers,
            metrics,
            closing: CancellationToken::new(),
        }));
        Ok(Server {
            listener,
            router: router(state.clone()),
            state,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers until `shutdown` says which signal came. Then, still answering (reads
    /// work, triggers are refused, event streams carry the runs' ends), every run is
    /// stopped and recorded as interrupted, its containers removed; then the event
    /// streams end, and the requests under way are let finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = Signal> + Send + 'static,
    ) -> Result<(), ServeError> {
        let state = self.state.clone();
        let stopped = async move {
            let signal = shutdown.await;
            state.scans().shutdown(signal).await;
            state.closing().cancel();
        };
        let serving = axum::serve(self.listener, self.router).with_graceful_shutdown(stopped);
        // A client that stopped reading holds its connection open; it gets this long.
        let closed = self.state.closing().clone();
        let grace = async move {
            closed.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            served = serving => served?,
            () = grace => {}
        }
        Ok(())
    }
}

/// Every route, with the layers every response goes through: the body limit, the
/// problem documents, the security headers.
pub fn router(state: AppState) -> Router {
    let (api, _) = openapi::routes().split_for_parts();
    api.route("/", axum::routing::get(web::index))
        .route("/assets/{*path}", axum::routing::get(web::asset))
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(problem::complete))
        .layer(axum::middleware::from_fn(web::security_headers))
}
