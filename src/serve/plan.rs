//! `sluice diff`'s server side: what serving a posted rules file would
//! change. The file is loaded like an edit of the served one (its
//! certificates relative to the served file's directory), resolved
//! against the current discovery view with the current drains and rollout
//! weights — what the publisher would compile — and compared with the
//! published snapshots by [`guard::plan`]; the guard says whether it would
//! be held. Nothing is published.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::LoadError;
use crate::canary::overlay::{self, Overlays, WeightsVia};
use crate::digest::content_hash;
use crate::discovery::resolve::Resolver;
use crate::discovery::View;
use crate::drain::store::DrainStore;
use crate::guard::{self, DiffDoc, Guard, RulesOf};
use crate::model::Config;
use crate::rules_watch::RulesStatus;
use crate::xds::published::SnapshotRx;
use crate::xds::Snapshots;
use crate::{compile, rules, tls};

/// The publisher's inputs, read when a diff is asked for.
pub(super) struct Planner {
    pub base_dir: PathBuf,
    pub view: watch::Receiver<Arc<View>>,
    pub drains: Arc<DrainStore>,
    pub overlays: watch::Receiver<Overlays>,
    pub weights: WeightsVia,
    pub served: SnapshotRx,
    pub served_config: Arc<Mutex<Option<Arc<Config>>>>,
    pub served_rules: Arc<Mutex<RulesStatus>>,
    pub guard: Guard,
}

impl Planner {
    /// The plan of serving `text` (diagnostics name it `file`), or why it
    /// cannot be served.
    pub fn diff(&self, file: &str, text: &str) -> Result<DiffDoc, String> {
        let (mut config, origins) = rules::Options::with_lua(&sluice_sim::lua::check)
            .parse_with_origins(file, text)
            .map_err(|e| LoadError::Rules(e).to_string())?;
        tls::load(&mut config, &self.base_dir)
            .map_err(|e| LoadError::Certificates(e).to_string())?;
        let after = self.resolved(&config)?;
        let published = self.served.borrow().clone();
        let before = published
            .map(|p| Snapshots::clone(&p.snapshots))
            .unwrap_or_default();
        let before_config = self.served_config.lock().clone();
        let version = content_hash(&[text.as_bytes()]);
        Ok(DiffDoc {
            plan: guard::plan(
                &before,
                before_config
                    .as_deref()
                    .map_or(RulesOf::Unknown, RulesOf::Config),
                &after,
                RulesOf::Origins(&origins),
            ),
            held: self.guard.check(&before, &after, &version, text),
            served: self.served_rules.lock().served_hash.clone(),
            version,
        })
    }

    /// What the publisher would compile from `config` now; before every
    /// discovery source has synced, the rules' own endpoints.
    fn resolved(&self, config: &Config) -> Result<Snapshots, String> {
        let view = self.view.borrow().clone();
        let mut resolved = match Resolver::default().resolve(&view, config) {
            Ok(c) => c,
            Err(_) => config.clone(),
        };
        self.drains.current().apply(&mut resolved);
        let overlays = self.overlays.borrow().clone();
        overlay::Memo::default().apply(&overlays, &mut resolved, self.weights);
        compile::compile(&resolved).map_err(|e| LoadError::Compile(e).to_string())
    }
}
