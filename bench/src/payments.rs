//! `zhilego-bench payments`: Kaspi payments through the real `zhilego` service, on the embedded
//! SQLite store and on PostgreSQL, with the service's built-in Kaspi sandbox.
//!
//! ```text
//! cd /work/main
//! cargo build --release -p zhilego -p zhilego-bench      # the service binary too!
//! B=$CARGO_TARGET_DIR/release/zhilego-bench
//! $B payments --pg-admin-url postgres://postgres@127.0.0.1:5432/postgres
//! $B payments --backend sqlite --payments 500 --concurrency 16
//! ```
//!
//! For each backend (SQLite, then PostgreSQL, unless `--backend` picks one; PostgreSQL is
//! skipped with a note when `--pg-admin-url` does not answer) the bench:
//!
//! 1. starts `zhilego serve` as a separate process with `ZHILEGO_LISTEN=127.0.0.1:0`,
//!    `ZHILEGO_RATE_LIMIT=0`, `KASPI_MODE=sandbox` (the process serves the sandbox under
//!    `/kaspi-sandbox` and sends its biller callbacks to itself), explicit callback
//!    credentials `KASPI_CALLBACK_USER=bench` / `KASPI_CALLBACK_PASSWORD=<random>` and
//!    `ZHILEGO_RECONCILE_AFTER_SECONDS=3600` so the payment keeper's reconciliation stays out
//!    of the way — for SQLite with a fresh temporary `ZHILEGO_DATA_DIR`, for PostgreSQL in
//!    production mode with a fresh `zhilego_bench_*` store (its `_read` database is dropped
//!    with it);
//! 2. mints a host token and `--concurrency` guest tokens, creates `--listings` listings and
//!    prepares `--payments` held bookings, each with its payment link
//!    (`POST /api/v1/bookings`, then `POST /api/v1/bookings/{id}/payment` by the same guest),
//!    from `--concurrency` workers. Booking k takes listing `k mod L`, 1–2 nights from
//!    `3 × (k div L)` days after tomorrow, so no two bookings ever want the same night. The
//!    service's Kaspi client makes at most 10 API calls a second (each link is one), so this
//!    takes about `--payments / 10` seconds; it is not timed;
//! 3. **A, callback throughput**: `--concurrency` workers send the biller's `pay`
//!    notification (`GET /kaspi/callback/?command=pay&txn_id=…&account=…&sum=…`, basic auth)
//!    once for every prepared booking, each with its own `txn_id`: callbacks/s, client-side
//!    latency, the answers' `result` codes (all must be 0). Answers 4 (busy) and 5 (temporary
//!    error) are not final; they are retried afterwards, outside the timing, as Kaspi would.
//!    Then every booking is read back (`GET /api/v1/bookings/{id}`, the guest's token) and
//!    must be `confirmed`;
//! 4. **B, duplicate storm**: `--duplicates` of those paid bookings, spread over all of them,
//!    each get their very same `pay` notification (same `txn_id`, account, sum) `--repeats`
//!    more times at once; every answer must equal the first one (and say 0): duplicates/s;
//! 5. **C, end to end**: `--end-to-end` more held bookings with links are prepared (not
//!    timed); `--e2e-concurrency` workers then each press Pay on a link (`POST
//!    <payment_url>`, as the sandbox's payment page does) and poll the booking every
//!    `--poll-ms` until it is `confirmed` — which needs the sandbox's asynchronous `check` and
//!    `pay` callbacks to arrive and be handled. Reported: the time from pressing Pay to the
//!    first read that shows `confirmed`, p50/p95/p99/max (accurate to about one poll);
//! 6. reads the service's VmHWM/VmRSS from `/proc/<pid>/status` after every phase, stops it
//!    with SIGTERM and drops the scratch databases.
//!
//! The report is printed and written to `bench/results/payments.txt` (or `--out`).
use crate::server::{self, Memory, Server};
use crate::{cpu, kz_today, load, pg, publish, verdict, zhilego_binary, Common};
use anyhow::{Context, Result};
use chrono::Duration as Days;
use clap::ValueEnum;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use uuid::Uuid;

/// The user the bench's callbacks authenticate as.
const CALLBACK_USER: &str = "bench";
/// The `txn_date` every bench notification carries.
const TXN_DATE: &str = "20261127120000";
/// How many times a transient answer (4 or 5) is sent again after phase A.
const RETRIES: usize = 5;
/// Goal for the service's peak resident memory, in MB (10^6 bytes), as in `booking`.
const RSS_GOAL_MB: f64 = 150.0;
/// `kaspi::KaspiConfig::requests_per_second` as the service sets it (not configurable): the
/// preparation's payment links come no faster than this.
const KASPI_CLIENT_REQUESTS_PER_SECOND: u32 = 10;
/// How long phase C waits for one booking to become confirmed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct PaymentsArgs {
    /// The store to measure; both, SQLite first, when left out.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Held bookings with payment links prepared for phases A and B.
    #[arg(long, default_value_t = 2000)]
    payments: usize,
    /// Concurrent workers for the preparation, phase A's callbacks and the read-back.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Phase B: how many paid bookings get their pay notification again.
    #[arg(long, default_value_t = 200)]
    duplicates: usize,
    /// Phase B: how many identical notifications each of them gets at once.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Phase C: bookings paid through the sandbox's payment page.
    #[arg(long, default_value_t = 300)]
    end_to_end: usize,
    /// Phase C: bookings paid and polled at the same time.
    #[arg(long, default_value_t = 8)]
    e2e_concurrency: usize,
    /// Phase C: pause between two reads of a booking waiting for `confirmed`.
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Listings the bookings are spread over.
    #[arg(long, default_value_t = 250)]
    listings: usize,
    /// Extra setting for the service, e.g. `ZHILEGO_DB_MAX_CONNECTIONS=8` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::booking::parse_key_value)]
    server_env: Vec<(String, String)>,
    #[command(flatten)]
    common: Common,
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

