//! `Idempotency-Key` on creating POSTs.
//!
//! The first request with a key claims it (a row with no response yet), runs, and records its
//! status and body. A repeat with the same key and the same method, path and body gets that
//! response again (header `Idempotent-Replayed: true`); with anything else, 422. A repeat that
//! arrives while the first is still running waits for it. Server-side failures (5xx) release
//! the key so the client can retry. Keys are per caller. A claim left without an answer for
//! longer than `ABANDONED_AFTER` (its request died with the process) is taken over by the
//! next request with that key. Answers are kept [`KEEP_ANSWERS`] (24 hours); [`keep_forgetting`]
//! deletes older keys, which are then new again.
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::time::Duration;
use store::{with_pool, Database};

pub const HEADER: &str = "idempotency-key";

/// How long a repeat waits for the first request with its key to finish.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(15);

/// A claim this old without an answer belongs to a request that will never answer.
const ABANDONED_AFTER_SECONDS: i64 = 60;

/// How long a key's answer is replayed: at least this long, and deleted within
/// [`FORGET_EVERY`] after (a client retries within minutes; a key older than this is new again).
pub const KEEP_ANSWERS: Duration = Duration::from_secs(24 * 60 * 60);

/// How often the keys older than [`KEEP_ANSWERS`] are deleted.
pub const FORGET_EVERY: Duration = Duration::from_secs(10 * 60);

/// Keys deleted per statement, so that each deletion holds its locks briefly.
const FORGET_BATCH: i64 = 5_000;

/// The condition "`created_at` is more than `$n` seconds ago" on `db`'s own clock (bind the
/// seconds as an integer); SQLite's `created_at` is text in its column default's format, which
/// sorts as time does.
fn claimed_before(db: &Database, n: u8) -> String {
    match db {
        Database::Postgres(_) => format!("created_at < now() - make_interval(secs => ${n})"),
        Database::Sqlite(_) => {
            format!("created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ${n} || ' seconds')")
        }
    }
}

