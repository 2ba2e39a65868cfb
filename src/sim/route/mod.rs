//! Route selection with Envoy's semantics, over a decoded
//! `RouteConfiguration` (not sluice's rules, so what is checked is what was
//! actually sent).
//!
//! A [`RouteTable`] is compiled once per distinct route configuration
//! (regexes built, domains sorted) and shared by every proxy that holds it.
//! Selection follows Envoy: the virtual host by domain (exact, then the
//! longest `*` suffix wildcard, then the longest prefix wildcard, then `*`),
//! then the first route whose path, headers and query parameters all match,
//! then a weighted cluster by `random % total` over cumulative weights.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use regex::Regex;

use super::filters::{LuaRoute, PerFilter, PerFilterChain};
use super::hash::{HashPolicy, RequestHash};
use super::resources::DecodeError;

mod compile;
mod headers;
pub(crate) use compile::value_match;
use compile::{compile_route, filter_configs};
pub use headers::HeaderEdits;

/// Envoy's router timeout when a route sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A request as routing sees it. Header names are lowercase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub authority: String,
    /// Path with query string, as in `:path`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub source: Option<IpAddr>,
    /// `:method`; empty means GET.
    pub method: String,
    /// The buffered request body, for filters that read it.
    pub body: Option<String>,
}

impl Request {
    pub fn get(authority: &str, path: &str) -> Request {
        Request {
            authority: authority.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// `:method` (GET unless set).
    pub fn method(&self) -> &str {
        if self.method.is_empty() {
            "GET"
        } else {
            &self.method
        }
    }

    /// The same request with another method and a body.
    pub fn with_body(mut self, method: &str, body: &str) -> Request {
        self.method = method.into();
        self.body = Some(body.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// A header's value; repeated headers are joined with `,` as Envoy does
    /// for matching. Pseudo-headers are looked up too.
    pub fn header_value(&self, name: &str) -> Option<String> {
        match name {
            ":authority" | "host" => return Some(self.authority.clone()),
            ":path" => return Some(self.path.clone()),
            ":method" => return Some(self.method().into()),
            _ => {}
        }
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    fn path_only(&self) -> &str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        &self.path[..end]
    }

    fn first_query_value(&self, name: &str) -> Option<&str> {
        let q = self.path.split_once('?')?.1;
        let q = q.split('#').next().unwrap_or("");
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

#[derive(Debug)]
pub struct RouteTable {
    pub name: String,
    vhosts: Vec<VirtualHost>,
    exact: HashMap<String, usize>,
    /// `*.example.com` as (`.example.com`, vhost), longest first.
    suffix: Vec<(String, usize)>,
    /// `example.*` as (`example.`, vhost), longest first.
    prefix: Vec<(String, usize)>,
    any: Option<usize>,
}

impl PartialEq for RouteTable {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.vhosts.len() == other.vhosts.len()
    }
}

#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub routes: Vec<Route>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    path: PathMatch,
    case_sensitive: bool,
    headers: Vec<Matcher>,
    query: Vec<(String, Option<ValueMatch>)>,
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
enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    SeparatedPrefix(String),
}

/// A `StringMatcher` with its regex built.
#[derive(Debug)]
pub(crate) enum ValueMatch {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Contains(String, bool),
    Regex(Regex),
}

#[derive(Debug)]
struct Matcher {
    name: String,
    /// `None`: present match.
    value: Option<ValueMatch>,
    invert: bool,
    present: bool,
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

/// Why no route was found: both are Envoy's 404 (`NR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRoute {
    NoVirtualHost,
    NoRouteMatch,
}

impl RouteTable {
    pub fn compile(rc: &RouteConfiguration) -> Result<RouteTable, DecodeError> {
        let mut t = RouteTable {
            name: rc.name.clone(),
            vhosts: Vec::new(),
            exact: HashMap::new(),
            suffix: Vec::new(),
            prefix: Vec::new(),
            any: None,
        };
        let rc_filters = filter_configs(&rc.typed_per_filter_config, &BTreeMap::new())?;
        if rc.most_specific_header_mutations_wins {
            return Err(DecodeError::Unsupported(format!(
                "route configuration {:?}: most_specific_header_mutations_wins",
                rc.name
            )));
        }
        let rc_edits = Edits::of(
            &format!("route configuration {:?}", rc.name),
            (&rc.request_headers_to_add, &rc.request_headers_to_remove),
            (&rc.response_headers_to_add, &rc.response_headers_to_remove),
        )?;
        for (i, vh) in rc.virtual_hosts.iter().enumerate() {
            // The deprecated `cors` field (not what sluice sends, and not
            // read by the simulator's CORS filter).
            #[allow(deprecated)]
            if vh.cors.is_some() {
                return Err(DecodeError::Unsupported(format!(
                    "virtual host {:?}: cors field (use typed_per_filter_config)",
                    vh.name
                )));
            }
            let vh_filters = filter_configs(&vh.typed_per_filter_config, &rc_filters)?;
            let vh_edits = Edits::of(
                &format!("virtual host {:?}", vh.name),
                (&vh.request_headers_to_add, &vh.request_headers_to_remove),
                (&vh.response_headers_to_add, &vh.response_headers_to_remove),
            )?
            .then(&rc_edits);
            for d in &vh.domains {
                let d = d.to_ascii_lowercase();
                let dup = if d == "*" {
                    t.any.replace(i).is_some()
                } else if let Some(s) = d.strip_prefix('*') {
                    t.suffix.iter().any(|(x, _)| x == s) || {
                        t.suffix.push((s.to_string(), i));
                        false
                    }
                } else if let Some(p) = d.strip_suffix('*') {
                    t.prefix.iter().any(|(x, _)| x == p) || {
                        t.prefix.push((p.to_string(), i));
                        false
                    }
                } else {
                    t.exact.insert(d.clone(), i).is_some()
                };
                if dup {
                    // Envoy's message for a domain in two virtual hosts.
                    return Err(DecodeError::Invalid(format!(
                        "Only unique values for domains are permitted. Duplicate entry of domain {d} in route {}",
                        rc.name
                    )));
                }
            }
            let routes = vh
                .routes
                .iter()
                .map(|r| compile_route(r, &vh_filters, &vh_edits))
                .collect::<Result<_, _>>()?;
            t.vhosts.push(VirtualHost {
                name: vh.name.clone(),
                routes,
            });
        }
        // Longest wildcard wins; stable sort keeps file order among equals.
        t.suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        t.prefix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(t)
    }

    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let host = authority.to_ascii_lowercase();
        let i = self.exact.get(&host).copied().or_else(|| {
            // A wildcard stands for at least one character.
            let suffix = self
                .suffix
                .iter()
                .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()));
            let prefix = || {
                self.prefix
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
            };
            suffix.or_else(prefix).map(|(_, i)| *i).or(self.any)
        })?;
        self.vhosts.get(i)
    }

    /// The first route that matches, as Envoy's router picks it.
    pub fn route(&self, req: &Request) -> Result<&Route, NoRoute> {
        let vh = self
            .virtual_host(&req.authority)
            .ok_or(NoRoute::NoVirtualHost)?;
        vh.routes
            .iter()
            .find(|r| r.matches(req))
            .ok_or(NoRoute::NoRouteMatch)
    }
}

/// Header edits of one level and those of the levels around it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Edits {
    request: Vec<Arc<HeaderEdits>>,
    response: Vec<Arc<HeaderEdits>>,
}

