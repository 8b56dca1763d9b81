//! Access codes: the host's door code and instructions, sealed with the master key (bound to
//! the listing) before they are recorded, so no plaintext reaches events, read models or logs;
//! opened only for the booking's guest while the stay is confirmed or checked in.
use crate::metadata::CommandMeta;
use crate::service::{listing_err, Commands, FlowError, Written};
use crate::stays::{CHECK_IN_HOUR, CHECK_OUT_HOUR};
use chrono::DateTime;
use domain::booking::{BookingError, BookingStatus};
use domain::listing::{ListingCommand, ListingError};
use domain::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The door code and instructions as the guest receives them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub instructions: String,
    pub door_code: String,
}

/// A guest's access to the apartment for a stay.
#[derive(Clone, Debug)]
pub struct AccessPass {
    pub address: String,
    pub access: Access,
    pub valid_from: DateTime<chrono::FixedOffset>,
    pub valid_until: DateTime<chrono::FixedOffset>,
}

/// Why recorded access details cannot be given out (the store's data, not the caller, is wrong).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("access details cannot be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    /// Sealed with another key, or for another listing, or damaged.
    #[error("the sealed access details do not open with the master key")]
    Unsealable,
    #[error("the opened access details are not readable: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("a booking without dates")]
    NoDates,
}

/// What the sealed access details are bound to, so they open for this listing only.
fn access_binding(listing_id: Uuid) -> String {
    format!("listing:{listing_id}:access")
}

impl Commands {
    /// The host sets the door code and instructions; they are sealed before they are recorded.
    #[tracing::instrument(skip_all, fields(%listing_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn set_access(
        &self,
        listing_id: Uuid,
        access: Access,
        meta: &CommandMeta,
    ) -> Result<Written<()>, FlowError> {
        let text = serde_json::to_string(&access).map_err(AccessError::Encode)?;
        let sealed = self.master.seal(&text, &access_binding(listing_id));
        let cmd = ListingCommand::SetAccess {
            actor: meta.actor,
            access: sealed,
        };
        let done = self
            .listings
            .execute(listing_id, cmd, meta)
            .await
            .map_err(listing_err)?;
        self.written(&self.listings, listing_id, &done, ()).await
    }

    /// The access for a stay: only its guest, only while it is confirmed or checked in.
    #[tracing::instrument(skip_all, fields(%booking_id, user_id = %actor.user_id), err(level = "debug"))]
    pub async fn access(
        &self,
        booking_id: Uuid,
        actor: domain::Actor,
    ) -> Result<AccessPass, FlowError> {
        let booking = self
            .booking(booking_id)
            .await?
            .ok_or(FlowError::Booking(BookingError::NotFound))?;
        if actor.role != Role::Guest || actor.user_id != booking.guest_id {
            return Err(FlowError::Booking(BookingError::Forbidden));
        }
        if !matches!(
            booking.status,
            BookingStatus::Confirmed | BookingStatus::CheckedIn
        ) {
            return Err(FlowError::Booking(BookingError::WrongStatus(
                booking.status.as_str(),
            )));
        }
        let listing = self
            .listing(booking.listing_id)
            .await?
            .ok_or(FlowError::Listing(ListingError::NotFound))?;
        let sealed = listing.access.as_ref().ok_or(FlowError::AccessNotSet)?;
        let text = self
            .master
            .open(sealed, &access_binding(booking.listing_id))
            .ok_or(AccessError::Unsealable)?;
        let access: Access = serde_json::from_str(&text).map_err(AccessError::Decode)?;
        let range = booking.range.ok_or(AccessError::NoDates)?;
        let tz = chrono::FixedOffset::east_opt(domain::KZ_UTC_OFFSET_SECONDS).expect("offset");
        let at = |day: chrono::NaiveDate, hour: u32| {
            day.and_hms_opt(hour, 0, 0)
                .expect("valid hour")
                .and_local_timezone(tz)
                .single()
                .expect("fixed offsets are unambiguous")
        };
        Ok(AccessPass {
            address: listing.details.address.clone(),
            access,
            valid_from: at(range.check_in(), CHECK_IN_HOUR),
            valid_until: at(range.check_out(), CHECK_OUT_HOUR),
        })
    }
}
