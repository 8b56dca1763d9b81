//! Event versions, and the chain that brings an event stored in an older version to the
//! current one when it is loaded. History is never rewritten: the stored payload stays as it
//! was written, and every reader (the aggregates' repositories through cqrs-es, the read side
//! through [`crate::event::Event::decode`]) runs the same chain.
//!
//! Changing an event's shape means: bump its version in [`VERSIONS`], and add an [`Upcaster`]
//! from the previous version to [`UPCASTERS`].
use crate::event::DecodeError;
use crate::pricing::{PriceBreakdown, StayPrice};
use crate::values::DateRange;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

/// The current version of every event type, by aggregate.
pub const VERSIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "Listing",
        &[
            ("ListingCreated", "1.0"),
            ("ListingUpdated", "1.0"),
            ("ListingStatusChanged", "1.0"),
            ("DatesReserved", "1.0"),
            ("ReservationConfirmed", "1.0"),
            ("DatesReleased", "1.0"),
            ("DatesBlocked", "1.0"),
            ("DatesUnblocked", "1.0"),
            ("AccessUpdated", "1.0"),
            ("CalendarFeedAdded", "1.0"),
            ("CalendarFeedRemoved", "1.0"),
            ("FeedConflictsChanged", "1.0"),
            ("ListingModerated", "1.0"),
            ("HoldExtended", "1.0"),
        ],
    ),
    (
        "Booking",
        &[
            // 2.0: the price carries each night's date (`StayPrice`).
            ("BookingHeld", "2.0"),
            ("BookingConfirmed", "1.0"),
            ("BookingCancelled", "1.0"),
            ("BookingExpired", "1.0"),
            ("BookingCheckedIn", "1.0"),
            ("BookingCompleted", "1.0"),
            ("BookingReviewed", "1.0"),
            ("BookingHoldExtended", "1.0"),
        ],
    ),
    (
        "Payment",
        &[
            ("PaymentCreated", "1.0"),
            ("PaymentLinkIssued", "1.0"),
            ("PaymentSucceeded", "1.0"),
            ("PaymentAmountMismatched", "1.0"),
            ("PaymentFailed", "1.0"),
            ("PaymentExpired", "1.0"),
            ("RefundRequested", "1.0"),
            ("PaymentRefunded", "1.0"),
        ],
    ),
    (
        "User",
        &[
            ("ProfileUpdated", "1.0"),
            ("PersonalDataErased", "1.0"),
            ("RoleChanged", "1.0"),
            ("UserBlocked", "1.0"),
            ("UserUnblocked", "1.0"),
            ("ApiKeyIssued", "1.0"),
            ("ApiKeyRevoked", "1.0"),
        ],
    ),
];

/// One step of an event's history: its payload in version `from` becomes version `to`.
pub struct Upcaster {
    pub event_type: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub up: fn(Value) -> Result<Value, String>,
}

/// Every step, each from the version before.
pub const UPCASTERS: &[Upcaster] = &[Upcaster {
    event_type: "BookingHeld",
    from: "1.0",
    to: "2.0",
    up: booking_held_dated_nights,
}];

/// The version the code writes and reads for `event_type` of `aggregate_type`.
pub fn current_version(
    aggregate_type: &str,
    event_type: &str,
) -> Result<&'static str, DecodeError> {
    let (_, types) = VERSIONS
        .iter()
        .find(|(aggregate, _)| *aggregate == aggregate_type)
        .ok_or_else(|| DecodeError::UnknownAggregate(aggregate_type.to_string()))?;
    types
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, version)| *version)
        .ok_or_else(|| DecodeError::UnknownEventType {
            aggregate_type: aggregate_type.to_string(),
            event_type: event_type.to_string(),
        })
}

/// The version an aggregate's event is written in (its `DomainEvent::event_version`).
pub(crate) fn version_of(aggregate_type: &str, event_type: &str) -> String {
    current_version(aggregate_type, event_type)
        .unwrap_or_else(|e| panic!("an event without a version in upcast::VERSIONS: {e}"))
        .to_string()
}

/// Runs the chain from `version` to the current version of `event_type`.
pub fn to_current(
    aggregate_type: &str,
    event_type: &str,
    version: &str,
    mut payload: Value,
) -> Result<Value, DecodeError> {
    let current = current_version(aggregate_type, event_type)?;
    let mut at = version;
    while at != current {
        let step = UPCASTERS
            .iter()
            .find(|u| u.event_type == event_type && u.from == at)
            .ok_or_else(|| DecodeError::UnknownVersion {
                event_type: event_type.to_string(),
                version: version.to_string(),
                current,
            })?;
        payload = (step.up)(payload).map_err(|message| DecodeError::Upcast {
            event_type: event_type.to_string(),
            version: at.to_string(),
            message,
        })?;
        at = step.to;
    }
    Ok(payload)
}

