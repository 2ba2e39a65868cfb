//! One request through a listener's HTTP filters, the way Envoy's filter
//! manager drives them:
//!
//! - request phase: each Lua filter in order runs `envoy_on_request` with
//!   the most specific `LuaPerRoute` of the route matched *at that point*
//!   (its `source_code` instead of the filter's script, its
//!   `filter_context`, or nothing when `disabled`). A `respond()` ends the
//!   request with that answer; otherwise the next filter sees the edited
//!   headers and body. Header edits or `clearRouteCache()` make the route
//!   be matched again (Envoy's `clear_route_cache` default), which is how
//!   plan-based routing works. A script error is recorded and the request
//!   continues, as in Envoy (sluice's own script fails closed by itself).
//! - the router ([`DataPlane::decide`]) on the request as edited;
//! - response phase: every Lua filter in reverse order runs
//!   `envoy_on_response` on the answer — upstream or local, including a
//!   Lua filter's own `respond()`, which Envoy also sends through the
//!   encoder filters — with the dynamic metadata the request phase left.
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
use std::time::Duration;

use serde_json::{Map, Value};

use super::{HttpFilter, LuaFilter, LuaRoute};
use crate::lua::runner::{FilterVm, Message};
use crate::sim::dataplane::{DataPlane, Decision, Upstream};
use crate::sim::listener::SimListener;
use crate::sim::route::{Request, Route};
use crate::sim::state::View;

/// An HTTP answer. Header names are lower-case, without `:status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            ..Response::default()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the request phase leaves for the router and the response phase.
#[derive(Clone, Debug, Default)]
pub struct RequestPhase {
    /// The request as the router sees it, after the filters' edits.
    pub request: Request,
    /// Set when a Lua filter answered the request itself.
    pub local: Option<Response>,
    /// Dynamic metadata set by the filters, by namespace.
    pub metadata: Map<String, Value>,
    /// Script errors (Envoy logs them; the request continues).
    pub errors: Vec<String>,
}

/// A whole exchange through one proxy.
#[derive(Clone, Debug)]
pub struct Served {
    pub response: Response,
    /// The router's decision; `None` when a Lua filter answered.
    pub decision: Option<Decision>,
    /// The answer came from a Lua filter's `respond()`.
    pub lua_local: bool,
    pub phase: RequestPhase,
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
    let per: Option<&LuaRoute> = route.and_then(|r| r.lua.get(&f.name));
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

fn lua_filters(listener: &SimListener) -> impl DoubleEndedIterator<Item = &Arc<LuaFilter>> {
    listener.http_filters.iter().filter_map(|f| match f {
        HttpFilter::Lua(l) => Some(l),
        HttpFilter::Router => None,
    })
}

fn route_of<'v>(view: &'v View, listener: &SimListener, req: &Request) -> Option<&'v Route> {
    view.routes.get(&listener.rds)?.route(req).ok()
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

fn remote(req: &Request) -> String {
    let ip = req.source.unwrap_or([127, 0, 0, 1].into());
    SocketAddr::new(ip, 0).to_string()
}

/// Runs the Lua filters' request phase on `req` arriving on `listener`.
pub fn on_request(view: &View, listener: &SimListener, req: Request) -> RequestPhase {
    let mut phase = RequestPhase {
        request: req,
        ..RequestPhase::default()
    };
    let mut route = route_of(view, listener, &phase.request);
    for f in lua_filters(listener) {
        let Some((source, context)) = setup(f, route) else {
            continue;
        };
        let vm = match vm(source) {
            Ok(vm) => vm,
            Err(e) => {
                phase.errors.push(e);
                continue;
            }
        };
        let msg = to_message(&phase.request);
        let remote = remote(&phase.request);
        let out = match vm.on_request_with_metadata(&msg, &context, &remote, &phase.metadata) {
            Ok(out) => out,
            Err(e) => {
                phase.errors.push(e.to_string());
                continue;
            }
        };
        phase.metadata = out.metadata;
        phase.errors.extend(out.error);
        if let Some(r) = out.response {
            phase.local = Some(Response {
                status: r.status(),
                headers: r
                    .headers
                    .into_iter()
                    .filter(|(k, _)| k != ":status")
                    .collect(),
                body: r.body,
            });
            return phase;
        }
        let changed = out.headers != msg.headers;
        let req = std::mem::take(&mut phase.request);
        phase.request = from_message(req, out.headers, out.body);
        if changed || out.route_cache_cleared {
            route = route_of(view, listener, &phase.request);
        }
    }
    phase
}

/// Runs the Lua filters' response phase (reverse order) on `resp`.
pub fn on_response(
    view: &View,
    listener: &SimListener,
    phase: &mut RequestPhase,
    mut resp: Response,
) -> Response {
    let route = route_of(view, listener, &phase.request);
    for f in lua_filters(listener).rev() {
        let Some((source, context)) = setup(f, route) else {
            continue;
        };
        let vm = match vm(source) {
            Ok(vm) => vm,
            Err(e) => {
                phase.errors.push(e);
                continue;
            }
        };
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
                continue;
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
    }
    resp
}

/// `req` through `listener` (or the first listener) of one proxy: Lua
/// request phase, router, then `upstream` answers a request the router
/// sends on (the simulator has no real backends), Lua response phase.
/// Local answers carry no body (Envoy's text is not modelled).
pub fn serve(
    dp: &mut DataPlane,
    view: &View,
    listener: Option<&str>,
    req: Request,
    now: Duration,
    upstream: impl FnOnce(&Upstream, &Request) -> Response,
) -> Served {
    let l = match listener {
        Some(name) => view.listeners.get(name),
        None => view.listeners.values().next(),
    };
    let Some(l) = l else {
        let decision = dp.decide(view, listener, &req, now);
        let status = match &decision {
            Decision::Local { status, .. } => *status,
            _ => 404,
        };
        return Served {
            response: Response::new(status),
            decision: Some(decision),
            lua_local: false,
            phase: RequestPhase {
                request: req,
                ..RequestPhase::default()
            },
        };
    };
    let mut phase = on_request(view, l, req);
    let (answer, decision) = match phase.local.take() {
        Some(local) => (local, None),
        None => {
            let decision = dp.decide(view, Some(&l.name), &phase.request, now);
            let answer = match &decision {
                Decision::Upstream(u) => {
                    let answer = upstream(u, &phase.request);
                    if let Some(c) = view.clusters.get(&u.cluster) {
                        dp.finish(c, u.host, answer.status, now);
                    }
                    answer
                }
                Decision::Local { status, .. } => Response::new(*status),
                Decision::Overflow { .. } => Response::new(503),
            };
            (answer, Some(decision))
        }
    };
    let response = on_response(view, l, &mut phase, answer);
    Served {
        response,
        lua_local: decision.is_none(),
        decision,
        phase,
    }
}
