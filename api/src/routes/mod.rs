//! The HTTP surface: `/api/v1` (rate-limited, documented in the served OpenAPI document) and
//! the operational endpoints.
pub mod admin;
pub mod admin_status;
pub mod analytics;
pub mod analytics_answer;
pub mod api_keys;
pub mod audit;
pub mod bookings;
pub mod calendar;
pub mod calendar_feeds;
pub mod context;
pub mod dashboard;
pub mod docs;
pub mod kaspi;
pub mod listings;
pub mod moderation;
pub mod openapi;
pub mod ops;
pub mod payments;
pub mod reports;
pub mod search;
pub mod users;

use crate::error::ApiError;
use crate::rate_limit;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// The whole application router.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The application router with `extra` routes beside the service's, under all its layers
/// (the test suite adds a route that panics; the binary adds none).
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(listings::routes())
        .merge(search::routes())
        .merge(calendar::routes())
        .merge(calendar_feeds::routes())
        .merge(bookings::routes())
        .merge(users::routes())
        .merge(payments::routes())
        .merge(audit::routes())
        .merge(analytics::routes())
        .merge(reports::routes())
        .merge(admin::routes())
        .merge(api_keys::routes())
        .merge(moderation::routes())
        .merge(admin_status::routes())
        .merge(crate::bots::telegram::login::routes())
        .split_for_parts();
    let doc = openapi::document(doc);
    let api = api
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(doc.clone()) }),
        )
        .merge(docs::routes())
        .fallback(|| async { ApiError::not_found("route") });

    let api = api.route_layer(middleware::from_fn_with_state(
        state.clone(),
        crate::access::enforce_scope,
    ));
    let api = rate_limit::apply(api.route_layer(middleware::from_fn(mark_route)), &state);
    let webhooks = Router::new()
        .merge(kaspi::routes())
        .merge(crate::bots::webhooks())
        .route_layer(middleware::from_fn(mark_route));
    let mut router = Router::new()
        .merge(ops::routes().route_layer(middleware::from_fn(mark_route)))
        .merge(dashboard::routes())
        .merge(rate_limit::apply_webhooks(webhooks, &state))
        .merge(api);
    if let Some(sandbox) = &state.kaspi.sandbox {
        router = router.nest_service(crate::payments::SANDBOX_PREFIX, sandbox.router());
    }
    let edge = &state.settings.edge;
    let max_body = edge.max_body_bytes;
    let origins = Arc::new(edge.cors_origins.clone());
    // Inside out: a panic is answered first, so the body limit, CORS, the access log, the
    // correlation ids and the request metrics all see its 500.
    router
        .merge(extra)
        .layer(CatchPanicLayer::custom(answer_panic))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            crate::server::body_limit(req, next, max_body)
        }))
        .layer(tower::util::option_layer(crate::cors::layer(&origins)))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            crate::cors::refuse_other_origins(origins.clone(), req, next)
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(context::request_span)
                .on_request(())
                .on_response(context::log_answer)
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(middleware::from_fn(context::correlation))
        .layer(middleware::from_fn(track_requests))
        .with_state(state)
}

/// An answer given for a handler that panicked (the panic hook has logged and reported it).
#[derive(Clone, Copy)]
struct Panicked;

/// A panic is a 500 problem like any internal error; the process keeps serving.
fn answer_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let mut res = ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal server error",
        "something went wrong on our side",
    )
    .into_response();
    res.extensions_mut().insert(Panicked);
    res
}

/// The route pattern a request matched, carried out on its response to `track_requests` and
/// the access log.
#[derive(Clone)]
struct RouteLabel(String);

async fn mark_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let mut res = next.run(req).await;
    if let Some(route) = route {
        res.extensions_mut().insert(RouteLabel(route));
    }
    res
}

/// Latency and count per route and status, around everything: unknown paths, the rate
/// limiters' 429s and the sandbox are counted too (as route `unmatched` where no route was
/// matched, since the limiters answer before routing).
async fn track_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Standard methods only as labels: anyone can send `FOO /`, and every label value is a
    // series kept forever.
    let method = match *req.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::OPTIONS => req.method().to_string(),
        _ => "other".to_string(),
    };
    let res = next.run(req).await;
    let route = res
        .extensions()
        .get::<RouteLabel>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| "unmatched".to_string());
    let status = res.status().as_u16().to_string();
    metrics::histogram!("zhilego_http_request_duration_seconds",
        "method" => method.clone(), "route" => route.clone(), "status" => status.clone())
    .record(started.elapsed().as_secs_f64());
    metrics::counter!("zhilego_http_requests_total",
        "method" => method, "route" => route, "status" => status)
    .increment(1);
    res.into_response()
}
