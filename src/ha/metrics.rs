//! The replicated state's metrics: whether this replica leads, and how
//! often it lost leadership other than by shutting down.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Cloning shares the series.
#[derive(Clone, Debug, Default)]
pub struct HaMetrics {
    /// 1 while this replica runs the rollout drivers.
    pub leader: Gauge,
    pub leadership_lost: Counter,
}

impl HaMetrics {
    pub fn register(registry: &mut Registry) -> HaMetrics {
        let metrics = HaMetrics::default();
        registry.register(
            "leader",
            "1 while this replica is the elected leader and runs the rollout drivers (--state-etcd)",
            metrics.leader.clone(),
        );
        registry.register(
            "leadership_lost",
            "Times this replica stopped leading other than by shutting down: lease not renewed in time, a write refused, or the election failed",
            metrics.leadership_lost.clone(),
        );
        metrics
    }
}
