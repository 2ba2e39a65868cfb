//! The servers under test: the real `AdsService` over TLS on loopback,
//! one per configuration, serving the model's snapshots; and the clients'
//! TLS settings, one per certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use envoy_types::pb::google::protobuf::Struct;
use prost::Message;
use sluice::metrics::Metrics;
use sluice::model::AccessEntry;
use sluice::serve::xds_tls::XdsTlsFiles;
use sluice::sim::xds_tls::ClientTls;
use sluice::xds::admission::Limits;
use sluice::xds::registry::Registry;
use sluice::xds::server::{serve_on, AdsService, Published, Shared, StreamSecurity};
use sluice::xds::transport::Security;
use sluice::xds::{Resource, Snapshot, Snapshots, TypeUrl};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::common::creds::{mk_ca, mk_client, mk_client_sans, mk_server};
use crate::model::{access, Case, Cert, CERTS, FALLBACK, GROUPS};

/// The servers (one per configuration) and the client TLS settings.
pub struct Env {
    /// Indexed by `enforced as usize * 2 + insecure as usize`.
    servers: [SocketAddr; 4],
    /// Per `CERTS` entry, and without a client certificate.
    client_tls: Vec<(Option<Cert>, ClientTls)>,
    pub stop: CancellationToken,
    _files: tempfile::TempDir,
}

impl Env {
    pub async fn start() -> Env {
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
                    ticket_keys: Vec::new(),
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

    pub fn server(&self, case: &Case) -> SocketAddr {
        self.servers[usize::from(case.enforced) * 2 + usize::from(case.insecure)]
    }

    pub fn tls(&self, cert: Option<Cert>) -> &ClientTls {
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
        serve_on(listener, svc, transport, Default::default(), stop).await
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
pub fn decoded_name(ty: TypeUrl, body: &[u8]) -> String {
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
