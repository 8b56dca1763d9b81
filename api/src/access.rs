//! What admins decided about accounts, as the request path needs it: blocked accounts, roles
//! an admin gave (they override the token's), and the API keys of service clients (by the
//! SHA-256 of the key, with role and listing scope).
//!
//! Kept in memory ([`Access`]) from the users projection (`user_directory`, only the rows
//! that differ from what a token says), so checking a request costs a hash-map lookup. It is
//! reloaded when the projection's checkpoint moved, checked every [`REFRESH`]; an admin's
//! write through this process waits for the projection and reloads at once. A block made
//! through another process therefore takes effect here within the projection's lag plus
//! [`REFRESH`] (well under a second); a stalled users projection delays it (its lag is on
//! `/metrics` and in `zhilego projections status`).
use crate::error::ApiError;
use commands::Commands;
use dashmap::DashMap;
use domain::{Actor, Role};
use projections::{UserRow, UsersProjection};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use store::history::Checkpoint;
use store::Database;
use uuid::Uuid;

/// How often the checkpoint of the users projection is looked at.
pub const REFRESH: Duration = Duration::from_millis(200);
/// An API key's last use is written at most this often (per key and process).
const LAST_USE_EVERY_SECONDS: i64 = 60;

/// An API key as requests use it.
#[derive(Clone, Debug)]
pub struct KeyAccess {
    pub key_id: Uuid,
    pub role: Role,
    /// The listings the key may act on; `None`: no scope.
    pub scope: Option<Arc<[Uuid]>>,
    pub revoked: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct AccountAccess {
    role: Option<Role>,
    blocked: bool,
}

#[derive(Default)]
struct Snapshot {
    accounts: HashMap<Uuid, AccountAccess>,
    keys: HashMap<String, KeyAccess>,
    /// The projection's checkpoint this was loaded at.
    loaded_at: Option<Checkpoint>,
}

pub struct Access {
    read: Database,
    commands: Arc<Commands>,
    snapshot: RwLock<Snapshot>,
    /// Key id → the unix minute its use was last written.
    last_use: DashMap<Uuid, i64>,
}

/// Why a request's credentials are refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Blocked,
    UnknownKey,
    RevokedKey,
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Blocked => ApiError::user_blocked(),
            Refusal::UnknownKey => {
                ApiError::unauthorized("invalid_api_key", "the API key is not valid")
            }
            Refusal::RevokedKey => {
                ApiError::unauthorized("api_key_revoked", "the API key was revoked")
            }
        }
    }
}

impl Access {
    pub fn new(read: Database, commands: Arc<Commands>) -> Access {
        Access {
            read,
            commands,
            snapshot: RwLock::new(Snapshot::default()),
            last_use: DashMap::new(),
        }
    }

    /// Reloads the accounts when the users projection moved since the last load.
    pub async fn refresh(&self) -> Result<(), store::StoreError> {
        let row = projections::projector::checkpoint_row(
            &self.read,
            <UsersProjection as projections::Projection>::NAME,
        )
        .await?;
        let loaded = self.snapshot.read().expect("not poisoned").loaded_at;
        if loaded == Some(row.checkpoint) {
            return Ok(());
        }
        let rows = UsersProjection::restricted(&self.read).await?;
        let fresh = snapshot_of(rows, row.checkpoint);
        *self.snapshot.write().expect("not poisoned") = fresh;
        Ok(())
    }

    /// Refreshes every [`REFRESH`] until `stop`.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "reloading blocked accounts and API keys failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    }

    /// The caller a token names, as admins decided: refused when blocked, in the role an
    /// admin gave when there is one.
    pub fn admit(&self, actor: Actor) -> Result<Actor, Refusal> {
        let snapshot = self.snapshot.read().expect("not poisoned");
        match snapshot.accounts.get(&actor.user_id) {
            Some(a) if a.blocked => Err(Refusal::Blocked),
            Some(a) => Ok(Actor {
                role: a.role.unwrap_or(actor.role),
                ..actor
            }),
            None => Ok(actor),
        }
    }

    /// Whether the account is blocked (the bots ask before each step).
    pub fn is_blocked(&self, user_id: Uuid) -> bool {
        let snapshot = self.snapshot.read().expect("not poisoned");
        snapshot.accounts.get(&user_id).is_some_and(|a| a.blocked)
    }

