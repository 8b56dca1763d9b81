//! [`Commands`]: every change the API and bots can ask for, and the flows between aggregates.
use crate::executor::{CommandError, Executed, Executor, Joint, StoreFailure};
use crate::metadata::CommandMeta;
use crate::personal::{MasterKey, PersonalData};
use chrono::{DateTime, Utc};
use domain::booking::{Booking, BookingCommand, BookingError, BookingStatus};
use domain::listing::{
    Listing, ListingChanges, ListingCommand, ListingDetails, ListingError, ListingEvent,
    ListingStatus, ReleaseReason,
};
use domain::payment::Payment;
use domain::user::{Language, PersonName, PhoneNumber, User, UserCommand, UserError};
use domain::{local_date, DateRange};
use kaspi::PaymentProvider;
use std::sync::Arc;
use std::time::Duration;
use store::Database;
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct CommandsConfig {
    /// How long a booking holds its nights while awaiting payment.
    pub hold: Duration,
    /// Attempts per command when other processes keep writing the same aggregate first.
    pub max_attempts: u32,
    /// A listing keeps a snapshot every this many events, so a busy calendar loads fast.
    pub listing_snapshot_every: usize,
    /// How many listings the command side keeps in memory between commands (0: none).
    pub listing_cache: usize,
    /// How long before check-in a stay's door code is given out (`access::access_window`).
    pub access_opens_before: chrono::Duration,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            hold: Duration::from_secs(15 * 60),
            max_attempts: 30,
            listing_snapshot_every: 50,
            listing_cache: 10_000,
            access_opens_before: chrono::Duration::hours(24),
        }
    }
}

