//! Every event the domain records, as one enum, and the one step that turns a stored event
//! (its type, version and JSON payload) back into it.
//!
//! The read side (projections, the notifier, rebuild, audit) decodes each stored event once
//! with [`Event::decode`] and then matches on variants: no code outside this module looks up
//! payload fields by name. An event stored in an older version is first brought to the current
//! one by the chain in [`crate::upcast`], the same chain the aggregates' repositories use, so
//! history is never rewritten. An event that does not decode is an error, never a default.
use crate::actor::{Channel, Role};
use crate::booking::BookingEvent;
use crate::listing::ListingEvent;
use crate::payment::PaymentEvent;
use crate::upcast;
use crate::user::UserEvent;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// One recorded event of any aggregate.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Listing(ListingEvent),
    Booking(BookingEvent),
    Payment(PaymentEvent),
    User(UserEvent),
}

/// Why a stored event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown aggregate type {0:?}")]
    UnknownAggregate(String),
    #[error("{aggregate_type} has no event type {event_type:?}")]
    UnknownEventType {
        aggregate_type: String,
        event_type: String,
    },
    #[error("{event_type} version {version:?} is not one this code knows (current {current})")]
    UnknownVersion {
        event_type: String,
        version: String,
        current: &'static str,
    },
    #[error("{event_type} {version}: {message}")]
    Upcast {
        event_type: String,
        version: String,
        message: String,
    },
    #[error("{event_type} {version}: payload does not match the event")]
    Payload {
        event_type: String,
        version: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored as {stored:?} but the payload holds {found:?}")]
    TypeMismatch { stored: String, found: String },
    #[error("metadata: {0}")]
    Metadata(#[source] serde_json::Error),
}

impl Event {
    /// Decodes a stored event, upcasting it first when it was stored in an older version.
    pub fn decode(
        aggregate_type: &str,
        event_type: &str,
        event_version: &str,
        payload: &Value,
    ) -> Result<Event, DecodeError> {
        let current = upcast::current_version(aggregate_type, event_type)?;
        if event_version == current {
            return decode_current(aggregate_type, event_type, event_version, payload);
        }
        let payload =
            upcast::to_current(aggregate_type, event_type, event_version, payload.clone())?;
        decode_current(aggregate_type, event_type, current, &payload)
    }

    /// Like [`Event::decode`], straight from the payload's JSON text (rebuild reads text, and
    /// an event in the current version then never becomes a `Value` at all).
    pub fn decode_text(
        aggregate_type: &str,
        event_type: &str,
        event_version: &str,
        payload: &str,
    ) -> Result<Event, DecodeError> {
        let current = upcast::current_version(aggregate_type, event_type)?;
        let payload_error = |source| DecodeError::Payload {
            event_type: event_type.to_string(),
            version: event_version.to_string(),
            source,
        };
        if event_version != current {
            let value: Value = serde_json::from_str(payload).map_err(payload_error)?;
            return Event::decode(aggregate_type, event_type, event_version, &value);
        }
        let event = match aggregate_type {
            "Listing" => Event::Listing(serde_json::from_str(payload).map_err(payload_error)?),
            "Booking" => Event::Booking(serde_json::from_str(payload).map_err(payload_error)?),
            "Payment" => Event::Payment(serde_json::from_str(payload).map_err(payload_error)?),
            "User" => Event::User(serde_json::from_str(payload).map_err(payload_error)?),
            other => return Err(DecodeError::UnknownAggregate(other.to_string())),
        };
        event.checked(event_type)
    }

    /// The event's type name, as stored in `event_type`.
    pub fn event_type(&self) -> String {
        match self {
            Event::Listing(e) => e.event_type(),
            Event::Booking(e) => e.event_type(),
            Event::Payment(e) => e.event_type(),
            Event::User(e) => e.event_type(),
        }
    }

    fn checked(self, stored: &str) -> Result<Event, DecodeError> {
        let found = self.event_type();
        if found != stored {
            return Err(DecodeError::TypeMismatch {
                stored: stored.to_string(),
                found,
            });
        }
        Ok(self)
    }
}

fn decode_current(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    payload: &Value,
) -> Result<Event, DecodeError> {
    fn parse<E: DeserializeOwned>(
        payload: &Value,
        event_type: &str,
        version: &str,
    ) -> Result<E, DecodeError> {
        E::deserialize(payload).map_err(|source| DecodeError::Payload {
            event_type: event_type.to_string(),
            version: version.to_string(),
            source,
        })
    }
    let event = match aggregate_type {
        "Listing" => Event::Listing(parse(payload, event_type, event_version)?),
        "Booking" => Event::Booking(parse(payload, event_type, event_version)?),
        "Payment" => Event::Payment(parse(payload, event_type, event_version)?),
        "User" => Event::User(parse(payload, event_type, event_version)?),
        other => return Err(DecodeError::UnknownAggregate(other.to_string())),
    };
    event.checked(event_type)
}

/// What every event records about the command that caused it (written by the command side,
/// `event_id` stamped by the store).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    pub event_id: Uuid,
    pub command_id: Uuid,
    /// Shared by every command and event of one user action.
    pub correlation_id: Uuid,
    /// The command that led to this one, if any.
    #[serde(default)]
    pub causation_id: Option<Uuid>,
    /// The acting user's id.
    pub actor: Uuid,
    pub role: Role,
    pub channel: Channel,
    pub request_time: DateTime<Utc>,
    /// The correlation id the client sent, if any (ours is `correlation_id`); absent in
    /// events written before it was kept apart.
    #[serde(default)]
    pub client_correlation_id: Option<String>,
    /// What from outside started this command, if anything did: `telegram_update`,
    /// `whatsapp_message`, `kaspi_txn` or `api_request` (absent in older events).
    #[serde(default)]
    pub input_source: Option<String>,
    /// The outside input's own id (the update id, the MessageSid, the txn_id, the request id).
    #[serde(default)]
    pub input_id: Option<String>,
    /// The W3C trace context of the span that wrote the event, when traces were exported.
    #[serde(default)]
    pub traceparent: Option<String>,
}

