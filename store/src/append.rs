//! Writing events: one statement per commit, however many aggregates it spans.
//!
//! postgres-es and sqlite-es write a commit as BEGIN, one INSERT per event, COMMIT — on
//! PostgreSQL three round trips — and do not return the new rows' positions, so a command that
//! answers with its position (the consistency token) has to ask for it again. [`write`] makes
//! a commit one multi-row `INSERT … RETURNING`: a single statement, so a transaction of its own
//! and one round trip, with the positions in its answer. The rows are the ones the libraries
//! would write: the same table and the seven columns they name (the others fill themselves:
//! `position`, `xid`, `recorded_at`), a primary-key violation reported as their optimistic-lock
//! conflict (PostgreSQL 23505, SQLite 1555), each event identified and chained first
//! ([`crate::chain::Chain::prepare`]). Reads stay theirs.
//!
//! A commit may span aggregates: a listing's reservation and the booking it is for go in one
//! statement, both or neither, so no step is left to undo when the second would have failed.
//!
//! Only a commit with a snapshot due (one command in `snapshot_every` on a listing) is a
//! transaction of several statements: the events, then the snapshot row — inserted for an
//! aggregate's first snapshot, else updated from the counter it was read at, where no row
//! updated means another writer got there first and nothing is kept (postgres-es commits the
//! events before it looks, and reports the conflict after).
use crate::chain::Chain;
use crate::Database;
use cqrs_es::persist::{PersistenceError, SerializedEvent};
use serde_json::Value;
use sqlx::Row;
use std::sync::Arc;

/// One aggregate's events, chained and ready to be written (made by
/// [`crate::AggregateStore::prepare`]).
pub struct Prepared {
    /// Consecutive events of one aggregate, with `event_id` and `hash` in their metadata.
    pub(crate) events: Vec<SerializedEvent>,
    /// The aggregate's state after the events as JSON, and the snapshot counter it becomes.
    pub(crate) snapshot: Option<(Value, usize)>,
    /// The hash of the last event, for the chain's head cache once written.
    pub(crate) head: String,
    pub(crate) chain: Arc<Chain>,
}

impl Prepared {
    /// The sequence number of the last event.
    pub fn last_sequence(&self) -> usize {
        self.events.last().map_or(0, |e| e.sequence)
    }
}

/// Writes every prepared commit in `batch` (events of different aggregates) atomically and
/// returns, for each, the global position of its last event.
pub async fn write(db: &Database, batch: &[&Prepared]) -> Result<Vec<i64>, PersistenceError> {
    let rows = batch.iter().map(|p| p.events.len()).sum::<usize>();
    if rows == 0 || batch.iter().any(|p| p.events.is_empty()) {
        return Err(PersistenceError::UnknownError(
            "a commit with no events to write".into(),
        ));
    }
    let positions = match db {
        Database::Postgres(pool) => write_in_pg(pool, &insert_sql(rows, "position", true), batch)
            .await
            .map_err(|e| persistence_error(e, "23505"))?,
        Database::Sqlite(pool) => {
            // sqlite-es' rows get their position from the rowid by a trigger, after the
            // statement's RETURNING is computed: the rowid is the position.
            let sql = insert_sql(rows, "rowid", false);
            let _turn = crate::sqlite_write_turn("events").await;
            write_in_sqlite(pool, &sql, batch)
                .await
                .map_err(|e| persistence_error(e, "1555"))?
        }
    };
    for prepared in batch {
        prepared.chain.advanced(prepared);
    }
    Ok(positions)
}

/// Why a write failed: a primary-key violation (`duplicate`, the backend's code for it) is
/// the optimistic-lock conflict, a snapshot counter that moved is one too.
#[derive(Debug)]
enum WriteError {
    Sql(sqlx::Error),
    SnapshotMoved,
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Sql(e)
    }
}

fn persistence_error(e: WriteError, duplicate: &str) -> PersistenceError {
    match e {
        WriteError::SnapshotMoved => PersistenceError::OptimisticLockError,
        WriteError::Sql(sqlx::Error::Database(d)) if d.code().as_deref() == Some(duplicate) => {
            PersistenceError::OptimisticLockError
        }
        WriteError::Sql(e) => PersistenceError::ConnectionError(Box::new(e)),
    }
}

