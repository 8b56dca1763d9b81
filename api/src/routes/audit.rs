//! `/api/v1/audit/*`: history, state as of any point, correlations, verification,
//! checkpoints and proofs, for auditors and admins (shared/API.md "Audit"; the work is the
//! `audit` crate's).
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{IdPath, ValidQuery};
use crate::state::AppState;
use audit::queries::{
    self, AggregateEvents, CheckpointView, ConsistencyProof, ConsistencyQuery, EventPage,
    EventsQuery, InclusionProof, KeyView, ProofQuery, QueryError, StateQuery,
};
use audit::views::{CorrelationView, StateView};
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::Role;
use store::VerifyReport;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(aggregate_history))
        .routes(routes!(aggregate_state))
        .routes(routes!(correlation))
        .routes(routes!(verify))
        .routes(routes!(latest_checkpoint))
        .routes(routes!(checkpoint_key))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
}

const AUDITORS: &[Role] = &[Role::Auditor, Role::Admin];

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid { field, message } => ApiError::validation(field, message),
            QueryError::NotFound(what) => ApiError::not_found(what),
            QueryError::View(audit::views::ViewError::UnknownAggregate(t)) => {
                ApiError::not_found(&format!("aggregate type {t:?}"))
            }
            other => ApiError::internal(other),
        }
    }
}

/// Events in commit order, filtered; `format=jsonl` streams them all as JSON lines.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", params(EventsQuery),
    responses(
        (status = 200, body = EventPage, description = "A page (or, with format=jsonl, application/x-ndjson: one event per line)"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn list_events(
    State(state): State<AppState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    principal.require(AUDITORS)?;
    let req = q.parse()?;
    if !req.stream {
        return Ok(Json(queries::events(&state.db, &req).await?).into_response());
    }
    let db = state.db.clone();
    let lines = futures::stream::unfold(Some(req), move |cursor| {
        let db = db.clone();
        async move {
            let mut req = cursor?;
            req.limit = 500;
            match queries::events(&db, &req).await {
                Ok(page) => {
                    let mut chunk = Vec::new();
                    for item in &page.items {
                        if serde_json::to_writer(&mut chunk, item).is_ok() {
                            chunk.push(b'\n');
                        }
                    }
                    let next = page.next_cursor.map(|after| {
                        req.after = after;
                        req
                    });
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "streaming audit events failed");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// Every event of one aggregate, by sequence.
#[utoipa::path(get, path = "/api/v1/audit/aggregates/{type}/{id}/events", tag = "audit",
    params(("type" = String, Path, description = "Listing, Booking, Payment or User"), ("id" = String, Path)),
    responses((status = 200, body = AggregateEvents),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn aggregate_history(
    State(state): State<AppState>,
    principal: Principal,
    IdPath((kind, id)): IdPath<(String, String)>,
) -> Result<Json<AggregateEvents>, ApiError> {
    principal.require(AUDITORS)?;
    Ok(Json(
        queries::aggregate_events(&state.db, &kind, &id).await?,
    ))
}

/// The aggregate's state as of an instant or a sequence, folded by the domain aggregate itself;
/// `diff=true` adds the state before and after that event and the paths it changed.
#[utoipa::path(get, path = "/api/v1/audit/aggregates/{type}/{id}/state", tag = "audit",
    params(("type" = String, Path), ("id" = String, Path), StateQuery),
    responses((status = 200, body = StateView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn aggregate_state(
    State(state): State<AppState>,
    principal: Principal,
    IdPath((kind, id)): IdPath<(String, String)>,
    ValidQuery(q): ValidQuery<StateQuery>,
) -> Result<Json<StateView>, ApiError> {
    principal.require(AUDITORS)?;
    Ok(Json(queries::state(&state.db, &kind, &id, &q).await?))
}

/// The tree of commands and events of one correlation, with the outside inputs that started
/// them.
#[utoipa::path(get, path = "/api/v1/audit/correlations/{id}", tag = "audit",
    params(("id" = String, Path)),
    responses((status = 200, body = CorrelationView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn correlation(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<String>,
) -> Result<Json<CorrelationView>, ApiError> {
    principal.require(AUDITORS)?;
    Ok(Json(queries::correlation(&state.db, &id).await?))
}

/// Walks every aggregate's hash chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = Object, description = "{ok, checked_events, broken: [...]}"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn verify(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<VerifyReport>, ApiError> {
    principal.require(AUDITORS)?;
    let report = store::history::verify(&state.db)
        .await
        .map_err(ApiError::internal)?;
    if !report.ok {
        metrics::counter!("zhilego_audit_verification_failures_total").increment(1);
    }
    Ok(Json(report))
}

/// The newest signed checkpoint (C2SP tlog-checkpoint).
#[utoipa::path(get, path = "/api/v1/audit/checkpoints/latest", tag = "audit",
    responses((status = 200, body = CheckpointView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn latest_checkpoint(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<CheckpointView>, ApiError> {
    principal.require(AUDITORS)?;
    Ok(Json(
        queries::latest_checkpoint(&state.db, &state.audit_key).await?,
    ))
}

/// The key checkpoints are signed with.
#[utoipa::path(get, path = "/api/v1/audit/checkpoints/key", tag = "audit",
    responses((status = 200, body = KeyView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn checkpoint_key(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<KeyView>, ApiError> {
    principal.require(AUDITORS)?;
    Ok(Json(queries::key(&state.audit_key)))
}

/// The RFC 9162 inclusion proof of the event at `position` in the tree of `tree_size` events
/// (default: the latest checkpoint's).
#[utoipa::path(get, path = "/api/v1/audit/events/{position}/proof", tag = "audit",
    params(("position" = i64, Path), ProofQuery),
    responses((status = 200, body = InclusionProof),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn inclusion_proof(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(position): IdPath<String>,
    ValidQuery(q): ValidQuery<ProofQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    principal.require(AUDITORS)?;
    let position: i64 = position.parse().map_err(|_| ApiError::not_found("event"))?;
    Ok(Json(queries::inclusion(&state.db, position, &q).await?))
}

/// The RFC 9162 consistency proof between the trees of `from` and `to` events.
#[utoipa::path(get, path = "/api/v1/audit/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn consistency_proof(
    State(state): State<AppState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    principal.require(AUDITORS)?;
    Ok(Json(queries::consistency(&state.db, &q).await?))
}
