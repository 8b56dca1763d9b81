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
//! `bench/results/latest.txt` (kept in the repository), or to `--out`.
use crate::harness::{self, Backend, Outcome, Scratch, Stopped, RSS_GOAL_MB};
use crate::report::{mb, Report, Section};
use crate::server::{self, Memory, Server};
use crate::{kz_today, load, pg, zhilego_binary};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Goal on the embedded store.
const SQLITE_GOAL_PER_SECOND: f64 = 1_000.0;
/// Goal on PostgreSQL, as a share of the pgbench INSERT rate.
const POSTGRES_GOAL_RATIO: f64 = 0.25;

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
    stopped: Stopped,
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
    let report = header(&args, &bin);
    let out = args.out.as_deref();
    harness::each_backend(report, "latest.txt", out, args.backend, |backend| {
        let (args, bin) = (&args, &bin);
        async move {
            let measured = run_backend(args, bin, backend).await?;
            Ok(Outcome::Measured(render(&measured)))
        }
    })
    .await
}

async fn run_backend(args: &BookingArgs, bin: &Path, backend: Backend) -> Result<BackendReport> {
    // PostgreSQL is asked for in every default run here: when it does not answer, that fails.
    let mut scratch = match Scratch::create("booking", backend, &args.pg_admin_url, false).await? {
        Outcome::Measured(s) => s,
        Outcome::Skipped(why) => anyhow::bail!(why),
    };
    let mut env = scratch.env.clone();
    env.extend(args.server_env.iter().cloned());

    let measured = measure(args, bin, backend, env, &scratch).await;

    let mut warnings: Vec<String> = scratch.drop_database().await.into_iter().collect();
    // On failure the temporary directory (the service log) is kept for a look.
    let mut report = measured.map_err(|e| scratch.kept(e))?;
    if backend == Backend::Postgres {
        eprintln!("== postgres: pgbench reference (10 s)");
        report.pgbench = Some(pg::pgbench(&args.pg_admin_url, &scratch.work_dir).await);
    }
    warnings.extend(scratch.remove_files(false));
    report.cleanup_warnings = warnings;
    Ok(report)
}

async fn measure(
    args: &BookingArgs,
    bin: &Path,
    backend: Backend,
    env: Vec<(String, String)>,
    scratch: &Scratch,
) -> Result<BackendReport> {
    let server = harness::start(bin, env, scratch.log(), None, "minting tokens").await?;
    let result = exercise(args, &server, backend, scratch.store.clone()).await;
    let stopped = harness::stop(server).await;
    let mut report = result?;
    report.stopped = stopped;
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

    let (listings, seed_time) =
        harness::create_listings(&client, server, &host, args.listings, args.concurrency).await?;

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
        stopped: Stopped::default(),
        pgbench: None,
        cleanup_warnings: Vec::new(),
    })
}

fn header(args: &BookingArgs, bin: &Path) -> Report {
    let mut report = Report::new("booking benchmark");
    report.line(format!(
        "service: {} (separate process, rate limit off)",
        bin.display()
    ));
    report.line(format!(
        "load: {} s per backend, {} workers, {} listings, POST /api/v1/bookings, 1-3 night stays",
        args.seconds, args.concurrency, args.listings,
    ));
    report.settings(&args.server_env);
    report
}

fn render(r: &BackendReport) -> Section {
    let o = &r.outcome;
    let rate = o.bookings_per_second();
    let mut s = Section::new(r.backend.name(), &r.store, 11);
    s.row(
        "seed:",
        format!(
            "{} listings in {:.1} s ({:.0}/s)",
            r.seeded,
            r.seed_time.as_secs_f64(),
            r.seeded as f64 / r.seed_time.as_secs_f64().max(1e-9)
        ),
    );
    s.row(
        "requests:",
        format!(
            "{} in {:.1} s: {} x 201, {} x 409, {} other, {} transport errors",
            o.requests(),
            o.elapsed.as_secs_f64(),
            o.created,
            o.conflicts,
            o.other,
            o.transport_errors
        ),
    );
    if let Some(e) = &o.other_example {
        s.row("", format!("first other: {e}"));
    }
    if let Some(e) = &o.transport_example {
        s.row("", format!("first transport error: {e}"));
    }
    if o.exhausted_workers > 0 {
        s.row(
            "",
            format!(
                "{} workers ran out of dates (use more --listings)",
                o.exhausted_workers
            ),
        );
    }
    s.row("throughput:", format!("{rate:.0} bookings/s"));
    s.row(
        "latency:",
        format!(
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms (client side, all answers)",
            o.percentile_ms(50.0),
            o.percentile_ms(95.0),
            o.percentile_ms(99.0),
            o.percentile_ms(100.0)
        ),
    );
    let peak = mb(r.memory.peak_kib);
    s.row(
        "server RSS:",
        format!(
            "peak {peak:.1} MB (VmHWM), at end {:.1} MB (VmRSS)",
            mb(r.memory.current_kib)
        ),
    );
    if let Some(c) = r.cpu {
        let rest = match r.backend {
            Backend::Sqlite => "all cores",
            Backend::Postgres => "all cores; the rest is mostly PostgreSQL",
        };
        s.row(
            "CPU:",
            format!(
                "server {:.0}%, bench client {:.0}% of one core; machine {:.0}% busy ({rest})",
                c.server, c.bench, c.machine_busy
            ),
        );
    }
    s.row(
        "service:",
        format!(
            "{}; log {:.1} MB",
            r.stopped.how,
            r.stopped.log_bytes as f64 / 1e6
        ),
    );
    let anchor = match &r.pgbench {
        Some(Ok(p)) => {
            s.row(
                "pgbench:",
                format!(
                    "{:.0} tps (-c {} -j {} -T {}, one {}-byte jsonb INSERT per transaction)",
                    p.tps,
                    p.clients,
                    p.threads,
                    p.seconds,
                    pg::PAYLOAD_BYTES
                ),
            );
            let ratio = rate / p.tps;
            s.goal(
                "bookings/s over pgbench tps",
                format!("{rate:.0}/s = {ratio:.3}"),
                format!(">= {POSTGRES_GOAL_RATIO}"),
                format!("pgbench {:.0} tps", p.tps),
                ratio >= POSTGRES_GOAL_RATIO,
            );
            format!("pgbench {:.0} tps", p.tps)
        }
        Some(Err(e)) => {
            s.row("pgbench:", format!("FAILED: {e:#}"));
            "pgbench failed".to_string()
        }
        None => match r.cpu {
            Some(c) => format!("machine {:.0}% busy", c.machine_busy),
            None => "none".to_string(),
        },
    };
    if r.backend == Backend::Sqlite {
        s.goal(
            "bookings/s",
            format!("{rate:.0}"),
            format!(">= {SQLITE_GOAL_PER_SECOND:.0}"),
            &anchor,
            rate >= SQLITE_GOAL_PER_SECOND,
        );
    }
    s.goal(
        "peak RSS",
        format!("{peak:.1} MB"),
        format!("< {RSS_GOAL_MB:.0} MB"),
        &anchor,
        peak < RSS_GOAL_MB,
    );
    for w in &r.cleanup_warnings {
        s.row("warning:", w);
    }
    s
}
