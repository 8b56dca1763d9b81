//! An admin pauses, archives or restores any listing, with a reason the host sees; and an
//! admin extends a guest's hold. A listing an admin took out of service stays out until an
//! admin restores it: the host cannot switch it back on.
use super::{Listing, ListingError, ListingEvent, ListingStatus, ReservationState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    Pause,
    Archive,
    Restore,
}

impl ModerationAction {
    pub fn parse(s: &str) -> Option<ModerationAction> {
        Some(match s {
            "pause" => ModerationAction::Pause,
            "archive" => ModerationAction::Archive,
            "restore" => ModerationAction::Restore,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModerationAction::Pause => "pause",
            ModerationAction::Archive => "archive",
            ModerationAction::Restore => "restore",
        }
    }
}

/// An admin's hold on a listing, kept while it lasts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moderation {
    pub action: ModerationAction,
    pub reason: String,
    pub by: Uuid,
    /// The status the host had set before, given back on restore.
    pub status_before: ListingStatus,
}

/// The events of one moderation: what the admin decided, then the status it leads to.
pub(super) fn moderate(
    listing: &Listing,
    action: ModerationAction,
    reason: String,
    by: Uuid,
) -> Result<Vec<ListingEvent>, ListingError> {
    listing.id.ok_or(ListingError::NotFound)?;
    let status = match action {
        ModerationAction::Pause => ListingStatus::Paused,
        ModerationAction::Archive => ListingStatus::Archived,
        ModerationAction::Restore => match &listing.moderation {
            Some(m) => m.status_before,
            None => return Err(ListingError::NotModerated),
        },
    };
    let mut events = vec![ListingEvent::ListingModerated { action, reason, by }];
    if status != listing.status {
        events.push(ListingEvent::ListingStatusChanged { status });
    }
    Ok(events)
}

pub(super) fn apply_moderated(
    listing: &mut Listing,
    action: ModerationAction,
    reason: String,
    by: Uuid,
) {
    listing.moderation = match action {
        ModerationAction::Restore => None,
        _ => Some(Moderation {
            action,
            reason,
            by,
            status_before: listing
                .moderation
                .as_ref()
                .map_or(listing.status, |m| m.status_before),
        }),
    };
}

/// The longest an admin may extend a hold to, from now.
pub const MAX_HOLD_EXTENSION: chrono::Duration = chrono::Duration::days(7);

/// The event extending a held reservation's hold to `until`.
pub(super) fn extend_hold(
    listing: &Listing,
    booking_id: Uuid,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<ListingEvent>, ListingError> {
    listing.id.ok_or(ListingError::NotFound)?;
    let r = listing
        .reservations
        .get(&booking_id)
        .ok_or(ListingError::UnknownReservation)?;
    if r.state != ReservationState::Held {
        return Err(ListingError::Invalid {
            field: "booking",
            message: "only a held booking's hold can be extended",
        });
    }
    if until <= now || until > now + MAX_HOLD_EXTENSION {
        return Err(ListingError::Invalid {
            field: "hold_expires_at",
            message: "must be in the future and at most 7 days ahead",
        });
    }
    Ok(
        (until > r.hold_expires_at).then_some(ListingEvent::HoldExtended {
            booking_id,
            hold_expires_at: until,
        }),
    )
}
