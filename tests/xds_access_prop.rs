//! Invariant 8 as a property: whatever a client presents (client
//! certificate, bearer token, both, neither), whatever node id and group
//! it claims (by `node.cluster` or the `sluice_group` metadata), whatever
//! type and names it asks for, over SotW or delta: no resource crosses an
//! authorization boundary.
//!
//! The real `AdsService` runs in-process over mTLS (lenient: a token or
//! nothing may stand in for the certificate) with certificates made at test
//! time, in four configurations: `xds_access` in force or not, and
//! `--xds-insecure` or not. Each case opens one stream and compares what it
//! gets with a model written here, independent of `xds::access`: which
//! groups and node ids each credential may claim, as a table of plain
//! predicates.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::creds::*;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use sluice::metrics::Metrics;
use sluice::model::{AccessEntry, Principal};
use sluice::serve::xds_tls::XdsTlsFiles;
use sluice::sim::xds_tls::{self, ClientTls};
use sluice::xds::admission::Limits;
use sluice::xds::registry::Registry;
use sluice::xds::server::{serve_on, AdsService, Published, Shared, StreamSecurity};
use sluice::xds::services::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use sluice::xds::transport::Security;
use sluice::xds::{Resource, Snapshot, Snapshots, TypeUrl};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const CASES: u32 = 64;

/// How long a case waits for what the model says it must get (or for its
/// refusal) before it fails.
const WAIT: Duration = Duration::from_secs(10);

/// How long a served case that expects nothing listens for a resource
/// that must not come.
const LINGER: Duration = Duration::from_millis(150);

