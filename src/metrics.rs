//! Prometheus metrics, served as text on the admin listener's `/metrics`.
//!
//! One `Metrics` value is shared by the xDS streams and the rules watcher;
//! everything is a lock-free counter, gauge or histogram.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: String,
}

pub struct Metrics {
    registry: Registry,
    pub connected_proxies: Family<ModeLabel, Gauge>,
    pub pushes: Family<TypeLabel, Counter>,
    pub acks: Family<TypeLabel, Counter>,
    pub nacks: Family<TypeLabel, Counter>,
    /// Seconds from a snapshot's publication to the proxy's ACK of the
    /// response that carried it.
    pub push_latency: Family<TypeLabel, Histogram>,
    pub snapshots_published: Counter,
    pub rules_reload_errors: Counter,
    pub ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sluice");
        let connected_proxies = Family::<ModeLabel, Gauge>::default();
        let pushes = Family::<TypeLabel, Counter>::default();
        let acks = Family::<TypeLabel, Counter>::default();
        let nacks = Family::<TypeLabel, Counter>::default();
        let push_latency = Family::<TypeLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        let snapshots_published = Counter::default();
        let rules_reload_errors = Counter::default();
        let ready = Gauge::default();
        registry.register(
            "connected_proxies",
            "xDS streams with a known node",
            connected_proxies.clone(),
        );
        registry.register("xds_pushes", "xDS responses sent", pushes.clone());
        registry.register("xds_acks", "xDS responses ACKed", acks.clone());
        registry.register("xds_nacks", "xDS responses NACKed", nacks.clone());
        registry.register(
            "xds_push_latency_seconds",
            "Snapshot publication to proxy ACK",
            push_latency.clone(),
        );
        registry.register(
            "snapshots_published",
            "Config snapshots published to the xDS server",
            snapshots_published.clone(),
        );
        registry.register(
            "rules_reload_errors",
            "Rule file reloads rejected (the previous config stays served)",
            rules_reload_errors.clone(),
        );
        registry.register(
            "ready",
            "1 once the first complete snapshot is published",
            ready.clone(),
        );
        Metrics {
            registry,
            connected_proxies,
            pushes,
            acks,
            nacks,
            push_latency,
            snapshots_published,
            rules_reload_errors,
            ready,
        }
    }

    pub fn type_label(ty: crate::xds::TypeUrl) -> TypeLabel {
        TypeLabel {
            r#type: ty.short().to_string(),
        }
    }

    /// Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
