//! `zhilego-bench seed`: seed-scale data in a PostgreSQL event store.
//!
//! The command phase goes through the real command side in-process (`commands::Commands`, as
//! the API uses it), with many concurrent tasks: `--listings` listings (default 5,000) in ten
//! Kazakh cities — city-centre coordinates with ±0.06° jitter, 1–4 rooms, guests, prices by
//! city and size, weekend prices, minimum stays, cancellation policies, photos and amenities —
//! then `--bookings` bookings (default 100,000) of 1–7 nights spread over the next `--days`
//! days (365), planned per listing so that they never overlap, and `--cancel-share` of them
//! (10 %) cancelled by their guest right after. A booking writes two events (DatesReserved,
//! BookingHeld), a cancellation two more: the defaults give about 225,000 events.
//!
//! The seeded bookings stay *held* (there is no payment step); their hold is set to 400 days
//! so the service's reservation sweeper does not expire them while other benches run.
//!
//! Bulk mode (`--total-events N`): afterwards, more listings with the same kind of calendars
//! are written straight into the `events` table, in multi-row `INSERT … SELECT FROM UNNEST`
//! batches, until the store holds at least N events. Every event is a real `domain` event
//! serialized as the command side stores it, with metadata as `CommandMeta` writes it plus an
//! `event_id` (UUID v7) and the per-aggregate SHA-256 `hash` chain of `store::chain`, with
//! per-aggregate sequences from 1 — so `zhilego audit verify`, the projections and the relay
//! treat them like any other events.
//!
//! The plan (cities, sizes, prices, dates, guests, cancellations) is deterministic for a given
//! `--seed`; ids are UUID v7 as the service makes them, so they differ between runs.
use crate::report::Report;
use crate::{pg, Common};
use anyhow::{Context, Result};
use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use commands::{BookRequest, CommandMeta, Commands, CommandsConfig, MasterKey};
use cqrs_es::{Aggregate, DomainEvent};
use domain::booking::{Booking, BookingEvent};
use domain::cancellation::CancellationPolicy;
use domain::listing::{Listing, ListingDetails, ListingEvent, ListingStatus, ReleaseReason};
use domain::pricing::{PriceRules, StayPrice, WeekdayPrice};
use domain::{Actor, Channel, DateRange, Kzt, Location, Role};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sqlx::types::Json;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::chain::{event_hash, ChainInput, GENESIS_HASH};
use store::Database;
use uuid::Uuid;

/// A city: its centre, its share of the listings (of 100) and a typical nightly price.
struct City {
    name: &'static str,
    lat: f64,
    lon: f64,
    weight: u32,
    base_price_kzt: i64,
}

const CITIES: [City; 10] = [
    City {
        name: "Almaty",
        lat: 43.2389,
        lon: 76.8897,
        weight: 25,
        base_price_kzt: 22_000,
    },
    City {
        name: "Astana",
        lat: 51.1694,
        lon: 71.4491,
        weight: 20,
        base_price_kzt: 20_000,
    },
    City {
        name: "Shymkent",
        lat: 42.3417,
        lon: 69.5901,
        weight: 10,
        base_price_kzt: 14_000,
    },
    City {
        name: "Karaganda",
        lat: 49.8047,
        lon: 73.1094,
        weight: 8,
        base_price_kzt: 12_000,
    },
    City {
        name: "Aktobe",
        lat: 50.2839,
        lon: 57.1669,
        weight: 7,
        base_price_kzt: 12_000,
    },
    City {
        name: "Taraz",
        lat: 42.9000,
        lon: 71.3667,
        weight: 6,
        base_price_kzt: 10_000,
    },
    City {
        name: "Pavlodar",
        lat: 52.2873,
        lon: 76.9674,
        weight: 6,
        base_price_kzt: 11_000,
    },
    City {
        name: "Oskemen",
        lat: 49.9483,
        lon: 82.6275,
        weight: 6,
        base_price_kzt: 11_000,
    },
    City {
        name: "Semey",
        lat: 50.4111,
        lon: 80.2275,
        weight: 6,
        base_price_kzt: 10_000,
    },
    City {
        name: "Atyrau",
        lat: 47.0945,
        lon: 51.9238,
        weight: 6,
        base_price_kzt: 16_000,
    },
];

/// The city names, for the search benches.
pub fn city_names() -> Vec<&'static str> {
    CITIES.iter().map(|c| c.name).collect()
}

