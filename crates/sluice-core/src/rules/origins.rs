//! Where each rule of a file is written: a map from what compile builds
//! back to file:line:column and field path.
//!
//! The model keeps no positions (two configs that differ only in layout
//! compile to the same bytes), so whatever reports on compiled resources —
//! Envoy's own check of them, a diff of what an edit changes — looks the
//! rule up here. [`Origins`] is keyed the way compile names resources: a
//! listener, and its route configuration, by the listener's name; a
//! cluster (and its load assignment) by [`Backend::cluster_name`]; a
//! listener's secret by [`compile::secret_name`]. Inside a route
//! configuration, virtual hosts and routes keep file order, so they are
//! found by index. Built from the raw file in the same pass as the model
//! ([`super::parse_with_origins`]).
//!
//! [`Backend::cluster_name`]: crate::model::Backend::cluster_name
//! [`compile::secret_name`]: crate::compile::secret_name

use std::collections::BTreeMap;

use crate::rules::yaml::Span;

use super::error::{Diagnostic, Diags};
use super::raw::{RawConfig, RawListener, RawService};
use crate::model::Origin;

/// Positions of a rules file's listeners and services (see the module
/// doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins {
    listeners: BTreeMap<String, ListenerOrigin>,
    services: BTreeMap<String, ServiceOrigin>,
}

/// A listener (`listeners[i]`, at its name) and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerOrigin {
    pub at: Origin,
    /// Its `tls` section, when it has one.
    pub tls: Option<Origin>,
    /// In file order, as in the compiled route configuration.
    pub virtual_hosts: Vec<VirtualHostOrigin>,
}

/// A virtual host (`listeners[i].virtual_hosts[j]`) and its routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualHostOrigin {
    pub at: Origin,
    /// `listeners[i].virtual_hosts[j].routes[k]`, in file order.
    pub routes: Vec<Origin>,
}

/// A service (`services[i]`, at its name) and its subsets
/// (`services[i].subsets.NAME`, at the subset's key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceOrigin {
    pub at: Origin,
    pub subsets: BTreeMap<String, Origin>,
}

impl Origins {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerOrigin> {
        self.listeners.get(name)
    }

