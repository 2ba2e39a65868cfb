//! `tls` on a listener: defaults, and each error at its position.

use super::*;
use crate::model::{ListenerTls, TlsVersion};

/// A listener `https` whose `tls` mapping (from line 11) is `tls`.
fn mk_tls_file(tls: &str) -> String {
    format!(
        "{SVC}listeners:
  - name: https
    port: 8443
    tls:
{tls}    virtual_hosts:
      - name: web
        domains: [\"*\"]
        routes:
          - to: {{service: web}}
"
    )
}

fn mk_tls(yaml: &str) -> ListenerTls {
    let config = parse("rules.yaml", yaml).expect("valid");
    config.listeners[0].tls.clone().expect("tls")
}

#[test]
fn tls_defaults_to_h2_and_http1_from_tls_1_2() {
    let tls = mk_tls(&mk_tls_file(
        "      cert_file: certs/server.pem\n      key_file: /etc/tls/server.key\n",
    ));
    assert_eq!(tls.cert_file.path, "certs/server.pem");
    assert_eq!(tls.key_file.path, "/etc/tls/server.key");
    assert_eq!(tls.alpn, ["h2", "http/1.1"]);
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert!(tls.pair.is_none(), "the parser reads no certificate file");
    let o = &tls.key_file.origin;
    assert_eq!(
        (o.file.as_str(), o.line, o.column, o.path.as_str()),
        ("rules.yaml", 12, 17, "listeners[0].tls.key_file")
    );
}

#[test]
fn alpn_and_min_version_are_read() {
    let tls = mk_tls(&mk_tls_file(
        "      cert_file: a.pem\n      key_file: a.key\n      alpn: [http/1.1]\n      min_version: \"1.3\"\n",
    ));
    assert_eq!(tls.alpn, ["http/1.1"]);
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    // Unquoted, YAML would read 1.3 as a number; accept it all the same.
    let tls = mk_tls(&mk_tls_file(
        "      cert_file: a.pem\n      key_file: a.key\n      min_version: 1.3\n",
    ));
    assert_eq!(tls.min_version, TlsVersion::Tls13);
}

#[test]
fn a_key_file_is_required() {
    assert_error(
        &mk_tls_file("      cert_file: a.pem\n"),
        11,
        7,
        "listeners[0].tls",
        "missing field `key_file`",
    );
}

#[test]
fn unknown_tls_fields_are_errors() {
    assert_error(
        &mk_tls_file("      cert_file: a.pem\n      key_file: a.key\n      ciphers: [x]\n"),
        13,
        7,
        "listeners[0].tls.ciphers",
        "unknown field `ciphers`",
    );
}

#[test]
fn old_tls_versions_are_refused() {
    assert_error(
        &mk_tls_file("      cert_file: a.pem\n      key_file: a.key\n      min_version: \"1.1\"\n"),
        13,
        20,
        "listeners[0].tls.min_version",
        "unsupported TLS version `1.1`",
    );
}

#[test]
fn alpn_must_name_known_protocols_once() {
    let diags = mk_errors(&mk_tls_file(
        "      cert_file: a.pem\n      key_file: a.key\n      alpn: [h2, spdy/3, h2]\n",
    ));
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_diag(
        &diags[0],
        13,
        18,
        "listeners[0].tls.alpn[1]",
        "unknown ALPN protocol `spdy/3`",
    );
    assert_diag(&diags[1], 13, 26, "listeners[0].tls.alpn[2]", "duplicate");
    assert_error(
        &mk_tls_file("      cert_file: a.pem\n      key_file: a.key\n      alpn: []\n"),
        13,
        13,
        "listeners[0].tls.alpn",
        "alpn must not be empty",
    );
}

#[test]
fn file_names_must_not_be_empty() {
    assert_error(
        &mk_tls_file("      cert_file: \"\"\n      key_file: a.key\n"),
        11,
        18,
        "listeners[0].tls.cert_file",
        "must not be empty",
    );
}
