//! The production client against the sandbox, over real HTTP on loopback.
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use domain::Kzt;
use kaspi::{KaspiClient, KaspiConfig, KaspiError, PaymentProvider, PaymentStatus};
use kaspi_sandbox::{Callback, Faults, Sandbox};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Calls = Arc<Mutex<Vec<(HashMap<String, String>, Option<String>)>>>;

/// A sandbox on a free port, and a client for it.
async fn sandbox(config: impl FnOnce(&mut KaspiConfig)) -> (Sandbox, KaspiClient, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new("sandbox-key");
    tokio::spawn(sandbox.clone().serve(listener));
    let mut cfg = KaspiConfig::new(url.clone(), "sandbox-key");
    config(&mut cfg);
    (sandbox, KaspiClient::new(cfg).unwrap(), url)
}

/// A stand-in for our callback endpoint that records what it is sent and answers `result` 0.
async fn callback_server() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let app = Router::new().route(
        "/kaspi/callback/",
        get(move |headers: HeaderMap, Query(q): Query<HashMap<String, String>>| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let txn = q.get("txn_id").cloned().unwrap_or_default();
                let sum = q.get("sum").cloned().unwrap_or_default();
                seen.lock().unwrap().push((q, auth));
                Json(json!({"txn_id": txn, "result": 0, "sum": sum, "prv_txn_id": "1", "comment": "ok"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/kaspi/callback/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn wait_for_calls(calls: &Calls, n: usize) -> Vec<(HashMap<String, String>, Option<String>)> {
    for _ in 0..100 {
        if calls.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    calls.lock().unwrap().clone()
}

#[tokio::test]
async fn a_guest_pays_on_the_payment_page_and_we_are_called_back() {
    let (sandbox, client, url) = sandbox(|_| {}).await;
    let (callback_url, calls) = callback_server().await;
    sandbox.set_callback(Callback {
        url: callback_url,
        credentials: Some(("kaspi".into(), "s3cret".into())),
    });
    let link = client.create_link("booking-1", Kzt(45_000)).await.unwrap();
    assert!(link.payment_link.starts_with(&format!("{url}/pay/")));
    assert!(link.expire_date > chrono::Utc::now());
    // Asking again with the same external id is the same payment.
    assert_eq!(
        client.create_link("booking-1", Kzt(45_000)).await.unwrap(),
        link
    );
    assert_eq!(
        client.status(link.payment_id).await.unwrap(),
        PaymentStatus::Wait
    );

    let http = reqwest::Client::new();
    let page = http
        .get(&link.payment_link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<button") && page.contains("45000"), "{page}");
    let paid = http.post(&link.payment_link).send().await.unwrap();
    assert_eq!(paid.status().as_u16(), 200);
    assert_eq!(
        client.status(link.payment_id).await.unwrap(),
        PaymentStatus::Processed
    );
    // Paying twice is refused.
    assert_eq!(
        http.post(&link.payment_link)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        409
    );

    let calls = wait_for_calls(&calls, 2).await;
    assert_eq!(calls.len(), 2, "check, then pay");
    for ((q, auth), command) in calls.iter().zip(["check", "pay"]) {
        assert_eq!(q["command"], command);
        assert_eq!(q["account"], "booking-1");
        assert_eq!(q["sum"], "45000");
        assert_eq!(q["txn_date"].len(), 14);
        assert!(auth.as_deref().is_some_and(|a| a.starts_with("Basic ")));
    }
    assert_eq!(calls[0].0["txn_id"], calls[1].0["txn_id"]);

    // Returns: partial, repeated (once in effect), and too much.
    let details = client.details(link.payment_id).await.unwrap();
    assert_eq!(
        (details.total_amount, details.available_return_amount),
        (Kzt(45_000), Kzt(45_000))
    );
    let op = client
        .refund(link.payment_id, Kzt(20_000), "refund-1")
        .await
        .unwrap();
    assert_eq!(
        client
            .refund(link.payment_id, Kzt(20_000), "refund-1")
            .await
            .unwrap(),
        op
    );
    assert_eq!(
        client
            .details(link.payment_id)
            .await
            .unwrap()
            .available_return_amount,
        Kzt(25_000)
    );
    let too_much = client
        .refund(link.payment_id, Kzt(30_000), "refund-2")
        .await;
    assert!(
        matches!(too_much, Err(KaspiError::Refused { .. })),
        "{too_much:?}"
    );
    client
        .refund(link.payment_id, Kzt(25_000), "refund-3")
        .await
        .unwrap();
    assert_eq!(
        client
            .details(link.payment_id)
            .await
            .unwrap()
            .available_return_amount,
        Kzt(0)
    );
}

#[tokio::test]
async fn dropped_callbacks_leave_the_payment_to_be_found_by_polling() {
    let (sandbox, client, _) = sandbox(|_| {}).await;
    let (callback_url, calls) = callback_server().await;
    sandbox.set_callback(Callback {
        url: callback_url,
        credentials: None,
    });
    sandbox.set_faults(Faults {
        drop_callbacks: true,
        ..Faults::default()
    });
    let link = client.create_link("booking-2", Kzt(10_000)).await.unwrap();
    assert!(sandbox.pay(link.payment_id).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(
        client.status(link.payment_id).await.unwrap(),
        PaymentStatus::Processed
    );
}

#[tokio::test]
async fn failures_are_retried_with_backoff_and_a_refund_before_payment_is_refused() {
    let (sandbox, client, _) = sandbox(|_| {}).await;
    sandbox.set_faults(Faults {
        fail_requests: 2,
        ..Faults::default()
    });
    let started = Instant::now();
    let link = client.create_link("booking-3", Kzt(5_000)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "waited 200 + 400 ms"
    );
    let refused = client.refund(link.payment_id, Kzt(1_000), "early").await;
    assert!(
        matches!(refused, Err(KaspiError::Refused { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_sandbox_that_is_down_or_too_slow_is_a_clear_error() {
    let (sandbox, client, _) = sandbox(|c| {
        c.timeout = Duration::from_millis(200);
        c.attempts = 2;
    })
    .await;
    sandbox.set_faults(Faults {
        delay_ms: 500,
        ..Faults::default()
    });
    let slow = client.create_link("booking-4", Kzt(5_000)).await;
    assert!(
        matches!(slow, Err(KaspiError::Unavailable { .. })),
        "{slow:?}"
    );
    sandbox.set_faults(Faults {
        fail_requests: 10,
        ..Faults::default()
    });
    let down = client.status(1).await;
    assert!(
        matches!(down, Err(KaspiError::Unavailable { .. })),
        "{down:?}"
    );
    // A request we gave up on may still have created the payment at Kaspi: asking again with
    // the same external id finds that one instead of making a second.
    sandbox.set_faults(Faults::default());
    let a = client.create_link("booking-4", Kzt(5_000)).await.unwrap();
    let b = client.create_link("booking-4", Kzt(5_000)).await.unwrap();
    assert_eq!(a.payment_id, b.payment_id);
}

#[tokio::test]
async fn a_wrong_api_key_is_refused() {
    let (_sandbox, _client, url) = sandbox(|_| {}).await;
    let wrong = KaspiClient::new(KaspiConfig::new(url, "not-the-key")).unwrap();
    let refused = wrong.create_link("x", Kzt(1)).await;
    assert!(
        matches!(refused, Err(KaspiError::Refused { code: 401, .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn requests_keep_to_ten_per_second() {
    let (_sandbox, client, _) = sandbox(|_| {}).await;
    let started = Instant::now();
    for i in 0..25 {
        client
            .create_link(&format!("rate-{i}"), Kzt(100))
            .await
            .unwrap();
    }
    // A burst of 10, then 10 per second: 15 more take at least 1.4 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_restarted_sandbox_never_reuses_payment_ids() {
    let first = kaspi_sandbox::Sandbox::new("k");
    let (listener, url) = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        (l, url)
    };
    tokio::spawn(first.clone().serve(listener));
    let client = kaspi::KaspiClient::new(kaspi::KaspiConfig::new(url, "k")).unwrap();
    let a = client.create_link("ACC1", Kzt(100)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = kaspi_sandbox::Sandbox::new("k");
    let (listener, url) = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        (l, url)
    };
    tokio::spawn(second.clone().serve(listener));
    let client = kaspi::KaspiClient::new(kaspi::KaspiConfig::new(url, "k")).unwrap();
    let b = client.create_link("ACC2", Kzt(100)).await.unwrap();
    // Ids are random (not counted up, so they cannot be guessed), hence distinct, not ordered.
    assert_ne!(
        a.payment_id, b.payment_id,
        "{} then {}",
        a.payment_id, b.payment_id
    );
}

#[tokio::test]
async fn payment_ids_cannot_be_guessed_from_ones_own() {
    let (sandbox, client, url) = sandbox(|_| {}).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            client
                .create_link(&format!("guess-{i}"), Kzt(100))
                .await
                .unwrap()
                .payment_id,
        );
    }
    assert!(ids.iter().all(|id| *id > 0), "{ids:?}");
    // Not a sequence: no two are neighbours, and they spread over the whole range.
    let mut sorted = ids.clone();
    sorted.sort();
    assert!(
        sorted.windows(2).all(|w| w[1] - w[0] > 1_000_000),
        "{ids:?}"
    );
    assert!(ids.iter().any(|id| *id > i64::MAX / 4), "{ids:?}");
    // A neighbour of one's own id is nobody's payment: its page and its Pay button are 404.
    let http = reqwest::Client::new();
    let mine = ids[0];
    for guess in [mine - 1, mine + 1, mine + 10, 1] {
        let page = http.get(format!("{url}/pay/{guess}")).send().await.unwrap();
        assert_eq!(page.status(), 404, "page of {guess}");
        let pay = http
            .post(format!("{url}/pay/{guess}"))
            .send()
            .await
            .unwrap();
        assert_eq!(pay.status(), 404, "pay {guess}");
        assert!(!sandbox.pay(guess).await, "{guess}");
    }
    assert_eq!(sandbox.status(mine), Some("Wait"));
    // There is no HTTP switch for faults.
    let faults = http
        .post(format!("{url}/sandbox/faults"))
        .json(&serde_json::json!({"fail_requests": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 404);
    assert!(client.create_link("after", Kzt(100)).await.is_ok());
}
