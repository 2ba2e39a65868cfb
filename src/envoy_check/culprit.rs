//! Narrowing a refusal down to the part Envoy refuses.
//!
//! Envoy stops at its first error, and its message does not always name
//! the resource (an RE2 program-size error quotes only the regex). So a
//! refused batch is checked again in pieces, in layers where each layer's
//! base is known to pass:
//! 1. the runtime layers, secrets and clusters on their own;
//! 2. with them, the listeners and their virtual hosts without routes —
//!    then, for the listener found, the listener without virtual hosts
//!    (else the virtual host at fault);
//! 3. the routes, with the listeners and virtual hosts (and without the
//!    clusters, unless the refusal needs them: route → cluster references
//!    are compile's to check, and the clusters are most of Envoy's work).
//!
//! Layers 1 and 2 are checked at once. Inside a layer, the pieces that
//! hold a value Envoy's message quotes are tried first (an RE2 error
//! quotes the regex); then the pieces are bisected, both halves at once,
//! so a culprit among `n` pieces costs about `log2(n)` rounds of two
//! Envoy runs. This runs only after a refusal: accepted config costs one
//! run.

use std::ops::Range;

use super::parts::{Item, Parts};
use super::{EnvoyCheck, Verdict};

/// Shorter quoted values (`'*'`, a port) are in too many resources to
/// point at one.
const MIN_QUOTE: usize = 4;

impl EnvoyCheck {
    /// The part of `parts` Envoy refuses and its message about that part;
    /// `None` when no single part is refused on its own. `whole` is
    /// Envoy's message about all of `parts`.
    pub(super) async fn culprit(
        &self,
        parts: &Parts,
        whole: String,
    ) -> Result<Option<(Item, String)>, String> {
        let foundation = parts.foundation();
        let singles: Vec<Vec<Item>> = foundation.iter().map(|i| vec![*i]).collect();
        let listeners = parts.listener_units();
        // Layers 1 and 2 at once: layer 2's verdict counts only if layer 1
        // passes.
        let (first, second) = tokio::try_join!(
            self.probe_parts(parts, &[], &singles, 0..singles.len()),
            self.probe_parts(parts, &foundation, &listeners, 0..listeners.len()),
        )?;
        if let Verdict::Refused(m) = first {
            return Ok(Some(self.narrow(parts, &[], &singles, m).await?));
        }
        if let Verdict::Refused(m) = second {
            let (unit, m) = self.narrow(parts, &foundation, &listeners, m).await?;
            let Item::Listener(l) = unit else {
                return Ok(Some((unit, m)));
            };
            let mut base = foundation;
            base.push(unit);
            if let Verdict::Refused(m) = self.probe_parts(parts, &base, &[], 0..0).await? {
                return Ok(Some((unit, m)));
            }
            let hosts = parts.virtual_hosts_of(l);
            return Ok(Some(self.narrow(parts, &base, &hosts, m).await?));
        }
        // Layers 1 and 2 pass, so the routes are what `whole` is about.
        // Cut without the clusters, each run is cheaper (they are most of
        // Envoy's work); only a refusal that needs them keeps them. This
        // relies on listeners naming no cluster (none of the HTTP filters
        // compile configures does), so that they pass without them.
        let routes = parts.route_units();
        if routes.is_empty() {
            return Ok(None);
        }
        let listeners: Vec<Item> = listeners.into_iter().flatten().collect();
        let lean = self
            .probe_parts(parts, &listeners, &routes, 0..routes.len())
            .await?;
        if let Verdict::Refused(m) = lean {
            return Ok(Some(self.narrow(parts, &listeners, &routes, m).await?));
        }
        let mut base = foundation;
        base.extend(listeners);
        Ok(Some(self.narrow(parts, &base, &routes, whole).await?))
    }

    /// [`Self::bisect`], trying first the units that hold a value Envoy's
    /// message quotes (`'...'`: the regex, the name at fault), if they are
    /// fewer than all: one run instead of `log2(n)` rounds when Envoy says
    /// what it refuses.
    async fn narrow(
        &self,
        parts: &Parts,
        base: &[Item],
        units: &[Vec<Item>],
        message: String,
    ) -> Result<(Item, String), String> {
        let quoted: Vec<&str> = message
            .split('\'')
            .skip(1)
            .step_by(2)
            .filter(|q| q.len() >= MIN_QUOTE)
            .collect();
        let suspects: Vec<Vec<Item>> = units
            .iter()
            .filter(|unit| {
                let holds = |q: &&str| unit.iter().any(|i| parts.holds(*i, q.as_bytes()));
                quoted.iter().any(holds)
            })
            .cloned()
            .collect();
        if !suspects.is_empty() && suspects.len() < units.len() {
            let all = 0..suspects.len();
            if let Verdict::Refused(m) = self.probe_parts(parts, base, &suspects, all).await? {
                return self.bisect(parts, base, &suspects, m).await;
            }
        }
        self.bisect(parts, base, units, message).await
    }

    /// The first item of the unit of `units` that `base` plus that unit is
    /// refused for, and Envoy's message. `base` with every unit is known
    /// to be refused with `message`; when no half is refused alone, the
    /// pieces are refused only together and the first one is named.
    async fn bisect(
        &self,
        parts: &Parts,
        base: &[Item],
        units: &[Vec<Item>],
        mut message: String,
    ) -> Result<(Item, String), String> {
        let (mut lo, mut hi) = (0, units.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let (left, right) = tokio::try_join!(
                self.probe_parts(parts, base, units, lo..mid),
                self.probe_parts(parts, base, units, mid..hi),
            )?;
            match (left, right) {
                (Verdict::Refused(m), _) => (hi, message) = (mid, m),
                (Verdict::Accepted, Verdict::Refused(m)) => (lo, message) = (mid, m),
                (Verdict::Accepted, Verdict::Accepted) => break,
            }
        }
        let first = units
            .get(lo)
            .and_then(|u| u.first())
            .copied()
            .ok_or_else(|| "nothing left to check in a refused set".to_owned())?;
        Ok((first, message))
    }

    /// Envoy's verdict on `base` plus `units[range]`.
    async fn probe_parts(
        &self,
        parts: &Parts,
        base: &[Item],
        units: &[Vec<Item>],
        range: Range<usize>,
    ) -> Result<Verdict, String> {
        let mut items = base.to_vec();
        items.extend(units[range].iter().flatten());
        self.probe(&parts.bootstrap(&items)).await
    }
}