const STREETS: [&str; 10] = [
    "Abay avenue",
    "Dostyk avenue",
    "Tole bi street",
    "Respublika avenue",
    "Kabanbay batyr avenue",
    "Satpayev street",
    "Zheltoksan street",
    "Seifullin street",
    "Gogol street",
    "Auezov street",
];

const AMENITIES: [&str; 10] = [
    "wifi",
    "kitchen",
    "washer",
    "air_conditioning",
    "parking",
    "elevator",
    "tv",
    "balcony",
    "workspace",
    "crib",
];

const ADJECTIVES: [&str; 6] = ["Cosy", "Bright", "Modern", "Quiet", "Spacious", "Central"];

/// How long seeded holds last: past any bench run, so the sweeper leaves them alone.
const SEED_HOLD: Duration = Duration::from_secs(400 * 24 * 3600);

const DEFAULT_LISTINGS: usize = 5_000;
const DEFAULT_BOOKINGS: usize = 100_000;
const DEFAULT_DAYS: i64 = 365;

/// What to seed (shared with the modes that seed their own scratch store).
#[derive(clap::Args, Debug, Clone)]
pub struct SeedOptions {
    /// Listings to create through the command side.
    #[arg(long, default_value_t = DEFAULT_LISTINGS)]
    pub listings: usize,
    /// Bookings to make through the command side, spread over the listings.
    #[arg(long, default_value_t = DEFAULT_BOOKINGS)]
    pub bookings: usize,
    /// Share of the bookings cancelled by their guest.
    #[arg(long, default_value_t = 0.1)]
    pub cancel_share: f64,
    /// Stays start between tomorrow and this many days ahead.
    #[arg(long, default_value_t = DEFAULT_DAYS)]
    pub days: i64,
    /// Seed of the plan (cities, sizes, prices, dates, guests, cancellations).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Concurrent command tasks.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// PostgreSQL connections of the seeding pool.
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Bulk mode: afterwards write events straight into the store until it holds at least
    /// this many (e.g. 1000000 for the rebuild bench).
    #[arg(long)]
    pub total_events: Option<u64>,
    /// Bulk mode: share of the stays that are not cancelled written as confirmed (the booking
    /// confirmed, its nights confirmed on the listing), so the analytics have nights sold.
    #[arg(long, default_value_t = 0.0)]
    pub confirm_share: f64,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            listings: DEFAULT_LISTINGS,
            bookings: DEFAULT_BOOKINGS,
            cancel_share: 0.1,
            days: DEFAULT_DAYS,
            seed: 42,
            concurrency: 64,
            connections: 32,
            total_events: None,
            confirm_share: 0.0,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct SeedArgs {
    /// The store to seed (created on the --pg-admin-url server if missing, then migrated), or
    /// an embedded one, `sqlite://DIR/zhilego.db` (for `search --data-dir DIR`). Default: a
    /// fresh `zhilego_bench_*` database, which is kept (drop it with `zhilego-bench drop`).
    #[arg(long)]
    database_url: Option<String>,
    #[command(flatten)]
    options: SeedOptions,
    #[command(flatten)]
    common: Common,
}

/// What a seed run did.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub listings: u64,
    pub listing_time: Duration,
    pub bookings: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    pub booking_time: Duration,
    pub bulk_listings: u64,
    pub bulk_events: u64,
    pub bulk_time: Duration,
    pub events_in_store: i64,
}

impl SeedReport {
    pub fn render(&self, s: &mut Report) {
        let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        let _ = writeln!(
            s,
            "  listings:   {} in {:.1} s ({:.0}/s) through commands::Commands",
            self.listings,
            self.listing_time.as_secs_f64(),
            rate(self.listings, self.listing_time)
        );
        let commands = self.bookings + self.cancelled + self.failed;
        let _ = writeln!(
            s,
            "  bookings:   {} booked + {} cancelled ({} failed) in {:.1} s: {:.0} bookings/s, {:.0} commands/s",
            self.bookings,
            self.cancelled,
            self.failed,
            self.booking_time.as_secs_f64(),
            rate(self.bookings, self.booking_time),
            rate(commands, self.booking_time)
        );
        if let Some(f) = &self.first_failure {
            let _ = writeln!(s, "              first failure: {f}");
        }
        if self.bulk_events > 0 {
            let _ = writeln!(
                s,
                "  bulk:       {} events ({} listings with their bookings) in {:.1} s ({:.0} events/s), straight into `events`",
                self.bulk_events,
                self.bulk_listings,
                self.bulk_time.as_secs_f64(),
                rate(self.bulk_events, self.bulk_time)
            );
        }
        let _ = writeln!(s, "  store:      {} events", self.events_in_store);
    }
}