    /// Every listener, by name.
    pub fn listeners(&self) -> impl Iterator<Item = (&str, &ListenerOrigin)> {
        self.listeners.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceOrigin> {
        self.services.get(name)
    }

    /// Every service, by name.
    pub fn services(&self) -> impl Iterator<Item = (&str, &ServiceOrigin)> {
        self.services.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The rule behind a route configuration: its listener, after which
    /// compile names it.
    pub fn route_configuration(&self, name: &str) -> Option<&Origin> {
        self.listener(name).map(|l| &l.at)
    }

    /// Virtual host `index` of route configuration `route_config`.
    pub fn virtual_host(&self, route_config: &str, index: usize) -> Option<&Origin> {
        let listener = self.listener(route_config)?;
        listener.virtual_hosts.get(index).map(|vh| &vh.at)
    }

    /// Route `route` of virtual host `vhost` of route configuration
    /// `route_config` (indices as in the compiled `RouteConfiguration`).
    pub fn route(&self, route_config: &str, vhost: usize, route: usize) -> Option<&Origin> {
        let listener = self.listener(route_config)?;
        listener.virtual_hosts.get(vhost)?.routes.get(route)
    }

    /// The rule behind a cluster or its load assignment: the subset for
    /// `service~subset`, else the service (`~` is in no rules name, see
    /// [`Backend::cluster_name`](crate::model::Backend::cluster_name)).
    pub fn cluster(&self, name: &str) -> Option<&Origin> {
        match name.split_once('~') {
            Some((service, subset)) => self.service(service)?.subsets.get(subset),
            None => self.service(name).map(|s| &s.at),
        }
    }

    /// The rule behind a listener's certificate secret: its `tls` section.
    pub fn secret(&self, name: &str) -> Option<&Origin> {
        self.listeners
            .iter()
            .find(|(listener, _)| crate::compile::secret_name(listener) == name)
            .and_then(|(_, l)| l.tls.as_ref())
    }
}

impl Diagnostic {
    /// A diagnostic about the rule at `origin`.
    pub fn at(origin: &Origin, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: origin.file.clone(),
            line: origin.line,
            column: origin.column,
            path: origin.path.clone(),
            message: message.into(),
        }
    }
}

/// The origins of every entry of `raw`; `d` knows the file and corrects
/// block mapping positions.
pub fn collect(raw: &RawConfig, d: &Diags) -> Origins {
    let listeners = raw
        .listeners
        .iter()
        .map(|item| {
            let path = format!("listeners[{}]", item.index);
            (item.raw.name.to_string(), listener(&item.raw, &path, d))
        })
        .collect();
    let services = raw
        .services
        .iter()
        .map(|item| {
            let path = format!("services[{}]", item.index);
            (item.raw.name.to_string(), service(&item.raw, &path, d))
        })
        .collect();
    Origins {
        listeners,
        services,
    }
}

fn listener(raw: &RawListener, path: &str, d: &Diags) -> ListenerOrigin {
    let virtual_hosts = raw
        .virtual_hosts
        .iter()
        .enumerate()
        .map(|(i, vh)| {
            let vh_path = format!("{path}.virtual_hosts[{i}]");
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .map(|(k, r)| origin(d, r.span(), format!("{vh_path}.routes[{k}]")))
                .collect();
            VirtualHostOrigin {
                at: origin(d, vh.span(), vh_path),
                routes,
            }
        })
        .collect();
    ListenerOrigin {
        at: origin(d, raw.name.span(), path.to_owned()),
        tls: raw
            .tls
            .as_ref()
            .map(|t| origin(d, t.span(), format!("{path}.tls"))),
        virtual_hosts,
    }
}

fn service(raw: &RawService, path: &str, d: &Diags) -> ServiceOrigin {
    let subsets = raw
        .subsets
        .0
        .iter()
        .map(|(name, _)| {
            let at = origin(d, name.span(), format!("{path}.subsets.{}", name.as_str()));
            (name.to_string(), at)
        })
        .collect();
    ServiceOrigin {
        at: origin(d, raw.name.span(), path.to_owned()),
        subsets,
    }
}

fn origin(d: &Diags, span: &Span, path: String) -> Origin {
    let loc = d.loc(span);
    Origin {
        file: d.file().to_owned(),
        line: loc.line,
        column: loc.column,
        path,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_with_origins;
    use super::*;

    /// Two listeners, one with TLS and two virtual hosts; a service with
    /// two subsets. Line numbers are asserted below.
    const RULES: &str = "services:
  - name: web
    endpoints:
      - {address: 127.0.0.1, port: 8081, labels: {version: v1}}
    subsets:
      stable: {version: v1}
      canary: {version: v1}
  - name: api
    endpoints: [{address: 127.0.0.1, port: 8082}]
listeners:
  - name: http
    port: 10000
    virtual_hosts:
      - name: web
        domains: [\"*\"]
        routes:
          - match: {prefix: /v2}
            to: {service: web, subset: canary}
          - to: {service: web}
  - name: https
    port: 10443
    tls:
      cert_file: a.pem
      key_file: a.key
    virtual_hosts:
      - name: api
        domains: [api.example.com]
        routes:
          - {to: {service: api}}
      - name: rest
        domains: [\"*\"]
        routes:
          - to: {service: web, subset: stable}
";

    fn at(o: Option<&Origin>) -> (usize, usize, &str) {
        let o = o.expect("origin");
        assert_eq!(o.file, "rules.yaml");
        (o.line, o.column, o.path.as_str())
    }

    #[test]
    fn compiled_names_lead_back_to_their_rules() {
        let (config, origins) = parse_with_origins("rules.yaml", RULES).expect("valid");
        // What `parse` gives, plus positions.
        assert_eq!(
            config,
            super::super::parse("rules.yaml", RULES).expect("valid")
        );
        assert_eq!(
            at(origins.route_configuration("http")),
            (11, 11, "listeners[0]")
        );
        assert_eq!(
            at(origins.virtual_host("https", 1)),
            (30, 9, "listeners[1].virtual_hosts[1]")
        );
        assert_eq!(
            at(origins.route("http", 0, 1)),
            (19, 13, "listeners[0].virtual_hosts[0].routes[1]")
        );
        // A flow mapping starts at its brace.
        assert_eq!(
            at(origins.route("https", 0, 0)),
            (29, 13, "listeners[1].virtual_hosts[0].routes[0]")
        );
        assert_eq!(at(origins.cluster("api")), (8, 11, "services[1]"));
        assert_eq!(
            at(origins.cluster("web~canary")),
            (7, 7, "services[0].subsets.canary")
        );
        assert_eq!(
            at(origins.secret(&crate::compile::secret_name("https"))),
            (23, 7, "listeners[1].tls")
        );
        assert_eq!(origins.route("http", 0, 2), None);
        assert_eq!(origins.cluster("web~nope"), None);
        assert_eq!(origins.secret(&crate::compile::secret_name("http")), None);
        let names: Vec<&str> = origins.listeners().map(|(n, _)| n).collect();
        assert_eq!(names, ["http", "https"]);
    }

    #[test]
    fn a_rule_diagnostic_reads_like_any_other() {
        let (_, origins) = parse_with_origins("rules.yaml", RULES).expect("valid");
        let origin = origins.route("http", 0, 0).expect("route");
        assert_eq!(
            Diagnostic::at(origin, "envoy refused: bad").to_string(),
            "rules.yaml:17:13: listeners[0].virtual_hosts[0].routes[0]: envoy refused: bad"
        );
    }
}
