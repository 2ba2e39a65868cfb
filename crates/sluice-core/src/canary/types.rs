//! The rollout record: what was asked for ([`Spec`]), where it stands
//! ([`State`]), and what happened ([`Check`], [`Event`]). It is what the
//! store persists, so every field is plain data (times are milliseconds
//! since the Unix epoch, handed in by the caller).

use serde::{Deserialize, Serialize};

/// How traffic moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Step the canary's weight through `steps`, checking each step.
    #[default]
    Canary,
    /// Check the preview (canary) at 0 %, then switch 0 → 100 at once.
    BlueGreen,
}

/// Requests carrying this header value go to the canary at every step
/// (A/B): testers reach the canary before anyone else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRoute {
    pub name: String,
    pub value: String,
}

/// A validated rollout request. Build with [`Spec::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub service: String,
    /// The stable subset.
    pub from: String,
    /// The canary subset.
    pub to: String,
    /// Canary weight per step, percent; increasing, the last is 100.
    pub steps: Vec<u32>,
    pub interval_ms: u64,
    /// Largest acceptable share of canary 5xx answers, 0..=1.
    pub max_error_rate: f64,
    /// Largest acceptable canary p99; 0 turns the latency check off.
    pub max_p99_ms: u64,
    /// Failed checks (over the whole rollout) that trigger a rollback.
    pub failure_threshold: u32,
    pub header: Option<HeaderRoute>,
    pub strategy: Strategy,
    /// Share of targeted proxies that must ACK a step's weights before its
    /// analysis starts, 0..=1.
    pub ack_share: f64,
    /// How long a step may wait for those ACKs before the rollout pauses.
    pub ack_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("service name is empty")]
    NoService,
    #[error("--from and --to must name two different subsets, got {0:?}")]
    SameSubset(String),
    #[error("steps must be increasing percentages in 1..=100 ending with 100, got {0:?}")]
    BadSteps(Vec<u32>),
    #[error("--interval must be at least 10ms")]
    BadInterval,
    #[error("--max-error-rate must be in 0..=1, got {0}")]
    BadErrorRate(f64),
    #[error("--failure-threshold must be at least 1")]
    BadThreshold,
    #[error("ack share must be in (0, 1], got {0}")]
    BadAckShare(f64),
}

impl Spec {
    /// Checks the request; a blue/green rollout's steps become `[0, 100]`
    /// (a checked preview at 0 %, then the switch).
    pub fn validate(mut self) -> Result<Spec, SpecError> {
        if self.service.is_empty() {
            return Err(SpecError::NoService);
        }
        if self.from == self.to || self.to.is_empty() {
            return Err(SpecError::SameSubset(self.to.clone()));
        }
        if self.strategy == Strategy::BlueGreen {
            self.steps = vec![0, 100];
        } else {
            let increasing = self.steps.windows(2).all(|w| w[0] < w[1]);
            let in_range = self.steps.iter().all(|s| (1..=100).contains(s));
            if !increasing || !in_range || self.steps.last() != Some(&100) {
                return Err(SpecError::BadSteps(self.steps));
            }
        }
        if self.interval_ms < 10 {
            return Err(SpecError::BadInterval);
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err(SpecError::BadErrorRate(self.max_error_rate));
        }
        if self.failure_threshold == 0 {
            return Err(SpecError::BadThreshold);
        }
        if !(self.ack_share > 0.0 && self.ack_share <= 1.0) {
            return Err(SpecError::BadAckShare(self.ack_share));
        }
        Ok(self)
    }
}

/// Where a rollout stands. `step` indexes `Spec::steps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum State {
    /// Accepted; no weights applied yet.
    Pending,
    /// The step's weights are published; analysis waits until enough of
    /// the targeted proxies ACKed them (since `since_ms`).
    WaitingForAck { step: usize, since_ms: u64 },
    /// The fleet runs the step's weights; the current check window began
    /// at `since_ms`.
    Analysing { step: usize, since_ms: u64 },
    /// Holding the step's weights until an operator resumes, promotes or
    /// aborts.
    Paused { step: usize, reason: String },
    /// 100 % on the canary; final.
    Promoted,
    /// 100 % back on the stable subset after failed checks; final.
    RolledBack { reason: String },
    /// 100 % back on the stable subset by an operator; final.
    Aborted { reason: String },
}

impl State {
    pub fn phase(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::WaitingForAck { .. } => "waiting_for_ack",
            State::Analysing { .. } => "analysing",
            State::Paused { .. } => "paused",
            State::Promoted => "promoted",
            State::RolledBack { .. } => "rolled_back",
            State::Aborted { .. } => "aborted",
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(
            self,
            State::Promoted | State::RolledBack { .. } | State::Aborted { .. }
        )
    }

    /// The current step, while one is running or paused.
    pub fn step(&self) -> Option<usize> {
        match self {
            State::WaitingForAck { step, .. }
            | State::Analysing { step, .. }
            | State::Paused { step, .. } => Some(*step),
            _ => None,
        }
    }
}

/// The result of one analysis window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub at_ms: u64,
    pub step: usize,
    pub passed: bool,
    /// `None` when there was no data (which fails the check).
    pub error_rate: Option<f64>,
    pub p99_ms: Option<f64>,
    pub requests: u64,
    /// Why it failed, or "ok".
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub message: String,
}

/// One rollout: the persisted record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub spec: Spec,
    pub state: State,
    /// Failed checks so far. Kept beside the state, not in it, because it
    /// carries across steps, pauses and restarts.
    pub failures: u32,
    /// The latest checks, newest last (at most [`Rollout::KEEP_CHECKS`]).
    pub checks: Vec<Check>,
    /// What happened, oldest first (at most [`Rollout::KEEP_EVENTS`]).
    pub history: Vec<Event>,
}

impl Rollout {
    pub const KEEP_CHECKS: usize = 20;
    pub const KEEP_EVENTS: usize = 200;

    /// The Envoy cluster of the version being rolled out.
    pub fn canary_cluster(&self) -> String {
        crate::model::cluster_name(&self.spec.service, Some(&self.spec.to))
    }

    pub fn new(spec: Spec, now_ms: u64) -> Rollout {
        let mut r = Rollout {
            spec,
            state: State::Pending,
            failures: 0,
            checks: Vec::new(),
            history: Vec::new(),
        };
        let msg = format!(
            "started: {} → {} over steps {:?}",
            r.spec.from, r.spec.to, r.spec.steps
        );
        r.log(now_ms, msg);
        r
    }

    /// The canary weight (percent) this rollout asks for; `None` before
    /// any is applied (the rules' own split holds).
    pub fn canary_weight(&self) -> Option<u32> {
        match &self.state {
            State::Pending => None,
            State::Promoted => Some(100),
            State::RolledBack { .. } | State::Aborted { .. } => Some(0),
            s => s
                .step()
                .map(|i| self.spec.steps.get(i).copied().unwrap_or(0)),
        }
    }

    pub fn log(&mut self, at_ms: u64, message: String) {
        self.history.push(Event { at_ms, message });
        if self.history.len() > Self::KEEP_EVENTS {
            self.history.remove(0);
        }
    }
}
