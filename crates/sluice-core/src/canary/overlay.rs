//! Rollout weights as an overlay on the rules: before compiling, `serve`
//! calls [`Overlays::apply`] on the resolved [`Config`], which rewrites the
//! routes of each service under rollout. Compile stays pure; the weights are
//! input like the rules, so the same rules and rollouts give the same bytes.
//!
//! [`WeightsVia::Routes`] writes each step's weights into the routes.
//! [`WeightsVia::Runtime`] writes routes that read their weights from
//! runtime keys, the same at every step, and the step's weights into
//! [`Config::runtime`], which compile serves as sluice's RTDS layer.
//!
//! A route is governed by a rollout of service S when every backend it
//! names is S and one of them is the stable subset (the usual
//! `split: [stable, canary]` or a plain route to the stable subset). Routes
//! that name only the canary subset (explicit preview routes) or the whole
//! service are left alone.
//!
//! With [`WeightsVia::Runtime`] every plain route to one subset X of a
//! service with more than one subset is *armed*, rollout or not: it reads
//! the keys under `sluice.rollout.S.from.X` and its own weights send
//! everything to X. A rollout from X governs that route in the very same
//! form, so starting it changes only the runtime layer, and Envoy moves
//! traffic on the first step without a route push. Routes whose rules name
//! a split, and header rollouts, still change the routes when a rollout
//! starts.
//!
//! Proxyless gRPC clients (the rules' `grpc` targets) take no runtime
//! layer: their governed routes carry each step's weights in the routes,
//! whichever [`WeightsVia`] the Envoys use.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{HeaderRoute, Rollout};
use crate::model::{
    Backend, Config, GrpcRoute, HeaderMatch, Listener, Route, RouteAction, Service, ValueMatch,
    WeightedBackend,
};

/// The traffic split one rollout asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overlay {
    pub stable: String,
    pub canary: String,
    /// Percent of governed traffic to the canary subset.
    pub canary_weight: u32,
    /// While the rollout runs: requests with this header go to the canary.
    pub header: Option<HeaderRoute>,
}

/// How rollouts move traffic weights to Envoy (`sluice serve
/// --rollout-weights`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsVia {
    /// Each step rewrites the governed routes: a step is a route
    /// configuration push (the whole route configuration of every listener
    /// that routes to the service). Works with any bootstrap.
    #[default]
    Routes,
    /// The governed routes read their weights from runtime keys, and a
    /// step changes only sluice's RTDS runtime layer (a few bytes). Plain
    /// routes to a subset read those keys before any rollout starts, so
    /// for them the routes never change; a split in the rules or a header
    /// rollout changes them once, at the start. Needs Envoys whose
    /// bootstrap has sluice's RTDS layer (`sluice bootstrap` adds it); a
    /// proxy without it keeps all governed traffic on the stable subset
    /// and never counts as having reached a step.
    Runtime,
}

/// The runtime key prefix of the routes a rollout of `service` from its
/// subset `from` governs; each subset's weight is under
/// `<prefix>.<service>~<subset>`.
pub fn runtime_key_prefix(service: &str, from: &str) -> String {
    format!("sluice.rollout.{service}.from.{from}")
}

/// Every service's overlay, by service name (ordered: output is
/// deterministic).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Overlays(pub BTreeMap<String, Overlay>);

