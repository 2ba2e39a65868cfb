//! Listener TLS: the transport socket that fetches the certificate over
//! SDS, the secret itself, and the listener staying byte-identical when
//! only the certificate changes.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source, transport_socket, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, tls_parameters::TlsProtocol, DownstreamTlsContext, Secret,
};

use super::*;

fn mk_tls(cert: &str, key: &str) -> ListenerTls {
    ListenerTls {
        cert_file: PemFile {
            path: "certs/server.pem".into(),
            origin: Origin::default(),
        },
        key_file: PemFile {
            path: "certs/server.key".into(),
            origin: Origin::default(),
        },
        alpn: vec!["h2".into(), "http/1.1".into()],
        min_version: TlsVersion::Tls12,
        pair: Some(Arc::new(CertPair::new(
            cert.as_bytes().to_vec(),
            key.as_bytes().to_vec(),
            format!("fp-{cert}"),
            0,
        ))),
    }
}

/// [`mk_simple`] with TLS on its listener `http`.
fn mk_tls_config(cert: &str, key: &str) -> Config {
    let mut config = mk_simple();
    config.listeners_mut()[0].tls = Some(mk_tls(cert, key));
    config
}

/// The fallback snapshot's listener `http`, decoded.
fn http_listener(snaps: &Snapshots) -> EnvoyListener {
    let res = snaps
        .fallback
        .get(TypeUrl::Listener, "http")
        .expect("listener");
    EnvoyListener::decode(res.body.as_ref()).expect("decodes")
}

fn tls_context(l: &EnvoyListener) -> DownstreamTlsContext {
    let socket = l.filter_chains[0]
        .transport_socket
        .as_ref()
        .expect("a transport socket");
    assert_eq!(socket.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        panic!("typed config expected");
    };
    DownstreamTlsContext::decode(any.value.as_slice()).expect("decodes")
}

#[test]
fn a_tls_listener_fetches_its_certificate_over_ads() {
    let snaps = compile(&mk_tls_config("CERT-A", "KEY-A")).expect("compiles");
    let snap = &snaps.fallback;
    let ctx = tls_context(&http_listener(&snaps));
    let common = ctx.common_tls_context.expect("common context");
    assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
    let params = common.tls_params.expect("tls params");
    assert_eq!(
        params.tls_minimum_protocol_version,
        TlsProtocol::TlSv12 as i32
    );
    assert!(common.tls_certificates.is_empty(), "no inline certificate");
    let [sds] = common.tls_certificate_sds_secret_configs.as_slice() else {
        panic!("one SDS config expected");
    };
    assert_eq!(sds.name, "listener/http/cert");
    assert_eq!(sds.sds_config, Some(ads_config_source()));

    let secret = Secret::decode(
        snap.get(TypeUrl::Secret, "listener/http/cert")
            .expect("the secret is in SDS")
            .body
            .as_ref(),
    )
    .expect("decodes");
    let Some(secret::Type::TlsCertificate(cert)) = secret.r#type else {
        panic!("a TLS certificate secret expected");
    };
    let inline = |d: Option<DataSource>| match d.and_then(|d| d.specifier) {
        Some(data_source::Specifier::InlineBytes(b)) => b,
        other => panic!("inline bytes expected, got {other:?}"),
    };
    assert_eq!(inline(cert.certificate_chain), b"CERT-A");
    assert_eq!(inline(cert.private_key), b"KEY-A");
}

#[test]
fn min_version_and_alpn_reach_the_context() {
    let mut config = mk_tls_config("C", "K");
    let tls = config.listeners_mut()[0].tls.as_mut().expect("tls");
    tls.min_version = TlsVersion::Tls13;
    tls.alpn = vec!["http/1.1".into()];
    let snaps = compile(&config).expect("compiles");
    let common = tls_context(&http_listener(&snaps))
        .common_tls_context
        .expect("common");
    assert_eq!(common.alpn_protocols, ["http/1.1"]);
    assert_eq!(
        common
            .tls_params
            .expect("params")
            .tls_minimum_protocol_version,
        TlsProtocol::TlSv13 as i32
    );
}

#[test]
fn a_new_certificate_changes_the_secret_and_not_the_listener() {
    let a = compile(&mk_tls_config("CERT-A", "KEY-A")).expect("compiles");
    let b = compile(&mk_tls_config("CERT-B", "KEY-B")).expect("compiles");
    for ty in [
        TypeUrl::Cluster,
        TypeUrl::Endpoint,
        TypeUrl::Listener,
        TypeUrl::Route,
    ] {
        assert_eq!(a.fallback.version(ty), b.fallback.version(ty), "{ty:?}");
    }
    let body = |s: &Snapshots| {
        s.fallback
            .get(TypeUrl::Listener, "http")
            .expect("l")
            .body
            .clone()
    };
    assert_eq!(body(&a), body(&b), "listener bytes");
    assert_ne!(
        a.fallback.version(TypeUrl::Secret),
        b.fallback.version(TypeUrl::Secret)
    );
}

#[test]
fn plain_listeners_have_no_transport_socket_and_no_secrets() {
    let snaps = compile(&mk_simple()).expect("compiles");
    assert!(snaps.fallback.resources(TypeUrl::Secret).is_empty());
    assert_eq!(
        http_listener(&snaps).filter_chains[0].transport_socket,
        None
    );
}

#[test]
fn a_group_gets_only_the_secrets_of_its_listeners() {
    let mut config = mk_tls_config("C", "K");
    config.listeners_mut()[0].groups = Some(vec!["edge".into()]);
    let mut other = config.listeners[0].clone();
    other.name = "internal".into();
    other.port = 10001;
    other.groups = Some(vec!["core".into()]);
    config.listeners_mut().push(other);
    let snaps = compile(&config).expect("compiles");
    let names = |g: &str| -> Vec<String> {
        snaps.groups[g]
            .resources(TypeUrl::Secret)
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(names("edge"), ["listener/http/cert"]);
    assert_eq!(names("core"), ["listener/internal/cert"]);
    assert!(snaps.fallback.resources(TypeUrl::Secret).is_empty());
}

#[test]
fn a_certificate_that_was_never_read_does_not_compile() {
    let mut config = mk_tls_config("C", "K");
    config.listeners_mut()[0].tls.as_mut().expect("tls").pair = None;
    assert_eq!(
        compile(&config),
        Err(CompileError::MissingCertificate {
            listener: "http".into()
        })
    );
}
