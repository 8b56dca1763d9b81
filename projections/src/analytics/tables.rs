//! The analytics read model's tables. Every fact carries the interval during which it was
//! true — from the instant (and position) of the event that made it true to the instant of the
//! event that ended it — so a figure "as known at" an instant is a filter on these rows.
//! Instants are microseconds since the epoch (integers compare alike on both backends).
//!
//! Beside the facts, the fold keeps running totals of what is on the books now ([`DaySums`]
//! per city, channel and date; [`ListingMonthSums`] per listing, city and month), so a figure
//! over many nights reads a few totals instead of every night; "as known at" an earlier
//! instant subtracts what changed after it, found through `changed_us`.
use crate::rows::TallyRow;
use crate::table::{col, nullable, Arg, Kind, Row, Table};
use chrono::NaiveDate;
use uuid::Uuid;

/// A listing as it stands now (the fold's state; the history is in [`ListingPeriod`]).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ListingState {
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub city: String,
    pub active: i64,
    /// The local date the listing was created: its nights count from then.
    pub created_on: NaiveDate,
    /// The open period's start.
    pub since_us: i64,
    pub since_position: i64,
}

pub(crate) static LISTING_STATE: Table = Table {
    name: "analytics_listings",
    columns: &[
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("city", Kind::Text),
        col("active", Kind::Int),
        col("created_on", Kind::Date),
        col("since_us", Kind::Int),
        col("since_position", Kind::Int),
    ],
    indexes: &["host_id"],
};

impl Row for ListingState {
    const TABLE: &'static Table = &LISTING_STATE;
    fn key(&self) -> Uuid {
        self.listing_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.listing_id),
            Arg::Id(self.host_id),
            Arg::Text(self.city.clone()),
            Arg::Int(self.active),
            Arg::Date(self.created_on),
            Arg::Int(self.since_us),
            Arg::Int(self.since_position),
        ]
    }
}

/// A period during which a listing had one city and one status (active or not).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ListingPeriod {
    pub period_id: Uuid,
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub city: String,
    pub active: i64,
    pub created_on: NaiveDate,
    pub from_us: i64,
    pub from_position: i64,
    pub to_us: Option<i64>,
    pub to_position: Option<i64>,
}

pub(crate) static LISTING_PERIODS: Table = Table {
    name: "analytics_listing_periods",
    columns: &[
        col("period_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("city", Kind::Text),
        col("active", Kind::Int),
        col("created_on", Kind::Date),
        col("from_us", Kind::Int),
        col("from_position", Kind::Int),
        nullable("to_us", Kind::Int),
        nullable("to_position", Kind::Int),
    ],
    indexes: &["active, from_us", "listing_id"],
};

impl Row for ListingPeriod {
    const TABLE: &'static Table = &LISTING_PERIODS;
    fn key(&self) -> Uuid {
        self.period_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.period_id),
            Arg::Id(self.listing_id),
            Arg::Id(self.host_id),
            Arg::Text(self.city.clone()),
            Arg::Int(self.active),
            Arg::Date(self.created_on),
            Arg::Int(self.from_us),
            Arg::Int(self.from_position),
            Arg::OptInt(self.to_us),
            Arg::OptInt(self.to_position),
        ]
    }
}

/// A booking and the instants it reached each step (`None`: not reached).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct BookingFacts {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub city: String,
    pub channel: String,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    pub nights: i64,
    pub room_kzt: i64,
    pub cleaning_kzt: i64,
    /// Each night's price in night order, `date=price` joined by `;`.
    pub nightly: String,
    pub held_us: i64,
    pub held_position: i64,
    pub confirmed_us: Option<i64>,
    pub confirmed_position: Option<i64>,
    pub checked_in_us: Option<i64>,
    pub completed_us: Option<i64>,
    pub expired_us: Option<i64>,
    pub cancelled_us: Option<i64>,
    pub cancelled_position: Option<i64>,
}

