//! Pricing: a nightly base price, per-weekday overrides, date-range overrides (which win over
//! weekdays), plus a one-off cleaning fee.
use crate::values::{DateRange, Kzt};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// A price for every night of `range` (a season, a holiday).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangePrice {
    pub range: DateRange,
    pub nightly_price_kzt: Kzt,
}

/// A price for one weekday; `weekday` is 1 = Monday … 7 = Sunday (ISO 8601).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekdayPrice {
    pub weekday: u8,
    pub nightly_price_kzt: Kzt,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRules {
    pub nightly_price_kzt: Kzt,
    pub cleaning_fee_kzt: Kzt,
    #[serde(default)]
    pub weekday_prices: Vec<WeekdayPrice>,
    #[serde(default)]
    pub range_prices: Vec<RangePrice>,
}

/// What a stay costs, night by night.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBreakdown {
    pub nights: u32,
    pub nightly_kzt: Vec<Kzt>,
    pub nights_total_kzt: Kzt,
    pub cleaning_fee_kzt: Kzt,
    pub total_kzt: Kzt,
}

/// One night of a stay and its price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NightPrice {
    pub date: NaiveDate,
    pub price_kzt: Kzt,
}

/// What a booked stay costs, each night with its date (what `BookingHeld` records since its
/// version 2, so revenue can be placed on the night it was earned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StayPrice {
    pub nightly: Vec<NightPrice>,
    pub nights_total_kzt: Kzt,
    pub cleaning_fee_kzt: Kzt,
    pub total_kzt: Kzt,
}

impl StayPrice {
    /// Puts a quote's nightly prices on the nights of `range`; the quote must be for as many
    /// nights as the range has.
    pub fn dated(range: &DateRange, quote: &PriceBreakdown) -> Result<StayPrice, &'static str> {
        if quote.nightly_kzt.len() != range.nights() as usize || quote.nights != range.nights() {
            return Err("the price quotes another number of nights than the stay has");
        }
        Ok(StayPrice {
            nightly: range
                .each_night()
                .zip(&quote.nightly_kzt)
                .map(|(date, &price_kzt)| NightPrice { date, price_kzt })
                .collect(),
            nights_total_kzt: quote.nights_total_kzt,
            cleaning_fee_kzt: quote.cleaning_fee_kzt,
            total_kzt: quote.total_kzt,
        })
    }

    pub fn nights(&self) -> u32 {
        self.nightly.len() as u32
    }
}

impl PriceRules {
    /// The price of one night. A date-range override wins over a weekday override, which wins
    /// over the base price; among range overrides the last one given wins.
    pub fn price_for(&self, night: NaiveDate) -> Kzt {
        if let Some(rp) = self
            .range_prices
            .iter()
            .rev()
            .find(|rp| rp.range.check_in() <= night && night < rp.range.check_out())
        {
            return rp.nightly_price_kzt;
        }
        let weekday = night.weekday().number_from_monday() as u8;
        if let Some(wp) = self.weekday_prices.iter().find(|wp| wp.weekday == weekday) {
            return wp.nightly_price_kzt;
        }
        self.nightly_price_kzt
    }

    pub fn quote(&self, range: &DateRange) -> PriceBreakdown {
        let nightly: Vec<Kzt> = range.each_night().map(|n| self.price_for(n)).collect();
        let nights_total: Kzt = nightly.iter().copied().sum();
        PriceBreakdown {
            nights: range.nights(),
            nightly_kzt: nightly,
            nights_total_kzt: nights_total,
            cleaning_fee_kzt: self.cleaning_fee_kzt,
            total_kzt: nights_total + self.cleaning_fee_kzt,
        }
    }

    /// Weekdays must be 1..=7, each at most once.
    pub fn validate(&self) -> Result<(), &'static str> {
        let mut seen = [false; 8];
        for wp in &self.weekday_prices {
            if !(1..=7).contains(&wp.weekday) {
                return Err("weekday_prices.weekday");
            }
            if std::mem::replace(&mut seen[wp.weekday as usize], true) {
                return Err("weekday_prices.weekday");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn rules() -> PriceRules {
        PriceRules {
            nightly_price_kzt: Kzt(20_000),
            cleaning_fee_kzt: Kzt(5_000),
            weekday_prices: vec![
                WeekdayPrice {
                    weekday: 5,
                    nightly_price_kzt: Kzt(25_000),
                },
                WeekdayPrice {
                    weekday: 6,
                    nightly_price_kzt: Kzt(27_000),
                },
            ],
            range_prices: vec![RangePrice {
                range: DateRange::parse(d("2030-12-30"), d("2031-01-02")).unwrap(),
                nightly_price_kzt: Kzt(50_000),
            }],
        }
    }

    #[test]
    fn base_price_and_cleaning_fee() {
        // 2030-01-07 is a Monday: Mon, Tue.
        let q = rules().quote(&DateRange::parse(d("2030-01-07"), d("2030-01-09")).unwrap());
        assert_eq!(q.nightly_kzt, vec![Kzt(20_000), Kzt(20_000)]);
        assert_eq!(q.total_kzt, Kzt(45_000));
    }

    #[test]
    fn weekday_overrides_apply_to_their_nights() {
        // Thu 2030-01-10 .. Sun 2030-01-13: Thu, Fri, Sat.
        let q = rules().quote(&DateRange::parse(d("2030-01-10"), d("2030-01-13")).unwrap());
        assert_eq!(q.nightly_kzt, vec![Kzt(20_000), Kzt(25_000), Kzt(27_000)]);
        assert_eq!(q.nights_total_kzt, Kzt(72_000));
        assert_eq!(q.total_kzt, Kzt(77_000));
    }

    #[test]
    fn range_overrides_win_over_weekdays() {
        let q = rules().quote(&DateRange::parse(d("2030-12-29"), d("2031-01-03")).unwrap());
        assert_eq!(
            q.nightly_kzt,
            vec![
                Kzt(20_000),
                Kzt(50_000),
                Kzt(50_000),
                Kzt(50_000),
                Kzt(20_000)
            ]
        );
    }

    #[test]
    fn duplicate_or_bad_weekdays_are_refused() {
        let mut r = rules();
        r.weekday_prices.push(WeekdayPrice {
            weekday: 5,
            nightly_price_kzt: Kzt(1),
        });
        assert!(r.validate().is_err());
        let mut r = rules();
        r.weekday_prices[0].weekday = 8;
        assert!(r.validate().is_err());
        assert!(rules().validate().is_ok());
    }
}
