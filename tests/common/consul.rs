//! An in-process Consul for tests: the catalog and the blocking-query
//! behaviour of `GET /v1/health/service/<name>` as Consul documents it.
//!
//! - Every write bumps a raft-like index; a service's index is the index of
//!   its last change (the highest of all services' for an unknown one).
//! - `index=N&wait=D`: answered at once when the service's index is above N
//!   (or N is 0), else held until it is or until D plus up to D/16 of
//!   jitter has passed, then answered with the current body and index.
//! - `X-Consul-Index` on every answer; `dc` must be this datacenter; an
//!   ACL token, when required, must come as `X-Consul-Token`; `tag`
//!   filters instances.
//! - Faults to inject: HTTP 500s, slow answers, a garbage body, a snapshot
//!   restore (the index goes backwards and held queries return), and the
//!   "index 0" bug (answers at once with index 0).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

pub const DC: &str = "dc1";

/// One service instance on one node.
#[derive(Clone, Debug)]
pub struct Instance {
    pub node: String,
    pub node_address: String,
    pub id: String,
    pub service: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    /// (CheckID, status)
    pub checks: Vec<(String, String)>,
}

pub fn mk_instance(id: &str, port: u16) -> Instance {
    Instance {
        node: format!("node-{id}"),
        node_address: "127.0.0.1".into(),
        id: id.into(),
        service: "web".into(),
        address: String::new(),
        port,
        tags: vec![],
        meta: BTreeMap::from([("version".to_string(), "v1".to_string())]),
        checks: vec![("serfHealth".into(), "passing".into())],
    }
}

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The raft index: bumped by every write.
    pub raft: u64,
    /// Per service: (index of its last change, instances by id).
    pub services: BTreeMap<String, (u64, BTreeMap<String, Instance>)>,
}

#[derive(Default)]
pub struct Faults {
    pub http_500: AtomicBool,
    pub garbage: AtomicBool,
    pub zero_index: AtomicBool,
    /// Milliseconds to sleep before answering.
    pub slow_ms: AtomicU64,
}

pub struct FakeConsul {
    pub addr: SocketAddr,
    pub url: String,
    catalog: Arc<Mutex<Catalog>>,
    /// Bumped on every change so held queries re-check.
    changed: watch::Sender<u64>,
    pub faults: Arc<Faults>,
    /// Health queries received.
    pub requests: Arc<AtomicU64>,
    pub token: Option<String>,
    restores: Arc<AtomicU64>,
}

struct Shared {
    catalog: Arc<Mutex<Catalog>>,
    changed: watch::Receiver<u64>,
    faults: Arc<Faults>,
    requests: Arc<AtomicU64>,
    token: Option<String>,
    restores: Arc<AtomicU64>,
}

