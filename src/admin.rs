//! The admin HTTP listener (loopback by default): health, readiness,
//! Prometheus metrics, the compiled config and proxy status.
//!
//! - `/healthz`: the process is up.
//! - `/readyz`: 200 once the first complete snapshot is published, else 503.
//! - `/metrics`: Prometheus text format.
//! - `/debug/config`: the validated rules and, per node group and type, the
//!   resource names and versions being served, as JSON.
//! - `/status`: connected proxies with sent/ACKed/NACKed versions per type,
//!   the state of the rules file and of each discovery source, and with
//!   `--state-etcd` the replicas and their leader (`ha`); `sluice status`
//!   reads this.
//! - `/drains`: GET lists the drains (with how many endpoints each
//!   matches), POST adds one, DELETE removes one; the body is one drain as
//!   JSON (`{"service", "endpoint" | "locality"}`). `sluice drain` calls
//!   these; the logic is in [`crate::drain`].
//! - `/rules/diff`: POST a rules file's text (`?file=NAME` names it in
//!   diagnostics); answers what serving it would change
//!   ([`crate::guard::DiffDoc`]), 400 with the diagnostics when it is
//!   invalid. `sluice diff` calls it.
//! - `/rules/confirm`: POST `{"version"}` releases the edit the
//!   mass-removal guard holds ([`crate::guard`]). `sluice rules confirm`
//!   calls it.
//!
//! - `/rollouts`: every rollout's status and history; `POST
//!   /rollouts/{service}/{pause|resume|promote|abort}` commands one
//!   ([`rollouts`]).
//! - `/services`: each served service's endpoints with their health
//!   (drains applied) ([`services`]).
//! - `/ui`: the dashboard, one page over the endpoints above ([`ui`]).
//!
//! Reads (GET) need nothing. Commands — adding or removing a drain,
//! `/rules/diff` (it reads the certificate files the posted rules name and
//! compiles up to 64 MiB) and `/rules/confirm` — need the admin token when
//! one is set ([`CommandAuth`]); without a token they are taken only on a
//! loopback admin listener.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

mod rollouts;
pub mod services;
mod ui;

use crate::canary::driver::Handle;
use crate::canary::grpc::Auth;
use crate::discovery::status::{summarize, SourceStatus};
use crate::discovery::View;
use crate::drain::store::DrainStore;
use crate::drain::{Drain, DrainError};
use crate::ha::HaStatus;
use crate::metrics::Metrics;
use crate::model::Config;
use crate::rules_watch::{Confirm, Planner, RulesStatus};
use crate::xds::published::SnapshotRx;
use crate::xds::registry::{Denial, ProxyStatus, Registry};
use crate::xds::{Snapshot, TypeUrl};

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
    /// `sluice diff` and `sluice rules confirm`.
    pub rules_ops: RulesOps,
    /// Who may send commands.
    pub commands: CommandAuth,
    /// With several replicas (`--state-etcd`): who leads.
    pub ha: Option<tokio::sync::watch::Receiver<HaStatus>>,
    /// The rollout controller, when there is one (`--state-dir` or
    /// `--state-etcd`): the same handle the admin gRPC API uses.
    pub rollouts: Option<Handle>,
}

/// Who may send commands to the admin listener.
#[derive(Clone)]
pub struct CommandAuth {
    /// The admin token, when one is set.
    pub token: Option<Auth>,
    /// Whether the admin listener is on loopback: without a token,
    /// commands are taken only there.
    pub loopback: bool,
}

/// The largest rules file `/rules/diff` takes.
const RULES_BODY_LIMIT: usize = 64 << 20;

/// The rules endpoints' collaborators.
#[derive(Clone)]
pub struct RulesOps {
    pub planner: Planner,
    /// To the rules watcher, which holds the held edit.
    pub confirm: tokio::sync::mpsc::Sender<Confirm>,
}

