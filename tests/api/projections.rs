//! Read models: rebuilt equals incremental after a randomized workload, availability search
//! against a brute-force oracle, search and calendar endpoints, and the iCal feed.
use crate::helpers::*;
use crate::on_both_backends;
use crate::workload::{self, World, CITIES};
use chrono::Duration;
use domain::{DateRange, Role};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Waits until every projection has applied everything the store holds.
pub async fn settle(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let statuses = app.state.reads.statuses().await.expect("statuses");
        if statuses.iter().all(|s| s.behind_events == 0) {
            index_caught_up(app, &app.state.reads.search_index).await;
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projections did not catch up: {statuses:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Repeats `step`, a catch-up that answers how many events are still behind, until none is.
/// One catch-up is not enough on PostgreSQL: the store releases events only below the oldest
/// transaction open anywhere in the cluster, and another test's open transaction, in another
/// database, holds that back.
async fn until_none_behind(what: &str, mut step: impl AsyncFnMut() -> i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let behind = step().await;
        if behind == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not catch up: {behind} events behind"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Catches a projection up with everything the store holds (see [`until_none_behind`]).
pub async fn caught_up<P: projections::Projection>(projection: &projections::Projector<P>) {
    until_none_behind(P::NAME, async || {
        projection.catch_up().await.unwrap();
        projection.status().await.unwrap().behind_events
    })
    .await;
}

/// The same for a search index.
pub async fn index_caught_up(app: &TestApp, index: &projections::SearchIndex) {
    until_none_behind("the search index", async || {
        index.catch_up().await.unwrap();
        store::history::backlog(&app.db, index.checkpoint())
            .await
            .unwrap()
            .events
    })
    .await;
}

/// Every projection's rows, as built so far.
pub async fn dump_all(app: &TestApp) -> Vec<Vec<String>> {
    let reads = &app.state.reads;
    vec![
        reads.bookings.dump().await.unwrap(),
        reads.availability.dump().await.unwrap(),
        reads.listings.dump().await.unwrap(),
        reads.analytics.dump().await.unwrap(),
    ]
}

/// Rebuilds every projection from one scan of the store, as `zhilego projections rebuild all`
/// does; returns the events each projection holds after it.
pub async fn rebuild_all(app: &TestApp) -> Vec<u64> {
    let names = ["bookings", "availability", "listings", "analytics"];
    let summary = app.state.reads.rebuild(&names, None).await.unwrap();
    assert_eq!(
        summary
            .projections
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>(),
        names
    );
    summary.projections.iter().map(|p| p.events).collect()
}

/// Rebuilds every projection on its own, one after the other.
pub async fn rebuild_each(app: &TestApp) -> Vec<u64> {
    let reads = &app.state.reads;
    vec![
        reads.bookings.rebuild(None).await.unwrap(),
        reads.availability.rebuild(None).await.unwrap(),
        reads.listings.rebuild(None).await.unwrap(),
        reads.analytics.rebuild(None).await.unwrap(),
    ]
}

pub fn assert_same_rows(incremental: &[Vec<String>], rebuilt: &[Vec<String>]) {
    for (a, b) in incremental.iter().zip(rebuilt) {
        if a != b {
            let first = a
                .iter()
                .zip(b)
                .find(|(x, y)| x != y)
                .map(|(x, y)| format!("incremental: {x}\nrebuilt:     {y}"))
                .unwrap_or_else(|| format!("{} rows vs {} rows", a.len(), b.len()));
            panic!("rebuilt projection differs from the incremental one\n{first}");
        }
    }
}

async fn rebuild_equals_incremental(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let world = Arc::new(Mutex::new(World::default()));
    workload::create_listings(&app.state.commands, &world, 60, 7).await;
    workload::run(app.state.commands.clone(), world.clone(), 10_000, 6, 11).await;
    let (sent, accepted) = {
        let w = world.lock().unwrap();
        (w.commands, w.accepted)
    };
    assert!(
        sent >= 10_000 && accepted > 3_000,
        "{sent} sent, {accepted} accepted"
    );
    settle(&app).await;
    let events = app.event_count().await as i64;
    let incremental = dump_all(&app).await;
    assert!(incremental.iter().all(|rows| !rows.is_empty()));
    assert_same_rows(&incremental[1..2], &[app.state.reads.search_index.dump()]);
    for status in app.state.reads.statuses().await.unwrap() {
        assert_eq!(
            status.applied, events,
            "{} applied each event once",
            status.name
        );
    }
    let folded = rebuild_all(&app).await;
    assert!(
        folded.iter().all(|n| *n as i64 == events),
        "{folded:?} vs {events}"
    );
    assert_same_rows(&incremental, &dump_all(&app).await);
    // Each on its own scan too.
    let folded = rebuild_each(&app).await;
    assert!(
        folded.iter().all(|n| *n as i64 == events),
        "{folded:?} vs {events}"
    );
    assert_same_rows(&incremental, &dump_all(&app).await);
    app.finish().await;
}
on_both_backends!(
    rebuild_equals_incremental_after_10k_random_commands,
    rebuild_equals_incremental
);

/// Every listing id of an `/availability` search, following the cursor through all pages.
async fn search_all(app: &TestApp, city: &str, range: &DateRange, guests: u32) -> BTreeSet<Uuid> {
    let mut found = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/v1/availability?city={city}&check_in={}&check_out={}&guests={guests}&limit=7",
            range.check_in(),
            range.check_out()
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = app.get(&path, None).await;
        assert_eq!(status, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            let id: Uuid = item["listing_id"].as_str().unwrap().parse().unwrap();
            assert!(found.insert(id), "listing {id} on two pages");
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return found,
        }
    }
}

async fn oracle_case(
    backend: Backend,
    seed: u64,
    commands: usize,
    queries: &[(usize, i64, i64, u32)],
) {
    let Some(app) = spawn_app(backend, &format!("availability_oracle::{seed}")).await else {
        return;
    };
    let world = Arc::new(Mutex::new(World::default()));
    workload::create_listings(&app.state.commands, &world, 12, seed).await;
    workload::run(app.state.commands.clone(), world.clone(), commands, 1, seed).await;
    settle(&app).await;
    for &(city, start, nights, guests) in queries {
        let check_in = workload::today() + Duration::days(start);
        let range = DateRange::parse(check_in, check_in + Duration::days(nights)).unwrap();
        let city = CITIES[city % CITIES.len()].0;
        let expected = world.lock().unwrap().free(city, &range, guests);
        let found = search_all(&app, city, &range, guests).await;
        assert_eq!(found, expected, "{city} {range} for {guests}");
    }
    app.finish().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random bookings, cancellations, expired holds, blocks, unblocks and listing edits; every
    /// search answers exactly the listings a brute-force check of the calendars finds free.
    #[test]
    fn availability_search_agrees_with_brute_force(
        seed in any::<u64>(),
        commands in 40usize..160,
        queries in prop::collection::vec((0usize..3, 1i64..60, 1i64..8, 1u32..6), 12),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(oracle_case(Backend::Sqlite, seed, commands, &queries));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_search_agrees_with_brute_force_on_postgres() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(42);
    let queries: Vec<(usize, i64, i64, u32)> = (0..100)
        .map(|_| {
            use rand::Rng;
            (
                rng.random_range(0..3),
                rng.random_range(1..60),
                rng.random_range(1..8),
                rng.random_range(1..6),
            )
        })
        .collect();
    oracle_case(Backend::Postgres, 42, 400, &queries).await;
}

async fn search_and_calendars(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let host = Uuid::now_v7();
    let host_token = app.token(Role::Host, host);
    let guest_token = app.token(Role::Guest, Uuid::now_v7());
    let a = app
        .create_listing(
            host,
            serde_json::json!({"max_guests": 2, "amenities": ["WiFi", "parking"]}),
        )
        .await;
    let b = app
        .create_listing(
            host,
            serde_json::json!({"max_guests": 6, "nightly_price_kzt": 50000,
                "location": {"lat": 43.35, "lon": 77.0}}),
        )
        .await;
    let _elsewhere = app
        .create_listing(
            host,
            serde_json::json!({"city": "Astana", "location": {"lat": 51.16, "lon": 71.47}}),
        )
        .await;
    let (status, booked) = app
        .post(
            "/api/v1/bookings",
            &guest_token,
            &booking_body(a, 10, 13, 2),
        )
        .await;
    assert_eq!(status, 201, "{booked}");
    let (status, block) = app
        .post(
            &format!("/api/v1/listings/{b}/blocks"),
            &host_token,
            &serde_json::json!({"from": day(20), "to": day(22), "reason": "repairs"}),
        )
        .await;
    assert_eq!(status, 201, "{block}");
    let position = block["position"].as_i64().expect("position");

    // Read-your-writes: with min_position the search already sees both writes.
    let search = |from: i64, to: i64, guests: u32, extra: &str| {
        format!(
            "/api/v1/availability?city=almaty&check_in={}&check_out={}&guests={guests}&min_position={position}{extra}",
            day(from),
            day(to)
        )
    };
    let ids = |body: &serde_json::Value| -> Vec<Uuid> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["listing_id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let (status, body) = app.get(&search(11, 12, 1, ""), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), vec![b], "a is booked those nights");
    let (_, body) = app.get(&search(13, 15, 1, ""), None).await;
    assert_eq!(ids(&body).len(), 2, "check-out day is free again: {body}");
    let (_, body) = app.get(&search(19, 21, 1, ""), None).await;
    assert_eq!(ids(&body), vec![a], "b is blocked");
    let (_, body) = app.get(&search(30, 32, 3, ""), None).await;
    assert_eq!(ids(&body), vec![b], "a takes two guests");
    let (_, body) = app
        .get(&search(30, 32, 1, "&max_price_kzt=30000"), None)
        .await;
    assert_eq!(ids(&body), vec![a]);
    let item = &body["items"][0];
    assert_eq!(item["nights"], 2);
    assert!(item["total_kzt"].as_i64().unwrap() >= 2 * 20000 + 5000);
    let (_, body) = app
        .get(&search(30, 32, 1, "&near=43.35,77.0&radius_km=2"), None)
        .await;
    assert_eq!(ids(&body), vec![b], "only b is near that point");
    assert!(body["items"][0]["distance_km"].as_f64().unwrap() < 0.1);
    let (_, body) = app.get(&search(30, 32, 1, "&limit=1"), None).await;
    assert_eq!(ids(&body).len(), 1);
    let cursor = body["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, page2) = app
        .get(
            &format!("{}&limit=1&cursor={cursor}", search(30, 32, 1, "")),
            None,
        )
        .await;
    assert_eq!(ids(&page2).len(), 1);
    assert_ne!(ids(&page2), ids(&body));
    assert!(page2["next_cursor"].is_null());

    // Bad input: clear errors naming the field.
    for (path, field) in [
        (
            format!(
                "/api/v1/availability?check_in={}&check_out={}",
                day(1),
                day(2)
            ),
            "city",
        ),
        (
            format!(
                "/api/v1/availability?city=Almaty&check_in={}&check_out={}",
                day(3),
                day(2)
            ),
            "check_out",
        ),
        (
            format!(
                "/api/v1/availability?city=Almaty&check_in={}&check_out={}",
                day(-3),
                day(2)
            ),
            "check_in",
        ),
        (
            format!(
                "/api/v1/availability?city=Almaty&check_in={}&check_out={}&guests=0",
                day(1),
                day(2)
            ),
            "guests",
        ),
        (
            format!(
                "/api/v1/availability?city=Almaty&check_in={}&check_out={}&near=91,0",
                day(1),
                day(2)
            ),
            "near",
        ),
        (
            format!(
                "/api/v1/availability?city=Almaty&check_in={}&check_out={}&limit=500",
                day(1),
                day(2)
            ),
            "limit",
        ),
        ("/api/v1/listings?radius_km=5".to_string(), "near"),
    ] {
        let (status, body) = app.get(&path, None).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["code"], "validation_failed");
        assert!(
            body.to_string().contains(field),
            "{path} names {field}: {body}"
        );
    }

    // The catalogue.
    let (status, body) = app
        .get(
            &format!("/api/v1/listings?city=Almaty&min_position={position}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    let (_, body) = app
        .get(
            &format!("/api/v1/listings?amenities=wifi,parking&min_position={position}"),
            None,
        )
        .await;
    let found: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, vec![a.to_string()], "{body}");
    let (_, body) = app
        .get(
            &format!("/api/v1/listings?guests=5&min_position={position}"),
            None,
        )
        .await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let (_, body) = app
        .get(
            &format!("/api/v1/listings?near=51.16,71.47&radius_km=50&min_position={position}"),
            None,
        )
        .await;
    assert_eq!(body["items"][0]["city"], "Astana");

    // The calendar, night by night (read from the availability tables, which the in-memory
    // search index may be ahead of: wait for the writes).
    let (status, cal) = app
        .get(
            &format!(
                "/api/v1/listings/{a}/calendar?from={}&to={}&min_position={position}",
                day(9),
                day(14)
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cal}");
    let statuses: Vec<&str> = cal["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["free", "held", "held", "held", "free"]);
    assert!(cal["days"][0]["price_kzt"].as_i64().unwrap() > 0);
    let (_, cal) = app
        .get(
            &format!(
                "/api/v1/listings/{b}/calendar?from={}&to={}",
                day(20),
                day(23)
            ),
            None,
        )
        .await;
    let statuses: Vec<&str> = cal["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["blocked", "blocked", "free"]);
    let (status, _) = app
        .get(
            &format!("/api/v1/listings/{}/calendar", Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = app
        .get(
            &format!(
                "/api/v1/listings/{a}/calendar?from={}&to={}",
                day(5),
                day(2)
            ),
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // Cancelling frees the nights in search and calendar.
    let booking = booked["id"].as_str().unwrap();
    let (status, cancelled) = app
        .post(
            &format!("/api/v1/bookings/{booking}/cancel"),
            &guest_token,
            &serde_json::json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let released = wait_free(&app, a, 10, 13).await;
    assert!(released, "the nights of a cancelled booking become free");
    app.finish().await;
}
on_both_backends!(
    search_and_calendars_follow_bookings_and_blocks,
    search_and_calendars
);

/// Polls the calendar until the nights `[from, to)` are free.
async fn wait_free(app: &TestApp, listing: Uuid, from: i64, to: i64) -> bool {
    for _ in 0..200 {
        let (_, cal) = app
            .get(
                &format!(
                    "/api/v1/listings/{listing}/calendar?from={}&to={}",
                    day(from),
                    day(to)
                ),
                None,
            )
            .await;
        if cal["days"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "free")
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

async fn ical_feed(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app
        .create_listing(host, serde_json::json!({"title": "Квартира; с видом, на горы — очень длинное название, которое не помещается в одну строку iCal"}))
        .await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let (status, _) = app
        .patch(
            "/api/v1/users/me",
            &guest,
            &serde_json::json!({"name": "Айгерим Сапарова", "phone": "+77011234567"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, booking) = app
        .post("/api/v1/bookings", &guest, &booking_body(listing, 3, 5, 1))
        .await;
    let (_, block) = app
        .post(
            &format!("/api/v1/listings/{listing}/blocks"),
            &app.token(Role::Host, host),
            &serde_json::json!({"from": day(7), "to": day(9), "reason": "family visit"}),
        )
        .await;
    let position = block["position"].as_i64().unwrap();
    let res = app
        .client
        .get(app.url(&format!(
            "/api/v1/listings/{listing}/calendar.ics?min_position={position}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/calendar"));
    let text = res.text().await.unwrap();
    assert!(text.lines().all(|l| l.len() <= 75), "folded lines");
    assert!(
        !text.contains("Айгерим") && !text.contains("+7701"),
        "no guest data"
    );
    // An independent parser reads it.
    let mut parser = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()));
    let calendar = parser.next().expect("one calendar").expect("parses");
    assert!(parser.next().is_none());
    let prop = |props: &[ical::property::Property], name: &str| {
        props
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.clone())
    };
    assert_eq!(
        prop(&calendar.properties, "VERSION").as_deref(),
        Some("2.0")
    );
    assert!(prop(&calendar.properties, "PRODID").is_some());
    assert_eq!(calendar.events.len(), 2);
    let compact = |d: String| d.replace('-', "");
    let mut seen = Vec::new();
    for event in &calendar.events {
        let p = &event.properties;
        assert!(prop(p, "UID").is_some() && prop(p, "DTSTAMP").is_some());
        let start = p.iter().find(|x| x.name == "DTSTART").unwrap();
        assert_eq!(
            start.params.as_ref().unwrap()[0],
            ("VALUE".to_string(), vec!["DATE".to_string()])
        );
        seen.push((
            prop(p, "DTSTART").unwrap(),
            prop(p, "DTEND").unwrap(),
            prop(p, "SUMMARY").unwrap(),
            prop(p, "UID").unwrap(),
        ));
    }
    seen.sort();
    assert_eq!(
        (seen[0].0.clone(), seen[0].1.clone()),
        (compact(day(3)), compact(day(5)))
    );
    assert!(seen[0].3.starts_with(booking["id"].as_str().unwrap()));
    assert_eq!(
        (seen[1].0.clone(), seen[1].1.clone()),
        (compact(day(7)), compact(day(9)))
    );
    assert_eq!(seen[1].2, "Not available");
    assert!(!text.contains("family visit"), "block reasons stay private");
    app.finish().await;
}
on_both_backends!(ical_feed_parses_with_an_independent_parser, ical_feed);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_go_to_read_replicas_and_still_read_their_writes() {
    let test = "read_replicas";
    let Some(storage) = Storage::new(Backend::Postgres, test).await else {
        return;
    };
    // No streaming replica here: the read database itself, twice, stands in for two replicas.
    let (_, _, url) = storage.pg.clone().unwrap();
    let (read_url, _) = api::reads::default_read_url(&url).unwrap();
    let replicas = format!("{read_url},{read_url}");
    let app = start(storage, &[("READ_REPLICA_URLS", replicas.as_str())]).await;
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, serde_json::json!({})).await;
    // Four guests (one guest holds at most three unpaid); their host reads the list.
    let viewer = app.token(Role::Host, host);
    for i in 0..4 {
        let (status, booked) = app
            .post(
                "/api/v1/bookings",
                &app.token(Role::Guest, Uuid::now_v7()),
                &booking_body(listing, 10 + 2 * i, 11 + 2 * i, 1),
            )
            .await;
        assert_eq!(status, 201, "{booked}");
        let position = booked["position"].as_i64().unwrap();
        let (status, list) = app
            .get(
                &format!("/api/v1/bookings?min_position={position}"),
                Some(&viewer),
            )
            .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["items"].as_array().unwrap().len() as i64, i + 1);
        let (status, found) = app
            .get(
                &format!(
                    "/api/v1/availability?city=Almaty&check_in={}&check_out={}&min_position={position}",
                    day(10 + 2 * i),
                    day(11 + 2 * i)
                ),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert!(found["items"].as_array().unwrap().is_empty(), "{found}");
    }
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["read_db"], "ok");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_the_read_model_never_reaches_is_a_clear_503() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "read_model_behind",
        &[("ZHILEGO_READ_WAIT_MS", "300")],
    )
    .await
    else {
        return;
    };
    let far = 1_000_000;
    for path in [
        format!(
            "/api/v1/availability?city=Almaty&check_in={}&check_out={}&min_position={far}",
            day(1),
            day(2)
        ),
        format!("/api/v1/listings?min_position={far}"),
    ] {
        let started = std::time::Instant::now();
        let (status, body) = app.get(&path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["code"], "read_model_behind");
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    }
    let (status, body) = app.get("/api/v1/listings?min_position=-1", None).await;
    assert_eq!(status, 422, "{body}");
    app.finish().await;
}

/// A table created empty and filled afterwards: a connection's prepared lookup keeps the empty
/// table's plan (a sequential scan) until `store::statistics` analyzes the table, after which
/// it uses the index; a JSON column with statistics target 0 (as the events table's, by
/// migration) is left out, and a table analyzed since is not taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_grow_from_empty_are_analyzed_and_their_plans_use_the_index() {
    let Some(admin) = pg_admin_url("tables_that_grow_from_empty_are_analyzed") else {
        return;
    };
    let (name, url) = fresh_pg_database(&admin).await;
    let db = store::Database::connect(&url, 2).await.expect("connect");
    let store::Database::Postgres(pool) = &db else {
        unreachable!()
    };
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE grows (id uuid PRIMARY KEY, owner uuid NOT NULL, doc jsonb NOT NULL); \
         ALTER TABLE grows ALTER COLUMN doc SET STATISTICS 0; \
         CREATE INDEX grows_owner ON grows (owner); ANALYZE grows; \
         PREPARE lookup(uuid) AS SELECT id FROM grows WHERE owner = $1",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let empty_plan = generic_plan(&mut conn).await;
    assert!(empty_plan.contains("Seq Scan"), "{empty_plan}");
    // Written on a connection of its own, closed after: a backend that ends reports its
    // counts at once (an idle one can take up to 10 s; busy ones report every second).
    let mut writer = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO grows SELECT gen_random_uuid(), gen_random_uuid(), \
         jsonb_build_object('n', n) FROM generate_series(1, 20000) n",
    )
    .execute(&mut writer)
    .await
    .unwrap();
    sqlx::Connection::close(writer).await.unwrap();
    let mut analyzed = Vec::new();
    for _ in 0..100 {
        analyzed = store::statistics::analyze_stale(&db).await.unwrap();
        if !analyzed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let counts: Vec<(String, i64, f32)> = sqlx::query_as(
        "SELECT s.relname::text, s.n_mod_since_analyze, c.reltuples FROM pg_stat_user_tables s \
         JOIN pg_class c ON c.oid = s.relid",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(analyzed, vec!["public.grows".to_string()], "{counts:?}");
    let stats: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_stats WHERE tablename = 'grows' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(stats, vec!["id".to_string(), "owner".to_string()]);
    let grown_plan = generic_plan(&mut conn).await;
    assert!(grown_plan.contains("grows_owner"), "{grown_plan}");
    assert!(store::statistics::analyze_stale(&db)
        .await
        .unwrap()
        .is_empty());
    drop(conn);
    pool.close().await;
    drop_pg_database(&admin, &name).await;
}

/// The plan PostgreSQL settles on for the prepared `lookup` (five runs first, as a statement
/// sqlx keeps is run).
async fn generic_plan(conn: &mut sqlx::PgConnection) -> String {
    for _ in 0..6 {
        sqlx::raw_sql("EXECUTE lookup('00000000-0000-0000-0000-000000000001')")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let lines: Vec<String> =
        sqlx::query_scalar("EXPLAIN EXECUTE lookup('00000000-0000-0000-0000-000000000001')")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    lines.join("\n")
}
