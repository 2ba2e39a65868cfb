//! `ClusterLoadAssignment`s encoded from cached endpoint bytes.
//!
//! Encoding a CLA with prost is mostly its `LbEndpoint`s: a few nested
//! messages each, whose lengths prost computes on the way (≈ 75 µs for
//! 1,000 endpoints). Here each distinct endpoint (address, port, health,
//! weight: all an `LbEndpoint` holds) is encoded once, as a complete
//! record of the repeated `lb_endpoints` field (key, length, message), and
//! kept in an [`EndpointCache`] that lives across compiles. A CLA is then
//! the prost encoding of its other fields with those records spliced in
//! at the place prost puts that field. Protobuf encodes a repeated field
//! as a sequence of such records and prost writes fields in a fixed
//! order, so the result is byte for byte prost's encoding of the whole
//! message (a property test compares the two), and versions do not
//! depend on what the cache held.

use std::collections::BTreeMap;
use std::mem;
use std::net::IpAddr;

use bytes::Bytes;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use super::cluster::{endpoint_groups, lb_endpoint, locality_group};
use crate::model;
use crate::xds::Resource;

/// Field number of `ClusterLoadAssignment.endpoints` and of
/// `LocalityLbEndpoints.lb_endpoints`: both are 2.
const REPEATED_FIELD: u32 = 2;

/// Encoded `lb_endpoints` records by endpoint. What one compile does not
/// use is dropped by the next, so the cache holds at most the endpoints
/// of two consecutive configs.
#[derive(Debug, Default)]
pub struct EndpointCache {
    current: BTreeMap<EndpointKey, Bytes>,
    previous: BTreeMap<EndpointKey, Bytes>,
}

/// Everything [`lb_endpoint`] reads from a `model::Endpoint`.
type EndpointKey = (IpAddr, u16, model::Health, u32);

impl EndpointCache {
    /// Starts a compile: entries the last compile did not use go.
    pub(super) fn start(&mut self) {
        self.previous = mem::take(&mut self.current);
    }

    /// The `lb_endpoints` record of `ep`.
    fn record(&mut self, ep: &model::Endpoint) -> Bytes {
        let key = (ep.address, ep.port, ep.health, ep.weight);
        if let Some(b) = self.current.get(&key) {
            return b.clone();
        }
        let bytes = self.previous.remove(&key).unwrap_or_else(|| {
            let msg = lb_endpoint(ep);
            let mut buf = Vec::with_capacity(msg.encoded_len() + 3);
            // A complete record: key, length, message.
            encode_key(REPEATED_FIELD, WireType::LengthDelimited, &mut buf);
            encode_varint(msg.encoded_len() as u64, &mut buf);
            msg.encode_raw(&mut buf);
            Bytes::from(buf)
        });
        self.current.insert(key, bytes.clone());
        bytes
    }

    /// How many encoded endpoints are held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The encoded `ClusterLoadAssignment` of `backend`, named after its
/// cluster.
pub fn load_assignment(
    service: &model::Service,
    backend: &model::Backend,
    cache: &mut EndpointCache,
) -> Resource {
    let name = backend.cluster_name();
    let head = ClusterLoadAssignment {
        cluster_name: name.clone(),
        ..Default::default()
    };
    let groups = endpoint_groups(service, backend);
    let mut parts = Vec::with_capacity(groups.len());
    let mut total = head.encoded_len();
    for ((priority, locality), eps) in groups {
        // prost writes `locality` (1) and `metadata` (9, unused), then
        // `lb_endpoints` (2), then the rest: split the group there.
        let mut group = locality_group(service, priority, locality);
        let before = mem::take(&mut group.locality);
        let prefix = before
            .as_ref()
            .map_or(0, |l| prost::encoding::message::encoded_len(1, l));
        let records: Vec<Bytes> = eps.into_iter().map(|ep| cache.record(ep)).collect();
        let len = prefix + records.iter().map(Bytes::len).sum::<usize>() + group.encoded_len();
        total += 1 + prost::encoding::encoded_len_varint(len as u64) + len;
        parts.push((before, records, group, len));
    }
    let mut buf = Vec::with_capacity(total);
    head.encode_raw(&mut buf);
    for (locality, records, rest, len) in parts {
        encode_key(REPEATED_FIELD, WireType::LengthDelimited, &mut buf);
        encode_varint(len as u64, &mut buf);
        if let Some(l) = locality {
            prost::encoding::message::encode(1, &l, &mut buf);
        }
        for r in records {
            buf.extend_from_slice(&r);
        }
        rest.encode_raw(&mut buf);
    }
    Resource::from_bytes(name, buf)
}
