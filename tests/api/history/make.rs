//! Writing a history fixture (once per version of the events): the ignored tests that
//! `tests/fixtures/make-history.sh` runs. Never point them at a committed fixture.
use super::{backend_dir, fixture_storage, reads, script, write_json, FixtureKeys};
use crate::helpers::*;
use crate::projections::settle;
use serde_json::json;
use std::path::PathBuf;

/// Where `make-history.sh` asks the fixture to be written.
const OUT_VAR: &str = "ZHILEGO_HISTORY_OUT";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the history fixture; run by tests/fixtures/make-history.sh"]
async fn write_history_fixture_sqlite() {
    write_fixture(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the history fixture; run by tests/fixtures/make-history.sh"]
async fn write_history_fixture_postgres() {
    write_fixture(Backend::Postgres).await;
}

async fn write_fixture(backend: Backend) {
    let out = PathBuf::from(std::env::var(OUT_VAR).expect("ZHILEGO_HISTORY_OUT names the output"));
    let out = out.join(backend_dir(backend));
    assert!(
        !out.exists(),
        "{} exists: a fixture is never written over",
        out.display()
    );
    std::fs::create_dir_all(&out).unwrap();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let admin = std::env::var(PG_URL_VAR).expect("ZHILEGO_TEST_PG_URL");
            let (name, url) = fresh_pg_database(&admin).await;
            Some((admin, name, url))
        }
    };
    let storage = fixture_storage(backend, temp_dir(), pg);
    let app = start(storage, &[]).await;
    let cast = script::run(&app).await;
    settle(&app).await;
    // Whatever the sweeper and the keeper would still do happens now, not on a later load.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    settle(&app).await;
    let events = app.event_count().await;
    let mut golden = reads::fixed_reads(&cast);
    reads::record(&app, &mut golden).await;
    assert_eq!(app.event_count().await, events, "the reads wrote nothing");
    write_json(&out.join("reads.json"), &golden);
    write_json(
        &out.join("manifest.json"),
        &json!({
            "events": events,
            "made_at": chrono::Utc::now().date_naive(),
            "listings": cast.listings,
            "bookings": cast.bookings,
            "payments": cast.payments,
        }),
    );
    let storage = app.stop().await;
    match backend {
        Backend::Sqlite => {
            // One complete file, the WAL folded in, as a stopped embedded service leaves it.
            let db = storage.database().await;
            let target = out.join("zhilego.db");
            store::with_pool!(&db, pool => {
                sqlx::query(&format!("VACUUM INTO '{}'", target.display()))
                    .execute(pool)
                    .await
                    .expect("VACUUM INTO");
            });
            db.close().await;
            std::fs::write(out.join("jwt-secret"), FixtureKeys::JWT_SECRET).unwrap();
            std::fs::write(out.join("encryption-key"), FixtureKeys::ENCRYPTION_KEY).unwrap();
        }
        Backend::Postgres => {
            let (_, _, url) = storage.pg.clone().expect("a database");
            let dumped = tokio::process::Command::new("pg_dump")
                .args([
                    "--no-owner",
                    "--no-privileges",
                    "--column-inserts",
                    "--dbname",
                    &url,
                ])
                .output()
                .await
                .expect("run pg_dump");
            assert!(
                dumped.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&dumped.stderr)
            );
            // Plain SQL any client can run: psql's `\restrict` guard lines (pg_dump ≥ 15.14)
            // are the only meta-commands in a dump of INSERTs.
            let sql: String = String::from_utf8(dumped.stdout)
                .expect("UTF-8")
                .lines()
                .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(out.join("store.sql"), sql).unwrap();
        }
    }
    storage.remove().await;
}
