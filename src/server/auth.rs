//! The bearer token of a request, checked against `[[tokens]]` (see [`crate::access`]).
//!
//! No token, or one that matches no entry: 401. A token whose role or projects do not
//! cover what is asked: 403, except for runs, whose existence is itself a fact about a
//! project: a run of a project the token does not see is answered 404, like a run that
//! does not exist.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::problem::Problem;
use crate::access::{Action, Scope, TokenSpec};

/// The token a request was made with, once verified.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenSpec);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Err(Problem::unauthorized(
                "this API needs a token: send `Authorization: Bearer <token>` (make one with `phalanx token new`)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else {
            return Err(Problem::unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        match state.tokens().verify(token) {
            Some(spec) => Ok(Caller(spec.clone())),
            None => Err(Problem::unauthorized(
                "the token is not one of this server's (phalanx.toml [[tokens]])",
            )),
        }
    }
}

impl Caller {
    pub fn scope(&self) -> &Scope {
        &self.0.scope
    }

    /// 403 unless the token may do `action` on `project`.
    pub fn require(&self, action: Action, project: &str) -> Result<(), Problem> {
        if !self.0.scope.sees(project) {
            return Err(Problem::forbidden(format!(
                "token `{}` is not for project `{project}`",
                self.0.name
            )));
        }
        self.require_role(action)
    }

    /// 403 unless the token's role allows `action`.
    pub fn require_role(&self, action: Action) -> Result<(), Problem> {
        if self.0.role.allows(action) {
            return Ok(());
        }
        Err(Problem::forbidden(format!(
            "token `{}` has role {}; this needs {} or above",
            self.0.name,
            self.0.role,
            action.needs()
        )))
    }

    /// 403 unless the token sees every project (for what spans them all: metrics).
    pub fn require_all_projects(&self) -> Result<(), Problem> {
        match self.0.scope {
            Scope::All => Ok(()),
            Scope::Only(_) => Err(Problem::forbidden(format!(
                "token `{}` sees only some projects; this needs one with projects = [\"*\"]",
                self.0.name
            ))),
        }
    }

    /// Whether the token sees a run of `project` (`None`: a run made without a project).
    pub fn sees_run_of(&self, project: Option<&str>) -> bool {
        self.0.scope.sees_run_of(project)
    }
}
