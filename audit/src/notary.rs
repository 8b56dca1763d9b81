//! The notary: follows the store in commit-safe order (`store::history::events_after`, the
//! relay's reading), appends one leaf per event to the tree, and every `every` events or
//! `interval` signs a checkpoint, keeps it, and publishes it to the sinks outside the
//! database (a file, an HTTP witness).
//!
//! A step is one transaction holding the notary's turn (on PostgreSQL an advisory lock,
//! `store::turns`, which takes no transaction id and so holds back no other reader of the store;
//! on SQLite the process's write gate), so several notaries (one per `serve`, or `zhilego
//! notary`) take turns and each event gets exactly one leaf. A step that found nothing writes
//! nothing.
use crate::leaf::Hash;
use crate::merkle::Frontier;
use crate::note::{Notary, SignedCheckpoint};
use crate::scan;
use crate::tree::{Tree, STORED_FROM};
use chrono::Utc;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;
use store::history::{self, Checkpoint};
use store::{Database, StoreError};

const NAME: &str = "notary";

/// How often the backlog is counted while the notary is behind by whole batches.
const LAG_EVERY_WHILE_BEHIND: Duration = Duration::from_secs(5);

/// Where checkpoints go besides the database.
#[derive(Clone, Debug, Default)]
pub struct Sinks {
    /// Rewritten with each new checkpoint's note (atomically: a temporary file renamed).
    pub file: Option<PathBuf>,
    /// Each note is POSTed here as `text/plain`.
    pub witness: Option<url::Url>,
}

#[derive(Clone, Debug)]
pub struct NotaryConfig {
    /// Sign after this many new leaves...
    pub every: u64,
    /// ...or this long after the last checkpoint when there is anything new.
    pub interval: Duration,
    /// Events per step. A step holds its events' text twice (as read and as hashed): 10,000
    /// raised the service's peak RSS by 70 MB while it caught up with a 225,000-event store.
    pub batch: i64,
    pub sinks: Sinks,
}

impl Default for NotaryConfig {
    fn default() -> Self {
        NotaryConfig {
            every: 1000,
            interval: Duration::from_secs(10),
            batch: 2_000,
            sinks: Sinks::default(),
        }
    }
}

pub struct NotaryWorker {
    db: Database,
    tree: Tree,
    signer: Notary,
    config: NotaryConfig,
    http: reqwest::Client,
    /// The newest checkpoint not yet accepted by every sink.
    unpublished: tokio::sync::Mutex<Option<SignedCheckpoint>>,
    /// The tree's right edge after this notary's last step (another notary may have moved on
    /// since: it is used only when its size is the stored tree's).
    frontier: tokio::sync::Mutex<Option<Frontier>>,
}

/// What one step did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    pub appended: usize,
    pub tree_size: u64,
    pub signed: Option<u64>,
}

struct Place {
    at: Checkpoint,
    size: u64,
}

impl NotaryWorker {
    pub fn new(db: Database, signer: Notary, config: NotaryConfig) -> NotaryWorker {
        NotaryWorker {
            tree: Tree::new(db.clone()),
            db,
            signer,
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            unpublished: tokio::sync::Mutex::new(None),
            frontier: tokio::sync::Mutex::new(None),
        }
    }

