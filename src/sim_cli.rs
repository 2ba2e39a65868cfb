//! `sluice sim`: connect a fleet of simulated proxies to an ADS server and
//! drive traffic through them, printing a summary every second.
//!
//! Traffic runs on the engine's virtual time, advanced one second per wall
//! second, so each tick uses the configuration the proxies hold right then
//! (an edit of the rules shows up in the next line of output).
//!
//! Every request carries the `--header`s and the `--body` (or
//! `--body-file`) given; with `--json`, the summary also holds one
//! [`Sample`] per `--path`: that request as it went upstream, so header
//! edits by transforms can be checked.
//!
//! `--faulty K` makes the last K proxies misbehave with the fault knobs
//! (`--slow-ack`, `--nack`, `--stall`, `--disconnect-after`,
//! `--reconnect-storm`): they run as a second fleet next to the healthy
//! one, and only the healthy ones are waited for before traffic starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use sluice_sim::backend::{BackendSpec, Backends, Latency};
use sluice_sim::client::{Faults, Report};
use sluice_sim::engine::{Engine, SimProxy};
use sluice_sim::fleet::{Fleet, FleetConfig};
use sluice_sim::http::Request;
use sluice_sim::sample::{sample, Sample};
use sluice_sim::state::Mode;
use sluice_sim::stats::Stats;
use sluice_sim::xds_tls::{ClientSecurity, ClientTls};

use crate::cli_support::XdsClientArgs;

/// `sluice sim` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// sluice's xDS address, HOST:PORT; several replicas:
    /// HOST:PORT,HOST:PORT,… (each connection goes to one at random).
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds: String,
    /// Simulated proxies, each with its own ADS stream.
    #[arg(long, default_value_t = 1, value_parser = parse_proxies)]
    pub proxies: usize,
    /// Requests per second, spread over the proxies.
    #[arg(long, default_value_t = 100)]
    pub rps: u64,
    /// How long to send traffic, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Use delta ADS instead of state-of-the-world.
    #[arg(long)]
    pub delta: bool,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The node group (Envoy's node.cluster).
    #[arg(long, default_value = "default")]
    pub group: String,
    /// TLS, mTLS and a token, as `sluice bootstrap` gives Envoy.
    #[command(flatten)]
    pub xds_client: XdsClientArgs,
    /// Host (`:authority`) of the simulated requests.
    #[arg(long, default_value = "sim")]
    pub host: String,
    /// Request paths, used in turn (repeatable; default `/`).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// A request header, `NAME:VALUE`, sent with every request (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// The request body (sent with a `content-length`).
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the request body from this file.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// The request method (default GET, or POST with a body).
    #[arg(long)]
    pub method: Option<String>,
    /// Backend latency: `fixed:10ms`, `uniform:5ms:20ms`,
    /// `pareto:10ms:5s:1.1`, `lognormal:20ms:0.5`.
    #[arg(long, default_value = "fixed:1ms", value_parser = Latency::parse)]
    pub latency: Latency,
    /// Share of backend answers that are 503, 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Seed of every random choice (reproducible runs).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How many of the proxies (the last ones) get the fault knobs below.
    #[arg(long, default_value_t = 0)]
    pub faulty: usize,
    /// Faulty proxies wait this long before answering each response.
    #[arg(long, value_parser = parse_duration)]
    pub slow_ack: Option<Duration>,
    /// Faulty proxies NACK every response of this type (`cds`, `eds`,
    /// `lds`, `rds`; repeatable).
    #[arg(long = "nack", value_parser = parse_type)]
    pub nack: Vec<crate::xds::TypeUrl>,
    /// Faulty proxies read responses and never answer them.
    #[arg(long)]
    pub stall: bool,
    /// Faulty proxies drop their stream this long after opening it.
    #[arg(long, value_parser = parse_duration)]
    pub disconnect_after: Option<Duration>,
    /// Faulty proxies reconnect this many times right after their first response.
    #[arg(long, default_value_t = 0)]
    pub reconnect_storm: u32,
}

/// `NAME:VALUE` (`Name: value` too, as curl takes it): the name is
/// lower-cased, blanks around the value are dropped.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(format!("{s:?}: expected NAME:VALUE"));
    };
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "{s:?}: expected NAME:VALUE with a header name before the colon \
             (the host is --host, the path --path, the method --method)"
        ));
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_string()))
}

