//! Bookings per guest and per host (`GET /bookings`), and the live reservations the
//! reservation sweeper works from.
use crate::event::Decoded;
use crate::projector::Projection;
use crate::table::{col, fetch_all, nullable, Arg, Kind, Row, Table};
use crate::working_set;
use chrono::{DateTime, NaiveDate, Utc};
use domain::booking::{BookingEvent, BookingStatus};
use domain::listing::{ListingEvent, ReservationState};
use domain::payment::{PaymentEvent, PaymentStatus};
use domain::Event;
use serde::Serialize;
use store::{Database, StoreError};
use uuid::Uuid;

/// One row of `GET /bookings`.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct BookingRow {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub guest_id: Uuid,
    pub status: String,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    pub guests: i64,
    pub total_kzt: i64,
    pub channel: String,
    pub hold_expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// What the confirming payment brought.
    pub paid_kzt: i64,
    /// What a cancellation gives back.
    pub refund_kzt: i64,
    /// The position of the last event that changed the booking.
    pub position: i64,
}

static BOOKING_LIST: Table = Table {
    name: "booking_list",
    columns: &[
        col("booking_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("guest_id", Kind::Id),
        col("status", Kind::Text),
        col("check_in", Kind::Date),
        col("check_out", Kind::Date),
        col("guests", Kind::Int),
        col("total_kzt", Kind::Int),
        col("channel", Kind::Text),
        col("hold_expires_at", Kind::Time),
        col("created_at", Kind::Time),
        col("paid_kzt", Kind::Int),
        col("refund_kzt", Kind::Int),
        col("position", Kind::Int),
    ],
    indexes: &[
        "guest_id, booking_id",
        "host_id, booking_id",
        "status, check_in",
        "status, check_out",
    ],
};

impl Row for BookingRow {
    const TABLE: &'static Table = &BOOKING_LIST;
    fn key(&self) -> Uuid {
        self.booking_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.booking_id),
            Arg::Id(self.listing_id),
            Arg::Id(self.host_id),
            Arg::Id(self.guest_id),
            Arg::Text(self.status.clone()),
            Arg::Date(self.check_in),
            Arg::Date(self.check_out),
            Arg::Int(self.guests),
            Arg::Int(self.total_kzt),
            Arg::Text(self.channel.clone()),
            Arg::Time(self.hold_expires_at),
            Arg::Time(self.created_at),
            Arg::Int(self.paid_kzt),
            Arg::Int(self.refund_kzt),
            Arg::Int(self.position),
        ]
    }
}

/// A booking's payment, as the payment keeper and the reconciliation see it.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct PaymentRow {
    pub payment_id: Uuid,
    pub booking_id: Uuid,
    pub status: String,
    pub amount_kzt: i64,
    /// Refunds decided.
    pub refund_requested_kzt: i64,
    /// Refunds Kaspi returned.
    pub refunded_kzt: i64,
    /// Kaspi's payment id, once a link was made.
    pub kaspi_payment_id: Option<i64>,
    /// Notifications refused for a sum that did not match.
    pub mismatches: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub position: i64,
}

static PAYMENT_LIST: Table = Table {
    name: "payment_list",
    columns: &[
        col("payment_id", Kind::Id),
        col("booking_id", Kind::Id),
        col("status", Kind::Text),
        col("amount_kzt", Kind::Int),
        col("refund_requested_kzt", Kind::Int),
        col("refunded_kzt", Kind::Int),
        nullable("kaspi_payment_id", Kind::Int),
        col("mismatches", Kind::Int),
        col("created_at", Kind::Time),
        col("updated_at", Kind::Time),
        col("position", Kind::Int),
    ],
    indexes: &["status, created_at", "booking_id"],
};

