//! Payments: a guest's Kaspi link for a held booking, payment state, admin refunds, the
//! reconciliation report, and the apartment's access for a confirmed stay.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{IdPath, ValidJson};
use crate::idempotency;
use crate::routes::context::Meta;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, FixedOffset, Utc};
use domain::payment::{Payment, RefundReason};
use domain::{Kzt, Role};
use projections::{BookingsProjection, PaymentRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_payment))
        .routes(routes!(get_payment))
        .routes(routes!(refund_payment))
        .routes(routes!(get_access))
        .routes(routes!(put_access))
        .routes(routes!(get_reconciliation, run_reconciliation))
}

#[derive(Serialize, ToSchema)]
pub struct RefundView {
    pub id: Uuid,
    pub amount_kzt: i64,
    /// `cancellation`, `late_payment` or `admin`.
    pub reason: String,
    /// `pending` (decided, Kaspi has not returned it yet) or `returned`.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: Uuid,
    pub booking_id: Uuid,
    pub payer_id: Uuid,
    /// `pending`, `succeeded`, `failed`, `expired`, `refunded` or `partially_refunded`.
    pub status: String,
    pub amount_kzt: i64,
    /// Kaspi's payment page; absent while Kaspi has not made the link.
    pub payment_url: Option<String>,
    /// What the guest quotes to Kaspi to pay by account.
    pub account: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// Returned by Kaspi so far.
    pub refunded_kzt: i64,
    pub refunds: Vec<RefundView>,
    /// `callback` or `reconciliation`, once paid.
    pub paid_via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

fn reason_name(r: RefundReason) -> &'static str {
    match r {
        RefundReason::Cancellation => "cancellation",
        RefundReason::LatePayment => "late_payment",
        RefundReason::Admin => "admin",
    }
}

impl PaymentView {
    pub fn of(p: &Payment, position: Option<i64>) -> Self {
        PaymentView {
            payment_id: p.id.unwrap_or_default(),
            booking_id: p.booking_id,
            payer_id: p.payer_id,
            status: p.status.as_str().to_string(),
            amount_kzt: p.amount_kzt.0,
            payment_url: p.payment_url.clone(),
            account: p.account.clone(),
            expires_at: p.expires_at,
            refunded_kzt: p.refunded_kzt.0,
            refunds: p
                .refunds
                .iter()
                .map(|r| RefundView {
                    id: r.id,
                    amount_kzt: r.amount_kzt.0,
                    reason: reason_name(r.reason).to_string(),
                    status: if r.return_operation_id.is_some() {
                        "returned"
                    } else {
                        "pending"
                    }
                    .to_string(),
                })
                .collect(),
            paid_via: p.source.map(|s| {
                match s {
                    domain::payment::PaymentSource::Callback => "callback",
                    domain::payment::PaymentSource::Reconciliation => "reconciliation",
                }
                .to_string()
            }),
            position,
        }
    }
}

/// The Kaspi payment link for a held booking (its guest; an admin gets 403 for a booking that
/// is not theirs). Asking again gives the same
/// payment. 503 `payment_provider_unavailable` when Kaspi does not answer: nothing is
/// charged and the booking stays held.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/payment", tag = "payments",
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated key")),
    responses((status = 201, body = PaymentView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`invalid_state` (not held, hold ran out) or `already_paid`"),
        (status = 502, body = Problem, description = "`payment_provider_refused`"),
        (status = 503, body = Problem, description = "`payment_provider_unavailable`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(booking_id = %id, user_id = %principal.user_id()))]
pub async fn create_payment(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    headers: HeaderMap,
    IdPath(id): IdPath<Uuid>,
) -> Response {
    let route = format!("POST /bookings/{id}/payment");
    idempotency::run(&state, &principal, &headers, &route, b"", || async {
        principal.require(&[Role::Guest, Role::Admin])?;
        let written = state.commands.start_payment(id, &meta).await?;
        let view = PaymentView::of(&written.value, Some(written.position));
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(view).unwrap_or_default(),
        ))
    })
    .await
}

/// One payment (its payer, admin).
#[utoipa::path(get, path = "/api/v1/payments/{id}", tag = "payments",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PaymentView), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(payment_id = %id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn get_payment(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<Uuid>,
) -> Result<Json<PaymentView>, ApiError> {
    let payment = state
        .commands
        .payment(id)
        .await?
        .ok_or_else(|| ApiError::not_found("payment"))?;
    let payer = principal.user_id() == payment.payer_id && principal.role() == Role::Guest;
    if !(payer || principal.role() == Role::Admin) {
        return Err(ApiError::forbidden(
            "only the payer or an admin may see a payment",
        ));
    }
    Ok(Json(PaymentView::of(&payment, None)))
}

#[derive(Deserialize, ToSchema)]
pub struct RefundBody {
    /// Whole tenge, at most what was paid and not yet refunded.
    pub amount_kzt: i64,
}

