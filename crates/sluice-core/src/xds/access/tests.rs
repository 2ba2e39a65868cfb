use super::*;
use crate::model::{AccessEntry, Principal};

fn identity(pattern: &str, groups: &[&str], node_id: Option<&str>) -> AccessEntry {
    AccessEntry {
        principal: Principal::Identity(pattern.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        node_id: node_id.map(str::to_string),
    }
}

fn token(hash: &str, groups: &[&str]) -> AccessEntry {
    AccessEntry {
        principal: Principal::TokenSha256(hash.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        node_id: None,
    }
}

fn cert(sans: &[&str]) -> Credentials {
    Credentials {
        identities: sans.iter().map(|s| s.to_string()).collect(),
        token_sha256: None,
    }
}

fn bearer(hash: &str) -> Credentials {
    Credentials {
        identities: Vec::new(),
        token_sha256: Some(hash.into()),
    }
}

const H1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const H2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

#[test]
fn uri_star_is_one_path_segment() {
    let p = "spiffe://acme.test/edge/*";
    assert!(identity_matches(p, "spiffe://acme.test/edge/envoy-1"));
    assert!(!identity_matches(p, "spiffe://acme.test/edge/a/b"));
    assert!(!identity_matches(p, "spiffe://acme.test/edge/"));
    assert!(!identity_matches(p, "spiffe://acme.test/edge"));
    assert!(!identity_matches(p, "spiffe://acme.test/internal/envoy-1"));
    assert!(!identity_matches(p, "spiffe://evil.test/edge/envoy-1"));
    // Partial segments, and the authority compared without case.
    assert!(identity_matches(
        "spiffe://acme.test/edge-*/x",
        "SPIFFE://ACME.test/edge-7/x"
    ));
    assert!(!identity_matches(
        "spiffe://acme.test/edge-*/x",
        "spiffe://acme.test/Edge-7/x"
    ));
    // A star in the authority stays within it.
    assert!(identity_matches(
        "spiffe://*/edge",
        "spiffe://acme.test/edge"
    ));
    assert!(!identity_matches(
        "spiffe://*/edge",
        "spiffe://acme.test/x/edge"
    ));
}

#[test]
fn dns_star_is_one_label() {
    let p = "*.edge.acme.test";
    assert!(identity_matches(p, "envoy-1.edge.acme.test"));
    assert!(identity_matches(p, "ENVOY-1.Edge.acme.test"));
    assert!(!identity_matches(p, "a.b.edge.acme.test"));
    assert!(!identity_matches(p, "edge.acme.test"));
    assert!(!identity_matches(p, ".edge.acme.test"));
    assert!(identity_matches("envoy.acme.test", "envoy.acme.test"));
    assert!(!identity_matches("envoy.acme.test", "envoy.acme.test.evil"));
    // A DNS pattern never matches a URI SAN, nor the other way round.
    assert!(!identity_matches("*", "spiffe://acme.test/edge"));
    assert!(!identity_matches("spiffe://acme.test/*", "acme.test"));
}

#[test]
fn node_id_star_is_any_characters() {
    assert!(node_id_matches("*", ""));
    assert!(node_id_matches("*", "a/b.c"));
    assert!(node_id_matches("edge-*", "edge-"));
    assert!(node_id_matches("edge-*-eu", "edge-1-2-eu"));
    assert!(!node_id_matches("edge-*", "core-1"));
    assert!(!node_id_matches("edge-1", "edge-10"));
    assert!(node_id_matches("**a", "bba"));
}

#[test]
fn without_entries_or_client_certificates_streams_are_open() {
    assert_eq!(
        authorize(&[], false, &Credentials::default(), "n", "g"),
        Ok(Grant::Open)
    );
    // A token sent anyway changes nothing.
    assert_eq!(
        authorize(&[], false, &bearer(H1), "n", "g"),
        Ok(Grant::Open)
    );
}

#[test]
fn required_client_certificates_with_no_entries_refuse_everyone() {
    let who = cert(&["spiffe://acme.test/edge/e1"]);
    assert_eq!(
        authorize(&[], true, &who, "e1", "edge"),
        Err(DenyReason::UnknownIdentity)
    );
    assert_eq!(
        authorize(&[], true, &Credentials::default(), "e1", "edge"),
        Err(DenyReason::NoCredentials)
    );
}

#[test]
fn an_identity_may_join_only_its_groups_and_node_ids() {
    let access = [identity(
        "spiffe://acme.test/edge/*",
        &["edge"],
        Some("edge-*"),
    )];
    let who = cert(&["spiffe://acme.test/edge/e1"]);
    assert_eq!(
        authorize(&access, true, &who, "edge-1", "edge"),
        Ok(Grant::Authenticated)
    );
    assert_eq!(
        authorize(&access, true, &who, "edge-1", "internal"),
        Err(DenyReason::GroupNotAllowed)
    );
    assert_eq!(
        authorize(&access, true, &who, "core-1", "edge"),
        Err(DenyReason::NodeIdNotAllowed)
    );
    let stranger = cert(&["spiffe://acme.test/internal/i1"]);
    assert_eq!(
        authorize(&access, true, &stranger, "edge-1", "edge"),
        Err(DenyReason::UnknownIdentity)
    );
}

#[test]
fn any_san_of_the_certificate_may_match() {
    let access = [identity("envoy.edge.acme.test", &["edge"], None)];
    let who = cert(&["spiffe://acme.test/other", "envoy.edge.acme.test"]);
    assert_eq!(
        authorize(&access, true, &who, "x", "edge"),
        Ok(Grant::Authenticated)
    );
}

#[test]
fn tokens_put_access_control_in_force_without_client_certificates() {
    let access = [token(H1, &["batch"])];
    assert_eq!(
        authorize(&access, false, &bearer(H1), "b1", "batch"),
        Ok(Grant::Authenticated)
    );
    assert_eq!(
        authorize(&access, false, &bearer(H2), "b1", "batch"),
        Err(DenyReason::UnknownToken)
    );
    assert_eq!(
        authorize(&access, false, &bearer(H1), "b1", "edge"),
        Err(DenyReason::GroupNotAllowed)
    );
    assert_eq!(
        authorize(&access, false, &Credentials::default(), "b1", "batch"),
        Err(DenyReason::NoCredentials)
    );
}

#[test]
fn either_credential_may_match_its_own_entry() {
    let access = [
        identity("spiffe://acme.test/edge/*", &["edge"], None),
        token(H1, &["batch"]),
    ];
    let both = Credentials {
        identities: vec!["spiffe://acme.test/edge/e1".into()],
        token_sha256: Some(H1.into()),
    };
    assert_eq!(
        authorize(&access, true, &both, "n", "edge"),
        Ok(Grant::Authenticated)
    );
    assert_eq!(
        authorize(&access, true, &both, "n", "batch"),
        Ok(Grant::Authenticated)
    );
    assert_eq!(
        authorize(&access, true, &both, "n", "internal"),
        Err(DenyReason::GroupNotAllowed)
    );
}

#[test]
fn a_later_entry_can_allow_what_an_earlier_one_does_not() {
    let access = [
        identity("spiffe://acme.test/edge/*", &["edge"], Some("edge-*")),
        identity("spiffe://acme.test/edge/*", &["edge"], Some("canary-*")),
    ];
    let who = cert(&["spiffe://acme.test/edge/e1"]);
    assert_eq!(
        authorize(&access, true, &who, "canary-1", "edge"),
        Ok(Grant::Authenticated)
    );
    assert_eq!(
        authorize(&access, true, &who, "core-1", "edge"),
        Err(DenyReason::NodeIdNotAllowed)
    );
}

#[test]
fn reasons_have_stable_labels() {
    let labels: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        [
            "no_credentials",
            "unknown_identity",
            "unknown_token",
            "group_not_allowed",
            "node_id_not_allowed"
        ]
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A `*`-free pattern matches exactly itself (DNS patterns up to
        /// ASCII case), so a literal identity never admits another.
        #[test]
        fn literal_patterns_match_only_themselves(a in "[a-z0-9./:-]{1,20}", b in "[a-z0-9./:-]{1,20}") {
            prop_assert_eq!(identity_matches(&a, &b), a == b);
            prop_assert_eq!(node_id_matches(&a, &b), a == b);
        }

        /// A star never lets a SAN cross a separator: the pattern and a
        /// matching SAN have as many `/` (URI) or `.` (DNS) as each other.
        #[test]
        fn stars_never_cross_separators(p in "[a-z*./]{1,12}", s in "[a-z./]{1,16}") {
            if !p.contains('/') && identity_matches(&p, &s) {
                prop_assert_eq!(p.matches('.').count(), s.matches('.').count());
            }
            let uri_p = format!("spiffe://t/{p}");
            let uri_s = format!("spiffe://t/{s}");
            if identity_matches(&uri_p, &uri_s) {
                prop_assert_eq!(uri_p.matches('/').count(), uri_s.matches('/').count());
            }
        }
    }
}
