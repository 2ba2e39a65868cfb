//! Envoy-named statistics for simulated traffic, so the same analysis can
//! read a real Envoy's `/stats` or the simulator's:
//! `cluster.<name>.upstream_rq_2xx`, `upstream_rq_5xx`, `upstream_rq_<code>`,
//! `upstream_rq_total`, `upstream_rq_retry`, `upstream_rq_timeout`,
//! `upstream_rq_pending_overflow`, and the `upstream_rq_time` histogram in
//! milliseconds. Downstream answers are kept per status code too, and per
//! connection manager as Envoy names them: `http.<stat_prefix>.
//! downstream_rq_{total,completed,<N>xx}` (answers from a Lua filter's
//! `respond()` included, as in Envoy), and the HTTP filters' own counters
//! by their full Envoy names (`http.<stat_prefix>.rbac.denied`,
//! `http.<stat_prefix>.fault.aborts_injected`, `http.<stat_prefix>.cors.
//! origin_valid`, `<stat_prefix>.http_local_rate_limit.rate_limited`, ...).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

/// A log-bucketed latency histogram (about 1.1% relative precision).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    buckets: BTreeMap<u32, u64>,
    pub count: u64,
    pub sum_ms: f64,
}

const GROWTH: f64 = 1.011;

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let b = if us < 1.0 {
            0
        } else {
            (us.ln() / GROWTH.ln()) as u32 + 1
        };
        *self.buckets.entry(b).or_default() += 1;
        self.count += 1;
        self.sum_ms += us / 1000.0;
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let us = if *b == 0 {
                    0.0
                } else {
                    GROWTH.powf(f64::from(*b))
                };
                return us / 1000.0;
            }
        }
        0.0
    }

    /// What was recorded after `before` (an earlier state of this one).
    pub fn since(&self, before: &Histogram) -> Histogram {
        let mut d = Histogram::default();
        for (b, n) in &self.buckets {
            let n = n.saturating_sub(before.buckets.get(b).copied().unwrap_or(0));
            if n > 0 {
                d.buckets.insert(*b, n);
            }
        }
        d.count = self.count.saturating_sub(before.count);
        d.sum_ms = (self.sum_ms - before.sum_ms).max(0.0);
        d
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_default() += n;
        }
        self.count += other.count;
        self.sum_ms += other.sum_ms;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterStats {
    /// Counters by Envoy's stat suffix (`upstream_rq_2xx`, ...).
    pub counters: BTreeMap<String, u64>,
    pub upstream_rq_time: Histogram,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub clusters: BTreeMap<String, ClusterStats>,
    /// Final answers to clients, by status code.
    pub downstream: BTreeMap<u16, u64>,
    pub downstream_time: Histogram,
    /// Final answers by the cluster that served them (for split reports).
    pub by_cluster: BTreeMap<String, u64>,
    /// Connection manager counters by `stat_prefix`, then stat suffix.
    pub http: BTreeMap<String, BTreeMap<String, u64>>,
    /// Other counters (the HTTP filters'), by full Envoy name.
    pub counters: BTreeMap<String, u64>,
}

impl Stats {
    fn cluster(&mut self, name: &str) -> &mut ClusterStats {
        self.clusters.entry(name.to_string()).or_default()
    }

    pub fn inc(&mut self, cluster: &str, counter: &str) {
        *self
            .cluster(cluster)
            .counters
            .entry(counter.into())
            .or_default() += 1;
    }

    /// One upstream attempt ended with `status` after `took`.
    pub fn upstream(&mut self, cluster: &str, status: u16, took: Duration) {
        let c = self.cluster(cluster);
        for key in [
            "upstream_rq_total".to_string(),
            format!("upstream_rq_{}xx", status / 100),
            format!("upstream_rq_{status}"),
        ] {
            *c.counters.entry(key).or_default() += 1;
        }
        c.upstream_rq_time.record(took);
    }

    /// The final answer to the client.
    pub fn downstream(&mut self, cluster: Option<&str>, status: u16, took: Duration) {
        *self.downstream.entry(status).or_default() += 1;
        self.downstream_time.record(took);
        if let Some(c) = cluster {
            *self.by_cluster.entry(c.to_string()).or_default() += 1;
        }
    }

    /// A final answer with `status` from the connection manager `prefix`.
    pub fn http_downstream(&mut self, prefix: &str, status: u16) {
        let c = self.http.entry(prefix.to_string()).or_default();
        for key in [
            "downstream_rq_total".to_string(),
            "downstream_rq_completed".to_string(),
            format!("downstream_rq_{}xx", status / 100),
        ] {
            *c.entry(key).or_default() += 1;
        }
    }

    /// Adds one to the counter with the full Envoy name `name`.
    pub fn count(&mut self, name: String) {
        *self.counters.entry(name).or_default() += 1;
    }

    /// A counter by its full Envoy name (0 when never counted).
    pub fn named(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    pub fn http_counter(&self, prefix: &str, name: &str) -> u64 {
        self.http
            .get(prefix)
            .and_then(|c| c.get(name))
            .copied()
            .unwrap_or(0)
    }

    pub fn counter(&self, cluster: &str, name: &str) -> u64 {
        self.clusters
            .get(cluster)
            .and_then(|c| c.counters.get(name))
            .copied()
            .unwrap_or(0)
    }

    pub fn merge(&mut self, other: &Stats) {
        for (name, c) in &other.clusters {
            let mine = self.cluster(name);
            for (k, v) in &c.counters {
                *mine.counters.entry(k.clone()).or_default() += v;
            }
            mine.upstream_rq_time.merge(&c.upstream_rq_time);
        }
        for (k, v) in &other.downstream {
            *self.downstream.entry(*k).or_default() += v;
        }
        for (k, v) in &other.by_cluster {
            *self.by_cluster.entry(k.clone()).or_default() += v;
        }
        self.downstream_time.merge(&other.downstream_time);
        for (prefix, c) in &other.http {
            let mine = self.http.entry(prefix.clone()).or_default();
            for (k, v) in c {
                *mine.entry(k.clone()).or_default() += v;
            }
        }
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
    }

    /// Envoy admin `/stats` text: `name: value` lines, histograms as
    /// `P50(...) P90(...) P99(...)` quantiles, in name order.
    pub fn envoy_text(&self) -> String {
        let mut out = String::new();
        let mut plain: BTreeMap<String, u64> = self.counters.clone();
        for (prefix, c) in &self.http {
            for (k, v) in c {
                plain.insert(format!("http.{prefix}.{k}"), *v);
            }
        }
        for (k, v) in &plain {
            let _ = writeln!(out, "{k}: {v}");
        }
        for (name, c) in &self.clusters {
            for (k, v) in &c.counters {
                let _ = writeln!(out, "cluster.{name}.{k}: {v}");
            }
            let h = &c.upstream_rq_time;
            let _ = writeln!(
                out,
                "cluster.{name}.upstream_rq_time: P50({:.1}) P90({:.1}) P99({:.1}) P100({:.1})",
                h.quantile_ms(0.5),
                h.quantile_ms(0.9),
                h.quantile_ms(0.99),
                h.quantile_ms(1.0)
            );
        }
        out
    }
}
