//! `GET /api/v1/reports/daily/{date}`: the stored daily report, or one computed now for a day
//! not yet stored (not kept: only the scheduler stores reports). A host gets their own
//! listings' figures, computed now.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::IdPath;
use crate::reports::{self, DailyReport};
use crate::routes::analytics::audience;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(daily_report))
}

/// The daily report of `date` (a local date): occupancy, revenue, funnel and channels, with
/// the instant and the analytics position it was computed at.
#[utoipa::path(get, path = "/api/v1/reports/daily/{date}", tag = "analytics",
    params(("date" = String, Path, format = Date)),
    responses((status = 200, body = DailyReport),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "`date` is not a date")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn daily_report(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(date): IdPath<String>,
) -> Result<Json<DailyReport>, ApiError> {
    let date: NaiveDate = date
        .parse()
        .ok()
        .filter(|d: &NaiveDate| (1..=9999).contains(&chrono::Datelike::year(d)))
        .ok_or_else(|| ApiError::validation("date", "must be a date YYYY-MM-DD"))?;
    let read = state.reads.query_db().clone();
    let host = audience(&state, &principal, None).await?;
    if host.is_none() {
        if let Some(report) = reports::stored(&state.db, date).await? {
            return Ok(Json(report));
        }
    }
    Ok(Json(reports::compute(&read, date, host, Utc::now()).await?))
}
