//! The admin HTTP listener (loopback by default): health, readiness,
//! Prometheus metrics, the compiled config and proxy status.
//!
//! - `/healthz`: the process is up.
//! - `/readyz`: 200 once the first complete snapshot is published, else 503.
//! - `/metrics`: Prometheus text format.
//! - `/debug/config`: the validated rules and, per node group and type, the
//!   resource names and versions being served, as JSON.
//! - `/status`: connected proxies with sent/ACKed/NACKed versions per type,
//!   the state of the rules file and of each discovery source; `sluice
//!   status` reads this.
//! - `/drains`: GET lists the drains (with how many endpoints each
//!   matches), POST adds one, DELETE removes one; the body is one drain as
//!   JSON (`{"service", "endpoint" | "locality"}`). `sluice drain` calls
//!   these; the logic is in [`crate::drain`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::discovery::status::{summarize, SourceStatus};
use crate::discovery::View;
use crate::drain::store::DrainStore;
use crate::drain::{Drain, DrainError};
use crate::metrics::Metrics;
use crate::model::Config;
use crate::xds::registry::{ProxyStatus, Registry};
use crate::xds::server::SnapshotRx;
use crate::xds::{Snapshot, TypeUrl};

/// What the rules watcher last did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RulesStatus {
    pub file: String,
    /// Content hash of the rules file being served.
    pub served_hash: Option<String>,
    /// The last reload error; cleared by the next good reload.
    pub last_error: Option<String>,
    pub reloads: u64,
    pub rejected_reloads: u64,
    /// Listener certificates by listener name (TLS listeners only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates: BTreeMap<String, CertStatus>,
}

/// What a TLS listener serves and its last certificate reload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CertStatus {
    /// SHA-256 of the served leaf certificate (DER), hex.
    pub fingerprint: String,
    /// The served leaf certificate's notAfter, RFC 3339 UTC.
    #[serde(default)]
    pub not_after: String,
    /// The same instant, seconds since the Unix epoch.
    #[serde(default)]
    pub not_after_seconds: u64,
    /// Why the files' current content was rejected; cleared by the next
    /// good reload.
    pub last_error: Option<String>,
    pub reloads: u64,
    pub rejected_reloads: u64,
}

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub snapshots: SnapshotRx,
    pub config: Arc<Mutex<Option<Arc<Config>>>>,
    pub rules: Arc<Mutex<RulesStatus>>,
    /// The discovery index's latest view.
    pub discovery: tokio::sync::watch::Receiver<Arc<View>>,
    /// Drains, persisted; changes are published to the compile loop.
    pub drains: Arc<DrainStore>,
}

/// The `/status` document.
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    pub ready: bool,
    pub rules: RulesStatus,
    /// Discovery sources, per kind, with each service's feed.
    pub sources: Vec<SourceStatus>,
    pub proxies: Vec<ProxyStatus>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/config", get(debug_config))
        .route("/status", get(status))
        .route(
            "/drains",
            get(list_drains).post(add_drain).delete(remove_drain),
        )
        .with_state(state)
}

fn is_ready(state: &AdminState) -> bool {
    state.snapshots.borrow().is_some()
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if is_ready(&state) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no complete snapshot yet\n",
        )
    }
}

fn sources(state: &AdminState) -> Vec<SourceStatus> {
    let view = state.discovery.borrow().clone();
    summarize(&view, std::time::Instant::now())
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    // Ages move with the clock, so they are computed when asked.
    state.metrics.observe_sources(&sources(&state));
    state
        .metrics
        .observe_certificates(&lock(&state.rules).certificates);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn status(State(state): State<AdminState>) -> Json<StatusDoc> {
    let rules = lock(&state.rules).clone();
    Json(StatusDoc {
        ready: is_ready(&state),
        rules,
        sources: sources(&state),
        proxies: state.registry.list(),
    })
}

#[derive(Serialize)]
struct TypeView {
    version: String,
    resources: BTreeMap<String, String>,
}

fn snapshot_view(snap: &Snapshot) -> BTreeMap<&'static str, TypeView> {
    TypeUrl::ALL
        .iter()
        .map(|&ty| {
            let resources = snap
                .resources(ty)
                .iter()
                .map(|(n, r)| (n.clone(), r.version.clone()))
                .collect();
            (
                ty.short(),
                TypeView {
                    version: snap.version(ty).to_string(),
                    resources,
                },
            )
        })
        .collect()
}

async fn debug_config(State(state): State<AdminState>) -> impl IntoResponse {
    let published = state.snapshots.borrow().clone();
    let Some(published) = published else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false})),
        );
    };
    let config = lock(&state.config).clone();
    let mut groups: BTreeMap<String, _> = published
        .snapshots
        .groups
        .iter()
        .map(|(g, s)| (g.clone(), snapshot_view(s)))
        .collect();
    let fallback = snapshot_view(&published.snapshots.fallback);
    groups.insert("*".to_string(), fallback);
    let body = serde_json::json!({
        "ready": true,
        "rules": config.as_deref(),
        "groups": groups,
    });
    (StatusCode::OK, Json(body))
}

/// One drain per entry, with `matches`: how many endpoints of the served
/// config it drains.
async fn list_drains(State(state): State<AdminState>) -> Json<Vec<serde_json::Value>> {
    let config = lock(&state.config).clone();
    let drains = state.drains.current();
    let counted = match config.as_deref() {
        Some(c) => drains.matches(c),
        None => drains.iter().map(|d| (d.clone(), 0)).collect(),
    };
    let list = counted
        .into_iter()
        .map(|(d, n)| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["matches"] = n.into();
            v
        })
        .collect();
    Json(list)
}

async fn add_drain(State(state): State<AdminState>, body: Bytes) -> impl IntoResponse {
    let drain = match parse_drain(&body) {
        Ok(d) => d,
        Err(e) => return e,
    };
    // Checked against the served config; before the first one is ready
    // there is nothing to check against, and the drain applies once a
    // service of that name exists.
    let config = lock(&state.config).clone();
    let result = config
        .as_deref()
        .map_or(Ok(()), |c| drain.check(c))
        .and_then(|()| state.drains.add(drain));
    drain_answer(result)
}

async fn remove_drain(State(state): State<AdminState>, body: Bytes) -> impl IntoResponse {
    match parse_drain(&body) {
        Ok(d) => drain_answer(state.drains.remove(&d)),
        Err(e) => e,
    }
}

type Answer = (StatusCode, Json<serde_json::Value>);

fn parse_drain(body: &[u8]) -> Result<Drain, Answer> {
    serde_json::from_slice(body).map_err(|e| {
        let error = format!("a drain is {{\"service\", \"endpoint\": \"ADDR:PORT\" | \"locality\": \"REGION[/ZONE]\"}}: {e}");
        (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": error })))
    })
}

/// `{"changed": bool}`, or the error with 400 (the request's fault) or 500
/// (the state file could not be written: nothing changed).
fn drain_answer(result: Result<bool, DrainError>) -> Answer {
    match result {
        Ok(changed) => (
            StatusCode::OK,
            Json(serde_json::json!({ "changed": changed })),
        ),
        Err(e) => {
            let code = match e {
                DrainError::State { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            (code, Json(serde_json::json!({ "error": e.to_string() })))
        }
    }
}

/// Locks a mutex whose every update is a single assignment, so a panic
/// elsewhere cannot leave it half-written: poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