    /// The API key `key`, if it is one of ours, unrevoked and its account not blocked.
    pub fn key(&self, key: &str) -> Result<KeyAccess, Refusal> {
        let hash = commands::api_key_hash(key);
        let found = {
            let snapshot = self.snapshot.read().expect("not poisoned");
            snapshot.keys.get(&hash).cloned()
        };
        let k = found.ok_or(Refusal::UnknownKey)?;
        if k.revoked {
            return Err(Refusal::RevokedKey);
        }
        self.admit(Actor {
            user_id: k.key_id,
            role: k.role,
        })?;
        Ok(k)
    }

    /// The key's actor, after [`Access::key`]; records the use at most once a minute.
    pub fn used(&self, k: &KeyAccess) -> Actor {
        let now = chrono::Utc::now();
        let minute = now.timestamp() / LAST_USE_EVERY_SECONDS;
        let due = self
            .last_use
            .insert(k.key_id, minute)
            .is_none_or(|m| m != minute);
        if due {
            let commands = self.commands.clone();
            let key_id = k.key_id;
            tokio::spawn(async move {
                if let Err(e) = commands.record_api_key_use(key_id, now).await {
                    tracing::warn!(%key_id, error = %e, "recording an API key's use failed");
                }
            });
        }
        let actor = Actor {
            user_id: k.key_id,
            role: k.role,
        };
        self.admit(actor).unwrap_or(actor)
    }
}

fn snapshot_of(rows: Vec<UserRow>, at: Checkpoint) -> Snapshot {
    let mut s = Snapshot {
        loaded_at: Some(at),
        ..Snapshot::default()
    };
    for row in rows {
        let role = row.role.as_deref().and_then(Role::parse);
        if let (Some(hash), Some(role)) = (&row.key_hash, role) {
            s.keys.insert(
                hash.clone(),
                KeyAccess {
                    key_id: row.user_id,
                    role,
                    scope: row.scope().map(Arc::from),
                    revoked: row.revoked != 0,
                },
            );
        }
        s.accounts.insert(
            row.user_id,
            AccountAccess {
                role,
                blocked: row.is_blocked(),
            },
        );
    }
    s
}

/// The API key a request carries: `X-Api-Key`, or a bearer token with the keys' prefix.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| t.starts_with(commands::API_KEY_PREFIX))
}

/// Refuses a listing-scoped API key outside its listings: it may call only routes that name
/// a listing of its scope, in the path (`/api/v1/listings/{id}/…`) or as `listing_id=`.
pub async fn enforce_scope(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let scope = presented_key(req.headers())
        .and_then(|k| state.access.key(k).ok())
        .and_then(|k| k.scope);
    if let Some(scope) = scope {
        if !in_scope(&scope, req.uri()) {
            return ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "out_of_scope",
                "Forbidden",
                "this API key may act only on its listings",
            )
            .into_response();
        }
    }
    next.run(req).await
}

fn in_scope(scope: &[Uuid], uri: &axum::http::Uri) -> bool {
    let in_path = uri
        .path()
        .strip_prefix("/api/v1/listings/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| Uuid::parse_str(id).ok());
    let in_query = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "listing_id")
            .and_then(|(_, v)| Uuid::parse_str(&v).ok())
    });
    match (in_path, in_query) {
        (Some(p), Some(q)) => scope.contains(&p) && scope.contains(&q),
        (Some(id), None) | (None, Some(id)) => scope.contains(&id),
        (None, None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_key_reaches_only_its_listings() {
        let mine = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let ok = |u: &str| in_scope(&[mine], &u.parse().unwrap());
        assert!(ok(&format!("/api/v1/listings/{mine}")));
        assert!(ok(&format!(
            "/api/v1/listings/{mine}/calendar?from=2030-01-01"
        )));
        assert!(ok(&format!(
            "/api/v1/analytics/occupancy?listing_id={mine}"
        )));
        assert!(!ok(&format!("/api/v1/listings/{other}")));
        assert!(!ok(&format!(
            "/api/v1/analytics/occupancy?listing_id={other}"
        )));
        assert!(!ok(&format!("/api/v1/listings/{mine}?listing_id={other}")));
        assert!(!ok("/api/v1/listings"));
        assert!(!ok("/api/v1/bookings"));
        assert!(!ok("/api/v1/users"));
    }
}
