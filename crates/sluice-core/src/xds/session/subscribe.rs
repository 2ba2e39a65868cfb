//! Subscription bookkeeping: what a request says the client wants, per
//! the xDS rules for wildcards (legacy empty list, explicit `*`),
//! SotW full lists and delta subscribe/unsubscribe with
//! `initial_resource_versions`.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use itertools::{EitherOrBoth, Itertools};

use super::{Dirty, Known, Name, Phase, Session};
use crate::xds::resource::{Snapshot, TypeUrl};

impl Session {
    pub(super) fn sotw_subscribe(&mut self, ty: TypeUrl, mut names: Vec<String>) {
        // Envoy repeats its whole subscription in every SotW request, ACKs
        // included (1,000 names per EDS ACK at M1): when it is unchanged
        // there is nothing to do, so check that before interning the
        // names into a new set.
        let st = &self.types[ty.index()];
        if st.phase.requested()
            && !st.wildcard
            && !names.is_empty()
            && repeats(&st.names, &mut names)
        {
            return;
        }
        names.sort_unstable();
        names.dedup();
        let explicit_wildcard = match names.binary_search_by(|n| n.as_str().cmp("*")) {
            Ok(i) => {
                names.remove(i);
                true
            }
            Err(_) => false,
        };
        let names = name_set(self.snapshot.as_deref(), ty, names);
        let st = &mut self.types[ty.index()];
        let first = !st.phase.requested();
        if !names.is_empty() {
            st.ever_named = true;
        }
        let was_wildcard = st.wildcard;
        st.wildcard =
            ty.wildcard_capable() && (explicit_wildcard || (names.is_empty() && !st.ever_named));
        if first {
            // The first wildcard request is answered even when empty.
            st.phase = if st.wildcard {
                Phase::MustReply
            } else {
                Phase::Requested
            };
        }
        if first || was_wildcard != st.wildcard {
            st.dirty = Dirty::All;
        } else {
            for name in st.names.symmetric_difference(&names) {
                st.dirty.insert(name);
            }
        }
        // The client drops what it no longer subscribes to; if it asks again
        // it must be sent again.
        let dropped: Vec<Name> = st.names.difference(&names).cloned().collect();
        for name in dropped {
            if !st.wildcard {
                st.known.remove(&name);
            }
        }
        if *st.names != *names {
            st.names = names;
        }
    }

    pub(super) fn delta_subscribe(
        &mut self,
        ty: TypeUrl,
        mut subscribe: Vec<String>,
        unsubscribe: Vec<String>,
        initial: HashMap<String, String>,
    ) {
        let snap = self.snapshot.clone();
        let st = &mut self.types[ty.index()];
        let first = !st.phase.requested();
        let was_wildcard = st.wildcard;
        let mut renamed = false;
        // What a reconnecting client announces it holds: recorded once the
        // subscription is known (below).
        let announced = if first { initial } else { HashMap::new() };
        if first {
            st.phase = Phase::Requested;
            st.dirty = Dirty::All;
            if subscribe.is_empty() && ty.wildcard_capable() {
                st.wildcard = true;
            }
            if st.wildcard && announced.is_empty() {
                st.phase = Phase::MustReply;
            }
        }
        if first && st.names.is_empty() && !subscribe.is_empty() {
            // A first request (a reconnect asks for thousands of names):
            // the set is made at once, not name by name. Everything is
            // dirty already and nothing was told missing yet.
            subscribe.sort_unstable();
            subscribe.dedup();
            if let Ok(i) = subscribe.binary_search_by(|n| n.as_str().cmp("*")) {
                subscribe.remove(i);
                st.wildcard = true;
            }
            st.names = name_set(snap.as_deref(), ty, std::mem::take(&mut subscribe));
        }
        for name in subscribe {
            if name == "*" {
                st.wildcard = true;
                st.dirty = Dirty::All;
                continue;
            }
            st.dirty.insert(&name);
            // Every name in a subscribe list gets an answer: forget what we
            // think the client has, unless it just told us (reconnect).
            if !first {
                st.known.remove(name.as_str());
            }
            st.told_missing.remove(&name);
            if !st.names.contains(name.as_str()) {
                Arc::make_mut(&mut st.names).insert(intern(snap.as_deref(), ty, name));
                renamed = true;
            }
        }
        for name in unsubscribe {
            if name == "*" {
                st.wildcard = false;
                st.dirty = Dirty::All;
                continue;
            }
            st.dirty.insert(&name);
            if st.names.contains(name.as_str()) {
                Arc::make_mut(&mut st.names).remove(name.as_str());
                renamed = true;
            }
            st.told_missing.remove(&name);
            st.force.remove(&name);
            if !st.wildcard {
                st.known.remove(name.as_str());
            }
        }
        if renamed {
            st.names = share(Arc::unwrap_or_clone(std::mem::take(&mut st.names)));
        }
        if !announced.is_empty() {
            // Announced names outside the subscription are not held.
            let (wildcard, names, scope) = (st.wildcard, st.names.clone(), st.scope());
            let keep = |name: &str| wildcard || names.contains(name);
            let recorded = match snap.as_ref() {
                Some(snap) => st.known.announce(ty, snap, scope, &announced, keep),
                None => false,
            };
            if !recorded {
                for (name, version) in announced {
                    if keep(&name) {
                        let name = intern(snap.as_deref(), ty, name);
                        let held = Known::announced(name.clone(), version.into());
                        st.known.set(&name, Some(held));
                    }
                }
            }
        }
        // The end of a wildcard can leave known names outside the
        // subscription; a plain ACK must not cost a walk over everything.
        if !st.wildcard && was_wildcard {
            let names = &st.names;
            st.known.retain(|name| names.contains(name));
        }
    }
}

