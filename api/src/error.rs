//! One error type for every endpoint, rendered as RFC 9457 `application/problem+json` with a
//! stable `code`. Internal causes are logged, never shown.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::FlowError;
use domain::booking::BookingError;
use domain::listing::ListingError;
use domain::payment::PaymentError;
use domain::user::UserError;
use serde::Serialize;
use utoipa::ToSchema;

/// A field that broke a rule.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    /// RFC 9457 extension members, e.g. `opens_at` of `access_not_yet_open` (boxed: most
    /// errors have none, and every `Result<_, ApiError>` carries the size).
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `dates_unavailable`, `validation_failed`.
    pub code: String,
    /// For validation problems: each offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Members particular to one code (`opens_at` for `access_not_yet_open`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            extensions: None,
        }
    }

    /// Adds an extension member to the problem.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions
            .get_or_insert_with(Default::default)
            .insert(name.to_string(), value.into());
        self
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Validation failed",
            format!("{field}: {message}"),
        );
        e.errors.push(FieldError { field, message });
        e
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, code, "Unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// The account was blocked by an admin: every request of it is refused.
    pub fn user_blocked() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "user_blocked",
            "Account blocked",
            "this account is blocked; contact support",
        )
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, "Conflict", detail)
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>, retry_after: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "Service unavailable",
            detail,
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            format!("slow down: try again in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// The request body is larger than the service takes.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "Request body too large",
            format!("the request body may have at most {limit} bytes"),
        )
    }

    /// An unexpected failure: the cause goes to the log, the client gets a generic answer.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "something went wrong on our side",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!(
                "https://zhilego.kz/problems/{}",
                self.code.replace('_', "-")
            ),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            errors: self.errors.clone(),
            extensions: self.extensions.as_deref().cloned().unwrap_or_default(),
        }
    }
}

/// What the client is told (status, code, detail), never an internal cause: handler spans
/// record it.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<ListingError> for ApiError {
    fn from(e: ListingError) -> Self {
        let detail = e.to_string();
        match e {
            ListingError::NotFound => ApiError::not_found("listing"),
            ListingError::AlreadyExists => ApiError::conflict("already_exists", detail),
            ListingError::Forbidden => ApiError::forbidden(detail),
            ListingError::Invalid { field, message } => ApiError::validation(field, message),
            ListingError::NotBookable => ApiError::conflict("listing_not_bookable", detail),
            ListingError::DatesUnavailable => ApiError::conflict("dates_unavailable", detail),
            ListingError::TooManyGuests { .. } => ApiError::validation("guests", detail),
            ListingError::BelowMinNights { .. } | ListingError::AboveMaxNights { .. } => {
                ApiError::validation("check_out", detail)
            }
            ListingError::PastCheckIn | ListingError::BeyondHorizon => {
                ApiError::validation("check_in", detail)
            }
            ListingError::UnknownReservation => ApiError::not_found("reservation"),
            ListingError::UnknownBlock => ApiError::not_found("block"),
            ListingError::UnknownFeed => ApiError::not_found("calendar feed"),
            ListingError::FeedExists => ApiError::conflict("feed_exists", detail),
            ListingError::FeedBlock => ApiError::conflict("feed_block", detail),
            ListingError::Moderated { reason } => {
                ApiError::conflict("listing_moderated", detail).with("moderation_reason", reason)
            }
            ListingError::NotModerated => ApiError::conflict("not_moderated", detail),
        }
    }
}

