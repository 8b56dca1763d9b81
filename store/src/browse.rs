//! The auditors' view of the store: pages of events in commit order, filtered by aggregate,
//! event type, correlation, actor and time.
//!
//! The cursor is a position; the page continues after that event in the commit-safe order of
//! [`crate::history::events_after`] (on PostgreSQL, `(transaction, position)`, only
//! transactions older than the oldest one running), so paging never passes an event that
//! commits late with a lower position.
use crate::history::{self, from_lite, from_pg, Checkpoint, LITE_COLUMNS, PG_COLUMNS};
use crate::{Database, StoreError, StoredEvent};
use chrono::{DateTime, Utc};

/// What to keep; every field given must match.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    pub actor: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
}

enum Bind {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
}

/// SQLite keeps `recorded_at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` text, which sorts as time.
fn lite_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Up to `limit` events after the event at position `after` (0: from the start).
pub async fn events_page(
    db: &Database,
    filter: &EventFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let pg = matches!(db, Database::Postgres(_));
    let start = if after > 0 {
        history::checkpoint_of(db, after)
            .await?
            .unwrap_or(Checkpoint {
                tx: i64::MAX,
                position: after,
            })
    } else {
        Checkpoint::default()
    };
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    let mut n = 0;
    let mut next = |b: Bind, binds: &mut Vec<Bind>| {
        binds.push(b);
        n += 1;
        format!("${n}")
    };
    if pg {
        let (t, p) = (
            next(Bind::Int(start.tx), &mut binds),
            next(Bind::Int(start.position), &mut binds),
        );
        clauses.push(format!("(xid::text::bigint, position) > ({t}, {p})"));
        clauses.push("xid < pg_snapshot_xmin(pg_current_snapshot())".to_string());
    } else {
        let p = next(Bind::Int(start.position), &mut binds);
        clauses.push(format!("position > {p}"));
    }
    let json = |key: &str| {
        if pg {
            format!("metadata->>'{key}'")
        } else {
            format!("json_extract(metadata, '$.{key}')")
        }
    };
    for (column, value) in [
        ("aggregate_type".to_string(), &filter.aggregate_type),
        ("aggregate_id".to_string(), &filter.aggregate_id),
        ("event_type".to_string(), &filter.event_type),
        (json("correlation_id"), &filter.correlation_id),
        (json("actor"), &filter.actor),
    ] {
        if let Some(v) = value {
            let b = next(Bind::Text(v.clone()), &mut binds);
            clauses.push(format!("{column} = {b}"));
        }
    }
    if let Some(from) = filter.from {
        let b = next(Bind::Time(from), &mut binds);
        clauses.push(format!("recorded_at >= {b}"));
    }
    if let Some(to) = filter.to {
        let b = next(Bind::Time(to), &mut binds);
        clauses.push(format!("recorded_at < {b}"));
    }
    let limit_bind = next(Bind::Int(limit), &mut binds);
    let order = if pg {
        "xid::text::bigint, position"
    } else {
        "position"
    };
    let tail = format!(
        "WHERE {} ORDER BY {order} LIMIT {limit_bind}",
        clauses.join(" AND ")
    );
    Ok(match db {
        Database::Postgres(pool) => {
            let sql = format!("SELECT {PG_COLUMNS} FROM events {tail}");
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind(s),
                    Bind::Int(i) => q.bind(i),
                    Bind::Time(t) => q.bind(t),
                };
            }
            let rows = q.fetch_all(pool).await?;
            rows.iter().map(from_pg).collect::<Result<Vec<_>, _>>()?
        }
        Database::Sqlite(pool) => {
            let sql = format!("SELECT {LITE_COLUMNS} FROM events {tail}");
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind(s),
                    Bind::Int(i) => q.bind(i),
                    Bind::Time(t) => q.bind(lite_time(&t)),
                };
            }
            let rows = q.fetch_all(pool).await?;
            rows.iter().map(from_lite).collect::<Result<Vec<_>, _>>()?
        }
    })
}
