//! What the proxy holds of one type, stored as a base plus exceptions.
//!
//! An up-to-date proxy holds exactly its snapshot's resources of the type
//! within its subscription, so instead of one entry per held resource a
//! stream keeps a *base* — "the resources of snapshot S in scope Q" (two
//! shared pointers) — and a sparse map of *exceptions*: the names whose
//! held value differs from the base (in flight, NACKed, announced on
//! reconnect, just subscribed, left the snapshot). An idle stream that is
//! up to date costs O(1) per type, whatever the size of the config.
//!
//! The held set it represents is exactly the map a stream used to keep
//! (name → what was sent or announced); every reader goes through
//! [`Held::get`] and [`Held::iter`], which merge base and exceptions.
//! When the session takes a new snapshot the base moves with it
//! ([`Held::advance`]): each name that differs between the two snapshots
//! first becomes an exception keeping the old value, so what the proxy
//! holds does not change. Writes keep the exception map minimal (a value
//! equal to the base's is not stored), and when exceptions pile up (the
//! first push, a changed subscription) [`Held::compact`] rebuilds the base
//! from the current snapshot and scope.

use std::collections::{btree_map, btree_set, BTreeMap, HashMap};
use std::sync::Arc;

use itertools::{EitherOrBoth, Itertools};

use super::{Announced, Known, Name};
use crate::xds::resource::{Resource, Snapshot, TypeUrl};

/// The names a base covers: every name, or a subscription set (frozen:
/// later subscription changes are written as exceptions).
#[derive(Clone, Debug)]
pub(super) enum Scope {
    All,
    Names(Arc<std::collections::BTreeSet<Name>>),
}

impl Scope {
    fn contains(&self, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Names(names) => names.contains(name),
        }
    }
}

#[derive(Debug)]
struct Base {
    ty: TypeUrl,
    snap: Arc<Snapshot>,
    scope: Scope,
}

/// The resources a base covers, in name order. For a subscription scope
/// the snapshot's resources and the names are walked together (both are
/// sorted) rather than each resource looked up in the names: at M1 an EDS
/// scope of 1,000 names costs 2,000 steps instead of ~10,000 string
/// comparisons.
pub(super) enum BaseIter<'a> {
    All(btree_map::Values<'a, String, Arc<Resource>>),
    Names {
        resources: std::iter::Peekable<btree_map::Values<'a, String, Arc<Resource>>>,
        names: std::iter::Peekable<btree_set::Iter<'a, Name>>,
    },
}

impl<'a> BaseIter<'a> {
    /// The resources of `resources` named in `names`, in name order,
    /// walking both together.
    pub(super) fn within(
        resources: &'a BTreeMap<String, Arc<Resource>>,
        names: &'a std::collections::BTreeSet<Name>,
    ) -> BaseIter<'a> {
        BaseIter::Names {
            resources: resources.values().peekable(),
            names: names.iter().peekable(),
        }
    }

    fn new(b: &'a Base) -> BaseIter<'a> {
        let resources = b.snap.resources(b.ty).values();
        match &b.scope {
            Scope::All => BaseIter::All(resources),
            Scope::Names(names) => BaseIter::Names {
                resources: resources.peekable(),
                names: names.iter().peekable(),
            },
        }
    }
}

impl<'a> Iterator for BaseIter<'a> {
    type Item = &'a Arc<Resource>;

    fn next(&mut self) -> Option<&'a Arc<Resource>> {
        match self {
            BaseIter::All(resources) => resources.next(),
            BaseIter::Names { resources, names } => loop {
                let (r, n) = (resources.peek()?, names.peek()?);
                match r.name.as_str().cmp(&***n) {
                    std::cmp::Ordering::Less => {
                        resources.next();
                    }
                    std::cmp::Ordering::Greater => {
                        names.next();
                    }
                    std::cmp::Ordering::Equal => {
                        names.next();
                        return resources.next();
                    }
                }
            },
        }
    }
}

/// Below this many exceptions a stream does not rebuild its base.
const COMPACT_MIN: usize = 32;

#[derive(Debug)]
pub(super) struct Held {
    base: Option<Base>,
    /// Names whose held value is not the base's: `None` holds nothing.
    except: BTreeMap<Name, Option<Known>>,
    /// Rebuild the base once `except` has more entries than this.
    compact_at: usize,
}