impl From<BookingError> for ApiError {
    fn from(e: BookingError) -> Self {
        let detail = e.to_string();
        match e {
            BookingError::NotFound => ApiError::not_found("booking"),
            BookingError::AlreadyExists => ApiError::conflict("already_exists", detail),
            BookingError::Forbidden => ApiError::forbidden(detail),
            BookingError::WrongStatus(_) | BookingError::HoldNotExpired => {
                ApiError::conflict("invalid_state", detail)
            }
            BookingError::AmountMismatch { .. } => ApiError::validation("amount_kzt", detail),
            BookingError::ReasonTooLong => ApiError::validation("reason", detail),
            BookingError::AlreadyReviewed => ApiError::conflict("already_reviewed", detail),
            BookingError::InvalidReview { field, message } => ApiError::validation(field, message),
            BookingError::PriceNotForStay(_) => ApiError::internal(detail),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        let detail = e.to_string();
        match e {
            PaymentError::NotFound | PaymentError::UnknownRefund => ApiError::not_found("payment"),
            PaymentError::AlreadyExists => ApiError::conflict("already_exists", detail),
            PaymentError::AlreadyPaid => ApiError::conflict("already_paid", detail),
            PaymentError::WrongStatus(_) => ApiError::conflict("invalid_state", detail),
            PaymentError::AmountNotTotal { .. } | PaymentError::RefundTooLarge { .. } => {
                ApiError::validation("amount_kzt", detail)
            }
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        let detail = e.to_string();
        match e {
            UserError::Phone => ApiError::validation("phone", detail),
            UserError::Name => ApiError::validation("name", detail),
            UserError::Reason => ApiError::validation("reason", detail),
            UserError::RoleNotGiven(_) => ApiError::validation("role", detail),
            UserError::OwnAccount => ApiError::conflict("own_account", detail),
            UserError::KeyExists => ApiError::conflict("already_exists", detail),
            UserError::NoSuchKey => ApiError::not_found("API key"),
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Listing(e) => e.into(),
            FlowError::Booking(e) => e.into(),
            FlowError::User(e) => e.into(),
            FlowError::Payment(e) => e.into(),
            FlowError::ProviderUnavailable(_) | FlowError::NoProvider => {
                tracing::warn!(error = %e, "Kaspi unavailable");
                ApiError::unavailable(
                    "payment_provider_unavailable",
                    "Kaspi is not answering right now; nothing was charged and the booking stays held. Try again shortly",
                    5,
                )
            }
            FlowError::ProviderRefused(_) => {
                tracing::warn!(error = %e, "Kaspi refused");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "payment_provider_refused",
                    "Kaspi refused the request",
                    "Kaspi refused the request; nothing was charged",
                )
            }
            FlowError::AccessNotSet => ApiError::new(
                StatusCode::NOT_FOUND,
                "access_not_set",
                "No access instructions",
                "the host has not set access instructions for this listing yet",
            ),
            FlowError::TooManyHolds { max } => ApiError::conflict(
                "too_many_holds",
                format!(
                    "you already hold {max} unpaid bookings; pay for or cancel one before booking another"
                ),
            ),
            FlowError::AccessWindow(window) => match window {
                commands::OutsideWindow::NotYetOpen { opens_at } => {
                    ApiError::conflict("access_not_yet_open", window.to_string())
                        .with("opens_at", opens_at.to_rfc3339())
                }
                commands::OutsideWindow::Closed { closed_at } => {
                    ApiError::conflict("access_closed", window.to_string())
                        .with("closed_at", closed_at.to_rfc3339())
                }
            },
            FlowError::Busy => {
                ApiError::unavailable("busy", "too many changes at once here, try again", 1)
            }
            FlowError::Access(_) | FlowError::Database(_) => {
                tracing::error!(error = %e, "store failure");
                ApiError::unavailable(
                    "store_unavailable",
                    "the event store is not answering, try again",
                    2,
                )
            }
            FlowError::Store(cause) => {
                tracing::error!(error = %cause, "store failure");
                ApiError::unavailable(
                    "store_unavailable",
                    "the event store is not answering, try again",
                    2,
                )
            }
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        tracing::error!(error = %e, "database failure");
        ApiError::unavailable(
            "store_unavailable",
            "the database is not answering, try again",
            2,
        )
    }
}
