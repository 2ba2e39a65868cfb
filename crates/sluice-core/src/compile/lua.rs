//! The Lua filter in Envoy's config: the listener-level filter that carries
//! sluice's script, and each route's `LuaPerRoute` with its settings as
//! data in `filter_context` (so changing a key or a header rule is an RDS
//! update, never a listener change).
//!
//! `filter_context` is a `google.protobuf.Struct`, whose `fields` prost
//! holds in a `HashMap` and would encode in random order; it is encoded
//! here by hand with keys in sorted order, so the bytes are deterministic.

use std::sync::OnceLock;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::{lua_per_route, Lua, LuaPerRoute};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use envoy_types::pb::google::protobuf::{Any, UInt64Value};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use serde_json::{json, Map, Value};

use crate::lua_script::{self, CONTEXT_KEY, FILTER_NAME, USER_FILTER_NAME};
use crate::model::{self, AuthMethod, Filters, Transform};

const LUA_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua";
const LUA_PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute";

/// How many bytes of a request Envoy buffers for a filter that waits for
/// the body, unless the route says otherwise: the listener's
/// `per_connection_buffer_limit_bytes`, whose default sluice keeps.
const ENVOY_BUFFER_LIMIT: u64 = 1 << 20;

/// The shipped script, linked once per process.
fn script() -> &'static str {
    static SCRIPT: OnceLock<String> = OnceLock::new();
    SCRIPT.get_or_init(lua_script::bundle)
}

/// The listener-level Lua filter, placed before the router. It carries the
/// shipped bundle, which is static: its LuaJIT compile check and lint are
/// tests (`lua::tests`), not work done here.
pub(super) fn http_filter() -> HttpFilter {
    let config = Lua {
        default_source_code: Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString(script().to_string())),
            ..Default::default()
        }),
        ..Default::default()
    };
    HttpFilter {
        name: FILTER_NAME.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: LUA_TYPE.to_string(),
            value: config.encode_to_vec(),
        })),
        ..Default::default()
    }
}

/// The second Lua filter, for users' own snippets: a no-op by default,
/// replaced per route by `LuaPerRoute.source_code` (RDS only).
pub(super) fn user_http_filter() -> HttpFilter {
    let config = Lua {
        default_source_code: Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString(
                "-- sluice: no user Lua on this route\n".to_string(),
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    HttpFilter {
        name: USER_FILTER_NAME.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: LUA_TYPE.to_string(),
            value: config.encode_to_vec(),
        })),
        ..Default::default()
    }
}

/// A route's user snippet (already checked by the rules loader).
pub(super) fn user_per_route(lua: &model::UserLua) -> Any {
    let per_route = LuaPerRoute {
        r#override: Some(lua_per_route::Override::SourceCode(DataSource {
            specifier: Some(data_source::Specifier::InlineString(lua.source.clone())),
            ..Default::default()
        })),
        ..Default::default()
    };
    Any {
        type_url: LUA_PER_ROUTE_TYPE.to_string(),
        value: per_route.encode_to_vec(),
    }
}

/// A route's `request_body_buffer_limit`, for a route whose (effective)
/// filters let through a body larger than Envoy buffers by default: then
/// the script can read every body the rules allow, and Envoy itself
/// refuses (413) only what the rules refuse too. Routes within the
/// default get `None` and so stay byte for byte as they were.
/// (`per_request_buffer_limit_bytes`, the deprecated field, cannot raise
/// the limit: Envoy takes the smaller of it and the listener's.)
pub(super) fn request_body_buffer_limit(filters: &Filters) -> Option<UInt64Value> {
    filters
        .request_body_limit()
        .filter(|&bytes| bytes > ENVOY_BUFFER_LIMIT)
        .map(|value| UInt64Value { value })
}

/// `typed_per_filter_config` entry for a route with these (effective)
/// filters.
pub(super) fn per_route(filters: &Filters, clear_route_cache: bool) -> Any {
    let mut ctx = context(filters);
    if clear_route_cache {
        ctx.insert("clear_route_cache".into(), Value::Bool(true));
    }
    let mut outer = Map::new();
    outer.insert(CONTEXT_KEY.to_string(), Value::Object(ctx));
    // LuaPerRoute { filter_context (4): Struct }
    let mut value = Vec::new();
    let s = encode_struct(&outer);
    encode_key(4, WireType::LengthDelimited, &mut value);
    encode_varint(s.len() as u64, &mut value);
    value.extend_from_slice(&s);
    Any {
        type_url: LUA_PER_ROUTE_TYPE.to_string(),
        value,
    }
}

