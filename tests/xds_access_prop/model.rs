//! The model: what is served, who may claim what (written out by hand
//! from `access()`, not computed by `xds::access`), what each case must
//! get, and how cases are generated.

use std::collections::BTreeSet;

use proptest::prelude::*;
use sluice::model::{AccessEntry, Principal};
use sluice::xds::TypeUrl;

use crate::common::creds::sha256_hex;

/// What each group serves, by type; `FALLBACK` is what a group without a
/// snapshot of its own gets. Every name says whose it is.
pub const GROUPS: [(&str, &[(TypeUrl, &str)]); 3] = [
    (
        "edge",
        &[
            (TypeUrl::Runtime, "edge/layer"),
            (TypeUrl::Secret, "edge/cert"),
            (TypeUrl::Cluster, "edge/web"),
            (TypeUrl::Cluster, "edge/api"),
            (TypeUrl::Endpoint, "edge/web"),
            (TypeUrl::Endpoint, "edge/api"),
            (TypeUrl::Listener, "edge/http"),
            (TypeUrl::Listener, "edge/https"),
            (TypeUrl::Route, "edge/routes"),
        ],
    ),
    (
        "batch",
        &[
            (TypeUrl::Runtime, "batch/layer"),
            (TypeUrl::Cluster, "batch/jobs"),
            (TypeUrl::Endpoint, "batch/jobs"),
            (TypeUrl::Listener, "batch/http"),
            (TypeUrl::Route, "batch/routes"),
        ],
    ),
    (
        "internal",
        &[
            (TypeUrl::Runtime, "internal/layer"),
            (TypeUrl::Secret, "internal/cert"),
            (TypeUrl::Secret, "internal/ca"),
            (TypeUrl::Cluster, "internal/db"),
            (TypeUrl::Endpoint, "internal/db"),
            (TypeUrl::Listener, "internal/mtls"),
            (TypeUrl::Route, "internal/routes"),
        ],
    ),
];

pub const FALLBACK: &[(TypeUrl, &str)] = &[
    (TypeUrl::Secret, "fallback/cert"),
    (TypeUrl::Cluster, "fallback/default"),
    (TypeUrl::Endpoint, "fallback/default"),
    (TypeUrl::Listener, "fallback/http"),
    (TypeUrl::Route, "fallback/routes"),
];

/// Groups a client may claim: the three with snapshots, `staging` (only a
/// token may join it; it has no snapshot, so the fallback's), and `ghost`
/// (no entry allows it).
pub const CLAIMS: [&str; 5] = ["edge", "batch", "internal", "staging", "ghost"];

/// The types a case asks for; secrets twice as often as the others.
pub const TYPES: [TypeUrl; 7] = [
    TypeUrl::Runtime,
    TypeUrl::Secret,
    TypeUrl::Secret,
    TypeUrl::Cluster,
    TypeUrl::Endpoint,
    TypeUrl::Listener,
    TypeUrl::Route,
];

pub const TOKEN_BATCH: &str = "batch-token-5d1e";
pub const TOKEN_EDGE: &str = "edge-token-93ab";
pub const TOKEN_UNKNOWN: &str = "not-a-token-0000";

/// The rules' `xds_access` when access control is in force.
pub fn access() -> Vec<AccessEntry> {
    let entry = |principal, groups: &[&str], node_id: Option<&str>| AccessEntry {
        principal,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        node_id: node_id.map(str::to_string),
    };
    vec![
        entry(
            Principal::Identity("spiffe://acme.test/edge/*".into()),
            &["edge"],
            Some("edge-*"),
        ),
        entry(
            Principal::Identity("spiffe://acme.test/batch/*".into()),
            &["batch", "internal"],
            None,
        ),
        entry(
            Principal::Identity("*.internal.test".into()),
            &["internal"],
            Some("int-*"),
        ),
        entry(
            Principal::TokenSha256(sha256_hex(TOKEN_BATCH)),
            &["batch"],
            None,
        ),
        entry(
            Principal::TokenSha256(sha256_hex(TOKEN_EDGE)),
            &["edge", "staging"],
            Some("*-tok"),
        ),
    ]
}

/// A client certificate a case may present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cert {
    /// URI SAN `spiffe://acme.test/edge/p1`.
    Edge,
    /// URI SAN `spiffe://acme.test/batch/p2`.
    Batch,
    /// DNS SAN `api.internal.test`.
    Internal,
    /// URI SAN `spiffe://acme.test/batch/p9` and DNS SAN `db.internal.test`.
    BatchAndInternal,
    /// URI SAN `spiffe://acme.test/edge/p1/extra`: one segment too many.
    Deep,
    /// DNS SAN `internal.test`: no label for the `*`.
    Apex,
    /// The edge identity, signed by another CA.
    Foreign,
}

pub const CERTS: [Cert; 7] = [
    Cert::Edge,
    Cert::Batch,
    Cert::Internal,
    Cert::BatchAndInternal,
    Cert::Deep,
    Cert::Apex,
    Cert::Foreign,
];

/// A group and node id predicate one credential may claim.
pub type Allowance = (&'static [&'static str], fn(&str) -> bool);

fn any_id(_: &str) -> bool {
    true
}

/// The model: what each credential may claim, written out by hand from
/// `access()` (a `*` in a URI pattern is one path segment, in a DNS
/// pattern one label, in a node id any characters).
pub fn cert_allows(cert: Cert) -> Vec<Allowance> {
    let edge: Allowance = (&["edge"], |id| id.starts_with("edge-"));
    let batch: Allowance = (&["batch", "internal"], any_id);
    let internal: Allowance = (&["internal"], |id| id.starts_with("int-"));
    match cert {
        Cert::Edge => vec![edge],
        Cert::Batch => vec![batch],
        Cert::Internal => vec![internal],
        Cert::BatchAndInternal => vec![batch, internal],
        Cert::Deep | Cert::Apex | Cert::Foreign => vec![],
    }
}

