//! Envoy's own verdict on compiled config before it is published
//! (`sluice validate --envoy`, `sluice serve --validate-with-envoy`).
//!
//! sluice's checks catch what it knows Envoy refuses; Envoy knows more
//! (RE2's program-size limit, proto constraints, filter configs). Here
//! the compiled snapshots are turned into static bootstraps (`parts`:
//! normally one for all node groups together) and each is run through
//! `envoy --mode validate`, which builds every listener, route, cluster
//! and secret as a proxy would, without binding or connecting. A refusal
//! is narrowed to the resource, virtual host or route at fault
//! (`culprit`) and reported at the rule that produced it
//! (`file:line:column: path: envoy refused: MESSAGE`), through
//! [`Origins`].
//!
//! The check reads the snapshots a rules file compiles to on its own
//! (services' static endpoints, no discovered ones); endpoints, drains and
//! rollout weights are data inside resources Envoy has already accepted,
//! so `serve` never runs Envoy for them. Cost: docs/benchmarks.md.

mod culprit;
mod parts;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost::Message;

use crate::rules::{self, Diagnostic, Origins, RulesError};
use crate::xds::Snapshots;
use parts::{Item, Parts};

/// Runs an Envoy binary's `--mode validate` on compiled snapshots.
#[derive(Clone, Debug)]
pub struct EnvoyCheck {
    bin: PathBuf,
    /// How long one Envoy run may take before it counts as a failure to
    /// check (Envoy answers in well under a second; this only stops a
    /// wrong binary from hanging a reload for ever).
    timeout: Duration,
}

/// Why Envoy's check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    /// Envoy refused the config: one diagnostic per rule at fault.
    #[error("{0}")]
    Refused(RulesError),
    /// Envoy gave no verdict (not found, crashed, timed out): nothing is
    /// known to be accepted, so nothing may be published.
    #[error("checking with envoy: {0}")]
    Run(String),
}

/// Envoy's verdict on one bootstrap.
#[derive(Debug)]
enum Verdict {
    Accepted,
    /// With Envoy's message, trimmed of its log prefix.
    Refused(String),
}

/// What Envoy logs before the reason it refuses a bootstrap.
const REFUSAL: &str = "error initializing configuration '";

/// How Envoy's proto validation errors begin, after a dump of the message.
const PROTO_CONSTRAINT: &str = "Proto constraint validation failed";

