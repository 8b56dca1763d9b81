//! Store → JetStream, gap-free and at-least-once.
//!
//! A batch runs inside one PostgreSQL transaction that holds the relay's turn (an advisory
//! lock, `store::turns`, which takes no transaction id, so the wait for JetStream holds back no
//! other reader of the store): several relays may run, and they take turns. The batch is
//! the events after the checkpoint that no running transaction can still precede (see
//! `store::history::events_after`), so an event that commits late with a lower position is
//! published when it commits, never skipped. Messages are published with `Nats-Msg-Id`, all
//! acknowledgements are awaited, and only then does the checkpoint move; a failure rolls back,
//! and the retry's duplicates are dropped by JetStream's de-duplication window.
use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use std::time::Duration;
use store::history::{self, Checkpoint};
use store::{Database, StoredEvent};

/// Reads a published message back into a [`crate::Link`], for folding: the event without its
/// metadata.
pub fn decode(
    payload: &[u8],
    headers: Option<&async_nats::HeaderMap>,
) -> Result<crate::Link, DecodeError> {
    // Consumers fold events; they skip the metadata instead of decoding it.
    #[derive(serde::Deserialize)]
    struct Body {
        position: i64,
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        event_type: String,
        event_version: String,
        payload: serde_json::Value,
        recorded_at: chrono::DateTime<chrono::Utc>,
        #[serde(default)]
        hash: String,
    }
    let body: Body = serde_json::from_slice(payload)?;
    let mut event = StoredEvent {
        position: body.position,
        tx: 0,
        aggregate_type: body.aggregate_type,
        aggregate_id: body.aggregate_id,
        sequence: body.sequence,
        event_type: body.event_type,
        event_version: body.event_version,
        payload: body.payload,
        metadata: serde_json::Value::Null,
        recorded_at: body.recorded_at,
        hash: body.hash,
    };
    let header = |name: &'static str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
            .ok_or(DecodeError::MissingHeader(name))
    };
    event.tx = header(crate::TX_HEADER)?
        .parse()
        .map_err(|_| DecodeError::BadHeader(crate::TX_HEADER))?;
    let prev = header(crate::PREV_HEADER)?;
    let (tx, position) = prev
        .split_once(':')
        .and_then(|(t, p)| Some((t.parse().ok()?, p.parse().ok()?)))
        .ok_or(DecodeError::BadHeader(crate::PREV_HEADER))?;
    Ok(crate::Link {
        prev: Checkpoint { tx, position },
        event: std::sync::Arc::new(event),
        traceparent: headers
            .and_then(|h| h.get(store::trace::TRACEPARENT))
            .map(|v| v.as_str().to_string()),
        memo: crate::Memo::default(),
    })
}

#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The relay's checkpoint name (one per target stream).
    pub name: String,
    /// The JetStream stream that keeps the events.
    pub stream: String,
    /// Subjects are `<prefix>.<aggregate_type>.<aggregate_id>`.
    pub subject_prefix: String,
    /// How long the stream keeps events (the store keeps everything).
    pub max_age: Duration,
    pub batch: i64,
    /// How many JetStream servers keep the stream and its consumers (1 on a single server,
    /// 3 on a three-node cluster).
    pub replicas: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            name: "jetstream".to_string(),
            stream: "ZHILEGO_EVENTS".to_string(),
            subject_prefix: "events".to_string(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            batch: 2000,
            replicas: 1,
        }
    }
}

/// How far relay `name` is behind the store: events not yet published, and the age in
/// seconds of the oldest of them.
pub async fn lag(db: &Database, name: &str) -> Result<(i64, f64), RelayError> {
    let Database::Postgres(pool) = db else {
        return Err(RelayError::Unsupported);
    };
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT tx, position FROM relay_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    let at = row
        .map(|(tx, position)| Checkpoint { tx, position })
        .unwrap_or_default();
    let backlog = history::backlog(db, at).await?;
    Ok((backlog.events, backlog.lag_seconds()))
}

