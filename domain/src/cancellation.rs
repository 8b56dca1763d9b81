//! Cancellation policies: how much of a paid stay a guest gets back, by how many days before
//! check-in they cancel. The tiers are computed here and executed by the payment flow.
use crate::values::Kzt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancellationPolicy {
    /// Full refund up to 1 day before check-in, half after that.
    #[default]
    Flexible,
    /// Full refund up to 5 days before, half up to 1 day before, nothing after.
    Moderate,
    /// Full refund up to 14 days before, half up to 7 days before, nothing after.
    Strict,
}

/// One tier: cancelling at least `min_days_before` days before check-in refunds `percent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RefundTier {
    pub min_days_before: i64,
    pub percent: u8,
}

impl CancellationPolicy {
    pub fn parse(s: &str) -> Option<CancellationPolicy> {
        match s {
            "flexible" => Some(CancellationPolicy::Flexible),
            "moderate" => Some(CancellationPolicy::Moderate),
            "strict" => Some(CancellationPolicy::Strict),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CancellationPolicy::Flexible => "flexible",
            CancellationPolicy::Moderate => "moderate",
            CancellationPolicy::Strict => "strict",
        }
    }

    /// Tiers from the most generous down; the first whose threshold is met applies.
    pub fn tiers(self) -> &'static [RefundTier] {
        const FLEXIBLE: &[RefundTier] = &[
            RefundTier {
                min_days_before: 1,
                percent: 100,
            },
            RefundTier {
                min_days_before: i64::MIN,
                percent: 50,
            },
        ];
        const MODERATE: &[RefundTier] = &[
            RefundTier {
                min_days_before: 5,
                percent: 100,
            },
            RefundTier {
                min_days_before: 1,
                percent: 50,
            },
            RefundTier {
                min_days_before: i64::MIN,
                percent: 0,
            },
        ];
        const STRICT: &[RefundTier] = &[
            RefundTier {
                min_days_before: 14,
                percent: 100,
            },
            RefundTier {
                min_days_before: 7,
                percent: 50,
            },
            RefundTier {
                min_days_before: i64::MIN,
                percent: 0,
            },
        ];
        match self {
            CancellationPolicy::Flexible => FLEXIBLE,
            CancellationPolicy::Moderate => MODERATE,
            CancellationPolicy::Strict => STRICT,
        }
    }

    /// The refund a guest gets for `paid` when cancelling `days_before` days before check-in
    /// (negative once the stay has begun). Rounded down to whole tenge.
    pub fn guest_refund(self, paid: Kzt, days_before: i64) -> Kzt {
        let percent = self
            .tiers()
            .iter()
            .find(|t| days_before >= t.min_days_before)
            .map_or(0, |t| t.percent);
        Kzt(paid.0 * i64::from(percent) / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flexible_tiers() {
        let p = CancellationPolicy::Flexible;
        assert_eq!(p.guest_refund(Kzt(10_001), 30), Kzt(10_001));
        assert_eq!(p.guest_refund(Kzt(10_001), 1), Kzt(10_001));
        assert_eq!(p.guest_refund(Kzt(10_001), 0), Kzt(5_000));
        assert_eq!(p.guest_refund(Kzt(10_001), -2), Kzt(5_000));
    }

    #[test]
    fn moderate_tiers() {
        let p = CancellationPolicy::Moderate;
        assert_eq!(p.guest_refund(Kzt(10_000), 5), Kzt(10_000));
        assert_eq!(p.guest_refund(Kzt(10_000), 4), Kzt(5_000));
        assert_eq!(p.guest_refund(Kzt(10_000), 1), Kzt(5_000));
        assert_eq!(p.guest_refund(Kzt(10_000), 0), Kzt(0));
    }

    #[test]
    fn strict_tiers() {
        let p = CancellationPolicy::Strict;
        assert_eq!(p.guest_refund(Kzt(10_000), 14), Kzt(10_000));
        assert_eq!(p.guest_refund(Kzt(10_000), 13), Kzt(5_000));
        assert_eq!(p.guest_refund(Kzt(10_000), 7), Kzt(5_000));
        assert_eq!(p.guest_refund(Kzt(10_000), 6), Kzt(0));
    }
}
