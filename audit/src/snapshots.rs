//! Snapshots for state as of a point: the state of an aggregate after every
//! [`SNAPSHOT_EVERY`]-th event, as its own fold left it, kept in memory (so they are always
//! this build's `apply` and upcasters), for the aggregates asked about most recently.
//!
//! A snapshot is used only while the events it folded are still those in the store. It keeps
//! the SHA-256 of the sequence and PostgreSQL row version (`xmin`, `ctid`) of each of those
//! events, and before each use PostgreSQL recomputes that digest over the stored rows
//! (`DIGEST_SQL`); any change, removal or insertion among them discards the aggregate's
//! snapshots. The row versions stand for the contents because PostgreSQL gives every row
//! written (an UPDATE is a new row) the id of the transaction that wrote it and a new place in
//! the table, triggers or not; only bytes edited in the table's files below PostgreSQL would
//! keep them, and `audit verify` catches those. Hashing versions instead of payloads reads no
//! payload: about half the time of hashing the payload text at 10,000 events. On SQLite (no
//! row versions nor SQL SHA-256, and small stores) every request folds from the first event.
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

/// Feeds one event into a digest: the bytes `DIGEST_SQL` makes of it.
pub fn digest_row(h: &mut Sha256, row: &FoldRow) {
    h.update(row.sequence.to_string().as_bytes());
    h.update(b",");
    h.update(row.row_version.as_bytes());
    h.update(b";");
}

/// A row's version as [`FoldRow::row_version`] carries it (PostgreSQL).
pub const ROW_VERSION_SQL: &str = "xmin::text || ',' || ctid::text";

/// The digest of the versions of an aggregate's rows up to `$3` on PostgreSQL (binds: type,
/// id, sequence), byte for byte what [`digest_row`] hashes.
pub const DIGEST_SQL: &str = "SELECT sha256(convert_to(coalesce(string_agg(\
     sequence::text || ',' || xmin::text || ',' || ctid::text || ';', '' ORDER BY sequence), ''), \
     'UTF8')) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3";

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
