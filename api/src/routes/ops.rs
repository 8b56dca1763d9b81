//! Liveness, readiness and metrics. The API listener answers `/healthz` and `/readyz`; every
//! long-running process (`serve`, `relay`, `project`) also has an ops listener
//! (`ZHILEGO_METRICS_ADDR`) with `/metrics`, `/healthz` and `/readyz`, the metrics optionally
//! behind a bearer token (`ZHILEGO_METRICS_TOKEN`), as they show revenue and traffic that are
//! nobody else's business.
use crate::error::ApiError;
use crate::reads::ReadModels;
use crate::settings::Secret;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use store::Database;
use utoipa::ToSchema;

/// What a process depends on, to say whether it is ready.
#[derive(Clone)]
pub struct Probe {
    pub production: bool,
    /// The event store.
    pub store: Database,
    /// The read database and its replicas, where the process uses them.
    pub reads: Option<Arc<ReadModels>>,
    /// The bus connection, when configured.
    pub nats: Option<async_nats::Client>,
}

impl Probe {
    pub fn of(state: &AppState) -> Probe {
        Probe {
            production: state.settings.is_production(),
            store: state.db.clone(),
            reads: Some(state.reads.clone()),
            nats: state.nats.clone(),
        }
    }

    /// Ready when the store, the read database (where used) and the bus (where configured)
    /// answer. A replica that is down does not make the process unready: it is marked down
    /// and queries go to the other replicas or the read database itself (`ReadModels`).
    pub async fn check(&self) -> (bool, serde_json::Value) {
        let store = self.store.ping().await.is_ok();
        let read_db = match &self.reads {
            Some(r) => Some(r.primary.ping().await.is_ok()),
            None => None,
        };
        let bus = self
            .nats
            .as_ref()
            .map(|c| c.connection_state() == async_nats::connection::State::Connected);
        let ready = store && read_db != Some(false) && bus != Some(false);
        let word = |v: Option<bool>| match v {
            None => "not_configured",
            Some(true) => "ok",
            Some(false) => "unreachable",
        };
        let replicas: Vec<_> = self
            .reads
            .as_ref()
            .map(|r| r.replica_health())
            .unwrap_or_default()
            .into_iter()
            .map(|up| if up { "ok" } else { "down" })
            .collect();
        let body = json!({
            "status": if ready { "ready" } else { "not_ready" },
            "mode": if self.production { "production" } else { "embedded" },
            "checks": {
                "store": word(Some(store)),
                "read_db": word(read_db),
                "read_replicas": replicas,
                "bus": word(bus),
            }
        });
        (ready, body)
    }
}

/// The ops listener's state.
#[derive(Clone)]
pub struct Ops {
    pub metrics: PrometheusHandle,
    pub token: Option<Secret>,
    pub probe: Probe,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The ops listener's routes: `/metrics`, `/healthz`, `/readyz`.
pub fn ops_routes(ops: Ops) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(|State(ops): State<Ops>| async move { readiness(&ops.probe).await }),
        )
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(ops)
}

/// `{"status": "ok"}`: the process is up.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: String,
}

/// The readiness report.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// `production` or `embedded`.
    pub mode: String,
    pub checks: ReadinessChecks,
}

/// Each dependency: `ok`, `unreachable` or `not_configured` (replicas: `ok` or `down`).
#[derive(Serialize, ToSchema)]
pub struct ReadinessChecks {
    pub store: String,
    pub read_db: String,
    pub read_replicas: Vec<String>,
    pub bus: String,
}

/// The process is up (on the API listener and the ops listener).
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, body = Health, description = "Always, while the process runs")))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The event store, the read database and the bus (where configured) answer (on the API
/// listener and the ops listener). A read replica that is down does not make it unready.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Readiness, description = "Ready"),
        (status = 503, body = Readiness, description = "Not ready: the checks say what is unreachable")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    readiness(&Probe::of(&state)).await
}

async fn readiness(probe: &Probe) -> Response {
    let (ready, body) = probe.check().await;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Prometheus text exposition, on the ops listener only (`ZHILEGO_METRICS_ADDR`), behind
/// `ZHILEGO_METRICS_TOKEN` when that is set.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, body = crate::error::Problem, description = "`unauthorized`: the metrics token is set and was not sent")),
    security((), ("metrics_token" = [])))]
pub async fn metrics(State(ops): State<Ops>, headers: HeaderMap) -> Response {
    if let Some(token) = &ops.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| crate::tokens::same_secret(g, token.expose())) {
            let mut res = ApiError::unauthorized("unauthorized", "the metrics token is required")
                .into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return res;
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
        .into_response()
}
