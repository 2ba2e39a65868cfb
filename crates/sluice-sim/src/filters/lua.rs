//! Lua filters (`envoy.filters.http.lua`, any name): decoding of the
//! filter (its script and filter-level context) and of each route's
//! `LuaPerRoute` (context, inline source, `disabled`). The chain runs the
//! scripts (`crate::chain`'s Lua runner).
//!
//! Scripts are loaded into a Lua state when decoded (shim included), as
//! Envoy loads them when it accepts the config: a script that does not
//! load is a NACK (`script load error: ...`), not a per-request failure.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::{lua_per_route, Lua, LuaPerRoute};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value as PbValue};
use serde_json::{Map, Value};

use crate::decode::{proto, DecodeError};
use crate::lua::runner::FilterVm;

pub const LUA_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua";
pub const LUA_PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute";

/// A Lua filter as configured on the listener.
#[derive(Clone, Debug, PartialEq)]
pub struct LuaFilter {
    /// The filter's name: the key of its `typed_per_filter_config` entries.
    pub name: String,
    /// `default_source_code` (or the deprecated `inline_code`).
    pub source: Arc<str>,
    /// Filter-level `filter_context`, for routes without their own.
    pub context: Option<Arc<Value>>,
}

/// A route's (or its virtual host's) `LuaPerRoute` for one Lua filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LuaRoute {
    pub disabled: bool,
    /// `source_code`: runs instead of the filter's script.
    pub source: Option<Arc<str>>,
    /// `filter_context`, replacing the filter-level one.
    pub context: Option<Arc<Value>>,
}

// `inline_code` is deprecated, but Envoy still runs it.
#[allow(deprecated)]
pub(super) fn lua_filter(name: &str, cfg: &Lua) -> Result<LuaFilter, DecodeError> {
    if !cfg.source_codes.is_empty() {
        return Err(DecodeError::Unsupported(format!(
            "Lua filter {name:?}: named source_codes"
        )));
    }
    let source = match &cfg.default_source_code {
        Some(ds) => inline(name, ds)?,
        None => cfg.inline_code.clone(),
    };
    // Envoy's default (true) clears the route cache when the script edits
    // request headers; the simulator always matches the route on the
    // headers as they are, which is only the same under that default.
    if cfg.clear_route_cache.as_ref().is_some_and(|b| !b.value) {
        return Err(DecodeError::Unsupported(format!(
            "Lua filter {name:?}: clear_route_cache false"
        )));
    }
    Ok(LuaFilter {
        name: name.to_string(),
        source: loaded(name, source)?,
        context: cfg
            .filter_context
            .as_ref()
            .map(|s| Arc::new(struct_json(s))),
    })
}

fn inline(what: &str, ds: &DataSource) -> Result<String, DecodeError> {
    match &ds.specifier {
        Some(data_source::Specifier::InlineString(s)) => Ok(s.clone()),
        Some(data_source::Specifier::InlineBytes(b)) => Ok(String::from_utf8_lossy(b).into()),
        _ => Err(DecodeError::Unsupported(format!(
            "{what}: Lua source that is not inline"
        ))),
    }
}

/// The script, checked the way Envoy checks it on load: it must compile and
/// its top level must run.
fn loaded(what: &str, source: String) -> Result<Arc<str>, DecodeError> {
    FilterVm::with_script(&source)
        .map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            DecodeError::Invalid(format!("{what}: script load error: {first}"))
        })
        .map(|_| Arc::from(source))
}

/// A `typed_per_filter_config` entry: `Some` for a `LuaPerRoute`, `None`
/// for other filters' configs (which the simulator does not act on).
pub(crate) fn lua_per_route(name: &str, any: &Any) -> Result<Option<LuaRoute>, DecodeError> {
    if any.type_url != LUA_PER_ROUTE_TYPE {
        return Ok(None);
    }
    let p: LuaPerRoute = proto(&any.value, "LuaPerRoute")?;
    let mut out = LuaRoute {
        context: p.filter_context.as_ref().map(|s| Arc::new(struct_json(s))),
        ..LuaRoute::default()
    };
    match &p.r#override {
        Some(lua_per_route::Override::Disabled(d)) => out.disabled = *d,
        Some(lua_per_route::Override::SourceCode(ds)) => {
            out.source = Some(loaded(name, inline(name, ds)?)?);
        }
        Some(lua_per_route::Override::Name(n)) => {
            return Err(DecodeError::Unsupported(format!(
                "LuaPerRoute for {name:?}: named source {n:?}"
            )))
        }
        None => {}
    }
    Ok(Some(out))
}

/// `google.protobuf.Struct` → JSON (numbers are doubles, as in protobuf).
pub fn struct_json(s: &Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect::<Map<_, _>>(),
    )
}

fn value_json(v: &PbValue) -> Value {
    match &v.kind {
        Some(Kind::NullValue(_)) | None => Value::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_json).collect()),
    }
}
