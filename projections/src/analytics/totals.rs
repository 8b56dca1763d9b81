//! Occupancy and revenue summed by the database: nights sold, room revenue, cleaning fees and
//! refunds grouped in SQL by the grouping's column (the night, listing, city or channel), so a
//! year of a whole city's nights arrives as a few hundred rows, not one row per night. The
//! supply side (active listings and their blocks) comes as rows, as in [`Facts`].
use super::figures::{owner_clause, Facts, GroupBy, Need, Scope};
use crate::table::{Arg, ReadTx};
use chrono::NaiveDate;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::FromRow;
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

/// Reads one grouped query whose key column decodes as `K`.
async fn grouped<K>(
    tx: &mut ReadTx,
    sql: &str,
    args: &[Arg],
    key: impl Fn(K) -> String,
) -> Result<Vec<(String, i64, i64, i64)>, StoreError>
where
    K: Send + Unpin,
    (K, i64, i64, i64): for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    let rows: Vec<(K, i64, i64, i64)> = tx.fetch(sql, args).await?;
    Ok(rows
        .into_iter()
        .map(|(k, a, b, c)| (key(k), a, b, c))
        .collect())
}

/// Runs `sql` (selecting the key column and three sums) decoding the key by the grouping.
async fn by_group(
    tx: &mut ReadTx,
    group: GroupBy,
    sql: &str,
    args: &[Arg],
) -> Result<Vec<(String, i64, i64, i64)>, StoreError> {
    match group {
        GroupBy::Listing => grouped(tx, sql, args, |k: Uuid| k.to_string()).await,
        GroupBy::City | GroupBy::Channel => grouped(tx, sql, args, |k: String| k).await,
        dated => grouped(tx, sql, args, move |k: NaiveDate| dated.date_key(k)).await,
    }
}

/// ` AND city IN (…)` for the spellings of the scope's city the listings have (cities are
/// compared without regard to case, which SQLite's `lower` cannot do beyond ASCII).
async fn city_clause(
    tx: &mut ReadTx,
    scope: &Scope,
    args: &mut Vec<Arg>,
) -> Result<String, StoreError> {
    if scope.city.is_none() {
        return Ok(String::new());
    }
    let cities: Vec<(String,)> = tx
        .fetch("SELECT DISTINCT city FROM analytics_listing_periods", &[])
        .await?;
    let mut names = Vec::new();
    for (c,) in cities.into_iter().filter(|(c,)| scope.city_matches(c)) {
        args.push(Arg::Text(c));
        names.push(format!("${}", args.len()));
    }
    Ok(if names.is_empty() {
        " AND 1 = 0".to_string()
    } else {
        format!(" AND city IN ({})", names.join(", "))
    })
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
        let t = scope.as_of.0;
        let mut sums: std::collections::BTreeMap<String, Sums> = Default::default();
        let mut add = |rows: Vec<(String, i64, i64, i64)>, f: fn(&mut Sums, i64, i64, i64)| {
            for (key, a, b, c) in rows {
                let s = sums.entry(key.clone()).or_insert_with(|| Sums {
                    key,
                    ..Sums::default()
                });
                f(s, a, b, c);
            }
        };
        let mut args = vec![Arg::Int(t), Arg::Date(scope.from), Arg::Date(scope.to)];
        let filters = format!(
            "{}{}",
            owner_clause(scope, &mut args),
            city_clause(&mut tx, scope, &mut args).await?
        );
        let col = column(group, "night");
        let sql = format!(
            "SELECT {col}, count(*), CAST(sum(price_kzt) AS bigint), \
               CAST(sum(CASE WHEN listing_id IN (SELECT p.listing_id FROM analytics_listing_periods p \
                 WHERE p.active = 0 AND p.from_us <= $1 AND (p.to_us IS NULL OR p.to_us > $1)) \
                 THEN 1 ELSE 0 END) AS bigint) \
             FROM analytics_nights WHERE night >= $2 AND night < $3 AND sold_from_us <= $1 \
               AND (sold_to_us IS NULL OR sold_to_us > $1){filters} GROUP BY {col}"
        );
        add(
            by_group(&mut tx, group, &sql, &args).await?,
            |s, n, room, off| {
                s.sold += n;
                s.room += room;
                s.unoffered += off;
            },
        );
        if money {
            let col = column(group, "check_in");
            let sql = format!(
                "SELECT {col}, count(*), CAST(sum(cleaning_kzt) AS bigint), CAST(0 AS bigint) \
                 FROM analytics_bookings WHERE check_in >= $2 AND check_in < $3 \
                   AND confirmed_us <= $1 AND (cancelled_us IS NULL OR cancelled_us > $1)\
                   {filters} GROUP BY {col}"
            );
            add(
                by_group(&mut tx, group, &sql, &args).await?,
                |s, _, fee, _| s.cleaning += fee,
            );
            let col = column(group, "refund_date");
            let sql = format!(
                "SELECT {col}, count(*), CAST(sum(amount_kzt) AS bigint), CAST(0 AS bigint) \
                 FROM analytics_refunds WHERE at_us <= $1 AND refund_date >= $2 \
                   AND refund_date < $3{filters} GROUP BY {col}"
            );
            add(
                by_group(&mut tx, group, &sql, &args).await?,
                |s, _, amount, _| s.refunds += amount,
            );
        }
        drop(tx);
        Ok(Totals {
            supply,
            sums: sums.into_values().collect(),
        })
    }
}
