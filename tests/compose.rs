//! `compose/` cannot be run here (no Docker engine, no compose plugin), so
//! this checks that its files agree with each other the way a user relies
//! on: the rules sluice mounts load, name the registries by their compose
//! service names and ports, Envoy publishes every listener port, the
//! bootstrap points at sluice's xDS port, and every registered backend is
//! a compose service at the address and port the registry gives.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compose")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read");
    let node = marked_yaml::parse_yaml(0, &text).expect("YAML");
    marked_yaml::from_node(&node).expect("plain YAML")
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value of `--flag=value` in a service's command.
fn flag(service: &Value, name: &str) -> String {
    let prefix = format!("--{name}=");
    service["command"]
        .as_array()
        .expect("command list")
        .iter()
        .find_map(|a| s(a).strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("no --{name} in {service}"))
}

fn ip(service: &Value) -> String {
    s(&service["networks"]["mesh"]["ipv4_address"])
}

fn host_port(url: &str) -> (String, u16) {
    let rest = url.split("://").last().expect("url");
    let (h, p) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .expect("host:port");
    (h.to_string(), p.parse().expect("port"))
}

#[test]
fn compose_files_agree_with_each_other() {
    let compose = yaml(&dir().join("docker-compose.yml"));
    let services = compose["services"].as_object().expect("services");
    for name in [
        "consul",
        "etcd",
        "sluice",
        "envoy",
        "backend-a",
        "backend-b",
    ] {
        assert!(
            services.contains_key(name),
            "compose service {name} missing"
        );
    }

    // sluice mounts the rules file its --rules flag names, and it loads.
    let sluice = &services["sluice"];
    let rules_path = flag(sluice, "rules");
    let mount = format!("./sluice.yaml:{rules_path}:ro");
    assert!(
        sluice["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| s(v) == mount),
        "sluice must mount {mount}"
    );
    let config = sluice::rules::load_file(&dir().join("sluice.yaml")).expect("rules load");
    // sluice starts with these arguments: they parse, and they pass the
    // checks `serve` makes before it binds (plaintext xDS off loopback
    // needs --xds-insecure, say). Nothing is bound here.
    let args = std::iter::once("sluice".to_string())
        .chain(sluice["command"].as_array().expect("command").iter().map(s));
    let cli = <sluice::cli::Cli as clap::Parser>::try_parse_from(args).expect("sluice's flags");
    let sluice::cli::Command::Serve(serve) = cli.command else {
        panic!("the sluice service runs `sluice serve`");
    };
    if let Err(e) = sluice::serve::ServeOptions::try_from(serve) {
        panic!("`sluice serve` would refuse to start: {e:#}");
    }

    // The registries are reached by compose service name and their ports.
    let consul = config.sources.consul.as_ref().expect("consul source");
    assert_eq!(host_port(&consul.address), ("consul".into(), 8500));
    let etcd = config.sources.etcd.as_ref().expect("etcd source");
    let etcd_listen = flag(&services["etcd"], "listen-client-urls");
    assert_eq!(host_port(&etcd.endpoints[0]).0, "etcd");
    assert_eq!(host_port(&etcd.endpoints[0]).1, host_port(&etcd_listen).1);

    // Envoy publishes every listener port; its bootstrap targets sluice.
    let published: BTreeSet<String> = services["envoy"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(s)
        .collect();
    for l in config.listeners.iter() {
        assert!(
            published.contains(&format!("{0}:{0}", l.port)),
            "listener {} not published",
            l.port
        );
    }
    let xds_port = host_port(&flag(sluice, "xds")).1;
    assert_eq!(
        host_port(&flag(&services["bootstrap"], "xds")),
        ("sluice".into(), xds_port)
    );

    // Consul's registrations: the service the rules discover, at backend
    // addresses and ports, with the versions the subsets select.
    let defs = serde_json::from_str::<Value>(
        &std::fs::read_to_string(dir().join("consul.d/demo.json")).expect("consul.d"),
    )
    .expect("json");
    let wanted: BTreeSet<String> = config
        .services
        .values()
        .flat_map(|svc| svc.discovery.iter())
        .filter_map(|d| match d {
            sluice::model::Discovery::Consul { service, .. } => Some(service.clone()),
            _ => None,
        })
        .collect();
    let mut versions = BTreeSet::new();
    for def in defs["services"].as_array().expect("services") {
        assert!(wanted.contains(&s(&def["name"])), "{def}");
        let backend = &services[&s(&def["id"])];
        assert_eq!(ip(backend), s(&def["address"]), "{def}");
        let listen = format!("-listen=:{}", def["port"]);
        assert!(
            backend["command"]
                .as_array()
                .expect("cmd")
                .iter()
                .any(|a| s(a) == listen),
            "{def}"
        );
        versions.insert(s(&def["meta"]["version"]));
    }
    let selected: BTreeSet<String> = config.services["demo"]
        .subsets
        .values()
        .filter_map(|sel| sel.get("version").cloned())
        .collect();
    assert_eq!(
        versions, selected,
        "each subset selects a registered version"
    );

    // The etcd seed writes a backend's address.
    let seed = s(&services["etcd-seed"]["command"][0]);
    assert!(
        seed.contains(&format!("\"address\":\"{}\"", ip(&services["backend-c"]))),
        "{seed}"
    );
}

/// `docker-compose.ha.yml` on top of the demo: three replicas that would
/// start (their flags pass `serve`'s checks), share the rules, the etcd
/// state and its prefix, have names of their own, and are all in Envoy's
/// bootstrap.
#[test]
fn the_three_replica_variant_agrees_with_the_demo() {
    let base = yaml(&dir().join("docker-compose.yml"));
    let ha = yaml(&dir().join("docker-compose.ha.yml"));
    // Compose merges services by name; a command given in the override
    // replaces the base's.
    let mut services = base["services"].as_object().expect("services").clone();
    for (name, over) in ha["services"].as_object().expect("services") {
        let merged = services
            .entry(name.clone())
            .or_insert_with(|| Value::Object(Default::default()));
        for (k, v) in over.as_object().expect("service") {
            merged[k] = v.clone();
        }
    }
    let replicas = ["sluice", "sluice-2", "sluice-3"];
    let mut names = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for r in replicas {
        let svc = &services[r];
        let args = std::iter::once("sluice".to_string())
            .chain(svc["command"].as_array().expect("command").iter().map(s));
        let cli = <sluice::cli::Cli as clap::Parser>::try_parse_from(args)
            .unwrap_or_else(|e| panic!("{r}: {e}"));
        let sluice::cli::Command::Serve(serve) = cli.command else {
            panic!("{r} runs `sluice serve`");
        };
        if let Err(e) = sluice::serve::ServeOptions::try_from(serve) {
            panic!("{r}: `sluice serve` would refuse to start: {e:#}");
        }
        assert_eq!(flag(svc, "rules"), flag(&services["sluice"], "rules"));
        assert!(
            svc["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .any(|v| s(v).starts_with("./sluice.yaml:")),
            "{r} mounts the demo's rules"
        );
        assert_eq!(
            host_port(&flag(svc, "state-etcd")),
            ("etcd".into(), 2379),
            "{r}"
        );
        assert_eq!(flag(svc, "state-prefix"), "/sluice/", "{r}");
        names.insert(flag(svc, "replica-name"));
        ips.insert(ip(svc));
    }
    assert_eq!(names.len(), 3, "replica names must differ: {names:?}");
    assert_eq!(ips.len(), 3, "replica addresses must differ: {ips:?}");
    let xds: BTreeSet<(String, u16)> = flag(&services["bootstrap"], "xds")
        .split(',')
        .map(host_port)
        .collect();
    let want: BTreeSet<(String, u16)> = replicas
        .iter()
        .map(|r| (r.to_string(), host_port(&flag(&services[*r], "xds")).1))
        .collect();
    assert_eq!(xds, want, "Envoy's bootstrap lists every replica");
}