pub(crate) static BOOKING_FACTS: Table = Table {
    name: "analytics_bookings",
    columns: &[
        col("booking_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("city", Kind::Text),
        col("channel", Kind::Text),
        col("check_in", Kind::Date),
        col("check_out", Kind::Date),
        col("nights", Kind::Int),
        col("room_kzt", Kind::Int),
        col("cleaning_kzt", Kind::Int),
        col("nightly", Kind::Text),
        col("held_us", Kind::Int),
        col("held_position", Kind::Int),
        nullable("confirmed_us", Kind::Int),
        nullable("confirmed_position", Kind::Int),
        nullable("checked_in_us", Kind::Int),
        nullable("completed_us", Kind::Int),
        nullable("expired_us", Kind::Int),
        nullable("cancelled_us", Kind::Int),
        nullable("cancelled_position", Kind::Int),
    ],
    indexes: &["check_in", "held_us", "listing_id"],
};

impl Row for BookingFacts {
    const TABLE: &'static Table = &BOOKING_FACTS;
    fn key(&self) -> Uuid {
        self.booking_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.booking_id),
            Arg::Id(self.listing_id),
            Arg::Id(self.host_id),
            Arg::Text(self.city.clone()),
            Arg::Text(self.channel.clone()),
            Arg::Date(self.check_in),
            Arg::Date(self.check_out),
            Arg::Int(self.nights),
            Arg::Int(self.room_kzt),
            Arg::Int(self.cleaning_kzt),
            Arg::Text(self.nightly.clone()),
            Arg::Int(self.held_us),
            Arg::Int(self.held_position),
            Arg::OptInt(self.confirmed_us),
            Arg::OptInt(self.confirmed_position),
            Arg::OptInt(self.checked_in_us),
            Arg::OptInt(self.completed_us),
            Arg::OptInt(self.expired_us),
            Arg::OptInt(self.cancelled_us),
            Arg::OptInt(self.cancelled_position),
        ]
    }
}

/// One sold night of a stay: sold from the confirmation until a cancellation.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct NightFact {
    pub night_id: Uuid,
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub city: String,
    pub channel: String,
    pub night: NaiveDate,
    pub price_kzt: i64,
    /// The stay's cleaning fee on its check-in night, 0 on the others.
    pub cleaning_kzt: i64,
    pub held_position: i64,
    pub sold_from_us: i64,
    pub sold_from_position: i64,
    pub sold_to_us: Option<i64>,
    pub sold_to_position: Option<i64>,
    /// The last instant the night's sold interval changed (the later of its ends).
    pub changed_us: i64,
}

pub(crate) static NIGHT_FACTS: Table = Table {
    name: "analytics_nights",
    columns: &[
        col("night_id", Kind::Id),
        col("booking_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("city", Kind::Text),
        col("channel", Kind::Text),
        col("night", Kind::Date),
        col("price_kzt", Kind::Int),
        col("cleaning_kzt", Kind::Int),
        col("held_position", Kind::Int),
        col("sold_from_us", Kind::Int),
        col("sold_from_position", Kind::Int),
        nullable("sold_to_us", Kind::Int),
        nullable("sold_to_position", Kind::Int),
        col("changed_us", Kind::Int),
    ],
    indexes: &["night", "listing_id, night", "changed_us"],
};

impl Row for NightFact {
    const TABLE: &'static Table = &NIGHT_FACTS;
    fn key(&self) -> Uuid {
        self.night_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.night_id),
            Arg::Id(self.booking_id),
            Arg::Id(self.listing_id),
            Arg::Id(self.host_id),
            Arg::Text(self.city.clone()),
            Arg::Text(self.channel.clone()),
            Arg::Date(self.night),
            Arg::Int(self.price_kzt),
            Arg::Int(self.cleaning_kzt),
            Arg::Int(self.held_position),
            Arg::Int(self.sold_from_us),
            Arg::Int(self.sold_from_position),
            Arg::OptInt(self.sold_to_us),
            Arg::OptInt(self.sold_to_position),
            Arg::Int(self.changed_us),
        ]
    }
}

