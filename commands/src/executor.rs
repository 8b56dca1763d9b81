//! Load → decide → append for one aggregate.
//!
//! Inside one process, commands on the same aggregate take turns (a per-aggregate async lock),
//! so they never lose an optimistic-concurrency race against each other. Across processes the
//! event store's unique `(aggregate_type, aggregate_id, sequence)` key decides: the loser gets
//! `AggregateConflict`, reloads and decides again, a bounded number of times.
//!
//! Hot aggregates (a busy listing's calendar) are kept in memory after each command, and the
//! next command decides on that state straight away. If another process appended meanwhile,
//! the append collides with its sequence number and the command is retried on a fresh load, so
//! an accepted command was always decided on the newest state. A *rejection* writes nothing
//! and so proves nothing: before a rejection decided on cached state is returned, one index
//! lookup confirms nobody appended since (else the command is decided again on a fresh load).
//! Plain reads (`load`) make the same check. The store's unique key decides every race.
//!
//! A command is decided, then written by `store::append` in one statement that also returns
//! the new events' positions. [`Executor::execute_then`] writes a second aggregate's command,
//! decided from the first's outcome, in the same statement (a listing's reservation and the
//! booking it is for): both or neither.
use crate::metadata::CommandMeta;
use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::{Aggregate, AggregateError, EventStore};
use dashmap::DashMap;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use store::{AggregateStore, Database};
use tokio::sync::Mutex;
use uuid::Uuid;

