//! B8's rules file, shared by the scenario (`b8.rs`) and the criterion
//! benchmarks of the rules path (`benches/hot_paths.rs`): `routes` routes,
//! four per service, each service one endpoint on 127.x; route `k` of
//! service `s` matches `/svc-SSSS/rK/` and goes to `target(s, k)`.

use std::fmt::Write as _;

/// Port of every endpoint (nothing listens: the proxies are simulated).
const PORT: u16 = 10_000;

fn service(i: usize) -> String {
    format!("svc-{i:04}")
}

pub fn rules(routes: usize, target: impl Fn(usize, usize) -> usize) -> String {
    let services = routes.div_ceil(4);
    let mut s = String::with_capacity(routes * 90 + services * 110);
    s.push_str("services:\n");
    for i in 0..services {
        let _ = writeln!(
            s,
            "  - name: {}\n    endpoints: [{{address: 127.1.{}.{}, port: {PORT}}}]",
            service(i),
            (i >> 8) as u8,
            i as u8,
        );
    }
    s.push_str(
        "listeners:\n  - name: http\n    address: 127.0.0.1\n    port: 10000\n    virtual_hosts:\n      - name: all\n        domains: [\"*\"]\n        routes:\n",
    );
    for r in 0..routes {
        let (svc, k) = (r / 4, r % 4);
        let _ = writeln!(
            s,
            "          - match: {{prefix: /{}/r{k}/}}\n            to: {{service: {}}}",
            service(svc),
            service(target(svc, k))
        );
    }
    s
}

/// The rules with route 0 of service 0 (`/svc-0000/r0/`) sent to service
/// `to`, every other route as [`rules`] with each route to its own service.
pub fn edited(routes: usize, to: usize) -> String {
    rules(routes, |s, k| if s == 0 && k == 0 { to } else { s })
}