pub fn token_allows(token: &str) -> Vec<Allowance> {
    match token {
        TOKEN_BATCH => vec![(&["batch"], any_id)],
        TOKEN_EDGE => vec![(&["edge", "staging"], |id| id.ends_with("-tok"))],
        _ => vec![],
    }
}

/// One stream.
#[derive(Clone, Debug)]
pub struct Case {
    /// `xds_access` in force (and client certificates verified).
    pub enforced: bool,
    pub insecure: bool,
    pub cert: Option<Cert>,
    pub token: Option<&'static str>,
    pub node_id: String,
    pub group: &'static str,
    /// Claim the group by the `sluice_group` metadata, with this other
    /// group as `node.cluster`; else by `node.cluster`.
    pub decoy_cluster: Option<&'static str>,
    pub ty: TypeUrl,
    pub names: Vec<String>,
    pub delta: bool,
}

/// What the model says a case gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Expect {
    /// The TLS handshake or the request fails: nothing at all.
    Fails,
    /// PERMISSION_DENIED before anything is sent.
    Denied,
    /// Exactly these resources of the requested type, none else.
    Served(BTreeSet<String>),
}

pub fn expect(case: &Case) -> Expect {
    if case.enforced && case.cert == Some(Cert::Foreign) {
        return Expect::Fails;
    }
    if case.node_id.is_empty() {
        return Expect::Fails;
    }
    let authenticated = if case.enforced {
        let mut allows = case.cert.map(cert_allows).unwrap_or_default();
        allows.extend(case.token.map(token_allows).unwrap_or_default());
        let allowed = allows
            .iter()
            .any(|(groups, id_ok)| groups.contains(&case.group) && id_ok(&case.node_id));
        if !allowed {
            return Expect::Denied;
        }
        true
    } else {
        false
    };
    if case.ty == TypeUrl::Secret && !authenticated && !case.insecure {
        return Expect::Served(BTreeSet::new());
    }
    let served = group_spec(case.group)
        .iter()
        .filter(|(ty, _)| *ty == case.ty)
        .map(|(_, name)| name.to_string());
    // A wildcard subscription: no names, for CDS and LDS; `*`, for those
    // over SotW and for any type over delta (as sluice reads a delta
    // `*`).
    let capable = matches!(case.ty, TypeUrl::Cluster | TypeUrl::Listener);
    let star = case.names.iter().any(|n| n == "*");
    let wildcard = (capable && case.names.is_empty()) || (star && (capable || case.delta));
    Expect::Served(
        served
            .filter(|name| wildcard || case.names.contains(name))
            .collect(),
    )
}

pub fn group_spec(group: &str) -> &'static [(TypeUrl, &'static str)] {
    GROUPS
        .iter()
        .find(|(g, _)| *g == group)
        .map_or(FALLBACK, |(_, spec)| spec)
}

pub fn all_names() -> Vec<String> {
    let mut names: BTreeSet<String> = GROUPS
        .iter()
        .flat_map(|(_, spec)| spec.iter())
        .chain(FALLBACK)
        .map(|(_, name)| name.to_string())
        .collect();
    names.insert("*".into());
    names.insert("nobody/missing".into());
    names.into_iter().collect()
}

pub fn cases() -> impl Strategy<Value = Case> {
    let node_id = prop_oneof![
        3 => prop::sample::select(vec![
            "edge-1", "edge-x-tok", "int-7", "int-", "batch-3", "ops-tok", "attacker", "",
        ])
        .prop_map(str::to_string),
        1 => "[a-z*-]{0,10}",
    ];
    // The claimed group, the type, and names: some of the group's own
    // (so that allowed streams get something), plus any others: other
    // groups', `*`, one nobody has.
    let request = (
        prop::sample::select(CLAIMS.to_vec()),
        prop::sample::select(TYPES.to_vec()),
    )
        .prop_flat_map(|(group, ty)| {
            let own: Vec<String> = group_spec(group)
                .iter()
                .filter(|(t, _)| *t == ty)
                .map(|(_, name)| name.to_string())
                .collect();
            let n = own.len();
            (
                Just(group),
                Just(ty),
                prop::sample::subsequence(own, 0..=n),
                prop::collection::btree_set(prop::sample::select(all_names()), 0..3),
            )
        })
        .prop_map(|(group, ty, own, others)| {
            let names: BTreeSet<String> = own.into_iter().chain(others).collect();
            (group, ty, names.into_iter().collect::<Vec<_>>())
        });
    (
        // Mostly in force: that is where the boundaries are.
        (prop::bool::weighted(0.75), any::<bool>()),
        prop::option::weighted(0.8, prop::sample::select(CERTS.to_vec())),
        prop::option::weighted(
            0.5,
            prop::sample::select(vec![TOKEN_BATCH, TOKEN_EDGE, TOKEN_UNKNOWN]),
        ),
        node_id,
        request,
        prop::option::weighted(0.25, prop::sample::select(CLAIMS.to_vec())),
        any::<bool>(),
    )
        .prop_map(
            |((enforced, insecure), cert, token, node_id, (group, ty, names), decoy, delta)| Case {
                enforced,
                insecure,
                cert,
                token,
                node_id,
                group,
                decoy_cluster: decoy,
                ty,
                names,
                delta,
            },
        )
}
