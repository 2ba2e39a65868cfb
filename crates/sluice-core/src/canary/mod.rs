//! Rollouts without I/O: the record ([`Rollout`], [`Spec`], [`State`]),
//! the pure `plan` (state × observation → state + action) and the weights
//! `overlay` applied to the resolved rules before compile. The driver, its
//! store and the admin API are in the `sluice` crate.

pub mod overlay;
pub mod plan;
mod types;

pub use types::*;
