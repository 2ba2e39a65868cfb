//! What a rules edit would change, and the mass-removal guard.
//!
//! A rules edit is compiled into [`Snapshots`] before anything is
//! published. [`plan`] compares them with what is served, per node group
//! and resource type: the names added, changed (a new version) and
//! removed, each with the rule it comes from. `sluice diff` prints a plan;
//! the rules watcher asks [`Guard::check`] whether the edit removes most
//! of what some group serves — every listener or every cluster of a
//! group, or more than `max_removal_percent` of them — and, if so, holds
//! it until an operator confirms it (`sluice rules confirm VERSION`). A
//! file with no YAML in it at all (empty, or only comments: what an
//! editor that truncates before it writes leaves for a moment) is always
//! held, whatever the limit.
//!
//! Everything here is pure: snapshots and configs in, values out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::Config;
use crate::rules::Origins;
use crate::xds::{Snapshot, Snapshots, TypeUrl};

/// How the fallback snapshot (proxies whose group the rules never name)
/// is labelled in plans and status, as in `/debug/config`.
pub const FALLBACK_GROUP: &str = "*";

/// The default of `--max-removal-percent`.
pub const DEFAULT_MAX_REMOVAL_PERCENT: u8 = 50;

/// What an edit changes, per node group (only groups with a change).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub groups: BTreeMap<String, GroupPlan>,
}

/// Per resource type (`cds`, `lds`, ...; only types with a change).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPlan {
    pub types: BTreeMap<String, TypeChanges>,
}

/// The resources of one type an edit adds, changes and removes, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeChanges {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<Change>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<Change>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Change>,
}

/// One resource in a plan and the rule that produces it (for a removed
/// one, the rule in the served config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// Removals the guard holds an edit for, in one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub group: String,
    /// `listeners` or `clusters`.
    pub kind: String,
    /// How many the group serves now.
    pub served: usize,
    /// The names the edit removes.
    pub removed: Vec<String>,
}

/// An edit the guard holds back: nothing of it is published until an
/// operator confirms `version` (or the file changes again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldEdit {
    /// The held file's content hash: what `sluice rules confirm` takes.
    pub version: String,
    /// The file holds no YAML at all (empty or only comments).
    pub empty_file: bool,
    /// What the edit would remove, per group, beyond the limit.
    pub removals: Vec<Removal>,
    /// The limit in force.
    pub max_removal_percent: u8,
}

impl HeldEdit {
    /// One line for logs and errors.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.empty_file {
            parts.push("the file is empty (no YAML, only whitespace or comments)".to_string());
        }
        for r in &self.removals {
            parts.push(format!(
                "group {}: removes {} of {} {}",
                r.group,
                r.removed.len(),
                r.served,
                r.kind
            ));
        }
        parts.join("; ")
    }
}

/// The answer to `POST /rules/diff`: what applying a rules file would
/// change in what the running sluice serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffDoc {
    /// The file's content hash: its version in `/status`, and what
    /// `sluice rules confirm` takes if the guard holds it.
    pub version: String,
    /// The content hash of the rules file served now.
    pub served: Option<String>,
    pub plan: Plan,
    /// Set when the guard would hold the edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldEdit>,
}

/// The mass-removal guard's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// An edit may remove at most this share (in percent) of a group's
    /// listeners and of its clusters; 100 turns the guard off (an empty
    /// file is still held).
    pub max_removal_percent: u8,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            max_removal_percent: DEFAULT_MAX_REMOVAL_PERCENT,
        }
    }
}

impl Guard {
    /// Whether publishing `after` in place of `before` must wait for a
    /// confirmation: `None` lets it through. `version` is the edit's file
    /// hash, `text` the file's content.
    pub fn check(
        &self,
        before: &Snapshots,
        after: &Snapshots,
        version: &str,
        text: &str,
    ) -> Option<HeldEdit> {
        let empty_file = is_empty_file(text);
        let removals = if self.max_removal_percent >= 100 {
            Vec::new()
        } else {
            self.removals(before, after)
        };
        (empty_file || !removals.is_empty()).then(|| HeldEdit {
            version: version.to_string(),
            empty_file,
            removals,
            max_removal_percent: self.max_removal_percent,
        })
    }

    fn removals(&self, before: &Snapshots, after: &Snapshots) -> Vec<Removal> {
        let mut out = Vec::new();
        for (group, old, new) in groups(before, after) {
            for (ty, kind) in [
                (TypeUrl::Listener, "listeners"),
                (TypeUrl::Cluster, "clusters"),
            ] {
                let served = old.resources(ty);
                let removed: Vec<String> = served
                    .keys()
                    .filter(|n| new.get(ty, n).is_none())
                    .cloned()
                    .collect();
                if removed.is_empty() {
                    continue;
                }
                let all = removed.len() == served.len();
                let over =
                    removed.len() * 100 > served.len() * usize::from(self.max_removal_percent);
                if all || over {
                    out.push(Removal {
                        group: group.clone(),
                        kind: kind.to_string(),
                        served: served.len(),
                        removed,
                    });
                }
            }
        }
        out
    }
}

