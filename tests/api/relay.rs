//! The relay publishes every committed event to JetStream exactly once in effect, in
//! commit-safe order, and never skips an event whose transaction commits late.
use crate::helpers::*;
use async_nats::jetstream::{self, consumer::pull};
use domain::Role;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Every message of `stream` so far, as (Nats-Msg-Id, payload).
async fn read_stream(url: &str, stream: &str) -> Vec<(String, Value)> {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let stream = js.get_stream(stream).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        let before = out.len();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            out.push((id, serde_json::from_slice(&message.payload).unwrap()));
            message.ack().await.unwrap();
        }
        if out.len() == before {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_relays_every_event_once_in_order() {
    let test = "serve_relays_every_event_once_in_order";
    let Some(nats) = nats_url(test) else { return };
    let Some(storage) = Storage::new(Backend::Postgres, test).await else {
        return;
    };
    let storage = storage.with_nats(nats.clone());
    let app = start(storage, &[]).await;
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    for i in 0..20 {
        // A guest per booking, as real traffic is.
        let guest = app.token(Role::Guest, Uuid::now_v7());
        let (status, b) = app
            .post(
                "/api/v1/bookings",
                &guest,
                &booking_body(listing, 10 + 2 * i, 11 + 2 * i, 1),
            )
            .await;
        assert_eq!(status, 201, "{b}");
        if i % 5 == 0 {
            let id = b["id"].as_str().unwrap();
            app.post(&format!("/api/v1/bookings/{id}/cancel"), &guest, &json!({}))
                .await;
        }
    }
    let stored = store::history::events_by_position(&app.db, 0, 10_000)
        .await
        .unwrap();
    let (_, stream, prefix) = app.storage.nats.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        let messages = read_stream(&nats, &stream).await;
        if messages.len() >= stored.len() || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(messages.len(), stored.len(), "one message per event");
    let by_id: HashMap<&str, &store::StoredEvent> =
        stored.iter().map(|e| (e.event_id(), e)).collect();
    let mut last_sequence: HashMap<String, i64> = HashMap::new();
    for (msg_id, body) in &messages {
        let event = by_id
            .get(msg_id.as_str())
            .unwrap_or_else(|| panic!("unknown message id {msg_id}"));
        assert_eq!(body["position"], event.position);
        assert_eq!(body["event_type"], event.event_type.as_str());
        assert_eq!(body["hash"], event.hash.as_str());
        let key = format!("{}/{}", event.aggregate_type, event.aggregate_id);
        let previous = last_sequence.insert(key, event.sequence).unwrap_or(0);
        assert_eq!(event.sequence, previous + 1, "per-aggregate order");
    }
    assert!(prefix.ends_with(".events"));
    let (_, ready) = app.get("/readyz", None).await;
    assert_eq!(ready["checks"]["bus"], "ok", "{ready}");
    app.finish().await;
}

/// A transaction that took a lower position stays open while later ones commit: nothing past
/// it is published until it commits; then everything is, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped() {
    let test = "a_late_commit_is_never_skipped";
    let Some(nats) = nats_url(test) else { return };
    let Some(storage) = Storage::new(Backend::Postgres, test).await else {
        return;
    };
    let storage = storage.with_nats(nats.clone());
    let url = storage.pg.as_ref().unwrap().2.clone();
    let db = store::Database::connect(&url, 8).await.unwrap();
    db.migrate().await.unwrap();
    let store::Database::Postgres(pool) = &db else {
        unreachable!()
    };
    let (_, stream, prefix) = storage.nats.clone().unwrap();
    let config = bus::RelayConfig {
        stream: stream.clone(),
        subject_prefix: prefix,
        ..Default::default()
    };
    let relay = bus::Relay::new(
        db.clone(),
        async_nats::connect(nats.as_str()).await.unwrap(),
        config,
    )
    .await
    .unwrap();
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('Probe', $1, 1, 'Happened', '1.0', '{}'::jsonb, jsonb_build_object('event_id', $1::text)) \
                  RETURNING position";

    let mut slow = pool.begin().await.unwrap();
    let slow_id = Uuid::now_v7().to_string();
    let slow_position: i64 = sqlx::query_scalar(insert)
        .bind(&slow_id)
        .fetch_one(&mut *slow)
        .await
        .unwrap();
    let mut fast_ids = Vec::new();
    for _ in 0..3 {
        let id = Uuid::now_v7().to_string();
        let position: i64 = sqlx::query_scalar(insert)
            .bind(&id)
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(position > slow_position);
        fast_ids.push(id);
    }
    assert_eq!(
        relay.relay_once().await.unwrap(),
        0,
        "nothing may pass the open transaction"
    );
    assert!(read_stream(&nats, &stream).await.is_empty());

    slow.commit().await.unwrap();
    // The watermark is cluster-wide: another test's transaction open at this instant holds it
    // back for a moment, so the four may take more than one pass (never more than four).
    let mut relayed = 0;
    for _ in 0..200 {
        relayed += relay.relay_once().await.unwrap();
        if relayed >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(relayed, 4);
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    let ids: Vec<String> = read_stream(&nats, &stream)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut expected = vec![slow_id];
    expected.extend(fast_ids);
    assert_eq!(
        ids, expected,
        "the late event first (its transaction began first), each once"
    );

    // A relay that forgot its checkpoint publishes again; JetStream drops the duplicates.
    sqlx::query("UPDATE relay_checkpoints SET tx = 0, position = 0")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(relay.relay_once().await.unwrap(), 4);
    assert_eq!(read_stream(&nats, &stream).await.len(), 4);
    db.close().await;
    storage.remove().await;
}
