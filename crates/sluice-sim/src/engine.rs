//! The request engine: a discrete-event simulation on virtual time. Requests
//! arrive at proxies, are routed by each proxy's [`DataPlane`], wait for and
//! occupy virtual backends, and end in a status and a latency. Route
//! timeouts (504), per-try timeouts, retries with Envoy's jittered backoff
//! and circuit breakers apply. Requests first pass the listener's HTTP
//! filters ([`chain::decode`]: Lua, CORS, RBAC, local rate limit on virtual
//! time, fault delays as events), and every answer — upstream or local —
//! passes their response phase ([`chain::on_response`]) before it is
//! counted, so a Lua filter's status or header edits show in the stats and
//! in the recorded [`Answer`]s. Lua's `timestamp()` is virtual time too
//! (since [`Engine::epoch`]), so a run is fast and, for a given seed and
//! epoch, always the same.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::backend::{Admit, Backends};
use super::chain::{self, Clock, RequestPhase, Step};
use super::dataplane::{DataPlane, Decision, Upstream};
use super::http::Request;
use super::http::Response;
use super::state::View;
use super::stats::Stats;

/// Envoy's retry back-off base interval.
const RETRY_BASE: Duration = Duration::from_millis(25);

/// One simulated proxy as the engine drives it.
pub struct SimProxy {
    pub view: View,
    pub dataplane: DataPlane,
}

impl SimProxy {
    pub fn new(view: View, seed: u64) -> SimProxy {
        SimProxy {
            view,
            dataplane: DataPlane::new(seed),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive {
        req: u64,
    },
    /// The backend answers attempt `attempt` of `req`.
    Answer {
        req: u64,
        attempt: u32,
        status: u16,
        host: SocketAddr,
    },
    PerTryTimeout {
        req: u64,
        attempt: u32,
    },
    RouteTimeout {
        req: u64,
    },
    Retry {
        req: u64,
    },
    /// A fault delay is over: the request phase goes on.
    Resume {
        req: u64,
    },
}

/// One answered request, as the client got it (recorded when
/// [`Engine::keep_answers`] is set).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// What [`Engine::submit`] returned.
    pub id: u64,
    pub proxy: usize,
    pub response: Response,
    pub latency: Duration,
}

struct Flight {
    proxy: usize,
    request: Request,
    /// The request through the listener's filters (none without a listener).
    phase: Option<Box<RequestPhase>>,
    arrived: Duration,
    up: Option<Upstream>,
    /// Identifies the current attempt; events of older ones are stale.
    attempt: u32,
    /// Attempts sent so far.
    tries: u32,
    attempt_started: Duration,
    /// The attempt currently counted at the backend, if any.
    host: Option<SocketAddr>,
    done: bool,
}

pub struct Engine {
    pub now: Duration,
    pub proxies: Vec<SimProxy>,
    pub backends: Backends,
    pub stats: Stats,
    events: BinaryHeap<Reverse<(Duration, u64, Ev)>>,
    seq: u64,
    flights: HashMap<u64, Flight>,
    /// Backend request id → (request, attempt).
    waiting: HashMap<u64, (u64, u32)>,
    rng: Xoshiro256PlusPlus,
    next_id: u64,
    last_event: Duration,
    /// The virtual clock's zero as time since the Unix epoch (what Lua's
    /// `timestamp()` adds virtual time to). Starts at the wall clock, so
    /// tokens minted now are valid; set it for runs that must repeat exactly.
    pub epoch: Duration,
    /// Record every answer in [`Engine::answers`] (off: long runs keep
    /// only stats).
    pub keep_answers: bool,
    pub answers: Vec<Answer>,
}

impl Engine {
    pub fn new(proxies: Vec<SimProxy>, backends: Backends, seed: u64) -> Engine {
        Engine {
            now: Duration::ZERO,
            proxies,
            backends,
            stats: Stats::default(),
            events: BinaryHeap::new(),
            seq: 0,
            flights: HashMap::new(),
            waiting: HashMap::new(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            next_id: 0,
            last_event: Duration::ZERO,
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
            keep_answers: false,
            answers: Vec::new(),
        }
    }

    fn clock(&self) -> Clock {
        Clock {
            now: self.now,
            epoch: self.epoch,
        }
    }

    fn at(&mut self, t: Duration, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((t, self.seq, ev)));
    }

    /// `req` arrives at `proxy` at time `t` (not before now). Returns the
    /// request's id (see [`Answer::id`]).
    pub fn submit(&mut self, proxy: usize, req: Request, t: Duration) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.flights.insert(
            id,
            Flight {
                proxy,
                request: req,
                phase: None,
                arrived: t.max(self.now),
                up: None,
                attempt: 0,
                tries: 0,
                attempt_started: t,
                host: None,
                done: false,
            },
        );
        self.at(t.max(self.now), Ev::Arrive { req: id });
        id
    }

