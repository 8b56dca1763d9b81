//! `ical`: calendar feeds at scale. 5,000 feeds (Airbnb-shaped, three stays each) served on
//! loopback by the bench's own feed server (`zhilego_testkit::feeds`), one per listing:
//!
//! 1. added through `POST …/calendar-feeds` from concurrent clients (each add syncs once);
//! 2. every feed then changes upstream (each stay moves a day), all are made due, and the
//!    service's own background sync is timed until every feed has been read and applied
//!    (`calendar_feed_status`), the goal being under 60 s; a sample of calendars is then
//!    checked night by night against the moved dates.
//!
//! The anchor, measured in the same run: the same 5,000 feeds fetched by the bench itself
//! (plain GETs, the same concurrency), i.e. what the HTTP part alone costs.
use crate::harness::{self, Backend, Outcome, Scratch};
use crate::report::{per_second, verdict, Report, Section};
use crate::{zhilego_binary, Common};
use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;
use zhilego_testkit::feeds::{airbnb, Feed, Stay};
use zhilego_testkit::FakeFeeds;

/// The goal: every feed synced within this.
const GOAL: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub struct IcalArgs {
    /// The store to measure; both, SQLite first, when left out.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Feeds (one listing each).
    #[arg(long, default_value_t = 5000)]
    feeds: usize,
    /// Concurrent clients adding feeds, and the service's `ZHILEGO_ICAL_CONCURRENCY`.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Listings whose calendars are checked after the sync.
    #[arg(long, default_value_t = 50)]
    check: usize,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: IcalArgs) -> Result<()> {
    anyhow::ensure!(
        args.feeds > 0 && args.concurrency > 0,
        "--feeds and --concurrency must be positive"
    );
    let bin = zhilego_binary(args.common.zhilego_bin.as_deref())?;
    let mut report = Report::new("calendar feeds (ical)");
    report.line(format!(
        "{} Airbnb-shaped feeds (3 stays each), one per listing, served on loopback; {} clients / ZHILEGO_ICAL_CONCURRENCY={}",
        args.feeds, args.concurrency, args.concurrency
    ));
    let out = args.common.out.as_deref();
    harness::each_backend(report, "ical.txt", out, args.backend, |backend| {
        let (args, bin) = (&args, &bin);
        async move { run_backend(args, bin, backend).await }
    })
    .await
}

/// Feed `i`'s stays in version `v` (each version moves every stay `v` days later).
fn stays(i: usize, v: i64) -> Vec<(i64, i64)> {
    let base = 5 + (i % 40) as i64 + v;
    vec![
        (base, base + 2),
        (base + 10, base + 13),
        (base + 30, base + 31),
    ]
}

fn feed_text(i: usize, v: i64) -> String {
    let day = |n: i64| (crate::kz_today() + chrono::Duration::days(n)).to_string();
    let list: Vec<Stay> = stays(i, v)
        .into_iter()
        .enumerate()
        .map(|(k, (from, to))| Stay::new(&format!("{i}-{k}@airbnb.com"), &day(from), &day(to)))
        .collect();
    airbnb(&list)
}

fn path(i: usize) -> String {
    format!("listing/{i}.ics")
}

async fn run_backend(args: &IcalArgs, bin: &Path, backend: Backend) -> Result<Outcome<Section>> {
    let may_skip = args.backend != Some(Backend::Postgres);
    let mut scratch =
        match Scratch::create("ical", backend, &args.common.pg_admin_url, may_skip).await? {
            Outcome::Measured(s) => s,
            Outcome::Skipped(why) => return Ok(Outcome::Skipped(why)),
        };
    let measured = measure(args, bin, backend, &scratch).await;
    let warning = scratch.drop_database().await;
    let section = measured.map_err(|e| scratch.kept(e))?;
    let _ = scratch.remove_files(false);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    Ok(Outcome::Measured(section))
}

fn store_url(env: &[(String, String)]) -> Result<String> {
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    match get("DATABASE_URL") {
        Some(url) => Ok(url),
        None => Ok(format!(
            "sqlite://{}/zhilego.db",
            get("ZHILEGO_DATA_DIR").context("no data dir")?
        )),
    }
}

