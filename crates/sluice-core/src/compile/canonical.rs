//! Deterministic protobuf encoding for messages whose generated Rust types
//! hold map fields in a `HashMap` (prost encodes those in iteration order,
//! which differs between processes).
//!
//! A `RouteConfiguration` is encoded piecewise: each message without its
//! maps through prost, then the map entries appended in key order. The
//! pieces are public to `compile`, which keeps each route's bytes between
//! compiles (`route::RouteCache`) and assembles virtual hosts and route
//! configurations from them.
//! Protobuf allows fields in any order and keeps repeated fields in the
//! order they appear, so the result decodes to the very same message.

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use envoy_types::pb::google::protobuf::{value, Any, Value};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

const RC_VIRTUAL_HOSTS: u32 = 2;
const RC_TYPED_PER_FILTER_CONFIG: u32 = 16;
const VH_ROUTES: u32 = 3;
const VH_TYPED_PER_FILTER_CONFIG: u32 = 15;
const ROUTE_TYPED_PER_FILTER_CONFIG: u32 = 13;
const RUNTIME_LAYER: u32 = 2;
const STRUCT_FIELDS: u32 = 1;

/// An RTDS `Runtime` resource whose layer (a `google.protobuf.Struct`,
/// itself a map) holds `keys` as numbers, in key order. The layer is
/// present even when empty.
pub(super) fn runtime(name: &str, keys: &BTreeMap<String, u32>) -> Vec<u8> {
    let head = Runtime {
        name: name.to_owned(),
        layer: None,
    };
    let mut out = head.encode_to_vec();
    let mut layer = Vec::new();
    for (k, v) in keys {
        let value = Value {
            kind: Some(value::Kind::NumberValue(f64::from(*v))),
        };
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, k, &mut entry);
        prost::encoding::message::encode(2, &value, &mut entry);
        nested(STRUCT_FIELDS, &entry, &mut layer);
    }
    nested(RUNTIME_LAYER, &layer, &mut out);
    out
}

/// Any route configuration, in one go (tests; `compile` assembles it from
/// [`route`], [`virtual_host`] and [`route_configuration_of`], keeping each
/// route's bytes between compiles).
#[cfg(test)]
pub(super) fn route_configuration(rc: &RouteConfiguration) -> Vec<u8> {
    let mut head = rc.clone();
    let vhosts: Vec<Vec<u8>> = std::mem::take(&mut head.virtual_hosts)
        .into_iter()
        .map(|mut vh| {
            let routes: Vec<Vec<u8>> = std::mem::take(&mut vh.routes)
                .into_iter()
                .map(route)
                .collect();
            virtual_host(vh, routes.iter().map(Vec::as_slice))
        })
        .collect();
    route_configuration_of(head, vhosts.iter().map(Vec::as_slice))
}

/// A `RouteConfiguration`: `head`'s fields (its virtual hosts, if any,
/// ignored), then `vhosts` (each from [`virtual_host`]), then `head`'s
/// per-filter configs in key order.
pub(super) fn route_configuration_of<'a>(
    mut head: RouteConfiguration,
    vhosts: impl Iterator<Item = &'a [u8]> + Clone,
) -> Vec<u8> {
    head.virtual_hosts.clear();
    let mut out =
        Vec::with_capacity(head.encoded_len() + nested_len(RC_VIRTUAL_HOSTS, vhosts.clone()));
    let map = std::mem::take(&mut head.typed_per_filter_config);
    encode_fields(&head, &mut out);
    for vh in vhosts {
        nested(RC_VIRTUAL_HOSTS, vh, &mut out);
    }
    any_map(RC_TYPED_PER_FILTER_CONFIG, &map, &mut out);
    out
}

/// A `VirtualHost`: `head`'s fields (its routes, if any, ignored), then
/// `routes` (each from [`route`]), then `head`'s per-filter configs in key
/// order.
pub(super) fn virtual_host<'a>(
    mut head: VirtualHost,
    routes: impl Iterator<Item = &'a [u8]> + Clone,
) -> Vec<u8> {
    head.routes.clear();
    let mut out = Vec::with_capacity(head.encoded_len() + nested_len(VH_ROUTES, routes.clone()));
    let map = std::mem::take(&mut head.typed_per_filter_config);
    encode_fields(&head, &mut out);
    for r in routes {
        nested(VH_ROUTES, r, &mut out);
    }
    any_map(VH_TYPED_PER_FILTER_CONFIG, &map, &mut out);
    out
}

/// A `Route`: its fields, then its per-filter configs in key order.
pub(super) fn route(mut r: Route) -> Vec<u8> {
    let mut out = Vec::with_capacity(r.encoded_len());
    let map = std::mem::take(&mut r.typed_per_filter_config);
    encode_fields(&r, &mut out);
    any_map(ROUTE_TYPED_PER_FILTER_CONFIG, &map, &mut out);
    out
}

/// `m`'s fields appended to `out` (no length prefix).
fn encode_fields(m: &impl Message, out: &mut Vec<u8>) {
    // A `Vec` grows as needed: encoding into it cannot run out of room.
    let _ = m.encode(out);
}

/// The bytes [`nested`] writes for each of `items` under `tag`.
fn nested_len<'a>(tag: u32, items: impl Iterator<Item = &'a [u8]>) -> usize {
    items
        .map(|b| key_len(tag) + encoded_len_varint(b.len() as u64) + b.len())
        .sum()
}

/// `map<string, google.protobuf.Any>` entries in key order.
fn any_map(tag: u32, map: &HashMap<String, Any>, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, k, &mut entry);
        prost::encoding::message::encode(2, &map[k], &mut entry);
        nested(tag, &entry, out);
    }
}

fn nested(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}
