//! Envoy's fractional percents as the filters draw them: a
//! `FractionalPercent` (or a `RuntimeFractionalPercent`'s default) and
//! `featureEnabled`'s draw. CORS, the local rate limit and fault injection
//! decode their percents into a [`Percent`].

use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;

/// A `FractionalPercent` (or a `RuntimeFractionalPercent`'s default: the
/// simulator has no runtime, so runtime keys never override it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percent {
    numerator: u64,
    denominator: u64,
}

impl Percent {
    pub const ALL: Percent = Percent {
        numerator: 1,
        denominator: 1,
    };

    pub fn of(p: &FractionalPercent) -> Percent {
        let denominator = match DenominatorType::try_from(p.denominator) {
            Ok(DenominatorType::TenThousand) => 10_000,
            Ok(DenominatorType::Million) => 1_000_000,
            _ => 100,
        };
        Percent {
            numerator: u64::from(p.numerator),
            denominator,
        }
    }

    /// Envoy's `featureEnabled`: a random value `% denominator < numerator`.
    pub fn hit(&self, rng: &mut Xoshiro256PlusPlus) -> bool {
        if self.numerator >= self.denominator {
            return true;
        }
        self.numerator > 0 && rng.random_range(0..self.denominator) < self.numerator
    }
}

/// A `RuntimeFractionalPercent`'s default, or `absent` when unset.
pub(super) fn runtime_percent(
    p: Option<&envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent>,
    absent: Option<Percent>,
) -> Option<Percent> {
    match p {
        Some(p) => Some(p.default_value.as_ref().map_or(
            Percent {
                numerator: 0,
                denominator: 100,
            },
            Percent::of,
        )),
        None => absent,
    }
}
