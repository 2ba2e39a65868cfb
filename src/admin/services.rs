//! `GET /services`: each served service's endpoints with their health, as
//! the dashboard lists them. It reads the config being served (static
//! endpoints and discovered ones merged, drains applied), so a drained
//! endpoint shows as `draining` and an endpoint a source lost is gone.
//!
//! A service can have 100,000s of endpoints: every service carries its
//! counts by health, and lists at most [`MAX_LISTED`] endpoints (in the
//! served order), so the answer stays small enough to poll.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::State;
use axum::response::Json;
use serde::Serialize;

use super::AdminState;
use crate::model::{Config, Endpoint, Health};

/// The most endpoints listed per service.
pub const MAX_LISTED: usize = 100;

#[derive(Debug, Serialize, PartialEq)]
pub struct ServiceDoc {
    pub name: String,
    pub endpoints_total: usize,
    pub by_health: BTreeMap<Health, usize>,
    /// The first [`MAX_LISTED`] endpoints.
    pub endpoints: Vec<EndpointDoc>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct EndpointDoc {
    pub address: SocketAddr,
    pub health: Health,
    /// `region/zone/sub_zone`, empty parts left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub weight: u32,
    pub priority: u32,
}

pub(super) async fn list(State(state): State<AdminState>) -> Json<Vec<ServiceDoc>> {
    let config = state.config.lock().clone();
    Json(config.as_deref().map(services).unwrap_or_default())
}

/// The services of `config`, by name.
pub fn services(config: &Config) -> Vec<ServiceDoc> {
    config
        .services
        .values()
        .map(|s| {
            let mut by_health = BTreeMap::new();
            for e in s.endpoints.iter() {
                *by_health.entry(e.health).or_insert(0) += 1;
            }
            ServiceDoc {
                name: s.name.clone(),
                endpoints_total: s.endpoints.len(),
                by_health,
                endpoints: s.endpoints.iter().take(MAX_LISTED).map(endpoint).collect(),
            }
        })
        .collect()
}

fn endpoint(e: &Endpoint) -> EndpointDoc {
    let locality = e.locality.as_ref().map(|l| {
        [&l.region, &l.zone, &l.sub_zone]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("/")
    });
    EndpointDoc {
        address: SocketAddr::new(e.address, e.port),
        health: e.health,
        locality,
        labels: e.labels.clone(),
        weight: e.weight,
        priority: e.priority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::{Drain, Drains, Target};

    fn mk_config(endpoints: usize) -> Config {
        let eps: String = (0..endpoints)
            .map(|i| {
                format!(
                    "      - {{address: 10.0.{}.{}, port: 80, locality: {{region: eu, zone: eu-1a}}}}\n",
                    i / 250,
                    i % 250 + 1
                )
            })
            .collect();
        let rules = format!(
            "services:\n  - name: web\n    endpoints:\n{eps}listeners:\n  - name: http\n    port: 8080\n    virtual_hosts:\n      - {{name: all, domains: [\"*\"], routes: [{{to: {{service: web}}}}]}}\n"
        );
        crate::rules::parse("rules.yaml", &rules).expect("rules parse")
    }

    #[test]
    fn a_drained_endpoint_shows_as_draining_and_is_counted() {
        let mut config = mk_config(2);
        let mut drains = Drains::default();
        drains.add(Drain {
            service: "web".into(),
            target: Target::Endpoint("10.0.0.2:80".parse().expect("addr")),
        });
        drains.apply(&mut config);
        let docs = services(&config);
        assert_eq!(docs.len(), 1);
        let web = &docs[0];
        assert_eq!(web.endpoints_total, 2);
        assert_eq!(
            web.by_health,
            BTreeMap::from([(Health::Healthy, 1), (Health::Draining, 1)])
        );
        let listed: Vec<(String, Health, Option<&str>)> = web
            .endpoints
            .iter()
            .map(|e| (e.address.to_string(), e.health, e.locality.as_deref()))
            .collect();
        assert_eq!(
            listed,
            [
                ("10.0.0.1:80".to_string(), Health::Healthy, Some("eu/eu-1a")),
                (
                    "10.0.0.2:80".to_string(),
                    Health::Draining,
                    Some("eu/eu-1a")
                ),
            ]
        );
        let json = serde_json::to_value(web).expect("json");
        assert_eq!(
            json["by_health"],
            serde_json::json!({"healthy": 1, "draining": 1})
        );
    }

    #[test]
    fn a_large_service_is_counted_whole_and_listed_in_part() {
        let docs = services(&mk_config(MAX_LISTED + 50));
        assert_eq!(docs[0].endpoints_total, MAX_LISTED + 50);
        assert_eq!(docs[0].endpoints.len(), MAX_LISTED);
        assert_eq!(docs[0].by_health[&Health::Healthy], MAX_LISTED + 50);
    }
}
