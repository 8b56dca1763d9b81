//! Calendar feeds over real HTTP: the service's production client reads Airbnb- and
//! Booking.com-shaped feeds from a real server on loopback (`zhilego_testkit::feeds`), and
//! the calendar (`/calendar`) is checked night by night against the dates the test wrote
//! into the feed. Both backends: SQLite with the in-process bus, PostgreSQL with NATS.
use crate::helpers::*;
use crate::on_both_backends;
use chrono::NaiveDate;
use domain::Role;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use uuid::Uuid;
use zhilego_testkit::feeds::{airbnb, booking_com, Feed, Stay};
use zhilego_testkit::guests::TelegramGuest;
use zhilego_testkit::{FakeFeeds, FakeTelegram};

/// Feeds may live on loopback here (the feed server is on 127.0.0.1).
const ALLOW_PRIVATE: (&str, &str) = ("ZHILEGO_ICAL_ALLOW_PRIVATE", "1");

/// The app on `backend`: PostgreSQL runs with NATS, as in production.
async fn feeds_app(backend: Backend, test: &str, extra: &[(&str, &str)]) -> Option<TestApp> {
    let storage = feeds_storage(backend, test).await?;
    let mut env = vec![ALLOW_PRIVATE];
    env.extend_from_slice(extra);
    Some(start(storage, &env).await)
}