/// `INSERT INTO events (the seven columns) VALUES (…), … RETURNING` the rows' keys and
/// `position_column`, for `rows` rows; the values `$1`, `$2`, … on PostgreSQL, `?` on SQLite
/// (where each `$n` costs a search of the statement's list of named parameters when it is
/// bound).
fn insert_sql(rows: usize, position_column: &str, numbered: bool) -> String {
    let mut sql = String::with_capacity(160 + rows * 40);
    sql.push_str(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        if !numbered {
            sql.push_str("(?,?,?,?,?,?,?)");
            continue;
        }
        let n = row * 7;
        sql.push_str(&format!(
            "(${},${},${},${},${},${},${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6,
            n + 7
        ));
    }
    sql.push_str(" RETURNING aggregate_type, aggregate_id, ");
    sql.push_str(position_column);
    sql
}

/// The body of [`write`], compiled once per backend (`pool` a `PgPool` or a `SqlitePool`).
macro_rules! write_body {
    ($pool:expr, $sql:expr, $batch:expr) => {{
        let batch: &[&Prepared] = $batch;
        let mut insert = sqlx::query($sql);
        for event in batch.iter().flat_map(|p| p.events.iter()) {
            insert = insert
                .bind(event.aggregate_type.as_str())
                .bind(event.aggregate_id.as_str())
                .bind(event.sequence as i64)
                .bind(event.event_type.as_str())
                .bind(event.event_version.as_str())
                .bind(&event.payload)
                .bind(&event.metadata);
        }
        let snapshots = batch.iter().filter(|p| p.snapshot.is_some()).count();
        let rows = if snapshots == 0 {
            insert.fetch_all($pool).await?
        } else {
            let mut tx = $pool.begin().await?;
            let rows = insert.fetch_all(&mut *tx).await?;
            for prepared in batch {
                let Some((payload, counter)) = &prepared.snapshot else {
                    continue;
                };
                let first = &prepared.events[0];
                let last_sequence = prepared.last_sequence() as i64;
                let counter = *counter as i64;
                if counter <= 1 {
                    sqlx::query(
                        "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(first.aggregate_type.as_str())
                    .bind(first.aggregate_id.as_str())
                    .bind(last_sequence)
                    .bind(counter)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    let updated = sqlx::query(
                        "UPDATE snapshots SET last_sequence = $3, payload = $4, current_snapshot = $5 WHERE aggregate_type = $1 AND aggregate_id = $2 AND current_snapshot = $6",
                    )
                    .bind(first.aggregate_type.as_str())
                    .bind(first.aggregate_id.as_str())
                    .bind(last_sequence)
                    .bind(payload)
                    .bind(counter)
                    .bind(counter - 1)
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() != 1 {
                        // Dropping the transaction rolls the events back too.
                        return Err(WriteError::SnapshotMoved);
                    }
                }
            }
            tx.commit().await?;
            rows
        };
        let mut positions = vec![0i64; batch.len()];
        for row in rows {
            let aggregate_type: String = row.try_get(0)?;
            let aggregate_id: String = row.try_get(1)?;
            let position: i64 = row.try_get(2)?;
            for (i, prepared) in batch.iter().enumerate() {
                let first = &prepared.events[0];
                if first.aggregate_type == aggregate_type && first.aggregate_id == aggregate_id {
                    positions[i] = positions[i].max(position);
                }
            }
        }
        Ok(positions)
    }};
}

async fn write_in_pg(
    pool: &sqlx::PgPool,
    sql: &str,
    batch: &[&Prepared],
) -> Result<Vec<i64>, WriteError> {
    write_body!(pool, sql, batch)
}

async fn write_in_sqlite(
    pool: &sqlx::SqlitePool,
    sql: &str,
    batch: &[&Prepared],
) -> Result<Vec<i64>, WriteError> {
    write_body!(pool, sql, batch)
}
