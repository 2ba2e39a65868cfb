//! More traffic policy on a real Envoy, next to `policy_e2e.rs`:
//!
//! - balancing: outlier detection ejects a backend answering 5xx and lets it
//!   back after the ejection time; removing one of four ring-hash backends
//!   moves the keys it held and few others;
//! - protocols: a WebSocket upgrade through a `websocket: true` route (and
//!   not through a route without it), an HTTP/2-only (h2c) upstream, and the
//!   default JSON access log naming route, upstream host, response flags and
//!   durations.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn ep(addr: SocketAddr) -> String {
    format!("{{address: 127.0.0.1, port: {}}}", addr.port())
}

fn only(counts: &BTreeMap<String, usize>, name: &str) -> bool {
    counts.len() == 1 && counts.contains_key(name)
}

fn balance_rules(flaky: &[Backend], ring: &[Backend]) -> String {
    let flaky: Vec<String> = flaky.iter().map(|b| ep(b.addr)).collect();
    let ring: Vec<String> = ring.iter().map(|b| ep(b.addr)).collect();
    let listener = common::rules::http_listener(0, "all");
    format!(
        r#"services:
  - name: flaky
    panic_threshold: 0
    outlier_detection: {{consecutive_5xx: 3, interval: 200ms, base_ejection_time: 1s, max_ejection_percent: 50}}
    endpoints: [{flaky}]
  - name: ring
    lb_policy: ring_hash
    endpoints: [{ring}]
{listener}          - {{match: {{prefix: /flaky}}, to: {{service: flaky}}}}
          - {{match: {{prefix: /ring}}, to: {{service: ring}}, hash: [{{header: x-key}}]}}
"#,
        flaky = flaky.join(", "),
        ring = ring.join(", "),
    )
}

/// Which backend answers each of `keys` on `url`, hashing on `x-key`.
async fn placement(url: &str, keys: &[String]) -> Vec<String> {
    let client = http();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let r = client.get(url).header("x-key", k).send().await;
        let name = match r {
            Ok(r) if r.status() == 200 => r.text().await.unwrap_or_default(),
            _ => "error".to_string(),
        };
        out.push(name);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_and_ring_hash_on_real_envoy() {
    let flaky = vec![backend("flaky-a").await, backend("flaky-b").await];
    let mut ring = Vec::new();
    for i in 0..4 {
        ring.push(backend(&format!("ring-{i}")).await);
    }
    let rules = RulesFile::new(&balance_rules(&flaky, &ring));
    let (_sluice, envoy, listen) = sluice_and_envoy(&rules.path, "envoy-balance", "http").await;
    let url = |path: &str| format!("http://127.0.0.1:{listen}{path}");

    // Outlier detection: three 5xx in a row eject flaky-b (health checks
    // play no part: the service has none); once it answers 200 again it
    // is let back after the ejection time.
    eventually("both flaky backends serve", || async {
        distribution(&url("/flaky"), 20).await.len() == 2
    })
    .await;
    flaky[1].set_status(500);
    let envoy_ref = &envoy;
    eventually("flaky-b ejected for its 5xx", || async {
        // Requests first: only they can make the detector see the 5xx.
        let served_by_a_only = only(&distribution(&url("/flaky"), 20).await, "flaky-a");
        served_by_a_only
            && envoy_ref
                .stat("cluster.flaky.outlier_detection.ejections_enforced_consecutive_5xx")
                .await
                >= 1.0
    })
    .await;
    flaky[1].set_status(200);
    eventually("flaky-b back after its ejection time", || async {
        distribution(&url("/flaky"), 20)
            .await
            .contains_key("flaky-b")
    })
    .await;

    // Ring hash: 400 keys over 4 backends; then ring-3 leaves the rules.
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
    let before = placement(&url("/ring"), &keys).await;
    let on_removed = before.iter().filter(|b| *b == "ring-3").count();
    assert!(
        !before.iter().any(|b| b == "error"),
        "every key answered: {before:?}"
    );
    // Each backend holds a quarter of Envoy's ring (256 of 1024 points).
    // With 400 keys its share is about Binomial(400, 0.25): mean 100,
    // sd 8.7, plus the ring's own unevenness; 40..=160 is far outside both.
    assert!((40..=160).contains(&on_removed), "ring-3 held {on_removed}");
    rules.write(&balance_rules(&flaky, &ring[..3]));
    eventually("envoy drops ring-3", || async {
        envoy_ref.stat("cluster.ring.membership_total").await == 3.0
    })
    .await;
    let after = placement(&url("/ring"), &keys).await;
    assert!(!after.iter().any(|b| b == "error" || b == "ring-3"));
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    let moved_elsewhere = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| *a != "ring-3" && a != b)
        .count();
    eprintln!("ring: ring-3 held {on_removed} of 400; {moved} moved, {moved_elsewhere} of them not from ring-3");
    // Consistent hashing: the removed backend's keys (about 1/4) must move.
    // Envoy rebuilds the ring at the same total size, so each remaining
    // backend gains points (256 → 342) that take some keys from the others:
    // expect about 1/4 + 1/10 moved, ~145 keys (runs here: 109 to 164). A
    // backend's share of the ring has sd 1/64 (256 points), the keys' own
    // sampling adds sd 2.2%: together about 16 keys. Every key of ring-3
    // moved (none answered from it, above); bound the total at 220 (mean +
    // 4.5 sd) — a modulo hash would move about 3/4 (300).
    assert!(
        moved <= 220,
        "{moved} of 400 keys moved ({moved_elsewhere} not from ring-3)"
    );
    drop(envoy);
}