/// `--proxies`: at least one (a run without a proxy has nothing to send
/// through).
fn parse_proxies(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("0 proxies would send nothing: give 1 or more".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a number of proxies: {e}")),
    }
}

fn parse_type(s: &str) -> Result<crate::xds::TypeUrl, String> {
    crate::sim::SIM_TYPES
        .into_iter()
        .find(|t| t.short() == s)
        .ok_or_else(|| format!("{s:?}: expected cds, eds, lds or rds"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::rules::parse_duration(s)
}

impl SimArgs {
    /// TLS and token from the flags (the files read now).
    fn security(&self) -> Result<ClientSecurity, String> {
        let x = &self.xds_client;
        let tls = match &x.xds_ca {
            None => None,
            Some(ca) => {
                // The first replica's host; replicas on other hosts need
                // --xds-sni, as with `sluice bootstrap`.
                let first = self.xds.split(',').next().unwrap_or_default().trim();
                let host = first.rsplit_once(':').map_or(first, |(h, _)| h);
                let name = x
                    .xds_sni
                    .as_deref()
                    .unwrap_or(host.trim_start_matches('[').trim_end_matches(']'));
                Some(ClientTls::from_files(ca, x.client(), name).map_err(|e| e.to_string())?)
            }
        };
        Ok(ClientSecurity {
            tls,
            token: x.token()?,
        })
    }

    /// Run `sluice sim` on its own runtime.
    pub fn run(self) -> std::process::ExitCode {
        let security = match self.security() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let body = match (self.body, &self.body_file) {
            (Some(b), _) => Some(b),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(b) => Some(b),
                Err(e) => {
                    eprintln!("error: --body-file {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            },
            (None, None) => None,
        };
        if self.faulty > self.proxies {
            eprintln!(
                "error: --faulty {} is more than --proxies {}: the faulty proxies are \
                 the last ones of the fleet",
                self.faulty, self.proxies
            );
            return std::process::ExitCode::from(2);
        }
        let Some(rt) = crate::cli_support::runtime() else {
            return std::process::ExitCode::FAILURE;
        };
        let opts = SimOptions {
            security,
            xds: self.xds,
            proxies: self.proxies,
            rps: self.rps,
            duration: self.duration,
            delta: self.delta,
            json: self.json,
            group: self.group,
            host: self.host,
            paths: self.paths,
            headers: self.headers,
            body,
            method: self.method,
            latency: self.latency,
            error_rate: self.error_rate,
            seed: self.seed,
            faulty: self.faulty,
            faults: Faults {
                ack_delay: self.slow_ack.unwrap_or_default(),
                nack: self.nack,
                stall: self.stall,
                disconnect_after: self.disconnect_after,
                reconnect_storm: self.reconnect_storm,
            },
        };
        match rt.block_on(run(opts)) {
            Ok(_) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub xds: String,
    /// TLS and a token for every proxy's stream.
    pub security: ClientSecurity,
    pub proxies: usize,
    pub rps: u64,
    pub duration: Duration,
    pub delta: bool,
    pub json: Option<PathBuf>,
    pub group: String,
    pub host: String,
    pub paths: Vec<String>,
    /// Sent with every request (lower-case names).
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// `None`: GET, or POST with a body.
    pub method: Option<String>,
    pub latency: Latency,
    pub error_rate: f64,
    pub seed: u64,
    /// The last `faulty` of `proxies` run with `faults`.
    pub faulty: usize,
    pub faults: Faults,
}

#[derive(Debug, thiserror::Error)]
pub enum SimCliError {
    #[error("no proxy received a listener with routes within {0:?}; is sluice serving {1}?")]
    NotConverged(Duration, String),
    #[error("writing {0}: {1}")]
    Json(PathBuf, String),
}

/// What `--json` writes.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub proxies: usize,
    /// Proxies run with the fault knobs.
    pub faulty: usize,
    pub connected: usize,
    pub converged_after_ms: u128,
    /// Distinct versions held per type (`cds`, ...), with proxy counts.
    pub versions: BTreeMap<&'static str, BTreeMap<String, usize>>,
    pub requests: u64,
    pub stats: Stats,
    /// One request per path through the first proxy's configuration as
    /// traffic started, as it went upstream (see [`crate::sim::sample`]).
    pub samples: Vec<Sample>,
}

/// The healthy fleet and, with `--faulty`, the misbehaving one.
struct Fleets {
    healthy: Fleet,
    faulty: Option<Fleet>,
}

impl Fleets {
    fn len(&self) -> usize {
        self.healthy.len() + self.faulty.as_ref().map_or(0, Fleet::len)
    }

    /// Every proxy's report, healthy ones first.
    fn reports(&self) -> Vec<Report> {
        let mut r = self.healthy.reports();
        r.extend(self.faulty.iter().flat_map(Fleet::reports));
        r
    }

    async fn stop(self) {
        self.healthy.stop().await;
        if let Some(f) = self.faulty {
            f.stop().await;
        }
    }
}

pub async fn run(opts: SimOptions) -> Result<Summary, SimCliError> {
    let config = |proxies, node_prefix: &str, faults| FleetConfig {
        xds: opts.xds.clone(),
        proxies,
        mode: if opts.delta { Mode::Delta } else { Mode::Sotw },
        group: opts.group.clone(),
        node_prefix: node_prefix.into(),
        faults,
        // `sluice sim` models Envoys bootstrapped by `sluice bootstrap`.
        runtime_layer: Some(crate::model::RUNTIME_LAYER.to_string()),
        security: opts.security.clone(),
    };
    let faulty = opts.faulty.min(opts.proxies);
    let fleet = Fleets {
        healthy: Fleet::start(&config(opts.proxies - faulty, "sim", Faults::default())),
        faulty: (faulty > 0)
            .then(|| Fleet::start(&config(faulty, "sim-faulty", opts.faults.clone()))),
    };
    let wait = Duration::from_secs(60);
    let converged = fleet
        .healthy
        .wait_all(wait, |r| !r.view.listeners.is_empty())
        .await
        .ok_or_else(|| SimCliError::NotConverged(wait, opts.xds.clone()))?;
    println!(
        "sim: {} proxies connected and configured in {:.2}s{}",
        fleet.healthy.len(),
        converged.as_secs_f64(),
        if faulty > 0 {
            format!(" ({faulty} faulty ones not waited for)")
        } else {
            String::new()
        }
    );
    let proxies = (0..fleet.len())
        .map(|i| SimProxy::new(Default::default(), opts.seed.wrapping_add(i as u64)))
        .collect();
    let backends = Backends::new(BackendSpec {
        latency: opts.latency.clone(),
        error_rate: opts.error_rate,
        capacity: None,
    });
    let mut engine = Engine::new(proxies, backends, opts.seed);
    let requests = requests(&opts);
    let first = fleet.healthy.reports().into_iter().next();
    let samples = first.map_or_else(Vec::new, |r| {
        requests
            .iter()
            .map(|req| sample(&r.view, req, opts.seed))
            .collect()
    });
    let mut sent = 0u64;
    let start = Instant::now();
    let seconds = opts.duration.as_secs().max(1);
    for s in 0..seconds {
        for (p, r) in engine.proxies.iter_mut().zip(fleet.reports()) {
            p.view = r.view;
        }
        let before = engine.stats.clone();
        let t0 = Duration::from_secs(s);
        for k in 0..opts.rps {
            let proxy = (sent % fleet.len() as u64) as usize;
            let req = &requests[(sent % requests.len() as u64) as usize];
            let at = t0 + Duration::from_secs(1).mul_f64(k as f64 / opts.rps as f64);
            engine.submit(proxy, req.clone(), at);
            sent += 1;
        }
        engine.run_until(t0 + Duration::from_secs(1));
        println!("t={:>3}s {}", s + 1, line(&delta(&engine.stats, &before)));
        let next = start + Duration::from_secs(s + 1);
        tokio::time::sleep_until(next.into()).await;
    }
    engine.run();
    let reports = fleet.reports();
    let mut versions: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
    for r in &reports {
        for ty in crate::sim::SIM_TYPES {
            *versions
                .entry(ty.short())
                .or_default()
                .entry(r.versions[ty.index()].clone())
                .or_default() += 1;
        }
    }
    let summary = Summary {
        proxies: fleet.len(),
        faulty,
        connected: reports.iter().filter(|r| r.connected).count(),
        converged_after_ms: converged.as_millis(),
        versions,
        requests: sent,
        stats: engine.stats.clone(),
        samples,
    };
    fleet.stop().await;
    println!("total  {}", line(&summary.stats));
    print!("{}", summary.stats.envoy_text());
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&summary)
            .map_err(|e| SimCliError::Json(path.clone(), e.to_string()))?;
        std::fs::write(path, text).map_err(|e| SimCliError::Json(path.clone(), e.to_string()))?;
    }
    Ok(summary)
}

/// The request for each path (default `/`), with the headers and body.
fn requests(opts: &SimOptions) -> Vec<Request> {
    let paths = if opts.paths.is_empty() {
        vec!["/".to_string()]
    } else {
        opts.paths.clone()
    };
    let method = match (&opts.method, &opts.body) {
        (Some(m), _) => m.clone(),
        (None, Some(_)) => "POST".to_string(),
        (None, None) => "GET".to_string(),
    };
    let mut headers = opts.headers.clone();
    if let Some(body) = &opts.body {
        // As any HTTP/1 client sends it; the filters read it.
        if !headers.iter().any(|(k, _)| k == "content-length") {
            headers.push(("content-length".into(), body.len().to_string()));
        }
    }
    paths
        .iter()
        .map(|path| Request {
            method: method.clone(),
            headers: headers.clone(),
            body: opts.body.clone(),
            ..Request::get(&opts.host, path)
        })
        .collect()
}

/// The downstream part of `now` that happened since `before`.
fn delta(now: &Stats, before: &Stats) -> Stats {
    let mut d = Stats::default();
    for (k, v) in &now.downstream {
        let b = before.downstream.get(k).copied().unwrap_or(0);
        if v > &b {
            d.downstream.insert(*k, v - b);
        }
    }
    for (k, v) in &now.by_cluster {
        let b = before.by_cluster.get(k).copied().unwrap_or(0);
        if v > &b {
            d.by_cluster.insert(k.clone(), v - b);
        }
    }
    d.downstream_time = now.downstream_time.since(&before.downstream_time);
    d
}

/// `codes 200=950 503=50 | split web~stable=80.2% web~canary=19.8% | p50 1.0ms p99 9.8ms`
fn line(s: &Stats) -> String {
    let codes: Vec<String> = s
        .downstream
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let total: u64 = s.by_cluster.values().sum();
    let split: Vec<String> = s
        .by_cluster
        .iter()
        .map(|(k, v)| format!("{k}={:.1}%", 100.0 * *v as f64 / total.max(1) as f64))
        .collect();
    format!(
        "codes {} | split {} | p50 {:.1}ms p99 {:.1}ms",
        codes.join(" "),
        split.join(" "),
        s.downstream_time.quantile_ms(0.5),
        s.downstream_time.quantile_ms(0.99)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_like_curl_and_bad_ones_are_refused() {
        let ok = |s: &str| parse_header(s).expect(s);
        assert_eq!(ok("x-api-key:k1"), ("x-api-key".into(), "k1".into()));
        assert_eq!(ok("X-Tenant: acme "), ("x-tenant".into(), "acme".into()));
        assert_eq!(ok("x-empty:"), ("x-empty".into(), String::new()));
        assert_eq!(
            ok("x-url:http://a:1"),
            ("x-url".into(), "http://a:1".into())
        );
        for bad in ["x-api-key", ":authority:x", "a b:c", ":v"] {
            let err = parse_header(bad).expect_err(bad);
            assert!(err.contains("expected NAME:VALUE"), "{bad}: {err}");
        }
    }

    #[test]
    fn each_line_shows_only_that_seconds_requests() {
        let mut stats = Stats::default();
        for _ in 0..10 {
            stats.downstream(Some("web"), 200, Duration::from_millis(1));
        }
        let before = stats.clone();
        for _ in 0..5 {
            stats.downstream(Some("web"), 503, Duration::from_millis(100));
        }
        let second = delta(&stats, &before);
        assert_eq!(second.downstream.get(&503), Some(&5));
        assert_eq!(second.downstream.get(&200), None);
        assert_eq!(second.downstream_time.count, 5);
        let p50 = second.downstream_time.quantile_ms(0.5);
        assert!((99.0..=101.0).contains(&p50), "p50 {p50} ms");
        assert!(line(&second).starts_with("codes 503=5 | split web=100.0%"));
    }
}
