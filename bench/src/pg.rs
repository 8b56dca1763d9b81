//! PostgreSQL housekeeping (scratch databases) and the pgbench reference figure.
use anyhow::{bail, Context, Result};
use sqlx::{Connection, PgConnection};
use std::path::Path;
use uuid::Uuid;

/// A fresh database name with `prefix`: lowercase letters, digits and underscores only.
pub fn scratch_name(prefix: &str) -> String {
    format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// `admin_url` with its database replaced by `db` (query parameters kept).
pub fn database_url(admin_url: &str, db: &str) -> Result<String> {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base
        .find("://")
        .map(|i| i + 3)
        .context("--pg-admin-url is not a postgres:// URL")?;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

async fn admin(admin_url: &str) -> Result<PgConnection> {
    PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connecting to {admin_url}"))
}

/// Whether the PostgreSQL server answers at all (a few seconds at most).
pub async fn reachable(admin_url: &str) -> std::result::Result<(), String> {
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        PgConnection::connect(admin_url),
    )
    .await
    {
        Ok(Ok(conn)) => {
            conn.close().await.ok();
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

pub async fn create_database(admin_url: &str, db: &str) -> Result<()> {
    let mut conn = admin(admin_url).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("CREATE DATABASE {db}"))?;
    conn.close().await.ok();
    Ok(())
}

/// Creates `db` unless it exists.
pub async fn ensure_database(admin_url: &str, db: &str) -> Result<()> {
    let mut conn = admin(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db)
            .fetch_one(&mut conn)
            .await?;
    conn.close().await.ok();
    if !exists {
        create_database(admin_url, db).await?;
    }
    Ok(())
}

/// Drops `db`, ending any sessions still connected to it.
pub async fn drop_database(admin_url: &str, db: &str) -> Result<()> {
    let mut conn = admin(admin_url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("DROP DATABASE {db}"))?;
    conn.close().await.ok();
    Ok(())
}

/// The database named in a `postgres://` URL.
pub fn database_name(url: &str) -> Result<String> {
    let base = url.split('?').next().unwrap_or(url);
    let rest = base
        .split_once("://")
        .map(|(_, r)| r)
        .context("not a postgres:// URL")?;
    let name = rest.split_once('/').map(|(_, n)| n).unwrap_or_default();
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{url} names no plain database"
    );
    Ok(name.to_string())
}

/// Drops a store database and the read database the service made next to it.
pub async fn drop_store(admin_url: &str, db: &str) -> Result<()> {
    drop_database(admin_url, &format!("{db}_read")).await?;
    drop_database(admin_url, db).await
}

/// The size of one event-like row in the pgbench reference.
pub const PAYLOAD_BYTES: usize = 337;

/// A JSON object of exactly [`PAYLOAD_BYTES`] bytes, shaped like a booking event.
pub fn payload() -> String {
    let head = concat!(
        r#"{"type":"DatesReserved","booking_id":"0193a4f2-5c1e-7b3a-9f4e-2a6b8d0e1f23","#,
        r#""guest_id":"0193a4f2-5c1e-7b3a-9f4e-3b7c9e1f2a34","check_in":"2026-12-01","#,
        r#""check_out":"2026-12-04","guests":2,"total_kzt":80000,"#,
        r#""hold_expires_at":"2026-11-27T10:15:00Z","note":""#
    );
    let tail = r#""}"#;
    let pad = PAYLOAD_BYTES - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(pad))
}

#[derive(Debug)]
pub struct Pgbench {
    pub tps: f64,
    pub clients: u32,
    pub threads: u32,
    pub seconds: u32,
}

/// `pgbench -n -c 16 -j 2 -T 10` of one `INSERT INTO t (payload)` of a 337-byte JSON row per
/// transaction, in a scratch database that is dropped afterwards.
pub async fn pgbench(admin_url: &str, work_dir: &Path) -> Result<Pgbench> {
    let db = scratch_name("zhilego_pgbench");
    create_database(admin_url, &db).await?;
    let result = run_pgbench(admin_url, &db, work_dir).await;
    let dropped = drop_database(admin_url, &db).await;
    let result = result?;
    dropped?;
    Ok(result)
}

async fn run_pgbench(admin_url: &str, db: &str, work_dir: &Path) -> Result<Pgbench> {
    let url = database_url(admin_url, db)?;
    let mut conn = PgConnection::connect(&url).await?;
    sqlx::raw_sql("CREATE TABLE t (id bigserial PRIMARY KEY, payload jsonb)")
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();

    let payload = payload();
    anyhow::ensure!(payload.len() == PAYLOAD_BYTES && !payload.contains('\''));
    let script = work_dir.join("pgbench-insert.sql");
    std::fs::write(
        &script,
        format!("INSERT INTO t (payload) VALUES ('{payload}');\n"),
    )?;
    let (clients, threads, seconds) = (16, 2, 10);
    let out = tokio::process::Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &seconds.to_string(), "-f"])
        .arg(&script)
        .arg(&url)
        .output()
        .await
        .context("running pgbench (is it installed?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let tps = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| format!("no `tps = N` in pgbench's output:\n{stdout}"))?;
    Ok(Pgbench {
        tps,
        clients,
        threads,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_new_database() {
        let u = database_url("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap();
        assert_eq!(u, "postgres://postgres@127.0.0.1:5432/x");
        let u = database_url("postgres://u:p@h/postgres?sslmode=disable", "x").unwrap();
        assert_eq!(u, "postgres://u:p@h/x?sslmode=disable");
        let u = database_url("postgresql://h:5432", "x").unwrap();
        assert_eq!(u, "postgresql://h:5432/x");
    }

    #[test]
    fn the_database_name_comes_from_the_path() {
        let n = database_name("postgres://postgres@127.0.0.1:5432/zb_1?sslmode=disable").unwrap();
        assert_eq!(n, "zb_1");
        assert!(database_name("postgres://h:5432").is_err());
    }

    #[test]
    fn the_payload_is_337_bytes_of_json() {
        let p = payload();
        assert_eq!(p.len(), PAYLOAD_BYTES);
        assert!(serde_json::from_str::<serde_json::Value>(&p).is_ok());
    }
}
