//! The store checked against a checkpoint held outside it: the hash chains, and the Merkle
//! tree recomputed from the events as stored, in commit order. Any change, removal,
//! insertion or reordering among the first `tree_size` events gives another root.
//!
//! The first bad position is found by comparing the recomputed leaves with the notary's
//! stored leaves, which are trusted only if they reproduce the checkpoint's root themselves
//! (a root is a commitment to every leaf). If they do not (the leaf table was rewritten too),
//! the earliest position where the store and the leaf table differ is named, or the first
//! event when they agree with each other but not with the checkpoint: from there on nothing can
//! be told apart from a forgery.
use crate::leaf::Hash;
use crate::merkle::{self, Frontier};
use crate::note::{NoteError, NoteVerifier};
use crate::scan::{self, Forms, Link, RowView};
use crate::tree::Tree;
use futures::TryStreamExt;
use serde::Serialize;
use store::chain::GENESIS_HASH;
use store::history::{BrokenLink, Checkpoint};
use store::{Database, StoreError, VerifyReport};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the checkpoint: {0}")]
    Note(#[from] NoteError),
}

/// Where the store does not match the checkpoint.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TreeBreak {
    /// The first position that does not match (the event the checkpoint has at that place).
    pub position: i64,
    pub leaf_index: u64,
    pub problem: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CheckpointReport {
    pub ok: bool,
    pub origin: String,
    pub tree_size: u64,
    /// Events recomputed into the tree.
    pub checked_events: u64,
    /// The tree's verdict: `None` when the store reproduces the checkpoint's root.
    pub tree: Option<TreeBreak>,
    /// Every aggregate's hash chain, checked in commit order (all events, also those after
    /// the checkpoint).
    pub chains: VerifyReport,
    /// The first position that does not match, of the tree and the chains.
    pub first_bad_position: Option<i64>,
}

/// Events a reader hands its hashing thread at a time.
const CHUNK: usize = 1024;

/// Most ranges read at once (each one database connection and one hashing thread).
const MAX_RANGES: usize = 8;

/// A stretch of the store in commit order: after `from` (exclusive), up to `to` (inclusive;
/// `None`: to the end).
#[derive(Clone, Copy, Debug)]
struct Range {
    from: Checkpoint,
    to: Option<Checkpoint>,
}

/// An aggregate's first event in a range: its chain link needs its predecessor, which an
/// earlier range holds (or nobody: then it follows genesis).
struct Deferred {
    /// Its place among the range's events.
    index: usize,
    key: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    position: i64,
    stored_hash: Link,
    /// The chain hash's input after the predecessor's hash; not kept for a first event
    /// (sequence 1), whose link to genesis is worked out at once (`genesis`): should an
    /// earlier range have its aggregate after all, the event is read again.
    chain_suffix: Option<Vec<u8>>,
    /// The problem, if any, with the event as the first of its aggregate.
    genesis: Option<Option<String>>,
}

/// What one range gives: its leaves, the chain breaks found inside it, the links left to the
/// ranges before it, and each aggregate's newest event in it.
#[derive(Default)]
struct RangeWork {
    /// (position, leaf hash) in commit order.
    leaves: Vec<(i64, Hash)>,
    /// (index in the range, break) of links whose predecessor is in the range.
    broken: Vec<(usize, BrokenLink)>,
    deferred: Vec<Deferred>,
    /// Aggregate key → (sequence, stored hash) of its newest event in the range.
    heads: Heads,
    /// Whether this is the first range (nothing before it).
    first: bool,
}

/// Aggregate key → (sequence, stored chain link) of its newest event so far. The keys are
/// the store's own strings, so a fast hasher without per-process seeding is fine here
/// (foldhash, which hashbrown already brings; SipHash took about 4 % of verify).
type Heads = std::collections::HashMap<String, (i64, Link), foldhash::fast::RandomState>;

/// An aggregate's key, unambiguous whatever the strings hold.
fn key_of(out: &mut String, aggregate_type: &str, aggregate_id: &str) {
    out.clear();
    let mut digits = [0u8; 20];
    out.push_str(
        std::str::from_utf8(scan::decimal(aggregate_type.len() as i64, &mut digits))
            .expect("digits"),
    );
    out.push(':');
    out.push_str(aggregate_type);
    out.push_str(aggregate_id);
}

