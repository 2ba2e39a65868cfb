//! What `/status`, `sluice status` and the source metrics show about
//! discovery: per source kind, and per feed within it, computed from a
//! [`View`] at the moment of asking (ages need "now").

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::index::{SyncState, View};
use super::source_name;

/// One registry kind (`etcd`, `consul`, `file`, …) as a whole.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceStatus {
    pub source: String,
    /// Every feed of this source synced and not failing.
    pub up: bool,
    /// Every feed of this source has synced at least once.
    pub synced: bool,
    /// Age of the stalest feed's last sync; `None` if one never synced.
    pub last_sync_age_seconds: Option<f64>,
    pub endpoints: usize,
    pub bad_entries: u64,
    /// Whole-set loads of every feed (see [`FeedStatus::full_loads`]).
    pub full_loads: u64,
    pub feeds: Vec<FeedStatus>,
}

/// One service's watch on the source.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FeedStatus {
    pub service: String,
    /// What is watched: the etcd prefix, the Consul service, the file.
    pub target: String,
    /// `pending` (never synced), `synced` or `failing`.
    pub state: String,
    pub endpoints: usize,
    pub last_sync_age_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub bad_entries: u64,
    pub last_bad_entry: Option<String>,
    /// How often the feed's whole set was loaded: an etcd listing (the
    /// first, then one after each compaction or restored cluster), a
    /// Consul or Kubernetes answer, a file read.
    pub full_loads: u64,
}

/// Per source kind, in name order.
pub fn summarize(view: &View, now: Instant) -> Vec<SourceStatus> {
    let mut by_source: BTreeMap<&'static str, SourceStatus> = BTreeMap::new();
    for (key, feed) in &view.feeds {
        let (kind, target) = source_name(&key.discovery);
        let age = feed
            .last_sync()
            .map(|t| now.saturating_duration_since(t).as_secs_f64());
        let state = match feed.sync {
            SyncState::NeverSynced { .. } => "pending",
            SyncState::Synced => "synced",
            SyncState::Failing { .. } => "failing",
        };
        let fs = FeedStatus {
            service: key.service.clone(),
            target,
            state: state.to_string(),
            endpoints: feed.endpoints.len(),
            last_sync_age_seconds: age,
            last_error: feed.sync.error().map(str::to_string),
            bad_entries: feed.bad_entries,
            full_loads: feed.full_loads,
            last_bad_entry: feed.last_bad_entry.clone(),
        };
        let s = by_source.entry(kind).or_insert_with(|| SourceStatus {
            source: kind.to_string(),
            up: true,
            synced: true,
            last_sync_age_seconds: Some(0.0),
            ..Default::default()
        });
        s.up &= state == "synced";
        s.synced &= feed.sync.has_synced();
        s.last_sync_age_seconds = match (s.last_sync_age_seconds, age) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        s.endpoints += fs.endpoints;
        s.bad_entries += fs.bad_entries;
        s.full_loads += fs.full_loads;
        s.feeds.push(fs);
    }
    by_source.into_values().collect()
}