/// Deletes the keys claimed more than `keep` ago, answered or not; returns how many.
pub async fn forget_older_than(db: &Database, keep: Duration) -> Result<u64, sqlx::Error> {
    let keep = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
    let old = claimed_before(db, 1);
    let mut deleted = 0;
    loop {
        let n = match db {
            Database::Postgres(pool) => sqlx::query(&format!(
                "DELETE FROM idempotency_keys WHERE (principal, key) IN \
                 (SELECT principal, key FROM idempotency_keys WHERE {old} LIMIT $2)"
            ))
            .bind(keep)
            .bind(FORGET_BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Sqlite(pool) => {
                let _gate = store::sqlite_write_turn("idempotency").await;
                sqlx::query(&format!(
                    "DELETE FROM idempotency_keys WHERE rowid IN \
                     (SELECT rowid FROM idempotency_keys WHERE {old} LIMIT $2)"
                ))
                .bind(keep)
                .bind(FORGET_BATCH)
                .execute(pool)
                .await?
                .rows_affected()
            }
        };
        deleted += n;
        if n < FORGET_BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// Deletes keys older than [`KEEP_ANSWERS`] every `every` until `stop` (every instance may
/// run it: the deletions do not conflict).
pub async fn keep_forgetting(db: Database, every: Duration, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        match forget_older_than(&db, KEEP_ANSWERS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "Idempotency-Key answers older than a day deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "deleting old Idempotency-Key answers failed"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// What a repeat found.
enum Repeat {
    Answer(Response),
    /// The first request died; the key is free again.
    Abandoned,
}

fn json_response(status: StatusCode, body: Vec<u8>, replayed: bool) -> Response {
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

/// Runs `handler` at most once per (caller, key) and answers repeats from the record.
pub async fn run<F, Fut>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    handler: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let Some(key) = headers.get(HEADER) else {
        return match handler().await {
            Ok((status, value)) => json_response(
                status,
                serde_json::to_vec(&value).unwrap_or_default(),
                false,
            ),
            Err(e) => e.into_response(),
        };
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_string(),
        _ => {
            return ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response()
        }
    };
    let owner = principal.user_id().to_string();
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(route.as_bytes());
        h.update([0]);
        h.update(body);
        hex::encode(h.finalize())
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        match claim(state, &owner, &key, &fingerprint).await {
            Err(e) => return e.into_response(),
            Ok(true) => break,
            Ok(false) => match replay(state, &owner, &key, &fingerprint).await {
                Repeat::Answer(response) => return response,
                Repeat::Abandoned if attempts < 3 => continue,
                Repeat::Abandoned => {
                    return ApiError::unavailable(
                        "idempotency_retry",
                        "this Idempotency-Key is contended; send it again",
                        1,
                    )
                    .into_response()
                }
            },
        }
    }
    let (status, bytes) = match handler().await {
        Ok((status, value)) => (status, serde_json::to_vec(&value).unwrap_or_default()),
        Err(e) => (
            e.status,
            serde_json::to_vec(&e.problem()).unwrap_or_default(),
        ),
    };
    let outcome = if status.is_server_error() {
        release(state, &owner, &key).await
    } else {
        record(state, &owner, &key, status, &bytes).await
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "could not record the idempotent response");
    }
    json_response(status, bytes, false)
}

async fn claim(
    state: &AppState,
    owner: &str,
    key: &str,
    fingerprint: &str,
) -> Result<bool, ApiError> {
    let inserted = with_pool!(&state.db, pool => {
        sqlx::query(
            "INSERT INTO idempotency_keys (principal, key, request_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (principal, key) DO NOTHING",
        )
        .bind(owner)
        .bind(key)
        .bind(fingerprint)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })
    .map_err(|e| ApiError::from(store::StoreError::from(e)))?;
    Ok(inserted == 1)
}

async fn record(
    state: &AppState,
    owner: &str,
    key: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    let body = String::from_utf8_lossy(body).into_owned();
    with_pool!(&state.db, pool => {
        sqlx::query("UPDATE idempotency_keys SET status_code = $3, response_body = $4 WHERE principal = $1 AND key = $2")
            .bind(owner)
            .bind(key)
            .bind(i32::from(status.as_u16()))
            .bind(body)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

async fn release(state: &AppState, owner: &str, key: &str) -> Result<(), sqlx::Error> {
    with_pool!(&state.db, pool => {
        sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND status_code IS NULL")
            .bind(owner)
            .bind(key)
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// (request fingerprint, status code, response body) of a claimed key.
type KeyRecord = (String, Option<i32>, Option<String>);

/// Deletes the claim if it was abandoned; returns whether it did.
async fn take_over_if_abandoned(
    state: &AppState,
    owner: &str,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND status_code IS NULL \
         AND {}",
        claimed_before(&state.db, 3)
    );
    let deleted = with_pool!(&state.db, pool => {
        sqlx::query(&sql)
            .bind(owner)
            .bind(key)
            .bind(ABANDONED_AFTER_SECONDS)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(deleted == 1)
}

async fn replay(state: &AppState, owner: &str, key: &str, fingerprint: &str) -> Repeat {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_FIRST;
    loop {
        let row: Result<Option<KeyRecord>, sqlx::Error> = with_pool!(&state.db, pool => {
            sqlx::query_as(
                "SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE principal = $1 AND key = $2",
            )
            .bind(owner)
            .bind(key)
            .fetch_optional(pool)
            .await
        });
        let answer = match row {
            Err(e) => ApiError::from(store::StoreError::from(e)).into_response(),
            // The first request failed on our side and let go of the key: claim it again.
            Ok(None) => return Repeat::Abandoned,
            Ok(Some((_, None, _)))
                if take_over_if_abandoned(state, owner, key)
                    .await
                    .unwrap_or(false) =>
            {
                return Repeat::Abandoned
            }
            Ok(Some((hash, _, _))) if hash != fingerprint => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request",
            )
            .into_response(),
            Ok(Some((_, Some(status), Some(body)))) => {
                let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
                json_response(status, body.into_bytes(), true)
            }
            Ok(Some(_)) => {
                if tokio::time::Instant::now() >= deadline {
                    ApiError::conflict(
                        "idempotency_in_progress",
                        "a request with this Idempotency-Key is still running",
                    )
                    .into_response()
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        };
        return Repeat::Answer(answer);
    }
}
