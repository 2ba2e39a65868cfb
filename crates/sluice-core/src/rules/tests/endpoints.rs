//! Endpoint lists, which a file may hold 100,000s of and which are read
//! compactly (`raw::RawEndpoint`, `chunked::Chunked`): duplicates named
//! at both positions, order and fields kept across chunks.

use super::*;

/// A service `s` with these endpoints, one per line from line 4.
fn service_with(endpoints: &[String]) -> String {
    let mut text = String::from("services:\n  - name: s\n    endpoints:\n");
    for ep in endpoints {
        text.push_str(&format!("      - {ep}\n"));
    }
    text
}

fn plain(address: &str, port: u16) -> String {
    format!("{{address: {address}, port: {port}}}")
}

#[test]
fn a_duplicate_endpoint_is_reported_where_it_repeats_with_the_first_line() {
    let text = service_with(&[
        plain("10.0.0.1", 8080),
        plain("10.0.0.1", 8081),
        plain("::1", 80),
        plain("10.0.0.1", 8080),
        plain("0:0::1", 80),
        plain("10.0.0.1", 8080),
    ]);
    let diags = mk_errors(&text);
    assert_eq!(diags.len(), 3, "{diags:#?}");
    assert_diag(
        &diags[0],
        7,
        9,
        "services[0].endpoints[3]",
        "duplicate endpoint `10.0.0.1:8080` (first defined at line 4)",
    );
    // The same address written another way is the same endpoint.
    assert_diag(
        &diags[1],
        8,
        9,
        "services[0].endpoints[4]",
        "duplicate endpoint `[::1]:80` (first defined at line 6)",
    );
    // A third copy names the first, not the second.
    assert_diag(
        &diags[2],
        9,
        9,
        "services[0].endpoints[5]",
        "duplicate endpoint `10.0.0.1:8080` (first defined at line 4)",
    );
}

#[test]
fn endpoints_with_the_same_invalid_address_are_duplicates_too() {
    // An invalid address reads as 0.0.0.0 (an invalid port as 0), as it
    // always has: two such entries also collide.
    let text = service_with(&[plain("nope", 80), plain("nada", 80)]);
    let diags = mk_errors(&text);
    let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(diags.len(), 3, "{messages:#?}");
    let dup = "duplicate endpoint `0.0.0.0:80` (first defined at line 4)";
    assert!(messages.iter().any(|m| m.contains(dup)), "{messages:#?}");
}

#[test]
fn a_long_list_keeps_its_order_and_duplicates_are_found_across_chunks() {
    let n = 2 * super::super::chunked::CHUNK + 5;
    let addr = |i: usize| format!("10.0.{}.{}", i / 256, i % 256);
    let endpoints: Vec<String> = (0..n).map(|i| plain(&addr(i), 80)).collect();
    let config = parse("rules.yaml", &service_with(&endpoints)).expect("valid");
    let got: Vec<String> = config.services["s"]
        .endpoints
        .iter()
        .map(|ep| ep.address.to_string())
        .collect();
    assert_eq!(got, (0..n).map(addr).collect::<Vec<_>>());

    let mut twice = endpoints;
    twice[n - 1] = plain(&addr(3), 80);
    let diags = mk_errors(&service_with(&twice));
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_diag(
        &diags[0],
        4 + n - 1,
        9,
        &format!("services[0].endpoints[{}]", n - 1),
        "duplicate endpoint `10.0.0.3:80` (first defined at line 7)",
    );
}

#[test]
fn every_field_of_an_endpoint_reaches_the_model() {
    let text = service_with(&[
        plain("10.0.0.1", 80),
        "{address: 10.0.0.2, port: 81, weight: 7, labels: {v: '2'}, health: degraded, locality: {region: eu, zone: a, sub_zone: r1}, priority: 3}".to_string(),
        "{address: 10.0.0.3, port: 82, labels: {v: '3'}}".to_string(),
    ]);
    let config = parse("rules.yaml", &text).expect("valid");
    let eps = &config.services["s"].endpoints;
    let first = &eps[0];
    assert_eq!(
        (first.port, first.weight, first.priority, first.health),
        (80, 1, 0, crate::model::Health::Healthy)
    );
    assert!(first.labels.is_empty() && first.locality.is_none());
    let full = &eps[1];
    assert_eq!(
        (full.address, full.port, full.weight, full.priority),
        (ip("10.0.0.2"), 81, 7, 3)
    );
    assert_eq!(full.health, crate::model::Health::Degraded);
    assert_eq!(full.labels, BTreeMap::from([("v".into(), "2".into())]));
    let locality = full.locality.as_ref().expect("locality");
    assert_eq!(
        (
            locality.region.as_str(),
            locality.zone.as_str(),
            locality.sub_zone.as_str()
        ),
        ("eu", "a", "r1")
    );
    assert_eq!(eps[2].labels, BTreeMap::from([("v".into(), "3".into())]));
    assert_eq!((eps[2].weight, eps[2].locality.as_ref()), (1, None));
}

#[test]
fn a_bad_optional_field_is_located_and_unknown_fields_are_still_refused() {
    let text = service_with(&[
        plain("10.0.0.1", 80),
        "{address: 10.0.0.2, port: 81, weight: 0}".to_string(),
    ]);
    assert_error(
        &text,
        5,
        47,
        "services[0].endpoints[1].weight",
        "expected an integer from 1 to 128, found `0`",
    );
    let text = service_with(&["{address: 10.0.0.2, port: 81, wieght: 2}".to_string()]);
    assert_error(
        &text,
        4,
        39,
        "services[0].endpoints[0].wieght",
        "unknown field `wieght`",
    );
}
