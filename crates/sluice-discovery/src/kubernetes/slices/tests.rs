use super::*;

fn mk_slice(name: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            "version": "v2"}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("slice")
}

fn http() -> serde_json::Value {
    serde_json::json!([{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}])
}

fn ep(ip: &str, ready: bool, serving: bool, terminating: bool) -> serde_json::Value {
    serde_json::json!({"addresses": [ip], "zone": "zone-a",
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn health_of(j: &Joined) -> Vec<(String, Health)> {
    j.endpoints
        .iter()
        .map(|(k, v)| (k.clone(), v.health))
        .collect()
}

#[test]
fn conditions_port_labels_and_zone() {
    let a = mk_slice(
        "web-a",
        http(),
        serde_json::json!([
            ep("10.0.0.1", true, true, false),
            ep("10.0.0.2", false, true, true),
            ep("10.0.0.3", false, false, true),
            ep("10.0.0.4", false, true, false),
            {"addresses": ["10.0.0.5"]},
        ]),
    );
    let j = join([&a], "http");
    assert_eq!(
        health_of(&j),
        [
            ("10.0.0.1:8080".into(), Health::Healthy),
            ("10.0.0.2:8080".into(), Health::Draining),
            ("10.0.0.4:8080".into(), Health::Draining),
            // Unset conditions: ready, as the API says.
            ("10.0.0.5:8080".into(), Health::Healthy),
        ]
    );
    let e = &j.endpoints["10.0.0.1:8080"];
    assert_eq!(
        e.labels,
        BTreeMap::from([("version".to_string(), "v2".to_string())])
    );
    assert_eq!(e.locality.as_ref().expect("zone").zone, "zone-a");
    assert!(j.rejected.is_empty());
    // By number too, and another named port.
    assert!(join([&a], "9090").endpoints.contains_key("10.0.0.1:9090"));
    assert!(join([&a], "admin").endpoints.contains_key("10.0.0.1:9090"));
}

#[test]
fn slices_are_joined_and_a_moving_address_keeps_its_better_health() {
    let a = mk_slice(
        "web-a",
        http(),
        serde_json::json!([ep("10.0.0.1", false, true, true)]),
    );
    let b = mk_slice(
        "web-b",
        http(),
        serde_json::json!([
            ep("10.0.0.1", true, true, false),
            ep("10.0.0.2", true, true, false)
        ]),
    );
    for order in [[&a, &b], [&b, &a]] {
        let j = join(order, "http");
        assert_eq!(
            health_of(&j),
            [
                ("10.0.0.1:8080".into(), Health::Healthy),
                ("10.0.0.2:8080".into(), Health::Healthy)
            ]
        );
    }
}

#[test]
fn refused_slices_and_addresses_say_why() {
    let mut fqdn = mk_slice(
        "web-f",
        http(),
        serde_json::json!([ep("a.example", true, true, false)]),
    );
    fqdn.address_type = "FQDN".into();
    let bad = mk_slice(
        "web-x",
        http(),
        serde_json::json!([ep("nope", true, true, false)]),
    );
    let other_port = mk_slice(
        "web-o",
        serde_json::json!([{"name": "grpc", "port": 1}]),
        serde_json::json!([]),
    );
    let no_ports = mk_slice(
        "web-n",
        serde_json::json!(null),
        serde_json::json!([ep("10.0.0.9", true, true, false)]),
    );
    let j = join([&fqdn, &bad, &other_port, &no_ports], "http");
    assert!(j.endpoints.is_empty());
    assert_eq!(j.rejected.len(), 3, "{:?}", j.rejected);
    assert!(j.rejected[0].contains("FQDN"));
    assert!(j.rejected[1].contains("not an IP literal"));
    assert!(j.rejected[2].contains("no port named \"http\""));
}
