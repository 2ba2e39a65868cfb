//! A replica's proxies as the other replicas count them (docs/ha.md,
//! "ACKs across replicas"): which Envoys it serves and what they ACKed
//! and NACKed of the two types a rollout step waits for (routes and
//! sluice's runtime layer).
//!
//! The proxies are grouped by where they stand — node group, ACKed and
//! NACKed version of each type — and counted, so a summary grows with the
//! number of distinct standings (a few per group while a step spreads),
//! not with the number of proxies: 10,000 proxies in one group are one
//! line. Each line keeps its smallest node id (with that proxy's NACK
//! errors), which is all [`AckReader`](super::acks::AckReader) reports of
//! a NACK or a proxy without the runtime layer: the first node id, fleet
//! wide. Versions are content hashes, the same on every replica for the
//! same inputs, so a summary from one replica compares directly with the
//! snapshots another replica compiled.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::xds::registry::Registry;
use crate::xds::session::TypeStatusRef;
use crate::xds::{DataPlane, TypeUrl};

/// What one replica's proxies hold: the value of `PREFIX acks/REPLICA`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckSummary {
    /// Every proxy connected to the replica, gRPC clients included.
    pub proxies: u32,
    /// The Envoys, one line per standing, in a fixed order: the same
    /// proxies always serialise to the same bytes.
    #[serde(default)]
    pub standing: Vec<Standing>,
}

/// Proxies of one replica that stand alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Their node group.
    pub group: String,
    /// Proxyless gRPC clients (served the group's gRPC snapshot), not
    /// Envoys.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grpc: bool,
    /// Their routes; absent while they have not asked for routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rds: Option<TypeAck>,
    /// sluice's runtime layer; absent while they have not asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtds: Option<TypeAck>,
    pub count: u32,
    /// The smallest node id among them; the errors in `rds`/`rtds` are
    /// this proxy's.
    pub first: String,
}

/// Where proxies stand on one type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeAck {
    /// The version they ACKed last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<String>,
    /// The version they NACKed last, with the first proxy's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nack: Option<Nack>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    pub version: String,
    pub error: String,
}

/// The other replicas' summaries, as the state store holds them now.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// This replica's name: its own summary is not counted (its live
    /// registry is).
    pub own: String,
    /// Replica name → its summary; a replica whose key is gone (its
    /// lease ended) is not here.
    pub summaries: watch::Receiver<Arc<BTreeMap<String, AckSummary>>>,
}

impl Fleet {
    /// Every live replica's summary, this replica's own included (skip
    /// it with [`Fleet::own`]).
    pub fn summaries(&self) -> Arc<BTreeMap<String, AckSummary>> {
        self.summaries.borrow().clone()
    }
}

/// The grouping of one line: group, gRPC client or not, then per type
/// (ACKed, NACKed version).
type Key = (String, bool, Option<TypeKey>, Option<TypeKey>);
type TypeKey = (Option<String>, Option<String>);

/// A line being counted: how many, the smallest node id, and its NACK
/// errors (routes, runtime).
struct Line {
    count: u32,
    first: String,
    errors: [Option<String>; 2],
}

fn type_key(s: TypeStatusRef<'_>) -> TypeKey {
    (
        s.acked.map(str::to_string),
        s.nack.map(|n| n.version.clone()),
    )
}

fn error(s: Option<TypeStatusRef<'_>>) -> Option<String> {
    s.and_then(|s| s.nack).map(|n| n.error.clone())
}

fn type_ack(key: Option<TypeKey>, error: Option<String>) -> Option<TypeAck> {
    key.map(|(acked, nacked)| TypeAck {
        acked,
        nack: nacked.map(|version| Nack {
            version,
            error: error.unwrap_or_default(),
        }),
    })
}

