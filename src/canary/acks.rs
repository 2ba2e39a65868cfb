//! What the xDS registry says about a rollout's weights: how many of the
//! proxies they target hold them, the first NACK of them, and the first
//! proxy they cannot reach. Counted afresh from the registry on every
//! read, by the driver when its plan waits for ACKs and by every status
//! read, so a count never comes from memory that a restart emptied (after
//! one, an analysing step showed "0/0 proxies ACKed" until the next step).
//!
//! With several replicas (`crate::ha`) the reader also counts the proxies
//! of the other replicas, from the summaries they publish
//! ([`ack_summary`](super::ack_summary)): its own proxies and theirs go
//! through the same [`Tally`], so every replica gives the same answer for
//! the whole fleet.

use std::sync::Arc;

use tokio::sync::watch;

use super::ack_summary::{Fleet, TypeAck};
use super::overlay::{Overlays, WeightsVia};
use super::Rollout;
use crate::xds::registry::Registry;
use crate::xds::session::TypeStatusRef;
use crate::xds::{DataPlane, Snapshots, TypeUrl};

/// What the publisher compiled last: the overlays it applied and the
/// snapshots that came out.
#[derive(Debug)]
pub struct Applied {
    pub overlays: Overlays,
    pub snapshots: Arc<Snapshots>,
}

/// Of the proxies a rollout's current weights target, how many hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acks {
    pub acked: u32,
    pub targeted: u32,
    /// The NACK of the first node id that rejected these weights.
    pub nack: Option<String>,
    /// The first node id the weights cannot reach, and why.
    pub unreachable: Option<String>,
}

/// Reads [`Acks`] from the registry and what the publisher applied last.
#[derive(Clone)]
pub struct AckReader {
    registry: Arc<Registry>,
    applied: watch::Receiver<Option<Arc<Applied>>>,
    weights: WeightsVia,
    /// The other replicas' proxies (`--state-etcd`); `None` alone.
    fleet: Option<Fleet>,
}

impl AckReader {
    pub fn new(
        registry: Arc<Registry>,
        applied: watch::Receiver<Option<Arc<Applied>>>,
        weights: WeightsVia,
    ) -> AckReader {
        AckReader {
            registry,
            applied,
            weights,
            fleet: None,
        }
    }

    /// Counts the proxies of the other replicas of `fleet` as well.
    pub fn with_fleet(mut self, fleet: Fleet) -> AckReader {
        self.fleet = Some(fleet);
        self
    }

    /// What the publisher compiled last (`None` before the first publish).
    pub fn applied(&self) -> Option<Arc<Applied>> {
        self.applied.borrow().clone()
    }

    /// The ACKs of the weights `r` asks for now.
    pub fn read(&self, r: &Rollout) -> Acks {
        let applied = self.applied.borrow().clone();
        let Some(applied) = applied else {
            return Acks::default();
        };
        let service = &r.spec.service;
        let wanted = Overlays::of([r]);
        // With runtime weights a proxy holds a step once it has ACKed both
        // the routes (which read the runtime keys) and the runtime layer.
        let types: &'static [TypeUrl] = match self.weights {
            WeightsVia::Routes => &[TypeUrl::Route],
            WeightsVia::Runtime => &[TypeUrl::Route, TypeUrl::Runtime],
        };
        let mut tally = Tally {
            snapshots: &applied.snapshots,
            cluster: r.canary_cluster(),
            // The published snapshots must carry these very weights;
            // until the publisher has compiled them no proxy can hold
            // them.
            current: applied.overlays.0.get(service) == wanted.0.get(service),
            types,
            acks: Acks::default(),
            nack: None,
            no_layer: None,
        };
        self.registry.visit(|node, status| {
            let of = |ty| status(ty).map(Stand::of_status);
            tally.add(node.data_plane, &node.group, &node.id, 1, &of);
        });
        if let Some(fleet) = &self.fleet {
            let all = fleet.summaries();
            let others = all.iter().filter(|(replica, _)| **replica != fleet.own);
            for (_, summary) in others {
                for line in &summary.standing {
                    let of = |ty| {
                        match ty {
                            TypeUrl::Route => line.rds.as_ref(),
                            TypeUrl::Runtime => line.rtds.as_ref(),
                            _ => None,
                        }
                        .map(Stand::of_summary)
                    };
                    let plane = match line.grpc {
                        true => DataPlane::Grpc,
                        false => DataPlane::Envoy,
                    };
                    tally.add(plane, &line.group, &line.first, line.count, &of);
                }
            }
        }
        tally.finish()
    }
}

