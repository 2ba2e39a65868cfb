//! The Kubernetes source: a Service's `discovery.k8s.io/v1` EndpointSlices.
//!
//! kube-runtime's watcher lists and watches the slices labelled
//! `kubernetes.io/service-name=<service>` in the namespace (with watch
//! bookmarks; it re-lists after `410 Gone` and retries errors with its
//! default backoff). This task only keeps the live set of slices and
//! turns it into one `reset` of the feed per change ([`slices::join`]):
//!
//! - a (re-)list — `Init`, `InitApply`…, `InitDone` — is buffered and
//!   swapped in at `InitDone`, so a re-list after a 410 never shows a
//!   transient empty or partial set;
//! - `Apply` / `Delete` of one slice re-join the live set;
//! - an error (API server down, 410, 403) fails the feed; the endpoints
//!   stay until the next complete listing.

mod slices;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;

pub use slices::{join, Joined};

use super::{Feeder, SourceOptions};

/// What one feed watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    /// A port name of the Service (or a port number).
    pub port: String,
}

/// Where a feed's watch stands.
#[derive(Debug)]
enum State {
    /// A listing is under way: slices collected here replace the live set
    /// at `InitDone`; until then the live set is still served.
    Listing {
        buffer: BTreeMap<String, EndpointSlice>,
    },
    /// The live set is complete and follows watch events.
    Watching,
}

/// Runs one feed until the feeder is stopped. `kubeconfig`: a kubeconfig
/// file, or `None` for kube's inference (`$KUBECONFIG`, `~/.kube/config`,
/// then the in-cluster service account).
pub async fn run(feeder: Feeder, kubeconfig: Option<PathBuf>, target: Target, opts: SourceOptions) {
    let mut stop = feeder.stop.clone();
    let mut delay = opts.retry_min;
    let client = loop {
        match client(kubeconfig.as_ref()).await {
            Ok(c) => break c,
            Err(e) => feeder.fail(e),
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(opts.retry_max);
    };
    let api: Api<EndpointSlice> = Api::namespaced(client, &target.namespace);
    let config = watcher::Config::default()
        .labels(&format!("kubernetes.io/service-name={}", target.service))
        .timeout(timeout_secs(opts.request_timeout));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut live: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut state = State::Listing {
        buffer: BTreeMap::new(),
    };
    let mut last_rejected: Vec<String> = Vec::new();
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            e = events.next() => e,
        };
        let event = match event {
            None => return,
            Some(Err(e)) => {
                feeder.fail(format!("kubernetes watch of {}: {e}", describe(&target)));
                continue;
            }
            Some(Ok(e)) => e,
        };
        state = match (state, event) {
            (_, Event::Init) => State::Listing {
                buffer: BTreeMap::new(),
            },
            (State::Listing { mut buffer }, Event::InitApply(s)) => {
                buffer.insert(name(&s), s);
                State::Listing { buffer }
            }
            (State::Listing { buffer }, Event::InitDone) => {
                live = buffer;
                publish(&feeder, &live, &target, &mut last_rejected);
                State::Watching
            }
            (s, Event::Apply(slice)) => {
                live.insert(name(&slice), slice);
                publish(&feeder, &live, &target, &mut last_rejected);
                s
            }
            (s, Event::Delete(slice)) => {
                live.remove(&name(&slice));
                publish(&feeder, &live, &target, &mut last_rejected);
                s
            }
            // The watcher only sends these inside a listing.
            (State::Watching, Event::InitApply(_) | Event::InitDone) => State::Watching,
        };
    }
}

/// The server closes a watch after this; kube-rs then watches again from
/// the last resourceVersion (not a re-list). Under Kubernetes' 295 s limit.
fn timeout_secs(request_timeout: Duration) -> u32 {
    (request_timeout.as_secs() as u32 * 58).clamp(60, 290)
}

fn name(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

fn describe(t: &Target) -> String {
    format!("{}/{}:{}", t.namespace, t.service, t.port)
}

fn publish(
    feeder: &Feeder,
    live: &BTreeMap<String, EndpointSlice>,
    target: &Target,
    last_rejected: &mut Vec<String>,
) {
    let joined = join(live.values(), &target.port);
    if joined.rejected != *last_rejected {
        for msg in joined
            .rejected
            .iter()
            .filter(|m| !last_rejected.contains(m))
        {
            feeder.reject(format!("{}: {msg}", describe(target)));
        }
        *last_rejected = joined.rejected;
    }
    feeder.with(|index, key| index.reset(key, joined.endpoints, Instant::now()));
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            let options = kube::config::KubeConfigOptions::default();
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("kubernetes config: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("kubernetes client: {e}"))
}
