//! What one request carries through a listener's filters: the
//! [`RequestPhase`] (the request as edited, a filter's own answer, dynamic
//! metadata, script errors, counters, and where the chain stopped) and the
//! virtual [`Clock`] the filters read. The chain drives it; the Lua runner
//! reads and writes it.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::filters::cors;
use crate::http::{Request, Response};

/// Virtual time as the filters see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Virtual time since the simulation started.
    pub now: Duration,
    /// The simulation's start as time since the Unix epoch.
    pub epoch: Duration,
}

/// What the request phase leaves for the router and the response phase.
#[derive(Clone, Debug, Default)]
pub struct RequestPhase {
    /// The request as the router sees it, after the filters' edits.
    pub request: Request,
    /// Set when a filter answered the request itself.
    pub local: Option<Response>,
    /// Which filter answered: `lua`, `cors`, `rbac`, `local_ratelimit`, `fault`.
    pub local_by: Option<&'static str>,
    /// Dynamic metadata set by the filters, by namespace.
    pub metadata: Map<String, Value>,
    /// Script errors (Envoy logs them; the request continues).
    pub errors: Vec<String>,
    /// Envoy counters the filters moved (full stat names).
    pub counters: Vec<String>,
    /// Fault delay injected so far.
    pub delayed: Duration,
    /// The request's start on the virtual clock (Lua's `timestamp()`).
    pub(super) started: Option<Duration>,
    /// The next filter to run.
    pub(super) next: usize,
    /// The fault filter at `next` delayed the request: it only draws its
    /// abort when the request resumes.
    pub(super) fault_resumes: bool,
    /// CORS state for the response phase.
    pub(super) cors: Option<cors::Latch>,
}

impl RequestPhase {
    pub fn new(request: Request) -> RequestPhase {
        RequestPhase {
            request,
            ..RequestPhase::default()
        }
    }
}
