//! Every error the API answers, as an RFC 9457 problem: `application/problem+json` with
//! `type`, `title`, `status`, `detail` and `instance`.
//!
//! Handlers return a [`Problem`] without `instance`; [`complete`] (a middleware) fills it
//! in with the request's path, and turns the bodies axum and tower-http write for their
//! own refusals (unknown route, wrong method, body too large) into problems too, so a
//! client never has to parse two error formats.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of a problem document.
pub const MEDIA_TYPE: &str = "application/problem+json";

/// One problem (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:phalanx:problem:<kind>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind in a few words; the same for every problem of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, and what to do about it.
    pub detail: String,
    /// The request path the problem is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Seconds to wait before trying again (429).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `kind` (a short slug such as `unknown-suite`).
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:phalanx:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            retry_after: None,
        }
    }

    pub fn titled(mut self, title: &str) -> Problem {
        self.title = title.to_string();
        self
    }

    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    pub fn not_found(kind: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, kind, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// The store could not answer: the server is fine, the store is not (503).
    pub fn store(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", detail)
            .titled("Run store unavailable")
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn render(&self) -> Response {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == 401 {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"phalanx\""),
            );
        }
        response
    }
}

impl IntoResponse for Problem {
    /// The body is written by [`complete`], once the request's path is known; the problem
    /// travels in the response's extensions until then (and is rendered without an
    /// `instance` should the middleware not run).
    fn into_response(self) -> Response {
        let mut response = self.render();
        response.extensions_mut().insert(self);
        response
    }
}

/// Middleware: the problem's `instance` is the request path; refusals that axum or
/// tower-http answered in their own words become problems of their status.
pub async fn complete(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    if let Some(problem) = response.extensions().get::<Problem>() {
        let mut problem = problem.clone();
        problem.instance = Some(path);
        return with_headers_of(problem.render(), response);
    }
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let mut problem = refusal(status);
        problem.instance = Some(path);
        return with_headers_of(problem.render(), response);
    }
    response
}

/// Keeps the headers the original response had that a problem does not set itself
/// (`Allow` on a 405, the security headers).
fn with_headers_of(mut problem: Response, original: Response) -> Response {
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && !problem.headers().contains_key(name)
        {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    drop(original.into_body());
    problem
}

/// The problem of a refusal whose words were not ours.
fn refusal(status: StatusCode) -> Problem {
    match status {
        StatusCode::NOT_FOUND => Problem::not_found(
            "no-such-route",
            "no such API route: see /api/v1/openapi.json for the ones there are",
        ),
        StatusCode::METHOD_NOT_ALLOWED => Problem::new(
            status,
            "method-not-allowed",
            "this route does not take that method (the Allow header lists those it takes)",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            status,
            "body-too-large",
            format!(
                "the request body is larger than the {} KiB this API accepts",
                super::MAX_BODY_BYTES / 1024
            ),
        ),
        other => Problem::new(
            other,
            "http",
            other.canonical_reason().unwrap_or("the request failed"),
        ),
    }
}

/// An empty body, for handlers that answer only with a status.
pub fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}
