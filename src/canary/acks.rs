//! What the xDS registry says about a rollout's weights: how many of the
//! proxies they target hold them, the first NACK of them, and the first
//! proxy they cannot reach. Counted afresh from the registry on every
//! read, by the driver when its plan waits for ACKs and by every status
//! read, so a count never comes from memory that a restart emptied (after
//! one, an analysing step showed "0/0 proxies ACKed" until the next step).

use std::sync::Arc;

use tokio::sync::watch;

use super::overlay::{Overlays, WeightsVia};
use super::Rollout;
use crate::xds::registry::Registry;
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
        }
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
        // The published snapshots must carry these very weights; until the
        // publisher has compiled them no proxy can hold them.
        let current = applied.overlays.0.get(service) == wanted.0.get(service);
        let cluster = r.canary_cluster();
        let mut acks = Acks::default();
        // The NACK reported is that of the first node id, whatever the
        // order streams connected in.
        let mut nack: Option<(String, String)> = None;
        // With runtime weights, a proxy that never asked for the RTDS layer
        // cannot hold a step; named (the first node id) so the pause says
        // why it waits.
        let mut no_layer: Option<String> = None;
        // With runtime weights a proxy holds a step once it has ACKed both
        // the routes (which read the runtime keys) and the runtime layer.
        let types: &[TypeUrl] = match self.weights {
            WeightsVia::Routes => &[TypeUrl::Route],
            WeightsVia::Runtime => &[TypeUrl::Route, TypeUrl::Runtime],
        };
        self.registry.visit(|node, status| {
            // Rollouts move the weights of the rules' listeners only: a
            // gRPC client holds no step and waits for none.
            if node.data_plane == DataPlane::Grpc {
                return;
            }
            let (_, snap) = applied.snapshots.select(node.data_plane, &node.group);
            if snap.get(TypeUrl::Cluster, &cluster).is_none() {
                return;
            }
            acks.targeted += 1;
            if types.contains(&TypeUrl::Runtime)
                && status(TypeUrl::Runtime).is_none()
                && no_layer.as_ref().is_none_or(|id| node.id < *id)
            {
                no_layer = Some(node.id.clone());
            }
            let mut all_acked = current;
            for &ty in types {
                let want = snap.version(ty);
                let st = status(ty);
                all_acked &= st.is_some_and(|s| s.acked == Some(want));
                let nacked = st
                    .and_then(|s| s.nack)
                    .filter(|n| current && n.version == want);
                if let Some(n) = nacked {
                    if nack.as_ref().is_none_or(|(id, _)| node.id < *id) {
                        nack = Some((node.id.clone(), n.error.clone()));
                    }
                }
            }
            acks.acked += u32::from(all_acked);
        });
        acks.nack = nack.map(|(id, error)| format!("{id}: {error}"));
        acks.unreachable = no_layer.map(|id| {
            format!(
                "{id} has not asked for sluice's RTDS layer {} (--rollout-weights runtime needs it in the bootstrap)",
                crate::model::RUNTIME_LAYER
            )
        });
        acks
    }
}