/// What each group serves, by type; `FALLBACK` is what a group without a
/// snapshot of its own gets. Every name says whose it is.
const GROUPS: [(&str, &[(TypeUrl, &str)]); 3] = [
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

const FALLBACK: &[(TypeUrl, &str)] = &[
    (TypeUrl::Secret, "fallback/cert"),
    (TypeUrl::Cluster, "fallback/default"),
    (TypeUrl::Endpoint, "fallback/default"),
    (TypeUrl::Listener, "fallback/http"),
    (TypeUrl::Route, "fallback/routes"),
];

/// Groups a client may claim: the three with snapshots, `staging` (only a
/// token may join it; it has no snapshot, so the fallback's), and `ghost`
/// (no entry allows it).
const CLAIMS: [&str; 5] = ["edge", "batch", "internal", "staging", "ghost"];

/// The types a case asks for; secrets twice as often as the others.
const TYPES: [TypeUrl; 7] = [
    TypeUrl::Runtime,
    TypeUrl::Secret,
    TypeUrl::Secret,
    TypeUrl::Cluster,
    TypeUrl::Endpoint,
    TypeUrl::Listener,
    TypeUrl::Route,
];

const TOKEN_BATCH: &str = "batch-token-5d1e";
const TOKEN_EDGE: &str = "edge-token-93ab";
const TOKEN_UNKNOWN: &str = "not-a-token-0000";

/// The rules' `xds_access` when access control is in force.
fn access() -> Vec<AccessEntry> {
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
enum Cert {
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

const CERTS: [Cert; 7] = [
    Cert::Edge,
    Cert::Batch,
    Cert::Internal,
    Cert::BatchAndInternal,
    Cert::Deep,
    Cert::Apex,
    Cert::Foreign,
];

/// A group and node id predicate one credential may claim.
type Allowance = (&'static [&'static str], fn(&str) -> bool);

fn any_id(_: &str) -> bool {
    true
}

/// The model: what each credential may claim, written out by hand from
/// `access()` (a `*` in a URI pattern is one path segment, in a DNS
/// pattern one label, in a node id any characters).
fn cert_allows(cert: Cert) -> Vec<Allowance> {
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

fn token_allows(token: &str) -> Vec<Allowance> {
    match token {
        TOKEN_BATCH => vec![(&["batch"], any_id)],
        TOKEN_EDGE => vec![(&["edge", "staging"], |id| id.ends_with("-tok"))],
        _ => vec![],
    }
}

/// One stream.
#[derive(Clone, Debug)]
struct Case {
    /// `xds_access` in force (and client certificates verified).
    enforced: bool,
    insecure: bool,
    cert: Option<Cert>,
    token: Option<&'static str>,
    node_id: String,
    group: &'static str,
    /// Claim the group by the `sluice_group` metadata, with this other
    /// group as `node.cluster`; else by `node.cluster`.
    decoy_cluster: Option<&'static str>,
    ty: TypeUrl,
    names: Vec<String>,
    delta: bool,
}

/// What the model says a case gets.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// The TLS handshake or the request fails: nothing at all.
    Fails,
    /// PERMISSION_DENIED before anything is sent.
    Denied,
    /// Exactly these resources of the requested type, none else.
    Served(BTreeSet<String>),
}

fn expect(case: &Case) -> Expect {
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

fn group_spec(group: &str) -> &'static [(TypeUrl, &'static str)] {
    GROUPS
        .iter()
        .find(|(g, _)| *g == group)
        .map_or(FALLBACK, |(_, spec)| spec)
}

fn all_names() -> Vec<String> {
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

fn cases() -> impl Strategy<Value = Case> {
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

/// Cases that must be among those checked: a secret to an authenticated
/// stream, withheld from an open one, sent to it under `--xds-insecure`;
/// a credential claiming a group or node id it may not.
fn anchors() -> Vec<Case> {
    let base = Case {
        enforced: true,
        insecure: false,
        cert: Some(Cert::Edge),
        token: None,
        node_id: "edge-1".into(),
        group: "edge",
        decoy_cluster: None,
        ty: TypeUrl::Secret,
        names: vec!["edge/cert".into(), "internal/cert".into()],
        delta: false,
    };
    let cases = vec![
        base.clone(),
        Case {
            enforced: false,
            ..base.clone()
        },
        Case {
            enforced: false,
            insecure: true,
            delta: true,
            ..base.clone()
        },
        Case {
            node_id: "int-1".into(),
            ..base.clone()
        },
        Case {
            cert: None,
            token: Some(TOKEN_BATCH),
            ..base.clone()
        },
        Case {
            group: "internal",
            decoy_cluster: Some("edge"),
            ty: TypeUrl::Cluster,
            names: vec![],
            ..base
        },
    ];
    let outcomes: Vec<Expect> = cases.iter().map(expect).collect();
    let secret = |n: &str| Expect::Served(BTreeSet::from([n.to_string()]));
    assert_eq!(
        outcomes,
        [
            secret("edge/cert"),
            Expect::Served(BTreeSet::new()),
            secret("edge/cert"),
            Expect::Denied,
            Expect::Denied,
            Expect::Denied,
        ],
        "the model"
    );
    cases
}

/// The servers (one per configuration) and the client TLS settings.
struct Env {
    /// Indexed by `enforced as usize * 2 + insecure as usize`.
    servers: [SocketAddr; 4],
    /// Per `CERTS` entry, and without a client certificate.
    client_tls: Vec<(Option<Cert>, ClientTls)>,
    stop: CancellationToken,
    _files: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        let ca = mk_ca("sluice test CA");
        let files = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| -> PathBuf {
            let path = files.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let server = mk_server(&ca);
        let (cert, key, ca_file) = (
            write("server.pem", &server.cert),
            write("server.key", &server.key),
            write("ca.pem", &ca.pem),
        );
        let stop = CancellationToken::new();
        let mut servers = Vec::new();
        for enforced in [false, true] {
            for insecure in [false, true] {
                let tls = XdsTlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: enforced.then(|| ca_file.clone()),
                };
                let access = if enforced { access() } else { Vec::new() };
                let security = StreamSecurity {
                    client_ca: enforced,
                    insecure,
                };
                servers.push(serve(tls, access, security, stop.clone()).await);
            }
        }

        let other_ca = mk_ca("another CA");
        let mut client_tls = Vec::new();
        for cert in CERTS {
            let pair = match cert {
                Cert::Edge => mk_client(&ca, "spiffe://acme.test/edge/p1"),
                Cert::Batch => mk_client(&ca, "spiffe://acme.test/batch/p2"),
                Cert::Internal => mk_client_sans(&ca, &[], &["api.internal.test"]),
                Cert::BatchAndInternal => {
                    mk_client_sans(&ca, &["spiffe://acme.test/batch/p9"], &["db.internal.test"])
                }
                Cert::Deep => mk_client(&ca, "spiffe://acme.test/edge/p1/extra"),
                Cert::Apex => mk_client_sans(&ca, &[], &["internal.test"]),
                Cert::Foreign => mk_client(&other_ca, "spiffe://acme.test/edge/p1"),
            };
            let pem = (pair.cert.as_bytes(), pair.key.as_bytes());
            let tls = ClientTls::from_pem(ca.pem.as_bytes(), Some(pem), "localhost");
            client_tls.push((Some(cert), tls.expect("client tls")));
        }
        let tls = ClientTls::from_pem(ca.pem.as_bytes(), None, "localhost");
        client_tls.push((None, tls.expect("client tls")));
        Env {
            servers: servers.try_into().expect("four servers"),
            client_tls,
            stop,
            _files: files,
        }
    }

    fn server(&self, case: &Case) -> SocketAddr {
        self.servers[usize::from(case.enforced) * 2 + usize::from(case.insecure)]
    }

    fn tls(&self, cert: Option<Cert>) -> &ClientTls {
        let (_, tls) = self
            .client_tls
            .iter()
            .find(|(c, _)| *c == cert)
            .expect("client tls");
        tls
    }
}

/// The real ADS service over TLS on a loopback port, serving `snapshots()`
/// with `access`.
async fn serve(
    tls: XdsTlsFiles,
    access: Vec<AccessEntry>,
    security: StreamSecurity,
    stop: CancellationToken,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let published = Published::after(None, snapshots(), Instant::now()).with_access(access.into());
    let (publish, rx) = watch::channel(Some(Arc::new(published)));
    let svc = AdsService::new(Shared {
        snapshots: rx,
        registry: Arc::new(Registry::default()),
        metrics: Metrics::new().xds.clone(),
        shutdown: stop.clone(),
        limits: Limits::default(),
        security,
    });
    let (configs_tx, configs) = watch::channel(Arc::new(tls.load().expect("server tls")));
    let transport = Security::Tls {
        configs,
        lenient: Arc::new(|| true),
    };
    tokio::spawn(async move {
        // Keep the channels open for as long as the server runs.
        let _held = (publish, configs_tx);
        serve_on(listener, svc, transport, stop).await
    });
    addr
}

fn snapshots() -> Snapshots {
    let mk = |spec: &[(TypeUrl, &str)]| {
        Arc::new(Snapshot::new(TypeUrl::ALL.map(|ty| {
            spec.iter()
                .filter(|(t, _)| *t == ty)
                .map(|(_, name)| encode(ty, name))
                .collect()
        })))
    };
    Snapshots {
        groups: GROUPS
            .iter()
            .map(|(group, spec)| (group.to_string(), mk(spec)))
            .collect(),
        fallback: mk(FALLBACK),
    }
}

/// A resource of `ty` named `name`, as Envoy would decode it.
fn encode(ty: TypeUrl, name: &str) -> Resource {
    let name = name.to_string();
    match ty {
        TypeUrl::Runtime => Resource::encode(
            name.clone(),
            &Runtime {
                name,
                layer: Some(Struct::default()),
            },
        ),
        TypeUrl::Secret => Resource::encode(
            name.clone(),
            &Secret {
                name,
                ..Default::default()
            },
        ),
        TypeUrl::Cluster => Resource::encode(
            name.clone(),
            &Cluster {
                name,
                ..Default::default()
            },
        ),
        TypeUrl::Endpoint => Resource::encode(
            name.clone(),
            &ClusterLoadAssignment {
                cluster_name: name,
                ..Default::default()
            },
        ),
        TypeUrl::Listener => Resource::encode(
            name.clone(),
            &Listener {
                name,
                ..Default::default()
            },
        ),
        TypeUrl::Route => Resource::encode(
            name.clone(),
            &RouteConfiguration {
                name,
                ..Default::default()
            },
        ),
    }
}

/// The name a resource's body carries.
fn decoded_name(ty: TypeUrl, body: &[u8]) -> String {
    let bad = |e: prost::DecodeError| panic!("undecodable {ty} resource: {e}");
    match ty {
        TypeUrl::Runtime => Runtime::decode(body).map_or_else(bad, |r| r.name),
        TypeUrl::Secret => Secret::decode(body).map_or_else(bad, |r| r.name),
        TypeUrl::Cluster => Cluster::decode(body).map_or_else(bad, |r| r.name),
        TypeUrl::Endpoint => {
            ClusterLoadAssignment::decode(body).map_or_else(bad, |r| r.cluster_name)
        }
        TypeUrl::Listener => Listener::decode(body).map_or_else(bad, |r| r.name),
        TypeUrl::Route => RouteConfiguration::decode(body).map_or_else(bad, |r| r.name),
    }
}

/// What one stream got: the resources, by name, and how it ended.
#[derive(Debug, Default)]
struct Seen {
    responses: usize,
    resources: Vec<String>,
    /// The error that ended the stream (or kept it from opening).
    error: Option<Status>,
}

fn node(case: &Case) -> Node {
    let metadata = case.decoy_cluster.map(|_| Struct {
        fields: [(
            "sluice_group".to_string(),
            Value {
                kind: Some(Kind::StringValue(case.group.to_string())),
            },
        )]
        .into(),
    });
    Node {
        id: case.node_id.clone(),
        cluster: case.decoy_cluster.unwrap_or(case.group).to_string(),
        metadata,
        ..Default::default()
    }
}

/// A request carrying `message`, with the case's bearer token.
fn with_token<T>(case: &Case, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(token) = case.token {
        let value = format!("Bearer {token}").parse().expect("metadata value");
        req.metadata_mut().insert("authorization", value);
    }
    req
}

/// Opens the case's stream and reads it until it has what the model
/// expects, it ends, or (when the model expects nothing) `LINGER` passes.
async fn run(env: &Env, case: &Case, expected: &Expect) -> Seen {
    let mut seen = Seen::default();
    let endpoint = Endpoint::from_shared(format!("http://{}", env.server(case))).expect("uri");
    let channel = match xds_tls::connect(&endpoint, Some(env.tls(case.cert))).await {
        Ok(channel) => channel,
        Err(e) => {
            seen.error = Some(Status::unavailable(e.to_string()));
            return seen;
        }
    };
    // Enough to decide: all that is expected, or anything when nothing
    // may come.
    let enough = |seen: &Seen| match expected {
        Expect::Served(want) => {
            !want.is_empty() && seen.resources.iter().cloned().collect::<BTreeSet<_>>() == *want
        }
        Expect::Denied | Expect::Fails => seen.responses > 0,
    };
    let wait = match expected {
        Expect::Served(want) if want.is_empty() => LINGER,
        _ => WAIT,
    };
    if case.delta {
        let mut stream = match open_delta(channel, case).await {
            Ok(stream) => stream,
            Err(status) => {
                seen.error = Some(status);
                return seen;
            }
        };
        let until = tokio::time::Instant::now() + wait;
        while !enough(&seen) {
            match tokio::time::timeout_at(until, stream.message()).await {
                Err(_) | Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    seen.error = Some(status);
                    break;
                }
                Ok(Ok(Some(resp))) => {
                    seen.responses += 1;
                    assert_eq!(resp.type_url, case.ty.as_str(), "{case:?}");
                    for r in resp.resources {
                        let body = r.resource.expect("delta resource body");
                        assert_eq!(decoded_name(case.ty, &body.value), r.name, "{case:?}");
                        seen.resources.push(r.name);
                    }
                }
            }
        }
    } else {
        let mut stream = match open_sotw(channel, case).await {
            Ok(stream) => stream,
            Err(status) => {
                seen.error = Some(status);
                return seen;
            }
        };
        let until = tokio::time::Instant::now() + wait;
        while !enough(&seen) {
            match tokio::time::timeout_at(until, stream.message()).await {
                Err(_) | Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    seen.error = Some(status);
                    break;
                }
                Ok(Ok(Some(resp))) => {
                    seen.responses += 1;
                    assert_eq!(resp.type_url, case.ty.as_str(), "{case:?}");
                    for any in resp.resources {
                        assert_eq!(any.type_url, case.ty.as_str(), "{case:?}");
                        seen.resources.push(decoded_name(case.ty, &any.value));
                    }
                }
            }
        }
    }
    seen
}

