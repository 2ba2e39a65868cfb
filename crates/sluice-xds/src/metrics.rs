//! The xDS server's Prometheus metrics: connected proxies, per-type
//! pushes, ACKs, NACKs, push latency and withheld responses, the admission
//! queue, and the snapshots published to the server.
//!
//! [`XdsMetrics::register`] adds the families to the registry it is handed
//! (the wiring's, which `/metrics` encodes); the streams hold the returned
//! handles. The per-type series are created up front ([`XdsMetrics::of`]):
//! a stream counts each push and ACK with one atomic add instead of a label
//! lookup (a `String` label built, hashed and looked up under the family's
//! lock) per event.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::access::DenyReason;
use super::session::Mode;
use super::transport::{Handshake, Refused};
use super::TypeUrl;

fn reason_label(reason: &str) -> ReasonLabel {
    ReasonLabel {
        reason: reason.to_string(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: String,
}

/// The xDS series of one resource type (each is a handle on the series in
/// its family, which is what `/metrics` shows).
#[derive(Clone, Debug)]
pub struct XdsTypeMetrics {
    pub pushes: Counter,
    pub acks: Counter,
    pub nacks: Counter,
    /// Seconds from a snapshot's publication to the proxy's ACK of the
    /// response that carried it.
    pub push_latency: Histogram,
    /// Responses not sent because they exceed the message size limit.
    pub oversized_responses: Counter,
}

/// What the ADS streams and the admission queue count. Cloning shares the
/// series.
#[derive(Clone, Debug)]
pub struct XdsMetrics {
    pub connected_proxies: Family<ModeLabel, Gauge>,
    /// Streams queued for an initial-configuration slot (admission).
    pub admission_waiting: Gauge,
    /// Streams turned away with UNAVAILABLE because the queue was full.
    pub admission_rejected: Counter,
    /// Indexed by `TypeUrl::index`.
    types: [XdsTypeMetrics; TypeUrl::COUNT],
    /// Streams refused by access control, by `DenyReason`.
    pub denied: Family<ReasonLabel, Counter>,
    /// TLS connections that failed before a stream (`Refused::as_str`).
    pub tls_handshake_failures: Family<ReasonLabel, Counter>,
    /// Completed TLS handshakes, `full` or `resumed` (a session ticket).
    pub tls_handshakes: Family<KindLabel, Counter>,
    /// Connections drained because they reached `--xds-max-connection-age`.
    pub connections_aged: Counter,
    /// Unauthenticated streams whose group has secrets they were not sent.
    pub secrets_withheld: Counter,
    /// Rotated xDS TLS files that could not be read or used.
    pub tls_reload_errors: Counter,
}

/// What the publisher counts about the snapshots it hands the xDS server
/// (the [`Published`](super::published::Published) channel). Cloning shares
/// the series.
#[derive(Clone, Debug)]
pub struct PublishMetrics {
    pub snapshots_published: Counter,
    /// 1 once the first complete snapshot is published.
    pub ready: Gauge,
    /// Per publish: merging endpoints, applying drains and rollouts, and
    /// compiling, up to handing the snapshots to the streams.
    pub compile_seconds: Histogram,
}

impl Default for PublishMetrics {
    fn default() -> PublishMetrics {
        PublishMetrics {
            snapshots_published: Counter::default(),
            ready: Gauge::default(),
            compile_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
        }
    }
}

impl XdsMetrics {
    /// Registers the xDS families on `registry`.
    pub fn register(registry: &mut Registry) -> XdsMetrics {
        let connected_proxies = Family::<ModeLabel, Gauge>::default();
        let pushes = Family::<TypeLabel, Counter>::default();
        let acks = Family::<TypeLabel, Counter>::default();
        let nacks = Family::<TypeLabel, Counter>::default();
        let push_latency = Family::<TypeLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        let admission_waiting = Gauge::default();
        let admission_rejected = Counter::default();
        let oversized_responses = Family::<TypeLabel, Counter>::default();
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
        let denied = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "xds_denied",
            "xDS streams refused by access control (xds_access), by reason",
            denied.clone(),
        );
        for reason in DenyReason::ALL {
            let _ = denied.get_or_create(&reason_label(reason.as_str()));
        }
        let tls_handshake_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "xds_tls_handshake_failures",
            "xDS TLS connections that failed before a stream, by reason",
            tls_handshake_failures.clone(),
        );
        for reason in Refused::ALL {
            let _ = tls_handshake_failures.get_or_create(&reason_label(reason.as_str()));
        }
        let tls_handshakes = Family::<KindLabel, Counter>::default();
        registry.register(
            "xds_tls_handshakes",
            "xDS TLS handshakes completed, full or resumed (a session ticket)",
            tls_handshakes.clone(),
        );
        for kind in ["full", "resumed"] {
            let _ = tls_handshakes.get_or_create(&KindLabel {
                kind: kind.to_string(),
            });
        }
        let connections_aged = Counter::default();
        registry.register(
            "xds_connections_aged",
            "xDS connections drained (GOAWAY, streams ended with OK) at --xds-max-connection-age",
            connections_aged.clone(),
        );
        let secrets_withheld = Counter::default();
        registry.register(
            "xds_secrets_withheld",
            "Unauthenticated xDS streams not sent their group's secrets",
            secrets_withheld.clone(),
        );
        let tls_reload_errors = Counter::default();
        registry.register(
            "xds_tls_reload_errors",
            "Rotated xDS TLS files that could not be read or used (the previous ones stay in use)",
            tls_reload_errors.clone(),
        );
        let types = TypeUrl::ALL.map(|ty| {
            let label = TypeLabel {
                r#type: ty.short().to_string(),
            };
            XdsTypeMetrics {
                pushes: pushes.get_or_create(&label).clone(),
                acks: acks.get_or_create(&label).clone(),
                nacks: nacks.get_or_create(&label).clone(),
                push_latency: push_latency.get_or_create(&label).clone(),
                oversized_responses: oversized_responses.get_or_create(&label).clone(),
            }
        });
        XdsMetrics {
            connected_proxies,
            admission_waiting,
            admission_rejected,
            types,
            denied,
            tls_handshake_failures,
            tls_handshakes,
            connections_aged,
            secrets_withheld,
            tls_reload_errors,
        }
    }

    /// Counts a stream refused by access control.
    pub fn deny(&self, reason: DenyReason) {
        self.denied
            .get_or_create(&reason_label(reason.as_str()))
            .inc();
    }

    /// Counts how a TLS handshake ended.
    pub fn handshake(&self, h: Handshake) {
        match h {
            Handshake::Done { resumed } => {
                let kind = if resumed { "resumed" } else { "full" };
                self.tls_handshakes
                    .get_or_create(&KindLabel {
                        kind: kind.to_string(),
                    })
                    .inc();
            }
            Handshake::Refused(reason) => {
                self.tls_handshake_failures
                    .get_or_create(&reason_label(reason.as_str()))
                    .inc();
            }
        }
    }

    /// The xDS series of `ty`.
    pub fn of(&self, ty: TypeUrl) -> &XdsTypeMetrics {
        &self.types[ty.index()]
    }

    /// The connected-proxies gauge of streams in `mode`.
    pub fn connected(&self, mode: Mode) -> Gauge {
        let mode = match mode {
            Mode::Sotw => "sotw",
            Mode::Delta => "delta",
        };
        self.connected_proxies
            .get_or_create(&ModeLabel {
                mode: mode.to_string(),
            })
            .clone()
    }
}

