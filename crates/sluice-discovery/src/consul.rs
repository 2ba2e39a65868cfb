//! The Consul source: `/v1/health/service/<name>` blocking queries.
//!
//! Each answer is the service's complete instance list, so every answer
//! `reset`s the feed (the index publishes only what changed) and
//! `entries` maps it to endpoints. The loop follows Consul's documented
//! blocking-query rules, kept sans-io in [`Cursor`] and [`TokenBucket`]:
//!
//! - the next query blocks at the answer's `X-Consul-Index`;
//! - an index that went backwards (snapshot restore, a lagging server
//!   after a leader change) resets to 0, i.e. a fresh listing; an index of
//!   0 is a Consul bug and becomes 1; after either, or an index that did
//!   not move, the next query is spaced [`MIN_INTERVAL`] from the previous
//!   one, so a server that stops blocking never causes a busy loop;
//! - every query takes a token from a bucket (a burst of
//!   [`BUCKET_BURST`], refilled at [`BUCKET_PER_SEC`] a second), bounding
//!   the rate when the service flaps;
//! - errors, non-200 answers (5xx, ACL denied), timeouts and garbage fail
//!   the feed (endpoints kept) and back off, doubling from `retry_min` to
//!   `retry_max`. The request timeout is `wait + wait/16` (Consul adds up
//!   to wait/16 of jitter) plus the source's request timeout as margin.

mod entries;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_core::model::{ConsulSource, Endpoint};

pub use entries::{parse, EntriesError, Parsed};

use super::{Feeder, SourceOptions};

/// Spacing between two queries when the last one did not advance the index.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Queries allowed back to back before the bucket's rate applies.
pub const BUCKET_BURST: f64 = 5.0;
pub const BUCKET_PER_SEC: f64 = 5.0;

/// What one feed asks Consul for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub service: String,
    pub tag: Option<String>,
}

/// Where a feed's blocking-query loop stands.
#[derive(Debug)]
enum State {
    /// Ask Consul, blocking at `index` (0: answer at once — a listing), not
    /// before `not_before` (the spacing after an answer that did not move
    /// the index).
    Querying {
        index: u64,
        not_before: Option<Instant>,
    },
    /// After an error: wait `delay`, then query at `index` again (the last
    /// good one, so nothing in between is missed).
    Backoff { delay: Duration, index: u64 },
}

/// Consul's blocking-query index rules, with no I/O.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The index the next query blocks at.
    pub index: u64,
}

/// What an answer's `X-Consul-Index` means for the next query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// A higher index: query again right away.
    Moved,
    /// The same index (the wait expired): space the next query.
    Unchanged,
    /// Lower than before: reset to 0 and space the next query.
    WentBack,
    /// Index 0, which Consul must never return: use 1 and space.
    Zero,
}

impl Cursor {
    pub fn advance(&mut self, got: u64) -> Advance {
        let (index, how) = match got {
            0 => (1, Advance::Zero),
            g if g < self.index => (0, Advance::WentBack),
            g if g == self.index => (g, Advance::Unchanged),
            g => (g, Advance::Moved),
        };
        self.index = index;
        how
    }
}

impl Advance {
    pub fn needs_spacing(self) -> bool {
        self != Advance::Moved
    }
}

/// A token bucket; [`TokenBucket::take`] reserves a token and says how
/// long to wait for it.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(burst: f64, per_sec: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            burst,
            per_sec,
            last: now,
        }
    }

    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst) - 1.0;
        self.last = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

/// Why a Consul feed failed; reqwest's (or the body parser's) error, when
/// there is one, is its source.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    #[error("consul client")]
    Client(#[source] reqwest::Error),
    /// The source's `address` is not a URL (the URL parser's error, which
    /// reqwest does not name, is the source).
    #[error("consul health of {service}")]
    Address {
        service: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("consul health of {service}: {address} cannot be a base URL")]
    NotBase { service: String, address: String },
    #[error("consul health of {service}: environment variable {var} (token_env) is not set")]
    Token { service: String, var: String },
    #[error("consul health of {service}: timed out")]
    TimedOut { service: String },
    #[error("consul health of {service}")]
    Request {
        service: String,
        #[source]
        source: reqwest::Error,
    },
    /// A non-200 answer (5xx, ACL denied), with the start of its body.
    #[error("consul health of {service}: HTTP {status}: {body}")]
    Status {
        service: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("consul health of {service}: answer without a valid X-Consul-Index")]
    NoIndex { service: String },
    #[error("consul health of {service}")]
    Body {
        service: String,
        #[source]
        source: EntriesError,
    },
}

impl ConsulError {
    /// A failed request: its timeout says so alone; otherwise reqwest's
    /// error and its causes ("error sending request" alone hides why).
    fn request(service: &str, source: reqwest::Error) -> ConsulError {
        let service = service.to_string();
        if source.is_timeout() {
            ConsulError::TimedOut { service }
        } else {
            ConsulError::Request { service, source }
        }
    }
}

/// One good answer: the index header and the parsed body.
struct Answer {
    index: u64,
    parsed: Parsed,
}

