//! Every transition of the pure plan, including restarts (a record read
//! back from JSON decides exactly as the live one).

use std::time::Duration;

use crate::canary::overlay::Overlays;
use crate::canary::plan::{
    self, command, observe, Action, Command, CommandError, Measured, Observation,
};
use crate::canary::*;

fn mk_spec() -> Spec {
    Spec {
        service: "web".into(),
        from: "stable".into(),
        to: "canary".into(),
        steps: vec![10, 50, 100],
        interval_ms: 1000,
        max_error_rate: 0.01,
        max_p99_ms: 500,
        failure_threshold: 2,
        header: None,
        strategy: Strategy::Canary,
        ack_share: 1.0,
        ack_timeout_ms: 5000,
    }
    .validate()
    .expect("valid spec")
}

fn good() -> Result<Measured, String> {
    Ok(Measured {
        requests: 1000,
        error_rate: 0.001,
        p99_ms: Some(20.0),
    })
}

fn bad() -> Result<Measured, String> {
    Ok(Measured {
        requests: 1000,
        error_rate: 0.05,
        p99_ms: Some(20.0),
    })
}

fn tick(now_ms: u64) -> Observation {
    Observation::Tick { now_ms }
}

fn acks(now_ms: u64, acked: u32, targeted: u32) -> Observation {
    Observation::Acks {
        now_ms,
        acked,
        targeted,
        nack: None,
        unreachable: None,
    }
}

fn metrics(now_ms: u64, result: Result<Measured, String>) -> Observation {
    Observation::Metrics { now_ms, result }
}

/// A rollout of `mk_spec` that is analysing its first step since t=100.
fn analysing() -> Rollout {
    let r = Rollout::new(mk_spec(), 0);
    let (r, _) = observe(&r, &tick(0));
    let (r, a) = observe(&r, &acks(100, 3, 3));
    assert_eq!(
        r.state,
        State::Analysing {
            step: 0,
            since_ms: 100
        }
    );
    assert_eq!(
        a,
        Action::Requeue {
            after: Duration::from_millis(1000)
        }
    );
    r
}

#[test]
fn pending_applies_the_first_step() {
    let r = Rollout::new(mk_spec(), 0);
    assert_eq!(
        r.canary_weight(),
        None,
        "nothing applied before the first step"
    );
    let (r, a) = observe(&r, &tick(5));
    assert_eq!(a, Action::SetWeights { canary: 10 });
    assert_eq!(
        r.state,
        State::WaitingForAck {
            step: 0,
            since_ms: 5
        }
    );
    assert_eq!(r.canary_weight(), Some(10));
}

#[test]
fn analysis_waits_for_the_ack_share() {
    let r = Rollout::new(mk_spec(), 0);
    let (r, _) = observe(&r, &tick(0));
    let (r2, a) = observe(&r, &acks(50, 2, 3));
    assert_eq!(
        a,
        Action::WaitAck {
            after: plan::ACK_POLL
        }
    );
    assert_eq!(r2.state, r.state);
    // No proxies at all never counts as ACKed.
    let (_, a) = observe(&r, &acks(50, 0, 0));
    assert_eq!(
        a,
        Action::WaitAck {
            after: plan::ACK_POLL
        }
    );
    // A lower share is enough when asked for.
    let mut spec = mk_spec();
    spec.ack_share = 0.5;
    let r = Rollout::new(spec, 0);
    let (r, _) = observe(&r, &tick(0));
    let (r, _) = observe(&r, &acks(50, 2, 3));
    assert_eq!(
        r.state,
        State::Analysing {
            step: 0,
            since_ms: 50
        }
    );
}

