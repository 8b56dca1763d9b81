//! The read side of the service: the read database (and its replicas), the projections kept
//! in it, the builders that keep them current, and read-your-writes for queries.
use crate::error::ApiError;
use crate::settings::Settings;
use anyhow::Context;
use bus::{LocalBus, RelayConfig};
use projections::feed;
use projections::{
    AnalyticsProjection, AvailabilityProjection, BookingsProjection, ListingsProjection,
    Projection, Projector, SearchIndex, Status, UsersProjection,
};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::Database;
use tokio::task::JoinHandle;

pub struct ReadModels {
    /// Where the builders write.
    pub primary: Database,
    /// Where queries go (`READ_REPLICA_URLS`); none, or none up: the primary.
    replicas: Vec<Replica>,
    next_replica: AtomicUsize,
    pub bookings: Projector<BookingsProjection>,
    pub availability: Projector<AvailabilityProjection>,
    pub listings: Projector<ListingsProjection>,
    pub analytics: Projector<AnalyticsProjection>,
    pub users: Projector<UsersProjection>,
    /// The availability and catalogue read models in memory, for searches.
    pub search_index: Arc<SearchIndex>,
    /// Wakes the index after a local write.
    pub index_nudge: Arc<tokio::sync::Notify>,
}

/// How long a replica may take to answer before it counts as down.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(1);

/// A read replica and whether it answered its last health check (`watch_replicas`).
struct Replica {
    db: Database,
    up: std::sync::atomic::AtomicBool,
}

/// What feeds the builders.
#[derive(Clone)]
pub enum Feed {
    JetStream(async_nats::Client, Box<RelayConfig>),
    Local(LocalBus),
}

/// The read database's URL when none is configured: a database next to the store's, named
/// `<store>_read`, on the same PostgreSQL server.
pub fn default_read_url(store_url: &str) -> anyhow::Result<(String, String)> {
    let mut url = url::Url::parse(store_url).context("parsing DATABASE_URL")?;
    let name = url.path().trim_start_matches('/').to_string();
    anyhow::ensure!(!name.is_empty(), "DATABASE_URL names no database");
    let read = format!("{name}_read");
    url.set_path(&format!("/{read}"));
    Ok((url.to_string(), read))
}

/// Opens the read database: `READ_DATABASE_URL`, else (PostgreSQL) `<store>_read` on the same
/// server, created when missing, else (embedded) the store's own SQLite file.
pub async fn open_read_database(settings: &Settings, store: &Database) -> anyhow::Result<Database> {
    let url = match (&settings.read_database_url, store) {
        (Some(url), _) => url.clone(),
        (None, Database::Sqlite(_)) => return Ok(store.clone()),
        (None, Database::Postgres(pool)) => {
            let (url, name) = default_read_url(&settings.effective_database_url())?;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(pool)
                    .await?;
            if !exists {
                let created =
                    sqlx::query(&format!("CREATE DATABASE \"{}\"", name.replace('"', "")))
                        .execute(pool)
                        .await;
                if let Err(e) = created {
                    // Another process may have created it first (42P04: duplicate_database).
                    let duplicate = e
                        .as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|c| c == "42P04" || c == "23505");
                    if !duplicate {
                        return Err(e)
                            .with_context(|| format!("creating the read database {name}"));
                    }
                }
            }
            url
        }
    };
    Database::connect(&url, settings.max_connections())
        .await
        .context("connecting to the read database")
}

