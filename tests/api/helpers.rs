//! Test harness: the real application on a free port, against a fresh SQLite data dir or a
//! fresh PostgreSQL database, exercised over real HTTP.
//!
//! PostgreSQL-backed tests need `ZHILEGO_TEST_PG_URL` (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`); without it they print that they were skipped
//! and pass, unless `ZHILEGO_REQUIRE_SERVICES=1`, which turns a skip into a failure (CI).
use api::auth::JwtKeys;
use api::{Application, Settings};
use domain::Role;
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use store::Database;
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const PG_URL_VAR: &str = "ZHILEGO_TEST_PG_URL";
/// The Kaspi callback's credentials in tests.
pub const KASPI_USER: &str = "kaspi-test";
pub const KASPI_PASSWORD: &str = "kaspi-test-password";
pub const NATS_URL_VAR: &str = "ZHILEGO_TEST_NATS_URL";

/// The NATS URL for bus tests, or `None` (test skipped) when not configured.
pub fn nats_url(test: &str) -> Option<String> {
    match std::env::var(NATS_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("ZHILEGO_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: {NATS_URL_VAR} is not set but ZHILEGO_REQUIRE_SERVICES=1");
            }
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: set {NATS_URL_VAR} to run it against NATS"
            );
            None
        }
    }
}

/// The admin URL for PostgreSQL tests, or `None` (test skipped) when not configured.
pub fn pg_admin_url(test: &str) -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("ZHILEGO_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: {PG_URL_VAR} is not set but ZHILEGO_REQUIRE_SERVICES=1");
            }
            // Written past the test harness's output capture, so the skip is always seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: set {PG_URL_VAR} to run it against PostgreSQL"
            );
            None
        }
    }
}

