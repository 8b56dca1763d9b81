//! `zhilego-bench booking` (the default mode): booking throughput of the real `zhilego`
//! service through HTTP, on the embedded SQLite store and on PostgreSQL.
//!
//! ```text
//! cd /work/main
//! cargo build --release -p zhilego -p zhilego-bench      # the service binary too!
//! cargo run --release -p zhilego-bench -- --help
//! cargo run --release -p zhilego-bench -- --seconds 10                  # both stores
//! cargo run --release -p zhilego-bench -- --backend postgres \
//!     --concurrency 32 --pg-admin-url postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! `cargo run -p zhilego-bench` does not build the `zhilego` binary; the bench looks for it
//! next to its own executable (`target/release/zhilego`) unless `--zhilego-bin` says where.
//!
//! For each backend (SQLite, then PostgreSQL, unless `--backend` picks one) the bench:
//!
//! 1. starts `zhilego serve` as a separate process with `ZHILEGO_LISTEN=127.0.0.1:0` and
//!    `ZHILEGO_RATE_LIMIT=0` — for SQLite with a fresh temporary `ZHILEGO_DATA_DIR`, for
//!    PostgreSQL with a fresh `zhilego_bench_*` database (`DATABASE_URL`) and a random
//!    `ZHILEGO_JWT_SECRET` and `ZHILEGO_ENCRYPTION_KEY` — and reads its stdout up to `listening on http://HOST:PORT`;
//!    the service's log (stderr) goes to a file in the temporary directory;
//! 2. mints a host token with `zhilego token`, and a guest token per booking (every booking
//!    from a guest of its own, as real traffic is; the service caps a guest's unpaid holds);
//! 3. creates `--listings` listings with `POST /api/v1/listings`;
//! 4. runs `--concurrency` workers for `--seconds`, each repeatedly sending
//!    `POST /api/v1/bookings` for a 1–3 night stay. Listings are split among the workers;
//!    a worker visits its listings in turn and walks each one's calendar forward from
//!    tomorrow (Kazakhstan date, UTC+5), so requests do not conflict;
//! 5. reads the service's VmHWM/VmRSS from `/proc/<pid>/status`, stops it with SIGTERM and
//!    drops the bench database;
//! 6. for PostgreSQL, runs the reference `pgbench -n -c 16 -j 2 -T 10` of one 337-byte
//!    `jsonb` INSERT per transaction in a scratch database and reports bookings/s ÷ tps.
//!
//! The report (201/409/other counts, bookings/s, client-side latency p50/p95/p99, peak RSS,
//! CPU use during the timed phase, the goals) is printed and written to
//! `bench/results/latest.txt` (kept out of git), or to `--out`.
use crate::server::{self, Memory, Server};
use crate::{kz_today, load, pg, verdict, zhilego_binary};
use anyhow::{Context, Result};
use clap::ValueEnum;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Goal on the embedded store.
const SQLITE_GOAL_PER_SECOND: f64 = 1_000.0;
/// Goal on PostgreSQL, as a share of the pgbench INSERT rate.
const POSTGRES_GOAL_RATIO: f64 = 0.25;
/// Goal for the service's peak resident memory, in MB (10^6 bytes).
const RSS_GOAL_MB: f64 = 150.0;