/// A host's block of nights `[first_night, end_night)`, in force from its blocking until its unblocking.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct BlockFact {
    pub block_id: Uuid,
    pub listing_id: Uuid,
    pub first_night: NaiveDate,
    pub end_night: NaiveDate,
    pub from_us: i64,
    pub from_position: i64,
    pub to_us: Option<i64>,
    pub to_position: Option<i64>,
}

pub(crate) static BLOCK_FACTS: Table = Table {
    name: "analytics_blocks",
    columns: &[
        col("block_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("first_night", Kind::Date),
        col("end_night", Kind::Date),
        col("from_us", Kind::Int),
        col("from_position", Kind::Int),
        nullable("to_us", Kind::Int),
        nullable("to_position", Kind::Int),
    ],
    indexes: &["first_night"],
};

impl Row for BlockFact {
    const TABLE: &'static Table = &BLOCK_FACTS;
    fn key(&self) -> Uuid {
        self.block_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.block_id),
            Arg::Id(self.listing_id),
            Arg::Date(self.first_night),
            Arg::Date(self.end_night),
            Arg::Int(self.from_us),
            Arg::Int(self.from_position),
            Arg::OptInt(self.to_us),
            Arg::OptInt(self.to_position),
        ]
    }
}

/// A payment with what its refunds are attributed to.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct PaymentLink {
    pub payment_id: Uuid,
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub city: String,
    pub channel: String,
}

pub(crate) static PAYMENT_LINKS: Table = Table {
    name: "analytics_payments",
    columns: &[
        col("payment_id", Kind::Id),
        col("booking_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("city", Kind::Text),
        col("channel", Kind::Text),
    ],
    indexes: &[],
};

impl Row for PaymentLink {
    const TABLE: &'static Table = &PAYMENT_LINKS;
    fn key(&self) -> Uuid {
        self.payment_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.payment_id),
            Arg::Id(self.booking_id),
            Arg::Id(self.listing_id),
            Arg::Id(self.host_id),
            Arg::Text(self.city.clone()),
            Arg::Text(self.channel.clone()),
        ]
    }
}

/// Money returned to a guest, on the local date Kaspi returned it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RefundFact {
    pub refund_key: Uuid,
    pub payment_id: Uuid,
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub city: String,
    pub channel: String,
    pub refund_date: NaiveDate,
    pub amount_kzt: i64,
    pub at_us: i64,
    pub position: i64,
}

pub(crate) static REFUND_FACTS: Table = Table {
    name: "analytics_refunds",
    columns: &[
        col("refund_key", Kind::Id),
        col("payment_id", Kind::Id),
        col("booking_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("city", Kind::Text),
        col("channel", Kind::Text),
        col("refund_date", Kind::Date),
        col("amount_kzt", Kind::Int),
        col("at_us", Kind::Int),
        col("position", Kind::Int),
    ],
    indexes: &["refund_date", "at_us"],
};

impl Row for RefundFact {
    const TABLE: &'static Table = &REFUND_FACTS;
    fn key(&self) -> Uuid {
        self.refund_key
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.refund_key),
            Arg::Id(self.payment_id),
            Arg::Id(self.booking_id),
            Arg::Id(self.listing_id),
            Arg::Id(self.host_id),
            Arg::Text(self.city.clone()),
            Arg::Text(self.channel.clone()),
            Arg::Date(self.refund_date),
            Arg::Int(self.amount_kzt),
            Arg::Int(self.at_us),
            Arg::Int(self.position),
        ]
    }
}

/// What is on the books now for one city, channel and date: nights sold and their room
/// revenue (the date a night), cleaning fees of sold stays (the date their check-in), refunds
/// (the date they were returned). The city and channel are the booking's.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct DaySums {
    pub sum_id: Uuid,
    pub city: String,
    pub channel: String,
    pub day: NaiveDate,
    pub nights: i64,
    pub room_kzt: i64,
    pub cleaning_kzt: i64,
    pub refunds_kzt: i64,
}

/// The summed columns of [`DaySums`] and [`ListingMonthSums`].
const SUMMED: &[&str] = &["nights", "room_kzt", "cleaning_kzt", "refunds_kzt"];