/// Whether a rules file holds no YAML: only whitespace and comments.
pub fn is_empty_file(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

/// Every group either side names, plus the fallback, with the snapshot
/// each side gives it (a group one side does not name gets that side's
/// fallback, as a proxy of that group would).
fn groups<'a>(
    before: &'a Snapshots,
    after: &'a Snapshots,
) -> Vec<(String, &'a Snapshot, &'a Snapshot)> {
    let names: BTreeSet<&String> = before.groups.keys().chain(after.groups.keys()).collect();
    let mut out: Vec<_> = names
        .into_iter()
        .map(|g| {
            (
                g.clone(),
                before.for_key(g).as_ref(),
                after.for_key(g).as_ref(),
            )
        })
        .collect();
    out.push((
        FALLBACK_GROUP.to_string(),
        before.fallback.as_ref(),
        after.fallback.as_ref(),
    ));
    out
}

/// What a plan knows of the rules behind one side's resources.
#[derive(Clone, Copy)]
pub enum RulesOf<'a> {
    /// The file's positions: `file:line:column: field.path`.
    Origins(&'a Origins),
    /// Only the config: a field path, with the name it holds.
    Config(&'a Config),
    Unknown,
}

impl RulesOf<'_> {
    /// The rule that produces resource `name` of type `ty`.
    pub fn rule(&self, ty: TypeUrl, name: &str) -> Option<String> {
        match self {
            RulesOf::Origins(o) => {
                let origin = match ty {
                    TypeUrl::Listener => o.listener(name).map(|l| &l.at),
                    TypeUrl::Route => o.route_configuration(name),
                    TypeUrl::Secret => o.secret(name),
                    TypeUrl::Cluster | TypeUrl::Endpoint => o.cluster(name),
                    TypeUrl::Runtime => return Some(RUNTIME_RULE.to_string()),
                };
                origin.map(ToString::to_string)
            }
            RulesOf::Config(c) => rule_of(c, ty, name),
            RulesOf::Unknown => None,
        }
    }
}

/// The rule behind the RTDS layer: rollouts, not the rules file.
const RUNTIME_RULE: &str = "rollouts (runtime weights)";

/// What serving `after` instead of `before` changes; `rules_before` and
/// `rules_after` name the rules behind each side's resources.
pub fn plan(
    before: &Snapshots,
    rules_before: RulesOf<'_>,
    after: &Snapshots,
    rules_after: RulesOf<'_>,
) -> Plan {
    let mut plan = Plan::default();
    for (group, old, new) in groups(before, after) {
        let mut gp = GroupPlan::default();
        for ty in TypeUrl::ALL {
            if old.shares(new, ty) {
                continue;
            }
            let (old_res, new_res) = (old.resources(ty), new.resources(ty));
            let change = |rules: RulesOf<'_>, name: &String| Change {
                name: name.clone(),
                rule: rules.rule(ty, name),
            };
            let mut tc = TypeChanges::default();
            for (name, res) in new_res {
                match old_res.get(name) {
                    None => tc.added.push(change(rules_after, name)),
                    Some(o) if o.version != res.version => {
                        tc.changed.push(change(rules_after, name))
                    }
                    Some(_) => {}
                }
            }
            for name in old_res.keys().filter(|n| !new_res.contains_key(*n)) {
                tc.removed.push(change(rules_before, name));
            }
            if tc != TypeChanges::default() {
                gp.types.insert(ty.short().to_string(), tc);
            }
        }
        if !gp.types.is_empty() {
            plan.groups.insert(group, gp);
        }
    }
    plan
}

/// The rule that produces resource `name` of type `ty`, as a field path
/// with the listener or service it names.
pub fn rule_of(config: &Config, ty: TypeUrl, name: &str) -> Option<String> {
    let listener = |n: &str| {
        config
            .listeners
            .iter()
            .position(|l| l.name == n)
            .map(|i| format!("listeners[{i}] ({n})"))
    };
    match ty {
        TypeUrl::Listener => listener(name),
        TypeUrl::Route => listener(name).map(|l| format!("{l}.virtual_hosts")),
        TypeUrl::Secret => {
            let l = name.strip_prefix("listener/")?.strip_suffix("/cert")?;
            listener(l).map(|p| format!("{p}.tls"))
        }
        TypeUrl::Cluster | TypeUrl::Endpoint => {
            let (service, subset) = match name.split_once('~') {
                Some((s, sub)) => (s, Some(sub)),
                None => (name, None),
            };
            config.services.get(service)?;
            Some(match subset {
                Some(sub) => format!("services ({service}).subsets.{sub}"),
                None => format!("services ({service})"),
            })
        }
        TypeUrl::Runtime => Some(RUNTIME_RULE.to_string()),
    }
}

#[cfg(test)]
mod tests;
