//! How `sluice rollout` prints: human text and stable JSON, both pure
//! functions of the API's messages so tests can compare strings.

use crate::canary::pb;

fn strategy(r: &pb::StartRequest) -> &'static str {
    match pb::Strategy::try_from(r.strategy) {
        Ok(pb::Strategy::BlueGreen) => "bluegreen",
        _ => "canary",
    }
}

pub mod json {
    use serde_json::{json, Value};

    use super::{pb, strategy};

    fn spec(s: &pb::StartRequest) -> Value {
        json!({
            "service": s.service,
            "from": s.from,
            "to": s.to,
            "steps": s.steps,
            "interval_ms": s.interval_ms,
            "max_error_rate": s.max_error_rate,
            "max_p99_ms": s.max_p99_ms,
            "failure_threshold": s.failure_threshold,
            "header": (!s.header_name.is_empty()).then(|| json!({"name": s.header_name, "value": s.header_value})),
            "strategy": strategy(s),
            "ack_share": s.ack_share,
            "ack_timeout_ms": s.ack_timeout_ms,
        })
    }

    fn value(r: &pb::Rollout) -> Value {
        let checks: Vec<Value> = r
            .checks
            .iter()
            .map(|c| {
                json!({
                    "at_ms": c.at_ms,
                    "passed": c.passed,
                    "error_rate": c.error_rate,
                    "p99_ms": c.p99_ms,
                    "requests": c.requests,
                    "detail": c.detail,
                })
            })
            .collect();
        json!({
            "service": r.spec.as_ref().map(|s| s.service.clone()).unwrap_or_default(),
            "phase": r.phase,
            "done": r.done,
            "step": r.step,
            "canary_weight": r.canary_weight,
            "stable_weight": 100 - r.canary_weight.min(100),
            "acked": r.acked,
            "targeted": r.targeted,
            "failures": r.failures,
            "reason": (!r.reason.is_empty()).then(|| r.reason.clone()),
            "checks": checks,
            "spec": r.spec.as_ref().map(spec),
        })
    }

    pub fn rollout(r: &pb::Rollout) -> String {
        value(r).to_string()
    }

    /// What `rollout status --json` prints plus the history of steps and
    /// decisions with their reasons: the admin HTTP API's `/rollouts`.
    pub fn document(r: &pb::Rollout) -> Value {
        let mut v = value(r);
        v["summary"] = super::text::summary_line(r).into();
        v["history"] = r
            .history
            .iter()
            .map(|e| json!({"at_ms": e.at_ms, "message": e.message}))
            .collect();
        v
    }

    pub fn list(all: &[pb::Rollout]) -> String {
        Value::Array(all.iter().map(value).collect()).to_string()
    }

    pub fn history(r: &pb::Rollout) -> String {
        let events: Vec<Value> = r
            .history
            .iter()
            .map(|e| json!({"at_ms": e.at_ms, "message": e.message}))
            .collect();
        json!({
            "service": r.spec.as_ref().map(|s| s.service.clone()).unwrap_or_default(),
            "events": events,
        })
        .to_string()
    }
}

pub mod text {
    use std::fmt::Write;

    use super::{pb, strategy};

    const BAR: usize = 20;

    fn names(r: &pb::Rollout) -> (String, String, String) {
        r.spec
            .as_ref()
            .map(|s| (s.service.clone(), s.from.clone(), s.to.clone()))
            .unwrap_or_default()
    }

    fn step_of(r: &pb::Rollout) -> String {
        let n = r.spec.as_ref().map_or(0, |s| s.steps.len());
        match r.phase.as_str() {
            "waiting_for_ack" | "analysing" | "paused" => format!(" step {}/{n}", r.step + 1),
            _ => String::new(),
        }
    }

    /// `web: analysing step 2/5, canary v2 10% / stable v1 90%, 3/3 ACKed`
    pub fn summary_line(r: &pb::Rollout) -> String {
        let (service, from, to) = names(r);
        let mut line = format!(
            "{service}: {}{}, canary {to} {}% / stable {from} {}%",
            r.phase.replace('_', " "),
            step_of(r),
            r.canary_weight,
            100 - r.canary_weight.min(100),
        );
        if !r.done {
            let _ = write!(line, ", {}/{} proxies ACKed", r.acked, r.targeted);
        }
        if !r.reason.is_empty() {
            let _ = write!(line, " ({})", r.reason);
        }
        line
    }

    /// `[#####...............]  25%  web analysing step 3/5`
    pub fn progress_line(r: &pb::Rollout) -> String {
        let filled = (r.canary_weight.min(100) as usize * BAR) / 100;
        let (service, _, _) = names(r);
        format!(
            "[{}{}] {:>3}%  {service} {}{}",
            "#".repeat(filled),
            ".".repeat(BAR - filled),
            r.canary_weight,
            r.phase.replace('_', " "),
            step_of(r)
        )
    }

    fn check_line(c: &pb::Check) -> String {
        let err = c
            .error_rate
            .map_or("n/a".to_string(), |e| format!("{:.2}%", e * 100.0));
        let p99 = c.p99_ms.map_or("n/a".to_string(), |p| format!("{p:.1}ms"));
        format!(
            "{} error rate {err}, p99 {p99}, {} requests: {}",
            if c.passed { "pass" } else { "FAIL" },
            c.requests,
            c.detail
        )
    }

    pub fn rollout(r: &pb::Rollout, _width: Option<usize>) -> String {
        let mut out = summary_line(r);
        out.push('\n');
        if let Some(s) = &r.spec {
            let _ = writeln!(
                out,
                "  strategy {}, steps {:?}, interval {}ms, max error rate {:.2}%, max p99 {}, failures {}/{}",
                strategy(s),
                s.steps,
                s.interval_ms,
                s.max_error_rate * 100.0,
                if s.max_p99_ms == 0 { "off".to_string() } else { format!("{}ms", s.max_p99_ms) },
                r.failures,
                s.failure_threshold,
            );
            if !s.header_name.is_empty() {
                let _ = writeln!(
                    out,
                    "  header {}={} goes to {}",
                    s.header_name, s.header_value, s.to
                );
            }
        }
        if let Some(c) = r.checks.last() {
            let _ = writeln!(out, "  last check: {}", check_line(c));
        }
        out
    }

    pub fn list(all: &[pb::Rollout]) -> String {
        if all.is_empty() {
            return "no rollouts\n".into();
        }
        let mut out = format!(
            "{:<20} {:<16} {:>6} {:>7} {:>7}\n",
            "SERVICE", "PHASE", "STEP", "CANARY", "ACKED"
        );
        for r in all {
            let (service, _, _) = names(r);
            let n = r.spec.as_ref().map_or(0, |s| s.steps.len());
            let step = if r.done {
                "-".to_string()
            } else {
                format!("{}/{n}", r.step + 1)
            };
            let _ = writeln!(
                out,
                "{service:<20} {:<16} {step:>6} {:>6}% {:>7}",
                r.phase,
                r.canary_weight,
                format!("{}/{}", r.acked, r.targeted)
            );
        }
        out
    }

    pub fn history(r: &pb::Rollout) -> String {
        let start = r.history.first().map_or(0, |e| e.at_ms);
        let mut out = String::new();
        for e in &r.history {
            let secs = e.at_ms.saturating_sub(start) as f64 / 1000.0;
            let _ = writeln!(out, "{:>+9.1}s  {}", secs, e.message);
        }
        out
    }
}