/// One held resource, borrowed from the base's snapshot or an exception.
#[derive(Clone, Copy, Debug)]
pub(super) enum HeldRef<'a> {
    Sent(&'a Arc<Resource>),
    Announced(&'a Announced),
}

impl<'a> HeldRef<'a> {
    fn of(k: &'a Known) -> HeldRef<'a> {
        match k {
            Known::Sent(r) => HeldRef::Sent(r),
            Known::Announced(a) => HeldRef::Announced(a),
        }
    }

    pub(super) fn name(self) -> &'a str {
        match self {
            HeldRef::Sent(r) => &r.name,
            HeldRef::Announced(a) => &a.name,
        }
    }

    pub(super) fn key(self) -> &'a Name {
        match self {
            HeldRef::Sent(r) => &r.key,
            HeldRef::Announced(a) => &a.name,
        }
    }

    pub(super) fn version(self) -> &'a str {
        match self {
            HeldRef::Sent(r) => &r.version,
            HeldRef::Announced(a) => &a.version,
        }
    }

    /// The resource itself, when it was sent on this stream.
    pub(super) fn resource(self) -> Option<&'a Arc<Resource>> {
        match self {
            HeldRef::Sent(r) => Some(r),
            HeldRef::Announced(_) => None,
        }
    }

    fn to_known(self) -> Known {
        match self {
            HeldRef::Sent(r) => Known::Sent(r.clone()),
            HeldRef::Announced(a) => Known::Announced(Box::new(a.clone())),
        }
    }
}

/// The resources whose name is in only one of the two maps or whose
/// version differs (one of each pair): one merge walk over both.
fn differing<'a>(
    old: &'a BTreeMap<String, Arc<Resource>>,
    new: &'a BTreeMap<String, Arc<Resource>>,
) -> impl Iterator<Item = &'a Arc<Resource>> + 'a {
    let (mut a, mut b) = (old.values().peekable(), new.values().peekable());
    std::iter::from_fn(move || loop {
        let r = match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (Some(x), Some(y)) => match x.name.cmp(&y.name) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    let same = x.version == y.version;
                    let r = a.next();
                    b.next();
                    if same {
                        continue;
                    }
                    r
                }
            },
        };
        return r;
    })
}

/// Whether holding `a` is holding `b`: the same version of the name
/// (versions are content hashes, so the same version is the same bytes).
fn same(a: Option<HeldRef<'_>>, b: Option<HeldRef<'_>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.version() == b.version(),
        _ => false,
    }
}

impl Default for Held {
    fn default() -> Held {
        Held {
            base: None,
            except: BTreeMap::new(),
            compact_at: COMPACT_MIN,
        }
    }
}

