//! The served OpenAPI document (`GET /api/v1/openapi.json`).
//!
//! Each route declares its own answers (its success body, and the errors only it gives, with
//! the codes that say why). What operations share is added once, here, from what the
//! operation is ([`Conventions`]): the error answers its extractors, the auth layer, the edge
//! limits and the store can give (400 malformed body, 401/403 auth, 404 path, 408/413/415 body,
//! 422 validation, 429 rate limit, 500, 503), every error body as `application/problem+json`
//! with the `Problem` schema, `Retry-After` on 429 and 503, the correlation and idempotency
//! headers, the security requirements with their alternatives, and the links from an
//! operation that creates a resource to the ones that use it (stateful clients and tests
//! follow them). The ops, webhook and Kaspi paths, routed outside `/api/v1`, are listed by
//! [`ApiDoc`].
use crate::routes::{kaspi, ops};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::server::Server;
use utoipa::openapi::{Content, Object, OpenApi as Document, Ref, RefOr, Required, Schema, Type};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ZhilyeGO API",
        version = "1",
        description = "Short-term apartment rentals in Kazakhstan: listings, calendars, bookings. \
            Errors are RFC 9457 problem+json with a stable `code`. Writes return `position`; \
            reads accept `min_position`. Authenticate with `Authorization: Bearer <JWT>` or an \
            API key (`X-Api-Key: zgo_…`, or as the bearer token). Answers carry \
            `X-Correlation-Id`. The contract in prose: docs/api.md."
    ),
    paths(
        ops::healthz, ops::readyz, ops::metrics,
        kaspi::by_query, kaspi::by_form,
        crate::bots::telegram::webhook, crate::bots::whatsapp::webhook,
    ),
    tags(
        (name = "listings", description = "Hosts' apartments and their calendars"),
        (name = "search", description = "Free apartments for a stay, and the catalogue"),
        (name = "bookings", description = "Guests' stays"),
        (name = "users", description = "Profiles"),
        (name = "payments", description = "Kaspi payments, refunds and reconciliation"),
        (name = "audit", description = "History, state as of any point, signed checkpoints and proofs (auditor, admin)"),
        (name = "analytics", description = "Occupancy, revenue, the funnel, as known at any instant; the daily report"),
        (name = "admin", description = "Accounts, roles, blocking, moderation, overrides, API keys"),
        (name = "ops", description = "Liveness, readiness and metrics (no token; `/metrics` on the ops listener)"),
        (name = "webhooks", description = "Callers that are not our clients: Telegram, Twilio (WhatsApp) and Kaspi, each verified its own way"),
    )
)]
pub struct ApiDoc;

/// The whole document: the routes' annotations merged into [`ApiDoc`], then [`Conventions`].
pub fn document(mut merged: Document) -> Document {
    Conventions.apply(&mut merged);
    merged
}

/// Security scheme names used in the document.
pub const BEARER: &str = "bearer";
pub const API_KEY: &str = "api_key";
pub const KASPI_BASIC: &str = "kaspi_basic";
pub const TELEGRAM_SECRET: &str = "telegram_secret";
pub const TWILIO_SIGNATURE: &str = "twilio_signature";
pub const METRICS_TOKEN: &str = "metrics_token";

/// The header every idempotent POST accepts, and the one its replays carry.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
const REPLAYED: &str = "Idempotent-Replayed";

/// A link from one operation's answer to another operation: stateful clients follow these.
struct LinkSpec {
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    /// Target parameter → runtime expression.
    parameters: &'static [(&'static str, &'static str)],
    /// Fields of the target's body taken from the answer (the rest is the client's).
    body: &'static [(&'static str, &'static str)],
    description: &'static str,
}

const fn link(
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    description: &'static str,
) -> LinkSpec {
    LinkSpec {
        from,
        status,
        name,
        to,
        parameters,
        body: &[],
        description,
    }
}

const LISTING_ID: &[(&str, &str)] = &[("id", "$response.body#/id")];
const BOOKING_ID: &[(&str, &str)] = &[("id", "$response.body#/id")];

