//! An in-process Kubernetes API server for tests: list and watch of
//! `discovery.k8s.io/v1` EndpointSlices as the API documents them.
//!
//! - Every write bumps a cluster-wide resourceVersion (etcd's revision)
//!   and appends an event to a history; objects carry the version of their
//!   last write. A list answers the current state at the current version.
//! - `watch=true&resourceVersion=N` streams every event after N that
//!   matches the namespace and `labelSelector` (`k=v,...`), then follows
//!   new ones; with `allowWatchBookmarks=true` it sends BOOKMARK events
//!   carrying the current version when it is idle; it ends after
//!   `timeoutSeconds`.
//! - A version older than the retained history gets an in-stream
//!   `ERROR` event with a `410 Expired` Status, as the API server sends.
//! - Faults: [`FakeKube::down`] answers 503 and cuts watches;
//!   [`FakeKube::pause`] stalls open watches (events are held
//!   back, as by a lagging watch cache); [`FakeKube::expire`] drops the
//!   history and ends open watches with 410, forcing a re-list.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

#[derive(Default)]
struct Store {
    rv: u64,
    /// (namespace, name) → object.
    objects: BTreeMap<(String, String), Value>,
    /// (rv, type, object) for every write after `oldest`.
    history: Vec<(u64, &'static str, Value)>,
    /// Watches from a version below this get 410.
    oldest: u64,
}

struct Shared {
    store: Mutex<Store>,
    changed: watch::Sender<u64>,
    paused: AtomicBool,
    /// Every request answers 503 and open watches end (an outage).
    down: AtomicBool,
    expired: AtomicU64,
    lists: AtomicU64,
    watches: AtomicU64,
}

pub struct FakeKube {
    pub url: String,
    shared: Arc<Shared>,
}

/// An endpoint of a slice: (ip, ready, serving, terminating).
pub type Ep<'a> = (&'a str, bool, bool, bool);

impl FakeKube {
    pub async fn start() -> FakeKube {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                rv: 100,
                oldest: 100,
                ..Default::default()
            }),
            changed: watch::channel(0).0,
            paused: AtomicBool::new(false),
            down: AtomicBool::new(false),
            expired: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            watches: AtomicU64::new(0),
        });
        let s = shared.clone();
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let s = s.clone();
            async move { handle(s, uri).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeKube { url, shared }
    }

    /// A kubeconfig for this server: plain HTTP, no auth.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url
        )
    }

    /// Creates or replaces a slice of `service` with port `http: port`.
    pub fn put_slice(&self, ns: &str, name: &str, service: &str, port: u16, eps: &[Ep]) {
        let endpoints: Vec<Value> = eps
            .iter()
            .map(|(ip, ready, serving, terminating)| {
                json!({"addresses": [ip], "zone": "zone-a",
                       "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
            })
            .collect();
        let obj = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service,
                                    "endpointslice.kubernetes.io/managed-by": "fake"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        });
        self.write(ns, name, Some(obj));
    }

    pub fn delete_slice(&self, ns: &str, name: &str) {
        self.write(ns, name, None);
    }

    fn write(&self, ns: &str, name: &str, obj: Option<Value>) {
        {
            let mut st = self.shared.store.lock().expect("lock");
            st.rv += 1;
            let rv = st.rv;
            let key = (ns.to_string(), name.to_string());
            let (kind, mut obj) = match obj {
                Some(o) if st.objects.contains_key(&key) => ("MODIFIED", o),
                Some(o) => ("ADDED", o),
                None => match st.objects.remove(&key) {
                    Some(old) => ("DELETED", old),
                    None => return,
                },
            };
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            if kind != "DELETED" {
                st.objects.insert(key, obj.clone());
            }
            st.history.push((rv, kind, obj));
        }
        self.shared.changed.send_modify(|g| *g += 1);
    }

    /// Stalls (true) or resumes (false) the delivery of watch events.
    pub fn pause(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::SeqCst);
        self.shared.changed.send_modify(|g| *g += 1);
    }

    /// An outage (true): requests answer 503, open watches are cut.
    pub fn down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        self.shared.changed.send_modify(|g| *g += 1);
    }

    /// Drops the history: open watches end with 410 and resuming from any
    /// version seen so far gets 410 too, so clients must list again.
    pub fn expire(&self) {
        {
            let mut st = self.shared.store.lock().expect("lock");
            st.oldest = st.rv;
            st.history.clear();
        }
        self.shared.expired.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.send_modify(|g| *g += 1);
    }

    pub fn lists(&self) -> u64 {
        self.shared.lists.load(Ordering::SeqCst)
    }
}