impl PublishMetrics {
    /// Registers the publication families on `registry`.
    pub fn register(registry: &mut Registry) -> PublishMetrics {
        let metrics = PublishMetrics::default();
        registry.register(
            "snapshots_published",
            "Config snapshots published to the xDS server",
            metrics.snapshots_published.clone(),
        );
        registry.register(
            "ready",
            "1 once the first complete snapshot is published",
            metrics.ready.clone(),
        );
        registry.register(
            "publish_compile_seconds",
            "Per publish: merging discovered endpoints, applying drains and rollouts, and compiling the snapshots",
            metrics.compile_seconds.clone(),
        );
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    #[test]
    fn per_type_handles_count_in_the_exposed_series() {
        let mut registry = Registry::with_prefix("sluice");
        let metrics = XdsMetrics::register(&mut registry);
        metrics.of(TypeUrl::Route).pushes.inc();
        metrics.of(TypeUrl::Route).pushes.inc();
        metrics.of(TypeUrl::Cluster).nacks.inc();
        metrics.of(TypeUrl::Endpoint).push_latency.observe(0.2);
        let text = encode(&registry);
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
    fn connected_proxies_are_counted_per_mode() {
        let mut registry = Registry::with_prefix("sluice");
        let metrics = XdsMetrics::register(&mut registry);
        metrics.connected(Mode::Delta).inc();
        metrics.connected(Mode::Delta).inc();
        metrics.connected(Mode::Sotw).inc();
        metrics.connected(Mode::Delta).dec();
        let text = encode(&registry);
        for line in [
            "sluice_connected_proxies{mode=\"delta\"} 1\n",
            "sluice_connected_proxies{mode=\"sotw\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }
}