type Options<'a> = (
    &'a [envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
    &'a [String],
);

impl Edits {
    fn of(what: &str, request: Options, response: Options) -> Result<Edits, DecodeError> {
        let one = |(add, remove): Options| -> Result<Vec<Arc<HeaderEdits>>, DecodeError> {
            let e = HeaderEdits::decode(what, add, remove)?;
            Ok(if e.is_empty() {
                vec![]
            } else {
                vec![Arc::new(e)]
            })
        };
        Ok(Edits {
            request: one(request)?,
            response: one(response)?,
        })
    }

    /// These edits, then the enclosing level's.
    fn then(mut self, outer: &Edits) -> Edits {
        self.request.extend(outer.request.iter().cloned());
        self.response.extend(outer.response.iter().cloned());
        self
    }
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

impl ValueMatch {
    pub(crate) fn matches(&self, v: &str) -> bool {
        let fold = |a: &str, ic: bool| if ic { a.to_lowercase() } else { a.to_string() };
        match self {
            ValueMatch::Exact(s, ic) => fold(v, *ic) == *s,
            ValueMatch::Prefix(s, ic) => fold(v, *ic).starts_with(s.as_str()),
            ValueMatch::Suffix(s, ic) => fold(v, *ic).ends_with(s.as_str()),
            ValueMatch::Contains(s, ic) => fold(v, *ic).contains(s.as_str()),
            ValueMatch::Regex(re) => re.is_match(v),
        }
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
