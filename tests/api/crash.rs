//! `kill -9` in the middle of a booking storm loses nothing that was answered and leaves
//! nothing half-written.
use crate::helpers::*;
use crate::on_both_backends;
use crate::processes::{audit_verify, create_listing_at, spawn_serve};
use domain::Role;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn killing_the_server_mid_storm_loses_no_answered_booking(backend: Backend, name: &str) {
    let Some(storage) = Storage::new(backend, name).await else {
        return;
    };
    let mut server = spawn_serve(&storage, &[]).await;
    let keys = storage.keys();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let host = keys.mint(Uuid::now_v7(), Role::Host, chrono::Duration::hours(1));
    let mut listings = Vec::new();
    for _ in 0..20 {
        let id = create_listing_at(&client, &server.address, &host).await;
        listings.push(id);
    }

    // 1,000 non-overlapping requests, 32 at a time; the server dies after about 150 answers.
    let answered = Arc::new(AtomicUsize::new(0));
    let address = server.address.clone();
    let requests = (0..1000).map(|i| {
        let listing = listings[i % listings.len()];
        let offset = 5 + 2 * (i / listings.len()) as i64;
        let body = booking_body(listing, offset, offset + 1, 1);
        let token = keys.mint(Uuid::now_v7(), Role::Guest, chrono::Duration::hours(1));
        let req = client
            .post(format!("{address}/api/v1/bookings"))
            .bearer_auth(token)
            .json(&body)
            .send();
        let answered = answered.clone();
        async move {
            match req.await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let body: serde_json::Value = res.json().await.unwrap_or_default();
                    answered.fetch_add(1, Ordering::SeqCst);
                    Some((status, body, listing))
                }
                Err(_) => None,
            }
        }
    });
    let mut stream = futures::stream::iter(requests).buffer_unordered(32);
    let mut created: HashMap<Uuid, Uuid> = HashMap::new();
    let mut killed = false;
    while let Some(outcome) = stream.next().await {
        if let Some((status, body, listing)) = outcome {
            assert!(
                status == 201 || status >= 500 || status == 409,
                "unexpected {status}: {body}"
            );
            if status == 201 {
                created.insert(body["id"].as_str().unwrap().parse().unwrap(), listing);
            }
        }
        if !killed && answered.load(Ordering::SeqCst) >= 150 {
            server.child.kill().await.expect("kill -9");
            killed = true;
        }
    }
    assert!(killed, "the server was killed mid-storm");
    assert!(
        created.len() >= 100,
        "only {} bookings before the kill",
        created.len()
    );

    // Restart on the same data; interrupted booking flows are undone quickly.
    let mut server = spawn_serve(&storage, &[("ZHILEGO_ORPHAN_AFTER_SECONDS", "1")]).await;
    let db = storage.database().await;
    for (booking, listing) in &created {
        let booking_events = store::history::aggregate_events(&db, "Booking", &booking.to_string())
            .await
            .unwrap();
        assert_eq!(
            booking_events.len(),
            1,
            "booking {booking} has its BookingHeld event"
        );
        assert_eq!(booking_events[0].event_type, "BookingHeld");
        let listing_events = store::history::aggregate_events(&db, "Listing", &listing.to_string())
            .await
            .unwrap();
        let mentions: Vec<&str> = listing_events
            .iter()
            .filter(|e| e.payload.to_string().contains(&booking.to_string()))
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(
            mentions,
            vec!["DatesReserved"],
            "booking {booking} holds its nights"
        );
        let guest_token = keys.mint(Uuid::now_v7(), Role::Admin, chrono::Duration::hours(1));
        let res = client
            .get(format!("{}/api/v1/bookings/{booking}", server.address))
            .bearer_auth(guest_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
    }

    // Every reservation ends up belonging to a booking or released: nothing half-done.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = store::history::events_by_position(&db, 0, 1_000_000)
            .await
            .unwrap();
        let bookings: HashSet<String> = events
            .iter()
            .filter(|e| e.aggregate_type == "Booking")
            .map(|e| e.aggregate_id.clone())
            .collect();
        let released: HashSet<String> = events
            .iter()
            .filter(|e| e.event_type == "DatesReleased")
            .map(|e| {
                e.payload["DatesReleased"]["booking_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let dangling: Vec<String> = events
            .iter()
            .filter(|e| e.event_type == "DatesReserved")
            .map(|e| {
                e.payload["DatesReserved"]["booking_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .filter(|b| !bookings.contains(b) && !released.contains(b))
            .collect();
        if dangling.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reservations without a booking were never undone: {dangling:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    db.close().await;
    let _ = server.child.kill().await;
    let (code, out) = audit_verify(&storage).await;
    assert_eq!(code, 0, "audit verify after the crash: {out}");
    storage.remove().await;
}
on_both_backends!(
    killing_the_server_mid_storm_loses_no_answered_booking,
    killing_the_server_mid_storm_loses_no_answered_booking
);
