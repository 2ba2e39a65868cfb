//! The HTTP filters a simulated proxy runs, decoded from what Envoy was
//! sent: Lua filters (`envoy.filters.http.lua`, any name) with their script
//! and filter-level context, each route's `LuaPerRoute` (context, inline
//! source, `disabled`); CORS ([`cors`]), RBAC ([`rbac`]), the local rate
//! limit ([`ratelimit`]) and fault injection ([`fault`]) with their
//! per-route configs; and the router. [`crate::chain`], above the
//! data plane, runs them per request.
//!
//! Filters are identified by their config's type URL (any name, as in
//! Envoy); a filter or a field the simulator does not model is rejected as
//! `unsupported:` (a NACK), never ignored. Per-route configs are found by
//! the filter's name in `typed_per_filter_config` at route, virtual host and
//! route configuration level ([`PerFilter`], most specific first).
//!
//! Lua is decoded by [`lua`] (and run by the chain); fractional percents
//! are drawn by [`Percent`].

pub mod cors;
pub mod fault;
pub mod lua;
mod percent;
pub mod ratelimit;
pub mod rbac;

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter as PbHttpFilter,
};
use envoy_types::pb::google::protobuf::Any;
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;

use super::decode::{proto, DecodeError};
pub(crate) use lua::lua_per_route;
pub use lua::{struct_json, LuaFilter, LuaRoute, LUA_PER_ROUTE_TYPE, LUA_TYPE};
pub use percent::Percent;
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const ROUTER_NAME: &str = "envoy.filters.http.router";

/// One HTTP filter of a connection manager, in chain order.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpFilter {
    Lua(Arc<LuaFilter>),
    /// `envoy.filters.http.cors`: acts on routes with a `CorsPolicy`.
    Cors {
        name: String,
    },
    /// `envoy.filters.http.rbac` with its listener-level rules (`None`:
    /// allow, unless a route's `RBACPerRoute` says otherwise).
    Rbac {
        name: String,
        rules: Option<Arc<rbac::Rules>>,
    },
    /// `envoy.filters.http.local_ratelimit` with its listener-level config.
    RateLimit {
        name: String,
        config: Arc<ratelimit::RateLimit>,
    },
    /// `envoy.filters.http.fault` with its listener-level faults.
    Fault {
        name: String,
        config: Arc<fault::Fault>,
    },
    Router,
}

impl HttpFilter {
    /// The filter's name: the key of its `typed_per_filter_config` entries.
    pub fn name(&self) -> &str {
        match self {
            HttpFilter::Lua(l) => &l.name,
            HttpFilter::Cors { name }
            | HttpFilter::Rbac { name, .. }
            | HttpFilter::RateLimit { name, .. }
            | HttpFilter::Fault { name, .. } => name,
            HttpFilter::Router => ROUTER_NAME,
        }
    }
}

/// A per-route filter config (`typed_per_filter_config` entry), decoded by
/// its type URL.
#[derive(Clone, Debug, PartialEq)]
pub enum PerFilter {
    Lua(LuaRoute),
    Cors(Arc<cors::Policy>),
    /// `RBACPerRoute`: `None` turns RBAC off for the route.
    Rbac(Option<Arc<rbac::Rules>>),
    RateLimit(Arc<ratelimit::RateLimit>),
    Fault(Arc<fault::Fault>),
}

/// The per-route configs of one filter, most specific first (route, then
/// virtual host, then route configuration). Most filters use the first;
/// CORS reads each field from the first policy that sets it.
pub type PerFilterChain = Vec<PerFilter>;

/// What the HTTP filters of one proxy keep between requests: the local
/// rate limit's token buckets (per proxy, as Envoy's are per process and
/// shared by its workers), the randomness of fractional percents, and the
/// Unix time of the virtual clock's zero (what Lua's `timestamp()` adds
/// virtual time to).
pub struct FilterState {
    pub(crate) rng: Xoshiro256PlusPlus,
    pub(crate) buckets: ratelimit::Buckets,
    /// The virtual clock's zero as time since the Unix epoch.
    pub epoch: Duration,
}

impl FilterState {
    /// `epoch` starts at the wall clock, so tokens minted now are valid;
    /// set it for runs that must repeat exactly.
    pub fn new(seed: u64) -> FilterState {
        FilterState {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            buckets: ratelimit::Buckets::default(),
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
}

pub(super) fn http_filter(listener: &str, f: &PbHttpFilter) -> Result<HttpFilter, DecodeError> {
    let unsupported =
        || DecodeError::Unsupported(format!("listener {listener:?}: HTTP filter {:?}", f.name));
    let any = match &f.config_type {
        Some(http_filter::ConfigType::TypedConfig(any)) => Some(any),
        _ => None,
    };
    match any.map(|a| a.type_url.as_str()) {
        Some(ROUTER_TYPE) => Ok(HttpFilter::Router),
        None if f.name == ROUTER_NAME => Ok(HttpFilter::Router),
        _ if f.disabled => Err(unsupported()),
        Some(LUA_TYPE) => {
            let bytes = any.map(|a| a.value.as_slice()).unwrap_or_default();
            lua::lua_filter(&f.name, &proto(bytes, "Lua")?).map(|l| HttpFilter::Lua(Arc::new(l)))
        }
        Some(cors::TYPE) => Ok(HttpFilter::Cors {
            name: f.name.clone(),
        }),
        Some(rbac::TYPE) => Ok(HttpFilter::Rbac {
            name: f.name.clone(),
            rules: rbac::filter(&f.name, any.map(|a| a.value.as_slice()).unwrap_or_default())?,
        }),
        Some(ratelimit::TYPE) => Ok(HttpFilter::RateLimit {
            name: f.name.clone(),
            config: Arc::new(ratelimit::decode(
                &f.name,
                any.map(|a| a.value.as_slice()).unwrap_or_default(),
                false,
            )?),
        }),
        Some(fault::TYPE) => Ok(HttpFilter::Fault {
            name: f.name.clone(),
            config: Arc::new(fault::decode(
                &f.name,
                any.map(|a| a.value.as_slice()).unwrap_or_default(),
            )?),
        }),
        _ => Err(unsupported()),
    }
}

/// A `typed_per_filter_config` entry, by its type URL; `None` for configs
/// of filters the simulator does not run (a listener with such a filter
/// is rejected anyway).
pub(crate) fn per_filter(name: &str, any: &Any) -> Result<Option<PerFilter>, DecodeError> {
    Ok(Some(match any.type_url.as_str() {
        LUA_PER_ROUTE_TYPE => match lua_per_route(name, any)? {
            Some(l) => PerFilter::Lua(l),
            None => return Ok(None),
        },
        cors::POLICY_TYPE => PerFilter::Cors(Arc::new(cors::policy(name, &any.value)?)),
        rbac::PER_ROUTE_TYPE => PerFilter::Rbac(rbac::per_route(name, &any.value)?),
        ratelimit::TYPE => {
            PerFilter::RateLimit(Arc::new(ratelimit::decode(name, &any.value, true)?))
        }
        fault::TYPE => PerFilter::Fault(Arc::new(fault::decode(name, &any.value)?)),
        _ => return Ok(None),
    }))
}
