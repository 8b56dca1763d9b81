//! `zhilego-bench analytics`: how fast the analytics endpoints answer at seed scale.
//!
//! A scratch store (or `--database-url`) is bulk-seeded with the seed's generator: about
//! 5,000 listings in ten cities with 20 stays each over the next year (100,000 bookings), 10 %
//! cancelled and `--confirm-share` (90 %) of the rest confirmed, so nights are sold. A release
//! `zhilego serve` in production mode (in-process bus) builds the read models; once
//! `projections status` shows them caught up, the bench asks, one request at a time,
//! `--requests` times each:
//!
//! - anchor: `GET /api/v1/listings?city=Almaty` (the catalogue, an existing read);
//! - `GET /api/v1/analytics/revenue` for the next 365 days by month, all cities (goal p99 < 50 ms);
//! - the same by listing (about 5,000 items; goal p99 < 200 ms);
//! - the same by listing with `as_of` (goal p99 < 250 ms).
//!
//! Reported: p50/p99/max per question and the items and bytes of each answer.
use crate::harness;
use crate::report::{latency_line, pct, Report};
use crate::server::{self, Server};
use crate::{pg, seed, zhilego_binary, Common};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(clap::Args, Debug)]
pub struct AnalyticsArgs {
    /// A store already seeded with confirmed stays. Default: a scratch store, dropped after.
    #[arg(long)]
    database_url: Option<String>,
    /// Requests per question.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Events to bulk-seed (about 81 per listing with 20 stays).
    #[arg(long, default_value_t = 405_000)]
    events: u64,
    /// Share of the stays that are not cancelled seeded as confirmed.
    #[arg(long, default_value_t = 0.9)]
    confirm_share: f64,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: AnalyticsArgs) -> Result<()> {
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let (url, scratch) = match &args.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let db = pg::scratch_name("zhilego_bench");
            pg::create_database(&args.common.pg_admin_url, &db).await?;
            let url = pg::database_url(&args.common.pg_admin_url, &db)?;
            eprintln!("== bulk-seeding {db}: {} events", args.events);
            let options = seed::SeedOptions {
                listings: 0,
                bookings: 0,
                total_events: Some(args.events),
                confirm_share: args.confirm_share,
                ..seed::SeedOptions::default()
            };
            if let Err(e) = seed::seed(&url, &options).await {
                let _ = pg::drop_store(&args.common.pg_admin_url, &db).await;
                return Err(e);
            }
            (url, Some(db))
        }
    };
    let result = measure(&args, &bin, &url).await;
    harness::drop_seeded(&args.common, scratch).await;
    result?.publish("analytics.txt", args.common.out.as_deref())
}

/// Latencies (µs, sorted), the items and the bytes of the last answer.
async fn time_requests(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    n: usize,
) -> Result<(Vec<u64>, usize, usize)> {
    let mut lat = Vec::with_capacity(n);
    let (mut items, mut bytes) = (0, 0);
    for i in 0..n + 3 {
        let started = Instant::now();
        let res = client.get(url).bearer_auth(token).send().await?;
        let status = res.status();
        let body = res.bytes().await?;
        let took = started.elapsed();
        anyhow::ensure!(
            status.is_success(),
            "{url}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        if i >= 3 {
            lat.push(took.as_micros() as u64);
        }
        bytes = body.len();
        items = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["items"].as_array().map(Vec::len))
            .unwrap_or(0);
    }
    lat.sort_unstable();
    Ok((lat, items, bytes))
}

async fn measure(args: &AnalyticsArgs, bin: &std::path::Path, url: &str) -> Result<Report> {
    let env = server::production_env(url);
    let dir = harness::work_dir("analytics")?;
    let server = harness::start(
        bin,
        env.clone(),
        dir.join("zhilego.log"),
        Some(Duration::from_secs(1800)),
        "waiting for the read models",
    )
    .await?;
    let outcome = ask(args, bin, &env, &server).await;
    let stopped = harness::stop(server).await;
    let mut s = outcome?;
    let _ = writeln!(s, "  service:    {}", stopped.how);
    Ok(s)
}

async fn ask(
    args: &AnalyticsArgs,
    bin: &std::path::Path,
    env: &[(String, String)],
    server: &Server,
) -> Result<Report> {
    let (statuses, caught_up) = server::wait_caught_up(bin, env, Duration::from_secs(1800))
        .await
        .context("waiting for the read models")?;
    let events = statuses.first().map_or(0, |s| s.position);
    let token = server.token("analyst", Uuid::now_v7()).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let today = crate::kz_today();
    let to = today + chrono::Duration::days(365);
    let base = &server.base_url;
    let year = format!("{base}/api/v1/analytics/revenue?from={today}&to={to}");
    let as_of = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let questions: [(&str, String, Option<f64>); 4] = [
        (
            "anchor: catalogue, GET /listings?city=Almaty",
            format!("{base}/api/v1/listings?city=Almaty"),
            None,
        ),
        (
            "revenue, a year by month, all cities",
            format!("{year}&group_by=month"),
            Some(50.0),
        ),
        (
            "revenue, a year by listing",
            format!("{year}&group_by=listing"),
            Some(200.0),
        ),
        (
            "revenue, a year by listing, as_of",
            format!("{year}&group_by=listing&as_of={as_of}"),
            Some(250.0),
        ),
    ];
    let mut s = Report::new("analytics benchmark");
    let _ = writeln!(
        s,
        "store: {} events (bulk seed: ~5,000 listings, 20 stays each over 365 days, 10 % cancelled, {:.0} % of the rest confirmed); read models caught up in {:.1} s",
        events,
        args.confirm_share * 100.0,
        caught_up.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "load: one request at a time, {} per question (after 3 warm-up requests), release build, PostgreSQL read database",
        args.requests
    );
    // The first question (no goal) is the anchor of the others.
    let mut anchor = String::from("none");
    let mut goals = Vec::new();
    for (label, url, goal) in &questions {
        let (lat, items, bytes) = time_requests(&client, url, &token, args.requests).await?;
        let p99 = pct(&lat, 99.0) as f64 / 1000.0;
        let _ = writeln!(
            s,
            "  {label:<46} {} ({items} items, {:.0} KB)",
            latency_line(&lat),
            bytes as f64 / 1024.0,
        );
        match goal {
            Some(g) => goals.push((label, p99, *g)),
            None if anchor == "none" => anchor = format!("{label} p99 {p99:.1} ms"),
            None => {}
        }
    }
    for (label, p99, g) in goals {
        s.goal(
            label,
            format!("p99 {p99:.1} ms"),
            format!("< {g:.0} ms"),
            &anchor,
            p99 < g,
        );
    }
    Ok(s)
}