/// The `/status` document.
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    pub ready: bool,
    pub rules: RulesStatus,
    /// Discovery sources, per kind, with each service's feed.
    pub sources: Vec<SourceStatus>,
    pub proxies: Vec<ProxyStatus>,
    /// The last streams refused by access control, newest first.
    pub xds_denials: Vec<Denial>,
    /// With several replicas (`--state-etcd`): this replica, the leader,
    /// and the replicas taking part in the election.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaStatus>,
    /// Whether rollouts can run (`--state-dir` or `--state-etcd`).
    pub rollout_controller: bool,
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
        // Rules files can be larger than axum's default 2 MB body limit.
        .route(
            "/rules/diff",
            post(diff_rules).layer(DefaultBodyLimit::max(RULES_BODY_LIMIT)),
        )
        .route("/rules/confirm", post(confirm_rules))
        .route("/services", get(services::list))
        .route("/rollouts", get(rollouts::list))
        .route("/rollouts/{service}", get(rollouts::get))
        .route("/rollouts/{service}/{action}", post(rollouts::command))
        .merge(ui::router())
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
    state.metrics.sources.observe(&sources(&state));
    state
        .metrics
        .rules
        .observe_certificates(&state.rules.lock().certificates);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn status(State(state): State<AdminState>) -> Json<StatusDoc> {
    let rules = state.rules.lock().clone();
    Json(StatusDoc {
        ready: is_ready(&state),
        rules,
        sources: sources(&state),
        proxies: state.registry.list(),
        xds_denials: state.registry.denials(),
        ha: state.ha.as_ref().map(|rx| rx.borrow().clone()),
        rollout_controller: state.rollouts.is_some(),
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
    let config = state.config.lock().clone();
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
    let config = state.config.lock().clone();
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

async fn add_drain(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Answer {
    if let Err(e) = state.commands.check(&headers) {
        return e;
    }
    let drain = match parse_drain(&body) {
        Ok(d) => d,
        Err(e) => return e,
    };
    // Checked against the served config; before the first one is ready
    // there is nothing to check against, and the drain applies once a
    // service of that name exists.
    let config = state.config.lock().clone();
    if let Err(e) = config.as_deref().map_or(Ok(()), |c| drain.check(c)) {
        return drain_answer(Err(e));
    }
    drain_answer(state.drains.add(drain).await)
}

async fn remove_drain(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Answer {
    if let Err(e) = state.commands.check(&headers) {
        return e;
    }
    match parse_drain(&body) {
        Ok(d) => drain_answer(state.drains.remove(&d).await),
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
                DrainError::Shared { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            (code, Json(serde_json::json!({ "error": e.to_string() })))
        }
    }
}

#[derive(Deserialize)]
struct DiffQuery {
    file: Option<String>,
}

/// The plan of the posted rules file; 400 with its diagnostics when it
/// cannot be served.
async fn diff_rules(
    State(state): State<AdminState>,
    Query(q): Query<DiffQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    if let Err(e) = state.commands.check(&headers) {
        return e;
    }
    let file = q.file.unwrap_or_else(|| "rules.yaml".to_string());
    let text = match String::from_utf8(body.to_vec()) {
        Ok(t) => t,
        Err(e) => return error_answer(StatusCode::BAD_REQUEST, format!("{file}: {e}")),
    };
    let planner = state.rules_ops.planner.clone();
    // Compiling a large file takes a while: not on the runtime's threads.
    match tokio::task::spawn_blocking(move || planner(&file, &text)).await {
        Ok(Ok(doc)) => (StatusCode::OK, Json(serde_json::json!(doc))),
        Ok(Err(e)) => error_answer(StatusCode::BAD_REQUEST, e),
        Err(e) => error_answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct ConfirmBody {
    version: String,
}

/// Publishes the held edit named by its version.
async fn confirm_rules(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Answer {
    if let Err(e) = state.commands.check(&headers) {
        return e;
    }
    let version = match serde_json::from_slice::<ConfirmBody>(&body) {
        Ok(b) => b.version,
        Err(e) => {
            let msg = format!("the body is {{\"version\": \"HASH\"}}: {e}");
            return error_answer(StatusCode::BAD_REQUEST, msg);
        }
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let asked = Confirm {
        version: version.clone(),
        reply,
    };
    let unavailable = || error_answer(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    if state.rules_ops.confirm.send(asked).await.is_err() {
        return unavailable();
    }
    match answer.await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(serde_json::json!({ "published": version })),
        ),
        Ok(Err(e)) => error_answer(StatusCode::CONFLICT, e),
        Err(_) => unavailable(),
    }
}

impl CommandAuth {
    /// Commands need the admin token when one is set; without one, they
    /// are taken only on a loopback admin listener.
    ///
    /// A browser page of another site cannot send them: a request whose
    /// `Origin` is not this listener's own is refused (browsers send
    /// `Origin` with every cross-site POST and DELETE, even ones that need
    /// no CORS preflight), and without a token the `Host` must name
    /// loopback, so a site whose name resolves to 127.0.0.1 (DNS
    /// rebinding) is refused too.
    fn check(&self, headers: &HeaderMap) -> Result<(), Answer> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if let Some(origin) = headers.get(header::ORIGIN) {
            let own = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://").or(o.strip_prefix("https://")))
                .is_some_and(|o| o.eq_ignore_ascii_case(host));
            if !own {
                return Err(error_answer(
                    StatusCode::FORBIDDEN,
                    "a command from another site's page is refused".into(),
                ));
            }
        }
        if self.token.is_none() && self.loopback && !is_loopback_host(host) {
            return Err(error_answer(
                StatusCode::FORBIDDEN,
                format!("commands without an admin token are taken only for a loopback host, not {host:?}: open the admin listener by its address (127.0.0.1 or localhost), or set an admin token"),
            ));
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        match &self.token {
            Some(auth) if auth.accepts(given) => Ok(()),
            Some(_) => Err(error_answer(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token".into(),
            )),
            None if self.loopback => Ok(()),
            None => Err(error_answer(
                StatusCode::FORBIDDEN,
                "the admin listener is not on loopback: set an admin token (--admin-token-file or $SLUICE_ADMIN_TOKEN)".into(),
            )),
        }
    }
}

/// Whether a `Host` header names loopback: `localhost`, `127.x.y.z` or
/// `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn error_answer(code: StatusCode, error: String) -> Answer {
    (code, Json(serde_json::json!({ "error": error })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().expect("header value"));
        }
        h
    }

    fn tokenless() -> CommandAuth {
        CommandAuth {
            token: None,
            loopback: true,
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:9902",
            "localhost",
            "LOCALHOST:1",
            "[::1]:9902",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "evil.example:9902",
            "10.0.0.1:9902",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn commands_from_another_sites_page_are_refused() {
        let own = headers(&[
            (header::HOST, "127.0.0.1:9902"),
            (header::ORIGIN, "http://127.0.0.1:9902"),
        ]);
        assert!(tokenless().check(&own).is_ok());
        let cli = headers(&[(header::HOST, "127.0.0.1:9902")]);
        assert!(tokenless().check(&cli).is_ok());
        let cross = headers(&[
            (header::HOST, "127.0.0.1:9902"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert_eq!(
            tokenless().check(&cross).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        // DNS rebinding: the page's own origin, but not a loopback name.
        let rebound = headers(&[
            (header::HOST, "evil.example:9902"),
            (header::ORIGIN, "http://evil.example:9902"),
        ]);
        assert_eq!(
            tokenless().check(&rebound).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        // With a token, the token decides (the host may be any name).
        let auth = CommandAuth {
            token: Some(Auth::new("t")),
            loopback: false,
        };
        let named = headers(&[
            (header::HOST, "sluice.internal:9902"),
            (header::AUTHORIZATION, "Bearer t"),
        ]);
        assert!(auth.check(&named).is_ok());
        let wrong = headers(&[
            (header::HOST, "sluice.internal:9902"),
            (header::AUTHORIZATION, "Bearer x"),
        ]);
        assert_eq!(
            auth.check(&wrong).map_err(|e| e.0),
            Err(StatusCode::UNAUTHORIZED)
        );
    }
}
