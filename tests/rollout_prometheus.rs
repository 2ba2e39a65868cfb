//! The rollout analysis's Prometheus source against an in-process server
//! implementing the part of Prometheus' HTTP API it uses: instant queries
//! (`/api/v1/query`) evaluating `sum(metric{..})` and
//! `sum by (le) (metric{..})` over a store of series, with Prometheus'
//! response envelope, and errors as Prometheus reports them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Json};
use serde_json::{json, Value};
use sluice::canary::metrics::{MetricsSource, Prometheus};

type Labels = BTreeMap<String, String>;

#[derive(Default)]
struct Store {
    series: Vec<(String, Labels, f64)>,
    fail_with: Option<StatusCode>,
}

fn series(name: &str, labels: &[(&str, &str)], v: f64) -> (String, Labels, f64) {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (name.to_string(), labels, v)
}

/// `name{k="v",...}` → (name, matchers).
fn selector(s: &str) -> Option<(String, Labels)> {
    let s = s.trim();
    let (name, rest) = s.split_once('{').unwrap_or((s, "}"));
    let body = rest.strip_suffix('}')?;
    let mut m = Labels::new();
    for part in body.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once('=')?;
        m.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
    }
    Some((name.trim().to_string(), m))
}

/// Evaluates the two query shapes; `None` for anything else (bad_data).
fn eval(store: &Store, q: &str) -> Option<Vec<(Labels, f64)>> {
    let (by_le, inner) = if let Some(rest) = q.strip_prefix("sum by (le) (") {
        (true, rest.strip_suffix(')')?)
    } else {
        (false, q.strip_prefix("sum(")?.strip_suffix(')')?)
    };
    let (name, matchers) = selector(inner)?;
    let mut groups: BTreeMap<Labels, f64> = BTreeMap::new();
    for (n, labels, v) in &store.series {
        if *n != name || !matchers.iter().all(|(k, want)| labels.get(k) == Some(want)) {
            continue;
        }
        let mut key = Labels::new();
        if by_le {
            key.insert("le".into(), labels.get("le")?.clone());
        }
        *groups.entry(key).or_default() += v;
    }
    Some(groups.into_iter().collect())
}

/// `application/x-www-form-urlencoded` value decoding.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn query(State(store): State<Arc<Mutex<Store>>>, uri: Uri) -> impl IntoResponse {
    let params: BTreeMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    let store = store.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(code) = store.fail_with {
        return (
            code,
            Json(json!({"status": "error", "errorType": "internal", "error": "down"})),
        );
    }
    let q = params.get("query").cloned().unwrap_or_default();
    match eval(&store, &q) {
        Some(result) => {
            let result: Vec<Value> = result
                .into_iter()
                .map(|(labels, v)| json!({"metric": labels, "value": [1_795_000_000.0, v.to_string()]}))
                .collect();
            (
                StatusCode::OK,
                Json(
                    json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
                ),
            )
        }
        None => (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"status": "error", "errorType": "bad_data", "error": format!("cannot parse {q:?}")}),
            ),
        ),
    }
}

async fn start(store: Arc<Mutex<Store>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/api/v1/query", axum::routing::get(query))
        .with_state(store);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

fn canary_series() -> Vec<(String, Labels, f64)> {
    let c = ("envoy_cluster_name", "web~canary");
    let mut s = vec![
        // Two proxies' counters: the source must sum them.
        series(
            "envoy_cluster_upstream_rq_total",
            &[c, ("instance", "a")],
            150.0,
        ),
        series(
            "envoy_cluster_upstream_rq_total",
            &[c, ("instance", "b")],
            50.0,
        ),
        series(
            "envoy_cluster_upstream_rq_xx",
            &[c, ("envoy_response_code_class", "5"), ("instance", "a")],
            7.0,
        ),
        series(
            "envoy_cluster_upstream_rq_xx",
            &[c, ("envoy_response_code_class", "5"), ("instance", "b")],
            3.0,
        ),
        series(
            "envoy_cluster_upstream_rq_xx",
            &[c, ("envoy_response_code_class", "2"), ("instance", "a")],
            143.0,
        ),
        // Another cluster's series must not leak in.
        series(
            "envoy_cluster_upstream_rq_total",
            &[("envoy_cluster_name", "other"), ("instance", "a")],
            999.0,
        ),
    ];
    for (le, n) in [("1", 20.0), ("5", 120.0), ("10", 190.0), ("+Inf", 200.0)] {
        s.push(series(
            "envoy_cluster_upstream_rq_time_bucket",
            &[c, ("le", le), ("instance", "a")],
            n * 0.75,
        ));
        s.push(series(
            "envoy_cluster_upstream_rq_time_bucket",
            &[c, ("le", le), ("instance", "b")],
            n * 0.25,
        ));
    }
    s
}

#[tokio::test]
async fn prometheus_source_sums_series_per_cluster() {
    let store = Arc::new(Mutex::new(Store {
        series: canary_series(),
        fail_with: None,
    }));
    let source = Prometheus::new(start(store).await);
    let clusters = vec!["web~canary".to_string(), "web~stable".to_string()];
    let sample = source.sample(&clusters).await.expect("sample");

    let c = &sample.clusters["web~canary"];
    assert_eq!((c.total, c.errors_5xx), (200, 10));
    assert_eq!(
        c.buckets,
        vec![(1.0, 20), (5.0, 120), (10.0, 190), (f64::INFINITY, 200)]
    );
    assert!(
        !sample.clusters.contains_key("web~stable"),
        "a cluster with no series has no sample (analysis counts that as a failed check)"
    );
}

#[tokio::test]
async fn prometheus_errors_are_errors_never_empty_samples() {
    let store = Arc::new(Mutex::new(Store {
        series: canary_series(),
        fail_with: Some(StatusCode::SERVICE_UNAVAILABLE),
    }));
    let source = Prometheus::new(start(store.clone()).await);
    let clusters = vec!["web~canary".to_string()];
    let err = source.sample(&clusters).await.expect_err("503 must fail");
    assert!(err.to_string().contains("HTTP 503"), "{err}");

    // Nothing listening at all.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let gone = Prometheus::new(format!("http://127.0.0.1:{port}"));
    assert!(gone.sample(&clusters).await.is_err());
}
