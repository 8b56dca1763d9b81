//! Limits against hoarding and against dates that break calendars: one guest holds at most
//! `ZHILEGO_MAX_HOLDS_PER_GUEST` unpaid bookings; blocks and price ranges end within the
//! booking horizon; no date of a year past 9999 is taken anywhere.
use crate::helpers::*;
use crate::on_both_backends;
use domain::Role;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

async fn book(app: &TestApp, token: &str, listing: Uuid, from: i64, to: i64) -> (u16, Value) {
    app.post(
        "/api/v1/bookings",
        token,
        &booking_body(listing, from, to, 1),
    )
    .await
}

/// Waits until the bookings read model (the guest's list) shows the booking as `status`.
async fn listed_as(app: &TestApp, token: &str, booking: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, list) = app.get("/api/v1/bookings", Some(token)).await;
        let shown = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == booking || i["booking_id"] == booking)
            .map(|i| i["status"].clone());
        if shown.as_ref().and_then(Value::as_str) == Some(status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{booking} is not listed as {status}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_guest_holds_at_most_three_unpaid_bookings(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let mut held = Vec::new();
    for n in 0..3 {
        let (status, b) = book(&app, &guest, listing, 10 + n * 10, 12 + n * 10).await;
        assert_eq!(status, 201, "hold {n}: {b}");
        held.push(b["id"].as_str().unwrap().to_string());
    }
    // The fourth, straight after the third: refused with its own code.
    let (status, refused) = book(&app, &guest, listing, 50, 52).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "too_many_holds", "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains('3'),
        "{refused}"
    );
    // Another guest is not affected.
    let other = app.token(Role::Guest, Uuid::now_v7());
    let (status, b) = book(&app, &other, listing, 60, 62).await;
    assert_eq!(status, 201, "{b}");

    // Cancelling one frees its slot.
    let (status, c) = app
        .post(
            &format!("/api/v1/bookings/{}/cancel", held[0]),
            &guest,
            &json!({"reason": "plans"}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    listed_as(&app, &guest, &held[0], "cancelled").await;
    let (status, b) = book(&app, &guest, listing, 50, 52).await;
    assert_eq!(status, 201, "after a cancellation: {b}");
    let (status, refused) = book(&app, &guest, listing, 70, 72).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "too_many_holds", "{refused}");

    // Paying for one frees its slot too.
    pay_through_kaspi(&app, &guest, &held[1]).await;
    listed_as(&app, &guest, &held[1], "confirmed").await;
    let (status, b) = book(&app, &guest, listing, 70, 72).await;
    assert_eq!(status, 201, "after a payment: {b}");
    app.finish().await;
}
on_both_backends!(
    a_guest_holds_at_most_three_unpaid_bookings,
    a_guest_holds_at_most_three_unpaid_bookings
);

fn assert_invalid(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "validation_failed", "{body}");
    assert!(
        body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["field"].as_str().is_some_and(|f| f.contains(field))),
        "the error names {field}: {body}"
    );
}

async fn far_future_blocks_prices_and_dates_are_refused(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let host_token = app.token(Role::Host, host);
    let blocks = format!("/api/v1/listings/{listing}/blocks");

    // A block to year +262142 (what chrono would take) and one past the horizon.
    let (status, body) = app
        .post(
            &blocks,
            &host_token,
            &json!({"from": day(30), "to": "+262142-01-01", "reason": "forever"}),
        )
        .await;
    assert_invalid(status, &body, "to");
    let (status, body) = app
        .post(
            &blocks,
            &host_token,
            &json!({"from": day(30), "to": day(730 + 90 + 1), "reason": "far"}),
        )
        .await;
    assert_invalid(status, &body, "to");
    // The horizon's last day is still fine.
    let (status, body) = app
        .post(
            &blocks,
            &host_token,
            &json!({"from": day(800), "to": day(730 + 90), "reason": "last"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Price ranges: the same caps.
    let mut created = listing_body();
    created["range_prices"] =
        json!([{"from": day(10), "to": day(730 + 90 + 1), "nightly_price_kzt": 30000}]);
    let (status, body) = app.post("/api/v1/listings", &host_token, &created).await;
    assert_invalid(status, &body, "range_prices");
    created["range_prices"] =
        json!([{"from": day(10), "to": "+10000-01-01", "nightly_price_kzt": 30000}]);
    let (status, body) = app.post("/api/v1/listings", &host_token, &created).await;
    assert_invalid(status, &body, "range_prices");
    let (status, body) = app
        .patch(
            &format!("/api/v1/listings/{listing}"),
            &host_token,
            &json!({"range_prices": [{"from": day(10), "to": day(900), "nightly_price_kzt": 30000}]}),
        )
        .await;
    assert_invalid(status, &body, "range_prices");

    // Years past 9999 in a booking, a search and a calendar query.
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &json!({"listing_id": listing, "check_in": day(5), "check_out": "+262142-01-01", "guests": 1}),
        )
        .await;
    assert_invalid(status, &body, "check_out");
    let (status, body) = app
        .get(
            &format!(
                "/api/v1/availability?city=Almaty&check_in={}&check_out=%2B262142-01-01",
                day(5)
            ),
            None,
        )
        .await;
    assert_invalid(status, &body, "check_out");
    let (status, body) = app
        .get(
            &format!("/api/v1/listings/{listing}/calendar?from=%2B262142-01-01"),
            None,
        )
        .await;
    assert_invalid(status, &body, "from");
    app.finish().await;
}
on_both_backends!(
    far_future_blocks_prices_and_dates_are_refused,
    far_future_blocks_prices_and_dates_are_refused
);
