//! The read models that guests search, held in memory by each API process, so that a search
//! runs at memory speed instead of a database round trip each: the availability projection
//! ([`availability`]: listings free for a stay) and the listings catalogue ([`catalogue`]).
//!
//! The index starts from the projections' tables (one snapshot: rows and checkpoints), then
//! folds new events from the store with the very same folds as the projections
//! ([`crate::AvailabilityProjection`], [`crate::ListingsProjection`]), after every local write
//! and on a short timer; a read with `min_position` pulls what it needs at once. It may run
//! ahead of the tables, never behind what it has promised.
//!
//! The two tables have a builder each, so their checkpoints may differ when the index loads
//! them: it then reads the store from the older one, and each part skips the events its table
//! already had.
mod availability;
mod catalogue;

use crate::availability::{AvailabilityProjection, OfferRow, SpanRow};
use crate::event::{decode_links_until_fault, decode_until_fault, Decoded, Undecodable};
use crate::listings::{CatalogueRow, ListingsProjection};
use crate::projector::Projection;
use crate::table::{Arg, ReadTx, Row};
use std::borrow::Borrow;
use std::sync::RwLock;
use std::time::Duration;
use store::history::{self, Checkpoint};
use store::{Database, StoreError};
use tokio::sync::{watch, Mutex};

struct IndexState {
    /// Every event up to here is in both parts.
    checkpoint: Checkpoint,
    availability: availability::Part,
    catalogue: catalogue::Part,
}

impl IndexState {
    fn empty() -> Self {
        IndexState {
            checkpoint: Checkpoint::default(),
            availability: availability::Part::default(),
            catalogue: catalogue::Part::default(),
        }
    }

    /// Applies `e` to each part whose table did not have it yet.
    fn apply(&mut self, e: &Decoded) {
        let at = e.checkpoint();
        if at > self.availability.loaded {
            self.availability.apply(e);
        }
        if at > self.catalogue.loaded {
            self.catalogue.apply(e);
        }
    }

    /// Folds a run of events that continues from the checkpoint, decoded up to the first that
    /// does not decode (`fault`); the checkpoint is then `tail`, or the last event folded
    /// before the fault.
    fn fold<D: Borrow<Decoded>>(
        &mut self,
        (events, fault): (Vec<D>, Option<Box<Undecodable>>),
        tail: Checkpoint,
    ) -> Result<(), Box<Undecodable>> {
        for e in &events {
            self.apply(e.borrow());
        }
        match fault {
            None => self.checkpoint = tail,
            Some(fault) => {
                if let Some(last) = events.last() {
                    self.checkpoint = last.borrow().checkpoint();
                }
                return Err(fault);
            }
        }
        Ok(())
    }
}

/// The index stops before an event it cannot decode, as the projections do (which record and
/// report the fault).
fn index_stopped(fault: Box<Undecodable>) -> StoreError {
    StoreError::Integrity(format!("search index stopped: {fault}"))
}

pub struct SearchIndex {
    store: Database,
    read: Database,
    state: RwLock<IndexState>,
    /// One catch-up at a time; the others wait for it and find the work done.
    catching_up: Mutex<()>,
    applied: watch::Sender<Checkpoint>,
}

const BATCH: i64 = 5_000;

/// A projection's checkpoint as the snapshot `tx` sees it (the start for a fresh one).
async fn table_checkpoint(tx: &mut ReadTx, name: &str) -> Result<Checkpoint, StoreError> {
    #[derive(sqlx::FromRow)]
    struct Cp {
        tx: i64,
        position: i64,
    }
    Ok(tx
        .fetch::<Cp>(
            "SELECT tx, position FROM projection_checkpoints WHERE name = $1",
            &[Arg::Text(name.to_string())],
        )
        .await?
        .pop()
        .map(|c| Checkpoint {
            tx: c.tx,
            position: c.position,
        })
        .unwrap_or_default())
}

impl SearchIndex {
    pub fn new(store: Database, read: Database) -> Self {
        SearchIndex {
            store,
            read,
            state: RwLock::new(IndexState::empty()),
            catching_up: Mutex::new(()),
            applied: watch::channel(Checkpoint::default()).0,
        }
    }

