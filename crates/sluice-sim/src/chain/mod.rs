//! One request through a listener's HTTP filters, the way Envoy's filter
//! manager drives them:
//!
//! - request phase ([`decode`]): each filter in order, with its per-route
//!   config on the route matched *at that point*:
//!   - Lua runs `envoy_on_request` with the most specific `LuaPerRoute`
//!     (its `source_code` instead of the filter's script, its
//!     `filter_context`, or nothing when `disabled`). A `respond()` ends the
//!     request; header edits or `clearRouteCache()` make the route be
//!     matched again (Envoy's `clear_route_cache` default), which is how
//!     plan-based routing works. A script error is recorded and the request
//!     continues, as in Envoy (sluice's own script fails closed by itself);
//!   - CORS answers preflights and latches the origin ([`cors`]);
//!   - RBAC refuses with 403 ([`rbac`](crate::filters::rbac));
//!   - the local rate limit refuses with 429 ([`ratelimit`](crate::filters::ratelimit));
//!   - fault injection delays (the phase pauses: [`Step::Delay`], then
//!     [`decode`] again) and aborts ([`fault`](crate::filters::fault));
//! - the router ([`DataPlane::decide`]) on the request as edited;
//! - response phase ([`on_response`]): every filter in reverse order on the
//!   answer — upstream or local, including the filters' own answers, which
//!   Envoy also sends through the encoder filters: Lua runs
//!   `envoy_on_response` with the dynamic metadata the request phase left,
//!   CORS adds its headers.
//!
//! Lua's `timestamp()` is the request's start on the virtual clock
//! ([`Clock`]), not the wall clock.
//!
//! The filters are decoded in [`crate::filters`]; this module sits
//! above them and above the data plane, which it calls as the router.
//! What a request carries through the chain is in `phase`; Lua scripts
//! run in `lua`, whose states are kept per thread.

use std::time::Duration;

use crate::dataplane::{DataPlane, Decision, Upstream};
use crate::filters::ratelimit::Verdict;
use crate::filters::{cors, FilterState, HttpFilter, PerFilter};
use crate::http::{Request, Response};
use crate::listener::SimListener;
use crate::route::{Action, Route};
use crate::state::View;

mod lua;
mod phase;
use lua::{lua_request, lua_response, LuaStep};
pub use phase::{Clock, RequestPhase};

/// Where the request phase stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Every filter let the request through to the router.
    Router,
    /// A filter answered (also in `RequestPhase::local`).
    Local,
    /// A fault delay: call [`decode`] again this much later.
    Delay(Duration),
}

/// A whole exchange through one proxy.
#[derive(Clone, Debug)]
pub struct Served {
    pub response: Response,
    /// The router's decision; `None` when a filter answered.
    pub decision: Option<Decision>,
    /// The answer came from a Lua filter's `respond()`.
    pub lua_local: bool,
    pub phase: RequestPhase,
}

/// The route `req` matches on `listener` (what the router would use).
pub fn route_of<'v>(view: &'v View, listener: &SimListener, req: &Request) -> Option<&'v Route> {
    view.routes.get(&listener.rds)?.route(req).ok()
}

fn answer(phase: &mut RequestPhase, by: &'static str, resp: Response) -> Step {
    phase.local = Some(resp);
    phase.local_by = Some(by);
    Step::Local
}

/// The most specific per-filter config of `name` on `route`, if it is of
/// the kind `pick` takes.
fn per_route<'r, T>(
    route: Option<&'r Route>,
    name: &str,
    pick: impl Fn(&'r PerFilter) -> Option<T>,
) -> Option<T> {
    route.and_then(|r| r.per_filter(name)).and_then(pick)
}