/// Where a created resource goes next.
const LINKS: &[LinkSpec] = &[
    link(
        "create_listing",
        "201",
        "GetListing",
        "get_listing",
        LISTING_ID,
        "The listing just created",
    ),
    link(
        "create_listing",
        "201",
        "PatchListing",
        "patch_listing",
        LISTING_ID,
        "Change it",
    ),
    link(
        "create_listing",
        "201",
        "BlockDates",
        "create_block",
        LISTING_ID,
        "Close some nights",
    ),
    link(
        "create_listing",
        "201",
        "Calendar",
        "calendar",
        LISTING_ID,
        "Its nights",
    ),
    link(
        "create_listing",
        "201",
        "CalendarIcs",
        "calendar_ics",
        LISTING_ID,
        "Its iCal feed",
    ),
    link(
        "create_listing",
        "201",
        "SetAccess",
        "put_access",
        LISTING_ID,
        "How guests get in",
    ),
    link(
        "create_listing",
        "201",
        "AddCalendarFeed",
        "add_feed",
        LISTING_ID,
        "Import another site's calendar",
    ),
    link(
        "create_listing",
        "201",
        "CalendarFeeds",
        "list_feeds",
        LISTING_ID,
        "Its imported calendars",
    ),
    link(
        "create_listing",
        "201",
        "Moderate",
        "moderate_listing",
        LISTING_ID,
        "Pause, archive or restore it (admin)",
    ),
    LinkSpec {
        from: "create_listing",
        status: "201",
        name: "Book",
        to: "create_booking",
        parameters: &[],
        body: &[("listing_id", "$response.body#/id")],
        description: "Book a stay in it (guest)",
    },
    link(
        "create_block",
        "201",
        "RemoveBlock",
        "delete_block",
        &[
            ("id", "$request.path.id"),
            ("block_id", "$response.body#/id"),
        ],
        "Reopen the nights",
    ),
    link(
        "create_booking",
        "201",
        "GetBooking",
        "get_booking",
        BOOKING_ID,
        "The booking just made",
    ),
    link(
        "create_booking",
        "201",
        "Cancel",
        "cancel_booking",
        BOOKING_ID,
        "Cancel it",
    ),
    link(
        "create_booking",
        "201",
        "Pay",
        "create_payment",
        BOOKING_ID,
        "Pay for it with Kaspi",
    ),
    link(
        "create_booking",
        "201",
        "Access",
        "get_access",
        BOOKING_ID,
        "The door code, in its window",
    ),
    link(
        "create_booking",
        "201",
        "Review",
        "review_booking",
        BOOKING_ID,
        "Review the stay once completed",
    ),
    link(
        "create_booking",
        "201",
        "ExtendHold",
        "extend_hold",
        BOOKING_ID,
        "Keep the hold longer (admin)",
    ),
    link(
        "create_payment",
        "201",
        "GetPayment",
        "get_payment",
        &[("id", "$response.body#/payment_id")],
        "The payment just started",
    ),
    link(
        "create_payment",
        "201",
        "Refund",
        "refund_payment",
        &[("id", "$response.body#/payment_id")],
        "Refund it (admin)",
    ),
    link(
        "add_feed",
        "201",
        "SyncFeed",
        "sync_feed",
        &[
            ("id", "$request.path.id"),
            ("feed_id", "$response.body#/id"),
        ],
        "Sync it now",
    ),
    link(
        "add_feed",
        "201",
        "RemoveFeed",
        "remove_feed",
        &[
            ("id", "$request.path.id"),
            ("feed_id", "$response.body#/id"),
        ],
        "Stop importing it",
    ),
    link(
        "create_key",
        "201",
        "RevokeKey",
        "revoke_key",
        &[("id", "$response.body#/id")],
        "Revoke the key",
    ),
];