/// The booking-throughput bench (the default mode).
#[derive(clap::Args, Debug)]
pub struct BookingArgs {
    /// The store to measure; both, SQLite first, when left out.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Length of the timed booking phase, per backend.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Concurrent booking workers (each with its own guest token and connection).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Listings to create before the timed phase (at least --concurrency).
    #[arg(long, default_value_t = 500)]
    listings: usize,
    /// PostgreSQL connection for creating and dropping the scratch databases; the service
    /// gets the same URL with the bench database's name.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_admin_url: String,
    /// The zhilego binary (default: `zhilego` next to this executable).
    #[arg(long)]
    zhilego_bin: Option<PathBuf>,
    /// Where to write the report (default: bench/results/latest.txt).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Extra setting for the service, e.g. `ZHILEGO_DB_MAX_CONNECTIONS=4` (repeatable). The
    /// service otherwise gets only the bench's settings, not the caller's ZHILEGO_* variables.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    server_env: Vec<(String, String)>,
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// CPU used during the timed phase, as % of one core (200% = both cores of a 2-core machine).
#[derive(Debug, Clone, Copy)]
struct CpuUse {
    server: f64,
    bench: f64,
    /// All cores together, as % of the whole machine.
    machine_busy: f64,
}

/// CPU counters at one instant.
struct CpuSample {
    at: Instant,
    server: Duration,
    bench: Duration,
    machine: (u64, u64),
}

impl CpuSample {
    fn take(server: &Server) -> Result<CpuSample> {
        Ok(CpuSample {
            at: Instant::now(),
            server: server.cpu_time()?,
            bench: server::process_cpu_time("/proc/self/stat")?,
            machine: server::machine_cpu_ticks()?,
        })
    }

