//! One request through a simulated proxy's configuration, recorded as it
//! leaves for the backend: what `sluice sim --json` shows so a transform's
//! header edits can be checked without a real backend.
//!
//! It runs [`chain::serve`] (the listener's filters, the router with the
//! route's request header edits, the response phase) on a fresh
//! [`DataPlane`], so it neither spends nor sees the traffic's rate-limit
//! buckets or load-balancer state; the backend answers 200.

use std::time::Duration;

use serde::Serialize;

use super::chain;
use super::dataplane::{DataPlane, Decision};
use super::http::Request;
use super::http::Response;
use super::state::View;

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub method: String,
    pub path: String,
    /// The status the client got (the backend answering 200).
    pub status: u16,
    /// The cluster the router sent the request to; `None` when the proxy
    /// answered itself (a filter, no route, no host).
    pub cluster: Option<String>,
    /// The request as it went upstream, `[name, value]` in order, the
    /// pseudo-headers `:authority`, `:path`, `:method` first.
    pub upstream_headers: Option<Vec<(String, String)>>,
    /// The body as it went upstream (after JSON edits).
    pub upstream_body: Option<String>,
    /// The body of the proxy's own answer (e.g. a Lua filter's JSON error).
    pub local_body: Option<String>,
}

/// `req` through the first listener of `view` at virtual time zero.
pub fn sample(view: &View, req: &Request, seed: u64) -> Sample {
    let mut dp = DataPlane::new(seed);
    let mut sent: Option<Request> = None;
    let served = chain::serve(&mut dp, view, None, req.clone(), Duration::ZERO, |_, r| {
        sent = Some(r.clone());
        Response::new(200)
    });
    let cluster = match &served.decision {
        Some(Decision::Upstream(u)) => Some(u.cluster.clone()),
        _ => None,
    };
    let local_body =
        (sent.is_none() && !served.response.body.is_empty()).then(|| served.response.body.clone());
    Sample {
        method: req.method().to_string(),
        path: req.path.clone(),
        status: served.response.status,
        cluster,
        upstream_headers: sent.as_ref().map(|r| {
            let mut h = vec![
                (":authority".to_string(), r.authority.clone()),
                (":path".to_string(), r.path.clone()),
                (":method".to_string(), r.method().to_string()),
            ];
            h.extend(r.headers.iter().cloned());
            h
        }),
        upstream_body: sent.and_then(|r| r.body),
        local_body,
    }
}
