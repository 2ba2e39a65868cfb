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
//! 3. with all of that, the routes.
//!
//! Layers 1 and 2 are checked at once. Inside a layer the pieces are
//! bisected; both halves run at once, so a culprit among `n` pieces costs
//! about `log2(n)` rounds of two Envoy runs. This runs only after a
//! refusal: accepted config costs one run.

use std::ops::Range;

use super::parts::{Item, Parts};
use super::{EnvoyCheck, Verdict};

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
            return Ok(Some(self.bisect(parts, &[], &singles, m).await?));
        }
        if let Verdict::Refused(m) = second {
            let (unit, m) = self.bisect(parts, &foundation, &listeners, m).await?;
            let Item::Listener(l) = unit else {
                return Ok(Some((unit, m)));
            };
            let mut base = foundation;
            base.push(unit);
            if let Verdict::Refused(m) = self.probe_parts(parts, &base, &[], 0..0).await? {
                return Ok(Some((unit, m)));
            }
            let hosts = parts.virtual_hosts_of(l);
            return Ok(Some(self.bisect(parts, &base, &hosts, m).await?));
        }
        // Layers 1 and 2 pass, so the routes are what `whole` is about.
        let routes = parts.route_units();
        if routes.is_empty() {
            return Ok(None);
        }
        let mut base = foundation;
        base.extend(listeners.into_iter().flatten());
        Ok(Some(self.bisect(parts, &base, &routes, whole).await?))
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
