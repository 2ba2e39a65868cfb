//! The certificate check (with certificates made by rcgen), located load
//! errors, redaction, and the rotation watcher's decisions.

use std::path::Path;

use rcgen::{generate_simple_self_signed, CertifiedKey, KeyPair};

use super::*;
use crate::rules;

/// A self-signed certificate for `localhost`: (cert PEM, key PEM, DER).
fn mk_cert() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let CertifiedKey { cert, signing_key } =
        generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    (
        cert.pem().into_bytes(),
        signing_key.serialize_pem().into_bytes(),
        cert.der().to_vec(),
    )
}

const RULES: &str = "services:
  - name: web
    endpoints: [{address: 127.0.0.1, port: 8081}]
listeners:
  - name: https
    port: 8443
    tls:
      cert_file: server.pem
      key_file: keys/server.key
    virtual_hosts:
      - name: web
        domains: [\"*\"]
        routes: [{to: {service: web}}]
";

fn mk_rules() -> Config {
    rules::parse("rules.yaml", RULES).expect("valid rules")
}

fn listener_tls(config: &Config) -> &ListenerTls {
    config.listeners[0].tls.as_ref().expect("tls")
}

/// Writes `cert` and `key` where [`RULES`] names them under `dir`.
fn write_pair(dir: &Path, cert: &[u8], key: &[u8]) {
    std::fs::create_dir_all(dir.join("keys")).expect("mkdir");
    std::fs::write(dir.join("server.pem"), cert).expect("write cert");
    std::fs::write(dir.join("keys/server.key"), key).expect("write key");
}

fn check(cert: &[u8], key: &[u8]) -> Result<CertPair, TlsError> {
    let config = mk_rules();
    parse_pair(
        Path::new("/etc/tls"),
        listener_tls(&config),
        cert.to_vec(),
        key.to_vec(),
    )
}

#[test]
fn a_matching_pair_is_accepted_with_its_fingerprint() {
    let (cert, key, der) = mk_cert();
    let pair = check(&cert, &key).expect("valid pair");
    assert_eq!(pair.cert_pem(), cert.as_slice());
    assert_eq!(pair.key_pem(), key.as_slice());
    assert_eq!(pair.fingerprint(), hex(&Sha256::digest(&der)));
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch() {
    let (cert, _, _) = mk_cert();
    let (_, other_key, _) = mk_cert();
    let err = check(&cert, &other_key).expect_err("mismatch");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the private key in /etc/tls/keys/server.key does not belong to the certificate in /etc/tls/server.pem"
    );
}

#[test]
fn files_without_the_expected_pem_are_refused() {
    let (cert, key, _) = mk_cert();
    let err = check(&cert, b"not a key").expect_err("no key");
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    // A key where the certificate should be, and the other way round.
    let err = check(&key, &key).expect_err("no cert");
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    let err = check(&cert, &cert).expect_err("no key");
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    let bad_base64 = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let err = check(bad_base64, &key).expect_err("bad pem");
    assert!(
        matches!(
            err,
            TlsError::BadPem {
                part: Part::Cert,
                ..
            }
        ),
        "{err:?}"
    );
    let bad_key = b"-----BEGIN PRIVATE KEY-----\nsecret!\n-----END PRIVATE KEY-----\n";
    let err = check(&cert, bad_key).expect_err("bad key pem");
    assert!(
        matches!(
            err,
            TlsError::BadPem {
                part: Part::Key,
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing of the key is quoted, not even the bad character.
    assert_eq!(
        err.to_string(),
        "/etc/tls/keys/server.key: malformed PEM: base64 decode error"
    );
    // Valid PEM around bytes that are no certificate.
    let not_x509 = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = check(not_x509, &key).expect_err("bad cert");
    assert!(matches!(err, TlsError::BadCertificate { .. }), "{err:?}");
}

#[test]
fn an_unsupported_key_type_is_refused() {
    // Valid PEM with a PKCS#8 label around a DER that is no usable key.
    let (cert, _, _) = mk_cert();
    let junk_pkcs8 = b"-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
    let err = check(&cert, junk_pkcs8).expect_err("bad key");
    assert!(matches!(err, TlsError::BadKey { .. }), "{err:?}");
}

#[test]
fn ed25519_keys_are_refused_as_envoy_would() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    let err = check(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect_err("ed25519");
    assert!(
        matches!(&err, TlsError::BadKey { reason, .. } if reason.contains("ED25519 keys are not supported")),
        "{err:?}"
    );
}

#[test]
fn one_file_may_hold_the_certificate_and_the_key() {
    let (cert, key, _) = mk_cert();
    let both = [cert.as_slice(), key.as_slice()].concat();
    check(&both, &both).expect("a combined PEM file");
}

#[test]
fn load_fills_every_pair_from_files_beside_the_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = mk_cert();
    write_pair(dir.path(), &cert, &key);
    let mut config = mk_rules();
    load(&mut config, dir.path()).expect("loads");
    let pair = listener_tls(&config).pair.as_ref().expect("pair");
    assert_eq!(pair.key_pem(), key.as_slice());
}

#[test]
fn load_errors_point_at_the_field_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = mk_rules();
    let err = load(&mut config, dir.path()).expect_err("missing cert");
    let [d] = err.diagnostics.as_slice() else {
        panic!("one diagnostic expected: {err}");
    };
    assert_eq!(
        (d.file.as_str(), d.line, d.column, d.path.as_str()),
        ("rules.yaml", 8, 18, "listeners[0].tls.cert_file")
    );
    let cert_path = dir.path().join("server.pem");
    assert!(
        d.message
            .starts_with(&format!("cannot read {}: ", cert_path.display())),
        "{d}"
    );

    let (cert, _, _) = mk_cert();
    write_pair(dir.path(), &cert, b"garbage");
    let err = load(&mut config, dir.path()).expect_err("bad key");
    let [d] = err.diagnostics.as_slice() else {
        panic!("one diagnostic expected: {err}");
    };
    assert_eq!((d.line, d.column), (9, 17), "{d}");
    assert_eq!(d.path, "listeners[0].tls.key_file");
    assert!(d.message.contains("no PEM private key"), "{d}");
    assert!(listener_tls(&config).pair.is_none());
}

#[test]
fn the_private_key_never_shows_in_debug_or_json() {
    let (cert, key, _) = mk_cert();
    let pair = check(&cert, &key).expect("valid");
    let key_text = String::from_utf8(key).expect("pem is text");
    let body: String = key_text.lines().nth(1).expect("a base64 line").to_owned();
    let debug = format!("{pair:?}");
    let json = serde_json::to_string(&pair).expect("json");
    for shown in [&debug, &json] {
        assert!(!shown.contains(&body), "key material in {shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains(pair.fingerprint()), "{shown}");
    }
}

/// A pair that "parses" whatever it is given, for the rotation tests.
fn accept(cert: Vec<u8>, key: Vec<u8>) -> Result<CertPair, TlsError> {
    Ok(CertPair::new(cert, key, "fp".into()))
}

fn reject(_: Vec<u8>, _: Vec<u8>) -> Result<CertPair, TlsError> {
    Err(TlsError::NoKey { file: "k".into() })
}

fn files(cert: &str, key: &str) -> Observed {
    Observed::Files {
        cert: cert.as_bytes().to_vec(),
        key: key.as_bytes().to_vec(),
    }
}

#[test]
fn rotation_acts_once_new_content_is_seen_twice() {
    let served = CertPair::new(b"A".to_vec(), b"a".to_vec(), "fp-a".into());
    let mut r = Rotation::default();
    assert!(matches!(
        r.observe("l", &served, files("A", "a"), accept),
        Verdict::Unchanged
    ));
    // The certificate was renamed into place, the key not yet.
    assert!(matches!(
        r.observe("l", &served, files("B", "a"), reject),
        Verdict::Settling
    ));
    assert!(matches!(
        r.observe("l", &served, files("B", "b"), reject),
        Verdict::Settling
    ));
    let Verdict::Accept(pair) = r.observe("l", &served, files("B", "b"), accept) else {
        panic!("settled content is checked and accepted");
    };
    assert_eq!((pair.cert_pem(), pair.key_pem()), (&b"B"[..], &b"b"[..]));
}

#[test]
fn rotation_reports_a_bad_pair_once_and_forgets_it_when_fixed() {
    let served = CertPair::new(b"A".to_vec(), b"a".to_vec(), "fp-a".into());
    let mut r = Rotation::default();
    assert!(matches!(
        r.observe("l", &served, files("A", "x"), reject),
        Verdict::Settling
    ));
    let Verdict::Reject(why) = r.observe("l", &served, files("A", "x"), reject) else {
        panic!("rejected");
    };
    assert_eq!(
        why,
        "k: no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) found"
    );
    for _ in 0..3 {
        let v = r.observe("l", &served, files("A", "x"), reject);
        assert!(matches!(v, Verdict::StillRejected), "{v:?}");
    }
    // A missing file is judged like bad content.
    let gone = Observed::Unreadable("cannot read k: gone".into());
    assert!(matches!(
        r.observe("l", &served, gone.clone(), accept),
        Verdict::Settling
    ));
    assert!(matches!(
        r.observe("l", &served, gone, accept),
        Verdict::Reject(_)
    ));
    // Back to what is served, then the same bad content again: reported anew.
    assert!(matches!(
        r.observe("l", &served, files("A", "a"), accept),
        Verdict::Unchanged
    ));
    assert!(matches!(
        r.observe("l", &served, files("A", "x"), reject),
        Verdict::Settling
    ));
    assert!(matches!(
        r.observe("l", &served, files("A", "x"), reject),
        Verdict::Reject(_)
    ));
}
