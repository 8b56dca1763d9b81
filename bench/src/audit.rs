//! `zhilego-bench audit`: the audit at scale, on PostgreSQL (production mode).
//!
//! A scratch store is bulk-seeded to `--events` (1,000,000) well-formed, hash-chained events
//! (the `seed` bulk mode). A release `zhilego serve` starts on it; its notary builds the tree
//! (timed: leaves/s) and signs a checkpoint over everything; once its projections have
//! folded the history too (they would share the machine with the measurements) and `events`
//! and `audit_leaves` are vacuumed (else autovacuum passes over them during the
//! measurements), each figure with its anchor measured in the same run:
//! - **verify**: `zhilego audit verify --checkpoint` (chains and tree, a separate process):
//!   events/s, goal ≥ 200,000; anchor: one PostgreSQL scan reading every payload and metadata
//!   as text (`SELECT sum(length(…))`), events/s.
//! - **page**: `GET /api/v1/audit/events?after=<random position>&limit=100`, `--requests`
//!   times at random depths: p99, goal < 20 ms; anchor: `GET /healthz` p99.
//! - **state as of**: one listing with `--listing-events` (10,000) events written through the
//!   API (PATCH), then `…/state?as_of=<random sequence>`: p99, goal < 50 ms; anchor:
//!   `GET /api/v1/listings/{id}` (the aggregate loaded from its snapshot) p99.
//! - **notary lag**: PATCHes open-loop at `--rate` (1,000/s) for `--seconds` over 100
//!   listings from `--clients` (8) HTTP clients, each with its own connections and its own
//!   share of the schedule (write k is due at k / rate and goes out then, answered or not),
//!   while a task polls `max(position)` of `audit_leaves` every 2 ms; an event's lag is the
//!   first poll that has its position minus the instant its answer arrived: p99, goal < 1 s;
//!   the report says the rate the writes went out and were answered at; anchor: the PATCH
//!   answers' own p99.
use crate::report::{pct, verdict, Report};
use crate::server::Server;
use crate::{harness, pg, seed, server, zhilego_binary, Common};
use anyhow::{Context, Result};
use rand::Rng;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Events in the store before the measurements.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Requests per latency measurement.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Events of the listing whose state is asked for.
    #[arg(long, default_value_t = 10_000)]
    listing_events: usize,
    /// Events per second of the notary-lag phase.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// HTTP clients sharing the notary-lag load (each its own connections and schedule).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Keep the store afterwards (its name is printed) for profiling `audit verify` by hand;
    /// `zhilego-bench drop --database-url` removes it.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: AuditArgs) -> Result<()> {
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let db = pg::scratch_name("zhilego_bench_audit");
    pg::create_database(&args.common.pg_admin_url, &db).await?;
    let url = pg::database_url(&args.common.pg_admin_url, &db)?;
    let result = measure(&args, &bin, &url).await;
    if args.keep {
        eprintln!("kept the store: {url}");
    } else if let Err(e) = pg::drop_store(&args.common.pg_admin_url, &db).await {
        eprintln!("warning: could not drop {db}: {e:#}");
    }
    result?.publish("audit.txt", args.common.out.as_deref())
}

