//! Planner statistics for tables that grow fast from empty.
//!
//! sqlx prepares each statement once per connection, and PostgreSQL plans a prepared
//! statement once (a generic plan after five runs) and keeps that plan until the table's
//! statistics change. A table created empty, as every rebuilt read model and a new store
//! are, gets plans for an empty table: a sequential scan where an index would be used. They
//! are kept until autovacuum analyzes the table, which waits for its next round (a minute by
//! default) and for 10 % of the rows to have changed. Until then each lookup reads the whole
//! table: the bookings benchmark spent 59 % of a core on the hold-cap query's sequential
//! scans of `booking_list`, which the index on `guest_id` answers in 0.06 ms.
//!
//! [`keep_statistics`] analyzes, every few seconds, the tables changed by more than half
//! their analyzed size (and at least [`MIN_CHANGES`] rows) since their last `ANALYZE`: so a
//! growing table is analyzed at sizes that grow geometrically, a few times in all. `ANALYZE`
//! invalidates the plans every connection keeps for the table.
use crate::Database;
use std::future::Future;
use std::time::Duration;

/// Rows changed before a table is worth analyzing at all.
pub const MIN_CHANGES: i64 = 1000;

/// The tables of the current database changed by more than half their analyzed size and at
/// least [`MIN_CHANGES`] rows since their last `ANALYZE`.
///
/// A whole-table `ANALYZE` (a column list would leave the table's change count as it was, and
/// the table stale); the events table's JSON columns have a statistics target of 0
/// (migration 0014), so their payloads are not sampled.
const STALE_SQL: &str = "SELECT format('%I.%I', s.schemaname, s.relname) \
     FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
     WHERE s.n_mod_since_analyze > $1 + 0.5 * greatest(c.reltuples, 0) \
     ORDER BY s.n_mod_since_analyze DESC";

/// Analyzes the stale tables of `db` once; returns their names. A table another session
/// holds a conflicting lock on (another instance's `ANALYZE`, a rebuild's swap) is skipped:
/// the next round takes it.
pub async fn analyze_stale(db: &Database) -> Result<Vec<String>, sqlx::Error> {
    let Database::Postgres(pool) = db else {
        return Ok(Vec::new());
    };
    let mut conn = pool.acquire().await?;
    let stale: Vec<String> = sqlx::query_scalar(STALE_SQL)
        .bind(MIN_CHANGES)
        .fetch_all(&mut *conn)
        .await?;
    let mut done = Vec::with_capacity(stale.len());
    for table in stale {
        // The name is PostgreSQL's own, quoted by format('%I').
        sqlx::query("SET lock_timeout = '200ms'")
            .execute(&mut *conn)
            .await?;
        let analyzed = sqlx::query(&format!("ANALYZE {table}"))
            .execute(&mut *conn)
            .await;
        sqlx::query("RESET lock_timeout")
            .execute(&mut *conn)
            .await?;
        match analyzed {
            Ok(_) => done.push(table),
            // 55P03: lock_not_available; 42P01: the table went (a rebuild's swap).
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("55P03") | Some("42P01")) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// [`analyze_stale`] on `db` every `every`, until `stop` (nothing on SQLite, whose planner
/// does not keep plans by statistics).
pub async fn keep_statistics(db: Database, every: Duration, stop: impl Future<Output = ()>) {
    if !matches!(db, Database::Postgres(_)) {
        return;
    }
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        match analyze_stale(&db).await {
            Ok(tables) if !tables.is_empty() => {
                tracing::debug!(?tables, "analyzed tables that grew");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not refresh planner statistics"),
        }
    }
}
