//! The bottom of the simulator: how a resource's bytes fail to decode
//! ([`DecodeError`], whose text is the NACK's `error_detail`) and the
//! protobuf decoding every resource and filter decoder shares: a message
//! from bytes, a protobuf `Duration`, a socket address. Nothing here knows
//! a resource type; every decoder above builds on it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address};
use prost::Message;

/// Why a resource was rejected. `Display` is the text that goes into the
/// NACK's `error_detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("Unable to unpack as {message}: {reason}")]
    Proto {
        message: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// Valid for Envoy, but outside what the simulator models.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

pub(super) fn proto<M: Message + Default>(
    bytes: &[u8],
    message: &'static str,
) -> Result<M, DecodeError> {
    M::decode(bytes).map_err(|e| DecodeError::Proto {
        message,
        reason: e.to_string(),
    })
}

pub(super) fn pb_duration(d: &envoy_types::pb::google::protobuf::Duration) -> Duration {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    Duration::new(secs, nanos)
}

pub(super) fn socket_addr(a: Option<&Address>) -> Result<SocketAddr, DecodeError> {
    let Some(address::Address::SocketAddress(sa)) = a.and_then(|a| a.address.as_ref()) else {
        return Err(DecodeError::Unsupported(
            "address that is not a socket address".into(),
        ));
    };
    let ip: IpAddr = sa
        .address
        .parse()
        .map_err(|_| DecodeError::Invalid(format!("malformed IP address: {}", sa.address)))?;
    let port = match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(p)) => {
            u16::try_from(p).map_err(|_| DecodeError::Invalid(format!("invalid port {p}")))?
        }
        _ => return Err(DecodeError::Unsupported("named ports".into())),
    };
    Ok(SocketAddr::new(ip, port))
}
