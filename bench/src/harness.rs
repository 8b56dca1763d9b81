//! What every mode that measures the service does around its own work: the backends to run,
//! a scratch store (a temporary directory, and a PostgreSQL database for the `postgres`
//! backend), starting `zhilego serve` on it, stopping it and reading its log, and the
//! per-backend loop that turns each run into a report section.
use crate::report::{mb, Report, Section};
use crate::server::{self, Memory, Server};
use crate::{load, pg, seed, Common};
use anyhow::{Context, Result};
use clap::ValueEnum;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Goal for the service's peak resident memory, in MB (10^6 bytes).
pub const RSS_GOAL_MB: f64 = 150.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The backend asked for, else both, SQLite first.
fn backends(choice: Option<Backend>) -> Vec<Backend> {
    match choice {
        Some(b) => vec![b],
        None => vec![Backend::Sqlite, Backend::Postgres],
    }
}

/// What one backend's run gave.
pub enum Outcome<R> {
    Measured(R),
    /// Not run, and why (PostgreSQL not reachable and not asked for by name).
    Skipped(String),
}

impl<R> Outcome<R> {
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Outcome<S> {
        match self {
            Outcome::Measured(r) => Outcome::Measured(f(r)),
            Outcome::Skipped(why) => Outcome::Skipped(why),
        }
    }
}

/// Runs `each` per backend (`== name: starting`), adding its section to `report`: the
/// measured one, `skipped: …` or `FAILED: …`; then publishes the report as `file` (or to
/// `out`). A failed run fails the mode, after the report is out.
pub async fn each_backend<F, Fut>(
    mut report: Report,
    file: &str,
    out: Option<&Path>,
    choice: Option<Backend>,
    mut each: F,
) -> Result<()>
where
    F: FnMut(Backend) -> Fut,
    Fut: Future<Output = Result<Outcome<Section>>>,
{
    let mut failed = false;
    for backend in backends(choice) {
        eprintln!("== {}: starting", backend.name());
        let section = match each(backend).await {
            Ok(Outcome::Measured(s)) => s,
            Ok(Outcome::Skipped(why)) => Section::skipped(backend.name(), &why),
            Err(e) => {
                failed = true;
                Section::failed(backend.name(), &e)
            }
        };
        report.section(&section);
    }
    report.publish(file, out)?;
    anyhow::ensure!(!failed, "a backend run failed (see the report)");
    Ok(())
}