/// The break, if any, of an event with `sequence` and chain hash `computed` (or stored hash
/// `stored`) after a predecessor at `prev_sequence`: `store::history`'s rule.
fn link_problem(
    prev_sequence: i64,
    sequence: i64,
    stored: &[u8],
    computed: impl FnOnce() -> [u8; 64],
) -> Option<String> {
    if sequence != prev_sequence + 1 {
        return Some(format!(
            "sequence {sequence} follows {prev_sequence}: events are missing"
        ));
    }
    if computed()[..] != *stored {
        return Some(if stored.is_empty() {
            "event carries no hash".to_string()
        } else {
            "hash does not match the event and its predecessor".to_string()
        });
    }
    None
}

impl RangeWork {
    fn take<R>(
        &mut self,
        rows: &[R],
        view: fn(&R) -> Result<RowView<'_>, sqlx::Error>,
        key: &mut String,
        forms: &mut Forms,
    ) -> Result<(), StoreError> {
        for row in rows {
            let row = &view(row)?;
            let (leaf, stored) = forms.digest(row)?;
            let index = self.leaves.len();
            self.leaves.push((row.position, leaf));
            key_of(key, row.aggregate_type, row.aggregate_id);
            match self.heads.get_mut(key.as_str()) {
                Some(head) => {
                    let problem = link_problem(head.0, row.sequence, stored.as_bytes(), || {
                        forms.chain_hex(row, head.1.as_bytes())
                    });
                    if let Some(problem) = problem {
                        self.broken.push((index, broken(row, problem)));
                    }
                    // Continue from the stored hash so that one bad event is reported once.
                    *head = (row.sequence, stored);
                }
                None => {
                    let as_first = || {
                        link_problem(0, row.sequence, stored.as_bytes(), || {
                            forms.chain_hex(row, GENESIS_HASH.as_bytes())
                        })
                    };
                    if self.first {
                        // Nothing comes before the first range: the aggregate starts here.
                        if let Some(problem) = as_first() {
                            self.broken.push((index, broken(row, problem)));
                        }
                    } else {
                        let genesis = (row.sequence == 1).then(as_first);
                        self.deferred.push(Deferred {
                            index,
                            key: key.clone(),
                            aggregate_type: row.aggregate_type.to_string(),
                            aggregate_id: row.aggregate_id.to_string(),
                            sequence: row.sequence,
                            position: row.position,
                            stored_hash: stored.clone(),
                            chain_suffix: genesis.is_none().then(|| forms.suffix(row)),
                            genesis,
                        });
                    }
                    self.heads.insert(key.clone(), (row.sequence, stored));
                }
            }
        }
        Ok(())
    }
}

fn broken(row: &RowView<'_>, problem: String) -> BrokenLink {
    BrokenLink {
        aggregate_type: row.aggregate_type.to_string(),
        aggregate_id: row.aggregate_id.to_string(),
        sequence: row.sequence,
        position: row.position,
        problem,
    }
}

/// Splits the store into about `n` ranges of commit order at the events found at evenly
/// spaced positions (positions follow commit order closely, so the ranges come out about
/// equal; the split is exact whatever they hold, as ranges are intervals of commit order).
async fn split(conn: &mut sqlx::PgConnection, n: usize) -> Result<Vec<Range>, StoreError> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT min(position), max(position) FROM events")
            .fetch_one(&mut *conn)
            .await?;
    let mut cuts: Vec<Checkpoint> = Vec::new();
    if let (Some(lo), Some(hi)) = (lo, hi) {
        for k in 1..n as i64 {
            let p = lo + (hi - lo) * k / n as i64;
            let cut: Option<(i64, i64)> = sqlx::query_as(
                "SELECT xid::text::bigint, position FROM events WHERE position >= $1 \
                 ORDER BY position LIMIT 1",
            )
            .bind(p)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((tx, position)) = cut {
                cuts.push(Checkpoint { tx, position });
            }
        }
    }
    cuts.sort();
    cuts.dedup();
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    let mut from = Checkpoint::default();
    for cut in cuts {
        ranges.push(Range {
            from,
            to: Some(cut),
        });
        from = cut;
    }
    ranges.push(Range { from, to: None });
    Ok(ranges)
}

