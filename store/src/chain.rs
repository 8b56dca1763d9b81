//! The per-aggregate hash chain.
//!
//! Each event's `metadata.hash` is SHA-256 over the previous event's hash (64 zeros for the
//! first) and the event's canonical content: aggregate type and id, sequence, event type and
//! version, payload and metadata (less `hash`), with object keys sorted. Changing, removing or
//! reordering any stored event breaks the chain from that point, which `audit verify` reports.
//!
//! [`Chain::prepare`] stamps `event_id` (UUID v7, also the bus message id) and `hash` on
//! events about to be written; [`ChainedRepository`] wraps the postgres-es / sqlite-es
//! repositories for cqrs-es: reads pass through, writes are prepared and then written by
//! [`crate::append`].
use crate::append::Prepared;
use crate::{Database, StoreError};
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Writes `value` as JSON with object keys sorted, whatever map order serde_json was built with
/// (the form the chain hashes, and the audit leaves too).
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The fields of an event that the chain covers.
pub struct ChainInput<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Value,
}

/// The hash of an event given the hash of its predecessor.
pub fn event_hash(prev_hash: &str, e: &ChainInput<'_>) -> String {
    let mut metadata = e.metadata.clone();
    if let Value::Object(map) = &mut metadata {
        map.remove("hash");
    }
    let mut text = String::with_capacity(512);
    text.push_str(prev_hash);
    for part in [
        e.aggregate_type,
        e.aggregate_id,
        e.event_type,
        e.event_version,
    ] {
        text.push('\n');
        text.push_str(part);
    }
    text.push('\n');
    text.push_str(&e.sequence.to_string());
    text.push('\n');
    write_canonical(e.payload, &mut text);
    text.push('\n');
    write_canonical(&metadata, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The hash an event's metadata records (empty when it records none: `audit verify` then
/// reports the event).
pub(crate) fn hash_of(metadata: &Value) -> String {
    metadata
        .get("hash")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The hash stored with one event, if that event exists.
pub async fn stored_hash(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: usize,
) -> Result<Option<String>, StoreError> {
    let metadata: Option<Value> = crate::with_pool!(db, pool => {
        sqlx::query_scalar(
            "SELECT metadata FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .fetch_optional(pool)
        .await?
    });
    Ok(metadata.map(|m| hash_of(&m)))
}

/// Remembers the hash of the newest event of recently written aggregates, so that a command
/// usually needs no extra read to chain its events. Entries are facts (an event at a sequence
/// never changes), so a stale entry is simply not used.
#[derive(Default)]
struct HeadCache {
    heads: Mutex<HashMap<(String, String), (usize, String)>>,
}

const HEAD_CACHE_LIMIT: usize = 100_000;

impl HeadCache {
    fn get(&self, aggregate_type: &str, aggregate_id: &str, sequence: usize) -> Option<String> {
        let heads = self.heads.lock().expect("head cache");
        heads
            .get(&(aggregate_type.to_string(), aggregate_id.to_string()))
            .filter(|(seq, _)| *seq == sequence)
            .map(|(_, h)| h.clone())
    }

    fn put(&self, aggregate_type: &str, aggregate_id: &str, sequence: usize, hash: String) {
        let mut heads = self.heads.lock().expect("head cache");
        if heads.len() >= HEAD_CACHE_LIMIT {
            heads.clear();
        }
        heads.insert(
            (aggregate_type.to_string(), aggregate_id.to_string()),
            (sequence, hash),
        );
    }
}

/// Stamps events with their id and chained hash before they are written
/// ([`crate::append`]), and remembers each aggregate's newest hash once written. One per
/// aggregate store, shared by its repository (the cqrs-es commit path) and its
/// [`crate::AggregateStore::prepare`] (the executor's).
pub struct Chain {
    db: Database,
    heads: HeadCache,
}

impl Chain {
    pub(crate) fn new(db: Database) -> Chain {
        Chain {
            db,
            heads: HeadCache::default(),
        }
    }

    async fn previous_hash(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<String, PersistenceError> {
        if sequence == 0 {
            return Ok(GENESIS_HASH.to_string());
        }
        if let Some(hash) = self.heads.get(aggregate_type, aggregate_id, sequence) {
            return Ok(hash);
        }
        let hash = stored_hash(&self.db, aggregate_type, aggregate_id, sequence)
            .await
            .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        // A missing predecessor means someone else is writing this aggregate right now; the
        // insert will conflict and be retried. Chain to genesis meanwhile.
        Ok(hash.unwrap_or_else(|| GENESIS_HASH.to_string()))
    }

    /// `events` (consecutive events of one aggregate, not empty) with `event_id` and `hash`
    /// set, and the snapshot to write with them, ready for [`crate::append::write`].
    pub(crate) async fn prepare(
        self: &Arc<Self>,
        events: Vec<SerializedEvent>,
        snapshot: Option<(Value, usize)>,
    ) -> Result<Prepared, PersistenceError> {
        let first = events.first().ok_or_else(|| {
            PersistenceError::UnknownError("a commit with no events to chain".into())
        })?;
        let mut prev = self
            .previous_hash(
                &first.aggregate_type,
                &first.aggregate_id,
                first.sequence - 1,
            )
            .await?;
        let mut chained = Vec::with_capacity(events.len());
        for mut event in events {
            if let Value::Object(map) = &mut event.metadata {
                map.insert(
                    "event_id".to_string(),
                    Value::String(uuid::Uuid::now_v7().to_string()),
                );
                map.remove("hash");
            }
            let hash = event_hash(
                &prev,
                &ChainInput {
                    aggregate_type: &event.aggregate_type,
                    aggregate_id: &event.aggregate_id,
                    sequence: event.sequence as i64,
                    event_type: &event.event_type,
                    event_version: &event.event_version,
                    payload: &event.payload,
                    metadata: &event.metadata,
                },
            );
            if let Value::Object(map) = &mut event.metadata {
                map.insert("hash".to_string(), Value::String(hash.clone()));
            }
            prev = hash;
            chained.push(event);
        }
        Ok(Prepared {
            events: chained,
            snapshot,
            head: prev,
            chain: self.clone(),
        })
    }

    /// Remembers the newest hash of an aggregate whose events were just written.
    pub(crate) fn advanced(&self, prepared: &Prepared) {
        let last = prepared
            .events
            .last()
            .expect("a prepared commit has events");
        self.heads.put(
            &last.aggregate_type,
            &last.aggregate_id,
            last.sequence,
            prepared.head.clone(),
        );
    }
}

/// A repository whose reads are postgres-es' or sqlite-es', and whose writes chain and
/// identify events and then go through [`crate::append::write`] (the same rows the inner
/// repository would write, in one statement).
pub struct ChainedRepository<R> {
    inner: R,
    chain: Arc<Chain>,
}

impl<R> ChainedRepository<R> {
    pub(crate) fn new(inner: R, chain: Arc<Chain>) -> Self {
        ChainedRepository { inner, chain }
    }
}

impl<R: PersistedEventRepository> PersistedEventRepository for ChainedRepository<R> {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if events.is_empty() {
            return Ok(());
        }
        let snapshot = snapshot_update.map(|(_, payload, counter)| (payload, counter));
        let prepared = self.chain.prepare(events.to_vec(), snapshot).await?;
        crate::append::write(&self.chain.db, &[&prepared]).await?;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input<'a>(payload: &'a Value, metadata: &'a Value) -> ChainInput<'a> {
        ChainInput {
            aggregate_type: "Listing",
            aggregate_id: "a",
            sequence: 1,
            event_type: "ListingCreated",
            event_version: "1.0",
            payload,
            metadata,
        }
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let p1: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[1,{"k":1,"j":2}]}}"#).unwrap();
        let p2: Value =
            serde_json::from_str(r#"{"a":{"x":[1,{"j":2,"k":1}],"y":2},"b":1}"#).unwrap();
        let m = json!({"actor": "u"});
        assert_eq!(
            event_hash(GENESIS_HASH, &input(&p1, &m)),
            event_hash(GENESIS_HASH, &input(&p2, &m))
        );
    }

    #[test]
    fn the_stored_hash_itself_is_not_hashed() {
        let p = json!({"a": 1});
        let m1 = json!({"actor": "u"});
        let m2 = json!({"actor": "u", "hash": "whatever"});
        assert_eq!(
            event_hash(GENESIS_HASH, &input(&p, &m1)),
            event_hash(GENESIS_HASH, &input(&p, &m2))
        );
    }

    #[test]
    fn any_change_changes_the_hash() {
        let p = json!({"a": 1});
        let m = json!({"actor": "u"});
        let base = event_hash(GENESIS_HASH, &input(&p, &m));
        assert_ne!(base, event_hash(GENESIS_HASH, &input(&json!({"a": 2}), &m)));
        assert_ne!(
            base,
            event_hash(GENESIS_HASH, &input(&p, &json!({"actor": "v"})))
        );
        assert_ne!(base, event_hash(&base, &input(&p, &m)));
        let mut moved = input(&p, &m);
        moved.sequence = 2;
        assert_ne!(base, event_hash(GENESIS_HASH, &moved));
    }
}
