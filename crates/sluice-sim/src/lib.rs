//! The data-plane simulator: lightweight "Envoys" that hold real ADS streams
//! to a control plane and answer simulated requests the way Envoy would.
//!
//! Data flows: [`client`] (tonic task per proxy) moves messages between the
//! stream and [`state::ClientState`] (sans-io: responses in, ACK/NACK out,
//! accepted config as a [`state::View`]); resources are decoded once per
//! distinct encoding by a shared [`resources::Decoder`]. The request path is
//! the [`chain`]: the listener's HTTP [`filters`] (Lua, CORS, RBAC, local
//! rate limit, fault), then [`dataplane`] (listener → [`route`] → cluster →
//! [`lb`]), and back through the filters' response phase; the [`engine`] runs requests
//! on virtual time against virtual [`backend`]s, recording Envoy-named
//! [`stats`]. [`fleet`] runs many proxies in one
//! process, and [`sample`] records one request as it leaves a proxy (for
//! `sluice sim --json`, whose command line lives in the `sluice` crate).
//!
//! Layers, each importing only those below it: [`decode`] (decode errors,
//! protobuf helpers); [`http`] (requests, responses, matchers, header
//! edits); [`hash`] and [`filters`]; [`ring`], [`route`] and [`listener`];
//! [`resources`]; [`state`] and [`lb`]; [`dataplane`] and [`client`];
//! [`chain`] and [`fleet`]; [`engine`] and [`sample`].
//! [`backend`] and [`stats`] import none of them. [`lua`] (the LuaJIT
//! check and the script runner behind an Envoy-like handle) sits under
//! [`filters`], whose Lua filter runs scripts with it.
//!
//! The simulator is a client: it speaks xDS over gRPC and never reaches into
//! the server. It shares only [`sluice_core::xds::TypeUrl`] with it.

/// The resource types every simulated proxy subscribes to (it models no
/// TLS, so no secrets), in the order Envoy starts them. A proxy given an
/// RTDS layer (`ClientConfig::runtime_layer`) asks for that first.
pub const SIM_TYPES: [sluice_core::xds::TypeUrl; 4] = [
    sluice_core::xds::TypeUrl::Cluster,
    sluice_core::xds::TypeUrl::Endpoint,
    sluice_core::xds::TypeUrl::Listener,
    sluice_core::xds::TypeUrl::Route,
];

pub mod backend;
pub mod chain;
pub mod client;
pub mod dataplane;
pub mod decode;
pub mod engine;
pub mod filters;
pub mod fleet;
pub mod hash;
pub mod http;
pub mod lb;
pub mod listener;
pub mod lua;
pub mod resources;
pub mod ring;
pub mod route;
pub mod sample;
pub mod state;
pub mod stats;

#[cfg(test)]
pub(crate) mod tests;
