//! `/api/v1/docs`: the API reference UI (Scalar, vendored from npm by
//! `scripts/vendor-docs-ui.sh`, MIT, its notice in `api/src/docs/scalar.LICENSE`) on the served
//! OpenAPI document. The page, the bundle and its start script are compiled into the binary;
//! the Content-Security-Policy lets the page load only this server's files and call only this
//! origin, so it works with no network and leaks nothing to third parties.
use crate::state::AppState;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../docs/index.html");
const INIT: &str = include_str!("../docs/init.js");
const SCALAR: &str = include_str!("../docs/scalar.js");
const LICENSE: &str = include_str!("../docs/scalar.LICENSE");

/// Scalar sets styles at run time (style elements and attributes), hence `'unsafe-inline'` for
/// styles only; scripts are this server's files.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
    form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    let page = || async { asset(INDEX, "text/html; charset=utf-8") };
    Router::new()
        .route("/api/v1/docs", get(page))
        .route("/api/v1/docs/", get(page))
        .route(
            "/api/v1/docs/init.js",
            get(|| async { asset(INIT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/api/v1/docs/scalar.js",
            get(|| async { asset(SCALAR, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/api/v1/docs/scalar.LICENSE",
            get(|| async { asset(LICENSE, "text/plain; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    // The bundle changes only with the binary; a day's caching spares a 4 MB download.
    let cache = if content_type.starts_with("text/html") {
        "no-cache"
    } else {
        "public, max-age=86400"
    };
    super::dashboard::compiled_asset(body, content_type, POLICY, cache)
}
