//! Response messages as they go on the wire, with resource payloads held as
//! `Bytes` so every stream shares one encoding.
//!
//! These mirror `envoy.service.discovery.v3.DiscoveryResponse` and
//! `DeltaDiscoveryResponse` field for field (same tags), so any xDS client —
//! Envoy, or a client built on `envoy-types` — decodes them as the real
//! messages. `envoy-types` generates `Vec<u8>` payloads, which would copy
//! every resource into every response; that is why these exist.

use bytes::Bytes;

use super::resource::{Resource, TypeUrl};

/// `google.protobuf.Any` with a shared payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `envoy.config.core.v3.ControlPlane`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlPlane {
    #[prost(string, tag = "1")]
    pub identifier: String,
}

/// `envoy.service.discovery.v3.DiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DiscoveryResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<Any>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(message, optional, tag = "6")]
    pub control_plane: Option<ControlPlane>,
}

/// `envoy.service.discovery.v3.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaResource {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(message, optional, tag = "2")]
    pub resource: Option<Any>,
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `envoy.service.discovery.v3.DeltaDiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaDiscoveryResponse {
    #[prost(string, tag = "1")]
    pub system_version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<DeltaResource>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(string, repeated, tag = "6")]
    pub removed_resources: Vec<String>,
    #[prost(message, optional, tag = "7")]
    pub control_plane: Option<ControlPlane>,
}

impl Any {
    pub fn of(ty: TypeUrl, resource: &Resource) -> Any {
        Any {
            type_url: ty.as_str().to_string(),
            value: resource.body.clone(),
        }
    }
}

impl DeltaResource {
    pub fn of(ty: TypeUrl, resource: &Resource) -> DeltaResource {
        DeltaResource {
            version: resource.version.clone(),
            resource: Some(Any::of(ty, resource)),
            name: resource.name.clone(),
        }
    }
}

/// The identifier sluice puts in `control_plane` of every response.
pub fn control_plane() -> Option<ControlPlane> {
    Some(ControlPlane {
        identifier: concat!("sluice/", env!("CARGO_PKG_VERSION")).to_string(),
    })
}
