//! Running a Lua filter's script for the chain: `envoy_on_request` on the
//! request phase (its edits, a `respond()`, dynamic metadata, errors) and
//! `envoy_on_response` on the answer, with the route's `LuaPerRoute`
//! (its source, context, or `disabled`) and Lua's `timestamp()` on the
//! virtual clock. The filters themselves are decoded in
//! [`crate::filters::lua`].
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

use serde_json::{Map, Value};

use super::phase::{Clock, RequestPhase};
use crate::filters::{LuaFilter, LuaRoute};
use crate::http::{Request, Response};
use crate::listener::SimListener;
use crate::lua::runner::{FilterVm, Message};
use crate::route::Route;

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
