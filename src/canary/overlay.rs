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

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{HeaderRoute, Rollout};
use crate::model::{Backend, Config, HeaderMatch, Route, RouteAction, ValueMatch, WeightedBackend};

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
    /// step changes only sluice's RTDS runtime layer (a few bytes). The
    /// routes change once, when the rollout starts. Needs Envoys whose
    /// bootstrap has sluice's RTDS layer (`sluice bootstrap` adds it); a
    /// proxy without it keeps all governed traffic on the stable subset
    /// and never counts as having reached a step.
    Runtime,
}

/// The runtime key prefix of the governed routes of `service`'s rollout;
/// each subset's weight is under `<prefix>.<service>~<subset>`.
pub fn runtime_key_prefix(service: &str) -> String {
    format!("sluice.rollout.{service}")
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
    /// [`WeightsVia::Runtime`], also sets the weights as runtime keys.
    pub fn apply(&self, config: &mut Config, via: WeightsVia) {
        if self.0.is_empty() {
            return;
        }
        if via == WeightsVia::Runtime {
            let mut keys = BTreeMap::new();
            for (service, o) in &self.0 {
                let prefix = runtime_key_prefix(service);
                let w = o.canary_weight.min(100);
                let stable = backend(service, &o.stable).cluster_name();
                let canary = backend(service, &o.canary).cluster_name();
                keys.insert(format!("{prefix}.{stable}"), 100 - w);
                keys.insert(format!("{prefix}.{canary}"), w);
            }
            config.runtime = Arc::new(keys);
        }
        for vh in config
            .listeners_mut()
            .iter_mut()
            .flat_map(|l| l.virtual_hosts.iter_mut())
        {
            let mut routes = Vec::with_capacity(vh.routes.len());
            for route in vh.routes.drain(..) {
                let Some((service, o)) = self.governing(&route) else {
                    routes.push(route);
                    continue;
                };
                if let Some(h) = &o.header {
                    routes.push(header_route(&route, service, o, h));
                }
                let mut route = route;
                route.action = match via {
                    WeightsVia::Routes => split(service, o),
                    WeightsVia::Runtime => runtime_split(service, o),
                };
                routes.push(route);
            }
            vh.routes = routes;
        }
    }

    fn governing(&self, route: &Route) -> Option<(&str, &Overlay)> {
        let backends = route.action.backends();
        let first = backends.first()?;
        let (service, o) = self.0.get_key_value(&first.service)?;
        let all_of_service = backends.iter().all(|b| b.service == *service);
        let names_stable = backends
            .iter()
            .any(|b| b.subset.as_deref() == Some(o.stable.as_str()));
        (all_of_service && names_stable).then_some((service.as_str(), o))
    }
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

/// The split whose weights Envoy reads from the runtime keys
/// [`Overlays::apply`] sets. Its own weights, used by a proxy that holds no
/// such key, send everything to the stable subset; they do not change
/// from step to step, so neither do the routes.
fn runtime_split(service: &str, o: &Overlay) -> RouteAction {
    RouteAction::RuntimeSplit {
        key_prefix: runtime_key_prefix(service),
        split: vec![
            WeightedBackend {
                backend: backend(service, &o.stable),
                weight: 100,
            },
            WeightedBackend {
                backend: backend(service, &o.canary),
                weight: 0,
            },
        ],
    }
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
