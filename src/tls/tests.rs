//! The certificate check (with certificates made by rcgen), located load
//! errors, redaction, and the rotation watcher's decisions.

use std::path::Path;

use rcgen::{generate_simple_self_signed, CertifiedKey, KeyPair};

use super::*;
use crate::rules;
use sha2::Digest;

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
    let expected: String = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(pair.fingerprint(), expected);
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

/// A self-signed `localhost` certificate on `alg`, valid until `not_after`.
fn mk_cert_with(
    alg: &'static rcgen::SignatureAlgorithm,
    not_after: (i32, u8, u8),
) -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate_for(alg).expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
}

/// Keys made by `openssl req` (P-521 and the like, which rcgen cannot make
/// with ring); the certificates are valid until 2126.
fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// Envoy 1.40 (BoringSSL) serves each of these as a listener certificate;
// tried with `envoy --mode validate` and a TLS handshake.
#[test]
fn the_key_types_envoy_serves_are_accepted() {
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ] {
        let (cert, key) = mk_cert_with(alg, (2031, 5, 17));
        check(&cert, &key).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
    let cert = fixture("p521.crt");
    for key in ["p521.key", "p521-sec1.key"] {
        check(&cert, &fixture(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    for name in ["ed25519", "rsa2048"] {
        check(
            &fixture(&format!("{name}.crt")),
            &fixture(&format!("{name}.key")),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

// Envoy refuses these: "Failed to load certificate chain" (secp256k1),
// "only RSA certificates with 2048-bit or larger keys are supported".
#[test]
fn the_key_types_envoy_refuses_are_refused() {
    for name in ["secp256k1", "rsa1024"] {
        let err = check(
            &fixture(&format!("{name}.crt")),
            &fixture(&format!("{name}.key")),
        )
        .expect_err(name);
        assert!(matches!(err, TlsError::BadKey { .. }), "{name}: {err:?}");
    }
    // ring writes Ed25519 keys as PKCS#8 v2; Envoy cannot read those
    // ("Failed to load private key ... SEQUENCE_LENGTH_MISMATCH").
    let (cert, key) = mk_cert_with(&rcgen::PKCS_ED25519, (2031, 5, 17));
    let err = check(&cert, &key).expect_err("pkcs#8 v2");
    assert!(
        matches!(&err, TlsError::BadKey { reason, .. } if reason.contains("PKCS#8 v2")),
        "{err:?}"
    );
}

#[test]
fn p521_pairs_are_matched_by_public_key() {
    let cert = fixture("p521.crt");
    let err = check(&cert, &fixture("other-p521.key")).expect_err("other key");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    // A key of another curve for a P-521 certificate, and the reverse.
    let (p256_cert, p256_key) = mk_cert_with(&rcgen::PKCS_ECDSA_P256_SHA256, (2031, 5, 17));
    let err = check(&cert, &p256_key).expect_err("p-256 key");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let err = check(&p256_cert, &fixture("p521.key")).expect_err("p-521 key");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    // Without its public key the pair cannot be matched without P-521
    // arithmetic: refused, saying why.
    let err = check(&cert, &fixture("p521-nopublic.key")).expect_err("no public key");
    assert!(
        matches!(&err, TlsError::BadKey { reason, .. } if reason.contains("does not carry its public key")),
        "{err:?}"
    );
}

#[test]
fn the_leaf_not_after_is_read() {
    let (cert, key) = mk_cert_with(&rcgen::PKCS_ECDSA_P256_SHA256, (2031, 5, 17));
    let pair = check(&cert, &key).expect("pair");
    // 2031-05-17T00:00:00Z
    assert_eq!(pair.not_after(), 1_936_742_400);
    assert_eq!(pair.not_after_rfc3339(), "2031-05-17T00:00:00Z");
    // After 2049 X.509 switches from UTCTime to GeneralizedTime.
    let (cert, key) = mk_cert_with(&rcgen::PKCS_ECDSA_P256_SHA256, (2126, 1, 2));
    let pair = check(&cert, &key).expect("pair");
    assert_eq!(pair.not_after_rfc3339(), "2126-01-02T00:00:00Z");
    let pair = check(&fixture("p521.crt"), &fixture("p521.key")).expect("p-521");
    assert!(pair.not_after_rfc3339().starts_with("2126-"), "{pair:?}");
}

#[test]
fn certificates_near_or_past_expiry_are_warned_about() {
    let (cert, key) = mk_cert_with(&rcgen::PKCS_ECDSA_P256_SHA256, (2031, 5, 17));
    let pair = check(&cert, &key).expect("pair");
    let at = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(secs);
    let day = 24 * 3600;
    let not_after = pair.not_after();
    assert_eq!(expiry_warning(&pair, at(not_after - 15 * day)), None);
    let soon = expiry_warning(&pair, at(not_after - 14 * day)).expect("14 days");
    assert_eq!(
        soon,
        "certificate expires at 2031-05-17T00:00:00Z (in 336 hours)"
    );
    let past = expiry_warning(&pair, at(not_after + 1)).expect("expired");
    assert_eq!(
        past,
        "certificate expired at 2031-05-17T00:00:00Z; still serving it"
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
    Ok(CertPair::new(cert, key, "fp".into(), 0))
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
    let served = CertPair::new(b"A".to_vec(), b"a".to_vec(), "fp-a".into(), 0);
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
    let served = CertPair::new(b"A".to_vec(), b"a".to_vec(), "fp-a".into(), 0);
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