impl ReadModels {
    pub async fn open(settings: &Settings, store: &Database) -> anyhow::Result<ReadModels> {
        let primary = open_read_database(settings, store).await?;
        projections::projector::init_read_database(&primary).await?;
        let mut replicas = Vec::new();
        for url in &settings.read_replica_urls {
            anyhow::ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "READ_REPLICA_URLS takes postgres:// URLs"
            );
            let db =
                Database::connect_lazy_postgres(url, settings.max_connections(), REPLICA_TIMEOUT)
                    .context("a read replica's URL (READ_REPLICA_URLS)")?;
            // Up from the start if it answers now; else the watcher brings it in later.
            let up = matches!(
                tokio::time::timeout(REPLICA_TIMEOUT, db.ping()).await,
                Ok(Ok(()))
            );
            if !up {
                tracing::warn!(
                    "a read replica does not answer yet; queries go elsewhere until it does"
                );
            }
            replicas.push(Replica {
                db,
                up: std::sync::atomic::AtomicBool::new(up),
            });
        }
        Ok(ReadModels {
            bookings: Projector::new(store.clone(), primary.clone()),
            availability: Projector::new(store.clone(), primary.clone()),
            listings: Projector::new(store.clone(), primary.clone()),
            analytics: Projector::new(store.clone(), primary.clone()),
            users: Projector::new(store.clone(), primary.clone()),
            search_index: Arc::new(SearchIndex::new(store.clone(), primary.clone())),
            index_nudge: Arc::new(tokio::sync::Notify::new()),
            primary,
            replicas,
            next_replica: AtomicUsize::new(0),
        })
    }

    /// Creates or rebuilds each projection whose tables are missing or from another version.
    pub async fn prepare(&self) -> anyhow::Result<()> {
        self.bookings.prepare().await?;
        self.availability.prepare().await?;
        self.listings.prepare().await?;
        self.analytics.prepare().await?;
        self.users.prepare().await?;
        Ok(())
    }

    /// Loads the in-memory search index from the (prepared) projections.
    pub async fn load_index(&self) -> anyhow::Result<()> {
        self.search_index
            .load()
            .await
            .context("loading the search index")?;
        let (listings, spans) = self.search_index.size();
        tracing::info!(listings, spans, "search index loaded");
        Ok(())
    }

    /// The database the next query goes to: the replicas that are up in turn, else the read
    /// database itself.
    pub fn query_db(&self) -> &Database {
        let n = self.replicas.len();
        if n == 0 {
            return &self.primary;
        }
        let start = self.next_replica.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| &self.replicas[(start + k) % n])
            .find(|r| r.up.load(Ordering::Relaxed))
            .map(|r| &r.db)
            .unwrap_or(&self.primary)
    }

    /// Whether each replica answered its last health check, in `READ_REPLICA_URLS` order.
    pub fn replica_health(&self) -> Vec<bool> {
        self.replicas
            .iter()
            .map(|r| r.up.load(Ordering::Relaxed))
            .collect()
    }

    /// Pings every replica each `every` until `stop`; one that does not answer within that
    /// time is marked down (queries skip it) until it answers again.
    pub async fn watch_replicas(&self, every: Duration, stop: impl Future<Output = ()>) {
        if self.replicas.is_empty() {
            return;
        }
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            for (i, r) in self.replicas.iter().enumerate() {
                let up = matches!(
                    tokio::time::timeout(REPLICA_TIMEOUT, r.db.ping()).await,
                    Ok(Ok(()))
                );
                if r.up.swap(up, Ordering::Relaxed) != up {
                    if up {
                        tracing::info!(replica = i, "read replica is back; queries return to it");
                    } else {
                        tracing::warn!(
                            replica = i,
                            "read replica does not answer; queries go elsewhere"
                        );
                    }
                }
                metrics::gauge!("zhilego_read_replica_up", "replica" => i.to_string()).set(if up {
                    1.0
                } else {
                    0.0
                });
            }
        }
    }

    /// A database to query `projector`'s tables on that has reached `min_position` (waiting at
    /// most `wait`), or 503 `read_model_behind`.
    pub async fn consistent<P: Projection>(
        &self,
        projector: &Projector<P>,
        min_position: Option<i64>,
        wait: Duration,
    ) -> Result<&Database, ApiError> {
        let db = self.query_db();
        if let Some(position) = checked(min_position)? {
            if !projector.wait_for(db, position, wait).await? {
                return Err(behind(P::NAME, position));
            }
        }
        Ok(db)
    }

    /// The in-memory search index once it has `min_position` (waiting at most `wait`), or 503
    /// `read_model_behind` naming `read_model` (the projection the caller reads).
    pub async fn consistent_index(
        &self,
        read_model: &str,
        min_position: Option<i64>,
        wait: Duration,
    ) -> Result<&SearchIndex, ApiError> {
        let index = &*self.search_index;
        if let Some(position) = checked(min_position)? {
            if !index.wait_for(position, wait).await? {
                return Err(behind(read_model, position));
            }
        }
        Ok(index)
    }

    /// Rebuilds the named projections (names as `projections status` shows them) from one scan
    /// of the store, each event decoded once and folded by every one of them
    /// (`projections::rebuild`).
    pub async fn rebuild(
        &self,
        names: &[&str],
        progress: Option<&projections::projector::Progress>,
    ) -> anyhow::Result<projections::rebuild::Summary> {
        use projections::rebuild::{Fresh, Part};
        let mut parts: Vec<Box<dyn Part>> = Vec::with_capacity(names.len());
        for name in names {
            parts.push(match *name {
                "bookings" => Box::new(Fresh::new(self.bookings.clone())),
                "availability" => Box::new(Fresh::new(self.availability.clone())),
                "listings" => Box::new(Fresh::new(self.listings.clone())),
                "analytics" => Box::new(Fresh::new(self.analytics.clone())),
                "users" => Box::new(Fresh::new(self.users.clone())),
                other => anyhow::bail!("no projection named {other}"),
            });
        }
        Ok(projections::rebuild::rebuild(self.bookings.store(), parts, progress).await?)
    }

    pub async fn statuses(&self) -> anyhow::Result<Vec<Status>> {
        Ok(vec![
            self.bookings.status().await?,
            self.availability.status().await?,
            self.listings.status().await?,
            self.analytics.status().await?,
            self.users.status().await?,
        ])
    }

    /// Starts one builder per projection on `feed`; each stops when `stop` resolves.
    pub fn spawn_builders<F>(&self, feed: &Feed, stop: impl Fn() -> F) -> Vec<JoinHandle<()>>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        vec![
            spawn_builder(self.bookings.clone(), feed.clone(), stop()),
            spawn_builder(self.availability.clone(), feed.clone(), stop()),
            spawn_builder(self.listings.clone(), feed.clone(), stop()),
            spawn_builder(self.analytics.clone(), feed.clone(), stop()),
            spawn_builder(self.users.clone(), feed.clone(), stop()),
        ]
    }

    /// Publishes each projection's position and lag as metrics, every `every`, until `stop`.
    pub async fn report_lag(&self, every: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Ok(statuses) = self.statuses().await {
                for s in statuses {
                    metrics::gauge!("zhilego_projection_position", "projection" => s.name)
                        .set(s.position as f64);
                    metrics::gauge!("zhilego_projection_lag_events", "projection" => s.name)
                        .set(s.behind_events as f64);
                    metrics::gauge!("zhilego_projection_lag_seconds", "projection" => s.name)
                        .set(s.lag_seconds);
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// `min_position` as given, refused when negative.
fn checked(min_position: Option<i64>) -> Result<Option<i64>, ApiError> {
    match min_position {
        Some(p) if p < 0 => Err(ApiError::validation("min_position", "must not be negative")),
        other => Ok(other),
    }
}

fn behind(read_model: &str, position: i64) -> ApiError {
    ApiError::unavailable(
        "read_model_behind",
        format!(
            "the {read_model} read model has not reached position {position} yet; retry shortly"
        ),
        1,
    )
}

fn spawn_builder<P: Projection>(
    projector: Projector<P>,
    feed: Feed,
    stop: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        match feed {
            Feed::JetStream(client, config) => {
                feed::follow_jetstream(projector, client, *config, stop).await
            }
            Feed::Local(bus) => feed::follow_local(projector, bus, stop).await,
        }
    })
}