    /// Appends what the store has (up to a batch) and signs when due.
    pub async fn step(&self) -> Result<Step, StoreError> {
        // The notary's turn, held for the step (on SQLite the write gate serializes steps).
        macro_rules! locked_step {
            ($pool:expr, $turn:expr, $run:ident) => {{
                let mut tx = $pool.begin().await?;
                if let Some(turn) = $turn {
                    sqlx::query(turn).bind(NAME).execute(&mut *tx).await?;
                }
                let select = "SELECT tx, position, tree_size FROM audit_notary WHERE name = $1";
                let mut row: Option<(i64, i64, i64)> =
                    sqlx::query_as(select).bind(NAME).fetch_optional(&mut *tx).await?;
                if row.is_none() {
                    sqlx::query(
                        "INSERT INTO audit_notary (name, tx, position, tree_size) VALUES ($1, 0, 0, 0) \
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(NAME)
                    .execute(&mut *tx)
                    .await?;
                    row = sqlx::query_as(select).bind(NAME).fetch_optional(&mut *tx).await?;
                }
                let (t, p, s) = row.ok_or_else(|| {
                    StoreError::Integrity("the notary's row vanished".into())
                })?;
                let place = Place {
                    at: Checkpoint { tx: t, position: p },
                    size: s as u64,
                };
                let (step, writes, frontier) = self.advance(place).await?;
                writes.$run(&mut tx).await?;
                tx.commit().await?;
                *self.frontier.lock().await = Some(frontier);
                step
            }};
        }
        let step = match &self.db {
            Database::Postgres(pool) => {
                let turn = store::turns::sql(store::turns::Follower::Notary);
                locked_step!(pool, Some(turn.as_str()), run_pg)
            }
            Database::Sqlite(pool) => {
                let _gate = store::sqlite_write_turn("notary").await;
                locked_step!(pool, None::<&str>, run_lite)
            }
        };
        if let Some(size) = step.signed {
            metrics::counter!("zhilego_audit_checkpoints_signed_total").increment(1);
            tracing::info!(tree_size = size, "audit checkpoint signed");
        }
        metrics::gauge!("zhilego_audit_tree_size").set(step.tree_size as f64);
        self.publish().await;
        Ok(step)
    }

    /// Reads the next events and works out the rows to write (and the tree's new edge).
    async fn advance(&self, place: Place) -> Result<(Step, Writes, Frontier), StoreError> {
        let events = scan::raw_after(&self.db, place.at, self.config.batch).await?;
        let cached = self.frontier.lock().await.clone();
        let mut frontier = match cached {
            // The edge this notary left, if no other notary moved on since.
            Some(f) if f.size() == place.size => f,
            _ => {
                let needed = Frontier::needed(place.size).into_iter().collect();
                Frontier::at(&self.tree.fetch(&needed).await?, place.size)
            }
        };
        let at = events.last().map(|e| e.checkpoint()).unwrap_or(place.at);
        let appended = events.len();
        // Hashing (JSON decoding, canonical form, SHA-256) off the async threads when there is
        // much of it.
        let hash_all = move |events: Vec<scan::RawRow>| {
            let mut forms = scan::Forms::default();
            events
                .iter()
                .map(|e| Ok((e.position, forms.digest(&e.view())?.0)))
                .collect::<Result<Vec<_>, StoreError>>()
        };
        let hashed = if events.len() > 64 {
            tokio::task::spawn_blocking(move || hash_all(events))
                .await
                .map_err(|source| StoreError::Task {
                    task: "hashing",
                    source,
                })??
        } else {
            hash_all(events)?
        };
        let mut writes = Writes::default();
        let mut completed = Vec::new();
        for (position, leaf) in hashed {
            writes.leaves.push((frontier.size() as i64, position, leaf));
            frontier.push(leaf, &mut completed);
            // Only the levels the tree keeps (tree::STORED_FROM); lower ones are hashed from
            // the leaves when asked for.
            writes
                .nodes
                .extend(completed.drain(..).filter(|(l, _, _)| *l >= STORED_FROM));
        }
        if appended > 0 {
            writes.place = Some((at, frontier.size()));
        }
        let latest = self.tree.latest_checkpoint().await?;
        let (last_size, last_at) = latest
            .as_ref()
            .map(|c| (c.tree_size, c.signed_at))
            .unwrap_or((0, chrono::DateTime::<Utc>::MIN_UTC));
        let size = frontier.size();
        let waited = (Utc::now() - last_at).to_std().unwrap_or_default();
        let due = size > last_size
            && (size - last_size >= self.config.every || waited >= self.config.interval);
        let mut signed = None;
        if due {
            let checkpoint = self.signer.sign(size, frontier.root());
            writes.checkpoint = Some(checkpoint.clone());
            *self.unpublished.lock().await = Some(checkpoint);
            signed = Some(size);
        }
        Ok((
            Step {
                appended,
                tree_size: size,
                signed,
            },
            writes,
            frontier,
        ))
    }

    /// Hands the newest checkpoint to the sinks; kept for the next step if one fails.
    async fn publish(&self) {
        let mut pending = self.unpublished.lock().await;
        let Some(checkpoint) = pending.clone() else {
            return;
        };
        let mut ok = true;
        if let Some(path) = &self.config.sinks.file {
            if let Err(e) = write_file(path, &checkpoint.text) {
                ok = false;
                tracing::warn!(path = %path.display(), error = %e, "writing the audit checkpoint file failed");
            }
        }
        if let Some(url) = &self.config.sinks.witness {
            let sent = self
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(checkpoint.text.clone())
                .send()
                .await
                .and_then(|r| r.error_for_status());
            if let Err(e) = sent {
                ok = false;
                metrics::counter!("zhilego_audit_witness_failures_total").increment(1);
                tracing::warn!(error = %e, "the audit witness did not take the checkpoint");
            }
        }
        if ok {
            *pending = None;
        }
    }

    /// Follows the store until `shutdown`: every `poll`, at once again behind a backlog, with
    /// growing pauses (≤ 5 s) while the store fails. Reports its lag every pass.
    pub async fn run(&self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut pause = Duration::ZERO;
        // Counting the backlog reads all of it: while catching up (full batches) it is
        // counted at most every few seconds.
        let mut measured: Option<Instant> = None;
        loop {
            let mut full = false;
            match self.step().await {
                Ok(step) => {
                    pause = Duration::ZERO;
                    full = step.appended as i64 == self.config.batch;
                }
                Err(e) => {
                    pause = (pause * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "notary step failed");
                }
            }
            if !full || measured.is_none_or(|t| t.elapsed() >= LAG_EVERY_WHILE_BEHIND) {
                measured = Some(Instant::now());
                if let Ok(lag) = self.lag().await {
                    metrics::gauge!("zhilego_audit_notary_lag_events").set(lag.events as f64);
                    metrics::gauge!("zhilego_audit_notary_lag_seconds").set(lag.lag_seconds());
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(if pause.is_zero() { poll } else { pause }) => {}
            }
        }
    }

    /// How far the notary is behind the store.
    pub async fn lag(&self) -> Result<history::Backlog, StoreError> {
        lag(&self.db).await
    }
}

/// How far the notary is behind the store.
pub async fn lag(db: &Database) -> Result<history::Backlog, StoreError> {
    let at: Option<(i64, i64)> = store::with_pool!(db, pool => {
        sqlx::query_as("SELECT tx, position FROM audit_notary WHERE name = $1")
            .bind(NAME)
            .fetch_optional(pool)
            .await?
    });
    let at = at
        .map(|(tx, position)| Checkpoint { tx, position })
        .unwrap_or_default();
    history::backlog(db, at).await
}

fn write_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The rows one step writes.
#[derive(Default)]
struct Writes {
    leaves: Vec<(i64, i64, Hash)>,
    nodes: Vec<(u32, u64, Hash)>,
    place: Option<(Checkpoint, u64)>,
    checkpoint: Option<SignedCheckpoint>,
}

/// Rows per multi-row insert on SQLite (4 binds each stays far below its limit).
const LITE_CHUNK: usize = 1000;

macro_rules! run_writes {
    ($self:ident, $tx:ident, $now:expr) => {{
        if let Some((at, size)) = $self.place {
            sqlx::query("UPDATE audit_notary SET tx = $2, position = $3, tree_size = $4 WHERE name = $1")
                .bind(NAME)
                .bind(at.tx)
                .bind(at.position)
                .bind(size as i64)
                .execute(&mut **$tx)
                .await?;
        }
        if let Some(c) = &$self.checkpoint {
            sqlx::query("INSERT INTO audit_checkpoints (tree_size, root_hash, note, signed_at) VALUES ($1, $2, $3, $4)")
                .bind(c.checkpoint.tree_size as i64)
                .bind(c.checkpoint.root_hash.to_vec())
                .bind(&c.text)
                .bind($now)
                .execute(&mut **$tx)
                .await?;
        }
        Ok(())
    }};
}

impl Writes {
    async fn run_pg(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), StoreError> {
        // One statement per table and step, the rows as arrays.
        if !self.leaves.is_empty() {
            let (mut index, mut position, mut hash) = (Vec::new(), Vec::new(), Vec::new());
            for (i, p, h) in &self.leaves {
                index.push(*i);
                position.push(*p);
                hash.push(h.to_vec());
            }
            sqlx::query(
                "INSERT INTO audit_leaves (leaf_index, position, leaf_hash) \
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bytea[])",
            )
            .bind(index)
            .bind(position)
            .bind(hash)
            .execute(&mut **tx)
            .await?;
        }
        if !self.nodes.is_empty() {
            let (mut level, mut idx, mut hash) = (Vec::new(), Vec::new(), Vec::new());
            for (l, i, h) in &self.nodes {
                level.push(*l as i32);
                idx.push(*i as i64);
                hash.push(h.to_vec());
            }
            sqlx::query(
                "INSERT INTO audit_nodes (level, idx, hash) \
                 SELECT * FROM UNNEST($1::integer[], $2::bigint[], $3::bytea[])",
            )
            .bind(level)
            .bind(idx)
            .bind(hash)
            .execute(&mut **tx)
            .await?;
        }
        run_writes!(self, tx, Utc::now())
    }

    async fn run_lite(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ) -> Result<(), StoreError> {
        for chunk in self.leaves.chunks(LITE_CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO audit_leaves (leaf_index, position, leaf_hash) ",
            );
            q.push_values(chunk, |mut b, (i, p, h)| {
                b.push_bind(*i).push_bind(*p).push_bind(h.to_vec());
            });
            q.build().execute(&mut **tx).await?;
        }
        for chunk in self.nodes.chunks(LITE_CHUNK) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO audit_nodes (level, idx, hash) ");
            q.push_values(chunk, |mut b, (l, i, h)| {
                b.push_bind(*l as i32)
                    .push_bind(*i as i64)
                    .push_bind(h.to_vec());
            });
            q.build().execute(&mut **tx).await?;
        }
        run_writes!(
            self,
            tx,
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    }
}
