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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::discovery::status::{summarize, SourceStatus};
use crate::discovery::View;
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

/// Locks a mutex whose every update is a single assignment, so a panic
/// elsewhere cannot leave it half-written: poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