pub async fn run(args: SeedArgs) -> Result<()> {
    let url = match &args.database_url {
        // An embedded store: the file is created by connecting.
        Some(url) if url.starts_with("sqlite:") => url.clone(),
        Some(url) => {
            pg::ensure_database(&args.common.pg_admin_url, &pg::database_name(url)?).await?;
            url.clone()
        }
        None => {
            let db = pg::scratch_name("zhilego_bench");
            pg::create_database(&args.common.pg_admin_url, &db).await?;
            pg::database_url(&args.common.pg_admin_url, &db)?
        }
    };
    eprintln!("== seeding {url}");
    let started = Instant::now();
    let report = seed(&url, &args.options).await?;
    let mut s = Report::new("seed");
    let o = &args.options;
    let _ = writeln!(
        s,
        "store: {url}\nplan: --seed {}, {} listings in {} cities, {} bookings of 1-7 nights over {} days, {:.0}% cancelled{}",
        o.seed,
        o.listings,
        CITIES.len(),
        o.bookings,
        o.days,
        o.cancel_share * 100.0,
        o.total_events
            .map(|n| format!(", bulk up to {n} events"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "client: {} concurrent tasks, {} connections",
        o.concurrency, o.connections
    );
    report.render(&mut s);
    let _ = writeln!(s, "  seed time:  {:.1} s", started.elapsed().as_secs_f64());
    let _ = writeln!(
        s,
        "  kept:       use --database-url {url}; drop with `zhilego-bench drop --database-url {url}`"
    );
    s.publish("seed.txt", args.common.out.as_deref())
}

/// Seeds the store at `url` (migrating it first).
pub async fn seed(url: &str, o: &SeedOptions) -> Result<SeedReport> {
    anyhow::ensure!(o.days >= 8, "--days must be at least 8");
    anyhow::ensure!(
        (0.0..=1.0).contains(&o.cancel_share),
        "--cancel-share must be between 0 and 1"
    );
    let db = Database::connect(url, o.connections.max(2))
        .await
        .with_context(|| format!("connecting to {url}"))?;
    db.migrate().await.context("migrating the store")?;
    let mut rng = StdRng::seed_from_u64(o.seed);
    let today = crate::kz_today();
    let plans = plan_listings(&mut rng, 0, o.listings, o.bookings, o.days, o.cancel_share);
    let mut report = SeedReport::default();
    if !plans.is_empty() {
        run_commands(&db, &plans, today, o, &mut report).await?;
    }
    if let Some(target) = o.total_events {
        bulk(&db, &mut rng, target, today, o, &mut report).await?;
    }
    report.events_in_store = event_count(&db).await?;
    db.close().await;
    Ok(report)
}

async fn event_count(db: &Database) -> Result<i64> {
    Ok(store::history::event_count(db).await?)
}

// ----- the plan ---------------------------------------------------------------------------

/// One listing to create and the stays to book on it.
struct ListingPlan {
    host_id: Uuid,
    details: ListingDetails,
    stays: Vec<StayPlan>,
}

/// One stay: nights from `today + offset`.
#[derive(Clone, Copy)]
struct StayPlan {
    guest_id: Uuid,
    offset: i64,
    nights: u32,
    guests: u32,
    cancel: bool,
}

fn uuid_from(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

fn pick_city(rng: &mut StdRng) -> &'static City {
    let total: u32 = CITIES.iter().map(|c| c.weight).sum();
    let mut n = rng.random_range(0..total);
    for c in &CITIES {
        if n < c.weight {
            return c;
        }
        n -= c.weight;
    }
    &CITIES[0]
}

fn listing_details(rng: &mut StdRng, i: usize) -> ListingDetails {
    let city = pick_city(rng);
    let rooms: u32 = match rng.random_range(0..100) {
        0..35 => 1,
        35..70 => 2,
        70..90 => 3,
        _ => 4,
    };
    let max_guests = (rooms * 2 + rng.random_range(0..2)).clamp(1, 10);
    let size = 0.6 + 0.35 * rooms as f64;
    let price = (city.base_price_kzt as f64 * size * rng.random_range(0.8..1.3) / 500.0).round()
        as i64
        * 500;
    let weekday_prices = if rng.random_bool(0.3) {
        let weekend = (price as f64 * 1.15 / 500.0).round() as i64 * 500;
        [5u8, 6]
            .into_iter()
            .map(|weekday| WeekdayPrice {
                weekday,
                nightly_price_kzt: Kzt(weekend),
            })
            .collect()
    } else {
        Vec::new()
    };
    let min_nights = match rng.random_range(0..100) {
        0..65 => 1,
        65..90 => 2,
        _ => 3,
    };
    let cancellation_policy = match rng.random_range(0..3) {
        0 => CancellationPolicy::Flexible,
        1 => CancellationPolicy::Moderate,
        _ => CancellationPolicy::Strict,
    };
    // Six decimals (about 10 cm), as a phone reports them. (Longer fractions do not survive
    // the jsonb round trip bit for bit, and `audit verify` then flags the listing's hash.)
    let micro = |x: f64| (x * 1e6).round() / 1e6;
    let location = Location::parse(
        micro(city.lat + rng.random_range(-0.06..0.06)),
        micro(city.lon + rng.random_range(-0.06..0.06)),
    )
    .expect("city coordinates are valid");
    let street = STREETS[rng.random_range(0..STREETS.len())];
    ListingDetails {
        title: format!(
            "{} {rooms}-room flat in {}",
            ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
            city.name
        ),
        city: city.name.to_string(),
        address: format!(
            "{street} {}, apt {}",
            rng.random_range(1..200),
            rng.random_range(1..150)
        ),
        location: Some(location),
        rooms,
        max_guests,
        pricing: PriceRules {
            nightly_price_kzt: Kzt(price),
            cleaning_fee_kzt: Kzt([0, 3_000, 5_000][rng.random_range(0..3)]),
            weekday_prices,
            range_prices: Vec::new(),
        },
        min_nights,
        max_nights: if rng.random_bool(0.5) { 30 } else { 90 },
        cancellation_policy,
        photos: (0..rng.random_range(1..=6))
            .map(|k| format!("https://img.zhilego.kz/listings/{i}/{k}.jpg"))
            .collect(),
        amenities: AMENITIES
            .iter()
            .filter(|_| rng.random_bool(0.5))
            .map(|a| a.to_string())
            .collect(),
    }
}

/// `count` stays of 1–7 nights (at least the listing's minimum) placed without overlap over
/// `days` days from tomorrow, with random gaps.
fn plan_stays(
    rng: &mut StdRng,
    details: &ListingDetails,
    count: usize,
    days: i64,
    guests: &[Uuid],
    cancel_share: f64,
) -> Vec<StayPlan> {
    let mut nights: Vec<u32> = (0..count)
        .map(|_| rng.random_range(1..=7u32).max(details.min_nights))
        .collect();
    // Keep the stays inside the window (rarely needed: about 80 of 365 nights are taken).
    while nights.iter().map(|&n| n as i64).sum::<i64>() > days - 1 {
        nights.pop();
    }
    let slack = days - 1 - nights.iter().map(|&n| n as i64).sum::<i64>();
    let weights: Vec<f64> = (0..=nights.len())
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let sum: f64 = weights.iter().sum::<f64>().max(1e-9);
    let mut offset = 1i64;
    nights
        .iter()
        .zip(&weights)
        .map(|(&n, w)| {
            offset += (slack as f64 * w / sum).floor() as i64;
            let stay = StayPlan {
                guest_id: guests[rng.random_range(0..guests.len())],
                offset,
                nights: n,
                guests: rng.random_range(1..=details.max_guests),
                cancel: rng.random_bool(cancel_share),
            };
            offset += n as i64;
            stay
        })
        .collect()
}

/// Listings `first..first + count` with `bookings` stays spread evenly over them.
fn plan_listings(
    rng: &mut StdRng,
    first: usize,
    count: usize,
    bookings: usize,
    days: i64,
    cancel_share: f64,
) -> Vec<ListingPlan> {
    if count == 0 {
        return Vec::new();
    }
    let hosts: Vec<Uuid> = (0..count.div_ceil(3)).map(|_| uuid_from(rng)).collect();
    // About one booking per guest, as real traffic is (the service caps a guest's unpaid
    // holds; five stays per guest made every guest a hoarder).
    let guests: Vec<Uuid> = (0..bookings.max(1)).map(|_| uuid_from(rng)).collect();
    (0..count)
        .map(|i| {
            let details = listing_details(rng, first + i);
            let quota = bookings / count + usize::from(i < bookings % count);
            let stays = plan_stays(rng, &details, quota, days, &guests, cancel_share);
            ListingPlan {
                host_id: hosts[rng.random_range(0..hosts.len())],
                details,
                stays,
            }
        })
        .collect()
}

// ----- through the command side -------------------------------------------------------------

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {elapsed} elapsed, eta {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Without a terminal the bar is hidden: print a line every 10 s instead.
fn log_progress(bar: &ProgressBar, what: &'static str) -> Option<tokio::task::JoinHandle<()>> {
    if std::io::stderr().is_terminal() {
        return None;
    }
    let bar = bar.clone();
    Some(tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let done = bar.position();
            eprintln!(
                "   {what}: {done}/{} after {:.0} s ({:.0}/s)",
                bar.length().unwrap_or(0),
                started.elapsed().as_secs_f64(),
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }))
}

async fn run_commands(
    db: &Database,
    plans: &[ListingPlan],
    today: NaiveDate,
    o: &SeedOptions,
    report: &mut SeedReport,
) -> Result<()> {
    let key = MasterKey::from_hex(&format!(
        "{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    ))
    .map_err(|e| anyhow::anyhow!("master key: {e}"))?;
    let config = CommandsConfig {
        hold: SEED_HOLD,
        listing_cache: plans.len().max(10_000),
        ..CommandsConfig::default()
    };
    let commands = Arc::new(Commands::new(db.clone(), config, key));
    let workers = o.concurrency.max(1);

    // Listings.
    let bar = progress(plans.len() as u64, "listings");
    let logger = log_progress(&bar, "listings");
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let plans_shared: Arc<Vec<(Uuid, ListingDetails)>> = Arc::new(
        plans
            .iter()
            .map(|p| (p.host_id, p.details.clone()))
            .collect(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.min(plans.len()) {
        let (commands, next, plans, bar) = (
            commands.clone(),
            next.clone(),
            plans_shared.clone(),
            bar.clone(),
        );
        tasks.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((host_id, details)) = plans.get(i) else {
                    return Ok::<_, anyhow::Error>(made);
                };
                let actor = Actor {
                    user_id: *host_id,
                    role: Role::Host,
                };
                let meta = CommandMeta::new(actor, Channel::Web, Uuid::now_v7());
                let written = commands
                    .create_listing(*host_id, details.clone(), ListingStatus::Active, &meta)
                    .await
                    .map_err(|e| anyhow::anyhow!("creating listing {i}: {e}"))?;
                made.push((i, written.value.id.context("a listing without an id")?));
                bar.inc(1);
            }
        });
    }
    let mut ids = vec![Uuid::nil(); plans.len()];
    while let Some(done) = tasks.join_next().await {
        for (i, id) in done?? {
            ids[i] = id;
        }
    }
    bar.finish();
    if let Some(l) = logger {
        l.abort();
    }
    report.listings = plans.len() as u64;
    report.listing_time = started.elapsed();

    // Bookings, round-robin over the listings so that concurrent tasks work on different ones.
    let rounds = plans.iter().map(|p| p.stays.len()).max().unwrap_or(0);
    let mut jobs = Vec::new();
    for r in 0..rounds {
        for (l, plan) in plans.iter().enumerate() {
            if let Some(stay) = plan.stays.get(r) {
                jobs.push((ids[l], *stay));
            }
        }
    }
    let jobs = Arc::new(jobs);
    let bar = progress(jobs.len() as u64, "bookings");
    let logger = log_progress(&bar, "bookings");
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let booked = Arc::new(AtomicU64::new(0));
    let cancelled = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.min(jobs.len()) {
        let (commands, next, jobs, bar) =
            (commands.clone(), next.clone(), jobs.clone(), bar.clone());
        let (booked, cancelled, failed, first_failure) = (
            booked.clone(),
            cancelled.clone(),
            failed.clone(),
            first_failure.clone(),
        );
        tasks.spawn(async move {
            let fail = |e: String| {
                failed.fetch_add(1, Ordering::Relaxed);
                first_failure.lock().expect("failure slot").get_or_insert(e);
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(listing_id, stay)) = jobs.get(i) else {
                    return;
                };
                bar.inc(1);
                let check_in = today + Days::days(stay.offset);
                let Ok(range) =
                    DateRange::parse(check_in, check_in + Days::days(stay.nights as i64))
                else {
                    fail("an empty stay in the plan".into());
                    continue;
                };
                let actor = Actor {
                    user_id: stay.guest_id,
                    role: Role::Guest,
                };
                let channel = [Channel::Web, Channel::Mobile, Channel::Telegram][i % 3];
                let meta = CommandMeta::new(actor, channel, Uuid::now_v7());
                let request = BookRequest {
                    listing_id,
                    range,
                    guests: stay.guests,
                };
                let booking = match commands.book(request, &meta).await {
                    Ok(w) => w.value,
                    Err(e) => {
                        fail(format!("book: {e}"));
                        continue;
                    }
                };
                booked.fetch_add(1, Ordering::Relaxed);
                if stay.cancel {
                    let Some(booking_id) = booking.id else {
                        continue;
                    };
                    let meta = CommandMeta::new(actor, channel, Uuid::now_v7());
                    match commands
                        .cancel_booking(booking_id, "plans changed".into(), &meta)
                        .await
                    {
                        Ok(_) => {
                            cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => fail(format!("cancel: {e}")),
                    }
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a booking task panicked")?;
    }
    bar.finish();
    if let Some(l) = logger {
        l.abort();
    }
    report.bookings = booked.load(Ordering::Relaxed);
    report.cancelled = cancelled.load(Ordering::Relaxed);
    report.failed = failed.load(Ordering::Relaxed);
    report.first_failure = first_failure.lock().expect("failure slot").take();
    report.booking_time = started.elapsed();
    Ok(())
}

// ----- bulk: straight into the events table -------------------------------------------------

/// One event row as the store keeps it.
struct Row {
    aggregate_type: &'static str,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
}

/// Serializes `event` like the command side and chains it to `prev` (updated to its hash).
fn row<E: DomainEvent>(
    aggregate_type: &'static str,
    aggregate_id: Uuid,
    sequence: i64,
    event: &E,
    meta: &CommandMeta,
    prev: &mut String,
) -> Row {
    let payload = serde_json::to_value(event).expect("domain events serialize");
    let mut metadata = serde_json::to_value(meta.to_map()).expect("metadata serializes");
    let event_type = event.event_type();
    let event_version = event.event_version();
    let aggregate_id = aggregate_id.to_string();
    if let Value::Object(map) = &mut metadata {
        map.insert("event_id".into(), Value::String(Uuid::now_v7().to_string()));
    }
    let hash = event_hash(
        prev,
        &ChainInput {
            aggregate_type,
            aggregate_id: &aggregate_id,
            sequence,
            event_type: &event_type,
            event_version: &event_version,
            payload: &payload,
            metadata: &metadata,
        },
    );
    if let Value::Object(map) = &mut metadata {
        map.insert("hash".into(), Value::String(hash.clone()));
    }
    *prev = hash;
    Row {
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        event_version,
        payload,
        metadata,
    }
}

/// The events of one listing's life: created, then each stay reserved on the listing and held
/// as a booking, and for cancelled stays the booking cancelled and the nights released — in
/// the order the command side writes them.
fn listing_rows(
    plan: &ListingPlan,
    today: NaiveDate,
    now: DateTime<Utc>,
    confirm_share: f64,
    out: &mut Vec<Row>,
) {
    let listing = <Listing as Aggregate>::TYPE;
    let booking = <Booking as Aggregate>::TYPE;
    let listing_id = Uuid::now_v7();
    let host = Actor {
        user_id: plan.host_id,
        role: Role::Host,
    };
    let mut listing_seq = 1i64;
    let mut listing_prev = GENESIS_HASH.to_string();
    let created = ListingEvent::ListingCreated {
        listing_id,
        host_id: plan.host_id,
        details: plan.details.clone(),
        status: ListingStatus::Active,
    };
    let meta = CommandMeta::new(host, Channel::Web, Uuid::now_v7());
    out.push(row(
        listing,
        listing_id,
        listing_seq,
        &created,
        &meta,
        &mut listing_prev,
    ));
    let hold_expires_at = now + chrono::Duration::from_std(SEED_HOLD).expect("a short hold");
    for (k, stay) in plan.stays.iter().enumerate() {
        let check_in = today + Days::days(stay.offset);
        let Ok(range) = DateRange::parse(check_in, check_in + Days::days(stay.nights as i64))
        else {
            continue;
        };
        let booking_id = Uuid::now_v7();
        let guest = Actor {
            user_id: stay.guest_id,
            role: Role::Guest,
        };
        let channel = [Channel::Web, Channel::Mobile, Channel::Telegram][k % 3];
        let meta = CommandMeta::new(guest, channel, Uuid::now_v7());
        let price = plan.details.pricing.quote(&range);
        let reserved = ListingEvent::DatesReserved {
            booking_id,
            guest_id: stay.guest_id,
            range,
            guests: stay.guests,
            price: price.clone(),
            hold_expires_at,
        };
        listing_seq += 1;
        out.push(row(
            listing,
            listing_id,
            listing_seq,
            &reserved,
            &meta,
            &mut listing_prev,
        ));
        let held = BookingEvent::BookingHeld {
            booking_id,
            listing_id,
            host_id: plan.host_id,
            guest_id: stay.guest_id,
            range,
            guests: stay.guests,
            channel,
            price: StayPrice::dated(&range, &price).expect("a quote for the stay's nights"),
            cancellation_policy: plan.details.cancellation_policy,
            hold_expires_at,
        };
        let mut booking_prev = GENESIS_HASH.to_string();
        out.push(row(
            booking,
            booking_id,
            1,
            &held,
            &meta.follow_up(),
            &mut booking_prev,
        ));
        // Deterministic per stay: the golden-ratio sequence spreads the confirmed ones evenly.
        let confirmed = !stay.cancel && (k as f64 * 0.618_033_988_75).fract() < confirm_share;
        if confirmed {
            let confirm = BookingEvent::BookingConfirmed {
                payment_id: commands::payment_id_for(booking_id),
                paid_kzt: held_total(&held),
                late: false,
            };
            out.push(row(
                booking,
                booking_id,
                2,
                &confirm,
                &meta.follow_up(),
                &mut booking_prev,
            ));
            listing_seq += 1;
            out.push(row(
                listing,
                listing_id,
                listing_seq,
                &ListingEvent::ReservationConfirmed { booking_id },
                &meta.follow_up(),
                &mut listing_prev,
            ));
        }
        if stay.cancel {
            let meta = CommandMeta::new(guest, channel, Uuid::now_v7());
            let cancelled = BookingEvent::BookingCancelled {
                by_user: stay.guest_id,
                by_role: Role::Guest,
                reason: "plans changed".into(),
                refund_kzt: Kzt::ZERO,
            };
            out.push(row(
                booking,
                booking_id,
                2,
                &cancelled,
                &meta,
                &mut booking_prev,
            ));
            let released = ListingEvent::DatesReleased {
                booking_id,
                range,
                reason: ReleaseReason::Cancelled,
            };
            listing_seq += 1;
            out.push(row(
                listing,
                listing_id,
                listing_seq,
                &released,
                &meta.follow_up(),
                &mut listing_prev,
            ));
        }
    }
}

/// What a held booking costs in all.
fn held_total(held: &BookingEvent) -> Kzt {
    match held {
        BookingEvent::BookingHeld { price, .. } => price.total_kzt,
        _ => Kzt::ZERO,
    }
}

/// Listings per INSERT statement (about 45 events each with the default calendars).
const BULK_LISTINGS_PER_BATCH: usize = 100;
/// Concurrent INSERTs.
const BULK_WRITERS: usize = 2;

async fn bulk(
    db: &Database,
    rng: &mut StdRng,
    target: u64,
    today: NaiveDate,
    o: &SeedOptions,
    report: &mut SeedReport,
) -> Result<()> {
    let Database::Postgres(pool) = db else {
        anyhow::bail!("bulk mode needs PostgreSQL");
    };
    let have = event_count(db).await? as u64;
    if have >= target {
        return Ok(());
    }
    let missing = target - have;
    // Same calendars as the command phase: 20 stays a listing unless told otherwise.
    let per_listing = if o.listings > 0 && o.bookings > 0 {
        (o.bookings / o.listings).max(1)
    } else {
        20
    };
    let bar = progress(missing, "bulk");
    let logger = log_progress(&bar, "bulk events");
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Row>>(BULK_WRITERS * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..BULK_WRITERS {
        let (rx, pool, bar) = (rx.clone(), pool.clone(), bar.clone());
        writers.spawn(async move {
            loop {
                let batch = rx.lock().await.recv().await;
                let Some(batch) = batch else {
                    return Ok::<_, anyhow::Error>(());
                };
                insert_rows(&pool, &batch).await?;
                bar.inc(batch.len() as u64);
            }
        });
    }
    // Generate on a blocking thread (JSON and SHA-256) while the writers insert, a batch of
    // listings at a time, until enough events are made.
    let mut gen_rng = rng.clone();
    let (first, days, cancel_share, confirm_share) =
        (o.listings, o.days, o.cancel_share, o.confirm_share);
    let made = Arc::new(AtomicU64::new(0));
    let made_in = made.clone();
    let generator = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        let mut written = 0u64;
        let mut done_listings = 0usize;
        while written < missing {
            let chunk = plan_listings(
                &mut gen_rng,
                first + done_listings,
                BULK_LISTINGS_PER_BATCH,
                BULK_LISTINGS_PER_BATCH * per_listing,
                days,
                cancel_share,
            );
            let mut rows = Vec::with_capacity(chunk.len() * 48);
            for plan in &chunk {
                listing_rows(plan, today, now, confirm_share, &mut rows);
                done_listings += 1;
                if written + rows.len() as u64 >= missing {
                    break;
                }
            }
            written += rows.len() as u64;
            if tx.blocking_send(rows).is_err() {
                break;
            }
        }
        made_in.store(written, Ordering::Relaxed);
        done_listings as u64
    });
    let bulk_listings = generator.await.context("the bulk generator panicked")?;
    while let Some(done) = writers.join_next().await {
        done.context("a bulk writer panicked")??;
    }
    bar.finish();
    if let Some(l) = logger {
        l.abort();
    }
    report.bulk_listings = bulk_listings;
    report.bulk_events = made.load(Ordering::Relaxed);
    report.bulk_time = started.elapsed();
    Ok(())
}

async fn insert_rows(pool: &sqlx::PgPool, rows: &[Row]) -> Result<()> {
    let types: Vec<&str> = rows.iter().map(|r| r.aggregate_type).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.aggregate_id.as_str()).collect();
    let sequences: Vec<i64> = rows.iter().map(|r| r.sequence).collect();
    let event_types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    let versions: Vec<&str> = rows.iter().map(|r| r.event_version.as_str()).collect();
    let payloads: Vec<Json<&Value>> = rows.iter().map(|r| Json(&r.payload)).collect();
    let metadata: Vec<Json<&Value>> = rows.iter().map(|r| Json(&r.metadata)).collect();
    // One statement: rows get their positions in array order, so every aggregate's events
    // keep their sequence order in the global order too.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
         $6::jsonb[], $7::jsonb[])",
    )
    .bind(types)
    .bind(ids)
    .bind(sequences)
    .bind(event_types)
    .bind(versions)
    .bind(payloads)
    .bind(metadata)
    .execute(pool)
    .await
    .context("inserting bulk events")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_valid_deterministic_and_free_of_overlaps() {
        let plan = |seed| plan_listings(&mut StdRng::seed_from_u64(seed), 0, 50, 1_000, 365, 0.1);
        let (a, b) = (plan(7), plan(7));
        assert_eq!(a.len(), 50);
        assert_eq!(a.iter().map(|p| p.stays.len()).sum::<usize>(), 1_000);
        for (p, q) in a.iter().zip(&b) {
            assert_eq!(p.details, q.details);
            p.details.validate().expect("valid details");
            let mut end = 1;
            for s in &p.stays {
                assert!(s.offset >= end, "stays overlap");
                assert!((1..=7).contains(&s.nights) || s.nights == p.details.min_nights);
                assert!(s.guests >= 1 && s.guests <= p.details.max_guests);
                end = s.offset + s.nights as i64;
            }
            assert!(end <= 366);
        }
    }

    #[test]
    fn bulk_rows_chain_per_aggregate() {
        let mut rng = StdRng::seed_from_u64(1);
        let plans = plan_listings(&mut rng, 0, 1, 20, 365, 0.5);
        let mut rows = Vec::new();
        listing_rows(&plans[0], crate::kz_today(), Utc::now(), 0.0, &mut rows);
        let cancels = plans[0].stays.iter().filter(|s| s.cancel).count();
        assert_eq!(rows.len(), 1 + 2 * 20 + 2 * cancels);
        let mut heads: std::collections::HashMap<&str, (i64, String)> = Default::default();
        for r in &rows {
            let (seq, prev) = heads
                .get(r.aggregate_id.as_str())
                .cloned()
                .unwrap_or((0, GENESIS_HASH.to_string()));
            assert_eq!(r.sequence, seq + 1);
            let hash = event_hash(
                &prev,
                &ChainInput {
                    aggregate_type: r.aggregate_type,
                    aggregate_id: &r.aggregate_id,
                    sequence: r.sequence,
                    event_type: &r.event_type,
                    event_version: &r.event_version,
                    payload: &r.payload,
                    metadata: &r.metadata,
                },
            );
            assert_eq!(r.metadata["hash"].as_str(), Some(hash.as_str()));
            assert!(r.metadata["event_id"].as_str().is_some());
            heads.insert(&r.aggregate_id, (r.sequence, hash));
        }
        assert!(rows[0].payload.get("ListingCreated").is_some());
    }
}
