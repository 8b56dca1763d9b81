//! Cross-origin requests from the web portal and the mobile web views (`ZHILEGO_CORS_ORIGINS`,
//! docs/security.md "Cross-origin requests").
//!
//! Only the configured origins get CORS headers: a preflight from one is answered (methods,
//! request headers, credentials, 10 minutes' cache); a preflight from any other origin is
//! refused with 403 problem+json, and its requests get no `Access-Control-Allow-Origin`, so
//! a browser shows them nothing. With no origins configured (the default) every preflight is
//! refused.
use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a cross-origin caller may send.
const ALLOWED_HEADERS: [HeaderName; 8] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-channel"),
    HeaderName::from_static("x-correlation-id"),
    HeaderName::from_static("x-request-id"),
];

/// Answer headers a cross-origin caller may read: when to retry (429, 503), whether an
/// `Idempotency-Key` answer is a replay, and the correlation ids.
const EXPOSED_HEADERS: [HeaderName; 4] = [
    header::RETRY_AFTER,
    HeaderName::from_static("idempotent-replayed"),
    HeaderName::from_static("x-correlation-id"),
    HeaderName::from_static("x-server-correlation-id"),
];

/// The CORS layer for `origins`, or none when no origin is allowed.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(Duration::from_secs(600)),
    )
}

/// Refuses a preflight whose origin is not allowed (403 problem+json) before the CORS layer,
/// which would answer it 200 without allowing anything.
pub async fn refuse_other_origins(allowed: Arc<Vec<String>>, req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let other = origin.is_some_and(|o| !allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
    if preflight && (other || origin.is_none()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "Origin not allowed",
            "this origin may not call the API from a browser",
        )
        .into_response();
    }
    let mut res = next.run(req).await;
    if other {
        // The CORS layer adds the headers that do not depend on the origin (credentials,
        // exposed headers) to every answer; another origin gets none of them.
        let names: Vec<_> = res
            .headers()
            .keys()
            .filter(|n| n.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in names {
            res.headers_mut().remove(name);
        }
    }
    res
}

/// Reads `ZHILEGO_CORS_ORIGINS`: comma-separated origins (`https://zhilego.kz`), each a scheme
/// and a host with an optional port, nothing after. `*` is refused: answers carry
/// credentials, and a wildcard would hand them to every site.
pub fn parse_origins(value: Option<String>) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            if o == "*" {
                return Err("`*` is not allowed: list the origins".to_string());
            }
            let url = url::Url::parse(o).map_err(|_| format!("{o:?} is not an origin"))?;
            let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
            if !matches!(url.scheme(), "http" | "https")
                || url.host_str().is_none()
                || !bare
                || !url.username().is_empty()
                || o.ends_with('/')
            {
                return Err(format!(
                    "{o:?} is not an origin (scheme://host[:port], nothing after)"
                ));
            }
            Ok(url.origin().ascii_serialization())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_origins;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(parse_origins(None).unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_origins(Some(
                "https://zhilego.kz, https://m.zhilego.kz,http://localhost:3000".into()
            ))
            .unwrap(),
            vec![
                "https://zhilego.kz",
                "https://m.zhilego.kz",
                "http://localhost:3000"
            ]
        );
        assert_eq!(
            parse_origins(Some("HTTPS://ZhilyeGO.kz".into())).unwrap(),
            vec!["https://zhilyego.kz"]
        );
        for bad in [
            "*",
            "zhilego.kz",
            "https://zhilego.kz/",
            "https://zhilego.kz/app",
            "https://zhilego.kz?x=1",
            "ftp://zhilego.kz",
            "https://user@zhilego.kz",
        ] {
            assert!(parse_origins(Some(bad.into())).is_err(), "{bad}");
        }
    }
}
