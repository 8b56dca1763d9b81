//! A cqrs-es `EventStore` that is postgres-es or sqlite-es underneath, chosen at run time.
use crate::chain::ChainedRepository;
use crate::Database;
use cqrs_es::persist::{EventStoreAggregateContext, EventUpcaster, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;
use std::collections::HashMap;

type PgStore<A> = PersistedEventStore<ChainedRepository<PostgresEventRepository>, A>;
type LiteStore<A> = PersistedEventStore<ChainedRepository<SqliteEventRepository>, A>;

pub enum AggregateStore<A: Aggregate> {
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
        match &db {
            Database::Postgres(pool) => {
                let repo =
                    ChainedRepository::new(PostgresEventRepository::new(pool.clone()), db.clone());
                AggregateStore::Postgres(build(repo, snapshot_every, upcasters))
            }
            Database::Sqlite(pool) => {
                let repo =
                    ChainedRepository::new(SqliteEventRepository::new(pool.clone()), db.clone());
                AggregateStore::Sqlite(build(repo, snapshot_every, upcasters))
            }
        }
    }
}

impl<A: Aggregate> EventStore<A> for AggregateStore<A> {
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        match self {
            AggregateStore::Postgres(s) => s.load_events(aggregate_id).await,
            AggregateStore::Sqlite(s) => s.load_events(aggregate_id).await,
        }
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        match self {
            AggregateStore::Postgres(s) => s.load_aggregate(aggregate_id).await,
            AggregateStore::Sqlite(s) => s.load_aggregate(aggregate_id).await,
        }
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        match self {
            AggregateStore::Postgres(s) => s.commit(events, context, metadata).await,
            AggregateStore::Sqlite(s) => s.commit(events, context, metadata).await,
        }
    }
}