/// A backend that takes an HTTP/1.1 `Upgrade: websocket` request, answers
/// 101 and then echoes every byte; anything else gets 400.
async fn websocket_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some((head, rest)) = read_head(&mut s).await else {
                    return;
                };
                if !head.to_ascii_lowercase().contains("upgrade: websocket") {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let answer = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n";
                if s.write_all(answer.as_bytes()).await.is_err()
                    || s.write_all(&rest).await.is_err()
                {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Reads an HTTP/1.1 head; returns it and the bytes read past it.
async fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An HTTP/2-only backend (prior knowledge, no TLS) answering with the
/// HTTP version it was spoken to in.
async fn h2c_backend() -> SocketAddr {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let body = format!("{:?}", req.version());
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                    body,
                ))))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// Sends a WebSocket upgrade for `path` to `port`; returns the status line
/// and the open stream.
async fn upgrade(port: u16, path: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let (head, rest) = read_head(&mut s).await.expect("response head");
    assert!(rest.is_empty(), "no frame before we send one");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_and_access_log_on_real_envoy() {
    let ws = websocket_backend().await;
    let h2 = h2c_backend().await;
    // A port nobody listens on: connections to it fail.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let listener = common::rules::http_listener(0, "all");
    let rules = format!(
        r#"services:
  - {{name: ws, endpoints: [{ws}]}}
  - {{name: h2, protocol: http2, endpoints: [{h2}]}}
  - {{name: dead, endpoints: [{dead}]}}
{listener}          - {{name: ws, match: {{prefix: /ws}}, to: {{service: ws}}, websocket: true}}
          - {{name: no-ws, match: {{prefix: /plain}}, to: {{service: ws}}}}
          - {{name: h2, match: {{prefix: /h2}}, to: {{service: h2}}}}
          - {{name: dead, match: {{prefix: /dead}}, to: {{service: dead}}}}
"#,
        ws = ep(ws),
        h2 = ep(h2),
        dead = ep(dead),
    );
    let rules = RulesFile::new(&rules);
    let (_sluice, envoy, listen) = sluice_and_envoy(&rules.path, "envoy-protocols", "http").await;
    let url = |path: &str| format!("http://127.0.0.1:{listen}{path}");
    let client = http();

    // HTTP/2 upstream: the h2-only backend answers, and was spoken h2.
    eventually("h2c backend answers through envoy", || async {
        match client.get(url("/h2")).send().await {
            Ok(r) if r.status() == 200 => r.text().await.is_ok_and(|b| b == "HTTP/2.0"),
            _ => false,
        }
    })
    .await;

    // WebSocket: 101 through the route that allows it, then a masked text
    // frame ("hi") goes through and comes back byte for byte.
    let (status, mut s) = upgrade(listen, "/ws").await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    s.write_all(&frame).await.expect("send frame");
    let mut echoed = [0u8; 8];
    tokio::time::timeout(WAIT, s.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(echoed, frame);
    drop(s);
    // Without `websocket: true` Envoy refuses the upgrade itself.
    let (status, _) = upgrade(listen, "/plain").await;
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");

    // A failing upstream: 503 with Envoy's upstream-connection-failure flag.
    let r = client.get(url("/dead")).send().await.expect("answer");
    assert_eq!(r.status(), 503);

    // The default access log: one JSON line per request.
    let line_for = |route: &str| envoy.access_log().into_iter().find(|l| l["route"] == route);
    let envoy_ref = &envoy;
    eventually("access log lines for h2, ws and dead", || async {
        let log = envoy_ref.access_log();
        ["h2", "ws", "dead"]
            .iter()
            .all(|r| log.iter().any(|l| l["route"] == *r))
    })
    .await;
    let h2_line = line_for("h2").expect("h2 line");
    assert_eq!(h2_line["upstream_host"], h2.to_string(), "{h2_line}");
    assert_eq!(h2_line["upstream_cluster"], "h2", "{h2_line}");
    assert_eq!(h2_line["response_flags"], "-", "{h2_line}");
    assert_eq!(h2_line["status"], 200, "{h2_line}");
    assert_eq!(h2_line["path"], "/h2", "{h2_line}");
    for field in ["duration_ms", "upstream_service_time_ms"] {
        let v = &h2_line[field];
        let ms = v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        assert!(ms.is_some(), "{field} is a number of ms: {h2_line}");
    }
    let dead_line = line_for("dead").expect("dead line");
    assert_eq!(dead_line["upstream_host"], dead.to_string(), "{dead_line}");
    assert_eq!(dead_line["status"], 503, "{dead_line}");
    let flags = dead_line["response_flags"].as_str().unwrap_or_default();
    assert!(flags.split(',').any(|f| f == "UF"), "{dead_line}");
    let ws_line = line_for("ws").expect("ws line");
    assert_eq!(ws_line["status"], 101, "{ws_line}");
    drop(envoy);
}
