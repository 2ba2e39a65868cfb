//! Drains: the model (`sluice_core::drain`, re-exported here) and its
//! persistence (`store`).

pub use sluice_core::drain::*;

pub mod store;

#[cfg(test)]
mod tests;