impl Row for PaymentRow {
    const TABLE: &'static Table = &PAYMENT_LIST;
    fn key(&self) -> Uuid {
        self.payment_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.payment_id),
            Arg::Id(self.booking_id),
            Arg::Text(self.status.clone()),
            Arg::Int(self.amount_kzt),
            Arg::Int(self.refund_requested_kzt),
            Arg::Int(self.refunded_kzt),
            Arg::OptInt(self.kaspi_payment_id),
            Arg::Int(self.mismatches),
            Arg::Time(self.created_at),
            Arg::Time(self.updated_at),
            Arg::Int(self.position),
        ]
    }
}

/// A held or confirmed reservation on a listing's calendar.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct LiveReservation {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub state: String,
    pub hold_expires_at: DateTime<Utc>,
    pub reserved_at: DateTime<Utc>,
}

static LIVE_RESERVATIONS: Table = Table {
    name: "live_reservations",
    columns: &[
        col("booking_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("state", Kind::Text),
        col("hold_expires_at", Kind::Time),
        col("reserved_at", Kind::Time),
    ],
    indexes: &["state, hold_expires_at"],
};

impl Row for LiveReservation {
    const TABLE: &'static Table = &LIVE_RESERVATIONS;
    fn key(&self) -> Uuid {
        self.booking_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.booking_id),
            Arg::Id(self.listing_id),
            Arg::Text(self.state.clone()),
            Arg::Time(self.hold_expires_at),
            Arg::Time(self.reserved_at),
        ]
    }
}

working_set!(BookingsSet {
    bookings: BookingRow,
    reservations: LiveReservation,
    payments: PaymentRow,
});

/// Whose bookings to list.
#[derive(Clone, Copy, Debug)]
pub enum BookingFilter {
    Guest(Uuid),
    Host(Uuid),
    All,
}

/// A reservation the sweeper should look at.
#[derive(Clone, Debug, PartialEq)]
pub struct DueReservation {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub state: ReservationState,
    /// The booking's status in the read model; `None` when no booking was ever recorded.
    pub booking_status: Option<BookingStatus>,
}

pub struct BookingsProjection;

/// An instant from an event, to the microsecond: what PostgreSQL keeps, so a row folded in
/// memory equals the same row read back.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

impl Projection for BookingsProjection {
    type Set = BookingsSet;
    const NAME: &'static str = "bookings";
    const VERSION: i64 = 3;
    const TABLES: &'static [&'static Table] = &[&BOOKING_LIST, &LIVE_RESERVATIONS, &PAYMENT_LIST];

    fn want(set: &mut BookingsSet, e: &Decoded) {
        match &e.event {
            Event::Booking(_) => set.bookings.want(e.aggregate_id),
            Event::Payment(_) => set.payments.want(e.aggregate_id),
            Event::Listing(
                ListingEvent::DatesReserved { booking_id, .. }
                | ListingEvent::ReservationConfirmed { booking_id }
                | ListingEvent::DatesReleased { booking_id, .. }
                | ListingEvent::HoldExtended { booking_id, .. },
            ) => set.reservations.want(*booking_id),
            Event::Listing(_) | Event::User(_) => {}
        }
    }

    fn apply(set: &mut BookingsSet, e: &Decoded) {
        let id = e.aggregate_id;
        let status = match &e.event {
            Event::Booking(event) => match event {
                BookingEvent::BookingHeld { .. } => {
                    if let Some(row) = booking_held(e, event) {
                        set.bookings.put(row);
                    }
                    return;
                }
                BookingEvent::BookingConfirmed { paid_kzt, .. } => {
                    set.bookings.update(id, |row| row.paid_kzt = paid_kzt.0);
                    "confirmed"
                }
                BookingEvent::BookingCancelled { refund_kzt, .. } => {
                    set.bookings.update(id, |row| row.refund_kzt = refund_kzt.0);
                    "cancelled"
                }
                BookingEvent::BookingExpired {} => "expired",
                BookingEvent::BookingCheckedIn {} => "checked_in",
                BookingEvent::BookingCompleted {} => "completed",
                BookingEvent::BookingReviewed { .. } => return,
                BookingEvent::BookingHoldExtended {
                    hold_expires_at, ..
                } => {
                    set.bookings.update(id, |row| {
                        row.hold_expires_at = micros(*hold_expires_at);
                        row.position = e.position;
                    });
                    return;
                }
            },
            Event::Payment(event) => {
                apply_payment(set, e, event);
                return;
            }
            Event::Listing(ListingEvent::DatesReserved {
                booking_id,
                hold_expires_at,
                ..
            }) => {
                set.reservations.put(LiveReservation {
                    booking_id: *booking_id,
                    listing_id: id,
                    state: "held".to_string(),
                    hold_expires_at: micros(*hold_expires_at),
                    reserved_at: e.recorded_at,
                });
                return;
            }
            Event::Listing(ListingEvent::ReservationConfirmed { booking_id }) => {
                set.reservations
                    .update(*booking_id, |r| r.state = "confirmed".to_string());
                return;
            }
            Event::Listing(ListingEvent::DatesReleased { booking_id, .. }) => {
                set.reservations.remove(*booking_id);
                return;
            }
            Event::Listing(ListingEvent::HoldExtended {
                booking_id,
                hold_expires_at,
            }) => {
                set.reservations.update(*booking_id, |r| {
                    r.hold_expires_at = micros(*hold_expires_at)
                });
                return;
            }
            Event::Listing(_) | Event::User(_) => return,
        };
        set.bookings.update(id, |row| {
            row.status = status.to_string();
            row.position = e.position;
        });
    }
}

