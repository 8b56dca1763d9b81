//! `Idempotency-Key` on creating POSTs.
//!
//! The first request with a key claims it (a row with no response yet), runs, and records its
//! status and body. A repeat with the same key and the same method, path and body gets that
//! response again (header `Idempotent-Replayed: true`); with anything else, 422. A repeat that
//! arrives while the first is still running waits for it. Server-side failures (5xx) release
//! the key so the client can retry. Keys are per caller.
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::time::Duration;
use store::with_pool;

pub const HEADER: &str = "idempotency-key";

/// How long a repeat waits for the first request with its key to finish.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(15);

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
    match claim(state, &owner, &key, &fingerprint).await {
        Err(e) => return e.into_response(),
        Ok(false) => return replay(state, &owner, &key, &fingerprint).await,
        Ok(true) => {}
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

async fn replay(state: &AppState, owner: &str, key: &str, fingerprint: &str) -> Response {
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
        match row {
            Err(e) => return ApiError::from(store::StoreError::from(e)).into_response(),
            // The first request failed on our side and let go of the key: try again.
            Ok(None) => {
                return ApiError::unavailable(
                    "idempotency_retry",
                    "the first request with this key failed; send it again",
                    1,
                )
                .into_response()
            }
            Ok(Some((hash, _, _))) if hash != fingerprint => {
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "Idempotency key reused",
                    "this Idempotency-Key was used with a different request",
                )
                .into_response()
            }
            Ok(Some((_, Some(status), Some(body)))) => {
                let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
                return json_response(status, body.into_bytes(), true);
            }
            Ok(Some(_)) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return ApiError::conflict(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still running",
            )
            .into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
