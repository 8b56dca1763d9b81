//! Access codes: the host's door code and instructions, sealed with the master key (bound to
//! the listing) before they are recorded, so no plaintext reaches events, read models or logs;
//! opened only for the booking's guest while the stay is confirmed or checked in, and only
//! inside the stay's window: from `access_opens_before` (CommandsConfig) before check-in (14:00
//! local time) until check-out (12:00). The guest never sees the host's code itself but a code
//! of their own stay, derived from it ([`stay_door_code`]), so a cancelled guest's code does not
//! open the door for the next one. docs/security.md ("Access codes") has the model.
use crate::metadata::CommandMeta;
use crate::service::{listing_err, Commands, FlowError, Written};
use crate::stays::{CHECK_IN_HOUR, CHECK_OUT_HOUR};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use domain::booking::{BookingError, BookingStatus};
use domain::listing::{ListingCommand, ListingError};
use domain::Role;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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
    /// The instructions, and the stay's own door code (never the host's).
    pub access: Access,
    pub valid_from: DateTime<FixedOffset>,
    pub valid_until: DateTime<FixedOffset>,
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

/// The stay is paid, but it is not the time to give its door code out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutsideWindow {
    /// Too early: a guest could read the code, then cancel for a refund.
    #[error("the door code is given out from {opens_at}")]
    NotYetOpen { opens_at: DateTime<FixedOffset> },
    /// The stay is over (check-out has passed).
    #[error("the stay ended at {closed_at}; its door code is no longer given out")]
    Closed { closed_at: DateTime<FixedOffset> },
}

/// `day` at `hour`:00 in Kazakhstan.
fn local_time(day: NaiveDate, hour: u32) -> DateTime<FixedOffset> {
    let tz = FixedOffset::east_opt(domain::KZ_UTC_OFFSET_SECONDS).expect("offset");
    day.and_hms_opt(hour, 0, 0)
        .expect("valid hour")
        .and_local_timezone(tz)
        .single()
        .expect("fixed offsets are unambiguous")
}

