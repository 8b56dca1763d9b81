//! Whatever the concurrency, two live stays never overlap on one listing.
use crate::helpers::*;
use crate::on_both_backends;
use crate::processes::{audit_verify, create_listing_at, spawn_serve};
use domain::Role;
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;

/// Fires one booking request per guest token, all at once, and tallies the statuses.
async fn storm(
    client: &reqwest::Client,
    targets: &[String],
    tokens: &[String],
    body: &serde_json::Value,
) -> HashMap<u16, usize> {
    let requests = tokens.iter().enumerate().map(|(i, token)| {
        let url = format!("{}/api/v1/bookings", targets[i % targets.len()]);
        let req = client.post(url).bearer_auth(token).json(body).send();
        async move {
            let res = req.await.expect("every request is answered");
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            if status == 409 {
                assert_eq!(body["code"], "dates_unavailable", "{body}");
            }
            status
        }
    });
    let mut tally = HashMap::new();
    for status in futures::future::join_all(requests).await {
        *tally.entry(status).or_insert(0) += 1;
    }
    tally
}

fn storm_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn a_thousand_overlapping_requests_make_one_booking(backend: Backend, name: &str) {
    let Some(app) = spawn_app(backend, name).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let tokens: Vec<String> = (0..1000)
        .map(|_| app.token(Role::Guest, Uuid::now_v7()))
        .collect();
    let tally = storm(
        &storm_client(),
        std::slice::from_ref(&app.address),
        &tokens,
        &booking_body(listing, 10, 14, 2),
    )
    .await;
    assert_eq!(tally.get(&201), Some(&1), "{tally:?}");
    assert_eq!(tally.get(&409), Some(&999), "{tally:?}");
    // The calendar agrees: exactly one reservation was ever made on the listing.
    let events = store::history::aggregate_events(&app.db, "Listing", &listing.to_string())
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == "DatesReserved")
            .count(),
        1
    );
    assert!(store::history::verify(&app.db).await.unwrap().ok);
    app.finish().await;
}
on_both_backends!(
    a_thousand_overlapping_requests_make_one_booking,
    a_thousand_overlapping_requests_make_one_booking
);

/// Two `zhilego serve` processes on one PostgreSQL database race for the same nights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_racing_on_one_postgres_make_one_booking() {
    let Some(storage) = Storage::new(Backend::Postgres, "two_servers_racing").await else {
        return;
    };
    let mut a = spawn_serve(&storage, &[]).await;
    let mut b = spawn_serve(&storage, &[]).await;
    let keys = storage.keys();
    let client = storm_client();
    let host = keys.mint(Uuid::now_v7(), Role::Host, chrono::Duration::hours(1));
    let listing = create_listing_at(&client, &a.address, &host).await;

    let targets = vec![a.address.clone(), b.address.clone()];
    for round in 0..2 {
        // Round 0: the same nights; round 1: the next nights, adjacent to round 0's.
        let (from, to) = if round == 0 { (10, 13) } else { (13, 15) };
        let tokens: Vec<String> = (0..1000)
            .map(|_| keys.mint(Uuid::now_v7(), Role::Guest, chrono::Duration::hours(1)))
            .collect();
        let tally = storm(
            &client,
            &targets,
            &tokens,
            &booking_body(listing, from, to, 2),
        )
        .await;
        assert_eq!(tally.get(&201), Some(&1), "round {round}: {tally:?}");
        assert_eq!(tally.get(&409), Some(&999), "round {round}: {tally:?}");
    }
    let db = storage.database().await;
    let events = store::history::aggregate_events(&db, "Listing", &listing.to_string())
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == "DatesReserved")
            .count(),
        2
    );
    db.close().await;
    let (code, out) = audit_verify(&storage).await;
    assert_eq!(code, 0, "{out}");
    let _ = a.child.kill().await;
    let _ = b.child.kill().await;
    storage.remove().await;
}
