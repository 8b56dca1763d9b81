//! The edge against slow, greedy or curious clients: socket timeouts and the connection cap,
//! webhook limits, who reads `/metrics`, token checks, private files, correlation ids kept
//! apart and Kaspi replays that do not match.
use crate::helpers::*;
use domain::Role;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

fn host_port(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_string()
}

/// Writes `head`, then `trickle` every `every` (while `trickle_for` lasts), and reads until
/// the server closes the connection. Returns how long that took and what was read.
async fn until_closed(
    app: &TestApp,
    head: &[u8],
    trickle: &'static [u8],
    every: Duration,
    trickle_for: Duration,
) -> (Duration, String) {
    let stream = TcpStream::connect(host_port(app)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    wr.write_all(head).await.unwrap();
    let writer = tokio::spawn(async move {
        while started.elapsed() < trickle_for {
            tokio::time::sleep(every).await;
            if wr.write_all(trickle).await.is_err() {
                return;
            }
        }
        // Silent from here on, the connection still open on our side.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(wr);
    });
    let mut read = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(outcome.is_ok(), "the server kept the connection open");
    (
        started.elapsed(),
        String::from_utf8_lossy(&read).into_owned(),
    )
}

#[tokio::test]
async fn slow_headers_are_cut_within_the_header_timeout() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "slow_headers",
        &[("ZHILEGO_HEADER_TIMEOUT_MS", "800")],
    )
    .await
    .unwrap();
    let (took, _) = until_closed(
        &app,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        b"X-Slow: 1\r\n",
        Duration::from_millis(150),
        Duration::from_secs(30),
    )
    .await;
    assert!(took < Duration::from_millis(2500), "cut after {took:?}");
    assert!(
        took >= Duration::from_millis(700),
        "cut too early: {took:?}"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_slow_body_is_cut_within_the_body_timeout() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "slow_body",
        &[("ZHILEGO_BODY_TIMEOUT_MS", "800")],
    )
    .await
    .unwrap();
    let token = app.token(Role::Host, Uuid::now_v7());
    let head = format!(
        "POST /api/v1/listings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
    );
    // A body that keeps trickling: the connection goes within the deadline, however it is
    // closed (a reset may swallow the answer, as bytes are still coming).
    let (took, read) = until_closed(
        &app,
        head.as_bytes(),
        b" ",
        Duration::from_millis(100),
        Duration::from_secs(30),
    )
    .await;
    assert!(took < Duration::from_millis(2500), "cut after {took:?}");
    assert!(
        read.is_empty() || read.starts_with("HTTP/1.1 408"),
        "{read}"
    );
    // A body that stalls after a few bytes: the answer is a 408 problem, then the close.
    let (took, read) = until_closed(
        &app,
        head.as_bytes(),
        b" ",
        Duration::from_millis(100),
        Duration::from_millis(300),
    )
    .await;
    assert!(took < Duration::from_millis(2500), "cut after {took:?}");
    assert!(read.starts_with("HTTP/1.1 408"), "{read}");
    assert!(read.contains("application/problem+json"), "{read}");
    assert!(read.contains("body_timeout"), "{read}");
    assert_eq!(app.event_count().await, 0, "nothing was created");
    app.finish().await;
}

#[tokio::test]
async fn idle_connections_are_cut_within_the_idle_timeout() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "idle_sockets",
        &[
            ("ZHILEGO_IDLE_TIMEOUT_MS", "800"),
            ("ZHILEGO_HEADER_TIMEOUT_MS", "30000"),
        ],
    )
    .await
    .unwrap();
    // A connection that never says anything.
    let (took, read) = until_closed(&app, b"", b"", Duration::from_secs(60), Duration::ZERO).await;
    assert!(took < Duration::from_millis(2500), "cut after {took:?}");
    assert!(read.is_empty(), "{read}");
    // A kept-alive connection after its request.
    let (took, read) = until_closed(
        &app,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"",
        Duration::from_secs(60),
        Duration::ZERO,
    )
    .await;
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(took < Duration::from_millis(2500), "cut after {took:?}");
    app.finish().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "connection_cap",
        &[
            ("ZHILEGO_MAX_CONNECTIONS", "2"),
            ("ZHILEGO_HEADER_TIMEOUT_MS", "30000"),
            ("ZHILEGO_IDLE_TIMEOUT_MS", "30000"),
        ],
    )
    .await
    .unwrap();
    let first = TcpStream::connect(host_port(&app)).await.unwrap();
    let _second = TcpStream::connect(host_port(&app)).await.unwrap();
    // Let the server take both before the third knocks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(host_port(&app)).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the third connection was served beyond the cap"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    app.finish().await;
}

