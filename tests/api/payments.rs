//! Paying with Kaspi over real HTTP: the app serves the Kaspi sandbox, whose payment page pays
//! and calls `/kaspi/callback/` back; the production client code makes every Kaspi call.
use crate::helpers::*;
use crate::on_both_backends;
use domain::Role;
use kaspi_sandbox::Faults;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// A guest with a held booking on a fresh listing.
struct Held {
    token: String,
    booking: Uuid,
    total: i64,
}

async fn hold(app: &TestApp, listing: Uuid, from: i64, to: i64) -> Held {
    let guest = Uuid::now_v7();
    let token = app.token(Role::Guest, guest);
    let (status, b) = app
        .post(
            "/api/v1/bookings",
            &token,
            &booking_body(listing, from, to, 2),
        )
        .await;
    assert_eq!(status, 201, "book: {b}");
    Held {
        token,
        booking: b["id"].as_str().unwrap().parse().unwrap(),
        total: b["total_kzt"].as_i64().unwrap(),
    }
}

async fn start_payment(app: &TestApp, h: &Held) -> Value {
    let (status, p) = app
        .post(
            &format!("/api/v1/bookings/{}/payment", h.booking),
            &h.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "payment: {p}");
    p
}

/// A biller notification, as Kaspi sends it.
async fn notify(app: &TestApp, command: &str, txn: &str, account: &str, sum: &str) -> (u16, Value) {
    let res = app
        .client
        .get(app.url("/kaspi/callback/"))
        .query(&[
            ("command", command),
            ("txn_id", txn),
            ("account", account),
            ("sum", sum),
            ("txn_date", "20261127120000"),
        ])
        .basic_auth(KASPI_USER, Some(KASPI_PASSWORD))
        .send()
        .await
        .unwrap();
    status_and_json(res).await
}

async fn booking_status(app: &TestApp, h: &Held) -> String {
    let (status, b) = app
        .get(&format!("/api/v1/bookings/{}", h.booking), Some(&h.token))
        .await;
    assert_eq!(status, 200, "{b}");
    b["status"].as_str().unwrap().to_string()
}

async fn wait_for_status(app: &TestApp, h: &Held, want: &str) {
    for _ in 0..150 {
        if booking_status(app, h).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "booking {} never became {want} (is {})",
        h.booking,
        booking_status(app, h).await
    );
}

async fn payment(app: &TestApp, id: &str) -> Value {
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let (status, p) = app
        .get(&format!("/api/v1/payments/{id}"), Some(&admin))
        .await;
    assert_eq!(status, 200, "{p}");
    p
}