struct Params {
    ns: String,
    selector: Vec<(String, String)>,
    watch: bool,
    rv: u64,
    bookmarks: bool,
    timeout: Duration,
}

fn params(uri: &Uri) -> Option<Params> {
    let rest = uri
        .path()
        .strip_prefix("/apis/discovery.k8s.io/v1/namespaces/")?;
    let (ns, kind) = rest.split_once('/')?;
    if kind != "endpointslices" {
        return None;
    }
    let url = reqwest::Url::parse(&format!("http://kube{uri}")).ok()?;
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let selector = q
        .get("labelSelector")
        .map(|s| {
            s.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    Some(Params {
        ns: ns.to_string(),
        selector,
        watch: q.get("watch").is_some_and(|w| w == "true" || w == "1"),
        rv: q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        bookmarks: q.get("allowWatchBookmarks").is_some_and(|w| w == "true"),
        timeout: Duration::from_secs(
            q.get("timeoutSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(300),
        ),
    })
}

fn matches(p: &Params, obj: &Value) -> bool {
    obj["metadata"]["namespace"] == p.ns.as_str()
        && p.selector
            .iter()
            .all(|(k, v)| obj["metadata"]["labels"][k] == v.as_str())
}

async fn handle(shared: Arc<Shared>, uri: Uri) -> Response {
    let Some(p) = params(&uri) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if shared.down.load(Ordering::SeqCst) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": "etcdserver: leader changed", "reason": "ServiceUnavailable", "code": 503});
        let mut resp = json_response(status.to_string());
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return resp;
    }
    if !p.watch {
        shared.lists.fetch_add(1, Ordering::SeqCst);
        let st = shared.store.lock().expect("lock");
        let items: Vec<&Value> = st.objects.values().filter(|o| matches(&p, o)).collect();
        let list = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                          "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
        return json_response(list.to_string());
    }
    shared.watches.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(stream_watch(shared, p, tx));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert("Content-Type", "application/json".parse().expect("header"));
    resp
}

fn json_response(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert("Content-Type", "application/json".parse().expect("header"));
    resp
}

fn line(kind: &str, obj: &Value) -> Result<Bytes, Infallible> {
    Ok(Bytes::from(format!(
        "{}\n",
        json!({"type": kind, "object": obj})
    )))
}

fn gone(rv: u64, oldest: u64) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("too old resource version: {rv} ({oldest})"),
           "reason": "Expired", "code": 410})
}

async fn stream_watch(shared: Arc<Shared>, p: Params, tx: mpsc::Sender<Result<Bytes, Infallible>>) {
    let deadline = tokio::time::Instant::now() + p.timeout;
    let expired_at_start = shared.expired.load(Ordering::SeqCst);
    let mut changed = shared.changed.subscribe();
    let mut sent = p.rv;
    loop {
        // Decided under the lock, sent after it is released.
        let mut out = Vec::new();
        let mut expired = None;
        if shared.down.load(Ordering::SeqCst) {
            return;
        }
        {
            let st = shared.store.lock().expect("lock");
            if sent < st.oldest || shared.expired.load(Ordering::SeqCst) != expired_at_start {
                expired = Some(gone(sent, st.oldest));
            } else if !shared.paused.load(Ordering::SeqCst) {
                let from = sent;
                for (rv, kind, obj) in st.history.iter().filter(|(rv, ..)| *rv > from) {
                    if matches(&p, obj) {
                        out.push(line(kind, obj));
                    }
                    sent = *rv;
                }
            }
        }
        if let Some(status) = expired {
            let _ = tx.send(line("ERROR", &status)).await;
            return;
        }
        for l in out {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                // Idle: a bookmark says every event up to `sent` was sent.
                if p.bookmarks && !shared.paused.load(Ordering::SeqCst) {
                    let bm = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                    "metadata": {"resourceVersion": sent.to_string()}});
                    if tx.send(line("BOOKMARK", &bm)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
