//! The `/api/v1` handlers (and the open `/healthz`, `/metrics`). Each checks the caller,
//! asks the store or the scan service, and answers a view.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::AppState;
use super::auth::Caller;
use super::problem::Problem;
use super::readers::ReadError;
use super::views::run_url;
use super::views::{
    FindingPage, FindingState, FindingView, Health, RunDetailView, RunLinks, RunPage, RunView,
    SuiteView,
};
use crate::access::{Action, Scope};
use crate::findings::Severity;
use crate::store::live::{LiveRun, LiveState};
use crate::store::pages::{
    self, FindingCursor, FindingQuery, Listed, Projects, RunCursor, RunQuery,
};
use crate::store::{RunSummary, Store};

/// The report files of a run the API serves, by name; nothing else is ever read.
pub const REPORTS: [&str; 3] = ["junit.xml", "results.sarif", "run.json"];

/// Runs per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_RUNS: usize = 50;
const MAX_RUNS: usize = 500;
/// The same for findings.
const DEFAULT_FINDINGS: usize = 500;
const MAX_FINDINGS: usize = 5000;

/// `Query` whose refusal is a problem document naming the parameter.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(e) => Err(Problem::bad_request(
                "bad-query",
                format!(
                    "the query string is not what this route takes: {}",
                    e.body_text()
                ),
            )),
        }
    }
}

pub(super) fn read_problem(e: ReadError) -> Problem {
    match e {
        ReadError::NotFound(detail) => Problem::not_found("no-such-run", detail),
        ReadError::Store(e) => Problem::store(e.to_string()),
    }
}

/// 404 for a run that does not exist and for one the token may not see alike, so that a
/// token learns nothing of other projects' runs.
pub(super) fn no_such_run(run_id: &str) -> Problem {
    Problem::not_found("no-such-run", format!("no run `{run_id}`"))
}

/// A run id as the server makes them: a few letters, digits and dashes. Anything else
/// names no run (and never reaches a path).
fn check_run_id(run_id: &str) -> Result<(), Problem> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 64
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(no_such_run(&run_id.chars().take(64).collect::<String>())),
    }
}

/// A run, wherever it is now.
#[derive(Debug, Clone)]
pub enum Located {
    /// Queued or running on this server.
    Live(LiveRun),
    /// Recorded whole.
    Recorded(Box<RunSummary>),
    /// Cut off before it could be recorded: queued when the server stopped, or running
    /// when it died.
    Cut(LiveRun),
}

impl Located {
    pub fn project(&self) -> Option<&str> {
        match self {
            Located::Live(l) | Located::Cut(l) => Some(&l.project),
            Located::Recorded(r) => r.project.as_deref(),
        }
    }

    pub fn run_id(&self) -> &str {
        match self {
            Located::Live(l) | Located::Cut(l) => &l.run_id,
            Located::Recorded(r) => &r.run_id,
        }
    }
}

/// The run `run_id`, if the caller may see it; 404 otherwise, whichever the reason.
pub async fn locate(state: &AppState, caller: &Caller, run_id: &str) -> Result<Located, Problem> {
    check_run_id(run_id)?;
    let found = match state.scans().live_run(run_id) {
        Some(live) => Some(Located::Live(live)),
        None => {
            let id = run_id.to_string();
            state
                .readers()
                .read(move |store: &Store| {
                    if let Some(run) = store.run_by_id(&id)? {
                        return Ok(Some(Located::Recorded(Box::new(run))));
                    }
                    Ok(store.live_run(&id)?.map(Located::Cut))
                })
                .await
                .map_err(read_problem)?
        }
    };
    match found {
        Some(run) if caller.sees_run_of(run.project()) => Ok(run),
        _ => Err(no_such_run(run_id)),
    }
}

/// The recorded run `run_id`: 409 while it is live (its findings and reports come when
/// it is recorded), 404 when it was cut off before that.
async fn recorded(state: &AppState, caller: &Caller, run_id: &str) -> Result<RunSummary, Problem> {
    match locate(state, caller, run_id).await? {
        Located::Recorded(run) => Ok(*run),
        Located::Live(live) => Err(Problem::new(
            StatusCode::CONFLICT,
            "run-not-finished",
            format!(
                "run `{}` is {}: its findings and reports are there once it ends (follow {}/events)",
                live.run_id,
                if live.state == LiveState::Queued {
                    "queued"
                } else {
                    "running"
                },
                run_url(&live.run_id)
            ),
        )),
        Located::Cut(cut) => Err(Problem::not_found(
            "run-not-recorded",
            format!(
                "run `{}` was stopped with the server before it could finish: it has events, but no findings or reports",
                cut.run_id
            ),
        )),
    }
}

