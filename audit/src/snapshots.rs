//! Snapshots for state as of a point: the state of an aggregate after every
//! [`SNAPSHOT_EVERY`]-th event, as its own fold left it, kept in memory (so they are always
//! this build's `apply` and upcasters), for the aggregates asked about most recently.
//!
//! A snapshot is used only while the events it folded are still those in the store: it keeps
//! the SHA-256 of those events' sequence, type, version and payload text (`digest_sql`), and
//! PostgreSQL recomputes that digest over the stored events before each use; any change,
//! removal or insertion among them discards the aggregate's snapshots. On SQLite (no SQL
//! SHA-256, and small stores) every request folds from the first event.
use crate::views::FoldRow;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// A snapshot after every this many events of an aggregate.
pub const SNAPSHOT_EVERY: i64 = 128;

/// Aggregates whose snapshots are kept (the least recently asked about go first).
const AGGREGATES: usize = 64;

/// The state after the event with `sequence`, and the digest of the events up to it.
#[derive(Clone)]
pub struct Snapshot {
    pub sequence: i64,
    pub state: Value,
    /// The digest's running state after the events up to `sequence` (continued by later
    /// snapshots, finished to compare with the database's).
    pub digest: Sha256,
}

impl Snapshot {
    pub fn finished(&self) -> [u8; 32] {
        self.digest.clone().finalize().into()
    }
}

/// Feeds one event into a digest: the bytes `digest_sql` makes of it.
pub fn digest_row(h: &mut Sha256, row: &FoldRow) {
    h.update(row.sequence.to_string().as_bytes());
    for part in [&row.event_type, &row.event_version, &row.payload] {
        h.update(b":");
        h.update(part.len().to_string().as_bytes());
        h.update(b":");
        h.update(part.as_bytes());
    }
    h.update(b"\n");
}

/// The digest of an aggregate's events up to `$3` on PostgreSQL (binds: type, id, sequence),
/// byte for byte what [`digest_row`] hashes.
pub const DIGEST_SQL: &str = "SELECT sha256(convert_to(coalesce(string_agg(\
     sequence::text || ':' || octet_length(event_type) || ':' || event_type \
     || ':' || octet_length(event_version) || ':' || event_version \
     || ':' || octet_length(payload::text) || ':' || payload::text || E'\\n', '' ORDER BY sequence), ''), 'UTF8')) \
     FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3";

#[derive(Default)]
struct Cache {
    tick: u64,
    /// (type, id) → (last asked, snapshots by sequence).
    by_aggregate: HashMap<(String, String), (u64, Vec<Snapshot>)>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: std::sync::OnceLock<Mutex<Cache>> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The newest snapshot of the aggregate before the event with sequence `before`.
pub fn best(aggregate_type: &str, aggregate_id: &str, before: i64) -> Option<Snapshot> {
    let mut cache = cache().lock().ok()?;
    cache.tick += 1;
    let tick = cache.tick;
    let entry = cache
        .by_aggregate
        .get_mut(&(aggregate_type.to_string(), aggregate_id.to_string()))?;
    entry.0 = tick;
    entry.1.iter().rev().find(|s| s.sequence < before).cloned()
}

/// Drops the aggregate's snapshots (the events under one of them changed).
pub fn forget(aggregate_type: &str, aggregate_id: &str) {
    if let Ok(mut cache) = cache().lock() {
        cache
            .by_aggregate
            .remove(&(aggregate_type.to_string(), aggregate_id.to_string()));
    }
}

/// Keeps new snapshots of the aggregate.
pub fn keep(aggregate_type: &str, aggregate_id: &str, new: Vec<Snapshot>) {
    if new.is_empty() {
        return;
    }
    let Ok(mut cache) = cache().lock() else {
        return;
    };
    cache.tick += 1;
    let tick = cache.tick;
    if cache.by_aggregate.len() >= AGGREGATES {
        let oldest = cache
            .by_aggregate
            .iter()
            .min_by_key(|(_, (t, _))| *t)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            cache.by_aggregate.remove(&k);
        }
    }
    let entry = cache
        .by_aggregate
        .entry((aggregate_type.to_string(), aggregate_id.to_string()))
        .or_default();
    entry.0 = tick;
    for s in new {
        if let Err(at) = entry.1.binary_search_by_key(&s.sequence, |x| x.sequence) {
            entry.1.insert(at, s);
        }
    }
}
