//! Load → decide → append for one aggregate.
//!
//! Inside one process, commands on the same aggregate take turns (a per-aggregate async lock),
//! so they never lose an optimistic-concurrency race against each other. Across processes the
//! event store's unique `(aggregate_type, aggregate_id, sequence)` key decides: the loser gets
//! `AggregateConflict`, reloads and decides again, a bounded number of times.
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
    /// The aggregate after the command.
    pub aggregate: A,
    /// The events the command appended (empty for a repeated, already-done command).
    pub events: Vec<A::Event>,
    /// Global position of the aggregate's newest event, `None` if it has none.
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
    #[error("event store: {0}")]
    Store(String),
}

/// Runs commands against one aggregate type.
pub struct Executor<A: Aggregate> {
    store: AggregateStore<A>,
    db: Database,
    locks: DashMap<Uuid, Arc<Mutex<()>>>,
    max_attempts: u32,
}

impl<A> Executor<A>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone,
{
    pub fn new(db: Database, snapshot_every: Option<usize>, max_attempts: u32) -> Self {
        Executor {
            store: db.aggregate_store(snapshot_every),
            db,
            locks: DashMap::new(),
            max_attempts: max_attempts.max(1),
        }
    }

    /// The aggregate as the store has it now (the default state if it has no events).
    pub async fn load(&self, id: Uuid) -> Result<A, CommandError<A::Error>> {
        let ctx = self
            .store
            .load_aggregate(&id.to_string())
            .await
            .map_err(store_error)?;
        Ok(ctx.aggregate)
    }

    #[tracing::instrument(skip_all, fields(aggregate = A::TYPE, id = %id, command_id = %meta.command_id))]
    pub async fn execute(
        &self,
        id: Uuid,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let lock = self.locks.entry(id).or_default().clone();
        let result = {
            let _turn = lock.lock().await;
            self.execute_with_retries(id, command, meta).await
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
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let aggregate_id = id.to_string();
        for attempt in 0..self.max_attempts {
            match self.try_once(&aggregate_id, command.clone(), meta).await {
                Err(AggregateError::AggregateConflict) => {
                    metrics::counter!("zhilego_command_conflicts_total", "aggregate" => A::TYPE)
                        .increment(1);
                    let cap_ms = 2u64.saturating_pow(attempt.min(6)).min(50);
                    let pause = rand::rng().random_range(0..=cap_ms);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(AggregateError::UserError(e)) => return Err(CommandError::Rejected(e)),
                Err(other) => return Err(store_error(other)),
                Ok((aggregate, events, sequence)) => {
                    metrics::counter!("zhilego_commands_total", "aggregate" => A::TYPE)
                        .increment(1);
                    metrics::counter!("zhilego_events_appended_total", "aggregate" => A::TYPE)
                        .increment(events.len() as u64);
                    let position = if sequence == 0 {
                        None
                    } else {
                        store::history::position_of(&self.db, A::TYPE, &aggregate_id, sequence)
                            .await
                            .map_err(|e| CommandError::Store(e.to_string()))?
                    };
                    return Ok(Executed {
                        aggregate,
                        events,
                        position,
                    });
                }
            }
        }
        Err(CommandError::Busy)
    }

    /// One attempt; returns the new state, the new events and the aggregate's last sequence.
    async fn try_once(
        &self,
        aggregate_id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<(A, Vec<A::Event>, usize), AggregateError<A::Error>> {
        let ctx: EventStoreAggregateContext<A> = self.store.load_aggregate(aggregate_id).await?;
        // Decide on a copy: the snapshot store applies the new events to the context's
        // aggregate itself when it writes a snapshot, so the context must stay as loaded.
        let mut after = ctx.aggregate.clone();
        let sink = cqrs_es::event_sink::EventSink::default();
        after
            .handle(command, &(), &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        let sequence = ctx.current_sequence + events.len();
        if !events.is_empty() {
            self.store
                .commit(events.clone(), ctx, meta.to_map())
                .await?;
        }
        Ok((after, events, sequence))
    }
}

fn store_error<E: std::error::Error>(e: AggregateError<E>) -> CommandError<E> {
    match e {
        AggregateError::UserError(e) => CommandError::Rejected(e),
        AggregateError::AggregateConflict => CommandError::Busy,
        other => CommandError::Store(other.to_string()),
    }
}
