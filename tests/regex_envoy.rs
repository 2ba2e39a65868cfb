//! sluice's RE2 program-size check agrees with the real Envoy.
//!
//! Each regex of the table goes through both: `sluice::rules::parse` with
//! the regex as a route match, and `envoy --mode validate` on a static
//! bootstrap whose inline route configuration matches on the same regex
//! (Envoy's default runtime, so its default limit of 100). The table holds
//! small regexes, the example from docs/rules.md (277) and regexes on both
//! sides of 100 (sizes in the comments, as Envoy 1.40 reports them).

mod common;
mod real_envoy;

use std::path::Path;

const TABLE: &[&str] = &[
    r"^/files/[a-z0-9-]{1,64}\.(png|jpe?g|gif|webp)$", // 277
    r"^/files/[a-z0-9-]{1,19}\.(png|jpe?g|gif|webp)$", // 97
    r"^/files/[a-z0-9-]{1,20}\.(png|jpe?g|gif|webp)$", // 101
    r"^/api/v[0-9]+/(users|orders|items|products|carts)/[0-9a-f]{30}$", // 99
    r"^/api/v[0-9]+/(users|orders|items|products|carts)/[0-9a-f]{31}$", // 101
    r"(?i)^/static/[a-z0-9_.-]{1,19}$",                // 98
    r"(?i)^/static/[a-z0-9_.-]{1,20}$",                // 103
    r"^[0-9]{1,49}$",                                  // 99
    r"^[0-9]{1,50}$",                                  // 101
    r"^a{98}",                                         // 100
    r"^a{99}",                                         // 101
    r"a{96}",                                          // 100
    r"a{97}",                                          // 101
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", // 70
    r"^/users/(\d+)/orders/(\d+)/items/(\d+)/reviews/(\d+)/comments/(\d+)$", // 58
    r"^/(en|de|fr|es|it|nl|pt|pl|sv|da|fi|no|cs|hu|ro|el|bg|hr|sk|sl|lt|lv|et|ga|mt)/.*$", // 55
    r"^/api/v[0-9]+/users/[0-9]+$",                    // 15
    r"(?i)^bearer .+$",                                // 7
    r"[^/]+",                                          // 7
    r"^/v1/",                                          // 4
];

/// True when sluice refuses `regex`; any refusal must be the size check.
fn sluice_refuses(regex: &str) -> bool {
    let yaml = format!(
        "services:\n{}{}          - match: {{regex: '{}'}}\n            to: {{service: web}}\n",
        common::rules::web_v1_v2(8081, 8082),
        common::rules::http_listener(0, "web"),
        regex.replace('\'', "''")
    );
    common::rules::refused_only_because(&yaml, "Envoy refuses more than 100", regex)
}

/// Envoy's verdict: `None` when it accepts, else its output, which must
/// name the program size as the reason.
fn envoy_refusal(regex: &str, dir: &Path) -> Option<String> {
    let route_config = serde_json::json!({
        "virtual_hosts": [{
            "name": "web",
            "domains": ["*"],
            "routes": [{
                "match": {"safe_regex": {"regex": regex}},
                "direct_response": {"status": 200}
            }]
        }]
    });
    let bootstrap = serde_json::json!({
        "static_resources": {
            "listeners": [real_envoy::static_http_listener(route_config)]
        }
    });
    let path = dir.join("bootstrap.json");
    std::fs::write(&path, bootstrap.to_string()).expect("write bootstrap");
    let text = real_envoy::validate(&path).err()?;
    assert!(
        text.contains("RE2 program size of") && text.contains("> max program size of 100"),
        "{regex}: Envoy refused it for another reason:\n{text}"
    );
    Some(text)
}

#[test]
fn sluice_refuses_exactly_the_regexes_envoy_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut disagreements = Vec::new();
    let mut refused = 0;
    for regex in TABLE {
        let ours = sluice_refuses(regex);
        let envoys = envoy_refusal(regex, dir.path());
        refused += usize::from(envoys.is_some());
        if ours != envoys.is_some() {
            let envoy = envoys.as_deref().unwrap_or("accepted");
            disagreements.push(format!("{regex}: sluice refuses: {ours}; Envoy: {envoy}"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // Both verdicts occur, so agreement is not vacuous.
    assert!(refused > 0 && refused < TABLE.len(), "{refused} refused");
}