/// Whether the server answers. Needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "server",
    responses((status = 200, description = "The server answers", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Metrics in the Prometheus text format. Needs a token that sees every project
/// (`projects = ["*"]`), of any role.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "server",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token does not see every project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, Problem> {
    caller.require_all_projects()?;
    let latest = state
        .readers()
        .read(|store: &Store| Ok(store.latest_findings()?))
        .await
        // The rest of the metrics are worth a scrape without the store's part.
        .ok();
    state
        .metrics()
        .set_state(&state.scans().status(), latest.as_deref());
    let text = state.metrics().encode();
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

/// `GET /runs` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// Only runs of this project.
    pub project: Option<String>,
    /// Runs per page (default 50, at most 500).
    pub limit: Option<usize>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// Recorded runs the token may see, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/runs",
    tag = "runs",
    security(("bearer" = [])),
    params(RunsParams),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not for that project", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<RunsParams>,
) -> Result<Json<RunPage>, Problem> {
    caller.require_role(Action::Read)?;
    if let Some(project) = &params.project {
        caller.require(Action::Read, project)?;
    }
    let limit = limit_of(params.limit, DEFAULT_RUNS, MAX_RUNS)?;
    let after = params
        .cursor
        .as_deref()
        .map(str::parse::<RunCursor>)
        .transpose()
        .map_err(|e| Problem::bad_request("bad-cursor", e.to_string()))?;
    let projects = match (&params.project, caller.scope()) {
        (Some(project), _) => Projects::Only(vec![project.clone()]),
        (None, Scope::All) => Projects::All,
        (None, Scope::Only(names)) => Projects::Only(names.iter().cloned().collect()),
    };
    let query = RunQuery {
        limit,
        after,
        projects,
    };
    let page = state
        .readers()
        .read(move |store: &Store| Ok(store.runs_page(&query)?))
        .await
        .map_err(read_problem)?;
    let runs = page
        .items
        .iter()
        .map(|listed| match listed {
            Listed::Recorded(r) => RunView::finished(r),
            Listed::Live(l) => RunView::live(l),
        })
        .collect();
    Ok(Json(RunPage {
        runs,
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

fn limit_of(given: Option<usize>, default: usize, max: usize) -> Result<usize, Problem> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(Problem::bad_request(
            "bad-limit",
            format!("limit must be from 1 to {max}, not {n}"),
        )),
    }
}

/// One run with its suites: a queued or running one as it is now, a finished one as
/// recorded.
#[utoipa::path(
    get,
    path = "/runs/{run_id}",
    tag = "runs",
    security(("bearer" = [])),
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunDetailView),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run (or one the token may not see)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Json<RunDetailView>, Problem> {
    caller.require_role(Action::Read)?;
    let located = locate(&state, &caller, &run_id).await?;
    let summary = match located {
        Located::Recorded(summary) => *summary,
        Located::Live(live) | Located::Cut(live) => {
            let events = state.scans().events(&live.run_id, None);
            let lines: Vec<_> = events.map(|e| e.replay).unwrap_or_default();
            return Ok(Json(RunDetailView {
                links: RunLinks::of(&live.run_id, false),
                run: RunView::live(&live),
                suites: super::views::suites_of_events(&lines),
                baseline: None,
            }));
        }
    };
    let detail = state
        .readers()
        .read(move |store: &Store| Ok(store.detail(summary)?))
        .await
        .map_err(read_problem)?;
    Ok(Json(RunDetailView {
        links: RunLinks::of(&detail.run.run_id, true),
        run: RunView::finished(&detail.run),
        suites: detail.suites.iter().map(SuiteView::from).collect(),
        baseline: detail.baseline.map(|b| super::views::BaselineView {
            source: b.source,
            findings: b.findings,
            new: b.new,
            unchanged: b.unchanged,
            absent: b.absent,
        }),
    }))
}

/// `GET /runs/{id}/findings` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindingsParams {
    /// Only these severities, comma-separated (`critical,high`).
    pub severity: Option<String>,
    /// Only this suite's findings.
    pub suite: Option<String>,
    /// Only findings in this state: `new`, `unchanged` or `suppressed`.
    pub state: Option<String>,
    /// Findings per page (default 500, at most 5000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// A recorded run's findings, most severe first, a page at a time.
#[utoipa::path(
    get,
    path = "/runs/{run_id}/findings",
    tag = "runs",
    security(("bearer" = [])),
    params(("run_id" = String, Path, description = "The run's id"), FindingsParams),
    responses(
        (status = 200, description = "A page of findings", body = FindingPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run (or one the token may not see)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn findings(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    Params(params): Params<FindingsParams>,
) -> Result<Json<FindingPage>, Problem> {
    caller.require_role(Action::Read)?;
    let query = finding_query(&params)?;
    let run = recorded(&state, &caller, &run_id).await?;
    let seq = run.seq;
    let page = state
        .readers()
        .read(move |store: &Store| Ok(store.findings_page(seq, &query)?))
        .await
        .map_err(read_problem)?;
    Ok(Json(FindingPage {
        run_id: run.run_id,
        findings: page
            .items
            .into_iter()
            .map(|(f, s)| FindingView::of(f, state_view(s)))
            .collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

fn state_view(state: pages::FindingState) -> FindingState {
    match state {
        pages::FindingState::New => FindingState::New,
        pages::FindingState::Unchanged => FindingState::Unchanged,
        pages::FindingState::Suppressed => FindingState::Suppressed,
    }
}

fn finding_query(params: &FindingsParams) -> Result<FindingQuery, Problem> {
    let bad = |kind: &str, detail: String| Problem::bad_request(kind, detail);
    let severities = match params.severity.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| {
                s.trim().parse::<Severity>().map_err(|_| {
                    bad(
                        "bad-severity",
                        format!(
                            "severity: expected critical, high, medium, low or info, found {:?}",
                            s.chars().take(32).collect::<String>()
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let state = params
        .state
        .as_deref()
        .map(str::parse::<pages::FindingState>)
        .transpose()
        .map_err(|e| bad("bad-state", format!("state: {e}")))?;
    let after = params
        .cursor
        .as_deref()
        .map(str::parse::<FindingCursor>)
        .transpose()
        .map_err(|e| bad("bad-cursor", e.to_string()))?;
    Ok(FindingQuery {
        severities,
        suite: params.suite.clone(),
        state,
        limit: limit_of(params.limit, DEFAULT_FINDINGS, MAX_FINDINGS)?,
        after,
    })
}

/// One of a finished run's reports, as written when it ended: `junit.xml`,
/// `results.sarif` or `run.json`.
#[utoipa::path(
    get,
    path = "/runs/{run_id}/reports/{name}",
    tag = "runs",
    security(("bearer" = [])),
    params(
        ("run_id" = String, Path, description = "The run's id"),
        ("name" = String, Path, description = "junit.xml, results.sarif or run.json"),
    ),
    responses(
        (status = 200, description = "The report file", content_type = "application/octet-stream", body = String),
        (status = 401, description = "No token, or an unknown one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such run, report name or file", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path((run_id, name)): Path<(String, String)>,
) -> Result<Response, Problem> {
    caller.require_role(Action::Read)?;
    let Some(name) = REPORTS.into_iter().find(|r| *r == name) else {
        return Err(Problem::not_found(
            "no-such-report",
            format!("a run's reports are {}", REPORTS.join(", ")),
        ));
    };
    let run = recorded(&state, &caller, &run_id).await?;
    // Only a fixed name under a run id the store holds: the request chooses no path.
    let path = reports_dir(&state, &run)
        .join("runs")
        .join(&run.run_id)
        .join(name);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        Problem::not_found(
            "report-missing",
            format!("run `{}` has no {name} on this server ({e})", run.run_id),
        )
    })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, report_type(name))],
        body,
    )
        .into_response())
}

/// Where the run's project writes its reports (the scan service writes each run's under
/// `<reports>/runs/<run id>/`).
fn reports_dir(state: &AppState, run: &RunSummary) -> std::path::PathBuf {
    let config = state.config();
    run.project
        .as_deref()
        .and_then(|p| config.projects.get(p))
        .and_then(|spec| spec.reports_dir.clone())
        .unwrap_or_else(|| config.reports_dir.clone())
}

fn report_type(name: &str) -> &'static str {
    match name {
        "junit.xml" => "application/xml",
        "results.sarif" => "application/sarif+json",
        _ => "application/json",
    }
}
