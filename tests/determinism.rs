//! `compile` is deterministic across processes: the same `Config` gives
//! byte-identical resources and versions in separate processes (each with its
//! own `HashMap` random seed) and in this one.
//!
//! The test re-runs its own binary twice with `DIGEST_ENV` set; the child
//! prints one line per resource (group, type, name, version, SHA-256 of the
//! body) between markers, and the parent compares.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice::compile::compile;
use sluice::model::*;
use sluice::xds::{Snapshot, TypeUrl};

const DIGEST_ENV: &str = "SLUICE_DETERMINISM_CHILD";
const TEST_NAME: &str = "compile_is_deterministic_across_processes";
const BEGIN: &str = "---BEGIN DIGEST---";
const END: &str = "---END DIGEST---";

#[test]
fn compile_is_deterministic_across_processes() {
    let here = digest(&mk_rich_config());
    if std::env::var_os(DIGEST_ENV).is_some() {
        println!("{BEGIN}\n{here}{END}");
        return;
    }
    let first = run_child();
    let second = run_child();
    assert!(here.lines().count() > 100, "fixture is rich: {here}");
    assert_eq!(first, second, "two processes disagree");
    assert_eq!(first, here, "child process disagrees with this one");
}

fn run_child() -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(DIGEST_ENV, "1")
        .output()
        .expect("run child test binary");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(out.status.success(), "child failed: {stdout}");
    let start = stdout.find(BEGIN).expect("begin marker") + BEGIN.len() + 1;
    let end = stdout.find(END).expect("end marker");
    stdout[start..end].to_owned()
}

fn digest(config: &Config) -> String {
    let snaps = compile(config).expect("fixture compiles");
    let mut out = String::new();
    let groups = snaps
        .groups
        .iter()
        .map(|(g, s)| (g.as_str(), s.as_ref()))
        .chain([("(fallback)", snaps.fallback.as_ref())]);
    for (group, snap) in groups {
        digest_snapshot(&mut out, group, snap);
    }
    out
}

fn digest_snapshot(out: &mut String, group: &str, snap: &Snapshot) {
    for ty in TypeUrl::ALL {
        let _ = writeln!(out, "{group} {ty} version={}", snap.version(ty));
        for (name, res) in snap.resources(ty) {
            let body = Sha256::digest(&res.body);
            let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "{group} {ty} {name} {} {hex}", res.version);
        }
    }
}

/// Many services, labels, subsets, groups, and every kind of route feature.
fn mk_rich_config() -> Config {
    let zones = ["us-east-1a", "us-east-1b", "eu-west-1a"];
    let mut services = BTreeMap::new();
    for s in 0..24u8 {
        let name = format!("svc-{s:02}");
        let endpoints = (0..8u8)
            .map(|e| Endpoint {
                address: IpAddr::V4(Ipv4Addr::new(10, s, e, 1)),
                port: 8000 + u16::from(e),
                labels: BTreeMap::from([
                    ("version".to_owned(), format!("v{}", e % 3)),
                    ("zone".to_owned(), zones[usize::from(e) % 3].to_owned()),
                    (
                        "tier".to_owned(),
                        if e % 2 == 0 { "gold" } else { "std" }.into(),
                    ),
                    ("shard".to_owned(), format!("{}", e % 4)),
                ]),
                weight: 1 + u32::from(e % 5),
            })
            .collect();
        let mut subsets = BTreeMap::new();
        for v in 0..3 {
            subsets.insert(
                format!("v{v}"),
                BTreeMap::from([("version".to_owned(), format!("v{v}"))]),
            );
        }
        subsets.insert(
            "gold-east".to_owned(),
            BTreeMap::from([
                ("tier".to_owned(), "gold".to_owned()),
                ("zone".to_owned(), "us-east-1a".to_owned()),
            ]),
        );
        let lb = [
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest,
            LbPolicy::Random,
            LbPolicy::RingHash,
            LbPolicy::Maglev,
        ][usize::from(s) % 5];
        services.insert(
            name.clone(),
            Service {
                name,
                connect_timeout: Duration::from_millis(100 + u64::from(s) * 10),
                lb_policy: lb,
                endpoints,
                subsets,
            },
        );
    }
    let group_sets: [Option<&[&str]>; 6] = [
        None,
        Some(&["edge"]),
        Some(&["edge", "mesh"]),
        Some(&["mesh"]),
        Some(&["batch", "edge"]),
        None,
    ];
    let listeners = group_sets
        .iter()
        .enumerate()
        .map(|(i, groups)| mk_listener(i, *groups))
        .collect();
    Config {
        services,
        listeners,
    }
}

fn mk_listener(i: usize, groups: Option<&[&str]>) -> Listener {
    let virtual_hosts = (0..3)
        .map(|v| VirtualHost {
            name: format!("vh-{v}"),
            domains: vec![format!("host{v}.example.com"), format!("*.l{i}.internal")],
            routes: (0..4).map(|r| mk_route(i, v, r)).collect(),
        })
        .collect();
    Listener {
        name: format!("listener-{i}"),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 10000 + u16::try_from(i).expect("small"),
        groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
        virtual_hosts,
    }
}

fn mk_route(i: usize, v: usize, r: usize) -> Route {
    let svc = |k: usize| format!("svc-{:02}", (i * 7 + v * 3 + r + k) % 24);
    let action = if r.is_multiple_of(2) {
        RouteAction::Split(vec![
            WeightedBackend {
                backend: Backend {
                    service: svc(0),
                    subset: Some("v1".into()),
                },
                weight: 80,
            },
            WeightedBackend {
                backend: Backend {
                    service: svc(0),
                    subset: Some("v2".into()),
                },
                weight: 15,
            },
            WeightedBackend {
                backend: Backend {
                    service: svc(1),
                    subset: None,
                },
                weight: 5,
            },
        ])
    } else {
        RouteAction::Backend(Backend {
            service: svc(2),
            subset: Some("gold-east".into()),
        })
    };
    let path = match r % 3 {
        0 => PathMatch::Prefix(format!("/p{r}/")),
        1 => PathMatch::Exact(format!("/exact/{r}")),
        _ => PathMatch::Regex(format!("^/re{r}/[a-z]+$")),
    };
    Route {
        name: format!("r-{i}-{v}-{r}"),
        matcher: RouteMatch {
            path,
            headers: vec![
                HeaderMatch {
                    name: "x-canary".into(),
                    value: ValueMatch::Exact("1".into()),
                    invert: r % 2 == 1,
                },
                HeaderMatch {
                    name: "x-user".into(),
                    value: ValueMatch::Regex("^[0-9]+$".into()),
                    invert: false,
                },
                HeaderMatch {
                    name: "x-trace".into(),
                    value: ValueMatch::Present,
                    invert: false,
                },
            ],
            query: vec![QueryMatch {
                name: "debug".into(),
                value: ValueMatch::Prefix("t".into()),
            }],
        },
        action,
        timeout: Some(Duration::from_millis(500 * r as u64)),
        retry: Some(RetryPolicy {
            on: vec!["5xx".into(), "reset".into(), "connect-failure".into()],
            attempts: 2,
            per_try_timeout: Some(Duration::from_millis(250)),
        }),
    }
}
