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
//!   stay until the next complete listing. The watcher resumes quietly (a
//!   re-watch from the last resourceVersion brings no event when nothing
//!   changed), so while failing the task also probes the API server with a
//!   one-item list and confirms the feed when it answers.

mod slices;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
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

/// Why a Kubernetes feed failed; kube's error is its source.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("kubeconfig {}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig given, and kube could not infer one.
    #[error("kubernetes config")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("kubernetes client")]
    Client(#[source] kube::Error),
    /// The watch failed (API server down, 410, 403); kube-runtime retries.
    #[error("kubernetes watch of {target}")]
    Watch {
        target: String,
        #[source]
        source: watcher::Error,
    },
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
    let stop = feeder.stop.clone();
    let mut backoff = opts.backoff();
    let client = loop {
        let made = tokio::select! {
            _ = stop.cancelled() => return,
            c = client(kubeconfig.as_ref()) => c,
        };
        let delay = match made {
            Ok(c) => break c,
            Err(e) => feeder.retry_after(&e, &mut backoff),
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    };
    let api: Api<EndpointSlice> = Api::namespaced(client, &target.namespace);
    let selector = format!("kubernetes.io/service-name={}", target.service);
    let config = watcher::Config::default().labels(&selector);
    let mut events = watcher::watcher(api.clone(), config)
        .default_backoff()
        .boxed();
    let probe_params = ListParams::default().labels(&selector).limit(1);
    let mut probe = tokio::time::interval(opts.request_timeout);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut live: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut state = State::Listing {
        buffer: BTreeMap::new(),
    };
    let mut last_rejected: Vec<String> = Vec::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.next() => Some(e),
            _ = probe.tick(), if failing => None,
        };
        let Some(event) = event else {
            let listed = tokio::select! {
                _ = stop.cancelled() => return,
                l = tokio::time::timeout(opts.request_timeout, api.list(&probe_params)) => l,
            };
            if matches!(listed, Ok(Ok(_))) {
                failing = false;
                feeder.confirm();
            }
            continue;
        };
        let event = match event {
            None => return,
            Some(Err(source)) => {
                failing = true;
                let target = describe(&target);
                feeder.fail(&KubernetesError::Watch { target, source });
                continue;
            }
            Some(Ok(e)) => e,
        };
        failing = false;
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

async fn client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, KubernetesError> {
    let config = match kubeconfig {
        Some(path) => {
            let bad = |source| KubernetesError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(bad)?;
            let options = kube::config::KubeConfigOptions::default();
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(bad)?
        }
        None => kube::Config::infer()
            .await
            .map_err(KubernetesError::Infer)?,
    };
    kube::Client::try_from(config).map_err(KubernetesError::Client)
}
