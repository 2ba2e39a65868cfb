//! `ClusterLoadAssignment`s encoded from cached endpoint bytes.
//!
//! Encoding a CLA with prost is mostly its `LbEndpoint`s: a few nested
//! messages each, whose lengths prost computes on the way (≈ 75 µs for
//! 1,000 endpoints). Here each distinct endpoint (address, port, health,
//! weight: all an `LbEndpoint` holds) is encoded once, as a complete
//! record of the repeated `lb_endpoints` field (key, length, message), and
//! kept in an [`EndpointCache`] that lives across compiles, as are the
//! concatenated records of each (priority, locality) group, so that an
//! unchanged group costs one lookup and a changed one re-encodes only its
//! changed endpoints. A CLA is then
//! the prost encoding of its other fields with those records spliced in
//! at the place prost puts that field. Protobuf encodes a repeated field
//! as a sequence of such records and prost writes fields in a fixed
//! order, so the result is byte for byte prost's encoding of the whole
//! message (a property test compares the two), and versions do not
//! depend on what the cache held.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::cluster::{endpoint_groups, lb_endpoint, locality_group};
use crate::model;
use crate::xds::Resource;

/// Field number of `ClusterLoadAssignment.endpoints` and of
/// `LocalityLbEndpoints.lb_endpoints`: both are 2.
const REPEATED_FIELD: u32 = 2;

/// Encoded `lb_endpoints` records, per endpoint and per group. Hash
/// maps, only ever looked up (never iterated into output), so the output
/// does not depend on their order or content.
#[derive(Debug, Default)]
pub struct EndpointCache {
    /// Records by endpoint. Kept across compiles so that a changed group
    /// re-encodes only its changed endpoints; cleared when it holds more
    /// than twice what the last compile used.
    endpoints: HashMap<EndpointKey, Box<[u8]>, BuildHasherDefault<KeyHasher>>,
    /// Endpoint records the last full compile appended (an upper bound of
    /// the distinct endpoints it used).
    used: usize,
    /// The current compile encodes only changed assignments ([`resume`]).
    ///
    /// [`resume`]: EndpointCache::resume
    partial: bool,
    /// The records of a whole (priority, locality) group, keyed by its
    /// endpoints' packed keys in order: one lookup for an unchanged group
    /// instead of one per endpoint. What one compile does not use is
    /// dropped by the next.
    groups: HashMap<Box<[u8]>, Box<[u8]>, BuildHasherDefault<KeyHasher>>,
    previous_groups: HashMap<Box<[u8]>, Box<[u8]>, BuildHasherDefault<KeyHasher>>,
    /// Encode only, keep nothing ([`EndpointCache::one_shot`]).
    one_shot: bool,
}

/// Everything [`lb_endpoint`] reads from a `model::Endpoint`, packed:
/// address (16 bytes, IPv4 mapped), port, weight, health, family.
type EndpointKey = [u8; 24];

fn key(ep: &model::Endpoint) -> EndpointKey {
    let mut k = [0u8; 24];
    let (ip, family) = match ep.address {
        IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), 4),
        IpAddr::V6(a) => (a.octets(), 6),
    };
    k[..16].copy_from_slice(&ip);
    k[16..18].copy_from_slice(&ep.port.to_le_bytes());
    k[18..22].copy_from_slice(&ep.weight.to_le_bytes());
    k[22] = ep.health as u8;
    k[23] = family;
    k
}

/// One-shot XXH3 of the packed key: the default SipHash was a third of
/// a cached CLA's time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }
}

impl EndpointCache {
    /// A cache for one compile with no next (`compile::compile`: `sluice
    /// validate`, the first load): it keeps nothing, since records held
    /// for a next compile would only add to the peak (for 145 k endpoints,
    /// ~25 MB of records and keys beside ~5 MB of output). Same bytes.
    pub(super) fn one_shot() -> EndpointCache {
        EndpointCache {
            one_shot: true,
            ..EndpointCache::default()
        }
    }

