//! Occupancy and revenue summed by the database: nights sold, room revenue, cleaning fees and
//! refunds per key of the grouping (the date, listing, city or channel). The supply side
//! (active listings and their blocks) comes as rows, as in [`Facts`].
//!
//! Where the sums come from:
//! - a question over all listings grouped by date, city or channel reads the fold's totals per
//!   city, channel and date (`analytics_day_sums`): a year is a few thousand rows whatever
//!   the number of bookings;
//! - grouped by listing, the totals per listing and month (`analytics_listing_month_sums`)
//!   for the whole months of the dates, and the sold nights themselves for the days before
//!   the first and after the last whole month;
//! - a question about one listing or one host's reads their sold nights (few, by index).
//!
//! The totals are what is on the books now. Asked "as known at" an earlier instant T, the
//! sums take off what changed after T: a night sold after T comes off, a night cancelled after
//! T (sold at T) goes back on, a refund returned after T comes off. Those nights are found by
//! `changed_us > T` (indexed), so the correction costs what changed since T, not the history.
use super::figures::{Facts, GroupBy, Need, Scope};
use super::tables::month_of;
use crate::table::{Arg, ReadTx};
use chrono::NaiveDate;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::FromRow;
use std::collections::BTreeMap;
use store::{Database, StoreError};
use uuid::Uuid;

/// Sums for one group of the grouping's column.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sums {
    pub key: String,
    /// Nights sold, room revenue, and nights sold on listings not active at the instant.
    pub sold: i64,
    pub room: i64,
    pub unoffered: i64,
    pub cleaning: i64,
    pub refunds: i64,
}

/// What occupancy and revenue are computed from.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Active listings and their blocks at the instant (`Facts::listings`, `Facts::blocks`),
    /// and the position read.
    pub supply: Facts,
    pub sums: Vec<Sums>,
}

/// The grouping's column in a fact table whose date column is `date`.
fn column(group: GroupBy, date: &'static str) -> &'static str {
    match group {
        GroupBy::Listing => "listing_id",
        GroupBy::City => "city",
        GroupBy::Channel => "channel",
        _ => date,
    }
}

/// A key and four sums: nights, room revenue, cleaning fees, refunds.
type Grouped = (String, [i64; 4]);

/// Reads one grouped query whose key column decodes as `K`.
async fn grouped<K>(
    tx: &mut ReadTx,
    sql: &str,
    args: &[Arg],
    key: impl Fn(K) -> String,
) -> Result<Vec<Grouped>, StoreError>
where
    K: Send + Unpin,
    (K, i64, i64, i64, i64): for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    let rows: Vec<(K, i64, i64, i64, i64)> = tx.fetch(sql, args).await?;
    Ok(rows
        .into_iter()
        .map(|(k, a, b, c, d)| (key(k), [a, b, c, d]))
        .collect())
}

/// Runs `sql` (selecting the key column and four sums) decoding the key by the grouping.
async fn by_group(
    tx: &mut ReadTx,
    group: GroupBy,
    sql: &str,
    args: &[Arg],
) -> Result<Vec<Grouped>, StoreError> {
    match group {
        GroupBy::Listing => grouped(tx, sql, args, |k: Uuid| k.to_string()).await,
        GroupBy::City | GroupBy::Channel => grouped(tx, sql, args, |k: String| k).await,
        dated => grouped(tx, sql, args, move |k: NaiveDate| dated.date_key(k)).await,
    }
}

/// The scope's filters as SQL: its listing, its host, and the spellings of its city the
/// listings have (cities are compared without regard to case, which SQLite's `lower` cannot
/// do beyond ASCII).
struct Filters {
    listing_id: Option<Uuid>,
    host_id: Option<Uuid>,
    cities: Option<Vec<String>>,
}

impl Filters {
    async fn of(tx: &mut ReadTx, scope: &Scope) -> Result<Filters, StoreError> {
        let cities = match &scope.city {
            None => None,
            Some(_) => {
                let cities: Vec<(String,)> = tx
                    .fetch("SELECT DISTINCT city FROM analytics_listing_periods", &[])
                    .await?;
                Some(
                    cities
                        .into_iter()
                        .map(|(c,)| c)
                        .filter(|c| scope.city_matches(c))
                        .collect(),
                )
            }
        };
        Ok(Filters {
            listing_id: scope.listing_id,
            host_id: scope.host_id,
            cities,
        })
    }

    /// Whether the question is about one listing or one host's.
    fn owned(&self) -> bool {
        self.listing_id.is_some() || self.host_id.is_some()
    }

    /// ` AND …` for the filters, binding them after `args`.
    fn clause(&self, args: &mut Vec<Arg>) -> String {
        let mut sql = String::new();
        if let Some(l) = self.listing_id {
            args.push(Arg::Id(l));
            sql.push_str(&format!(" AND listing_id = ${}", args.len()));
        }
        if let Some(h) = self.host_id {
            args.push(Arg::Id(h));
            sql.push_str(&format!(" AND host_id = ${}", args.len()));
        }
        if let Some(cities) = &self.cities {
            if cities.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                let mut names = Vec::new();
                for c in cities {
                    args.push(Arg::Text(c.clone()));
                    names.push(format!("${}", args.len()));
                }
                sql.push_str(&format!(" AND city IN ({})", names.join(", ")));
            }
        }
        sql
    }
}

