//! `zhilego-bench lag`: how long after a booking is answered the read models have it.
//!
//! The bench starts a release `zhilego serve` in production mode with NATS: a fresh scratch
//! store (`zhilego_bench_*`, read models in `<store>_read`), a fresh JetStream stream
//! (`ZHILEGO_NATS_STREAM=ZHILEGO_LAG_<id>`, `ZHILEGO_NATS_SUBJECT_PREFIX=lag_<id>`), rate limit
//! off. It creates `--listings` listings over HTTP, waits until the projections are caught up,
//! then sends `POST /api/v1/bookings` open-loop at a fixed `--rate` (default 1,000/s) for
//! `--seconds` from `--clients` (8) HTTP clients, each with its own connections and its own
//! share of the schedule: request k goes out from client `k mod C` at `k / rate` whatever the
//! earlier ones are doing (at most `--max-in-flight` outstanding over all clients; a request
//! that has to wait for a slot is counted as late). The report gives the rate the requests
//! went out at and the rate they were answered at.
//! Request k books listing `k mod L` for 1–3 nights starting `3 × (k div L)` days after
//! tomorrow, so no two requests conflict.
//!
//! A separate task polls `projection_checkpoints` in the read database every `--poll-ms`
//! (2 ms) on its own connection and records when each projection's checkpoint moved. After
//! the run, each 201's `position` is mapped to its commit-order key `(tx, position)` from the
//! store; its lag is the first instant a projection's checkpoint reached that key minus the
//! instant the 201 arrived (0 when the read model had it before the answer came back), so the
//! figure includes the relay hop through JetStream and is accurate to about one poll interval.
//!
//! Reported per projection: lag p50/p99/max (goal for `bookings`: p99 < 100 ms), the achieved
//! booking rate, answer counts, client latency, and the CPU split. The stream and the scratch
//! databases are deleted afterwards.
use crate::harness;
use crate::report::{pct, Report};
use crate::server::{self, Server};
use crate::{cpu, load, pg, zhilego_binary, Common};
use anyhow::{Context, Result};
use chrono::Duration as Days;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use uuid::Uuid;

const GOAL_P99_MS: f64 = 100.0;
const PROJECTIONS: [&str; 4] = ["bookings", "availability", "listings", "analytics"];

#[derive(clap::Args, Debug)]
pub struct LagArgs {
    /// Bookings per second, open loop.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Length of the paced phase.
    #[arg(long, default_value_t = 25)]
    seconds: u64,
    /// Listings the bookings are spread over.
    #[arg(long, default_value_t = 1000)]
    listings: usize,
    /// HTTP clients sharing the load, each with its own connections and share of the schedule.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// At most this many requests outstanding (all clients together).
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// How often the checkpoints are read.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Extra setting for the service (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::booking::parse_key_value)]
    server_env: Vec<(String, String)>,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: LagArgs) -> Result<()> {
    anyhow::ensure!(
        args.rate > 0 && args.seconds > 0,
        "--rate and --seconds must be positive"
    );
    anyhow::ensure!(args.listings > 0, "--listings must be positive");
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let db = pg::scratch_name("zhilego_bench");
    pg::create_database(&args.common.pg_admin_url, &db).await?;
    let id = Uuid::new_v4().simple().to_string()[..12].to_string();
    let stream = format!("ZHILEGO_LAG_{}", id.to_uppercase());
    let result = measure(&args, &bin, &db, &stream, &id).await;
    let mut warnings = Vec::new();
    match async_nats::connect(&args.nats_url).await {
        Ok(nats) => {
            if let Err(e) = async_nats::jetstream::new(nats)
                .delete_stream(&stream)
                .await
            {
                warnings.push(format!("could not delete stream {stream}: {e}"));
            }
        }
        Err(e) => warnings.push(format!("could not reach NATS to delete {stream}: {e}")),
    }
    if let Err(e) = pg::drop_store(&args.common.pg_admin_url, &db).await {
        warnings.push(format!("could not drop {db}: {e:#}"));
    }
    let mut report = result?;
    for w in warnings {
        let _ = writeln!(report, "  warning:    {w}");
    }
    report.publish("lag.txt", args.common.out.as_deref())
}