impl EnvoyCheck {
    pub fn new(bin: impl Into<PathBuf>) -> EnvoyCheck {
        EnvoyCheck {
            bin: bin.into(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Checks the snapshots compiled from the rules file `text` (reported
    /// as `source_name`). On a refusal the text is parsed again for the
    /// rules' positions, which only this path needs.
    pub async fn check(
        &self,
        source_name: &str,
        text: &str,
        snapshots: &Snapshots,
    ) -> Result<(), EnvoyError> {
        let refusals = self.refusals(snapshots).await.map_err(EnvoyError::Run)?;
        if refusals.is_empty() {
            return Ok(());
        }
        let origins = rules::parse_with_origins(source_name, text)
            .map(|(_, origins)| origins)
            .unwrap_or_default();
        let mut diagnostics: Vec<Diagnostic> = refusals
            .iter()
            .map(|(culprit, message)| diagnostic(source_name, &origins, culprit, message))
            .collect();
        diagnostics
            .sort_by(|a, b| (a.line, a.column, &a.message).cmp(&(b.line, b.column, &b.message)));
        diagnostics.dedup();
        Err(EnvoyError::Refused(RulesError { diagnostics }))
    }

    /// Each refused batch's culprit (see `culprit`) and Envoy's message.
    async fn refusals(&self, snapshots: &Snapshots) -> Result<Vec<(Culprit, String)>, String> {
        let batches: Vec<Parts> = parts::batches(snapshots)
            .iter()
            .map(Parts::decode)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        // Normally one batch; more run side by side, a core each.
        let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut verdicts = Vec::with_capacity(batches.len());
        for chunk in batches.chunks(parallel) {
            let bootstraps: Vec<Bootstrap> = chunk.iter().map(|p| p.bootstrap(&p.all())).collect();
            let runs = bootstraps.iter().map(|b| self.probe(b));
            verdicts.extend(futures::future::try_join_all(runs).await?);
        }
        let mut out = Vec::new();
        for (parts, verdict) in batches.iter().zip(verdicts) {
            let Verdict::Refused(whole) = verdict else {
                continue;
            };
            out.push(match self.culprit(parts, whole.clone()).await? {
                Some((item, message)) => (Culprit::of(parts, item), message),
                None => (Culprit::Unknown, whole),
            });
        }
        Ok(out)
    }

    /// Runs Envoy on `bootstrap`, written to a temporary `.pb` file.
    async fn probe(&self, bootstrap: &Bootstrap) -> Result<Verdict, String> {
        let file = tempfile::Builder::new()
            .prefix("sluice-envoy-check-")
            .suffix(".pb")
            .tempfile()
            .map_err(|e| format!("creating a temporary file: {e}"))?;
        tokio::fs::write(file.path(), bootstrap.encode_to_vec())
            .await
            .map_err(|e| format!("writing {}: {e}", file.path().display()))?;
        let child = tokio::process::Command::new(&self.bin)
            .args(["--mode", "validate", "--log-level", "critical"])
            // The message alone, without time, thread and source file.
            .args(["--log-format", "%v", "-c"])
            .arg(file.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.bin.display()))?;
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                let secs = self.timeout.as_secs();
                format!("{} gave no verdict within {secs}s", self.bin.display())
            })?
            .map_err(|e| format!("running {}: {e}", self.bin.display()))?;
        if out.status.success() {
            return Ok(Verdict::Accepted);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        refusal(&stderr, file.path())
            .map(Verdict::Refused)
            .ok_or_else(|| {
                let said = stderr.trim();
                format!(
                    "{} exited with {} without a verdict: {said}",
                    self.bin.display(),
                    out.status
                )
            })
    }
}

/// The reason in Envoy's refusal, from its stderr: what follows
/// "error initializing configuration 'FILE': " (the file is a temporary
/// one, meaningless to a user), on one line.
fn refusal(stderr: &str, file: &Path) -> Option<String> {
    let at = stderr.find(REFUSAL)?;
    let rest = &stderr[at + REFUSAL.len()..];
    let file = file.display().to_string();
    let reason = rest
        .strip_prefix(file.as_str())
        .and_then(|r| r.strip_prefix("': "))
        .unwrap_or(rest);
    // A proto constraint error starts with a dump of the whole message at
    // fault (with its routes inline, as the check rewrote it): the reason
    // is what follows.
    let reason = reason
        .find(PROTO_CONSTRAINT)
        .map_or(reason, |at| &reason[at..]);
    let lines: Vec<&str> = reason
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Some(lines.join(" "))
}

/// What Envoy refused, by the names compile gives resources.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Culprit {
    Runtime(String),
    Secret(String),
    Cluster(String),
    Listener(String),
    VirtualHost {
        route_config: String,
        index: usize,
    },
    Route {
        route_config: String,
        vhost: usize,
        route: usize,
    },
    /// No single part is refused on its own.
    Unknown,
}

impl Culprit {
    fn of(parts: &Parts, item: Item) -> Culprit {
        let rc_name = |rc: usize| parts.route_configs[rc].head.name.clone();
        match item {
            Item::Runtime(i) => Culprit::Runtime(parts.runtime[i].name.clone()),
            Item::Secret(i) => Culprit::Secret(parts.secrets[i].name.clone()),
            Item::Cluster(i) => Culprit::Cluster(parts.clusters[i].name.clone()),
            Item::Listener(i) => Culprit::Listener(parts.listeners[i].name.clone()),
            Item::VirtualHost(rc, index) => Culprit::VirtualHost {
                route_config: rc_name(rc),
                index,
            },
            Item::Route(rc, vhost, route) => Culprit::Route {
                route_config: rc_name(rc),
                vhost,
                route,
            },
        }
    }

    /// How the culprit is named when the rules have no position for it.
    fn describe(&self) -> String {
        match self {
            Culprit::Runtime(n) => format!("runtime layer {n:?}"),
            Culprit::Secret(n) => format!("secret {n:?}"),
            Culprit::Cluster(n) => format!("cluster {n:?}"),
            Culprit::Listener(n) => format!("listener {n:?}"),
            Culprit::VirtualHost {
                route_config,
                index,
            } => format!("route configuration {route_config:?} virtual host {index}"),
            Culprit::Route {
                route_config,
                vhost,
                route,
            } => format!("route configuration {route_config:?} virtual host {vhost} route {route}"),
            Culprit::Unknown => "the config".to_owned(),
        }
    }
}

/// The diagnostic for a refusal: at the rule behind the culprit, else at
/// the top of the file naming the resource.
fn diagnostic(file: &str, origins: &Origins, culprit: &Culprit, message: &str) -> Diagnostic {
    let origin = match culprit {
        Culprit::Secret(n) => origins.secret(n),
        Culprit::Cluster(n) => origins.cluster(n),
        Culprit::Listener(n) => origins.listener(n).map(|l| &l.at),
        Culprit::VirtualHost {
            route_config,
            index,
        } => origins.virtual_host(route_config, *index),
        Culprit::Route {
            route_config,
            vhost,
            route,
        } => origins.route(route_config, *vhost, *route),
        Culprit::Runtime(_) | Culprit::Unknown => None,
    };
    match origin {
        Some(origin) => Diagnostic::at(origin, format!("envoy refused: {message}")),
        None => Diagnostic {
            file: file.to_owned(),
            line: 1,
            column: 1,
            path: "<root>".to_owned(),
            message: format!("envoy refused {}: {message}", culprit.describe()),
        },
    }
}