/// A held booking with its payment link.
#[derive(Clone, Debug)]
struct Held {
    booking_id: Uuid,
    /// Index into the guest tokens.
    guest: usize,
    account: String,
    amount_kzt: i64,
    payment_url: String,
}

/// What the preparation of held bookings saw.
struct Prepared {
    held: Vec<Held>,
    elapsed: Duration,
    failures: usize,
    first_failure: Option<String>,
    /// `POST /bookings/{id}/payment` requests lost in transit and sent again.
    repeats: usize,
    first_repeat: Option<String>,
}

/// One biller notification's answer.
#[derive(Clone, Debug)]
struct Answered {
    status: Option<StatusCode>,
    body: Option<Value>,
    latency: Duration,
    error: Option<String>,
}

impl Answered {
    fn result(&self) -> Option<i64> {
        self.body.as_ref().and_then(|b| b["result"].as_i64())
    }

    fn describe(&self) -> String {
        match (&self.status, &self.body, &self.error) {
            (_, _, Some(e)) => e.clone(),
            (Some(s), Some(b), None) => format!("{s}: {}", clip(&b.to_string())),
            (Some(s), None, None) => format!("{s}: (no JSON body)"),
            (None, _, None) => "no answer".into(),
        }
    }
}

/// Counts of `result` codes (`None`: no JSON answer or not 200).
fn result_counts<'a>(answers: impl Iterator<Item = &'a Answered>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        let key = match (a.status, a.result()) {
            (Some(StatusCode::OK), Some(r)) => format!("result {r}"),
            (Some(s), _) => format!("HTTP {}", s.as_u16()),
            (None, _) => "transport error".into(),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn counts_line(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{n} x {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Phase A.
struct CallbackPhase {
    sent: usize,
    elapsed: Duration,
    counts: BTreeMap<String, usize>,
    ok: usize,
    first_problem: Option<String>,
    latencies_us: Vec<u64>,
    retried: usize,
    ok_after_retries: usize,
    confirmed: usize,
    not_confirmed_example: Option<String>,
    check_time: Duration,
    cpu: cpu::Split,
}

/// Phase B.
struct DuplicatePhase {
    bookings: usize,
    sent: usize,
    elapsed: Duration,
    identical: usize,
    ok: usize,
    counts: BTreeMap<String, usize>,
    first_difference: Option<String>,
    latencies_us: Vec<u64>,
    still_confirmed: usize,
}

/// Phase C.
struct EndToEndPhase {
    prepared: Prepared,
    elapsed: Duration,
    pages_ok: usize,
    first_page_problem: Option<String>,
    confirmed: usize,
    first_unconfirmed: Option<String>,
    page_latencies_us: Vec<u64>,
    confirm_latencies_us: Vec<u64>,
    polls: usize,
}

/// Everything measured for one backend.
struct BackendReport {
    backend: Backend,
    store: String,
    listings: usize,
    listings_time: Duration,
    prepared: Prepared,
    a: CallbackPhase,
    b: Option<DuplicatePhase>,
    c: Option<EndToEndPhase>,
    memory: Vec<(&'static str, Memory)>,
    stopped: String,
    log_bytes: u64,
    cleanup_warnings: Vec<String>,
}

impl BackendReport {
    /// Whether everything was prepared and every check held.
    fn all_met(&self, args: &PaymentsArgs) -> bool {
        let a = &self.a;
        let prepared =
            self.prepared.failures == 0 && self.c.as_ref().is_none_or(|c| c.prepared.failures == 0);
        let a_met = a.sent == args.payments && a.ok == a.sent && a.confirmed == a.sent;
        let b_met = self.b.as_ref().is_none_or(|b| {
            b.identical == b.sent && b.ok == b.sent && b.still_confirmed == b.bookings
        });
        let c_met = self
            .c
            .as_ref()
            .is_none_or(|c| c.confirmed == c.prepared.held.len());
        prepared && a_met && b_met && c_met
    }
}

enum Outcome {
    Measured(Box<BackendReport>),
    Skipped(String),
}

pub async fn run(args: PaymentsArgs) -> Result<()> {
    anyhow::ensure!(args.payments > 0, "--payments must be positive");
    anyhow::ensure!(
        args.concurrency > 0 && args.e2e_concurrency > 0,
        "--concurrency and --e2e-concurrency must be positive"
    );
    anyhow::ensure!(args.repeats > 0, "--repeats must be positive");
    anyhow::ensure!(args.listings > 0, "--listings must be positive");
    let rounds = (args.payments + args.end_to_end).div_ceil(args.listings);
    anyhow::ensure!(
        rounds * 3 < 700,
        "{} bookings over {} listings would reach past the booking horizon: use more --listings",
        args.payments + args.end_to_end,
        args.listings
    );
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let backends = match args.backend {
        Some(b) => vec![b],
        None => vec![Backend::Sqlite, Backend::Postgres],
    };

    let mut report = header(&args, &bin);
    let mut failed = false;
    for backend in backends {
        eprintln!("== {}: starting", backend.name());
        let block = match run_backend(&args, &bin, backend).await {
            Ok(Outcome::Measured(r)) => render(&args, &r),
            Ok(Outcome::Skipped(why)) => format!("[{}]\n  skipped: {why}\n", backend.name()),
            Err(e) => {
                failed = true;
                format!("[{}]\n  FAILED: {e:#}\n", backend.name())
            }
        };
        report.push('\n');
        report.push_str(&block);
    }
    publish("payments", &report, args.common.out.as_deref())?;
    anyhow::ensure!(!failed, "a backend run failed (see the report)");
    Ok(())
}

async fn run_backend(args: &PaymentsArgs, bin: &Path, backend: Backend) -> Result<Outcome> {
    let work_dir = crate::work_dir("payments")?;
    let mut env = vec![
        ("ZHILEGO_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("ZHILEGO_RATE_LIMIT".to_string(), "0".to_string()),
        // The benchmark is one source posting as fast as it can; the metrics listener takes a
        // free port so runs side by side do not collide.
        ("ZHILEGO_WEBHOOK_RATE_LIMIT".to_string(), "0".to_string()),
        (
            "ZHILEGO_METRICS_ADDR".to_string(),
            "127.0.0.1:0".to_string(),
        ),
    ];
    let mut database = None;
    let store = match backend {
        Backend::Sqlite => {
            let data = work_dir.join("data");
            env.push(("ZHILEGO_DATA_DIR".into(), data.display().to_string()));
            env.push(("KASPI_MODE".into(), "sandbox".into()));
            format!("embedded SQLite in {}", data.display())
        }
        Backend::Postgres => {
            let admin = &args.common.pg_admin_url;
            if let Err(why) = pg::reachable(admin).await {
                let _ = std::fs::remove_dir_all(&work_dir);
                if args.backend == Some(Backend::Postgres) {
                    anyhow::bail!("PostgreSQL at {admin} is not reachable: {why}");
                }
                return Ok(Outcome::Skipped(format!(
                    "PostgreSQL at {admin} is not reachable ({why})"
                )));
            }
            let db = pg::scratch_name("zhilego_bench");
            pg::create_database(admin, &db).await?;
            let url = pg::database_url(admin, &db)?;
            // Production mode: random JWT secret and master key, KASPI_MODE=sandbox.
            env = server::production_env(&url);
            database = Some(db);
            format!("PostgreSQL {url}")
        }
    };
    let password = Uuid::new_v4().simple().to_string();
    env.push(("KASPI_CALLBACK_USER".into(), CALLBACK_USER.into()));
    env.push(("KASPI_CALLBACK_PASSWORD".into(), password.clone()));
    env.push(("ZHILEGO_RECONCILE_AFTER_SECONDS".into(), "3600".into()));
    env.extend(args.server_env.iter().cloned());

    let measured = measure(args, bin, backend, env, &work_dir, store, &password).await;

    let mut warnings = Vec::new();
    if let Some(db) = &database {
        if let Err(e) = pg::drop_store(&args.common.pg_admin_url, db).await {
            warnings.push(format!("could not drop {db}: {e:#}"));
        }
    }
    let mut report = match measured {
        Ok(r) => r,
        Err(e) => return Err(e.context(format!("files kept in {}", work_dir.display()))),
    };
    if !report.all_met(args) {
        warnings.push(format!(
            "something was off: the service log is kept in {}",
            work_dir.display()
        ));
    } else if let Err(e) = std::fs::remove_dir_all(&work_dir) {
        warnings.push(format!("could not remove {}: {e}", work_dir.display()));
    }
    report.cleanup_warnings = warnings;
    Ok(Outcome::Measured(Box::new(report)))
}

async fn measure(
    args: &PaymentsArgs,
    bin: &Path,
    backend: Backend,
    env: Vec<(String, String)>,
    work_dir: &Path,
    store: String,
    password: &str,
) -> Result<BackendReport> {
    let log = work_dir.join("zhilego.log");
    let server = Server::start(bin, env, log.clone()).await?;
    eprintln!(
        "   service pid {} at {}; minting tokens",
        server.pid(),
        server.base_url
    );
    let result = exercise(args, &server, backend, store, password).await;
    let stopped = server.stop().await;
    let mut report = result.with_context(|| format!("service log: {}", log.display()))?;
    report.stopped = stopped.unwrap_or_else(|e| format!("stop failed: {e:#}"));
    report.log_bytes = std::fs::metadata(&log).map_or(0, |m| m.len());
    Ok(report)
}

/// The callback's coordinates and credentials.
#[derive(Clone)]
struct Callback {
    url: String,
    password: String,
}

async fn exercise(
    args: &PaymentsArgs,
    server: &Server,
    backend: Backend,
    store: String,
    password: &str,
) -> Result<BackendReport> {
    let host = server.token("host", Uuid::new_v4()).await?;
    let mut guests = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        guests.push(server.token("guest", Uuid::new_v4()).await?);
    }
    let guests = Arc::new(guests);
    let client = Client::builder()
        .pool_max_idle_per_host(args.concurrency * args.repeats.max(2))
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = server.base_url.clone();
    let callback = Callback {
        url: format!("{base}/kaspi/callback/"),
        password: password.to_string(),
    };
    let mut memory = Vec::new();

    eprintln!("   creating {} listings", args.listings);
    let started = Instant::now();
    let listings = load::seed_listings(&client, &base, &host, args.listings, args.concurrency)
        .await
        .with_context(|| {
            format!(
                "creating listings (service log: {})",
                server.log_path().display()
            )
        })?;
    let listings_time = started.elapsed();
    let listings = Arc::new(listings);

    eprintln!(
        "   preparing {} held bookings with payment links",
        args.payments
    );
    let prepared = prepare(
        &client,
        &base,
        &guests,
        &listings,
        0..args.payments,
        args.concurrency,
    )
    .await;
    anyhow::ensure!(
        !prepared.held.is_empty(),
        "no held booking with a payment link could be prepared: {}",
        prepared.first_failure.as_deref().unwrap_or("?")
    );
    memory.push(("after preparing", server.memory()?));

    eprintln!(
        "   A: {} pay callbacks with {} workers",
        prepared.held.len(),
        args.concurrency
    );
    let run_id = &Uuid::new_v4().simple().to_string()[..8];
    let (a, first_answers) = callbacks(
        &client,
        &base,
        &callback,
        &guests,
        &prepared.held,
        run_id,
        args.concurrency,
    )
    .await;
    memory.push(("after A", server.memory()?));

    let b = if args.duplicates > 0 {
        eprintln!(
            "   B: {} paid bookings x {} identical pay callbacks",
            args.duplicates, args.repeats
        );
        let picked = pick(&prepared.held, &first_answers, args.duplicates);
        let phase = duplicates(&client, &base, &callback, &guests, &picked, args).await;
        memory.push(("after B", server.memory()?));
        Some(phase)
    } else {
        None
    };

    let c = if args.end_to_end > 0 {
        eprintln!(
            "   C: preparing {} more held bookings with links",
            args.end_to_end
        );
        let more = prepare(
            &client,
            &base,
            &guests,
            &listings,
            args.payments..args.payments + args.end_to_end,
            args.concurrency,
        )
        .await;
        eprintln!(
            "   C: paying {} through the sandbox page with {} workers",
            more.held.len(),
            args.e2e_concurrency
        );
        let phase = end_to_end(&client, &base, &guests, more, args).await;
        memory.push(("after C", server.memory()?));
        Some(phase)
    } else {
        None
    };

    Ok(BackendReport {
        backend,
        store,
        listings: listings.len(),
        listings_time,
        prepared,
        a,
        b,
        c,
        memory,
        stopped: String::new(),
        log_bytes: 0,
        cleanup_warnings: Vec::new(),
    })
}

/// Booking k: listing `k mod L`, 1–2 nights from `3 × (k div L)` days after tomorrow.
fn stay(k: usize, listings: &[Uuid]) -> Value {
    let first_day = kz_today() + Days::days(1);
    let round = (k / listings.len()) as i64;
    let check_in = first_day + Days::days(3 * round);
    let check_out = check_in + Days::days(1 + (k % 2) as i64);
    json!({
        "listing_id": listings[k % listings.len()],
        "check_in": check_in,
        "check_out": check_out,
        "guests": 2,
    })
}

/// Sends a request and reads its JSON body: (status, body) or a description of what failed.
async fn send_json(request: reqwest::RequestBuilder) -> Result<(StatusCode, Value), String> {
    let res = request.send().await.map_err(|e| chain(&e))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| chain(&e))?;
    match serde_json::from_str(&text) {
        Ok(v) => Ok((status, v)),
        Err(_) => Err(format!("{status}: {}", clip(&text))),
    }
}

/// Held bookings `range` with their payment links, from `workers` concurrent workers.
async fn prepare(
    client: &Client,
    base: &str,
    guests: &Arc<Vec<String>>,
    listings: &Arc<Vec<Uuid>>,
    range: std::ops::Range<usize>,
    workers: usize,
) -> Prepared {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut tasks = JoinSet::new();
    for _ in 0..workers.clamp(1, range.len().max(1)) {
        let (client, next, guests, listings) = (
            client.clone(),
            next.clone(),
            guests.clone(),
            listings.clone(),
        );
        let base = base.to_string();
        let end = range.end;
        tasks.spawn(async move {
            let mut made = Vec::new();
            let mut failures = Vec::new();
            let mut repeated = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= end {
                    return (made, failures, repeated);
                }
                let guest = k % guests.len();
                let token = &guests[guest];
                let booked = send_json(
                    client
                        .post(format!("{base}/api/v1/bookings"))
                        .bearer_auth(token)
                        .json(&stay(k, &listings)),
                )
                .await;
                let booking_id = match booked {
                    Ok((StatusCode::CREATED, b)) => match b["id"].as_str().map(Uuid::parse_str) {
                        Some(Ok(id)) => id,
                        _ => {
                            failures
                                .push(format!("booking without an id: {}", clip(&b.to_string())));
                            continue;
                        }
                    },
                    Ok((status, b)) => {
                        failures.push(format!("POST /bookings {status}: {}", clip(&b.to_string())));
                        continue;
                    }
                    Err(e) => {
                        failures.push(format!("POST /bookings: {e}"));
                        continue;
                    }
                };
                // Asking again gives the same payment: a request lost in transit is repeated.
                let ask = || {
                    send_json(
                        client
                            .post(format!("{base}/api/v1/bookings/{booking_id}/payment"))
                            .bearer_auth(token)
                            .json(&json!({})),
                    )
                };
                let paid = match ask().await {
                    Err(e) => {
                        repeated.push(e);
                        ask().await
                    }
                    answered => answered,
                };
                match paid {
                    Ok((StatusCode::CREATED, p)) => {
                        let (Some(account), Some(amount_kzt), Some(payment_url)) = (
                            p["account"].as_str(),
                            p["amount_kzt"].as_i64(),
                            p["payment_url"].as_str(),
                        ) else {
                            failures
                                .push(format!("payment without a link: {}", clip(&p.to_string())));
                            continue;
                        };
                        made.push((
                            k,
                            Held {
                                booking_id,
                                guest,
                                account: account.to_string(),
                                amount_kzt,
                                payment_url: payment_url.to_string(),
                            },
                        ));
                    }
                    Ok((status, b)) => failures.push(format!(
                        "POST /bookings/{{id}}/payment {status}: {}",
                        clip(&b.to_string())
                    )),
                    Err(e) => failures.push(format!("POST /bookings/{{id}}/payment: {e}")),
                }
            }
        });
    }
    let mut all = Vec::new();
    let mut failures = 0;
    let mut first_failure = None;
    let mut repeats = 0;
    let mut first_repeat = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((made, failed, repeated)) => {
                all.extend(made);
                repeats += repeated.len();
                if first_repeat.is_none() {
                    first_repeat = repeated.into_iter().next();
                }
                failures += failed.len();
                if first_failure.is_none() {
                    first_failure = failed.into_iter().next();
                }
            }
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert_with(|| format!("a worker panicked: {e}"));
            }
        }
    }
    all.sort_unstable_by_key(|(k, _)| *k);
    Prepared {
        held: all.into_iter().map(|(_, h)| h).collect(),
        elapsed: started.elapsed(),
        failures,
        first_failure,
        repeats,
        first_repeat,
    }
}

