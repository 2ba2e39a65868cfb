//! What changed between consecutive published snapshots, computed once
//! per publish for every node group and shared by all streams.
//!
//! A session that holds snapshot A and is handed snapshot B would otherwise
//! have to walk every resource of every type to find what to send: O(what
//! the proxy holds) per stream and publish. The publisher instead diffs A
//! and B once ([`SnapshotDiff::between`]) and keeps the last few diffs per
//! group ([`History`]); a stream that was at A asks for the path A → B
//! (one diff, or several merged when it lagged behind a few publishes) and
//! its session looks only at the names in it. A stream whose snapshot is
//! not on the kept path (it lagged further, or the group changed) gets no
//! diff and its session plans in full, as before.
//!
//! Snapshots are identified by their `Arc` allocation: the publisher reuses
//! the previous `Arc` of every group whose content did not change, so an
//! unchanged group costs a stream one pointer comparison.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};

use super::resource::{Snapshot, Snapshots, TypeUrl};

/// How many diffs are kept per group: a stream more publishes behind than
/// this plans in full.
pub const KEEP: usize = 8;

/// The names per type that were added, changed or removed from one
/// snapshot to another.
#[derive(Debug)]
pub struct SnapshotDiff {
    from: Weak<Snapshot>,
    to: Weak<Snapshot>,
    /// Sorted, without duplicates.
    changed: [Vec<String>; TypeUrl::COUNT],
}

impl SnapshotDiff {
    /// Compares `from` and `to` by name and content version: one ordered
    /// merge walk per type.
    pub fn between(from: &Arc<Snapshot>, to: &Arc<Snapshot>) -> SnapshotDiff {
        let changed = TypeUrl::ALL.map(|ty| {
            let mut out = Vec::new();
            // An endpoint-only compile shares the other types' maps.
            if from.shares(to, ty) {
                return out;
            }
            let (a, b) = (from.resources(ty), to.resources(ty));
            let (mut ia, mut ib) = (a.iter().peekable(), b.iter().peekable());
            loop {
                match (ia.peek(), ib.peek()) {
                    (None, None) => break,
                    (Some((n, _)), None) => {
                        out.push((*n).clone());
                        ia.next();
                    }
                    (None, Some((n, _))) => {
                        out.push((*n).clone());
                        ib.next();
                    }
                    (Some((na, ra)), Some((nb, rb))) => match na.cmp(nb) {
                        std::cmp::Ordering::Less => {
                            out.push((*na).clone());
                            ia.next();
                        }
                        std::cmp::Ordering::Greater => {
                            out.push((*nb).clone());
                            ib.next();
                        }
                        std::cmp::Ordering::Equal => {
                            if !Arc::ptr_eq(ra, rb) && ra.version != rb.version {
                                out.push((*na).clone());
                            }
                            ia.next();
                            ib.next();
                        }
                    },
                }
            }
            out
        });
        SnapshotDiff {
            from: Arc::downgrade(from),
            to: Arc::downgrade(to),
            changed,
        }
    }

    /// Names of `ty` that differ, in name order.
    pub fn changed(&self, ty: TypeUrl) -> &[String] {
        &self.changed[ty.index()]
    }

    pub fn is_empty(&self) -> bool {
        self.changed.iter().all(Vec::is_empty)
    }

    /// Whether this diff leads from exactly `from` to exactly `to`.
    pub fn connects(&self, from: &Arc<Snapshot>, to: &Arc<Snapshot>) -> bool {
        std::ptr::eq(self.from.as_ptr(), Arc::as_ptr(from))
            && std::ptr::eq(self.to.as_ptr(), Arc::as_ptr(to))
    }

    /// This diff followed by `next`: the union of their names.
    fn then(&self, next: &SnapshotDiff) -> SnapshotDiff {
        let changed = TypeUrl::ALL.map(|ty| {
            let (a, b) = (self.changed(ty), next.changed(ty));
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                let take_a = j == b.len() || (i < a.len() && a[i] <= b[j]);
                let name = if take_a { &a[i] } else { &b[j] };
                if out.last() != Some(name) {
                    out.push(name.clone());
                }
                if take_a {
                    i += 1;
                } else {
                    j += 1;
                }
            }
            out
        });
        SnapshotDiff {
            from: self.from.clone(),
            to: next.to.clone(),
            changed,
        }
    }
}

/// The last [`KEEP`] diffs of every group, oldest first.
#[derive(Clone, Debug, Default)]
pub struct History {
    groups: BTreeMap<String, Lineage>,
    fallback: Lineage,
}

#[derive(Clone, Debug, Default)]
struct Lineage(VecDeque<Arc<SnapshotDiff>>);

impl Lineage {
    fn push(&mut self, diff: SnapshotDiff) {
        if self.0.len() == KEEP {
            self.0.pop_front();
        }
        self.0.push_back(Arc::new(diff));
    }

