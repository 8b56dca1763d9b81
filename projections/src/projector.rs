//! Applies events to one projection: exactly once in effect, in commit-safe order, with the
//! checkpoint in the same transaction as the rows; rebuilds it from the store into fresh
//! tables and swaps them in atomically (the scan and fold of a rebuild are in
//! [`crate::rebuild`]).
use crate::event::{self, Decoded, Undecodable};
use crate::rows::WorkingSet;
use crate::table::{write_turn, ReadTx, Table};
use bus::Link;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::history::{self, Checkpoint};
use store::{Database, StoreError};
use tokio::sync::watch;

/// A read model: a deterministic fold of events into tables.
pub trait Projection: Send + Sync + 'static {
    type Set: WorkingSet;
    const NAME: &'static str;
    /// Bumped whenever the tables or the fold change: a stored version that differs makes the
    /// service rebuild the projection at start.
    const VERSION: i64;
    const TABLES: &'static [&'static Table];
    /// Declares the rows `event` will read or write.
    fn want(set: &mut Self::Set, event: &Decoded);
    /// Folds `event` into the rows.
    fn apply(set: &mut Self::Set, event: &Decoded);
}

/// The outcome of offering a run of linked events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub applied: usize,
    pub checkpoint: Checkpoint,
    /// Set when an offered event does not follow the checkpoint: the events up to this one
    /// must come from the store first.
    pub gap: Option<Checkpoint>,
}

/// A projection's row in `projection_checkpoints`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointRow {
    pub checkpoint: Checkpoint,
    /// Events applied since the projection was last built from scratch.
    pub applied: i64,
    pub version: i64,
}

/// A rebuild's progress: events folded so far and the total expected.
pub type Progress = dyn Fn(u64, u64) + Send + Sync;

const STORE_BATCH: i64 = 2_000;

pub struct Projector<P: Projection> {
    store: Database,
    read: Database,
    applied: Arc<watch::Sender<Checkpoint>>,
    /// A fault is recorded for this projection (see [`crate::event`]): cleared once the
    /// projection applies past it.
    stalled: Arc<AtomicBool>,
    _projection: PhantomData<fn() -> P>,
}

impl<P: Projection> Clone for Projector<P> {
    fn clone(&self) -> Self {
        Projector {
            store: self.store.clone(),
            read: self.read.clone(),
            applied: self.applied.clone(),
            stalled: self.stalled.clone(),
            _projection: PhantomData,
        }
    }
}

/// Creates the checkpoint table of a read database.
pub async fn init_read_database(read: &Database) -> Result<(), StoreError> {
    let sql = match read {
        Database::Postgres(_) => {
            "CREATE TABLE IF NOT EXISTS projection_checkpoints (name text PRIMARY KEY, \
             tx bigint NOT NULL, position bigint NOT NULL, applied bigint NOT NULL, \
             version bigint NOT NULL)"
        }
        Database::Sqlite(_) => {
            "CREATE TABLE IF NOT EXISTS projection_checkpoints (name TEXT PRIMARY KEY, \
             tx INTEGER NOT NULL, position INTEGER NOT NULL, applied INTEGER NOT NULL, \
             version INTEGER NOT NULL)"
        }
    };
    store::with_pool!(read, pool => {
        sqlx::query(sql).execute(pool).await?;
    });
    event::init_faults(read).await
}