fn apply_payment(set: &mut BookingsSet, e: &Decoded, event: &PaymentEvent) {
    let id = e.aggregate_id;
    if let PaymentEvent::PaymentCreated {
        booking_id,
        amount_kzt,
        ..
    } = event
    {
        set.payments.put(PaymentRow {
            payment_id: id,
            booking_id: *booking_id,
            status: "pending".to_string(),
            amount_kzt: amount_kzt.0,
            refund_requested_kzt: 0,
            refunded_kzt: 0,
            kaspi_payment_id: None,
            mismatches: 0,
            created_at: e.recorded_at,
            updated_at: e.recorded_at,
            position: e.position,
        });
        return;
    }
    set.payments.update(id, |row| {
        match event {
            PaymentEvent::PaymentLinkIssued {
                kaspi_payment_id, ..
            } => row.kaspi_payment_id = Some(*kaspi_payment_id),
            PaymentEvent::PaymentSucceeded { .. } => row.status = "succeeded".to_string(),
            PaymentEvent::PaymentAmountMismatched { .. } => row.mismatches += 1,
            PaymentEvent::PaymentFailed { .. } => row.status = "failed".to_string(),
            PaymentEvent::PaymentExpired { .. } => row.status = "expired".to_string(),
            PaymentEvent::RefundRequested { amount_kzt, .. } => {
                row.refund_requested_kzt += amount_kzt.0
            }
            PaymentEvent::PaymentRefunded {
                total_refunded_kzt, ..
            } => {
                row.refunded_kzt = total_refunded_kzt.0;
                row.status = if row.refunded_kzt >= row.amount_kzt {
                    "refunded"
                } else {
                    "partially_refunded"
                }
                .to_string();
            }
            PaymentEvent::PaymentCreated { .. } => {}
        }
        row.updated_at = e.recorded_at;
        row.position = e.position;
    });
}

fn booking_held(e: &Decoded, event: &BookingEvent) -> Option<BookingRow> {
    let BookingEvent::BookingHeld {
        listing_id,
        host_id,
        guest_id,
        range,
        guests,
        channel,
        price,
        hold_expires_at,
        ..
    } = event
    else {
        return None;
    };
    Some(BookingRow {
        booking_id: e.aggregate_id,
        listing_id: *listing_id,
        host_id: *host_id,
        guest_id: *guest_id,
        status: "held".to_string(),
        check_in: range.check_in(),
        check_out: range.check_out(),
        guests: i64::from(*guests),
        total_kzt: price.total_kzt.0,
        channel: channel.as_str().to_string(),
        hold_expires_at: micros(*hold_expires_at),
        created_at: e.recorded_at,
        paid_kzt: 0,
        refund_kzt: 0,
        position: e.position,
    })
}