/// What an operation is, as far as the shared answers go.
struct Shape {
    api: bool,
    webhook: bool,
    body: bool,
    body_required: bool,
    path_params: bool,
    query_params: bool,
    idempotent: bool,
    /// A token is required (or one of the alternatives).
    authenticated: bool,
    /// No token is needed, but one that is sent must be valid.
    optional_auth: bool,
}

impl Shape {
    fn of(path: &str, op: &Operation) -> Shape {
        let params = op.parameters.iter().flatten().filter_map(|p| match p {
            RefOr::T(p) => Some(p),
            RefOr::Ref(_) => None,
        });
        let (mut path_params, mut query_params, mut idempotent) = (false, false, false);
        for p in params {
            match p.parameter_in {
                ParameterIn::Path => path_params = true,
                ParameterIn::Query | ParameterIn::QueryString => query_params = true,
                ParameterIn::Header if p.name.eq_ignore_ascii_case(IDEMPOTENCY_KEY) => {
                    idempotent = true
                }
                _ => {}
            }
        }
        let requirements: Vec<serde_json::Value> = op
            .security
            .iter()
            .flatten()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        let names = |r: &serde_json::Value| {
            r.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let bearer = requirements
            .iter()
            .any(|r| names(r).iter().any(|n| n == BEARER));
        let anonymous = requirements.iter().any(|r| names(r).is_empty());
        Shape {
            api: path.starts_with("/api/v1/"),
            webhook: path.starts_with("/kaspi/")
                || path.starts_with("/telegram/")
                || path.starts_with("/whatsapp/"),
            body: op.request_body.is_some(),
            body_required: matches!(&op.request_body, Some(RefOr::T(b)) if b.required == Some(Required::True)),
            path_params,
            query_params,
            idempotent,
            authenticated: bearer && !anonymous,
            optional_auth: bearer && anonymous,
        }
    }
}

/// The shared part of the document (see the module's doc).
struct Conventions;

impl Conventions {
    fn apply(&self, doc: &mut Document) {
        self.components(doc);
        let metrics_path = "/metrics";
        for (path, item) in doc.paths.paths.iter_mut() {
            if path == metrics_path {
                item.servers = Some(vec![{
                    let mut s = Server::new("http://127.0.0.1:9464");
                    s.description = Some(
                        "The ops listener (`ZHILEGO_METRICS_ADDR`, default 127.0.0.1:9464), \
                         apart from the API's"
                            .into(),
                    );
                    s
                }]);
            }
            for op in operations(item) {
                let shape = Shape::of(path, op);
                alternatives(op);
                shared_answers(&shape, op);
                problem_bodies(op);
                headers(&shape, op);
            }
        }
        links(doc);
    }

    fn components(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let schemes = [
            (
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "A JWT (`zhilego token --role ROLE`, or `POST /api/v1/auth/telegram`); \
                             an API key `zgo_…` is taken here too",
                        ))
                        .build(),
                ),
            ),
            (
                API_KEY,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-Api-Key",
                    "A service client's key (`POST /api/v1/api-keys`), acting with the key's role \
                     (and only on its listings when it has some)",
                ))),
            ),
            (
                KASPI_BASIC,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Basic)
                        .description(Some(
                            "Kaspi's configured credentials (`KASPI_CALLBACK_USER`, \
                             `KASPI_CALLBACK_PASSWORD`), from an address on \
                             `KASPI_CALLBACK_ALLOW_IPS`",
                        ))
                        .build(),
                ),
            ),
            (
                TELEGRAM_SECRET,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-Telegram-Bot-Api-Secret-Token",
                    "`TELEGRAM_WEBHOOK_SECRET`, as Telegram sends it",
                ))),
            ),
            (
                METRICS_TOKEN,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "`ZHILEGO_METRICS_TOKEN`, when it is set",
                        ))
                        .build(),
                ),
            ),
            (
                TWILIO_SIGNATURE,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-Twilio-Signature",
                    "Twilio's HMAC-SHA1 signature of the URL and the form, with \
                     `TWILIO_AUTH_TOKEN`",
                ))),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
        let integer = |min: i64| {
            let mut o = Object::with_type(Type::Integer);
            o.minimum = Some(min.into());
            Schema::Object(o)
        };
        let string = || Schema::Object(Object::with_type(Type::String));
        components.headers.insert(
            "Retry-After".into(),
            RefOr::T(required(
                HeaderBuilder::new()
                    .schema(Some(integer(0)))
                    .description(Some("Seconds to wait before trying again"))
                    .build(),
            )),
        );
        components.headers.insert(
            "X-Correlation-Id".into(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(string()))
                    .description(Some(
                        "The client's own `X-Correlation-Id` (or `X-Request-Id`) when it sent a \
                         usable one, else ours",
                    ))
                    .build(),
            ),
        );
        components.headers.insert(
            "X-Server-Correlation-Id".into(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema({
                        let mut o = Object::with_type(Type::String);
                        o.format = Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Uuid,
                        ));
                        Some(Schema::Object(o))
                    })
                    .description(Some(
                        "Our correlation id of the request: in its events' metadata and its log lines",
                    ))
                    .build(),
            ),
        );
        components.headers.insert(
            REPLAYED.into(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema({
                        let mut o = Object::with_type(Type::String);
                        o.enum_values = Some(vec!["true".into()]);
                        Some(Schema::Object(o))
                    })
                    .description(Some(
                        "`true` when this is the recorded answer to an earlier request with the \
                         same `Idempotency-Key` and body",
                    ))
                    .build(),
            ),
        );
    }
}

