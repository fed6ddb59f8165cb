//! The live event streams, as Server-Sent Events.

use axum::response::Response;

use super::problem::Problem;

#[utoipa::path(get, path = "/runs/{run_id}/events", tag = "events", security(("bearer" = [])),
    params(("run_id" = String, Path, description = "The run's id")),
    responses((status = 200, description = "The run's events", content_type = "text/event-stream", body = String)))]
pub async fn run_events() -> Result<Response, Problem> {
    Err(Problem::internal("not yet"))
}

#[utoipa::path(get, path = "/events", tag = "events", security(("bearer" = [])),
    responses((status = 200, description = "Every run's events", content_type = "text/event-stream", body = String)))]
pub async fn all_events() -> Result<Response, Problem> {
    Err(Problem::internal("not yet"))
}
