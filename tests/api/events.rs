//! One event language: an event stored in an older version is read as the current one by the
//! aggregate and by every projection (and a rebuild over mixed versions equals the incremental
//! build); an event that does not decode stops the projections right before it, loudly.
use crate::helpers::*;
use crate::on_both_backends;
use crate::projections::{assert_same_rows, dump_all, rebuild_all, settle};
use domain::booking::BookingStatus;
use domain::Role;
use serde_json::{json, Value};
use store::chain::{event_hash, ChainInput, GENESIS_HASH};
use store::Database;
use uuid::Uuid;

/// Appends one event row as an older version of the code would have written it, chained to
/// `prev_hash`; returns its position.
async fn append_raw(
    db: &Database,
    (aggregate_type, aggregate_id, sequence): (&str, Uuid, i64),
    (event_type, event_version): (&str, &str),
    payload: &Value,
    prev_hash: &str,
) -> i64 {
    let aggregate_id = aggregate_id.to_string();
    let mut metadata = json!({
        "event_id": Uuid::now_v7(), "command_id": Uuid::now_v7(),
        "correlation_id": Uuid::now_v7(), "actor": Uuid::nil(), "role": "system",
        "channel": "system", "request_time": "2026-12-01T08:00:00+00:00",
    });
    let hash = event_hash(
        prev_hash,
        &ChainInput {
            aggregate_type,
            aggregate_id: &aggregate_id,
            sequence,
            event_type,
            event_version,
            payload,
            metadata: &metadata,
        },
    );
    metadata["hash"] = Value::String(hash);
    let sql = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
               event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    let select = "SELECT position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                  AND sequence = $3";
    // JSON columns on PostgreSQL, JSON text on SQLite: `Json` binds as either.
    store::with_pool!(db, pool => {
        sqlx::query(sql)
            .bind(aggregate_type)
            .bind(&aggregate_id)
            .bind(sequence)
            .bind(event_type)
            .bind(event_version)
            .bind(sqlx::types::Json(payload))
            .bind(sqlx::types::Json(&metadata))
            .execute(pool)
            .await
            .unwrap();
        sqlx::query_scalar(select)
            .bind(aggregate_type)
            .bind(&aggregate_id)
            .bind(sequence)
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

/// `BookingHeld` as version 1.0 wrote it: the nightly prices without their dates.
fn booking_held_v1(booking: Uuid, listing: Uuid, host: Uuid, guest: Uuid) -> Value {
    json!({"BookingHeld": {
        "booking_id": booking, "listing_id": listing, "host_id": host, "guest_id": guest,
        "range": {"check_in": day(40), "check_out": day(42)},
        "guests": 2,
        "channel": "web",
        "price": {"nights": 2, "nightly_kzt": [20000, 25000], "nights_total_kzt": 45000,
                  "cleaning_fee_kzt": 5000, "total_kzt": 50000},
        "cancellation_policy": "moderate",
        "hold_expires_at": "2030-01-01T10:00:00Z"
    }})
}

async fn a_version_1_event_reads_as_version_2(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    // A booking written by this version (BookingHeld 2.0) ...
    let guest = Uuid::now_v7();
    let token = app.token(Role::Guest, guest);
    let (status, current) = app
        .post(
            "/api/v1/bookings",
            &token,
            &booking_body(listing, 10, 13, 2),
        )
        .await;
    assert_eq!(status, 201, "{current}");
    // ... and one written by version 1.
    let old = Uuid::now_v7();
    append_raw(
        &app.db,
        ("Booking", old, 1),
        ("BookingHeld", "1.0"),
        &booking_held_v1(old, listing, host, guest),
        GENESIS_HASH,
    )
    .await;

    // The aggregate loads it through the upcaster: each night has its date.
    let booking = app.state.commands.booking(old).await.unwrap().unwrap();
    assert_eq!(booking.status, BookingStatus::Held);
    let price = booking.price.expect("the held price");
    let nights: Vec<(String, i64)> = price
        .nightly
        .iter()
        .map(|n| (n.date.to_string(), n.price_kzt.0))
        .collect();
    assert_eq!(nights, vec![(day(40), 20_000), (day(41), 25_000)]);
    let (status, view) = app
        .get(&format!("/api/v1/bookings/{old}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["price"]["nightly_kzt"], json!([20000, 25000]));
    assert_eq!(view["total_kzt"], 50000);

    // Every projection reads it too, and none stopped.
    settle(&app).await;
    for s in app.state.reads.statuses().await.unwrap() {
        assert!(
            s.stopped_at.is_none(),
            "{} stopped: {:?}",
            s.name,
            s.stopped_at
        );
    }
    let (_, list) = app.get("/api/v1/bookings", Some(&token)).await;
    let row = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == json!(old))
        .unwrap_or_else(|| panic!("the version-1 booking is listed: {list}"))
        .clone();
    assert_eq!(row["total_kzt"], 50000);
    assert_eq!(row["status"], "held");

    // A rebuild over both versions equals the incremental build.
    let incremental = dump_all(&app).await;
    rebuild_all(&app).await;
    assert_same_rows(&incremental, &dump_all(&app).await);
    app.finish().await;
}
on_both_backends!(
    a_version_1_booking_held_is_read_as_version_2,
    a_version_1_event_reads_as_version_2
);

async fn an_undecodable_event_stops_the_projections(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({"city": "Taraz"})).await;
    let guest = Uuid::now_v7();
    let token = app.token(Role::Guest, guest);
    let (status, held) = app
        .post(
            "/api/v1/bookings",
            &token,
            &booking_body(listing, 10, 12, 1),
        )
        .await;
    assert_eq!(status, 201, "{held}");
    let booking: Uuid = held["id"].as_str().unwrap().parse().unwrap();
    settle(&app).await;
    let before = dump_all(&app).await;

    // A confirmation without its amount: nothing may read it as "paid 0".
    let bad = append_raw(
        &app.db,
        ("Booking", booking, 2),
        ("BookingConfirmed", "1.0"),
        &json!({"BookingConfirmed": {"payment_id": Uuid::now_v7()}}),
        GENESIS_HASH,
    )
    .await;
    // Good events after it wait behind it.
    let later = app.create_listing(host, json!({"city": "Taraz"})).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let statuses = loop {
        let statuses = app.state.reads.statuses().await.unwrap();
        if statuses.iter().all(|s| s.stopped_at.is_some()) {
            break statuses;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projections did not stop: {statuses:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for s in &statuses {
        let fault = s.stopped_at.as_ref().unwrap();
        assert_eq!(fault["position"], bad, "{}: {fault}", s.name);
        assert_eq!(fault["event_type"], "BookingConfirmed");
        assert!(
            fault["reason"].as_str().unwrap().contains("paid_kzt"),
            "{}: {fault}",
            s.name
        );
        assert!(s.behind_events >= 1, "{s:?}");
    }
    // Nothing past the fault was written, and nothing was defaulted.
    assert_same_rows(&before, &dump_all(&app).await);
    let (_, mine) = app.get("/api/v1/bookings", Some(&token)).await;
    assert_eq!(mine["items"][0]["status"], "held", "{mine}");
    let (_, catalogue) = app.get("/api/v1/listings?city=Taraz", None).await;
    let ids: Vec<&Value> = catalogue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["id"])
        .collect();
    assert!(!ids.contains(&&json!(later)), "{catalogue}");

    // A rebuild stops at the same place and says so.
    let err = app
        .state
        .reads
        .bookings
        .rebuild(None)
        .await
        .expect_err("a rebuild over an undecodable event fails");
    assert!(
        err.to_string().contains(&format!("position {bad}")),
        "{err}"
    );
    assert_same_rows(&before[..1], &dump_all(&app).await[..1]);

    // Operators see it in the metrics.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("zhilego_projection_undecodable_events_total"),
        "{metrics}"
    );
    app.finish().await;
}
on_both_backends!(
    an_undecodable_event_stops_projections_at_its_position,
    an_undecodable_event_stops_the_projections
);
