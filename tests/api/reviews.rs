//! Reviews: the guest of a completed stay rates it once; the listing's rating shows in the
//! catalogue and in availability search.
use crate::helpers::*;
use crate::on_both_backends;
use domain::Role;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// A guest's paid stay on `listing`, moved on to completed.
async fn completed_stay(app: &TestApp, listing: Uuid, from: i64) -> (Uuid, String) {
    let guest = app.token(Role::Guest, Uuid::now_v7());
    let (status, b) = app
        .post(
            "/api/v1/bookings",
            &guest,
            &booking_body(listing, from, from + 1, 1),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let booking: Uuid = b["id"].as_str().unwrap().parse().unwrap();
    let (status, p) = app
        .post(
            &format!("/api/v1/bookings/{booking}/payment"),
            &guest,
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let res = app
        .client
        .get(app.url("/kaspi/callback/"))
        .query(&[
            ("command", "pay"),
            ("txn_id", &Uuid::now_v7().simple().to_string()),
            ("account", p["account"].as_str().unwrap()),
            ("sum", &p["amount_kzt"].to_string()),
        ])
        .basic_auth(KASPI_USER, Some(KASPI_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(res).await.1["result"], 0);
    let after = domain::local_date(chrono::Utc::now()) + chrono::Duration::days(from + 2);
    assert!(app
        .state
        .commands
        .advance_stay(booking, after)
        .await
        .unwrap());
    assert!(app
        .state
        .commands
        .advance_stay(booking, after)
        .await
        .unwrap());
    (booking, guest)
}

async fn eventually(app: &TestApp, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, 200, "{body}");
        if ok(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never matched: {last}");
}

on_both_backends!(a_guest_reviews_a_completed_stay_once, reviews);
async fn reviews(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let listing = app
        .create_listing(Uuid::now_v7(), json!({"city": "Shymkent"}))
        .await;
    let (first, guest) = completed_stay(&app, listing, 2).await;

    // Not the guest, bad ratings, a stay not yet over: refused.
    let other = app.token(Role::Guest, Uuid::now_v7());
    let path = format!("/api/v1/bookings/{first}/review");
    let (status, _) = app.post(&path, &other, &json!({"rating": 5})).await;
    assert_eq!(status, 403);
    let (status, p) = app.post(&path, &guest, &json!({"rating": 6})).await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["errors"][0]["field"], "rating");
    let guest2 = app.token(Role::Guest, Uuid::now_v7());
    let (_, held) = app
        .post(
            "/api/v1/bookings",
            &guest2,
            &booking_body(listing, 20, 21, 1),
        )
        .await;
    let (status, p) = app
        .post(
            &format!("/api/v1/bookings/{}/review", held["id"].as_str().unwrap()),
            &guest2,
            &json!({"rating": 4}),
        )
        .await;
    assert_eq!(status, 409, "{p}");

    let (status, r) = app
        .post(
            &path,
            &guest,
            &json!({"rating": 5, "text": "Чисто и уютно"}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["rating"], 5);
    let (status, p) = app.post(&path, &guest, &json!({"rating": 1})).await;
    assert_eq!(status, 409);
    assert_eq!(p["code"], "already_reviewed");

    let (second, guest_b) = completed_stay(&app, listing, 5).await;
    let (status, _) = app
        .post(
            &format!("/api/v1/bookings/{second}/review"),
            &guest_b,
            &json!({"rating": 4}),
        )
        .await;
    assert_eq!(status, 201);

    let catalogue = eventually(&app, "/api/v1/listings?city=Shymkent", |b| {
        b["items"][0]["reviews_count"] == 2
    })
    .await;
    assert_eq!(catalogue["items"][0]["rating"], 4.5);
    let search = format!(
        "/api/v1/availability?city=Shymkent&check_in={}&check_out={}&guests=1",
        day(40),
        day(42)
    );
    let found = eventually(&app, &search, |b| b["items"][0]["reviews_count"] == 2).await;
    assert_eq!(found["items"][0]["rating"], 4.5);
    app.finish().await;
}