/// A name as a shared string: the snapshot's own when it has the resource,
/// so that a subscription to what exists costs no copy of the name.
/// Whether `names` (sorted here if they are not) are exactly `current`.
fn repeats(current: &BTreeSet<Name>, names: &mut [String]) -> bool {
    if names.len() != current.len() {
        return false;
    }
    if !names.is_sorted() {
        names.sort_unstable();
    }
    names.iter().zip(current).all(|(a, b)| a.as_str() == &**b)
}

/// The set of `names` (sorted, no duplicates) as shared strings. The
/// streams of one group subscribe to the same names: take the set another
/// stream already has, else intern the names into one (the snapshot's own
/// strings, found by walking the names with the snapshot's resources when
/// they are many, by a lookup each when few).
fn name_set(snap: Option<&Snapshot>, ty: TypeUrl, names: Vec<String>) -> Arc<BTreeSet<Name>> {
    if let Some(set) = pooled(&names) {
        return set;
    }
    let set = match snap {
        Some(s) if names.len() * 8 >= s.resources(ty).len() => names
            .into_iter()
            .merge_join_by(s.resources(ty).values(), |n, r| n.as_str().cmp(&r.name))
            .filter_map(|e| match e {
                EitherOrBoth::Left(n) => Some(Name::from(n)),
                EitherOrBoth::Both(_, r) => Some(r.key.clone()),
                EitherOrBoth::Right(_) => None,
            })
            .collect(),
        _ => names.into_iter().map(|n| intern(snap, ty, n)).collect(),
    };
    share(set)
}

fn intern(snap: Option<&Snapshot>, ty: TypeUrl, name: String) -> Name {
    match snap.and_then(|s| s.get(ty, &name)) {
        Some(r) => r.key.clone(),
        None => Name::from(name),
    }
}

/// The pool's live set of exactly `names` (sorted, no duplicates), if a
/// stream has one: taken without interning or collecting anything.
fn pooled(names: &[String]) -> Option<Arc<BTreeSet<Name>>> {
    if names.len() < SHARE_MIN {
        return None;
    }
    let pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let hash = hash_names(&pool.hasher, names.iter().map(String::as_str));
    pool.sets
        .get(&hash)?
        .iter()
        .filter_map(Weak::upgrade)
        .find(|set| set.len() == names.len() && set.iter().zip(names).all(|(a, b)| **a == **b))
}

/// The pool's hash of a set of names, given in order.
fn hash_names<'a>(hasher: &RandomState, names: impl Iterator<Item = &'a str>) -> u64 {
    let mut h = hasher.build_hasher();
    for n in names {
        h.write(n.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// Below this many names a set is not worth a look-up in the pool.
const SHARE_MIN: usize = 16;

/// Subscription sets in use, by content hash. Proxies of one group
/// subscribe to the same names (Envoy asks for the endpoints of every EDS
/// cluster it has), so at M1 each delta stream would otherwise keep its own
/// copy of 3,000 names. Holds no set alive; dead entries are swept as the
/// pool grows.
struct Pool {
    hasher: RandomState,
    sets: HashMap<u64, Vec<Weak<BTreeSet<Name>>>>,
    sweep_at: usize,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(|| {
    Mutex::new(Pool {
        hasher: RandomState::new(),
        sets: HashMap::new(),
        sweep_at: 64,
    })
});

/// `names` as a shared set: the pool's copy when a live stream already
/// has an equal set, else `names`, registered for the streams after it.
/// Only memory changes: an equal set is the same set, and a stream that
/// changes it later gets its own copy first (`Arc::make_mut`).
pub(super) fn share(names: BTreeSet<Name>) -> Arc<BTreeSet<Name>> {
    if names.len() < SHARE_MIN {
        return Arc::new(names);
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let hash = hash_names(&pool.hasher, names.iter().map(|n| &**n));
    let bucket = pool.sets.entry(hash).or_default();
    bucket.retain(|w| w.strong_count() > 0);
    if let Some(same) = bucket
        .iter()
        .filter_map(Weak::upgrade)
        .find(|s| **s == names)
    {
        return same;
    }
    let names = Arc::new(names);
    bucket.push(Arc::downgrade(&names));
    if pool.sets.len() >= pool.sweep_at {
        pool.sets.retain(|_, b| {
            b.retain(|w| w.strong_count() > 0);
            !b.is_empty()
        });
        pool.sweep_at = (pool.sets.len() * 2).max(64);
    }
    names
}