    /// The diff from `from` to `to` along the kept steps.
    fn path(&self, from: &Arc<Snapshot>, to: &Arc<Snapshot>) -> Option<Arc<SnapshotDiff>> {
        let start = self
            .0
            .iter()
            .position(|d| std::ptr::eq(d.from.as_ptr(), Arc::as_ptr(from)))?;
        let mut acc = self.0[start].clone();
        for next in self.0.iter().skip(start + 1) {
            if std::ptr::eq(acc.to.as_ptr(), Arc::as_ptr(to)) {
                break;
            }
            if !std::ptr::eq(next.from.as_ptr(), acc.to.as_ptr()) {
                return None;
            }
            acc = Arc::new(acc.then(next));
        }
        std::ptr::eq(acc.to.as_ptr(), Arc::as_ptr(to)).then_some(acc)
    }
}

impl History {
    /// The history once `next` replaces `prev`. Groups whose content did
    /// not change keep `prev`'s `Arc` in `next` (so streams skip them by
    /// pointer); each changed group gets a diff.
    pub fn advance(&self, prev: &Snapshots, next: &mut Snapshots) -> History {
        let mut out = History {
            groups: BTreeMap::new(),
            fallback: self.fallback.clone(),
        };
        for (group, snap) in next.groups.iter_mut() {
            let mut lineage = self.groups.get(group).cloned().unwrap_or_default();
            step(&mut lineage, prev.for_key(group), snap);
            out.groups.insert(group.clone(), lineage);
        }
        step(&mut out.fallback, &prev.fallback, &mut next.fallback);
        out
    }

    /// The changes from `from` to `to` for a proxy of `group`, if both are
    /// on the kept path.
    pub fn diff(
        &self,
        group: &str,
        from: &Arc<Snapshot>,
        to: &Arc<Snapshot>,
    ) -> Option<Arc<SnapshotDiff>> {
        self.groups
            .get(group)
            .unwrap_or(&self.fallback)
            .path(from, to)
    }
}

fn step(lineage: &mut Lineage, prev: &Arc<Snapshot>, next: &mut Arc<Snapshot>) {
    if Arc::ptr_eq(prev, next) {
        return;
    }
    let diff = SnapshotDiff::between(prev, next);
    if diff.is_empty() {
        *next = prev.clone();
    } else {
        lineage.push(diff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::Resource;

    fn snap(eds: &[(&str, &str)]) -> Arc<Snapshot> {
        let eds = eds
            .iter()
            .map(|(n, body)| Resource::from_bytes(*n, body.as_bytes().to_vec()))
            .collect();
        Arc::new(Snapshot::new([
            Vec::new(),
            Vec::new(),
            Vec::new(),
            eds,
            Vec::new(),
            Vec::new(),
        ]))
    }

    fn snaps(s: &Arc<Snapshot>) -> Snapshots {
        Snapshots {
            groups: BTreeMap::new(),
            fallback: s.clone(),
        }
    }

    #[test]
    fn diff_names_added_changed_and_removed() {
        let a = snap(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let b = snap(&[("b", "2"), ("c", "1"), ("d", "1")]);
        let d = SnapshotDiff::between(&a, &b);
        assert_eq!(d.changed(TypeUrl::Endpoint), ["a", "b", "d"]);
        assert!(d.changed(TypeUrl::Cluster).is_empty());
        assert!(d.connects(&a, &b));
        assert!(!d.connects(&b, &a));
    }

    #[test]
    fn a_lagging_stream_gets_the_union_of_the_steps_it_missed() {
        let s0 = snap(&[("a", "0"), ("b", "0"), ("c", "0")]);
        let s1 = snap(&[("a", "1"), ("b", "0"), ("c", "0")]);
        let s2 = snap(&[("a", "1"), ("b", "0")]);
        let s3 = snap(&[("a", "1"), ("b", "3")]);
        let mut h = History::default();
        let mut cur = snaps(&s0);
        for s in [&s1, &s2, &s3] {
            let mut next = snaps(s);
            h = h.advance(&cur, &mut next);
            cur = next;
        }
        let d = h.diff("any", &s0, &s3).expect("on the path");
        assert_eq!(d.changed(TypeUrl::Endpoint), ["a", "b", "c"]);
        assert!(d.connects(&s0, &s3));
        let d = h.diff("any", &s2, &s3).expect("one step");
        assert_eq!(d.changed(TypeUrl::Endpoint), ["b"]);
        assert!(h.diff("any", &s3, &s0).is_none(), "no way back");
    }

    #[test]
    fn unchanged_content_keeps_the_previous_arc() {
        let s0 = snap(&[("a", "0")]);
        let same = snap(&[("a", "0")]);
        let mut next = snaps(&same);
        let h = History::default().advance(&snaps(&s0), &mut next);
        assert!(Arc::ptr_eq(&next.fallback, &s0));
        assert!(h.fallback.0.is_empty());
    }

    #[test]
    fn only_the_last_steps_are_kept() {
        let first = snap(&[("a", "0")]);
        let mut h = History::default();
        let mut cur = snaps(&first);
        let mut all = vec![first.clone()];
        for i in 1..=KEEP + 2 {
            let s = snap(&[("a", &i.to_string())]);
            let mut next = snaps(&s);
            h = h.advance(&cur, &mut next);
            cur = next;
            all.push(s);
        }
        let last = all.last().expect("some");
        assert!(h.diff("g", &first, last).is_none(), "too far behind");
        assert!(h.diff("g", &all[all.len() - KEEP - 1], last).is_some());
    }
}
