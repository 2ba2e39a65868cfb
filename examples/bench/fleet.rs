//! `bench fleet`: a simulated fleet (`sluice::sim::fleet`) in its own
//! process (the runner's handle on it is `fleet_proc.rs`).
//!
//! The runner registers *expectations* on stdin before it makes a change;
//! the fleet watches every proxy's report (woken after each response) and
//! notes, per expectation, when each proxy first ACKed a configuration that
//! satisfies it. When all proxies have, it prints `done ID MAX_NS`. Times
//! are unix nanoseconds (SystemTime), which both processes share; each ACK
//! `Instant` is converted through one (Instant, SystemTime) pair taken at
//! start. A report channel keeps only the latest report: when this process
//! falls behind, an ACK is stamped with the proxy's latest ACK of that type,
//! never earlier than the real one.
//!
//! Commands (stdin) → answers (stdout):
//! - `eds ID CLUSTER IP PORT`: the proxy's CLA of CLUSTER lists IP at a
//!   port ≥ PORT.
//! - `rds ID PATH CLUSTER WEIGHT`: the route PATH matches sends WEIGHT %
//!   to CLUSTER.
//! - `all ID SINCE_NS`: the proxy ACKed every type at or after SINCE_NS.
//! - `sync TOKEN` → `synced TOKEN` (everything before it is registered).
//! - `partial ID` → `partial ID COUNT MAX_NS` (how far it got; closes it).
//! - `peek ID` → `peek ID COUNT MAX_NS` (how far it got so far; stays open).
//! - `stats` → `stats CONNECTED CONFIGURED NACKS STREAMS`.
//! - `quit`.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use sluice::sim::client::Report;
use sluice::sim::fleet::{Fleet, FleetConfig};
use sluice::sim::resources::{SimEndpoints, SimRuntime};
use sluice::sim::route::{Action, Request, RouteTable};
use sluice::sim::state::{Mode, Part};
use sluice::sim::xds_tls::ClientSecurity;
use sluice::xds::TypeUrl;

/// A proxy is configured when it holds the listener with its routes and
/// has ACKed every type.
pub fn configured(r: &Report) -> bool {
    r.view.listeners.contains_key("http")
        && sluice::sim::SIM_TYPES
            .iter()
            .all(|t| r.acked_at[t.index()].is_some())
}

enum Kind {
    Eds {
        cluster: String,
        ip: IpAddr,
        port: u16,
    },
    Rds {
        path: String,
        cluster: String,
        weight: u64,
    },
    All {
        since_ns: u64,
    },
}

struct Exp {
    kind: Kind,
    acked: Vec<bool>,
    count: usize,
    max_ns: u64,
}

#[derive(Default)]
struct Tracker {
    exps: HashMap<u64, Exp>,
    /// Open EDS expectations by cluster; RDS and "all" ones.
    eds: HashMap<String, Vec<u64>>,
    rds: Vec<u64>,
    all: Vec<u64>,
    /// The proxies subscribe to sluice's RTDS layer: weights may come from
    /// it, and "all types ACKed" includes it.
    runtime: bool,
}

/// What one proxy's tracker last looked at, to skip what has not changed
/// (the decoder shares one `Arc` per distinct encoding). Weak handles,
/// not addresses: once a value is freed its address can be reused by the
/// next one decoded, which then looked unchanged and was never checked
/// (a B5 floor step stayed incomplete that way). A `Weak` keeps the
/// allocation, so its address cannot be reused while it is remembered.
#[derive(Default)]
struct Seen {
    eds: HashMap<String, Weak<SimEndpoints>>,
    rds: Vec<Weak<RouteTable>>,
    runtime: Vec<Weak<SimRuntime>>,
    /// The last change of the report's log looked at.
    change: u64,
}

struct Clock {
    instant: Instant,
    unix_ns: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }

    fn unix_ns(&self, t: Instant) -> u64 {
        if t >= self.instant {
            self.unix_ns + (t - self.instant).as_nanos() as u64
        } else {
            self.unix_ns - (self.instant - t).as_nanos() as u64
        }
    }
}