/// The chain for cqrs-es repositories (`PersistedEventStore::with_upcasters`), so aggregates
/// load old events exactly as the read side does.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(Chain)]
}

struct Chain;

impl EventUpcaster for Chain {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        UPCASTERS
            .iter()
            .any(|u| u.event_type == event_type && u.from == event_version)
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        // On failure the event is left as stored: the aggregate then fails to deserialize it
        // and its load is an error (the domain does no logging; the caller reports it).
        if let Ok(payload) = to_current(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            event.payload.clone(),
        ) {
            event.event_version = version_of(&event.aggregate_type, &event.event_type);
            event.payload = payload;
        }
        event
    }
}

/// BookingHeld 1.0 → 2.0: `price.nightly_kzt` (prices in night order) becomes `price.nightly`,
/// each night with its date, taken from the stay's range.
fn booking_held_dated_nights(mut payload: Value) -> Result<Value, String> {
    let body = payload
        .get_mut("BookingHeld")
        .and_then(Value::as_object_mut)
        .ok_or("no BookingHeld object")?;
    let range: DateRange = serde_json::from_value(body.get("range").cloned().ok_or("no range")?)
        .map_err(|e| format!("range: {e}"))?;
    let quote: PriceBreakdown =
        serde_json::from_value(body.get("price").cloned().ok_or("no price")?)
            .map_err(|e| format!("price: {e}"))?;
    let dated = StayPrice::dated(&range, &quote)?;
    body.insert(
        "price".to_string(),
        serde_json::to_value(dated).map_err(|e| e.to_string())?,
    );
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1_held() -> Value {
        json!({"BookingHeld": {
            "booking_id": "0190b9a2-0000-7000-8000-000000000010",
            "listing_id": "0190b9a2-0000-7000-8000-000000000011",
            "host_id": "0190b9a2-0000-7000-8000-000000000012",
            "guest_id": "0190b9a2-0000-7000-8000-000000000013",
            "range": {"check_in": "2027-03-01", "check_out": "2027-03-03"},
            "guests": 2,
            "channel": "api",
            "price": {"nights": 2, "nightly_kzt": [20000, 25000], "nights_total_kzt": 45000,
                      "cleaning_fee_kzt": 5000, "total_kzt": 50000},
            "cancellation_policy": "moderate",
            "hold_expires_at": "2027-02-01T10:00:00Z"
        }})
    }

    #[test]
    fn booking_held_v1_gets_dated_nights() {
        let v2 = to_current("Booking", "BookingHeld", "1.0", v1_held()).unwrap();
        assert_eq!(
            v2["BookingHeld"]["price"],
            json!({"nightly": [{"date": "2027-03-01", "price_kzt": 20000},
                               {"date": "2027-03-02", "price_kzt": 25000}],
                   "nights_total_kzt": 45000, "cleaning_fee_kzt": 5000, "total_kzt": 50000})
        );
        // Everything else is as stored.
        assert_eq!(
            v2["BookingHeld"]["range"],
            v1_held()["BookingHeld"]["range"]
        );
    }

    #[test]
    fn a_v1_quote_for_other_nights_is_refused() {
        let mut bad = v1_held();
        bad["BookingHeld"]["price"]["nightly_kzt"] = json!([20000]);
        assert!(matches!(
            to_current("Booking", "BookingHeld", "1.0", bad),
            Err(DecodeError::Upcast { .. })
        ));
    }

    #[test]
    fn the_cqrs_chain_upcasts_and_marks_the_version() {
        let chain = Chain;
        assert!(chain.can_upcast("BookingHeld", "1.0"));
        assert!(!chain.can_upcast("BookingHeld", "2.0"));
        assert!(!chain.can_upcast("BookingConfirmed", "1.0"));
        let event = SerializedEvent {
            aggregate_id: "b".into(),
            sequence: 1,
            aggregate_type: "Booking".into(),
            event_type: "BookingHeld".into(),
            event_version: "1.0".into(),
            payload: v1_held(),
            metadata: json!({}),
        };
        let up = chain.upcast(event);
        assert_eq!(up.event_version, "2.0");
        assert!(up.payload["BookingHeld"]["price"]["nightly"].is_array());
    }

    #[test]
    fn every_upcaster_leads_to_a_known_version() {
        for u in UPCASTERS {
            let aggregate = VERSIONS
                .iter()
                .find(|(_, types)| types.iter().any(|(t, _)| *t == u.event_type))
                .map(|(a, _)| *a)
                .expect("upcaster of a known event type");
            let current = current_version(aggregate, u.event_type).unwrap();
            assert!(
                u.to == current
                    || UPCASTERS
                        .iter()
                        .any(|n| n.event_type == u.event_type && n.from == u.to)
            );
        }
    }
}
