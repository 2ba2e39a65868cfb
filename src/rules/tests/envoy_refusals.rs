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
