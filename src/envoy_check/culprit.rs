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
//! Inside a layer the pieces are bisected; both halves run at once, so a
//! culprit among `n` pieces costs about `log2(n)` rounds of two Envoy
//! runs. This runs only after a refusal: accepted config costs one run.

use std::ops::Range;

use super::parts::{Item, Parts};
use super::{EnvoyCheck, Verdict};

impl EnvoyCheck {
    /// The part of `parts` Envoy refuses and its message about that part;
    /// `None` when no single part is refused on its own (the message of
    /// the whole batch then stands).
    pub(super) async fn culprit(&self, parts: &Parts) -> Result<Option<(Item, String)>, String> {
        let foundation = parts.foundation();
        let singles: Vec<Vec<Item>> = foundation.iter().map(|i| vec![*i]).collect();
        if let Verdict::Refused(m) = self
            .probe_parts(parts, &[], &singles, 0..singles.len())
            .await?
        {
            return Ok(Some(self.bisect(parts, &[], &singles, m).await?));
        }

        let listeners = parts.listener_units();
        let verdict = self
            .probe_parts(parts, &foundation, &listeners, 0..listeners.len())
            .await?;
        if let Verdict::Refused(m) = verdict {
            let (unit, m) = self.bisect(parts, &foundation, &listeners, m).await?;
            let Item::Listener(l) = unit else {
                return Ok(Some((unit, m)));
            };
            let mut base = foundation.clone();
            base.push(unit);
            if let Verdict::Refused(m) = self.probe_parts(parts, &base, &[], 0..0).await? {
                return Ok(Some((unit, m)));
            }
            let hosts = parts.virtual_hosts_of(l);
            return Ok(Some(self.bisect(parts, &base, &hosts, m).await?));
        }

        let mut base = foundation;
        base.extend(listeners.into_iter().flatten());
        let routes = parts.route_units();
        match self
            .probe_parts(parts, &base, &routes, 0..routes.len())
            .await?
        {
            Verdict::Refused(m) => Ok(Some(self.bisect(parts, &base, &routes, m).await?)),
            Verdict::Accepted => Ok(None),
        }
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
