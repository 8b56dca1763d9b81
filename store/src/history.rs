//! Reading the store back: in commit-safe order for projections, by aggregate for audits, and
//! walking every hash chain.
//!
//! On PostgreSQL, positions are handed out at insert time but transactions commit in any
//! order, so a reader that follows positions alone could pass an event that commits late with a
//! lower position. Readers therefore follow `(tx, position)` order and only read transactions
//! older than the oldest one still running (`pg_snapshot_xmin(pg_current_snapshot())`): every
//! event that can still appear sorts after what has been read. On SQLite, writers are serial,
//! so `tx` is simply the position.
use crate::chain::{event_hash, hash_of, ChainInput, GENESIS_HASH};
use crate::{Database, StoreError};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

/// One event as stored, with everything the store added.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredEvent {
    pub position: i64,
    /// Commit-safe order key (PostgreSQL transaction id; the position on SQLite). Not part of
    /// the serialized event: the bus carries it in a header.
    #[serde(skip)]
    pub tx: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
}

/// Where a reader stands: the last event it has taken, in `(tx, position)` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Checkpoint {
    pub tx: i64,
    pub position: i64,
}

pub(crate) const PG_COLUMNS: &str =
    "position, xid::text::bigint AS tx, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, recorded_at";
pub(crate) const LITE_COLUMNS: &str =
    "position, position AS tx, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, recorded_at";

