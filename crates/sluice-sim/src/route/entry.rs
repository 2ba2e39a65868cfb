//! One route entry as Envoy's router holds it: what it matches (path,
//! headers, query parameters, see [`Route::matches`]), what it does
//! ([`Action`]: forward to one or weighted clusters with a timeout, retry
//! and hash policy; answer directly; redirect), and the per-filter configs
//! and header edits it carries. Built by `compile`, selected by the
//! [`RouteTable`](super::RouteTable).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use crate::filters::{LuaRoute, PerFilter, PerFilterChain};
use crate::hash::{HashPolicy, RequestHash};
use crate::http::{HeaderEdits, Request, ValueMatch};

/// Envoy's router timeout when a route sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub(super) path: PathMatch,
    pub(super) case_sensitive: bool,
    pub(super) headers: Vec<Matcher>,
    pub(super) query: Vec<(String, Option<ValueMatch>)>,
    pub action: Action,
    /// Per-filter configs by filter name, most specific first (route,
    /// virtual host, route configuration).
    pub filters: BTreeMap<String, PerFilterChain>,
    /// `request_headers_to_add/remove` of the route, its virtual host and
    /// the route configuration, in the order the router applies them
    /// (most specific first, so the least specific wins a conflict:
    /// Envoy's default without `most_specific_header_mutations_wins`).
    pub request_headers: Vec<Arc<HeaderEdits>>,
    /// `response_headers_to_add/remove`, in the same order.
    pub response_headers: Vec<Arc<HeaderEdits>>,
}

#[derive(Debug)]
pub(super) enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    SeparatedPrefix(String),
}

#[derive(Debug)]
pub(super) struct Matcher {
    pub(super) name: String,
    /// `None`: present match.
    pub(super) value: Option<ValueMatch>,
    pub(super) invert: bool,
    pub(super) present: bool,
}

#[derive(Debug)]
pub enum Action {
    Forward(Forward),
    Direct(u16),
    Redirect,
}

#[derive(Debug)]
pub struct Forward {
    pub clusters: Clusters,
    pub timeout: Duration,
    pub retry: Option<Retry>,
    pub hash_policy: Vec<HashPolicy>,
}

#[derive(Clone, Debug)]
pub enum Clusters {
    One(String),
    Weighted {
        clusters: Vec<(String, u64)>,
        total: u64,
        /// Envoy's `runtime_key_prefix`: each weight is read per request
        /// from the runtime key `<prefix>.<cluster>`, the configured
        /// weight being the default, and the total summed again.
        runtime_key_prefix: Option<String>,
    },
}

/// The parts of `retry_policy` the simulator acts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    pub on_5xx: bool,
    pub on_gateway_error: bool,
    pub on_reset: bool,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
}

impl Route {
    /// Applies the router's request header edits to `headers`.
    pub fn edit_request(&self, headers: &mut Vec<(String, String)>) {
        self.request_headers.iter().for_each(|e| e.apply(headers));
    }

    /// Applies the router's response header edits to `headers`.
    pub fn edit_response(&self, headers: &mut Vec<(String, String)>) {
        self.response_headers.iter().for_each(|e| e.apply(headers));
    }

    /// The most specific per-filter config of filter `name`.
    pub fn per_filter(&self, name: &str) -> Option<&PerFilter> {
        self.filters.get(name).and_then(|c| c.first())
    }

    /// The most specific `LuaPerRoute` of Lua filter `name`.
    pub fn lua(&self, name: &str) -> Option<&LuaRoute> {
        match self.per_filter(name)? {
            PerFilter::Lua(l) => Some(l),
            _ => None,
        }
    }

    pub fn matches(&self, req: &Request) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => starts_with(req.path_only(), p, self.case_sensitive),
            PathMatch::Exact(p) => {
                let path = req.path_only();
                if self.case_sensitive {
                    path == p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(re) => re.is_match(req.path_only()),
            PathMatch::SeparatedPrefix(p) => {
                let path = req.path_only();
                path == p
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
        };
        path_ok
            && self.headers.iter().all(|m| m.matches(req))
            && self
                .query
                .iter()
                .all(|(name, v)| match (req.first_query_value(name), v) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(val), Some(v)) => v.matches(val),
                })
    }
}

/// The cluster whose cumulative weight range holds `random % total`.
fn pick_weighted<'a>(
    clusters: impl Iterator<Item = (&'a str, u64)>,
    total: u64,
    random: u64,
) -> &'a str {
    let selected = random % total;
    let mut end = 0;
    let mut last = "";
    for (name, weight) in clusters {
        end += weight;
        last = name;
        if selected < end {
            return name;
        }
    }
    // Unreachable while total is the sum of the weights.
    last
}

impl Clusters {
    /// Each cluster's weight for one request, in order: the configured
    /// weight, or with a runtime key prefix the integer `runtime` holds
    /// for `<prefix>.<cluster>`, the configured weight its default. A
    /// single cluster weighs 1.
    pub fn weights(&self, runtime: &dyn Fn(&str) -> Option<u64>) -> Vec<(&str, u64)> {
        match self {
            Clusters::One(c) => vec![(c.as_str(), 1)],
            Clusters::Weighted {
                clusters,
                runtime_key_prefix,
                ..
            } => clusters
                .iter()
                .map(|(name, default)| {
                    let weight = match runtime_key_prefix {
                        Some(p) => runtime(&format!("{p}.{name}")).unwrap_or(*default),
                        None => *default,
                    };
                    (name.as_str(), weight)
                })
                .collect(),
        }
    }
}

impl Forward {
    /// The cluster for this request: Envoy picks `random % total` and walks
    /// the cumulative weights in order. With a runtime key prefix the
    /// weights come from `runtime` (a key's integer, if it has one) and
    /// the total is their sum; Envoy picks no cluster when that is zero,
    /// and neither does this (an empty name, which no cluster has).
    pub fn pick_cluster(&self, random: u64, runtime: &dyn Fn(&str) -> Option<u64>) -> &str {
        match &self.clusters {
            Clusters::One(c) => c,
            Clusters::Weighted {
                clusters,
                total,
                runtime_key_prefix: None,
            } => pick_weighted(
                clusters.iter().map(|(n, w)| (n.as_str(), *w)),
                *total,
                random,
            ),
            Clusters::Weighted { .. } => {
                let weights = self.clusters.weights(runtime);
                let total = weights.iter().map(|(_, w)| w).sum();
                if total == 0 {
                    return "";
                }
                pick_weighted(weights.into_iter(), total, random)
            }
        }
    }

    pub fn hash(&self, req: &Request) -> Option<u64> {
        RequestHash::of(&self.hash_policy, req)
    }
}

fn starts_with(s: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        s.starts_with(prefix)
    } else {
        s.len() >= prefix.len()
            && s.is_char_boundary(prefix.len())
            && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    }
}

impl Matcher {
    fn matches(&self, req: &Request) -> bool {
        let got = req.header_value(&self.name);
        let inner = match (&got, &self.value) {
            (None, _) => false,
            (Some(_), None) => self.present,
            (Some(v), Some(m)) => m.matches(v),
        };
        inner != self.invert
    }
}
