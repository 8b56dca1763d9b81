//! `zhilego-bench`: benchmarks of the real `zhilego` service. A benchmark binary, not a test.
//!
//! ```text
//! cd /work/main
//! export CARGO_TARGET_DIR=~/.cache/zhilego/target
//! cargo build --release -p zhilego -p zhilego-bench      # the service binary too!
//! B=$CARGO_TARGET_DIR/release/zhilego-bench
//! $B --help
//! $B --seconds 10                      # booking throughput (the default mode, `booking`)
//! $B seed                              # 5,000 listings, 100,000 bookings into a fresh database
//! $B search  --database-url URL        # wrk against GET /api/v1/availability
//! $B relay   --database-url URL        # store → JetStream, events/s
//! $B lag                               # 1,000 bookings/s, projection lag per booking
//! $B payments                          # Kaspi callbacks/s, duplicate storm, pay → confirmed
//! $B bots                              # Telegram/WhatsApp bots: reply time, taps to a paid booking
//! $B seed --listings 0 --bookings 0 --database-url URL --total-events 1000000
//! $B rebuild --database-url URL        # `zhilego projections rebuild all`, events/s
//! $B ical                              # 5,000 calendar feeds synced by the background sync
//! $B analytics                         # analytics at seed scale: a year by month, by listing, as_of
//! $B drop --database-url URL           # drops a kept store and its `_read` database
//! $B audit                             # 1,000,000 events: verify, pages, state as of, notary lag
//! ```
//!
//! `bench/run.sh` does all of it (installing `wrk` when missing). The modes:
//!
//! - `booking` ([`booking`]): POST /api/v1/bookings throughput on SQLite and PostgreSQL.
//! - `seed` ([`seed`]): seed-scale data through the command side, plus a bulk mode that writes
//!   well-formed, hash-chained events straight into the `events` table.
//! - `search` ([`search`]): `wrk` against the availability search and the catalogue.
//! - `relay` ([`relay`]): `bus::Relay::relay_once` from checkpoint zero to a fresh stream.
//! - `lag` ([`lag`]): open-loop bookings and the time until the projections have them.
//! - `payments` ([`payments`]): Kaspi `pay` callbacks/s, duplicate notifications, and pay →
//!   confirmed through the sandbox's payment page, on SQLite and PostgreSQL.
//! - `bots` ([`bots`]): many Telegram and WhatsApp guests at once from `/start` to a paid
//!   booking through the webhooks, against fake Bot and Twilio APIs: reply time, taps, rates.
//! - `ical` ([`ical`]): 5,000 iCal feeds served locally, added through the API, then moved
//!   upstream and synced by the service's background sync (goal < 60 s).
//! - `rebuild` ([`rebuild`]): `zhilego projections rebuild all` over ≥ 1,000,000 events.
//! - `audit` ([`audit`]): the audit over 1,000,000 events: verify against a checkpoint, pages,
//!   state as of, notary lag.
//! - `analytics` ([`analytics`]): the analytics endpoints at seed scale (a year by month, by
//!   listing, with `as_of`), next to the catalogue as the anchor.
//!
//! `cargo run -p zhilego-bench` does not build the `zhilego` binary; the bench looks for it
//! next to its own executable (`target/release/zhilego`) unless `--zhilego-bin` says where.
//! Every mode prints its report and writes it to `bench/results/<mode>.txt` (kept in the repository, so the next change can compare).
//! What the modes share: [`harness`] (the backends to run, a scratch store, starting and
//! stopping the service, the per-backend loop) and [`report`] (sections of rows, printed and
//! written; percentiles, latencies, verdicts).
mod admin;
mod analytics;
mod audit;
mod booking;
mod bots;
mod cpu;
mod harness;
mod ical;
mod lag;
mod load;
mod payments;
mod pg;
mod rebuild;
mod relay;
mod report;
mod search;
mod seed;
mod server;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "zhilego-bench",
    version,
    about = "Benchmarks of the zhilego service: booking, seed, search, relay, projection lag, payments, bots, rebuild, admin",
    long_about = "Without a subcommand: the booking-throughput bench (`booking`), which starts the \
        zhilego binary as a child process per backend, seeds listings, POSTs non-conflicting \
        bookings from concurrent workers for a fixed time, and reports bookings/s, latency \
        percentiles, the server's peak RSS and (PostgreSQL) the pgbench ratio.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    booking: booking::BookingArgs,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Booking throughput over HTTP on SQLite and PostgreSQL (the default).
    Booking(booking::BookingArgs),
    /// Seed-scale data: listings in ten Kazakh cities and bookings over the next year.
    Seed(seed::SeedArgs),
    /// Availability-search and catalogue throughput with wrk.
    Search(search::SearchArgs),
    /// Store → JetStream relay throughput from checkpoint zero.
    Relay(relay::RelayArgs),
    /// Projection lag under a fixed booking rate (production mode with NATS).
    Lag(lag::LagArgs),
    /// Kaspi payments: pay callbacks/s, duplicate storm, pay → confirmed via the sandbox.
    Payments(payments::PaymentsArgs),
    /// Telegram and WhatsApp bots: reply time and taps from /start to a paid booking, many guests at once.
    Bots(bots::BotsArgs),
    /// Rebuild time of every projection over a large store.
    Rebuild(rebuild::RebuildArgs),
    /// The audit over 1,000,000 events: verify, pages, state as of, notary lag.
    Audit(audit::AuditArgs),
    /// Phone search among many users (an admin's), goal p99 < 10 ms among 50,000.
    Admin(admin::AdminArgs),
    /// Calendar feeds: 5,000 feeds served locally, added, then synced by the background sync.
    Ical(ical::IcalArgs),
    /// Analytics endpoints at seed scale: a year by month, by listing, with as_of.
    Analytics(analytics::AnalyticsArgs),
    /// Drop a store database kept by `seed` and its `<name>_read` database.
    Drop(DropArgs),
}

