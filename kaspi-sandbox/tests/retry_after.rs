//! `Retry-After` is honoured by the Kaspi client (against a fake Kaspi that answers 503 and 429
//! with it) and by the sandbox's callbacks to us (against a callback endpoint that does).
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use domain::Kzt;
use kaspi::{Failure, KaspiClient, KaspiConfig, KaspiError, PaymentProvider, PaymentStatus};
use kaspi_sandbox::{Callback, Sandbox};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fake answers next: a status and its `Retry-After`, if any; once the script runs
/// out, a good answer.
type Script = Arc<Mutex<VecDeque<(u16, Option<String>)>>>;

/// When each request arrived.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

fn answer(script: &Script, arrivals: &Arrivals, good: serde_json::Value) -> Response {
    arrivals.lock().unwrap().push(Instant::now());
    match script.lock().unwrap().pop_front() {
        Some((status, after)) => {
            let mut headers = HeaderMap::new();
            if let Some(after) = after {
                headers.insert("retry-after", after.parse().unwrap());
            }
            let status = StatusCode::from_u16(status).unwrap();
            (status, headers, "try later").into_response()
        }
        None => Json(good).into_response(),
    }
}

/// A fake Kaspi answering `GET /payments/status/{id}` as `script` says.
async fn fake_kaspi(script: Vec<(u16, Option<&str>)>) -> (KaspiClient, Arrivals) {
    let script: Script = Arc::new(Mutex::new(
        script
            .into_iter()
            .map(|(s, a)| (s, a.map(str::to_string)))
            .collect(),
    ));
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let app = Router::new().route(
        &format!("{}/payments/status/{{id}}", kaspi::API_PREFIX),
        get(move || {
            let (script, seen) = (script.clone(), seen.clone());
            async move {
                answer(
                    &script,
                    &seen,
                    json!({"StatusCode": 0, "Message": "ok", "Data": {"Status": "Processed"}}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = KaspiConfig::new(url, "key");
    config.attempts = 3;
    config.timeout = Duration::from_secs(5);
    (KaspiClient::new(config).unwrap(), arrivals)
}

fn gaps(arrivals: &Arrivals) -> Vec<Duration> {
    let at = arrivals.lock().unwrap();
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn the_client_waits_as_long_as_a_503_retry_after_says() {
    let (client, arrivals) = fake_kaspi(vec![(503, Some("2"))]).await;
    let status = client.status(1).await.unwrap();
    assert_eq!(status, PaymentStatus::Processed);
    let gaps = gaps(&arrivals);
    assert_eq!(gaps.len(), 1, "one retry: {gaps:?}");
    // The backoff alone would have waited 200–400 ms.
    assert!(gaps[0] >= Duration::from_secs(2), "{gaps:?}");
    assert!(gaps[0] < Duration::from_secs(4), "{gaps:?}");
}

#[tokio::test]
async fn the_client_waits_until_a_429_retry_after_date() {
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let (client, arrivals) = fake_kaspi(vec![(429, Some(&date))]).await;
    assert_eq!(client.status(1).await.unwrap(), PaymentStatus::Processed);
    let gaps = gaps(&arrivals);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    // An HTTP-date is to the second: the wait is 2–3 s.
    assert!(gaps[0] >= Duration::from_secs(2), "{gaps:?}");
    assert!(gaps[0] < Duration::from_secs(4), "{gaps:?}");
}

#[tokio::test]
async fn without_retry_after_the_backoff_has_jitter_and_an_end() {
    let (client, arrivals) = fake_kaspi(vec![(503, None), (503, None), (503, None)]).await;
    let started = Instant::now();
    let err = client.status(1).await.unwrap_err();
    assert!(
        matches!(
            err,
            KaspiError::Unavailable {
                attempts: 3,
                last: Failure::Status { .. }
            }
        ),
        "{err:?}"
    );
    let gaps = gaps(&arrivals);
    assert_eq!(gaps.len(), 2, "3 attempts: {gaps:?}");
    assert!(gaps[0] >= Duration::from_millis(200) && gaps[0] < Duration::from_millis(800));
    assert!(gaps[1] >= Duration::from_millis(400) && gaps[1] < Duration::from_millis(1400));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_retry_after_longer_than_a_minute_is_not_waited_for() {
    let (client, arrivals) = fake_kaspi(vec![(503, Some("3600"))]).await;
    let started = Instant::now();
    let err = client.status(1).await.unwrap_err();
    assert!(
        matches!(err, KaspiError::Unavailable { attempts: 1, .. }),
        "gave up at once: {err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(arrivals.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_sandbox_calls_back_after_our_retry_after() {
    // Our callback endpoint: 503 with Retry-After: 2 to the first call, then result 0.
    let script: Script = Arc::new(Mutex::new(VecDeque::from([(503, Some("2".into()))])));
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let app = Router::new().route(
        "/kaspi/callback/",
        get(move || {
            let (script, seen) = (script.clone(), seen.clone());
            async move { answer(&script, &seen, json!({"result": 0, "comment": "ok"})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/kaspi/callback/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new("sandbox-key");
    tokio::spawn(sandbox.clone().serve(listener));
    sandbox.set_callback(Callback {
        url: callback,
        credentials: None,
    });
    let client = KaspiClient::new(KaspiConfig::new(url, "sandbox-key")).unwrap();
    let link = client.create_link("booking-ra", Kzt(10_000)).await.unwrap();
    assert!(sandbox.pay(link.payment_id).await);
    // check (503), check again after 2 s (0), then pay (0).
    for _ in 0..100 {
        if arrivals.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gaps = gaps(&arrivals);
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert!(
        gaps[0] >= Duration::from_secs(2),
        "waited Retry-After: {gaps:?}"
    );
    assert!(
        gaps[1] < Duration::from_secs(1),
        "pay follows the check: {gaps:?}"
    );
}