/// A payment the keeper should look at, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct DuePayment {
    pub payment_id: Uuid,
    pub booking_id: Uuid,
    pub status: PaymentStatus,
    pub need: PaymentNeed,
}

/// What the keeper should do about a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentNeed {
    /// Pending long enough to ask Kaspi.
    Reconcile,
    /// Payment and booking disagree, or a refund is still to be returned.
    Settle,
}

/// A stay due to move on (check-in day reached, or departure day reached).
#[derive(Clone, Debug, PartialEq)]
pub struct DueStay {
    pub booking_id: Uuid,
    pub status: BookingStatus,
}

/// A status column read back: a value the fold never writes is a broken read model.
fn parsed<T>(parse: fn(&str) -> Option<T>, text: &str, column: &str) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| StoreError::Integrity(format!("{column}: unknown value {text:?}")))
}

/// Queries on the bookings read model.
impl BookingsProjection {
    /// Payments whose booking and payment disagree, whose refunds are not all returned, or
    /// that have been pending since before `pending_before` (to reconcile with Kaspi).
    pub async fn due_payments(
        db: &Database,
        pending_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DuePayment>, StoreError> {
        let sql = "SELECT p.payment_id, p.booking_id, p.status, \
                CASE WHEN p.status = 'pending' AND p.kaspi_payment_id IS NOT NULL THEN 'reconcile' ELSE 'settle' END AS need \
             FROM payment_list p JOIN booking_list b ON b.booking_id = p.booking_id \
             WHERE (p.status = 'pending' AND (p.created_at <= $1 OR b.status <> 'held')) \
                OR (p.status = 'succeeded' AND b.status IN ('held', 'expired')) \
                OR (p.status IN ('succeeded', 'partially_refunded') AND b.status = 'cancelled' \
                    AND p.refund_requested_kzt < CASE WHEN b.paid_kzt > 0 THEN b.refund_kzt ELSE p.amount_kzt END) \
                OR p.refund_requested_kzt > p.refunded_kzt \
             ORDER BY p.updated_at LIMIT $2";
        #[derive(sqlx::FromRow)]
        struct Due {
            payment_id: Uuid,
            booking_id: Uuid,
            status: String,
            need: String,
        }
        let rows: Vec<Due> =
            fetch_all(db, sql, &[Arg::Time(pending_before), Arg::Int(limit)]).await?;
        rows.into_iter()
            .map(|r| {
                Ok(DuePayment {
                    payment_id: r.payment_id,
                    booking_id: r.booking_id,
                    status: parsed(PaymentStatus::parse, &r.status, "payment_list.status")?,
                    need: if r.need == "reconcile" {
                        PaymentNeed::Reconcile
                    } else {
                        PaymentNeed::Settle
                    },
                })
            })
            .collect()
    }

    /// Confirmed stays whose first night is `check_in_by` or earlier, and checked-in stays
    /// whose departure day is `check_out_by` or earlier.
    pub async fn due_stays(
        db: &Database,
        check_in_by: NaiveDate,
        check_out_by: NaiveDate,
        limit: i64,
    ) -> Result<Vec<DueStay>, StoreError> {
        let sql = "SELECT booking_id, status FROM booking_list \
             WHERE (status = 'confirmed' AND check_in <= $1) \
                OR (status = 'checked_in' AND check_out <= $2) \
             ORDER BY check_in LIMIT $3";
        let rows: Vec<(Uuid, String)> = fetch_all(
            db,
            sql,
            &[
                Arg::Date(check_in_by),
                Arg::Date(check_out_by),
                Arg::Int(limit),
            ],
        )
        .await?;
        rows.into_iter()
            .map(|(booking_id, status)| {
                Ok(DueStay {
                    booking_id,
                    status: parsed(BookingStatus::parse, &status, "booking_list.status")?,
                })
            })
            .collect()
    }

    /// Payments that had notifications refused for a wrong sum, newest first.
    pub async fn mismatched_payments(
        db: &Database,
        limit: i64,
    ) -> Result<Vec<PaymentRow>, StoreError> {
        let sql = format!(
            "{} WHERE mismatches > 0 ORDER BY updated_at DESC LIMIT $1",
            PAYMENT_LIST.select()
        );
        fetch_all(db, &sql, &[Arg::Int(limit)]).await
    }

    /// The payments of these bookings.
    pub async fn payments_of(
        db: &Database,
        bookings: &[Uuid],
    ) -> Result<Vec<PaymentRow>, StoreError> {
        if bookings.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=bookings.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "{} WHERE booking_id IN ({}) ORDER BY created_at DESC",
            PAYMENT_LIST.select(),
            marks.join(", ")
        );
        let args: Vec<Arg> = bookings.iter().map(|b| Arg::Id(*b)).collect();
        fetch_all(db, &sql, &args).await
    }