#[tokio::test]
async fn a_slow_answer_is_a_problem_503() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "request_timeout",
        &[
            ("ZHILEGO_REQUEST_TIMEOUT_MS", "300"),
            ("ZHILEGO_READ_WAIT_MS", "5000"),
        ],
    )
    .await
    .unwrap();
    // A read that waits for a position the store never reaches.
    let token = app.token(Role::Guest, Uuid::now_v7());
    let started = Instant::now();
    let res = app
        .client
        .get(app.url("/api/v1/bookings?min_position=999999999"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(res.status(), 503);
    let (_, body) = status_and_json(res).await;
    assert_eq!(body["code"], "request_timeout", "{body}");
    app.finish().await;
}

async fn post_status(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Body=hi&From=whatsapp%3A%2B77010000000")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn webhooks_and_the_kaspi_callback_are_limited_per_source() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "webhook_limit",
        &[("ZHILEGO_WEBHOOK_RATE_LIMIT", "10")],
    )
    .await
    .unwrap();
    for path in [
        "/whatsapp/webhook/",
        "/telegram/webhook/",
        "/kaspi/callback/",
    ] {
        // At once, so that a slow machine does not refill the bucket between requests.
        let answers = futures::future::join_all((0..40).map(|_| post_status(&app, path))).await;
        let limited: Vec<_> = answers.iter().filter(|r| r.status() == 429).collect();
        let passed = answers.len() - limited.len();
        assert!(passed >= 10, "{path}: only {passed} passed");
        let res = limited
            .first()
            .unwrap_or_else(|| panic!("{path}: 40 at once and none limited"));
        assert!(res.headers().contains_key("retry-after"));
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        // The API's own limit is separate (off in tests).
        let (status, _) = app.get("/healthz", None).await;
        assert_eq!(status, 200);
        // Wait for the bucket to refill before the next endpoint.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    app.finish().await;
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_behind_the_token() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "metrics_access",
        &[("ZHILEGO_METRICS_TOKEN", "scrape-me")],
    )
    .await
    .unwrap();
    let (status, body) = app.get("/metrics", None).await;
    assert_eq!(status, 404, "the API listener has no metrics: {body}");
    let metrics = app.metrics_address.clone().expect("metrics listener");
    let url = format!("{metrics}/metrics");
    let res = app.client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(&url)
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("zhilego_"));
    app.finish().await;
}

