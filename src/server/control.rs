//! The handlers that go through the scan service: the projects, triggering a run,
//! cancelling one, and the queue.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::api::{Located, locate, read_problem};
use super::auth::Caller;
use super::problem::Problem;
use super::views::{
    CancelView, LimitsView, ProjectSuite, ProjectView, QueueView, RunView, TriggerBody,
    TriggeredView, run_url,
};
use crate::access::Action;
use crate::config::ProjectSpec;
use crate::plan::PlanError;
use crate::scans::{self, CancelError, TriggerError, TriggerRequest};
use crate::store::Store;

/// The projects the token sees, with their suites, queue and newest run.
#[utoipa::path(
    get,
    path = "/projects",
    tag = "runs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The projects the token sees", body = Vec<ProjectView>),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn projects(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ProjectView>>, Problem> {
    caller.require_role(Action::Read)?;
    let scans = state.scans().clone();
    // Reading each project's suite folder is file work: off the async threads.
    let views = tokio::task::spawn_blocking(move || scans.projects())
        .await
        .map_err(|e| Problem::internal(format!("listing the projects failed: {e}")))?;
    let visible: Vec<scans::ProjectView> = views
        .into_iter()
        .filter(|p| caller.scope().sees(&p.spec.name))
        .collect();
    let names: Vec<String> = visible.iter().map(|p| p.spec.name.clone()).collect();
    let latest = state
        .readers()
        .read(move |store: &Store| Ok(store.latest_runs(&names)?))
        .await
        .map_err(read_problem)?;
    Ok(Json(
        visible
            .into_iter()
            .map(|p| {
                let last = latest
                    .iter()
                    .find(|r| r.project.as_deref() == Some(&p.spec.name));
                project_view(p, last.map(RunView::finished))
            })
            .collect(),
    ))
}

fn project_view(p: scans::ProjectView, latest_run: Option<RunView>) -> ProjectView {
    let spec: ProjectSpec = p.spec;
    let (suites, suites_error) = match p.suites {
        Ok(suites) => (
            Some(
                suites
                    .into_iter()
                    .map(|s| ProjectSuite {
                        name: s.name,
                        tags: s.tags,
                        description: s.description,
                    })
                    .collect(),
            ),
            None,
        ),
        Err(e) => (None, Some(e)),
    };
    let limits = &spec.limits;
    ProjectView {
        runs: format!("/api/v1/projects/{}/runs", spec.name),
        target: spec.target.display().to_string(),
        suites,
        suites_error,
        default_suites: spec.default_suites.clone(),
        default_tags: spec.default_tags.clone(),
        fail_on: spec.fail_on.map(|s| s.as_str().to_string()),
        gate: spec.gate.map(|g| format!("{g:?}").to_lowercase()),
        baseline: spec.baseline.clone(),
        max_queued: spec.max_queued,
        limits: LimitsView {
            allow_network: limits.allow_network.as_ref().map(|modes| {
                modes
                    .iter()
                    .map(|m| format!("{m:?}").to_lowercase())
                    .collect()
            }),
            allow_cap_add: limits.allow_cap_add.clone(),
            allow_writable_root: limits.allow_writable_root,
            max_memory: limits.max_memory,
            max_cpus: limits.max_cpus,
            max_pids: limits.max_pids,
            max_timeout: limits.max_timeout.map(|t| t.as_secs_f64()),
        },
        queued: p.queued,
        running: p.running,
        latest_run,
        name: spec.name,
    }
}

/// Queues a run of the project: its default selection, or the `suites` and `tags`
/// asked for. The run scans the project's configured target; the request names no path.
#[utoipa::path(
    post,
    path = "/projects/{project}/runs",
    tag = "runs",
    security(("bearer" = [])),
    params(("project" = String, Path, description = "A configured project")),
    request_body(content = Option<TriggerBody>, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued; Location is the run", body = TriggeredView),
        (status = 400, description = "A malformed body, an unknown key or an unknown suite", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not a runner of this project", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Every suite selected is invalid or refused by the project's limits", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The project's queue is full; Retry-After says when to try again", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The server is shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    if !state.config().projects.contains_key(&project) {
        return Err(unknown_project(&project));
    }
    caller.require(Action::Trigger, &project)?;
    let body = trigger_body(&headers, &body)?;
    let request = TriggerRequest {
        suites: body.suites,
        tags: body.tags,
        fail_on: body.fail_on,
        requested_by: Some(caller.0.name.clone()),
    };
    let scans = state.scans().clone();
    let asked = project.clone();
    // Reading the suites and opening the store is file work: off the async threads.
    let triggered = tokio::task::spawn_blocking(move || scans.trigger(&asked, request))
        .await
        .map_err(|e| Problem::internal(format!("triggering the run failed: {e}")))?
        .map_err(|e| trigger_problem(&project, e))?;
    let url = run_url(&triggered.run_id);
    let view = TriggeredView {
        events: format!("{url}/events"),
        url: url.clone(),
        run_id: triggered.run_id,
        project: triggered.project,
        suites: triggered.suites,
        queued_ahead: triggered.queued_ahead,
    };
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn unknown_project(project: &str) -> Problem {
    Problem::not_found(
        "no-such-project",
        format!(
            "no project `{}` is configured ([projects.NAME] in phalanx.toml)",
            project.chars().take(64).collect::<String>()
        ),
    )
}

/// The trigger's body: nothing (the project's defaults), or a JSON object of the keys
/// [`TriggerBody`] has, and nothing else.
fn trigger_body(headers: &HeaderMap, body: &Bytes) -> Result<TriggerBody, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TriggerBody::default());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-json",
            format!(
                "the body must be application/json, not {:?}",
                content_type.chars().take(64).collect::<String>()
            ),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let mut detail = format!("the body is not a run request: {e}");
        if e.to_string().starts_with("unknown field") {
            detail.push_str(
                "; a run scans its project's configured target and suites, never a path or host of the request",
            );
        }
        Problem::bad_request("bad-body", detail)
    })
}