    fn since(&self, start: &CpuSample) -> CpuUse {
        let wall = (self.at - start.at).as_secs_f64().max(1e-9);
        let share = |a: Duration, b: Duration| (a - b).as_secs_f64() / wall * 100.0;
        let busy = self.machine.0.saturating_sub(start.machine.0) as f64;
        let total = self.machine.1.saturating_sub(start.machine.1).max(1) as f64;
        CpuUse {
            server: share(self.server, start.server),
            bench: share(self.bench, start.bench),
            machine_busy: busy / total * 100.0,
        }
    }
}

/// Everything measured for one backend.
struct BackendReport {
    backend: Backend,
    store: String,
    seeded: usize,
    seed_time: Duration,
    outcome: load::Outcome,
    memory: Memory,
    cpu: Option<CpuUse>,
    stopped: String,
    log_bytes: u64,
    pgbench: Option<Result<pg::Pgbench>>,
    cleanup_warnings: Vec<String>,
}

pub async fn run(args: BookingArgs) -> Result<()> {
    anyhow::ensure!(args.seconds > 0, "--seconds must be positive");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be positive");
    anyhow::ensure!(
        args.listings >= args.concurrency,
        "--listings must be at least --concurrency (each worker needs its own listings)"
    );
    let bin = zhilego_binary(args.zhilego_bin.as_deref())?;
    let backends = match args.backend {
        Some(b) => vec![b],
        None => vec![Backend::Sqlite, Backend::Postgres],
    };

    let mut report = header(&args, &bin);
    let mut failed = false;
    for backend in backends {
        eprintln!("== {}: starting", backend.name());
        let block = match run_backend(&args, &bin, backend).await {
            Ok(r) => render(&r),
            Err(e) => {
                failed = true;
                format!("[{}]\n  FAILED: {e:#}\n", backend.name())
            }
        };
        report.push('\n');
        report.push_str(&block);
    }

    print!("{report}");
    let out = args.out.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join("latest.txt")
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("report written to {}", out.display());
    anyhow::ensure!(!failed, "a backend run failed (see the report)");
    Ok(())
}

async fn run_backend(args: &BookingArgs, bin: &Path, backend: Backend) -> Result<BackendReport> {
    let work_dir = std::env::temp_dir().join(format!("zhilego-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let mut env = vec![
        ("ZHILEGO_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("ZHILEGO_RATE_LIMIT".to_string(), "0".to_string()),
        (
            "ZHILEGO_DATA_DIR".to_string(),
            work_dir.join("data").display().to_string(),
        ),
    ];
    env.extend(args.server_env.iter().cloned());
    let mut database = None;
    let store = match backend {
        Backend::Sqlite => format!("embedded SQLite in {}", work_dir.join("data").display()),
        Backend::Postgres => {
            let db = pg::scratch_name("zhilego_bench");
            pg::create_database(&args.pg_admin_url, &db).await?;
            let url = pg::database_url(&args.pg_admin_url, &db)?;
            env.push(("DATABASE_URL".into(), url.clone()));
            env.push((
                "ZHILEGO_JWT_SECRET".into(),
                Uuid::new_v4().simple().to_string(),
            ));
            env.push((
                "ZHILEGO_ENCRYPTION_KEY".into(),
                format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
            ));
            // Production mode calls Kaspi live by default; the bench pays nothing (on
            // loopback), so it allows the sandbox explicitly.
            env.push(("KASPI_MODE".into(), "sandbox".into()));
            env.push(("ZHILEGO_ALLOW_SANDBOX_PAYMENTS".into(), "1".into()));
            database = Some(db);
            format!("PostgreSQL {url}")
        }
    };

    let measured = measure(args, bin, backend, env, &work_dir, store).await;

    let mut warnings = Vec::new();
    if let Some(db) = &database {
        if let Err(e) = pg::drop_store(&args.pg_admin_url, db).await {
            warnings.push(format!("could not drop {db}: {e:#}"));
        }
    }
    let mut report = match measured {
        Ok(r) => r,
        Err(e) => {
            // Keep the temporary directory (the service log) for a look.
            return Err(e.context(format!("files kept in {}", work_dir.display())));
        }
    };
    if backend == Backend::Postgres {
        eprintln!("== postgres: pgbench reference (10 s)");
        report.pgbench = Some(pg::pgbench(&args.pg_admin_url, &work_dir).await);
    }
    if let Err(e) = std::fs::remove_dir_all(&work_dir) {
        warnings.push(format!("could not remove {}: {e}", work_dir.display()));
    }
    report.cleanup_warnings = warnings;
    Ok(report)
}

async fn measure(
    args: &BookingArgs,
    bin: &Path,
    backend: Backend,
    env: Vec<(String, String)>,
    work_dir: &Path,
    store: String,
) -> Result<BackendReport> {
    let server = Server::start(bin, env, work_dir.join("zhilego.log")).await?;
    eprintln!(
        "   service pid {} at {}; minting tokens",
        server.pid(),
        server.base_url
    );
    let result = exercise(args, &server, backend, store).await;
    let stopped = server.stop().await;
    let mut report = result?;
    report.stopped = stopped.unwrap_or_else(|e| format!("stop failed: {e:#}"));
    report.log_bytes = std::fs::metadata(work_dir.join("zhilego.log")).map_or(0, |m| m.len());
    Ok(report)
}

/// Tokens, seeding and the timed phase against a running service.
async fn exercise(
    args: &BookingArgs,
    server: &Server,
    backend: Backend,
    store: String,
) -> Result<BackendReport> {
    let host = server.token("host", Uuid::new_v4()).await?;
    let guests = server.guests()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()?;

    eprintln!("   seeding {} listings", args.listings);
    let seed_started = Instant::now();
    let listings = load::seed_listings(
        &client,
        &server.base_url,
        &host,
        args.listings,
        args.concurrency,
    )
    .await
    .with_context(|| {
        format!(
            "seeding listings (service log: {})",
            server.log_path().display()
        )
    })?;
    let seed_time = seed_started.elapsed();

    eprintln!(
        "   booking for {} s with {} workers",
        args.seconds, args.concurrency
    );
    let before = CpuSample::take(server).ok();
    let outcome = load::book(
        &client,
        &server.base_url,
        args.concurrency,
        &guests,
        &listings,
        kz_today(),
        Duration::from_secs(args.seconds),
    )
    .await?;
    let cpu = match (before, CpuSample::take(server)) {
        (Some(b), Ok(a)) => Some(a.since(&b)),
        _ => None,
    };
    let memory = server.memory()?;
    Ok(BackendReport {
        backend,
        store,
        seeded: listings.len(),
        seed_time,
        outcome,
        memory,
        cpu,
        stopped: String::new(),
        log_bytes: 0,
        pgbench: None,
        cleanup_warnings: Vec::new(),
    })
}

fn header(args: &BookingArgs, bin: &Path) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = format!(
        "ZhilyeGO booking benchmark, {} UTC, {} cores\n\
         service: {} (separate process, rate limit off)\n\
         load: {} s per backend, {} workers, {} listings, POST /api/v1/bookings, 1-3 night stays\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        cores,
        bin.display(),
        args.seconds,
        args.concurrency,
        args.listings,
    );
    for (k, v) in &args.server_env {
        let _ = writeln!(s, "service setting: {k}={v}");
    }
    s
}

fn render(r: &BackendReport) -> String {
    let o = &r.outcome;
    let rate = o.bookings_per_second();
    let mut s = String::new();
    let _ = writeln!(s, "[{}] {}", r.backend.name(), r.store);
    let _ = writeln!(
        s,
        "  seed:       {} listings in {:.1} s ({:.0}/s)",
        r.seeded,
        r.seed_time.as_secs_f64(),
        r.seeded as f64 / r.seed_time.as_secs_f64().max(1e-9)
    );
    let _ = writeln!(
        s,
        "  requests:   {} in {:.1} s: {} x 201, {} x 409, {} other, {} transport errors",
        o.requests(),
        o.elapsed.as_secs_f64(),
        o.created,
        o.conflicts,
        o.other,
        o.transport_errors
    );
    if let Some(e) = &o.other_example {
        let _ = writeln!(s, "              first other: {e}");
    }
    if let Some(e) = &o.transport_example {
        let _ = writeln!(s, "              first transport error: {e}");
    }
    if o.exhausted_workers > 0 {
        let _ = writeln!(
            s,
            "              {} workers ran out of dates (use more --listings)",
            o.exhausted_workers
        );
    }
    let _ = writeln!(s, "  throughput: {rate:.0} bookings/s");
    let _ = writeln!(
        s,
        "  latency:    p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms (client side, all answers)",
        o.percentile_ms(50.0),
        o.percentile_ms(95.0),
        o.percentile_ms(99.0),
        o.percentile_ms(100.0)
    );
    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    let peak = mb(r.memory.peak_kib);
    let _ = writeln!(
        s,
        "  server RSS: peak {peak:.1} MB (VmHWM), at end {:.1} MB (VmRSS)",
        mb(r.memory.current_kib)
    );
    if let Some(c) = r.cpu {
        let rest = match r.backend {
            Backend::Sqlite => "all cores",
            Backend::Postgres => "all cores; the rest is mostly PostgreSQL",
        };
        let _ = writeln!(
            s,
            "  CPU:        server {:.0}%, bench client {:.0}% of one core; machine {:.0}% busy ({rest})",
            c.server, c.bench, c.machine_busy
        );
    }
    let _ = writeln!(
        s,
        "  service:    {}; log {:.1} MB",
        r.stopped,
        r.log_bytes as f64 / 1e6
    );
    match &r.pgbench {
        Some(Ok(p)) => {
            let ratio = rate / p.tps;
            let _ = writeln!(
                s,
                "  pgbench:    {:.0} tps (-c {} -j {} -T {}, one {}-byte jsonb INSERT per transaction)",
                p.tps,
                p.clients,
                p.threads,
                p.seconds,
                pg::PAYLOAD_BYTES
            );
            let _ = writeln!(
                s,
                "  goal:       bookings/s / pgbench tps = {ratio:.3} (goal >= {POSTGRES_GOAL_RATIO}): {}",
                verdict(ratio >= POSTGRES_GOAL_RATIO)
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(s, "  pgbench:    FAILED: {e:#}");
        }
        None => {}
    }
    if r.backend == Backend::Sqlite {
        let _ = writeln!(
            s,
            "  goal:       {rate:.0} bookings/s (goal >= {SQLITE_GOAL_PER_SECOND:.0}): {}",
            verdict(rate >= SQLITE_GOAL_PER_SECOND)
        );
    }
    let _ = writeln!(
        s,
        "  goal:       peak RSS {peak:.1} MB (goal < {RSS_GOAL_MB:.0} MB): {}",
        verdict(peak < RSS_GOAL_MB)
    );
    for w in &r.cleanup_warnings {
        let _ = writeln!(s, "  warning:    {w}");
    }
    s
}
