//! The Prometheus registry behind the admin listener's `/metrics`.
//!
//! Each subsystem owns its metrics and registers them on the registry it is
//! handed: the xDS server ([`XdsMetrics`], and [`PublishMetrics`] for the
//! snapshots published to it), discovery ([`SourceMetrics`]) and the rules
//! watcher ([`RulesMetrics`]) and leader election ([`HaMetrics`]). This module only composes them under the
//! `sluice` prefix and encodes the result; `serve` hands each part to the
//! task that updates it, and `admin` sets the scrape-time gauges (through
//! the owning subsystem's `observe*`) before [`Metrics::encode`].

use prometheus_client::registry::Registry;

use crate::discovery::metrics::SourceMetrics;
use crate::ha::metrics::HaMetrics;
use crate::rules_watch::metrics::RulesMetrics;
use crate::xds::metrics::{PublishMetrics, XdsMetrics};

/// Every subsystem's metrics, registered on one registry.
pub struct Metrics {
    registry: Registry,
    pub sources: SourceMetrics,
    pub xds: XdsMetrics,
    pub publish: PublishMetrics,
    pub rules: RulesMetrics,
    /// Leadership of a replica (`--state-etcd`); 0 without.
    pub ha: HaMetrics,
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
        let ha = HaMetrics::register(&mut registry);
        Metrics {
            registry,
            sources,
            xds,
            publish,
            rules,
            ha,
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
    use std::collections::BTreeSet;

    use super::*;

    /// The metrics table of docs/cli.md: `(name, type)` per row.
    fn documented() -> Vec<(&'static str, &'static str)> {
        include_str!("../docs/cli.md")
            .lines()
            .filter_map(|line| {
                let mut cells = line.strip_prefix("| `sluice_")?.split('|');
                let name = cells.next()?.trim().strip_suffix('`')?;
                let kind = cells.next()?.trim();
                Some((name, kind))
            })
            .collect()
    }

    /// What a subsystem registers is what docs/cli.md lists: a family
    /// missing from either side fails, and so does one of another type.
    #[test]
    fn exposed_families_are_the_documented_ones_with_their_types() {
        let documented: BTreeSet<String> = documented()
            .into_iter()
            .map(|(name, kind)| {
                // A counter's family is named without its series' `_total`.
                let family = match kind {
                    "counter" => name.strip_suffix("_total").unwrap_or(name),
                    _ => name,
                };
                format!("sluice_{family} {kind}")
            })
            .collect();
        let text = Metrics::new().encode();
        let exposed: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(str::to_owned)
            .collect();
        assert_eq!(exposed, documented, "exposed (left) vs docs/cli.md (right)");
    }
}