    /// Loads the projections' tables (one snapshot) and catches up from the store.
    pub async fn load(&self) -> Result<(), StoreError> {
        let _turn = self.catching_up.lock().await;
        let mut tx = ReadTx::begin_snapshot(&self.read).await?;
        let availability_at = table_checkpoint(&mut tx, AvailabilityProjection::NAME).await?;
        let catalogue_at = table_checkpoint(&mut tx, ListingsProjection::NAME).await?;
        let offers: Vec<OfferRow> = tx.fetch(&OfferRow::TABLE.select(), &[]).await?;
        let spans: Vec<SpanRow> = tx.fetch(&SpanRow::TABLE.select(), &[]).await?;
        let listings: Vec<CatalogueRow> = tx.fetch(&CatalogueRow::TABLE.select(), &[]).await?;
        drop(tx);
        let state = IndexState {
            checkpoint: availability_at.min(catalogue_at),
            availability: availability::Part::loaded(availability_at, offers, spans),
            catalogue: catalogue::Part::loaded(catalogue_at, listings),
        };
        let checkpoint = state.checkpoint;
        *self.state.write().expect("index lock") = state;
        self.applied.send_replace(checkpoint);
        drop(_turn);
        self.catch_up().await?;
        Ok(())
    }

    pub fn checkpoint(&self) -> Checkpoint {
        self.state.read().expect("index lock").checkpoint
    }

    /// Folds in whatever the store has after the index's checkpoint.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        let _turn = self.catching_up.lock().await;
        let mut total = 0;
        loop {
            let from = self.checkpoint();
            let events = history::events_after_for_folding(&self.store, from, BATCH).await?;
            let n = events.len();
            if n == 0 {
                return Ok(total);
            }
            let reached = events.last().expect("non-empty").checkpoint();
            let folded = {
                let mut state = self.state.write().expect("index lock");
                let folded = state.fold(decode_until_fault(&events), reached);
                self.applied.send_replace(state.checkpoint);
                folded
            };
            folded.map_err(index_stopped)?;
            total += n;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// Applies linked events from the in-process bus: duplicates are skipped, the next events
    /// applied, and a gap filled from the store.
    pub async fn apply_links(&self, links: &[bus::Link]) -> Result<(), StoreError> {
        let gap = {
            let _turn = self.catching_up.lock().await;
            let mut state = self.state.write().expect("index lock");
            let (run, tail, gap) = bus::follow(state.checkpoint, links);
            let folded = state.fold(decode_links_until_fault(run), tail);
            self.applied.send_replace(state.checkpoint);
            folded.map_err(index_stopped)?;
            gap
        };
        if gap.is_some() {
            self.catch_up().await?;
            return Box::pin(self.apply_links(links)).await;
        }
        Ok(())
    }

    /// Keeps the index current from the in-process bus until `shutdown`, reading the store
    /// when it starts, falls behind the bus, or every 5 s.
    pub async fn follow_bus(
        &self,
        bus: &bus::LocalBus,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        tokio::pin!(shutdown);
        let mut rx = bus.subscribe();
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, "search index: catching up failed");
            }
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    batch = rx.recv() => match batch {
                        Ok(links) => {
                            if let Err(e) = self.apply_links(&links).await {
                                tracing::warn!(error = %e, "search index: applying failed");
                                break;
                            }
                        }
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep(Duration::from_secs(5)) => break,
                }
            }
        }
    }

    /// Keeps the index current until `shutdown`: after every nudge and every `poll`.
    pub async fn follow(
        &self,
        nudge: &tokio::sync::Notify,
        poll: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, "search index: catching up failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                // Let a burst of writes land, then read them in one go.
                _ = nudge.notified() => tokio::time::sleep(Duration::from_millis(10)).await,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Makes sure the index has the event at `position`, pulling from the store if needed;
    /// gives up after `timeout`.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // The event's order key, once the store has it.
        let mut target = None;
        loop {
            if target.is_none() {
                target = history::checkpoint_of(&self.store, position).await?;
            }
            let reached = match target {
                Some(target) => self.checkpoint() >= target,
                None => self.checkpoint().position >= position,
            };
            if reached {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            if self.catch_up().await? == 0 {
                // An event still in an open transaction: the store has not released it yet.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