async fn measure(args: &LagArgs, bin: &Path, db: &str, stream: &str, id: &str) -> Result<Report> {
    let url = pg::database_url(&args.common.pg_admin_url, db)?;
    let read_url = pg::database_url(&args.common.pg_admin_url, &format!("{db}_read"))?;
    let mut env = server::production_env(&url);
    env.push(("NATS_URL".into(), args.nats_url.clone()));
    env.push(("ZHILEGO_NATS_STREAM".into(), stream.to_string()));
    env.push(("ZHILEGO_NATS_SUBJECT_PREFIX".into(), format!("lag_{id}")));
    env.extend(args.server_env.iter().cloned());
    let work = harness::work_dir("lag")?;
    let server = harness::start(bin, env, work.join("zhilego.log"), None, "minting tokens").await?;
    let result = exercise(args, bin, &server, &url, &read_url, stream).await;
    let stopped = harness::stop(server).await;
    let mut report =
        result.with_context(|| format!("service log: {}", work.join("zhilego.log").display()))?;
    let _ = writeln!(report, "  service:    {}", stopped.how);
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}

/// One paced request's outcome.
struct Sent {
    status: Option<StatusCode>,
    position: Option<i64>,
    answered: Instant,
    latency: Duration,
    error: Option<String>,
}

/// A projection checkpoint's moves: (when seen, tx, position), in order.
type Timeline = Vec<(Instant, i64, i64)>;