#[test]
fn nack_pauses_with_the_reason() {
    let r = Rollout::new(mk_spec(), 0);
    let (r, _) = observe(&r, &tick(0));
    let obs = Observation::Acks {
        now_ms: 10,
        acked: 1,
        targeted: 3,
        nack: Some("envoy-2: bad route".into()),
        unreachable: None,
    };
    let (r, a) = observe(&r, &obs);
    assert_eq!(a, Action::AwaitCommand);
    let State::Paused { step: 0, reason } = &r.state else {
        panic!("not paused: {:?}", r.state);
    };
    assert!(
        reason.contains("NACK") && reason.contains("bad route"),
        "{reason}"
    );
    assert_eq!(r.canary_weight(), Some(10), "a pause holds the weights");
    // Paused ignores everything but commands.
    assert_eq!(observe(&r, &tick(99_999)).1, Action::AwaitCommand);
}

#[test]
fn ack_timeout_pauses() {
    let r = Rollout::new(mk_spec(), 0);
    let (r, _) = observe(&r, &tick(0));
    let (r, a) = observe(&r, &acks(4999, 2, 3));
    assert!(matches!(a, Action::WaitAck { .. }));
    let (r, a) = observe(&r, &acks(5000, 2, 3));
    assert_eq!(a, Action::AwaitCommand);
    let State::Paused { reason, .. } = &r.state else {
        panic!("not paused");
    };
    assert!(
        reason.contains("ACK timeout") && reason.contains("2/3"),
        "{reason}"
    );
}

#[test]
fn an_ack_timeout_names_a_proxy_the_weights_cannot_reach() {
    let r = Rollout::new(mk_spec(), 0);
    let (r, _) = observe(&r, &tick(0));
    let mut obs = acks(5000, 2, 3);
    if let Observation::Acks { unreachable, .. } = &mut obs {
        *unreachable = Some("envoy-3 has not asked for sluice's RTDS layer".into());
    }
    let (r, _) = observe(&r, &obs);
    let State::Paused { reason, .. } = &r.state else {
        panic!("not paused");
    };
    assert!(
        reason.starts_with("ACK timeout: 2/3")
            && reason.ends_with("; envoy-3 has not asked for sluice's RTDS layer"),
        "{reason}"
    );
}

#[test]
fn window_is_queried_when_due() {
    let r = analysing();
    assert_eq!(
        observe(&r, &tick(600)).1,
        Action::Requeue {
            after: Duration::from_millis(500)
        }
    );
    assert_eq!(
        observe(&r, &tick(1100)).1,
        Action::QueryMetrics { since_ms: 100 }
    );
}

#[test]
fn healthy_canary_walks_every_step_and_promotes() {
    let mut r = analysing();
    let mut weights = vec![r.canary_weight()];
    let mut now = 1100;
    for _ in 0..2 {
        let (n, a) = observe(&r, &metrics(now, good()));
        assert!(matches!(a, Action::SetWeights { .. }), "{a:?}");
        let (n, _) = observe(&n, &acks(now + 10, 3, 3));
        weights.push(n.canary_weight());
        r = n;
        now += 1100;
    }
    assert_eq!(weights, vec![Some(10), Some(50), Some(100)]);
    let (r, a) = observe(&r, &metrics(now, good()));
    assert_eq!(a, Action::SetWeights { canary: 100 });
    assert_eq!(r.state, State::Promoted);
    assert_eq!(observe(&r, &tick(now + 1)).1, Action::Done);
    assert_eq!(r.checks.len(), 3);
    assert!(r.checks.iter().all(|c| c.passed));
}

#[test]
fn failed_checks_roll_back_at_the_threshold() {
    let r = analysing();
    let (r, a) = observe(&r, &metrics(1100, bad()));
    assert_eq!(r.failures, 1);
    assert_eq!(
        r.state,
        State::Analysing {
            step: 0,
            since_ms: 1100
        }
    );
    assert_eq!(
        a,
        Action::Requeue {
            after: Duration::from_millis(1000)
        }
    );
    let (r, a) = observe(&r, &metrics(2100, bad()));
    assert_eq!(a, Action::SetWeights { canary: 0 });
    assert!(
        matches!(&r.state, State::RolledBack { reason } if reason.contains("error rate 5.00%"))
    );
    assert_eq!(r.canary_weight(), Some(0));
}