/// One `pay` notification, as Kaspi's biller protocol sends it.
async fn notify_pay(client: &Client, callback: &Callback, txn_id: &str, held: &Held) -> Answered {
    let sent = Instant::now();
    let answer = client
        .get(&callback.url)
        .query(&[
            ("command", "pay"),
            ("txn_id", txn_id),
            ("account", held.account.as_str()),
            ("sum", &held.amount_kzt.to_string()),
            ("txn_date", TXN_DATE),
        ])
        .basic_auth(CALLBACK_USER, Some(&callback.password))
        .send()
        .await;
    let (status, body, error) = match answer {
        Ok(res) => {
            let status = res.status();
            match res.bytes().await {
                Ok(b) => (Some(status), serde_json::from_slice::<Value>(&b).ok(), None),
                Err(e) => (Some(status), None, Some(chain(&e))),
            }
        }
        Err(e) => (None, None, Some(chain(&e))),
    };
    Answered {
        status,
        body,
        latency: sent.elapsed(),
        error,
    }
}

fn is_ok(a: &Answered) -> bool {
    a.status == Some(StatusCode::OK) && a.result() == Some(0)
}

/// The transient answers a biller retries.
fn is_transient(a: &Answered) -> bool {
    a.error.is_some() || matches!(a.result(), Some(4) | Some(5)) || a.body.is_none()
}