    /// Starts a compile: entries the last compile did not use go.
    pub(super) fn start(&mut self) {
        if self.endpoints.len() > 2 * self.used.max(1024) {
            self.endpoints.clear();
        }
        self.used = 0;
        self.partial = false;
        self.previous_groups = mem::take(&mut self.groups);
    }

    /// Starts a compile that encodes only the assignments that changed
    /// and reuses the others whole (`compile::incremental`): what the last
    /// full compile used stays, since the next one will want it. What
    /// such compiles add (a moved endpoint's new record, its group's new
    /// records) accumulates until the next full compile, so it is bounded
    /// here: past twice what a full compile used, the records go (they
    /// are only a speed-up).
    pub(super) fn resume(&mut self) {
        self.partial = true;
        let bound = 2 * self.used.max(1024);
        if self.endpoints.len() > bound {
            self.endpoints.clear();
        }
        if self.groups.len() + self.previous_groups.len() > bound {
            self.groups.clear();
            self.previous_groups.clear();
        }
    }

    /// Appends the records of a group's endpoints to `buf`.
    fn append_group(&mut self, eps: &[&model::Endpoint], buf: &mut Vec<u8>) {
        if self.one_shot {
            for ep in eps {
                append_record(ep, buf);
            }
            return;
        }
        if !self.partial {
            self.used += eps.len();
        }
        let mut keys = Vec::with_capacity(eps.len() * 24);
        for ep in eps {
            keys.extend_from_slice(&key(ep));
        }
        if let Some(records) = self.groups.get(keys.as_slice()) {
            buf.extend_from_slice(records);
            return;
        }
        let start = buf.len();
        match self.previous_groups.remove(keys.as_slice()) {
            Some(records) => buf.extend_from_slice(&records),
            None => {
                for ep in eps {
                    self.append(ep, buf);
                }
            }
        }
        let records = buf[start..].into();
        self.groups.insert(keys.into_boxed_slice(), records);
    }

    /// Appends the `lb_endpoints` record of `ep` to `buf`.
    fn append(&mut self, ep: &model::Endpoint, buf: &mut Vec<u8>) {
        let key = key(ep);
        if let Some(b) = self.endpoints.get(&key) {
            buf.extend_from_slice(b);
            return;
        }
        let start = buf.len();
        append_record(ep, buf);
        self.endpoints.insert(key, buf[start..].into());
    }

    /// How many endpoint records are held.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends the `lb_endpoints` record of `ep` to `buf`: key, length,
/// message.
fn append_record(ep: &model::Endpoint, buf: &mut Vec<u8>) {
    let msg = lb_endpoint(ep);
    encode_key(REPEATED_FIELD, WireType::LengthDelimited, buf);
    encode_varint(msg.encoded_len() as u64, buf);
    msg.encode_raw(buf);
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
    let mut buf = Vec::with_capacity(head.encoded_len() + 64 * service.endpoints.len());
    head.encode_raw(&mut buf);
    let mut records = Vec::new();
    for ((priority, locality), eps) in groups {
        // prost writes `locality` (1) and `metadata` (9, unused), then
        // `lb_endpoints` (2), then the rest: split the group there.
        let mut rest = locality_group(service, priority, locality);
        let locality = rest.locality.take();
        records.clear();
        cache.append_group(&eps, &mut records);
        let len = locality
            .as_ref()
            .map_or(0, |l| prost::encoding::message::encoded_len(1, l))
            + records.len()
            + rest.encoded_len();
        encode_key(REPEATED_FIELD, WireType::LengthDelimited, &mut buf);
        encode_varint(len as u64, &mut buf);
        if let Some(l) = locality {
            prost::encoding::message::encode(1, &l, &mut buf);
        }
        buf.extend_from_slice(&records);
        rest.encode_raw(&mut buf);
    }
    Resource::from_bytes(name, buf)
}