/// The sums being gathered, by key.
#[derive(Default)]
struct Gathered(BTreeMap<String, Sums>);

impl Gathered {
    fn at(&mut self, key: String) -> &mut Sums {
        self.0.entry(key.clone()).or_insert_with(|| Sums {
            key,
            ..Sums::default()
        })
    }

    /// Adds nights, room, cleaning and refunds per key.
    fn add(&mut self, rows: Vec<Grouped>) {
        for (key, [nights, room, cleaning, refunds]) in rows {
            let s = self.at(key);
            s.sold += nights;
            s.room += room;
            s.cleaning += cleaning;
            s.refunds += refunds;
        }
    }
}

/// The whole calendar months within `[from, to)`, as `[first, end)`; empty when none.
fn whole_months(from: NaiveDate, to: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = if month_of(from) == from {
        from
    } else {
        month_of(from)
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(to)
    };
    let end = month_of(to);
    if first < end {
        (first, end)
    } else {
        (from, from)
    }
}

/// One question's reading of the sums, in one snapshot.
struct Reading<'a> {
    tx: &'a mut ReadTx,
    group: GroupBy,
    /// The instant asked about (`i64::MAX`: now).
    t: i64,
    filters: Filters,
    money: bool,
    sums: Gathered,
}

impl Reading<'_> {
    /// `[t, from, to]` and the filters bound after them.
    fn args(&self, from: NaiveDate, to: NaiveDate) -> (Vec<Arg>, String) {
        let mut args = vec![Arg::Int(self.t), Arg::Date(from), Arg::Date(to)];
        let filters = self.filters.clause(&mut args);
        (args, filters)
    }

    /// The sums over `[from, to)` from the facts themselves, as known at the instant.
    async fn facts(&mut self, from: NaiveDate, to: NaiveDate) -> Result<(), StoreError> {
        if from >= to {
            return Ok(());
        }
        let (args, filters) = self.args(from, to);
        let col = column(self.group, "night");
        let sql = format!(
            "SELECT {col}, count(*), CAST(sum(price_kzt) AS bigint), CAST(0 AS bigint), \
               CAST(0 AS bigint) \
             FROM analytics_nights WHERE night >= $2 AND night < $3 AND sold_from_us <= $1 \
               AND (sold_to_us IS NULL OR sold_to_us > $1){filters} GROUP BY {col}"
        );
        let rows = by_group(self.tx, self.group, &sql, &args).await?;
        self.sums.add(rows);
        if self.money {
            let col = column(self.group, "check_in");
            let sql = format!(
                "SELECT {col}, CAST(0 AS bigint), CAST(0 AS bigint), CAST(sum(cleaning_kzt) AS bigint), \
                   CAST(0 AS bigint) \
                 FROM analytics_bookings WHERE check_in >= $2 AND check_in < $3 \
                   AND confirmed_us <= $1 AND (cancelled_us IS NULL OR cancelled_us > $1)\
                   {filters} GROUP BY {col}"
            );
            let rows = by_group(self.tx, self.group, &sql, &args).await?;
            self.sums.add(rows);
            let col = column(self.group, "refund_date");
            let sql = format!(
                "SELECT {col}, CAST(0 AS bigint), CAST(0 AS bigint), CAST(0 AS bigint), \
                   CAST(sum(amount_kzt) AS bigint) \
                 FROM analytics_refunds WHERE at_us <= $1 AND refund_date >= $2 \
                   AND refund_date < $3{filters} GROUP BY {col}"
            );
            let rows = by_group(self.tx, self.group, &sql, &args).await?;
            self.sums.add(rows);
        }
        Ok(())
    }

    /// The fold's totals over `[from, to)` from `table` (date column `date`), and what changed
    /// after the instant taken off again.
    async fn totals(
        &mut self,
        table: &str,
        date: &'static str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<(), StoreError> {
        if from >= to {
            return Ok(());
        }
        let mut args = vec![Arg::Date(from), Arg::Date(to)];
        let filters = self.filters.clause(&mut args);
        let col = column(self.group, date);
        let sql = format!(
            "SELECT {col}, CAST(sum(nights) AS bigint), CAST(sum(room_kzt) AS bigint), \
               CAST(sum(cleaning_kzt) AS bigint), CAST(sum(refunds_kzt) AS bigint) \
             FROM {table} WHERE {date} >= $1 AND {date} < $2{filters} GROUP BY {col}"
        );
        let rows = by_group(self.tx, self.group, &sql, &args).await?;
        self.sums.add(rows);
        if self.t == i64::MAX {
            return Ok(());
        }
        // Since the instant: nights sold after it come off (-1), nights cancelled after it that
        // were sold at it go back on (+1); so do their prices and the check-in night's fee.
        let (args, filters) = self.args(from, to);
        let col = column(self.group, "night");
        let sql = format!(
            "SELECT {col}, \
               CAST(sum(CASE WHEN sold_to_us IS NULL THEN -1 ELSE 1 END) AS bigint), \
               CAST(sum(CASE WHEN sold_to_us IS NULL THEN -price_kzt ELSE price_kzt END) AS bigint), \
               CAST(sum(CASE WHEN sold_to_us IS NULL THEN -cleaning_kzt ELSE cleaning_kzt END) AS bigint), \
               CAST(0 AS bigint) \
             FROM analytics_nights WHERE changed_us > $1 AND night >= $2 AND night < $3 \
               AND ((sold_to_us IS NULL AND sold_from_us > $1) \
                 OR (sold_from_us <= $1 AND sold_to_us > $1)){filters} GROUP BY {col}"
        );
        let rows = by_group(self.tx, self.group, &sql, &args).await?;
        self.sums.add(rows);
        let col = column(self.group, "refund_date");
        let sql = format!(
            "SELECT {col}, CAST(0 AS bigint), CAST(0 AS bigint), CAST(0 AS bigint), \
               CAST(-sum(amount_kzt) AS bigint) \
             FROM analytics_refunds WHERE at_us > $1 AND refund_date >= $2 \
               AND refund_date < $3{filters} GROUP BY {col}"
        );
        let rows = by_group(self.tx, self.group, &sql, &args).await?;
        self.sums.add(rows);
        Ok(())
    }

    /// Nights sold at the instant on listings not active then, per key.
    async fn unoffered(&mut self, from: NaiveDate, to: NaiveDate) -> Result<(), StoreError> {
        let inactive: Vec<(Uuid,)> = self
            .tx
            .fetch(
                "SELECT DISTINCT listing_id FROM analytics_listing_periods \
                 WHERE active = 0 AND from_us <= $1 AND (to_us IS NULL OR to_us > $1)",
                &[Arg::Int(self.t)],
            )
            .await?;
        let inactive: Vec<Uuid> = inactive
            .into_iter()
            .map(|(l,)| l)
            .filter(|l| self.filters.listing_id.is_none_or(|only| only == *l))
            .collect();
        let col = column(self.group, "night");
        for chunk in inactive.chunks(500) {
            let (mut args, filters) = self.args(from, to);
            let mut ids = Vec::with_capacity(chunk.len());
            for l in chunk {
                args.push(Arg::Id(*l));
                ids.push(format!("${}", args.len()));
            }
            let sql = format!(
                "SELECT {col}, count(*), CAST(0 AS bigint), CAST(0 AS bigint), CAST(0 AS bigint) \
                 FROM analytics_nights WHERE listing_id IN ({}) AND night >= $2 AND night < $3 \
                   AND sold_from_us <= $1 AND (sold_to_us IS NULL OR sold_to_us > $1){filters} \
                 GROUP BY {col}",
                ids.join(", ")
            );
            for (key, [n, ..]) in by_group(self.tx, self.group, &sql, &args).await? {
                self.sums.at(key).unoffered += n;
            }
        }
        Ok(())
    }
}

