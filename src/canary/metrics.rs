//! Where analysis reads its numbers: a small trait with two sources.
//!
//! - [`EnvoyAdmin`]: the `/stats` pages of a list of Envoy admin addresses
//!   (or anything serving the same text, like the simulator's stats),
//!   summed over proxies.
//! - [`Prometheus`]: the HTTP query API, reading the cumulative series
//!   Envoy exports (`envoy_cluster_upstream_rq_total`, `..._rq_xx`,
//!   `..._rq_time_bucket`).
//!
//! Both return cumulative samples; `analysis::measure` takes the window's
//! difference. Any failed read is an error, never an empty sample: the
//! check it feeds must fail, not pass on missing data.

use std::time::Duration;

use futures::future::BoxFuture;

use super::analysis::{parse_envoy_stats, ClusterSample, Sample};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("no metrics source configured")]
    NoSource,
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: unexpected answer: {reason}")]
    Bad { url: String, reason: String },
}

/// Reads cumulative stats of the given clusters.
pub trait MetricsSource: Send + Sync {
    fn sample<'a>(&'a self, clusters: &'a [String]) -> BoxFuture<'a, Result<Sample, MetricsError>>;
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap_or_default()
}

async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, MetricsError> {
    let http = |source| MetricsError::Http {
        url: url.to_string(),
        source,
    };
    let resp = client.get(url).send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(MetricsError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    resp.text().await.map_err(http)
}

/// No source: every sample fails (so a rollout can never promote).
pub struct Unavailable;

impl MetricsSource for Unavailable {
    fn sample<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<Sample, MetricsError>> {
        Box::pin(async { Err(MetricsError::NoSource) })
    }
}

/// Envoy admin endpoints, `HOST:PORT` each; every one must answer.
pub struct EnvoyAdmin {
    pub addrs: Vec<String>,
    client: reqwest::Client,
}

impl EnvoyAdmin {
    pub fn new(addrs: Vec<String>) -> EnvoyAdmin {
        EnvoyAdmin {
            addrs,
            client: client(),
        }
    }
}

impl MetricsSource for EnvoyAdmin {
    fn sample<'a>(&'a self, clusters: &'a [String]) -> BoxFuture<'a, Result<Sample, MetricsError>> {
        Box::pin(async move {
            if self.addrs.is_empty() {
                return Err(MetricsError::NoSource);
            }
            let mut total = Sample::default();
            for addr in &self.addrs {
                // `usedonly` keeps the page small; cumulative buckets give
                // exact window quantiles where Envoy has flushed them.
                let url = format!(
                    "http://{addr}/stats?usedonly&filter=%5Ecluster%5C.&histogram_buckets=cumulative"
                );
                let mut one = parse_envoy_stats(&get_text(&self.client, &url).await?);
                one.clusters.retain(|name, _| clusters.contains(name));
                total.merge(&one);
            }
            Ok(total)
        })
    }
}

/// A Prometheus server's HTTP API, e.g. `http://127.0.0.1:9090`.
pub struct Prometheus {
    pub base: String,
    client: reqwest::Client,
}

impl Prometheus {
    pub fn new(base: String) -> Prometheus {
        Prometheus {
            base: base.trim_end_matches('/').to_string(),
            client: client(),
        }
    }

    /// `(labels, value)` of each series an instant query returns.
    async fn query(
        &self,
        q: &str,
    ) -> Result<Vec<(serde_json::Map<String, serde_json::Value>, f64)>, MetricsError> {
        let url = format!("{}/api/v1/query", self.base);
        let bad = |reason: String| MetricsError::Bad {
            url: url.clone(),
            reason,
        };
        let resp = self
            .client
            .get(&url)
            .query(&[("query", q)])
            .send()
            .await
            .map_err(|source| MetricsError::Http {
                url: url.clone(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(MetricsError::Status {
                url: url.clone(),
                status: resp.status().as_u16(),
            });
        }
        let doc: serde_json::Value = resp.json().await.map_err(|e| bad(e.to_string()))?;
        if doc["status"] != "success" {
            return Err(bad(format!("status {}", doc["status"])));
        }
        let series = doc["data"]["result"]
            .as_array()
            .ok_or_else(|| bad("no data.result".into()))?;
        series
            .iter()
            .map(|s| {
                let labels = s["metric"].as_object().cloned().unwrap_or_default();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| bad(format!("bad value {}", s["value"])))?;
                Ok((labels, value))
            })
            .collect()
    }

    async fn one_cluster(&self, cluster: &str) -> Result<Option<ClusterSample>, MetricsError> {
        // Cluster names are `service~subset`: no quote or backslash.
        let sel = format!("envoy_cluster_name=\"{cluster}\"");
        let total = self
            .query(&format!("sum(envoy_cluster_upstream_rq_total{{{sel}}})"))
            .await?;
        let Some((_, total)) = total.first() else {
            return Ok(None);
        };
        let errors = self
            .query(&format!(
                "sum(envoy_cluster_upstream_rq_xx{{{sel},envoy_response_code_class=\"5\"}})"
            ))
            .await?;
        let buckets = self
            .query(&format!(
                "sum by (le) (envoy_cluster_upstream_rq_time_bucket{{{sel}}})"
            ))
            .await?;
        let mut buckets: Vec<(f64, u64)> = buckets
            .iter()
            .filter_map(|(labels, v)| {
                let le = labels.get("le")?.as_str()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v as u64))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(Some(ClusterSample {
            total: *total as u64,
            errors_5xx: errors.first().map_or(0, |(_, v)| *v as u64),
            buckets,
            p99_ms: None,
        }))
    }
}

impl MetricsSource for Prometheus {
    fn sample<'a>(&'a self, clusters: &'a [String]) -> BoxFuture<'a, Result<Sample, MetricsError>> {
        Box::pin(async move {
            let mut out = Sample::default();
            for c in clusters {
                if let Some(s) = self.one_cluster(c).await? {
                    out.clusters.insert(c.clone(), s);
                }
            }
            Ok(out)
        })
    }
}
