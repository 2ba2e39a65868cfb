//! Secure xDS with a real Envoy 1.40: TLS and mutual TLS on the xDS port,
//! proxy identity from the client certificate's SANs, bearer tokens, the
//! rules' `xds_access`, and secrets sent only to authenticated streams.
//! Certificates are made at test time; everything is on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use common::creds::*;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Where a test keeps its PEM files.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        write_atomically(&path, text);
        path
    }

    fn pair(&self, name: &str, pair: &Pair) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{name}.pem"), &pair.cert),
            self.write(&format!("{name}.key"), &pair.key),
        )
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const TOKEN: &str = "batch-token-7f3a";

/// One service, a plain listener `http` for groups edge and batch, an
/// HTTPS listener `https` (with its SDS secret) for group edge only, and
/// who may join which group.
fn rules(backend: &Backend, extra_access: &str) -> String {
    format!(
        r#"services:
  - name: web
    endpoints: [{{address: 127.0.0.1, port: {port}}}]
listeners:
  - name: http
    address: 127.0.0.1
    port: 0
    groups: [edge, batch]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {{match: {{prefix: /}}, to: {{service: web}}}}
  - name: https
    address: 127.0.0.1
    port: 0
    groups: [edge]
    tls:
      cert_file: listener.pem
      key_file: listener.key
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {{match: {{prefix: /}}, to: {{service: web}}}}
xds_access:
  - identity: "spiffe://acme.test/edge/*"
    groups: [edge]
    node_id: "edge-*"
{extra_access}"#,
        port = backend.addr.port()
    )
}

fn token_entry() -> String {
    format!(
        "  - token_sha256: {}\n    groups: [batch]\n",
        sha256_hex(TOKEN)
    )
}

/// A rules file with the listener's certificate beside it.
fn rules_file(ca: &Ca, backend: &Backend, extra_access: &str) -> RulesFile {
    let file = RulesFile::new(&rules(backend, extra_access));
    let listener = mk_server(ca);
    write_atomically(&file.dir().join("listener.pem"), &listener.cert);
    write_atomically(&file.dir().join("listener.key"), &listener.key);
    file
}

/// The set-up most tests share: a CA, sluice's certificate, and sluice
/// serving over mTLS with `xds_access` (plus `extra_access`).
struct Secure {
    ca: Ca,
    files: Files,
    ca_file: PathBuf,
    /// sluice's certificate and key files.
    server: (PathBuf, PathBuf),
    sluice: Sluice,
    _rules: RulesFile,
    _backend: Backend,
}

async fn secure(extra_access: &str) -> Secure {
    secure_with(extra_access, &[]).await
}

/// As [`secure`], with more `serve` arguments.
async fn secure_with(extra_access: &str, extra: &[&str]) -> Secure {
    let ca = mk_ca("sluice test CA");
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.pem);
    let (cert, key) = files.pair("server", &mk_server(&ca));
    let backend = backend("web").await;
    let (cert_arg, key_arg) = (cert.clone(), key.clone());
    let rules = rules_file(&ca, &backend, extra_access);
    let sluice = Sluice::start_with(
        &rules.path,
        "127.0.0.1:0",
        &[
            "--xds-tls-cert",
            s(&cert_arg),
            "--xds-tls-key",
            s(&key_arg),
            "--xds-client-ca",
            s(&ca_file),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    );
    sluice.wait_ready("sluice ready").await;
    Secure {
        ca,
        files,
        ca_file,
        server: (cert, key),
        sluice,
        _rules: rules,
        _backend: backend,
    }
}

impl Secure {
    /// Kills sluice and starts it again on the same xDS port with the same
    /// files, plus `extra` arguments.
    async fn restart(&mut self, extra: &[&str]) {
        let xds = self.sluice.xds.to_string();
        self.sluice.kill();
        let mut args = vec![
            "--xds-tls-cert",
            s(&self.server.0),
            "--xds-tls-key",
            s(&self.server.1),
            "--xds-client-ca",
            s(&self.ca_file),
        ];
        args.extend_from_slice(extra);
        self.sluice = Sluice::start_with(&self._rules.path, &xds, &args);
        self.sluice.wait_ready("sluice ready again").await;
    }

