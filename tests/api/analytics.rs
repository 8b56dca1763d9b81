//! Analytics against the oracle (`analytics_oracle.rs`): a randomized workload of more than
//! 5,000 commands through the command layer — bookings on every channel, payments through
//! Kaspi's notifications, cancellations at every policy tier with their refunds, expired holds,
//! blocks, check-ins, completions, listings paused and resumed — then every endpoint equals the
//! brute-force figures for random ranges, groupings, cities and listings, now and at 20+ random
//! instants in the past; a host's figures equal the oracle's on their listings; the rebuilt
//! read model equals the incremental one row for row.
use crate::analytics_oracle::{self as oracle, Question, Raw};
use crate::helpers::*;
use crate::on_both_backends;
use crate::projections::settle;
use crate::workload::{self, World, CITIES};
use chrono::{Datelike, Duration, Utc};
use commands::{BookRequest, CommandMeta, Commands};
use domain::cancellation::CancellationPolicy;
use domain::listing::{ListingChanges, ListingStatus};
use domain::{Actor, Channel, DateRange, Kzt, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

const CHANNELS: [Channel; 5] = [
    Channel::Telegram,
    Channel::Whatsapp,
    Channel::Web,
    Channel::Mobile,
    Channel::Api,
];

#[derive(Clone, Copy, Debug)]
struct Stay {
    booking: Uuid,
    listing: Uuid,
    guest: Uuid,
    channel: Channel,
    range: DateRange,
}

/// What the workload has going, to pick its next command from.
#[derive(Default)]
struct Going {
    held: Vec<Stay>,
    confirmed: Vec<Stay>,
    checked_in: Vec<Stay>,
    blocks: Vec<(Uuid, Uuid, Uuid)>,
    active: HashMap<Uuid, bool>,
    commands: usize,
    accepted: usize,
    cancelled_paid: usize,
}

fn meta(user: Uuid, role: Role, channel: Channel) -> CommandMeta {
    CommandMeta::new(
        Actor {
            user_id: user,
            role,
        },
        channel,
        Uuid::now_v7(),
    )
}

fn take<T>(items: &mut Vec<T>, rng: &mut StdRng) -> Option<T> {
    (!items.is_empty()).then(|| items.swap_remove(rng.random_range(0..items.len())))
}

/// Pays a held booking as the guest would: the payment link, then paid at Kaspi (the
/// sandbox), which sends its `pay` notification to the service.
async fn pay(commands: &Commands, kaspi: &kaspi_sandbox::Sandbox, s: &Stay) -> bool {
    let Ok(payment) = commands
        .start_payment(s.booking, &meta(s.guest, Role::Guest, s.channel))
        .await
    else {
        return false;
    };
    match payment.value.kaspi_payment_id {
        Some(id) => kaspi.pay(id).await,
        None => false,
    }
}

async fn step(
    commands: &Commands,
    kaspi: &kaspi_sandbox::Sandbox,
    world: &World,
    going: &Mutex<Going>,
    rng: &mut StdRng,
) {
    let roll = rng.random_range(0..100);
    let listing = world.listings[rng.random_range(0..world.listings.len())].clone();
    let (sent, done) = if roll < 34 {
        let guest = Uuid::now_v7();
        let channel = CHANNELS[rng.random_range(0..CHANNELS.len())];
        let range = workload::range(rng, 60, 4);
        let req = BookRequest {
            listing_id: listing.id,
            range,
            guests: 1,
        };
        let booked = commands.book(req, &meta(guest, Role::Guest, channel)).await;
        if let Ok(w) = &booked {
            let stay = Stay {
                booking: w.value.id.unwrap(),
                listing: listing.id,
                guest,
                channel,
                range,
            };
            going.lock().unwrap().held.push(stay);
        }
        (1, booked.is_ok())
    } else if roll < 56 {
        let Some(s) = take(&mut going.lock().unwrap().held, rng) else {
            return;
        };
        if pay(commands, kaspi, &s).await {
            going.lock().unwrap().confirmed.push(s);
        }
        (2, true)
    } else if roll < 66 {
        let paid = rng.random_bool(0.7);
        let s = {
            let mut g = going.lock().unwrap();
            if paid {
                take(&mut g.confirmed, rng)
            } else {
                take(&mut g.held, rng)
            }
        };
        let Some(s) = s else { return };
        let ok = commands
            .cancel_booking(
                s.booking,
                "plans changed".into(),
                &meta(s.guest, Role::Guest, s.channel),
            )
            .await
            .is_ok();
        if ok && paid {
            going.lock().unwrap().cancelled_paid += 1;
        }
        (1, ok)
    } else if roll < 72 {
        let Some(s) = take(&mut going.lock().unwrap().held, rng) else {
            return;
        };
        let later = Utc::now() + Duration::hours(1);
        let _ = commands.expire_hold(s.booking, s.listing, later).await;
        (1, true)
    } else if roll < 80 {
        let span = workload::range(rng, 60, 2);
        let blocked = commands
            .block_dates(
                listing.id,
                span,
                "repairs".into(),
                &meta(listing.host, Role::Host, Channel::Web),
            )
            .await;
        if let Ok(w) = blocked {
            going
                .lock()
                .unwrap()
                .blocks
                .push((w.value, listing.id, listing.host));
        }
        (1, true)
    } else if roll < 84 {
        let Some((block, at, host)) = take(&mut going.lock().unwrap().blocks, rng) else {
            return;
        };
        let _ = commands
            .unblock_dates(at, block, &meta(host, Role::Host, Channel::Web))
            .await;
        (1, true)
    } else if roll < 90 {
        let Some(s) = take(&mut going.lock().unwrap().confirmed, rng) else {
            return;
        };
        if matches!(
            commands.advance_stay(s.booking, s.range.check_in()).await,
            Ok(true)
        ) {
            going.lock().unwrap().checked_in.push(s);
        }
        (1, true)
    } else if roll < 95 {
        let Some(s) = take(&mut going.lock().unwrap().checked_in, rng) else {
            return;
        };
        let _ = commands.advance_stay(s.booking, s.range.check_out()).await;
        (1, true)
    } else {
        let active = {
            let mut g = going.lock().unwrap();
            let a = g.active.entry(listing.id).or_insert(true);
            *a = !*a;
            *a
        };
        let changes = ListingChanges {
            status: Some(if active {
                ListingStatus::Active
            } else {
                ListingStatus::Paused
            }),
            ..ListingChanges::default()
        };
        let _ = commands
            .update_listing(
                listing.id,
                changes,
                &meta(listing.host, Role::Host, Channel::Web),
            )
            .await;
        (1, true)
    };
    let mut g = going.lock().unwrap();
    g.commands += sent;
    g.accepted += usize::from(done) * sent;
}

/// Listings over the three cities with all three cancellation policies, then `target`
/// commands from `workers` workers.
async fn drive(app: &TestApp, listings: usize, target: usize, workers: usize) -> Arc<World> {
    let commands = app.state.commands.clone();
    let world = Mutex::new(World::default());
    workload::create_listings(&commands, &world, listings, 5).await;
    let world = Arc::new(world.into_inner().unwrap());
    let going = Arc::new(Mutex::new(Going::default()));
    for (i, l) in world.listings.iter().enumerate() {
        let policy = [
            CancellationPolicy::Flexible,
            CancellationPolicy::Moderate,
            CancellationPolicy::Strict,
        ][i % 3];
        let changes = ListingChanges {
            cancellation_policy: Some(policy),
            // Cleaning fees differ per listing, so a misplaced fee shows.
            cleaning_fee_kzt: Some(Kzt(1000 * (i as i64 % 7 + 1))),
            ..ListingChanges::default()
        };
        commands
            .update_listing(l.id, changes, &meta(l.host, Role::Host, Channel::Web))
            .await
            .expect("set the policy");
    }
    let mut tasks = vec![];
    for w in 0..workers {
        let (commands, world, going) = (commands.clone(), world.clone(), going.clone());
        let kaspi = app.state.kaspi.clone();
        tasks.push(tokio::spawn(async move {
            let kaspi = kaspi.sandbox.as_ref().expect("sandbox mode");
            let mut rng = StdRng::seed_from_u64(0xA11A ^ ((w as u64 + 1) * 7919));
            while going.lock().unwrap().commands < target {
                step(&commands, kaspi, &world, &going, &mut rng).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let g = going.lock().unwrap();
    eprintln!(
        "{} commands, {} accepted, {} paid bookings cancelled",
        g.commands, g.accepted, g.cancelled_paid
    );
    assert!(g.commands >= target, "{} commands", g.commands);
    assert!(g.cancelled_paid > 0, "no paid booking was cancelled");
    world
}

/// Waits until the store is quiet (the payment flow's follow-ups done) and every projection
/// has it; returns the events.
async fn quiet(app: &TestApp) -> Vec<Raw> {
    let mut count = 0;
    loop {
        settle(app).await;
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let now = app.event_count().await;
        if now == count {
            settle(app).await;
            return oracle::events(&app.db).await;
        }
        count = now;
    }
}

pub fn us_to_rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Asks an analytics endpoint; returns the whole JSON answer.
pub async fn ask(app: &TestApp, token: &str, path: &str, params: &[(&str, String)]) -> Value {
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .query(params)
        .send()
        .await
        .expect("request");
    let (status, body) = status_and_json(res).await;
    assert_eq!(status, 200, "{path} {params:?}: {body}");
    body
}

fn params(q: &Question, as_of: Option<i64>, last: i64) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("from", q.from.to_string()),
        ("to", q.to.to_string()),
        ("group_by", q.group.to_string()),
        ("min_position", last.to_string()),
    ];
    if let Some(c) = &q.city {
        p.push(("city", c.clone()));
    }
    if let Some(l) = q.listing {
        p.push(("listing_id", l.to_string()));
    }
    if let Some(t) = as_of {
        p.push(("as_of", us_to_rfc3339(t)));
    }
    p
}

const GROUPS: [&str; 6] = ["day", "week", "month", "listing", "city", "channel"];

fn question(rng: &mut StdRng, world: &World, host: Option<Uuid>) -> Question {
    let today = workload::today();
    let from = today + Duration::days(rng.random_range(-3..30));
    let to = from + Duration::days(rng.random_range(1..40));
    let city = rng.random_bool(0.3).then(|| {
        let c = CITIES[rng.random_range(0..CITIES.len())].0;
        if rng.random_bool(0.5) {
            c.to_lowercase()
        } else {
            c.to_string()
        }
    });
    let own: Vec<&workload::ListingFact> = world
        .listings
        .iter()
        .filter(|l| host.is_none_or(|h| h == l.host))
        .collect();
    let listing = rng
        .random_bool(0.15)
        .then(|| own[rng.random_range(0..own.len())].id);
    Question {
        from,
        to,
        city,
        listing,
        host,
        group: GROUPS[rng.random_range(0..GROUPS.len())],
    }
}

fn assert_items(what: &str, q: &Question, answer: &Value, expected: &[Value]) {
    let items = answer["items"].as_array().expect("items");
    let shown = |v: &[Value]| serde_json::to_string_pretty(v).unwrap();
    if items.len() != expected.len() || !items.iter().zip(expected).all(|(a, e)| oracle::same(a, e))
    {
        let first = items
            .iter()
            .zip(expected)
            .find(|(a, e)| !oracle::same(a, e))
            .map(|(a, e)| format!("first difference:\n got      {a}\n expected {e}"))
            .unwrap_or_else(|| format!("{} items, expected {}", items.len(), expected.len()));
        panic!(
            "{what} {q:?}\n{first}\n(all expected: {})",
            if expected.len() < 20 {
                shown(expected)
            } else {
                "…".into()
            }
        );
    }
}

/// Every endpoint against the oracle for one random question at instant `as_of`.
async fn check_all(
    app: &TestApp,
    token: &str,
    events: &[Raw],
    q: &Question,
    as_of: Option<i64>,
    rng: &mut StdRng,
) {
    let last = events.last().map_or(0, |e| e.position);
    let t = as_of.unwrap_or(i64::MAX);
    let known = oracle::known_at(events, t);
    let p = params(q, as_of, last);
    for (path, expected) in [
        ("occupancy", oracle::occupancy(&known, q)),
        ("revenue", oracle::revenue(&known, q)),
        ("funnel", oracle::funnel(&known, q)),
        ("stays", oracle::stays(&known, q)),
    ] {
        let answer = ask(app, token, &format!("/api/v1/analytics/{path}"), &p).await;
        assert!(answer["position"].as_i64().unwrap() >= last, "{answer}");
        assert!(answer["definitions"]["occupancy"].is_string());
        assert_items(path, q, &answer, &expected);
    }
    let mut channel_params = p.clone();
    channel_params.retain(|(k, _)| *k != "group_by");
    let answer = ask(app, token, "/api/v1/analytics/channels", &channel_params).await;
    assert_items("channels", q, &answer, &oracle::channels(&known, q));
    // Pickup between two instants of the workload.
    let (first_us, last_us) = (events[0].at_us, events.last().unwrap().at_us);
    let b = rng.random_range(first_us..=last_us);
    let mut pickup_params = p.clone();
    pickup_params.push(("compare_to", us_to_rfc3339(b)));
    let answer = ask(app, token, "/api/v1/analytics/pickup", &pickup_params).await;
    assert_items("pickup", q, &answer, &oracle::pickup(events, q, t, b));
    // The facts behind nights sold and room revenue.
    let mut facts_params = p.clone();
    facts_params.retain(|(k, _)| *k != "group_by");
    facts_params.push(("metric", "room_revenue_kzt".into()));
    let answer = ask(app, token, "/api/v1/analytics/facts", &facts_params).await;
    assert_items("facts", q, &answer, &oracle::facts(&known, q));
}

/// Kaspi's own limit (10 requests/s) would set the workload's pace; the sandbox takes more.
pub const FAST_KASPI: &[(&str, &str)] = &[("KASPI_REQUESTS_PER_SECOND", "2000")];

/// The workload reached every kind of fact, so the comparisons compare something: every
/// channel sold nights, refunds were returned, stays were checked in and completed, holds
/// expired, nights were blocked.
async fn assert_workload_covers_everything(app: &TestApp, token: &str, events: &[Raw]) {
    let today = workload::today();
    let last = events.last().unwrap().position;
    let all = Question {
        from: today - Duration::days(2),
        to: today + Duration::days(70),
        city: None,
        listing: None,
        host: None,
        group: "channel",
    };
    let revenue = ask(
        app,
        token,
        "/api/v1/analytics/revenue",
        &params(&all, None, last),
    )
    .await;
    let items = revenue["items"].as_array().unwrap();
    let sum = |field: &str| {
        items
            .iter()
            .map(|i| i[field].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(items.len(), 5, "every channel sold: {revenue}");
    assert!(
        items.iter().all(|i| i["nights_sold"].as_i64().unwrap() > 0),
        "{revenue}"
    );
    assert!(
        sum("refunds_kzt") > 0 && sum("cleaning_fees_kzt") > 0,
        "{revenue}"
    );
    let funnel = ask(
        app,
        token,
        "/api/v1/analytics/funnel",
        &params(
            &Question {
                group: "city",
                ..all.clone()
            },
            None,
            last,
        ),
    )
    .await;
    let items = funnel["items"].as_array().unwrap();
    for field in [
        "held",
        "paid",
        "checked_in",
        "completed",
        "expired",
        "cancelled",
    ] {
        let n: i64 = items.iter().map(|i| i[field].as_i64().unwrap()).sum();
        assert!(n > 0, "no {field}: {funnel}");
    }
    let occupancy = ask(
        app,
        token,
        "/api/v1/analytics/occupancy",
        &params(
            &Question {
                group: "month",
                ..all
            },
            None,
            last,
        ),
    )
    .await;
    let blocked: i64 = occupancy["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["nights_blocked"].as_i64().unwrap())
        .sum();
    assert!(blocked > 0, "{occupancy}");
}

async fn figures_equal_the_oracle(backend: Backend, test: &str) {
    let Some(app) = spawn_app_with(backend, test, FAST_KASPI).await else {
        return;
    };
    let started = std::time::Instant::now();
    let world = drive(&app, 60, 5_000, 3).await;
    let events = quiet(&app).await;
    eprintln!("{} events in {:?}", events.len(), started.elapsed());
    assert!(events.len() > 5_000, "{} events", events.len());
    let analyst = app.token(Role::Analyst, Uuid::now_v7());
    assert_workload_covers_everything(&app, &analyst, &events).await;
    let mut rng = StdRng::seed_from_u64(2026);
    // Everything known.
    for _ in 0..12 {
        let q = question(&mut rng, &world, None);
        check_all(&app, &analyst, &events, &q, None, &mut rng).await;
    }
    // As known at 24 instants across the workload.
    let (first_us, last_us) = (events[0].at_us, events.last().unwrap().at_us);
    for _ in 0..24 {
        let t = rng.random_range(first_us..=last_us);
        let q = question(&mut rng, &world, None);
        check_all(&app, &analyst, &events, &q, Some(t), &mut rng).await;
    }
    // A host's figures are the oracle's on their listings only.
    for _ in 0..4 {
        let host = world.listings[rng.random_range(0..world.listings.len())].host;
        let token = app.token(Role::Host, host);
        let q = question(&mut rng, &world, Some(host));
        let t = rng
            .random_bool(0.5)
            .then(|| rng.random_range(first_us..=last_us));
        check_all(&app, &token, &events, &q, t, &mut rng).await;
    }
    // Grouped by listing over whole calendar months (the fold's monthly totals, the nights of
    // the partial months at either end), now and as known at earlier instants.
    let month = workload::today().with_day(1).unwrap();
    for i in 0..6 {
        let q = Question {
            from: month - Duration::days(rng.random_range(0..5)),
            to: month.checked_add_months(chrono::Months::new(2)).unwrap()
                + Duration::days(rng.random_range(0..5)),
            city: (i % 3 == 0).then(|| CITIES[i % CITIES.len()].0.to_lowercase()),
            listing: None,
            host: None,
            group: "listing",
        };
        let t = (i % 2 == 1).then(|| rng.random_range(first_us..=last_us));
        check_all(&app, &analyst, &events, &q, t, &mut rng).await;
    }
    // Rebuilt from the store, the read model is the same row for row.
    let incremental = app.state.reads.analytics.dump().await.unwrap();
    let folded = app.state.reads.analytics.rebuild(None).await.unwrap();
    assert_eq!(folded as usize, events.len());
    let rebuilt = app.state.reads.analytics.dump().await.unwrap();
    crate::projections::assert_same_rows(&[incremental], &[rebuilt]);
    let q = question(&mut rng, &world, None);
    check_all(&app, &analyst, &events, &q, None, &mut rng).await;
    app.finish().await;
}
on_both_backends!(
    analytics_equal_the_oracle_after_5k_random_commands,
    figures_equal_the_oracle
);
