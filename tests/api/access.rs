//! Apartment access: the host sets instructions and a door code, only the guest of a paid
//! (confirmed or checked-in) stay reads them back, and neither is ever stored in plaintext.
use crate::helpers::*;
use crate::on_both_backends;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use domain::Role;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const DOOR_CODE: &str = "DOOR-4827-ZQ";
/// A marker no other data contains, inside the instructions.
const MARKER: &str = "LOCKBOX-MARKER-7F3A91";

fn instructions() -> String {
    format!("Enter from the yard, 3rd floor, key box left of the door: {MARKER}")
}

fn access_body() -> Value {
    json!({"instructions": instructions(), "door_code": DOOR_CODE})
}

/// `PUT /api/v1/listings/{listing}/access`, with a bearer token or anonymously.
async fn put_access(
    app: &TestApp,
    listing: Uuid,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut req = app
        .client
        .put(app.url(&format!("/api/v1/listings/{listing}/access")))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    status_and_json(req.send().await.expect("request")).await
}

async fn get_access(app: &TestApp, booking: Uuid, token: Option<&str>) -> (u16, Value) {
    app.get(&format!("/api/v1/bookings/{booking}/access"), token)
        .await
}

/// A held booking of `guest` for the nights `from..to` (days from today); returns its id.
async fn book(app: &TestApp, guest: Uuid, listing: Uuid, from: i64, to: i64) -> Uuid {
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &app.token(Role::Guest, guest),
            &booking_body(listing, from, to, 2),
        )
        .await;
    assert_eq!(status, 201, "create booking: {body}");
    assert_eq!(body["status"], "held", "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

/// Pays a held booking the real way: the payment link, then Kaspi's `pay` notification over
/// HTTP; waits until the booking reads as confirmed (or, for a stay starting today, perhaps
/// already checked in by the sweeper) and returns that status.
async fn pay(app: &TestApp, guest: Uuid, booking: Uuid) -> String {
    let token = app.token(Role::Guest, guest);
    pay_through_kaspi(app, &token, booking).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = app
            .get(&format!("/api/v1/bookings/{booking}"), Some(&token))
            .await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "confirmed" || body["status"] == "checked_in" {
            return body["status"].as_str().unwrap().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the booking was not confirmed after payment: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `day(days)` at `hour`:00 in Kazakhstan (UTC+05:00).
fn kz_time(days: i64, hour: u32) -> DateTime<FixedOffset> {
    let date: NaiveDate = day(days).parse().unwrap();
    FixedOffset::east_opt(5 * 3600)
        .unwrap()
        .from_local_datetime(&date.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap()))
        .single()
        .unwrap()
}

fn parse_time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a timestamp: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// An app whose door codes are given out from 48 hours before check-in, so a stay from
/// tomorrow is inside its window whatever the time of day.
async fn app_open_two_days_ahead(backend: Backend, name: &str) -> Option<TestApp> {
    spawn_app_with(
        backend,
        name,
        &[("ZHILEGO_ACCESS_OPENS_BEFORE_HOURS", "48")],
    )
    .await
}

/// The code the guest of `booking` gets for the host's `host_code`.
fn stay_code(host_code: &str, booking: Uuid) -> String {
    commands::stay_door_code(host_code, booking)
}

async fn only_the_guest_of_a_paid_stay_gets_in(backend: Backend, name: &str) {
    let Some(app) = app_open_two_days_ahead(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let host_token = app.token(Role::Host, host);
    let listing = app.create_listing(host, json!({})).await;

    let (status, body) = put_access(&app, listing, Some(&host_token), &access_body()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listing_id"], listing.to_string(), "{body}");
    assert!(body["position"].as_i64().unwrap() > 0, "{body}");
    // Never echoed back.
    assert!(!body.to_string().contains(DOOR_CODE), "{body}");

    // A held booking does not open the door yet, not even for its guest.
    let guest = Uuid::now_v7();
    let guest_token = app.token(Role::Guest, guest);
    let booking = book(&app, guest, listing, 1, 4).await;
    let (status, body) = get_access(&app, booking, Some(&guest_token)).await;
    assert_eq!(status, 409, "held: {body}");
    assert_eq!(body["code"], "invalid_state", "{body}");

    assert_eq!(pay(&app, guest, booking).await, "confirmed");
    let (status, body) = get_access(&app, booking, Some(&guest_token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["door_code"], stay_code(DOOR_CODE, booking), "{body}");
    assert!(
        !body.to_string().contains(DOOR_CODE),
        "the host's own code: {body}"
    );
    assert_eq!(body["instructions"], instructions().as_str(), "{body}");
    assert_eq!(body["address"], listing_body()["address"], "{body}");
    assert_eq!(parse_time(&body["valid_from"]), kz_time(1, 14), "{body}");
    assert_eq!(parse_time(&body["valid_until"]), kz_time(4, 12), "{body}");
    // The offset is Kazakhstan's, not UTC.
    assert_eq!(
        parse_time(&body["valid_from"]).offset().local_minus_utc(),
        5 * 3600,
        "{body}"
    );

    // Nobody else: another guest, the host, an admin; nor anyone anonymous.
    for (who, token) in [
        ("another guest", app.token(Role::Guest, Uuid::now_v7())),
        ("the host", host_token.clone()),
        ("an admin", app.token(Role::Admin, Uuid::now_v7())),
        ("the guest's id as a host", app.token(Role::Host, guest)),
    ] {
        let (status, body) = get_access(&app, booking, Some(&token)).await;
        assert_eq!(status, 403, "{who}: {body}");
        assert_eq!(body["code"], "forbidden", "{who}: {body}");
        assert!(!body.to_string().contains(DOOR_CODE), "{who}: {body}");
        let stays = stay_code(DOOR_CODE, booking);
        assert!(!body.to_string().contains(&stays), "{who}: {body}");
    }
    let (status, body) = get_access(&app, booking, None).await;
    assert_eq!(status, 401, "anonymous: {body}");

    // Another guest's held stay on the same listing: 409 for its own guest.
    let other = Uuid::now_v7();
    let held = book(&app, other, listing, 20, 22).await;
    let (status, body) = get_access(&app, held, Some(&app.token(Role::Guest, other))).await;
    assert_eq!(status, 409, "held: {body}");
    assert_eq!(body["code"], "invalid_state", "{body}");

    // The host changes the code: the guest sees the new one.
    let (status, body) = put_access(
        &app,
        listing,
        Some(&host_token),
        &json!({"instructions": "  Same entrance.  ", "door_code": "  NEW-0001  "}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_access(&app, booking, Some(&guest_token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["door_code"],
        stay_code("NEW-0001", booking),
        "trimmed: {body}"
    );
    assert_eq!(body["instructions"], "Same entrance.", "trimmed: {body}");

    // A paid stay at a listing whose host never set access: 404 access_not_set.
    let bare = app.create_listing(host, json!({})).await;
    let guest2 = Uuid::now_v7();
    let booking2 = book(&app, guest2, bare, 1, 3).await;
    assert_eq!(pay(&app, guest2, booking2).await, "confirmed");
    let (status, body) = get_access(&app, booking2, Some(&app.token(Role::Guest, guest2))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "access_not_set", "{body}");

    // An unknown booking.
    let (status, body) = get_access(&app, Uuid::now_v7(), Some(&guest_token)).await;
    assert_eq!(status, 404, "{body}");

    // A cancelled stay no longer opens the door.
    let (status, body) = app
        .post(
            &format!("/api/v1/bookings/{booking}/cancel"),
            &guest_token,
            &json!({"reason": "plans changed"}),
        )
        .await;
    assert_eq!(status, 200, "cancel: {body}");
    assert_eq!(body["status"], "cancelled", "{body}");
    let (status, body) = get_access(&app, booking, Some(&guest_token)).await;
    assert_eq!(status, 409, "cancelled: {body}");
    assert_eq!(body["code"], "invalid_state", "{body}");
    app.finish().await;
}
on_both_backends!(
    only_the_guest_of_a_paid_stay_gets_in,
    only_the_guest_of_a_paid_stay_gets_in
);

/// Waits until the booking reads as `status`.
async fn wait_for_status(app: &TestApp, token: &str, booking: Uuid, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = app
            .get(&format!("/api/v1/bookings/{booking}"), Some(token))
            .await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the booking never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_checked_in_stay_keeps_access_and_a_completed_one_loses_it(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let (status, body) = put_access(
        &app,
        listing,
        Some(&app.token(Role::Host, host)),
        &access_body(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A stay from today: paid, then checked in (by the sweeper or by hand).
    let guest = Uuid::now_v7();
    let token = app.token(Role::Guest, guest);
    let booking = book(&app, guest, listing, 0, 2).await;
    pay(&app, guest, booking).await;
    let today = domain::local_date(chrono::Utc::now());
    app.state
        .commands
        .advance_stay(booking, today)
        .await
        .expect("check in");
    wait_for_status(&app, &token, booking, "checked_in").await;
    let (status, body) = get_access(&app, booking, Some(&token)).await;
    assert_eq!(status, 200, "checked in: {body}");
    assert_eq!(body["door_code"], stay_code(DOOR_CODE, booking), "{body}");
    assert_eq!(parse_time(&body["valid_from"]), kz_time(0, 14), "{body}");
    assert_eq!(parse_time(&body["valid_until"]), kz_time(2, 12), "{body}");

    // The stay is over: the door no longer opens for its guest.
    let moved = app
        .state
        .commands
        .advance_stay(booking, today + chrono::Duration::days(2))
        .await
        .expect("complete");
    assert!(moved, "the stay completes on its departure day");
    wait_for_status(&app, &token, booking, "completed").await;
    let (status, body) = get_access(&app, booking, Some(&token)).await;
    assert_eq!(status, 409, "completed: {body}");
    assert_eq!(body["code"], "invalid_state", "{body}");
    app.finish().await;
}
on_both_backends!(
    a_checked_in_stay_keeps_access_and_a_completed_one_loses_it,
    a_checked_in_stay_keeps_access_and_a_completed_one_loses_it
);

async fn setting_access_is_validated_and_owned(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let host_token = app.token(Role::Host, host);
    let listing = app.create_listing(host, json!({})).await;

    let long_code = "X".repeat(65);
    for (why, body, field) in [
        (
            "empty door code",
            json!({"instructions": "x", "door_code": ""}),
            "door_code",
        ),
        (
            "blank door code",
            json!({"instructions": "x", "door_code": "   "}),
            "door_code",
        ),
        (
            "65-character door code",
            json!({"instructions": "x", "door_code": long_code}),
            "door_code",
        ),
        (
            "2001-character instructions",
            json!({"instructions": "i".repeat(2001), "door_code": "1234"}),
            "instructions",
        ),
    ] {
        let (status, res) = put_access(&app, listing, Some(&host_token), &body).await;
        assert_eq!(status, 422, "{why}: {res}");
        assert_eq!(res["code"], "validation_failed", "{why}: {res}");
        assert_eq!(res["errors"][0]["field"], field, "{why}: {res}");
    }
    // The limits themselves are fine (counted in characters, not bytes).
    let (status, res) = put_access(
        &app,
        listing,
        Some(&host_token),
        &json!({"instructions": "ж".repeat(2000), "door_code": "Ж".repeat(64)}),
    )
    .await;
    assert_eq!(status, 200, "at the limits: {res}");
    let (status, res) = put_access(
        &app,
        listing,
        Some(&host_token),
        &json!({"instructions": "", "door_code": "1"}),
    )
    .await;
    assert_eq!(status, 200, "empty instructions: {res}");
    // A body missing a field is refused too.
    let (status, res) = put_access(
        &app,
        listing,
        Some(&host_token),
        &json!({"instructions": "x"}),
    )
    .await;
    assert_eq!(status, 422, "missing door_code: {res}");

    // Another host, a guest, an admin who is not the host: 403; anonymous: 401; an unknown
    // listing: 404.
    let (status, res) = put_access(
        &app,
        listing,
        Some(&app.token(Role::Host, Uuid::now_v7())),
        &access_body(),
    )
    .await;
    assert_eq!(status, 403, "another host: {res}");
    assert_eq!(res["code"], "forbidden", "{res}");
    let (status, res) = put_access(
        &app,
        listing,
        Some(&app.token(Role::Guest, Uuid::now_v7())),
        &access_body(),
    )
    .await;
    assert_eq!(status, 403, "a guest: {res}");
    let (status, res) = put_access(&app, listing, None, &access_body()).await;
    assert_eq!(status, 401, "anonymous: {res}");
    let (status, res) = put_access(&app, Uuid::now_v7(), Some(&host_token), &access_body()).await;
    assert_eq!(status, 404, "unknown listing: {res}");
    let (status, res) = put_access(
        &app,
        listing,
        Some(&app.token(Role::Admin, Uuid::now_v7())),
        &access_body(),
    )
    .await;
    assert_eq!(status, 403, "an admin, for a listing not theirs: {res}");
    assert_eq!(res["code"], "forbidden", "{res}");
    // An admin's own listing is theirs to set.
    let admin = Uuid::now_v7();
    let own = app.create_listing(admin, json!({})).await;
    let (status, res) = put_access(
        &app,
        own,
        Some(&app.token(Role::Admin, admin)),
        &access_body(),
    )
    .await;
    assert_eq!(status, 200, "an admin, for their own listing: {res}");
    app.finish().await;
}
on_both_backends!(
    setting_access_is_validated_and_owned,
    setting_access_is_validated_and_owned
);

/// A plaintext that is stored as is (a listing's title): the scan must find it, so it is known
/// to look where the data is.
const CONTROL: &str = "CONTROL-PLAINTEXT-5C2E";

/// Where the secrets (and the control) appear in plaintext, as (needle, place).
async fn plaintext_findings(storage: &Storage, when: &str) -> Vec<(&'static str, String)> {
    crate::scan::plaintext_findings(storage, &[DOOR_CODE, MARKER, CONTROL], when).await
}

/// The number of `AccessUpdated` events in the event store (and that they hold the sealed
/// text, not the plaintext).
async fn access_events(storage: &Storage) -> i64 {
    let db = storage.database().await;
    let payloads: Vec<String> = match &db {
        store::Database::Postgres(pool) => sqlx::query_scalar(
            "SELECT payload::text FROM events WHERE event_type = 'AccessUpdated' \
             AND aggregate_type = 'Listing'",
        )
        .fetch_all(pool)
        .await
        .expect("query events"),
        store::Database::Sqlite(pool) => sqlx::query_scalar(
            "SELECT payload FROM events WHERE event_type = 'AccessUpdated' \
             AND aggregate_type = 'Listing'",
        )
        .fetch_all(pool)
        .await
        .expect("query events"),
    };
    for p in &payloads {
        assert!(p.contains("AccessUpdated"), "{p}");
        assert!(
            !p.contains(DOOR_CODE) && !p.contains(MARKER),
            "plaintext event: {p}"
        );
    }
    db.close().await;
    payloads.len() as i64
}

async fn access_is_never_stored_in_plaintext(backend: Backend, name: &str) {
    let Some(app) = app_open_two_days_ahead(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app
        .create_listing(host, json!({"title": format!("Flat {CONTROL}")}))
        .await;
    let (status, body) = put_access(
        &app,
        listing,
        Some(&app.token(Role::Host, host)),
        &access_body(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let guest = Uuid::now_v7();
    let booking = book(&app, guest, listing, 1, 4).await;
    assert_eq!(pay(&app, guest, booking).await, "confirmed");

    // The secret is there to be found: the guest reads it back.
    let (status, body) = get_access(&app, booking, Some(&app.token(Role::Guest, guest))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["door_code"], stay_code(DOOR_CODE, booking), "{body}");
    assert!(
        body["instructions"].as_str().unwrap().contains(MARKER),
        "{body}"
    );
    assert_eq!(
        access_events(&app.storage).await,
        1,
        "one AccessUpdated event"
    );

    // While the app runs (SQLite: the WAL holds the recent pages).
    let running = plaintext_findings(&app.storage, "running").await;

    // After a graceful stop (everything flushed and checkpointed).
    let storage = app.stop().await;
    let stopped = plaintext_findings(&storage, "stopped").await;
    assert_eq!(access_events(&storage).await, 1, "one AccessUpdated event");
    storage.remove().await;

    for (when, found) in [("running", &running), ("stopped", &stopped)] {
        assert!(
            found.iter().any(|(needle, _)| *needle == CONTROL),
            "{when}: the scan did not even find the listing's title: {found:?}"
        );
    }
    let leaks: Vec<&str> = running
        .iter()
        .chain(&stopped)
        .filter(|(needle, _)| *needle != CONTROL)
        .map(|(_, place)| place.as_str())
        .collect();
    assert!(
        leaks.is_empty(),
        "plaintext access found:\n{}",
        leaks.join("\n")
    );
}
on_both_backends!(
    access_is_never_stored_in_plaintext,
    access_is_never_stored_in_plaintext
);

/// The door code only inside the stay's window (default: from 24 hours before check-in at
/// 14:00 until check-out at 12:00), and each stay has its own.
async fn the_door_code_is_given_only_inside_the_stays_window(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let (status, body) = put_access(
        &app,
        listing,
        Some(&app.token(Role::Host, host)),
        &access_body(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // From today: inside its window at any time of today.
    let now_guest = Uuid::now_v7();
    let now_token = app.token(Role::Guest, now_guest);
    let now_stay = book(&app, now_guest, listing, 0, 2).await;
    pay(&app, now_guest, now_stay).await;
    let (status, body) = get_access(&app, now_stay, Some(&now_token)).await;
    assert_eq!(status, 200, "inside the window: {body}");
    let now_code = body["door_code"].as_str().unwrap().to_string();
    assert_eq!(now_code, commands::stay_door_code(DOOR_CODE, now_stay));
    assert_eq!(now_code.len(), DOOR_CODE.len(), "{now_code}");
    assert!(now_code.chars().all(|c| c.is_ascii_digit()), "{now_code}");

    // Paid, but from the day after tomorrow: not before tomorrow 14:00 (24 hours ahead).
    let later_guest = Uuid::now_v7();
    let later_token = app.token(Role::Guest, later_guest);
    let later_stay = book(&app, later_guest, listing, 2, 4).await;
    assert_eq!(pay(&app, later_guest, later_stay).await, "confirmed");
    let (status, body) = get_access(&app, later_stay, Some(&later_token)).await;
    assert_eq!(status, 409, "before the window: {body}");
    assert_eq!(body["code"], "access_not_yet_open", "{body}");
    assert_eq!(parse_time(&body["opens_at"]), kz_time(1, 14), "{body}");
    assert!(body.get("door_code").is_none(), "{body}");
    assert!(!body.to_string().contains(DOOR_CODE), "{body}");

    // Once its window opens the second stay gets a code of its own, not the first stay's.
    let guest = |id| domain::Actor {
        user_id: id,
        role: Role::Guest,
    };
    let opens = kz_time(1, 14).with_timezone(&chrono::Utc);
    let early = app
        .state
        .commands
        .access_at(
            later_stay,
            guest(later_guest),
            opens - chrono::Duration::seconds(1),
        )
        .await;
    assert!(
        matches!(
            early,
            Err(commands::FlowError::AccessWindow(
                commands::OutsideWindow::NotYetOpen { .. }
            ))
        ),
        "{early:?}"
    );
    let pass = app
        .state
        .commands
        .access_at(later_stay, guest(later_guest), opens)
        .await
        .expect("the window is open");
    assert_eq!(
        pass.access.door_code,
        commands::stay_door_code(DOOR_CODE, later_stay)
    );
    assert_ne!(pass.access.door_code, now_code, "two stays, two codes");

    // After check-out (12:00 on the departure day) the code is no longer given out, even
    // while the stay still reads as confirmed or checked in.
    let checked_out = kz_time(2, 12).with_timezone(&chrono::Utc);
    let last = app
        .state
        .commands
        .access_at(
            now_stay,
            guest(now_guest),
            checked_out - chrono::Duration::seconds(1),
        )
        .await;
    assert!(last.is_ok(), "{last:?}");
    let after = app
        .state
        .commands
        .access_at(now_stay, guest(now_guest), checked_out)
        .await;
    let Err(commands::FlowError::AccessWindow(closed)) = after else {
        panic!("after check-out: {after:?}");
    };
    assert_eq!(
        closed,
        commands::OutsideWindow::Closed {
            closed_at: kz_time(2, 12)
        }
    );
    // As the API says it.
    let problem = api::error::ApiError::from(commands::FlowError::AccessWindow(closed));
    assert_eq!(problem.status.as_u16(), 409);
    assert_eq!(problem.code, "access_closed");
    app.finish().await;
}
on_both_backends!(
    the_door_code_is_given_only_inside_the_stays_window,
    the_door_code_is_given_only_inside_the_stays_window
);
