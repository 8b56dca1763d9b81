//! The history fixture `tests/fixtures/history-v1`: an event store written by version 1 of
//! the service (SQLite file and PostgreSQL dump), kept forever. Every later version must
//! load it, answer the recorded reads the same, rebuild the same read models and verify its
//! hash chains. An event type added later fails the build here (see `event_types!`) until it
//! is listed, and then the coverage test until a later fixture holds it.
//!
//! `make::write_history_fixture_*` (ignored) made it; `tests/fixtures/make-history.sh` runs them.
//! Never run them again into `history-v1`: it is the record of version 1.
mod make;
mod reads;
mod scenes;
mod script;

use crate::helpers::*;
use crate::on_both_backends;
use crate::projections::{assert_same_rows, dump_all, rebuild_all, settle};
use domain::booking::BookingEvent;
use domain::listing::ListingEvent;
use domain::payment::PaymentEvent;
use domain::user::UserEvent;
use reads::Read;
use serde_json::Value;
use sqlx::Connection;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The fixture's keys: test-only, committed with it so it can always be opened.
pub struct FixtureKeys;

impl FixtureKeys {
    pub const JWT_SECRET: &'static str = "history-v1-fixture-only-jwt-secret-not-for-any-real-use";
    pub const ENCRYPTION_KEY: &'static str =
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
}

/// Lists the event types and checks, when this file compiles, that the list names every
/// variant of the domain's event enums: the match has no catch-all, so an event type added
/// later stops the build here until it is listed, and listing it fails
/// `history_v1_holds_every_event_type` until a new fixture (history-v2) holds it. Types added
/// after history-v1 are listed after `+`: the build sees them, the v1 fixture does not hold
/// them (a history-v2 should).
macro_rules! event_types {
    ($($aggregate:literal: $enum:ident($arg:ident) [$($variant:ident),+ $(,)?]
       $(after_v1 [$($later:ident),+ $(,)?])?;)+) => {
        /// Every (aggregate type, event type) the domain had when history-v1 was made.
        const EVENT_TYPES: &[(&str, &str)] = &[$($(($aggregate, stringify!($variant))),+),+];

        /// Event types added after history-v1, which it cannot hold: they wait for the
        /// history-v2 fixture (tests/fixtures/history-v1/README.md), made once for all of them.
        const AFTER_V1: &[(&str, &str)] = &[$($($(($aggregate, stringify!($later)),)+)?)+];

        fn every_variant_is_listed($($arg: &$enum),+) {
            $(match $arg { $($enum::$variant { .. } => {})+ $($($enum::$later { .. } => {})+)? })+
        }
    };
}

event_types! {
    "Listing": ListingEvent(listing) [
        ListingCreated, ListingUpdated, ListingStatusChanged, DatesReserved,
        ReservationConfirmed, DatesReleased, DatesBlocked, DatesUnblocked, AccessUpdated,
    ] after_v1 [CalendarFeedAdded, CalendarFeedRemoved, FeedConflictsChanged, ListingModerated, HoldExtended];
    "Booking": BookingEvent(booking) [
        BookingHeld, BookingConfirmed, BookingCancelled, BookingExpired, BookingCheckedIn,
        BookingCompleted, BookingReviewed,
    ] after_v1 [BookingHoldExtended];
    "Payment": PaymentEvent(payment) [
        PaymentCreated, PaymentLinkIssued, PaymentSucceeded, PaymentAmountMismatched,
        PaymentFailed, PaymentExpired, RefundRequested, PaymentRefunded,
    ];
    "User": UserEvent(user) [ProfileUpdated, PersonalDataErased]
        after_v1 [RoleChanged, UserBlocked, UserUnblocked, ApiKeyIssued, ApiKeyRevoked];
}

