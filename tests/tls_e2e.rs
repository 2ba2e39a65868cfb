//! Listener TLS with a real Envoy: the certificate comes from files beside
//! the rules, reaches Envoy as an SDS secret over ADS, and is rotated by
//! an atomic rename (a Kubernetes-style symlink swap) — Envoy then presents
//! the new certificate without the listener being modified or drained. A
//! garbage key is refused and the last good certificate stays served.
//! The check lets through the key types Envoy serves (P-521, Ed25519) and
//! refuses a key Envoy cannot read; an expired certificate is still
//! served, its notAfter shown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

/// These tests feed Envoy over plaintext xDS on loopback, where the
/// listener's key is sent only with `--xds-insecure` (the authenticated
/// path is tests/xds_security.rs).
const INSECURE: &[&str] = &["--xds-insecure"];

/// A test CA and what clients need to trust it.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

/// A server certificate for `localhost` signed by the CA.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    /// Hex, as Envoy's `/certs` prints it.
    serial: String,
}

fn mk_ca() -> Ca {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("ca cert");
    Ca {
        issuer: Issuer::new(params, key),
        der: cert.der().clone(),
    }
}

/// A leaf valid until 2031-05-17T00:00:00Z.
fn mk_leaf(ca: &Ca, serial: [u8; 4]) -> Leaf {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_after = rcgen::date_time_ymd(2031, 5, 17);
    let cert = params.signed_by(&key, &ca.issuer).expect("leaf cert");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn rules(backend: &Backend) -> String {
    format!(
        r#"services:
  - name: web
    endpoints: [{{address: 127.0.0.1, port: {port}}}]
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls:
      cert_file: certs/server.pem
      key_file: certs/server.key
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {{match: {{prefix: /}}, to: {{service: web}}}}
"#,
        port = backend.addr.port()
    )
}

/// Puts `leaf` in place as Kubernetes secret volumes (which cert-manager
/// fills) do: both files written to a new directory, then the `certs`
/// symlink renamed onto it, so the pair changes in one atomic step.
fn install(dir: &Path, leaf: &Leaf) {
    let generation = dir.join(format!("gen-{}", leaf.serial));
    std::fs::create_dir(&generation).expect("mkdir");
    std::fs::write(generation.join("server.pem"), &leaf.cert_pem).expect("write cert");
    std::fs::write(generation.join("server.key"), &leaf.key_pem).expect("write key");
    let tmp = dir.join("certs.tmp");
    std::os::unix::fs::symlink(&generation, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("certs")).expect("rename");
}

/// One HTTPS request over a new connection, trusting only `ca`: the leaf
/// certificate the server presented and the response (status line and
/// body), or why it failed.
fn https_get(ca: &Ca, port: u16) -> Result<(CertificateDer<'static>, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .map_err(|e| format!("handshake or write: {e}"))?;
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no peer certificate")?
        .clone()
        .into_owned();
    let mut response = Vec::new();
    // Envoy may close without close_notify once the response is complete.
    if let Err(e) = tls.read_to_end(&mut response) {
        if e.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(format!("read: {e}"));
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok((leaf, format!("{status} {body}")))
}

async fn get(ca: &Arc<Ca>, port: u16) -> Result<(CertificateDer<'static>, String), String> {
    let ca = ca.clone();
    tokio::task::spawn_blocking(move || https_get(&ca, port))
        .await
        .expect("join")
}

/// Serial numbers of the certificates Envoy's `/certs` lists.
async fn envoy_serials(envoy: &Envoy) -> Vec<String> {
    let doc = get_json(&format!("http://{}/certs", envoy.admin)).await;
    doc["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten())
        .filter_map(|c| c["serial_number"].as_str())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Listener lifecycle counters that move when Envoy updates, replaces or
/// drains a listener.
const LISTENER_STATS: [&str; 4] = [
    "listener_manager.listener_modified",
    "listener_manager.listener_added",
    "listener_manager.listener_removed",
    "listener_manager.total_listeners_draining",
];

async fn listener_stats(envoy: &Envoy) -> Vec<f64> {
    let mut out = Vec::new();
    for name in LISTENER_STATS {
        out.push(envoy.stat(name).await);
    }
    out
}

/// Envoy accepted every push: no `sluice_xds_nacks_total` series above 0.
async fn assert_no_nacks(sluice: &Sluice) {
    let metrics = get_text(&format!("http://{}/metrics", sluice.admin)).await;
    let nacks: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_xds_nacks_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(nacks.is_empty(), "Envoy rejected a push: {nacks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_draining_the_listener() {
    let web = backend("web").await;
    let ca = Arc::new(mk_ca());
    let a = mk_leaf(&ca, [0x1a, 0x00, 0x00, 0x0a]);
    let b = mk_leaf(&ca, [0x1b, 0x00, 0x00, 0x0b]);
    let rules = RulesFile::new(&rules(&web));
    let dir = rules.dir();
    install(dir, &a);

    let (sluice, envoy, port) =
        sluice_and_envoy_with(&rules.path, "envoy-tls", "https", INSECURE).await;

    eventually("envoy answers over TLS", || async {
        get(&ca, port).await.is_ok()
    })
    .await;
    let (leaf, response) = get(&ca, port).await.expect("answered");
    assert_eq!(leaf, a.der, "envoy presents certificate A");
    assert_eq!(response, "HTTP/1.1 200 OK web");
    assert_eq!(envoy_serials(&envoy).await, [a.serial.as_str()]);
    let before = listener_stats(&envoy).await;
    assert_eq!(before[1], 1.0, "listener_added counts the https listener");
    assert_eq!(before[3], 0.0, "nothing drains at start");
    let status = sluice.status().await;
    let fingerprint = |der: &CertificateDer<'_>| -> String {
        Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        status["rules"]["certificates"]["https"]["fingerprint"],
        fingerprint(&a.der)
    );
    let cert_status = &status["rules"]["certificates"]["https"];
    assert_eq!(cert_status["not_after"], "2031-05-17T00:00:00Z");
    assert_eq!(cert_status["not_after_seconds"], 1_936_742_400);
    let expiry = r#"sluice_tls_certificate_expiry_timestamp_seconds{listener="https"}"#;
    assert_eq!(sluice.metric(expiry).await, 1_936_742_400.0);

    // Rotate to B.
    install(dir, &b);
    eventually("envoy presents certificate B", || async {
        matches!(get(&ca, port).await, Ok((leaf, _)) if leaf == b.der)
    })
    .await;
    let (_, response) = get(&ca, port).await.expect("B serves");
    assert_eq!(response, "HTTP/1.1 200 OK web");
    assert_eq!(envoy_serials(&envoy).await, [b.serial.as_str()]);
    assert_eq!(
        listener_stats(&envoy).await,
        before,
        "{LISTENER_STATS:?}: the listener was neither modified nor drained"
    );
    let status = sluice.status().await;
    let cert_status = &status["rules"]["certificates"]["https"];
    assert_eq!(cert_status["fingerprint"], fingerprint(&b.der));
    assert_eq!(cert_status["reloads"], 1);

    // A garbage key (renamed over the file, as certbot replaces files) is
    // refused; B stays served.
    write_atomically(&dir.join("certs/server.key"), "not a key\n");
    eventually("sluice rejects the garbage key", || async {
        let status = sluice.status().await;
        status["rules"]["certificates"]["https"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no PEM private key"))
    })
    .await;
    assert_eq!(sluice.metric("sluice_tls_reload_errors_total").await, 1.0);
    let (leaf, response) = get(&ca, port).await.expect("still serving");
    assert_eq!(leaf, b.der, "envoy still presents certificate B");
    assert_eq!(response, "HTTP/1.1 200 OK web");
    assert_eq!(envoy_serials(&envoy).await, [b.serial.as_str()]);
    assert_eq!(listener_stats(&envoy).await, before);
    assert_no_nacks(&sluice).await;

    let text = sluice.status_text().await;
    let line = format!(
        "certificate https: sha256 {}  not_after=2031-05-17T00:00:00Z  reloads=1 rejected=1\n  last reload REJECTED: ",
        fingerprint(&b.der)
    );
    assert!(text.contains(&line), "{text}");

    // The key never shows in sluice's debug output.
    let debug = get_text(&format!("http://{}/debug/config", sluice.admin)).await;
    let key_line = b.key_pem.lines().nth(1).expect("a base64 line");
    assert!(!debug.contains(key_line), "private key in /debug/config");
    assert!(debug.contains("<redacted>"), "{debug}");
}

/// A TLS listener added to the rules before its files exist is refused
/// (reported once, the previous config stays) and taken as soon as the
/// files appear, without touching the rules again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_files_appear_later_is_served_then() {
    let web = backend("web").await;
    let ca = mk_ca();
    let a = mk_leaf(&ca, [0x2a, 0x00, 0x00, 0x0a]);
    let tls_rules = rules(&web);
    let (plain, _) = tls_rules.split_once("    tls:\n").expect("tls block");
    let plain = format!(
        "{plain}{}",
        tls_rules
            .split_once("key_file: certs/server.key\n")
            .expect("tls end")
            .1
    );
    let rules_file = RulesFile::new(&plain);
    let sluice = Sluice::start_with(&rules_file.path, "127.0.0.1:0", INSECURE);

    rules_file.write(&tls_rules);
    eventually("the missing certificate is reported", || async {
        let status = sluice.status().await;
        status["rules"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("listeners[0].tls.cert_file: cannot read"))
    })
    .await;
    assert!(sluice.status().await["rules"]["certificates"]
        .as_object()
        .is_none_or(|c| c.is_empty()));

    install(rules_file.dir(), &a);
    eventually("the listener is served with its certificate", || async {
        let status = sluice.status().await;
        status["rules"]["certificates"]["https"]["fingerprint"].is_string()
    })
    .await;
    let status = sluice.status().await;
    assert_eq!(status["rules"]["last_error"], serde_json::Value::Null);
    assert_eq!(status["rules"]["rejected_reloads"], 1, "reported once");
    assert_eq!(sluice.metric("sluice_rules_reload_errors_total").await, 1.0);
    let debug = get_json(&format!("http://{}/debug/config", sluice.admin)).await;
    let tls = &debug["rules"]["listeners"][0]["tls"];
    assert_eq!(tls["cert_file"]["path"], "certs/server.pem");
    assert_eq!(tls["pair"]["key"], "<redacted>");
}

/// Key types ring cannot check the usual way (P-521) or that were once
/// thought unsupported (Ed25519) are pushed and Envoy serves them; a key
/// Envoy cannot read (PKCS#8 v2) is refused before it is pushed; an
/// expired certificate is served, its notAfter in status and metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_serves_what_the_check_accepts() {
    let web = backend("web").await;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let fixture = |name: &str, serial: &str| Leaf {
        cert_pem: std::fs::read_to_string(fixtures.join(format!("{name}.crt"))).expect("cert"),
        key_pem: std::fs::read_to_string(fixtures.join(format!("{name}.key"))).expect("key"),
        der: CertificateDer::from(Vec::new()),
        serial: serial.to_owned(),
    };
    // `openssl x509 -noout -serial` of the fixtures.
    let p521 = fixture("p521", "24ef450dab141c7aa995e77b182278fdfcac6927");
    let ed25519 = fixture("ed25519", "568a4423f5c559af09e88d7fd44448ca4a64e0b3");
    let self_signed = |alg, serial: [u8; 2], not_after: (i32, u8, u8)| {
        let key = KeyPair::generate_for(alg).expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).expect("cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
        }
    };
    // ring writes Ed25519 keys as PKCS#8 v2.
    let ed25519_v2 = self_signed(&rcgen::PKCS_ED25519, [0x3e, 0xd2], (2031, 5, 17));
    let expired = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, [0x3e, 0xc0], (2020, 1, 1));

    let rules = RulesFile::new(&rules(&web));
    let dir = rules.dir();
    install(dir, &p521);
    let (sluice, envoy, _) =
        sluice_and_envoy_with(&rules.path, "envoy-tls", "https", INSECURE).await;
    eventually("envoy serves the P-521 certificate", || async {
        envoy_serials(&envoy).await == [p521.serial.as_str()]
    })
    .await;

    install(dir, &ed25519_v2);
    eventually("sluice refuses the PKCS#8 v2 key", || async {
        let status = sluice.status().await;
        status["rules"]["certificates"]["https"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("PKCS#8 v2"))
    })
    .await;
    assert_eq!(envoy_serials(&envoy).await, [p521.serial.as_str()]);

    install(dir, &ed25519);
    eventually("envoy serves the Ed25519 certificate", || async {
        envoy_serials(&envoy).await == [ed25519.serial.as_str()]
    })
    .await;

    install(dir, &expired);
    eventually("envoy serves the expired certificate", || async {
        envoy_serials(&envoy).await == [expired.serial.as_str()]
    })
    .await;
    let status = sluice.status().await;
    let cert_status = &status["rules"]["certificates"]["https"];
    assert_eq!(cert_status["not_after"], "2020-01-01T00:00:00Z");
    assert_eq!(cert_status["last_error"], serde_json::Value::Null);
    let expiry = r#"sluice_tls_certificate_expiry_timestamp_seconds{listener="https"}"#;
    assert_eq!(sluice.metric(expiry).await, 1_577_836_800.0);
    assert_no_nacks(&sluice).await;
}