impl Metadata {
    pub fn decode(metadata: &Value) -> Result<Metadata, DecodeError> {
        Metadata::deserialize(metadata).map_err(DecodeError::Metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_current_event_decodes_from_value_and_text_alike() {
        let payload = json!({"ListingStatusChanged": {"status": "paused"}});
        let from_value = Event::decode("Listing", "ListingStatusChanged", "1.0", &payload).unwrap();
        let from_text = Event::decode_text(
            "Listing",
            "ListingStatusChanged",
            "1.0",
            &payload.to_string(),
        )
        .unwrap();
        assert_eq!(from_value, from_text);
        assert!(matches!(
            from_value,
            Event::Listing(ListingEvent::ListingStatusChanged { .. })
        ));
    }

    #[test]
    fn a_payload_of_another_type_is_refused() {
        let payload = json!({"ListingStatusChanged": {"status": "paused"}});
        let err = Event::decode("Listing", "ListingUpdated", "1.0", &payload).unwrap_err();
        assert!(matches!(err, DecodeError::TypeMismatch { .. }), "{err}");
    }

    #[test]
    fn a_missing_field_is_an_error_not_a_default() {
        let payload = json!({"BookingConfirmed": {"payment_id": Uuid::nil()}});
        let err = Event::decode("Booking", "BookingConfirmed", "1.0", &payload).unwrap_err();
        assert!(matches!(err, DecodeError::Payload { .. }), "{err}");
    }

    #[test]
    fn unknown_types_and_versions_are_errors() {
        let payload = json!({"BookingExpired": {}});
        assert!(matches!(
            Event::decode("Booking", "BookingExpired", "9.0", &payload),
            Err(DecodeError::UnknownVersion { .. })
        ));
        assert!(matches!(
            Event::decode("Booking", "BookingVanished", "1.0", &payload),
            Err(DecodeError::UnknownEventType { .. })
        ));
        assert!(matches!(
            Event::decode("Spaceship", "BookingExpired", "1.0", &payload),
            Err(DecodeError::UnknownAggregate(_))
        ));
    }

    #[test]
    fn metadata_decodes_typed() {
        let meta = json!({
            "event_id": Uuid::now_v7(), "command_id": Uuid::now_v7(),
            "correlation_id": Uuid::now_v7(), "actor": Uuid::nil(), "role": "guest",
            "channel": "telegram", "request_time": "2026-12-01T10:00:00Z", "hash": "ab"
        });
        let m = Metadata::decode(&meta).unwrap();
        assert_eq!(m.role, Role::Guest);
        assert_eq!(m.channel, Channel::Telegram);
        assert_eq!(m.causation_id, None);
        assert_eq!(m.client_correlation_id, None);
        assert!(Metadata::decode(&json!({"role": "guest"})).is_err());
    }
}
