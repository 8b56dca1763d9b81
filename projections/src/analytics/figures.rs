//! What a figure is computed from: the scope of a question (dates, city, listing, host, the
//! instant it is asked "as known at") and the facts valid at that instant, read in one
//! snapshot together with the projection's position.
use super::tables::{
    BlockFact, BookingFacts, ListingPeriod, NightFact, RefundFact, BLOCK_FACTS, BOOKING_FACTS,
    LISTING_PERIODS, NIGHT_FACTS, REFUND_FACTS,
};
use crate::table::{Arg, ReadTx};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use store::{Database, StoreError};
use uuid::Uuid;

/// How figures are grouped: the `key` of each item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Week,
    Month,
    Listing,
    City,
    Channel,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<GroupBy> {
        Some(match text {
            "day" => GroupBy::Day,
            "week" => GroupBy::Week,
            "month" => GroupBy::Month,
            "listing" => GroupBy::Listing,
            "city" => GroupBy::City,
            "channel" => GroupBy::Channel,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Week => "week",
            GroupBy::Month => "month",
            GroupBy::Listing => "listing",
            GroupBy::City => "city",
            GroupBy::Channel => "channel",
        }
    }

    /// Whether the key is a period of dates.
    pub fn is_dated(self) -> bool {
        matches!(self, GroupBy::Day | GroupBy::Week | GroupBy::Month)
    }

    /// The key of a date for a dated grouping (`YYYY-MM-DD`, `YYYY-Www`, `YYYY-MM`).
    pub fn date_key(self, d: NaiveDate) -> String {
        match self {
            GroupBy::Week => {
                let w = d.iso_week();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            GroupBy::Month => format!("{:04}-{:02}", d.year(), d.month()),
            _ => d.to_string(),
        }
    }

    /// The key of a fact on date `d` of `listing` in `city` sold through `channel`.
    pub fn key(self, d: NaiveDate, listing: Uuid, city: &str, channel: &str) -> String {
        match self {
            GroupBy::Listing => listing.to_string(),
            GroupBy::City => city.to_string(),
            GroupBy::Channel => channel.to_string(),
            dated => dated.date_key(d),
        }
    }

    /// Every key of a dated grouping over `[from, to)`, in order.
    pub fn date_keys(self, from: NaiveDate, to: NaiveDate) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for d in from.iter_days().take_while(|d| *d < to) {
            let k = self.date_key(d);
            if keys.last() != Some(&k) {
                keys.push(k);
            }
        }
        keys
    }
}

/// The instant a question is asked at, in microseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsOf(pub i64);

impl AsOf {
    /// Everything known (no `as_of`).
    pub const NOW: AsOf = AsOf(i64::MAX);

    pub fn at(t: DateTime<Utc>) -> AsOf {
        AsOf(t.timestamp_micros())
    }

    pub fn of(t: Option<DateTime<Utc>>) -> AsOf {
        t.map(AsOf::at).unwrap_or(AsOf::NOW)
    }

    /// Whether an interval `[from, to)` holds at this instant.
    pub fn within(self, from: i64, to: Option<i64>) -> bool {
        from <= self.0 && to.is_none_or(|t| t > self.0)
    }

    /// Whether a step reached at `t` was reached by this instant.
    pub fn reached(self, t: Option<i64>) -> bool {
        t.is_some_and(|t| t <= self.0)
    }
}

/// What a question covers.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Dates `[from, to)`.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// A city, compared without regard to case.
    pub city: Option<String>,
    pub listing_id: Option<Uuid>,
    /// Only this host's listings (a host asking).
    pub host_id: Option<Uuid>,
    pub as_of: AsOf,
}

impl Scope {
    pub fn city_matches(&self, city: &str) -> bool {
        self.city
            .as_deref()
            .is_none_or(|c| c.to_lowercase() == city.to_lowercase())
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.from <= d && d < self.to
    }
}

/// Which facts a figure needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Need {
    pub listings: bool,
    pub nights: bool,
    pub bookings: bool,
    pub refunds: bool,
}

/// The facts valid at the scope's instant, read in one snapshot.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The projection's position when read: every event up to it is in the facts.
    pub position: i64,
    /// Periods of active listings valid at the instant.
    pub listings: Vec<ListingPeriod>,
    /// Blocks in force at the instant, on those listings, overlapping the dates.
    pub blocks: Vec<BlockFact>,
    /// Nights sold at the instant, within the dates.
    pub nights: Vec<NightFact>,
    /// Bookings held by the instant that were held, checked in, confirmed, cancelled or
    /// expired within the dates (as local dates), or whose stay starts within them.
    pub bookings: Vec<BookingFacts>,
    /// Refunds returned by the instant, on dates within the dates.
    pub refunds: Vec<RefundFact>,
}

/// The instant local midnight starts `d` in Kazakhstan, in microseconds.
pub fn day_start_us(d: NaiveDate) -> i64 {
    let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    (midnight - chrono::Duration::seconds(i64::from(domain::KZ_UTC_OFFSET_SECONDS)))
        .timestamp_micros()
}

/// The local date of an instant in microseconds.
pub fn local_date_us(us: i64) -> NaiveDate {
    domain::local_date(DateTime::from_timestamp_micros(us).unwrap_or_default())
}

