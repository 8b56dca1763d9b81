//! Extractors whose rejections are problem+json naming what is wrong.
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON body parsed into `T`, keeping the raw bytes (for idempotency fingerprints).
/// Malformed JSON is 400 `malformed_json`; a missing field or a wrong type is 422
/// `validation_failed` naming the field.
pub struct ValidJson<T>(pub T, pub Bytes);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                // The limit itself is in the edge settings; `server::body_limit` words it.
                ApiError::new(
                    e.status(),
                    "body_too_large",
                    "Request body too large",
                    e.body_text(),
                )
            } else {
                ApiError::bad_request("body_unreadable", e.body_text())
            }
        })?;
        let value = parse_json(&bytes)?;
        Ok(ValidJson(value, bytes))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::bad_request(
                    "malformed_json",
                    format!("the body is not valid JSON: {inner}"),
                )
            }
            _ => {
                let message = strip_position(&inner.to_string());
                let field = if path == "." {
                    missing_field(&message).unwrap_or_else(|| "body".into())
                } else {
                    path
                };
                ApiError::validation(field, message)
            }
        }
    })
}

/// serde_json appends " at line L column C"; clients need the field, not the column.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// `missing field `x``, reported at the parent path, names the field in the message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Dates from clients: years 1 to 9999 only. Stored dates are compared as text (SQLite, iCal),
/// which holds only for four-digit years; chrono would take `+262142-01-01`. Used as
/// `#[serde(deserialize_with = "...")]`, so a date out of range is 422 `validation_failed`
/// naming its field, like any other bad value.
pub mod date {
    use chrono::{Datelike, NaiveDate};
    use serde::{Deserialize, Deserializer};

    fn checked<E: serde::de::Error>(d: NaiveDate) -> Result<NaiveDate, E> {
        if (1..=9999).contains(&d.year()) {
            Ok(d)
        } else {
            Err(E::custom(format!(
                "{d}: the year must be between 1 and 9999"
            )))
        }
    }

    pub fn four_digit_year<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        checked(NaiveDate::deserialize(d)?)
    }

    pub fn four_digit_year_opt<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<NaiveDate>, D::Error> {
        Option::<NaiveDate>::deserialize(d)?
            .map(checked)
            .transpose()
    }
}

/// Query parameters parsed into `T`; a bad value is 422 `validation_failed`.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| ValidQuery(v))
            .map_err(|e| {
                let text = e.body_text();
                let text = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_string();
                let field = text.split(':').next().unwrap_or("query").trim().to_string();
                ApiError::validation(field, text)
            })
    }
}

/// The ids in the path; anything that does not parse (not a UUID, not UTF-8) names nothing
/// that exists: 404.
pub struct IdPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| IdPath(v))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "Not found",
                    "no such resource: the path does not name one",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        guests: u32,
        inner: Inner,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        lat: f64,
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = parse_json::<Body>(br#"{"guests": "two", "inner": {"lat": 1}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.errors[0].field, "guests");
        let e = parse_json::<Body>(br#"{"guests": 2, "inner": {"lat": "x"}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "inner.lat");
        let e = parse_json::<Body>(br#"{"guests": -1, "inner": {"lat": 1}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "guests");
    }

    #[test]
    fn missing_fields_are_named() {
        let e = parse_json::<Body>(br#"{"inner": {"lat": 1}}"#).unwrap_err();
        assert_eq!(e.errors[0].field, "guests");
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let e = parse_json::<Body>(br#"{"guests": 2,"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "malformed_json");
    }
}
