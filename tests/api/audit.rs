//! The audit (docs/audit.md), both backends: the API and its roles, state as of any point
//! against folding the events with the domain aggregate, the notary's checkpoints and
//! proofs checked by an independent verifier (tests/audit_verify.py), every kind of tampering
//! caught by `zhilego audit verify --checkpoint` on a private copy of the store, erasure, and
//! the correlation tree of a Telegram journey.
use crate::helpers::*;
use crate::on_both_backends;
use crate::processes::ZHILEGO;
use cqrs_es::Aggregate;
use domain::{Event, Role};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use store::{Database, StoredEvent};
use uuid::Uuid;

/// A checkpoint after every event, so tests need not wait.
const FAST: &[(&str, &str)] = &[
    ("ZHILEGO_AUDIT_CHECKPOINT_EVERY", "1"),
    ("ZHILEGO_AUDIT_CHECKPOINT_INTERVAL_MS", "50"),
];

struct Workload {
    listings: Vec<Uuid>,
    guests: Vec<Uuid>,
    bookings: Vec<Uuid>,
}

/// Listings, bookings (one paid through Kaspi, one cancelled), a block, a guest's profile.
async fn workload(app: &TestApp) -> Workload {
    let host = Uuid::now_v7();
    let host_token = app.token(Role::Host, host);
    let mut listings = Vec::new();
    for i in 0..2 {
        listings.push(
            app.create_listing(host, json!({"nightly_price_kzt": 15_000 + i * 1000}))
                .await,
        );
    }
    let (status, body) = app
        .patch(
            &format!("/api/v1/listings/{}", listings[0]),
            &host_token,
            &json!({"title": "Квартира у Кок-Тобе", "nightly_price_kzt": 21_000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/v1/listings/{}/blocks", listings[1]),
            &host_token,
            &json!({"from": day(40), "to": day(42), "reason": "ремонт"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut guests = Vec::new();
    let mut bookings = Vec::new();
    for (i, listing) in [listings[0], listings[0], listings[1]]
        .into_iter()
        .enumerate()
    {
        let guest = Uuid::now_v7();
        let token = app.token(Role::Guest, guest);
        let from = 3 + i as i64 * 4;
        let (status, b) = app
            .post(
                "/api/v1/bookings",
                &token,
                &booking_body(listing, from, from + 2, 2),
            )
            .await;
        assert_eq!(status, 201, "{b}");
        guests.push(guest);
        bookings.push(b["id"].as_str().unwrap().parse().unwrap());
    }
    pay_through_kaspi(app, &app.token(Role::Guest, guests[0]), bookings[0]).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/bookings/{}/cancel", bookings[1]),
            &app.token(Role::Guest, guests[1]),
            &json!({"reason": "планы изменились"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .patch(
            "/api/v1/users/me",
            &app.token(Role::Guest, guests[0]),
            &json!({"name": "Айгерим Сапарова", "phone": "+77011234567"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    Workload {
        listings,
        guests,
        bookings,
    }
}

fn auditor(app: &TestApp) -> String {
    app.token(Role::Auditor, Uuid::now_v7())
}

/// Every event of the store in commit order (the tests' own read, not the API's). The
/// commit-safe read on PostgreSQL waits out transactions still running anywhere on the
/// server, so it is asked until it has every stored event.
async fn all_events(db: &Database) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    for _ in 0..200 {
        let count = store::history::event_count(db).await.unwrap() as usize;
        events = store::history::events_after(db, Default::default(), 1_000_000)
            .await
            .unwrap();
        if events.len() == count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events
}

/// Waits until the notary signed a checkpoint over every event; gives it.
async fn checkpoint_over_all(app: &TestApp) -> Value {
    let token = auditor(app);
    let total = all_events(&app.db).await.len() as u64;
    for _ in 0..400 {
        let (status, c) = app
            .get("/api/v1/audit/checkpoints/latest", Some(&token))
            .await;
        if status == 200 && c["tree_size"].as_u64() == Some(total) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Database::Postgres(pool) = &app.db {
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT state, backend_xid::text, left(query, 200) FROM pg_stat_activity WHERE xact_start IS NOT NULL",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        eprintln!("open transactions: {rows:#?}");
    }
    panic!("no checkpoint over all {total} events");
}

/// Runs `zhilego <args>` on `storage`; (exit code, stdout).
async fn zhilego(storage: &Storage, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(ZHILEGO)
        .args(args)
        .envs(storage.env())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run zhilego");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Roles

async fn every_audit_endpoint_needs_an_auditor_or_admin(backend: Backend, test: &str) {
    let Some(app) = spawn_app_with(backend, test, FAST).await else {
        return;
    };
    let w = workload(&app).await;
    checkpoint_over_all(&app).await;
    let listing = w.listings[0];
    let paths = [
        "/api/v1/audit/events".to_string(),
        "/api/v1/audit/events?format=jsonl".to_string(),
        format!("/api/v1/audit/aggregates/Listing/{listing}/events"),
        format!("/api/v1/audit/aggregates/Listing/{listing}/state?as_of=1&diff=true"),
        "/api/v1/audit/verify".to_string(),
        "/api/v1/audit/checkpoints/latest".to_string(),
        "/api/v1/audit/checkpoints/key".to_string(),
        "/api/v1/audit/events/1/proof".to_string(),
        "/api/v1/audit/consistency?from=1".to_string(),
    ];
    // The correlation of the listing's creation.
    let first = &store::history::aggregate_events(&app.db, "Listing", &listing.to_string())
        .await
        .unwrap()[0];
    let correlation = first.metadata["correlation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let paths: Vec<String> = paths
        .into_iter()
        .chain([format!("/api/v1/audit/correlations/{correlation}")])
        .collect();
    for path in &paths {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 401, "{path} anonymous: {body}");
        assert_eq!(body["code"], "unauthorized", "{path}");
        for role in [Role::Guest, Role::Host, Role::Analyst] {
            let (status, body) = app.get(path, Some(&app.token(role, Uuid::now_v7()))).await;
            assert_eq!(status, 403, "{path} as {role:?}: {body}");
            assert_eq!(body["code"], "forbidden");
        }
        for role in [Role::Auditor, Role::Admin] {
            let res = app
                .client
                .get(app.url(path))
                .bearer_auth(app.token(role, Uuid::now_v7()))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 200, "{path} as {role:?}");
        }
    }
    // Every audit path is in the served OpenAPI document, with its problem statuses.
    let (_, doc) = app.get("/api/v1/openapi.json", None).await;
    for p in [
        "/api/v1/audit/events",
        "/api/v1/audit/aggregates/{type}/{id}/events",
        "/api/v1/audit/aggregates/{type}/{id}/state",
        "/api/v1/audit/correlations/{id}",
        "/api/v1/audit/verify",
        "/api/v1/audit/checkpoints/latest",
        "/api/v1/audit/checkpoints/key",
        "/api/v1/audit/events/{position}/proof",
        "/api/v1/audit/consistency",
    ] {
        let op = &doc["paths"][p]["get"];
        assert!(op.is_object(), "{p} is documented");
        for status in ["401", "403"] {
            assert!(
                op["responses"][status]["content"]["application/problem+json"].is_object(),
                "{p} documents {status} as problem+json"
            );
        }
    }
    app.finish().await;
}
on_both_backends!(
    every_audit_endpoint_needs_an_auditor_or_admin,
    every_audit_endpoint_needs_an_auditor_or_admin
);

// ---------------------------------------------------------------------------------------------
// Browsing

async fn auditors_page_filter_and_stream_history(backend: Backend, test: &str) {
    let Some(app) = spawn_app_with(backend, test, FAST).await else {
        return;
    };
    let w = workload(&app).await;
    let token = auditor(&app);
    let stored = all_events(&app.db).await;
    // Paging through everything in pages of 7 gives the store in commit order.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = app
            .get(
                &format!("/api/v1/audit/events?after={after}&limit=7"),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["position"].as_i64().unwrap());
        }
        match page["next_cursor"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let expected: Vec<i64> = stored.iter().map(|e| e.position).collect();
    assert_eq!(seen, expected);
    // Each filter keeps exactly the events it names (the oracle filters the store's list).
    let booking = w.bookings[0].to_string();
    let guest = w.guests[0].to_string();
    let correlation = stored
        .iter()
        .find(|e| e.aggregate_id == booking)
        .unwrap()
        .metadata["correlation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let middle = stored[stored.len() / 2].recorded_at;
    let rfc = |t: chrono::DateTime<chrono::Utc>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .replace('+', "%2B")
    };
    type Keep = Box<dyn Fn(&StoredEvent) -> bool>;
    let cases: Vec<(String, Keep)> = vec![
        (
            "aggregate_type=Booking".into(),
            Box::new(|e: &StoredEvent| e.aggregate_type == "Booking"),
        ),
        (format!("aggregate_type=Booking&aggregate_id={booking}"), {
            let b = booking.clone();
            Box::new(move |e: &StoredEvent| e.aggregate_id == b)
        }),
        (
            "event_type=BookingHeld".into(),
            Box::new(|e: &StoredEvent| e.event_type == "BookingHeld"),
        ),
        (format!("correlation_id={correlation}"), {
            let c = correlation.clone();
            Box::new(move |e: &StoredEvent| e.metadata["correlation_id"] == c.as_str())
        }),
        (format!("actor={guest}"), {
            let g = guest.clone();
            Box::new(move |e: &StoredEvent| e.metadata["actor"] == g.as_str())
        }),
        (
            format!("from={}", rfc(middle)),
            Box::new(move |e: &StoredEvent| e.recorded_at >= middle),
        ),
        (
            format!("to={}", rfc(middle)),
            Box::new(move |e: &StoredEvent| e.recorded_at < middle),
        ),
    ];
    for (query, keep) in cases {
        let (status, page) = app
            .get(
                &format!("/api/v1/audit/events?{query}&limit=1000"),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{query}: {page}");
        let got: Vec<i64> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["position"].as_i64().unwrap())
            .collect();
        let want: Vec<i64> = stored
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.position)
            .collect();
        assert!(!want.is_empty(), "{query} names something");
        assert_eq!(got, want, "{query}");
    }
    // JSON lines stream everything, one event per line, equal to the pages.
    let res = app
        .client
        .get(app.url("/api/v1/audit/events?format=jsonl"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["position"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        expected
    );
    for field in [
        "position",
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "event_type",
        "event_version",
        "payload",
        "metadata",
        "recorded_at",
        "hash",
    ] {
        assert!(!lines[0][field].is_null(), "{field} in {}", lines[0]);
    }
    // Bad input is named.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("from=yesterday", "from"),
        ("format=xml", "format"),
        ("after=-1", "after"),
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/audit/events?{query}"), Some(&token))
            .await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
    // An aggregate's history by sequence; sealed personal data shows as sealed.
    let (status, history) = app
        .get(
            &format!("/api/v1/audit/aggregates/User/{guest}/events"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let text = history.to_string();
    assert!(text.contains("[sealed]"), "{text}");
    assert!(
        !text.contains("x1:") && !text.contains("Айгерим") && !text.contains("7011234567"),
        "{text}"
    );
    let (status, _) = app
        .get(
            &format!("/api/v1/audit/aggregates/Booking/{}/events", Uuid::now_v7()),
            Some(&token),
        )
        .await;
    assert_eq!(status, 404);
    // An API request is the outside input of its correlation: the client's request id when it
    // sent one.
    let (status, tree) = app
        .get(
            &format!("/api/v1/audit/correlations/{correlation}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree["inputs"][0]["source"], "api_request", "{tree}");
    assert_eq!(tree["inputs"][0]["id"], correlation.as_str(), "{tree}");
    assert!(tree["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_type"] == "BookingHeld"));
    let res = app
        .client
        .patch(app.url("/api/v1/users/me"))
        .bearer_auth(app.token(Role::Guest, w.guests[2]))
        .header("X-Request-Id", "req-audit-42")
        .json(&json!({"language": "kk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ours = res.headers()["x-server-correlation-id"]
        .to_str()
        .unwrap()
        .to_string();
    // The audit reads in commit-safe order: on PostgreSQL a new event shows once no older
    // transaction on the server is still running.
    let mut tree = Value::Null;
    for _ in 0..100 {
        let (status, t) = app
            .get(&format!("/api/v1/audit/correlations/{ours}"), Some(&token))
            .await;
        tree = t;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tree["inputs"][0]["id"], "req-audit-42", "{tree}");
    let (status, _) = app
        .get(
            &format!("/api/v1/audit/correlations/{}", Uuid::now_v7()),
            Some(&token),
        )
        .await;
    assert_eq!(status, 404);
    // The chains hold.
    let (status, report) = app.get("/api/v1/audit/verify", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(report["ok"], true, "{report}");
    // (One more event than before: the language change.)
    assert_eq!(
        report["checked_events"].as_u64(),
        Some(stored.len() as u64 + 1)
    );
    app.finish().await;
}
on_both_backends!(
    auditors_page_filter_and_stream_history,
    auditors_page_filter_and_stream_history
);

// ---------------------------------------------------------------------------------------------
// State as of

/// The oracle: the domain aggregate folded over the events in the test itself.
fn folded(kind: &str, events: &[StoredEvent]) -> Value {
    fn run<A: Aggregate>(events: &[StoredEvent], take: fn(Event) -> A::Event) -> Value {
        let mut a = A::default();
        for e in events {
            let ev = Event::decode(
                &e.aggregate_type,
                &e.event_type,
                &e.event_version,
                &e.payload,
            )
            .expect("decodes");
            a.apply(take(ev));
        }
        serde_json::to_value(&a).unwrap()
    }
    match kind {
        "Listing" => run::<domain::listing::Listing>(events, |e| match e {
            Event::Listing(e) => e,
            _ => panic!("not a listing event"),
        }),
        "Booking" => run::<domain::booking::Booking>(events, |e| match e {
            Event::Booking(e) => e,
            _ => panic!("not a booking event"),
        }),
        "Payment" => run::<domain::payment::Payment>(events, |e| match e {
            Event::Payment(e) => e,
            _ => panic!("not a payment event"),
        }),
        _ => run::<domain::user::User>(events, |e| match e {
            Event::User(e) => e,
            _ => panic!("not a user event"),
        }),
    }
}

/// The oracle's diff: every leaf path whose value differs, by brute force over flattened
/// values.
fn flatten(v: &Value, path: String, out: &mut std::collections::BTreeMap<String, Value>) {
    match v {
        // Empty containers have no leaves: a field added to `{}` is the change, not `{}`.
        Value::Object(m) => {
            for (k, x) in m {
                flatten(
                    x,
                    format!("{path}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                )
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(x, format!("{path}/{i}"), out)
            }
        }
        other => {
            out.insert(path, other.clone());
        }
    }
}

fn differing(a: &Value, b: &Value) -> BTreeSet<String> {
    let (mut x, mut y) = (Default::default(), Default::default());
    flatten(a, String::new(), &mut x);
    flatten(b, String::new(), &mut y);
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    keys.into_iter()
        .filter(|k| x.get(*k) != y.get(*k))
        .cloned()
        .collect()
}

/// Whether `changed` (the service's paths) covers exactly the differing leaves: each
/// differing leaf lies under one reported path, and each reported path has one under it.
fn covers(changed: &[String], leaves: &BTreeSet<String>) -> bool {
    let under = |leaf: &str, p: &str| leaf == p || leaf.starts_with(&format!("{p}/"));
    leaves.iter().all(|l| changed.iter().any(|p| under(l, p)))
        && changed.iter().all(|p| leaves.iter().any(|l| under(l, p)))
}

async fn state_as_of_equals_folding_the_events(backend: Backend, test: &str) {
    let Some(app) = spawn_app_with(backend, test, FAST).await else {
        return;
    };
    let w = workload(&app).await;
    let token = auditor(&app);
    let stored = all_events(&app.db).await;
    let mut aggregates: Vec<(String, String)> = stored
        .iter()
        .map(|e| (e.aggregate_type.clone(), e.aggregate_id.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let seed: u64 = rand::random();
    println!("{test}: seed {seed}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    use rand::seq::SliceRandom;
    use rand::Rng;
    aggregates.shuffle(&mut rng);
    let mut checked = 0;
    for (kind, id) in aggregates.iter().take(8) {
        let events = store::history::aggregate_events(&app.db, kind, id)
            .await
            .unwrap();
        // Random sequences, and random instants between and around the events.
        for _ in 0..4 {
            let s = rng.random_range(0..=events.len() as i64);
            let (status, view) = app
                .get(
                    &format!("/api/v1/audit/aggregates/{kind}/{id}/state?as_of={s}&diff=true"),
                    Some(&token),
                )
                .await;
            assert_eq!(status, 200, "{view}");
            let upto: Vec<StoredEvent> =
                events.iter().filter(|e| e.sequence <= s).cloned().collect();
            let mut want = folded(kind, &upto);
            redact_sealed(&mut want);
            assert_eq!(
                view["sequence"].as_i64(),
                Some(upto.last().map_or(0, |e| e.sequence))
            );
            assert_eq!(view["state"], want, "{kind} {id} as of {s}");
            if s > 0 {
                let mut before = folded(kind, &upto[..upto.len() - 1]);
                redact_sealed(&mut before);
                let diff = &view["diff"];
                assert_eq!(diff["before"], before);
                assert_eq!(diff["after"], want);
                let changed: Vec<String> = diff["changed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect();
                assert!(
                    covers(&changed, &differing(&before, &want)),
                    "{kind} {id} at {s}: {changed:?} vs {:?}",
                    differing(&before, &want)
                );
            } else {
                assert!(view["diff"].is_null());
            }
            checked += 1;
        }
        let t = events[rng.random_range(0..events.len())].recorded_at
            + chrono::Duration::microseconds(rng.random_range(-500..500));
        let at = t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let (status, view) = app
            .get(
                &format!("/api/v1/audit/aggregates/{kind}/{id}/state?as_of={at}"),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{view}");
        let upto: Vec<StoredEvent> = events
            .iter()
            .filter(|e| e.recorded_at <= t)
            .cloned()
            .collect();
        let mut want = folded(kind, &upto);
        redact_sealed(&mut want);
        assert_eq!(view["state"], want, "{kind} {id} as of {at}");
    }
    assert!(checked >= 8);
    // Bad points are named; unknown aggregates are not found.
    let listing = w.listings[0];
    let (status, body) = app
        .get(
            &format!("/api/v1/audit/aggregates/Listing/{listing}/state?as_of=soon"),
            Some(&token),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].clone()),
        (422, json!("as_of")),
        "{body}"
    );
    let (status, _) = app
        .get(
            &format!("/api/v1/audit/aggregates/Spaceship/{listing}/state"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 404);
    app.finish().await;
}
on_both_backends!(
    state_as_of_equals_folding_the_events,
    state_as_of_equals_folding_the_events
);

/// A listing with a few hundred events: states as of any point equal the oracle's fold while
/// the service answers from its snapshots (PostgreSQL keeps them after every 128 events), and
/// still do after an event under the snapshots is changed in the database.
async fn state_as_of_from_snapshots_follows_the_stored_events(backend: Backend, test: &str) {
    let Some(app) = spawn_app_with(backend, test, FAST).await else {
        return;
    };
    let host = Uuid::now_v7();
    let host_token = app.token(Role::Host, host);
    let listing = app
        .create_listing(host, json!({"nightly_price_kzt": 15_000}))
        .await;
    for i in 0..299 {
        let (status, body) = app
            .patch(
                &format!("/api/v1/listings/{listing}"),
                &host_token,
                &json!({"nightly_price_kzt": 16_000 + i}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let token = auditor(&app);
    let id = listing.to_string();
    let seed: u64 = rand::random();
    println!("{test}: seed {seed}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    use rand::Rng;
    let check = |events: Vec<StoredEvent>, s: i64| {
        let app = &app;
        let (token, id) = (&token, &id);
        async move {
            let (status, view) = app
                .get(
                    &format!("/api/v1/audit/aggregates/Listing/{id}/state?as_of={s}&diff=true"),
                    Some(token),
                )
                .await;
            assert_eq!(status, 200, "{view}");
            let upto: Vec<StoredEvent> =
                events.iter().filter(|e| e.sequence <= s).cloned().collect();
            let (mut want, mut before) = (
                folded("Listing", &upto),
                folded("Listing", &upto[..upto.len() - 1]),
            );
            redact_sealed(&mut want);
            redact_sealed(&mut before);
            assert_eq!(view["sequence"].as_i64(), Some(s));
            assert_eq!(view["state"], want, "as of {s}");
            assert_eq!(view["diff"]["before"], before, "before {s}");
        }
    };
    let events = store::history::aggregate_events(&app.db, "Listing", &id)
        .await
        .unwrap();
    assert_eq!(events.len(), 300);
    // The first request folds everything (and keeps snapshots), later ones start from them:
    // around the snapshot points and at random.
    let mut points: Vec<i64> = vec![300, 128, 129, 256, 257, 255, 1, 2, 300];
    points.extend((0..12).map(|_| rng.random_range(1..=300)));
    for s in points {
        check(events.clone(), s).await;
    }
    // An event under every snapshot changed in the database (the listing's host, which no
    // later event sets again): the state shows it.
    let mut edited = events[0].clone();
    edited.payload = serde_json::from_str(
        &edited
            .payload
            .to_string()
            .replace(&host.to_string(), &Uuid::now_v7().to_string()),
    )
    .unwrap();
    assert_ne!(
        edited.payload, events[0].payload,
        "the edit changes something"
    );
    tamper(&app.db, &[]).await;
    rewrite(&app.db, &edited).await;
    let events = store::history::aggregate_events(&app.db, "Listing", &id)
        .await
        .unwrap();
    assert_eq!(events[0].payload, edited.payload);
    for s in [300, 200, 129, 1, rng.random_range(130..=300)] {
        check(events.clone(), s).await;
    }
    app.finish().await;
}
on_both_backends!(
    state_as_of_from_snapshots_follows_the_stored_events,
    state_as_of_from_snapshots_follows_the_stored_events
);

/// What the test expects the API to show of sealed values (an `x1:` string).
fn redact_sealed(v: &mut Value) {
    match v {
        Value::String(s) if s.starts_with("x1:") => *s = "[sealed]".into(),
        Value::Array(a) => a.iter_mut().for_each(redact_sealed),
        Value::Object(m) => m.values_mut().for_each(redact_sealed),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints, proofs, the independent verifier, erasure

/// A witness outside the database: an HTTP server that keeps every note POSTed to it.
async fn witness() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = notes.clone();
    let router = axum::Router::new().route(
        "/witness",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/witness", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, notes)
}

async fn proofs_verify_independently_and_survive_erasure(backend: Backend, test: &str) {
    let (witness_url, witnessed) = witness().await;
    let sink = temp_dir().join("checkpoint.txt");
    let sink_path = sink.to_str().unwrap().to_string();
    let env = [
        FAST,
        &[
            ("ZHILEGO_AUDIT_WITNESS_URL", witness_url.as_str()),
            ("ZHILEGO_AUDIT_CHECKPOINT_FILE", sink_path.as_str()),
        ],
    ]
    .concat();
    let Some(app) = spawn_app_with(backend, test, &env).await else {
        return;
    };
    let w = workload(&app).await;
    let token = auditor(&app);
    let checkpoint = checkpoint_over_all(&app).await;
    let text = checkpoint["text"].as_str().unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines[0], "zhilego.kz/audit");
    assert_eq!(lines[1], checkpoint["tree_size"].to_string());
    assert_eq!(lines[2], checkpoint["root_hash"].as_str().unwrap());
    assert_eq!(lines[3], "");
    assert!(lines[4].starts_with("\u{2014} zhilego.kz/audit "), "{text}");
    let (_, key) = app.get("/api/v1/audit/checkpoints/key", Some(&token)).await;
    assert_eq!(key["algorithm"], "ed25519");
    // The sinks outside the database have the same checkpoint: the file and the witness.
    let served = checkpoint["text"].as_str().unwrap().to_string();
    let mut sunk = String::new();
    for _ in 0..100 {
        sunk = std::fs::read_to_string(&sink).unwrap_or_default();
        let last = witnessed
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default();
        if sunk == served && last == served {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sunk, served, "the checkpoint file");
    assert_eq!(
        witnessed.lock().unwrap().last(),
        Some(&served),
        "the witness"
    );
    // Erase the guest with a profile: the fields read [erased], and everything still proves.
    let storage = app.storage.clone();
    let (code, out) = zhilego(
        &storage,
        &["user", "erase", "--id", &w.guests[0].to_string()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    checkpoint_over_all(&app).await;
    let (_, history) = app
        .get(
            &format!("/api/v1/audit/aggregates/User/{}/events", w.guests[0]),
            Some(&token),
        )
        .await;
    let text = history.to_string();
    assert!(
        text.contains("[erased]") && !text.contains("[sealed]"),
        "{text}"
    );
    let (_, state) = app
        .get(
            &format!(
                "/api/v1/audit/aggregates/User/{}/state?as_of=1",
                w.guests[0]
            ),
            Some(&token),
        )
        .await;
    assert!(state.to_string().contains("[erased]"), "{state}");
    // Export everything and let the independent verifier check signatures and proofs.
    let export = storage.data_dir.join("export.jsonl");
    let (code, out) = zhilego(
        &storage,
        &["audit", "export", "--out", export.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = zhilego(
        &storage,
        &[
            "audit",
            "verify-export",
            export.to_str().unwrap(),
            "--key",
            key["public_key"].as_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "verify-export: {out}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/audit_verify.py");
    let out = tokio::process::Command::new("python3")
        .args([
            script,
            "--url",
            &app.address,
            "--token",
            &token,
            "--export",
            export.to_str().unwrap(),
            "--samples",
            "25",
        ])
        .output()
        .await
        .expect("python3 runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("No module named 'cryptography'"),
        "the verifier needs PyPI cryptography (scripts/test installs it): {said}"
    );
    assert!(out.status.success(), "tests/audit_verify.py: {said}");
    assert!(said.starts_with("OK "), "{said}");
    // A changed export fails offline, naming the event.
    let changed = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = changed.lines().map(str::to_string).collect();
    let mut line: Value = serde_json::from_str(&lines[3]).unwrap();
    let position = line["event"]["position"].as_i64().unwrap();
    line["event"]["recorded_at"] = json!("2020-01-01T00:00:00Z");
    lines[3] = line.to_string();
    std::fs::write(&export, lines.join("\n")).unwrap();
    let (code, out) = zhilego(
        &storage,
        &["audit", "verify-export", export.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("first bad position {position}")),
        "{out}"
    );
    // Proof parameters are checked.
    let (status, body) = app
        .get("/api/v1/audit/events/1/proof?tree_size=0", Some(&token))
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].clone()),
        (422, json!("tree_size"))
    );
    let (status, body) = app
        .get("/api/v1/audit/consistency?from=5&to=2", Some(&token))
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = app
        .get("/api/v1/audit/events/999999/proof", Some(&token))
        .await;
    assert_eq!(status, 404);
    let metrics = app.metrics().await;
    for name in [
        "zhilego_audit_checkpoints_signed_total",
        "zhilego_audit_notary_lag_events",
        "zhilego_audit_tree_size",
    ] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
    app.finish().await;
}
on_both_backends!(
    proofs_verify_independently_and_survive_erasure,
    proofs_verify_independently_and_survive_erasure
);

/// Three notaries (the app's and two more, as several `serve`s run them) follow one store
/// while listings change concurrently: they take turns, so every event gets exactly one leaf,
/// in commit order, and the checkpoint over all of them verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notaries_take_turns_and_give_each_event_one_leaf() {
    let Some(app) = spawn_app_with(Backend::Postgres, "notaries_take_turns", FAST).await else {
        return;
    };
    let seed: String = app.storage.encryption_key.chars().rev().collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut notaries = Vec::new();
    for _ in 0..2 {
        let worker = audit::notary::NotaryWorker::new(
            app.db.clone(),
            audit::note::Notary::from_hex(&seed, "zhilego.kz/audit").unwrap(),
            audit::notary::NotaryConfig {
                every: 3,
                interval: Duration::from_millis(20),
                batch: 7,
                ..Default::default()
            },
        );
        let stop = stop.clone();
        notaries.push(tokio::spawn(async move {
            let mut steps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                worker.step().await.expect("notary step");
                steps += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            steps
        }));
    }
    let host = Uuid::now_v7();
    let host_token = app.token(Role::Host, host);
    let mut listings = Vec::new();
    for _ in 0..4 {
        listings.push(app.create_listing(host, json!({})).await);
    }
    let changes = (0..15).map(|i| {
        let (app, token, listing) = (&app, &host_token, listings[i % listings.len()]);
        async move {
            let (status, body) = app
                .patch(
                    &format!("/api/v1/listings/{listing}"),
                    token,
                    &json!({"nightly_price_kzt": 10_000 + i as i64 * 500}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    });
    futures::future::join_all(changes).await;
    let checkpoint = checkpoint_over_all(&app).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for notary in notaries {
        assert!(notary.await.unwrap() > 0, "each extra notary stepped");
    }
    let events = all_events(&app.db).await;
    let Database::Postgres(pool) = &app.db else {
        unreachable!()
    };
    let leaves: Vec<(i64, i64)> =
        sqlx::query_as("SELECT leaf_index, position FROM audit_leaves ORDER BY leaf_index")
            .fetch_all(pool)
            .await
            .unwrap();
    let indexes: Vec<i64> = leaves.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, (0..events.len() as i64).collect::<Vec<_>>());
    let positions: Vec<i64> = leaves.iter().map(|(_, p)| *p).collect();
    let expected: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, expected, "one leaf per event, in commit order");
    let note = temp_dir().join("checkpoint.txt");
    std::fs::write(&note, checkpoint["text"].as_str().unwrap()).unwrap();
    let (code, out) = zhilego(
        &app.storage,
        &["audit", "verify", "--checkpoint", note.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    app.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Tampering

/// A private copy of a stopped app's store.
async fn copy_of(storage: &Storage) -> Storage {
    let mut copy = storage.clone();
    copy.data_dir = temp_dir();
    for file in ["zhilego.db", "zhilego.db-wal", "zhilego.db-shm"] {
        let from = storage.data_dir.join(file);
        if from.exists() {
            std::fs::copy(&from, copy.data_dir.join(file)).unwrap();
        }
    }
    if let Some((admin, name, _)) = &storage.pg {
        let fresh = format!("zt_{}", Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
            .await
            .unwrap();
        // A template must have no sessions: those of processes just stopped may linger.
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(&mut conn)
            .await
            .unwrap();
        let mut created = false;
        for _ in 0..50 {
            let sql = format!("CREATE DATABASE {fresh} TEMPLATE {name}");
            if sqlx::query(&sql).execute(&mut conn).await.is_ok() {
                created = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(created, "copied {name}");
        copy.pg = Some((admin.clone(), fresh.clone(), with_database(admin, &fresh)));
    }
    copy
}

/// Runs SQL on a copy with the append-only triggers off.
async fn tamper(db: &Database, sql: &[&str]) {
    match db {
        Database::Postgres(pool) => {
            sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
                .execute(pool)
                .await
                .unwrap();
            for s in sql {
                sqlx::query(s).execute(pool).await.unwrap();
            }
        }
        Database::Sqlite(pool) => {
            for s in [
                "DROP TRIGGER events_no_update",
                "DROP TRIGGER events_no_delete",
            ] {
                sqlx::query(s).execute(pool).await.unwrap();
            }
            for s in sql {
                sqlx::query(s).execute(pool).await.unwrap();
            }
        }
    }
}

/// Rewrites one event's payload and metadata (the attacker's own re-chaining).
async fn rewrite(db: &Database, e: &StoredEvent) {
    let (p, m) = (e.payload.to_string(), e.metadata.to_string());
    match db {
        Database::Postgres(pool) => {
            sqlx::query(
                "UPDATE events SET payload = $1::jsonb, metadata = $2::jsonb WHERE position = $3",
            )
            .bind(p)
            .bind(m)
            .bind(e.position)
            .execute(pool)
            .await
            .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query("UPDATE events SET payload = $1, metadata = $2 WHERE position = $3")
                .bind(p)
                .bind(m)
                .bind(e.position)
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

/// Recomputes the chain of every aggregate from genesis, as someone with database access can.
async fn rechain(db: &Database, only: Option<(&str, &str)>) {
    let mut events = all_events(db).await;
    events.sort_by(|a, b| {
        (&a.aggregate_type, &a.aggregate_id, a.sequence).cmp(&(
            &b.aggregate_type,
            &b.aggregate_id,
            b.sequence,
        ))
    });
    let mut prev = (
        String::new(),
        String::new(),
        store::chain::GENESIS_HASH.to_string(),
    );
    for mut e in events {
        if (prev.0.as_str(), prev.1.as_str())
            != (e.aggregate_type.as_str(), e.aggregate_id.as_str())
        {
            prev = (
                e.aggregate_type.clone(),
                e.aggregate_id.clone(),
                store::chain::GENESIS_HASH.to_string(),
            );
        }
        let hash = store::chain::event_hash(
            &prev.2,
            &store::chain::ChainInput {
                aggregate_type: &e.aggregate_type,
                aggregate_id: &e.aggregate_id,
                sequence: e.sequence,
                event_type: &e.event_type,
                event_version: &e.event_version,
                payload: &e.payload,
                metadata: &e.metadata,
            },
        );
        if only.is_none_or(|(t, i)| t == e.aggregate_type && i == e.aggregate_id) {
            e.metadata["hash"] = json!(hash);
            rewrite(db, &e).await;
        }
        prev.2 = hash;
    }
}

/// Runs `audit verify --checkpoint` on a tampered copy: it must fail naming `expected`.
async fn names_first_bad(copy: Storage, verify: &[&str], expected: i64, what: &str) {
    let (code, out) = zhilego(&copy, verify).await;
    assert_eq!(code, 1, "{what}: {out}");
    assert!(
        out.contains(&format!("FAILED: first bad position {expected}:")),
        "{what}: expected position {expected}: {out}"
    );
    copy.remove().await;
}

async fn every_tampering_names_the_first_bad_position(backend: Backend, test: &str) {
    let Some(app) = spawn_app_with(backend, test, FAST).await else {
        return;
    };
    let w = workload(&app).await;
    let checkpoint = checkpoint_over_all(&app).await;
    let storage = app.stop().await;
    let note = storage.data_dir.join("held-checkpoint");
    std::fs::write(&note, checkpoint["text"].as_str().unwrap()).unwrap();
    let note = note.to_str().unwrap().to_string();
    let verify = ["audit", "verify", "--checkpoint", note.as_str()];

    // Untouched, it verifies.
    let (code, out) = zhilego(&storage, &verify).await;
    assert_eq!(code, 0, "untouched: {out}");
    assert!(out.contains("OK:"), "{out}");

    let db = storage.database().await;
    let events = all_events(&db).await;
    db.close().await;
    let listing = w.listings[0].to_string();
    let of = |id: &str| -> Vec<&StoredEvent> {
        events.iter().filter(|e| e.aggregate_id == id).collect()
    };
    let listing_events = of(&listing);
    assert!(listing_events.len() >= 3, "a listing with a middle event");
    let newest = listing_events.last().unwrap().position;
    let middle = listing_events[1].position;
    let first = events[0].position;
    let pg = backend == Backend::Postgres;
    let (a, b) = (events[2].position, events[5].position);
    let swap: Vec<String> = if pg {
        vec![
            "ALTER TABLE events ALTER COLUMN position DROP IDENTITY".into(),
            format!("UPDATE events SET position = -1 WHERE position = {a}"),
            format!("UPDATE events SET position = {a} WHERE position = {b}"),
            format!("UPDATE events SET position = {b} WHERE position = -1"),
        ]
    } else {
        vec![
            format!("UPDATE events SET position = -1 WHERE position = {a}"),
            format!("UPDATE events SET position = {a} WHERE position = {b}"),
            format!("UPDATE events SET position = {b} WHERE position = -1"),
        ]
    };
    let payload_byte = if pg {
        format!("UPDATE events SET payload = replace(payload::text, 'wifi', 'wifu')::jsonb WHERE position = {first}")
    } else {
        format!(
            "UPDATE events SET payload = replace(payload, 'wifi', 'wifu') WHERE position = {first}"
        )
    };
    let recorded = if pg {
        format!("UPDATE events SET recorded_at = recorded_at + interval '1 millisecond' WHERE position = {middle}")
    } else {
        format!(
            "UPDATE events SET recorded_at = '2020-01-01T00:00:00.000Z' WHERE position = {middle}"
        )
    };
    let cases: Vec<(&str, Vec<String>, i64)> = vec![
        ("one payload byte changed", vec![payload_byte], first),
        ("recorded_at changed", vec![recorded], middle),
        (
            "the newest event of an aggregate deleted",
            vec![format!("DELETE FROM events WHERE position = {newest}")],
            newest,
        ),
        (
            "a middle event deleted",
            vec![format!("DELETE FROM events WHERE position = {middle}")],
            middle,
        ),
        ("two events reordered", swap, a),
    ];
    for (what, sql, expected) in cases {
        let copy = copy_of(&storage).await;
        let db = copy.database().await;
        let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
        tamper(&db, &sql).await;
        db.close().await;
        names_first_bad(copy, &verify, expected, what).await;
    }

    // An aggregate's chain recomputed after an edit: the chains hold, the tree does not.
    let copy = copy_of(&storage).await;
    let db = copy.database().await;
    tamper(&db, &[]).await;
    let mut edited = (*listing_events[1]).clone();
    edited.payload =
        serde_json::from_str(&edited.payload.to_string().replace("21000", "1000")).unwrap();
    assert_ne!(
        edited.payload, listing_events[1].payload,
        "the edit changes something"
    );
    rewrite(&db, &edited).await;
    rechain(&db, Some(("Listing", &listing))).await;
    assert!(
        store::history::verify(&db).await.unwrap().ok,
        "the chain was recomputed"
    );
    db.close().await;
    names_first_bad(copy, &verify, edited.position, "re-chained").await;

    // The whole store replaced by a forged history, re-chained from genesis, and the notary's
    // tables emptied to match: the first event is named.
    let copy = copy_of(&storage).await;
    let db = copy.database().await;
    tamper(
        &db,
        &[
            "DELETE FROM audit_leaves",
            "DELETE FROM audit_nodes",
            "DELETE FROM audit_checkpoints",
            "DELETE FROM audit_notary",
        ],
    )
    .await;
    for e in all_events(&db).await {
        let mut forged = e.clone();
        forged.payload =
            serde_json::from_str(&e.payload.to_string().replace("Almaty", "Astana")).unwrap();
        rewrite(&db, &forged).await;
    }
    rechain(&db, None).await;
    assert!(store::history::verify(&db).await.unwrap().ok);
    db.close().await;
    names_first_bad(copy, &verify, first, "forged from genesis").await;

    // A checkpoint that was changed, or signed by another key, is refused.
    let forged_note = checkpoint["text"].as_str().unwrap().replacen(
        &format!("\n{}\n", checkpoint["tree_size"]),
        "\n1\n",
        1,
    );
    std::fs::write(&note, forged_note).unwrap();
    let (code, out) = zhilego(&storage, &verify).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not verify"), "{out}");
    storage.remove().await;
}
on_both_backends!(
    every_tampering_names_the_first_bad_position,
    every_tampering_names_the_first_bad_position
);

// ---------------------------------------------------------------------------------------------
// Correlation of a Telegram journey

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_journey_is_one_correlation_tree() {
    use crate::chatbots::{bot_env, listing, telegram_journey, TgGuest};
    let telegram = zhilego_testkit::FakeTelegram::start().await;
    let twilio = zhilego_testkit::FakeTwilio::start().await;
    let env = [bot_env(&telegram, &twilio).as_slice(), FAST].concat();
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "a_telegram_journey_is_one_correlation_tree",
        &env,
    )
    .await
    else {
        return;
    };
    let flat = listing(&app, "Квартира у парка", 20_000).await;
    let mut guest = TgGuest::new(&app, &telegram, 7101);
    let url = telegram_journey(&mut guest, flat).await;
    let paid = app.client.post(&url).send().await.unwrap();
    assert_eq!(paid.status(), 200);
    let token = auditor(&app);
    // The booking's correlation, from its first event.
    let mut tree = Value::Null;
    for _ in 0..200 {
        let held = all_events(&app.db)
            .await
            .into_iter()
            .find(|e| e.event_type == "BookingHeld");
        if let Some(held) = held {
            let c = held.metadata["correlation_id"]
                .as_str()
                .unwrap()
                .to_string();
            let (status, t) = app
                .get(&format!("/api/v1/audit/correlations/{c}"), Some(&token))
                .await;
            assert_eq!(status, 200, "{t}");
            let types: Vec<&str> = t["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_type"].as_str().unwrap())
                .collect();
            if types.contains(&"BookingConfirmed") && types.contains(&"ReservationConfirmed") {
                tree = t;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tree.is_object(),
        "the journey's tree reaches the confirmation"
    );
    let events = tree["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    let at = |t: &str| {
        types
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("{t} in {types:?}"))
    };
    // Causal order: reserved and held, the payment, Kaspi's money, the confirmation.
    assert!(at("DatesReserved") < at("BookingHeld"), "{types:?}");
    assert!(at("BookingHeld") < at("PaymentCreated"), "{types:?}");
    assert!(at("PaymentCreated") < at("PaymentSucceeded"), "{types:?}");
    assert!(at("PaymentSucceeded") < at("BookingConfirmed"), "{types:?}");
    assert!(
        at("BookingConfirmed") <= at("ReservationConfirmed")
            || at("ReservationConfirmed") > at("PaymentSucceeded"),
        "{types:?}"
    );
    // The inputs: the Telegram update that pressed "book", and Kaspi's txn_id.
    let inputs = tree["inputs"].as_array().unwrap();
    let sources: Vec<&str> = inputs
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["telegram_update", "kaspi_txn"], "{inputs:?}");
    let update: i64 = inputs[0]["id"].as_str().unwrap().parse().unwrap();
    assert!(update > 7101 * 1000, "an update id of this guest: {update}");
    let txn = inputs[1]["id"].as_str().unwrap();
    let succeeded = &events[at("PaymentSucceeded")];
    assert_eq!(succeeded["input"]["id"], txn);
    let stored = all_events(&app.db).await;
    let payment = stored
        .iter()
        .find(|e| e.event_type == "PaymentSucceeded")
        .unwrap();
    assert!(
        payment.payload.to_string().contains(txn),
        "the txn_id is Kaspi's: {}",
        payment.payload
    );
    // The confirmation is caused by the Kaspi command (a causal link across aggregates).
    let confirmed = &events[at("BookingConfirmed")];
    assert!(confirmed["causation_id"].is_string(), "{confirmed}");
    let causes: Vec<i64> = confirmed["caused_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    assert!(
        causes.contains(&succeeded["position"].as_i64().unwrap()),
        "{confirmed}"
    );
    app.finish().await;
}
