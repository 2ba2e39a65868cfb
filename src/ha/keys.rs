//! Where sluice's replicated state lives in etcd, under `--state-prefix`
//! (default `/sluice/`):
//!
//! | key | value | written by |
//! |---|---|---|
//! | `PREFIX rollouts/SERVICE` | one rollout record (JSON, as `rollouts.json` holds it per service) | operators' commands on any replica (conditioned on the record's revision); the leader (also conditioned on its election key) |
//! | `PREFIX drains` | the drain set (JSON, as `sluice-drains.json`) | operators' commands on any replica (conditioned on the document's revision) |
//! | `PREFIX leader/LEASE` | a replica's name | etcd's election API: one key per candidate, under its lease; the oldest leads |
//! | `PREFIX acks/REPLICA` | the summary of the proxies connected to the replica and what they ACKed (JSON, `canary::ack_summary`) | each replica, under a lease of its own, so it vanishes when the replica dies |
//!
//! One key per rollout: the leader writes a rollout at every step, and a
//! write conditioned on that record alone never conflicts with a command
//! for another service. The drains are one document: a set whose members
//! have no natural key, changed rarely and only by operators, so one
//! conditioned read-modify-write keeps adds and removes atomic.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

/// How long one etcd request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn rollouts(prefix: &str) -> String {
    format!("{prefix}rollouts/")
}

pub fn rollout(prefix: &str, service: &str) -> String {
    format!("{prefix}rollouts/{service}")
}

pub fn drains(prefix: &str) -> String {
    format!("{prefix}drains")
}

pub fn acks(prefix: &str, replica: &str) -> String {
    format!("{prefix}acks/{replica}")
}

/// The election's name: candidates' keys are `NAME/LEASE`.
pub fn election(prefix: &str) -> String {
    format!("{prefix}leader")
}

/// What a key under `prefix` is.
#[derive(Debug, PartialEq, Eq)]
pub enum Key<'a> {
    Rollout(&'a str),
    Drains,
    Candidate,
    /// A replica's summary of its proxies, by replica name.
    Acks(&'a str),
    Other,
}

pub fn classify<'a>(prefix: &str, key: &'a str) -> Key<'a> {
    let Some(rest) = key.strip_prefix(prefix) else {
        return Key::Other;
    };
    if let Some(service) = rest.strip_prefix("rollouts/") {
        return Key::Rollout(service);
    }
    if rest == "drains" {
        return Key::Drains;
    }
    if rest.starts_with("leader/") {
        return Key::Candidate;
    }
    if let Some(replica) = rest.strip_prefix("acks/") {
        return Key::Acks(replica);
    }
    Key::Other
}

/// A client of `endpoints`. Connecting does no I/O; no request timeout is
/// set on the client, because a campaign waits as long as another replica
/// leads: callers bound their own requests ([`REQUEST_TIMEOUT`]).
pub async fn connect(endpoints: &[String]) -> Result<Client, etcd_client::Error> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), REQUEST_TIMEOUT)
        .with_keep_alive_while_idle(true);
    Client::connect(endpoints, Some(opts)).await
}

/// `fut` within [`REQUEST_TIMEOUT`], its error as text.
pub async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer from etcd within {}s",
            REQUEST_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_classify() {
        let p = "/sluice/";
        assert_eq!(classify(p, &rollout(p, "web")), Key::Rollout("web"));
        assert_eq!(classify(p, &drains(p)), Key::Drains);
        assert_eq!(
            classify(p, &format!("{}/694d8a", election(p))),
            Key::Candidate
        );
        assert_eq!(classify(p, &acks(p, "host:42")), Key::Acks("host:42"));
        assert_eq!(classify(p, "/other/rollouts/web"), Key::Other);
        assert_eq!(classify(p, "/sluice/drainsx"), Key::Other);
    }
}
