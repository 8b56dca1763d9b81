//! Rebuilds: projections replayed from the store into fresh tables, then swapped in.
//!
//! Several projections rebuild from one scan of the store: a reader task fetches batches with
//! their payloads as text, each batch is decoded once on a blocking thread while the next is
//! read, and every projection's fold (a blocking thread each) takes the decoded batches in
//! order. When the scan ends, every projection writes its fresh tables (side by side), then
//! each in turn folds what arrived meanwhile and swaps its tables in
//! ([`Projector::swap_in`](crate::projector::Projector)).
use crate::event::{Decoded, Undecodable};
use crate::projector::{Progress, Projection, Projector};
use crate::rows::WorkingSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::history::{self, Checkpoint};
use store::{Database, StoreError};

const REBUILD_BATCH: i64 = 10_000;

/// How far decoding and folding may run ahead of the slowest fold, in batches.
const AHEAD: usize = 3;

/// One projection's share of a rebuild: its fresh working set and where it goes.
#[async_trait::async_trait]
pub trait Part: Send {
    fn name(&self) -> &'static str;
    /// Folds the next events of the store, in order, into the fresh set.
    fn fold(&mut self, events: &[Decoded]);
    /// Writes the fresh set into fresh tables.
    async fn write(&mut self) -> Result<(), StoreError>;
    /// Folds the events after `at` into the fresh tables and swaps them in; returns how many
    /// events the projection now holds.
    async fn swap(
        &mut self,
        at: Checkpoint,
        folded: u64,
        fault: Option<Box<Undecodable>>,
    ) -> Result<u64, StoreError>;
}

/// A projection being rebuilt.
pub struct Fresh<P: Projection> {
    projector: Projector<P>,
    /// Taken by [`Part::write`].
    set: Option<P::Set>,
    suffix: String,
}

impl<P: Projection> Fresh<P> {
    pub fn new(projector: Projector<P>) -> Self {
        let suffix = format!(
            "__r{}",
            uuid::Uuid::now_v7()
                .simple()
                .to_string()
                .get(..16)
                .unwrap_or("0")
        );
        Fresh {
            projector,
            set: Some(P::Set::new(true)),
            suffix,
        }
    }
}

#[async_trait::async_trait]
impl<P: Projection> Part for Fresh<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn fold(&mut self, events: &[Decoded]) {
        if let Some(set) = self.set.as_mut() {
            for e in events {
                P::apply(set, e);
            }
        }
    }

    async fn write(&mut self) -> Result<(), StoreError> {
        match self.set.take() {
            Some(set) => set.write_fresh(self.projector.read(), &self.suffix).await,
            None => Ok(()),
        }
    }

    async fn swap(
        &mut self,
        at: Checkpoint,
        folded: u64,
        fault: Option<Box<Undecodable>>,
    ) -> Result<u64, StoreError> {
        // The swap takes the checkpoint lock, then each live table exclusively; a reader or
        // builder holding a table while it waits for the checkpoint makes PostgreSQL end one
        // of the two with a deadlock (40P01). The swap's transaction is then rolled back
        // whole, so it is simply run again.
        let mut tries = 0;
        loop {
            let swapped = self
                .projector
                .swap_in(&self.suffix, at, folded, fault.clone())
                .await;
            match swapped {
                Err(e) if tries < 5 && is_deadlock(&e) => {
                    tries += 1;
                    tracing::info!(tries, "a rebuild's swap met a deadlock; running it again");
                    tokio::time::sleep(std::time::Duration::from_millis(20 * tries)).await;
                }
                other => return other,
            }
        }
    }
}

/// PostgreSQL's `deadlock_detected`.
fn is_deadlock(e: &StoreError) -> bool {
    matches!(e, StoreError::Sql(sqlx::Error::Database(d)) if d.code().as_deref() == Some("40P01"))
}

/// What a rebuild did for one projection.
#[derive(Clone, Debug)]
pub struct Rebuilt {
    pub name: &'static str,
    /// Events the projection holds after the swap.
    pub events: u64,
    /// From the start of the scan until this projection's tables were swapped in.
    pub elapsed: Duration,
}

