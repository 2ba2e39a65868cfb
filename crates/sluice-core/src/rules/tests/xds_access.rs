//! `xds_access`: what it parses to, and each error at its position.

use super::*;
use crate::model::{AccessEntry, Principal};

const HASH: &str = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";

/// `SVC` then an `xds_access` list (from line 8) of `entries`.
fn mk_access(entries: &str) -> String {
    format!("{SVC}listeners: []\nxds_access:\n{entries}")
}

#[test]
fn identity_and_token_entries_parse_in_file_order() {
    let yaml = mk_access(&format!(
        "  - identity: \"spiffe://acme.test/edge/*\"
    groups: [edge]
    node_id: \"edge-*\"
  - token_sha256: {HASH}
    groups: [batch, jobs]
"
    ));
    let config = parse("rules.yaml", &yaml).expect("valid");
    assert_eq!(
        *config.xds_access,
        vec![
            AccessEntry {
                principal: Principal::Identity("spiffe://acme.test/edge/*".into()),
                groups: vec!["edge".into()],
                node_id: Some("edge-*".into()),
            },
            AccessEntry {
                // Stored lowercase: a stream's token hash is compared as such.
                principal: Principal::TokenSha256(HASH.to_ascii_lowercase()),
                groups: vec!["batch".into(), "jobs".into()],
                node_id: None,
            },
        ]
    );
}

#[test]
fn absent_section_is_empty() {
    let config = parse("rules.yaml", SVC).expect("valid");
    assert!(config.xds_access.is_empty());
}

#[test]
fn an_entry_names_exactly_one_credential() {
    assert_error(
        &mk_access("  - groups: [edge]\n"),
        9,
        5,
        "xds_access[0]",
        "add `identity`",
    );
    assert_error(
        &mk_access(&format!(
            "  - identity: envoy.acme.test\n    token_sha256: {HASH}\n    groups: [edge]\n"
        )),
        10,
        19,
        "xds_access[0].token_sha256",
        "not both",
    );
}

#[test]
fn a_token_that_is_not_a_hash_is_refused_without_echoing_it() {
    let diags = mk_errors(&mk_access(
        "  - token_sha256: s3cr3t-token-pasted-by-mistake\n    groups: [batch]\n",
    ));
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_diag(
        &diags[0],
        9,
        19,
        "xds_access[0].token_sha256",
        "64 hex digits",
    );
    assert!(!diags[0].message.contains("s3cr3t"), "{}", diags[0].message);
}

#[test]
fn groups_are_required_and_exact() {
    assert_error(
        &mk_access("  - identity: envoy.acme.test\n"),
        9,
        5,
        "xds_access[0]",
        "groups",
    );
    assert_error(
        &mk_access("  - identity: envoy.acme.test\n    groups: []\n"),
        10,
        13,
        "xds_access[0].groups",
        "list the node groups",
    );
    assert_error(
        &mk_access("  - identity: envoy.acme.test\n    groups: [\"edge-*\"]\n"),
        10,
        14,
        "xds_access[0].groups[0]",
        "matched exactly",
    );
}

#[test]
fn patterns_are_checked() {
    assert_error(
        &mk_access("  - identity: \"\"\n    groups: [edge]\n"),
        9,
        15,
        "xds_access[0].identity",
        "must not be empty",
    );
    assert_error(
        &mk_access("  - identity: \"spiffe://acme.test/**\"\n    groups: [edge]\n"),
        9,
        15,
        "xds_access[0].identity",
        "`**` is not supported",
    );
    assert_error(
        &mk_access("  - identity: envoy.acme.test\n    groups: [edge]\n    node_id: \"a b\"\n"),
        11,
        14,
        "xds_access[0].node_id",
        "whitespace",
    );
}

#[test]
fn unknown_entry_fields_name_the_valid_ones() {
    assert_error(
        &mk_access("  - identity: envoy.acme.test\n    groups: [edge]\n    group: edge\n"),
        11,
        5,
        "xds_access[0].group",
        "groups",
    );
}