async fn events_of_type(app: &TestApp, event_type: &str) -> usize {
    store::history::events_by_position(&app.db, 0, 1_000_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

fn sandbox(app: &TestApp) -> &kaspi_sandbox::Sandbox {
    app.state.kaspi.sandbox.as_ref().expect("sandbox mode")
}

/// The payment id inside a sandbox payment link (`…/pay/<id>`).
fn kaspi_id(p: &Value) -> i64 {
    p["payment_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

on_both_backends!(
    guest_pays_through_the_sandbox_and_reads_the_door_code,
    full_flow
);
async fn full_flow(backend: Backend, test: &str) {
    // Door codes from 48 hours before check-in: the stay from tomorrow is inside its window.
    let Some(app) = spawn_app_with(
        backend,
        test,
        &[("ZHILEGO_ACCESS_OPENS_BEFORE_HOURS", "48")],
    )
    .await
    else {
        return;
    };
    let host = Uuid::now_v7();
    let listing = app.create_listing(host, json!({})).await;
    let (status, _) = app
        .put(
            &format!("/api/v1/listings/{listing}/access"),
            &app.token(Role::Host, host),
            &json!({"instructions": "Code box left of the door", "door_code": "7391#"}),
        )
        .await;
    assert_eq!(status, 200);
    let h = hold(&app, listing, 1, 3).await;

    let p = start_payment(&app, &h).await;
    assert_eq!(p["status"], "pending");
    assert_eq!(p["amount_kzt"].as_i64(), Some(h.total));
    assert!(p["payment_id"].is_string());
    let url = p["payment_url"].as_str().unwrap().to_string();
    // Asking again gives the same payment.
    let again = start_payment(&app, &h).await;
    assert_eq!(again["payment_id"], p["payment_id"]);
    assert_eq!(again["payment_url"], p["payment_url"]);
    // Another guest may not pay (or see) it.
    let other = app.token(Role::Guest, Uuid::now_v7());
    let (status, _) = app
        .post(
            &format!("/api/v1/bookings/{}/payment", h.booking),
            &other,
            &json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .get(
            &format!("/api/v1/payments/{}", p["payment_id"].as_str().unwrap()),
            Some(&other),
        )
        .await;
    assert_eq!(status, 403);
    // Not paid yet: no door code.
    let (status, _) = app
        .get(
            &format!("/api/v1/bookings/{}/access", h.booking),
            Some(&h.token),
        )
        .await;
    assert_eq!(status, 409);

    // The guest opens the payment page and presses Pay.
    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Оплатить"));
    let paid = app.client.post(&url).send().await.unwrap();
    assert_eq!(paid.status(), 200);

    wait_for_status(&app, &h, "confirmed").await;
    let (_, pv) = app
        .get(
            &format!("/api/v1/payments/{}", p["payment_id"].as_str().unwrap()),
            Some(&h.token),
        )
        .await;
    assert_eq!(pv["status"], "succeeded");
    assert_eq!(pv["paid_via"], "callback");

    let (status, access) = app
        .get(
            &format!("/api/v1/bookings/{}/access", h.booking),
            Some(&h.token),
        )
        .await;
    assert_eq!(status, 200, "{access}");
    assert_eq!(
        access["door_code"],
        commands::stay_door_code("7391#", h.booking)
    );
    assert_eq!(access["instructions"], "Code box left of the door");
    assert!(access["valid_from"]
        .as_str()
        .unwrap()
        .ends_with("14:00:00+05:00"));
    let (status, _) = app
        .get(
            &format!("/api/v1/bookings/{}/access", h.booking),
            Some(&other),
        )
        .await;
    assert_eq!(status, 403);

    // The calendar shows the nights booked, not held.
    let mut booked = false;
    let mut cal = Value::Null;
    for _ in 0..50 {
        let (_, c) = app
            .get(
                &format!(
                    "/api/v1/listings/{listing}/calendar?from={}&to={}",
                    day(1),
                    day(3)
                ),
                None,
            )
            .await;
        cal = c;
        if cal["days"]
            .as_array()
            .is_some_and(|d| d.iter().all(|x| x["status"] == "booked"))
        {
            booked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(booked, "calendar: {cal}");
    app.finish().await;
}

on_both_backends!(
    malformed_notifications_are_refused_before_they_reach_the_payment,
    malformed_notifications
);
async fn malformed_notifications(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let h = hold(&app, listing, 3, 5).await;
    let p = start_payment(&app, &h).await;
    let account = p["account"].as_str().unwrap().to_string();
    let before = app.event_count().await;

    // A sum that is not whole tenge, and a command the protocol does not have: result 5,
    // so Kaspi takes no money, and nothing is recorded on the payment.
    for sum in [
        format!("{}.50", h.total),
        "abc".to_string(),
        "-5".to_string(),
    ] {
        let (status, answer) = notify(&app, "pay", "9301", &account, &sum).await;
        assert_eq!(status, 200);
        assert_eq!(answer["result"], 5, "{answer}");
        assert_eq!(answer["txn_id"], "9301");
    }
    let (_, unknown) = notify(&app, "refund", "9302", &account, &h.total.to_string()).await;
    assert_eq!(unknown["result"], 5, "{unknown}");
    assert_eq!(unknown["comment"], "unknown command");
    assert_eq!(app.event_count().await, before);
    assert_eq!(booking_status(&app, &h).await, "held");

    // The same txn_id with a good sum is then decided on its own merits.
    let (_, paid) = notify(&app, "pay", "9301", &account, &h.total.to_string()).await;
    assert_eq!(paid["result"], 0, "{paid}");
    wait_for_status(&app, &h, "confirmed").await;
    app.finish().await;
}

on_both_backends!(
    duplicate_forged_and_wrong_notifications_move_nothing,
    notifications
);
async fn notifications(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let h = hold(&app, listing, 3, 5).await;
    let p = start_payment(&app, &h).await;
    let account = p["account"].as_str().unwrap().to_string();
    let sum = h.total.to_string();

    // The check passes and names the amount due.
    let (status, check) = notify(&app, "check", "9001", &account, &sum).await;
    assert_eq!(status, 200);
    assert_eq!(check["result"], 0, "{check}");
    assert_eq!(check["sum"].as_i64(), Some(h.total));

    // A short sum is refused and recorded; the booking stays held.
    let short = (h.total - 1).to_string();
    let (_, refused) = notify(&app, "pay", "9002", &account, &short).await;
    assert_eq!(refused["result"], 5, "{refused}");
    assert!(refused["comment"]
        .as_str()
        .unwrap()
        .contains("does not match"));
    assert_eq!(booking_status(&app, &h).await, "held");
    assert_eq!(events_of_type(&app, "PaymentAmountMismatched").await, 1);
    let (_, again) = notify(&app, "pay", "9002", &account, &short).await;
    assert_eq!(again, refused, "a repeated txn_id gets the first answer");
    assert_eq!(events_of_type(&app, "PaymentAmountMismatched").await, 1);

    // Wrong credentials: refused, nothing changes.
    let before = app.event_count().await;
    let res = app
        .client
        .get(app.url("/kaspi/callback/"))
        .query(&[
            ("command", "pay"),
            ("txn_id", "9003"),
            ("account", &account),
            ("sum", &sum),
        ])
        .basic_auth(KASPI_USER, Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(app.url("/kaspi/callback/"))
        .query(&[
            ("command", "pay"),
            ("txn_id", "9003"),
            ("account", &account),
            ("sum", &sum),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(app.event_count().await, before);
    assert_eq!(booking_status(&app, &h).await, "held");

    // Kaspi may also post the notification as a form.
    let res = app
        .client
        .post(app.url("/kaspi/callback/"))
        .form(&[
            ("command", "check"),
            ("txn_id", "9003f"),
            ("account", account.as_str()),
            ("sum", &format!("{sum}.00")),
            ("txn_date", "20261127120000"),
        ])
        .basic_auth(KASPI_USER, Some(KASPI_PASSWORD))
        .send()
        .await
        .unwrap();
    let (status, form_check) = status_and_json(res).await;
    assert_eq!(status, 200);
    assert_eq!(form_check["result"], 0, "{form_check}");
    // A notification missing its fields is a clear 422, and changes nothing.
    let res = app
        .client
        .get(app.url("/kaspi/callback/"))
        .query(&[("command", "pay"), ("txn_id", "9003g")])
        .basic_auth(KASPI_USER, Some(KASPI_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(app.event_count().await, before);

    // Unknown accounts.
    let (_, unknown) = notify(&app, "pay", "9004", "NOSUCHCODE", &sum).await;
    assert_eq!(unknown["result"], 1);
    let (_, unknown) = notify(&app, "check", "9005", &Uuid::now_v7().to_string(), &sum).await;
    assert_eq!(unknown["result"], 1);

    // Ten identical pay notifications at once: one payment, ten identical answers.
    let answers =
        futures::future::join_all((0..10).map(|_| notify(&app, "pay", "9100", &account, &sum)))
            .await;
    for (status, a) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(a, &answers[0].1);
    }
    assert_eq!(answers[0].1["result"], 0, "{}", answers[0].1);
    assert_eq!(events_of_type(&app, "PaymentSucceeded").await, 1);
    assert_eq!(events_of_type(&app, "BookingConfirmed").await, 1);
    assert_eq!(booking_status(&app, &h).await, "confirmed");

    // The booking's id works as the account too; a second txn_id is "already paid".
    let (_, second) = notify(&app, "pay", "9200", &h.booking.to_string(), &sum).await;
    assert_eq!(second["result"], 3, "{second}");
    let (_, check) = notify(&app, "check", "9201", &account, &sum).await;
    assert_eq!(check["result"], 3);
    assert_eq!(events_of_type(&app, "PaymentSucceeded").await, 1);

    // The refused sum shows in the admin's reconciliation report.
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let mut listed = false;
    for _ in 0..50 {
        let (status, report) = app
            .get("/api/v1/admin/payments/reconciliation", Some(&admin))
            .await;
        assert_eq!(status, 200);
        if report["mismatched_payments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["payment_id"] == p["payment_id"])
        {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed);
    let (status, _) = app
        .get("/api/v1/admin/payments/reconciliation", Some(&h.token))
        .await;
    assert_eq!(status, 403);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_from_addresses_off_the_allow_list_are_refused() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "callbacks_from_addresses_off_the_allow_list_are_refused",
        &[("KASPI_CALLBACK_ALLOW_IPS", "10.0.0.0/8, 192.168.1.7")],
    )
    .await
    else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let h = hold(&app, listing, 3, 5).await;
    let p = start_payment(&app, &h).await;
    let before = app.event_count().await;
    let (status, body) = notify(
        &app,
        "pay",
        "777",
        p["account"].as_str().unwrap(),
        &h.total.to_string(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.event_count().await, before);
    assert_eq!(booking_status(&app, &h).await, "held");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_callback_is_found_by_reconciliation() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "a_dropped_callback_is_found_by_reconciliation",
        &[("ZHILEGO_RECONCILE_AFTER_SECONDS", "1")],
    )
    .await
    else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let h = hold(&app, listing, 3, 5).await;
    let p = start_payment(&app, &h).await;
    sandbox(&app).set_faults(Faults {
        drop_callbacks: true,
        ..Faults::default()
    });
    assert!(sandbox(&app).pay(kaspi_id(&p)).await);
    wait_for_status(&app, &h, "confirmed").await;
    let pv = payment(&app, p["payment_id"].as_str().unwrap()).await;
    assert_eq!(pv["status"], "succeeded");
    assert_eq!(pv["paid_via"], "reconciliation");
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let (_, report) = app
        .get("/api/v1/admin/payments/reconciliation", Some(&admin))
        .await;
    assert!(
        report["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["payment_id"] == p["payment_id"] && r["action"] == "paid"),
        "{report}"
    );
    // The late callback of the same Kaspi payment is answered as paid, not refused.
    let (_, late) = notify(
        &app,
        "pay",
        "55501",
        p["account"].as_str().unwrap(),
        &h.total.to_string(),
    )
    .await;
    assert_eq!(late["result"], 0, "{late}");
    assert_eq!(events_of_type(&app, "PaymentSucceeded").await, 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaspi_failing_or_slow_leaves_the_booking_held_and_charges_once() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "kaspi_failing_or_slow_leaves_the_booking_held_and_charges_once",
        &[("KASPI_TIMEOUT_MS", "300")],
    )
    .await
    else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let sb = sandbox(&app);

    // Two failures: the client retries with backoff and gets through.
    let a = hold(&app, listing, 3, 4).await;
    sb.set_faults(Faults {
        fail_requests: 2,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let p = start_payment(&app, &a).await;
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "backoff 200 + 400 ms"
    );
    assert!(p["payment_url"].is_string());
    assert_eq!(sb.payment_count(), 1);

    // Kaspi keeps failing: a clear 503, the booking stays held, nothing charged.
    let b = hold(&app, listing, 5, 6).await;
    sb.set_faults(Faults {
        fail_requests: 100,
        ..Faults::default()
    });
    let (status, problem) = app
        .post(
            &format!("/api/v1/bookings/{}/payment", b.booking),
            &b.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["code"], "payment_provider_unavailable");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("nothing was charged"));
    assert_eq!(booking_status(&app, &b).await, "held");
    assert_eq!(sb.payment_count(), 1);

    // Kaspi answers too slowly: the same.
    let c = hold(&app, listing, 7, 8).await;
    sb.set_faults(Faults {
        delay_ms: 1000,
        ..Faults::default()
    });
    let (status, problem) = app
        .post(
            &format!("/api/v1/bookings/{}/payment", c.booking),
            &c.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(booking_status(&app, &c).await, "held");

    // Kaspi is back: asking again makes one link per booking, however many tries came before
    // (the slow requests reached Kaspi after all, and Kaspi dedupes by the account).
    sb.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let pb = start_payment(&app, &b).await;
    let pc = start_payment(&app, &c).await;
    assert_eq!(sb.payment_count(), 3);
    assert_ne!(kaspi_id(&pb), kaspi_id(&pc));
    // Paying it twice is impossible.
    assert!(sb.pay(kaspi_id(&pb)).await);
    assert!(!sb.pay(kaspi_id(&pb)).await);
    wait_for_status(&app, &b, "confirmed").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kaspi_that_is_down_gives_a_clear_error_in_live_mode() {
    // Live mode against a Kaspi on its own port, which the test stops and starts again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kaspi = kaspi_sandbox::Sandbox::new("live-key");
    let server = tokio::spawn(kaspi.clone().serve(listener));
    let kaspi_url = format!("http://{addr}");
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "a_kaspi_that_is_down_gives_a_clear_error_in_live_mode",
        &[
            ("KASPI_MODE", "live"),
            ("KASPI_API_URL", &kaspi_url),
            ("KASPI_API_KEY", "live-key"),
            ("KASPI_CALLBACK_ALLOW_IPS", "127.0.0.1/32"),
            ("KASPI_TIMEOUT_MS", "500"),
        ],
    )
    .await
    else {
        return;
    };
    kaspi.set_callback(kaspi_sandbox::Callback {
        url: app.url("/kaspi/callback/"),
        credentials: Some((KASPI_USER.into(), KASPI_PASSWORD.into())),
    });
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let h = hold(&app, listing, 3, 5).await;
    server.abort();
    let _ = server.await;
    let (status, problem) = app
        .post(
            &format!("/api/v1/bookings/{}/payment", h.booking),
            &h.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["code"], "payment_provider_unavailable");
    assert_eq!(booking_status(&app, &h).await, "held");

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = tokio::spawn(kaspi.clone().serve(listener));
    let p = start_payment(&app, &h).await;
    assert!(p["payment_url"].as_str().unwrap().starts_with(&kaspi_url));
    assert!(kaspi.pay(kaspi_id(&p)).await);
    wait_for_status(&app, &h, "confirmed").await;
    server.abort();
    app.finish().await;
}

/// Books `from..to` days ahead on a listing with `policy`, pays, cancels as the guest, and
/// checks the refund the booking, the payment and Kaspi show.
async fn cancel_and_check(app: &TestApp, policy: &str, from: i64, percent: i64) {
    let listing = app
        .create_listing(Uuid::now_v7(), json!({"cancellation_policy": policy}))
        .await;
    let h = hold(app, listing, from, from + 2).await;
    let p = start_payment(app, &h).await;
    assert!(sandbox(app).pay(kaspi_id(&p)).await);
    wait_for_status(app, &h, "confirmed").await;
    let (status, cancelled) = app
        .post(
            &format!("/api/v1/bookings/{}/cancel", h.booking),
            &h.token,
            &json!({"reason": "plans changed"}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let expected = h.total * percent / 100;
    assert_eq!(
        cancelled["refund_kzt"].as_i64(),
        Some(expected),
        "{policy} {from} days before"
    );
    let pv = payment(app, p["payment_id"].as_str().unwrap()).await;
    assert_eq!(pv["refunded_kzt"].as_i64(), Some(expected), "{pv}");
    let status = match percent {
        0 => "succeeded",
        100 => "refunded",
        _ => "partially_refunded",
    };
    assert_eq!(pv["status"], status, "{pv}");
    assert_eq!(sandbox(app).returned(kaspi_id(&p)), Some(expected));
}

on_both_backends!(cancellation_refunds_what_the_policy_gives, refunds);
async fn refunds(backend: Backend, test: &str) {
    // Stays booked for today must not check in (at 14:00) before they are cancelled: the
    // sweeper passes once, at start.
    let Some(app) =
        spawn_app_with(backend, test, &[("ZHILEGO_SWEEP_INTERVAL_MS", "3600000")]).await
    else {
        return;
    };
    cancel_and_check(&app, "flexible", 2, 100).await;
    cancel_and_check(&app, "flexible", 0, 50).await;
    cancel_and_check(&app, "moderate", 6, 100).await;
    cancel_and_check(&app, "moderate", 3, 50).await;
    cancel_and_check(&app, "moderate", 0, 0).await;
    cancel_and_check(&app, "strict", 20, 100).await;
    cancel_and_check(&app, "strict", 10, 50).await;
    cancel_and_check(&app, "strict", 3, 0).await;

    // An admin returns part of a paid payment, once per idempotency key.
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let h = hold(&app, listing, 30, 32).await;
    let p = start_payment(&app, &h).await;
    let id = p["payment_id"].as_str().unwrap().to_string();
    assert!(sandbox(&app).pay(kaspi_id(&p)).await);
    wait_for_status(&app, &h, "confirmed").await;
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let refund = |amount: i64, key: &'static str| {
        let app = &app;
        let admin = admin.clone();
        let id = id.clone();
        async move {
            let res = app
                .client
                .post(app.url(&format!("/api/v1/payments/{id}/refund")))
                .bearer_auth(admin)
                .header("Idempotency-Key", key)
                .json(&json!({"amount_kzt": amount}))
                .send()
                .await
                .unwrap();
            status_and_json(res).await
        }
    };
    let (status, r1) = refund(10_000, "k1").await;
    assert_eq!(status, 200, "{r1}");
    assert_eq!(r1["status"], "partially_refunded");
    assert_eq!(r1["refunded_kzt"], 10_000);
    let (_, r1_again) = refund(10_000, "k1").await;
    assert_eq!(r1_again["refunded_kzt"], 10_000);
    let (status, too_much) = refund(h.total, "k2").await;
    assert_eq!(status, 422, "{too_much}");
    let (status, _) = app
        .post(
            &format!("/api/v1/payments/{id}/refund"),
            &h.token,
            &json!({"amount_kzt": 1}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, rest) = refund(h.total - 10_000, "k3").await;
    assert_eq!(status, 200);
    assert_eq!(rest["status"], "refunded");
    assert_eq!(sandbox(&app).returned(kaspi_id(&p)), Some(h.total));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_payments_confirm_while_the_nights_are_free_and_are_refunded_otherwise() {
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        "late_payments_confirm_while_the_nights_are_free_and_are_refunded_otherwise",
        &[("ZHILEGO_HOLD_SECONDS", "1")],
    )
    .await
    else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;

    // Nights still free: the late payment confirms the booking.
    let a = hold(&app, listing, 3, 5).await;
    let pa = start_payment(&app, &a).await;
    wait_for_status(&app, &a, "expired").await;
    let (_, answer) = notify(
        &app,
        "pay",
        "late-1",
        pa["account"].as_str().unwrap(),
        &a.total.to_string(),
    )
    .await;
    assert_eq!(answer["result"], 0, "{answer}");
    wait_for_status(&app, &a, "confirmed").await;
    let (status, _) = app
        .get(&format!("/api/v1/bookings/{}", a.booking), Some(&a.token))
        .await;
    assert_eq!(status, 200);

    // Nights taken by someone else meanwhile: the money goes back in full.
    let b = hold(&app, listing, 10, 12).await;
    let pb = start_payment(&app, &b).await;
    wait_for_status(&app, &b, "expired").await;
    let _taker = hold(&app, listing, 11, 13).await;
    // The guest still had the page open and pays: Kaspi takes the money and tells us.
    assert!(sandbox(&app).pay(kaspi_id(&pb)).await);
    let mut refunded = false;
    for _ in 0..100 {
        let pv = payment(&app, pb["payment_id"].as_str().unwrap()).await;
        if pv["status"] == "refunded" {
            assert_eq!(pv["refunds"][0]["reason"], "late_payment");
            refunded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refunded);
    assert_eq!(booking_status(&app, &b).await, "expired");
    assert_eq!(sandbox(&app).returned(kaspi_id(&pb)), Some(b.total));

    // A cancelled booking's link is void: Kaspi is told the booking was cancelled.
    let c = hold(&app, listing, 20, 21).await;
    let pc = start_payment(&app, &c).await;
    let (status, _) = app
        .post(
            &format!("/api/v1/bookings/{}/cancel", c.booking),
            &c.token,
            &json!({"reason": "no"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        payment(&app, pc["payment_id"].as_str().unwrap()).await["status"],
        "expired"
    );
    let (_, check) = notify(
        &app,
        "check",
        "void-1",
        pc["account"].as_str().unwrap(),
        &c.total.to_string(),
    )
    .await;
    assert_eq!(check["result"], 2);
    let (_, pay) = notify(
        &app,
        "pay",
        "void-1",
        pc["account"].as_str().unwrap(),
        &c.total.to_string(),
    )
    .await;
    assert_eq!(pay["result"], 2);
    app.finish().await;
}

on_both_backends!(
    an_admin_may_not_start_the_payment_of_another_guests_booking,
    admin_payment_cell
);
async fn admin_payment_cell(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let h = hold(&app, listing, 3, 5).await;
    let admin = app.token(Role::Admin, Uuid::now_v7());
    let (status, body) = app
        .post(
            &format!("/api/v1/bookings/{}/payment", h.booking),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(status, 403, "an admin, for a booking not theirs: {body}");
    assert_eq!(body["code"], "forbidden", "{body}");
    assert_eq!(events_of_type(&app, "PaymentCreated").await, 0);
    assert_eq!(sandbox(&app).payment_count(), 0, "no Kaspi payment either");
    // The guest still pays their own.
    let p = start_payment(&app, &h).await;
    assert_eq!(p["status"], "pending", "{p}");
    app.finish().await;
}

/// Settings for `storage` with `overrides`.
fn settings_for(storage: &Storage, overrides: &[(&str, &str)]) -> api::Settings {
    let mut env = storage.env();
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    api::Settings::from_map(&env).expect("settings")
}

on_both_backends!(
    production_refuses_the_sandbox_unless_allowed,
    sandbox_refusal
);
async fn sandbox_refusal(backend: Backend, test: &str) {
    let Some(storage) = Storage::new(backend, test).await else {
        return;
    };
    let refused = |settings: api::Settings| async move {
        match api::Application::build(settings).await {
            Ok(_) => panic!("the sandbox was served where strangers reach it"),
            Err(e) => format!("{e:#}"),
        }
    };
    let off = [("ZHILEGO_ALLOW_SANDBOX_PAYMENTS", "0")];
    match backend {
        Backend::Postgres => {
            // Production mode: refused at start, with what to do instead.
            let why = refused(settings_for(&storage, &off)).await;
            assert!(
                why.contains("KASPI_MODE=sandbox is refused in production mode"),
                "{why}"
            );
            assert!(why.contains("ZHILEGO_ALLOW_SANDBOX_PAYMENTS=1"), "{why}");
            assert!(why.contains("KASPI_MODE=live"), "{why}");
        }
        Backend::Sqlite => {
            // Embedded mode on loopback: the development default stays.
            let app = api::Application::build(settings_for(&storage, &off))
                .await
                .expect("embedded mode on loopback keeps the sandbox");
            assert!(app.local_addr().ip().is_loopback());
            assert!(app.state().kaspi.sandbox.is_some());
            drop(app);
            // On every interface strangers can reach it: refused like production.
            let why = refused(settings_for(
                &storage,
                &[off[0], ("ZHILEGO_LISTEN", "0.0.0.0:0")],
            ))
            .await;
            assert!(why.contains("is not a loopback address"), "{why}");
            assert!(why.contains("ZHILEGO_ALLOW_SANDBOX_PAYMENTS=1"), "{why}");
        }
    }
    // Allowed explicitly (a demo): it starts, in sandbox mode.
    let app = api::Application::build(settings_for(
        &storage,
        &[("ZHILEGO_ALLOW_SANDBOX_PAYMENTS", "1")],
    ))
    .await
    .expect("allowed");
    assert!(app.state().kaspi.sandbox.is_some());
    drop(app);
    storage.remove().await;
}

on_both_backends!(a_guessed_sandbox_payment_id_pays_nothing, guessed_ids);
async fn guessed_ids(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
    let mine = hold(&app, listing, 3, 5).await;
    let theirs = hold(&app, listing, 6, 8).await;
    let my_id = kaspi_id(&start_payment(&app, &mine).await);
    let their_id = kaspi_id(&start_payment(&app, &theirs).await);
    assert!(
        (my_id - their_id).abs() > 1_000_000,
        "payment ids {my_id} and {their_id} are neighbours"
    );
    // Counting from one's own id finds nobody's payment page.
    for guess in [my_id - 1, my_id + 1, my_id + 2, their_id - 1, their_id + 1] {
        let page = app
            .client
            .get(app.url(&format!("/kaspi-sandbox/pay/{guess}")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 404, "page {guess}");
        let pay = app
            .client
            .post(app.url(&format!("/kaspi-sandbox/pay/{guess}")))
            .send()
            .await
            .unwrap();
        assert_eq!(pay.status(), 404, "pay {guess}");
    }
    // Nor do the API routes that take an id answer without the sandbox's key.
    for path in [
        format!("/kaspi-sandbox/r2/v01/payments/status/{their_id}"),
        format!("/kaspi-sandbox/r2/v01/payments/details?QrPaymentId={their_id}"),
    ] {
        let res = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
    }
    // The fault switch is not reachable over HTTP, wherever one looks.
    for path in ["/kaspi-sandbox/sandbox/faults", "/sandbox/faults"] {
        let set = app
            .client
            .post(app.url(path))
            .json(&json!({"fail_requests": 1000}))
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 404, "POST {path}");
        let get = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(get.status(), 404, "GET {path}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(booking_status(&app, &mine).await, "held");
    assert_eq!(booking_status(&app, &theirs).await, "held");
    assert_eq!(events_of_type(&app, "BookingConfirmed").await, 0);
    assert_eq!(sandbox(&app).status(their_id), Some("Wait"));
    app.finish().await;
}