/// The canary weight (percent) the route for `path` gives `cluster`,
/// with the weights read from the proxy's runtime where the route says so.
fn weight_of(r: &Report, path: &str, cluster: &str) -> Option<u64> {
    let req = Request::get("bench", path);
    r.view.routes.values().find_map(|rt| {
        let route = rt.route(&req).ok()?;
        match &route.action {
            Action::Forward(f) => {
                let weights = f.clusters.weights(&|k| r.view.runtime_integer(k));
                let total: u64 = weights.iter().map(|(_, w)| w).sum();
                Some(
                    weights
                        .iter()
                        .filter(|(c, _)| *c == cluster)
                        .map(|(_, w)| w * 100 / total.max(1))
                        .sum(),
                )
            }
            _ => None,
        }
    })
}

impl Tracker {
    /// Checks proxy `p`'s new report against the open expectations;
    /// returns the ones it completed.
    fn observe(&mut self, p: usize, r: &Report, seen: &mut Seen, clock: &Clock) -> Vec<(u64, u64)> {
        let mut hits: Vec<(u64, u64)> = Vec::new();
        let at = |ty: TypeUrl| r.acked_at[ty.index()].map(|t| clock.unix_ns(t));
        // The clusters to look at: those whose endpoints changed since the
        // last look, from the report's log (with many expectations open, as
        // in B2, comparing each one's cluster on every response was most of
        // the fleet's CPU); all open ones when the log does not reach back.
        let open: Vec<(&String, &Vec<u64>)> = match r.changes.since(seen.change) {
            Some(changes) => {
                let mut names: Vec<&str> = changes
                    .filter(|(part, _)| *part == Part::Endpoints)
                    .map(|(_, name)| name)
                    .collect();
                names.sort_unstable();
                names.dedup();
                names
                    .into_iter()
                    .filter_map(|n| self.eds.get_key_value(n))
                    .collect()
            }
            None => self.eds.iter().collect(),
        };
        seen.change = r.changes.last();
        for (cluster, ids) in open {
            let Some(cla) = r.view.endpoints.get(cluster) else {
                continue;
            };
            // Unchanged since last look: nothing new can hold.
            let now = Arc::downgrade(cla);
            match seen.eds.get_mut(cluster) {
                Some(last) if Weak::ptr_eq(last, &now) => continue,
                Some(last) => *last = now,
                None => {
                    seen.eds.insert(cluster.clone(), now);
                }
            }
            for id in ids {
                let Some(e) = self.exps.get(id) else { continue };
                if e.acked[p] {
                    continue;
                }
                if let Kind::Eds { ip, port, .. } = &e.kind {
                    let has = cla
                        .priorities
                        .iter()
                        .flatten()
                        .any(|h| h.addr.ip() == *ip && h.addr.port() >= *port);
                    if let (true, Some(t)) = (has, at(TypeUrl::Endpoint)) {
                        hits.push((*id, t));
                    }
                }
            }
        }
        if !self.rds.is_empty() {
            let now: Vec<Weak<RouteTable>> = r.view.routes.values().map(Arc::downgrade).collect();
            let layers: Vec<Weak<SimRuntime>> =
                r.view.runtime.values().map(Arc::downgrade).collect();
            let same = now.len() == seen.rds.len()
                && now.iter().zip(&seen.rds).all(|(a, b)| Weak::ptr_eq(a, b))
                && layers.len() == seen.runtime.len()
                && layers
                    .iter()
                    .zip(&seen.runtime)
                    .all(|(a, b)| Weak::ptr_eq(a, b));
            // A weight arrives with the routes, or with the runtime layer
            // the routes read it from: the later of the two ACKs.
            let acked = match self.runtime {
                false => at(TypeUrl::Route),
                true => at(TypeUrl::Route)
                    .zip(at(TypeUrl::Runtime))
                    .map(|(a, b)| a.max(b)),
            };
            if !same {
                seen.rds = now;
                seen.runtime = layers;
                for id in &self.rds {
                    let Some(e) = self.exps.get(id) else { continue };
                    if let (
                        false,
                        Kind::Rds {
                            path,
                            cluster,
                            weight,
                        },
                    ) = (e.acked[p], &e.kind)
                    {
                        if weight_of(r, path, cluster) == Some(*weight) {
                            if let Some(t) = acked {
                                hits.push((*id, t));
                            }
                        }
                    }
                }
            }
        }
        for id in &self.all {
            let Some(e) = self.exps.get(id) else { continue };
            if let (false, Kind::All { since_ns }) = (e.acked[p], &e.kind) {
                let rtds = self.runtime.then_some(TypeUrl::Runtime);
                let times: Option<Vec<u64>> = sluice::sim::SIM_TYPES
                    .into_iter()
                    .chain(rtds)
                    .map(at)
                    .collect();
                if let Some(times) = times {
                    if times.iter().all(|t| t >= since_ns) {
                        hits.push((*id, times.into_iter().max().unwrap_or(0)));
                    }
                }
            }
        }
        let mut done = Vec::new();
        for (id, t) in hits {
            let Some(e) = self.exps.get_mut(&id) else {
                continue;
            };
            if std::mem::replace(&mut e.acked[p], true) {
                continue;
            }
            e.count += 1;
            e.max_ns = e.max_ns.max(t);
            if e.count == e.acked.len() {
                done.push((id, e.max_ns));
            }
        }
        for (id, _) in &done {
            self.close(*id);
        }
        done
    }

