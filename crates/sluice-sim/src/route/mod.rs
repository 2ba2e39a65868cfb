//! Route selection with Envoy's semantics, over a decoded
//! `RouteConfiguration` (not sluice's rules, so what is checked is what was
//! actually sent).
//!
//! A [`RouteTable`] is compiled once per distinct route configuration
//! (regexes built, domains sorted) and shared by every proxy that holds it.
//! Selection follows Envoy: the virtual host by domain (exact, then the
//! longest `*` suffix wildcard, then the longest prefix wildcard, then `*`),
//! then the first route whose path, headers and query parameters all match
//! (a route entry and its action live in `entry`, the proto decoding in
//! `compile`), then a weighted cluster by `random % total` over cumulative
//! weights ([`Forward::pick_cluster`]).

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

use crate::decode::DecodeError;
pub use crate::http::Request;

mod compile;
mod entry;
use compile::{compile_route, filter_configs, Edits};
pub use entry::{Action, Clusters, Forward, Retry, Route, DEFAULT_TIMEOUT};

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