/// utoipa 6's `Header` has no `required` member; the OpenAPI one does.
fn required(mut header: Header) -> Header {
    header
        .extensions
        .get_or_insert_with(Default::default)
        .insert("required".into(), true.into());
    header
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// Wherever a bearer token is accepted, an API key is too.
fn alternatives(op: &mut Operation) {
    let Some(security) = &mut op.security else {
        return;
    };
    let bearer = serde_json::to_value(SecurityRequirement::new(BEARER, Vec::<String>::new()))
        .unwrap_or_default();
    if security
        .iter()
        .any(|r| serde_json::to_value(r).unwrap_or_default() == bearer)
    {
        let key = SecurityRequirement::new(API_KEY, Vec::<String>::new());
        let key_value = serde_json::to_value(&key).unwrap_or_default();
        if !security
            .iter()
            .any(|r| serde_json::to_value(r).unwrap_or_default() == key_value)
        {
            security.push(key);
        }
    }
}

/// The answers every operation of a kind can give, added where the route did not declare
/// them (a route's own description of a status is kept: it says more).
fn shared_answers(shape: &Shape, op: &mut Operation) {
    let mut add = |status: &str, description: &str| {
        let response = op
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Response::new(description)));
        if let RefOr::T(r) = response {
            if r.description.is_empty() {
                r.description = description.to_string();
            }
        }
    };
    if shape.body {
        add("408", "`body_timeout`: the body did not arrive in time");
        add("413", "The body is over the size limit");
    }
    if shape.api && shape.body {
        add(
            "400",
            "`malformed_json`: the body is not JSON; `body_unreadable`: it could not be read",
        );
        add(
            "422",
            "`validation_failed`: a field is missing or wrong (named in `errors`)",
        );
    }
    if shape.api && shape.body_required {
        add(
            "415",
            "`unsupported_media_type`: send the body as `Content-Type: application/json`",
        );
    }
    if shape.idempotent {
        add(
            "400",
            "`invalid_idempotency_key`: 1 to 255 visible ASCII characters",
        );
        add(
            "409",
            "`idempotency_in_progress`: a request with this `Idempotency-Key` is still running",
        );
        add(
            "422",
            "`idempotency_key_reused`: this `Idempotency-Key` came with another request",
        );
    }
    if shape.query_params {
        add(
            "422",
            "`validation_failed`: a parameter is wrong (named in `errors`)",
        );
    }
    if shape.authenticated {
        add(
            "401",
            "`unauthorized` (no token), `invalid_token`, `token_expired`, `invalid_api_key` or \
             `api_key_revoked`",
        );
    }
    if shape.optional_auth {
        add(
            "401",
            "A token or key was sent and is not valid: `invalid_token`, `token_expired`, \
             `invalid_api_key` or `api_key_revoked` (send none to read anonymously)",
        );
    }
    if shape.api {
        add(
            "403",
            "`forbidden` (the role or the resource is not the caller's), `user_blocked` or \
             `out_of_scope` (an API key limited to other listings)",
        );
    }
    if shape.path_params {
        add("404", "`not_found`: nothing has this id");
    }
    if shape.api || shape.webhook {
        add(
            "429",
            "`rate_limited`: over this client's limit (`ZHILEGO_RATE_LIMIT`, or the webhooks' \
             per-source limit)",
        );
        add(
            "503",
            "`store_unavailable`, `read_model_behind` (`min_position` not reached in time), \
             `busy` or `request_timeout`",
        );
    }
    add(
        "500",
        "`internal`: an unexpected failure (logged with the correlation id)",
    );
    // OpenAPI requires a description: what the route left out is the status's name.
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(r) = response {
            if r.description.is_empty() {
                r.description = status
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Answer")
                    .to_string();
            }
        }
    }
}

