//! Canary and blue/green rollouts: step a service's traffic from its stable
//! subset to a canary subset, check the canary's error rate and p99 over
//! each step, and promote or roll back by itself.
//!
//! Data flows: the admin gRPC API (`grpc`) or a restart (`store`) hands
//! [`Rollout`] records to the `driver`, which feeds observations (time,
//! ACKs read from the xDS registry and, with several replicas, the
//! other replicas' [`ack_summary`]s, metrics read from `metrics`) into the
//! pure `plan` and carries out the action it returns. Every rollout's weights
//! become an [`overlay::Overlays`] value that `serve` applies to the
//! resolved rules before compiling, so `compile` stays a pure function of
//! (rules, endpoints, rollouts) and the weights are input like the rules.

pub mod ack_summary;
pub mod acks;
pub mod analysis;
pub mod driver;
pub mod grpc;
pub mod handle;
pub mod metrics;
pub mod store;
pub mod wiring;

#[cfg(test)]
mod tests;

pub use sluice_core::canary::*;

/// The generated admin API (`proto/sluice/admin/v1/rollout.proto`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("sluice.admin.v1");
}