#[test]
fn failures_count_across_steps() {
    let r = analysing();
    let (r, _) = observe(&r, &metrics(1100, bad()));
    let (r, _) = observe(&r, &metrics(2100, good()));
    let (r, _) = observe(&r, &acks(2200, 3, 3));
    assert_eq!(r.state.step(), Some(1));
    let (r, _) = observe(&r, &metrics(3200, bad()));
    assert!(matches!(r.state, State::RolledBack { .. }));
}

#[test]
fn missing_or_nan_metrics_never_promote() {
    let missing: Vec<Result<Measured, String>> = vec![
        Err("connection refused".into()),
        Ok(Measured {
            requests: 0,
            error_rate: f64::NAN,
            p99_ms: None,
        }),
        Ok(Measured {
            requests: 10,
            error_rate: f64::NAN,
            p99_ms: Some(1.0),
        }),
        Ok(Measured {
            requests: 10,
            error_rate: 0.0,
            p99_ms: None,
        }),
        Ok(Measured {
            requests: 10,
            error_rate: 0.0,
            p99_ms: Some(f64::NAN),
        }),
        Ok(Measured {
            requests: 10,
            error_rate: f64::INFINITY,
            p99_ms: Some(1.0),
        }),
    ];
    for m in missing {
        let check = plan::evaluate(&mk_spec(), 0, 0, &m);
        assert!(!check.passed, "{m:?} passed");
        // Fed forever, such windows only ever roll back.
        let mut r = analysing();
        let mut now = 1100;
        while !r.state.is_final() {
            r = observe(&r, &metrics(now, m.clone())).0;
            now += 1000;
        }
        assert!(
            matches!(r.state, State::RolledBack { .. }),
            "{m:?}: {:?}",
            r.state
        );
    }
}

#[test]
fn latency_check_can_be_off() {
    let mut spec = mk_spec();
    spec.max_p99_ms = 0;
    let m = Ok(Measured {
        requests: 10,
        error_rate: 0.0,
        p99_ms: None,
    });
    assert!(plan::evaluate(&spec, 0, 0, &m).passed);
    let slow = Ok(Measured {
        requests: 10,
        error_rate: 0.0,
        p99_ms: Some(900.0),
    });
    assert!(!plan::evaluate(&mk_spec(), 0, 0, &slow).passed);
}

#[test]
fn commands() {
    let r = analysing();
    let (p, a) = command(&r, &Command::Pause, 200).expect("pause");
    assert_eq!(a, Action::AwaitCommand);
    assert!(matches!(p.state, State::Paused { step: 0, .. }));
    assert_eq!(
        command(&p, &Command::Pause, 201).err(),
        Some(CommandError::AlreadyPaused)
    );
    assert!(matches!(
        command(&r, &Command::Resume, 201),
        Err(CommandError::NotPaused(_))
    ));
    let (res, a) = command(&p, &Command::Resume, 300).expect("resume");
    assert_eq!(
        res.state,
        State::WaitingForAck {
            step: 0,
            since_ms: 300
        }
    );
    assert_eq!(
        res.canary_weight(),
        Some(10),
        "resume re-checks, never re-steps"
    );
    assert!(matches!(a, Action::WaitAck { .. }));

    let (s, a) = command(&r, &Command::Promote { full: false }, 300).expect("promote");
    assert_eq!(a, Action::SetWeights { canary: 50 });
    assert_eq!(
        s.state,
        State::WaitingForAck {
            step: 1,
            since_ms: 300
        }
    );
    let (f, a) = command(&r, &Command::Promote { full: true }, 300).expect("promote full");
    assert_eq!(
        (f.state.clone(), a),
        (State::Promoted, Action::SetWeights { canary: 100 })
    );
    assert!(matches!(
        command(&f, &Command::Abort, 400),
        Err(CommandError::Ended("promoted"))
    ));
}