    fn close(&mut self, id: u64) {
        if let Some(e) = self.exps.get(&id) {
            if let Kind::Eds { cluster, .. } = &e.kind {
                if let Some(ids) = self.eds.get_mut(cluster) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
                        self.eds.remove(cluster);
                    }
                }
            }
        }
        self.rds.retain(|i| *i != id);
        self.all.retain(|i| *i != id);
        self.exps.remove(&id);
    }

    fn is_idle(&self) -> bool {
        self.eds.is_empty() && self.rds.is_empty() && self.all.is_empty()
    }
}

/// The node group every simulated proxy claims.
pub const GROUP: &str = "default";

/// `bench fleet --xds ADDR[,ADDR…] --proxies N --mode delta|sotw [--runtime-layer
/// NAME] [--xds-ca F --client-cert F --client-key F]` (the last three:
/// mTLS, see `pki.rs`).
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let get = |name: &str| -> anyhow::Result<&str> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
            .ok_or_else(|| anyhow!("fleet: missing {name}"))
    };
    // One address, or several replicas (each proxy picks one at random).
    let xds = get("--xds")?.to_string();
    for a in xds.split(',') {
        a.trim().parse::<SocketAddr>()?;
    }
    let proxies: usize = get("--proxies")?.parse()?;
    let mode = match get("--mode")? {
        "sotw" => Mode::Sotw,
        _ => Mode::Delta,
    };
    let tls = crate::pki::client_tls(args)?;
    crate::procs::raise_nofile(proxies as u64 + 1024);
    // The proxies' warnings (why a stream ended: B3 tallies them) go to
    // the fleet's log, plain text.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    // Go with the runner, however it ends.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let runtime_layer = args
        .iter()
        .position(|a| a == "--runtime-layer")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let security = ClientSecurity { tls, token: None };
    rt.block_on(run(xds, proxies, mode, runtime_layer, security))
}

