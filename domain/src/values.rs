//! Value objects: each one is valid by construction.
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whole tenge. Money never has fractions in ZhilyeGO.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Kzt(pub i64);

impl Kzt {
    pub const ZERO: Kzt = Kzt(0);

    /// A price or fee: zero or more, below a sanity ceiling of 100 million tenge.
    pub fn parse_amount(value: i64) -> Result<Kzt, ValueError> {
        if value < 0 {
            return Err(ValueError::NegativeAmount);
        }
        if value > 100_000_000 {
            return Err(ValueError::AmountTooLarge);
        }
        Ok(Kzt(value))
    }

    pub fn value(self) -> i64 {
        self.0
    }
}

impl std::ops::Add for Kzt {
    type Output = Kzt;
    fn add(self, rhs: Kzt) -> Kzt {
        Kzt(self.0 + rhs.0)
    }
}

impl std::iter::Sum for Kzt {
    fn sum<I: Iterator<Item = Kzt>>(iter: I) -> Kzt {
        Kzt(iter.map(|k| k.0).sum())
    }
}

impl fmt::Display for Kzt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KZT", self.0)
    }
}

/// A stay or a block: the half-open range of nights `[check_in, check_out)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawRange", into = "RawRange")]
pub struct DateRange {
    check_in: NaiveDate,
    check_out: NaiveDate,
}

#[derive(Serialize, Deserialize)]
struct RawRange {
    check_in: NaiveDate,
    check_out: NaiveDate,
}

impl TryFrom<RawRange> for DateRange {
    type Error = ValueError;
    fn try_from(raw: RawRange) -> Result<Self, ValueError> {
        DateRange::parse(raw.check_in, raw.check_out)
    }
}

impl From<DateRange> for RawRange {
    fn from(r: DateRange) -> RawRange {
        RawRange {
            check_in: r.check_in,
            check_out: r.check_out,
        }
    }
}

impl DateRange {
    /// `check_out` must come after `check_in`: a stay has at least one night.
    pub fn parse(check_in: NaiveDate, check_out: NaiveDate) -> Result<DateRange, ValueError> {
        if check_out <= check_in {
            return Err(ValueError::EmptyRange);
        }
        Ok(DateRange {
            check_in,
            check_out,
        })
    }

    pub fn check_in(&self) -> NaiveDate {
        self.check_in
    }

    pub fn check_out(&self) -> NaiveDate {
        self.check_out
    }

    pub fn nights(&self) -> u32 {
        (self.check_out - self.check_in).num_days() as u32
    }

    /// True when the two ranges share at least one night. Adjacent stays (one's check-out is
    /// the other's check-in) do not overlap.
    pub fn overlaps(&self, other: &DateRange) -> bool {
        self.check_in < other.check_out && other.check_in < self.check_out
    }

    /// Every night of the range, in order.
    pub fn each_night(&self) -> impl Iterator<Item = NaiveDate> {
        let end = self.check_out;
        self.check_in.iter_days().take_while(move |d| *d < end)
    }
}

impl fmt::Display for DateRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.check_in, self.check_out)
    }
}

/// A point on the map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawLocation", into = "RawLocation")]
pub struct Location {
    lat: f64,
    lon: f64,
}

#[derive(Serialize, Deserialize)]
struct RawLocation {
    lat: f64,
    lon: f64,
}

impl TryFrom<RawLocation> for Location {
    type Error = ValueError;
    fn try_from(raw: RawLocation) -> Result<Self, ValueError> {
        Location::parse(raw.lat, raw.lon)
    }
}

impl From<Location> for RawLocation {
    fn from(l: Location) -> RawLocation {
        RawLocation {
            lat: l.lat,
            lon: l.lon,
        }
    }
}

impl Location {
    pub fn parse(lat: f64, lon: f64) -> Result<Location, ValueError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(ValueError::Latitude);
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(ValueError::Longitude);
        }
        Ok(Location { lat, lon })
    }

    pub fn lat(&self) -> f64 {
        self.lat
    }

    pub fn lon(&self) -> f64 {
        self.lon
    }

    /// Great-circle distance in kilometres (haversine).
    pub fn distance_km(&self, other: &Location) -> f64 {
        let r = 6371.0088_f64;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = (other.lat - self.lat).to_radians();
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * r * a.sqrt().asin()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("check_out must be after check_in")]
    EmptyRange,
    #[error("amount must not be negative")]
    NegativeAmount,
    #[error("amount is implausibly large")]
    AmountTooLarge,
    #[error("latitude must be between -90 and 90")]
    Latitude,
    #[error("longitude must be between -180 and 180")]
    Longitude,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_range_needs_at_least_one_night() {
        assert_eq!(
            DateRange::parse(d("2030-01-02"), d("2030-01-02")),
            Err(ValueError::EmptyRange)
        );
        assert_eq!(
            DateRange::parse(d("2030-01-03"), d("2030-01-02")),
            Err(ValueError::EmptyRange)
        );
        assert_eq!(
            DateRange::parse(d("2030-01-01"), d("2030-01-03"))
                .unwrap()
                .nights(),
            2
        );
    }

    #[test]
    fn adjacent_stays_do_not_overlap() {
        let a = DateRange::parse(d("2030-01-01"), d("2030-01-03")).unwrap();
        let b = DateRange::parse(d("2030-01-03"), d("2030-01-05")).unwrap();
        assert!(!a.overlaps(&b));
        assert!(!b.overlaps(&a));
    }

    #[test]
    fn deserializing_an_empty_range_fails() {
        let bad = serde_json::json!({"check_in": "2030-01-05", "check_out": "2030-01-01"});
        assert!(serde_json::from_value::<DateRange>(bad).is_err());
    }

    #[test]
    fn negative_money_is_refused() {
        assert_eq!(Kzt::parse_amount(-1), Err(ValueError::NegativeAmount));
        assert_eq!(Kzt::parse_amount(0), Ok(Kzt(0)));
    }

    #[test]
    fn locations_stay_on_the_globe() {
        assert!(Location::parse(91.0, 0.0).is_err());
        assert!(Location::parse(0.0, f64::NAN).is_err());
        let almaty = Location::parse(43.2389, 76.8897).unwrap();
        let astana = Location::parse(51.1694, 71.4491).unwrap();
        let km = almaty.distance_km(&astana);
        assert!((960.0..980.0).contains(&km), "{km}");
    }

    proptest! {
        #[test]
        fn overlap_means_a_shared_night(a in 0i64..60, al in 1i64..15, b in 0i64..60, bl in 1i64..15) {
            let base = d("2030-01-01");
            let ra = DateRange::parse(base + chrono::Duration::days(a), base + chrono::Duration::days(a + al)).unwrap();
            let rb = DateRange::parse(base + chrono::Duration::days(b), base + chrono::Duration::days(b + bl)).unwrap();
            let shared = ra.each_night().any(|n| rb.each_night().any(|m| m == n));
            prop_assert_eq!(ra.overlaps(&rb), shared);
            prop_assert_eq!(ra.each_night().count() as u32, ra.nights());
        }
    }
}
