//! Analytics: occupancy, revenue, the funnel, channels, stays, pickup and the facts behind a
//! figure, as known at any instant (`as_of`); analysts and admins see everything, a host their
//! own listings. JSON or CSV (`routes::analytics_answer`).
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::ValidQuery;
use crate::routes::analytics_answer::{wants_csv, Answer};
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use domain::Role;
use projections::analytics::compute::{
    self, ChannelItem, FactItem, FunnelItem, OccupancyItem, PickupItem, RevenueItem, StaysItem,
};
use projections::analytics::figures::Need;
use projections::analytics::totals::Totals;
use projections::analytics::{AsOf, Facts, GroupBy, Scope};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use store::Database;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The longest range of dates one question may cover.
pub const MAX_DAYS: i64 = 1_100;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(occupancy))
        .routes(routes!(revenue))
        .routes(routes!(funnel))
        .routes(routes!(channels))
        .routes(routes!(stays))
        .routes(routes!(pickup))
        .routes(routes!(facts))
}

/// The parameters every analytics question shares.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// First date (inclusive).
    #[serde(
        default,
        deserialize_with = "crate::extract::date::four_digit_year_opt"
    )]
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// Last date (exclusive).
    #[serde(
        default,
        deserialize_with = "crate::extract::date::four_digit_year_opt"
    )]
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
    pub city: Option<String>,
    pub listing_id: Option<Uuid>,
    /// `day` (default), `week`, `month`, `listing`, `city` or `channel`.
    pub group_by: Option<String>,
    /// The figures as they were known at this instant (RFC 3339).
    pub as_of: Option<DateTime<Utc>>,
    /// Wait (bounded) until the analytics read model has this position.
    pub min_position: Option<i64>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// Pickup: the instant to compare with (RFC 3339).
    pub compare_to: Option<DateTime<Utc>>,
    /// Facts: `nights_sold` or `room_revenue_kzt`.
    pub metric: Option<String>,
    /// Facts: one date (instead of `from`/`to`).
    #[serde(
        default,
        deserialize_with = "crate::extract::date::four_digit_year_opt"
    )]
    #[param(value_type = Option<String>, format = Date)]
    pub date: Option<NaiveDate>,
}

macro_rules! answer_schema {
    ($($name:ident => $item:ty),+ $(,)?) => {
        $(
            #[derive(Serialize, ToSchema)]
            pub struct $name {
                pub items: Vec<$item>,
                /// Each figure's definition (docs/analytics.md).
                pub definitions: BTreeMap<String, String>,
                /// The instant the figures are as known at.
                pub as_of: DateTime<Utc>,
                /// The analytics read model's position they include.
                pub position: i64,
            }
        )+
    };
}

answer_schema! {
    OccupancyAnswer => OccupancyItem,
    RevenueAnswer => RevenueItem,
    FunnelAnswer => FunnelItem,
    ChannelsAnswer => ChannelItem,
    StaysAnswer => StaysItem,
    PickupAnswer => PickupItem,
    FactsAnswer => FactItem,
}

/// The problems every analytics question may answer, as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
pub enum AnalyticsProblems {
    /// No token, or not a valid one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// A guest or auditor, or a host naming another host's listing.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// A bad or missing parameter (`validation_failed`, the field named).
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// `read_model_behind`: `min_position` not reached in time.
    #[response(status = 503, content_type = "application/problem+json")]
    Behind(Problem),
}

/// Whose figures the caller may read: `None` all (analyst, admin), `Some(host)` a host's own.
/// A host naming another's listing (or one that does not exist) is 403; the listing's host is
/// read from the event store, so a listing just created is the host's at once.
pub async fn audience(
    state: &AppState,
    principal: &Principal,
    listing: Option<Uuid>,
) -> Result<Option<Uuid>, ApiError> {
    match principal.role() {
        Role::Analyst | Role::Admin => Ok(None),
        Role::Host => {
            if let Some(listing) = listing {
                let host = state.commands.listing(listing).await?.map(|l| l.host_id);
                if host != Some(principal.user_id()) {
                    return Err(ApiError::forbidden("the listing is not yours"));
                }
            }
            Ok(Some(principal.user_id()))
        }
        _ => Err(ApiError::forbidden(
            "analytics are for analysts, admins and hosts (their own listings)",
        )),
    }
}

