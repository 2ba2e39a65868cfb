//! sluice's header-value check agrees with the real Envoy, byte by byte.
//!
//! For every byte 0x00–0xFF, the value `a<byte>z` goes through both:
//! `sluice::rules::parse` as a route's `transform.request.set_headers`
//! value (bytes from 0x80 as the character U+0080–U+00FF, since YAML text is
//! UTF-8), and a static Envoy bootstrap written by hand, one route per byte
//! adding the same value as a request header towards a raw TCP upstream.
//! Envoy refuses some bytes when it loads the route (proto validation) and
//! answers 503 `invalid header value` for others; each byte sluice accepts
//! must reach the upstream byte-exact, each byte it refuses must fail in
//! Envoy one of those two ways. The bytes sluice accepts then go once more
//! through sluice itself: one rules file with a route per byte, served by
//! sluice to a second Envoy, each value reaching the upstream byte-exact.

mod common;
mod real_envoy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The header value tested for `byte`: the byte between two letters, as
/// the character of the same code point.
fn value(byte: u8) -> String {
    format!("a{}z", char::from(byte))
}

/// The bytes `value(byte)` holds on the wire (UTF-8).
fn wire(byte: u8) -> Vec<u8> {
    value(byte).into_bytes()
}

/// True when sluice refuses `value(byte)` as a `set_headers` value; any
/// refusal must be the header-value check.
fn sluice_refuses(byte: u8) -> bool {
    let yaml = rules(&[byte], 8081);
    common::rules::refused_only_because(&yaml, "control character", &format!("byte {byte:#04x}"))
}

/// Rules with one service `up` (on `port`) and one route per byte of
/// `bytes`, at `route_path(byte)`, setting `x-v` to `value(byte)` written
/// as the YAML escape `\xNN`.
fn rules(bytes: &[u8], port: u16) -> String {
    let routes: String = bytes
        .iter()
        .map(|&b| {
            format!(
                "          - match: {{path: {}}}\n            to: {{service: up}}\n            transform: {{request: {{set_headers: {{x-v: \"a\\x{b:02x}z\"}}}}}}\n",
                route_path(b)
            )
        })
        .collect();
    format!(
        "services:\n  - name: up\n    endpoints: [{{address: 127.0.0.1, port: {port}}}]\n{}{routes}",
        common::rules::http_listener(0, "bytes")
    )
}

/// The path of the route carrying `byte`'s value.
fn route_path(byte: u8) -> String {
    format!("/b/{byte:02x}")
}

/// A static bootstrap: an HTTP listener on port 0 with one route per byte
/// of `bytes`, each adding `x-v: value(byte)` to requests sent to `upstream`.
fn bootstrap(bytes: &[u8], upstream: u16) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = bytes
        .iter()
        .map(|&b| {
            serde_json::json!({
                "match": {"path": route_path(b)},
                "route": {"cluster": "upstream"},
                "request_headers_to_add": [{
                    // `%` starts a formatter command in Envoy; `%%` is a
                    // literal percent sign.
                    "header": {"key": "x-v", "value": value(b).replace('%', "%%")},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
                }]
            })
        })
        .collect();
    serde_json::json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "clusters": [{
                "name": "upstream",
                "type": "STATIC",
                "connect_timeout": "5s",
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}
                }]}]}
            }],
            "listeners": [real_envoy::static_http_listener(serde_json::json!({
                "virtual_hosts": [{"name": "bytes", "domains": ["*"], "routes": routes}]
            }))]
        }
    })
}

/// The route index Envoy names when it refuses a route's header value.
fn refused_route(text: &str) -> Option<usize> {
    if !text.contains("HeaderValueValidationError.Value: value does not match regex pattern") {
        return None;
    }
    let at = text.find("VirtualHostValidationError.Routes[")?
        + "VirtualHostValidationError.Routes[".len();
    let len = text[at..].find(']')?;
    text[at..at + len].parse().ok()
}

/// Drops from `bytes` each route Envoy refuses at load, one validation run
/// per refusal; returns the refused bytes. Any other refusal fails the test.
fn envoy_refused_at_load(bytes: &mut Vec<u8>, dir: &Path) -> BTreeSet<u8> {
    let path = dir.join("validate.json");
    let mut refused = BTreeSet::new();
    loop {
        std::fs::write(&path, bootstrap(bytes, 1).to_string()).expect("write bootstrap");
        let Err(text) = real_envoy::validate(&path) else {
            return refused;
        };
        let i = refused_route(&text)
            .filter(|&i| i < bytes.len())
            .unwrap_or_else(|| panic!("Envoy refused the bootstrap for another reason:\n{text}"));
        refused.insert(bytes.remove(i));
    }
}