/// Where proxies stand on one type, from a live session or a summary.
struct Stand<'a> {
    acked: Option<&'a str>,
    /// NACKed version and error.
    nack: Option<(&'a str, &'a str)>,
}

impl<'a> Stand<'a> {
    fn of_status(s: TypeStatusRef<'a>) -> Stand<'a> {
        Stand {
            acked: s.acked,
            nack: s.nack.map(|n| (n.version.as_str(), n.error.as_str())),
        }
    }

    fn of_summary(t: &'a TypeAck) -> Stand<'a> {
        Stand {
            acked: t.acked.as_deref(),
            nack: t
                .nack
                .as_ref()
                .map(|n| (n.version.as_str(), n.error.as_str())),
        }
    }
}

/// The count in progress.
struct Tally<'s> {
    snapshots: &'s Snapshots,
    cluster: String,
    current: bool,
    types: &'static [TypeUrl],
    acks: Acks,
    /// The NACK reported is that of the first node id, whatever the order
    /// streams connected in or the replica they connected to.
    nack: Option<(String, String)>,
    /// With runtime weights, a proxy that never asked for the RTDS layer
    /// cannot hold a step; named (the first node id) so the pause says
    /// why it waits.
    no_layer: Option<String>,
}

impl Tally<'_> {
    /// `count` proxies of `group` on data plane `plane` that stand alike,
    /// `first` the smallest node id among them.
    fn add<'a>(
        &mut self,
        plane: DataPlane,
        group: &str,
        first: &str,
        count: u32,
        status: &dyn Fn(TypeUrl) -> Option<Stand<'a>>,
    ) {
        let (_, snap) = self.snapshots.select(plane, group);
        if snap.get(TypeUrl::Cluster, &self.cluster).is_none() {
            return;
        }
        // A gRPC client takes its weights in the routes, never from the
        // runtime layer.
        let types = match plane {
            DataPlane::Grpc => &[TypeUrl::Route][..],
            DataPlane::Envoy => self.types,
        };
        self.acks.targeted = self.acks.targeted.saturating_add(count);
        if types.contains(&TypeUrl::Runtime)
            && status(TypeUrl::Runtime).is_none()
            && self.no_layer.as_deref().is_none_or(|id| first < id)
        {
            self.no_layer = Some(first.to_string());
        }
        let mut all_acked = self.current;
        for &ty in types {
            let want = snap.version(ty);
            let st = status(ty);
            all_acked &= st.as_ref().is_some_and(|s| s.acked == Some(want));
            let nacked = st
                .and_then(|s| s.nack)
                .filter(|(version, _)| self.current && *version == want);
            if let Some((_, error)) = nacked {
                if self.nack.as_ref().is_none_or(|(id, _)| first < id.as_str()) {
                    self.nack = Some((first.to_string(), error.to_string()));
                }
            }
        }
        if all_acked {
            self.acks.acked = self.acks.acked.saturating_add(count);
        }
    }

    fn finish(self) -> Acks {
        let mut acks = self.acks;
        acks.nack = self.nack.map(|(id, error)| format!("{id}: {error}"));
        acks.unreachable = self.no_layer.map(|id| {
            format!(
                "{id} has not asked for sluice's RTDS layer {} (--rollout-weights runtime needs it in the bootstrap)",
                crate::model::RUNTIME_LAYER
            )
        });
        acks
    }
}
