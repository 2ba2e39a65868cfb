//! Several `sluice serve --state-etcd` replicas on one real etcd, each
//! with its own simulated proxies, and simulated traffic through all of
//! them whose stats every replica's rollout analysis reads.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use sluice::sim::client::Faults;
use sluice::sim::fleet::Fleet;
use sluice::sim::stats::Stats;

use super::etcd::Etcd;
use super::rollout::{
    backends, canary_addr, cli, route, sim_fleet, steps_in, ControllerFiles, Run, Traffic, RULES,
};
use super::{get_json, Sluice, WAIT};

/// The lease TTL the tests run with: short, so failovers are quick; the
/// tests wait generously and assert behaviour, never durations.
pub const TTL: &str = "2s";

pub struct Replicas {
    pub etcd: Etcd,
    pub files: ControllerFiles,
    pub rules: PathBuf,
    /// By index; `None` once killed.
    pub replicas: Vec<Option<Sluice>>,
    pub fleets: Vec<Arc<Fleet>>,
    pub traffic: Traffic,
}

pub fn name(i: usize) -> String {
    format!("r{i}")
}

impl Replicas {
    /// `n` replicas named `r0`…, two simulated proxies on each.
    pub async fn start(n: usize) -> Replicas {
        Replicas::start_on(Etcd::start().await, n).await
    }

    /// [`Replicas::start`] on an etcd the test prepared.
    pub async fn start_on(etcd: Etcd, n: usize) -> Replicas {
        let files = ControllerFiles::new();
        let rules = files.dir.path().join("rules.yaml");
        std::fs::write(&rules, RULES).expect("rules");
        // Each fleet needs its replica's address before the replica runs,
        // and the replicas need the traffic's stats address.
        // Below the ephemeral range (see `free_port`): the fleets connect
        // before their replicas listen.
        let xds: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", super::free_port()))
            .collect();
        let fleets: Vec<Arc<Fleet>> = xds
            .iter()
            .enumerate()
            .map(|(i, a)| Arc::new(sim_fleet(a, &format!("sim{i}"), 2, Faults::default())))
            .collect();
        let all = fleets.clone();
        let traffic = Traffic::start(fleets[0].clone(), move |_, seed| {
            let mut total = Stats::default();
            for f in &all {
                total.merge(&route(f, backends(canary_addr(), 0.0), 100, seed));
            }
            total
        })
        .await;
        let mut r = Replicas {
            etcd,
            files,
            rules,
            replicas: Vec::new(),
            fleets,
            traffic,
        };
        for (i, a) in xds.iter().enumerate() {
            let s = r.spawn(i, a);
            r.replicas.push(Some(s));
        }
        for (i, f) in r.fleets.iter().enumerate() {
            assert!(
                f.wait_all(WAIT, |p| p.view.listeners.contains_key("http"))
                    .await
                    .is_some(),
                "the proxies of replica {i} were configured"
            );
        }
        r
    }

    fn spawn(&self, i: usize, xds: &str) -> Sluice {
        let stats = self.traffic.stats_addr.to_string();
        let token = self.files.token_file.display().to_string();
        let replica = name(i);
        let args = [
            "--state-etcd",
            self.etcd.url.as_str(),
            "--state-lease-ttl",
            TTL,
            "--replica-name",
            replica.as_str(),
            "--admin-grpc",
            "127.0.0.1:0",
            "--admin-token-file",
            token.as_str(),
            "--metrics-envoy-admin",
            stats.as_str(),
        ];
        Sluice::start_with(&self.rules, xds, &args)
    }

    pub fn get(&self, i: usize) -> &Sluice {
        self.replicas[i].as_ref().expect("a running replica")
    }

    /// Indexes of the replicas still running.
    pub fn running(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|i| self.replicas[*i].is_some())
            .collect()
    }

    /// `/status`'s `ha` of replica `i`.
    pub async fn ha(&self, i: usize) -> serde_json::Value {
        self.get(i).status().await["ha"].clone()
    }

    /// Waits until exactly one of `among` leads and all of them agree on
    /// it; its index.
    pub async fn leader_among(&self, among: &[usize]) -> usize {
        let mut found = None;
        let deadline = std::time::Instant::now() + WAIT;
        while found.is_none() {
            let mut leaders = vec![];
            let mut named = vec![];
            for &i in among {
                let ha = self.ha(i).await;
                if ha["is_leader"] == true {
                    leaders.push(i);
                }
                named.push(ha["leader"].as_str().map(str::to_string));
            }
            if let [one] = leaders[..] {
                if named
                    .iter()
                    .all(|n| n.as_deref() == Some(name(one).as_str()))
                {
                    found = Some(one);
                }
            }
            assert!(
                found.is_some() || std::time::Instant::now() < deadline,
                "no single leader among {among:?}: leaders {leaders:?}, named {named:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        found.expect("a leader")
    }

    pub async fn leader(&self) -> usize {
        self.leader_among(&self.running()).await
    }

    /// `sluice rollout ARGS` through replica `i`.
    pub fn cli(&self, i: usize, args: &[&str]) -> Run {
        cli(self.get(i), Some(&self.files.token_file), args)
    }

    /// `sluice rollout status web --output json` through replica `i`.
    pub fn status(&self, i: usize) -> serde_json::Value {
        let run = self.cli(i, &["status", "web", "--output", "json"]);
        assert_eq!(run.code, 0, "{run:?}");
        run.json()
    }

    /// Polls replica `i`'s rollout status until `done` holds.
    pub async fn wait(
        &self,
        i: usize,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        super::rollout::wait_status(self.get(i), &self.files.token_file, "web", what, done).await
    }

    /// The canary weights the history (read through replica `i`) says
    /// were applied, in order.
    pub fn steps_applied(&self, i: usize) -> Vec<String> {
        steps_in(&self.cli(i, &["history", "web", "--output", "json"]).json())
    }

    /// Reads replica `i`'s rollout status until the rollout ends, adding
    /// each read to `seen`; the last.
    pub async fn follow(&self, i: usize, seen: &mut Vec<serde_json::Value>) -> serde_json::Value {
        let deadline = std::time::Instant::now() + WAIT * 4;
        loop {
            let v = self.status(i);
            seen.push(v.clone());
            if super::rollout::done(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the rollout did not end: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Per node group and type, the versions replica `i` serves.
    pub async fn versions(&self, i: usize) -> serde_json::Value {
        let v = get_json(&format!("http://{}/debug/config", self.get(i).admin)).await;
        v["groups"].clone()
    }

    /// Waits until every running replica serves the same versions; them.
    pub async fn same_versions(&self, what: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let mut all = vec![];
            for i in self.running() {
                all.push(self.versions(i).await);
            }
            if all.windows(2).all(|w| w[0] == w[1]) {
                return all.swap_remove(0);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {all:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no goodbye, the lease must expire.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.replicas[i].take() {
            s.kill();
        }
    }

    /// Sends `signal` (STOP, CONT) to replica `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.get(i).child.id().to_string();
        let ok = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -{signal}");
    }
}