async fn exercise(
    args: &LagArgs,
    bin: &Path,
    server: &Server,
    url: &str,
    read_url: &str,
    stream: &str,
) -> Result<Report> {
    let host = server.token("host", Uuid::new_v4()).await?;
    // Every booking from a guest of its own, as real traffic is (the service caps a guest's
    // unpaid holds).
    let guests = server.guests()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .timeout(Duration::from_secs(30))
        .build()?;
    eprintln!("== creating {} listings", args.listings);
    let listings = load::seed_listings(&client, &server.base_url, &host, args.listings, 32).await?;
    server::wait_caught_up(bin, server.env(), Duration::from_secs(120)).await?;

    // The checkpoint poller.
    let stop = Arc::new(AtomicBool::new(false));
    let mut conn = PgConnection::connect(read_url)
        .await
        .with_context(|| format!("connecting to {read_url}"))?;
    let poll = Duration::from_millis(args.poll_ms.max(1));
    let poller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut timelines: HashMap<String, Timeline> = HashMap::new();
            let mut polls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let rows: Vec<(String, i64, i64)> =
                    sqlx::query_as("SELECT name, tx, position FROM projection_checkpoints")
                        .fetch_all(&mut conn)
                        .await?;
                let now = Instant::now();
                polls += 1;
                for (name, tx, position) in rows {
                    let t = timelines.entry(name).or_default();
                    if t.last().is_none_or(|&(_, a, b)| (a, b) != (tx, position)) {
                        t.push((now, tx, position));
                    }
                }
                tokio::time::sleep(poll).await;
            }
            conn.close().await.ok();
            Ok::<_, anyhow::Error>((timelines, polls))
        })
    };

    // The paced phase.
    eprintln!(
        "== {} bookings/s for {} s (open loop, at most {} in flight)",
        args.rate, args.seconds, args.max_in_flight
    );
    let total = args.rate as u64 * args.seconds;
    let period = Duration::from_secs_f64(1.0 / args.rate as f64);
    let first_day = crate::kz_today() + Days::days(1);
    let slots = Arc::new(Semaphore::new(args.max_in_flight));
    let booking_url = format!("{}/api/v1/bookings", server.base_url);
    let listings = Arc::new(listings);
    let before = cpu::Sample::take();
    let started = tokio::time::Instant::now();
    // Open loop from several clients, each with its own connections and its own share of the
    // schedule (client c sends requests c, c + C, c + 2C, … each at its due instant, answered
    // or not), so one client's slow answers or busy connections do not hold the others back.
    let clients = args.clients.max(1) as u64;
    let mut senders = Vec::with_capacity(clients as usize);
    for c in 0..clients {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.max_in_flight)
            .timeout(Duration::from_secs(30))
            .build()?;
        let (slots, listings, guests, booking_url) = (
            slots.clone(),
            listings.clone(),
            guests.clone(),
            booking_url.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut tasks = Vec::with_capacity((total / clients + 1) as usize);
            let mut late = 0u64;
            for k in (c..total).step_by(clients as usize) {
                let due = started + period.mul_f64(k as f64);
                tokio::time::sleep_until(due).await;
                let permit = match slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        late += 1;
                        slots.clone().acquire_owned().await?
                    }
                };
                let l = (k % listings.len() as u64) as usize;
                let round = (k / listings.len() as u64) as i64;
                let check_in = first_day + Days::days(3 * round);
                let check_out = check_in + Days::days(1 + (k % 3) as i64);
                let body = json!({
                    "listing_id": listings[l],
                    "check_in": check_in,
                    "check_out": check_out,
                    "guests": 2,
                });
                let (client, url) = (client.clone(), booking_url.clone());
                let token = guests.fresh();
                tasks.push(tokio::spawn(async move {
                    let _permit = permit;
                    let sent = Instant::now();
                    let answer = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    let (status, value, error) = match answer {
                        Ok(res) => {
                            let status = res.status();
                            match res.bytes().await {
                                Ok(b) => (
                                    Some(status),
                                    serde_json::from_slice::<serde_json::Value>(&b).ok(),
                                    None,
                                ),
                                Err(e) => (Some(status), None, Some(e.to_string())),
                            }
                        }
                        Err(e) => (None, None, Some(e.to_string())),
                    };
                    let answered = Instant::now();
                    Sent {
                        status,
                        position: value.as_ref().and_then(|v| v["position"].as_i64()),
                        answered,
                        latency: answered - sent,
                        error,
                    }
                }));
            }
            anyhow::Ok((tasks, late, started.elapsed()))
        }));
    }
    let mut tasks = Vec::with_capacity(total as usize);
    let mut late = 0u64;
    let mut sending = Duration::ZERO;
    for sender in senders {
        let (t, l, d) = sender.await.context("a booking client panicked")??;
        tasks.extend(t);
        late += l;
        sending = sending.max(d);
    }
    let mut sent = Vec::with_capacity(total as usize);
    for task in tasks {
        sent.push(task.await.context("a booking request panicked")?);
    }
    let started = Instant::now() - started.elapsed();
    let answering = sent
        .iter()
        .map(|s| s.answered.saturating_duration_since(started))
        .max()
        .unwrap_or_default();
    let elapsed = answering;
    let cpu = cpu::Sample::take().since(&before);

    // Let the read models catch up on the tail, then stop the poller.
    let _ = server::wait_caught_up(bin, server.env(), Duration::from_secs(30)).await;
    tokio::time::sleep(poll * 5).await;
    stop.store(true, Ordering::Relaxed);
    let (timelines, polls) = poller.await.context("the poller panicked")??;

    // Commit-order keys of the answered positions.
    let positions: Vec<i64> = sent.iter().filter_map(|s| s.position).collect();
    let mut store = PgConnection::connect(url).await?;
    let keys: HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT position, xid::text::bigint FROM events WHERE position = ANY($1)",
    )
    .bind(&positions)
    .fetch_all(&mut store)
    .await?
    .into_iter()
    .collect();
    store.close().await.ok();

    let created = sent
        .iter()
        .filter(|s| s.status == Some(StatusCode::CREATED))
        .count();
    let conflicts = sent
        .iter()
        .filter(|s| s.status == Some(StatusCode::CONFLICT))
        .count();
    let errors = sent.iter().filter(|s| s.error.is_some()).count();
    let other = sent.len() - created - conflicts - errors;
    let first_error = sent.iter().find_map(|s| s.error.clone());
    let mut latencies: Vec<u64> = sent.iter().map(|s| s.latency.as_micros() as u64).collect();
    latencies.sort_unstable();

    let mut s = Report::new("projection-lag benchmark");
    let _ = writeln!(
        s,
        "service: production mode, store {url}, read models {read_url}, NATS {} stream {stream}",
        args.nats_url
    );
    for (k, v) in &args.server_env {
        let _ = writeln!(s, "service setting: {k}={v}");
    }
    let _ = writeln!(
        s,
        "load: POST /api/v1/bookings open loop at {}/s for {} s from {} clients over {} listings, a guest per booking, checkpoints polled every {} ms ({} polls)",
        args.rate, args.seconds, clients, args.listings, args.poll_ms, polls
    );
    let _ = writeln!(
        s,
        "  answers:    {} sent in {:.1} s: {} x 201, {} x 409, {} other, {} transport errors; {} waited for a free slot",
        sent.len(),
        elapsed.as_secs_f64(),
        created,
        conflicts,
        other,
        errors,
        late
    );
    if let Some(e) = first_error {
        let _ = writeln!(s, "              first error: {e}");
    }
    let _ = writeln!(
        s,
        "  rate:       {:.0} requests/s sent ({} clients, the last sent at {:.1} s), {:.0}/s answered, {:.0} bookings/s achieved (201s per second until the last answer)",
        sent.len() as f64 / sending.as_secs_f64().max(1e-9),
        clients,
        sending.as_secs_f64(),
        sent.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        created as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    let _ = writeln!(
        s,
        "  latency:    p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (client side, POST /bookings)",
        pct(&latencies, 50.0) as f64 / 1000.0,
        pct(&latencies, 99.0) as f64 / 1000.0,
        pct(&latencies, 100.0) as f64 / 1000.0
    );
    let mut bookings_p99 = None;
    let mut analytics_p99 = None;
    // The slowest projection's p99, and whether any booking was never seen applied.
    let mut worst: Option<(&str, f64)> = None;
    let mut missing_any = 0usize;
    for name in PROJECTIONS {
        let Some(timeline) = timelines.get(name) else {
            let _ = writeln!(s, "  lag {name:<13} no checkpoint seen");
            missing_any += 1;
            continue;
        };
        let (mut lags, mut missing, mut before_answer) = (Vec::new(), 0usize, 0usize);
        for b in sent
            .iter()
            .filter(|b| b.status == Some(StatusCode::CREATED))
        {
            let Some(key) = b.position.and_then(|p| keys.get(&p).map(|&tx| (tx, p))) else {
                missing += 1;
                continue;
            };
            let i = timeline.partition_point(|&(_, tx, p)| (tx, p) < key);
            match timeline.get(i) {
                Some(&(seen, _, _)) => {
                    let lag = seen.saturating_duration_since(b.answered);
                    if lag.is_zero() {
                        before_answer += 1;
                    }
                    lags.push(lag.as_micros() as u64);
                }
                None => missing += 1,
            }
        }
        lags.sort_unstable();
        let p99 = pct(&lags, 99.0) as f64 / 1000.0;
        if name == "bookings" {
            bookings_p99 = Some(p99);
        }
        if name == "analytics" {
            analytics_p99 = Some(p99);
        }
        if worst.is_none_or(|(_, w)| p99 > w) {
            worst = Some((name, p99));
        }
        missing_any += missing;
        let _ = writeln!(
            s,
            "  lag {name:<13} p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms over {} bookings ({} already applied at the answer{})",
            pct(&lags, 50.0) as f64 / 1000.0,
            pct(&lags, 100.0) as f64 / 1000.0,
            lags.len(),
            before_answer,
            if missing > 0 {
                format!(", {missing} never seen applied")
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(s, "  CPU:        {}", cpu.line());
    let rate = created as f64 / elapsed.as_secs_f64().max(1e-9);
    let enough = created as u64 * 10 >= total * 9;
    let anchor = format!(
        "POST /bookings p99 {:.1} ms",
        pct(&latencies, 99.0) as f64 / 1000.0
    );
    if let Some((name, p99)) = worst {
        s.goal(
            "projection lag, every projection",
            format!("worst p99 {p99:.1} ms ({name}) at {rate:.0} bookings/s"),
            format!("p99 < {GOAL_P99_MS:.0} ms at {} bookings/s", args.rate),
            &anchor,
            p99 < GOAL_P99_MS && enough && (rate * 1.1) >= args.rate as f64 && missing_any == 0,
        );
    }
    if let Some(p99) = analytics_p99 {
        s.goal(
            "analytics projection lag",
            format!("p99 {p99:.1} ms"),
            format!("< {GOAL_P99_MS:.0} ms"),
            format!(
                "bookings projection p99 {:.1} ms",
                bookings_p99.unwrap_or(f64::NAN)
            ),
            p99 < GOAL_P99_MS && enough,
        );
    }
    Ok(s)
}