/// The settings in the shape `filters/sluice.lua` reads.
pub fn context(f: &Filters) -> Map<String, Value> {
    let mut ctx = Map::new();
    if let Some(a) = &f.auth {
        let mut auth = Map::new();
        auth.insert(
            "headers".into(),
            json!({"consumer": a.consumer_header, "plan": a.plan_header}),
        );
        match &a.method {
            Some(AuthMethod::ApiKey(k)) => {
                let keys: Map<String, Value> =
                    k.keys.iter().map(|c| (c.sha256.clone(), who(c))).collect();
                let mut m = Map::new();
                for (field, v) in [
                    ("header", &k.header),
                    ("query", &k.query),
                    ("json_field", &k.json_field),
                ] {
                    if let Some(v) = v {
                        m.insert(field.into(), Value::String(v.clone()));
                    }
                }
                m.insert("keys".into(), Value::Object(keys));
                auth.insert("api_key".into(), Value::Object(m));
            }
            Some(AuthMethod::Basic(b)) => {
                let users: Map<String, Value> = b
                    .users
                    .iter()
                    .map(|(u, c)| {
                        let mut entry = who(c);
                        entry["password_sha256"] = Value::String(c.sha256.clone());
                        (u.clone(), entry)
                    })
                    .collect();
                auth.insert("basic".into(), json!({"realm": b.realm, "users": users}));
            }
            Some(AuthMethod::Jwt(j)) => {
                let keys: Map<String, Value> = j
                    .keys
                    .iter()
                    .map(|(kid, der)| (kid.clone(), Value::String(der.clone())))
                    .collect();
                let mut m = Map::new();
                m.insert("header".into(), json!(j.header));
                if let Some(iss) = &j.issuer {
                    m.insert("issuer".into(), json!(iss));
                }
                if !j.audiences.is_empty() {
                    m.insert("audiences".into(), json!(j.audiences));
                }
                m.insert("keys".into(), Value::Object(keys));
                m.insert("consumer_claim".into(), json!(j.consumer_claim));
                if let Some(p) = &j.plan_claim {
                    m.insert("plan_claim".into(), json!(p));
                }
                m.insert("skew_seconds".into(), json!(j.clock_skew.as_secs()));
                auth.insert("jwt".into(), Value::Object(m));
            }
            None => {}
        }
        ctx.insert("auth".into(), Value::Object(auth));
    }
    if let Some(v) = &f.validate {
        let mut m = Map::new();
        for (k, list) in [
            ("methods", &v.methods),
            ("required_headers", &v.required_headers),
            ("required_query", &v.required_query),
            ("content_types", &v.content_types),
        ] {
            if !list.is_empty() {
                m.insert(k.into(), json!(list));
            }
        }
        if let Some(max) = v.max_body_bytes {
            m.insert("max_body_bytes".into(), json!(max));
        }
        ctx.insert("validate".into(), Value::Object(m));
    }
    if let Some(t) = &f.request {
        ctx.insert("transform_request".into(), transform(t));
    }
    if let Some(t) = &f.response {
        ctx.insert("transform_response".into(), transform(t));
    }
    ctx
}

fn who(c: &model::Credential) -> Value {
    let mut m = Map::new();
    m.insert("consumer".into(), Value::String(c.consumer.clone()));
    if let Some(p) = &c.plan {
        m.insert("plan".into(), Value::String(p.clone()));
    }
    Value::Object(m)
}

fn pairs(list: &[(String, String)]) -> Value {
    Value::Array(list.iter().map(|(a, b)| json!([a, b])).collect())
}

fn transform(t: &Transform) -> Value {
    let mut m = Map::new();
    if !t.remove_headers.is_empty() {
        m.insert("remove".into(), json!(t.remove_headers));
    }
    for (k, list) in [
        ("rename", &t.rename_headers),
        ("set", &t.set_headers),
        ("add", &t.add_headers),
        ("query_to_header", &t.query_to_header),
    ] {
        if !list.is_empty() {
            m.insert(k.into(), pairs(list));
        }
    }
    if let Some(p) = &t.rewrite_path {
        m.insert("rewrite_path".into(), Value::String(p.clone()));
    }
    if let Some(j) = &t.json {
        m.insert(
            "json".into(),
            json!({"set": pairs(&j.set), "remove": j.remove, "rename": pairs(&j.rename), "max_bytes": j.max_bytes}),
        );
    }
    Value::Object(m)
}

/// `google.protobuf.Struct` with fields in sorted key order.
pub fn encode_struct(fields: &Map<String, Value>) -> Vec<u8> {
    let mut keys: Vec<&String> = fields.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        // map entry: key (1) string, value (2) Value
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, k, &mut entry);
        length_delimited(2, &encode_value(&fields[k]), &mut entry);
        length_delimited(1, &entry, &mut out);
    }
    out
}

fn encode_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        Value::Null => {
            encode_key(1, WireType::Varint, &mut out);
            encode_varint(0, &mut out);
        }
        Value::Number(n) => {
            prost::encoding::double::encode(2, &n.as_f64().unwrap_or(0.0), &mut out)
        }
        Value::String(s) => prost::encoding::string::encode(3, s, &mut out),
        Value::Bool(b) => prost::encoding::bool::encode(4, b, &mut out),
        Value::Object(m) => length_delimited(5, &encode_struct(m), &mut out),
        Value::Array(items) => {
            let mut list = Vec::new();
            for item in items {
                length_delimited(1, &encode_value(item), &mut list);
            }
            length_delimited(6, &list, &mut out);
        }
    }
    out
}

fn length_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}