/// A raw HTTP/1.1 upstream: records the raw `x-v` value of each request by
/// path, answers 200 and closes. Raw because common HTTP servers refuse
/// the very bytes under test.
async fn upstream() -> (u16, Arc<Mutex<BTreeMap<String, Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let head = read_head(&mut conn).await;
                let (path, v) = parse_request(&head);
                record.lock().expect("lock").insert(path, v);
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, seen)
}

/// Reads up to the end of an HTTP/1.1 head.
async fn read_head(conn: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    head
}

/// The path and the raw `x-v` header value of a request head.
fn parse_request(head: &[u8]) -> (String, Vec<u8>) {
    let mut lines = head.split(|&b| b == b'\n');
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let path = first.split(' ').nth(1).unwrap_or_default().to_string();
    let v = lines
        .filter_map(|l| l.strip_prefix(b"x-v: "))
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .next()
        .unwrap_or_default();
    (path, v)
}

/// Sends `GET path` to Envoy and returns the whole response; `Err` when
/// the listener does not take the connection (yet).
async fn try_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: bytes\r\nconnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).await?;
    Ok(String::from_utf8_lossy(&resp).into_owned())
}

/// [`try_get`] on a listener known to be up.
async fn get(port: u16, path: &str) -> String {
    try_get(port, path).await.expect("GET through Envoy")
}

#[tokio::test]
async fn sluice_refuses_exactly_the_header_value_bytes_envoy_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes: Vec<u8> = (0..=255).collect();
    let at_load = envoy_refused_at_load(&mut bytes, dir.path());

    let (up_port, seen) = upstream().await;
    let path = dir.path().join("bootstrap.json");
    std::fs::write(&path, bootstrap(&bytes, up_port).to_string()).expect("write bootstrap");
    let envoy = common::Envoy::start_static(dir, &path).await;
    let port = envoy.listener_port("http").await;

    let mut disagreements = Vec::new();
    let mut at_request = BTreeSet::new();
    for byte in 0..=255u8 {
        let ours = sluice_refuses(byte);
        let envoys = if at_load.contains(&byte) {
            Some("refused the route at load".to_string())
        } else {
            let resp = get(port, &route_path(byte)).await;
            if resp.starts_with("HTTP/1.1 200 ") {
                let got = seen.lock().expect("lock").get(&route_path(byte)).cloned();
                assert_eq!(
                    got,
                    Some(wire(byte)),
                    "byte {byte:#04x}: header changed on the way"
                );
                None
            } else {
                assert!(
                    resp.starts_with("HTTP/1.1 503 ")
                        && resp.ends_with("invalid header value for: x-v"),
                    "byte {byte:#04x}: unexpected response\n{resp}"
                );
                at_request.insert(byte);
                Some("503 invalid header value".to_string())
            }
        };
        if ours != envoys.is_some() {
            let envoy = envoys.as_deref().unwrap_or("accepted");
            disagreements.push(format!(
                "byte {byte:#04x}: sluice refuses: {ours}; Envoy: {envoy}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // Both kinds of refusal occur and most bytes pass, so agreement is not
    // vacuous.
    assert!(
        !at_load.is_empty() && !at_request.is_empty(),
        "{at_load:?} {at_request:?}"
    );
    assert!(at_load.len() + at_request.len() < 64);
}

#[tokio::test]
async fn every_value_sluice_accepts_reaches_the_upstream_through_sluice() {
    let accepted: Vec<u8> = (0..=255u8).filter(|&b| !sluice_refuses(b)).collect();
    assert!(accepted.len() > 192, "{} bytes accepted", accepted.len());
    let (up_port, seen) = upstream().await;
    let file = common::RulesFile::new(&rules(&accepted, up_port));
    let (_sluice, _envoy, port) = common::sluice_and_envoy(&file.path, "envoy-bytes", "http").await;
    // Envoy reports the listener's port while the listener still waits
    // for its routes, before it accepts connections.
    let first = route_path(accepted[0]);
    common::eventually("the routes are served", || {
        let first = first.clone();
        async move {
            try_get(port, &first)
                .await
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200 "))
        }
    })
    .await;
    let mut wrong = Vec::new();
    for &byte in &accepted {
        let resp = get(port, &route_path(byte)).await;
        let got = seen.lock().expect("lock").remove(&route_path(byte));
        if !resp.starts_with("HTTP/1.1 200 ") || got != Some(wire(byte)) {
            let status = resp.lines().next().unwrap_or_default().to_string();
            wrong.push(format!("byte {byte:#04x}: {status}; upstream saw {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
