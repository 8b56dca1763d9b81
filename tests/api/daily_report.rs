//! The daily report: made exactly once with three instances running, and a restart around
//! the set time (06:00 Kazakhstan time) neither repeats nor skips it; kept unchanged, sent once
//! to the admins' Telegram chat (testkit's fake Bot API), and served as stored.
use crate::helpers::*;
use crate::on_both_backends;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use domain::Role;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;
use zhilego_testkit::telegram::{text_of, FakeTelegram};

const CHAT: i64 = -100_777;

/// A clock the test moves.
#[derive(Clone)]
pub struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn at(t: DateTime<Utc>) -> TestClock {
        TestClock(Arc::new(Mutex::new(t)))
    }
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl api::reports::Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// `hh:mm:ss` local (UTC+5) on `date`.
fn local(date: NaiveDate, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    let offset = chrono::FixedOffset::east_opt(5 * 3600).unwrap();
    offset
        .from_local_datetime(&date.and_hms_opt(h, m, s).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

async fn reports_in(app: &TestApp) -> Vec<(NaiveDate, i64, Option<DateTime<Utc>>)> {
    store::with_pool!(&app.db, pool => {
        sqlx::query_as::<_, (NaiveDate, i64, Option<DateTime<Utc>>)>(
            "SELECT report_date, position, telegram_sent_at FROM daily_reports ORDER BY report_date",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

async fn start_instance(storage: &Storage, telegram: &FakeTelegram, clock: &TestClock) -> TestApp {
    let chat = CHAT.to_string();
    let overrides = [
        ("TELEGRAM_BOT_TOKEN", "123456:TEST-token"),
        ("TELEGRAM_API_URL", telegram.url.as_str()),
        ("TELEGRAM_WEBHOOK_SECRET", "secret"),
        ("ZHILEGO_REPORT_TELEGRAM_CHAT", chat.as_str()),
        ("ZHILEGO_REPORT_CHECK_MS", "20"),
    ];
    start_with_clock(storage.clone(), &overrides, Some(Arc::new(clock.clone()))).await
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn exactly_once(backend: Backend, test: &str) {
    let Some(storage) = Storage::new(backend, test).await else {
        return;
    };
    let telegram = FakeTelegram::start().await;
    let today = domain::local_date(Utc::now());
    let day = today.pred_opt().unwrap();
    let clock = TestClock::at(local(today, 5, 59, 0));
    let mut apps = vec![];
    for _ in 0..3 {
        apps.push(start_instance(&storage, &telegram, &clock).await);
    }
    // Some business to report on: a paid stay whose first night is the day reported.
    let host = Uuid::now_v7();
    let listing = apps[0].create_listing(host, serde_json::json!({})).await;
    let _ = listing;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reports_in(&apps[0]).await.is_empty(), "made before 06:00");

    // 06:00 passes with three instances checking every 20 ms.
    clock.set(local(today, 6, 0, 1));
    wait_until("the report is made", async || {
        !reports_in(&apps[0]).await.is_empty()
    })
    .await;
    wait_until("the report is sent", async || {
        reports_in(&apps[0]).await[0].2.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let made = reports_in(&apps[0]).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].0, day);
    let sent = telegram.sent_to(CHAT);
    assert_eq!(sent.len(), 1, "sent {} times", sent.len());
    assert!(
        text_of(&sent[0]).contains(&day.to_string()),
        "{}",
        text_of(&sent[0])
    );

    // What is served is what was stored, unchanged, even after more business.
    let analyst = apps[1].token(Role::Analyst, Uuid::now_v7());
    let path = format!("/api/v1/reports/daily/{day}");
    let (status, first) = apps[1].get(&path, Some(&analyst)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["position"], made[0].1, "{first}");
    apps[2]
        .create_listing(Uuid::now_v7(), serde_json::json!({}))
        .await;
    let (_, again) = apps[2].get(&path, Some(&analyst)).await;
    assert_eq!(first, again);

    // A restart around 06:00: every instance stops, one comes back at 06:00:30, the others at
    // 06:01: nothing is made or sent again.
    let mut stopped = vec![];
    for app in apps {
        stopped.push(app.stop().await);
    }
    clock.set(local(today, 6, 0, 30));
    let mut apps = vec![start_instance(&storage, &telegram, &clock).await];
    clock.set(local(today, 6, 1, 0));
    apps.push(start_instance(&storage, &telegram, &clock).await);
    apps.push(start_instance(&storage, &telegram, &clock).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reports_in(&apps[0]).await.len(), 1);
    assert_eq!(telegram.sent_to(CHAT).len(), 1);

    // Down across the next 06:00 and back at 07:15: the report is made on start, not skipped.
    for app in apps {
        app.stop().await;
    }
    let tomorrow = today.succ_opt().unwrap();
    clock.set(local(tomorrow, 7, 15, 0));
    let mut apps = vec![];
    for _ in 0..3 {
        apps.push(start_instance(&storage, &telegram, &clock).await);
    }
    wait_until("the missed report is made", async || {
        reports_in(&apps[0]).await.len() == 2
    })
    .await;
    wait_until("and sent", async || telegram.sent_to(CHAT).len() == 2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let made = reports_in(&apps[0]).await;
    assert_eq!(
        made.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![day, today]
    );
    assert_eq!(telegram.sent_to(CHAT).len(), 2);
    // A day with no stored report is computed on request (and not stored).
    let (status, computed) = apps[0]
        .get(&format!("/api/v1/reports/daily/{tomorrow}"), Some(&analyst))
        .await;
    assert_eq!(status, 200, "{computed}");
    assert_eq!(computed["date"], tomorrow.to_string());
    assert_eq!(reports_in(&apps[0]).await.len(), 2);
    let last = apps.pop().unwrap();
    for app in apps {
        app.stop().await;
    }
    last.finish().await;
    telegram.stop();
}
on_both_backends!(
    daily_report_is_made_exactly_once_across_instances_and_restarts,
    exactly_once
);
