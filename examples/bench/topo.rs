//! Topology M1 of issue #7: `services` services × `per` endpoints, one
//! listener, one route per service. Endpoints come either from the rules
//! file (`static`) or from etcd, one prefix per service (`/m1/svc-NNNN/`).
//!
//! Every endpoint has its own loopback address `127.(1+k).(i>>8).(i&255)`
//! (service i, endpoint k) and a port `BASE_PORT + generation`: a change
//! moves one endpoint to its next generation, so "a proxy has change c"
//! is "its CLA for the service lists that address at a port ≥ c's port",
//! which also counts a change superseded by a later one of the same
//! endpoint (a coalescing control plane may skip intermediate states).
//! Nothing ever connects to these addresses.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

pub const BASE_PORT: u16 = 10_000;
/// The service a canary rollout moves (it alone has subsets).
pub const CANARY_SERVICE: &str = "svc-0000";

#[derive(Clone, Copy, Debug)]
pub struct Topology {
    pub services: usize,
    pub per: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    Static,
    Etcd { url: &'a str },
}

pub fn service(i: usize) -> String {
    format!("svc-{i:04}")
}

pub fn address(i: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1 + k as u8, (i >> 8) as u8, i as u8)
}

/// `v1` for even endpoints, `v2` for odd ones (the canary's subsets).
pub fn version(k: usize) -> &'static str {
    if k.is_multiple_of(2) {
        "v1"
    } else {
        "v2"
    }
}

/// The etcd key of endpoint k of service i.
pub fn etcd_key(i: usize, k: usize) -> String {
    format!("/m1/{}/{k}", service(i))
}

/// The endpoint record (etcd value) at `port`.
pub fn record(i: usize, k: usize, port: u16) -> String {
    format!(
        r#"{{"address":"{}","port":{port},"labels":{{"version":"{}"}}}}"#,
        address(i, k),
        version(k)
    )
}

/// The rules file.
pub fn rules(t: Topology, source: Source) -> String {
    let mut s = String::with_capacity(t.services * (200 + 80 * t.per));
    if let Source::Etcd { url } = source {
        let _ = writeln!(s, "sources:\n  etcd: {{endpoints: [\"{url}\"]}}");
    }
    s.push_str("services:\n");
    for i in 0..t.services {
        let _ = writeln!(s, "  - name: {}", service(i));
        match source {
            Source::Static => {
                s.push_str("    endpoints:\n");
                for k in 0..t.per {
                    let _ = writeln!(
                        s,
                        "      - {{address: {}, port: {BASE_PORT}, labels: {{version: {}}}}}",
                        address(i, k),
                        version(k)
                    );
                }
            }
            Source::Etcd { .. } => {
                let _ = writeln!(
                    s,
                    "    discovery: {{etcd: {{prefix: /m1/{}/}}}}",
                    service(i)
                );
            }
        }
        if i == 0 {
            s.push_str("    subsets:\n      stable: {version: v1}\n      canary: {version: v2}\n");
        }
    }
    s.push_str(
        "listeners:\n  - name: http\n    address: 127.0.0.1\n    port: 10000\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n",
    );
    for i in 0..t.services {
        let subset = if i == 0 { ", subset: stable" } else { "" };
        let _ = writeln!(
            s,
            "          - match: {{prefix: /{0}/}}\n            to: {{service: {0}{subset}}}",
            service(i)
        );
    }
    s
}

/// The request path that the canary service's route matches.
pub fn canary_path() -> String {
    format!("/{CANARY_SERVICE}/")
}