async fn measure(
    args: &IcalArgs,
    bin: &Path,
    backend: Backend,
    scratch: &Scratch,
) -> Result<Section> {
    let feeds = FakeFeeds::start().await;
    for i in 0..args.feeds {
        feeds.set(&path(i), Feed::Calendar(feed_text(i, 0)));
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .timeout(Duration::from_secs(60))
        .build()?;

    // The anchor: the feeds fetched by the bench itself.
    let started = Instant::now();
    let fetched: Vec<usize> = futures::stream::iter(0..args.feeds)
        .map(|i| {
            let (client, url) = (client.clone(), feeds.url(&path(i)));
            async move {
                match client.get(url).send().await {
                    Ok(r) => r.bytes().await.map_or(0, |b| b.len()),
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let anchor = started.elapsed();
    anyhow::ensure!(
        fetched.iter().all(|n| *n > 0),
        "the feed server did not answer every feed"
    );

    let mut env = scratch.env.clone();
    let concurrency = args.concurrency.to_string();
    let settings = [
        ("ZHILEGO_ICAL_ALLOW_PRIVATE", "1"),
        ("ZHILEGO_ICAL_SYNC_INTERVAL", "1h"),
        ("ZHILEGO_ICAL_CONCURRENCY", concurrency.as_str()),
    ];
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let server = harness::start(bin, env.clone(), scratch.log(), None, "adding feeds").await?;
    let host = Uuid::new_v4();
    let token = server.token("host", host).await?;
    let (listings, _) =
        harness::create_listings(&client, &server, &token, args.feeds, args.concurrency).await?;

    // Phase 1: every feed added (and synced once) through the API.
    let started = Instant::now();
    let added: Vec<Result<()>> = futures::stream::iter(listings.iter().copied().enumerate())
        .map(|(i, listing)| {
            let (client, token, base) = (client.clone(), token.clone(), server.base_url.clone());
            let url = feeds.url(&path(i));
            async move {
                let res = client
                    .post(format!("{base}/api/v1/listings/{listing}/calendar-feeds"))
                    .bearer_auth(token)
                    .json(&json!({"url": url, "name": "Airbnb"}))
                    .send()
                    .await?;
                let status = res.status();
                let body: serde_json::Value = res.json().await?;
                anyhow::ensure!(
                    status == 201 && body["last_result"] == "ok",
                    "adding a feed: {status} {body}"
                );
                Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let add_time = started.elapsed();
    if let Some(Err(e)) = added.into_iter().find(Result::is_err) {
        let _ = harness::stop(server).await;
        return Err(e);
    }
    let stopped_1 = harness::stop(server).await;

    // Phase 2: upstream moves every stay; all feeds are due; the worker syncs them.
    for i in 0..args.feeds {
        feeds.set(&path(i), Feed::Calendar(feed_text(i, 1)));
    }
    let db = store::Database::connect(&store_url(&env)?, 2).await?;
    store::with_pool!(&db, pool => {
        sqlx::query("UPDATE calendar_feed_status SET claimed_at_ms = NULL").execute(pool).await?;
    });
    let mut env2 = env.clone();
    env2.retain(|(k, _)| k != "ZHILEGO_ICAL_SYNC_INTERVAL");
    // Long enough that no feed comes due twice while it is measured.
    env2.push(("ZHILEGO_ICAL_SYNC_INTERVAL".into(), "10m".into()));
    let hits_before = feeds.total_hits();
    let since = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let server = harness::start(bin, env2, scratch.log(), None, "the background sync runs").await?;
    let mut synced = 0i64;
    while started.elapsed() < GOAL * 3 {
        synced = store::with_pool!(&db, pool => {
            sqlx::query_scalar(
                "SELECT count(*) FROM calendar_feed_status WHERE last_result = 'ok' AND last_synced_at_ms >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await?
        });
        if synced as usize >= args.feeds {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sync_time = started.elapsed();
    let fetches = feeds.total_hits() - hits_before;

    // A sample of calendars against the moved dates.
    let mut wrong = 0;
    let check = args.check.min(listings.len());
    for (i, listing) in listings.iter().enumerate().take(check) {
        let today = crate::kz_today();
        let url = format!(
            "{}/api/v1/listings/{listing}/calendar?from={today}&to={}",
            server.base_url,
            today + chrono::Duration::days(90)
        );
        let mut ok = false;
        for _ in 0..50 {
            let cal: serde_json::Value = client.get(&url).send().await?.json().await?;
            let shown: BTreeSet<i64> = cal["days"]
                .as_array()
                .map(|days| {
                    days.iter()
                        .enumerate()
                        .filter(|(_, d)| d["status"] == "blocked")
                        .map(|(n, _)| n as i64)
                        .collect()
                })
                .unwrap_or_default();
            let expected: BTreeSet<i64> = stays(i, 1).into_iter().flat_map(|(a, b)| a..b).collect();
            if shown == expected {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wrong += usize::from(!ok);
    }
    let stopped_2 = harness::stop(server).await;
    db.close().await;
    feeds.stop();

    let met = synced as usize >= args.feeds && sync_time < GOAL && wrong == 0;
    let mut s = Section::new(backend.name(), &scratch.store, 34);
    s.row(
        "anchor: bench fetches the feeds:",
        format!(
            "{:.2} s ({:.0} feeds/s)",
            anchor.as_secs_f64(),
            per_second(args.feeds, anchor)
        ),
    );
    s.row(
        "added through the API (+1st sync):",
        format!(
            "{:.2} s ({:.0} feeds/s)",
            add_time.as_secs_f64(),
            per_second(args.feeds, add_time)
        ),
    );
    s.row(
        "background sync, every feed moved:",
        format!(
            "{:.2} s for {synced} feeds ({:.0} feeds/s, {fetches} fetches), from the service's start",
            sync_time.as_secs_f64(),
            per_second(synced as usize, sync_time)
        ),
    );
    s.row(
        "calendars checked night by night:",
        format!("{check}, {wrong} wrong"),
    );
    s.row(
        "service stops:",
        format!("{}; {}", stopped_1.how, stopped_2.how),
    );
    s.row(
        "log problems (WARN/ERROR):",
        format!("{} + {}", stopped_1.log_problems, stopped_2.log_problems),
    );
    s.row(
        "goal:",
        format!(
            "{} feeds synced in < {} s: {}",
            args.feeds,
            GOAL.as_secs(),
            verdict(met)
        ),
    );
    Ok(s)
}
