//! The rollout state machine, pure: `(Rollout, Observation) → (Rollout,
//! Action)`. No I/O, no clock — the time comes in each observation — so
//! every transition is a unit test, and a record read back from disk makes
//! the very decisions the one written would have made.
//!
//! The driver reacts to the returned [`Action`] (publish weights, read
//! ACKs, query metrics, sleep) and comes back with the next observation.
//! Commands from operators go through [`command`], which may refuse.

use std::time::Duration;

use super::{Check, Rollout, State};

/// How often the driver should look at the registry while waiting for ACKs.
pub const ACK_POLL: Duration = Duration::from_millis(100);

/// What the analysis of a window measured on the canary subset.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub requests: u64,
    /// Share of 5xx answers; NaN when there were no requests.
    pub error_rate: f64,
    /// `None` when there was no latency data.
    pub p99_ms: Option<f64>,
}

/// Something the driver saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// Time passed; nothing else is known.
    Tick { now_ms: u64 },
    /// The controller (re)started with this record: in-memory metric
    /// baselines and ACK deadlines are gone, so windows restart now.
    Restarted { now_ms: u64 },
    /// Of the proxies the step's weights target, `acked` hold them; `nack`
    /// is the first rejection seen, with Envoy's error; `unreachable`
    /// names a proxy the weights cannot reach at all, and why.
    Acks {
        now_ms: u64,
        acked: u32,
        targeted: u32,
        nack: Option<String>,
        unreachable: Option<String>,
    },
    /// The window ending now, or why it could not be measured.
    Metrics {
        now_ms: u64,
        result: Result<Measured, String>,
    },
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Persist, publish these weights (one push), then observe ACKs.
    SetWeights { canary: u32 },
    /// Observe ACKs after this delay.
    WaitAck { after: Duration },
    /// Measure the window that began at `since_ms`, then observe metrics.
    QueryMetrics { since_ms: u64 },
    /// Observe a tick after this delay.
    Requeue { after: Duration },
    /// Nothing happens until an operator's command (paused).
    AwaitCommand,
    /// The rollout has ended.
    Done,
}

