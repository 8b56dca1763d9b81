//! An analytics answer as JSON (`{items, definitions, as_of, position}`) or as CSV: the
//! definitions, the instant and the position as `#` comment lines, then a header row and one
//! record per item (nested fields as `parent.child`, lists joined by spaces).
use crate::error::ApiError;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use projections::analytics::definitions;
use serde::Serialize;
use serde_json::Value;

/// The columns of an item, in order (nested fields as `parent.child`).
pub trait Columns {
    const COLUMNS: &'static [&'static str];
}

/// Whether the caller asked for CSV (`format=csv` or `Accept: text/csv`); any other `format`
/// than `json` or `csv` is 422.
pub fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => Err(ApiError::validation("format", "must be json or csv")),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|m| m.trim().starts_with("text/csv")))),
    }
}

/// The answer to one analytics question.
pub struct Answer<T> {
    pub items: Vec<T>,
    pub as_of: DateTime<Utc>,
    pub position: i64,
}

impl<T: Serialize + Columns> Answer<T> {
    pub fn json_value(&self) -> Value {
        serde_json::json!({
            "items": self.items,
            "definitions": definitions::as_json(),
            "as_of": self.as_of,
            "position": self.position,
        })
    }

    pub fn respond(self, csv: bool) -> Result<Response, ApiError> {
        if !csv {
            return Ok(Json(self.json_value()).into_response());
        }
        let body = self.csv()?;
        let mut res = body.into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        Ok(res)
    }

    /// The CSV text.
    pub fn csv(&self) -> Result<String, ApiError> {
        let mut out = String::new();
        for (name, text) in definitions::DEFINITIONS {
            out.push_str(&format!("# {name}: {text}\n"));
        }
        out.push_str(&format!(
            "# as_of: {}\n# position: {}\n",
            self.as_of.to_rfc3339(),
            self.position
        ));
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer
            .write_record(T::COLUMNS)
            .map_err(ApiError::internal)?;
        for item in &self.items {
            let value = serde_json::to_value(item).map_err(ApiError::internal)?;
            writer
                .write_record(T::COLUMNS.iter().map(|c| cell(&value, c)))
                .map_err(ApiError::internal)?;
        }
        let bytes = writer.into_inner().map_err(ApiError::internal)?;
        out.push_str(&String::from_utf8_lossy(&bytes));
        Ok(out)
    }
}

/// The text of the field at `path` (`a.b` for nested), lists joined by spaces.
fn cell(value: &Value, path: &str) -> String {
    let mut at = value;
    for part in path.split('.') {
        at = &at[part];
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

macro_rules! columns {
    ($($item:ty => [$($col:literal),+ $(,)?];)+) => {
        $(impl Columns for $item {
            const COLUMNS: &'static [&'static str] = &[$($col),+];
        })+
    };
}

use projections::analytics::compute::{
    ChannelItem, FactItem, FunnelItem, OccupancyItem, PickupItem, RevenueItem, StaysItem,
};

columns! {
    OccupancyItem => ["key", "nights_available", "nights_blocked", "nights_sold", "occupancy"];
    RevenueItem => ["key", "nights_sold", "nights_available", "room_revenue_kzt", "cleaning_fees_kzt",
        "refunds_kzt", "net_revenue_kzt", "adr_kzt", "revpar_kzt", "trevpar_kzt"];
    FunnelItem => ["key", "held", "paid", "checked_in", "completed", "expired", "cancelled",
        "paid_rate", "checked_in_rate", "completed_rate", "confirmations", "cancellations",
        "expirations", "cancellation_rate", "hold_expiry_rate"];
    ChannelItem => ["key", "nights_sold", "room_revenue_kzt", "bookings"];
    StaysItem => ["key", "stays", "nights", "alos", "booking_window_days_avg",
        "booking_window_buckets.0-1", "booking_window_buckets.2-7", "booking_window_buckets.8-30",
        "booking_window_buckets.31-90", "booking_window_buckets.91+"];
    PickupItem => ["key", "nights_sold", "nights_sold_compare", "pickup", "nights_sold_last_year"];
    FactItem => ["booking_id", "listing_id", "date", "nights", "amount_kzt", "channel", "city", "positions"];
}