    /// The guest's bookings whose hold runs past `now`, whatever their status, each with
    /// whether it is still held unpaid (the hold cap counts those).
    pub async fn running_holds(
        db: &Database,
        guest: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, bool)>, StoreError> {
        let sql = "SELECT booking_id, status FROM booking_list \
             WHERE guest_id = $1 AND hold_expires_at > $2";
        let rows: Vec<(Uuid, String)> =
            fetch_all(db, sql, &[Arg::Id(guest), Arg::Time(now)]).await?;
        Ok(rows
            .into_iter()
            .map(|(id, status)| (id, status == "held"))
            .collect())
    }

    /// Bookings newest first, `limit` at most, after the cursor (a booking id).
    pub async fn list(
        db: &Database,
        filter: BookingFilter,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<BookingRow>, StoreError> {
        let (clause, owner) = match filter {
            BookingFilter::Guest(id) => ("guest_id = $1", Some(id)),
            BookingFilter::Host(id) => ("host_id = $1", Some(id)),
            BookingFilter::All => ("$1 IS NULL", None),
        };
        let sql = format!(
            "{} WHERE {clause} AND ($2 IS NULL OR booking_id < $2) ORDER BY booking_id DESC LIMIT $3",
            BOOKING_LIST.select()
        );
        fetch_all(
            db,
            &sql,
            &[Arg::OptId(owner), Arg::OptId(before), Arg::Int(limit)],
        )
        .await
    }

    /// Held reservations whose hold has run out, plus live reservations whose booking is over
    /// or was never recorded (reserved before `orphaned_before`).
    pub async fn due_reservations(
        db: &Database,
        now: DateTime<Utc>,
        orphaned_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueReservation>, StoreError> {
        let sql = "SELECT r.booking_id, r.listing_id, r.state, b.status AS booking_status \
             FROM live_reservations r LEFT JOIN booking_list b ON b.booking_id = r.booking_id \
             WHERE (r.state = 'held' AND r.hold_expires_at <= $1) \
                OR (b.booking_id IS NULL AND r.reserved_at <= $2) \
                OR b.status = 'cancelled' \
                OR (r.state = 'held' AND b.status IN ('expired', 'confirmed', 'checked_in', 'completed')) \
             ORDER BY r.hold_expires_at LIMIT $3";
        let rows: Vec<(Uuid, Uuid, String, Option<String>)> = fetch_all(
            db,
            sql,
            &[Arg::Time(now), Arg::Time(orphaned_before), Arg::Int(limit)],
        )
        .await?;
        rows.into_iter()
            .map(|(booking_id, listing_id, state, booking_status)| {
                Ok(DueReservation {
                    booking_id,
                    listing_id,
                    state: parsed(ReservationState::parse, &state, "live_reservations.state")?,
                    booking_status: booking_status
                        .map(|s| parsed(BookingStatus::parse, &s, "booking_list.status"))
                        .transpose()?,
                })
            })
            .collect()
    }
}
