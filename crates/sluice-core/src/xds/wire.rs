//! Response messages as they go on the wire, with resource payloads held as
//! `Bytes` so every stream shares one encoding.
//!
//! These mirror `envoy.service.discovery.v3.DiscoveryResponse` and
//! `DeltaDiscoveryResponse` field for field (same tags), so any xDS client —
//! Envoy, or a client built on `envoy-types` — decodes them as the real
//! messages. `envoy-types` generates `Vec<u8>` payloads, which would copy
//! every resource into every response; that is why these exist.
//!
//! [`Chunked`] writes a response as the gRPC framing sends it: the shared
//! payloads of [`SHARE_AT`] bytes or more as they are, between copied
//! chunks of everything else. prost cannot do that (it copies a `bytes`
//! field into the buffer it is given, and the crate forbids the `unsafe`
//! a splitting `BufMut` would need), so the two responses are encoded by
//! hand here, field by field in tag order as prost does; a test checks the
//! chunks are prost's encoding byte for byte.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

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

/// Payloads this large go to h2 as they are instead of being copied into
/// each stream's response. h2 writes a DATA frame's payload of more than
/// 256 bytes straight from its buffer (vectored), but every chunk is at
/// least one frame and one write: at 16 KiB, h2's default maximum frame
/// size, a shared payload costs no more frames than a copied one would,
/// while a response of many small resources (CDS, EDS) is still one chunk.
/// A canary step sends the same ~100 KB route configuration to every
/// proxy; copying it per stream cost an allocation, a copy and a free per
/// proxy (small next to h2 and the kernel: sluice's CPU per B5 step did
/// not measurably change, docs/benchmarks.md).
pub const SHARE_AT: usize = 16 * 1024;

/// An encoded message as chunks: copied parts, cut from one allocation,
/// and shared payloads in between.
pub struct Chunks {
    done: VecDeque<Bytes>,
    copied: BytesMut,
}

impl Chunks {
    /// Room for `copied` bytes that are not shared payloads.
    pub fn with_capacity(copied: usize) -> Chunks {
        Chunks {
            done: VecDeque::new(),
            copied: BytesMut::with_capacity(copied),
        }
    }

    /// Where the copied bytes are written.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.copied
    }

    /// Appends a payload: shared if it is large, else copied.
    fn payload(&mut self, bytes: &Bytes) {
        if bytes.len() >= SHARE_AT {
            self.cut();
            self.done.push_back(bytes.clone());
        } else {
            self.copied.put_slice(bytes);
        }
    }

    fn cut(&mut self) {
        if !self.copied.is_empty() {
            self.done.push_back(self.copied.split().freeze());
        }
    }

    /// The chunks, in order.
    pub fn finish(mut self) -> VecDeque<Bytes> {
        self.cut();
        self.done
    }
}

/// A response that can be written as [`Chunks`].
pub trait Chunked: Message {
    /// How many of the encoded bytes are shared payloads; the rest is
    /// copied, so the copies fit one allocation of exactly their size.
    fn shared_len(&self) -> usize;

    /// Appends the encoding (prost's, byte for byte) to `out`.
    fn encode_chunks(&self, out: &mut Chunks);
}

fn shared_len(any: Option<&Any>) -> usize {
    match any {
        Some(any) if any.value.len() >= SHARE_AT => any.value.len(),
        _ => 0,
    }
}

