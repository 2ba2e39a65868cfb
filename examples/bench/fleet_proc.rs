//! The runner's side of a `bench fleet` process: registers expectations,
//! asks for counters, and collects which expectations every proxy met and
//! when (see `fleet.rs` for the protocol).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice::sim::state::Mode;

use crate::pki::Pki;
use crate::procs::{Exes, Peer};

/// Counters of the whole fleet (`stats`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub connected: usize,
    pub configured: usize,
    pub nacks: u64,
    pub streams: u64,
}

/// The runner's side of a fleet process.
pub struct FleetProc {
    peer: Peer,
    pub proxies: usize,
    next_token: u64,
    /// Results of `done` lines seen while waiting for something else.
    done: HashMap<u64, u64>,
}

impl FleetProc {
    pub async fn start(
        exes: &Exes,
        xds: impl std::fmt::Display,
        proxies: usize,
        mode: Mode,
        runtime: bool,
        tls: Option<&Pki>,
        log: &std::path::Path,
    ) -> anyhow::Result<FleetProc> {
        let mode = if mode == Mode::Sotw { "sotw" } else { "delta" };
        let mut args: Vec<String> = [
            "fleet",
            "--xds",
            &xds.to_string(),
            "--proxies",
            &proxies.to_string(),
            "--mode",
            mode,
        ]
        .map(String::from)
        .to_vec();
        if runtime {
            // As Envoys bootstrapped by `sluice bootstrap`.
            args.extend([
                "--runtime-layer".into(),
                sluice::model::RUNTIME_LAYER.into(),
            ]);
        }
        if let Some(pki) = tls {
            args.extend(pki.fleet_args());
        }
        let mut peer = Peer::spawn(exes, &args, log)?;
        peer.expect("ready", Duration::from_secs(60), |_| {})
            .await?;
        Ok(FleetProc {
            peer,
            proxies,
            next_token: 0,
            done: HashMap::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.peer.pid()
    }

    pub fn send(&self, line: String) {
        self.peer.send(line);
    }

    /// Returns once the fleet has read every command sent so far.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        self.next_token += 1;
        let token = format!("synced {}", self.next_token);
        self.peer.send(format!("sync {}", self.next_token));
        let done = &mut self.done;
        self.peer
            .expect(&token, Duration::from_secs(60), |l| note_done(done, l))
            .await?;
        Ok(())
    }

    pub async fn stats(&mut self) -> anyhow::Result<Stats> {
        self.peer.send("stats".into());
        let done = &mut self.done;
        let line = self
            .peer
            .expect("stats ", Duration::from_secs(60), |l| note_done(done, l))
            .await?;
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        anyhow::ensure!(n.len() == 4, "bad stats line {line:?}");
        Ok(Stats {
            connected: n[0] as usize,
            configured: n[1] as usize,
            nacks: n[2],
            streams: n[3],
        })
    }

    /// Polls until every proxy is configured; returns how long it took.
    pub async fn wait_configured(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let s = self.stats().await?;
            if s.configured == self.proxies {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "only {}/{} proxies configured after {timeout:?}",
                    s.configured,
                    self.proxies
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every id in `ids` is done (all proxies ACKed) or
    /// `timeout`; returns id → (proxies that ACKed, latest ACK unix ns).
    pub async fn results(
        &mut self,
        ids: &[u64],
        timeout: Duration,
    ) -> anyhow::Result<HashMap<u64, (usize, u64)>> {
        let deadline = Instant::now() + timeout;
        let mut out = HashMap::new();
        let mut open: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
        loop {
            open.retain(|id| match self.done.remove(id) {
                Some(t) => {
                    out.insert(*id, (self.proxies, t));
                    false
                }
                None => true,
            });
            if open.is_empty() {
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.peer.events.recv()).await {
                Ok(Some(line)) => note_done(&mut self.done, &line),
                Ok(None) => anyhow::bail!("fleet exited"),
                Err(_) => break,
            }
        }
        for id in open {
            let got = self.count("partial", id).await?;
            // A `done` may have raced the `partial`.
            let got = self.done.remove(&id).map_or(got, |t| (self.proxies, t));
            out.insert(id, got);
        }
        Ok(out)
    }

    /// How many proxies met expectation `id` so far and the latest ACK
    /// (unix ns); the expectation stays open.
    pub async fn peek(&mut self, id: u64) -> anyhow::Result<(usize, u64)> {
        if let Some(t) = self.done.get(&id) {
            return Ok((self.proxies, *t));
        }
        self.count("peek", id).await
    }

    /// Sends `cmd id` (`partial` or `peek`) and reads its answer, `cmd id
    /// COUNT LATEST_ACK_NS`, noting the `done`s that come before it.
    async fn count(&mut self, cmd: &str, id: u64) -> anyhow::Result<(usize, u64)> {
        self.peer.send(format!("{cmd} {id}"));
        let done = &mut self.done;
        let line = self
            .peer
            .expect(&format!("{cmd} {id} "), Duration::from_secs(30), |l| {
                note_done(done, l)
            })
            .await?;
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(2)
            .filter_map(|x| x.parse().ok())
            .collect();
        Ok((
            n.first().copied().unwrap_or(0) as usize,
            n.get(1).copied().unwrap_or(0),
        ))
    }

    pub fn quit(self) {
        self.peer.quit(Duration::from_secs(15));
    }
}

fn note_done(done: &mut HashMap<u64, u64>, line: &str) {
    let mut f = line.split_whitespace();
    if f.next() == Some("done") {
        if let (Some(Ok(id)), Some(Ok(t))) = (f.next().map(str::parse), f.next().map(str::parse)) {
            done.insert(id, t);
        }
    }
}
