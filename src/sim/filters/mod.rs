//! The HTTP filters a simulated proxy runs, decoded from what Envoy was
//! sent: Lua filters (`envoy.filters.http.lua`, any name) with their script
//! and filter-level context, each route's `LuaPerRoute` (context, inline
//! source, `disabled`); CORS ([`cors`]), RBAC ([`rbac`]), the local rate
//! limit ([`ratelimit`]) and fault injection ([`fault`]) with their
//! per-route configs; and the router. [`chain`] runs them per request.
//!
//! Filters are identified by their config's type URL (any name, as in
//! Envoy); a filter or a field the simulator does not model is rejected as
//! `unsupported:` (a NACK), never ignored. Per-route configs are found by
//! the filter's name in `typed_per_filter_config` at route, virtual host and
//! route configuration level ([`PerFilter`], most specific first).
//!
//! Scripts are loaded into a Lua state when decoded (shim included), as
//! Envoy loads them when it accepts the config: a script that does not load
//! is a NACK (`script load error: ...`), not a per-request failure.

pub mod chain;
pub mod cors;
pub mod fault;
pub mod ratelimit;
pub mod rbac;

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::{lua_per_route, Lua, LuaPerRoute};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter as PbHttpFilter,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value as PbValue};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value};

use super::resources::{proto, DecodeError};
use crate::lua::runner::FilterVm;

pub const LUA_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua";
pub const LUA_PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const ROUTER_NAME: &str = "envoy.filters.http.router";

/// A `RuntimeFractionalPercent`'s default, or `absent` when unset.
fn runtime_percent(
    p: Option<&envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent>,
    absent: Option<Percent>,
) -> Option<Percent> {
    match p {
        Some(p) => Some(p.default_value.as_ref().map_or(
            Percent {
                numerator: 0,
                denominator: 100,
            },
            Percent::of,
        )),
        None => absent,
    }
}

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

/// A `FractionalPercent` (or a `RuntimeFractionalPercent`'s default: the
/// simulator has no runtime, so runtime keys never override it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percent {
    numerator: u64,
    denominator: u64,
}

impl Percent {
    pub const ALL: Percent = Percent {
        numerator: 1,
        denominator: 1,
    };

    pub fn of(p: &FractionalPercent) -> Percent {
        let denominator = match DenominatorType::try_from(p.denominator) {
            Ok(DenominatorType::TenThousand) => 10_000,
            Ok(DenominatorType::Million) => 1_000_000,
            _ => 100,
        };
        Percent {
            numerator: u64::from(p.numerator),
            denominator,
        }
    }

    /// Envoy's `featureEnabled`: a random value `% denominator < numerator`.
    pub fn hit(&self, rng: &mut Xoshiro256PlusPlus) -> bool {
        if self.numerator >= self.denominator {
            return true;
        }
        self.numerator > 0 && rng.random_range(0..self.denominator) < self.numerator
    }
}

/// What the HTTP filters of one proxy keep between requests: the local
/// rate limit's token buckets (per proxy, as Envoy's are per process and
/// shared by its workers), the randomness of fractional percents, and the
/// Unix time of the virtual clock's zero (what Lua's `timestamp()` adds
/// virtual time to).
pub struct FilterState {
    rng: Xoshiro256PlusPlus,
    buckets: ratelimit::Buckets,
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

/// A Lua filter as configured on the listener.
#[derive(Clone, Debug, PartialEq)]
pub struct LuaFilter {
    /// The filter's name: the key of its `typed_per_filter_config` entries.
    pub name: String,
    /// `default_source_code` (or the deprecated `inline_code`).
    pub source: Arc<str>,
    /// Filter-level `filter_context`, for routes without their own.
    pub context: Option<Arc<Value>>,
}

/// A route's (or its virtual host's) `LuaPerRoute` for one Lua filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LuaRoute {
    pub disabled: bool,
    /// `source_code`: runs instead of the filter's script.
    pub source: Option<Arc<str>>,
    /// `filter_context`, replacing the filter-level one.
    pub context: Option<Arc<Value>>,
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
            lua_filter(&f.name, &proto(bytes, "Lua")?).map(|l| HttpFilter::Lua(Arc::new(l)))
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

// `inline_code` is deprecated, but Envoy still runs it.
#[allow(deprecated)]
fn lua_filter(name: &str, cfg: &Lua) -> Result<LuaFilter, DecodeError> {
    if !cfg.source_codes.is_empty() {
        return Err(DecodeError::Unsupported(format!(
            "Lua filter {name:?}: named source_codes"
        )));
    }
    let source = match &cfg.default_source_code {
        Some(ds) => inline(name, ds)?,
        None => cfg.inline_code.clone(),
    };
    // Envoy's default (true) clears the route cache when the script edits
    // request headers; the simulator always matches the route on the
    // headers as they are, which is only the same under that default.
    if cfg.clear_route_cache.as_ref().is_some_and(|b| !b.value) {
        return Err(DecodeError::Unsupported(format!(
            "Lua filter {name:?}: clear_route_cache false"
        )));
    }
    Ok(LuaFilter {
        name: name.to_string(),
        source: loaded(name, source)?,
        context: cfg
            .filter_context
            .as_ref()
            .map(|s| Arc::new(struct_json(s))),
    })
}

fn inline(what: &str, ds: &DataSource) -> Result<String, DecodeError> {
    match &ds.specifier {
        Some(data_source::Specifier::InlineString(s)) => Ok(s.clone()),
        Some(data_source::Specifier::InlineBytes(b)) => Ok(String::from_utf8_lossy(b).into()),
        _ => Err(DecodeError::Unsupported(format!(
            "{what}: Lua source that is not inline"
        ))),
    }
}

/// The script, checked the way Envoy checks it on load: it must compile and
/// its top level must run.
fn loaded(what: &str, source: String) -> Result<Arc<str>, DecodeError> {
    FilterVm::with_script(&source)
        .map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            DecodeError::Invalid(format!("{what}: script load error: {first}"))
        })
        .map(|_| Arc::from(source))
}

/// A `typed_per_filter_config` entry: `Some` for a `LuaPerRoute`, `None`
/// for other filters' configs (which the simulator does not act on).
pub(crate) fn lua_per_route(name: &str, any: &Any) -> Result<Option<LuaRoute>, DecodeError> {
    if any.type_url != LUA_PER_ROUTE_TYPE {
        return Ok(None);
    }
    let p: LuaPerRoute = proto(&any.value, "LuaPerRoute")?;
    let mut out = LuaRoute {
        context: p.filter_context.as_ref().map(|s| Arc::new(struct_json(s))),
        ..LuaRoute::default()
    };
    match &p.r#override {
        Some(lua_per_route::Override::Disabled(d)) => out.disabled = *d,
        Some(lua_per_route::Override::SourceCode(ds)) => {
            out.source = Some(loaded(name, inline(name, ds)?)?);
        }
        Some(lua_per_route::Override::Name(n)) => {
            return Err(DecodeError::Unsupported(format!(
                "LuaPerRoute for {name:?}: named source {n:?}"
            )))
        }
        None => {}
    }
    Ok(Some(out))
}

/// `google.protobuf.Struct` → JSON (numbers are doubles, as in protobuf).
pub fn struct_json(s: &Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect::<Map<_, _>>(),
    )
}

fn value_json(v: &PbValue) -> Value {
    match &v.kind {
        Some(Kind::NullValue(_)) | None => Value::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_json).collect()),
    }
}
