//! Invariant 8 as a property: whatever a client presents (client
//! certificate, bearer token, both, neither), whatever node id and group
//! it claims (by `node.cluster` or the `sluice_group` metadata), whatever
//! type and names it asks for, over SotW or delta: no resource crosses an
//! authorization boundary.
//!
//! The real `AdsService` runs in-process over mTLS (lenient: a token or
//! nothing may stand in for the certificate) with certificates made at test
//! time, in four configurations: `xds_access` in force or not, and
//! `--xds-insecure` or not. Each case opens one stream and compares what it
//! gets with a model written here, independent of `xds::access`: which
//! groups and node ids each credential may claim, as a table of plain
//! predicates.

mod client;
#[path = "../common/mod.rs"]
mod common;
mod model;
mod server;

use std::collections::BTreeSet;

use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sluice::xds::TypeUrl;
use tonic::Code;

use client::run;
use model::{cases, expect, group_spec, Case, Cert, Expect, TOKEN_BATCH};
use server::Env;

const CASES: u32 = 64;

/// Cases that must be among those checked: a secret to an authenticated
/// stream, withheld from an open one, sent to it under `--xds-insecure`;
/// a credential claiming a group or node id it may not.
fn anchors() -> Vec<Case> {
    let base = Case {
        enforced: true,
        insecure: false,
        cert: Some(Cert::Edge),
        token: None,
        node_id: "edge-1".into(),
        group: "edge",
        decoy_cluster: None,
        ty: TypeUrl::Secret,
        names: vec!["edge/cert".into(), "internal/cert".into()],
        delta: false,
    };
    let cases = vec![
        base.clone(),
        Case {
            enforced: false,
            ..base.clone()
        },
        Case {
            enforced: false,
            insecure: true,
            delta: true,
            ..base.clone()
        },
        Case {
            node_id: "int-1".into(),
            ..base.clone()
        },
        Case {
            cert: None,
            token: Some(TOKEN_BATCH),
            ..base.clone()
        },
        Case {
            group: "internal",
            decoy_cluster: Some("edge"),
            ty: TypeUrl::Cluster,
            names: vec![],
            ..base
        },
    ];
    let outcomes: Vec<Expect> = cases.iter().map(expect).collect();
    let secret = |n: &str| Expect::Served(BTreeSet::from([n.to_string()]));
    assert_eq!(
        outcomes,
        [
            secret("edge/cert"),
            Expect::Served(BTreeSet::new()),
            secret("edge/cert"),
            Expect::Denied,
            Expect::Denied,
            Expect::Denied,
        ],
        "the model"
    );
    cases
}

/// The property, for one case.
async fn check(env: &Env, case: &Case) -> Result<(), String> {
    let expected = expect(case);
    let seen = run(env, case, &expected).await;
    let group_names: BTreeSet<&str> = group_spec(case.group)
        .iter()
        .map(|(_, name)| *name)
        .collect();
    // Whatever the model says: nothing from another group, ever.
    if let Some(stray) = seen
        .resources
        .iter()
        .find(|n| !group_names.contains(n.as_str()))
    {
        return Err(format!(
            "{case:?}: got {stray:?}, which group {:?} does not have (all: {:?})",
            case.group, seen.resources
        ));
    }
    match expected {
        Expect::Fails | Expect::Denied if seen.responses > 0 => Err(format!(
            "{case:?}: expected {expected:?}, but {} responses came ({:?})",
            seen.responses, seen.resources
        )),
        Expect::Fails => match &seen.error {
            Some(_) => Ok(()),
            None => Err(format!(
                "{case:?}: expected a failure, the stream stayed up"
            )),
        },
        Expect::Denied => match &seen.error {
            Some(status) if status.code() == Code::PermissionDenied => Ok(()),
            other => Err(format!(
                "{case:?}: expected PERMISSION_DENIED, got {other:?}"
            )),
        },
        Expect::Served(want) => {
            let got: BTreeSet<String> = seen.resources.iter().cloned().collect();
            if let Some(status) = &seen.error {
                return Err(format!(
                    "{case:?}: expected {want:?}, the stream ended: {status:?}"
                ));
            }
            if got != want {
                return Err(format!("{case:?}: expected {want:?}, got {got:?}"));
            }
            Ok(())
        }
    }
}

#[test]
fn no_resource_crosses_an_authorization_boundary() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let env = rt.block_on(Env::start());
    // Whatever the random cases turn out to be, each boundary is probed
    // from both sides at least once.
    for case in anchors() {
        if let Err(e) = rt.block_on(check(&env, &case)) {
            panic!("{e}");
        }
    }
    let mut runner = TestRunner::new(Config {
        // A failure that shows as silence waits `WAIT` on each shrink step.
        max_shrink_time: 60_000,
        ..Config::with_cases(CASES)
    });
    let result = runner.run(&cases(), |case| {
        rt.block_on(check(&env, &case)).map_err(TestCaseError::fail)
    });
    env.stop.cancel();
    if let Err(e) = result {
        panic!("{e}");
    }
}
