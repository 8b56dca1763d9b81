//! Operations, documentation, limits and persistence.
use crate::helpers::*;
use domain::Role;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app(Backend::Sqlite, "health").await.unwrap();
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["store"], "ok");
    app.create_listing(Uuid::now_v7(), json!({})).await;
    let text = app.metrics().await;
    assert!(text.contains("zhilego_http_requests_total"), "{text}");
    assert!(text.contains("zhilego_events_appended_total"), "{text}");
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-correlation-id", "0190b9a2-7f6e-7c3e-9a8b-1234567890ab")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["x-correlation-id"],
        "0190b9a2-7f6e-7c3e-9a8b-1234567890ab"
    );
    app.finish().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_contract() {
    let app = spawn_app(Backend::Sqlite, "openapi").await.unwrap();
    let (status, doc) = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/listings", "post"),
        ("/api/v1/listings/{id}", "get"),
        ("/api/v1/listings/{id}", "patch"),
        ("/api/v1/listings/{id}/blocks", "post"),
        ("/api/v1/listings/{id}/blocks/{block_id}", "delete"),
        ("/api/v1/bookings", "post"),
        ("/api/v1/bookings", "get"),
        ("/api/v1/bookings/{id}", "get"),
        ("/api/v1/bookings/{id}/cancel", "post"),
        ("/api/v1/users/me", "get"),
        ("/api/v1/users/me", "patch"),
        ("/api/v1/bookings/{id}/payment", "post"),
        ("/api/v1/bookings/{id}/access", "get"),
        ("/api/v1/listings/{id}/access", "put"),
        ("/api/v1/payments/{id}", "get"),
        ("/api/v1/payments/{id}/refund", "post"),
        ("/api/v1/admin/payments/reconciliation", "get"),
        ("/api/v1/listings/{id}/calendar-feeds", "post"),
        ("/api/v1/listings/{id}/calendar-feeds", "get"),
        ("/api/v1/listings/{id}/calendar-feeds/{feed_id}", "delete"),
        (
            "/api/v1/listings/{id}/calendar-feeds/{feed_id}/sync",
            "post",
        ),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the document"
        );
    }
    assert!(doc["components"]["schemas"]["BookingView"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let res = app
        .client
        .get(app.url("/api/v1/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.text().await.unwrap().contains("openapi"));
    let (status, body) = app.get("/api/v1/nothing-here", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    app.finish().await;
}

#[tokio::test]
async fn clients_over_the_rate_limit_get_429_with_retry_after() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "rate_limit",
        &[("ZHILEGO_RATE_LIMIT", "5")],
    )
    .await
    .unwrap();
    let token = app.token(Role::Guest, Uuid::now_v7());
    for i in 0..5 {
        let (status, _) = app.get("/api/v1/users/me", Some(&token)).await;
        assert_eq!(status, 200, "request {i}");
    }
    let res = app
        .client
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let (_, body) = status_and_json(res).await;
    assert_eq!(body["code"], "rate_limited");
    // Another client still gets through; operations endpoints are not limited.
    let (status, _) = app
        .get(
            "/api/v1/users/me",
            Some(&app.token(Role::Guest, Uuid::now_v7())),
        )
        .await;
    assert_eq!(status, 200);
    for _ in 0..10 {
        assert_eq!(app.get("/healthz", None).await.0, 200);
    }
    app.finish().await;
}

#[tokio::test]
async fn embedded_data_survives_a_restart() {
    let app = spawn_app(Backend::Sqlite, "restart").await.unwrap();
    let host = Uuid::now_v7();
    let guest = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let (status, booking) = app
        .post(
            "/api/v1/bookings",
            &app.token(Role::Guest, guest),
            &booking_body(listing, 10, 12, 2),
        )
        .await;
    assert_eq!(status, 201);
    let storage = app.stop().await;

    let app = start(storage, &[]).await;
    let token = app.token(Role::Guest, guest);
    let (status, again) = app
        .get(
            &format!("/api/v1/bookings/{}", booking["id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "held");
    let (status, body) = app
        .post(
            "/api/v1/bookings",
            &app.token(Role::Guest, Uuid::now_v7()),
            &booking_body(listing, 11, 13, 2),
        )
        .await;
    assert_eq!(status, 409, "the calendar survived too: {body}");
    assert!(store::history::verify(&app.db).await.unwrap().ok);
    app.finish().await;
}

#[tokio::test]
async fn the_embedded_jwt_secret_is_generated_once_and_kept() {
    let dir = temp_dir();
    let mut env = std::collections::HashMap::new();
    env.insert("ZHILEGO_DATA_DIR".to_string(), dir.display().to_string());
    let settings = api::Settings::from_map(&env).unwrap();
    let first = api::app::jwt_secret(&settings).unwrap();
    let second = api::app::jwt_secret(&settings).unwrap();
    assert_eq!(first, second);
    assert!(first.len() >= 32);
    let _ = std::fs::remove_dir_all(dir);
}

/// Coordinates with every digit an f64 carries survive the store's JSON round trip exactly,
/// so the hash chain still verifies (the store re-reads and re-hashes each event).
async fn precise_coordinates_keep_the_chain_verifiable(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    for (lat, lon) in [
        // Each of these reads back one bit off with a plain (not round-trip) float parser.
        (42.953897833072716, 76.9),
        (43.013182564557724, 71.4),
    ] {
        app.create_listing(
            Uuid::now_v7(),
            serde_json::json!({"location": {"lat": lat, "lon": lon}}),
        )
        .await;
    }
    let report = store::history::verify(&app.db).await.unwrap();
    assert!(report.ok, "{report:?}");
    app.finish().await;
}
crate::on_both_backends!(
    precise_coordinates_keep_the_chain_verifiable_case,
    precise_coordinates_keep_the_chain_verifiable
);
