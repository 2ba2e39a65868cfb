//! The ACK count over the whole fleet: this replica's registry and the
//! other replicas' summaries, compared with the snapshots compiled here.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::parts::config;
use crate::canary::ack_summary::{AckSummary, Fleet, Nack, Standing, TypeAck};
use crate::canary::acks::{AckReader, Acks, Applied};
use crate::canary::overlay::{Overlays, WeightsVia};
use crate::canary::plan::{observe, Observation};
use crate::canary::{Rollout, Spec, Strategy};
use crate::xds::registry::Registry;
use crate::xds::{DataPlane, TypeUrl};

/// A rollout of `web` waiting for the ACKs of its first step (10 %).
fn waiting() -> Rollout {
    let spec = Spec {
        service: "web".into(),
        from: "stable".into(),
        to: "canary".into(),
        steps: vec![10, 100],
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
    .expect("valid spec");
    let (r, _) = observe(&Rollout::new(spec, 0), &Observation::Tick { now_ms: 0 });
    r
}

/// What the publisher applied for `r`, and the route version it serves.
fn applied(r: &Rollout) -> (Arc<Applied>, String) {
    let overlays = Overlays::of([r]);
    let mut c = config();
    overlays.apply(&mut c, WeightsVia::Routes);
    let snapshots = crate::compile::compile(&c).expect("compiles");
    let rds = snapshots
        .select(DataPlane::Envoy, "default")
        .1
        .version(TypeUrl::Route)
        .to_string();
    let applied = Applied {
        overlays,
        snapshots: Arc::new(snapshots),
    };
    (Arc::new(applied), rds)
}

fn mk_line(first: &str, count: u32, acked: &str, nack: Option<(&str, &str)>) -> Standing {
    Standing {
        group: "default".into(),
        grpc: false,
        rds: Some(TypeAck {
            acked: Some(acked.into()),
            nack: nack.map(|(version, error)| Nack {
                version: version.into(),
                error: error.into(),
            }),
        }),
        rtds: None,
        count,
        first: first.into(),
    }
}

fn mk_summary(lines: Vec<Standing>) -> AckSummary {
    AckSummary {
        proxies: lines.iter().map(|l| l.count).sum(),
        standing: lines,
    }
}

#[test]
fn other_replicas_proxies_count_and_the_first_nack_is_named_fleet_wide() {
    let r = waiting();
    let (applied, rds) = applied(&r);
    let summaries = BTreeMap::from([
        // This replica's own key: its live registry counts instead.
        (
            "r0".to_string(),
            mk_summary(vec![mk_line("z-0", 5, &rds, None)]),
        ),
        (
            "r1".to_string(),
            mk_summary(vec![
                mk_line("b-0", 3, &rds, None),
                mk_line("b-3", 2, "older", None),
            ]),
        ),
        (
            "r2".to_string(),
            mk_summary(vec![
                mk_line("c-0", 1, "older", Some((&rds, "late"))),
                mk_line("a-9", 1, "older", Some((&rds, "early"))),
                // A NACK of another version is not this step's.
                mk_line("a-0", 1, "older", Some(("gone", "stale"))),
            ]),
        ),
    ]);
    let (_tx, rx) = watch::channel(Arc::new(summaries));
    let registry = Arc::new(Registry::default());
    let (_applied_tx, applied_rx) = watch::channel(Some(applied));
    let alone = AckReader::new(registry, applied_rx, WeightsVia::Routes);
    let fleet = Fleet {
        own: "r0".into(),
        summaries: rx,
    };
    let reader = alone.clone().with_fleet(fleet);
    assert_eq!(
        reader.read(&r),
        Acks {
            acked: 3,
            targeted: 8,
            nack: Some("a-9: early".into()),
            unreachable: None,
        }
    );
    // Without the other replicas (a single sluice): no proxy at all.
    assert_eq!(alone.read(&r), Acks::default());
}