impl Overlays {
    /// The overlays of these rollouts; a pending one has none yet.
    pub fn of<'a>(rollouts: impl IntoIterator<Item = &'a Rollout>) -> Overlays {
        let mut out = BTreeMap::new();
        for r in rollouts {
            let Some(canary_weight) = r.canary_weight() else {
                continue;
            };
            let running = !r.state.is_final();
            out.insert(
                r.spec.service.clone(),
                Overlay {
                    stable: r.spec.from.clone(),
                    canary: r.spec.to.clone(),
                    canary_weight,
                    header: r.spec.header.clone().filter(|_| running),
                },
            );
        }
        Overlays(out)
    }

    /// Rewrites the governed routes of `config` in place; with
    /// [`WeightsVia::Runtime`], also arms the plain routes to a subset and
    /// sets the weights as runtime keys.
    pub fn apply(&self, config: &mut Config, via: WeightsVia) {
        if self.0.is_empty() && via == WeightsVia::Routes {
            return;
        }
        self.set_runtime(config, via);
        self.rewrite_routes(config, via);
        self.rewrite_grpc(config);
    }

    /// The governed routes of the `grpc` targets, with the step's weights.
    fn rewrite_grpc(&self, config: &mut Config) {
        if self.0.is_empty() || config.grpc.is_empty() {
            return;
        }
        let targets = Arc::make_mut(&mut config.grpc);
        for target in targets.iter_mut() {
            let mut routes = Vec::with_capacity(target.routes.len());
            for route in target.routes.drain(..) {
                let Some((service, o)) = self.governing(&route.action) else {
                    routes.push(route);
                    continue;
                };
                if let Some(h) = &o.header {
                    let mut tagged = route.clone();
                    tagged.name = format!("{}~canary-header", route.name);
                    // gRPC metadata keys are lower case.
                    tagged.matcher.headers.push(HeaderMatch {
                        name: h.name.to_ascii_lowercase(),
                        value: ValueMatch::Exact(h.value.clone()),
                        invert: false,
                    });
                    tagged.action = RouteAction::Backend(backend(service, &o.canary));
                    routes.push(tagged);
                }
                routes.push(GrpcRoute {
                    action: split(service, o),
                    ..route
                });
            }
            target.routes = routes;
        }
    }

    /// With [`WeightsVia::Runtime`], the rollouts' weights as runtime keys.
    fn set_runtime(&self, config: &mut Config, via: WeightsVia) {
        if via != WeightsVia::Runtime || self.0.is_empty() {
            return;
        }
        let mut keys = BTreeMap::new();
        for (service, o) in &self.0 {
            let prefix = runtime_key_prefix(service, &o.stable);
            let w = o.canary_weight.min(100);
            let stable = backend(service, &o.stable).cluster_name();
            let canary = backend(service, &o.canary).cluster_name();
            keys.insert(format!("{prefix}.{stable}"), 100 - w);
            keys.insert(format!("{prefix}.{canary}"), w);
        }
        config.runtime = Arc::new(keys);
    }

    /// What the routes depend on: with runtime weights, everything but
    /// the weights.
    fn route_shape(&self, via: WeightsVia) -> Overlays {
        let mut shape = self.clone();
        if via == WeightsVia::Runtime {
            for o in shape.0.values_mut() {
                o.canary_weight = 0;
            }
        }
        shape
    }

    fn rewrite_routes(&self, config: &mut Config, via: WeightsVia) {
        let arm = via == WeightsVia::Runtime;
        let services = &config.services;
        let listeners = Arc::make_mut(&mut config.listeners);
        for vh in listeners
            .iter_mut()
            .flat_map(|l| l.virtual_hosts.iter_mut())
        {
            let mut routes = Vec::with_capacity(vh.routes.len());
            for route in vh.routes.drain(..) {
                let Some((service, o)) = self.governing(&route.action) else {
                    let armed = match &route.action {
                        RouteAction::Backend(b) if arm => armed(services, b, None),
                        _ => None,
                    };
                    routes.push(match armed {
                        Some(action) => Route { action, ..route },
                        None => route,
                    });
                    continue;
                };
                if let Some(h) = &o.header {
                    routes.push(header_route(&route, service, o, h));
                }
                let mut route = route;
                route.action = match via {
                    WeightsVia::Routes => split(service, o),
                    WeightsVia::Runtime => {
                        let stable = backend(service, &o.stable);
                        armed(services, &stable, Some(&o.canary))
                            .expect("a governed route names a subset")
                    }
                };
                routes.push(route);
            }
            vh.routes = routes;
        }
    }

    fn governing(&self, action: &RouteAction) -> Option<(&str, &Overlay)> {
        let backends = action.backends();
        let first = backends.first()?;
        let (service, o) = self.0.get_key_value(&first.service)?;
        let all_of_service = backends.iter().all(|b| b.service == *service);
        let names_stable = backends
            .iter()
            .any(|b| b.subset.as_deref() == Some(o.stable.as_str()));
        (all_of_service && names_stable).then_some((service.as_str(), o))
    }
}

/// [`Overlays::apply`] with its last routes kept: while the rules'
/// listeners, their services' subsets and what of the overlays shapes
/// the routes stay the same (an endpoint change; with runtime weights, a
/// step too), the next config gets the same listeners `Arc`. A publish
/// then copies no route, and incremental compile sees unchanged listeners
/// by pointer and skips the routes.
#[derive(Default)]
pub struct Memo {
    last: Option<Last>,
}

