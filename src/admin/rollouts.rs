//! Rollouts over the admin HTTP listener: `GET /rollouts` (every rollout,
//! as `sluice rollout status --json` prints it, with its history),
//! `GET /rollouts/{service}`, and `POST /rollouts/{service}/{action}` with
//! `action` one of `pause`, `resume`, `promote` (`?full=true` skips the
//! remaining steps) and `abort`. Commands need the admin token like the
//! other admin commands ([`super::CommandAuth`]).
//!
//! This is a second edge over the same [`Handle`] the admin gRPC API uses:
//! both turn a request into a [`Command`], and the handle sends it to the
//! driver task (one replica) or writes it to the shared store (several), so
//! what a command does is decided in one place.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Json;
use serde::Deserialize;

use super::{error_answer, AdminState, Answer};
use crate::canary::driver::{DriverError, Handle, Status};
use crate::canary::grpc::rollout_pb;
use crate::canary::plan::Command;
use crate::canary::store::StoreError;
use crate::rollout_cli::json;

/// Without a rollout controller there is nothing to read or command.
fn handle(state: &AdminState) -> Result<&Handle, Answer> {
    state.rollouts.as_ref().ok_or_else(|| {
        error_answer(
            StatusCode::NOT_FOUND,
            "no rollout controller: start sluice serve with --state-dir or --state-etcd".into(),
        )
    })
}

fn document(s: &Status) -> serde_json::Value {
    json::document(&rollout_pb(s))
}

/// Every rollout, sorted by service; none without a controller
/// (`/status` says whether there is one: `rollout_controller`).
pub(super) async fn list(State(state): State<AdminState>) -> Json<Vec<serde_json::Value>> {
    let all = state
        .rollouts
        .as_ref()
        .map(Handle::list)
        .unwrap_or_default();
    Json(all.iter().map(document).collect())
}

pub(super) async fn get(State(state): State<AdminState>, Path(service): Path<String>) -> Answer {
    match handle(&state).and_then(|h| h.get(&service).map_err(answer)) {
        Ok(s) => (StatusCode::OK, Json(document(&s))),
        Err(e) => e,
    }
}

#[derive(Deserialize)]
pub(super) struct PromoteQuery {
    #[serde(default)]
    full: bool,
}

/// Carries out `action` on the rollout of `service`; answers the rollout
/// as it is after the command.
pub(super) async fn command(
    State(state): State<AdminState>,
    Path((service, action)): Path<(String, String)>,
    Query(q): Query<PromoteQuery>,
    headers: HeaderMap,
) -> Answer {
    if let Err(e) = state.commands.check(&headers) {
        return e;
    }
    let cmd = match action.as_str() {
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "promote" => Command::Promote { full: q.full },
        "abort" => Command::Abort,
        other => {
            let msg = format!("unknown rollout action {other:?}: pause, resume, promote or abort");
            return error_answer(StatusCode::NOT_FOUND, msg);
        }
    };
    let h = match handle(&state) {
        Ok(h) => h,
        Err(e) => return e,
    };
    match h.command(&service, cmd).await {
        Ok(s) => (StatusCode::OK, Json(document(&s))),
        Err(e) => answer(e),
    }
}

/// The HTTP status of a controller error; the same classes the gRPC edge
/// maps to gRPC codes.
fn answer(e: DriverError) -> Answer {
    let code = match &e {
        DriverError::NotFound(_) => StatusCode::NOT_FOUND,
        DriverError::Active(_) | DriverError::Command(_) => StatusCode::CONFLICT,
        DriverError::Spec(_) | DriverError::UnknownCluster(_) => StatusCode::BAD_REQUEST,
        DriverError::NotReady
        | DriverError::Stopped
        | DriverError::Store(StoreError::Remote(_)) => StatusCode::SERVICE_UNAVAILABLE,
        DriverError::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
        DriverError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_answer(code, e.to_string())
}
