//! What the simulated proxy keeps of each xDS resource, decoded once.
//!
//! Bytes from the wire become [`SimCluster`], [`SimEndpoints`],
//! [`SimListener`] (decoded in [`super::listener`]), [`RouteTable`]
//! and [`SimRuntime`] (an RTDS layer) here, with the
//! checks Envoy itself makes before it accepts a resource (a failed check is
//! a NACK). Decoding goes through a [`Decoder`] that a whole fleet shares: the
//! same bytes decode once and every proxy holds the same `Arc`.
//!
//! What the simulator does not model is rejected with an `unsupported:` error
//! rather than silently ignored, so a config the simulator cannot judge is
//! never reported as routed correctly.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::HealthStatus;
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use parking_lot::Mutex;
use sluice_core::xds::TypeUrl;

use super::decode::{pb_duration, proto, socket_addr, DecodeError};
use super::route::RouteTable;

/// Load-balancing policies the simulator implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
}

/// A cluster as the proxy uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimCluster {
    pub name: String,
    /// The name endpoints are requested under (EDS `service_name`, or the
    /// cluster name).
    pub eds_name: String,
    /// Endpoints given inline (STATIC clusters); such a cluster never warms.
    pub inline_endpoints: Option<Arc<SimEndpoints>>,
    pub lb: LbPolicy,
    /// `common_lb_config.healthy_panic_threshold`, percent (Envoy: 50).
    pub panic_threshold: f64,
    /// Least request: hosts compared per pick (Envoy: 2).
    pub choice_count: u32,
    /// Least request: `active_request_bias` (Envoy: 1.0).
    pub active_request_bias: f64,
    /// Ring hash: `minimum_ring_size` (Envoy: 1024).
    pub min_ring_size: u64,
    /// Maglev: `table_size` (Envoy: 65537).
    pub maglev_table_size: u64,
    /// Default-priority circuit breaker `max_requests` (Envoy: 1024).
    pub max_requests: u32,
    /// Default-priority circuit breaker `max_retries` (Envoy: 3).
    pub max_retries: u32,
    pub outlier: Option<OutlierConfig>,
}

/// `outlier_detection`, the consecutive-5xx part.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierConfig {
    pub consecutive_5xx: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// Health as EDS reports it, folded the way Envoy's load balancers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// HEALTHY and UNKNOWN: Envoy routes to both.
    Healthy,
    Degraded,
    /// UNHEALTHY, DRAINING, TIMEOUT.
    Unhealthy,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimHost {
    pub addr: SocketAddr,
    pub weight: u32,
    pub health: Health,
}

/// A `ClusterLoadAssignment`: hosts per priority (index = priority).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SimEndpoints {
    pub cluster_name: String,
    pub priorities: Vec<Vec<SimHost>>,
    /// `policy.overprovisioning_factor` / 100 (Envoy: 1.4).
    pub overprovisioning: f64,
}

pub use super::listener::SimListener;

/// One RTDS runtime layer: the keys Envoy's `Snapshot::getInteger` finds
/// in it. Envoy reads a number that is a whole, non-negative value, or a
/// string that parses as one, as an integer; other values (fractions,
/// booleans, nested structs) have no integer and `getInteger` returns its
/// default for them, so they are not kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimRuntime {
    pub name: String,
    pub integers: BTreeMap<String, u64>,
}

/// One decoded resource of any type.
#[derive(Clone, Debug)]
pub enum Decoded {
    Cluster(Arc<SimCluster>),
    Endpoints(Arc<SimEndpoints>),
    Listener(Arc<SimListener>),
    Routes(Arc<RouteTable>),
    Runtime(Arc<SimRuntime>),
}

impl Decoded {
    pub fn name(&self) -> &str {
        match self {
            Decoded::Cluster(c) => &c.name,
            Decoded::Endpoints(e) => &e.cluster_name,
            Decoded::Listener(l) => &l.name,
            Decoded::Routes(r) => &r.name,
            Decoded::Runtime(r) => &r.name,
        }
    }
}

type Entry = Result<Decoded, DecodeError>;

/// Decodes resources, once per distinct encoding, for any number of
/// proxies. Entries no proxy holds any more are dropped as the cache grows.
#[derive(Debug, Default)]
pub struct Decoder {
    by_type: [Mutex<HashMap<Vec<u8>, Entry>>; TypeUrl::COUNT],
}

/// Past this many entries per type, entries only the cache holds are pruned.
const PRUNE_AT: usize = 4096;

impl Decoder {
    pub fn new() -> Arc<Decoder> {
        Arc::new(Decoder::default())
    }

