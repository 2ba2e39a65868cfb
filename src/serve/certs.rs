//! Listener certificate rotation: polled with the rules file, published as
//! a new config whose only change is the certificate, so only the SDS
//! secret changes and Envoy keeps its listeners.
//!
//! A pair that fails its check (see [`tls::parse_pair`]) is logged once,
//! counted (`sluice_tls_reload_errors_total`) and shown in `/status` under
//! the rules' `certificates`; the previous pair stays served (fail-static).

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{error, info};

use crate::admin::{lock, RulesStatus};
use crate::metrics::Metrics;
use crate::model::Config;
use crate::tls::{self, Rotation, Verdict};

/// Records the certificates a freshly loaded config serves; forgets
/// listeners that no longer have TLS.
pub(super) fn loaded(st: &mut RulesStatus, config: &Config) {
    let mut next = std::collections::BTreeMap::new();
    for l in &config.listeners {
        let Some(pair) = l.tls.as_ref().and_then(|t| t.pair.as_ref()) else {
            continue;
        };
        let mut entry = st.certificates.remove(&l.name).unwrap_or_default();
        entry.fingerprint = pair.fingerprint().to_owned();
        entry.last_error = None;
        next.insert(l.name.clone(), entry);
    }
    st.certificates = next;
}

/// Reads every TLS listener's files once; publishes the config again when
/// a listener's files hold a new, valid pair. The reads are blocking, like
/// the rules load beside it: a few small local files per poll.
pub(super) fn poll(
    base: &Path,
    tx: &watch::Sender<Arc<Config>>,
    rotation: &mut Rotation,
    metrics: &Metrics,
    status: &Mutex<RulesStatus>,
) {
    let current = tx.borrow().clone();
    let mut next: Option<Config> = None;
    rotation.retain(|name| {
        current
            .listeners
            .iter()
            .any(|l| l.name == name && l.tls.is_some())
    });
    for (i, l) in current.listeners.iter().enumerate() {
        let Some(t) = &l.tls else { continue };
        let Some(served) = &t.pair else { continue };
        let seen = tls::observe(base, t);
        let verdict = rotation.observe(&l.name, served, seen, |cert, key| {
            tls::parse_pair(base, t, cert, key)
        });
        match verdict {
            Verdict::Unchanged | Verdict::Settling | Verdict::StillRejected => {}
            Verdict::Accept(pair) => {
                info!(listener = %l.name, fingerprint = pair.fingerprint(), "certificate reloaded");
                let mut st = lock(status);
                let entry = st.certificates.entry(l.name.clone()).or_default();
                entry.fingerprint = pair.fingerprint().to_owned();
                entry.last_error = None;
                entry.reloads += 1;
                let config = next.get_or_insert_with(|| (*current).clone());
                if let Some(t) = config.listeners[i].tls.as_mut() {
                    t.pair = Some(Arc::new(pair));
                }
            }
            Verdict::Reject(reason) => {
                error!(listener = %l.name, error = %reason, "certificate rejected; still serving the previous one");
                metrics.tls_reload_errors.inc();
                let mut st = lock(status);
                let entry = st.certificates.entry(l.name.clone()).or_default();
                entry.last_error = Some(reason);
                entry.rejected_reloads += 1;
            }
        }
    }
    if let Some(config) = next {
        tx.send_replace(Arc::new(config));
    }
}
