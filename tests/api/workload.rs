//! A randomized workload driven through the command side (the same code the API calls), with a
//! model of what the calendars must look like afterwards.
use chrono::{Duration, NaiveDate, Utc};
use commands::{BookRequest, CommandMeta, Commands};
use domain::cancellation::CancellationPolicy;
use domain::listing::{ListingChanges, ListingDetails, ListingStatus};
use domain::pricing::{PriceRules, WeekdayPrice};
use domain::{Actor, Channel, DateRange, Kzt, Location, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

pub const CITIES: [(&str, f64, f64); 3] = [
    ("Almaty", 43.2389, 76.8897),
    ("Astana", 51.1605, 71.4704),
    ("Shymkent", 42.3417, 69.5901),
];

#[derive(Clone, Debug)]
pub struct ListingFact {
    pub id: Uuid,
    pub host: Uuid,
    pub city: String,
    pub max_guests: u32,
    pub min_nights: u32,
    pub max_nights: u32,
    pub active: bool,
}

/// What the calendars hold, as the commands' results say.
#[derive(Default, Debug)]
pub struct World {
    pub listings: Vec<ListingFact>,
    /// Live reservations: (booking, listing, range).
    pub stays: Vec<(Uuid, Uuid, DateRange)>,
    /// Host blocks: (block, listing, range).
    pub blocks: Vec<(Uuid, Uuid, DateRange)>,
    /// Commands sent, accepted or not.
    pub commands: usize,
    pub accepted: usize,
}

impl World {
    /// The brute-force answer: every listing in `city` that takes `guests` for a stay this long
    /// and has no stay or block on any night of `range`.
    pub fn free(&self, city: &str, range: &DateRange, guests: u32) -> BTreeSet<Uuid> {
        self.listings
            .iter()
            .filter(|l| l.active && l.city.eq_ignore_ascii_case(city))
            .filter(|l| l.max_guests >= guests)
            .filter(|l| (l.min_nights..=l.max_nights).contains(&range.nights()))
            .filter(|l| {
                range.each_night().all(|night| {
                    let taken = |r: &DateRange| r.check_in() <= night && night < r.check_out();
                    !self.stays.iter().any(|(_, at, r)| *at == l.id && taken(r))
                        && !self.blocks.iter().any(|(_, at, r)| *at == l.id && taken(r))
                })
            })
            .map(|l| l.id)
            .collect()
    }
}

pub fn today() -> NaiveDate {
    domain::local_date(Utc::now())
}

fn meta(user: Uuid, role: Role) -> CommandMeta {
    CommandMeta::new(
        Actor {
            user_id: user,
            role,
        },
        Channel::Api,
        Uuid::now_v7(),
    )
}

pub fn range(rng: &mut impl Rng, horizon: i64, max_nights: i64) -> DateRange {
    let start = today() + Duration::days(rng.random_range(1..horizon));
    let end = start + Duration::days(rng.random_range(1..=max_nights));
    DateRange::parse(start, end).expect("valid range")
}

/// Creates `n` listings spread over [`CITIES`].
pub async fn create_listings(commands: &Commands, world: &Mutex<World>, n: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..n {
        let (city, lat, lon) = CITIES[i % CITIES.len()];
        let host = Uuid::now_v7();
        let max_guests = rng.random_range(1..=6);
        let min_nights = rng.random_range(1..=2);
        let max_nights = rng.random_range(5..=30);
        let details = ListingDetails {
            title: format!("Квартира №{i}"),
            city: city.to_string(),
            address: format!("Street {i}"),
            location: Some(
                Location::parse(
                    lat + rng.random_range(-0.05..0.05),
                    lon + rng.random_range(-0.05..0.05),
                )
                .unwrap(),
            ),
            rooms: rng.random_range(1..=4),
            max_guests,
            pricing: PriceRules {
                nightly_price_kzt: Kzt(rng.random_range(10..60) * 1000),
                cleaning_fee_kzt: Kzt(5000),
                weekday_prices: vec![WeekdayPrice {
                    weekday: 6,
                    nightly_price_kzt: Kzt(70_000),
                }],
                range_prices: vec![],
            },
            min_nights,
            max_nights,
            cancellation_policy: CancellationPolicy::Moderate,
            photos: vec![format!("https://cdn.zhilego.kz/{i}.jpg")],
            amenities: vec![
                "wifi".into(),
                if i % 2 == 0 { "parking" } else { "kitchen" }.into(),
            ],
        };
        let written = commands
            .create_listing(
                host,
                details,
                ListingStatus::Active,
                &meta(host, Role::Host),
            )
            .await
            .expect("create listing");
        let mut w = world.lock().unwrap();
        w.commands += 1;
        w.accepted += 1;
        w.listings.push(ListingFact {
            id: written.value.id.unwrap(),
            host,
            city: city.to_string(),
            max_guests,
            min_nights,
            max_nights,
            active: true,
        });
    }
}

/// Sends random commands until `world.commands` reaches `target`, from `workers` concurrent
/// workers. The model in `world` is exact with one worker.
pub async fn run(
    commands: Arc<Commands>,
    world: Arc<Mutex<World>>,
    target: usize,
    workers: usize,
    seed: u64,
) {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let commands = commands.clone();
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ ((w as u64 + 1) * 0x9E37_79B9));
            while world.lock().unwrap().commands < target {
                step(&commands, &world, &mut rng, w == 0).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

async fn step(commands: &Commands, world: &Mutex<World>, rng: &mut StdRng, may_edit: bool) {
    let roll = rng.random_range(0..100);
    let listing = {
        let w = world.lock().unwrap();
        w.listings[rng.random_range(0..w.listings.len())].clone()
    };
    let accepted = if roll < 55 {
        let stay = range(rng, 60, 6);
        let guest = Uuid::now_v7();
        let req = BookRequest {
            listing_id: listing.id,
            range: stay,
            guests: rng.random_range(1..=4),
        };
        match commands.book(req, &meta(guest, Role::Guest)).await {
            Ok(written) => {
                let id = written.value.id.unwrap();
                world.lock().unwrap().stays.push((id, listing.id, stay));
                true
            }
            Err(_) => false,
        }
    } else if roll < 70 {
        let claimed = take(&mut world.lock().unwrap().stays, rng);
        match claimed {
            Some(stay) => {
                let ok = commands
                    .cancel_booking(
                        stay.0,
                        "plans changed".into(),
                        &meta(Uuid::nil(), Role::Admin),
                    )
                    .await
                    .is_ok();
                if !ok {
                    world.lock().unwrap().stays.push(stay);
                }
                ok
            }
            None => false,
        }
    } else if roll < 78 {
        let claimed = take(&mut world.lock().unwrap().stays, rng);
        match claimed {
            Some(stay) => {
                // The hold is 15 minutes; an hour from now it has run out.
                let later = Utc::now() + Duration::hours(1);
                let ok = matches!(commands.expire_hold(stay.0, stay.1, later).await, Ok(true));
                if !ok {
                    world.lock().unwrap().stays.push(stay);
                }
                ok
            }
            None => false,
        }
    } else if roll < 86 {
        let span = range(rng, 60, 4);
        match commands
            .block_dates(
                listing.id,
                span,
                "repairs".into(),
                &meta(listing.host, Role::Host),
            )
            .await
        {
            Ok(written) => {
                world
                    .lock()
                    .unwrap()
                    .blocks
                    .push((written.value, listing.id, span));
                true
            }
            Err(_) => false,
        }
    } else if roll < 92 {
        let claimed = take(&mut world.lock().unwrap().blocks, rng);
        match claimed {
            Some(block) => {
                let host = listing_host(world, block.1);
                let ok = commands
                    .unblock_dates(block.1, block.0, &meta(host, Role::Host))
                    .await
                    .is_ok();
                if !ok {
                    world.lock().unwrap().blocks.push(block);
                }
                ok
            }
            None => false,
        }
    } else if may_edit {
        // Listing edits come from one worker, so the model follows the store's order.
        let mut changes = ListingChanges::default();
        let mut fact = listing.clone();
        if roll < 96 {
            fact.max_guests = rng.random_range(1..=6);
            changes.max_guests = Some(fact.max_guests);
            changes.nightly_price_kzt = Some(Kzt(rng.random_range(10..60) * 1000));
        } else {
            fact.active = !fact.active;
            changes.status = Some(if fact.active {
                ListingStatus::Active
            } else {
                ListingStatus::Paused
            });
        }
        let ok = commands
            .update_listing(listing.id, changes, &meta(listing.host, Role::Host))
            .await
            .is_ok();
        if ok {
            let mut w = world.lock().unwrap();
            if let Some(l) = w.listings.iter_mut().find(|l| l.id == fact.id) {
                *l = fact;
            }
        }
        ok
    } else {
        return;
    };
    let mut w = world.lock().unwrap();
    w.commands += 1;
    if accepted {
        w.accepted += 1;
    }
}

fn take<T>(items: &mut Vec<T>, rng: &mut StdRng) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        let i = rng.random_range(0..items.len());
        Some(items.swap_remove(i))
    }
}

fn listing_host(world: &Mutex<World>, listing: Uuid) -> Uuid {
    world
        .lock()
        .unwrap()
        .listings
        .iter()
        .find(|l| l.id == listing)
        .map(|l| l.host)
        .unwrap_or_default()
}
