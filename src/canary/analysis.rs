//! Turning cumulative stats into a window's error rate and p99, pure.
//!
//! Sources give cumulative counters (summed over proxies) and, where they
//! can, cumulative histogram buckets; a window is the difference of two
//! samples. The p99 comes from the bucket deltas when both samples have
//! buckets, else from the quantile the source itself reports (Envoy's and
//! the simulator's text `/stats` give `P99(..)`).

use std::collections::BTreeMap;

use super::plan::Measured;

/// Cumulative stats of one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterSample {
    pub total: u64,
    pub errors_5xx: u64,
    /// (upper bound in ms, cumulative count), increasing bounds.
    pub buckets: Vec<(f64, u64)>,
    /// A p99 the source computed itself, in ms.
    pub p99_ms: Option<f64>,
}

impl ClusterSample {
    /// Adds another proxy's stats of the same cluster. Reported quantiles
    /// cannot be merged exactly; the worst one is kept (a canary is judged
    /// by its slowest proxy).
    pub fn add(&mut self, other: &ClusterSample) {
        self.total += other.total;
        self.errors_5xx += other.errors_5xx;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else if self.buckets.len() == other.buckets.len() {
            for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
                mine.1 += theirs.1;
            }
        }
        self.p99_ms = match (self.p99_ms, other.p99_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Cumulative stats by cluster name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub clusters: BTreeMap<String, ClusterSample>,
}

impl Sample {
    pub fn merge(&mut self, other: &Sample) {
        for (name, c) in &other.clusters {
            self.clusters.entry(name.clone()).or_default().add(c);
        }
    }
}

/// The window between `before` and `after` for `cluster`.
pub fn measure(before: &Sample, after: &Sample, cluster: &str) -> Result<Measured, String> {
    let now = after
        .clusters
        .get(cluster)
        .ok_or_else(|| format!("no stats for cluster {cluster}"))?;
    let then = before.clusters.get(cluster).cloned().unwrap_or_default();
    // Counters that went backwards mean a proxy restarted: the window is
    // unknowable, which must fail the check rather than look clean.
    if now.total < then.total || now.errors_5xx < then.errors_5xx {
        return Err(format!(
            "counters of {cluster} went backwards (proxy restart?)"
        ));
    }
    let requests = now.total - then.total;
    let errors = now.errors_5xx - then.errors_5xx;
    let error_rate = if requests == 0 {
        f64::NAN
    } else {
        errors as f64 / requests as f64
    };
    let p99_ms = bucket_quantile(&then.buckets, &now.buckets, 0.99)
        .or(now.p99_ms)
        .filter(|_| requests > 0);
    Ok(Measured {
        requests,
        error_rate,
        p99_ms,
    })
}

/// The `q` quantile of the bucket deltas: the upper bound of the first
/// bucket holding it. `None` without comparable buckets or data.
fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    if after.is_empty() || (!before.is_empty() && before.len() != after.len()) {
        return None;
    }
    let delta: Vec<(f64, u64)> = after
        .iter()
        .enumerate()
        .map(|(i, (le, n))| {
            let was = before.get(i).map_or(0, |b| b.1);
            (*le, n.saturating_sub(was))
        })
        .collect();
    // Cumulative buckets: the last one counts every sample in range.
    let count = delta.last()?.1;
    if count == 0 {
        return None;
    }
    let rank = (q * count as f64).ceil() as u64;
    delta.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
}

/// Parses Envoy's admin `/stats` text (also what the simulator prints):
/// `cluster.<name>.upstream_rq_total: N`, `..upstream_rq_5xx: N`, and the
/// `upstream_rq_time` histogram as `P99(interval,cumulative)` /
/// `P99(value)` quantiles or `B<le>(interval,cumulative)` buckets
/// (`histogram_buckets=cumulative`). Other lines are ignored.
pub fn parse_envoy_stats(text: &str) -> Sample {
    let mut sample = Sample::default();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        let Some((cluster, stat)) = name
            .strip_prefix("cluster.")
            .and_then(|n| n.rsplit_once('.'))
        else {
            continue;
        };
        if !matches!(
            stat,
            "upstream_rq_total" | "upstream_rq_5xx" | "upstream_rq_time"
        ) {
            continue;
        }
        let c = sample.clusters.entry(cluster.to_string()).or_default();
        match stat {
            "upstream_rq_total" => c.total = value.trim().parse().unwrap_or(0),
            "upstream_rq_5xx" => c.errors_5xx = value.trim().parse().unwrap_or(0),
            _ => (c.buckets, c.p99_ms) = parse_histogram(value),
        }
    }
    sample
}

fn parse_histogram(value: &str) -> (Vec<(f64, u64)>, Option<f64>) {
    let mut buckets = Vec::new();
    let mut p99 = None;
    for token in value.split_whitespace() {
        let Some((head, rest)) = token.split_once('(') else {
            continue;
        };
        let inner = rest.trim_end_matches(')');
        // Envoy gives (interval, cumulative); the simulator one value.
        let cumulative = inner.rsplit(',').next().unwrap_or(inner).trim();
        if let Some(le) = head.strip_prefix('B') {
            if let (Ok(le), Ok(n)) = (le.parse::<f64>(), cumulative.parse::<f64>()) {
                buckets.push((le, n as u64));
            }
        } else if head == "P99" {
            p99 = cumulative.parse::<f64>().ok().filter(|v| v.is_finite());
        }
    }
    (buckets, p99)
}