    pub fn decode(&self, ty: TypeUrl, bytes: &[u8]) -> Entry {
        let mut map = self.by_type[ty.index()].lock();
        if let Some(hit) = map.get(bytes) {
            return hit.clone();
        }
        let entry = decode(ty, bytes);
        if map.len() >= PRUNE_AT {
            map.retain(|_, e| e.as_ref().is_ok_and(still_shared));
        }
        map.insert(bytes.to_vec(), entry.clone());
        entry
    }

    /// Distinct encodings decoded and still cached (for benchmarks).
    pub fn cached(&self) -> usize {
        self.by_type.iter().map(|m| m.lock().len()).sum()
    }
}

fn still_shared(d: &Decoded) -> bool {
    match d {
        Decoded::Cluster(a) => Arc::strong_count(a) > 1,
        Decoded::Endpoints(a) => Arc::strong_count(a) > 1,
        Decoded::Listener(a) => Arc::strong_count(a) > 1,
        Decoded::Routes(a) => Arc::strong_count(a) > 1,
        Decoded::Runtime(a) => Arc::strong_count(a) > 1,
    }
}

/// Decode and check one resource the way Envoy would before accepting it.
pub fn decode(ty: TypeUrl, bytes: &[u8]) -> Entry {
    Ok(match ty {
        TypeUrl::Cluster => Decoded::Cluster(Arc::new(cluster_of(&proto(bytes, "Cluster")?)?)),
        TypeUrl::Endpoint => Decoded::Endpoints(Arc::new(endpoints_of(&proto(
            bytes,
            "ClusterLoadAssignment",
        )?)?)),
        TypeUrl::Listener => Decoded::Listener(Arc::new(super::listener::listener_of(&proto(
            bytes, "Listener",
        )?)?)),
        TypeUrl::Route => Decoded::Routes(Arc::new(RouteTable::compile(&proto(
            bytes,
            "RouteConfiguration",
        )?)?)),
        TypeUrl::Runtime => Decoded::Runtime(Arc::new(runtime_of(&proto(bytes, "Runtime")?)?)),
        // The simulator never subscribes to secrets (it models no TLS).
        TypeUrl::Secret => {
            return Err(DecodeError::Unsupported(
                "secrets (SDS) are not modelled".into(),
            ))
        }
    })
}

fn runtime_of(r: &Runtime) -> Result<SimRuntime, DecodeError> {
    if r.name.is_empty() {
        return Err(DecodeError::Invalid("runtime name cannot be empty".into()));
    }
    let mut integers = BTreeMap::new();
    for (key, value) in r.layer.iter().flat_map(|l| &l.fields) {
        runtime_entry(key.clone(), value, &mut integers)?;
    }
    Ok(SimRuntime {
        name: r.name.clone(),
        integers,
    })
}

/// One layer entry, as Envoy's proto layer walks it: a struct's fields
/// become `key.field` entries; a list, a null or an unset value is an
/// error.
fn runtime_entry(
    key: String,
    value: &envoy_types::pb::google::protobuf::Value,
    integers: &mut BTreeMap<String, u64>,
) -> Result<(), DecodeError> {
    use envoy_types::pb::google::protobuf::value::Kind;
    let integer = match &value.kind {
        Some(Kind::NumberValue(n)) if *n >= 0.0 && n.fract() == 0.0 && *n < u64::MAX as f64 => {
            Some(*n as u64)
        }
        Some(Kind::NumberValue(_)) | Some(Kind::BoolValue(_)) => None,
        Some(Kind::StringValue(s)) => s.parse().ok(),
        Some(Kind::StructValue(st)) => {
            for (field, v) in &st.fields {
                runtime_entry(format!("{key}.{field}"), v, integers)?;
            }
            return Ok(());
        }
        Some(Kind::ListValue(_)) | Some(Kind::NullValue(_)) | None => {
            return Err(DecodeError::Invalid(format!(
                "Invalid runtime entry value for {key}"
            )))
        }
    };
    if let Some(i) = integer {
        integers.insert(key, i);
    }
    Ok(())
}