/// Runs the request phase from where it stopped (the start, or after a
/// fault delay) at virtual time `clock`.
pub fn decode(
    view: &View,
    listener: &SimListener,
    phase: &mut RequestPhase,
    state: &mut FilterState,
    clock: Clock,
) -> Step {
    phase.started.get_or_insert(clock.now);
    let http = |stat: &str| format!("http.{}.{stat}", listener.stat_prefix);
    let mut route: Option<Option<&Route>> = None;
    while let Some(filter) = listener.http_filters.get(phase.next) {
        let here = phase.next;
        phase.next += 1;
        let r = *route.get_or_insert_with(|| route_of(view, listener, &phase.request));
        match filter {
            HttpFilter::Router => return Step::Router,
            HttpFilter::Lua(f) => match lua_request(f, r, listener, phase, clock) {
                LuaStep::Same => {}
                LuaStep::Rematch => route = None,
                LuaStep::Answered(resp) => return answer(phase, "lua", resp),
            },
            HttpFilter::Cors { name } => {
                // Envoy's CORS filter acts on route entries only.
                let Some(rt) = r.filter(|rt| matches!(rt.action, Action::Forward(_))) else {
                    continue;
                };
                let policies: Vec<&cors::Policy> = rt
                    .filters
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| match p {
                        PerFilter::Cors(c) => Some(&**c),
                        _ => None,
                    })
                    .collect();
                match cors::decode(&policies, &phase.request, &mut state.rng) {
                    cors::Decision::Pass => {}
                    cors::Decision::Cors(latch, stat) => {
                        phase.counters.push(http(stat));
                        phase.cors = Some(latch);
                    }
                    cors::Decision::Preflight(latch, stat, headers) => {
                        phase.counters.push(http(stat));
                        phase.cors = Some(latch);
                        let resp = Response {
                            status: 200,
                            headers,
                            body: String::new(),
                        };
                        return answer(phase, "cors", resp);
                    }
                }
            }
            HttpFilter::Rbac { name, rules } => {
                let rules = match per_route(r, name, |p| match p {
                    PerFilter::Rbac(x) => Some(x),
                    _ => None,
                }) {
                    Some(per) => per.as_ref(),
                    None => rules.as_ref(),
                };
                let Some(rules) = rules else { continue };
                if rules.allows(listener.peer(&phase.request)) {
                    phase.counters.push(http("rbac.allowed"));
                } else {
                    phase.counters.push(http("rbac.denied"));
                    return answer(phase, "rbac", Response::text(403, "RBAC: access denied"));
                }
            }
            HttpFilter::RateLimit { name, config } => {
                let cfg = per_route(r, name, |p| match p {
                    PerFilter::RateLimit(c) => Some(c),
                    _ => None,
                })
                .unwrap_or(config);
                let verdict = cfg.check(
                    &mut phase.request,
                    &mut state.buckets,
                    &mut state.rng,
                    clock.now,
                    &mut phase.counters,
                );
                if let Verdict::Refused(status) = verdict {
                    // No `x-envoy-ratelimited`: Envoy 1.40 does not add it
                    // to a local rate limit's answer (checked against it).
                    let mut resp = Response::text(status, "local_rate_limited");
                    cfg.refusal_headers(&mut resp.headers);
                    return answer(phase, "local_ratelimit", resp);
                }
            }
            HttpFilter::Fault { name, config } => {
                let cfg = per_route(r, name, |p| match p {
                    PerFilter::Fault(c) => Some(c),
                    _ => None,
                })
                .unwrap_or(config);
                if !std::mem::take(&mut phase.fault_resumes) {
                    if let Some(d) = cfg.delay(&mut state.rng) {
                        phase.counters.push(http("fault.delays_injected"));
                        phase.fault_resumes = true;
                        phase.next = here;
                        phase.delayed += d;
                        return Step::Delay(d);
                    }
                }
                if let Some(a) = cfg.abort(&mut state.rng) {
                    phase.counters.push(http("fault.aborts_injected"));
                    let resp = Response::text(a.status, &a.body);
                    return answer(phase, "fault", resp);
                }
            }
        }
    }
    Step::Router
}

/// Runs the response phase on `resp`: the route's response header edits,
/// then the filters in reverse order.
pub fn on_response(
    view: &View,
    listener: &SimListener,
    phase: &mut RequestPhase,
    mut resp: Response,
    clock: Clock,
) -> Response {
    let route = route_of(view, listener, &phase.request);
    // The route's response header edits: the router applies them to what
    // it answers, and Envoy's local replies (`sendLocalReply`: RBAC, rate
    // limit, fault, Lua `respond()`) get them too — but not a CORS
    // preflight, which the CORS filter encodes directly. All before the
    // encoder filters run.
    if phase.local_by != Some("cors") {
        if let Some(r) = route {
            r.edit_response(&mut resp.headers);
        }
    }
    for filter in listener.http_filters.iter().rev() {
        match filter {
            HttpFilter::Cors { .. } => {
                if let Some(latch) = &phase.cors {
                    cors::encode(latch, &mut resp.headers);
                }
            }
            HttpFilter::Lua(f) => resp = lua_response(f, route, phase, resp, clock),
            _ => {}
        }
    }
    resp
}

/// `req` through `listener` (or the first listener) of one proxy at
/// virtual time `now`: request phase (fault delays pass at once, adding
/// to the clock), router (with the route's request header edits), then
/// `upstream` answers a request the router sends on (the simulator has no
/// real backends), response phase. The
/// router's own local answers carry no body (Envoy's text is not
/// modelled); the filters' do.
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
            phase: RequestPhase::new(req),
        };
    };
    let mut phase = RequestPhase::new(req);
    let mut clock = Clock {
        now,
        epoch: dp.filters.epoch,
    };
    let step = loop {
        match decode(view, l, &mut phase, &mut dp.filters, clock) {
            Step::Delay(d) => clock.now += d,
            step => break step,
        }
    };
    let (answer, decision) = match (step, phase.local.take()) {
        (Step::Local, Some(local)) => (local, None),
        _ => {
            let decision = dp.decide(view, Some(&l.name), &phase.request, clock.now);
            let route = route_of(view, l, &phase.request);
            let answer = match &decision {
                Decision::Upstream(u) => {
                    let mut sent = phase.request.clone();
                    if let Some(r) = route {
                        r.edit_request(&mut sent.headers);
                    }
                    let answer = upstream(u, &sent);
                    if let Some(c) = view.clusters.get(&u.cluster) {
                        dp.finish(c, u.host, answer.status, clock.now);
                    }
                    answer
                }
                Decision::Local { status, .. } => Response::new(*status),
                Decision::Overflow { .. } => Response::new(503),
            };
            (answer, Some(decision))
        }
    };
    let response = on_response(view, l, &mut phase, answer, clock);
    Served {
        response,
        lua_local: phase.local_by == Some("lua"),
        decision,
        phase,
    }
}