fn trigger_problem(project: &str, error: TriggerError) -> Problem {
    let detail = error.to_string();
    match error {
        TriggerError::UnknownProject(_) => unknown_project(project),
        TriggerError::Selection(PlanError::UnknownSuite { .. }) => Problem::bad_request(
            "unknown-suite",
            format!("project `{project}` has no such suite: {detail}"),
        ),
        TriggerError::Selection(PlanError::NothingSelected { .. }) => {
            Problem::bad_request("nothing-selected", detail)
        }
        TriggerError::NothingRunnable(_) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "nothing-runnable", detail)
        }
        TriggerError::QueueFull { retry_after, .. } => {
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue-full",
                format!("{detail}: try again later"),
            );
            problem.retry_after = Some(retry_after.as_secs().max(1));
            problem
        }
        TriggerError::ProjectConfig { .. } => {
            Problem::internal(detail).titled("Project misconfigured")
        }
        TriggerError::ShuttingDown => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", detail)
        }
    }
}

/// Stops a running run (its containers are removed) or drops a queued one; either way it
/// is recorded, its unfinished suites cancelled.
#[utoipa::path(
    post,
    path = "/runs/{run_id}/cancel",
    tag = "runs",
    security(("bearer" = [])),
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Stopping", body = CancelView),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not a runner of the run's project", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run (or one the token may not see)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run has ended already", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Response, Problem> {
    let located = locate(&state, &caller, &run_id).await?;
    if let Some(project) = located.project() {
        caller.require(Action::Cancel, project)?;
    } else {
        caller.require_role(Action::Cancel)?;
    }
    let ended = || {
        Problem::new(
            StatusCode::CONFLICT,
            "run-ended",
            format!(
                "run `{}` has ended already: there is nothing to cancel",
                located.run_id()
            ),
        )
    };
    if !matches!(located, Located::Live(_)) {
        return Err(ended());
    }
    match state.scans().cancel(located.run_id(), &caller.0.name) {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(CancelView {
                run_id: located.run_id().to_string(),
                state: "cancelling".into(),
                url: run_url(located.run_id()),
            }),
        )
            .into_response()),
        // It ended between the look and the cancel.
        Err(CancelError::NotFound(_)) => Err(ended()),
    }
}

/// The shared queue: engine slots, running suites, and the queued and running runs of
/// the projects the token sees.
#[utoipa::path(
    get,
    path = "/queue",
    tag = "runs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The queue", body = QueueView),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn queue(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<QueueView>, Problem> {
    caller.require_role(Action::Read)?;
    let status = state.scans().status();
    let runs = state
        .scans()
        .live_runs()
        .iter()
        .filter(|r| caller.scope().sees(&r.project))
        .map(RunView::live)
        .collect();
    Ok(Json(QueueView {
        jobs: status.jobs,
        running_suites: status.running_suites,
        queued: status
            .queued
            .into_iter()
            .filter(|(p, _)| caller.scope().sees(p))
            .collect(),
        runs,
    }))
}