/// Runs `job(i)` for every `i` in `0..count` from `workers` concurrent workers; results in
/// order of `i`.
async fn in_parallel<T, F, Fut>(count: usize, workers: usize, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers.clamp(1, count.max(1)) {
        let (job, next) = (job.clone(), next.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return out;
                }
                out.push((i, job(i).await));
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("a bench worker panicked"));
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// A booking's status as its guest reads it (`GET /api/v1/bookings/{id}`).
async fn booking_status(
    client: &Client,
    base: &str,
    token: &str,
    booking_id: Uuid,
) -> Result<String, String> {
    match send_json(
        client
            .get(format!("{base}/api/v1/bookings/{booking_id}"))
            .bearer_auth(token),
    )
    .await?
    {
        (StatusCode::OK, b) => b["status"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no status in {}", clip(&b.to_string()))),
        (status, b) => Err(format!("{status}: {}", clip(&b.to_string()))),
    }
}

/// Reads every booking back; returns how many are `confirmed` and the first that is not.
async fn count_confirmed(
    client: &Client,
    base: &str,
    guests: &Arc<Vec<String>>,
    held: &[Held],
    workers: usize,
) -> (usize, Option<String>) {
    let held = Arc::new(held.to_vec());
    let (client, base, guests) = (client.clone(), base.to_string(), guests.clone());
    let statuses = in_parallel(held.len(), workers, {
        let held = held.clone();
        move |i| {
            let (client, base, guests, held) =
                (client.clone(), base.clone(), guests.clone(), held.clone());
            async move {
                let h = &held[i];
                booking_status(&client, &base, &guests[h.guest], h.booking_id).await
            }
        }
    })
    .await;
    let confirmed = statuses
        .iter()
        .filter(|s| matches!(s, Ok(s) if s == "confirmed"))
        .count();
    let first = statuses
        .iter()
        .zip(held.iter())
        .find(|(s, _)| !matches!(s, Ok(s) if s == "confirmed"))
        .map(|(s, h)| match s {
            Ok(s) => format!("booking {} is {s}", h.booking_id),
            Err(e) => format!("booking {}: {e}", h.booking_id),
        });
    (confirmed, first)
}

/// Phase A; also gives each booking's final answer (for phase B).
async fn callbacks(
    client: &Client,
    base: &str,
    callback: &Callback,
    guests: &Arc<Vec<String>>,
    held: &[Held],
    run_id: &str,
    workers: usize,
) -> (CallbackPhase, Vec<(String, Answered)>) {
    let shared = Arc::new(held.to_vec());
    let txn = {
        let run_id = run_id.to_string();
        move |i: usize| format!("bench-{run_id}-{i}")
    };
    let before = cpu::Sample::take();
    let started = Instant::now();
    let mut answers = in_parallel(held.len(), workers, {
        let (client, callback, shared, txn) = (
            client.clone(),
            callback.clone(),
            shared.clone(),
            txn.clone(),
        );
        move |i| {
            let (client, callback, shared, txn_id) =
                (client.clone(), callback.clone(), shared.clone(), txn(i));
            async move { notify_pay(&client, &callback, &txn_id, &shared[i]).await }
        }
    })
    .await;
    let elapsed = started.elapsed();
    let cpu = cpu::Sample::take().since(&before);

    let counts = result_counts(answers.iter());
    let ok = answers.iter().filter(|a| is_ok(a)).count();
    let first_problem = answers.iter().find(|a| !is_ok(a)).map(Answered::describe);
    let mut latencies_us: Vec<u64> = answers
        .iter()
        .filter(|a| a.status.is_some())
        .map(|a| a.latency.as_micros() as u64)
        .collect();
    latencies_us.sort_unstable();

    // Transient answers: the same notification again, as Kaspi retries it (not timed).
    let mut retried = 0;
    for _ in 0..RETRIES {
        let pending: Vec<usize> = (0..answers.len())
            .filter(|&i| is_transient(&answers[i]))
            .collect();
        if pending.is_empty() {
            break;
        }
        retried += pending.len();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in pending {
            answers[i] = notify_pay(client, callback, &txn(i), &held[i]).await;
        }
    }
    let ok_after_retries = answers.iter().filter(|a| is_ok(a)).count();

    eprintln!("   A: reading every booking back");
    let check_started = Instant::now();
    let (confirmed, not_confirmed_example) =
        count_confirmed(client, base, guests, held, workers).await;
    let phase = CallbackPhase {
        sent: held.len(),
        elapsed,
        counts,
        ok,
        first_problem,
        latencies_us,
        retried,
        ok_after_retries,
        confirmed,
        not_confirmed_example,
        check_time: check_started.elapsed(),
        cpu,
    };
    let finals = answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| (txn(i), a))
        .collect();
    (phase, finals)
}

/// `count` paid bookings spread evenly over all of them, with their txn_id and final answer.
fn pick(held: &[Held], answers: &[(String, Answered)], count: usize) -> Vec<(Held, String, Value)> {
    let paid: Vec<usize> = (0..held.len()).filter(|&i| is_ok(&answers[i].1)).collect();
    let count = count.min(paid.len());
    (0..count)
        .map(|j| {
            let i = paid[j * paid.len() / count];
            let body = answers[i].1.body.clone().unwrap_or_default();
            (held[i].clone(), answers[i].0.clone(), body)
        })
        .collect()
}

/// Phase B: every picked notification `repeats` times at once, `concurrency / repeats`
/// bookings at a time (about `concurrency` requests in flight).
async fn duplicates(
    client: &Client,
    base: &str,
    callback: &Callback,
    guests: &Arc<Vec<String>>,
    picked: &[(Held, String, Value)],
    args: &PaymentsArgs,
) -> DuplicatePhase {
    let shared = Arc::new(picked.to_vec());
    let repeats = args.repeats;
    let workers = (args.concurrency / repeats).max(1);
    let started = Instant::now();
    let rounds = in_parallel(picked.len(), workers, {
        let (client, callback, shared) = (client.clone(), callback.clone(), shared.clone());
        move |i| {
            let (client, callback, shared) = (client.clone(), callback.clone(), shared.clone());
            async move {
                let (held, txn_id, _) = &shared[i];
                futures::future::join_all(
                    (0..repeats).map(|_| notify_pay(&client, &callback, txn_id, held)),
                )
                .await
            }
        }
    })
    .await;
    let elapsed = started.elapsed();

    let mut identical = 0;
    let mut ok = 0;
    let mut first_difference = None;
    let mut latencies_us = Vec::new();
    for ((held, _, first), answers) in picked.iter().zip(&rounds) {
        for a in answers {
            if a.status.is_some() {
                latencies_us.push(a.latency.as_micros() as u64);
            }
            if is_ok(a) {
                ok += 1;
            }
            if a.status == Some(StatusCode::OK) && a.body.as_ref() == Some(first) {
                identical += 1;
            } else if first_difference.is_none() {
                first_difference = Some(format!(
                    "booking {}: first {}, repeat {}",
                    held.booking_id,
                    clip(&first.to_string()),
                    a.describe()
                ));
            }
        }
    }
    latencies_us.sort_unstable();
    let counts = result_counts(rounds.iter().flatten());
    let held: Vec<Held> = picked.iter().map(|(h, _, _)| h.clone()).collect();
    let (still_confirmed, _) = count_confirmed(client, base, guests, &held, args.concurrency).await;
    DuplicatePhase {
        bookings: picked.len(),
        sent: rounds.iter().map(Vec::len).sum(),
        elapsed,
        identical,
        ok,
        counts,
        first_difference,
        latencies_us,
        still_confirmed,
    }
}

/// What paying one booking through the sandbox page gave.
struct Paid {
    page: Result<Duration, String>,
    confirmed: Result<Duration, String>,
    polls: usize,
}

/// Phase C.
async fn end_to_end(
    client: &Client,
    base: &str,
    guests: &Arc<Vec<String>>,
    prepared: Prepared,
    args: &PaymentsArgs,
) -> EndToEndPhase {
    let shared = Arc::new(prepared.held.clone());
    let poll = Duration::from_millis(args.poll_ms);
    let started = Instant::now();
    let paid = in_parallel(shared.len(), args.e2e_concurrency, {
        let (client, base, guests, shared) = (
            client.clone(),
            base.to_string(),
            guests.clone(),
            shared.clone(),
        );
        move |i| {
            let (client, base, guests, shared) =
                (client.clone(), base.clone(), guests.clone(), shared.clone());
            async move {
                let h = &shared[i];
                let pressed = Instant::now();
                let page = match client.post(&h.payment_url).send().await {
                    Ok(res) => {
                        let status = res.status();
                        let text = res.text().await.unwrap_or_default();
                        if status == StatusCode::OK {
                            Ok(pressed.elapsed())
                        } else {
                            Err(format!("POST payment_url {status}: {}", clip(&text)))
                        }
                    }
                    Err(e) => Err(format!("POST payment_url: {}", chain(&e))),
                };
                if let Err(e) = page {
                    return Paid {
                        page: Err(e.clone()),
                        confirmed: Err(e),
                        polls: 0,
                    };
                }
                let token = &guests[h.guest];
                let mut polls = 0;
                let confirmed = loop {
                    polls += 1;
                    let status = booking_status(&client, &base, token, h.booking_id).await;
                    let now = pressed.elapsed();
                    match status {
                        Ok(s) if s == "confirmed" => break Ok(now),
                        Ok(s) if s != "held" => break Err(format!("booking became {s}")),
                        Err(e) => break Err(e),
                        Ok(_) if now > CONFIRM_TIMEOUT => {
                            break Err(format!("still held after {CONFIRM_TIMEOUT:?}"))
                        }
                        Ok(_) => tokio::time::sleep(poll).await,
                    }
                };
                Paid {
                    page,
                    confirmed,
                    polls,
                }
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    let mut page_latencies_us: Vec<u64> = paid
        .iter()
        .filter_map(|p| p.page.as_ref().ok())
        .map(|d| d.as_micros() as u64)
        .collect();
    page_latencies_us.sort_unstable();
    let mut confirm_latencies_us: Vec<u64> = paid
        .iter()
        .filter_map(|p| p.confirmed.as_ref().ok())
        .map(|d| d.as_micros() as u64)
        .collect();
    confirm_latencies_us.sort_unstable();
    EndToEndPhase {
        elapsed,
        pages_ok: page_latencies_us.len(),
        first_page_problem: paid.iter().find_map(|p| p.page.clone().err()),
        confirmed: confirm_latencies_us.len(),
        first_unconfirmed: paid.iter().find_map(|p| p.confirmed.clone().err()),
        page_latencies_us,
        confirm_latencies_us,
        polls: paid.iter().map(|p| p.polls).sum(),
        prepared,
    }
}

fn header(args: &PaymentsArgs, bin: &Path) -> String {
    let mut s = crate::header("payments benchmark");
    let _ = writeln!(
        s,
        "service: {} (separate process, KASPI_MODE=sandbox, rate limit off, reconciliation after 3600 s)",
        bin.display()
    );
    let _ = writeln!(
        s,
        "load: {} held bookings with payment links over {} listings, {} workers; \
         A: one pay callback each; B: {} of them x {} identical pay callbacks at once; \
         C: {} more paid through the sandbox page by {} workers, polled every {} ms",
        args.payments,
        args.listings,
        args.concurrency,
        args.duplicates,
        args.repeats,
        args.end_to_end,
        args.e2e_concurrency,
        args.poll_ms
    );
    for (k, v) in &args.server_env {
        let _ = writeln!(s, "service setting: {k}={v}");
    }
    s
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_line(sorted_us: &[u64]) -> String {
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(sorted_us, 50.0)),
        ms(pct(sorted_us, 95.0)),
        ms(pct(sorted_us, 99.0)),
        ms(pct(sorted_us, 100.0))
    )
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn render(args: &PaymentsArgs, r: &BackendReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[{}] {}", r.backend.name(), r.store);
    let p = &r.prepared;
    let _ = writeln!(
        s,
        "  prepare:      {} listings in {:.1} s; {} held bookings with payment links in {:.1} s ({:.0}/s), {} failed",
        r.listings,
        r.listings_time.as_secs_f64(),
        p.held.len(),
        p.elapsed.as_secs_f64(),
        per_second(p.held.len(), p.elapsed),
        p.failures
    );
    if let Some(e) = &p.first_failure {
        let _ = writeln!(s, "                first failure: {e}");
    }
    if let Some(e) = &p.first_repeat {
        let _ = writeln!(
            s,
            "                {} payment requests lost in transit and asked again; first: {e}",
            p.repeats
        );
    }
    let _ = writeln!(
        s,
        "                (untimed; each link is one create-link call of the service's Kaspi client, \
         which sends at most {KASPI_CLIENT_REQUESTS_PER_SECOND} requests/s)"
    );

    let a = &r.a;
    let _ = writeln!(
        s,
        "  A callbacks:  {} pay callbacks in {:.2} s: {:.0} callbacks/s ({})",
        a.sent,
        a.elapsed.as_secs_f64(),
        per_second(a.sent, a.elapsed),
        counts_line(&a.counts)
    );
    let _ = writeln!(
        s,
        "  A latency:    {} (client side)",
        latency_line(&a.latencies_us)
    );
    let _ = writeln!(
        s,
        "  A result 0:   {} of {} at the first answer{}: {}",
        a.ok,
        a.sent,
        if a.sent < args.payments {
            format!(
                " (only {} of {} bookings could be prepared)",
                a.sent, args.payments
            )
        } else {
            String::new()
        },
        verdict(a.ok == a.sent && a.sent == args.payments)
    );
    if let Some(e) = &a.first_problem {
        let _ = writeln!(s, "                first other answer: {e}");
    }
    if a.retried > 0 {
        let _ = writeln!(
            s,
            "                {} transient answers sent again (untimed): {} of {} result 0 in the end",
            a.retried, a.ok_after_retries, a.sent
        );
    }
    let _ = writeln!(
        s,
        "  A confirmed:  {} of {} bookings read back `confirmed` (all read, {:.1} s): {}",
        a.confirmed,
        a.sent,
        a.check_time.as_secs_f64(),
        verdict(a.confirmed == a.sent)
    );
    if let Some(e) = &a.not_confirmed_example {
        let _ = writeln!(s, "                first not confirmed: {e}");
    }
    // Kernel workers whose names change between the samples would count their whole life.
    let mut split = a.cpu.clone();
    split
        .by_command
        .retain(|(name, _)| !name.starts_with("kworker"));
    let _ = writeln!(s, "  A CPU:        {}", split.line());

    if let Some(b) = &r.b {
        let _ = writeln!(
            s,
            "  B duplicates: {} bookings x {} = {} repeated pay callbacks in {:.2} s: {:.0} duplicates/s ({})",
            b.bookings,
            args.repeats,
            b.sent,
            b.elapsed.as_secs_f64(),
            per_second(b.sent, b.elapsed),
            counts_line(&b.counts)
        );
        let _ = writeln!(
            s,
            "  B latency:    {} (client side)",
            latency_line(&b.latencies_us)
        );
        let _ = writeln!(
            s,
            "  B answers:    {} of {} identical to the first answer, {} result 0; {} of {} bookings still confirmed: {}",
            b.identical,
            b.sent,
            b.ok,
            b.still_confirmed,
            b.bookings,
            verdict(b.identical == b.sent && b.ok == b.sent && b.still_confirmed == b.bookings)
        );
        if let Some(e) = &b.first_difference {
            let _ = writeln!(s, "                first difference: {e}");
        }
    }

    if let Some(c) = &r.c {
        let p = &c.prepared;
        let _ = writeln!(
            s,
            "  C prepare:    {} held bookings with payment links in {:.1} s, {} failed",
            p.held.len(),
            p.elapsed.as_secs_f64(),
            p.failures
        );
        if let Some(e) = &p.first_failure {
            let _ = writeln!(s, "                first failure: {e}");
        }
        if let Some(e) = &p.first_repeat {
            let _ = writeln!(
                s,
                "                {} payment requests lost in transit and asked again; first: {e}",
                p.repeats
            );
        }
        let n = p.held.len();
        let _ = writeln!(
            s,
            "  C end to end: {n} paid through POST payment_url in {:.1} s ({:.0}/s): {} pages 200, {} confirmed ({} reads): {}",
            c.elapsed.as_secs_f64(),
            per_second(n, c.elapsed),
            c.pages_ok,
            c.confirmed,
            c.polls,
            verdict(c.confirmed == n && n == args.end_to_end)
        );
        if let Some(e) = &c.first_page_problem {
            let _ = writeln!(s, "                first page problem: {e}");
        }
        if let Some(e) = &c.first_unconfirmed {
            let _ = writeln!(s, "                first not confirmed: {e}");
        }
        let _ = writeln!(
            s,
            "  C page:       {} (POST payment_url)",
            latency_line(&c.page_latencies_us)
        );
        let _ = writeln!(
            s,
            "  C pay→confirmed: {} (Pay pressed → first read showing `confirmed`, sandbox check + pay callbacks included)",
            latency_line(&c.confirm_latencies_us)
        );
    }

    let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
    let phases = r
        .memory
        .iter()
        .map(|(when, m)| format!("{when} {:.1}", mb(m.peak_kib)))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some((_, last)) = r.memory.last() {
        let peak = mb(last.peak_kib);
        let _ = writeln!(
            s,
            "  server RSS:   peak {peak:.1} MB (VmHWM; {phases} MB), at end {:.1} MB (VmRSS)",
            mb(last.current_kib)
        );
        let _ = writeln!(
            s,
            "  goal:         peak RSS {peak:.1} MB (goal < {RSS_GOAL_MB:.0} MB): {}",
            verdict(peak < RSS_GOAL_MB)
        );
    }
    let _ = writeln!(
        s,
        "  service:      {}; log {:.1} MB",
        r.stopped,
        r.log_bytes as f64 / 1e6
    );
    for w in &r.cleanup_warnings {
        let _ = writeln!(s, "  warning:      {w}");
    }
    s
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    if n == 0 {
        return 0;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// An error and its sources: `error sending request …: connection closed before message completed`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        source = cause.source();
    }
    s
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_never_share_a_night() {
        let listings: Vec<Uuid> = (0..7).map(|_| Uuid::new_v4()).collect();
        let mut nights = std::collections::HashSet::new();
        for k in 0..500 {
            let s = stay(k, &listings);
            let from: chrono::NaiveDate = s["check_in"].as_str().unwrap().parse().unwrap();
            let to: chrono::NaiveDate = s["check_out"].as_str().unwrap().parse().unwrap();
            let mut d = from;
            while d < to {
                assert!(nights.insert((s["listing_id"].to_string(), d)), "k {k}");
                d += Days::days(1);
            }
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(pct(&v, 50.0), 50);
        assert_eq!(pct(&v, 99.0), 99);
        assert_eq!(pct(&v, 100.0), 100);
        assert_eq!(pct(&[], 50.0), 0);
    }
}