fn signed(secret: &str, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn me(app: &TestApp, token: &str) -> u16 {
    app.get("/api/v1/users/me", Some(token)).await.0
}

#[tokio::test]
async fn tokens_not_yet_valid_or_too_long_lived_are_refused() {
    let app = spawn_app(Backend::Sqlite, "jwt_checks").await.unwrap();
    let secret = app.storage.jwt_secret.clone();
    let now = chrono::Utc::now().timestamp();
    let claims = |iat: i64, exp: i64, nbf: Option<i64>| {
        let mut c = json!({"sub": Uuid::now_v7(), "role": "guest", "iss": "zhilego",
            "iat": iat, "exp": exp});
        if let Some(nbf) = nbf {
            c["nbf"] = nbf.into();
        }
        c
    };
    let fine = signed(&secret, None, claims(now, now + 3600, Some(now - 10)));
    assert_ne!(me(&app, &fine).await, 401);
    let future = signed(&secret, None, claims(now, now + 3600, Some(now + 600)));
    assert_eq!(me(&app, &future).await, 401);
    let year = signed(&secret, None, claims(now, now + 365 * 24 * 3600, None));
    assert_eq!(me(&app, &year).await, 401);
    app.finish().await;

    // `zhilego token` refuses to mint what the service would refuse.
    let out = std::process::Command::new(crate::processes::ZHILEGO)
        .args(["token", "--role", "guest", "--ttl-hours", "8760"])
        .env("ZHILEGO_JWT_SECRET", "s")
        .env("ZHILEGO_METRICS_ADDR", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ZHILEGO_JWT_MAX_TTL_HOURS"));
}

#[tokio::test]
async fn the_previous_secret_is_accepted_with_its_kid() {
    let old = format!("old-secret-{}", Uuid::new_v4());
    let app = spawn_app_with(
        Backend::Sqlite,
        "jwt_rotation",
        &[("ZHILEGO_JWT_PREVIOUS_SECRET", &old)],
    )
    .await
    .unwrap();
    let before = api::auth::JwtKeys::new(old.as_bytes()).mint(
        Uuid::now_v7(),
        Role::Guest,
        chrono::Duration::hours(1),
    );
    assert_ne!(
        me(&app, &before).await,
        401,
        "a token of the previous secret"
    );
    let current = app.token(Role::Guest, Uuid::now_v7());
    assert_ne!(me(&app, &current).await, 401);
    let stranger = api::auth::JwtKeys::new(b"someone-else").mint(
        Uuid::now_v7(),
        Role::Guest,
        chrono::Duration::hours(1),
    );
    assert_eq!(me(&app, &stranger).await, 401);
    app.finish().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_files_are_private_from_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let root = temp_dir();
    let data = root.join("data");
    let data_text = data.display().to_string();
    let app = spawn_app_with(
        Backend::Sqlite,
        "file_modes",
        &[
            ("ZHILEGO_DATA_DIR", &data_text),
            ("ZHILEGO_JWT_SECRET", ""),
            ("ZHILEGO_ENCRYPTION_KEY", ""),
        ],
    )
    .await
    .unwrap();
    let mode = |name: &str| {
        let path = if name.is_empty() {
            data.clone()
        } else {
            data.join(name)
        };
        std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "data dir");
    for file in ["zhilego.db", "jwt-secret", "encryption-key"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    for file in ["zhilego.db-wal", "zhilego.db-shm"] {
        if data.join(file).exists() {
            assert_eq!(mode(file), 0o600, "{file}");
        }
    }
    app.finish().await;
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn a_client_correlation_id_is_kept_apart_from_ours() {
    let app = spawn_app(Backend::Sqlite, "client_correlation")
        .await
        .unwrap();
    let token = app.token(Role::Host, Uuid::now_v7());
    let res = app
        .client
        .post(app.url("/api/v1/listings"))
        .bearer_auth(&token)
        .header("x-correlation-id", "client-run-7")
        .json(&listing_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-correlation-id"], "client-run-7");
    let ours: Uuid = res.headers()["x-server-correlation-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(res.status(), 201);
    // A client's UUID is not taken as ours either.
    let theirs = Uuid::now_v7();
    let res = app
        .client
        .post(app.url("/api/v1/listings"))
        .bearer_auth(&token)
        .header("x-correlation-id", theirs.to_string())
        .json(&listing_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let events = store::history::events_by_position(&app.db, 0, 100)
        .await
        .unwrap();
    let first: Vec<_> = events
        .iter()
        .filter(|e| e.metadata["client_correlation_id"] == "client-run-7")
        .collect();
    assert!(!first.is_empty());
    for e in &first {
        assert_eq!(e.metadata["correlation_id"], ours.to_string());
        let meta = domain::event::Metadata::decode(&e.metadata).unwrap();
        assert_eq!(meta.correlation_id, ours);
        assert_eq!(meta.client_correlation_id.as_deref(), Some("client-run-7"));
    }
    let second: Vec<_> = events
        .iter()
        .filter(|e| e.metadata["client_correlation_id"] == theirs.to_string())
        .collect();
    assert!(!second.is_empty());
    for e in &second {
        assert_ne!(e.metadata["correlation_id"], theirs.to_string());
    }
    // A value that is not a bounded token is not stored.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-correlation-id", "a".repeat(300))
        .send()
        .await
        .unwrap();
    let echoed = res.headers()["x-correlation-id"].to_str().unwrap();
    assert!(echoed.parse::<Uuid>().is_ok(), "{echoed}");
    app.finish().await;
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_kaspi_replay_that_does_not_match_is_counted() {
    let app = spawn_app(Backend::Sqlite, "kaspi_replay").await.unwrap();
    let notify = |account: &'static str, sum: &'static str| {
        let app = &app;
        async move {
            let res = app
                .client
                .get(app.url("/kaspi/callback/"))
                .query(&[
                    ("command", "check"),
                    ("txn_id", "replay-1"),
                    ("account", account),
                    ("sum", sum),
                ])
                .basic_auth(KASPI_USER, Some(KASPI_PASSWORD))
                .send()
                .await
                .unwrap();
            status_and_json(res).await
        }
    };
    let name = "zhilego_kaspi_replay_mismatches_total";
    let (status, first) = notify("NOPE1", "100").await;
    assert_eq!(status, 200, "{first}");
    let before = counter(&app.metrics().await, name);
    let (_, again) = notify("NOPE2", "999").await;
    assert_eq!(again, first, "the first answer is kept");
    let after = counter(&app.metrics().await, name);
    assert!(after >= before + 1.0, "{before} -> {after}");
    app.finish().await;
}