/// ` AND listing_id = … AND host_id = …` for the scope's listing and host, binding them.
pub(crate) fn owner_clause(scope: &Scope, args: &mut Vec<Arg>) -> String {
    let mut sql = String::new();
    if let Some(l) = scope.listing_id {
        args.push(Arg::Id(l));
        sql.push_str(&format!(" AND listing_id = ${}", args.len()));
    }
    if let Some(h) = scope.host_id {
        args.push(Arg::Id(h));
        sql.push_str(&format!(" AND host_id = ${}", args.len()));
    }
    sql
}

impl Facts {
    /// Reads the facts `need` names for `scope`, and the position they are complete to.
    pub async fn load(db: &Database, scope: &Scope, need: Need) -> Result<Facts, StoreError> {
        let mut tx = ReadTx::begin_snapshot(db).await?;
        let facts = Facts::load_in(&mut tx, scope, need).await;
        drop(tx);
        facts
    }

    /// [`Facts::load`] within a snapshot transaction the caller holds.
    pub async fn load_in(tx: &mut ReadTx, scope: &Scope, need: Need) -> Result<Facts, StoreError> {
        let position = tx
            .fetch::<(i64,)>(
                "SELECT position FROM projection_checkpoints WHERE name = $1",
                &[Arg::Text(
                    <super::AnalyticsProjection as crate::projector::Projection>::NAME.into(),
                )],
            )
            .await?
            .pop()
            .map_or(0, |(p,)| p);
        let t = scope.as_of.0;
        let mut facts = Facts {
            position,
            ..Facts::default()
        };
        if need.listings {
            let mut args = vec![Arg::Int(t)];
            let owner = owner_clause(scope, &mut args);
            let sql = format!(
                "{} WHERE active = 1 AND from_us <= $1 AND (to_us IS NULL OR to_us > $1){owner}",
                LISTING_PERIODS.select()
            );
            let periods: Vec<ListingPeriod> = tx.fetch(&sql, &args).await?;
            facts.listings = periods
                .into_iter()
                .filter(|p| scope.city_matches(&p.city) && p.created_on < scope.to)
                .collect();
            let mut args = vec![Arg::Int(t), Arg::Date(scope.from), Arg::Date(scope.to)];
            let listing = match scope.listing_id {
                Some(l) => {
                    args.push(Arg::Id(l));
                    " AND listing_id = $4"
                }
                None => "",
            };
            let sql = format!(
                "{} WHERE from_us <= $1 AND (to_us IS NULL OR to_us > $1) \
                 AND first_night < $3 AND end_night > $2{listing}",
                BLOCK_FACTS.select()
            );
            let active: std::collections::HashSet<Uuid> =
                facts.listings.iter().map(|p| p.listing_id).collect();
            let blocks: Vec<BlockFact> = tx.fetch(&sql, &args).await?;
            facts.blocks = blocks
                .into_iter()
                .filter(|b| active.contains(&b.listing_id))
                .collect();
        }
        if need.nights {
            let mut args = vec![Arg::Int(t), Arg::Date(scope.from), Arg::Date(scope.to)];
            let owner = owner_clause(scope, &mut args);
            let sql = format!(
                "{} WHERE night >= $2 AND night < $3 AND sold_from_us <= $1 \
                 AND (sold_to_us IS NULL OR sold_to_us > $1){owner}",
                NIGHT_FACTS.select()
            );
            let nights: Vec<NightFact> = tx.fetch(&sql, &args).await?;
            facts.nights = nights
                .into_iter()
                .filter(|n| scope.city_matches(&n.city))
                .collect();
        }
        if need.bookings {
            let (a, b) = (day_start_us(scope.from), day_start_us(scope.to));
            let mut args = vec![
                Arg::Int(t),
                Arg::Date(scope.from),
                Arg::Date(scope.to),
                Arg::Int(a),
                Arg::Int(b),
            ];
            let owner = owner_clause(scope, &mut args);
            let sql = format!(
                "{} WHERE held_us <= $1 AND ((check_in >= $2 AND check_in < $3) \
                 OR (held_us >= $4 AND held_us < $5) \
                 OR (confirmed_us >= $4 AND confirmed_us < $5) \
                 OR (cancelled_us >= $4 AND cancelled_us < $5) \
                 OR (expired_us >= $4 AND expired_us < $5)){owner}",
                BOOKING_FACTS.select()
            );
            let bookings: Vec<BookingFacts> = tx.fetch(&sql, &args).await?;
            facts.bookings = bookings
                .into_iter()
                .filter(|b| scope.city_matches(&b.city))
                .collect();
        }
        if need.refunds {
            let mut args = vec![Arg::Int(t), Arg::Date(scope.from), Arg::Date(scope.to)];
            let owner = owner_clause(scope, &mut args);
            let sql = format!(
                "{} WHERE at_us <= $1 AND refund_date >= $2 AND refund_date < $3{owner}",
                REFUND_FACTS.select()
            );
            let refunds: Vec<RefundFact> = tx.fetch(&sql, &args).await?;
            facts.refunds = refunds
                .into_iter()
                .filter(|r| scope.city_matches(&r.city))
                .collect();
        }
        Ok(facts)
    }
}
