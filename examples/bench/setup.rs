//! What every scenario shares: options, a work directory, M1 served by
//! sluice (static or from etcd), a fleet on it, changes that move one
//! endpoint, and latency statistics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Txn, TxnOp};
use serde_json::{json, Value};
use sluice::sim::state::Mode;

use crate::fleet_proc::FleetProc;
use crate::pki::{self, Pki};
use crate::procs::{Etcd, Exes, Sluice};
use crate::topo::{self, Source, Topology, BASE_PORT};

/// Command-line options every scenario reads (each has its own defaults).
#[derive(Clone, Debug)]
pub struct Opts {
    pub proxies: Option<usize>,
    pub services: usize,
    pub per: usize,
    pub duration: Option<Duration>,
    pub sotw: bool,
    /// Delta where the scenario defaults to SotW (B3).
    pub delta: bool,
    pub rates: Option<Vec<u64>>,
    pub out: Option<PathBuf>,
    /// B1: run only the floor half (isolates the fleet's own cost); B2: run
    /// the rates against the floor instead of sluice.
    pub floor_only: bool,
    /// B5: how sluice moves the rollout's weights (`--rollout-weights`;
    /// default runtime).
    pub rollout_weights: Option<sluice::canary::overlay::WeightsVia>,
    /// sluice's xDS port over mutual TLS (`--mtls`); the floor stays
    /// plaintext.
    pub mtls: bool,
    /// With `mtls`, sluice also gets `--xds-tls-ticket-key` (`--ticket-key`),
    /// so proxies resume their TLS sessions after a restart.
    pub ticket_key: bool,
    /// B8: one row of this many routes (default: 1,000, 5,000, 20,000).
    pub routes: Option<usize>,
}

impl Opts {
    pub fn mode(&self) -> Mode {
        if self.sotw {
            Mode::Sotw
        } else {
            Mode::Delta
        }
    }

    pub fn topology(&self) -> Topology {
        Topology {
            services: self.services,
            per: self.per,
        }
    }
}

/// Which server a fleet connects to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// sluice, over mTLS when the run has a [`Pki`].
    Sluice,
    /// The transport floor, always plaintext.
    Floor,
}

pub struct Env {
    pub exes: Exes,
    pub dir: tempfile::TempDir,
    /// The run's certificates when sluice serves xDS over mTLS.
    pub pki: Option<Pki>,
}

impl Env {
    /// A work directory; with `mtls`, the certificates in it (and a
    /// session ticket key with `ticket_key`).
    pub fn new(exes: Exes, mtls: bool, ticket_key: bool) -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        if ticket_key && !mtls {
            anyhow::bail!("--ticket-key needs --mtls");
        }
        let pki = if mtls {
            Some(Pki::write(dir.path(), ticket_key)?)
        } else {
            None
        };
        Ok(Env { exes, dir, pki })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The rules file; with mTLS it also lets the fleet's identity in
    /// (the floor ignores `xds_access`).
    pub fn write_rules(&self, name: &str, t: Topology, source: Source) -> anyhow::Result<PathBuf> {
        let p = self.path(name);
        let mut text = topo::rules(t, source);
        if self.pki.is_some() {
            text.push_str(&pki::access_rules(crate::fleet::GROUP));
        }
        std::fs::write(&p, text)?;
        Ok(p)
    }

    /// `sluice serve` on `rules` (over mTLS when the run has a [`Pki`]).
    pub async fn sluice(
        &self,
        rules: &std::path::Path,
        port: u16,
        extra: &[String],
    ) -> anyhow::Result<Sluice> {
        let mut args = self.pki.as_ref().map(Pki::serve_args).unwrap_or_default();
        args.extend_from_slice(extra);
        Sluice::start(&self.exes, rules, port, &args, &self.path("sluice.log")).await
    }

    /// A fleet on `xds`, waited for until every proxy is configured.
    pub async fn configured_fleet(
        &self,
        tag: &str,
        xds: impl std::fmt::Display,
        proxies: usize,
        mode: Mode,
    ) -> anyhow::Result<(FleetProc, Duration)> {
        self.configured_fleet_rtds(tag, Server::Sluice, xds, proxies, mode, false)
            .await
    }

    /// [`Env::configured_fleet`], whose proxies subscribe to sluice's RTDS
    /// runtime layer when `runtime` (B5 with runtime weights).
    pub async fn configured_fleet_rtds(
        &self,
        tag: &str,
        server: Server,
        xds: impl std::fmt::Display,
        proxies: usize,
        mode: Mode,
        runtime: bool,
    ) -> anyhow::Result<(FleetProc, Duration)> {
        let mut fleet = FleetProc::start(
            &self.exes,
            xds,
            proxies,
            mode,
            runtime,
            self.tls_to(server),
            &self.path("fleet.log"),
        )
        .await?;
        let ready = fleet.wait_configured(Duration::from_secs(300)).await?;
        eprintln!(
            "{tag}: {proxies} {mode:?} proxies configured in {:.1}s",
            ready.as_secs_f64()
        );
        Ok((fleet, ready))
    }

