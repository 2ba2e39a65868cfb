//! The Prometheus registry behind the admin listener's `/metrics`.
//!
//! Each subsystem owns its metrics and registers them on the registry it is
//! handed: the xDS server ([`XdsMetrics`], and [`PublishMetrics`] for the
//! snapshots published to it), discovery ([`SourceMetrics`]) and the rules
//! watcher ([`RulesMetrics`]). This module only composes them under the
//! `sluice` prefix and encodes the result; `serve` hands each part to the
//! task that updates it, and `admin` sets the scrape-time gauges (through
//! the owning subsystem's `observe*`) before [`Metrics::encode`].

use prometheus_client::registry::Registry;

use crate::discovery::metrics::SourceMetrics;
use crate::rules_watch::metrics::RulesMetrics;
use crate::xds::metrics::{PublishMetrics, XdsMetrics};

/// Every subsystem's metrics, registered on one registry.
pub struct Metrics {
    registry: Registry,
    pub sources: SourceMetrics,
    pub xds: XdsMetrics,
    pub publish: PublishMetrics,
    pub rules: RulesMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sluice");
        let sources = SourceMetrics::register(&mut registry);
        let xds = XdsMetrics::register(&mut registry);
        let publish = PublishMetrics::register(&mut registry);
        let rules = RulesMetrics::register(&mut registry);
        Metrics {
            registry,
            sources,
            xds,
            publish,
            rules,
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
