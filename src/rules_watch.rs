//! The rules watcher's face to the rest of sluice: what it reports
//! ([`RulesStatus`], with each TLS listener's [`CertStatus`], and the
//! counters of [`metrics::RulesMetrics`]) and what it answers ([`Confirm`],
//! a [`Planner`]).
//!
//! The watcher runs in `serve`; the admin listener shows and forwards these
//! (`/status`, `/metrics`, `/rules/diff`, `/rules/confirm`) and `sluice
//! status` reads them back. They are plain data, so everything that shows
//! the watcher's state depends on this module rather than on `serve`.

pub mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::guard::{DiffDoc, HeldEdit};

/// What the rules watcher last did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RulesStatus {
    pub file: String,
    /// Content hash of the rules file being served.
    pub served_hash: Option<String>,
    /// The last reload error; cleared by the next good reload.
    pub last_error: Option<String>,
    pub reloads: u64,
    pub rejected_reloads: u64,
    /// An edit the mass-removal guard holds back, until it is confirmed
    /// or the file changes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldEdit>,
    /// Listener certificates by listener name (TLS listeners only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates: BTreeMap<String, CertStatus>,
}

/// What a TLS listener serves and its last certificate reload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CertStatus {
    /// SHA-256 of the served leaf certificate (DER), hex.
    pub fingerprint: String,
    /// The served leaf certificate's notAfter, RFC 3339 UTC.
    #[serde(default)]
    pub not_after: String,
    /// The same instant, seconds since the Unix epoch.
    #[serde(default)]
    pub not_after_seconds: u64,
    /// Why the files' current content was rejected; cleared by the next
    /// good reload.
    pub last_error: Option<String>,
    pub reloads: u64,
    pub rejected_reloads: u64,
}

/// What a rules file would change, or its diagnostics: `(file name, text)`.
pub type Planner = Arc<dyn Fn(&str, &str) -> Result<DiffDoc, String> + Send + Sync>;

/// A request to publish the held edit `version`; the rules watcher answers
/// on `reply` (why not, when it cannot).
#[derive(Debug)]
pub struct Confirm {
    pub version: String,
    pub reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}