#[test]
fn abort_during_a_pause_is_final_and_survives_a_restart() {
    let (p, _) = command(&analysing(), &Command::Pause, 200).expect("pause");
    let (a, act) = command(&p, &Command::Abort, 300).expect("abort");
    assert_eq!(act, Action::SetWeights { canary: 0 });
    assert!(matches!(a.state, State::Aborted { .. }));
    let text = serde_json::to_string(&a).expect("serialize");
    let back: Rollout = serde_json::from_str(&text).expect("deserialize");
    let (after, act) = observe(&back, &Observation::Restarted { now_ms: 9999 });
    assert_eq!((after, act), (a.clone(), Action::Done));
    assert!(command(&back, &Command::Resume, 10_000).is_err());
    assert_eq!(Overlays::of([&back]).0["web"].canary_weight, 0);
}

/// Every observation a rollout may see, in a plausible order.
fn script() -> Vec<Observation> {
    vec![
        tick(0),
        acks(10, 1, 3),
        acks(20, 3, 3),
        tick(500),
        metrics(1020, bad()),
        metrics(2020, good()),
        acks(2030, 3, 3),
        tick(2500),
        metrics(3030, good()),
        acks(3040, 3, 3),
        metrics(4040, good()),
    ]
}

#[test]
fn a_record_read_back_makes_the_same_decisions() {
    let mut live = Rollout::new(mk_spec(), 0);
    for obs in script() {
        let text = serde_json::to_string(&live).expect("serialize");
        let restored: Rollout = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(restored, live);
        let (a, act_a) = observe(&live, &obs);
        let (b, act_b) = observe(&restored, &obs);
        assert_eq!((a.clone(), act_a), (b, act_b), "after {obs:?}");
        live = a;
    }
    assert_eq!(live.state, State::Promoted);
    assert_eq!(live.failures, 1);
}

#[test]
fn a_restart_keeps_step_weights_and_failures() {
    let r = analysing();
    let (r, _) = observe(&r, &metrics(1100, bad()));
    let (r, _) = observe(&r, &metrics(2100, good()));
    assert_eq!(r.state.step(), Some(1));
    let back: Rollout = serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
    let (after, act) = observe(&back, &Observation::Restarted { now_ms: 50_000 });
    assert_eq!(
        after.state,
        State::WaitingForAck {
            step: 1,
            since_ms: 50_000
        }
    );
    assert_eq!(after.canary_weight(), Some(50));
    assert_eq!(after.failures, 1);
    assert!(
        matches!(act, Action::WaitAck { .. }),
        "no weights re-applied: {act:?}"
    );
    // Analysing restarts its window (the baseline was in memory) only.
    let (a, _) = observe(&after, &acks(50_010, 3, 3));
    let (a2, act) = observe(&a, &Observation::Restarted { now_ms: 60_000 });
    assert_eq!(
        a2.state,
        State::Analysing {
            step: 1,
            since_ms: 60_000
        }
    );
    assert_eq!(
        act,
        Action::Requeue {
            after: Duration::from_millis(1000)
        }
    );
}

#[test]
fn bluegreen_checks_the_preview_then_switches() {
    let mut spec = mk_spec();
    spec.strategy = Strategy::BlueGreen;
    spec.steps = vec![1, 2, 3];
    let spec = spec.validate().expect("valid");
    assert_eq!(spec.steps, vec![0, 100]);
    let r = Rollout::new(spec, 0);
    let (r, a) = observe(&r, &tick(0));
    assert_eq!(a, Action::SetWeights { canary: 0 });
    let (r, _) = observe(&r, &acks(1, 1, 1));
    let (r, a) = observe(&r, &metrics(1001, good()));
    assert_eq!(a, Action::SetWeights { canary: 100 });
    assert_eq!(r.canary_weight(), Some(100));
}

#[test]
fn specs_are_validated() {
    let bad_steps = [
        vec![],
        vec![10, 5, 100],
        vec![10, 50],
        vec![0, 100],
        vec![50, 150],
    ];
    for steps in bad_steps {
        let mut s = mk_spec();
        s.steps = steps.clone();
        assert_eq!(s.validate(), Err(SpecError::BadSteps(steps)));
    }
    let mut s = mk_spec();
    s.to = "stable".into();
    assert!(matches!(s.validate(), Err(SpecError::SameSubset(_))));
}