impl FakeConsul {
    pub async fn start(token: Option<&str>) -> FakeConsul {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let catalog = Arc::new(Mutex::new(Catalog {
            raft: 10,
            ..Default::default()
        }));
        let (changed, changed_rx) = watch::channel(0);
        let faults = Arc::new(Faults::default());
        let requests = Arc::new(AtomicU64::new(0));
        let restores = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            catalog: catalog.clone(),
            changed: changed_rx,
            faults: faults.clone(),
            requests: requests.clone(),
            token: token.map(str::to_string),
            restores: restores.clone(),
        });
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let shared = shared.clone();
            async move { health(shared, uri, headers).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeConsul {
            addr,
            url: format!("http://{addr}"),
            catalog,
            changed,
            faults,
            requests,
            token: token.map(str::to_string),
            restores,
        }
    }

    fn write(&self, f: impl FnOnce(&mut Catalog)) {
        {
            let mut c = self.catalog.lock().expect("lock");
            f(&mut c);
        }
        self.changed.send_modify(|g| *g += 1);
    }

    pub fn register(&self, inst: Instance) {
        self.write(|c| {
            c.raft += 1;
            let raft = c.raft;
            let svc = c.services.entry(inst.service.clone()).or_default();
            svc.0 = raft;
            svc.1.insert(inst.id.clone(), inst);
        });
    }

    pub fn deregister(&self, service: &str, id: &str) {
        self.write(|c| {
            c.raft += 1;
            let raft = c.raft;
            if let Some(svc) = c.services.get_mut(service) {
                svc.0 = raft;
                svc.1.remove(id);
            }
        });
    }

    pub fn set_check(&self, service: &str, id: &str, check: &str, status: &str) {
        self.write(|c| {
            c.raft += 1;
            let raft = c.raft;
            let svc = c.services.get_mut(service).expect("service");
            svc.0 = raft;
            let inst = svc.1.get_mut(id).expect("instance");
            inst.checks.retain(|(k, _)| k != check);
            inst.checks.push((check.to_string(), status.to_string()));
        });
    }

    /// A write that touches nothing the service shows (another service).
    pub fn bump_raft(&self) {
        self.write(|c| c.raft += 1);
    }

    pub fn catalog(&self) -> Catalog {
        self.catalog.lock().expect("lock").clone()
    }

    /// Restores an older snapshot: the catalog, and its lower index,
    /// replace the current ones; held queries return (as Consul abandons
    /// them when its state store is swapped).
    pub fn restore(&self, snapshot: Catalog) {
        self.restores.fetch_add(1, Ordering::SeqCst);
        self.write(|c| *c = snapshot);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn health(shared: Arc<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let Some(name) = uri.path().strip_prefix("/v1/health/service/") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let name = name.to_string();
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    let url = reqwest::Url::parse(&format!("http://consul{uri}")).expect("uri");
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let index: u64 = q.get("index").and_then(|v| v.parse().ok()).unwrap_or(0);
    let wait = q
        .get("wait")
        .map(|w| parse_wait(w))
        .unwrap_or(Duration::from_secs(300));
    let f = &shared.faults;
    let slow = f.slow_ms.load(Ordering::SeqCst);
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    if f.http_500.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader").into_response();
    }
    if q.get("dc").is_some_and(|dc| dc != DC) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter").into_response();
    }
    if let Some(want) = &shared.token {
        let got = headers.get("x-consul-token").and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return (StatusCode::FORBIDDEN, "ACL not found").into_response();
        }
    }
    if f.zero_index.load(Ordering::SeqCst) {
        // The data is right; only the index is broken, and nothing blocks.
        let c = shared.catalog.lock().expect("lock").clone();
        return answer(0, body(&c, &name, q.get("tag").map(String::as_str)));
    }
    // Consul adds up to wait/16 of jitter so that many watchers spread.
    let jitter = (wait / 16).mul_f64((n % 7) as f64 / 7.0);
    let deadline = tokio::time::Instant::now() + wait + jitter;
    let mut changed = shared.changed.clone();
    let restores = shared.restores.load(Ordering::SeqCst);
    loop {
        let current = service_index(&shared.catalog.lock().expect("lock"), &name);
        let restored = shared.restores.load(Ordering::SeqCst) != restores;
        if index == 0 || current > index || restored {
            break;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if f.garbage.load(Ordering::SeqCst) {
        let idx = service_index(&shared.catalog.lock().expect("lock"), &name);
        return answer(idx, "<html>502 Bad Gateway</html>".to_string());
    }
    let c = shared.catalog.lock().expect("lock").clone();
    answer(
        service_index(&c, &name),
        body(&c, &name, q.get("tag").map(String::as_str)),
    )
}

fn answer(index: u64, body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert("X-Consul-Index", index.to_string().parse().expect("header"));
    resp.headers_mut()
        .insert("Content-Type", "application/json".parse().expect("header"));
    resp
}

fn service_index(c: &Catalog, name: &str) -> u64 {
    match c.services.get(name) {
        Some((idx, _)) => *idx,
        None => c.services.values().map(|s| s.0).max().unwrap_or(1),
    }
}

fn parse_wait(w: &str) -> Duration {
    if let Some(ms) = w.strip_suffix("ms") {
        Duration::from_millis(ms.parse().expect("wait ms"))
    } else if let Some(s) = w.strip_suffix('s') {
        Duration::from_secs(s.parse().expect("wait s"))
    } else {
        panic!("unsupported wait {w}")
    }
}

fn body(c: &Catalog, name: &str, tag: Option<&str>) -> String {
    let Some((_, instances)) = c.services.get(name) else {
        return "[]".into();
    };
    let entries: Vec<serde_json::Value> = instances
        .values()
        .filter(|i| tag.is_none_or(|t| i.tags.iter().any(|x| x == t)))
        .map(|i| {
            let checks: Vec<serde_json::Value> = i
                .checks
                .iter()
                .map(|(id, status)| serde_json::json!({"Node": i.node, "CheckID": id, "Status": status}))
                .collect();
            serde_json::json!({
                "Node": {"ID": "", "Node": i.node, "Address": i.node_address, "Datacenter": DC,
                         "Meta": {"zone": "dc1-a"}},
                "Service": {"ID": i.id, "Service": i.service, "Tags": i.tags, "Address": i.address,
                            "Meta": i.meta, "Port": i.port, "Weights": {"Passing": 1, "Warning": 1}},
                "Checks": checks,
            })
        })
        .collect();
    serde_json::to_string(&entries).expect("json")
}