/// Variants within event types the fixture must hold too: (event type, JSON pointer into
/// the stored payload, value), as version 1 stored them.
const VARIANTS: &[(&str, &str, &str)] = &[
    ("DatesReleased", "/DatesReleased/reason", "\"cancelled\""),
    ("DatesReleased", "/DatesReleased/reason", "\"expired\""),
    ("DatesReleased", "/DatesReleased/reason", "\"compensated\""),
    ("BookingConfirmed", "/BookingConfirmed/late", "true"),
    (
        "PaymentSucceeded",
        "/PaymentSucceeded/source",
        "\"callback\"",
    ),
    (
        "PaymentSucceeded",
        "/PaymentSucceeded/source",
        "\"reconciliation\"",
    ),
    (
        "RefundRequested",
        "/RefundRequested/reason",
        "\"cancellation\"",
    ),
    (
        "RefundRequested",
        "/RefundRequested/reason",
        "\"late_payment\"",
    ),
    ("RefundRequested", "/RefundRequested/reason", "\"admin\""),
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/history-v1")
}

fn backend_dir(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, value: &impl serde::Serialize) {
    let mut text = serde_json::to_string_pretty(value).expect("JSON");
    text.push('\n');
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Storage for an app with the fixture's keys, on `data_dir` (and database `pg`).
fn fixture_storage(
    backend: Backend,
    data_dir: PathBuf,
    pg: Option<(String, String, String)>,
) -> Storage {
    Storage {
        backend,
        data_dir,
        pg,
        jwt_secret: FixtureKeys::JWT_SECRET.into(),
        encryption_key: FixtureKeys::ENCRYPTION_KEY.into(),
        nats: None,
    }
}

/// A copy of the fixture's store for one test: the SQLite file in a fresh data dir, or the
/// dump loaded into a fresh database. `None` when PostgreSQL is not configured.
async fn load_fixture(backend: Backend, test: &str) -> Option<Storage> {
    let dir = fixture_dir().join(backend_dir(backend));
    match backend {
        Backend::Sqlite => {
            let data_dir = temp_dir();
            // The embedded data dir as the stopped service left it: the store and its keys.
            for file in ["zhilego.db", "jwt-secret", "encryption-key"] {
                std::fs::copy(dir.join(file), data_dir.join(file))
                    .unwrap_or_else(|e| panic!("copy the fixture's {file}: {e}"));
            }
            Some(fixture_storage(backend, data_dir, None))
        }
        Backend::Postgres => {
            let admin = pg_admin_url(test)?;
            let (name, url) = fresh_pg_database(&admin).await;
            let dump = std::fs::read_to_string(dir.join("store.sql")).expect("the dump");
            // A connection of its own: the dump sets `search_path` for its session.
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            sqlx::raw_sql(&dump)
                .execute(&mut conn)
                .await
                .expect("load the dump");
            pass_transaction_ids_of_the_dump(&mut conn).await;
            conn.close().await.expect("close");
            Some(fixture_storage(
                backend,
                temp_dir(),
                Some((admin, name, url)),
            ))
        }
    }
}

/// The dump keeps each event's writing transaction id (`xid`) from the server that made it,
/// and the store reads only events of transactions older than every running one. On a
/// server whose transaction counter is still below those ids (a fresh cluster, as in CI)
/// the events would stay invisible, so the counter is moved past them first, as a restore
/// into a new cluster must do (`pg_upgrade` and physical copies keep the counter).
async fn pass_transaction_ids_of_the_dump(conn: &mut sqlx::PgConnection) {
    let newest: Option<i64> =
        sqlx::query_scalar("SELECT max((xid::text)::bigint) FROM public.events")
            .fetch_one(&mut *conn)
            .await
            .expect("newest xid");
    let current: i64 = sqlx::query_scalar("SELECT (pg_current_xact_id()::text)::bigint")
        .fetch_one(&mut *conn)
        .await
        .expect("current xid");
    let Some(newest) = newest else { return };
    if current > newest {
        return;
    }
    // Each block with an exception handler is a subtransaction; its write takes an id.
    let burn = format!(
        "DO $$ BEGIN \
           CREATE TEMP TABLE fixture_xids (n int); \
           FOR i IN 1..{} LOOP \
             BEGIN INSERT INTO fixture_xids VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END; \
           END LOOP; \
           DROP TABLE fixture_xids; \
         END $$",
        newest - current + 1
    );
    sqlx::raw_sql(&burn)
        .execute(&mut *conn)
        .await
        .expect("advance the transaction counter");
}

fn golden(backend: Backend) -> (Vec<Read>, Value) {
    let dir = fixture_dir().join(backend_dir(backend));
    let reads = serde_json::from_value(read_json(&dir.join("reads.json"))).expect("reads.json");
    (reads, read_json(&dir.join("manifest.json")))
}

/// Starts the real app on a copy of the fixture and waits until its read models have taken
/// in every event.
async fn start_on_fixture(backend: Backend, test: &str) -> Option<TestApp> {
    let storage = load_fixture(backend, test).await?;
    let app = start(storage, &[]).await;
    settle(&app).await;
    Some(app)
}

on_both_backends!(history_v1_answers_the_recorded_reads, recorded_reads);
async fn recorded_reads(backend: Backend, test: &str) {
    let Some(app) = start_on_fixture(backend, test).await else {
        return;
    };
    let (golden, manifest) = golden(backend);
    reads::check(&app, &golden).await;
    // Loading wrote nothing: the fixture has no hold, stay or payment left to move on.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        Some(app.event_count().await as i64),
        manifest["events"].as_i64(),
        "events in the store after the app started on it"
    );
    app.finish().await;
}