pub(crate) fn from_pg(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, sqlx::Error> {
    let metadata: Value = row.try_get("metadata")?;
    Ok(StoredEvent {
        position: row.try_get("position")?,
        tx: row.try_get("tx")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        hash: hash_of(&metadata),
        metadata,
        recorded_at: row.try_get("recorded_at")?,
    })
}

pub(crate) fn from_lite(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, sqlx::Error> {
    let metadata: Value = row.try_get("metadata")?;
    let recorded: String = row.try_get("recorded_at")?;
    Ok(StoredEvent {
        position: row.try_get("position")?,
        tx: row.try_get("tx")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        hash: hash_of(&metadata),
        metadata,
        recorded_at: DateTime::parse_from_rfc3339(&recorded)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// `SELECT <every column> FROM events <tail>` with `$N` binds, on either backend.
macro_rules! select_events {
    ($db:expr, $tail:expr $(, $bind:expr)*) => {
        match $db {
            Database::Postgres(pool) => {
                let sql = format!("SELECT {PG_COLUMNS} FROM events {}", $tail);
                let rows = sqlx::query(&sql)$(.bind($bind))*.fetch_all(pool).await?;
                rows.iter().map(from_pg).collect::<Result<Vec<_>, _>>()?
            }
            Database::Sqlite(pool) => {
                let sql = format!("SELECT {LITE_COLUMNS} FROM events {}", $tail);
                let rows = sqlx::query(&sql)$(.bind($bind))*.fetch_all(pool).await?;
                rows.iter().map(from_lite).collect::<Result<Vec<_>, _>>()?
            }
        }
    };
}

impl StoredEvent {
    /// The event's id (also its message id on the bus).
    pub fn event_id(&self) -> &str {
        self.metadata
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The trace context of the span that wrote the event, when traces were exported.
    pub fn traceparent(&self) -> Option<&str> {
        self.metadata.get(crate::trace::TRACEPARENT)?.as_str()
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tx: self.tx,
            position: self.position,
        }
    }

    /// The fields the hash chain covers.
    pub fn chain_input(&self) -> ChainInput<'_> {
        ChainInput {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

/// The commit-safe read after a checkpoint on PostgreSQL (binds: `$1` tx, `$2` position,
/// `$3` limit): events after it in `(tx, position)` order, from transactions older than the
/// oldest one still running. Every reader of the store in that order uses it.
pub const PG_AFTER: &str = "WHERE (xid::text::bigint, position) > ($1, $2) \
     AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY xid::text::bigint, position LIMIT $3";
/// The same on SQLite (binds: `$1` position, `$2` limit), where writers are serial.
const LITE_AFTER: &str = "WHERE position > $1 ORDER BY position LIMIT $2";

/// Committed events after `after`, in commit-safe order, at most `limit`.
pub async fn events_after(
    db: &Database,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(match db {
        Database::Postgres(_) => select_events!(db, PG_AFTER, after.tx, after.position, limit),
        Database::Sqlite(_) => select_events!(db, LITE_AFTER, after.position, limit),
    })
}

/// Like [`events_after`], without the metadata (an empty object; `hash` empty): what read
/// models fold, at less decoding.
pub async fn events_after_for_folding(
    db: &Database,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    raw_events_after(db, after, limit)
        .await?
        .into_iter()
        .map(RawEvent::decode)
        .collect()
}

/// An event for folding with its payload still JSON text, so that decoding can run apart from
/// reading (a rebuild decodes on other threads while the next batch is read).
#[derive(Clone, Debug)]
pub struct RawEvent {
    pub position: i64,
    pub tx: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub recorded_at: DateTime<Utc>,
}

impl RawEvent {
    /// The event without metadata, as [`events_after_for_folding`] gives it.
    pub fn decode(self) -> Result<StoredEvent, StoreError> {
        let payload =
            serde_json::from_str(&self.payload).map_err(|source| StoreError::Payload {
                position: self.position,
                source,
            })?;
        Ok(StoredEvent {
            position: self.position,
            tx: self.tx,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload,
            metadata: Value::Object(Default::default()),
            recorded_at: self.recorded_at,
            hash: String::new(),
        })
    }
}

/// Like [`events_after_for_folding`], with payloads left as text (see [`RawEvent`]).
pub async fn raw_events_after(
    db: &Database,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<RawEvent>, StoreError> {
    Ok(match db {
        Database::Postgres(pool) => {
            let sql = format!(
                "SELECT position, xid::text::bigint AS tx, aggregate_type, aggregate_id, \
                        sequence, event_type, event_version, payload::text AS payload, \
                        recorded_at FROM events {PG_AFTER}"
            );
            let rows = sqlx::query(&sql)
                .bind(after.tx)
                .bind(after.position)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(RawEvent {
                        position: row.try_get("position")?,
                        tx: row.try_get("tx")?,
                        aggregate_type: row.try_get("aggregate_type")?,
                        aggregate_id: row.try_get("aggregate_id")?,
                        sequence: row.try_get("sequence")?,
                        event_type: row.try_get("event_type")?,
                        event_version: row.try_get("event_version")?,
                        payload: row.try_get("payload")?,
                        recorded_at: row.try_get("recorded_at")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        }
        Database::Sqlite(pool) => {
            let sql = format!(
                "SELECT position, position AS tx, aggregate_type, aggregate_id, sequence, \
                        event_type, event_version, payload, recorded_at FROM events {LITE_AFTER}"
            );
            let rows = sqlx::query(&sql)
                .bind(after.position)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    let recorded: String = row.try_get("recorded_at")?;
                    Ok(RawEvent {
                        position: row.try_get("position")?,
                        tx: row.try_get("tx")?,
                        aggregate_type: row.try_get("aggregate_type")?,
                        aggregate_id: row.try_get("aggregate_id")?,
                        sequence: row.try_get("sequence")?,
                        event_type: row.try_get("event_type")?,
                        event_version: row.try_get("event_version")?,
                        payload: row.try_get("payload")?,
                        recorded_at: DateTime::parse_from_rfc3339(&recorded)
                            .map(|t| t.with_timezone(&Utc))
                            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        }
    })
}

/// At most this many events of a backlog are counted: a reader further behind is shown this
/// many (the lag metrics say "at least"), so counting never reads more than this many rows.
pub const BACKLOG_CAP: i64 = 100_000;

/// How far a reader is behind the store.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backlog {
    /// Committed events after the reader's checkpoint, counted up to [`BACKLOG_CAP`].
    pub events: i64,
    /// When the oldest of them (of the first [`BACKLOG_CAP`] in commit order) was recorded.
    pub oldest: Option<DateTime<Utc>>,
}

impl Backlog {
    /// The age of the oldest event not yet taken, in seconds (0 when none is waiting).
    pub fn lag_seconds(&self) -> f64 {
        self.oldest
            .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0)
    }
}

/// How far a reader at `after` is behind: the first [`BACKLOG_CAP`] events after it in
/// commit-safe order, counted.
///
/// On PostgreSQL the count reads the commit-order index from `after` on, up to the cap. Without
/// the `ORDER BY … LIMIT` the planner estimates `(tx, position) > ($1, $2)` by its first column
/// alone (or, in a generic plan, as a third of the table) and counts with a full scan of the
/// store: 0.8–1.8 s at 1,000,000 events, after every notary step.
pub async fn backlog(db: &Database, after: Checkpoint) -> Result<Backlog, StoreError> {
    let (events, oldest) = match db {
        Database::Postgres(pool) => {
            sqlx::query_as(
                "SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM events \
                 WHERE (xid::text::bigint, position) > ($1, $2) \
                 ORDER BY xid::text::bigint, position LIMIT $3) s",
            )
            .bind(after.tx)
            .bind(after.position)
            .bind(BACKLOG_CAP)
            .fetch_one(pool)
            .await?
        }
        Database::Sqlite(pool) => {
            let (count, oldest): (i64, Option<String>) = sqlx::query_as(
                "SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM events \
                 WHERE position > $1 ORDER BY position LIMIT $2)",
            )
            .bind(after.position)
            .bind(BACKLOG_CAP)
            .fetch_one(pool)
            .await?;
            let oldest = oldest
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc));
            (count, oldest)
        }
    };
    Ok(Backlog { events, oldest })
}

/// The last event a commit-safe reader can take now (the start for a reader that wants only
/// what comes next).
pub async fn head(db: &Database) -> Result<Checkpoint, StoreError> {
    let row: Option<(i64, i64)> = match db {
        Database::Postgres(pool) => {
            sqlx::query_as(
                "SELECT xid::text::bigint, position FROM events \
                 WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY xid::text::bigint DESC, position DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
        }
        Database::Sqlite(pool) => {
            sqlx::query_as("SELECT position, position FROM events ORDER BY position DESC LIMIT 1")
                .fetch_optional(pool)
                .await?
        }
    };
    Ok(row
        .map(|(tx, position)| Checkpoint { tx, position })
        .unwrap_or_default())
}

/// How many events the store holds.
pub async fn event_count(db: &Database) -> Result<i64, StoreError> {
    Ok(crate::with_pool!(db, pool => {
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await?
    }))
}

/// Committed events with a position above `after`, in position order (the audit feed).
pub async fn events_by_position(
    db: &Database,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(select_events!(
        db,
        "WHERE position > $1 ORDER BY position LIMIT $2",
        after,
        limit
    ))
}

/// Every event of one aggregate, by sequence.
pub async fn aggregate_events(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(select_events!(
        db,
        "WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        aggregate_type,
        aggregate_id
    ))
}

/// The global position of one event, if that event exists.
pub async fn position_of(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: usize,
) -> Result<Option<i64>, StoreError> {
    Ok(crate::with_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .fetch_optional(pool)
        .await?
    }))
}

/// The commit-safe order key of the event at `position`.
pub async fn checkpoint_of(db: &Database, position: i64) -> Result<Option<Checkpoint>, StoreError> {
    let tx: Option<i64> = match db {
        Database::Postgres(pool) => {
            sqlx::query_scalar("SELECT xid::text::bigint FROM events WHERE position = $1")
                .bind(position)
                .fetch_optional(pool)
                .await?
        }
        Database::Sqlite(_) => Some(position),
    };
    Ok(tx.map(|tx| Checkpoint { tx, position }))
}

/// A place where a hash chain does not hold.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BrokenLink {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: i64,
    pub problem: String,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct VerifyReport {
    pub ok: bool,
    pub checked_events: u64,
    pub broken: Vec<BrokenLink>,
}

/// What is wrong with `e` following the event (`prev_hash`, `prev_sequence`) of its aggregate.
fn broken_link(prev_hash: &str, prev_sequence: i64, e: &StoredEvent) -> Option<BrokenLink> {
    let mut problem = None;
    if e.sequence != prev_sequence + 1 {
        problem = Some(format!(
            "sequence {} follows {}: events are missing",
            e.sequence, prev_sequence
        ));
    }
    if problem.is_none() && event_hash(prev_hash, &e.chain_input()) != e.hash {
        problem = Some(if e.hash.is_empty() {
            "event carries no hash".to_string()
        } else {
            "hash does not match the event and its predecessor".to_string()
        });
    }
    problem.map(|problem| BrokenLink {
        aggregate_type: e.aggregate_type.clone(),
        aggregate_id: e.aggregate_id.clone(),
        sequence: e.sequence,
        position: e.position,
        problem,
    })
}

/// The chains checked while reading the store in commit order (an aggregate's events commit
/// in sequence order), for readers that pass over every event anyway (`audit verify
/// --checkpoint`): one pass instead of a second walk by aggregate.
#[derive(Default)]
pub struct ChainCheck {
    report: VerifyReport,
    /// Each aggregate's newest event so far: (sequence, hash).
    heads: std::collections::HashMap<(String, String), (i64, String)>,
}

impl ChainCheck {
    pub fn step(&mut self, e: &StoredEvent) {
        let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
        let (prev_sequence, prev_hash) = self
            .heads
            .get(&key)
            .map(|(s, h)| (*s, h.as_str()))
            .unwrap_or((0, GENESIS_HASH));
        self.report.checked_events += 1;
        if let Some(problem) = broken_link(prev_hash, prev_sequence, e) {
            self.report.broken.push(problem);
        }
        // Continue from the stored hash so that one bad event is reported once.
        self.heads.insert(key, (e.sequence, e.hash.clone()));
    }

    pub fn finish(mut self) -> VerifyReport {
        self.report.ok = self.report.broken.is_empty();
        self.report
    }
}

struct ChainWalk {
    report: VerifyReport,
    current: Option<(String, String)>,
    prev_hash: String,
    prev_sequence: i64,
}

impl ChainWalk {
    fn new() -> Self {
        ChainWalk {
            report: VerifyReport::default(),
            current: None,
            prev_hash: GENESIS_HASH.to_string(),
            prev_sequence: 0,
        }
    }

    fn step(&mut self, e: &StoredEvent) {
        let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
        if self.current.as_ref() != Some(&key) {
            self.current = Some(key);
            self.prev_hash = GENESIS_HASH.to_string();
            self.prev_sequence = 0;
        }
        self.report.checked_events += 1;
        if let Some(problem) = broken_link(&self.prev_hash, self.prev_sequence, e) {
            self.report.broken.push(problem);
        }
        // Continue from the stored hash so that one bad event is reported once.
        self.prev_hash = e.hash.clone();
        self.prev_sequence = e.sequence;
    }

    fn finish(mut self) -> VerifyReport {
        self.report.ok = self.report.broken.is_empty();
        self.report
    }
}

/// Walks every aggregate's chain and reports each break.
pub async fn verify(db: &Database) -> Result<VerifyReport, StoreError> {
    verify_with_progress(db, &|_, _| {}).await
}

/// [`verify`], telling `progress(events checked, events in the store)` as it goes (every
/// 1,000 events and at the end).
pub async fn verify_with_progress(
    db: &Database,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<VerifyReport, StoreError> {
    let total = event_count(db).await?.max(0) as u64;
    let mut walk = ChainWalk::new();
    let step = |walk: &mut ChainWalk, e: &StoredEvent| {
        walk.step(e);
        let done = walk.report.checked_events;
        if done.is_multiple_of(1000) {
            // Events committed during the walk may take it past the count made before it.
            progress(done, total.max(done));
        }
    };
    match db {
        Database::Postgres(pool) => {
            let sql = format!(
                "SELECT {PG_COLUMNS} FROM events ORDER BY aggregate_type, aggregate_id, sequence"
            );
            let mut rows = sqlx::query(&sql).fetch(pool);
            while let Some(row) = rows.try_next().await? {
                step(&mut walk, &from_pg(&row)?);
            }
        }
        Database::Sqlite(pool) => {
            let sql = format!(
                "SELECT {LITE_COLUMNS} FROM events ORDER BY aggregate_type, aggregate_id, sequence"
            );
            let mut rows = sqlx::query(&sql).fetch(pool);
            while let Some(row) = rows.try_next().await? {
                step(&mut walk, &from_lite(&row)?);
            }
        }
    }
    let done = walk.report.checked_events;
    progress(done, total.max(done));
    Ok(walk.finish())
}

/// The sequence of an aggregate's newest event (0 when it has none).
pub async fn last_sequence(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<i64, StoreError> {
    let seq: Option<i64> = crate::with_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT MAX(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_one(pool)
        .await?
    });
    Ok(seq.unwrap_or(0))
}