    /// Requests not yet answered.
    pub fn in_flight(&self) -> usize {
        self.flights.values().filter(|f| !f.done).count()
    }

    /// Process events up to and including time `t`.
    pub fn run_until(&mut self, t: Duration) {
        while let Some(Reverse((when, _, ev))) = self.events.peek().copied() {
            if when > t {
                break;
            }
            self.events.pop();
            self.now = when;
            self.last_event = when;
            self.handle(ev);
        }
        self.now = self.now.max(t);
    }

    /// Process every event.
    pub fn run(&mut self) {
        let now = self.now;
        self.run_until(Duration::MAX);
        // Leave the clock at the last event, not at the end of time.
        self.now = self.last_event.max(now);
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive { req } => self.arrive(req),
            Ev::Answer {
                req,
                attempt,
                status,
                host,
            } => self.answer(req, attempt, status, host),
            Ev::PerTryTimeout { req, attempt } => self.attempt_failed(req, attempt, 504),
            Ev::RouteTimeout { req } => {
                if let Some(f) = self.flights.get_mut(&req) {
                    // Envoy answers 504 and resets the upstream attempt.
                    f.attempt += 1;
                    if let Some(up) = f.up.clone() {
                        let took = self.now.saturating_sub(f.attempt_started);
                        self.stats.upstream(&up.cluster, 504, took);
                        self.stats.inc(&up.cluster, "upstream_rq_timeout");
                    }
                    self.release(req, 504);
                    self.respond(req, 504);
                }
            }
            Ev::Retry { req } => self.send_attempt(req, true),
            Ev::Resume { req } => self.filters(req),
        }
    }

    fn arrive(&mut self, req: u64) {
        let Some(f) = self.flights.get_mut(&req) else {
            return;
        };
        let p = &self.proxies[f.proxy];
        if p.view
            .listeners
            .values()
            .next()
            .is_some_and(|l| l.has_filters())
        {
            f.phase = Some(Box::new(RequestPhase::new(f.request.clone())));
            self.filters(req);
        } else {
            self.route(req);
        }
    }

    /// The request phase of the listener's filters, from where it stopped.
    fn filters(&mut self, req: u64) {
        let clock = self.clock();
        let Some(f) = self.flights.get_mut(&req) else {
            return;
        };
        let p = &mut self.proxies[f.proxy];
        let (Some(l), Some(phase)) = (p.view.listeners.values().next(), f.phase.as_mut()) else {
            // The listener went away during a fault delay: the router
            // answers (404), so the request still ends.
            self.route(req);
            return;
        };
        let step = chain::decode(&p.view, l, phase, &mut p.dataplane.filters, clock);
        for c in phase.counters.drain(..) {
            self.stats.count(c);
        }
        match step {
            Step::Router => self.route(req),
            Step::Delay(d) => self.at(self.now + d, Ev::Resume { req }),
            Step::Local => {
                let local = phase.local.take().unwrap_or_else(|| Response::new(500));
                self.respond_with(req, local);
            }
        }
    }

    /// The router's decision on the request (as the filters left it).
    fn route(&mut self, req: u64) {
        let Some(f) = self.flights.get(&req) else {
            return;
        };
        let p = &mut self.proxies[f.proxy];
        let request = f.phase.as_ref().map_or(&f.request, |ph| &ph.request);
        match p.dataplane.decide(&p.view, None, request, self.now) {
            Decision::Local { status, .. } => self.respond(req, status),
            Decision::Overflow { cluster } => {
                self.stats.inc(&cluster, "upstream_rq_pending_overflow");
                self.respond(req, 503);
            }
            Decision::Upstream(up) => {
                let timeout = up.timeout;
                let host = up.host;
                if let Some(f) = self.flights.get_mut(&req) {
                    f.up = Some(up);
                    f.host = Some(host);
                }
                if !timeout.is_zero() {
                    self.at(self.now + timeout, Ev::RouteTimeout { req });
                }
                self.send_attempt(req, false);
            }
        }
    }

    /// Start an attempt at the flight's current host (retries pick anew).
    fn send_attempt(&mut self, req: u64, pick_again: bool) {
        let now = self.now;
        let Some(f) = self.flights.get_mut(&req) else {
            return;
        };
        if f.done {
            return;
        }
        let Some(up) = f.up.clone() else { return };
        if pick_again {
            let p = &mut self.proxies[f.proxy];
            match p.dataplane.retry(&p.view, &up.cluster, now) {
                Some(h) => f.host = Some(h),
                None => {
                    self.respond(req, 503);
                    return;
                }
            }
        }
        let Some(host) = f.host else { return };
        f.attempt += 1;
        f.tries += 1;
        f.attempt_started = now;
        let attempt = f.attempt;
        if let Some(t) = up.retry.as_ref().and_then(|r| r.per_try_timeout) {
            self.at(now + t, Ev::PerTryTimeout { req, attempt });
        }
        self.next_id += 1;
        let bid = self.next_id;
        self.waiting.insert(bid, (req, attempt));
        if let Admit::Serve { status, after } = self.backends.arrive(host, bid, &mut self.rng) {
            self.waiting.remove(&bid);
            self.at(
                now + after,
                Ev::Answer {
                    req,
                    attempt,
                    status,
                    host,
                },
            );
        }
    }

    fn answer(&mut self, req: u64, attempt: u32, status: u16, host: SocketAddr) {
        // The backend slot frees whatever became of the attempt.
        if let Some((bid, Admit::Serve { status, after })) =
            self.backends.depart(host, &mut self.rng)
        {
            if let Some((r, a)) = self.waiting.remove(&bid) {
                let ev = Ev::Answer {
                    req: r,
                    attempt: a,
                    status,
                    host,
                };
                self.at(self.now + after, ev);
            }
        }
        self.attempt_failed(req, attempt, status);
    }

    /// Attempt `attempt` ended with `status` (also 2xx): record, then retry
    /// or answer.
    fn attempt_failed(&mut self, req: u64, attempt: u32, status: u16) {
        let Some(f) = self.flights.get(&req) else {
            return;
        };
        if f.done || f.attempt != attempt {
            return; // a stale event for an attempt already given up
        }
        let Some(up) = f.up.clone() else { return };
        let tries = f.tries;
        let took = self.now.saturating_sub(f.attempt_started);
        self.stats.upstream(&up.cluster, status, took);
        if status == 504 {
            self.stats.inc(&up.cluster, "upstream_rq_timeout");
        }
        self.release(req, status);
        // `max_retries` (a limit on concurrent retries per cluster) is not
        // modelled; `num_retries` bounds each request.
        let retriable = up.retry.as_ref().is_some_and(|r| {
            tries <= r.num_retries
                && ((status >= 500 && r.on_5xx)
                    || (matches!(status, 502..=504) && r.on_gateway_error))
        });
        if retriable {
            self.stats.inc(&up.cluster, "upstream_rq_retry");
            let cap = RETRY_BASE * 2u32.saturating_pow(tries.saturating_sub(1)).min(10);
            let wait = cap.mul_f64(self.rng.random::<f64>());
            if let Some(f) = self.flights.get_mut(&req) {
                f.attempt += 1; // stale events of this attempt are ignored
            }
            self.at(self.now + wait, Ev::Retry { req });
        } else {
            self.respond(req, status);
        }
    }

    /// Tell the proxy the attempt at the flight's host is over (once).
    fn release(&mut self, req: u64, status: u16) {
        let Some(f) = self.flights.get_mut(&req) else {
            return;
        };
        let (Some(up), Some(host)) = (f.up.as_ref(), f.host.take()) else {
            return;
        };
        let p = &mut self.proxies[f.proxy];
        if let Some(c) = p.view.clusters.get(&up.cluster).cloned() {
            p.dataplane.finish(&c, host, status, self.now);
        }
    }

    fn respond(&mut self, req: u64, status: u16) {
        self.respond_with(req, Response::new(status));
    }

    /// The final answer: through the filters' response phase, then counted
    /// with the status the client gets.
    fn respond_with(&mut self, req: u64, resp: Response) {
        let clock = self.clock();
        let Some(mut f) = self.flights.remove(&req) else {
            return;
        };
        if f.done {
            return;
        }
        f.done = true;
        let p = &self.proxies[f.proxy];
        let listener = p.view.listeners.values().next();
        let resp = match (listener, f.phase.as_mut()) {
            (Some(l), Some(phase)) => chain::on_response(&p.view, l, phase, resp, clock),
            _ => resp,
        };
        let took = self.now.saturating_sub(f.arrived);
        let cluster = f.up.as_ref().map(|u| u.cluster.clone());
        self.stats.downstream(cluster.as_deref(), resp.status, took);
        if let Some(l) = listener {
            self.stats.http_downstream(&l.stat_prefix, resp.status);
        }
        if self.keep_answers {
            self.answers.push(Answer {
                id: req,
                proxy: f.proxy,
                response: resp,
                latency: took,
            });
        }
    }
}