/// The result of a command that was accepted (possibly with no new events).
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    /// The aggregate after the command (shared with the executor's cache, not copied).
    pub aggregate: Arc<A>,
    /// The events the command appended (empty for a repeated, already-done command).
    pub events: Vec<A::Event>,
    /// Sequence number of the aggregate's newest event (0: it has none).
    pub sequence: usize,
    /// Global position of the newest event, when this command appended it (the write returns
    /// it, so nobody has to look it up).
    pub position: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The domain said no.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept winning the race for this aggregate.
    #[error("the aggregate is too busy, try again")]
    Busy,
    /// The event store failed; the cause is kept for the log.
    #[error("event store: {0}")]
    Store(#[source] StoreFailure),
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the event store could not serve a command or a read: the operational errors of cqrs-es
/// (a refusal and a lost race are [`CommandError`]'s other variants), or a query of our own
/// on the store's tables.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The database did not answer, or failed the write.
    #[error("{0}")]
    Connection(#[source] BoxError),
    /// A stored event or snapshot does not deserialize into the aggregate's types.
    #[error("{0}")]
    Deserialization(#[source] BoxError),
    /// Anything else cqrs-es reports.
    #[error("{0}")]
    Unexpected(#[source] BoxError),
    /// A query of our own on the store's tables (an event's position, say).
    #[error(transparent)]
    Query(#[from] store::StoreError),
}

/// What [`Executor::execute_then`] gives: both commands executed, or why not.
pub type JointResult<A, B> =
    Result<(Executed<A>, Executed<B>), Joint<<A as Aggregate>::Error, <B as Aggregate>::Error>>;

/// Why a pair of commands written together ([`Executor::execute_then`]) did not go through:
/// the first's failure or the second's.
#[derive(Debug, thiserror::Error)]
pub enum Joint<E: std::error::Error, F: std::error::Error> {
    #[error("{0}")]
    First(CommandError<E>),
    #[error("{0}")]
    Second(CommandError<F>),
}

/// A command decided on an aggregate, not yet written.
struct Decided<A: Aggregate> {
    id: Uuid,
    /// The aggregate after the command's events.
    after: Arc<A>,
    events: Vec<A::Event>,
    /// Sequence number after the events.
    sequence: usize,
    /// The snapshot counter after the events.
    snapshot: Option<usize>,
    /// The events ready for the store (none when the command changed nothing).
    prepared: Option<store::Prepared>,
}

/// Whether the caller copies a cached aggregate (a read) or takes it (a command, which puts
/// back the aggregate it decided on).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Copy,
    Take,
}

/// An aggregate as of its newest event, with the snapshot counter the store expects next.
#[derive(Clone)]
struct Cached<A> {
    aggregate: Arc<A>,
    sequence: usize,
    snapshot: Option<usize>,
}

/// Runs commands against one aggregate type.
pub struct Executor<A: Aggregate> {
    store: AggregateStore<A>,
    db: Database,
    locks: DashMap<Uuid, Arc<Mutex<()>>>,
    max_attempts: u32,
    snapshot_every: Option<usize>,
    cache: DashMap<Uuid, Cached<A>>,
    /// 0 turns the cache off.
    cache_capacity: usize,
}

impl<A> Executor<A>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone,
{
    pub fn new(
        db: Database,
        snapshot_every: Option<usize>,
        max_attempts: u32,
        cache_capacity: usize,
    ) -> Self {
        Executor {
            store: db.aggregate_store(snapshot_every, domain::upcast::upcasters()),
            db,
            locks: DashMap::new(),
            max_attempts: max_attempts.max(1),
            snapshot_every,
            cache: DashMap::new(),
            cache_capacity,
        }
    }

    /// The aggregate as the store has it now (the default state if it has no events).
    pub async fn load(&self, id: Uuid) -> Result<A, CommandError<A::Error>> {
        let (ctx, _) = self
            .context(id, false, Use::Copy)
            .await
            .map_err(store_error)?;
        Ok(ctx.aggregate)
    }

    /// The aggregate as the store has it now, as the result of a command that changed nothing
    /// (so its position can be reported).
    pub async fn current(&self, id: Uuid) -> Result<Executed<A>, CommandError<A::Error>> {
        let (ctx, _) = self
            .context(id, false, Use::Copy)
            .await
            .map_err(store_error)?;
        Ok(Executed {
            aggregate: Arc::new(ctx.aggregate),
            events: vec![],
            sequence: ctx.current_sequence,
            position: None,
        })
    }

    /// The global position of the aggregate's event at `sequence` (a plain query: nothing to
    /// refuse or to race).
    pub async fn position(
        &self,
        id: Uuid,
        sequence: usize,
    ) -> Result<Option<i64>, store::StoreError> {
        if sequence == 0 {
            return Ok(None);
        }
        store::history::position_of(&self.db, A::TYPE, &id.to_string(), sequence).await
    }

    /// Runs `command` on the aggregate `id`.
    pub async fn execute(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        self.execute_on(id, command, meta, false).await
    }

    /// Runs `command` on an aggregate the caller has just named (a fresh UUID v7), skipping the
    /// load. Should the id exist after all, the append conflicts and the retry loads it.
    pub async fn execute_new(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        self.execute_on(id, command, meta, true).await
    }

    #[tracing::instrument(skip_all, fields(aggregate = A::TYPE, id = %id, command_id = %meta.command_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    async fn execute_on(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
        fresh: bool,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let lock = self.locks.entry(id).or_default().clone();
        let result = {
            let _turn = lock.lock().await;
            self.execute_with_retries(id, command, meta, fresh).await
        };
        drop(lock);
        self.locks.remove_if(&id, |_, l| Arc::strong_count(l) == 1);
        result
    }

    async fn execute_with_retries(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
        fresh: bool,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        for attempt in 0..self.max_attempts {
            let outcome = match self
                .decide(id, command.clone(), meta, fresh && attempt == 0)
                .await
            {
                Ok(decided) => self.write(decided).await,
                Err(e) => Err(e),
            };
            match outcome {
                Err(AggregateError::AggregateConflict) => self.lost_race(id, attempt).await,
                Err(AggregateError::UserError(e)) => return Err(CommandError::Rejected(e)),
                Err(other) => {
                    self.cache.remove(&id);
                    return Err(store_error(other));
                }
                Ok(done) => return Ok(done),
            }
        }
        Err(CommandError::Busy)
    }

    /// After a lost optimistic-concurrency race: forgets the cached state and waits a random
    /// moment, longer after each loss, before the next attempt.
    async fn lost_race(&self, id: Uuid, attempt: u32) {
        self.cache.remove(&id);
        metrics::counter!("zhilego_command_conflicts_total", "aggregate" => A::TYPE).increment(1);
        let cap_ms = 2u64.saturating_pow(attempt.min(6)).min(50);
        let pause = rand::rng().random_range(0..=cap_ms);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }

    /// Runs `command` on the aggregate `id` (as [`Executor::execute`]) and, in the same
    /// atomic write, the command `then` derives from its outcome on a new aggregate `then_id`
    /// of `next` (a fresh UUID v7: a listing's reservation and the booking it is for). Both
    /// are written or neither, so nothing is left to undo when the second is refused. A lost
    /// race on either decides both again. Holds the first aggregate's turn throughout.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(aggregate = A::TYPE, id = %id, then = B::TYPE, then_id = %then_id, command_id = %meta.command_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn execute_then<B>(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
        next: &Executor<B>,
        then_id: Uuid,
        then_meta: &CommandMeta,
        then: impl Fn(&A, &[A::Event]) -> Result<B::Command, StoreFailure>,
    ) -> JointResult<A, B>
    where
        B: Aggregate<Services = ()> + Clone,
        B::Command: Clone,
    {
        let lock = self.locks.entry(id).or_default().clone();
        let result = {
            let _turn = lock.lock().await;
            self.joint_with_retries(id, command, meta, next, then_id, then_meta, &then)
                .await
        };
        drop(lock);
        self.locks.remove_if(&id, |_, l| Arc::strong_count(l) == 1);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn joint_with_retries<B>(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
        next: &Executor<B>,
        then_id: Uuid,
        then_meta: &CommandMeta,
        then: &impl Fn(&A, &[A::Event]) -> Result<B::Command, StoreFailure>,
    ) -> Result<(Executed<A>, Executed<B>), Joint<A::Error, B::Error>>
    where
        B: Aggregate<Services = ()> + Clone,
        B::Command: Clone,
    {
        for attempt in 0..self.max_attempts {
            let first = match self.decide(id, command.clone(), meta, false).await {
                Ok(first) => first,
                Err(AggregateError::AggregateConflict) => {
                    self.lost_race(id, attempt).await;
                    continue;
                }
                Err(AggregateError::UserError(e)) => {
                    return Err(Joint::First(CommandError::Rejected(e)))
                }
                Err(e) => {
                    self.cache.remove(&id);
                    return Err(Joint::First(store_error(e)));
                }
            };
            // Whatever happens from here on, the first aggregate's decision is either written
            // below or dropped; its cache entry was taken, so the next command loads it.
            let second_command = then(&first.after, &first.events)
                .map_err(|e| Joint::Second(CommandError::Store(e)))?;
            let second = match next
                .decide(then_id, second_command, then_meta, attempt == 0)
                .await
            {
                Ok(second) => second,
                Err(AggregateError::AggregateConflict) => {
                    next.cache.remove(&then_id);
                    self.lost_race(id, attempt).await;
                    continue;
                }
                Err(e) => return Err(Joint::Second(store_error(e))),
            };
            let (Some(p1), Some(p2)) = (&first.prepared, &second.prepared) else {
                // One of them changed nothing (a repeated command): nothing to join.
                let first = self
                    .write(first)
                    .await
                    .map_err(|e| Joint::First(store_error(e)))?;
                let second = next
                    .write(second)
                    .await
                    .map_err(|e| Joint::Second(store_error(e)))?;
                return Ok((first, second));
            };
            match store::append::write(&self.db, &[p1, p2]).await {
                Ok(positions) => {
                    return Ok((
                        self.settle(first, positions.first().copied()),
                        next.settle(second, positions.get(1).copied()),
                    ))
                }
                Err(cqrs_es::persist::PersistenceError::OptimisticLockError) => {
                    next.cache.remove(&then_id);
                    self.lost_race(id, attempt).await;
                }
                Err(e) => {
                    self.cache.remove(&id);
                    next.cache.remove(&then_id);
                    return Err(Joint::First(store_error(AggregateError::from(e))));
                }
            }
        }
        Err(Joint::First(CommandError::Busy))
    }

    /// The aggregate's context, and whether it came from the cache unchecked. With
    /// [`Use::Take`] a cached aggregate is moved out of the cache (the caller, holding the
    /// aggregate's turn, puts back what it decides), so a command never copies it.
    async fn context(
        &self,
        id: Uuid,
        fresh: bool,
        usage: Use,
    ) -> Result<(EventStoreAggregateContext<A>, bool), AggregateError<A::Error>> {
        let aggregate_id = id.to_string();
        if fresh {
            let ctx = EventStoreAggregateContext {
                aggregate_id,
                aggregate: A::default(),
                current_sequence: 0,
                current_snapshot: None,
            };
            return Ok((ctx, false));
        }
        let cached = match usage {
            Use::Take => self.cache.remove(&id).map(|(_, c)| c),
            Use::Copy => self.cache.get(&id).map(|c| c.clone()),
        };
        if let Some(cached) = cached {
            let trusted = usage == Use::Take;
            if trusted || self.is_newest(&aggregate_id, cached.sequence).await? {
                let ctx = EventStoreAggregateContext {
                    aggregate_id,
                    // Taken from the cache, this is the only reference (unless a caller still
                    // holds a result sharing it) and nothing is copied; a read copies.
                    aggregate: Arc::unwrap_or_clone(cached.aggregate),
                    current_sequence: cached.sequence,
                    current_snapshot: cached.snapshot,
                };
                return Ok((ctx, trusted));
            }
            self.cache.remove(&id);
        }
        let ctx = self.store.load_aggregate(&aggregate_id).await?;
        if usage == Use::Copy {
            self.remember(
                id,
                Arc::new(ctx.aggregate.clone()),
                ctx.current_sequence,
                ctx.current_snapshot,
            );
        }
        Ok((ctx, false))
    }

    /// Is `sequence` still the aggregate's newest event?
    async fn is_newest(
        &self,
        aggregate_id: &str,
        sequence: usize,
    ) -> Result<bool, AggregateError<A::Error>> {
        let newest = store::history::last_sequence(&self.db, A::TYPE, aggregate_id)
            .await
            .map_err(|e| AggregateError::DatabaseConnectionError(Box::new(e)))?;
        Ok(newest == sequence as i64)
    }

    fn remember(&self, id: Uuid, aggregate: Arc<A>, sequence: usize, snapshot: Option<usize>) {
        if self.cache_capacity == 0 || sequence == 0 {
            return;
        }
        if self.cache.len() >= self.cache_capacity {
            self.cache.clear();
        }
        self.cache.insert(
            id,
            Cached {
                aggregate,
                sequence,
                snapshot,
            },
        );
    }

    /// Decides `command` on the aggregate's newest state (cached or loaded), and prepares its
    /// events for the store without writing them. A rejection decided on a cached copy is
    /// confirmed against the store first (else: a conflict, decide again).
    async fn decide(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
        fresh: bool,
    ) -> Result<Decided<A>, AggregateError<A::Error>> {
        let (mut ctx, unchecked) = self.context(id, fresh, Use::Take).await?;
        // Decide on the aggregate itself; the context keeps only its position.
        let mut after = std::mem::take(&mut ctx.aggregate);
        let sink = cqrs_es::event_sink::EventSink::default();
        if let Err(rejection) = after.handle(command, &(), &sink).await {
            if unchecked
                && !self
                    .is_newest(&ctx.aggregate_id, ctx.current_sequence)
                    .await?
            {
                // Decided on an outdated copy: decide again on the store's state.
                return Err(AggregateError::AggregateConflict);
            }
            // A refusal writes nothing (events reach the aggregate only through the sink), so
            // the aggregate is still as it was.
            if sink.collect().await.is_empty() {
                self.remember(
                    id,
                    Arc::new(after),
                    ctx.current_sequence,
                    ctx.current_snapshot,
                );
            }
            return Err(AggregateError::UserError(rejection));
        }
        let events = sink.collect().await;
        let sequence = ctx.current_sequence + events.len();
        let snapshot = self.next_snapshot(ctx.current_sequence, events.len(), ctx.current_snapshot);
        let prepared = if events.is_empty() {
            None
        } else {
            // A snapshot is the state after this commit, at its last sequence (cqrs-es would
            // take the state at the multiple of `snapshot_every` inside a commit that crosses
            // one, yet record the commit's last sequence with it).
            let due = (snapshot != ctx.current_snapshot)
                .then(|| snapshot.map(|counter| (&after, counter)))
                .flatten();
            Some(
                self.store
                    .prepare(
                        &ctx.aggregate_id,
                        ctx.current_sequence,
                        &events,
                        &meta.to_map(),
                        due,
                    )
                    .await?,
            )
        };
        Ok(Decided {
            id,
            after: Arc::new(after),
            events,
            sequence,
            snapshot,
            prepared,
        })
    }

    /// Writes a decision alone.
    async fn write(&self, decided: Decided<A>) -> Result<Executed<A>, AggregateError<A::Error>> {
        let position = match &decided.prepared {
            Some(prepared) => store::append::write(&self.db, &[prepared])
                .await?
                .first()
                .copied(),
            None => None,
        };
        Ok(self.settle(decided, position))
    }

    /// A decision that is in the store (or needed no write): remembered as the aggregate's
    /// newest state, counted, returned.
    fn settle(&self, decided: Decided<A>, position: Option<i64>) -> Executed<A> {
        self.remember(
            decided.id,
            decided.after.clone(),
            decided.sequence,
            decided.snapshot,
        );
        metrics::counter!("zhilego_commands_total", "aggregate" => A::TYPE).increment(1);
        metrics::counter!("zhilego_events_appended_total", "aggregate" => A::TYPE)
            .increment(decided.events.len() as u64);
        Executed {
            aggregate: decided.after,
            events: decided.events,
            sequence: decided.sequence,
            position,
        }
    }

    /// The snapshot counter after appending `n` events at `sequence` (cqrs-es writes a snapshot
    /// whenever the stream crosses a multiple of the snapshot size).
    fn next_snapshot(&self, sequence: usize, n: usize, current: Option<usize>) -> Option<usize> {
        match self.snapshot_every {
            Some(size) if size > 0 && (sequence % size) + n >= size => {
                Some(current.map_or(1, |c| c + 1))
            }
            _ => current,
        }
    }
}

fn store_error<E: std::error::Error>(e: AggregateError<E>) -> CommandError<E> {
    match e {
        AggregateError::UserError(e) => CommandError::Rejected(e),
        AggregateError::AggregateConflict => CommandError::Busy,
        AggregateError::DatabaseConnectionError(e) => {
            CommandError::Store(StoreFailure::Connection(e))
        }
        AggregateError::DeserializationError(e) => {
            CommandError::Store(StoreFailure::Deserialization(e))
        }
        AggregateError::UnexpectedError(e) => CommandError::Store(StoreFailure::Unexpected(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_store_failure_keeps_its_cause() {
        let cause = store::StoreError::Integrity("the row vanished".into());
        let e: CommandError<std::fmt::Error> =
            store_error(AggregateError::DatabaseConnectionError(Box::new(cause)));
        assert_eq!(e.to_string(), "event store: integrity: the row vanished");
        let failure = e.source().expect("the store failure");
        let inner = failure.source().expect("the database's error");
        assert!(inner.downcast_ref::<store::StoreError>().is_some());
    }
}