    /// M1 from a fresh etcd, sluice on it, and a configured fleet (B1, B2).
    pub async fn etcd_m1(
        &self,
        tag: &str,
        t: Topology,
        proxies: usize,
        mode: Mode,
    ) -> anyhow::Result<(Etcd, Sluice, FleetProc, Duration)> {
        let etcd = Etcd::start().await?;
        fill_etcd(&etcd, t).await?;
        let rules = self.write_rules("m1-etcd.yaml", t, Source::Etcd { url: &etcd.url })?;
        let sluice = self.sluice(&rules, 0, &[]).await?;
        let (fleet, ready) = self
            .configured_fleet(tag, sluice.xds, proxies, mode)
            .await?;
        Ok((etcd, sluice, fleet, ready))
    }

    pub async fn fleet(
        &self,
        xds: std::net::SocketAddr,
        proxies: usize,
        mode: Mode,
    ) -> anyhow::Result<FleetProc> {
        FleetProc::start(
            &self.exes,
            xds,
            proxies,
            mode,
            false,
            self.tls_to(Server::Sluice),
            &self.path("fleet.log"),
        )
        .await
    }

    /// The certificates a fleet on `server` presents.
    fn tls_to(&self, server: Server) -> Option<&Pki> {
        match server {
            Server::Sluice => self.pki.as_ref(),
            Server::Floor => None,
        }
    }
}

/// The endpoints' current ports (generation per endpoint) and the next
/// change's target.
pub struct Mover {
    t: Topology,
    gen: HashMap<(usize, usize), u16>,
}

/// One endpoint move.
#[derive(Clone, Debug)]
pub struct Change {
    pub id: u64,
    pub service: usize,
    pub k: usize,
    pub port: u16,
}

impl Change {
    pub fn expectation(&self) -> String {
        format!(
            "eds {} {} {} {}",
            self.id,
            topo::service(self.service),
            topo::address(self.service, self.k),
            self.port
        )
    }
}

impl Mover {
    pub fn new(t: Topology) -> Mover {
        Mover {
            t,
            gen: HashMap::new(),
        }
    }

    /// Change number `j`: services visited in a stride (7919 is prime, so
    /// every service comes up once per `services` changes), endpoints in turn.
    pub fn change(&mut self, j: u64) -> Change {
        let s = self.t.services as u64;
        let service = ((j * 7919) % s) as usize;
        let k = ((j / s) as usize) % self.t.per;
        let g = self.gen.entry((service, k)).or_insert(0);
        *g = g.wrapping_add(1).max(1);
        Change {
            id: j,
            service,
            k,
            port: BASE_PORT.saturating_add(*g),
        }
    }
}

/// Writes M1's endpoints into etcd (one key per endpoint, at the base port).
pub async fn fill_etcd(etcd: &Etcd, t: Topology) -> anyhow::Result<()> {
    let mut kv = etcd.client().await?;
    let mut ops = Vec::new();
    for i in 0..t.services {
        for k in 0..t.per {
            ops.push(TxnOp::put(
                topo::etcd_key(i, k),
                topo::record(i, k, BASE_PORT),
                None,
            ));
            if ops.len() == 100 {
                kv.txn(Txn::new().and_then(std::mem::take(&mut ops)))
                    .await?;
            }
        }
    }
    if !ops.is_empty() {
        kv.txn(Txn::new().and_then(ops)).await?;
    }
    Ok(())
}

/// Applies changes to etcd in one transaction (one revision, one watch
/// event batch).
pub async fn put_changes(kv: &mut etcd_client::Client, changes: &[Change]) -> anyhow::Result<()> {
    let ops: Vec<TxnOp> = changes
        .iter()
        .map(|c| {
            TxnOp::put(
                topo::etcd_key(c.service, c.k),
                topo::record(c.service, c.k, c.port),
                None,
            )
        })
        .collect();
    kv.txn(Txn::new().and_then(ops)).await.context("etcd txn")?;
    Ok(())
}

/// Latencies in milliseconds, with the count of changes that never reached
/// every proxy.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    pub ms: Vec<f64>,
    pub incomplete: usize,
}

impl Latencies {
    pub fn push(&mut self, write_ns: u64, (count, max_ns): (usize, u64), proxies: usize) {
        if count == proxies {
            self.ms.push(max_ns.saturating_sub(write_ns) as f64 / 1e6);
        } else {
            self.incomplete += 1;
        }
    }

    /// The q-quantile (nearest rank); incomplete changes count as infinite.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut v = self.ms.clone();
        v.extend(std::iter::repeat_n(f64::INFINITY, self.incomplete));
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    pub fn json(&self) -> Value {
        json!({
            "changes": self.ms.len() + self.incomplete,
            "incomplete": self.incomplete,
            "p50_ms": num(self.quantile(0.5)),
            "p99_ms": num(self.quantile(0.99)),
            "max_ms": num(self.quantile(1.0)),
            // In the order of the changes (incomplete ones left out), to
            // see when the slow ones happen.
            "complete_ms": self.ms.iter().map(|x| num(*x)).collect::<Vec<_>>(),
        })
    }
}

/// JSON has no infinity: `null` stands for "never".
pub fn num(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

pub fn fmt_ms(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "never".into()
    }
}