/// Options every mode that works on a seeded store shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// PostgreSQL connection for creating and dropping scratch databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub pg_admin_url: String,
    /// The zhilego binary (default: `zhilego` next to this executable).
    #[arg(long)]
    pub zhilego_bin: Option<PathBuf>,
    /// Where to write the report (default: bench/results/<mode>.txt).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct DropArgs {
    /// The store database to drop (its `_read` database goes too).
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_admin_url: String,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.mode {
        None => booking::run(cli.booking).await,
        Some(Mode::Booking(args)) => booking::run(args).await,
        Some(Mode::Seed(args)) => seed::run(args).await,
        Some(Mode::Search(args)) => search::run(args).await,
        Some(Mode::Relay(args)) => relay::run(args).await,
        Some(Mode::Lag(args)) => lag::run(args).await,
        Some(Mode::Payments(args)) => payments::run(args).await,
        Some(Mode::Bots(args)) => bots::run(args).await,
        Some(Mode::Rebuild(args)) => rebuild::run(args).await,
        Some(Mode::Audit(args)) => audit::run(args).await,
        Some(Mode::Admin(args)) => admin::run(args).await,
        Some(Mode::Ical(args)) => ical::run(args).await,
        Some(Mode::Analytics(args)) => analytics::run(args).await,
        Some(Mode::Drop(args)) => drop_store(args).await,
    };
    if let Err(e) = result {
        eprintln!("zhilego-bench: {e:#}");
        std::process::exit(1);
    }
}

async fn drop_store(args: DropArgs) -> Result<()> {
    let db = pg::database_name(&args.database_url)?;
    pg::drop_store(&args.pg_admin_url, &db).await?;
    eprintln!("dropped {db} and {db}_read");
    Ok(())
}

/// `--zhilego-bin`, else `zhilego` in the directory of this executable.
pub fn zhilego_binary(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .parent()
            .context("this executable has no directory")?
            .join("zhilego"),
    };
    anyhow::ensure!(
        path.is_file(),
        "{} not found: build it with `cargo build --release -p zhilego` or pass --zhilego-bin",
        path.display()
    );
    Ok(path)
}

/// Today's date in Kazakhstan (UTC+5), as the service sees it.
pub fn kz_today() -> chrono::NaiveDate {
    domain::local_date(chrono::Utc::now())
}