struct Last {
    /// The listeners applied to; held, so the pointer stays unique.
    input: Arc<Vec<Listener>>,
    subsets: Vec<(String, Vec<String>)>,
    via: WeightsVia,
    shape: Overlays,
    listeners: Arc<Vec<Listener>>,
}

impl Memo {
    pub fn apply(&mut self, overlays: &Overlays, config: &mut Config, via: WeightsVia) {
        if overlays.0.is_empty() && via == WeightsVia::Routes {
            return;
        }
        overlays.set_runtime(config, via);
        overlays.rewrite_grpc(config);
        let subsets = subsets(config);
        let shape = overlays.route_shape(via);
        if let Some(last) = &self.last {
            if Arc::ptr_eq(&last.input, &config.listeners)
                && last.via == via
                && last.shape == shape
                && last.subsets == subsets
            {
                config.listeners = last.listeners.clone();
                return;
            }
        }
        let input = config.listeners.clone();
        overlays.rewrite_routes(config, via);
        self.last = Some(Last {
            input,
            subsets,
            via,
            shape,
            listeners: config.listeners.clone(),
        });
    }
}

/// Every service with subsets, and their names: what arming reads besides
/// the routes.
fn subsets(config: &Config) -> Vec<(String, Vec<String>)> {
    config
        .services
        .values()
        .filter(|s| !s.subsets.is_empty())
        .map(|s| (s.name.clone(), s.subsets.keys().cloned().collect()))
        .collect()
}

fn backend(service: &str, subset: &str) -> Backend {
    Backend {
        service: service.to_string(),
        subset: Some(subset.to_string()),
    }
}

/// One backend at 0 % or 100 % (Envoy rejects a zero total, and a plain
/// cluster is the simplest form), else a two-way split.
fn split(service: &str, o: &Overlay) -> RouteAction {
    match o.canary_weight {
        0 => RouteAction::Backend(backend(service, &o.stable)),
        w if w >= 100 => RouteAction::Backend(backend(service, &o.canary)),
        w => RouteAction::Split(vec![
            WeightedBackend {
                backend: backend(service, &o.stable),
                weight: 100 - w,
            },
            WeightedBackend {
                backend: backend(service, &o.canary),
                weight: w,
            },
        ]),
    }
}

/// The armed form of a route to `to`, one subset X of a service: a split
/// that reads its weights from the keys under
/// [`runtime_key_prefix`]`(service, X)` and whose own weights, used by a
/// proxy that holds no such key, send everything to X. It names X first,
/// then the service's other subsets (and `canary`, should the rules no
/// longer name it) at 0 %. `None` for a whole service, or one with a
/// single subset and no canary: there is nothing to roll out to.
fn armed(
    services: &BTreeMap<String, Arc<Service>>,
    to: &Backend,
    canary: Option<&str>,
) -> Option<RouteAction> {
    let from = to.subset.as_deref()?;
    let mut others: Vec<&str> = services
        .get(&to.service)
        .map(|s| s.subsets.keys().map(String::as_str).collect())
        .unwrap_or_default();
    others.extend(canary);
    others.sort_unstable();
    others.dedup();
    others.retain(|s| *s != from);
    if others.is_empty() {
        return None;
    }
    let weighted = |subset: &str, weight| WeightedBackend {
        backend: backend(&to.service, subset),
        weight,
    };
    Some(RouteAction::RuntimeSplit {
        key_prefix: runtime_key_prefix(&to.service, from),
        split: std::iter::once(weighted(from, 100))
            .chain(others.into_iter().map(|s| weighted(s, 0)))
            .collect(),
    })
}

/// The governed route, narrowed to the header and sent to the canary; it
/// goes right before the original so Envoy tries it first.
fn header_route(route: &Route, service: &str, o: &Overlay, h: &HeaderRoute) -> Route {
    let mut r = route.clone();
    r.name = format!("{}~canary-header", route.name);
    r.matcher.headers.push(HeaderMatch {
        name: h.name.clone(),
        value: ValueMatch::Exact(h.value.clone()),
        invert: false,
    });
    r.action = RouteAction::Backend(backend(service, &o.canary));
    r
}
