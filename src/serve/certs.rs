//! Listener certificate rotation: polled with the rules file, published as
//! a new config whose only change is the certificate, so only the SDS
//! secret changes and Envoy keeps its listeners.
//!
//! A pair that fails its check (see [`tls::parse_pair`]) is logged once,
//! counted (`sluice_tls_reload_errors_total`) and shown in `/status` under
//! the rules' `certificates`; the previous pair stays served (fail-static).
//! A pair that expires within [`tls::EXPIRY_WARNING`] (or has expired) is
//! served all the same, with a warning; `/status` and
//! `sluice_tls_certificate_expiry_timestamp_seconds` show its notAfter.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::SystemTime;
use tokio::sync::watch;

use tracing::{error, info, warn};

use crate::model::{CertPair, Config};
use crate::rules_watch::metrics::RulesMetrics;
use crate::rules_watch::{CertStatus, RulesStatus};
use crate::tls::{self, Rotation, Verdict};

/// Records the certificates a freshly loaded config serves; forgets
/// listeners that no longer have TLS.
pub(super) fn loaded(st: &mut RulesStatus, config: &Config) {
    let mut next = std::collections::BTreeMap::new();
    for l in config.listeners.iter() {
        let Some(pair) = l.tls.as_ref().and_then(|t| t.pair.as_ref()) else {
            continue;
        };
        let mut entry = st.certificates.remove(&l.name).unwrap_or_default();
        serving(&mut entry, pair);
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
    metrics: &RulesMetrics,
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
                info!(listener = %l.name, fingerprint = pair.fingerprint(), not_after = %pair.not_after_rfc3339(), "certificate reloaded");
                if let Some(w) = tls::expiry_warning(&pair, SystemTime::now()) {
                    warn!(listener = %l.name, fingerprint = pair.fingerprint(), "{w}");
                }
                let mut st = status.lock();
                let entry = st.certificates.entry(l.name.clone()).or_default();
                serving(entry, &pair);
                entry.last_error = None;
                entry.reloads += 1;
                let config = next.get_or_insert_with(|| (*current).clone());
                if let Some(t) = config.listeners_mut()[i].tls.as_mut() {
                    t.pair = Some(Arc::new(pair));
                }
            }
            Verdict::Reject(reason) => {
                error!(listener = %l.name, error = %reason, "certificate rejected; still serving the previous one");
                metrics.tls_reload_errors.inc();
                let mut st = status.lock();
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

/// Records `pair` as what `entry`'s listener serves.
fn serving(entry: &mut CertStatus, pair: &CertPair) {
    entry.fingerprint = pair.fingerprint().to_owned();
    entry.not_after = pair.not_after_rfc3339();
    entry.not_after_seconds = pair.not_after();
}