/// Return money of a paid payment (admin); partial refunds allowed up to what is left. With an
/// `Idempotency-Key` a retried request refunds once. Kaspi being away leaves the refund
/// `pending`; it is returned later.
#[utoipa::path(post, path = "/api/v1/payments/{id}/refund", tag = "payments", request_body = RefundBody,
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = PaymentView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(payment_id = %id, user_id = %principal.user_id()))]
pub async fn refund_payment(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    headers: HeaderMap,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, raw): ValidJson<RefundBody>,
) -> Response {
    let route = format!("POST /payments/{id}/refund");
    let key = headers
        .get(idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    idempotency::run(&state, &principal, &headers, &route, &raw, || async {
        principal.require(&[Role::Admin])?;
        let amount = Kzt::parse_amount(body.amount_kzt)
            .ok()
            .filter(|a| a.0 > 0)
            .ok_or_else(|| {
                ApiError::validation("amount_kzt", "must be a positive whole tenge amount")
            })?;
        state
            .commands
            .payment(id)
            .await?
            .ok_or_else(|| ApiError::not_found("payment"))?;
        let refund_id = match &key {
            Some(k) => commands::admin_refund_id(id, k),
            None => Uuid::now_v7(),
        };
        let written = state
            .commands
            .admin_refund(id, refund_id, amount, &meta)
            .await?;
        let view = PaymentView::of(&written.value, Some(written.position));
        Ok((
            StatusCode::OK,
            serde_json::to_value(view).unwrap_or_default(),
        ))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct AccessView {
    pub address: String,
    pub instructions: String,
    /// This stay's own code, derived from the host's (docs/security.md, "Access codes").
    pub door_code: String,
    /// From check-in (14:00 local time) …
    pub valid_from: DateTime<FixedOffset>,
    /// … to check-out (12:00 local time).
    pub valid_until: DateTime<FixedOffset>,
}

/// The apartment's access for a stay: only its guest, only while it is confirmed or checked
/// in (409 `invalid_state` otherwise), and only from `ZHILEGO_ACCESS_OPENS_BEFORE_HOURS`
/// (default 24) before check-in until check-out: 409 `access_not_yet_open` with `opens_at`
/// before, 409 `access_closed` with `closed_at` after. 404 `access_not_set` when the host has
/// not set it.
#[utoipa::path(get, path = "/api/v1/bookings/{id}/access", tag = "bookings",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AccessView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`invalid_state`, `access_not_yet_open` (with `opens_at`) or `access_closed` (with `closed_at`)")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(booking_id = %id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn get_access(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<Uuid>,
) -> Result<Json<AccessView>, ApiError> {
    let pass = state.commands.access(id, principal.0).await?;
    Ok(Json(AccessView {
        address: pass.address,
        instructions: pass.access.instructions,
        door_code: pass.access.door_code,
        valid_from: pass.valid_from,
        valid_until: pass.valid_until,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct AccessBody {
    /// How to get in: entrance, floor, key box… (at most 2,000 characters).
    pub instructions: String,
    /// 1 to 64 characters.
    pub door_code: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccessSetView {
    pub listing_id: Uuid,
    pub position: i64,
}

/// Set the listing's access instructions and door code (its host only: an admin gets 403 for
/// a listing that is not theirs). They are encrypted before they are stored and are never
/// echoed back; each stay's guest gets a code derived from this one.
#[utoipa::path(put, path = "/api/v1/listings/{id}/access", tag = "listings", request_body = AccessBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AccessSetView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn put_access(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, _): ValidJson<AccessBody>,
) -> Result<Json<AccessSetView>, ApiError> {
    principal.require(&[Role::Host, Role::Admin])?;
    let code = body.door_code.trim();
    if code.is_empty() || code.chars().count() > 64 {
        return Err(ApiError::validation(
            "door_code",
            "must be 1 to 64 characters",
        ));
    }
    if body.instructions.chars().count() > 2000 {
        return Err(ApiError::validation(
            "instructions",
            "must be at most 2000 characters",
        ));
    }
    let access = commands::Access {
        instructions: body.instructions.trim().to_string(),
        door_code: code.to_string(),
    };
    let written = state.commands.set_access(id, access, &meta).await?;
    Ok(Json(AccessSetView {
        listing_id: id,
        position: written.position,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ReconciliationView {
    /// The last pass of this process's payment keeper.
    #[schema(value_type = Object)]
    pub last_pass: commands::ReconciliationReport,
    /// Recent reconciliations that settled a payment or found a mismatch.
    #[schema(value_type = Vec<Object>)]
    pub recent: Vec<commands::Reconciled>,
    /// Payments that had Kaspi notifications refused for a wrong sum (newest first).
    #[schema(value_type = Vec<Object>)]
    pub mismatched_payments: Vec<PaymentRow>,
}

async fn reconciliation_view(
    state: &AppState,
    last_pass: Option<commands::ReconciliationReport>,
) -> Result<ReconciliationView, ApiError> {
    let findings = state.keeper.findings();
    let mismatched_payments =
        BookingsProjection::mismatched_payments(&state.reads.primary, 100).await?;
    Ok(ReconciliationView {
        last_pass: last_pass.unwrap_or(findings.last_pass),
        recent: findings.recent,
        mismatched_payments,
    })
}

/// The reconciliation report (admin): the payment keeper's last pass and payments with
/// refused notifications.
#[utoipa::path(get, path = "/api/v1/admin/payments/reconciliation", tag = "payments",
    responses((status = 200, body = ReconciliationView), (status = 403, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn get_reconciliation(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ReconciliationView>, ApiError> {
    principal.require(&[Role::Admin])?;
    Ok(Json(reconciliation_view(&state, None).await?))
}

/// Run a reconciliation pass now (admin) and report it.
#[utoipa::path(post, path = "/api/v1/admin/payments/reconciliation", tag = "payments",
    responses((status = 200, body = ReconciliationView), (status = 403, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn run_reconciliation(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ReconciliationView>, ApiError> {
    principal.require(&[Role::Admin])?;
    let report = state.keeper.pass().await.map_err(ApiError::internal)?;
    Ok(Json(reconciliation_view(&state, Some(report)).await?))
}