impl Totals {
    /// Reads the supply rows and the grouped sums for `scope`; cleaning fees and refunds only
    /// when `money`.
    pub async fn load(
        db: &Database,
        scope: &Scope,
        group: GroupBy,
        money: bool,
    ) -> Result<Totals, StoreError> {
        let mut tx = ReadTx::begin_snapshot(db).await?;
        let listings = Need {
            listings: true,
            ..Need::default()
        };
        let supply = Facts::load_in(&mut tx, scope, listings).await?;
        let filters = Filters::of(&mut tx, scope).await?;
        let mut r = Reading {
            tx: &mut tx,
            group,
            t: scope.as_of.0,
            money,
            sums: Gathered::default(),
            filters,
        };
        let (from, to) = (scope.from, scope.to);
        if r.filters.owned() {
            r.facts(from, to).await?;
        } else if group == GroupBy::Listing {
            let (first, end) = whole_months(from, to);
            if first < end {
                r.totals("analytics_listing_month_sums", "month", first, end)
                    .await?;
                r.facts(from, first).await?;
                r.facts(end, to).await?;
            } else {
                r.facts(from, to).await?;
            }
        } else {
            r.totals("analytics_day_sums", "day", from, to).await?;
        }
        r.unoffered(from, to).await?;
        let sums = std::mem::take(&mut r.sums.0).into_values().collect();
        drop(tx);
        Ok(Totals { supply, sums })
    }
}

#[cfg(test)]
mod tests {
    use super::whole_months;
    use chrono::NaiveDate;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn whole_months_are_the_calendar_months_inside_the_dates() {
        assert_eq!(
            whole_months(d("2026-12-01"), d("2027-12-01")),
            (d("2026-12-01"), d("2027-12-01"))
        );
        assert_eq!(
            whole_months(d("2026-12-05"), d("2027-03-10")),
            (d("2027-01-01"), d("2027-03-01"))
        );
        let (a, b) = whole_months(d("2026-12-05"), d("2027-01-10"));
        assert!(a >= b, "no whole month: {a} {b}");
        let (a, b) = whole_months(d("2026-12-05"), d("2026-12-20"));
        assert!(a >= b, "no whole month: {a} {b}");
    }
}