pub(crate) static DAY_SUMS: Table = Table {
    name: "analytics_day_sums",
    columns: &[
        col("sum_id", Kind::Id),
        col("city", Kind::Text),
        col("channel", Kind::Text),
        col("day", Kind::Date),
        col("nights", Kind::Int),
        col("room_kzt", Kind::Int),
        col("cleaning_kzt", Kind::Int),
        col("refunds_kzt", Kind::Int),
    ],
    indexes: &["day"],
};

impl DaySums {
    pub fn new(city: &str, channel: &str, day: NaiveDate) -> DaySums {
        let name = format!("{city}\u{1f}{channel}\u{1f}{day}");
        DaySums {
            sum_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
            city: city.to_string(),
            channel: channel.to_string(),
            day,
            nights: 0,
            room_kzt: 0,
            cleaning_kzt: 0,
            refunds_kzt: 0,
        }
    }
}

impl Row for DaySums {
    const TABLE: &'static Table = &DAY_SUMS;
    fn key(&self) -> Uuid {
        self.sum_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.sum_id),
            Arg::Text(self.city.clone()),
            Arg::Text(self.channel.clone()),
            Arg::Date(self.day),
            Arg::Int(self.nights),
            Arg::Int(self.room_kzt),
            Arg::Int(self.cleaning_kzt),
            Arg::Int(self.refunds_kzt),
        ]
    }
}

impl TallyRow for DaySums {
    const SUMMED: &'static [&'static str] = SUMMED;
    fn merge(&mut self, other: &Self) {
        self.nights += other.nights;
        self.room_kzt += other.room_kzt;
        self.cleaning_kzt += other.cleaning_kzt;
        self.refunds_kzt += other.refunds_kzt;
    }
}

/// The same sums for one listing, city and calendar month (`month` its first day).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ListingMonthSums {
    pub sum_id: Uuid,
    pub listing_id: Uuid,
    pub city: String,
    pub month: NaiveDate,
    pub nights: i64,
    pub room_kzt: i64,
    pub cleaning_kzt: i64,
    pub refunds_kzt: i64,
}

pub(crate) static LISTING_MONTH_SUMS: Table = Table {
    name: "analytics_listing_month_sums",
    columns: &[
        col("sum_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("city", Kind::Text),
        col("month", Kind::Date),
        col("nights", Kind::Int),
        col("room_kzt", Kind::Int),
        col("cleaning_kzt", Kind::Int),
        col("refunds_kzt", Kind::Int),
    ],
    indexes: &["month"],
};

/// The first day of `d`'s month.
pub fn month_of(d: NaiveDate) -> NaiveDate {
    use chrono::Datelike;
    d.with_day(1).unwrap_or(d)
}

impl ListingMonthSums {
    pub fn new(listing_id: Uuid, city: &str, day: NaiveDate) -> ListingMonthSums {
        let month = month_of(day);
        let name = format!("{city}\u{1f}{month}");
        ListingMonthSums {
            sum_id: Uuid::new_v5(&listing_id, name.as_bytes()),
            listing_id,
            city: city.to_string(),
            month,
            nights: 0,
            room_kzt: 0,
            cleaning_kzt: 0,
            refunds_kzt: 0,
        }
    }
}

impl Row for ListingMonthSums {
    const TABLE: &'static Table = &LISTING_MONTH_SUMS;
    fn key(&self) -> Uuid {
        self.sum_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.sum_id),
            Arg::Id(self.listing_id),
            Arg::Text(self.city.clone()),
            Arg::Date(self.month),
            Arg::Int(self.nights),
            Arg::Int(self.room_kzt),
            Arg::Int(self.cleaning_kzt),
            Arg::Int(self.refunds_kzt),
        ]
    }
}

impl TallyRow for ListingMonthSums {
    const SUMMED: &'static [&'static str] = SUMMED;
    fn merge(&mut self, other: &Self) {
        self.nights += other.nights;
        self.room_kzt += other.room_kzt;
        self.cleaning_kzt += other.cleaning_kzt;
        self.refunds_kzt += other.refunds_kzt;
    }
}
