//! Admins run the platform: the role matrix of every admin endpoint, phone search through the
//! blind index with no number at rest in the clear, blocking (tokens refused within a second,
//! the bots' polite refusal, holds released, unblocking), every admin action as an event with
//! the admin, the reason and the request's correlation id, and API keys (issued, used,
//! scoped, rate-limited, revoked, stored only hashed). Both backends.
use crate::chatbots::{bot_env, bot_guest, TgGuest, WaGuest, BOT_TOKEN};
use crate::helpers::*;
use crate::scan::plaintext_findings;
use domain::Role;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;
use zhilego_testkit::telegram::text_of;
use zhilego_testkit::{FakeTelegram, FakeTwilio};

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    Anonymous,
    Bearer(String),
    /// An API key in `X-Api-Key`.
    Key(String),
}

struct Answer {
    status: u16,
    body: Value,
    /// `X-Server-Correlation-Id`: the id the service recorded in the events.
    correlation: String,
}

/// Other tests' `CREATE DATABASE` on the same PostgreSQL server holds back every
/// commit-safe reader for its duration (docs/architecture.md): reads wait longer here.
const PATIENT: (&str, &str) = ("ZHILEGO_READ_WAIT_MS", "30000");

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: &Auth,
    body: Option<&Value>,
) -> Answer {
    let mut req = app.client.request(method, app.url(path));
    req = match auth {
        Auth::Anonymous => req,
        Auth::Bearer(t) => req.bearer_auth(t),
        Auth::Key(k) => req.header("x-api-key", k),
    };
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.expect("request");
    let correlation = res
        .headers()
        .get("x-server-correlation-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (status, body) = status_and_json(res).await;
    Answer {
        status,
        body,
        correlation,
    }
}

/// A user the directory knows: they set a profile with `phone`.
async fn user_with_phone(app: &TestApp, phone: &str) -> Uuid {
    let id = Uuid::now_v7();
    let (status, body) = app
        .patch(
            "/api/v1/users/me",
            &app.token(Role::Guest, id),
            &json!({"phone": phone}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    id
}

/// An API key issued by `admin` in `role`; its id and the key.
async fn issue_key(
    app: &TestApp,
    admin: &Auth,
    role: &str,
    scope: Option<Vec<Uuid>>,
) -> (Uuid, String) {
    let mut body = json!({"name": format!("{role} client"), "role": role, "reason": "integration"});
    if let Some(ids) = scope {
        body["listing_ids"] = json!(ids);
    }
    let a = send(app, Method::POST, "/api/v1/api-keys", admin, Some(&body)).await;
    assert_eq!(a.status, 201, "issue key: {}", a.body);
    let key = a.body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("zgo_"), "{key}");
    (a.body["id"].as_str().unwrap().parse().unwrap(), key)
}

/// A held booking of a fresh guest on `listing`.
async fn held_booking(app: &TestApp, listing: Uuid, from: i64) -> (Uuid, Uuid) {
    let guest = Uuid::now_v7();
    let (status, b) = app
        .post(
            "/api/v1/bookings",
            &app.token(Role::Guest, guest),
            &booking_body(listing, from, from + 2, 2),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    (guest, b["id"].as_str().unwrap().parse().unwrap())
}

/// Every admin endpoint with a request that succeeds for an admin, and the status it gives.
fn admin_requests(
    user: Uuid,
    listing: Uuid,
    booking: Uuid,
    key: Uuid,
    n: i64,
) -> Vec<(Method, String, Option<Value>, u16)> {
    let until = (chrono::Utc::now() + chrono::Duration::hours(1 + n)).to_rfc3339();
    // Each admin run changes the role, so each writes an event.
    let role = if n % 2 == 0 { "host" } else { "analyst" };
    vec![
        (Method::GET, "/api/v1/users?limit=5".into(), None, 200),
        (Method::GET, format!("/api/v1/users/{user}"), None, 200),
        (
            Method::PATCH,
            format!("/api/v1/users/{user}"),
            Some(json!({"role": role, "reason": "new duties"})),
            200,
        ),
        (
            Method::POST,
            format!("/api/v1/users/{user}/block"),
            Some(json!({"reason": "chargebacks"})),
            200,
        ),
        (
            Method::POST,
            format!("/api/v1/users/{user}/unblock"),
            Some(json!({"reason": "appeal granted"})),
            200,
        ),
        (
            Method::POST,
            format!("/api/v1/listings/{listing}/moderation"),
            Some(json!({"action": "pause", "reason": "complaint"})),
            200,
        ),
        (
            Method::POST,
            format!("/api/v1/listings/{listing}/moderation"),
            Some(json!({"action": "restore", "reason": "resolved"})),
            200,
        ),
        (
            Method::POST,
            format!("/api/v1/bookings/{booking}/hold-extension"),
            Some(json!({"hold_expires_at": until, "reason": "bank delay"})),
            200,
        ),
        (Method::GET, "/api/v1/api-keys".into(), None, 200),
        (
            Method::POST,
            "/api/v1/api-keys".into(),
            Some(json!({"name": "probe", "role": "analyst", "reason": "matrix"})),
            201,
        ),
        (
            Method::DELETE,
            format!("/api/v1/api-keys/{key}"),
            Some(json!({"reason": "rotated"})),
            200,
        ),
        (
            Method::GET,
            "/api/v1/admin/payments/reconciliation".into(),
            None,
            200,
        ),
    ]
}

async fn role_matrix(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        &format!("admin_role_matrix_{backend:?}"),
        &[PATIENT],
    )
    .await
    else {
        return;
    };
    let admin_id = Uuid::now_v7();
    let admin = Auth::Bearer(app.token(Role::Admin, admin_id));
    let user = user_with_phone(&app, "+77010000001").await;
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let (_, booking) = held_booking(&app, listing, 10).await;
    let mut callers: Vec<(String, Auth, bool)> = vec![("anonymous".into(), Auth::Anonymous, false)];
    for role in [
        Role::Guest,
        Role::Host,
        Role::Analyst,
        Role::Auditor,
        Role::Admin,
    ] {
        let sub = if role == Role::Admin {
            admin_id
        } else {
            Uuid::now_v7()
        };
        callers.push((
            format!("token {}", role.as_str()),
            Auth::Bearer(app.token(role, sub)),
            role == Role::Admin,
        ));
        let (_, key) = issue_key(&app, &admin, role.as_str(), None).await;
        callers.push((
            format!("API key {}", role.as_str()),
            Auth::Key(key),
            role == Role::Admin,
        ));
    }
    let mut admin_writes = Vec::new();
    for (n, (who, auth, is_admin)) in callers.iter().enumerate() {
        let (key, _) = issue_key(&app, &admin, "analyst", None).await;
        for (method, path, body, ok) in admin_requests(user, listing, booking, key, n as i64) {
            let a = send(&app, method.clone(), &path, auth, body.as_ref()).await;
            let expected = match (auth, is_admin) {
                (Auth::Anonymous, _) => 401,
                (_, true) => ok,
                (_, false) => 403,
            };
            assert_eq!(a.status, expected, "{who}: {method} {path}: {}", a.body);
            if expected == 401 || expected == 403 {
                let code = a.body["code"].as_str().unwrap_or_default();
                assert!(
                    ["unauthorized", "forbidden"].contains(&code),
                    "{who}: {path}: {}",
                    a.body
                );
            }
            if *is_admin && method != Method::GET {
                admin_writes.push((who.clone(), path.clone(), a.correlation.clone()));
            }
        }
    }
    // Every admin write is an event naming the admin (or the admin key), with its reason and
    // the request's correlation id.
    let events = store::history::events_by_position(&app.db, 0, 1_000_000)
        .await
        .unwrap();
    for (who, path, correlation) in &admin_writes {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.metadata["correlation_id"].as_str() == Some(correlation.as_str()))
            .collect();
        assert!(
            !mine.is_empty(),
            "{who}: {path}: no event with correlation id {correlation}"
        );
        for e in &mine {
            let role = e.metadata["role"].as_str().unwrap();
            assert_eq!(role, "admin", "{who}: {path}: {} by {role}", e.event_type);
        }
        let inner = |e: &store::history::StoredEvent| {
            e.payload
                .as_object()
                .and_then(|p| p.values().next())
                .cloned()
                .unwrap_or_default()
        };
        let decision = mine
            .iter()
            .find(|e| inner(e)["reason"].as_str().is_some_and(|r| !r.is_empty()))
            .unwrap_or_else(|| {
                panic!(
                    "{who}: {path}: no event with a reason among {:?}",
                    mine.iter().map(|e| &e.event_type).collect::<Vec<_>>()
                )
            });
        if who.starts_with("token") {
            assert_eq!(
                decision.metadata["actor"],
                admin_id.to_string(),
                "{who}: {path}"
            );
            let by = inner(decision)
                .get("by")
                .cloned()
                .or_else(|| inner(decision).get("by_user").cloned());
            assert_eq!(
                by,
                Some(json!(admin_id.to_string())),
                "{who}: {path}: {}",
                decision.payload
            );
        }
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_role_matrix_sqlite() {
    role_matrix(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_role_matrix_postgres() {
    role_matrix(Backend::Postgres).await;
}

async fn phone_search(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        &format!("admin_phone_search_{backend:?}"),
        &[PATIENT],
    )
    .await
    else {
        return;
    };
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let mut people = Vec::new();
    for i in 0..8 {
        let phone = format!("+7701555{:04}", 1000 + i * 7);
        people.push((user_with_phone(&app, &phone).await, phone));
    }
    for (id, phone) in &people {
        // Written as a person would type it: 8 (701) 555-…
        let typed = format!("8 ({}) {}-{}", &phone[2..5], &phone[5..8], &phone[8..]);
        let path = format!("/api/v1/users?phone={}", urlencode(&typed));
        let (status, page) = app.get(&path, Some(&admin)).await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec![id.to_string().as_str()], "search {typed}");
    }
    let (_, none) = app
        .get("/api/v1/users?phone=%2B77015559999", Some(&admin))
        .await;
    assert_eq!(none["items"], json!([]));
    let (status, bad) = app.get("/api/v1/users?phone=12", Some(&admin)).await;
    assert_eq!(
        (status, bad["errors"][0]["field"].as_str()),
        (422, Some("phone")),
        "{bad}"
    );
    // A changed number moves in the index.
    let (id, _) = &people[0];
    let (status, _) = app
        .patch(
            "/api/v1/users/me",
            &app.token(Role::Guest, *id),
            &json!({"phone": "+77017770000"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, moved) = app
        .get("/api/v1/users?phone=%2B77017770000", Some(&admin))
        .await;
    assert_eq!(moved["items"][0]["id"], id.to_string());
    let (_, old) = app
        .get(
            &format!("/api/v1/users?phone={}", urlencode(&people[0].1)),
            Some(&admin),
        )
        .await;
    assert_eq!(old["items"], json!([]));
    // No number at rest in the clear, in any form (E.164 or national digits).
    let mut needles: Vec<&'static str> = Vec::new();
    for (_, phone) in people.iter().skip(1) {
        needles.push(Box::leak(phone.clone().into_boxed_str()));
        needles.push(Box::leak(phone[2..].to_string().into_boxed_str()));
    }
    needles.push("+77017770000");
    needles.push("7017770000");
    let storage = app.stop().await;
    let found = plaintext_findings(&storage, &needles, "phone search").await;
    assert!(found.is_empty(), "phone numbers at rest: {found:#?}");
    storage.remove().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_search_finds_users_with_no_number_at_rest_sqlite() {
    phone_search(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_search_finds_users_with_no_number_at_rest_postgres() {
    phone_search(Backend::Postgres).await;
}

async fn blocking(backend: Backend) {
    let telegram = FakeTelegram::start().await;
    let twilio = FakeTwilio::start().await;
    let test = format!("admin_blocking_{backend:?}");
    let mut env = bot_env(&telegram, &twilio).to_vec();
    env.push(PATIENT);
    let Some(app) = spawn_app_with(backend, &test, &env).await else {
        return;
    };
    let admin_id = Uuid::now_v7();
    let admin = Auth::Bearer(app.token(Role::Admin, admin_id));
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    // The guest books through the API and chats on Telegram and WhatsApp as the same person.
    let guest = bot_guest(&app, domain::Channel::Telegram, "777001");
    let token = app.token(Role::Guest, guest);
    let (status, held) = app
        .post("/api/v1/bookings", &token, &booking_body(listing, 5, 7, 2))
        .await;
    assert_eq!(status, 201, "{held}");
    let booking = held["id"].as_str().unwrap().to_string();
    let (status, payment) = app
        .post(
            &format!("/api/v1/bookings/{booking}/payment"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "{payment}");
    let (status, _) = app
        .get(
            &format!("/api/v1/users?min_position={}", held["position"]),
            Some(&admin_token(&admin)),
        )
        .await;
    assert_eq!(status, 200);

    // A reason is required.
    let a = send(
        &app,
        Method::POST,
        &format!("/api/v1/users/{guest}/block"),
        &admin,
        Some(&json!({"reason": "  "})),
    )
    .await;
    assert_eq!(
        (
            a.status,
            a.body["code"].as_str(),
            a.body["errors"][0]["field"].as_str()
        ),
        (422, Some("validation_failed"), Some("reason")),
        "{}",
        a.body
    );
    let a = send(
        &app,
        Method::POST,
        &format!("/api/v1/users/{guest}/block"),
        &admin,
        Some(&json!({})),
    )
    .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(
        app.get("/api/v1/users/me", Some(&token)).await.0,
        200,
        "nothing was blocked"
    );

    let blocked_at = Instant::now();
    let a = send(
        &app,
        Method::POST,
        &format!("/api/v1/users/{guest}/block"),
        &admin,
        Some(&json!({"reason": "fraudulent cards"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["blocked"], true);
    assert_eq!(a.body["block_reason"], "fraudulent cards");
    // Refused within a second of the answer (here: at once).
    loop {
        let (status, body) = app.get("/api/v1/users/me", Some(&token)).await;
        if status == 403 {
            assert_eq!(body["code"], "user_blocked", "{body}");
            break;
        }
        assert!(
            blocked_at.elapsed() < Duration::from_secs(1),
            "still admitted after a second: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, refused) = app
        .post(
            "/api/v1/bookings",
            &token,
            &booking_body(listing, 20, 22, 2),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("user_blocked"))
    );
    // The unpaid hold was cancelled and its nights are free again.
    let (_, b) = app
        .get(
            &format!("/api/v1/bookings/{booking}"),
            Some(&admin_token(&admin)),
        )
        .await;
    assert_eq!(b["status"], "cancelled", "{b}");
    let (_, cal) = app
        .get(
            &format!(
                "/api/v1/listings/{listing}/calendar?from={}&to={}&min_position={}",
                day(5),
                day(7),
                a.body["position"]
            ),
            None,
        )
        .await;
    assert!(
        cal["days"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "free"),
        "{cal}"
    );
    // The bots answer politely, on both channels, and do nothing else.
    let mut tg = TgGuest::new(&app, &telegram, 777001);
    let replies = tg.say("/start").await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        text_of(&replies[0]).contains("заблокирован"),
        "{}",
        text_of(&replies[0])
    );
    let wa_guest = bot_guest(&app, domain::Channel::Whatsapp, "+77015550123");
    let (status, _) = app
        .patch(
            "/api/v1/users/me",
            &app.token(Role::Guest, wa_guest),
            &json!({"language": "en"}),
        )
        .await;
    assert_eq!(status, 200);
    let wa_admin = Auth::Bearer(app.token(Role::Admin, admin_id));
    let a2 = send(
        &app,
        Method::POST,
        &format!("/api/v1/users/{wa_guest}/block"),
        &wa_admin,
        Some(&json!({"reason": "spam"})),
    )
    .await;
    assert_eq!(a2.status, 200, "{}", a2.body);
    let mut wa = WaGuest::new(&app, &twilio, "+77015550123");
    let replies = wa.say("hi").await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        replies[0].contains("заблокирован") || replies[0].contains("blocked"),
        "{}",
        replies[0]
    );
    // A blocked Telegram user gets no token from the login widget.
    let login = |id: &str| {
        let auth_date = chrono::Utc::now().timestamp().to_string();
        let fields = [
            ("auth_date", auth_date.as_str()),
            ("first_name", "Гость"),
            ("id", id),
        ];
        let hash = zhilego_testkit::sign::telegram_login_hash(BOT_TOKEN, &fields);
        json!({"auth_date": auth_date.parse::<i64>().unwrap(), "first_name": "Гость",
               "id": id.parse::<i64>().unwrap(), "hash": hash})
    };
    let refused = send(
        &app,
        Method::POST,
        "/api/v1/auth/telegram",
        &Auth::Anonymous,
        Some(&login("777001")),
    )
    .await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (403, Some("user_blocked")),
        "{}",
        refused.body
    );
    // Unblocking restores access.
    let u = send(
        &app,
        Method::POST,
        &format!("/api/v1/users/{guest}/unblock"),
        &admin,
        Some(&json!({"reason": "cleared by the bank"})),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["blocked"], false);
    assert_eq!(app.get("/api/v1/users/me", Some(&token)).await.0, 200);
    let again = send(
        &app,
        Method::POST,
        "/api/v1/auth/telegram",
        &Auth::Anonymous,
        Some(&login("777001")),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    let replies = tg.say("/start").await;
    assert!(
        !replies.iter().any(|r| text_of(r).contains("заблокирован")),
        "{replies:?}"
    );
    // The history says who did it, why, in which request.
    let events = store::history::events_by_position(&app.db, 0, 1_000_000)
        .await
        .unwrap();
    for (kind, answer, reason) in [
        ("UserBlocked", &a, "fraudulent cards"),
        ("UserUnblocked", &u, "cleared by the bank"),
    ] {
        let e = events
            .iter()
            .find(|e| e.event_type == kind && e.aggregate_id == guest.to_string())
            .unwrap_or_else(|| panic!("no {kind}"));
        assert_eq!(e.metadata["actor"], admin_id.to_string());
        assert_eq!(e.metadata["correlation_id"], answer.correlation.as_str());
        assert_eq!(e.payload[kind]["reason"], reason);
        assert_eq!(e.payload[kind]["by"], admin_id.to_string());
    }
    // The admin sees the account's bookings and payments.
    let (status, detail) = app
        .get(
            &format!("/api/v1/users/{guest}?min_position={}", u.body["position"]),
            Some(&admin_token(&admin)),
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["bookings"][0]["id"], booking.as_str(), "{detail}");
    assert_eq!(
        detail["payments"][0]["payment_id"], payment["payment_id"],
        "{detail}"
    );
    let cancelled = events
        .iter()
        .find(|e| e.event_type == "BookingCancelled" && e.aggregate_id == booking)
        .expect("the hold was cancelled");
    assert_eq!(cancelled.metadata["correlation_id"], a.correlation.as_str());
    app.finish().await;
}

fn admin_token(auth: &Auth) -> String {
    match auth {
        Auth::Bearer(t) => t.clone(),
        _ => panic!("not a token"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_refuses_tokens_and_bots_releases_holds_sqlite() {
    blocking(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_refuses_tokens_and_bots_releases_holds_postgres() {
    blocking(Backend::Postgres).await;
}

async fn api_keys(backend: Backend) {
    let test = format!("admin_api_keys_{backend:?}");
    let Some(app) = spawn_app_with(backend, &test, &[("ZHILEGO_RATE_LIMIT", "8"), PATIENT]).await
    else {
        return;
    };
    let admin = Auth::Bearer(app.token(Role::Admin, Uuid::now_v7()));
    let mine = app.create_listing(Uuid::now_v7(), json!({})).await;
    let other = app.create_listing(Uuid::now_v7(), json!({})).await;
    let a = send(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        &admin,
        Some(&json!({"name": "x", "role": "analyst"})),
    )
    .await;
    assert_eq!(
        (a.status, a.body["errors"][0]["field"].as_str()),
        (422, Some("reason")),
        "{}",
        a.body
    );
    let a = send(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        &admin,
        Some(&json!({"name": "x", "role": "system", "reason": "r"})),
    )
    .await;
    assert_eq!(
        (a.status, a.body["errors"][0]["field"].as_str()),
        (422, Some("role")),
        "{}",
        a.body
    );

    let (admin_key_id, admin_key) = issue_key(&app, &admin, "admin", None).await;
    let (scoped_id, scoped) = issue_key(&app, &admin, "host", Some(vec![mine])).await;
    // Used as a bearer token and as X-Api-Key.
    assert_eq!(
        send(
            &app,
            Method::GET,
            "/api/v1/users",
            &Auth::Bearer(admin_key.clone()),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(
            &app,
            Method::GET,
            "/api/v1/users",
            &Auth::Key(admin_key.clone()),
            None
        )
        .await
        .status,
        200
    );
    // The listing scope.
    let cal = |id: Uuid| {
        format!(
            "/api/v1/listings/{id}/calendar?from={}&to={}",
            day(1),
            day(3)
        )
    };
    assert_eq!(
        send(
            &app,
            Method::GET,
            &cal(mine),
            &Auth::Key(scoped.clone()),
            None
        )
        .await
        .status,
        200
    );
    let out = send(
        &app,
        Method::GET,
        &cal(other),
        &Auth::Key(scoped.clone()),
        None,
    )
    .await;
    assert_eq!(
        (out.status, out.body["code"].as_str()),
        (403, Some("out_of_scope")),
        "{}",
        out.body
    );
    let out = send(
        &app,
        Method::GET,
        "/api/v1/bookings",
        &Auth::Key(scoped.clone()),
        None,
    )
    .await;
    assert_eq!(out.status, 403, "{}", out.body);
    // A made-up key.
    let fake = send(
        &app,
        Method::GET,
        "/api/v1/users",
        &Auth::Key(format!("zgo_{}", "A".repeat(43))),
        None,
    )
    .await;
    assert_eq!(
        (fake.status, fake.body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    // Rate-limited per key: the scoped key has used 3 of its 8, the admin key 2.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            send(
                &app,
                Method::GET,
                &cal(mine),
                &Auth::Key(scoped.clone()),
                None,
            )
            .await
            .status,
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        send(
            &app,
            Method::GET,
            "/api/v1/users",
            &Auth::Key(admin_key.clone()),
            None
        )
        .await
        .status,
        200,
        "another key has its own allowance"
    );
    // Listed with the last use, without the key.
    let list = send(&app, Method::GET, "/api/v1/api-keys", &admin, None).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    let listed = items
        .iter()
        .find(|k| k["id"] == scoped_id.to_string())
        .expect("listed");
    assert_eq!(listed["role"], "host");
    assert_eq!(listed["listing_ids"], json!([mine]));
    assert!(listed["last_used_at"].is_string(), "{listed}");
    assert!(
        !list.body.to_string().contains(&scoped[4..]),
        "a key in the list"
    );
    // Revoked: refused from the answer on.
    let r = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/api-keys/{admin_key_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (422, Some("reason")),
        "{}",
        r.body
    );
    let r = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/api-keys/{admin_key_id}?reason=rotated"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revoked"], true);
    let gone = send(
        &app,
        Method::GET,
        "/api/v1/users",
        &Auth::Bearer(admin_key.clone()),
        None,
    )
    .await;
    assert_eq!(
        (gone.status, gone.body["code"].as_str()),
        (401, Some("api_key_revoked"))
    );
    // Stored only hashed.
    let storage = app.stop().await;
    let a_key: &'static str = Box::leak(admin_key[4..].to_string().into_boxed_str());
    let s_key: &'static str = Box::leak(scoped[4..].to_string().into_boxed_str());
    let found = plaintext_findings(&storage, &[a_key, s_key], "API keys").await;
    assert!(found.is_empty(), "API keys at rest: {found:#?}");
    storage.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_issued_used_scoped_limited_revoked_and_hashed_sqlite() {
    api_keys(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_issued_used_scoped_limited_revoked_and_hashed_postgres() {
    api_keys(Backend::Postgres).await;
}

async fn moderation(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        &format!("admin_moderation_{backend:?}"),
        &[PATIENT],
    )
    .await
    else {
        return;
    };
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let host = Uuid::now_v7();
    let host_token = app.token(Role::Host, host);
    let listing = app.create_listing(host, json!({"city": "Astana"})).await;
    let search = |p: &Value| {
        format!(
            "/api/v1/availability?city=Astana&check_in={}&check_out={}&guests=2&min_position={p}",
            day(30),
            day(32)
        )
    };
    let (status, paused) = app
        .post(
            &format!("/api/v1/listings/{listing}/moderation"),
            &admin,
            &json!({"action": "pause", "reason": "photos of another flat"}),
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["status"], "paused");
    let (_, found) = app.get(&search(&paused["position"]), None).await;
    assert_eq!(found["items"], json!([]), "a paused listing left search");
    // The host sees the reason and cannot switch it back on.
    let (_, seen) = app
        .get(&format!("/api/v1/listings/{listing}"), Some(&host_token))
        .await;
    assert_eq!(
        seen["moderation"]["reason"], "photos of another flat",
        "{seen}"
    );
    let (status, refused) = app
        .patch(
            &format!("/api/v1/listings/{listing}"),
            &host_token,
            &json!({"status": "active"}),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("listing_moderated")),
        "{refused}"
    );
    let (_, public) = app.get(&format!("/api/v1/listings/{listing}"), None).await;
    assert!(
        public.get("moderation").is_none(),
        "the reason is for the host: {public}"
    );
    let (status, bad) = app
        .post(
            &format!("/api/v1/listings/{listing}/moderation"),
            &admin,
            &json!({"action": "delete", "reason": "x"}),
        )
        .await;
    assert_eq!(
        (status, bad["errors"][0]["field"].as_str()),
        (422, Some("action"))
    );
    let (status, restored) = app
        .post(
            &format!("/api/v1/listings/{listing}/moderation"),
            &admin,
            &json!({"action": "restore", "reason": "new photos checked"}),
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["status"], "active");
    let (_, found) = app.get(&search(&restored["position"]), None).await;
    assert_eq!(found["items"][0]["listing_id"], listing.to_string());
    // Overrides on bookings: a hold extended, a cancellation by an admin needs a reason.
    let (_, booking) = held_booking(&app, listing, 40).await;
    let until = chrono::Utc::now() + chrono::Duration::hours(30);
    let (status, extended) = app
        .post(
            &format!("/api/v1/bookings/{booking}/hold-extension"),
            &admin,
            &json!({"hold_expires_at": until.to_rfc3339(), "reason": "bank transfer pending"}),
        )
        .await;
    assert_eq!(status, 200, "{extended}");
    let got: chrono::DateTime<chrono::Utc> = extended["hold_expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((got - until).num_seconds().abs() <= 1, "{extended}");
    let (status, too_far) = app
        .post(&format!("/api/v1/bookings/{booking}/hold-extension"), &admin, &json!({"hold_expires_at": (until + chrono::Duration::days(8)).to_rfc3339(), "reason": "x"}))
        .await;
    assert_eq!(
        (status, too_far["errors"][0]["field"].as_str()),
        (422, Some("hold_expires_at")),
        "{too_far}"
    );
    let (status, _) = app
        .post(
            &format!("/api/v1/bookings/{booking}/cancel"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(status, 422, "an admin's cancellation needs a reason");
    let (status, cancelled) = app
        .post(
            &format!("/api/v1/bookings/{booking}/cancel"),
            &admin,
            &json!({"reason": "guest asked support"}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_and_booking_overrides_sqlite() {
    moderation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_and_booking_overrides_postgres() {
    moderation(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_documented_with_problem_json_errors() {
    let Some(app) = spawn_app(Backend::Sqlite, "admin_openapi").await else {
        return;
    };
    let (status, doc) = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    for (path, method) in [
        ("/api/v1/users", "get"),
        ("/api/v1/users/{id}", "get"),
        ("/api/v1/users/{id}", "patch"),
        ("/api/v1/users/{id}/block", "post"),
        ("/api/v1/users/{id}/unblock", "post"),
        ("/api/v1/listings/{id}/moderation", "post"),
        ("/api/v1/bookings/{id}/hold-extension", "post"),
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys/{id}", "delete"),
        ("/api/v1/admin/status", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing from the document");
        let responses = op["responses"].as_object().unwrap();
        for code in ["401", "403"] {
            assert!(responses.contains_key(code), "{method} {path}: no {code}");
        }
        for (code, r) in responses {
            if code.starts_with('4') || code.starts_with('5') {
                assert!(
                    r["content"]["application/problem+json"].is_object(),
                    "{method} {path} {code}: not problem+json: {r}"
                );
            }
        }
    }
    // The dashboard: its page and assets from the binary, under a strict policy.
    let res = app.client.get(app.url("/admin/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(
        page.contains("/admin/app.js") && !page.contains("http://") && !page.contains("https://"),
        "no outside assets"
    );
    for asset in ["/admin/app.js", "/admin/app.css"] {
        let res = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{asset}");
        let text = res.text().await.unwrap();
        assert!(
            !text.contains("https://") && !text.contains("//cdn"),
            "{asset} reaches outside"
        );
    }
    app.finish().await;
}
