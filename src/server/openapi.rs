//! The OpenAPI document, made from the handlers' `#[utoipa::path]` annotations and the
//! views' `ToSchema` derives as the routes are registered: what is served is what is
//! documented, with nothing kept by hand.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::{api, control};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Phalanx",
        description = "Trigger security scans of configured projects, read their runs, findings and reports, and follow them live. Every /api/v1 route takes `Authorization: Bearer <token>` (phalanx token new); errors are application/problem+json (RFC 9457).",
        license(name = "see the repository")
    ),
    modifiers(&BearerToken),
    tags(
        (name = "runs", description = "Runs: trigger, list, read, cancel"),
        (name = "events", description = "Live events as Server-Sent Events"),
        (name = "server", description = "Health and metrics"),
    )
)]
struct Base;

/// Declares the bearer token and requires it on every operation but the open ones.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route of the server that the document describes.
pub fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(control::projects))
        .routes(routes!(control::trigger))
        .routes(routes!(api::runs))
        .routes(routes!(api::run))
        .routes(routes!(api::findings))
        .routes(routes!(control::cancel))
        .routes(routes!(api::report))
        .routes(routes!(control::queue))
        .routes(routes!(super::sse::run_events))
        .routes(routes!(super::sse::all_events))
        .routes(routes!(document_handler));
    OpenApiRouter::with_openapi(Base::openapi())
        .routes(routes!(api::healthz))
        .routes(routes!(api::metrics))
        .nest("/api/v1", v1)
}

/// The document, made once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| routes().into_openapi())
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "server",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn document_handler() -> Json<&'static Document> {
    Json(document())
}
