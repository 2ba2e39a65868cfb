//! Virtual backends: what answers a simulated request. Each has a latency
//! distribution, an error rate and a capacity (concurrent requests served;
//! more wait in a FIFO queue), so a slow host or a bad canary can be
//! staged. All randomness comes from the caller's seeded generator.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::RngExt;

/// A service-time distribution.
#[derive(Clone, Debug, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// Pareto with scale `min` and shape `alpha`, cut at `max` (heavy tail).
    Pareto {
        min: Duration,
        max: Duration,
        alpha: f64,
    },
    /// Log-normal with the given median and sigma (of the log).
    LogNormal {
        median: Duration,
        sigma: f64,
    },
}

impl Latency {
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        match self {
            Latency::Fixed(d) => *d,
            Latency::Uniform { min, max } => {
                let (a, b) = (min.as_secs_f64(), max.as_secs_f64().max(min.as_secs_f64()));
                Duration::from_secs_f64(a + (b - a) * rng.random::<f64>())
            }
            Latency::Pareto { min, max, alpha } => {
                // Inverse CDF: x = min / U^(1/alpha), U in (0, 1].
                let u = 1.0 - rng.random::<f64>();
                let x = min.as_secs_f64() / u.powf(1.0 / alpha.max(1e-9));
                Duration::from_secs_f64(x.min(max.as_secs_f64()))
            }
            Latency::LogNormal { median, sigma } => {
                // Box–Muller for a standard normal.
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                Duration::from_secs_f64(median.as_secs_f64() * (sigma * z).exp())
            }
        }
    }

    /// Parse `fixed:10ms`, `uniform:5ms:20ms`, `pareto:10ms:5s:1.1`,
    /// `lognormal:20ms:0.5`.
    pub fn parse(s: &str) -> Result<Latency, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let d = |i: usize| -> Result<Duration, String> {
            let v = parts
                .get(i)
                .ok_or_else(|| format!("{s}: missing field {i}"))?;
            sluice_core::rules::parse_duration(v).map_err(|e| format!("{s}: {e}"))
        };
        let f = |i: usize| -> Result<f64, String> {
            parts
                .get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{s}: field {i} must be a number"))
        };
        match parts.first().copied() {
            Some("fixed") => Ok(Latency::Fixed(d(1)?)),
            Some("uniform") => Ok(Latency::Uniform {
                min: d(1)?,
                max: d(2)?,
            }),
            Some("pareto") => Ok(Latency::Pareto {
                min: d(1)?,
                max: d(2)?,
                alpha: f(3)?,
            }),
            Some("lognormal") => Ok(Latency::LogNormal {
                median: d(1)?,
                sigma: f(2)?,
            }),
            _ => Err(format!("{s}: expected fixed, uniform, pareto or lognormal")),
        }
    }
}

/// How one backend behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendSpec {
    pub latency: Latency,
    /// Share of requests answered 503, in [0, 1].
    pub error_rate: f64,
    /// Requests served at once; `None`: unlimited.
    pub capacity: Option<usize>,
}

impl Default for BackendSpec {
    fn default() -> Self {
        BackendSpec {
            latency: Latency::Fixed(Duration::from_millis(1)),
            error_rate: 0.0,
            capacity: None,
        }
    }
}

/// Every backend, by address; unknown addresses behave as `default`.
#[derive(Clone, Debug, Default)]
pub struct Backends {
    pub default: BackendSpec,
    pub by_addr: HashMap<SocketAddr, BackendSpec>,
    busy: HashMap<SocketAddr, usize>,
    queued: HashMap<SocketAddr, VecDeque<u64>>,
}

/// What a backend does with a request that arrives.
#[derive(Clone, Debug, PartialEq)]
pub enum Admit {
    /// Served now; answers `status` after `after`.
    Serve { status: u16, after: Duration },
    /// Waits for a free slot.
    Queued,
}

impl Backends {
    pub fn new(default: BackendSpec) -> Backends {
        Backends {
            default,
            ..Default::default()
        }
    }

    pub fn set(&mut self, addr: SocketAddr, spec: BackendSpec) {
        self.by_addr.insert(addr, spec);
    }

    fn spec(&self, addr: &SocketAddr) -> &BackendSpec {
        self.by_addr.get(addr).unwrap_or(&self.default)
    }

    /// Request `id` arrives at `addr`.
    pub fn arrive(&mut self, addr: SocketAddr, id: u64, rng: &mut impl rand::Rng) -> Admit {
        let cap = self.spec(&addr).capacity;
        let busy = self.busy.entry(addr).or_default();
        if cap.is_some_and(|c| *busy >= c) {
            self.queued.entry(addr).or_default().push_back(id);
            return Admit::Queued;
        }
        *busy += 1;
        self.serve(addr, rng)
    }

    /// A request at `addr` finished; returns the next queued request to
    /// start, with its outcome.
    pub fn depart(&mut self, addr: SocketAddr, rng: &mut impl rand::Rng) -> Option<(u64, Admit)> {
        if let Some(next) = self.queued.get_mut(&addr).and_then(VecDeque::pop_front) {
            return Some((next, self.serve(addr, rng)));
        }
        if let Some(b) = self.busy.get_mut(&addr) {
            *b = b.saturating_sub(1);
        }
        None
    }

    fn serve(&self, addr: SocketAddr, rng: &mut impl rand::Rng) -> Admit {
        let spec = self.spec(&addr);
        let after = spec.latency.sample(rng);
        let status = if rng.random::<f64>() < spec.error_rate {
            503
        } else {
            200
        };
        Admit::Serve { status, after }
    }
}