on_both_backends!(
    history_v1_rebuilds_the_same_read_models,
    rebuilt_read_models
);
async fn rebuilt_read_models(backend: Backend, test: &str) {
    let Some(app) = start_on_fixture(backend, test).await else {
        return;
    };
    let events = app.event_count().await as u64;
    let incremental = dump_all(&app).await;
    assert!(incremental.iter().all(|rows| !rows.is_empty()));
    let folded = rebuild_all(&app).await;
    assert!(
        folded.iter().all(|n| *n == events),
        "{folded:?} vs {events}"
    );
    assert_same_rows(&incremental, &dump_all(&app).await);
    // The rebuilt read models answer as the recorded ones did.
    reads::check(&app, &golden(backend).0).await;
    app.finish().await;
}

on_both_backends!(history_v1_hash_chains_verify, hash_chains);
async fn hash_chains(backend: Backend, test: &str) {
    let Some(storage) = load_fixture(backend, test).await else {
        return;
    };
    let (code, out) = crate::processes::audit_verify(&storage).await;
    assert_eq!(code, 0, "zhilego audit verify: {out}");
    let report: Value = serde_json::from_str(&out).expect("the report is JSON");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["checked_events"],
        golden(backend).1["events"],
        "{report}"
    );
    storage.remove().await;
}

on_both_backends!(history_v1_holds_every_event_type, every_event_type);
async fn every_event_type(backend: Backend, test: &str) {
    let Some(storage) = load_fixture(backend, test).await else {
        return;
    };
    let db = storage.database().await;
    let events = store::history::events_by_position(&db, 0, 1_000_000)
        .await
        .unwrap();
    let found: BTreeSet<(String, String)> = events
        .iter()
        .map(|e| (e.aggregate_type.clone(), e.event_type.clone()))
        .collect();
    let known: BTreeSet<(String, String)> = EVENT_TYPES
        .iter()
        .map(|(a, e)| (a.to_string(), e.to_string()))
        .collect();
    // The list is checked against the domain's enums when this file compiles.
    let _: fn(&ListingEvent, &BookingEvent, &PaymentEvent, &UserEvent) = every_variant_is_listed;
    for (aggregate, event_type) in AFTER_V1 {
        assert!(
            !found.contains(&(aggregate.to_string(), event_type.to_string())),
            "{aggregate}/{event_type} is listed as added after history-v1 but the fixture holds it"
        );
    }
    assert_eq!(
        found, known,
        "the fixture's event types differ from the list; a new event type needs a new fixture \
         (history-v2) and its place in the list"
    );
    for (event_type, pointer, value) in VARIANTS {
        let want: Value = serde_json::from_str(value).unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.event_type == *event_type && e.payload.pointer(pointer) == Some(&want)),
            "no {event_type} with {pointer} = {value}"
        );
    }
    // Listing A passed 50 events: the store holds a snapshot as version 1 wrote it.
    let snapshots: i64 = store::with_pool!(&db, pool => {
        sqlx::query_scalar("SELECT count(*) FROM snapshots")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(snapshots >= 1, "the fixture keeps a Listing snapshot");
    db.close().await;
    storage.remove().await;
}
