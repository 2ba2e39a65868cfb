//! Deterministic protobuf encoding for messages whose generated Rust types
//! hold map fields in a `HashMap` (prost encodes those in iteration order,
//! which differs between processes).
//!
//! A `RouteConfiguration` is encoded piecewise: each message without its
//! maps through prost, then the map entries appended in key order.
//! Protobuf allows fields in any order and keeps repeated fields in the
//! order they appear, so the result decodes to the very same message.

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use envoy_types::pb::google::protobuf::{value, Any, Value};
use prost::encoding::{encode_key, encode_varint, WireType};
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

pub(super) fn route_configuration(rc: &RouteConfiguration) -> Vec<u8> {
    let mut head = rc.clone();
    let vhosts = std::mem::take(&mut head.virtual_hosts);
    let map = std::mem::take(&mut head.typed_per_filter_config);
    let mut out = head.encode_to_vec();
    for vh in &vhosts {
        nested(RC_VIRTUAL_HOSTS, &virtual_host(vh), &mut out);
    }
    any_map(RC_TYPED_PER_FILTER_CONFIG, &map, &mut out);
    out
}

fn virtual_host(vh: &VirtualHost) -> Vec<u8> {
    let mut head = vh.clone();
    let routes = std::mem::take(&mut head.routes);
    let map = std::mem::take(&mut head.typed_per_filter_config);
    let mut out = head.encode_to_vec();
    for r in routes {
        let mut r = r;
        let route_map = std::mem::take(&mut r.typed_per_filter_config);
        let mut bytes = r.encode_to_vec();
        any_map(ROUTE_TYPED_PER_FILTER_CONFIG, &route_map, &mut bytes);
        nested(VH_ROUTES, &bytes, &mut out);
    }
    any_map(VH_TYPED_PER_FILTER_CONFIG, &map, &mut out);
    out
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