/// A database URL with the database name replaced.
pub fn with_database(admin_url: &str, db: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let root = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap() + 2 => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// Creates a fresh PostgreSQL database and returns (name, url).
pub async fn fresh_pg_database(admin_url: &str) -> (String, String) {
    let name = format!("zt_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let url = with_database(admin_url, &name);
    (name, url)
}

/// Drops a test database and the read database the service made next to it.
pub async fn drop_pg_database(admin_url: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await {
        for db in [name.to_string(), format!("{name}_read")] {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zhilego-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Where a test's data lives, so it can be reopened by a restarted app.
#[derive(Clone, Debug)]
pub struct Storage {
    pub backend: Backend,
    pub data_dir: PathBuf,
    pub pg: Option<(String, String, String)>, // (admin url, db name, url)
    pub jwt_secret: String,
    pub encryption_key: String,
    /// (NATS URL, stream, subject prefix), fresh per test, when the test uses the bus.
    pub nats: Option<(String, String, String)>,
}

impl Storage {
    pub async fn new(backend: Backend, test: &str) -> Option<Storage> {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let admin = pg_admin_url(test)?;
                let (name, url) = fresh_pg_database(&admin).await;
                Some((admin, name, url))
            }
        };
        Some(Storage {
            backend,
            data_dir: temp_dir(),
            pg,
            jwt_secret: format!("test-secret-{}", Uuid::new_v4()),
            encryption_key: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
            nats: None,
        })
    }

    /// The environment a `zhilego` process (or an in-process app) runs with.
    pub fn env(&self) -> HashMap<String, String> {
        let mut env = HashMap::new();
        env.insert("ZHILEGO_LISTEN".into(), "127.0.0.1:0".into());
        env.insert(
            "ZHILEGO_DATA_DIR".into(),
            self.data_dir.display().to_string(),
        );
        env.insert("ZHILEGO_JWT_SECRET".into(), self.jwt_secret.clone());
        env.insert("ZHILEGO_ENCRYPTION_KEY".into(), self.encryption_key.clone());
        // The audit checkpoints' signing key (required in production mode); derived from the
        // master key so a restarted app signs with the same key.
        env.insert(
            "ZHILEGO_AUDIT_SIGNING_KEY".into(),
            self.encryption_key.chars().rev().collect(),
        );
        env.insert("ZHILEGO_RATE_LIMIT".into(), "0".into());
        // Webhook limits are tested on their own; the suite's bots and Kaspi post faster.
        env.insert("ZHILEGO_WEBHOOK_RATE_LIMIT".into(), "0".into());
        // Metrics on their own loopback listener, on a free port, as documented.
        env.insert("ZHILEGO_METRICS_ADDR".into(), "127.0.0.1:0".into());
        env.insert("ZHILEGO_SWEEP_INTERVAL_MS".into(), "200".into());
        // Payments go to the sandbox this app serves; the keeper passes often, and asks Kaspi
        // about pending payments only in tests that say so.
        env.insert("KASPI_MODE".into(), "sandbox".into());
        // Production mode refuses the sandbox unless told; these apps serve loopback only.
        env.insert("ZHILEGO_ALLOW_SANDBOX_PAYMENTS".into(), "1".into());
        env.insert("KASPI_CALLBACK_USER".into(), KASPI_USER.into());
        env.insert("KASPI_CALLBACK_PASSWORD".into(), KASPI_PASSWORD.into());
        env.insert("KASPI_TIMEOUT_MS".into(), "2000".into());
        env.insert("ZHILEGO_RECONCILE_INTERVAL_MS".into(), "200".into());
        env.insert("ZHILEGO_RECONCILE_AFTER_SECONDS".into(), "3600".into());
        if let Some((url, stream, prefix)) = &self.nats {
            env.insert("NATS_URL".into(), url.clone());
            env.insert("ZHILEGO_NATS_STREAM".into(), stream.clone());
            env.insert("ZHILEGO_NATS_SUBJECT_PREFIX".into(), prefix.clone());
        }
        if let Some((_, _, url)) = &self.pg {
            env.insert("DATABASE_URL".into(), url.clone());
            env.insert("ZHILEGO_DB_MAX_CONNECTIONS".into(), "8".into());
        }
        env
    }

    pub fn keys(&self) -> JwtKeys {
        JwtKeys::new(self.jwt_secret.as_bytes())
    }

    pub async fn database(&self) -> Database {
        let url = match (self.backend, &self.pg) {
            (Backend::Postgres, Some((_, _, url))) => url.clone(),
            _ => format!("sqlite://{}", self.data_dir.join("zhilego.db").display()),
        };
        Database::connect(&url, 2)
            .await
            .expect("open test database")
    }

    /// Gives this storage a fresh stream and subject prefix on the NATS server at `url`.
    pub fn with_nats(mut self, url: String) -> Storage {
        let id = Uuid::new_v4().simple().to_string();
        self.nats = Some((url, format!("T_{id}"), format!("t{id}.events")));
        self
    }

    pub async fn remove(&self) {
        if let Some((url, stream, _)) = &self.nats {
            if let Ok(client) = async_nats::connect(url.as_str()).await {
                let _ = async_nats::jetstream::new(client)
                    .delete_stream(stream)
                    .await;
            }
        }
        if let Some((admin, name, _)) = &self.pg {
            drop_pg_database(admin, name).await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub struct TestApp {
    pub address: String,
    /// The metrics listener (`ZHILEGO_METRICS_ADDR`), when on.
    pub metrics_address: Option<String>,
    /// The running app's state (commands, read models), for tests that drive it directly.
    pub state: api::state::AppState,
    pub client: reqwest::Client,
    pub storage: Storage,
    pub db: Database,
    keys: JwtKeys,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the application in-process; `None` when the backend's service is not configured.
pub async fn spawn_app(backend: Backend, test: &str) -> Option<TestApp> {
    spawn_app_with(backend, test, &[]).await
}

pub async fn spawn_app_with(
    backend: Backend,
    test: &str,
    overrides: &[(&str, &str)],
) -> Option<TestApp> {
    let storage = Storage::new(backend, test).await?;
    Some(start(storage, overrides).await)
}

/// Starts (or restarts) an in-process app on existing storage.
pub async fn start(storage: Storage, overrides: &[(&str, &str)]) -> TestApp {
    start_with_clock(storage, overrides, None).await
}

/// [`start`], with the daily report scheduler on `clock` when given.
pub async fn start_with_clock(
    storage: Storage,
    overrides: &[(&str, &str)],
    clock: Option<std::sync::Arc<dyn api::reports::Clock>>,
) -> TestApp {
    let mut env = storage.env();
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    let settings = Settings::from_map(&env).expect("test settings");
    let mut app = Application::build(settings).await.expect("build app");
    if let Some(clock) = clock {
        app = app.with_report_clock(clock);
    }
    let address = format!("http://{}", app.local_addr());
    let metrics_address = app.metrics_addr().map(|a| format!("http://{a}"));
    let db = app.state().db.clone();
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async move {
            let _ = rx.await;
        })
        .await
        .expect("app runs");
    });
    TestApp {
        address,
        metrics_address,
        state,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        keys: storage.keys(),
        storage,
        db,
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    pub fn token(&self, role: Role, sub: Uuid) -> String {
        self.keys.mint(sub, role, chrono::Duration::hours(1))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The metrics text, scraped from the metrics listener.
    pub async fn metrics(&self) -> String {
        let base = self
            .metrics_address
            .as_ref()
            .expect("the metrics listener is on");
        self.client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the app gracefully (keeps its storage).
    pub async fn stop(mut self) -> Storage {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        self.storage.clone()
    }

    /// Stops the app and deletes its storage.
    pub async fn finish(self) {
        let storage = self.stop().await;
        storage.remove().await;
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> (u16, Value) {
        let res = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        status_and_json(res).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.send_json(reqwest::Method::POST, path, token, body)
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        status_and_json(req.send().await.expect("request")).await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.send_json(reqwest::Method::PUT, path, token, body)
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.send_json(reqwest::Method::PATCH, path, token, body)
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        let res = self
            .client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        status_and_json(res).await
    }

    /// Creates an active listing for `host` and returns its id.
    pub async fn create_listing(&self, host: Uuid, extra: Value) -> Uuid {
        let token = self.token(Role::Host, host);
        let mut body = listing_body();
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (status, json) = self.post("/api/v1/listings", &token, &body).await;
        assert_eq!(status, 201, "create listing: {json}");
        json["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn event_count(&self) -> usize {
        store::history::events_by_position(&self.db, 0, 1_000_000)
            .await
            .unwrap()
            .len()
    }
}

pub async fn status_and_json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

pub fn listing_body() -> Value {
    json!({
        "title": "Светлая квартира у Арбата",
        "city": "Almaty",
        "address": "Abay Ave 10, apt 5",
        "location": {"lat": 43.2389, "lon": 76.8897},
        "rooms": 2,
        "max_guests": 4,
        "nightly_price_kzt": 20000,
        "cleaning_fee_kzt": 5000,
        "min_nights": 1,
        "cancellation_policy": "moderate",
        "photos": ["https://cdn.zhilego.kz/p/1.jpg"],
        "amenities": ["wifi", "kitchen"]
    })
}

/// A date `days` from today in Kazakhstan.
pub fn day(days: i64) -> String {
    (domain::local_date(chrono::Utc::now()) + chrono::Duration::days(days)).to_string()
}

pub fn booking_body(listing: Uuid, from: i64, to: i64, guests: u32) -> Value {
    json!({"listing_id": listing, "check_in": day(from), "check_out": day(to), "guests": guests})
}

/// Runs a test body against each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body(
                    $crate::helpers::Backend::Sqlite,
                    concat!(stringify!($name), "::sqlite"),
                )
                .await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body(
                    $crate::helpers::Backend::Postgres,
                    concat!(stringify!($name), "::postgres"),
                )
                .await;
            }
        }
    };
}

/// Pays a held booking as its guest: the payment link (pending), then Kaspi's `pay`
/// notification for its account and amount, answered 0 with the same `txn_id`.
pub async fn pay_through_kaspi(app: &TestApp, token: &str, booking: impl std::fmt::Display) {
    let (status, payment) = app
        .post(
            &format!("/api/v1/bookings/{booking}/payment"),
            token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "start payment: {payment}");
    assert_eq!(payment["status"], "pending", "{payment}");
    let account = payment["account"].as_str().expect("account").to_string();
    let amount = payment["amount_kzt"].as_i64().expect("amount_kzt");
    let txn_id = (Uuid::new_v4().as_u128() % 1_000_000_000_000_000).to_string();
    let res = app
        .client
        .get(app.url("/kaspi/callback/"))
        .basic_auth(KASPI_USER, Some(KASPI_PASSWORD))
        .query(&[
            ("command", "pay"),
            ("txn_id", txn_id.as_str()),
            ("account", account.as_str()),
            ("sum", amount.to_string().as_str()),
            ("txn_date", "20261127120000"),
        ])
        .send()
        .await
        .expect("callback request");
    let (status, answer) = status_and_json(res).await;
    assert_eq!(status, 200, "Kaspi pay callback: {answer}");
    assert_eq!(answer["result"], 0, "Kaspi pay callback: {answer}");
    assert_eq!(answer["txn_id"], txn_id.as_str(), "{answer}");
}
