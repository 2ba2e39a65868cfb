use super::*;

fn mk_entry(node: &str, id: &str, svc_addr: &str, checks: &str) -> String {
    format!(
        r#"{{"Node":{{"Node":"{node}","Address":"10.0.0.9","Datacenter":"dc1",
             "Meta":{{"zone":"dc1-a","consul-network-segment":""}}}},
            "Service":{{"ID":"{id}","Service":"web","Tags":["v1","version=v1","canary"],
             "Address":"{svc_addr}","Port":8080,"Meta":{{"version":"v2"}},
             "Weights":{{"Passing":10,"Warning":2}}}},
            "Checks":[{checks}]}}"#
    )
}

fn check(id: &str, status: &str) -> String {
    format!(r#"{{"CheckID":"{id}","Status":"{status}"}}"#)
}

fn one(body: &str) -> Endpoint {
    let parsed = parse(body.as_bytes()).expect("array");
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    parsed.endpoints.into_values().next().expect("one endpoint")
}

#[test]
fn maps_address_labels_weight_locality() {
    let body = format!(
        "[{}]",
        mk_entry("n1", "web-1", "", &check("serfHealth", "passing"))
    );
    let parsed = parse(body.as_bytes()).expect("array");
    let (id, ep) = parsed.endpoints.iter().next().expect("one");
    assert_eq!(id, "n1/web-1");
    // Service.Address empty: the node's address.
    assert_eq!(ep.address.to_string(), "10.0.0.9");
    assert_eq!((ep.port, ep.weight, ep.health), (8080, 10, Health::Healthy));
    // Service.Meta wins over a `key=value` tag; plain tags are "true".
    assert_eq!(ep.labels["version"], "v2");
    assert_eq!(ep.labels["canary"], "true");
    assert_eq!(ep.labels["v1"], "true");
    assert_eq!(ep.labels["node.zone"], "dc1-a");
    let loc = ep.locality.clone().expect("locality");
    assert_eq!((loc.region.as_str(), loc.zone.as_str()), ("dc1", "dc1-a"));
}

#[test]
fn service_address_wins_over_node_address() {
    let ep = one(&format!("[{}]", mk_entry("n1", "w", "10.1.1.1", "")));
    assert_eq!(ep.address.to_string(), "10.1.1.1");
}

#[test]
fn check_status_maps_to_health() {
    let cases = [
        (
            vec![check("a", "passing"), check("b", "passing")],
            Health::Healthy,
            10,
        ),
        (
            vec![check("a", "passing"), check("b", "warning")],
            Health::Degraded,
            2,
        ),
        (
            vec![check("a", "warning"), check("b", "critical")],
            Health::Unhealthy,
            10,
        ),
        (
            vec![
                check("a", "critical"),
                check("_node_maintenance", "critical"),
            ],
            Health::Draining,
            10,
        ),
        (
            vec![check("_service_maintenance:web-1", "critical")],
            Health::Draining,
            10,
        ),
        (vec![], Health::Healthy, 10),
    ];
    for (checks, want, weight) in cases {
        let ep = one(&format!("[{}]", mk_entry("n", "w", "", &checks.join(","))));
        assert_eq!((ep.health, ep.weight), (want, weight), "{checks:?}");
    }
}

#[test]
fn bad_elements_are_rejected_alone_and_keep_their_id() {
    let good = mk_entry("n1", "ok", "", "");
    let hostname = mk_entry("n2", "named", "web.local", "");
    let no_port = r#"{"Node":{"Node":"n3","Address":"10.0.0.3"},"Service":{"ID":"np"}}"#;
    let odd = mk_entry("n4", "odd", "", &check("x", "sideways"));
    let body = format!("[{good},{hostname},{no_port},{odd},42]");
    let parsed = parse(body.as_bytes()).expect("array");
    assert_eq!(parsed.endpoints.keys().collect::<Vec<_>>(), ["n1/ok"]);
    assert_eq!(parsed.rejected.len(), 4, "{:?}", parsed.rejected);
    assert!(parsed.rejected[0].contains("not an IPv4 or IPv6 literal"));
    assert!(parsed.rejected[1].contains("Port"));
    assert!(parsed.rejected[2].contains("unknown status"));
    assert!(parsed.rejected[3].starts_with("entry [4]"));
    assert_eq!(parsed.keep, ["n2/named", "n3/np", "n4/odd"]);
}

#[test]
fn garbage_body_is_an_error_and_empty_array_is_zero_instances() {
    assert!(parse(b"<html>").is_err());
    assert!(parse(br#"{"error":"x"}"#).is_err());
    assert_eq!(parse(b"[]").expect("array"), Parsed::default());
}