/// A question read from the query: the database to ask (at `min_position`), its scope, the
/// grouping and whether CSV is wanted.
pub struct Question {
    pub db: Database,
    pub scope: Scope,
    pub group: GroupBy,
    pub csv: bool,
    pub as_of: DateTime<Utc>,
}

fn dates(q: &AnalyticsQuery) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let (from, to) = match (q.from, q.to, q.date) {
        (Some(from), Some(to), _) => (from, to),
        (None, None, Some(d)) => (d, d.succ_opt().unwrap_or(d)),
        (None, _, None) => return Err(ApiError::validation("from", "is required")),
        (_, None, None) => return Err(ApiError::validation("to", "is required")),
        (_, _, Some(_)) => {
            return Err(ApiError::validation(
                "date",
                "give either date or from and to",
            ))
        }
    };
    if to <= from {
        return Err(ApiError::validation("to", "must be after from"));
    }
    if (to - from).num_days() > MAX_DAYS {
        return Err(ApiError::validation(
            "to",
            format!("a question covers at most {MAX_DAYS} days"),
        ));
    }
    Ok((from, to))
}

impl Question {
    pub async fn read(
        state: &AppState,
        principal: &Principal,
        q: &AnalyticsQuery,
        headers: &HeaderMap,
    ) -> Result<Question, ApiError> {
        let csv = wants_csv(q.format.as_deref(), headers)?;
        let group = match q.group_by.as_deref() {
            None => GroupBy::Day,
            Some(g) => GroupBy::parse(g).ok_or_else(|| {
                ApiError::validation(
                    "group_by",
                    "must be day, week, month, listing, city or channel",
                )
            })?,
        };
        let (from, to) = dates(q)?;
        if let Some(city) = &q.city {
            if city.trim().is_empty() || city.len() > 100 {
                return Err(ApiError::validation("city", "must be 1 to 100 characters"));
            }
        }
        let db = state
            .reads
            .consistent(
                &state.reads.analytics,
                q.min_position,
                state.settings.read_wait,
            )
            .await?
            .clone();
        let host = audience(state, principal, q.listing_id).await?;
        let as_of = q.as_of.unwrap_or_else(Utc::now);
        Ok(Question {
            scope: Scope {
                from,
                to,
                city: q.city.clone(),
                listing_id: q.listing_id,
                host_id: host,
                as_of: AsOf::of(q.as_of),
            },
            db,
            group,
            csv,
            as_of,
        })
    }

    async fn totals(&self, money: bool) -> Result<Totals, ApiError> {
        Ok(Totals::load(&self.db, &self.scope, self.group, money).await?)
    }

    async fn facts(&self, need: Need) -> Result<Facts, ApiError> {
        Ok(Facts::load(&self.db, &self.scope, need).await?)
    }

    fn answer<T>(&self, items: Vec<T>, facts: &Facts) -> Answer<T> {
        Answer {
            items,
            as_of: self.as_of,
            position: facts.position,
        }
    }
}

/// Nights available, blocked and sold, and occupancy.
#[utoipa::path(get, path = "/api/v1/analytics/occupancy", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, content((OccupancyAnswer = "application/json"), (String = "text/csv"))),
        AnalyticsProblems),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn occupancy(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ValidQuery(q): ValidQuery<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let question = Question::read(&state, &principal, &q, &headers).await?;
    let totals = question.totals(false).await?;
    let items = compute::occupancy(&totals, &question.scope, question.group);
    question.answer(items, &totals.supply).respond(question.csv)
}

/// Room revenue, cleaning fees, refunds, net, ADR, RevPAR and TRevPAR.
#[utoipa::path(get, path = "/api/v1/analytics/revenue", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, content((RevenueAnswer = "application/json"), (String = "text/csv"))),
        AnalyticsProblems),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn revenue(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ValidQuery(q): ValidQuery<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let question = Question::read(&state, &principal, &q, &headers).await?;
    let totals = question.totals(true).await?;
    let items = compute::revenue(&totals, &question.scope, question.group);
    question.answer(items, &totals.supply).respond(question.csv)
}

const BOOKINGS: Need = Need {
    listings: false,
    nights: false,
    bookings: true,
    refunds: false,
};