/// The event stream, as the relay creates it (consumers create it too if they start first).
pub fn stream_config(config: &RelayConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        max_age: config.max_age,
        duplicate_window: Duration::from_secs(120),
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the relay needs the PostgreSQL event store")]
    Unsupported,
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("JetStream: {0}")]
    Bus(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Why a message from the stream is not an event the consumers can fold.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event body: {0}")]
    Body(#[from] serde_json::Error),
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("bad {0} header")]
    BadHeader(&'static str),
}

/// One event as the relay sends it.
#[derive(sqlx::FromRow)]
struct Outgoing {
    position: i64,
    tx: i64,
    aggregate_type: String,
    aggregate_id: String,
    event_id: Option<String>,
    correlation_id: Option<String>,
    /// The writer's trace context, when it exported traces.
    traceparent: Option<String>,
    body: String,
}

/// Up to `limit` events after `from` in commit-safe order, as messages.
async fn outgoing(
    pool: &sqlx::PgPool,
    from: Checkpoint,
    limit: i64,
) -> Result<Vec<Outgoing>, sqlx::Error> {
    // The same commit-safe read as `store::history::events_after`, with each message body
    // (the serialized `StoredEvent`) built by PostgreSQL, so it is forwarded as it comes.
    let sql = format!(
        "SELECT position, xid::text::bigint AS tx, aggregate_type, aggregate_id, \
                metadata->>'event_id' AS event_id, \
                metadata->>'correlation_id' AS correlation_id, \
                metadata->>'traceparent' AS traceparent, \
                json_build_object('position', position, 'aggregate_type', aggregate_type, \
                    'aggregate_id', aggregate_id, 'sequence', sequence, \
                    'event_type', event_type, 'event_version', event_version, \
                    'payload', payload, 'metadata', metadata, 'recorded_at', recorded_at, \
                    'hash', coalesce(metadata->>'hash', ''))::text AS body \
         FROM events {}",
        history::PG_AFTER
    );
    sqlx::query_as(&sql)
        .bind(from.tx)
        .bind(from.position)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// After a nudge, how long a relay or reader waits for more commits to share the batch.
pub const GATHER: Duration = Duration::from_millis(5);

pub struct Relay {
    db: Database,
    js: jetstream::Context,
    config: RelayConfig,
    /// The next batch, read while the previous one's acknowledgements were awaited: the events
    /// after the checkpoint it starts from. Used only if the checkpoint is still there.
    prefetched: tokio::sync::Mutex<Option<(Checkpoint, Vec<Outgoing>)>>,
}

impl Relay {
    /// Connects the relay to JetStream and makes sure its stream exists.
    pub async fn new(
        db: Database,
        nats: async_nats::Client,
        config: RelayConfig,
    ) -> Result<Relay, RelayError> {
        if !matches!(db, Database::Postgres(_)) {
            return Err(RelayError::Unsupported);
        }
        let js = jetstream::new(nats);
        js.get_or_create_stream(stream_config(&config))
            .await
            .map_err(|e| RelayError::Bus(e.into()))?;
        Ok(Relay {
            db,
            js,
            config,
            prefetched: tokio::sync::Mutex::new(None),
        })
    }

    /// Publishes one batch; returns how many events it published.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let Database::Postgres(pool) = &self.db else {
            return Err(RelayError::Unsupported);
        };
        let mut tx = pool.begin().await?;
        store::turns::take(&mut tx, store::turns::Follower::Relay, &self.config.name).await?;
        let select = "SELECT tx, position FROM relay_checkpoints WHERE name = $1";
        let saved: Option<(i64, i64)> = sqlx::query_as(select)
            .bind(&self.config.name)
            .fetch_optional(&mut *tx)
            .await?;
        let (cp_tx, cp_pos) = match saved {
            Some(row) => row,
            None => {
                sqlx::query("INSERT INTO relay_checkpoints (name, tx, position) VALUES ($1, 0, 0) ON CONFLICT (name) DO NOTHING")
                    .bind(&self.config.name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query_as(select)
                    .bind(&self.config.name)
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        let from = Checkpoint {
            tx: cp_tx,
            position: cp_pos,
        };
        let mut prefetched = self.prefetched.lock().await;
        let rows = match prefetched.take() {
            Some((start, rows)) if start == from => rows,
            _ => outgoing(pool, from, self.config.batch).await?,
        };
        let Some(last) = rows.last().map(|r| Checkpoint {
            tx: r.tx,
            position: r.position,
        }) else {
            return Ok(0);
        };
        let mut acks = Vec::with_capacity(rows.len());
        // One span per traced event, open until JetStream has acknowledged the batch.
        let mut spans = Vec::new();
        let mut prev = from;
        for row in &rows {
            let mut message = PublishMessage::build()
                .payload(Bytes::from(row.body.clone().into_bytes()))
                .message_id(row.event_id.as_deref().unwrap_or_default())
                .header("Zhilego-Position", row.position.to_string().as_str())
                .header(crate::TX_HEADER, row.tx.to_string().as_str())
                .header(
                    crate::PREV_HEADER,
                    format!("{}:{}", prev.tx, prev.position).as_str(),
                );
            prev = Checkpoint {
                tx: row.tx,
                position: row.position,
            };
            if let Some(correlation) = &row.correlation_id {
                message = message.header("Zhilego-Correlation-Id", correlation.as_str());
            }
            if let Some(traceparent) = &row.traceparent {
                // The relay's step is a span of the writer's trace; the consumers continue
                // from it (or from the writer's span, when this process exports no traces).
                let span = tracing::info_span!("relay publish", otel.kind = "producer",
                    position = row.position, aggregate = %row.aggregate_type);
                store::trace::continue_from(&span, traceparent);
                let ours = span.in_scope(store::trace::current);
                spans.push(span);
                let forwarded = ours.unwrap_or_else(|| traceparent.clone());
                message = message.header(store::trace::TRACEPARENT, forwarded.as_str());
            }
            let subject = format!(
                "{}.{}.{}",
                self.config.subject_prefix, row.aggregate_type, row.aggregate_id
            );
            let ack = self
                .js
                .send_publish(subject, message)
                .await
                .map_err(|err| RelayError::Bus(err.into()))?;
            acks.push(ack);
        }
        // Read the next batch while JetStream acknowledges this one. (A transaction still
        // running hides later ones from it; what it returns is still a correct start of the
        // next batch.)
        // Only behind a backlog (a full batch): in steady state there is nothing to prefetch.
        let backlog = rows.len() as i64 == self.config.batch;
        let next = async {
            if backlog {
                outgoing(pool, last, self.config.batch).await
            } else {
                Ok(Vec::new())
            }
        };
        let acked = async {
            for ack in acks {
                ack.await.map_err(|err| RelayError::Bus(err.into()))?;
            }
            Ok::<_, RelayError>(())
        };
        let (acked, next) = tokio::join!(acked, next);
        drop(spans);
        acked?;
        if let Ok(next) = next {
            if !next.is_empty() {
                *prefetched = Some((last, next));
            }
        }
        sqlx::query("UPDATE relay_checkpoints SET tx = $2, position = $3 WHERE name = $1")
            .bind(&self.config.name)
            .bind(last.tx)
            .bind(last.position)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        metrics::counter!("zhilego_relay_published_total").increment(rows.len() as u64);
        metrics::gauge!("zhilego_relay_position").set(last.position as f64);
        Ok(rows.len())
    }

    /// Relays until `shutdown` resolves: after every nudge, every `poll`, and with growing
    /// pauses (up to 5 s) while the bus or the store fails.
    pub async fn run(
        &self,
        nudge: &tokio::sync::Notify,
        poll: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut pause = Duration::ZERO;
        loop {
            match self.relay_once().await {
                Ok(n) if n as i64 == self.config.batch => continue,
                Ok(_) => pause = Duration::ZERO,
                Err(e) => {
                    pause = (pause * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "relay step failed");
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = nudge.notified(), if pause.is_zero() => tokio::time::sleep(GATHER).await,
                _ = tokio::time::sleep(if pause.is_zero() { poll } else { pause }) => {}
            }
        }
    }
}
