//! What a browser gets: the dashboard's files, embedded in the binary (no CDN, works
//! offline), and the security headers every response carries.

use axum::extract::{Path, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use super::problem::Problem;

/// The dashboard: `dashboard/index.html` at `/`, every other file at `/assets/<path>`.
#[derive(Embed)]
#[folder = "dashboard/"]
struct Dashboard;

/// Only our own files, scripts from files only (no inline script, no eval), nothing
/// framed, no plugins, forms and connections to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Middleware: the same security headers on every response, API and dashboard alike.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(
        headers,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    // Answers to a token are for that token: no proxy or browser cache keeps them.
    if api && !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// `GET /`: the dashboard's page.
pub async fn index() -> Response {
    asset_response("index.html")
}

/// `GET /assets/{*path}`: one of the dashboard's files. Only names the binary holds are
/// answered, so the request never names a file on disk.
pub async fn asset(Path(path): Path<String>) -> Response {
    if path == "index.html" {
        return Problem::not_found("no-such-asset", "the dashboard's page is at /").into_response();
    }
    asset_response(&path)
}

fn asset_response(path: &str) -> Response {
    let Some(file) = Dashboard::get(path) else {
        return Problem::not_found(
            "no-such-asset",
            format!("the dashboard has no file {path:?}"),
        )
        .into_response();
    };
    let mime = content_type(path);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        file.data.into_owned(),
    )
        .into_response()
}

/// The few types a dashboard has; anything else is served as bytes, never sniffed.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