async fn run(
    xds: String,
    proxies: usize,
    mode: Mode,
    runtime_layer: Option<String>,
    security: ClientSecurity,
) -> anyhow::Result<()> {
    let clock = Arc::new(Clock::now());
    let fleet = Fleet::start(&FleetConfig {
        xds,
        proxies,
        mode,
        group: GROUP.into(),
        node_prefix: "bench".into(),
        faults: Default::default(),
        runtime_layer: runtime_layer.clone(),
        security,
    });
    let (out_tx, out_rx) = std::sync::mpsc::channel::<String>();
    let writer = std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        while let Ok(line) = out_rx.recv() {
            let _ = writeln!(w, "{line}");
            while let Ok(more) = out_rx.try_recv() {
                let _ = writeln!(w, "{more}");
            }
            let _ = w.flush();
        }
    });
    let tracker = Arc::new(Mutex::new(Tracker {
        runtime: runtime_layer.is_some(),
        ..Tracker::default()
    }));
    let mut receivers = Vec::with_capacity(proxies);
    for p in 0..proxies {
        let mut rx = fleet.watch(p).context("proxy report")?;
        receivers.push(rx.clone());
        let (tracker, clock, out) = (tracker.clone(), clock.clone(), out_tx.clone());
        tokio::spawn(async move {
            let mut seen = Seen::default();
            while rx.changed().await.is_ok() {
                let r = rx.borrow_and_update();
                let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
                if t.is_idle() {
                    continue;
                }
                for (id, max_ns) in t.observe(p, &r, &mut seen, &clock) {
                    let _ = out.send(format!("done {id} {max_ns}"));
                }
            }
        });
    }
    let _ = out_tx.send("ready".into());

    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = cmd_rx.recv().await {
        let f: Vec<&str> = line.split_whitespace().collect();
        let id = || -> anyhow::Result<u64> { Ok(f.get(1).context("id")?.parse()?) };
        let exp = |kind| Exp {
            kind,
            acked: vec![false; proxies],
            count: 0,
            max_ns: 0,
        };
        let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
        match f.first().copied() {
            Some("eds") if f.len() == 5 => {
                let (cluster, ip, port) = (f[2].to_string(), f[3].parse()?, f[4].parse()?);
                t.eds.entry(cluster.clone()).or_default().push(id()?);
                t.exps.insert(id()?, exp(Kind::Eds { cluster, ip, port }));
            }
            Some("rds") if f.len() == 5 => {
                let kind = Kind::Rds {
                    path: f[2].to_string(),
                    cluster: f[3].to_string(),
                    weight: f[4].parse()?,
                };
                t.rds.push(id()?);
                t.exps.insert(id()?, exp(kind));
            }
            Some("all") if f.len() == 3 => {
                t.all.push(id()?);
                t.exps.insert(
                    id()?,
                    exp(Kind::All {
                        since_ns: f[2].parse()?,
                    }),
                );
            }
            Some("sync") => {
                let _ = out_tx.send(format!("synced {}", f.get(1).unwrap_or(&"")));
            }
            Some("partial") => {
                let id = id()?;
                let (count, max) = t.exps.get(&id).map_or((0, 0), |e| (e.count, e.max_ns));
                t.close(id);
                let _ = out_tx.send(format!("partial {id} {count} {max}"));
            }
            Some("peek") => {
                let id = id()?;
                let (count, max) = t.exps.get(&id).map_or((0, 0), |e| (e.count, e.max_ns));
                let _ = out_tx.send(format!("peek {id} {count} {max}"));
            }
            Some("stats") => {
                drop(t);
                // Borrowed, not cloned: a report holds the proxy's whole view.
                let (mut connected, mut configured_n, mut nacks, mut streams) = (0, 0, 0, 0);
                for rx in &receivers {
                    let r = rx.borrow();
                    connected += usize::from(r.connected);
                    configured_n += usize::from(configured(&r));
                    nacks += r.nacks;
                    streams += r.streams;
                }
                let _ = out_tx.send(format!(
                    "stats {connected} {configured_n} {nacks} {streams}"
                ));
            }
            Some("quit") => break,
            _ => eprintln!("fleet: bad command {line:?}"),
        }
    }
    tokio::time::timeout(Duration::from_secs(10), fleet.stop())
        .await
        .ok();
    drop(out_tx);
    let _ = writer.join();
    Ok(())
}