/// Reads one projection's checkpoint row from `db`.
pub async fn checkpoint_row(db: &Database, name: &str) -> Result<CheckpointRow, StoreError> {
    let row: Option<(i64, i64, i64, i64)> = store::with_pool!(db, pool => {
        sqlx::query_as(
            "SELECT tx, position, applied, version FROM projection_checkpoints WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?
    });
    Ok(row
        .map(|(tx, position, applied, version)| CheckpointRow {
            checkpoint: Checkpoint { tx, position },
            applied,
            version,
        })
        .unwrap_or_default())
}

async fn lock_checkpoint(tx: &mut ReadTx, name: &str) -> Result<CheckpointRow, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Locked {
        tx: i64,
        position: i64,
        applied: i64,
        version: i64,
    }
    // Several builders may run one projection; they take turns (PostgreSQL: an advisory lock,
    // store::turns, so that waiting for the turn takes no transaction id; SQLite has one writer
    // anyway).
    let sql = "SELECT tx, position, applied, version FROM projection_checkpoints WHERE name = $1";
    let name_arg = [crate::table::Arg::Text(name.to_string())];
    if tx.is_postgres() {
        let turn = store::turns::sql(store::turns::Follower::Projection);
        tx.execute(&turn, &name_arg).await?;
    }
    let row = match tx.fetch::<Locked>(sql, &name_arg).await?.pop() {
        Some(row) => row,
        None => {
            tx.execute(
                "INSERT INTO projection_checkpoints (name, tx, position, applied, version) \
                 VALUES ($1, 0, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
                &name_arg,
            )
            .await?;
            tx.fetch::<Locked>(sql, &name_arg)
                .await?
                .pop()
                .ok_or_else(|| {
                    StoreError::Integrity(format!("checkpoint row of {name} vanished"))
                })?
        }
    };
    Ok(CheckpointRow {
        checkpoint: Checkpoint {
            tx: row.tx,
            position: row.position,
        },
        applied: row.applied,
        version: row.version,
    })
}

async fn save_checkpoint(
    tx: &mut ReadTx,
    name: &str,
    row: CheckpointRow,
) -> Result<(), StoreError> {
    use crate::table::Arg;
    tx.execute(
        "UPDATE projection_checkpoints SET tx = $2, position = $3, applied = $4, version = $5 \
         WHERE name = $1",
        &[
            Arg::Text(name.to_string()),
            Arg::Int(row.checkpoint.tx),
            Arg::Int(row.checkpoint.position),
            Arg::Int(row.applied),
            Arg::Int(row.version),
        ],
    )
    .await?;
    Ok(())
}

