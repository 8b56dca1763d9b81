//! The platform's health for admins in one answer: the store, the read database and the bus
//! (as `/readyz` checks them), each projection's position and lag (or the event it stopped
//! before), and the relay's lag when events go to NATS. The dashboard reads it; the notary's
//! health it reads from the audit endpoints themselves.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use domain::Role;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_status))
}

#[derive(Serialize, ToSchema)]
pub struct ProjectionHealth {
    pub name: String,
    pub version: i64,
    pub position: i64,
    pub behind_events: i64,
    pub lag_seconds: f64,
    /// The event the projection stopped before (it does not decode), if it did.
    #[schema(value_type = Option<Object>)]
    pub stopped_at: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct RelayHealth {
    pub behind_events: i64,
    pub lag_seconds: f64,
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    /// `embedded` or `production`.
    pub mode: String,
    /// `ok` or `unreachable`.
    pub store: String,
    pub read_db: String,
    /// `ok`, `unreachable` or `not_configured` (the in-process bus).
    pub bus: String,
    pub projections: Vec<ProjectionHealth>,
    /// With NATS only: how far the relay to JetStream trails the store.
    pub relay: Option<RelayHealth>,
    /// Events in the store.
    pub store_events: i64,
}

fn reachable(ok: bool) -> String {
    if ok { "ok" } else { "unreachable" }.to_string()
}

/// Health of the store, the read side, the bus, the projections and the relay (admin).
#[utoipa::path(get, path = "/api/v1/admin/status", tag = "admin",
    responses((status = 200, body = StatusView), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn get_status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<StatusView>, ApiError> {
    principal.require(&[Role::Admin])?;
    let store = state.db.ping().await.is_ok();
    let read_db = state.reads.query_db().ping().await.is_ok();
    let bus = match &state.nats {
        None => "not_configured".to_string(),
        Some(c) => reachable(c.connection_state() == async_nats::connection::State::Connected),
    };
    let projections = state
        .reads
        .statuses()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|s| ProjectionHealth {
            name: s.name.to_string(),
            version: s.version,
            position: s.position,
            behind_events: s.behind_events,
            lag_seconds: s.lag_seconds,
            stopped_at: s.stopped_at,
        })
        .collect();
    let relay = match &state.nats {
        Some(_) => {
            let name = crate::app::relay_config(&state.settings).name;
            bus::relay::lag(&state.db, &name)
                .await
                .ok()
                .map(|(behind_events, lag_seconds)| RelayHealth {
                    behind_events,
                    lag_seconds,
                })
        }
        None => None,
    };
    let store_events = store::history::event_count(&state.db).await.unwrap_or(0);
    Ok(Json(StatusView {
        mode: if state.settings.is_production() {
            "production"
        } else {
            "embedded"
        }
        .to_string(),
        store: reachable(store),
        read_db: reachable(read_db),
        bus,
        projections,
        relay,
        store_events,
    }))
}