fn problem_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name("Problem"))
}

/// Every error answer of ours is `application/problem+json` with the `Problem` schema. A
/// 4xx or 5xx with another body (the readiness report) is left as declared.
fn problem_bodies(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        let is_problem = |c: &RefOr<Content>| {
            matches!(c, RefOr::T(Content { schema: Some(RefOr::Ref(r)), .. })
                if r.ref_location.ends_with("/Problem"))
        };
        let declared_other = response.content.values().any(|c| !is_problem(c));
        if declared_other && !response.content.is_empty() {
            continue;
        }
        response.content.clear();
        response.content.insert(
            "application/problem+json".to_string(),
            RefOr::T(Content::new(Some(problem_ref()))),
        );
    }
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

/// `Retry-After` on 429 and 503, the correlation ids on every answer of ours, the replay
/// marker on idempotent successes.
fn headers(shape: &Shape, op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let problem = response.content.contains_key("application/problem+json");
        if (status == "429" || status == "503") && problem {
            response
                .headers
                .insert("Retry-After".into(), header_ref("Retry-After"));
        }
        for name in ["X-Correlation-Id", "X-Server-Correlation-Id"] {
            response.headers.insert(name.into(), header_ref(name));
        }
        if shape.idempotent && status.starts_with('2') {
            response
                .headers
                .insert(REPLAYED.into(), header_ref(REPLAYED));
        }
    }
}

fn links(doc: &mut Document) {
    let ids: std::collections::HashSet<String> = doc
        .paths
        .paths
        .values()
        .flat_map(|item| {
            [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
                .filter_map(|op| op.operation_id.clone())
        })
        .collect();
    for spec in LINKS {
        debug_assert!(
            ids.contains(spec.to),
            "link to unknown operation {}",
            spec.to
        );
        if !ids.contains(spec.to) {
            continue;
        }
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                if op.operation_id.as_deref() != Some(spec.from) {
                    continue;
                }
                let Some(RefOr::T(response)) = op.responses.responses.get_mut(spec.status) else {
                    continue;
                };
                let mut builder = LinkBuilder::new()
                    .operation_id(spec.to)
                    .description(spec.description);
                for (name, expression) in spec.parameters {
                    builder = builder.parameter(*name, *expression);
                }
                if !spec.body.is_empty() {
                    let body: serde_json::Map<String, serde_json::Value> = spec
                        .body
                        .iter()
                        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                        .collect();
                    builder = builder.request_body(Some(body));
                }
                response
                    .links
                    .insert(spec.name.to_string(), RefOr::T(builder.build()));
            }
        }
    }
}

/// The operation ids that the links name, for the test that each resolves.
pub fn linked_operations() -> impl Iterator<Item = (&'static str, &'static str)> {
    LINKS.iter().map(|l| (l.from, l.to))
}