/// The whole rebuild's times.
#[derive(Clone, Debug)]
pub struct Summary {
    pub projections: Vec<Rebuilt>,
    /// Events scanned and folded (once, for all the projections).
    pub scanned: u64,
    /// The scan with every fold.
    pub fold: Duration,
    /// Writing every fresh table.
    pub write: Duration,
    /// The tails and swaps.
    pub swap: Duration,
}

/// Rebuilds `parts` from one scan of `store` (see the module's description). An event that
/// does not decode ends the scan for all of them: each is built up to the event before it and
/// stops there.
pub async fn rebuild(
    store: &Database,
    mut parts: Vec<Box<dyn Part>>,
    progress: Option<&Progress>,
) -> Result<Summary, StoreError> {
    let total = history::event_count(store).await? as u64;
    let started = Instant::now();
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<
        tokio::task::JoinHandle<(Vec<Decoded>, Option<Box<Undecodable>>)>,
    >(AHEAD);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut at = Checkpoint::default();
            loop {
                let raw = history::raw_events_after(&store, at, REBUILD_BATCH).await?;
                let Some(last) = raw.last().map(|e| Checkpoint {
                    tx: e.tx,
                    position: e.position,
                }) else {
                    return Ok::<_, StoreError>(());
                };
                at = last;
                let decoding = tokio::task::spawn_blocking(move || {
                    let mut decoded = Vec::with_capacity(raw.len());
                    for e in &raw {
                        match Decoded::decode_raw(e) {
                            Ok(d) => decoded.push(d),
                            Err(fault) => return (decoded, Some(fault)),
                        }
                    }
                    (decoded, None)
                });
                if batches.send(decoding).await.is_err() {
                    return Ok(());
                }
            }
        })
    };
    // A fold thread per projection, each fed the same decoded batches in order.
    let mut feeds = Vec::with_capacity(parts.len());
    let mut folds = Vec::with_capacity(parts.len());
    for mut part in parts.drain(..) {
        let (feed, mut batches) = tokio::sync::mpsc::channel::<Arc<Vec<Decoded>>>(AHEAD);
        feeds.push(feed);
        folds.push(tokio::task::spawn_blocking(move || {
            while let Some(events) = batches.blocking_recv() {
                part.fold(&events);
            }
            part
        }));
    }
    let mut at = Checkpoint::default();
    let mut folded = 0u64;
    let mut fault = None;
    while let Some(decoding) = incoming.recv().await {
        let (events, stopped) = decoding.await.map_err(|source| StoreError::Task {
            task: "rebuild decoder",
            source,
        })?;
        folded += events.len() as u64;
        at = events.last().map(Decoded::checkpoint).unwrap_or(at);
        let events = Arc::new(events);
        for feed in &feeds {
            // A fold thread only ends early by panicking, which its join reports below.
            let _ = feed.send(events.clone()).await;
        }
        if let Some(report) = progress {
            report(folded, total.max(folded));
        }
        if stopped.is_some() {
            // The tables are built up to the event before it, and the projections stop there.
            fault = stopped;
            break;
        }
    }
    drop(incoming);
    drop(feeds);
    for fold in folds {
        parts.push(fold.await.map_err(|source| StoreError::Task {
            task: "rebuild fold",
            source,
        })?);
    }
    reader.await.map_err(|source| StoreError::Task {
        task: "rebuild reader",
        source,
    })??;
    let fold = started.elapsed();
    futures::future::try_join_all(parts.iter_mut().map(|p| p.write())).await?;
    let write = started.elapsed() - fold;
    // Every projection is swapped in, even when one fails (a fault stops them all at the same
    // event); the first error is returned.
    let mut projections = Vec::with_capacity(parts.len());
    let mut failed = None;
    for part in &mut parts {
        match part.swap(at, folded, fault.clone()).await {
            Ok(events) => projections.push(Rebuilt {
                name: part.name(),
                events,
                elapsed: started.elapsed(),
            }),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(report) = progress {
        let held = projections.iter().map(|p| p.events).max().unwrap_or(folded);
        report(held, held);
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let swap = started.elapsed() - fold - write;
    tracing::info!(
        projections = parts.len(),
        events = folded,
        fold_ms = fold.as_millis() as u64,
        write_ms = write.as_millis() as u64,
        swap_ms = swap.as_millis() as u64,
        "rebuild: folded, written and swapped in"
    );
    Ok(Summary {
        projections,
        scanned: folded,
        fold,
        write,
        swap,
    })
}