impl<P: Projection> Projector<P> {
    /// A projector from `store` into `read`, whose checkpoint table exists
    /// ([`init_read_database`], done once when the read database is opened).
    pub fn new(store: Database, read: Database) -> Self {
        let (applied, _) = watch::channel(Checkpoint::default());
        Projector {
            store,
            read,
            applied: Arc::new(applied),
            stalled: Arc::new(AtomicBool::new(false)),
            _projection: PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        P::NAME
    }

    pub fn store(&self) -> &Database {
        &self.store
    }

    pub fn read(&self) -> &Database {
        &self.read
    }

    /// The checkpoint this process saw applied last (any process may be ahead of it).
    pub fn applied(&self) -> watch::Receiver<Checkpoint> {
        self.applied.subscribe()
    }

    pub async fn checkpoint(&self) -> Result<CheckpointRow, StoreError> {
        checkpoint_row(&self.read, P::NAME).await
    }

    /// Makes the projection's tables ready: rebuilt when missing or built by another version
    /// of the fold. Returns whether it rebuilt.
    pub async fn prepare(&self) -> Result<bool, StoreError> {
        if event::fault_of(&self.read, P::NAME).await?.is_some() {
            self.stalled.store(true, Ordering::SeqCst);
        }
        let row = self.checkpoint().await?;
        let mut missing = false;
        for table in P::TABLES {
            missing |= !crate::table::table_exists(&self.read, table.name).await?;
        }
        if missing || row.version != P::VERSION {
            if row.version != 0 || row.applied != 0 {
                tracing::info!(
                    projection = P::NAME,
                    stored_version = row.version,
                    version = P::VERSION,
                    "rebuilding the projection"
                );
            }
            self.rebuild(None).await?;
            return Ok(true);
        }
        self.applied.send_replace(row.checkpoint);
        Ok(false)
    }

    /// Applies the longest run of `links` that follows the checkpoint, skipping events it
    /// already has, in one transaction with the checkpoint. An event that does not decode ends
    /// the run: what came before it is applied, the fault is recorded and returned as an error.
    pub async fn apply(&self, links: &[Link]) -> Result<Applied, StoreError> {
        // Decoded before the turn (embedded, the one writer's), into the links' memos: the
        // run below, whichever part of the links it is, then only reads them.
        event::decode_links_until_fault(links);
        let _turn = write_turn(&self.read, P::NAME).await;
        let mut tx = ReadTx::begin(&self.read).await?;
        let row = lock_checkpoint(&mut tx, P::NAME).await?;
        let (run, tail, gap) = bus::follow(row.checkpoint, links);
        let (run, fault) = event::decode_links_until_fault(run);
        let tail = match (&fault, run.last()) {
            (None, _) => tail,
            (Some(_), Some(last)) => last.checkpoint(),
            (Some(_), None) => row.checkpoint,
        };
        if run.is_empty() {
            drop(tx);
            drop(_turn);
            if let Some(fault) = fault {
                return Err(self.stall(fault).await);
            }
            return Ok(Applied {
                applied: 0,
                checkpoint: row.checkpoint,
                gap,
            });
        }
        let mut set = P::Set::new(false);
        for e in &run {
            P::want(&mut set, e);
        }
        set.load(&mut tx, "").await?;
        for e in &run {
            P::apply(&mut set, e);
        }
        set.flush(&mut tx, "").await?;
        save_checkpoint(
            &mut tx,
            P::NAME,
            CheckpointRow {
                checkpoint: tail,
                applied: row.applied + run.len() as i64,
                version: row.version,
            },
        )
        .await?;
        tx.commit().await?;
        drop(_turn);
        self.applied.send_if_modified(|seen| {
            let newer = tail > *seen;
            if newer {
                *seen = tail;
            }
            newer
        });
        metrics::counter!("zhilego_projection_events_applied_total", "projection" => P::NAME)
            .increment(run.len() as u64);
        if let Some(fault) = fault {
            return Err(self.stall(fault).await);
        }
        if self.stalled.swap(false, Ordering::SeqCst) {
            event::clear_fault(&self.read, P::NAME).await?;
        }
        Ok(Applied {
            applied: run.len(),
            checkpoint: tail,
            gap,
        })
    }

    /// Records that the projection stopped before `fault`; the error to return for it.
    async fn stall(&self, fault: Box<Undecodable>) -> StoreError {
        self.stalled.store(true, Ordering::SeqCst);
        if let Err(e) = event::record_fault(&self.read, P::NAME, &fault).await {
            tracing::error!(projection = P::NAME, error = %e, "recording a projection fault failed");
        }
        StoreError::Integrity(format!("{} stopped: {fault}", P::NAME))
    }

    /// Applies the next events from the store; returns how many it applied.
    pub async fn catch_up_step(&self, limit: i64) -> Result<(usize, bool), StoreError> {
        let from = self.checkpoint().await?.checkpoint;
        let events = history::events_after_for_folding(&self.store, from, limit).await?;
        let fetched = events.len();
        if fetched == 0 {
            return Ok((0, false));
        }
        let applied = self.apply(&bus::chain(from, events)).await?;
        Ok((
            applied.applied,
            fetched as i64 == limit || applied.gap.is_some(),
        ))
    }

    /// Applies everything the store has that this projection lacks.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let (n, more) = self.catch_up_step(STORE_BATCH).await?;
            total += n;
            if !more {
                return Ok(total);
            }
        }
    }

    /// Applies links from the bus; where they do not connect to the checkpoint (a message lost,
    /// delivered to another builder, or older than the stream keeps), the missing events come
    /// from the store first.
    pub async fn apply_from_bus(&self, links: &[Link]) -> Result<usize, StoreError> {
        let mut total = 0;
        for _ in 0..100 {
            let outcome = self.apply(links).await?;
            total += outcome.applied;
            let Some(gap) = outcome.gap else {
                return Ok(total);
            };
            let before = outcome.checkpoint;
            total += self.catch_up().await?;
            if self.checkpoint().await?.checkpoint == before {
                // The store has nothing after our checkpoint that leads to the message.
                return Err(StoreError::Integrity(format!(
                    "{}: message at {gap:?} does not follow the store from {before:?}",
                    P::NAME
                )));
            }
        }
        Ok(total)
    }

    /// Replays the whole store into fresh tables, folds in whatever arrived meanwhile, and swaps
    /// the fresh tables in atomically. Returns how many events the projection now holds.
    /// ([`crate::rebuild::rebuild`] does several projections from one scan.)
    pub async fn rebuild(&self, progress: Option<&Progress>) -> Result<u64, StoreError> {
        let part = Box::new(crate::rebuild::Fresh::new(self.clone()));
        let summary = crate::rebuild::rebuild(&self.store, vec![part], progress).await?;
        Ok(summary.projections.first().map_or(0, |p| p.events))
    }

    /// The end of a rebuild: the fresh tables `<table><suffix>` hold the events up to `at`
    /// (`folded` of them). Under the checkpoint lock (builders wait), folds the events after
    /// `at` into them, then replaces the live tables. With `fault` (the event the rebuild
    /// stopped before), the projection stops there.
    pub(crate) async fn swap_in(
        &self,
        suffix: &str,
        mut at: Checkpoint,
        mut folded: u64,
        mut fault: Option<Box<Undecodable>>,
    ) -> Result<u64, StoreError> {
        let _turn = write_turn(&self.read, "rebuild").await;
        let mut tx = ReadTx::begin(&self.read).await?;
        lock_checkpoint(&mut tx, P::NAME).await?;
        while fault.is_none() {
            let stored = history::events_after_for_folding(&self.store, at, STORE_BATCH).await?;
            let (events, stopped) = event::decode_until_fault(&stored);
            fault = stopped;
            let Some(last) = events.last().map(Decoded::checkpoint) else {
                break;
            };
            let mut tail = P::Set::new(false);
            for e in &events {
                P::want(&mut tail, e);
            }
            tail.load(&mut tx, suffix).await?;
            for e in &events {
                P::apply(&mut tail, e);
            }
            tail.flush(&mut tx, suffix).await?;
            folded += events.len() as u64;
            at = last;
        }
        for table in P::TABLES {
            tx.execute(&format!("DROP TABLE IF EXISTS {}", table.name), &[])
                .await?;
            tx.execute(
                &format!(
                    "ALTER TABLE {}{suffix} RENAME TO {}",
                    table.name, table.name
                ),
                &[],
            )
            .await?;
        }
        save_checkpoint(
            &mut tx,
            P::NAME,
            CheckpointRow {
                checkpoint: at,
                applied: folded as i64,
                version: P::VERSION,
            },
        )
        .await?;
        tx.commit().await?;
        drop(_turn);
        self.applied.send_replace(at);
        if let Some(fault) = fault {
            return Err(self.stall(fault).await);
        }
        if self.stalled.swap(false, Ordering::SeqCst) {
            event::clear_fault(&self.read, P::NAME).await?;
        }
        Ok(folded)
    }

    /// Waits until the projection on `db` (the read database or a replica of it) has applied
    /// the event at `position`, at most `timeout`. Returns whether it got there.
    pub async fn wait_for(
        &self,
        db: &Database,
        position: i64,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let target = loop {
            match history::checkpoint_of(&self.store, position).await? {
                Some(target) => break target,
                // Not an event (yet): reached once the projection has moved past it.
                None => {
                    if checkpoint_row(db, P::NAME).await?.checkpoint.position >= position {
                        return Ok(true);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(false);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let mut seen = self.applied.subscribe();
        loop {
            if checkpoint_row(db, P::NAME).await?.checkpoint >= target {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            // Woken by this process's builder, or polling for another process's.
            let step = tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(25)),
            );
            tokio::select! {
                _ = seen.changed() => {}
                _ = step => {}
            }
        }
    }

    /// Every row of the projection's tables, in key order, one line each: two builds are equal
    /// when their dumps are.
    pub async fn dump(&self) -> Result<Vec<String>, StoreError> {
        P::Set::dump(&self.read).await
    }

    /// Where the projection stands against the store.
    pub async fn status(&self) -> Result<Status, StoreError> {
        let row = self.checkpoint().await?;
        let backlog = history::backlog(&self.store, row.checkpoint).await?;
        Ok(Status {
            name: P::NAME,
            version: row.version,
            position: row.checkpoint.position,
            applied: row.applied,
            behind_events: backlog.events,
            lag_seconds: backlog.lag_seconds(),
            stopped_at: event::fault_of(&self.read, P::NAME).await?,
        })
    }
}

/// One projection's position and lag.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub name: &'static str,
    pub version: i64,
    pub position: i64,
    pub applied: i64,
    pub behind_events: i64,
    pub lag_seconds: f64,
    /// Set when the projection stopped before an event it cannot decode: which and why.
    pub stopped_at: Option<serde_json::Value>,
}
