//! A cqrs-es `EventStore` that is postgres-es or sqlite-es underneath, chosen at run time, and
//! the way in for commits written by [`crate::append`] directly.
use crate::append::Prepared;
use crate::chain::{Chain, ChainedRepository};
use crate::Database;
use cqrs_es::persist::{
    EventStoreAggregateContext, EventUpcaster, PersistedEventStore, SerializedEvent,
};
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;
use std::collections::HashMap;
use std::sync::Arc;

type PgStore<A> = PersistedEventStore<ChainedRepository<PostgresEventRepository>, A>;
type LiteStore<A> = PersistedEventStore<ChainedRepository<SqliteEventRepository>, A>;

pub struct AggregateStore<A: Aggregate> {
    events: Backend<A>,
    /// The hash chain's stamping and head cache, shared with the repository inside `events`.
    chain: Arc<Chain>,
}

enum Backend<A: Aggregate> {
    Postgres(PgStore<A>),
    Sqlite(LiteStore<A>),
}

impl<A: Aggregate> AggregateStore<A> {
    pub(crate) fn new(
        db: Database,
        snapshot_every: Option<usize>,
        upcasters: Vec<Box<dyn EventUpcaster>>,
    ) -> Self {
        fn build<R: cqrs_es::persist::PersistedEventRepository, A: Aggregate>(
            repo: R,
            snapshot_every: Option<usize>,
            upcasters: Vec<Box<dyn EventUpcaster>>,
        ) -> PersistedEventStore<R, A> {
            match snapshot_every {
                Some(n) => PersistedEventStore::new_snapshot_store(repo, n),
                None => PersistedEventStore::new_event_store(repo),
            }
            .with_upcasters(upcasters)
        }
        let chain = Arc::new(Chain::new(db.clone()));
        let events = match &db {
            Database::Postgres(pool) => {
                let repo = ChainedRepository::new(
                    PostgresEventRepository::new(pool.clone()),
                    chain.clone(),
                );
                Backend::Postgres(build(repo, snapshot_every, upcasters))
            }
            Database::Sqlite(pool) => {
                let repo =
                    ChainedRepository::new(SqliteEventRepository::new(pool.clone()), chain.clone());
                Backend::Sqlite(build(repo, snapshot_every, upcasters))
            }
        };
        AggregateStore { events, chain }
    }

    /// `events`, the next events of aggregate `aggregate_id` after `sequence`, serialized as
    /// cqrs-es would (each with `metadata`), identified and chained; `snapshot` is the state
    /// after them and its counter when a snapshot is due. Nothing is written until
    /// [`crate::append::write`] gets the result, alone or with another aggregate's.
    pub async fn prepare(
        &self,
        aggregate_id: &str,
        sequence: usize,
        events: &[A::Event],
        metadata: &HashMap<String, String>,
        snapshot: Option<(&A, usize)>,
    ) -> Result<Prepared, AggregateError<A::Error>> {
        let metadata = serde_json::to_value(metadata)?;
        let serialized = events
            .iter()
            .zip(sequence + 1..)
            .map(|(event, sequence)| {
                Ok(SerializedEvent::new(
                    aggregate_id.to_string(),
                    sequence,
                    A::TYPE.to_string(),
                    event.event_type(),
                    event.event_version(),
                    serde_json::to_value(event)?,
                    metadata.clone(),
                ))
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let snapshot = match snapshot {
            Some((state, counter)) => Some((serde_json::to_value(state)?, counter)),
            None => None,
        };
        Ok(self.chain.prepare(serialized, snapshot).await?)
    }
}

impl<A: Aggregate> EventStore<A> for AggregateStore<A> {
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        match &self.events {
            Backend::Postgres(s) => s.load_events(aggregate_id).await,
            Backend::Sqlite(s) => s.load_events(aggregate_id).await,
        }
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        match &self.events {
            Backend::Postgres(s) => s.load_aggregate(aggregate_id).await,
            Backend::Sqlite(s) => s.load_aggregate(aggregate_id).await,
        }
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        match &self.events {
            Backend::Postgres(s) => s.commit(events, context, metadata).await,
            Backend::Sqlite(s) => s.commit(events, context, metadata).await,
        }
    }
}
