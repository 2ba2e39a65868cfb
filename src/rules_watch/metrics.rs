//! The rules watcher's Prometheus metrics: how long loading an edit takes,
//! rejected reloads of the rules file and of listener certificates, edits held by the mass-removal
//! guard, and each TLS listener's certificate expiry.
//!
//! The watcher (in `serve`) counts reloads and holds as they happen; the
//! expiry gauges are set at scrape time from the [`RulesStatus`] the watcher
//! keeps ([`RulesMetrics::observe_certificates`]).
//!
//! [`RulesStatus`]: super::RulesStatus

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::CertStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

/// What the rules watcher counts. Cloning shares the series.
#[derive(Clone, Debug)]
pub struct RulesMetrics {
    /// Per changed rules file: parsing, validating and compiling it (and
    /// Envoy's check with `--validate-with-envoy`), accepted or not.
    pub rules_load_seconds: Histogram,
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
    certificate_listeners: Arc<Mutex<BTreeSet<String>>>,
}

impl Default for RulesMetrics {
    fn default() -> RulesMetrics {
        RulesMetrics {
            rules_load_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            rules_reload_errors: Counter::default(),
            rules_held: Gauge::default(),
            rules_held_total: Counter::default(),
            tls_reload_errors: Counter::default(),
            tls_certificate_expiry: Family::default(),
            certificate_listeners: Arc::default(),
        }
    }
}

impl RulesMetrics {
    /// Registers the rules watcher's families on `registry`.
    pub fn register(registry: &mut Registry) -> RulesMetrics {
        let metrics = RulesMetrics::default();
        registry.register(
            "rules_load_seconds",
            "Per changed rules file: parsing, validating and compiling it, accepted or not",
            metrics.rules_load_seconds.clone(),
        );
        registry.register(
            "rules_reload_errors",
            "Rule file reloads rejected (the previous config stays served)",
            metrics.rules_reload_errors.clone(),
        );
        registry.register(
            "rules_held",
            "1 while the mass-removal guard holds a rules edit (sluice rules confirm releases it)",
            metrics.rules_held.clone(),
        );
        registry.register(
            "rules_held_edits",
            "Rules edits held by the mass-removal guard",
            metrics.rules_held_total.clone(),
        );
        registry.register(
            "tls_reload_errors",
            "Listener certificate reloads rejected (the previous certificate stays served)",
            metrics.tls_reload_errors.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate a TLS listener serves, in Unix seconds",
            metrics.tls_certificate_expiry.clone(),
        );
        metrics
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

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    #[test]
    fn certificate_expiry_follows_the_listeners_serving_tls() {
        let mut registry = Registry::with_prefix("sluice");
        let metrics = RulesMetrics::register(&mut registry);
        let mut certs = BTreeMap::from([
            ("a".to_owned(), cert(1_936_742_400)),
            ("b".to_owned(), cert(1_577_836_800)),
        ]);
        metrics.observe_certificates(&certs);
        let text = encode(&registry);
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
        let text = encode(&registry);
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