/// A fresh temporary directory for one run's files (service log, wrk scripts).
pub fn work_dir(mode: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "zhilego-bench-{mode}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// One backend's scratch store: the service's settings for it, its files, its database.
pub struct Scratch {
    pub work_dir: PathBuf,
    /// The service's settings: a free port, rate limit off, the store, `KASPI_MODE=sandbox`.
    pub env: Vec<(String, String)>,
    /// The store in words, for the section title.
    pub store: String,
    database: Option<String>,
    admin_url: String,
}

impl Scratch {
    /// SQLite: a data directory in a fresh work dir. PostgreSQL: a fresh `zhilego_bench_*`
    /// database in production mode (random JWT secret and master key). When PostgreSQL does
    /// not answer, the run is skipped if `may_skip`, else it fails.
    pub async fn create(
        mode: &str,
        backend: Backend,
        admin_url: &str,
        may_skip: bool,
    ) -> Result<Outcome<Scratch>> {
        if backend == Backend::Postgres && may_skip {
            if let Err(why) = pg::reachable(admin_url).await {
                return Ok(Outcome::Skipped(format!(
                    "PostgreSQL at {admin_url} is not reachable ({why})"
                )));
            }
        }
        let work_dir = work_dir(mode)?;
        let data = work_dir.join("data");
        let (env, store, database) = match backend {
            Backend::Sqlite => (
                embedded_env(&data),
                format!("embedded SQLite in {}", data.display()),
                None,
            ),
            Backend::Postgres => {
                let db = pg::scratch_name("zhilego_bench");
                if let Err(e) = pg::create_database(admin_url, &db).await {
                    let _ = std::fs::remove_dir_all(&work_dir);
                    return Err(e);
                }
                let url = pg::database_url(admin_url, &db)?;
                let mut env = server::production_env(&url);
                env.push(("ZHILEGO_DATA_DIR".to_string(), data.display().to_string()));
                (env, format!("PostgreSQL {url}"), Some(db))
            }
        };
        Ok(Outcome::Measured(Scratch {
            work_dir,
            env,
            store,
            database,
            admin_url: admin_url.to_string(),
        }))
    }

    /// The service log's path in the work dir.
    pub fn log(&self) -> PathBuf {
        self.work_dir.join("zhilego.log")
    }

    /// Drops the scratch database (and its `_read` database); a warning when that failed.
    pub async fn drop_database(&mut self) -> Option<String> {
        let db = self.database.take()?;
        pg::drop_store(&self.admin_url, &db)
            .await
            .err()
            .map(|e| format!("could not drop {db}: {e:#}"))
    }

    /// The error of a failed run, saying where its files (the service log) were kept.
    pub fn kept(&self, e: anyhow::Error) -> anyhow::Error {
        e.context(format!("files kept in {}", self.work_dir.display()))
    }

    /// Removes the work dir, unless something was `off`: then it stays for a look. A warning
    /// either way when there is something to say.
    pub fn remove_files(&self, off: bool) -> Option<String> {
        if off {
            return Some(format!(
                "something was off: the service log is kept in {}",
                self.work_dir.display()
            ));
        }
        std::fs::remove_dir_all(&self.work_dir)
            .err()
            .map(|e| format!("could not remove {}: {e}", self.work_dir.display()))
    }
}

/// Embedded-mode settings for the data directory `data` (its store `zhilego.db`): a free port,
/// rate limits off, the metrics listener on a free port, the Kaspi sandbox, a random JWT
/// secret.
pub fn embedded_env(data: &Path) -> Vec<(String, String)> {
    vec![
        ("ZHILEGO_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("ZHILEGO_RATE_LIMIT".to_string(), "0".to_string()),
        // One source posting as fast as it can; the metrics listener on a free port so runs
        // side by side do not collide.
        ("ZHILEGO_WEBHOOK_RATE_LIMIT".to_string(), "0".to_string()),
        (
            "ZHILEGO_METRICS_ADDR".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        ("ZHILEGO_DATA_DIR".to_string(), data.display().to_string()),
        ("KASPI_MODE".into(), "sandbox".into()),
        // Given (not generated into the data dir), so the bench can mint a token per guest in
        // its own process (`Server::guests`).
        (
            "ZHILEGO_JWT_SECRET".into(),
            uuid::Uuid::new_v4().simple().to_string(),
        ),
    ]
}

/// `given`, else a scratch store seeded with the `seed` defaults (returned as `Some(name)` so
/// that the caller drops it with [`drop_seeded`]).
pub async fn seeded_store(
    given: Option<&str>,
    common: &Common,
) -> Result<(String, Option<String>)> {
    if let Some(url) = given {
        return Ok((url.to_string(), None));
    }
    let db = pg::scratch_name("zhilego_bench");
    pg::create_database(&common.pg_admin_url, &db).await?;
    let url = pg::database_url(&common.pg_admin_url, &db)?;
    eprintln!("== no --database-url: seeding a scratch store {db} (the `seed` defaults)");
    if let Err(e) = seed::seed(&url, &seed::SeedOptions::default()).await {
        let _ = pg::drop_store(&common.pg_admin_url, &db).await;
        return Err(e);
    }
    Ok((url, Some(db)))
}

/// Drops the store [`seeded_store`] made, if it made one (a warning on stderr otherwise).
pub async fn drop_seeded(common: &Common, scratch: Option<String>) {
    if let Some(db) = &scratch {
        if let Err(e) = pg::drop_store(&common.pg_admin_url, db).await {
            eprintln!("warning: could not drop {db}: {e:#}");
        }
    }
}

/// Starts `zhilego serve` with `env`, its log at `log`; says where it runs and what comes next.
pub async fn start(
    bin: &Path,
    env: Vec<(String, String)>,
    log: PathBuf,
    start_timeout: Option<Duration>,
    next: &str,
) -> Result<Server> {
    let server = match start_timeout {
        Some(t) => Server::start_within(bin, env, log, t).await?,
        None => Server::start(bin, env, log).await?,
    };
    eprintln!(
        "   service pid {} at {}; {next}",
        server.pid(),
        server.base_url
    );
    Ok(server)
}

/// How the service ended and what its log holds.
#[derive(Debug, Default, Clone)]
pub struct Stopped {
    /// `stopped by SIGTERM in 0.3 s (exit status: 0)`, or how it went otherwise.
    pub how: String,
    pub log_bytes: u64,
    /// Lines with WARN or ERROR.
    pub log_problems: usize,
    pub first_log_problem: Option<String>,
}

/// Stops the service (SIGTERM, then SIGKILL) and reads its log's size and problems.
pub async fn stop(server: Server) -> Stopped {
    let log = server.log_path().to_path_buf();
    let how = server
        .stop()
        .await
        .unwrap_or_else(|e| format!("stop failed: {e:#}"));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    Stopped {
        how,
        log_bytes: std::fs::metadata(&log).map_or(0, |m| m.len()),
        log_problems: problems.len(),
        first_log_problem: problems.first().map(|l| crate::report::clip(l)),
    }
}

/// The service's memory rows: `server RSS` (the peak after each phase, at the end), labelled
/// with `punct` after the label (`":"` in sections that use colons), and its goal row.
pub fn rss_rows(s: &mut Section, memory: &[(&'static str, Memory)], punct: &str) {
    let Some((_, last)) = memory.last() else {
        return;
    };
    let phases = memory
        .iter()
        .map(|(when, m)| format!("{when} {:.1}", mb(m.peak_kib)))
        .collect::<Vec<_>>()
        .join(", ");
    let peak = mb(last.peak_kib);
    s.row(
        &format!("server RSS{punct}"),
        format!(
            "peak {peak:.1} MB (VmHWM; {phases} MB), at end {:.1} MB (VmRSS)",
            mb(last.current_kib)
        ),
    );
    s.goal(
        "peak RSS",
        format!("{peak:.1} MB"),
        format!("< {RSS_GOAL_MB:.0} MB"),
        "none (an absolute goal)",
        peak < RSS_GOAL_MB,
    );
}

/// `count` listings through `POST /api/v1/listings` from `workers` tasks; their ids and how
/// long it took.
pub async fn create_listings(
    client: &reqwest::Client,
    server: &Server,
    host: &str,
    count: usize,
    workers: usize,
) -> Result<(Vec<uuid::Uuid>, Duration)> {
    eprintln!("   creating {count} listings");
    let started = Instant::now();
    let listings = load::seed_listings(client, &server.base_url, host, count, workers)
        .await
        .with_context(|| {
            format!(
                "creating listings (service log: {})",
                server.log_path().display()
            )
        })?;
    Ok((listings, started.elapsed()))
}
