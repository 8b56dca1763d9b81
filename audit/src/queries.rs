//! The audit API's questions, answered from the store and the tree (the HTTP layer in
//! `api/src/routes/audit.rs` only checks the caller and maps errors).
use crate::note::NoteVerifier;
use crate::snapshots;
use crate::tree::Tree;
use crate::views::{self, AsOf, AuditEvent, CorrelationView, StateView, ViewError};
use crate::{b64, Hash};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::browse::{self, EventFilter};
use store::{Database, StoreError};
use utoipa::{IntoParams, ToSchema};

/// A bad query parameter, named.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    View(#[from] ViewError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> QueryError {
    QueryError::Invalid {
        field,
        message: message.into(),
    }
}

/// `GET /api/v1/audit/events` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Continue after the event at this position (a page's `next_cursor`); 0 from the start.
    pub after: Option<i64>,
    /// 1–1000, default 100 (ignored with `format=jsonl`, which streams everything).
    pub limit: Option<i64>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    /// The acting user's id.
    pub actor: Option<String>,
    /// Recorded at or after (RFC 3339).
    pub from: Option<String>,
    /// Recorded before (RFC 3339).
    pub to: Option<String>,
    /// `json` (default) or `jsonl`: one event per line, streamed.
    pub format: Option<String>,
}

fn instant(field: &'static str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, QueryError> {
    v.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    invalid(
                        field,
                        "must be an RFC 3339 instant, e.g. 2026-12-01T10:00:00Z",
                    )
                })
        })
        .transpose()
}

/// The parsed query: the filter, the cursor, the page size, and whether to stream.
#[derive(Clone, Debug)]
pub struct EventsRequest {
    pub filter: EventFilter,
    pub after: i64,
    pub limit: i64,
    pub stream: bool,
}