/// An operator's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    /// Skip the rest of this step's analysis; `full`: go to 100 % now.
    Promote {
        full: bool,
    },
    Abort,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the rollout has already ended ({0})")]
    Ended(&'static str),
    #[error("the rollout is not paused ({0})")]
    NotPaused(&'static str),
    #[error("the rollout is already paused")]
    AlreadyPaused,
}

/// The next state and action after `obs`.
pub fn observe(r: &Rollout, obs: &Observation) -> (Rollout, Action) {
    let mut next = r.clone();
    let action = match (&r.state, obs) {
        (State::Promoted | State::RolledBack { .. } | State::Aborted { .. }, _) => Action::Done,
        (State::Paused { .. }, _) => Action::AwaitCommand,
        (State::Pending, o) => next.enter_step(0, now_of(o)),
        (State::WaitingForAck { step, .. }, Observation::Restarted { now_ms })
        | (State::Analysing { step, .. }, Observation::Restarted { now_ms }) => {
            let step = *step;
            next.log(
                *now_ms,
                format!("controller restarted at step {}", step + 1),
            );
            next.state = match r.state {
                State::Analysing { .. } => State::Analysing {
                    step,
                    since_ms: *now_ms,
                },
                _ => State::WaitingForAck {
                    step,
                    since_ms: *now_ms,
                },
            };
            next.resume_action()
        }
        (
            State::WaitingForAck { step, since_ms },
            Observation::Acks {
                now_ms,
                acked,
                targeted,
                nack,
                unreachable,
            },
        ) => next.on_acks(
            (*step, *since_ms, *now_ms),
            (*acked, *targeted),
            nack.as_deref(),
            unreachable.as_deref(),
        ),
        (State::WaitingForAck { .. }, _) => Action::WaitAck {
            after: Duration::ZERO,
        },
        (State::Analysing { step, since_ms }, Observation::Metrics { now_ms, result }) => {
            next.on_metrics(*step, *since_ms, *now_ms, result)
        }
        (State::Analysing { since_ms, .. }, o) => {
            let due = since_ms.saturating_add(r.spec.interval_ms);
            match due.checked_sub(now_of(o)) {
                Some(left) if left > 0 => Action::Requeue {
                    after: Duration::from_millis(left),
                },
                _ => Action::QueryMetrics {
                    since_ms: *since_ms,
                },
            }
        }
    };
    (next, action)
}

/// The next state and action after an operator's command.
pub fn command(r: &Rollout, cmd: &Command, now_ms: u64) -> Result<(Rollout, Action), CommandError> {
    if r.state.is_final() {
        return Err(CommandError::Ended(r.state.phase()));
    }
    let mut next = r.clone();
    let step = r.state.step().unwrap_or(0);
    let action = match cmd {
        Command::Pause => {
            if matches!(r.state, State::Paused { .. }) {
                return Err(CommandError::AlreadyPaused);
            }
            next.pause(step, now_ms, "paused by operator".into())
        }
        Command::Resume => {
            if !matches!(r.state, State::Paused { .. }) {
                return Err(CommandError::NotPaused(r.state.phase()));
            }
            next.log(now_ms, format!("resumed at step {}", step + 1));
            // The same weights again: a resumed step is re-checked, never
            // re-applied with different weights.
            next.state = State::WaitingForAck {
                step,
                since_ms: now_ms,
            };
            Action::WaitAck {
                after: Duration::ZERO,
            }
        }
        Command::Promote { full: true } => next.promote(now_ms, "promoted by operator (full)"),
        Command::Promote { full: false } => {
            if step + 1 >= r.spec.steps.len() {
                next.promote(now_ms, "promoted by operator")
            } else {
                next.log(now_ms, format!("operator skipped step {}", step + 1));
                next.enter_step(step + 1, now_ms)
            }
        }
        Command::Abort => {
            let reason = "aborted by operator".to_string();
            next.log(now_ms, format!("{reason}: 100% back to {}", r.spec.from));
            next.state = State::Aborted { reason };
            Action::SetWeights { canary: 0 }
        }
    };
    Ok((next, action))
}

fn now_of(o: &Observation) -> u64 {
    match o {
        Observation::Tick { now_ms }
        | Observation::Restarted { now_ms }
        | Observation::Acks { now_ms, .. }
        | Observation::Metrics { now_ms, .. } => *now_ms,
    }
}

impl Rollout {
    fn enter_step(&mut self, step: usize, now_ms: u64) -> Action {
        let canary = self.spec.steps.get(step).copied().unwrap_or(100);
        let (n, of) = (step + 1, self.spec.steps.len());
        self.log(now_ms, format!("step {n}/{of}: canary {canary}%"));
        self.state = State::WaitingForAck {
            step,
            since_ms: now_ms,
        };
        Action::SetWeights { canary }
    }

    fn pause(&mut self, step: usize, now_ms: u64, reason: String) -> Action {
        self.log(now_ms, format!("paused at step {}: {reason}", step + 1));
        self.state = State::Paused { step, reason };
        Action::AwaitCommand
    }

    fn promote(&mut self, now_ms: u64, why: &str) -> Action {
        self.log(now_ms, format!("{why}: 100% on {}", self.spec.to));
        self.state = State::Promoted;
        Action::SetWeights { canary: 100 }
    }

    /// What to do in the current state, having just entered it.
    fn resume_action(&self) -> Action {
        match self.state {
            State::Analysing { .. } => Action::Requeue {
                after: Duration::from_millis(self.spec.interval_ms),
            },
            _ => Action::WaitAck {
                after: Duration::ZERO,
            },
        }
    }

    fn on_acks(
        &mut self,
        (step, since_ms, now_ms): (usize, u64, u64),
        (acked, targeted): (u32, u32),
        nack: Option<&str>,
        unreachable: Option<&str>,
    ) -> Action {
        let canary = self.spec.steps.get(step).copied().unwrap_or(0);
        if let Some(error) = nack {
            return self.pause(
                step,
                now_ms,
                format!("a proxy rejected (NACK) canary {canary}%: {error}"),
            );
        }
        // A fleet of zero proxies never reaches the share: nothing would
        // carry traffic to analyse.
        let share = if targeted == 0 {
            0.0
        } else {
            f64::from(acked) / f64::from(targeted)
        };
        if targeted > 0 && share + 1e-9 >= self.spec.ack_share {
            self.log(
                now_ms,
                format!("{acked}/{targeted} proxies ACKed canary {canary}%; analysing"),
            );
            self.state = State::Analysing {
                step,
                since_ms: now_ms,
            };
            return self.resume_action();
        }
        if now_ms.saturating_sub(since_ms) >= self.spec.ack_timeout_ms {
            let mut reason = format!(
                "ACK timeout: {acked}/{targeted} proxies ACKed canary {canary}% within {}ms",
                self.spec.ack_timeout_ms
            );
            if let Some(why) = unreachable {
                reason.push_str("; ");
                reason.push_str(why);
            }
            return self.pause(step, now_ms, reason);
        }
        Action::WaitAck { after: ACK_POLL }
    }

    fn on_metrics(
        &mut self,
        step: usize,
        since_ms: u64,
        now_ms: u64,
        result: &Result<Measured, String>,
    ) -> Action {
        let check = evaluate(&self.spec, step, now_ms, result);
        let passed = check.passed;
        let detail = check.detail.clone();
        self.checks.push(check);
        if self.checks.len() > Self::KEEP_CHECKS {
            self.checks.remove(0);
        }
        if passed {
            if step + 1 >= self.spec.steps.len() {
                return self.promote(now_ms, "all steps passed");
            }
            return self.enter_step(step + 1, now_ms);
        }
        self.failures += 1;
        let (f, t) = (self.failures, self.spec.failure_threshold);
        if f >= t {
            let reason = format!("{f}/{t} checks failed, last: {detail}");
            self.log(
                now_ms,
                format!("rolled back: {reason}: 100% back to {}", self.spec.from),
            );
            self.state = State::RolledBack { reason };
            return Action::SetWeights { canary: 0 };
        }
        self.log(
            now_ms,
            format!("check failed ({f}/{t}) at step {}: {detail}", step + 1),
        );
        let _ = since_ms;
        self.state = State::Analysing {
            step,
            since_ms: now_ms,
        };
        self.resume_action()
    }
}

/// Judges one window. No data, NaN, or a failed query fails the check: a
/// check can pass only on numbers that were really measured.
pub fn evaluate(
    spec: &super::Spec,
    step: usize,
    now_ms: u64,
    result: &Result<Measured, String>,
) -> Check {
    let mut check = Check {
        at_ms: now_ms,
        step,
        passed: false,
        error_rate: None,
        p99_ms: None,
        requests: 0,
        detail: String::new(),
    };
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            check.detail = format!("metrics unavailable: {e}");
            return check;
        }
    };
    check.requests = m.requests;
    check.error_rate = m.error_rate.is_finite().then_some(m.error_rate);
    check.p99_ms = m.p99_ms.filter(|p| p.is_finite());
    let mut problems = Vec::new();
    match check.error_rate {
        None => problems.push(format!("no error rate ({} requests)", m.requests)),
        Some(e) if e > spec.max_error_rate => problems.push(format!(
            "error rate {:.2}% > {:.2}%",
            e * 100.0,
            spec.max_error_rate * 100.0
        )),
        Some(_) => {}
    }
    if spec.max_p99_ms > 0 {
        match check.p99_ms {
            None => problems.push("no p99 latency".into()),
            Some(p) if p > spec.max_p99_ms as f64 => {
                problems.push(format!("p99 {p:.1}ms > {}ms", spec.max_p99_ms))
            }
            Some(_) => {}
        }
    }
    check.passed = problems.is_empty();
    check.detail = if check.passed {
        "ok".into()
    } else {
        problems.join("; ")
    };
    check
}
