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

use crate::access::Tokens;
use crate::config::ProjectConfig;
use crate::store::StoreError;

use self::metrics::Metrics;
use self::readers::Readers;

/// Where `phalanx serve` listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// The largest request body accepted (a trigger's selection is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the server is started with.
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub config: ProjectConfig,
    /// The run store the server reads (and its runs are recorded in).
    pub store: std::path::PathBuf,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler reaches: the tokens, the configuration, the store's readers and the
/// metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    tokens: Tokens,
    config: ProjectConfig,
    readers: Arc<Readers>,
    metrics: Arc<Metrics>,
}

impl AppState {
    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    pub fn config(&self) -> &ProjectConfig {
        &self.0.config
    }

    pub fn readers(&self) -> &Arc<Readers> {
        &self.0.readers
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }
}

/// A server bound to its address, not yet answering.
pub struct Server {
    listener: TcpListener,
    router: Router,
}

impl Server {
    /// Opens the store and binds the address (port 0: any free port; [`Server::local_addr`]
    /// says which).
    pub async fn bind(settings: ServerSettings) -> Result<Server, ServeError> {
        let metrics = Arc::new(Metrics::new());
        let counted = Arc::clone(&metrics);
        let readers = Readers::open(&settings.store, move |_| counted.store_error())?;
        let state = AppState(Arc::new(Inner {
            tokens: Tokens::new(settings.config.tokens.clone()),
            config: settings.config,
            readers,
            metrics,
        }));
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Server {
            listener,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers until `shutdown` completes, then lets the requests under way finish. Live
    /// event streams end with the shutdown too (their runs stop).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
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