impl Held {
    /// What the base says the proxy holds of `name`.
    fn in_base(&self, name: &str) -> Option<HeldRef<'_>> {
        let base = self.base.as_ref()?;
        if !base.scope.contains(name) {
            return None;
        }
        base.snap.get(base.ty, name).map(HeldRef::Sent)
    }

    pub(super) fn get(&self, name: &str) -> Option<HeldRef<'_>> {
        match self.except.get(name) {
            Some(k) => k.as_ref().map(HeldRef::of),
            None => self.in_base(name),
        }
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Everything held, in name order.
    pub(super) fn iter(&self) -> impl Iterator<Item = HeldRef<'_>> + '_ {
        self.tagged().map(|(h, _)| h)
    }

    /// Everything held whose name `in_scope` accepts, in name order. A name
    /// held through a base whose scope is `scope` needs no check.
    pub(super) fn iter_within<'a>(
        &'a self,
        scope: &Scope,
        in_scope: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = HeldRef<'a>> + 'a {
        let base_in_scope = self.base.as_ref().is_some_and(|b| match (&b.scope, scope) {
            (_, Scope::All) => true,
            (Scope::Names(a), Scope::Names(b)) => Arc::ptr_eq(a, b),
            (Scope::All, Scope::Names(_)) => false,
        });
        self.tagged()
            .filter(move |(h, from_base)| (*from_base && base_in_scope) || in_scope(h.name()))
            .map(|(h, _)| h)
    }

    /// Everything held, in name order, each with whether it is the base's.
    fn tagged(&self) -> impl Iterator<Item = (HeldRef<'_>, bool)> + '_ {
        let mut base = self
            .base
            .as_ref()
            .map(BaseIter::new)
            .into_iter()
            .flatten()
            .peekable();
        let mut except = self.except.iter().peekable();
        std::iter::from_fn(move || loop {
            let from_base = match (base.peek(), except.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(b), Some((e, _))) => b.name.as_str() < &***e,
            };
            if from_base {
                return base.next().map(|r| (HeldRef::Sent(r), true));
            }
            let (e, k) = except.next()?;
            if base.peek().is_some_and(|b| b.name.as_str() == &**e) {
                base.next();
            }
            if let Some(k) = k {
                return Some((HeldRef::of(k), false));
            }
        })
    }

    /// Records that the proxy now holds `value` for `name`; returns what it
    /// held before.
    pub(super) fn set(&mut self, name: &Name, value: Option<Known>) -> Option<Known> {
        // The base is looked up once, for what was held and for whether
        // `value` needs an exception.
        let base = self.in_base(name);
        let prev = match self.except.get(&**name) {
            Some(k) => k.as_ref().map(HeldRef::of),
            None => base,
        }
        .map(HeldRef::to_known);
        if same(base, value.as_ref().map(HeldRef::of)) {
            self.except.remove(&**name);
        } else {
            self.except.insert(name.clone(), value);
        }
        prev
    }

    /// The proxy, which held nothing of this type, now holds `sent`. When
    /// that is exactly `snap`'s resources of `ty` in `scope` (a stream's
    /// first response, usually), they become the base with no exceptions
    /// and this returns true: one pass over the names instead of an
    /// exception per name and a rebuild. Otherwise nothing changes.
    pub(super) fn hold_first(
        &mut self,
        ty: TypeUrl,
        snap: &Arc<Snapshot>,
        scope: Scope,
        sent: &[Arc<Resource>],
    ) -> bool {
        if !self.is_empty() {
            return false;
        }
        let base = Base {
            ty,
            snap: snap.clone(),
            scope,
        };
        // The base's resources, walked with the names (no lookups).
        let mut covered = BaseIter::new(&base);
        let mut sent = sent.iter();
        loop {
            match (covered.next(), sent.next()) {
                (None, None) => break,
                (Some(b), Some(s)) if Arc::ptr_eq(b, s) => {}
                _ => return false,
            }
        }
        *self = Held {
            base: Some(base),
            except: BTreeMap::new(),
            compact_at: COMPACT_MIN,
        };
        true
    }

    /// The proxy, which held nothing of this type, announces on a delta
    /// reconnect that it holds `announced` (name → version). The base
    /// becomes `snap`'s resources of `ty` in `scope` and only the names
    /// whose announced version differs from it are exceptions: one walk
    /// over the base with a hash lookup per name, where storing each
    /// announced name and rebuilding would search trees several times per
    /// name (a reconnect storm pays this once per stream and type). An
    /// announced name the base does not cover is held only if `keep`
    /// accepts it. Returns false, changing nothing, if something is held
    /// already.
    pub(super) fn announce(
        &mut self,
        ty: TypeUrl,
        snap: &Arc<Snapshot>,
        scope: Scope,
        announced: &HashMap<String, String>,
        keep: impl Fn(&str) -> bool,
    ) -> bool {
        if !self.is_empty() {
            return false;
        }
        let base = Base {
            ty,
            snap: snap.clone(),
            scope,
        };
        let mut except = BTreeMap::new();
        let mut covered = 0;
        for r in BaseIter::new(&base) {
            match announced.get(r.name.as_str()) {
                // In the base, not held.
                None => {
                    except.insert(r.key.clone(), None);
                }
                // Held; an exception only if the version differs.
                Some(version) => {
                    covered += 1;
                    if r.version != *version {
                        let held = Known::announced(r.key.clone(), version.as_str().into());
                        except.insert(r.key.clone(), Some(held));
                    }
                }
            }
        }
        if covered < announced.len() {
            // Held outside the base (a resource that has left the snapshot
            // since the proxy got it, say): rare, so looked up.
            let in_base = |name: &str| base.scope.contains(name) && snap.get(ty, name).is_some();
            for (name, version) in announced {
                if !in_base(name) && keep(name) {
                    let name = Name::from(name.as_str());
                    let held = Known::announced(name.clone(), version.as_str().into());
                    except.insert(name, Some(held));
                }
            }
        }
        *self = Held {
            base: Some(base),
            compact_at: (except.len() * 2).max(COMPACT_MIN),
            except,
        };
        true
    }

    /// The proxy no longer holds `name`; returns what it held.
    pub(super) fn remove(&mut self, name: &str) -> Option<Known> {
        let key = self.get(name)?.key().clone();
        self.set(&key, None)
    }

    /// Keeps only the held names for which `keep` is true.
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<Name> = self
            .iter()
            .filter(|h| !keep(h.name()))
            .map(|h| h.key().clone())
            .collect();
        for name in gone {
            self.set(&name, None);
        }
    }

    /// The session moves from its snapshot to `snap`; `changed` are the
    /// names of this type that differ between the two, when known (else
    /// every name is compared). What the proxy holds does not change.
    pub(super) fn advance(&mut self, snap: &Arc<Snapshot>, changed: Option<&[String]>) {
        let Some(base) = self.base.as_ref() else {
            return;
        };
        if Arc::ptr_eq(&base.snap, snap) {
            return;
        }
        let old = base.snap.resources(base.ty);
        let new = snap.resources(base.ty);
        // Each name in scope whose old and new base values differ keeps its
        // old value (what the base held) as an exception, unless it is one
        // already: one lookup in each map per name.
        let pin = |name: &str, except: &mut BTreeMap<Name, Option<Known>>| {
            if !base.scope.contains(name) {
                return;
            }
            let (was, now) = (old.get(name), new.get(name));
            let Some(key) = was.or(now).map(|r| &r.key) else {
                return;
            };
            if same(was.map(HeldRef::Sent), now.map(HeldRef::Sent)) {
                return;
            }
            if let btree_map::Entry::Vacant(slot) = except.entry(key.clone()) {
                slot.insert(was.map(|r| Known::Sent(r.clone())));
            }
        };
        match changed {
            Some(names) => names.iter().for_each(|n| pin(n, &mut self.except)),
            None => differing(old, new).for_each(|r| pin(&r.name, &mut self.except)),
        }
        if let Some(base) = self.base.as_mut() {
            base.snap = snap.clone();
        }
    }

    /// Rebuilds the base from `snap` and `scope` once exceptions pile up
    /// (see [`Held::rebuild`]). Amortised: the next rebuild waits until
    /// the exceptions left after this one have doubled.
    pub(super) fn compact(&mut self, ty: TypeUrl, snap: &Arc<Snapshot>, scope: Scope) {
        if self.except.len() > self.compact_at {
            self.rebuild(ty, snap, scope);
            self.compact_at = (self.except.len() * 2).max(COMPACT_MIN);
        }
    }

    /// Makes "`snap`'s resources of `ty` in `scope`" the base, keeping what
    /// the proxy holds: afterwards only the names that really differ from
    /// it are exceptions. What is held and the new base are walked
    /// together (both in name order) and the exceptions laid down at once:
    /// a stream behind a churning registry rebuilds often, and a lookup
    /// and insert per name cost it most of its CPU (B2).
    pub(super) fn rebuild(&mut self, ty: TypeUrl, snap: &Arc<Snapshot>, scope: Scope) {
        let base = Base {
            ty,
            snap: snap.clone(),
            scope,
        };
        let except: BTreeMap<Name, Option<Known>> = self
            .iter()
            .merge_join_by(BaseIter::new(&base), |h, r| h.name().cmp(r.name.as_str()))
            .filter_map(|e| match e {
                // Held, not in the base.
                EitherOrBoth::Left(h) => Some((h.key().clone(), Some(h.to_known()))),
                // In the base, not held.
                EitherOrBoth::Right(r) => Some((r.key.clone(), None)),
                EitherOrBoth::Both(h, r) => {
                    (h.version() != r.version).then(|| (h.key().clone(), Some(h.to_known())))
                }
            })
            .collect();
        *self = Held {
            base: Some(base),
            except,
            compact_at: self.compact_at,
        };
    }

    /// How many names are stored as exceptions (what the stream pays for).
    #[cfg(test)]
    pub(super) fn exceptions(&self) -> usize {
        self.except.len()
    }
}