fn cluster_of(c: &Cluster) -> Result<SimCluster, DecodeError> {
    use cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig};
    if c.name.is_empty() {
        return Err(DecodeError::Invalid("cluster name cannot be empty".into()));
    }
    let (eds_name, inline_endpoints) = match &c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) if *t == DiscoveryType::Eds as i32 => {
            let service = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .unwrap_or_default();
            let name = if service.is_empty() {
                c.name.clone()
            } else {
                service
            };
            (name, None)
        }
        Some(ClusterDiscoveryType::Type(t)) if *t == DiscoveryType::Static as i32 => {
            let cla = c.load_assignment.clone().unwrap_or_default();
            (c.name.clone(), Some(Arc::new(endpoints_of(&cla)?)))
        }
        other => {
            return Err(DecodeError::Unsupported(format!(
                "cluster {:?}: discovery type {other:?}",
                c.name
            )))
        }
    };
    let lb = match cluster::LbPolicy::try_from(c.lb_policy) {
        Ok(cluster::LbPolicy::RoundRobin) => LbPolicy::RoundRobin,
        Ok(cluster::LbPolicy::LeastRequest) => LbPolicy::LeastRequest,
        Ok(cluster::LbPolicy::Random) => LbPolicy::Random,
        Ok(cluster::LbPolicy::RingHash) => LbPolicy::RingHash,
        Ok(cluster::LbPolicy::Maglev) => LbPolicy::Maglev,
        other => {
            return Err(DecodeError::Unsupported(format!(
                "cluster {:?}: lb_policy {other:?}",
                c.name
            )))
        }
    };
    let mut out = SimCluster {
        name: c.name.clone(),
        eds_name,
        inline_endpoints,
        lb,
        panic_threshold: c
            .common_lb_config
            .as_ref()
            .and_then(|l| l.healthy_panic_threshold.as_ref())
            .map_or(50.0, |p| p.value),
        choice_count: 2,
        active_request_bias: 1.0,
        min_ring_size: 1024,
        maglev_table_size: 65537,
        max_requests: 1024,
        max_retries: 3,
        outlier: None,
    };
    match &c.lb_config {
        Some(LbConfig::LeastRequestLbConfig(l)) => {
            out.choice_count = l.choice_count.as_ref().map_or(2, |v| v.value);
            out.active_request_bias = l
                .active_request_bias
                .as_ref()
                .map_or(1.0, |r| r.default_value);
        }
        Some(LbConfig::RingHashLbConfig(r)) => {
            out.min_ring_size = r.minimum_ring_size.as_ref().map_or(1024, |v| v.value);
        }
        Some(LbConfig::MaglevLbConfig(m)) => {
            out.maglev_table_size = m.table_size.as_ref().map_or(65537, |v| v.value);
        }
        _ => {}
    }
    if let Some(t) = c
        .circuit_breakers
        .iter()
        .flat_map(|cb| &cb.thresholds)
        .find(|t| t.priority == 0)
    {
        out.max_requests = t.max_requests.as_ref().map_or(1024, |v| v.value);
        out.max_retries = t.max_retries.as_ref().map_or(3, |v| v.value);
    }
    if let Some(o) = &c.outlier_detection {
        out.outlier = Some(OutlierConfig {
            consecutive_5xx: o.consecutive_5xx.as_ref().map_or(5, |v| v.value),
            base_ejection_time: o
                .base_ejection_time
                .as_ref()
                .map_or(Duration::from_secs(30), pb_duration),
            max_ejection_percent: o.max_ejection_percent.as_ref().map_or(10, |v| v.value),
        });
    }
    Ok(out)
}

fn endpoints_of(cla: &ClusterLoadAssignment) -> Result<SimEndpoints, DecodeError> {
    let mut priorities: Vec<Vec<SimHost>> = Vec::new();
    for group in &cla.endpoints {
        let p = usize::try_from(group.priority).unwrap_or(usize::MAX);
        if p > 128 {
            return Err(DecodeError::Invalid(format!(
                "priority {} is out of range",
                group.priority
            )));
        }
        if priorities.len() <= p {
            priorities.resize(p + 1, Vec::new());
        }
        for ep in &group.lb_endpoints {
            let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &ep.host_identifier else {
                return Err(DecodeError::Unsupported(
                    "endpoint without an address".into(),
                ));
            };
            let addr = socket_addr(e.address.as_ref())?;
            let weight = ep.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            if weight == 0 {
                // Envoy's proto validation: load_balancing_weight >= 1.
                return Err(DecodeError::Invalid(format!(
                    "Proto constraint validation failed (LbEndpointValidationError.LoadBalancingWeight: value must be greater than or equal to 1): endpoint {addr}"
                )));
            }
            let health = match HealthStatus::try_from(ep.health_status) {
                Ok(HealthStatus::Healthy | HealthStatus::Unknown) => Health::Healthy,
                Ok(HealthStatus::Degraded) => Health::Degraded,
                _ => Health::Unhealthy,
            };
            priorities[p].push(SimHost {
                addr,
                weight,
                health,
            });
        }
    }
    let overprovisioning = cla
        .policy
        .as_ref()
        .and_then(|p| p.overprovisioning_factor.as_ref())
        .map_or(1.4, |f| f64::from(f.value) / 100.0);
    Ok(SimEndpoints {
        cluster_name: cla.cluster_name.clone(),
        priorities,
        overprovisioning,
    })
}
