//! One endpoint as a registry stores it (an etcd value, an endpoints-file
//! entry) → a checked [`crate::model::Endpoint`].
//!
//! The format is documented in `docs/discovery.md`. Unknown fields are
//! allowed here, unlike in rules files: registry data is written by other
//! tools, which may add their own fields. Everything sluice reads is
//! checked; an entry that fails is skipped by the source (and counted),
//! never guessed at.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::model::{Endpoint, Health, Locality};

#[derive(Debug, Deserialize)]
pub struct Record {
    pub address: String,
    pub port: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub locality: Option<RecordLocality>,
    #[serde(default)]
    pub priority: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RecordLocality {
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub sub_zone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a valid endpoint record: {0}")]
    Malformed(String),
    #[error("invalid address {0:?}: expected an IPv4 or IPv6 literal")]
    Address(String),
    #[error("port {0} out of range 1..=65535")]
    Port(u32),
    #[error("weight {0} out of range 1..=128")]
    Weight(u32),
    #[error("priority {0} out of range 0..=10")]
    Priority(u32),
    #[error("unknown health {0:?}; valid: unknown, healthy, degraded, unhealthy, draining")]
    Health(String),
}

impl Record {
    /// A JSON value (etcd).
    pub fn from_json(bytes: &[u8]) -> Result<Endpoint, RecordError> {
        let record: Record =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        record.check()
    }

    pub fn check(self) -> Result<Endpoint, RecordError> {
        let address: IpAddr = self
            .address
            .parse()
            .map_err(|_| RecordError::Address(self.address.clone()))?;
        let port = u16::try_from(self.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(RecordError::Port(self.port))?;
        let weight = match self.weight {
            None => 1,
            Some(w) if (1..=128).contains(&w) => w,
            Some(w) => return Err(RecordError::Weight(w)),
        };
        let priority = match self.priority {
            None => 0,
            Some(p) if p <= 10 => p,
            Some(p) => return Err(RecordError::Priority(p)),
        };
        let health = match self.health {
            None => Health::Healthy,
            Some(h) => Health::from_name(&h).ok_or(RecordError::Health(h))?,
        };
        let locality = self.locality.map(|l| Locality {
            region: l.region,
            zone: l.zone,
            sub_zone: l.sub_zone,
        });
        Ok(Endpoint {
            address,
            port,
            labels: self.labels,
            weight,
            health,
            locality: locality.map(Box::new),
            priority,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_record() {
        let ep = Record::from_json(
            br#"{"address":"10.0.0.7","port":8080,"labels":{"version":"v2"},"weight":5,
                "health":"draining","locality":{"region":"eu","zone":"eu-1a"},"priority":1,
                "written_by":"deployer"}"#,
        )
        .expect("valid");
        assert_eq!(ep.address.to_string(), "10.0.0.7");
        assert_eq!(ep.port, 8080);
        assert_eq!(ep.labels.get("version").map(String::as_str), Some("v2"));
        assert_eq!(
            (ep.weight, ep.health, ep.priority),
            (5, Health::Draining, 1)
        );
        assert_eq!(ep.locality.expect("locality").zone, "eu-1a");
    }

    #[test]
    fn defaults() {
        let ep = Record::from_json(br#"{"address":"::1","port":80}"#).expect("valid");
        assert_eq!((ep.weight, ep.health, ep.priority), (1, Health::Healthy, 0));
        assert!(ep.labels.is_empty() && ep.locality.is_none());
    }

    #[test]
    fn bad_records_say_why() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "not a valid endpoint record"),
            (br#"{"address":"10.0.0.1"}"#, "missing field `port`"),
            (br#"{"address":"web.local","port":80}"#, "invalid address"),
            (br#"{"address":"10.0.0.1","port":0}"#, "port 0"),
            (br#"{"address":"10.0.0.1","port":70000}"#, "port 70000"),
            (
                br#"{"address":"10.0.0.1","port":80,"weight":0}"#,
                "weight 0",
            ),
            (
                br#"{"address":"10.0.0.1","port":80,"health":"ok"}"#,
                "unknown health",
            ),
        ];
        for (input, want) in cases {
            let err = Record::from_json(input).expect_err("must fail").to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