/// Why a flow did not go through.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Listing(ListingError),
    #[error(transparent)]
    Booking(BookingError),
    #[error(transparent)]
    User(UserError),
    #[error(transparent)]
    Payment(domain::payment::PaymentError),
    /// Kaspi did not answer usefully (down, timing out); nothing was charged.
    #[error("Kaspi is not answering: {0}")]
    ProviderUnavailable(#[source] kaspi::KaspiError),
    /// Kaspi answered and refused.
    #[error("Kaspi refused: {0}")]
    ProviderRefused(#[source] kaspi::KaspiError),
    /// This process was built without a payment provider.
    #[error("no payment provider is configured")]
    NoProvider,
    /// The host has not set how guests get in.
    #[error("the host has not set access instructions for this listing yet")]
    AccessNotSet,
    /// The recorded access details cannot be given out.
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    /// A paid stay's door code outside the stay's window.
    #[error(transparent)]
    AccessWindow(#[from] crate::access::OutsideWindow),
    /// A query on the store's own tables (payment accounts, Kaspi's answers) failed.
    #[error("store query failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("too much contention, try again")]
    Busy,
    /// The guest already holds the most unpaid bookings allowed (`ZHILEGO_MAX_HOLDS_PER_GUEST`).
    #[error("the guest already holds {max} unpaid bookings")]
    TooManyHolds { max: u32 },
    /// The event store or a query on it failed.
    #[error("store unavailable: {0}")]
    Store(#[from] StoreFailure),
}

impl FlowError {
    fn from_command<E: std::error::Error>(
        e: CommandError<E>,
        domain: impl FnOnce(E) -> FlowError,
    ) -> Self {
        match e {
            CommandError::Rejected(e) => domain(e),
            CommandError::Busy => FlowError::Busy,
            CommandError::Store(s) => FlowError::Store(s),
        }
    }
}

pub(crate) fn listing_err(e: CommandError<ListingError>) -> FlowError {
    FlowError::from_command(e, FlowError::Listing)
}

pub(crate) fn booking_err(e: CommandError<BookingError>) -> FlowError {
    FlowError::from_command(e, FlowError::Booking)
}

/// A guest's request for a stay.
#[derive(Clone, Debug)]
pub struct BookRequest {
    pub listing_id: Uuid,
    pub range: DateRange,
    pub guests: u32,
}

/// A change's result and the global position a reader can wait for.
#[derive(Debug)]
pub struct Written<T> {
    pub value: T,
    pub position: i64,
}

pub struct Commands {
    pub(crate) config: CommandsConfig,
    pub(crate) listings: Executor<Listing>,
    pub(crate) bookings: Executor<Booking>,
    pub(crate) payments: Executor<Payment>,
    pub(crate) users: Executor<User>,
    pub(crate) personal: PersonalData,
    pub(crate) master: MasterKey,
    pub(crate) db: Database,
    /// Where payments go (Kaspi, or its sandbox); without one they are refused as unavailable.
    pub(crate) provider: Option<Arc<dyn PaymentProvider>>,
    /// Serializes notifications with the same `txn_id` inside this process.
    pub(crate) notification_locks: Vec<tokio::sync::Mutex<()>>,
    /// Called after every successful write (the projection runner's nudge).
    on_write: Box<dyn Fn() + Send + Sync>,
    /// The cap on each guest's unpaid holds; none without a read model to count on.
    hold_cap: Option<crate::holds::HoldCap>,
}

impl Commands {
    pub fn new(db: Database, config: CommandsConfig, master_key: MasterKey) -> Self {
        Commands {
            personal: PersonalData::new(db.clone(), master_key.clone()),
            master: master_key,
            payments: Executor::new(db.clone(), None, config.max_attempts, 0),
            provider: None,
            notification_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            listings: Executor::new(
                db.clone(),
                Some(config.listing_snapshot_every),
                config.max_attempts,
                config.listing_cache,
            ),
            bookings: Executor::new(db.clone(), None, config.max_attempts, 0),
            users: Executor::new(db.clone(), None, config.max_attempts, 0),
            db,
            config,
            on_write: Box::new(|| {}),
            hold_cap: None,
        }
    }

    /// Caps each guest's unpaid holds (see [`crate::holds`]).
    pub fn with_hold_cap(mut self, cap: crate::holds::HoldCap) -> Self {
        self.hold_cap = Some(cap);
        self
    }

    pub fn on_write(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_write = Box::new(f);
        self
    }

    /// Takes payments through `provider` (Kaspi's live API or the sandbox).
    pub fn with_provider(mut self, provider: Arc<dyn PaymentProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Tells the read side something was appended.
    pub(crate) fn wrote(&self) {
        (self.on_write)();
    }

    /// Wraps a result with the global position of the aggregate's newest event, and tells
    /// the read side when something was appended.
    pub(crate) async fn written<A, T>(
        &self,
        executor: &Executor<A>,
        id: Uuid,
        e: &Executed<A>,
        value: T,
    ) -> Result<Written<T>, FlowError>
    where
        A: cqrs_es::Aggregate<Services = ()> + Clone,
        A::Command: Clone,
    {
        if !e.events.is_empty() {
            (self.on_write)();
        }
        let position = match e.position {
            Some(position) => Some(position),
            None => executor.position(id, e.sequence).await.map_err(store_err)?,
        };
        Ok(Written {
            value,
            position: position.unwrap_or(0),
        })
    }

    // ----- listings -------------------------------------------------------------------------

    /// Runs a host-side command on a listing; `value` picks the answer from the result.
    pub(crate) async fn on_listing<T>(
        &self,
        listing_id: Uuid,
        cmd: ListingCommand,
        meta: &CommandMeta,
        value: impl FnOnce(&Listing) -> T,
    ) -> Result<Written<T>, FlowError> {
        let done = self
            .listings
            .execute(listing_id, cmd, meta)
            .await
            .map_err(listing_err)?;
        let answer = value(&done.aggregate);
        self.written(&self.listings, listing_id, &done, answer)
            .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %host_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn create_listing(
        &self,
        host_id: Uuid,
        details: ListingDetails,
        status: ListingStatus,
        meta: &CommandMeta,
    ) -> Result<Written<Listing>, FlowError> {
        let listing_id = Uuid::now_v7();
        let cmd = ListingCommand::CreateListing {
            listing_id,
            host_id,
            details,
            status,
        };
        self.on_listing(listing_id, cmd, meta, |l| l.clone()).await
    }

    #[tracing::instrument(skip_all, fields(%listing_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn update_listing(
        &self,
        listing_id: Uuid,
        changes: ListingChanges,
        meta: &CommandMeta,
    ) -> Result<Written<Listing>, FlowError> {
        let cmd = ListingCommand::UpdateListing {
            actor: meta.actor,
            changes,
        };
        self.on_listing(listing_id, cmd, meta, |l| l.clone()).await
    }

    /// The listing as the event store has it, or `None`.
    #[tracing::instrument(skip_all, fields(%listing_id), err(level = "debug"))]
    pub async fn listing(&self, listing_id: Uuid) -> Result<Option<Listing>, FlowError> {
        let listing = self.listings.load(listing_id).await.map_err(listing_err)?;
        Ok(listing.id.map(|_| listing))
    }

    #[tracing::instrument(skip_all, fields(%listing_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn block_dates(
        &self,
        listing_id: Uuid,
        range: DateRange,
        reason: String,
        meta: &CommandMeta,
    ) -> Result<Written<Uuid>, FlowError> {
        let block_id = Uuid::now_v7();
        let cmd = ListingCommand::BlockDates {
            actor: meta.actor,
            block_id,
            range,
            reason,
            today: local_date(Utc::now()),
        };
        self.on_listing(listing_id, cmd, meta, |_| block_id).await
    }

    #[tracing::instrument(skip_all, fields(%listing_id, %block_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn unblock_dates(
        &self,
        listing_id: Uuid,
        block_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<Written<()>, FlowError> {
        let cmd = ListingCommand::UnblockDates {
            actor: meta.actor,
            block_id,
        };
        self.on_listing(listing_id, cmd, meta, |_| ()).await
    }

    // ----- bookings -------------------------------------------------------------------------

    /// Reserves the nights on the listing's calendar and opens the booking as held, in one
    /// write: both are in the store or neither is (a refused booking leaves no reservation to
    /// release).
    #[tracing::instrument(skip_all, fields(listing_id = %request.listing_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn book(
        &self,
        request: BookRequest,
        meta: &CommandMeta,
    ) -> Result<Written<Booking>, FlowError> {
        let booking_id = Uuid::now_v7();
        let guest_id = meta.actor.user_id;
        if let Some(cap) = &self.hold_cap {
            cap.check(guest_id).await?;
        }
        let now = Utc::now();
        let hold_expires_at = now
            + chrono::Duration::from_std(self.config.hold).unwrap_or(chrono::Duration::minutes(15));
        let reserve = ListingCommand::ReserveDates {
            booking_id,
            guest_id,
            range: request.range,
            guests: request.guests,
            today: local_date(now),
            hold_expires_at,
        };
        let hold = |listing: &Listing, reserved: &[ListingEvent]| {
            let price = reserved
                .iter()
                .find_map(|e| match e {
                    ListingEvent::DatesReserved { price, .. } => Some(price.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    StoreFailure::Query(store::StoreError::Integrity(
                        "reservation recorded no price".into(),
                    ))
                })?;
            Ok(BookingCommand::HoldBooking {
                booking_id,
                listing_id: request.listing_id,
                host_id: listing.host_id,
                guest_id,
                range: request.range,
                guests: request.guests,
                channel: meta.channel,
                price,
                cancellation_policy: listing.details.cancellation_policy,
                hold_expires_at,
            })
        };
        let step_meta = meta.follow_up();
        let outcome = self
            .listings
            .execute_then(
                request.listing_id,
                reserve,
                meta,
                &self.bookings,
                booking_id,
                &step_meta,
                hold,
            )
            .await;
        match outcome {
            Ok((_, booked)) => {
                let written = self
                    .written(
                        &self.bookings,
                        booking_id,
                        &booked,
                        (*booked.aggregate).clone(),
                    )
                    .await?;
                if let Some(cap) = &self.hold_cap {
                    cap.held(guest_id, booking_id, hold_expires_at);
                }
                Ok(written)
            }
            Err(failed) => {
                let unknown = matches!(
                    failed,
                    Joint::First(CommandError::Store(_)) | Joint::Second(CommandError::Store(_))
                );
                // The outcome of a failed write can be unknown (a lost connection during
                // commit): if the booking is there after all, so is its reservation.
                if unknown {
                    if let Ok(b) = self.bookings.load(booking_id).await {
                        if b.status == BookingStatus::Held {
                            (self.on_write)();
                            let position = self
                                .bookings
                                .position(booking_id, 1)
                                .await
                                .ok()
                                .flatten()
                                .unwrap_or(0);
                            return Ok(Written { value: b, position });
                        }
                    }
                }
                Err(match failed {
                    Joint::First(e) => listing_err(e),
                    Joint::Second(e) => booking_err(e),
                })
            }
        }
    }

    /// [`Commands::book`] for a guest who may be asking again for a stay they already hold: a
    /// guest's own held booking of exactly this stay on this listing (its payment link failed
    /// before, say) counts as theirs, and is the answer instead of `DatesUnavailable`. Nothing
    /// is written then. The bots book this way; the REST API keeps answering a second request
    /// for the same stay with 409 (a client retries safely with `Idempotency-Key`).
    #[tracing::instrument(skip_all, fields(listing_id = %request.listing_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn book_or_resume(
        &self,
        request: BookRequest,
        meta: &CommandMeta,
    ) -> Result<Written<Booking>, FlowError> {
        match self.book(request.clone(), meta).await {
            // At the hold cap, the hold the guest asks for again may be one of theirs.
            Err(
                e @ (FlowError::Listing(ListingError::DatesUnavailable)
                | FlowError::TooManyHolds { .. }),
            ) => match self.own_hold(&request, meta.actor.user_id).await {
                Some(held) => Ok(held),
                None => Err(e),
            },
            other => other,
        }
    }

    /// The guest's own booking that holds exactly `request`'s nights, if it is still held.
    /// A lookup that fails is logged and counts as none: the guest then hears the nights are
    /// taken, which is what they are.
    async fn own_hold(&self, request: &BookRequest, guest_id: Uuid) -> Option<Written<Booking>> {
        let listing = match self.listings.load(request.listing_id).await {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(listing_id = %request.listing_id, error = %e, "the listing did not load to look for the guest's own hold");
                return None;
            }
        };
        let booking_id = listing.reservations.iter().find_map(|(booking, r)| {
            (r.guest_id == guest_id
                && r.range == request.range
                && r.state == domain::listing::ReservationState::Held)
                .then_some(*booking)
        })?;
        let current = match self.bookings.current(booking_id).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(%booking_id, error = %e, "the guest's own hold did not load");
                return None;
            }
        };
        if current.aggregate.id.is_none() || current.aggregate.status != BookingStatus::Held {
            return None;
        }
        let booking = (*current.aggregate).clone();
        match self
            .written(&self.bookings, booking_id, &current, booking)
            .await
        {
            Ok(held) => Some(held),
            Err(e) => {
                tracing::warn!(%booking_id, error = %e, "the guest's own hold has no position");
                None
            }
        }
    }

    #[tracing::instrument(skip_all, fields(%booking_id), err(level = "debug"))]
    pub async fn booking(&self, booking_id: Uuid) -> Result<Option<Booking>, FlowError> {
        let b = self.bookings.load(booking_id).await.map_err(booking_err)?;
        Ok(b.id.map(|_| b))
    }

    /// Cancels the booking (refund per policy recorded on it), then frees its nights.
    #[tracing::instrument(skip_all, fields(%booking_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn cancel_booking(
        &self,
        booking_id: Uuid,
        reason: String,
        meta: &CommandMeta,
    ) -> Result<Written<Booking>, FlowError> {
        let cmd = BookingCommand::CancelBooking {
            actor: meta.actor,
            reason,
            today: local_date(Utc::now()),
        };
        let done = self
            .bookings
            .execute(booking_id, cmd, meta)
            .await
            .map_err(booking_err)?;
        let written = self
            .written(&self.bookings, booking_id, &done, (*done.aggregate).clone())
            .await?;
        let position = self
            .release(
                done.aggregate.listing_id,
                booking_id,
                ReleaseReason::Cancelled,
                &meta.follow_up(),
            )
            .await
            .unwrap_or(written.position);
        // The payment follows: a pending link expires, paid money is refunded per the policy.
        self.settle_booking_payment(booking_id, &meta.follow_up())
            .await;
        Ok(Written {
            value: written.value,
            position: position.max(written.position),
        })
    }

    /// The guest's review of a completed stay (once).
    #[tracing::instrument(skip_all, fields(%booking_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn review_booking(
        &self,
        booking_id: Uuid,
        rating: u8,
        text: String,
        meta: &CommandMeta,
    ) -> Result<Written<Booking>, FlowError> {
        let cmd = BookingCommand::Review {
            actor: meta.actor,
            rating,
            text,
        };
        let done = self
            .bookings
            .execute(booking_id, cmd, meta)
            .await
            .map_err(booking_err)?;
        self.written(&self.bookings, booking_id, &done, (*done.aggregate).clone())
            .await
    }

    /// Expires a held booking whose hold ran out and frees its nights. Returns whether the
    /// booking is now expired.
    #[tracing::instrument(skip_all, fields(%booking_id, %listing_id), err(level = "debug"))]
    pub async fn expire_hold(
        &self,
        booking_id: Uuid,
        listing_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, FlowError> {
        let meta = CommandMeta::system();
        match self
            .bookings
            .execute(booking_id, BookingCommand::ExpireHold { now }, &meta)
            .await
        {
            Ok(done) => {
                if !done.events.is_empty() {
                    (self.on_write)();
                }
                self.release(
                    listing_id,
                    booking_id,
                    ReleaseReason::Expired,
                    &meta.follow_up(),
                )
                .await;
                self.settle_booking_payment(booking_id, &meta.follow_up())
                    .await;
                Ok(true)
            }
            Err(CommandError::Rejected(BookingError::HoldNotExpired))
            | Err(CommandError::Rejected(BookingError::WrongStatus(_))) => Ok(false),
            Err(e) => Err(booking_err(e)),
        }
    }

    /// Frees a booking's nights; a no-op when they are already free. Failures are logged:
    /// the reservation sweeper finishes any release that did not happen.
    #[tracing::instrument(skip_all, fields(%listing_id, %booking_id, correlation_id = %meta.correlation_id))]
    pub async fn release(
        &self,
        listing_id: Uuid,
        booking_id: Uuid,
        reason: ReleaseReason,
        meta: &CommandMeta,
    ) -> Option<i64> {
        let cmd = ListingCommand::ReleaseDates { booking_id, reason };
        match self.listings.execute(listing_id, cmd, meta).await {
            Ok(done) => self
                .written(&self.listings, listing_id, &done, ())
                .await
                .ok()
                .map(|w| w.position),
            Err(e) => {
                tracing::warn!(%listing_id, %booking_id, error = %e, "releasing nights failed; the sweeper will retry");
                None
            }
        }
    }

    // ----- users ----------------------------------------------------------------------------

    /// A user's profile with personal data opened (absent once erased).
    #[tracing::instrument(skip_all, fields(%user_id), err(level = "debug"))]
    pub async fn profile(&self, user_id: Uuid) -> Result<Profile, FlowError> {
        let user = self
            .users
            .load(user_id)
            .await
            .map_err(|e| FlowError::from_command(e, FlowError::User))?;
        self.open_profile(user_id, &user).await
    }

    async fn open_profile(&self, user_id: Uuid, user: &User) -> Result<Profile, FlowError> {
        let open = |field: &'static str, sealed: Option<domain::user::Sealed>| async move {
            match sealed {
                Some(s) => self.personal.open(user_id, field, &s).await,
                None => Ok(None),
            }
        };
        let name = open("name", user.name.clone()).await.map_err(store_err)?;
        let phone = open("phone", user.phone.clone()).await.map_err(store_err)?;
        Ok(Profile {
            erased: user.erased || (user.name.is_some() && name.is_none()),
            name,
            phone,
            language: user.language,
        })
    }

    /// Changes the caller's profile; only fields that differ from what is stored are sealed
    /// and written.
    #[tracing::instrument(skip_all, fields(user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn update_profile(
        &self,
        name: Option<PersonName>,
        phone: Option<PhoneNumber>,
        language: Option<Language>,
        meta: &CommandMeta,
    ) -> Result<Written<Profile>, FlowError> {
        let user_id = meta.actor.user_id;
        let current = self.profile(user_id).await?;
        let name = match name {
            Some(n) if current.name.as_deref() != Some(n.as_str()) => Some(
                self.personal
                    .seal(user_id, "name", n.as_str())
                    .await
                    .map_err(store_err)?,
            ),
            _ => None,
        };
        let new_phone = phone
            .as_ref()
            .filter(|p| current.phone.as_deref() != Some(p.as_str()))
            .cloned();
        let phone = match phone {
            Some(p) if current.phone.as_deref() != Some(p.as_str()) => Some(
                self.personal
                    .seal(user_id, "phone", p.as_str())
                    .await
                    .map_err(store_err)?,
            ),
            _ => None,
        };
        let cmd = UserCommand::UpdateProfile {
            user_id,
            name,
            phone,
            language,
        };
        let done = self
            .users
            .execute(user_id, cmd, meta)
            .await
            .map_err(|e| FlowError::from_command(e, FlowError::User))?;
        if let Some(p) = &new_phone {
            self.index_phone(user_id, p).await?;
        }
        let profile = self.open_profile(user_id, &done.aggregate).await?;
        self.written(&self.users, user_id, &done, profile).await
    }

    /// Forgets a user's personal data: the key goes first (from then on nothing sealed with it
    /// opens), then the erasure is recorded.
    #[tracing::instrument(skip_all, fields(%user_id, actor = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn erase_personal_data(
        &self,
        user_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<Written<()>, FlowError> {
        self.personal.erase(user_id).await.map_err(store_err)?;
        self.unindex_phone(user_id).await?;
        let cmd = UserCommand::ErasePersonalData { user_id };
        let done = self
            .users
            .execute(user_id, cmd, meta)
            .await
            .map_err(|e| FlowError::from_command(e, FlowError::User))?;
        self.written(&self.users, user_id, &done, ()).await
    }
}

/// A profile as its owner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub language: Language,
    /// Personal data was erased.
    pub erased: bool,
}

pub(crate) fn store_err(e: store::StoreError) -> FlowError {
    FlowError::Store(StoreFailure::Query(e))
}