type DeltaStream =
    tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse>;
type SotwStream =
    tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>;

async fn open_delta(channel: Channel, case: &Case) -> Result<DeltaStream, Status> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(DeltaDiscoveryRequest {
        node: Some(node(case)),
        type_url: case.ty.as_str().into(),
        resource_names_subscribe: case.names.clone(),
        ..Default::default()
    })
    .await
    .expect("queue request");
    // The sender lives as long as the stream: closing it would end the
    // stream before the server answers.
    let requests = ReceiverStream::new(rx);
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .delta_aggregated_resources(with_token(case, requests))
        .await?
        .into_inner();
    tokio::spawn(async move { tx.closed().await });
    Ok(stream)
}

async fn open_sotw(channel: Channel, case: &Case) -> Result<SotwStream, Status> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(DiscoveryRequest {
        node: Some(node(case)),
        type_url: case.ty.as_str().into(),
        resource_names: case.names.clone(),
        ..Default::default()
    })
    .await
    .expect("queue request");
    let requests = ReceiverStream::new(rx);
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(with_token(case, requests))
        .await?
        .into_inner();
    tokio::spawn(async move { tx.closed().await });
    Ok(stream)
}

/// The property, for one case.
async fn check(env: &Env, case: &Case) -> Result<(), String> {
    let expected = expect(case);
    let seen = run(env, case, &expected).await;
    let group_names: BTreeSet<&str> = group_spec(case.group)
        .iter()
        .map(|(_, name)| *name)
        .collect();
    // Whatever the model says: nothing from another group, ever.
    if let Some(stray) = seen
        .resources
        .iter()
        .find(|n| !group_names.contains(n.as_str()))
    {
        return Err(format!(
            "{case:?}: got {stray:?}, which group {:?} does not have (all: {:?})",
            case.group, seen.resources
        ));
    }
    match expected {
        Expect::Fails | Expect::Denied if seen.responses > 0 => Err(format!(
            "{case:?}: expected {expected:?}, but {} responses came ({:?})",
            seen.responses, seen.resources
        )),
        Expect::Fails => match &seen.error {
            Some(_) => Ok(()),
            None => Err(format!(
                "{case:?}: expected a failure, the stream stayed up"
            )),
        },
        Expect::Denied => match &seen.error {
            Some(status) if status.code() == Code::PermissionDenied => Ok(()),
            other => Err(format!(
                "{case:?}: expected PERMISSION_DENIED, got {other:?}"
            )),
        },
        Expect::Served(want) => {
            let got: BTreeSet<String> = seen.resources.iter().cloned().collect();
            if let Some(status) = &seen.error {
                return Err(format!(
                    "{case:?}: expected {want:?}, the stream ended: {status:?}"
                ));
            }
            if got != want {
                return Err(format!("{case:?}: expected {want:?}, got {got:?}"));
            }
            Ok(())
        }
    }
}

#[test]
fn no_resource_crosses_an_authorization_boundary() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let env = rt.block_on(Env::start());
    // Whatever the random cases turn out to be, each side of each
    // boundary is crossed at least once.
    for case in anchors() {
        if let Err(e) = rt.block_on(check(&env, &case)) {
            panic!("{e}");
        }
    }
    let mut runner = TestRunner::new(Config {
        // A failure that shows as silence waits `WAIT` on each shrink step.
        max_shrink_time: 60_000,
        ..Config::with_cases(CASES)
    });
    let result = runner.run(&cases(), |case| {
        rt.block_on(check(&env, &case)).map_err(TestCaseError::fail)
    });
    env.stop.cancel();
    if let Err(e) = result {
        panic!("{e}");
    }
}