impl AckSummary {
    /// The proxies connected to `registry` now.
    pub fn of(registry: &Registry) -> AckSummary {
        let mut proxies = 0u32;
        let mut lines: BTreeMap<Key, Line> = BTreeMap::new();
        registry.visit(|node, status| {
            proxies = proxies.saturating_add(1);
            let rds = status(TypeUrl::Route);
            let rtds = status(TypeUrl::Runtime);
            let grpc = node.data_plane == DataPlane::Grpc;
            let key = (
                node.group.clone(),
                grpc,
                rds.map(type_key),
                rtds.map(type_key),
            );
            let line = lines.entry(key).or_insert_with(|| Line {
                count: 0,
                first: node.id.clone(),
                errors: [error(rds), error(rtds)],
            });
            line.count = line.count.saturating_add(1);
            if node.id < line.first {
                line.first = node.id.clone();
                line.errors = [error(rds), error(rtds)];
            }
        });
        let standing = lines
            .into_iter()
            .map(|((group, grpc, rds, rtds), line)| {
                let [rds_error, rtds_error] = line.errors;
                Standing {
                    group,
                    grpc,
                    rds: type_ack(rds, rds_error),
                    rtds: type_ack(rtds, rtds_error),
                    count: line.count,
                    first: line.first,
                }
            })
            .collect();
        AckSummary { proxies, standing }
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use parking_lot::Mutex;

    use super::*;
    use crate::xds::session::{Mode, Session};

    fn request(ty: TypeUrl) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: ty.as_str().into(),
            ..DiscoveryRequest::default()
        }
    }

    /// A proxy of `group` that asked for routes (and, with `rtds`, the
    /// runtime layer).
    fn mk_proxy(registry: &Registry, id: &str, group: &str, rtds: bool) -> Arc<Mutex<Session>> {
        let mut session = Session::new(Mode::Sotw);
        let mut first = request(TypeUrl::Route);
        first.node = Some(Node {
            id: id.into(),
            cluster: group.into(),
            ..Node::default()
        });
        session.on_sotw_request(first).expect("valid request");
        if rtds {
            let req = request(TypeUrl::Runtime);
            session.on_sotw_request(req).expect("valid request");
        }
        let node = session.node().cloned().expect("node");
        let session = Arc::new(Mutex::new(session));
        registry.connect(registry.next_stream_id(), node, session.clone());
        session
    }

    #[test]
    fn proxies_that_stand_alike_are_one_line_named_by_the_smallest_node_id() {
        let registry = Registry::default();
        for id in ["c", "a", "b"] {
            mk_proxy(&registry, id, "edge", true);
        }
        mk_proxy(&registry, "z", "internal", false);
        let s = AckSummary::of(&registry);
        assert_eq!(s.proxies, 4);
        let lines: Vec<(&str, u32, &str, bool)> = s
            .standing
            .iter()
            .map(|l| {
                (
                    l.group.as_str(),
                    l.count,
                    l.first.as_str(),
                    l.rtds.is_some(),
                )
            })
            .collect();
        assert_eq!(lines, [("edge", 3, "a", true), ("internal", 1, "z", false)]);
        // Nothing ACKed yet: asked, no version.
        assert_eq!(
            s.standing[0].rds,
            Some(TypeAck {
                acked: None,
                nack: None
            })
        );
    }

    #[test]
    fn a_summary_round_trips_through_its_serialised_form_byte_for_byte() {
        let s = AckSummary {
            proxies: 3,
            standing: vec![Standing {
                group: "edge".into(),
                grpc: false,
                rds: Some(TypeAck {
                    acked: Some("v1".into()),
                    nack: Some(Nack {
                        version: "v2".into(),
                        error: "bad route".into(),
                    }),
                }),
                rtds: None,
                count: 2,
                first: "edge-0".into(),
            }],
        };
        let bytes = serde_json::to_vec(&s).expect("serialise");
        let back: AckSummary = serde_json::from_slice(&bytes).expect("parse");
        assert_eq!(back, s);
        assert_eq!(serde_json::to_vec(&back).expect("serialise"), bytes);
    }

    #[test]
    fn ten_thousand_proxies_in_a_few_groups_fit_in_a_small_value() {
        let registry = Registry::default();
        let _sessions: Vec<_> = (0..10_000)
            .map(|i| {
                mk_proxy(
                    &registry,
                    &format!("proxy-{i:05}"),
                    &format!("g{}", i % 8),
                    true,
                )
            })
            .collect();
        let s = AckSummary::of(&registry);
        assert_eq!(s.proxies, 10_000);
        assert_eq!(s.standing.iter().map(|l| l.count).sum::<u32>(), 10_000);
        let bytes = serde_json::to_vec(&s).expect("serialise");
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
    }
}
