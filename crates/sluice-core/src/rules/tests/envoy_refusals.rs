//! What Envoy would refuse, or never match, is refused at load: regexes
//! over RE2's program-size limit, header values Envoy rejects, and path
//! matches that can never match because Envoy matches without the query.

use super::*;

/// The example from docs/rules.md: Envoy 1.40 reports an RE2 program of
/// 277 instructions and NACKs the route.
const TOO_LARGE: &str = r"^/files/[a-z0-9-]{1,64}\.(png|jpe?g|gif|webp)$";

#[test]
fn a_regex_over_envoys_program_size_limit_is_refused() {
    let yaml = mk_route(&format!(
        "          - match: {{regex: '{TOO_LARGE}'}}\n            to: {{service: web}}\n"
    ));
    assert_error(
        &yaml,
        14,
        28,
        "listeners[0].virtual_hosts[0].routes[0].match.regex",
        "RE2 compiles it to 277 instructions (estimated) and Envoy refuses more than 100",
    );
}

#[test]
fn every_regex_field_is_size_checked() {
    let big = "[a-z]{1,60}";
    let cases = [
        (
            format!("          - match: {{headers: [{{name: x, regex: '{big}'}}]}}\n            to: {{service: web}}\n"),
            48,
            "match.headers[0].regex",
        ),
        (
            format!("          - match: {{query: [{{name: q, regex: '{big}'}}]}}\n            to: {{service: web}}\n"),
            46,
            "match.query[0].regex",
        ),
        (
            format!("          - to: {{service: web}}\n            rewrite: {{regex: {{pattern: '{big}', substitution: x}}}}\n"),
            40,
            "rewrite.regex.pattern",
        ),
    ];
    for (route, column, field) in cases {
        let line = if field.starts_with("rewrite") { 15 } else { 14 };
        assert_error(
            &mk_route(&route),
            line,
            column,
            &format!("listeners[0].virtual_hosts[0].routes[0].{field}"),
            "and Envoy refuses more than 100",
        );
    }
}

#[test]
fn a_regex_at_the_limit_is_accepted() {
    // Envoy reports exactly 100 for this one (and 101 for `^a{99}`).
    let yaml = mk_route("          - match: {regex: '^a{98}'}\n            to: {service: web}\n");
    parse("rules.yaml", &yaml).expect("100 instructions are within Envoy's limit");
}

#[test]
fn a_prefix_or_path_with_a_query_or_fragment_is_refused() {
    for (field, value, column) in [("prefix", "/search?q=", 29), ("path", "/page#top", 27)] {
        let yaml = mk_route(&format!(
            "          - match: {{{field}: '{value}'}}\n            to: {{service: web}}\n"
        ));
        assert_error(
            &yaml,
            14,
            column,
            &format!("listeners[0].virtual_hosts[0].routes[0].match.{field}"),
            "Envoy matches the path without the query string",
        );
    }
}

/// A virtual host with `body` (lines at 8-space indent, from line 12 on)
/// before its one route, `route` (lines at 12-space indent, from the line
/// after the route's `to`).
fn mk_vhost_route(body: &str, route: &str) -> String {
    mk_vhost(&format!(
        "        domains: [\"*\"]\n{body}        routes:\n          - to: {{service: web}}\n{route}"
    ))
}

#[test]
fn header_values_with_control_characters_are_refused() {
    let vhost = "        auth:
          api_key:
            header: x-api-key
            keys:
              - {key: k1, consumer: \"c1\\r\\nx-admin: 1\", plan: \"gold\\u0001\"}
";
    let diags = mk_errors(&mk_vhost_route(vhost, ""));
    let p = "listeners[0].virtual_hosts[0].auth.api_key.keys[0]";
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_diag(
        &diags[0],
        17,
        37,
        &format!("{p}.consumer"),
        "holds the control character '\\r' at byte 2; Envoy refuses control characters other than tab",
    );
    assert_diag(
        &diags[1],
        17,
        63,
        &format!("{p}.plan"),
        "'\\u{1}' at byte 4",
    );
}

#[test]
fn every_header_value_field_is_checked() {
    let route = "            transform:
              request:
                set_headers: {x-a: \"v\\n\"}
                add_headers: {x-b: \"v\\u007f\"}
                rewrite_path: \"/p\\r\"
            request_headers: {set: {x-c: \"\\0\"}}
            response_headers:
              set:
                x-d: |
                  a block scalar
                  ends lines with LF
            rewrite: {host: \"h\\n\"}
            cors: {allow_origins: [\"*\"], allow_methods: [\"GET\\n\"], allow_headers: [\"x\\u0008\"], expose_headers: [\"y\\u001b\"]}
";
    let diags = mk_errors(&mk_vhost_route("", route));
    let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
    let r = "listeners[0].virtual_hosts[0].routes[0]";
    let expected: Vec<String> = [
        "transform.request.set_headers.x-a",
        "transform.request.add_headers.x-b",
        "transform.request.rewrite_path",
        "request_headers.set.x-c",
        "response_headers.set.x-d",
        "rewrite.host",
        "cors.allow_methods[0]",
        "cors.allow_headers[0]",
        "cors.expose_headers[0]",
    ]
    .iter()
    .map(|f| format!("{r}.{f}"))
    .collect();
    assert_eq!(paths, expected, "{diags:#?}");
    assert!(diags
        .iter()
        .all(|d| d.message.contains("control character")));
}

#[test]
fn redirects_basic_auth_and_cookies_are_checked_too() {
    let vhost = "        auth:
          basic:
            realm: \"r\\n\"
            users:
              - {user: \"al\\u0001ice\", password: pw}
              - {user: bob, consumer: \"b\\nob\", password: pw}
";
    let route = "          - match: {prefix: /old}
            redirect: {host: \"h\\r\", path: \"/p\\n\"}
";
    let diags = mk_errors(&mk_vhost_route(vhost, route));
    let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
    let vh = "listeners[0].virtual_hosts[0]";
    assert_eq!(
        paths,
        [
            format!("{vh}.auth.basic.realm"),
            format!("{vh}.auth.basic.users[0].user"),
            format!("{vh}.auth.basic.users[1].consumer"),
            format!("{vh}.routes[1].redirect.host"),
            format!("{vh}.routes[1].redirect.path"),
        ],
        "{diags:#?}"
    );
}

#[test]
fn tabs_non_ascii_and_templates_are_fine() {
    let route = "            transform:
              request:
                set_headers: {x-a: \"a\\tb\", x-b: \"é ü\", x-c: \"${header.x-src}\"}
            request_headers: {set: {x-d: \"%DOWNSTREAM_REMOTE_ADDRESS%\"}}
";
    parse("rules.yaml", &mk_vhost_route("", route)).expect("valid header values");
}

#[test]
fn hash_cookies_are_checked() {
    let yaml = super::policy::mk_service_file("ring_hash", "")
        + "            hash: [{cookie: {name: \"s\\u0001\", ttl: 60s, path: \"/\\n\"}}]\n";
    let diags = mk_errors(&yaml);
    let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
    let h = "listeners[0].virtual_hosts[0].routes[0].hash[0].cookie";
    assert_eq!(
        paths,
        [format!("{h}.name"), format!("{h}.path")],
        "{diags:#?}"
    );
}