/// Runs one feed until the feeder is stopped.
pub async fn run(feeder: Feeder, src: ConsulSource, query: Query, opts: SourceOptions) {
    let stop = feeder.stop.clone();
    let client = match reqwest::Client::builder().no_proxy().build() {
        Ok(c) => c,
        Err(e) => return feeder.fail(&ConsulError::Client(e)),
    };
    let mut bucket = TokenBucket::new(BUCKET_BURST, BUCKET_PER_SEC, Instant::now());
    let mut cursor = Cursor::default();
    let mut backoff = opts.backoff();
    let mut last_rejected: Vec<String> = Vec::new();
    let mut state = State::Querying {
        index: 0,
        not_before: None,
    };
    loop {
        state = match state {
            State::Backoff { delay: d, index } => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(d) => State::Querying { index, not_before: None },
                }
            }
            State::Querying { index, not_before } => {
                let now = Instant::now();
                let at = (now + bucket.take(now)).max(not_before.unwrap_or(now));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
                let started = Instant::now();
                let answer = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = ask(&client, &src, &query, index, &opts) => a,
                };
                match answer {
                    Ok(answer) => {
                        backoff.reset();
                        cursor.index = index;
                        let how = cursor.advance(answer.index);
                        if how == Advance::WentBack {
                            tracing::info!(service = %query.service, from = index, to = answer.index,
                                "consul index went backwards; listing again");
                        }
                        apply(&feeder, answer.parsed, &mut last_rejected);
                        State::Querying {
                            index: cursor.index,
                            not_before: how.needs_spacing().then(|| started + MIN_INTERVAL),
                        }
                    }
                    Err(e) => State::Backoff {
                        delay: feeder.retry_after(&e, &mut backoff),
                        index,
                    },
                }
            }
        };
    }
}

/// Resets the feed to a complete answer. Rejected elements keep the
/// endpoint their id had; a rejection is reported once, not on every
/// answer that repeats it.
fn apply(feeder: &Feeder, parsed: Parsed, last_rejected: &mut Vec<String>) {
    if parsed.rejected != *last_rejected {
        for msg in parsed
            .rejected
            .iter()
            .filter(|m| !last_rejected.contains(m))
        {
            feeder.reject(msg.clone());
        }
        *last_rejected = parsed.rejected;
    }
    let current = feeder
        .with(|index, key| index.endpoints(key))
        .unwrap_or_default();
    let mut endpoints: BTreeMap<String, Endpoint> = parsed.endpoints;
    for id in parsed.keep {
        if let Some(old) = current.get(&id) {
            endpoints.insert(id, old.clone());
        }
    }
    feeder.with(|index, key| index.reset(key, endpoints, Instant::now()));
}

/// One blocking query.
async fn ask(
    client: &reqwest::Client,
    src: &ConsulSource,
    query: &Query,
    index: u64,
    opts: &SourceOptions,
) -> Result<Answer, ConsulError> {
    let service = || query.service.clone();
    let mut url = reqwest::Url::parse(&src.address).map_err(|e| ConsulError::Address {
        service: service(),
        source: Box::new(e),
    })?;
    url.path_segments_mut()
        .map_err(|_| ConsulError::NotBase {
            service: service(),
            address: src.address.clone(),
        })?
        .pop_if_empty()
        .extend(["v1", "health", "service", &query.service]);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("index", &index.to_string());
        q.append_pair("wait", &format!("{}ms", src.wait.as_millis()));
        if let Some(dc) = &src.datacenter {
            q.append_pair("dc", dc);
        }
        if let Some(tag) = &query.tag {
            q.append_pair("tag", tag);
        }
    }
    let mut req = client
        .get(url)
        .timeout(src.wait + src.wait / 16 + opts.request_timeout);
    if let Some(var) = &src.token_env {
        let token = std::env::var(var).map_err(|_| ConsulError::Token {
            service: service(),
            var: var.clone(),
        })?;
        req = req.header("X-Consul-Token", token);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ConsulError::request(&query.service, e))?;
    let status = resp.status();
    let header = resp
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp
        .bytes()
        .await
        .map_err(|e| ConsulError::request(&query.service, e))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        return Err(ConsulError::Status {
            service: service(),
            status,
            body: text.trim().to_string(),
        });
    }
    let index = header
        .and_then(|h| h.parse::<u64>().ok())
        .ok_or_else(|| ConsulError::NoIndex { service: service() })?;
    let parsed = parse(&body).map_err(|source| ConsulError::Body {
        service: service(),
        source,
    })?;
    Ok(Answer { index, parsed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_follows_consul_index_rules() {
        let mut c = Cursor::default();
        assert_eq!(c.advance(10), Advance::Moved);
        assert_eq!(c.index, 10);
        assert_eq!(c.advance(10), Advance::Unchanged);
        assert_eq!(c.advance(12), Advance::Moved);
        assert_eq!(c.advance(3), Advance::WentBack);
        assert_eq!(c.index, 0, "reset: the next query is a fresh listing");
        assert_eq!(c.advance(3), Advance::Moved);
        assert_eq!(c.advance(0), Advance::Zero);
        assert_eq!(c.index, 1, "never block at 0: that answers at once");
        for how in [Advance::Unchanged, Advance::WentBack, Advance::Zero] {
            assert!(how.needs_spacing());
        }
        assert!(!Advance::Moved.needs_spacing());
    }

    #[test]
    fn token_bucket_allows_a_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 4.0, t0);
        assert_eq!(b.take(t0), Duration::ZERO);
        assert_eq!(b.take(t0), Duration::ZERO);
        assert_eq!(b.take(t0), Duration::from_millis(250));
        // That token was reserved: the next one waits a further 250 ms.
        assert_eq!(b.take(t0), Duration::from_millis(500));
        // A long quiet period refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.take(later), Duration::ZERO);
        assert_eq!(b.take(later), Duration::ZERO);
        assert!(b.take(later) > Duration::ZERO);
    }
}
