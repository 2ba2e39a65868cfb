//! Prometheus metrics, served as text on the admin listener's `/metrics`.
//!
//! One `Metrics` value is shared by the xDS streams and the rules watcher;
//! everything is a lock-free counter, gauge or histogram. The per-type xDS
//! series are created up front ([`Metrics::xds`]): a stream counts each
//! push and ACK with one atomic add instead of a label lookup (a `String`
//! label built, hashed and looked up under the family's lock) per event.

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;

use crate::discovery::status::SourceStatus;
use crate::rules_watch::CertStatus;
use crate::xds::TypeUrl;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

/// The xDS series of one resource type (each is a handle on the series in
/// its family, which is what `/metrics` shows).
#[derive(Clone, Debug)]
pub struct XdsTypeMetrics {
    pub pushes: Counter,
    pub acks: Counter,
    pub nacks: Counter,
    pub push_latency: Histogram,
    pub oversized_responses: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
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
    /// Streams queued for an initial-configuration slot (admission).
    pub admission_waiting: Gauge,
    /// Streams turned away with UNAVAILABLE because the queue was full.
    pub admission_rejected: Counter,
    /// Responses not sent because they exceed the message size limit.
    pub oversized_responses: Family<TypeLabel, Counter>,
    pub snapshots_published: Counter,
    pub rules_reload_errors: Counter,
    /// 1 while the mass-removal guard holds a rules edit.
    pub rules_held: Gauge,
    /// Rules edits the guard has held since start.
    pub rules_held_total: Counter,
    pub tls_reload_errors: Counter,
    /// Per TLS listener: the served certificate's notAfter (Unix seconds).
    /// Set from the rules status at scrape time.
    pub tls_certificate_expiry: Family<ListenerLabel, Gauge>,
    /// The listeners `tls_certificate_expiry` has a series for.
    certificate_listeners: Mutex<BTreeSet<String>>,
    pub ready: Gauge,
    /// Per discovery source: 1 when every feed is synced and not failing.
    pub source_up: Family<SourceLabel, Gauge>,
    /// Per discovery source: seconds since its stalest feed last synced
    /// (+Inf before the first sync). Set from the index at scrape time.
    pub source_last_sync_age: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    /// Per discovery source: registry entries skipped as invalid, since start.
    pub source_rejected_entries: Family<SourceLabel, Gauge>,
    /// Indexed by `TypeUrl::index`.
    xds_types: [XdsTypeMetrics; TypeUrl::COUNT],
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
        let rules_held = Gauge::default();
        let rules_held_total = Counter::default();
        let tls_reload_errors = Counter::default();
        let tls_certificate_expiry = Family::<ListenerLabel, Gauge>::default();
        let ready = Gauge::default();
        let admission_waiting = Gauge::default();
        let admission_rejected = Counter::default();
        let oversized_responses = Family::<TypeLabel, Counter>::default();
        let source_up = Family::<SourceLabel, Gauge>::default();
        let source_last_sync_age = Family::<SourceLabel, Gauge<f64, AtomicU64>>::default();
        let source_rejected_entries = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_up",
            "1 when every feed of a discovery source is synced and not failing",
            source_up.clone(),
        );
        registry.register(
            "source_last_sync_age_seconds",
            "Seconds since the stalest feed of a discovery source last synced",
            source_last_sync_age.clone(),
        );
        registry.register(
            "source_rejected_entries",
            "Registry entries skipped as invalid since start",
            source_rejected_entries.clone(),
        );
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
            "xds_admission_waiting",
            "Streams waiting for an initial-configuration slot",
            admission_waiting.clone(),
        );
        registry.register(
            "xds_admission_rejected",
            "Streams refused with UNAVAILABLE because the admission queue was full",
            admission_rejected.clone(),
        );
        registry.register(
            "xds_oversized_responses",
            "Responses withheld because they exceed the gRPC message size limit",
            oversized_responses.clone(),
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
            "rules_held",
            "1 while the mass-removal guard holds a rules edit (sluice rules confirm releases it)",
            rules_held.clone(),
        );
        registry.register(
            "rules_held_edits",
            "Rules edits held by the mass-removal guard",
            rules_held_total.clone(),
        );
        registry.register(
            "tls_reload_errors",
            "Listener certificate reloads rejected (the previous certificate stays served)",
            tls_reload_errors.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate a TLS listener serves, in Unix seconds",
            tls_certificate_expiry.clone(),
        );
        registry.register(
            "ready",
            "1 once the first complete snapshot is published",
            ready.clone(),
        );
        let xds_types = TypeUrl::ALL.map(|ty| {
            let label = Metrics::type_label(ty);
            XdsTypeMetrics {
                pushes: pushes.get_or_create(&label).clone(),
                acks: acks.get_or_create(&label).clone(),
                nacks: nacks.get_or_create(&label).clone(),
                push_latency: push_latency.get_or_create(&label).clone(),
                oversized_responses: oversized_responses.get_or_create(&label).clone(),
            }
        });
        Metrics {
            registry,
            connected_proxies,
            pushes,
            acks,
            nacks,
            push_latency,
            admission_waiting,
            admission_rejected,
            oversized_responses,
            snapshots_published,
            rules_reload_errors,
            rules_held,
            rules_held_total,
            tls_reload_errors,
            tls_certificate_expiry,
            certificate_listeners: Mutex::default(),
            ready,
            source_up,
            source_last_sync_age,
            source_rejected_entries,
            xds_types,
        }
    }

    /// The xDS series of `ty`.
    pub fn xds(&self, ty: TypeUrl) -> &XdsTypeMetrics {
        &self.xds_types[ty.index()]
    }

    /// Sets the per-source gauges from a fresh summary of the index.
    pub fn observe_sources(&self, sources: &[SourceStatus]) {
        for s in sources {
            let label = SourceLabel {
                source: s.source.clone(),
            };
            self.source_up.get_or_create(&label).set(i64::from(s.up));
            let age = s.last_sync_age_seconds.unwrap_or(f64::INFINITY);
            self.source_last_sync_age.get_or_create(&label).set(age);
            let rejected = i64::try_from(s.bad_entries).unwrap_or(i64::MAX);
            self.source_rejected_entries
                .get_or_create(&label)
                .set(rejected);
        }
    }

    /// Sets the certificate expiry gauges from the rules status; listeners
    /// no longer serving TLS lose theirs.
    pub fn observe_certificates(&self, certificates: &BTreeMap<String, CertStatus>) {
        let mut shown = self.certificate_listeners.lock();
        for gone in shown.iter().filter(|l| !certificates.contains_key(*l)) {
            self.tls_certificate_expiry.remove(&ListenerLabel {
                listener: gone.clone(),
            });
        }
        *shown = certificates.keys().cloned().collect();
        for (listener, c) in certificates {
            let label = ListenerLabel {
                listener: listener.clone(),
            };
            let seconds = i64::try_from(c.not_after_seconds).unwrap_or(i64::MAX);
            self.tls_certificate_expiry
                .get_or_create(&label)
                .set(seconds);
        }
    }

    pub fn type_label(ty: TypeUrl) -> TypeLabel {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_after_seconds: u64) -> CertStatus {
        CertStatus {
            not_after_seconds,
            ..CertStatus::default()
        }
    }

    #[test]
    fn per_type_handles_count_in_the_exposed_series() {
        let metrics = Metrics::new();
        metrics.xds(TypeUrl::Route).pushes.inc();
        metrics.xds(TypeUrl::Route).pushes.inc();
        metrics.xds(TypeUrl::Cluster).nacks.inc();
        metrics.xds(TypeUrl::Endpoint).push_latency.observe(0.2);
        let text = metrics.encode();
        for line in [
            "sluice_xds_pushes_total{type=\"rds\"} 2\n",
            "sluice_xds_pushes_total{type=\"cds\"} 0\n",
            "sluice_xds_nacks_total{type=\"cds\"} 1\n",
            "sluice_xds_push_latency_seconds_count{type=\"eds\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }

    #[test]
    fn certificate_expiry_follows_the_listeners_serving_tls() {
        let metrics = Metrics::new();
        let mut certs = BTreeMap::from([
            ("a".to_owned(), cert(1_936_742_400)),
            ("b".to_owned(), cert(1_577_836_800)),
        ]);
        metrics.observe_certificates(&certs);
        let text = metrics.encode();
        let name = "sluice_tls_certificate_expiry_timestamp_seconds";
        assert!(
            text.contains(&format!("{name}{{listener=\"a\"}} 1936742400\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{name}{{listener=\"b\"}} 1577836800\n")),
            "{text}"
        );
        certs.remove("b");
        metrics.observe_certificates(&certs);
        let text = metrics.encode();
        assert!(
            text.contains(&format!("{name}{{listener=\"a\"}}")),
            "{text}"
        );
        assert!(
            !text.contains(&format!("{name}{{listener=\"b\"}}")),
            "{text}"
        );
    }
}