    /// An Envoy with a client certificate for `spiffe`, claiming `node_id`
    /// in `group`.
    async fn envoy(&self, spiffe: &str, node_id: &str, group: &str) -> Envoy {
        let (cert, key) = self.files.pair(node_id, &mk_client(&self.ca, spiffe));
        Envoy::start(
            node_id,
            group,
            self.sluice.xds,
            &[
                "--xds-ca",
                s(&self.ca_file),
                "--client-cert",
                s(&cert),
                "--client-key",
                s(&key),
            ],
        )
        .await
    }
}

/// The names of the dynamic listeners Envoy has (active or warming).
async fn envoy_listeners(envoy: &Envoy) -> Vec<String> {
    let url = format!("http://{}/listeners?format=json", envoy.admin);
    let doc = get_json(&url).await;
    doc["listener_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until Envoy's listener on `port` routes to the backend (a
/// listener is bound before its routes and clusters have all arrived).
async fn routes_to_web(port: u16) {
    routes_to(port, "web").await;
}

/// What `/status` lists as refused, as (reason, node id, identity).
async fn denials(sluice: &Sluice) -> Vec<(String, String, String)> {
    let status = sluice.status().await;
    status["xds_denials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let f = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            (f("reason"), f("node_id"), f("identity"))
        })
        .collect()
}

#[tokio::test]
async fn an_envoy_with_a_valid_client_certificate_gets_its_config_over_mtls_and_routes() {
    let t = secure("").await;
    let envoy = t
        .envoy("spiffe://acme.test/edge/envoy-1", "edge-1", "edge")
        .await;
    let port = envoy.listener_port("http").await;
    routes_to_web(port).await;
    // Authenticated: its group's listener secret was sent too, and the
    // HTTPS listener is serving.
    envoy.listener_port("https").await;
    let status = t.sluice.status().await;
    let proxy = &status["proxies"][0];
    assert_eq!(proxy["node"]["id"], "edge-1");
    assert!(
        proxy["types"]["sds"]["acked"].is_string(),
        "the secret was not ACKed: {proxy}"
    );
    assert!(denials(&t.sluice).await.is_empty());
}

#[tokio::test]
async fn a_certificate_for_edge_may_not_join_another_group_or_claim_another_node_id() {
    let t = secure("").await;
    let wrong_group = t
        .envoy("spiffe://acme.test/edge/envoy-2", "edge-2", "internal")
        .await;
    let wrong_node = t
        .envoy("spiffe://acme.test/edge/envoy-3", "core-3", "edge")
        .await;
    // Envoy retries a refused stream, so each may be listed several times.
    let spiffe2 = "spiffe://acme.test/edge/envoy-2".to_owned();
    let spiffe3 = "spiffe://acme.test/edge/envoy-3".to_owned();
    let wrong_group_denial = ("group_not_allowed".to_owned(), "edge-2".to_owned(), spiffe2);
    let wrong_node_denial = (
        "node_id_not_allowed".to_owned(),
        "core-3".to_owned(),
        spiffe3,
    );
    eventually("both refusals are listed", || async {
        let listed = denials(&t.sluice).await;
        listed.contains(&wrong_group_denial) && listed.contains(&wrong_node_denial)
    })
    .await;
    assert!(
        t.sluice
            .metric("sluice_xds_denied_total{reason=\"group_not_allowed\"}")
            .await
            >= 1.0
    );
    assert!(
        t.sluice
            .metric("sluice_xds_denied_total{reason=\"node_id_not_allowed\"}")
            .await
            >= 1.0
    );
    let text = t.sluice.status_text().await;
    assert!(
        text.contains("group_not_allowed  node=edge-2 group=internal"),
        "{text}"
    );
    // Nothing was sent: neither Envoy has a listener, and neither is listed
    // as connected.
    for envoy in [&wrong_group, &wrong_node] {
        assert!(envoy_listeners(envoy).await.is_empty());
        assert_eq!(envoy.stat("cluster_manager.cds.update_success").await, 0.0);
    }
    assert_eq!(t.sluice.status().await["proxies"], serde_json::json!([]));
}

/// One TLS connection to sluice's xDS port that sends an HTTP/2 preface and
/// reads: `Ok` when sluice answered with HTTP/2 bytes, `Err` with why not.
fn tls_exchange(xds: SocketAddr, ca_pem: &str, client: Option<&Pair>) -> Result<(), String> {
    let tls = sluice::sim::xds_tls::ClientTls::from_pem(
        ca_pem.as_bytes(),
        client.map(|p| (p.cert.as_bytes(), p.key.as_bytes())),
        "localhost",
    )
    .map_err(|e| e.to_string())?;
    let conn =
        rustls::ClientConnection::new(tls.config, tls.server_name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(xds).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 9];
    // A server that refused the certificate sends its alert after the
    // client thinks the handshake is done (TLS 1.3): the read sees it.
    tls.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
    Ok(())
}

#[tokio::test]
async fn without_a_certificate_from_the_ca_the_handshake_is_refused() {
    let t = secure("").await;
    let xds = t.sluice.xds;
    let ca = t.ca.pem.clone();
    let good = mk_client(&t.ca, "spiffe://acme.test/edge/probe");
    let other_ca = mk_ca("another CA");
    let stranger = mk_client(&other_ca, "spiffe://acme.test/edge/probe");
    let results = tokio::task::spawn_blocking(move || {
        (
            tls_exchange(xds, &ca, Some(&good)),
            tls_exchange(xds, &ca, None),
            tls_exchange(xds, &ca, Some(&stranger)),
        )
    })
    .await
    .expect("join");
    // The client side itself works: a certificate from the CA gets HTTP/2.
    assert_eq!(results.0, Ok(()));
    let no_cert = results
        .1
        .expect_err("no client certificate must be refused");
    assert!(
        no_cert.contains("CertificateRequired") || no_cert.contains("HandshakeFailure"),
        "{no_cert}"
    );
    let foreign = results
        .2
        .expect_err("a certificate from another CA must be refused");
    assert!(
        foreign.contains("UnknownCA")
            || foreign.contains("BadCertificate")
            || foreign.contains("DecryptError"),
        "{foreign}"
    );
    // Plaintext to the TLS port gets nowhere either.
    let plain = tokio::task::spawn_blocking(move || {
        let mut sock = TcpStream::connect(xds).expect("connect");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let _ = sock.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let mut buf = Vec::new();
        let _ = sock.read_to_end(&mut buf);
        buf
    })
    .await
    .expect("join");
    // No HTTP/2 answer: nothing, or a TLS alert record (type 21).
    assert!(
        plain.is_empty() || plain[0] == 0x15,
        "plaintext got an answer: {plain:?}"
    );
    eventually("the failed handshakes are counted", || async {
        t.sluice
            .metric("sluice_xds_tls_handshake_failures_total{reason=\"handshake\"}")
            .await
            >= 3.0
    })
    .await;
}

#[tokio::test]
async fn a_token_proxy_gets_config_and_a_wrong_token_is_denied() {
    let t = secure(&token_entry()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.token");
    std::fs::write(&good, format!("{TOKEN}\n")).expect("token");
    let bad = dir.path().join("bad.token");
    std::fs::write(&bad, "not-the-token").expect("token");
    let ca = s(&t.ca_file).to_owned();
    let with_token = Envoy::start(
        "batch-1",
        "batch",
        t.sluice.xds,
        &["--xds-ca", &ca, "--token-file", s(&good)],
    )
    .await;
    let port = with_token.listener_port("http").await;
    routes_to_web(port).await;
    let wrong = Envoy::start(
        "batch-2",
        "batch",
        t.sluice.xds,
        &["--xds-ca", &ca, "--token-file", s(&bad)],
    )
    .await;
    eventually("the wrong token is refused", || async {
        denials(&t.sluice).await.contains(&(
            "unknown_token".into(),
            "batch-2".into(),
            "token".into(),
        ))
    })
    .await;
    assert!(envoy_listeners(&wrong).await.is_empty());
    // With tokens accepted, a client certificate is asked for but not
    // required; a stream with neither is refused all the same.
    let bare = Envoy::start("batch-3", "batch", t.sluice.xds, &["--xds-ca", &ca]).await;
    eventually("a stream with no credentials is refused", || async {
        denials(&t.sluice).await.contains(&(
            "no_credentials".into(),
            "batch-3".into(),
            "none".into(),
        ))
    })
    .await;
    assert!(envoy_listeners(&bare).await.is_empty());
    // The bootstrap holding the token is readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(with_token.dir.path().join("bootstrap.json"))
        .expect("bootstrap")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn secrets_go_only_to_authenticated_streams_of_their_group() {
    let t = secure(&token_entry()).await;
    // Group batch is authenticated (a token) but its listeners have no
    // TLS: it must not receive edge's listener key.
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.token");
    std::fs::write(&good, TOKEN).expect("token");
    let ca = s(&t.ca_file).to_owned();
    let batch = Envoy::start(
        "batch-1",
        "batch",
        t.sluice.xds,
        &["--xds-ca", &ca, "--token-file", s(&good)],
    )
    .await;
    batch.listener_port("http").await;
    let dump = get_text(&format!("http://{}/config_dump?include_eds", batch.admin)).await;
    assert!(!dump.contains("PRIVATE KEY"), "a key reached group batch");
    assert!(!envoy_listeners(&batch).await.contains(&"https".to_owned()));

    // Plaintext on loopback without --xds-insecure: the stream is served,
    // but not its group's secret.
    let backend = backend("web").await;
    let rules = rules_file(&t.ca, &backend, "");
    let plain_rules = std::fs::read_to_string(&rules.path)
        .expect("rules")
        .split("xds_access:")
        .next()
        .expect("head")
        .to_owned();
    rules.write(&plain_rules);
    let plain = Sluice::start(&rules.path, "127.0.0.1:0");
    plain.wait_ready("plaintext sluice ready").await;
    let edge = Envoy::start("edge-9", "edge", plain.xds, &[]).await;
    edge.listener_port("http").await;
    eventually("the withheld secret is counted", || async {
        plain.metric("sluice_xds_secrets_withheld_total").await >= 1.0
    })
    .await;
    let dump = get_text(&format!("http://{}/config_dump", edge.admin)).await;
    assert!(!dump.contains("PRIVATE KEY"), "a key went over plaintext");
}

#[tokio::test]
async fn revoking_an_entry_ends_the_streams_it_allowed() {
    let t = secure("").await;
    let envoy = t
        .envoy("spiffe://acme.test/edge/envoy-1", "edge-1", "edge")
        .await;
    envoy.listener_port("http").await;
    let text = std::fs::read_to_string(&t._rules.path).expect("rules");
    t._rules
        .write(&text.replace("node_id: \"edge-*\"", "node_id: \"canary-*\""));
    eventually("the stream is refused after the edit", || async {
        denials(&t.sluice)
            .await
            .iter()
            .any(|d| d.0 == "node_id_not_allowed" && d.1 == "edge-1")
    })
    .await;
    eventually("the proxy is no longer listed", || async {
        t.sluice.status().await["proxies"] == serde_json::json!([])
    })
    .await;
}

#[test]
fn plaintext_xds_off_loopback_needs_xds_insecure() {
    // Refused while parsing the flags: nothing is bound.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "services: []\n").expect("rules");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--rules", s(&rules), "--xds", "0.0.0.0:18000"])
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "--xds-tls-cert",
        "--xds-insecure",
        "docs/security.md",
        "not a loopback",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

/// The leaf certificate sluice presents to a new connection now.
fn presented_certificate(xds: SocketAddr, ca_pem: &str, client: &Pair) -> Option<Vec<u8>> {
    let tls = sluice::sim::xds_tls::ClientTls::from_pem(
        ca_pem.as_bytes(),
        Some((client.cert.as_bytes(), client.key.as_bytes())),
        "localhost",
    )
    .ok()?;
    let conn = rustls::ClientConnection::new(tls.config, tls.server_name).ok()?;
    let sock = TcpStream::connect(xds).ok()?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.flush().ok()?;
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).ok()?;
    }
    let leaf = tls.conn.peer_certificates()?.first()?.to_vec();
    Some(leaf)
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

#[tokio::test]
async fn rotating_the_server_certificate_drops_no_stream() {
    use sluice::sim::fleet::{Fleet, FleetConfig};
    use sluice::sim::state::Mode;
    use sluice::sim::xds_tls::{ClientSecurity, ClientTls};

    let t = secure("").await;
    let client = mk_client(&t.ca, "spiffe://acme.test/edge/sim");
    let tls = ClientTls::from_pem(
        t.ca.pem.as_bytes(),
        Some((client.cert.as_bytes(), client.key.as_bytes())),
        "localhost",
    )
    .expect("client TLS");
    let proxies = 100;
    let fleet = Fleet::start(&FleetConfig {
        xds: t.sluice.xds.to_string(),
        proxies,
        mode: Mode::Delta,
        group: "edge".into(),
        node_prefix: "edge-sim".into(),
        faults: Default::default(),
        runtime_layer: Some(sluice::model::RUNTIME_LAYER.to_string()),
        security: ClientSecurity {
            tls: Some(tls),
            token: None,
        },
    });
    fleet
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("every simulated proxy configured over mTLS");
    let streams_before: Vec<u64> = fleet.reports().iter().map(|r| r.streams).collect();
    assert!(streams_before.iter().all(|&n| n == 1), "{streams_before:?}");

    let new = mk_server(&t.ca);
    let new_der = der_of(&new.cert);
    // Certificate first, then key: the watcher waits for two equal reads
    // in a row, so it never takes the new certificate with the old key.
    write_atomically(&t.server.0, &new.cert);
    write_atomically(&t.server.1, &new.key);
    let (xds, ca) = (t.sluice.xds, t.ca.pem.clone());
    eventually("new connections get the new certificate", || {
        let (ca, client, want) = (
            ca.clone(),
            Pair {
                cert: client.cert.clone(),
                key: client.key.clone(),
            },
            new_der.clone(),
        );
        async move {
            tokio::task::spawn_blocking(move || presented_certificate(xds, &ca, &client))
                .await
                .expect("join")
                == Some(want)
        }
    })
    .await;
    // Every established stream is still the one it opened.
    let reports = fleet.reports();
    assert!(reports.iter().all(|r| r.connected));
    let streams_after: Vec<u64> = reports.iter().map(|r| r.streams).collect();
    assert_eq!(
        streams_after, streams_before,
        "a stream was dropped by the rotation"
    );
    let status = t.sluice.status().await;
    assert_eq!(status["proxies"].as_array().map(Vec::len), Some(proxies));
    assert_eq!(
        t.sluice.metric("sluice_xds_tls_reload_errors_total").await,
        0.0
    );
    fleet.stop().await;
}

#[tokio::test]
async fn the_admin_grpc_api_uses_the_xds_certificate() {
    let ca = mk_ca("sluice test CA");
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.pem);
    let (cert, key) = files.pair("server", &mk_server(&ca));
    let token = files.write("admin.token", "admin-secret");
    let state = tempfile::tempdir().expect("state dir");
    let backend = backend("web").await;
    let rules = rules_file(&ca, &backend, "");
    let sluice = Sluice::start_with(
        &rules.path,
        "127.0.0.1:0",
        &[
            "--xds-tls-cert",
            s(&cert),
            "--xds-tls-key",
            s(&key),
            "--xds-client-ca",
            s(&ca_file),
            "--state-dir",
            s(state.path()),
            "--admin-grpc",
            "127.0.0.1:0",
            "--admin-token-file",
            s(&token),
        ],
    );
    let addr = sluice.admin_grpc.expect("admin grpc address").to_string();
    let rollout = |tls: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args([
            "rollout",
            "list",
            "--admin-grpc",
            &addr,
            "--admin-token-file",
            s(&token),
        ]);
        if tls {
            cmd.args(["--admin-grpc-ca", s(&ca_file)]);
        }
        cmd.output().expect("run sluice rollout")
    };
    // Over TLS, with no client certificate (the token authenticates).
    let over_tls = rollout(true);
    assert!(
        over_tls.status.success(),
        "{}",
        String::from_utf8_lossy(&over_tls.stderr)
    );
    // Plaintext to the TLS port gets nowhere.
    assert!(!rollout(false).status.success());
}

/// A session ticket key file of 80 bytes (`seed` makes keys differ).
fn ticket_key(files: &Files, name: &str, seed: u8) -> PathBuf {
    let bytes: Vec<u8> = (0..80u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(seed))
        .collect();
    let path = files.dir.path().join(name);
    write_bytes_atomically(&path, &bytes);
    path
}

/// Waits until sluice lists one connected proxy.
async fn one_proxy_connected(sluice: &Sluice) {
    eventually("the proxy is connected again", || async {
        sluice.status().await["proxies"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    })
    .await;
}

async fn handshakes(sluice: &Sluice, kind: &str) -> f64 {
    sluice
        .metric(&format!(
            "sluice_xds_tls_handshakes_total{{kind=\"{kind}\"}}"
        ))
        .await
}

#[tokio::test]
async fn an_envoy_resumes_its_tls_session_after_a_restart_with_the_same_ticket_key() {
    let files = Files::new();
    let key = ticket_key(&files, "ticket.key", 1);
    let other_key = ticket_key(&files, "other.key", 2);
    let mut t = secure_with("", &["--xds-tls-ticket-key", s(&key)]).await;
    let envoy = t
        .envoy("spiffe://acme.test/edge/envoy-1", "edge-1", "edge")
        .await;
    routes_to_web(envoy.listener_port("http").await).await;
    assert_eq!(handshakes(&t.sluice, "full").await, 1.0);

    // A new process with the same key: Envoy's reconnect resumes the
    // session its first connection was given a ticket for.
    t.restart(&["--xds-tls-ticket-key", s(&key)]).await;
    eventually("Envoy resumed its TLS session", || async {
        handshakes(&t.sluice, "resumed").await >= 1.0
    })
    .await;
    one_proxy_connected(&t.sluice).await;
    assert_eq!(handshakes(&t.sluice, "full").await, 0.0);
    routes_to_web(envoy.listener_port("http").await).await;

    // Another key opens no earlier ticket: a full handshake, certificate
    // checked, and Envoy is served all the same.
    t.restart(&["--xds-tls-ticket-key", s(&other_key)]).await;
    eventually("Envoy reconnected with a full handshake", || async {
        handshakes(&t.sluice, "full").await >= 1.0
    })
    .await;
    one_proxy_connected(&t.sluice).await;
    assert_eq!(handshakes(&t.sluice, "resumed").await, 0.0);
    assert!(denials(&t.sluice).await.is_empty());
}

#[tokio::test]
async fn a_session_resumed_with_an_expired_certificate_is_refused() {
    use sluice::sim::fleet::{Fleet, FleetConfig};
    use sluice::sim::state::Mode;
    use sluice::sim::xds_tls::{ClientSecurity, ClientTls};

    let files = Files::new();
    let key = ticket_key(&files, "ticket.key", 1);
    let mut t = secure_with("", &["--xds-tls-ticket-key", s(&key)]).await;
    let valid_for = std::time::Duration::from_secs(4);
    let client = mk_client_expiring(&t.ca, "spiffe://acme.test/edge/sim", valid_for);
    let born = std::time::Instant::now();
    let tls = ClientTls::from_pem(
        t.ca.pem.as_bytes(),
        Some((client.cert.as_bytes(), client.key.as_bytes())),
        "localhost",
    )
    .expect("client TLS");
    let fleet = Fleet::start(&FleetConfig {
        xds: t.sluice.xds.to_string(),
        proxies: 1,
        mode: Mode::Delta,
        group: "edge".into(),
        node_prefix: "edge-sim".into(),
        faults: Default::default(),
        runtime_layer: None,
        security: ClientSecurity {
            tls: Some(tls),
            token: None,
        },
    });
    fleet
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("the simulated proxy is configured while its certificate is valid");

    // Past the certificate's expiry, a new process with the same key: the
    // proxy offers its ticket, and the resumed session is refused because
    // the certificate inside it has expired.
    if let Some(left) = (valid_for + std::time::Duration::from_secs(1)).checked_sub(born.elapsed())
    {
        tokio::time::sleep(left).await;
    }
    t.restart(&["--xds-tls-ticket-key", s(&key)]).await;
    eventually("the resumed session is refused", || async {
        t.sluice
            .metric("sluice_xds_tls_handshake_failures_total{reason=\"resumed_certificate\"}")
            .await
            >= 1.0
    })
    .await;
    assert_eq!(handshakes(&t.sluice, "resumed").await, 0.0);
    let status = t.sluice.status().await;
    assert_eq!(
        status["proxies"].as_array().map(Vec::len),
        Some(0),
        "a proxy with an expired certificate got a stream: {status}"
    );
    fleet.stop().await;
}

/// A session made without a client certificate while tokens were accepted
/// is not resumed once certificates are required again: rustls would
/// resume it under the configuration that requires one.
#[tokio::test]
async fn a_session_without_a_certificate_is_not_resumed_once_one_is_required() {
    use sluice::sim::fleet::{Fleet, FleetConfig};
    use sluice::sim::state::Mode;
    use sluice::sim::xds_tls::{ClientSecurity, ClientTls};

    let files = Files::new();
    let key = ticket_key(&files, "ticket.key", 3);
    let t = secure_with(&token_entry(), &["--xds-tls-ticket-key", s(&key)]).await;
    let tls = ClientTls::from_pem(t.ca.pem.as_bytes(), None, "localhost").expect("client TLS");
    let fleet = Fleet::start(&FleetConfig {
        xds: t.sluice.xds.to_string(),
        proxies: 1,
        mode: Mode::Delta,
        group: "batch".into(),
        node_prefix: "batch-sim".into(),
        faults: Default::default(),
        runtime_layer: None,
        security: ClientSecurity {
            tls: Some(tls),
            token: Some(TOKEN.into()),
        },
    });
    fleet
        .wait_all(WAIT, |r| r.view.listeners.contains_key("http"))
        .await
        .expect("the token proxy is configured without a certificate");

    // No more tokens: the stream is ended, and the proxy's reconnect offers
    // the ticket of its certificate-less session.
    let text = std::fs::read_to_string(&t._rules.path).expect("rules");
    t._rules.write(&text.replace(&token_entry(), ""));
    eventually("the certificate-less session is not resumed", || async {
        t.sluice
            .metric("sluice_xds_tls_handshake_failures_total{reason=\"resumed_certificate\"}")
            .await
            >= 1.0
    })
    .await;
    assert_eq!(handshakes(&t.sluice, "resumed").await, 0.0);
    fleet.stop().await;
}
