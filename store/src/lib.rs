//! The event store and the database handle everything else shares.
//!
//! - [`Database`]: one connection pool, PostgreSQL (production) or SQLite (embedded), with the
//!   migrations of `migrations/postgres` or `migrations/sqlite`.
//! - [`AggregateStore`]: a cqrs-es `EventStore` over postgres-es or sqlite-es (their schema and
//!   their reads); every write is stamped by [`chain::Chain`] with an id and a hash chained to
//!   the previous event of its aggregate, and written by [`append`] in one statement, one or
//!   several aggregates at once.
//! - [`history`]: reading events back in global order (audit, projections) and verifying chains.
//! - [`browse`]: the auditors' filtered pages of the store in commit order.
//! - [`trace`]: the W3C trace context events carry from the API to the consumers.
//! - [`turns`]: how relays, notaries and projection builders of one name take turns.
#![forbid(unsafe_code)]

mod aggregate_store;
pub mod append;
pub mod browse;
pub mod chain;
pub mod history;
pub mod statistics;
pub mod trace;
pub mod turns;

pub use aggregate_store::AggregateStore;
pub use append::Prepared;
pub use history::{Checkpoint, StoredEvent, VerifyReport};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// SQLite lets one writer in at a time and makes the others poll with sleeps (its busy
/// handler), which wastes most of the time under load. Writers of this process queue here
/// instead, in order, and reach SQLite one by one. (One embedded database per process.)
fn sqlite_write_gate() -> &'static tokio::sync::Mutex<()> {
    static GATE: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    GATE.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// This process's turn at the embedded database's writer, until dropped: how long `holder`
/// waited for it and held it are the histograms `zhilego_sqlite_write_wait_seconds` and
/// `zhilego_sqlite_write_turn_seconds` (the writer is the embedded mode's one serial
/// resource, so they say who keeps it).
pub async fn sqlite_write_turn(holder: &'static str) -> WriteTurn {
    let asked = std::time::Instant::now();
    let guard = sqlite_write_gate().lock().await;
    let since = std::time::Instant::now();
    metrics::histogram!("zhilego_sqlite_write_wait_seconds", "holder" => holder)
        .record(since.duration_since(asked).as_secs_f64());
    WriteTurn {
        _guard: guard,
        holder,
        since,
    }
}

/// See [`sqlite_write_turn`].
pub struct WriteTurn {
    _guard: tokio::sync::MutexGuard<'static, ()>,
    holder: &'static str,
    since: std::time::Instant,
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        metrics::histogram!("zhilego_sqlite_write_turn_seconds", "holder" => self.holder)
            .record(self.since.elapsed().as_secs_f64());
    }
}

/// The service's database: production PostgreSQL or the embedded SQLite file.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected postgres:// or sqlite://): {0}")]
    Url(String),
    /// Stored data breaks a rule the code relies on (a message about the data, not a cause).
    #[error("integrity: {0}")]
    Integrity(String),
    /// A stored event's payload is not JSON.
    #[error("integrity: event {position} payload: {source}")]
    Payload {
        position: i64,
        #[source]
        source: serde_json::Error,
    },
    /// A task doing part of the work (a rebuild's reader, decoder or writer) panicked or was
    /// cancelled.
    #[error("{task} task: {source}")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Database {
    /// Connects to `url` (`postgres://…` or `sqlite://path`), creating an SQLite file if needed.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Database, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = pg_pool_options()
                .max_connections(max_connections)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Database::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            // An embedded connection cannot be dropped by a server; sqlx's ping before each
            // use would only add a trip to the connection's worker thread per query.
            let pool = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await?;
            Ok(Database::Sqlite(pool))
        } else {
            Err(StoreError::Url(url.to_string()))
        }
    }

    /// A PostgreSQL pool that connects on first use, for read replicas: a replica that is down
    /// (or not yet made) does not stop the process, and a query to it gives up after
    /// `acquire_timeout` rather than waiting long.
    pub fn connect_lazy_postgres(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Database, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = pg_pool_options()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        Ok(Database::Postgres(pool))
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Database::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await?,
            Database::Sqlite(pool) => sqlx::migrate!("../migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "postgres",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// A trivial round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Database::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// A cqrs-es event store for aggregate `A`; `snapshot_every` events a snapshot is kept.
    /// Events stored in an older version pass through `upcasters` when they are loaded.
    pub fn aggregate_store<A: cqrs_es::Aggregate>(
        &self,
        snapshot_every: Option<usize>,
        upcasters: Vec<Box<dyn cqrs_es::persist::EventUpcaster>>,
    ) -> AggregateStore<A> {
        AggregateStore::new(self.clone(), snapshot_every, upcasters)
    }

    pub async fn close(&self) {
        match self {
            Database::Postgres(pool) => pool.close().await,
            Database::Sqlite(pool) => pool.close().await,
        }
    }
}

/// A pooled PostgreSQL connection used again within this long is handed out as it is.
/// sqlx pings every connection before handing it out by default, a round trip per query
/// (a booking made four); a connection idle for longer is still pinged, so one the server
/// closed meanwhile (a restart, a proxy's idle timeout) is replaced, not failed on.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);

fn pg_pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Runs the same code against whichever pool `db` holds. SQL written with `$1`-style
/// placeholders and shared syntax runs unchanged on both backends (sqlx binds `$N` by number on
/// SQLite too); the body is compiled once per backend.
#[macro_export]
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Database::Postgres($pool) => $body,
            $crate::Database::Sqlite($pool) => $body,
        }
    };
}