async fn feeds_storage(backend: Backend, test: &str) -> Option<Storage> {
    let storage = Storage::new(backend, test).await?;
    Some(match backend {
        Backend::Sqlite => storage,
        Backend::Postgres => match nats_url(test) {
            Some(url) => storage.with_nats(url),
            None => {
                storage.remove().await;
                return None;
            }
        },
    })
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Every night from `from` (a `day()` string) to `to`, exclusive: the oracle's own counting.
fn nights(from: &str, to: &str) -> BTreeSet<NaiveDate> {
    let (mut d, end) = (date(from), date(to));
    let mut out = BTreeSet::new();
    while d < end {
        out.insert(d);
        d = d.succ_opt().unwrap();
    }
    out
}

/// The nights `/calendar` shows with `status`, over the next 120 days, once the read model
/// has `position`.
async fn shown(app: &TestApp, listing: Uuid, status: &str, position: i64) -> BTreeSet<NaiveDate> {
    let (code, cal) = app
        .get(
            &format!(
                "/api/v1/listings/{listing}/calendar?from={}&to={}&min_position={position}",
                day(0),
                day(120)
            ),
            None,
        )
        .await;
    assert_eq!(code, 200, "{cal}");
    cal["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == status)
        .map(|d| date(d["date"].as_str().unwrap()))
        .collect()
}

async fn add_feed(app: &TestApp, token: &str, listing: Uuid, url: &str, name: &str) -> Value {
    let (status, feed) = app
        .post(
            &format!("/api/v1/listings/{listing}/calendar-feeds"),
            token,
            &json!({"url": url, "name": name}),
        )
        .await;
    assert_eq!(status, 201, "{feed}");
    feed
}

async fn sync(app: &TestApp, token: &str, listing: Uuid, feed: &Value) -> Value {
    let (status, after) = app
        .post(
            &format!(
                "/api/v1/listings/{listing}/calendar-feeds/{}/sync",
                feed["id"].as_str().unwrap()
            ),
            token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{after}");
    after
}

fn position(v: &Value) -> i64 {
    v["position"].as_i64().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------

on_both_backends!(
    feeds_block_move_and_free_nights,
    feeds_block_move_and_free_nights_on
);

async fn feeds_block_move_and_free_nights_on(backend: Backend, test: &str) {
    let Some(app) = feeds_app(backend, test, &[]).await else {
        return;
    };
    let feeds = FakeFeeds::start().await;
    let host = Uuid::now_v7();
    let token = app.token(Role::Host, host);
    let listing = app.create_listing(host, json!({})).await;

    let reservation = format!("1418fb94e984-{}@airbnb.com", "a".repeat(48));
    let airbnb_v1 = [
        Stay::new(&reservation, &day(3), &day(6)),
        Stay::new("7f662ec65913-0ff1c3@airbnb.com", &day(20), &day(23)),
    ];
    feeds.set("airbnb.ics", Feed::Calendar(airbnb(&airbnb_v1)));
    let booking_all_day = [Stay::new("b1@booking.com", &day(10), &day(12))];
    let booking_timed = [Stay::new("b2@booking.com", &day(30), &day(33))];
    feeds.set(
        "booking.ics",
        Feed::Calendar(booking_com(&booking_all_day, &booking_timed)),
    );

    // Added: each is synced once right away.
    let a = add_feed(&app, &token, listing, &feeds.url("airbnb.ics"), "Airbnb").await;
    assert_eq!(a["last_result"], "ok", "{a}");
    assert_eq!(a["blocked_nights"], 6, "{a}");
    assert_eq!(a["conflicts"], 0, "{a}");
    assert!(a["error"].is_null(), "{a}");
    assert!(a["last_synced_at"].is_string(), "{a}");
    let b = add_feed(
        &app,
        &token,
        listing,
        &feeds.url("booking.ics"),
        "Booking.com",
    )
    .await;
    assert_eq!(b["last_result"], "ok", "{b}");
    assert_eq!(b["blocked_nights"], 5, "{b}");
    let mut expected: BTreeSet<NaiveDate> = nights(&day(3), &day(6));
    expected.extend(nights(&day(20), &day(23)));
    expected.extend(nights(&day(10), &day(12)));
    expected.extend(nights(&day(30), &day(33)));
    assert_eq!(
        shown(&app, listing, "blocked", position(&b)).await,
        expected
    );

    // A feed's block is not the host's to delete by hand.
    let (_, l) = app
        .get(&format!("/api/v1/listings/{listing}"), Some(&token))
        .await;
    let blocks = l["blocks"].as_array().unwrap();
    assert!(
        blocks.iter().all(|b| b["feed_id"].is_string()),
        "told apart: {l}"
    );
    let feed_block = blocks[0]["id"].as_str().unwrap().to_string();
    let (status, problem) = app
        .delete(
            &format!("/api/v1/listings/{listing}/blocks/{feed_block}"),
            &token,
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "feed_block", "{problem}");

    // Upstream: the reservation moves two days later, the block is gone, a new one appears.
    let airbnb_v2 = [
        Stay::new(&reservation, &day(5), &day(8)),
        Stay::new("n3w@airbnb.com", &day(40), &day(41)),
    ];
    feeds.set("airbnb.ics", Feed::Calendar(airbnb(&airbnb_v2)));
    let a2 = sync(&app, &token, listing, &a).await;
    assert_eq!(a2["last_result"], "ok", "{a2}");
    assert_eq!(a2["blocked_nights"], 4, "{a2}");
    let mut expected: BTreeSet<NaiveDate> = nights(&day(5), &day(8));
    expected.extend(nights(&day(40), &day(41)));
    expected.extend(nights(&day(10), &day(12)));
    expected.extend(nights(&day(30), &day(33)));
    assert_eq!(
        shown(&app, listing, "blocked", position(&a2)).await,
        expected
    );

    // Unchanged upstream: 304, and nothing is written.
    let before = app.event_count().await;
    let a3 = sync(&app, &token, listing, &a).await;
    assert_eq!(a3["last_result"], "not_modified", "{a3}");
    assert_eq!(feeds.not_modified("airbnb.ics"), 1);
    assert_eq!(app.event_count().await, before, "a 304 writes no event");
    assert_eq!(a3["blocked_nights"], 4, "{a3}");

    // The list shows both with their counts.
    let (status, list) = app
        .get(
            &format!("/api/v1/listings/{listing}/calendar-feeds"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert!(list["next_cursor"].is_null());

    // Removed: its nights are free again; the other feed's stay.
    let (status, removed) = app
        .delete(
            &format!(
                "/api/v1/listings/{listing}/calendar-feeds/{}",
                a["id"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    let mut expected = nights(&day(10), &day(12));
    expected.extend(nights(&day(30), &day(33)));
    assert_eq!(
        shown(&app, listing, "blocked", position(&removed)).await,
        expected
    );
    let (_, list) = app
        .get(
            &format!("/api/v1/listings/{listing}/calendar-feeds"),
            Some(&token),
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    let metrics = app.metrics().await;
    for name in [
        "zhilego_ical_feeds_synced_total",
        "zhilego_ical_sync_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    app.finish().await;
}

// ---------------------------------------------------------------------------------------------

on_both_backends!(
    a_conflict_with_a_live_stay_is_recorded_and_told,
    a_conflict_on
);

const BOT_TOKEN: &str = "123456:FEEDS-token";
const WEBHOOK_SECRET: &str = "feeds-webhook-secret";

async fn a_conflict_on(backend: Backend, test: &str) {
    let telegram = FakeTelegram::start().await;
    let bot = [
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("TELEGRAM_API_URL", telegram.url.as_str()),
        ("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    let Some(app) = feeds_app(backend, test, &bot).await else {
        return;
    };
    let feeds = FakeFeeds::start().await;
    // The host talks to the bot from Telegram user 9101, so their chat is known.
    let host = crate::chatbots::bot_guest(&app, domain::Channel::Telegram, "9101");
    let wire = TelegramGuest::new(9101);
    let hello = wire.text_update(9_101_001, "/start");
    let said = wire
        .post(
            &app.client,
            &app.address,
            WEBHOOK_SECRET,
            &telegram.outbox,
            &hello,
        )
        .await
        .unwrap();
    assert_eq!(said.status.as_u16(), 200);
    let token = app.token(Role::Host, host);
    let listing = app
        .create_listing(host, json!({"title": "Лофт на Достык"}))
        .await;

    // A guest books and pays nights 10–12 here.
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let (status, booking) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 10, 12, 2),
        )
        .await;
    assert_eq!(status, 201, "{booking}");
    let booking_id = booking["id"].as_str().unwrap().to_string();
    pay_through_kaspi(&app, &guest, &booking_id).await;

    // Airbnb has 11–13 booked too, and 20–22.
    feeds.set(
        "airbnb.ics",
        Feed::Calendar(airbnb(&[
            Stay::new("clash@airbnb.com", &day(11), &day(13)),
            Stay::new("fine@airbnb.com", &day(20), &day(22)),
        ])),
    );
    let feed = add_feed(&app, &token, listing, &feeds.url("airbnb.ics"), "Airbnb").await;
    assert_eq!(feed["last_result"], "ok", "{feed}");
    assert_eq!(feed["conflicts"], 1, "{feed}");
    assert_eq!(
        feed["conflict_stays"][0]["uid"], "clash@airbnb.com",
        "{feed}"
    );
    assert_eq!(
        feed["conflict_stays"][0]["booking_id"],
        booking_id.as_str(),
        "{feed}"
    );
    assert_eq!(
        feed["conflict_stays"][0]["from"],
        day(11).as_str(),
        "{feed}"
    );
    assert_eq!(feed["blocked_nights"], 2, "{feed}");

    // The stay is untouched: still confirmed, its nights booked; only 20–22 are blocked.
    let (_, b) = app
        .get(&format!("/api/v1/bookings/{booking_id}"), Some(&guest))
        .await;
    assert_eq!(b["status"], "confirmed", "{b}");
    assert_eq!(
        shown(&app, listing, "booked", position(&feed)).await,
        nights(&day(10), &day(12))
    );
    assert_eq!(
        shown(&app, listing, "blocked", position(&feed)).await,
        nights(&day(20), &day(22))
    );

    // The host hears of it in their chat, once.
    let told = telegram.wait_for(9101, "Лофт на Достык").await;
    let text = zhilego_testkit::telegram::text_of(&told);
    assert!(text.contains("Airbnb"), "{text}");
    feeds.set(
        "airbnb.ics",
        Feed::Calendar(airbnb(&[
            Stay::new("clash@airbnb.com", &day(11), &day(13)),
            Stay::new("fine@airbnb.com", &day(20), &day(22)),
            Stay::new("more@airbnb.com", &day(30), &day(31)),
        ])),
    );
    let again = sync(&app, &token, listing, &feed).await;
    assert_eq!(again["conflicts"], 1, "{again}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let notices = telegram
        .sent_to(9101)
        .iter()
        .filter(|c| zhilego_testkit::telegram::text_of(c).contains("Лофт на Достык"))
        .count();
    assert_eq!(notices, 1, "the same conflict is told once");
    assert!(app.metrics().await.contains("zhilego_ical_conflicts_total"));
    app.finish().await;
}

// ---------------------------------------------------------------------------------------------

on_both_backends!(
    bad_feeds_give_a_clear_error_and_change_nothing,
    bad_feeds_on
);

async fn bad_feeds_on(backend: Backend, test: &str) {
    let Some(app) = feeds_app(
        backend,
        test,
        &[
            ("ZHILEGO_ICAL_TIMEOUT_MS", "700"),
            ("ZHILEGO_ICAL_MAX_BYTES", "1048576"),
        ],
    )
    .await
    else {
        return;
    };
    let feeds = FakeFeeds::start().await;
    let host = Uuid::now_v7();
    let token = app.token(Role::Host, host);
    let listing = app.create_listing(host, json!({})).await;
    let good = airbnb(&[Stay::new("keep@airbnb.com", &day(4), &day(7))]);
    feeds.set("feed.ics", Feed::Calendar(good.clone()));
    let feed = add_feed(&app, &token, listing, &feeds.url("feed.ics"), "Airbnb").await;
    assert_eq!(feed["blocked_nights"], 3, "{feed}");
    let kept = nights(&day(4), &day(7));
    assert_eq!(shown(&app, listing, "blocked", position(&feed)).await, kept);

    let invalid_dates = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x@airbnb.com\r\n\
                         DTSTART;VALUE=DATE:20261340\r\nDTEND;VALUE=DATE:20261342\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let cases = [
        (Feed::Html, "not_calendar"),
        (Feed::Huge(10 * 1024 * 1024), "too_large"),
        (Feed::Slow(Duration::from_secs(3), good.clone()), "timeout"),
        (Feed::Calendar(invalid_dates.to_string()), "invalid_dates"),
        (Feed::Redirect("feed.ics".to_string()), "too_many_redirects"),
    ];
    for (bad, code) in cases {
        feeds.set("feed.ics", bad);
        let before = app.event_count().await;
        let after = sync(&app, &token, listing, &feed).await;
        assert_eq!(after["last_result"], "error", "{code}: {after}");
        assert_eq!(after["error"]["code"], code, "{after}");
        assert!(
            !after["error"]["detail"].as_str().unwrap().is_empty(),
            "{after}"
        );
        assert_eq!(
            after["blocked_nights"], 3,
            "{code}: nothing changed: {after}"
        );
        assert_eq!(app.event_count().await, before, "{code}: no event written");
        assert_eq!(shown(&app, listing, "blocked", 0).await, kept, "{code}");
    }
    // The last good sync time stays; the list shows the error.
    let (_, list) = app
        .get(
            &format!("/api/v1/listings/{listing}/calendar-feeds"),
            Some(&token),
        )
        .await;
    assert_eq!(
        list["items"][0]["error"]["code"], "too_many_redirects",
        "{list}"
    );
    assert_eq!(
        list["items"][0]["last_synced_at"], feed["last_synced_at"],
        "{list}"
    );
    assert!(app
        .metrics()
        .await
        .contains("zhilego_ical_sync_failures_total"));
    app.finish().await;

    // Without the switch, loopback and private addresses are refused, by address or after DNS,
    // and also behind a redirect; the feed server never hears of them.
    let Some(strict) = feeds_storage(backend, test).await else {
        return;
    };
    let strict = start(strict, &[]).await;
    let listing = strict.create_listing(host, json!({})).await;
    let token = strict.token(Role::Host, host);
    feeds.set("private.ics", Feed::Calendar(good));
    let port = feeds.url.rsplit(':').next().unwrap().to_string();
    for url in [
        feeds.url("private.ics"),
        format!("http://localhost:{port}/private.ics"),
        format!("http://[::ffff:127.0.0.1]:{port}/private.ics"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let feed = add_feed(&strict, &token, listing, &url, "Private").await;
        assert_eq!(feed["last_result"], "error", "{url}: {feed}");
        assert_eq!(feed["error"]["code"], "address_refused", "{url}: {feed}");
        assert_eq!(feed["blocked_nights"], 0, "{feed}");
    }
    assert!(
        feeds.hits("private.ics").is_empty(),
        "no request reached the private address"
    );
    strict.finish().await;
}

// ---------------------------------------------------------------------------------------------

on_both_backends!(
    an_exported_calendar_imported_elsewhere_has_the_same_nights,
    round_trip_on
);

async fn round_trip_on(backend: Backend, test: &str) {
    let Some(ours) = feeds_app(backend, test, &[]).await else {
        return;
    };
    let Some(theirs) = feeds_app(backend, test, &[]).await else {
        return;
    };
    let host = Uuid::now_v7();
    let token = ours.token(Role::Host, host);
    let listing = ours.create_listing(host, json!({})).await;
    // Host blocks, a held stay and a paid one.
    for (from, to) in [(2, 4), (15, 22), (60, 61)] {
        let (status, b) = ours
            .post(
                &format!("/api/v1/listings/{listing}/blocks"),
                &token,
                &json!({"from": day(from), "to": day(to), "reason": "own use"}),
            )
            .await;
        assert_eq!(status, 201, "{b}");
    }
    let guest = ours.token(Role::Guest, Uuid::now_v7());
    let (status, held) = ours
        .post("/api/v1/bookings", &guest, &booking_body(listing, 5, 8, 1))
        .await;
    assert_eq!(status, 201, "{held}");
    let (status, paid) = ours
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, 30, 33, 1),
        )
        .await;
    assert_eq!(status, 201, "{paid}");
    pay_through_kaspi(&ours, &guest, paid["id"].as_str().unwrap()).await;
    // What our calendar says is taken (held, booked or blocked), once the read model has all.
    let mut taken = BTreeSet::new();
    for _ in 0..100 {
        let (_, cal) = ours
            .get(
                &format!(
                    "/api/v1/listings/{listing}/calendar?from={}&to={}",
                    day(0),
                    day(120)
                ),
                None,
            )
            .await;
        // Until the read model has the listing, the calendar is 404.
        let days = cal["days"].as_array().cloned().unwrap_or_default();
        taken = days
            .iter()
            .filter(|d| d["status"] != "free")
            .map(|d| date(d["date"].as_str().unwrap()))
            .collect();
        let booked = days.iter().filter(|d| d["status"] == "booked").count();
        if taken.len() == 16 && booked == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cal = taken.len();
    assert_eq!(cal, 2 + 7 + 1 + 3 + 3, "{taken:?}");

    // Another instance imports our calendar.ics.
    let their_host = Uuid::now_v7();
    let their_token = theirs.token(Role::Host, their_host);
    let their_listing = theirs.create_listing(their_host, json!({})).await;
    let feed = add_feed(
        &theirs,
        &their_token,
        their_listing,
        &ours.url(&format!("/api/v1/listings/{listing}/calendar.ics")),
        "ZhilyeGO",
    )
    .await;
    assert_eq!(feed["last_result"], "ok", "{feed}");
    assert_eq!(feed["blocked_nights"], taken.len(), "{feed}");
    assert_eq!(
        shown(&theirs, their_listing, "blocked", position(&feed)).await,
        taken
    );
    ours.finish().await;
    theirs.finish().await;
}

// ---------------------------------------------------------------------------------------------

/// Two instances on one PostgreSQL database sync every feed once per interval: consecutive
/// requests for a feed are an interval apart, never two in one interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sync_each_feed_once_per_interval() {
    let test = "two_instances_sync_each_feed_once_per_interval";
    let Some(storage) = feeds_storage(Backend::Postgres, test).await else {
        return;
    };
    let env = [ALLOW_PRIVATE, ("ZHILEGO_ICAL_SYNC_INTERVAL", "1s")];
    let one = start(storage.clone(), &env).await;
    // The second instance serves and syncs; the first one builds the read models.
    let two = start(
        storage.clone(),
        &[env[0], env[1], ("ZHILEGO_PROJECTIONS", "off")],
    )
    .await;
    let feeds = FakeFeeds::start().await;
    let host = Uuid::now_v7();
    let token = one.token(Role::Host, host);
    let paths: Vec<String> = (0..4).map(|i| format!("f{i}.ics")).collect();
    for (i, path) in paths.iter().enumerate() {
        feeds.set(
            path,
            Feed::Calendar(airbnb(&[Stay::new(&format!("u{i}"), &day(3), &day(5))])),
        );
        let listing = one.create_listing(host, json!({})).await;
        add_feed(&one, &token, listing, &feeds.url(path), "Airbnb").await;
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let ran = started.elapsed();
    for path in &paths {
        let hits = feeds.hits(path);
        // The first request is the add's own sync; then one per interval.
        assert!(
            hits.len() >= 4,
            "{path}: {} requests in {ran:?}",
            hits.len()
        );
        assert!(
            hits.len() <= 2 + ran.as_secs() as usize,
            "{path}: {} requests in {ran:?}",
            hits.len()
        );
        for pair in hits.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(900),
                "{path}: two syncs {gap:?} apart"
            );
        }
    }
    let _ = one.stop().await;
    two.finish().await;
}

// ---------------------------------------------------------------------------------------------

on_both_backends!(who_may_manage_feeds, roles_on);

async fn roles_on(backend: Backend, test: &str) {
    let Some(app) = feeds_app(backend, test, &[]).await else {
        return;
    };
    let feeds = FakeFeeds::start().await;
    feeds.set(
        "r.ics",
        Feed::Calendar(airbnb(&[Stay::new("r", &day(3), &day(4))])),
    );
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let base = format!("/api/v1/listings/{listing}/calendar-feeds");
    let body = json!({"url": feeds.url("r.ics"), "name": "Airbnb"});
    let owner = app.token(Role::Host, host);
    let stranger = app.token(Role::Host, Uuid::now_v7());
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let forbidden = [
        ("another host", stranger.clone()),
        ("a guest", app.token(Role::Guest, Uuid::now_v7())),
        ("an analyst", app.token(Role::Analyst, Uuid::now_v7())),
    ];
    for (who, t) in &forbidden {
        let (status, p) = app.post(&base, t, &body).await;
        assert_eq!(status, 403, "{who} adds: {p}");
        assert_eq!(p["code"], "forbidden", "{p}");
        let (status, _) = app.get(&base, Some(t)).await;
        assert_eq!(status, 403, "{who} lists");
    }
    let (status, _) = app.get(&base, None).await;
    assert_eq!(status, 401);
    let feed = add_feed(&app, &owner, listing, &feeds.url("r.ics"), "Airbnb").await;
    let id = feed["id"].as_str().unwrap();
    for (who, t) in &forbidden {
        let (status, _) = app.post(&format!("{base}/{id}/sync"), t, &json!({})).await;
        assert_eq!(status, 403, "{who} syncs");
        let (status, _) = app.delete(&format!("{base}/{id}"), t).await;
        assert_eq!(status, 403, "{who} removes");
    }
    let (status, list) = app.get(&base, Some(&admin)).await;
    assert_eq!(status, 200, "{list}");
    let (status, _) = app
        .post(&format!("{base}/{id}/sync"), &admin, &json!({}))
        .await;
    assert_eq!(status, 200);
    // Bad input names its field; the same URL twice is a conflict.
    let (status, p) = app
        .post(&base, &owner, &json!({"url": "ftp://x/y.ics", "name": "A"}))
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (422, Some("validation_failed")),
        "{p}"
    );
    assert!(p.to_string().contains("url"), "{p}");
    let (status, p) = app
        .post(
            &base,
            &owner,
            &json!({"url": feeds.url("x.ics"), "name": "  "}),
        )
        .await;
    assert_eq!(status, 422, "{p}");
    assert!(p.to_string().contains("name"), "{p}");
    let (status, p) = app.post(&base, &owner, &json!({"name": "A"})).await;
    assert_eq!(status, 422, "{p}");
    assert!(p.to_string().contains("url"), "{p}");
    let (status, p) = app.post(&base, &owner, &body).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (409, Some("feed_exists")),
        "{p}"
    );
    let (status, _) = app
        .post(
            &format!("/api/v1/listings/{}/calendar-feeds", Uuid::now_v7()),
            &owner,
            &body,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post(
            &format!("{base}/{}/sync", Uuid::now_v7()),
            &owner,
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.delete(&format!("{base}/{id}"), &admin).await;
    assert_eq!(status, 200);
    // The OpenAPI document has them.
    let (_, doc) = app.get("/api/v1/openapi.json", None).await;
    for path in [
        "/api/v1/listings/{id}/calendar-feeds",
        "/api/v1/listings/{id}/calendar-feeds/{feed_id}",
        "/api/v1/listings/{id}/calendar-feeds/{feed_id}/sync",
    ] {
        let operations = doc["paths"][path].as_object();
        assert!(operations.is_some(), "{path} not in the OpenAPI document");
        for (method, op) in operations.unwrap() {
            for (code, answer) in op["responses"].as_object().unwrap() {
                if code.starts_with('4') || code.starts_with('5') {
                    assert!(
                        answer["content"]["application/problem+json"].is_object(),
                        "{method} {path} {code} is not documented as problem+json: {answer}"
                    );
                }
            }
        }
    }
    app.finish().await;
}