fn sorted_us(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn timed_get(client: &reqwest::Client, url: &str, token: &str) -> Result<u64> {
    let started = Instant::now();
    let res = client.get(url).bearer_auth(token).send().await?;
    anyhow::ensure!(res.status().is_success(), "{url}: {}", res.status());
    res.bytes().await?;
    Ok(started.elapsed().as_micros() as u64)
}

async fn measure(args: &AuditArgs, bin: &std::path::Path, url: &str) -> Result<Report> {
    eprintln!("== bulk-writing {} events", args.events);
    let options = seed::SeedOptions {
        listings: 0,
        bookings: 0,
        total_events: Some(args.events),
        ..seed::SeedOptions::default()
    };
    let seeded = seed::seed(url, &options).await?;
    let mut env = server::production_env(url);
    env.push(("ZHILEGO_AUDIT_CHECKPOINT_EVERY".into(), "100000".into()));
    env.push(("ZHILEGO_AUDIT_CHECKPOINT_INTERVAL_MS".into(), "500".into()));
    let work = harness::work_dir("audit")?;
    let started = Instant::now();
    let server = harness::start(
        bin,
        env.clone(),
        work.join("serve.log"),
        Some(Duration::from_secs(600)),
        "the notary builds the tree",
    )
    .await?;
    let mut conn = PgConnection::connect(url).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await?;
    loop {
        let size: Option<i64> = sqlx::query_scalar("SELECT max(tree_size) FROM audit_checkpoints")
            .fetch_one(&mut conn)
            .await?;
        if size == Some(total) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "the notary did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let build = started.elapsed();
    // The service's projections fold the bulk-written history too; the measurements start once
    // they have (else verify and its anchor share the machine with them).
    let (_, projections) = server::wait_caught_up(bin, &env, Duration::from_secs(1800)).await?;
    // A store in service is vacuumed as it grows; the bulk-written one would be vacuumed by
    // autovacuum in the middle of the measurements (a full pass over each table) otherwise.
    let vacuum_started = Instant::now();
    for table in ["events", "audit_leaves"] {
        sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
            .execute(&mut conn)
            .await?;
    }
    let vacuum = vacuum_started.elapsed();
    let note: String =
        sqlx::query_scalar("SELECT note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
            .fetch_one(&mut conn)
            .await?;

    let mut report = Report::new("audit benchmark (PostgreSQL, production mode)");
    let _ = writeln!(
        report,
        "store: {total} events ({} bulk-written in {:.1} s)",
        seeded.bulk_events,
        seeded.bulk_time.as_secs_f64()
    );
    let _ = writeln!(report, "notary: tree over {total} events built and signed in {:.1} s ({:.0} events/s, inside serve)", build.as_secs_f64(), total as f64 / build.as_secs_f64());
    let _ = writeln!(
        report,
        "projections caught up {:.1} s after that; VACUUM (ANALYZE) of events and audit_leaves {:.1} s (the measurements start then)",
        projections.as_secs_f64(),
        vacuum.as_secs_f64()
    );

    // Verify, and its anchor: one scan of everything it reads.
    let scan_started = Instant::now();
    let _: Option<i64> = sqlx::query_scalar(
        "SELECT sum(length(payload::text) + length(metadata::text))::bigint FROM events",
    )
    .fetch_one(&mut conn)
    .await?;
    let scan = scan_started.elapsed();
    let file = work.join("checkpoint");
    std::fs::write(&file, &note)?;
    let verify_started = Instant::now();
    let out = server::command(bin, &env)
        .args(["audit", "verify", "--checkpoint"])
        .arg(&file)
        .output()
        .await
        .context("running zhilego audit verify")?;
    let verify = verify_started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "audit verify failed: {stdout}");
    let rate = total as f64 / verify.as_secs_f64();
    let _ = writeln!(report, "verify --checkpoint (chains and tree, separate process): {total} events in {:.1} s = {rate:.0} events/s (goal >= 200000): {}", verify.as_secs_f64(), verdict(rate >= 200_000.0));
    let scan_rate = total as f64 / scan.as_secs_f64();
    eprintln!("   verify: {rate:.0} events/s (text scan {scan_rate:.0} rows/s)");
    let _ = writeln!(report, "  anchor: one PostgreSQL scan of every payload and metadata as text: {:.1} s = {scan_rate:.0} events/s", scan.as_secs_f64());
    report.goal(
        "audit verify --checkpoint",
        format!("{rate:.0} events/s"),
        ">= 200000 events/s",
        format!("text scan {scan_rate:.0} rows/s"),
        rate >= 200_000.0,
    );

    let client = reqwest::Client::new();
    let token = server.token("auditor", Uuid::now_v7()).await?;
    let base = server.base_url.clone();
    let mut rng = rand::rng();
    let mut pages = Vec::with_capacity(args.requests);
    let mut health = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let after = rng.random_range(0..total.max(1));
        pages.push(
            timed_get(
                &client,
                &format!("{base}/api/v1/audit/events?after={after}&limit=100"),
                &token,
            )
            .await?,
        );
        health.push(timed_get(&client, &format!("{base}/healthz"), &token).await?);
    }
    let (pages, health) = (sorted_us(pages), sorted_us(health));
    let p99 = ms(pct(&pages, 99.0));
    let _ = writeln!(
        report,
        "page of 100 at random depths: p50 {:.2} ms, p99 {p99:.2} ms (goal < 20): {}",
        ms(pct(&pages, 50.0)),
        verdict(p99 < 20.0)
    );
    let _ = writeln!(
        report,
        "  anchor: GET /healthz p99 {:.2} ms",
        ms(pct(&health, 99.0))
    );
    report.goal(
        "audit page of 100 p99",
        format!("{p99:.2} ms"),
        "< 20 ms",
        format!("/healthz p99 {:.2} ms", ms(pct(&health, 99.0))),
        p99 < 20.0,
    );

    // State as of, on a listing with many events.
    let host = Uuid::now_v7();
    let host_token = server.token("host", host).await?;
    let listing = create_listing(&client, &base, &host_token).await?;
    eprintln!("== {} events on one listing", args.listing_events);
    let mut retried = 0;
    for i in 0..args.listing_events.saturating_sub(1) {
        retried += patch_price(
            &client,
            &format!("{base}/api/v1/listings/{listing}"),
            &host_token,
            // Never the price it has (10,000 at creation), so that every PATCH is an event.
            10_001 + (i % 5000) as i64,
        )
        .await?
        .1;
    }
    // A write retried after a lost answer may have been made twice: the listing's own count.
    let latest: Value = client
        .get(format!(
            "{base}/api/v1/audit/aggregates/Listing/{listing}/state"
        ))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let listing_events = latest["sequence"]
        .as_u64()
        .context("the listing's sequence")? as usize;
    anyhow::ensure!(
        listing_events >= args.listing_events,
        "the listing has {listing_events} events"
    );
    let mut states = Vec::new();
    let mut loads = Vec::new();
    for _ in 0..args.requests {
        let s = rng.random_range(1..=listing_events);
        states.push(
            timed_get(
                &client,
                &format!("{base}/api/v1/audit/aggregates/Listing/{listing}/state?as_of={s}"),
                &token,
            )
            .await?,
        );
        loads.push(
            timed_get(
                &client,
                &format!("{base}/api/v1/listings/{listing}"),
                &token,
            )
            .await?,
        );
    }
    let (states, loads) = (sorted_us(states), sorted_us(loads));
    let p99 = ms(pct(&states, 99.0));
    let _ = writeln!(
        report,
        "state as of, listing with {listing_events} events ({retried} writes retried after a lost answer): p50 {:.1} ms, p99 {p99:.1} ms (goal < 50): {}",
        ms(pct(&states, 50.0)),
        verdict(p99 < 50.0)
    );
    let _ = writeln!(
        report,
        "  anchor: GET /api/v1/listings/{{id}} (snapshot + tail) p99 {:.1} ms",
        ms(pct(&loads, 99.0))
    );
    report.goal(
        &format!("audit state as of, {listing_events} events, p99"),
        format!("{p99:.1} ms"),
        "< 50 ms",
        format!("GET /listings/{{id}} p99 {:.1} ms", ms(pct(&loads, 99.0))),
        p99 < 50.0,
    );

    // Notary lag at a fixed write rate.
    let run = notary_lag(args, &server, &client, &host_token, url).await?;
    let (lags, answers) = (&run.lags, &run.answers);
    let p99 = ms(pct(lags, 99.0));
    let _ = writeln!(report, "notary lag at {} events/s for {} s ({} events, {} clients): p50 {:.0} ms, p99 {p99:.0} ms (goal < 1000): {}", args.rate, args.seconds, lags.len(), args.clients, ms(pct(lags, 50.0)), verdict(p99 < 1000.0));
    let _ = writeln!(
        report,
        "  load kept: sent at {:.0}/s (latest send {:.1} ms after its due instant), answered at {:.0}/s; {} sent again after a reset connection",
        run.sent_rate,
        run.latest_send_ms,
        run.answered_rate,
        run.resent
    );
    let _ = writeln!(
        report,
        "  anchor: the writes' own answer p99 {:.1} ms",
        ms(pct(answers, 99.0))
    );
    report.goal(
        &format!("notary lag at {} events/s p99", args.rate),
        format!("{p99:.0} ms"),
        "< 1000 ms",
        format!("the writes' answers p99 {:.1} ms", ms(pct(answers, 99.0))),
        p99 < 1000.0,
    );
    let stopped = harness::stop(server).await;
    let _ = writeln!(
        report,
        "service: {}, log {} bytes, {} warnings/errors",
        stopped.how, stopped.log_bytes, stopped.log_problems
    );
    Ok(report)
}

async fn create_listing(client: &reqwest::Client, base: &str, token: &str) -> Result<Uuid> {
    let body = json!({
        "title": "Аудит", "city": "Almaty", "address": "Abay 1",
        "location": {"lat": 43.2389, "lon": 76.8897}, "rooms": 1, "max_guests": 2,
        "nightly_price_kzt": 10000, "cleaning_fee_kzt": 0, "min_nights": 1,
        "cancellation_policy": "moderate", "photos": [], "amenities": []
    });
    let res = client
        .post(format!("{base}/api/v1/listings"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        res.status().as_u16() == 201,
        "create listing: {}",
        res.status()
    );
    let v: Value = res.json().await?;
    Ok(v["id"].as_str().context("listing id")?.parse()?)
}

/// One PATCH of a listing's price, sent again (up to 5 times, after a pause) when the
/// connection fails before an answer (a kept-alive connection the server closed as the write
/// went out is reset); gives the answer and how many times it was sent again.
async fn patch_price(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    price: i64,
) -> Result<(Value, u32)> {
    let mut retried = 0;
    loop {
        let sent = client
            .patch(url)
            .bearer_auth(token)
            .json(&json!({"nightly_price_kzt": price}))
            .send()
            .await;
        match sent {
            Ok(res) => {
                anyhow::ensure!(res.status().is_success(), "PATCH listing: {}", res.status());
                return Ok((res.json().await?, retried));
            }
            Err(e) if retried < 5 => {
                eprintln!("PATCH listing failed ({e}); sending it again");
                retried += 1;
                tokio::time::sleep(Duration::from_millis(100 * retried as u64)).await;
            }
            Err(e) => return Err(e).context("PATCH listing"),
        }
    }
}

/// Lag per event and answer time per write (both sorted, µs), and the rates kept.
async fn notary_lag(
    args: &AuditArgs,
    server: &Server,
    client: &reqwest::Client,
    token: &str,
    url: &str,
) -> Result<LagRun> {
    let base = server.base_url.clone();
    let mut listings = Vec::new();
    for _ in 0..100 {
        listings.push(create_listing(client, &base, token).await?);
    }
    let origin = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicI64::new(0));
    // (instant in µs since origin, max leaf position)
    let poller = {
        let (done, seen, url) = (done.clone(), seen.clone(), url.to_string());
        tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await?;
            let mut samples: Vec<(u64, i64)> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let max: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM audit_leaves")
                    .fetch_one(&mut conn)
                    .await?;
                let at = origin.elapsed().as_micros() as u64;
                let max = max.unwrap_or(0);
                seen.store(max, Ordering::Relaxed);
                samples.push((at, max));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(samples)
        })
    };
    let n = (args.rate as u64 * args.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    // Open loop from several clients (each its own connection pool and schedule: client c
    // sends writes c, c + C, c + 2C, … at their due instants whatever the answers do), so the
    // rate holds even when some answers are slow.
    let clients = args.clients.max(1);
    let mut senders = Vec::with_capacity(clients);
    for c in 0..clients {
        let (base, token, listings) = (base.clone(), token.to_string(), listings.clone());
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        senders.push(tokio::spawn(async move {
            let mut tasks = Vec::with_capacity(n / clients + 1);
            let mut late = 0u64;
            for k in (c..n).step_by(clients) {
                let due = origin + interval * k as u32;
                tokio::time::sleep_until(due.into()).await;
                late = late.max(due.elapsed().as_micros() as u64);
                let (client, base, token, listing) = (
                    client.clone(),
                    base.clone(),
                    token.clone(),
                    listings[k % listings.len()],
                );
                tasks.push(tokio::spawn(async move {
                    let sent = Instant::now();
                    // Timed from the first try; a write sent again is counted.
                    let (v, retried) = patch_price(
                        &client,
                        &format!("{base}/api/v1/listings/{listing}"),
                        &token,
                        11_000 + (k % 1000) as i64,
                    )
                    .await?;
                    let answered = origin.elapsed().as_micros() as u64;
                    let position = v["position"].as_i64().context("position in the answer")?;
                    anyhow::Ok((
                        position,
                        answered,
                        sent.elapsed().as_micros() as u64,
                        retried,
                    ))
                }));
            }
            let sent_for = origin.elapsed();
            anyhow::Ok((tasks, late, sent_for))
        }));
    }
    let mut tasks = Vec::with_capacity(n);
    let mut late = 0u64;
    let mut sending = Duration::ZERO;
    for s in senders {
        let (t, l, d) = s.await??;
        tasks.extend(t);
        late = late.max(l);
        sending = sending.max(d);
    }
    let mut writes = Vec::with_capacity(n);
    for t in tasks {
        writes.push(t.await??);
    }
    // Wait until the notary has them all.
    let last = writes.iter().map(|w| w.0).max().unwrap_or(0);
    let waited = Instant::now();
    while seen.load(Ordering::Relaxed) < last && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.store(true, Ordering::Relaxed);
    let samples = poller.await??;
    let mut lags = Vec::with_capacity(writes.len());
    for (position, answered, _, _) in &writes {
        let at = samples
            .iter()
            .find(|(_, max)| max >= position)
            .map(|(t, _)| *t)
            .unwrap_or(u64::MAX / 2);
        lags.push(at.saturating_sub(*answered));
    }
    let last_answer = writes.iter().map(|w| w.1).max().unwrap_or(0);
    Ok(LagRun {
        lags: sorted_us(lags),
        answers: sorted_us(writes.iter().map(|w| w.2).collect()),
        // The rate the writes went out at, and the rate they were answered at.
        sent_rate: n as f64 / sending.as_secs_f64().max(1e-9),
        answered_rate: n as f64 / (last_answer as f64 / 1e6).max(1e-9),
        latest_send_ms: late as f64 / 1000.0,
        resent: writes.iter().map(|w| w.3).sum(),
    })
}

struct LagRun {
    lags: Vec<u64>,
    answers: Vec<u64>,
    sent_rate: f64,
    answered_rate: f64,
    /// The most any write went out after its due instant.
    latest_send_ms: f64,
    /// Writes sent again after their connection failed before an answer.
    resent: u32,
}