/// Key and length of a length-delimited field.
fn delimited(tag: u32, len: usize, buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// A proto3 string field: nothing when empty.
fn string(tag: u32, value: &str, buf: &mut BytesMut) {
    if !value.is_empty() {
        delimited(tag, value.len(), buf);
        buf.put_slice(value.as_bytes());
    }
}

fn any(tag: u32, any: &Any, out: &mut Chunks) {
    delimited(tag, any.encoded_len(), out.buf());
    string(1, &any.type_url, out.buf());
    if !any.value.is_empty() {
        delimited(2, any.value.len(), out.buf());
        out.payload(&any.value);
    }
}

fn control_plane_field(tag: u32, cp: &Option<ControlPlane>, buf: &mut BytesMut) {
    if let Some(cp) = cp {
        prost::encoding::message::encode(tag, cp, buf);
    }
}

impl Chunked for DiscoveryResponse {
    fn shared_len(&self) -> usize {
        self.resources.iter().map(|a| shared_len(Some(a))).sum()
    }

    fn encode_chunks(&self, out: &mut Chunks) {
        let DiscoveryResponse {
            version_info,
            resources,
            type_url,
            nonce,
            control_plane: cp,
        } = self;
        string(1, version_info, out.buf());
        for a in resources {
            any(2, a, out);
        }
        string(4, type_url, out.buf());
        string(5, nonce, out.buf());
        control_plane_field(6, cp, out.buf());
    }
}

impl Chunked for DeltaDiscoveryResponse {
    fn shared_len(&self) -> usize {
        self.resources
            .iter()
            .map(|r| shared_len(r.resource.as_ref()))
            .sum()
    }

    fn encode_chunks(&self, out: &mut Chunks) {
        let DeltaDiscoveryResponse {
            system_version_info,
            resources,
            type_url,
            nonce,
            removed_resources,
            control_plane: cp,
        } = self;
        string(1, system_version_info, out.buf());
        for r in resources {
            let DeltaResource {
                version,
                resource,
                name,
            } = r;
            delimited(2, r.encoded_len(), out.buf());
            string(1, version, out.buf());
            if let Some(a) = resource {
                any(2, a, out);
            }
            string(3, name, out.buf());
        }
        string(4, type_url, out.buf());
        string(5, nonce, out.buf());
        for name in removed_resources {
            // Repeated strings are written even when empty.
            delimited(6, name.len(), out.buf());
            out.buf().put_slice(name.as_bytes());
        }
        control_plane_field(7, cp, out.buf());
    }
}

/// The identifier sluice puts in `control_plane` of every response.
pub fn control_plane() -> Option<ControlPlane> {
    Some(ControlPlane {
        identifier: concat!("sluice/", env!("CARGO_PKG_VERSION")).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Payloads around the sharing threshold, and empty ones.
    fn payload() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            Just(0usize),
            1usize..64,
            Just(SHARE_AT - 1),
            Just(SHARE_AT),
            SHARE_AT..SHARE_AT * 3,
        ]
        .prop_map(|n| Bytes::from(vec![0xa5; n]))
    }

    fn any() -> impl Strategy<Value = Any> {
        ("[a-z./]{0,12}", payload()).prop_map(|(type_url, value)| Any { type_url, value })
    }

    fn control_plane() -> impl Strategy<Value = Option<ControlPlane>> {
        proptest::option::of("[a-z/0-9.]{0,8}".prop_map(|identifier| ControlPlane { identifier }))
    }

    /// What the gRPC framing sends, rejoined.
    fn joined<M: Chunked>(msg: &M) -> Vec<u8> {
        let mut out = Chunks::with_capacity(msg.encoded_len() - msg.shared_len());
        msg.encode_chunks(&mut out);
        let chunks = out.finish();
        for c in &chunks {
            assert!(!c.is_empty(), "no empty chunks: each would be a DATA frame");
        }
        Vec::from(chunks).concat()
    }

    proptest! {
        #[test]
        fn sotw_chunks_are_prosts_encoding(
            version_info in "[0-9a-f]{0,8}",
            resources in proptest::collection::vec(any(), 0..5),
            type_url in "[a-z.]{0,10}",
            nonce in "[0-9]{0,4}",
            control_plane in control_plane(),
        ) {
            let msg = DiscoveryResponse { version_info, resources, type_url, nonce, control_plane };
            prop_assert_eq!(joined(&msg), msg.encode_to_vec());
        }

        #[test]
        fn delta_chunks_are_prosts_encoding(
            system_version_info in "[0-9a-f]{0,8}",
            resources in proptest::collection::vec(
                ("[0-9a-f]{0,6}", proptest::option::of(any()), "[a-z-]{0,8}"),
                0..5,
            ),
            type_url in "[a-z.]{0,10}",
            nonce in "[0-9]{0,4}",
            removed_resources in proptest::collection::vec("[a-z]{0,5}", 0..3),
            control_plane in control_plane(),
        ) {
            let resources = resources
                .into_iter()
                .map(|(version, resource, name)| DeltaResource { version, resource, name })
                .collect();
            let msg = DeltaDiscoveryResponse {
                system_version_info, resources, type_url, nonce, removed_resources, control_plane,
            };
            prop_assert_eq!(joined(&msg), msg.encode_to_vec());
        }
    }

    #[test]
    fn only_large_payloads_are_shared() {
        let big = Bytes::from(vec![1u8; SHARE_AT]);
        let msg = DeltaDiscoveryResponse {
            resources: (0..3)
                .map(|i| DeltaResource {
                    version: "v".into(),
                    resource: Some(Any {
                        type_url: "t".into(),
                        value: if i == 1 {
                            big.clone()
                        } else {
                            Bytes::from_static(b"small")
                        },
                    }),
                    name: format!("r{i}"),
                })
                .collect(),
            nonce: "1".into(),
            ..Default::default()
        };
        assert_eq!(msg.shared_len(), SHARE_AT);
        let mut out = Chunks::with_capacity(msg.encoded_len() - msg.shared_len());
        msg.encode_chunks(&mut out);
        let chunks = out.finish();
        let shared: Vec<_> = chunks
            .iter()
            .filter(|c| c.as_ptr() == big.as_ptr())
            .collect();
        assert_eq!(shared.len(), 1);
        assert_eq!(chunks.len(), 3, "before, the shared payload, after");
    }
}
