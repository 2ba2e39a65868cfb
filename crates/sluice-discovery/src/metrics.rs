//! Discovery's Prometheus metrics: per source kind, whether it is up, the
//! age of its stalest sync and the registry entries it skipped.
//!
//! They are gauges set at scrape time from a [`SourceStatus`] summary
//! ([`SourceMetrics::observe`]): ages move with the clock, so nothing is
//! updated between scrapes.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::status::SourceStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// The per-source gauges. Cloning shares the series.
#[derive(Clone, Debug, Default)]
pub struct SourceMetrics {
    /// Per discovery source: 1 when every feed is synced and not failing.
    pub up: Family<SourceLabel, Gauge>,
    /// Per discovery source: seconds since its stalest feed last synced
    /// (+Inf before the first sync).
    pub last_sync_age: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    /// Per discovery source: registry entries skipped as invalid, since start.
    pub rejected_entries: Family<SourceLabel, Gauge>,
}

impl SourceMetrics {
    /// Registers the source families on `registry`.
    pub fn register(registry: &mut Registry) -> SourceMetrics {
        let metrics = SourceMetrics::default();
        registry.register(
            "source_up",
            "1 when every feed of a discovery source is synced and not failing",
            metrics.up.clone(),
        );
        registry.register(
            "source_last_sync_age_seconds",
            "Seconds since the stalest feed of a discovery source last synced",
            metrics.last_sync_age.clone(),
        );
        registry.register(
            "source_rejected_entries",
            "Registry entries skipped as invalid since start",
            metrics.rejected_entries.clone(),
        );
        metrics
    }

    /// Sets the per-source gauges from a fresh summary of the index.
    pub fn observe(&self, sources: &[SourceStatus]) {
        for s in sources {
            let label = SourceLabel {
                source: s.source.clone(),
            };
            self.up.get_or_create(&label).set(i64::from(s.up));
            let age = s.last_sync_age_seconds.unwrap_or(f64::INFINITY);
            self.last_sync_age.get_or_create(&label).set(age);
            let rejected = i64::try_from(s.bad_entries).unwrap_or(i64::MAX);
            self.rejected_entries.get_or_create(&label).set(rejected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_that_never_synced_shows_down_with_an_infinite_age() {
        let mut registry = Registry::with_prefix("sluice");
        let metrics = SourceMetrics::register(&mut registry);
        metrics.observe(&[
            SourceStatus {
                source: "etcd".into(),
                up: true,
                last_sync_age_seconds: Some(1.5),
                bad_entries: 3,
                ..SourceStatus::default()
            },
            SourceStatus {
                source: "file".into(),
                ..SourceStatus::default()
            },
        ]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "sluice_source_up{source=\"etcd\"} 1\n",
            "sluice_source_last_sync_age_seconds{source=\"etcd\"} 1.5\n",
            "sluice_source_rejected_entries{source=\"etcd\"} 3\n",
            "sluice_source_up{source=\"file\"} 0\n",
            "sluice_source_last_sync_age_seconds{source=\"file\"} inf\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }
}