/// Hashes what `rows` delivers on a thread of its own, while the caller reads on.
fn hasher<R: Send + 'static>(
    mut rows: tokio::sync::mpsc::Receiver<Vec<R>>,
    view: fn(&R) -> Result<RowView<'_>, sqlx::Error>,
    first: bool,
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> tokio::task::JoinHandle<Result<RangeWork, StoreError>> {
    tokio::task::spawn_blocking(move || {
        let mut work = RangeWork {
            first,
            ..RangeWork::default()
        };
        let mut key = String::new();
        let mut forms = Forms::default();
        while let Some(chunk) = rows.blocking_recv() {
            work.take(&chunk, view, &mut key, &mut forms)?;
            done.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(work)
    })
}

/// Sends the rows of `stream` to the hashing task `CHUNK` at a time (decoded there); stops
/// early when the hashing task has stopped (its own error is the one reported).
async fn send_in_chunks<R, T>(
    mut stream: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    decode: fn(R) -> Result<T, sqlx::Error>,
    send: tokio::sync::mpsc::Sender<Vec<T>>,
) -> Result<(), StoreError> {
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(row) = stream.try_next().await? {
        chunk.push(decode(row)?);
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if send.send(full).await.is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = send.send(chunk).await;
    }
    Ok(())
}

fn task_error(source: tokio::task::JoinError) -> StoreError {
    StoreError::Task {
        task: "hashing",
        source,
    }
}

/// Reads one range on its own connection, inside the snapshot `snapshot`, and hashes it.
async fn read_pg_range(
    pool: sqlx::PgPool,
    snapshot: String,
    horizon: String,
    range: Range,
    imported: tokio::sync::oneshot::Sender<()>,
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<RangeWork, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // The id is PostgreSQL's own (hex digits and dashes), checked before it is used.
    sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .execute(&mut *tx)
        .await?;
    let _ = imported.send(());
    // The range in commit order straight from the commit-order index. The planner estimates
    // `(tx, position) > ($1, $2)` by its first column alone, and for a range of half the store
    // it picked a parallel sequential scan and a sort of every row's text, spilled to disk
    // (verify took 29 s for 1,000,000 events; reading them from the index takes about 3 s).
    sqlx::query("SET LOCAL enable_sort = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
        .execute(&mut *tx)
        .await?;
    let upper = if range.to.is_some() {
        "AND (xid::text::bigint, position) <= ($3, $4)"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {} FROM events WHERE (xid::text::bigint, position) > ($1, $2) {upper} \
         AND xid < $5::xid8 \
         ORDER BY xid::text::bigint, position",
        scan::PG_RAW_COLUMNS
    );
    let to = range.to.unwrap_or_default();
    let (send, recv) = tokio::sync::mpsc::channel(4);
    let hashing = hasher(
        recv,
        scan::view_pg,
        range.from == Checkpoint::default(),
        done,
    );
    let read = async {
        let stream = sqlx::query(&sql)
            .bind(range.from.tx)
            .bind(range.from.position)
            .bind(to.tx)
            .bind(to.position)
            .bind(&horizon)
            .fetch(&mut *tx);
        send_in_chunks(stream, Ok, send).await
    };
    let read = read.await;
    let work = hashing.await.map_err(task_error)?;
    read?;
    work
}

/// Every event in commit order, read in ranges at once (PostgreSQL: one connection each,
/// all in one exported snapshot, so they see one store) and hashed on as many threads.
async fn read_all(
    db: &Database,
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Vec<tokio::task::JoinHandle<Result<RangeWork, StoreError>>>, StoreError> {
    match db {
        Database::Postgres(pool) => {
            let threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            let room = (pool.options().get_max_connections() as usize).saturating_sub(1);
            let n = threads.clamp(2, MAX_RANGES).min(room.max(1));
            let mut lead = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *lead)
                .await?;
            let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
                .fetch_one(&mut *lead)
                .await?;
            if !snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(StoreError::Integrity(format!(
                    "unexpected snapshot id {snapshot:?}"
                )));
            }
            // The commit-safe horizon of the shared snapshot, read once and bound as a value:
            // `pg_snapshot_xmin(pg_current_snapshot())` in the range queries was evaluated
            // for every row.
            let horizon: String =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                    .fetch_one(&mut *lead)
                    .await?;
            let ranges = split(&mut lead, n).await?;
            let mut handles = Vec::with_capacity(ranges.len());
            let mut imported = Vec::with_capacity(ranges.len());
            for range in ranges {
                let (tell, told) = tokio::sync::oneshot::channel();
                imported.push(told);
                handles.push(tokio::spawn(read_pg_range(
                    pool.clone(),
                    snapshot.clone(),
                    horizon.clone(),
                    range,
                    tell,
                    done.clone(),
                )));
            }
            // A snapshot can be imported only while its exporter's transaction is open: it
            // ends once every reader has its own.
            for r in imported {
                let _ = r.await;
            }
            lead.rollback().await?;
            Ok(handles)
        }
        Database::Sqlite(pool) => {
            let pool = pool.clone();
            Ok(vec![tokio::spawn(async move {
                let (send, recv) = tokio::sync::mpsc::channel(4);
                let hashing = hasher(recv, |r: &scan::RawRow| Ok(r.view()), true, done);
                let read = async {
                    let sql = format!(
                        "SELECT {} FROM events ORDER BY position",
                        scan::LITE_RAW_COLUMNS
                    );
                    let stream = sqlx::query(&sql).fetch(&pool);
                    send_in_chunks(stream, |r| scan::from_lite(&r), send).await
                };
                let read = read.await;
                let work = hashing.await.map_err(task_error)?;
                read?;
                work
            })])
        }
    }
}

/// Checks the store against the signed checkpoint `note` (its text as served); `progress`
/// hears (events done, events to do).
pub async fn against_checkpoint(
    db: &Database,
    verifier: &NoteVerifier,
    note: &str,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<CheckpointReport, VerifyError> {
    let signed = verifier.open(note)?;
    let size = signed.checkpoint.tree_size;
    // One pass in commit order: the leaves of the first `size` events, and every chain. The
    // store is read in ranges of commit order at once, each hashed on its own thread; the
    // ranges are then joined in order (the tree takes their leaves one after another, and a
    // chain that crosses into a range is checked with the newest link before it).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Progress is told against the checkpoint's size (counting the store first would be one
    // more scan of it).
    let handles = read_all(db, done.clone()).await;
    let total = size;
    let mut leaves: Vec<(i64, Hash)> = Vec::with_capacity(size as usize);
    let mut frontier = Frontier::default();
    let mut completed = Vec::new();
    let mut heads = Heads::default();
    let mut broken_links: Vec<BrokenLink> = Vec::new();
    let mut checked = 0u64;
    for mut handle in handles? {
        let work = loop {
            tokio::select! {
                w = &mut handle => break w.map_err(task_error)??,
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    let done = done.load(std::sync::atomic::Ordering::Relaxed);
                    progress(done, total.max(done));
                }
            }
        };
        let RangeWork {
            leaves: range_leaves,
            broken: mut range_broken,
            deferred,
            heads: range_heads,
            ..
        } = work;
        checked += range_leaves.len() as u64;
        for d in deferred {
            let (prev_sequence, prev_hash) = heads
                .get(&d.key)
                .map(|(s, h)| (*s, h.as_bytes()))
                .unwrap_or((0, GENESIS_HASH.as_bytes()));
            let problem = match (&d.genesis, &d.chain_suffix) {
                (Some(as_first), _) if !heads.contains_key(&d.key) => as_first.clone(),
                (_, Some(suffix)) => {
                    link_problem(prev_sequence, d.sequence, d.stored_hash.as_bytes(), || {
                        scan::chain_hex(prev_hash, suffix)
                    })
                }
                _ => {
                    let suffix = reread_suffix(db, d.position).await?;
                    link_problem(prev_sequence, d.sequence, d.stored_hash.as_bytes(), || {
                        scan::chain_hex(prev_hash, &suffix)
                    })
                }
            };
            if let Some(problem) = problem {
                range_broken.push((
                    d.index,
                    BrokenLink {
                        aggregate_type: d.aggregate_type,
                        aggregate_id: d.aggregate_id,
                        sequence: d.sequence,
                        position: d.position,
                        problem,
                    },
                ));
            }
        }
        range_broken.sort_by_key(|(i, _)| *i);
        broken_links.extend(range_broken.into_iter().map(|(_, b)| b));
        heads.extend(range_heads);
        for (position, leaf) in range_leaves {
            if (leaves.len() as u64) < size {
                frontier.push(leaf, &mut completed);
                completed.clear();
                leaves.push((position, leaf));
            }
        }
        let done = done.load(std::sync::atomic::Ordering::Relaxed);
        progress(done, total.max(done));
    }
    let chains = VerifyReport {
        ok: broken_links.is_empty(),
        checked_events: checked,
        broken: broken_links,
    };
    let tree = if leaves.len() as u64 == size && frontier.root() == signed.checkpoint.root_hash {
        None
    } else {
        Some(locate(db, &leaves, size, &signed.checkpoint.root_hash).await?)
    };
    metrics::counter!("zhilego_audit_verifications_total").increment(1);
    let first_bad_position = tree
        .as_ref()
        .map(|t| t.position)
        .into_iter()
        .chain(chains.broken.iter().map(|b| b.position))
        .min();
    let ok = first_bad_position.is_none();
    if !ok {
        metrics::counter!("zhilego_audit_verification_failures_total").increment(1);
    }
    Ok(CheckpointReport {
        ok,
        origin: signed.checkpoint.origin,
        tree_size: size,
        checked_events: leaves.len() as u64,
        tree,
        chains,
        first_bad_position,
    })
}

/// The chain suffix of the event at `position`, read again.
async fn reread_suffix(db: &Database, position: i64) -> Result<Vec<u8>, StoreError> {
    let row = match db {
        Database::Postgres(pool) => {
            let sql = format!(
                "SELECT {} FROM events WHERE position = $1",
                scan::PG_RAW_COLUMNS
            );
            scan::from_pg(&sqlx::query(&sql).bind(position).fetch_one(pool).await?)?
        }
        Database::Sqlite(pool) => {
            let sql = format!(
                "SELECT {} FROM events WHERE position = $1",
                scan::LITE_RAW_COLUMNS
            );
            scan::from_lite(&sqlx::query(&sql).bind(position).fetch_one(pool).await?)?
        }
    };
    Ok(scan::digest(&row.view())?.chain_suffix)
}

/// Names the first leaf where the store departs from the checkpoint.
async fn locate(
    db: &Database,
    leaves: &[(i64, Hash)],
    size: u64,
    root: &Hash,
) -> Result<TreeBreak, StoreError> {
    let tree = Tree::new(db.clone());
    let mut stored = Vec::with_capacity(size as usize);
    while (stored.len() as u64) < size {
        let batch = tree.leaves(stored.len() as u64, 50_000).await?;
        if batch.is_empty() {
            break;
        }
        stored.extend(batch);
    }
    let stored_hashes: Vec<Hash> = stored.iter().map(|l| l.leaf_hash).collect();
    let trusted = stored.len() as u64 == size
        && stored
            .iter()
            .enumerate()
            .all(|(i, l)| l.leaf_index == i as u64)
        && merkle::root(&merkle::Leaves(&stored_hashes), size) == *root;
    let first_diff = (0..size as usize).find(|&i| match (leaves.get(i), stored.get(i)) {
        (Some((p, h)), Some(l)) => *p != l.position || *h != l.leaf_hash,
        _ => true,
    });
    let i = match (trusted, first_diff) {
        (_, Some(i)) => i,
        (false, None) => 0,
        // Trusted leaves equal to the store's give the checkpoint's root: not reached.
        (true, None) => 0,
    };
    let expected = stored.get(i).map(|l| l.position);
    let found = leaves.get(i).map(|(p, _)| *p);
    let position = expected.or(found).unwrap_or(0);
    let mut problem = match (expected, found) {
        (Some(e), Some(f)) if e == f => format!("the event at position {e} was changed"),
        (Some(e), Some(f)) => format!(
            "the checkpoint has the event at position {e} here, the store has position {f}: events were removed, added or reordered"
        ),
        (Some(e), None) => format!("the event at position {e} and every later one are missing"),
        (None, Some(f)) => format!("the event at position {f} is not the one the checkpoint holds"),
        (None, None) => "the store does not match the checkpoint".to_string(),
    };
    if !trusted {
        problem.push_str(
            " (the notary's leaf table does not match the checkpoint either: it was rewritten too, so the position is the earliest the store and the table disagree)",
        );
    }
    Ok(TreeBreak {
        position,
        leaf_index: i as u64,
        problem,
    })
}
