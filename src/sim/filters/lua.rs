//! Lua filters (`envoy.filters.http.lua`, any name): decoding of the
//! filter (its script and filter-level context) and of each route's
//! `LuaPerRoute` (context, inline source, `disabled`), and running a
//! script's `envoy_on_request` / `envoy_on_response` for the chain.
//!
//! Scripts are loaded into a Lua state when decoded (shim included), as
//! Envoy loads them when it accepts the config: a script that does not
//! load is a NACK (`script load error: ...`), not a per-request failure.
//!
//! Lua states: one [`FilterVm`] per distinct script **per thread**
//! (thread-local), shared by every simulated proxy that thread runs. This
//! is Envoy's model (a Lua state per script per worker thread, globals
//! not shared between workers) and keeps a 1,000-proxy fleet at a handful
//! of states; mlua's `Lua` is neither `Send` nor `Sync`, so states never
//! cross threads. States of scripts no resource holds any more are dropped
//! as the cache grows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::{lua_per_route, Lua, LuaPerRoute};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value as PbValue};
use serde_json::{Map, Value};

use super::chain::{Clock, RequestPhase, Response};
use crate::lua::runner::{FilterVm, Message};
use crate::sim::listener::SimListener;
use crate::sim::resources::{proto, DecodeError};
use crate::sim::route::{Request, Route};

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

/// Past this many cached states, those of scripts nothing holds are dropped.
const PRUNE_AT: usize = 64;

/// Script (by the address of its shared text, kept alive here) → state.
type VmCache = HashMap<usize, (Arc<str>, Rc<FilterVm>)>;

thread_local! {
    static VMS: RefCell<VmCache> = RefCell::new(HashMap::new());
}

/// This thread's Lua state for `source` (the same `Arc` from the shared
/// decoder for every proxy that holds the resource).
fn vm(source: &Arc<str>) -> Result<Rc<FilterVm>, String> {
    let key = Arc::as_ptr(source) as *const u8 as usize;
    VMS.with(|cell| {
        let mut vms = cell.borrow_mut();
        if let Some((_, vm)) = vms.get(&key) {
            return Ok(vm.clone());
        }
        if vms.len() >= PRUNE_AT {
            vms.retain(|_, (src, _)| Arc::strong_count(src) > 1);
        }
        let vm = Rc::new(FilterVm::with_script(source).map_err(|e| e.to_string())?);
        vms.insert(key, (source.clone(), vm.clone()));
        Ok(vm)
    })
}

/// The script and context a Lua filter runs with on `route`, or `None`
/// when the route disables it.
fn setup<'a>(f: &'a LuaFilter, route: Option<&'a Route>) -> Option<(&'a Arc<str>, Value)> {
    let per: Option<&LuaRoute> = route.and_then(|r| r.lua(&f.name));
    if per.is_some_and(|p| p.disabled) {
        return None;
    }
    let source = per.and_then(|p| p.source.as_ref()).unwrap_or(&f.source);
    let context = per
        .and_then(|p| p.context.as_ref())
        .or(f.context.as_ref())
        .map_or_else(|| Value::Object(Map::new()), |c| (**c).clone());
    Some((source, context))
}

fn to_message(req: &Request) -> Message {
    let mut headers = vec![
        (":authority".to_string(), req.authority.clone()),
        (":path".to_string(), req.path.clone()),
        (":method".to_string(), req.method().to_string()),
        (":scheme".to_string(), "http".to_string()),
    ];
    headers.extend(req.headers.iter().cloned());
    Message {
        headers,
        body: req.body.clone(),
    }
}

fn from_message(mut req: Request, headers: Vec<(String, String)>, body: Option<String>) -> Request {
    req.headers.clear();
    for (k, v) in headers {
        match k.as_str() {
            ":authority" => req.authority = v,
            ":path" => req.path = v,
            ":method" => req.method = v,
            _ if k.starts_with(':') => {}
            _ => req.headers.push((k, v)),
        }
    }
    req.body = body;
    req
}

/// Lua's `timestamp()` for this request: its start on the virtual clock.
fn unix_ms(phase: &RequestPhase, clock: Clock) -> f64 {
    (clock.epoch + phase.started.unwrap_or(clock.now)).as_secs_f64() * 1000.0
}

/// What one Lua filter's request phase did.
pub(super) enum LuaStep {
    Same,
    /// Headers changed or the route cache was cleared: match again.
    Rematch,
    Answered(Response),
}

pub(super) fn lua_request(
    f: &LuaFilter,
    route: Option<&Route>,
    listener: &SimListener,
    phase: &mut RequestPhase,
    clock: Clock,
) -> LuaStep {
    let Some((source, context)) = setup(f, route) else {
        return LuaStep::Same;
    };
    let vm = match vm(source) {
        Ok(vm) => vm,
        Err(e) => {
            phase.errors.push(e);
            return LuaStep::Same;
        }
    };
    vm.set_clock(Some(unix_ms(phase, clock)));
    let msg = to_message(&phase.request);
    let remote = SocketAddr::new(listener.peer(&phase.request).remote, 0).to_string();
    let out = match vm.on_request_with_metadata(&msg, &context, &remote, &phase.metadata) {
        Ok(out) => out,
        Err(e) => {
            phase.errors.push(e.to_string());
            return LuaStep::Same;
        }
    };
    phase.metadata = out.metadata;
    phase.errors.extend(out.error);
    if let Some(r) = out.response {
        return LuaStep::Answered(Response {
            status: r.status(),
            headers: r
                .headers
                .into_iter()
                .filter(|(k, _)| k != ":status")
                .collect(),
            body: r.body,
        });
    }
    let changed = out.headers != msg.headers;
    let req = std::mem::take(&mut phase.request);
    phase.request = from_message(req, out.headers, out.body);
    if changed || out.route_cache_cleared {
        LuaStep::Rematch
    } else {
        LuaStep::Same
    }
}

pub(super) fn lua_response(
    f: &LuaFilter,
    route: Option<&Route>,
    phase: &mut RequestPhase,
    mut resp: Response,
    clock: Clock,
) -> Response {
    let Some((source, context)) = setup(f, route) else {
        return resp;
    };
    let vm = match vm(source) {
        Ok(vm) => vm,
        Err(e) => {
            phase.errors.push(e);
            return resp;
        }
    };
    vm.set_clock(Some(unix_ms(phase, clock)));
    let mut headers = vec![(":status".to_string(), resp.status.to_string())];
    headers.extend(resp.headers.iter().cloned());
    let msg = Message {
        headers,
        body: Some(std::mem::take(&mut resp.body)),
    };
    let out = match vm.on_response(&msg, &context, &phase.metadata) {
        Ok(out) => out,
        Err(e) => {
            phase.errors.push(e.to_string());
            resp.body = msg.body.unwrap_or_default();
            return resp;
        }
    };
    phase.metadata = out.metadata;
    phase.errors.extend(out.error);
    if out.response.is_some() {
        // Envoy: "respond not currently supported in the response path".
        phase.errors.push("respond() in the response path".into());
    }
    resp.headers.clear();
    for (k, v) in out.headers {
        if k == ":status" {
            resp.status = v.parse().unwrap_or(resp.status);
        } else if !k.starts_with(':') {
            resp.headers.push((k, v));
        }
    }
    resp.body = out.body.unwrap_or_default();
    resp
}