/// When a stay's door code may be given out: from `opens_before` before check-in (14:00 local
/// time) until check-out (12:00). The API and the notifier both ask this.
pub fn access_window(
    check_in: NaiveDate,
    check_out: NaiveDate,
    opens_before: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(), OutsideWindow> {
    let opens_at = local_time(check_in, CHECK_IN_HOUR) - opens_before;
    let closed_at = local_time(check_out, CHECK_OUT_HOUR);
    if now < opens_at {
        Err(OutsideWindow::NotYetOpen { opens_at })
    } else if now >= closed_at {
        Err(OutsideWindow::Closed { closed_at })
    } else {
        Ok(())
    }
}

/// The door code of one stay: as many digits as the host's code has characters, drawn from
/// HMAC-SHA256 keyed with the host's code over `zhilego-stay-code:v1:<booking id>` (and a
/// 4-byte big-endian block counter, 0, 1, …, for as many blocks as needed); each byte below
/// 250 gives the digit `byte % 10`, others are skipped, so every digit is equally likely. A
/// lock that knows the host's code computes the same code offline; nobody who knows one
/// stay's code learns another's.
pub fn stay_door_code(host_code: &str, booking_id: Uuid) -> String {
    let len = host_code.chars().count();
    let message = format!("zhilego-stay-code:v1:{booking_id}");
    let mut code = String::with_capacity(len);
    let mut block: u32 = 0;
    while code.len() < len {
        let mut mac = Hmac::<Sha256>::new_from_slice(host_code.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(message.as_bytes());
        mac.update(&block.to_be_bytes());
        for byte in mac.finalize().into_bytes() {
            if byte < 250 && code.len() < len {
                code.push(char::from(b'0' + byte % 10));
            }
        }
        block += 1;
    }
    code
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

    /// The access for a stay: only its guest, only while it is confirmed or checked in, and
    /// only inside its window ([`access_window`]) at the present instant.
    #[tracing::instrument(skip_all, fields(%booking_id, user_id = %actor.user_id), err(level = "debug"))]
    pub async fn access(
        &self,
        booking_id: Uuid,
        actor: domain::Actor,
    ) -> Result<AccessPass, FlowError> {
        self.access_at(booking_id, actor, Utc::now()).await
    }

    /// [`Commands::access`] as of `now`.
    pub async fn access_at(
        &self,
        booking_id: Uuid,
        actor: domain::Actor,
        now: DateTime<Utc>,
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
        let range = booking.range.ok_or(AccessError::NoDates)?;
        access_window(
            range.check_in(),
            range.check_out(),
            self.config.access_opens_before,
            now,
        )?;
        let listing = self
            .listing(booking.listing_id)
            .await?
            .ok_or(FlowError::Listing(ListingError::NotFound))?;
        let sealed = listing.access.as_ref().ok_or(FlowError::AccessNotSet)?;
        let text = self
            .master
            .open(sealed, &access_binding(booking.listing_id))
            .ok_or(AccessError::Unsealable)?;
        let host: Access = serde_json::from_str(&text).map_err(AccessError::Decode)?;
        Ok(AccessPass {
            address: listing.details.address.clone(),
            access: Access {
                door_code: stay_door_code(&host.door_code, booking_id),
                instructions: host.instructions,
            },
            valid_from: local_time(range.check_in(), CHECK_IN_HOUR),
            valid_until: local_time(range.check_out(), CHECK_OUT_HOUR),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_window_opens_before_check_in_and_closes_at_check_out() {
        let (check_in, check_out) = (date("2027-03-10"), date("2027-03-13"));
        let day = chrono::Duration::hours(24);
        let opens_at = FixedOffset::east_opt(5 * 3600)
            .unwrap()
            .with_ymd_and_hms(2027, 3, 9, 14, 0, 0)
            .unwrap();
        assert_eq!(
            access_window(check_in, check_out, day, utc("2027-03-09T08:59:59Z")),
            Err(OutsideWindow::NotYetOpen { opens_at })
        );
        assert_eq!(
            access_window(check_in, check_out, day, utc("2027-03-09T09:00:00Z")),
            Ok(())
        );
        assert_eq!(
            access_window(check_in, check_out, day, utc("2027-03-13T06:59:59Z")),
            Ok(())
        );
        let closed_at = local_time(check_out, CHECK_OUT_HOUR);
        assert_eq!(closed_at.to_rfc3339(), "2027-03-13T12:00:00+05:00");
        assert_eq!(
            access_window(check_in, check_out, day, utc("2027-03-13T07:00:00Z")),
            Err(OutsideWindow::Closed { closed_at })
        );
        // Configurable: 48 hours opens a day earlier.
        assert_eq!(
            access_window(
                check_in,
                check_out,
                chrono::Duration::hours(48),
                utc("2027-03-08T09:00:00Z")
            ),
            Ok(())
        );
    }

    #[test]
    fn each_stay_has_its_own_code_of_the_host_codes_length() {
        let a = Uuid::parse_str("0190b9a2-0000-7000-8000-000000000001").unwrap();
        let b = Uuid::parse_str("0190b9a2-0000-7000-8000-000000000002").unwrap();
        let code_a = stay_door_code("4821", a);
        assert_eq!(code_a.len(), 4);
        assert!(code_a.chars().all(|c| c.is_ascii_digit()), "{code_a}");
        assert_eq!(stay_door_code("4821", a), code_a, "stable");
        // Pinned: a lock computing the documented derivation gets the same digits.
        assert_eq!(stay_door_code("DOOR-4827-ZQ", a), PINNED_A);
        assert_ne!(stay_door_code("DOOR-4827-ZQ", b), PINNED_A);
        assert_ne!(
            stay_door_code("DOOR-4827-ZQ", a),
            stay_door_code("DOOR-4827-ZR", a)
        );
        // Long codes take more than one HMAC block.
        let long = stay_door_code(&"Ж".repeat(64), a);
        assert_eq!(long.len(), 64);
        assert!(long.chars().all(|c| c.is_ascii_digit()));
    }

    /// Computed apart from this code (Python's `hmac`), from the documented derivation.
    const PINNED_A: &str = "308941341556";
}
