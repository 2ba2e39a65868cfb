//! Listener TLS → a `DownstreamTlsContext` transport socket on the
//! listener's filter chain and an SDS `Secret` holding the certificate.
//!
//! The transport socket names the secret (`listener/<name>/cert`, from the
//! listener name only) and fetches it over ADS, so the listener's bytes do
//! not depend on the certificate: a rotation changes only the secret, and
//! Envoy swaps certificates for new connections without draining the
//! listener.

use envoy_types::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TransportSocket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, tls_parameters::TlsProtocol, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    Secret, TlsCertificate, TlsParameters,
};
use envoy_types::util::pack_any;

use super::{ads_config_source, CompileError};
use crate::model::{ListenerTls, TlsVersion};

pub(super) const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

/// The SDS name of a listener's certificate.
pub fn secret_name(listener: &str) -> String {
    format!("listener/{listener}/cert")
}

pub(super) fn transport_socket(listener: &str, tls: &ListenerTls) -> TransportSocket {
    let min = match tls.min_version {
        TlsVersion::Tls12 => TlsProtocol::TlSv12,
        TlsVersion::Tls13 => TlsProtocol::TlSv13,
    };
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(TlsParameters {
                tls_minimum_protocol_version: min as i32,
                ..Default::default()
            }),
            tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                name: secret_name(listener),
                sds_config: Some(ads_config_source()),
            }],
            alpn_protocols: tls.alpn.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}

/// The certificate and key, inline. Fails when the files were never read
/// (`tls::load` fills the pair before compile).
pub(super) fn secret(listener: &str, tls: &ListenerTls) -> Result<Secret, CompileError> {
    let pair = tls
        .pair
        .as_ref()
        .ok_or_else(|| CompileError::MissingCertificate {
            listener: listener.to_owned(),
        })?;
    let inline = |bytes: &[u8]| DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    };
    Ok(Secret {
        name: secret_name(listener),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(pair.cert_pem())),
            private_key: Some(inline(pair.key_pem())),
            ..Default::default()
        })),
    })
}