impl EventsQuery {
    pub fn parse(self) -> Result<EventsRequest, QueryError> {
        let after = self.after.unwrap_or(0);
        if after < 0 {
            return Err(invalid("after", "must be a position (0 or more)"));
        }
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(invalid("limit", "must be between 1 and 1000"));
        }
        let stream = match self.format.as_deref() {
            None | Some("json") => false,
            Some("jsonl") => true,
            Some(_) => return Err(invalid("format", "must be json or jsonl")),
        };
        let filter = EventFilter {
            from: instant("from", &self.from)?,
            to: instant("to", &self.to)?,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            event_type: self.event_type,
            correlation_id: self.correlation_id,
            actor: self.actor,
        };
        Ok(EventsRequest {
            filter,
            after,
            limit,
            stream,
        })
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<AuditEvent>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// One page of events in commit order.
pub async fn events(db: &Database, req: &EventsRequest) -> Result<EventPage, QueryError> {
    let rows = browse::events_page(db, &req.filter, req.after, req.limit).await?;
    let next_cursor = (rows.len() as i64 == req.limit)
        .then(|| rows.last().map(|e| e.position))
        .flatten();
    Ok(EventPage {
        items: views::show_all(db, &rows).await?,
        next_cursor,
    })
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AggregateEvents {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub items: Vec<AuditEvent>,
}

/// Every event of one aggregate, by sequence.
pub async fn aggregate_events(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<AggregateEvents, QueryError> {
    let rows = store::history::aggregate_events(db, aggregate_type, aggregate_id).await?;
    if rows.is_empty() {
        return Err(QueryError::NotFound("aggregate"));
    }
    Ok(AggregateEvents {
        aggregate_type: aggregate_type.to_string(),
        aggregate_id: aggregate_id.to_string(),
        items: views::show_all(db, &rows).await?,
    })
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// An RFC 3339 instant or a sequence number; default: now.
    pub as_of: Option<String>,
    /// `true` adds what the event at that point changed.
    pub diff: Option<bool>,
}

/// The aggregate's state at a point of its history.
pub async fn state(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
    q: &StateQuery,
) -> Result<StateView, QueryError> {
    let as_of = match q.as_of.as_deref() {
        None => AsOf::Latest,
        Some(t) => AsOf::parse(t)
            .ok_or_else(|| invalid("as_of", "must be an RFC 3339 instant or a sequence number"))?,
    };
    let Some(until) = last_sequence(db, aggregate_type, aggregate_id, as_of).await? else {
        if !exists(db, aggregate_type, aggregate_id).await? {
            return Err(QueryError::NotFound("aggregate"));
        }
        // Before the first event: the default state.
        let redactor = views::Redactor::default();
        let (view, _) = views::state_of(
            &redactor,
            aggregate_type,
            aggregate_id,
            &views::FoldFrom::default(),
            &[],
            q.diff.unwrap_or(false),
        )?;
        return Ok(view);
    };
    let pg = matches!(db, Database::Postgres(_));
    // The newest snapshot before the last event (a diff needs the state before it), if the
    // events under it are still the stored ones.
    let mut start = None;
    if let (true, Some(snap)) = (pg, snapshots::best(aggregate_type, aggregate_id, until)) {
        if stored_digest(db, aggregate_type, aggregate_id, snap.sequence).await?
            == Some(snap.finished())
        {
            start = Some(snap);
        } else {
            snapshots::forget(aggregate_type, aggregate_id);
        }
    }
    let after = start.as_ref().map(|s| s.sequence).unwrap_or(0);
    let rows = fold_rows(db, aggregate_type, aggregate_id, after, until).await?;
    let redactor = views::Redactor::for_aggregate(db, aggregate_type, aggregate_id).await?;
    let from = views::FoldFrom {
        start: start.as_ref().map(|s| &s.state),
        snapshot_every: if pg { snapshots::SNAPSHOT_EVERY } else { 0 },
    };
    let (view, states) = views::state_of(
        &redactor,
        aggregate_type,
        aggregate_id,
        &from,
        &rows,
        q.diff.unwrap_or(false),
    )?;
    if !states.is_empty() {
        // Each new snapshot with the digest of every event up to it.
        let mut digest = start.map(|s| s.digest).unwrap_or_default();
        let mut states = states.into_iter().peekable();
        let mut new = Vec::new();
        for row in &rows {
            snapshots::digest_row(&mut digest, row);
            if states.peek().is_some_and(|(seq, _)| *seq == row.sequence) {
                if let Some((sequence, state)) = states.next() {
                    new.push(snapshots::Snapshot {
                        sequence,
                        state,
                        digest: digest.clone(),
                    });
                }
            }
        }
        snapshots::keep(aggregate_type, aggregate_id, new);
    }
    Ok(view)
}

/// The digest of the versions of the aggregate's stored rows up to `sequence` (PostgreSQL).
async fn stored_digest(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> Result<Option<[u8; 32]>, StoreError> {
    let Database::Postgres(pool) = db else {
        return Ok(None);
    };
    let digest: Option<Vec<u8>> = sqlx::query_scalar(snapshots::DIGEST_SQL)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence)
        .fetch_one(pool)
        .await?;
    Ok(digest.and_then(|d| d.try_into().ok()))
}

/// The sequence of the aggregate's last event at `as_of` (`None`: none yet). An instant
/// takes the events before the first one recorded after it.
async fn last_sequence(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
    as_of: AsOf,
) -> Result<Option<i64>, StoreError> {
    let until = match as_of {
        AsOf::Latest => "",
        AsOf::Sequence(_) => "AND sequence <= $3",
        AsOf::Instant(_) => {
            "AND sequence < coalesce((SELECT min(sequence) FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND recorded_at > $3), \
             9223372036854775807)"
        }
    };
    let sql = format!(
        "SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 {until}"
    );
    Ok(match db {
        Database::Postgres(pool) => {
            let q = sqlx::query_scalar(&sql)
                .bind(aggregate_type)
                .bind(aggregate_id);
            let q = match as_of {
                AsOf::Latest => q,
                AsOf::Sequence(n) => q.bind(n),
                AsOf::Instant(t) => q.bind(t),
            };
            q.fetch_one(pool).await?
        }
        Database::Sqlite(pool) => {
            let q = sqlx::query_scalar(&sql)
                .bind(aggregate_type)
                .bind(aggregate_id);
            let q = match as_of {
                AsOf::Latest => q,
                AsOf::Sequence(n) => q.bind(n),
                // SQLite keeps `recorded_at` as millisecond text, which sorts as time.
                AsOf::Instant(t) => q.bind(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            };
            q.fetch_one(pool).await?
        }
    })
}

async fn exists(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<bool, StoreError> {
    let found: Option<i64> = store::with_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(pool)
        .await?
    });
    Ok(found.is_some())
}

/// The aggregate's events with `after < sequence <= until`, by sequence, as a fold needs
/// them: read by the primary key `(aggregate_type, aggregate_id, sequence)`, without
/// metadata, the payload as text, with each row's version (PostgreSQL).
async fn fold_rows(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
    after: i64,
    until: i64,
) -> Result<Vec<views::FoldRow>, StoreError> {
    let (payload, row_version) = if matches!(db, Database::Postgres(_)) {
        ("payload::text", snapshots::ROW_VERSION_SQL)
    } else {
        ("payload", "''")
    };
    let sql = format!(
        "SELECT position, sequence, event_type, event_version, {payload}, {row_version} \
         FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence <= $4 \
         ORDER BY sequence"
    );
    let rows: Vec<(i64, i64, String, String, String, String)> = store::with_pool!(db, pool => {
        sqlx::query_as(&sql)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after)
            .bind(until)
            .fetch_all(pool)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(
            |(position, sequence, event_type, event_version, payload, row_version)| {
                views::FoldRow {
                    position,
                    sequence,
                    event_type,
                    event_version,
                    payload,
                    row_version,
                }
            },
        )
        .collect())
}

/// The tree of one correlation.
pub async fn correlation(db: &Database, id: &str) -> Result<CorrelationView, QueryError> {
    let filter = EventFilter {
        correlation_id: Some(id.to_string()),
        ..EventFilter::default()
    };
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = browse::events_page(db, &filter, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        let full = page.len() == 1000;
        rows.extend(page);
        if !full {
            break;
        }
    }
    if rows.is_empty() {
        return Err(QueryError::NotFound("correlation"));
    }
    Ok(views::correlation(id, &rows))
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    pub origin: String,
    pub tree_size: u64,
    /// Base64 of the RFC 9162 root over the first `tree_size` events in commit order.
    pub root_hash: String,
    /// The signature line's base64 (key ID ‖ Ed25519 signature).
    pub signature: String,
    /// The signed note (C2SP tlog-checkpoint), exactly as signed.
    pub text: String,
    pub signed_at: DateTime<Utc>,
}

pub async fn latest_checkpoint(
    db: &Database,
    verifier: &NoteVerifier,
) -> Result<CheckpointView, QueryError> {
    let c = Tree::new(db.clone())
        .latest_checkpoint()
        .await?
        .ok_or(QueryError::NotFound("checkpoint"))?;
    let signed = verifier.open(&c.note).map_err(|e| {
        StoreError::Integrity(format!("the stored checkpoint of {}: {e}", c.tree_size))
    })?;
    Ok(CheckpointView {
        origin: signed.checkpoint.origin,
        tree_size: c.tree_size,
        root_hash: b64(&c.root_hash),
        signature: signed.signature,
        text: c.note,
        signed_at: c.signed_at,
    })
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// `ed25519`.
    pub algorithm: String,
    /// Base64 of the 32-byte public key.
    pub public_key: String,
    /// The key name (the checkpoints' origin).
    pub key_name: String,
    /// The signed-note verifier key: `<name>+<key ID hex>+<base64(0x01 ‖ key)>`.
    pub vkey: String,
}

pub fn key(verifier: &NoteVerifier) -> KeyView {
    KeyView {
        algorithm: "ed25519".into(),
        public_key: b64(&verifier.public_key()),
        key_name: verifier.name().to_string(),
        vkey: verifier.vkey(),
    }
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProofQuery {
    /// The tree size to prove against; default: the latest checkpoint's.
    pub tree_size: Option<u64>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    pub position: i64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub audit_path: Vec<String>,
}

fn encode(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| b64(h)).collect()
}

async fn default_size(tree: &Tree) -> Result<u64, QueryError> {
    tree.latest_checkpoint()
        .await?
        .map(|c| c.tree_size)
        .ok_or(QueryError::NotFound("checkpoint"))
}

/// The inclusion proof of the event at `position`.
pub async fn inclusion(
    db: &Database,
    position: i64,
    q: &ProofQuery,
) -> Result<InclusionProof, QueryError> {
    let tree = Tree::new(db.clone());
    let leaf = tree
        .leaf_at_position(position)
        .await?
        .ok_or(QueryError::NotFound("event in the audit tree"))?;
    let size = match q.tree_size {
        Some(s) => s,
        None => default_size(&tree).await?,
    };
    let have = tree.size().await?;
    if size == 0 || size > have {
        return Err(invalid(
            "tree_size",
            format!("must be between 1 and {have}"),
        ));
    }
    if leaf.leaf_index >= size {
        return Err(invalid(
            "tree_size",
            format!(
                "the event is leaf {}, not in a tree of {size}",
                leaf.leaf_index
            ),
        ));
    }
    let path = tree.inclusion_proof(leaf.leaf_index, size).await?;
    Ok(InclusionProof {
        position,
        leaf_index: leaf.leaf_index,
        tree_size: size,
        leaf_hash: b64(&leaf.leaf_hash),
        audit_path: encode(&path),
    })
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub from: Option<u64>,
    pub to: Option<u64>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
}

/// The consistency proof between two tree sizes.
pub async fn consistency(
    db: &Database,
    q: &ConsistencyQuery,
) -> Result<ConsistencyProof, QueryError> {
    let tree = Tree::new(db.clone());
    let have = tree.size().await?;
    let from = q
        .from
        .ok_or_else(|| invalid("from", "is required (a tree size)"))?;
    let to = match q.to {
        Some(t) => t,
        None => default_size(&tree).await?,
    };
    if to == 0 || to > have {
        return Err(invalid("to", format!("must be between 1 and {have}")));
    }
    if from == 0 || from > to {
        return Err(invalid("from", format!("must be between 1 and {to}")));
    }
    Ok(ConsistencyProof {
        from,
        to,
        proof: encode(&tree.consistency_proof(from, to).await?),
    })
}
