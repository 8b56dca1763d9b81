//! Bookings per guest and per host, and live reservations per listing.
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use store::history::{self, Checkpoint};
use store::{with_pool, Database, StoreError, StoredEvent};
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
    pub guests: i32,
    pub total_kzt: i64,
    pub channel: String,
    pub hold_expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub position: i64,
}

/// Whose bookings to list.
#[derive(Clone, Copy, Debug)]
pub enum BookingFilter {
    Guest(Uuid),
    Host(Uuid),
    All,
}

/// A reservation the sweeper should look at.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct DueReservation {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    /// The booking's status in the read model; `None` when no booking was ever recorded.
    pub booking_status: Option<String>,
}

#[derive(Clone)]
pub struct BookingsProjection {
    db: Database,
}

const NAME: &str = "bookings";

impl BookingsProjection {
    pub fn new(db: Database) -> Self {
        BookingsProjection { db }
    }

    pub fn name(&self) -> &'static str {
        NAME
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    pub async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> = with_pool!(&self.db, pool => {
            sqlx::query_as("SELECT tx, position FROM projection_checkpoints WHERE name = $1")
                .bind(NAME)
                .fetch_optional(pool)
                .await?
        });
        Ok(row
            .map(|(tx, position)| Checkpoint { tx, position })
            .unwrap_or_default())
    }

    /// Applies up to `batch` events after `from` (a hint: events this projection already has
    /// are skipped); returns how many were applied and the checkpoint afterwards.
    pub async fn catch_up_from(
        &self,
        from: Checkpoint,
        batch: i64,
    ) -> Result<(usize, Checkpoint), StoreError> {
        let events = history::events_after(&self.db, from, batch).await?;
        if events.is_empty() {
            return Ok((0, from));
        }
        self.apply_batch(&events).await
    }

    async fn apply_batch(&self, events: &[StoredEvent]) -> Result<(usize, Checkpoint), StoreError> {
        let last = events.last().expect("non-empty").checkpoint();
        // SQLite: take the write lock up front; a read-then-write transaction would fail at
        // once (SQLITE_BUSY_SNAPSHOT) instead of waiting when another writer got in between.
        let begin = match self.db {
            Database::Postgres(_) => "BEGIN",
            Database::Sqlite(_) => "BEGIN IMMEDIATE",
        };
        let _turn = match self.db {
            Database::Sqlite(_) => Some(store::sqlite_write_gate().lock().await),
            Database::Postgres(_) => None,
        };
        let outcome = with_pool!(&self.db, pool => {
            let mut tx = pool.begin_with(begin).await?;
            // Several processes may run this projection; the checkpoint row serializes them
            // (PostgreSQL row lock; SQLite has a single writer anyway).
            let lock_sql = if matches!(self.db, Database::Postgres(_)) {
                "SELECT tx, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE"
            } else {
                "SELECT tx, position FROM projection_checkpoints WHERE name = $1"
            };
            let locked: Option<(i64, i64)> = sqlx::query_as(lock_sql).bind(NAME).fetch_optional(&mut *tx).await?;
            let (cp_tx, cp_pos) = match locked {
                Some(row) => row,
                None => {
                    sqlx::query(
                        "INSERT INTO projection_checkpoints (name, tx, position) VALUES ($1, 0, 0) \
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(NAME)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query_as(lock_sql).bind(NAME).fetch_one(&mut *tx).await?
                }
            };
            let current = Checkpoint { tx: cp_tx, position: cp_pos };
            let mut applied = 0usize;
            for event in events.iter().filter(|e| e.checkpoint() > current) {
                if let Some(change) = Change::of(event) {
                    let (sql, args) = change.statement(event);
                    let mut query = sqlx::query(sql);
                    for arg in args {
                        query = match arg {
                            Arg::Id(v) => query.bind(v),
                            Arg::Text(v) => query.bind(v),
                            Arg::Date(v) => query.bind(v),
                            Arg::Time(v) => query.bind(v),
                            Arg::Int(v) => query.bind(v),
                        };
                    }
                    query.execute(&mut *tx).await?;
                }
                applied += 1;
            }
            if last > current {
                sqlx::query("UPDATE projection_checkpoints SET tx = $2, position = $3 WHERE name = $1")
                    .bind(NAME)
                    .bind(last.tx)
                    .bind(last.position)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            (applied, current.max(last))
        });
        Ok(outcome)
    }

    /// Bookings newest first, `limit` at most, after the cursor (a booking id).
    pub async fn list(
        &self,
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
            "SELECT booking_id, listing_id, host_id, guest_id, status, check_in, check_out, guests, \
             total_kzt, channel, hold_expires_at, created_at, position FROM booking_list \
             WHERE {clause} AND ($2 IS NULL OR booking_id < $2) ORDER BY booking_id DESC LIMIT $3"
        );
        let rows = with_pool!(&self.db, pool => {
            sqlx::query_as::<_, BookingRow>(&sql)
                .bind(owner)
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// Held reservations whose hold has run out, plus live reservations whose booking is over
    /// or was never recorded (reserved before `orphaned_before`).
    pub async fn due_reservations(
        &self,
        now: DateTime<Utc>,
        orphaned_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueReservation>, StoreError> {
        let sql = "SELECT r.booking_id, r.listing_id, b.status AS booking_status \
             FROM live_reservations r LEFT JOIN booking_list b ON b.booking_id = r.booking_id \
             WHERE (r.state = 'held' AND r.hold_expires_at <= $1) \
                OR (b.booking_id IS NULL AND r.reserved_at <= $2) \
                OR b.status IN ('cancelled', 'expired') \
             ORDER BY r.hold_expires_at LIMIT $3";
        let rows = with_pool!(&self.db, pool => {
            sqlx::query_as::<_, DueReservation>(sql)
                .bind(now)
                .bind(orphaned_before)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }
}

/// What one event changes in the read model.
enum Change {
    BookingHeld(BookingRow),
    BookingStatus(Uuid, &'static str),
    Reserved {
        booking_id: Uuid,
        listing_id: Uuid,
        hold_expires_at: DateTime<Utc>,
    },
    ReservationConfirmed(Uuid),
    Released(Uuid),
}

fn field<T: serde::de::DeserializeOwned>(body: &Value, name: &str) -> Option<T> {
    serde_json::from_value(body.get(name)?.clone()).ok()
}

impl Change {
    fn of(e: &StoredEvent) -> Option<Change> {
        let body = e.payload.get(&e.event_type)?;
        let aggregate_id: Uuid = e.aggregate_id.parse().ok()?;
        Some(match (e.aggregate_type.as_str(), e.event_type.as_str()) {
            ("Booking", "BookingHeld") => {
                let range = body.get("range")?;
                let price = body.get("price")?;
                Change::BookingHeld(BookingRow {
                    booking_id: aggregate_id,
                    listing_id: field(body, "listing_id")?,
                    host_id: field(body, "host_id")?,
                    guest_id: field(body, "guest_id")?,
                    status: "held".to_string(),
                    check_in: field(range, "check_in")?,
                    check_out: field(range, "check_out")?,
                    guests: field(body, "guests")?,
                    total_kzt: field(price, "total_kzt")?,
                    channel: field(body, "channel")?,
                    hold_expires_at: field(body, "hold_expires_at")?,
                    created_at: e.recorded_at,
                    position: e.position,
                })
            }
            ("Booking", "BookingConfirmed") => Change::BookingStatus(aggregate_id, "confirmed"),
            ("Booking", "BookingCancelled") => Change::BookingStatus(aggregate_id, "cancelled"),
            ("Booking", "BookingExpired") => Change::BookingStatus(aggregate_id, "expired"),
            ("Booking", "BookingCheckedIn") => Change::BookingStatus(aggregate_id, "checked_in"),
            ("Booking", "BookingCompleted") => Change::BookingStatus(aggregate_id, "completed"),
            ("Listing", "DatesReserved") => Change::Reserved {
                booking_id: field(body, "booking_id")?,
                listing_id: aggregate_id,
                hold_expires_at: field(body, "hold_expires_at")?,
            },
            ("Listing", "ReservationConfirmed") => {
                Change::ReservationConfirmed(field(body, "booking_id")?)
            }
            ("Listing", "DatesReleased") => Change::Released(field(body, "booking_id")?),
            _ => return None,
        })
    }

    /// The statement that records this change, with its arguments in order.
    fn statement(self, e: &StoredEvent) -> (&'static str, Vec<Arg>) {
        match self {
            Change::BookingHeld(row) => (
                "INSERT INTO booking_list (booking_id, listing_id, host_id, guest_id, status, \
                 check_in, check_out, guests, total_kzt, channel, hold_expires_at, created_at, position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (booking_id) DO NOTHING",
                vec![
                    Arg::Id(row.booking_id),
                    Arg::Id(row.listing_id),
                    Arg::Id(row.host_id),
                    Arg::Id(row.guest_id),
                    Arg::Text(row.status),
                    Arg::Date(row.check_in),
                    Arg::Date(row.check_out),
                    Arg::Int(i64::from(row.guests)),
                    Arg::Int(row.total_kzt),
                    Arg::Text(row.channel),
                    Arg::Time(row.hold_expires_at),
                    Arg::Time(row.created_at),
                    Arg::Int(row.position),
                ],
            ),
            Change::BookingStatus(id, status) => (
                "UPDATE booking_list SET status = $2, position = $3 WHERE booking_id = $1",
                vec![Arg::Id(id), Arg::Text(status.to_string()), Arg::Int(e.position)],
            ),
            Change::Reserved {
                booking_id,
                listing_id,
                hold_expires_at,
            } => (
                "INSERT INTO live_reservations (booking_id, listing_id, state, hold_expires_at, reserved_at) \
                 VALUES ($1, $2, 'held', $3, $4) ON CONFLICT (booking_id) DO NOTHING",
                vec![
                    Arg::Id(booking_id),
                    Arg::Id(listing_id),
                    Arg::Time(hold_expires_at),
                    Arg::Time(e.recorded_at),
                ],
            ),
            Change::ReservationConfirmed(id) => (
                "UPDATE live_reservations SET state = 'confirmed' WHERE booking_id = $1",
                vec![Arg::Id(id)],
            ),
            Change::Released(id) => (
                "DELETE FROM live_reservations WHERE booking_id = $1",
                vec![Arg::Id(id)],
            ),
        }
    }
}

/// A statement argument, bound with its backend's native type.
enum Arg {
    Id(Uuid),
    Text(String),
    Date(NaiveDate),
    Time(DateTime<Utc>),
    Int(i64),
}
