//! Stay transitions: a confirmed stay is checked in on its first day and completed on its
//! departure day (the reservation sweeper calls [`Commands::advance_stay`] at those hours).
use crate::executor::CommandError;
use crate::metadata::CommandMeta;
use crate::service::{booking_err, Commands, FlowError};
use domain::booking::{BookingCommand, BookingStatus};
use uuid::Uuid;

/// Check-in from 14:00 and check-out by 12:00, local time.
pub(crate) const CHECK_IN_HOUR: u32 = 14;
pub(crate) const CHECK_OUT_HOUR: u32 = 12;

impl Commands {
    /// Moves a confirmed stay to checked-in on its first day, and a checked-in one to
    /// completed from its departure day. Returns whether anything changed.
    #[tracing::instrument(skip_all, fields(%booking_id), err(level = "debug"))]
    pub async fn advance_stay(
        &self,
        booking_id: Uuid,
        today: chrono::NaiveDate,
    ) -> Result<bool, FlowError> {
        let booking = self.bookings.load(booking_id).await.map_err(booking_err)?;
        let cmd = match booking.status {
            BookingStatus::Confirmed => BookingCommand::CheckIn { today },
            BookingStatus::CheckedIn => BookingCommand::Complete { today },
            _ => return Ok(false),
        };
        match self
            .bookings
            .execute(booking_id, cmd, &CommandMeta::system())
            .await
        {
            Ok(done) => {
                if !done.events.is_empty() {
                    self.wrote();
                }
                Ok(!done.events.is_empty())
            }
            Err(CommandError::Rejected(_)) => Ok(false),
            Err(e) => Err(booking_err(e)),
        }
    }
}
