//! Scanning stored data for plaintext: every file of the data dir and, on PostgreSQL, every
//! row of every table of the store and read databases (what the access and privacy tests use
//! to prove a secret or a phone number is never at rest in the clear).
use crate::helpers::*;
use sqlx::{Connection, Row};
use std::path::Path;

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, recursively, as (path, bytes).
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

/// Where each of `needles` appears in plaintext, as (needle, place); panics when there was
/// nothing to scan. `when` names the scan in messages.
pub async fn plaintext_findings(
    storage: &Storage,
    needles: &[&'static str],
    when: &str,
) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let files = files_under(&storage.data_dir);
    let mut names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    names.sort();
    for (path, bytes) in &files {
        for &needle in needles {
            if contains(bytes, needle) {
                found.push((needle, format!("{when}: {needle} in file {path}")));
            }
        }
    }
    match storage.backend {
        Backend::Sqlite => {
            assert!(
                files
                    .iter()
                    .any(|(p, b)| p.ends_with("zhilego.db") && !b.is_empty()),
                "{when}: no SQLite database to scan among {names:?}"
            );
            eprintln!("{when}: scanned {names:?}");
        }
        Backend::Postgres => {
            let (admin, db, _) = storage.pg.clone().expect("a PostgreSQL storage");
            let mut rows_scanned = 0usize;
            for database in [db.clone(), format!("{db}_read")] {
                let url = with_database(&admin, &database);
                let mut conn = sqlx::PgConnection::connect(&url)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {database}: {e}"));
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' ORDER BY table_name",
                )
                .fetch_all(&mut conn)
                .await
                .expect("list tables");
                assert!(!tables.is_empty(), "{when}: {database} has no tables");
                for table in &tables {
                    let rows = sqlx::query(&format!(
                        "SELECT t::text FROM \"{}\" t",
                        table.replace('"', "\"\"")
                    ))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("scan {database}.{table}: {e}"));
                    for row in rows {
                        let text: Option<String> = row.get(0);
                        let text = text.unwrap_or_default();
                        rows_scanned += 1;
                        for &needle in needles {
                            if text.contains(needle) {
                                found.push((
                                    needle,
                                    format!("{when}: {needle} in {database}.{table}: {text}"),
                                ));
                            }
                        }
                    }
                }
                eprintln!("{when}: scanned {database}: {tables:?}");
                let _ = conn.close().await;
            }
            assert!(rows_scanned > 0, "{when}: no rows scanned");
        }
    }
    found
}