/// The funnel by hold date (held → paid → checked in → completed, expired, cancelled) and the
/// cancellation and hold expiry rates by event date.
#[utoipa::path(get, path = "/api/v1/analytics/funnel", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, content((FunnelAnswer = "application/json"), (String = "text/csv"))),
        AnalyticsProblems),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn funnel(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ValidQuery(q): ValidQuery<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let question = Question::read(&state, &principal, &q, &headers).await?;
    let facts = question.facts(BOOKINGS).await?;
    let items = compute::funnel(&facts, &question.scope, question.group);
    question.answer(items, &facts).respond(question.csv)
}

/// Channel mix: nights sold, room revenue and bookings per channel (keys are channels).
#[utoipa::path(get, path = "/api/v1/analytics/channels", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, content((ChannelsAnswer = "application/json"), (String = "text/csv"))),
        AnalyticsProblems),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn channels(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ValidQuery(q): ValidQuery<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    if q.group_by.as_deref().is_some_and(|g| g != "channel") {
        return Err(ApiError::validation(
            "group_by",
            "channels are grouped by channel",
        ));
    }
    let question = Question::read(&state, &principal, &q, &headers).await?;
    let facts = question
        .facts(Need {
            nights: true,
            ..Need::default()
        })
        .await?;
    let items = compute::channels(&facts);
    question.answer(items, &facts).respond(question.csv)
}

/// Stays by check-in date: ALOS and the booking window (average and buckets).
#[utoipa::path(get, path = "/api/v1/analytics/stays", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, content((StaysAnswer = "application/json"), (String = "text/csv"))),
        AnalyticsProblems),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn stays(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ValidQuery(q): ValidQuery<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let question = Question::read(&state, &principal, &q, &headers).await?;
    let facts = question.facts(BOOKINGS).await?;
    let items = compute::stays(&facts, &question.scope, question.group);
    question.answer(items, &facts).respond(question.csv)
}

const NIGHTS: Need = Need {
    listings: false,
    nights: true,
    bookings: false,
    refunds: false,
};

/// Pickup: nights on the books for the dates as known at `as_of` (default now) against
/// `compare_to`; pace: the same dates 12 months earlier, as known 12 months before `as_of`.
#[utoipa::path(get, path = "/api/v1/analytics/pickup", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, content((PickupAnswer = "application/json"), (String = "text/csv"))),
        AnalyticsProblems),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn pickup(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ValidQuery(q): ValidQuery<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let compare_to = q
        .compare_to
        .ok_or_else(|| ApiError::validation("compare_to", "is required"))?;
    let question = Question::read(&state, &principal, &q, &headers).await?;
    let (scope, group) = (&question.scope, question.group);
    let at = question.facts(NIGHTS).await?;
    let compare_scope = Scope {
        as_of: AsOf::at(compare_to),
        ..scope.clone()
    };
    let compare = Facts::load(&question.db, &compare_scope, NIGHTS).await?;
    let last_year = match (
        compute::year_before(scope.from),
        compute::year_before(scope.to),
        question.as_of.checked_sub_months(chrono::Months::new(12)),
    ) {
        (Some(from), Some(to), Some(as_of)) => {
            let ly = Scope {
                from,
                to,
                as_of: AsOf::at(as_of),
                ..scope.clone()
            };
            Facts::load(&question.db, &ly, NIGHTS).await?
        }
        _ => Facts::default(),
    };
    let items = compute::pickup(
        &compute::nights_sold(&at, scope, group),
        &compute::nights_sold(&compare, scope, group),
        &compute::nights_sold_year_before(&last_year, scope, group),
    );
    question.answer(items, &at).respond(question.csv)
}

/// The bookings behind a figure: each sold night with its amount and the positions of the
/// events that made it (`metric=nights_sold|room_revenue_kzt`, `date` or `from`/`to`).
#[utoipa::path(get, path = "/api/v1/analytics/facts", tag = "analytics", params(AnalyticsQuery),
    responses((status = 200, content((FactsAnswer = "application/json"), (String = "text/csv"))),
        AnalyticsProblems),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn facts(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ValidQuery(q): ValidQuery<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    match q.metric.as_deref() {
        Some("nights_sold" | "room_revenue_kzt") => {}
        Some(_) => {
            return Err(ApiError::validation(
                "metric",
                "must be nights_sold or room_revenue_kzt",
            ))
        }
        None => return Err(ApiError::validation("metric", "is required")),
    }
    let question = Question::read(&state, &principal, &q, &headers).await?;
    let facts = question.facts(NIGHTS).await?;
    let items = compute::facts(&facts);
    question.answer(items, &facts).respond(question.csv)
}
