//! The analytics read model: occupancy, revenue, the funnel and the rest, as known at any
//! instant, down to the bookings behind each figure.
//!
//! - [`tables`]: the fact rows, each with the interval during which it was true.
//! - this module: the fold ([`AnalyticsProjection`]), a deterministic function of the events.
//! - [`figures`]: the figures computed from the facts valid at an instant (`as_of`).
//! - [`definitions`]: the definitions every answer carries (docs/analytics.md has the same).
pub mod compute;
pub mod definitions;
pub mod figures;
pub mod tables;
pub mod totals;

use crate::event::Decoded;
use crate::projector::Projection;
use crate::table::Table;
use crate::working_set;
use domain::booking::BookingEvent;
use domain::listing::{ListingEvent, ListingStatus};
use domain::payment::PaymentEvent;
use domain::Event;
use tables::{
    month_of, BlockFact, BookingFacts, DaySums, ListingMonthSums, ListingPeriod, ListingState,
    NightFact, PaymentLink, RefundFact,
};
use uuid::Uuid;

pub use figures::{AsOf, Facts, GroupBy, Scope};

working_set!(AnalyticsSet {
    listings: ListingState,
    periods: ListingPeriod,
    bookings: BookingFacts,
    nights: NightFact,
    blocks: BlockFact,
    payments: PaymentLink,
    refunds: RefundFact,
} tallies {
    days: DaySums,
    months: ListingMonthSums,
});

pub struct AnalyticsProjection;

/// The event's instant in microseconds since the epoch.
fn at(e: &Decoded) -> i64 {
    e.recorded_at.timestamp_micros()
}

/// A fact's key derived from its parts, so a rebuild makes the same keys.
fn derived(parent: Uuid, part: &str) -> Uuid {
    Uuid::new_v5(&parent, part.as_bytes())
}

fn is_active(status: ListingStatus) -> bool {
    status == ListingStatus::Active
}

impl Projection for AnalyticsProjection {
    type Set = AnalyticsSet;
    const NAME: &'static str = "analytics";
    const VERSION: i64 = 2;
    const TABLES: &'static [&'static Table] = &[
        &tables::LISTING_STATE,
        &tables::LISTING_PERIODS,
        &tables::BOOKING_FACTS,
        &tables::NIGHT_FACTS,
        &tables::BLOCK_FACTS,
        &tables::PAYMENT_LINKS,
        &tables::REFUND_FACTS,
        &tables::DAY_SUMS,
        &tables::LISTING_MONTH_SUMS,
    ];

    fn want(set: &mut AnalyticsSet, e: &Decoded) {
        match &e.event {
            Event::Listing(ListingEvent::DatesUnblocked { block_id, .. }) => {
                set.blocks.want(*block_id)
            }
            Event::Listing(_) => set.listings.want(e.aggregate_id),
            Event::Booking(BookingEvent::BookingHeld { listing_id, .. }) => {
                set.listings.want(*listing_id);
                set.bookings.want(e.aggregate_id);
            }
            Event::Booking(_) => set.bookings.want(e.aggregate_id),
            Event::Payment(PaymentEvent::PaymentCreated { booking_id, .. }) => {
                set.bookings.want(*booking_id);
                set.payments.want(e.aggregate_id);
            }
            Event::Payment(PaymentEvent::PaymentRefunded { refund_id, .. }) => {
                set.payments.want(e.aggregate_id);
                set.refunds.want(refund_key(e.aggregate_id, *refund_id));
            }
            Event::Payment(_) => set.payments.want(e.aggregate_id),
            Event::User(_) => {}
        }
    }

    fn apply(set: &mut AnalyticsSet, e: &Decoded) {
        match &e.event {
            Event::Listing(event) => apply_listing(set, e, event),
            Event::Booking(event) => apply_booking(set, e, event),
            Event::Payment(event) => apply_payment(set, e, event),
            Event::User(_) => {}
        }
    }
}

fn apply_listing(set: &mut AnalyticsSet, e: &Decoded, event: &ListingEvent) {
    let id = e.aggregate_id;
    match event {
        ListingEvent::ListingCreated {
            host_id,
            details,
            status,
            ..
        } => {
            let state = ListingState {
                listing_id: id,
                host_id: *host_id,
                city: details.city.clone(),
                active: i64::from(is_active(*status)),
                created_on: domain::local_date(e.recorded_at),
                since_us: at(e),
                since_position: e.position,
            };
            set.periods.put(open_period(&state));
            set.listings.put(state);
        }
        ListingEvent::ListingUpdated { details } => {
            change_listing(set, e, |s| s.city = details.city.clone());
        }
        ListingEvent::ListingStatusChanged { status } => {
            change_listing(set, e, |s| s.active = i64::from(is_active(*status)));
        }
        ListingEvent::DatesBlocked {
            block_id, range, ..
        } => set.blocks.put(BlockFact {
            block_id: *block_id,
            listing_id: id,
            first_night: range.check_in(),
            end_night: range.check_out(),
            from_us: at(e),
            from_position: e.position,
            to_us: None,
            to_position: None,
        }),
        ListingEvent::DatesUnblocked { block_id, .. } => set.blocks.update(*block_id, |b| {
            if b.to_us.is_none() {
                b.to_us = Some(at(e));
                b.to_position = Some(e.position);
            }
        }),
        // Feed blocks arrive as DatesBlocked / DatesUnblocked; a moderation's effect as the
        // ListingStatusChanged that follows it; a hold's new expiry changes no figure.
        ListingEvent::DatesReserved { .. }
        | ListingEvent::ReservationConfirmed { .. }
        | ListingEvent::DatesReleased { .. }
        | ListingEvent::AccessUpdated { .. }
        | ListingEvent::CalendarFeedAdded { .. }
        | ListingEvent::CalendarFeedRemoved { .. }
        | ListingEvent::FeedConflictsChanged { .. }
        | ListingEvent::ListingModerated { .. }
        | ListingEvent::HoldExtended { .. } => {}
    }
}

fn open_period(s: &ListingState) -> ListingPeriod {
    ListingPeriod {
        period_id: derived(s.listing_id, &s.since_position.to_string()),
        listing_id: s.listing_id,
        host_id: s.host_id,
        city: s.city.clone(),
        active: s.active,
        created_on: s.created_on,
        from_us: s.since_us,
        from_position: s.since_position,
        to_us: None,
        to_position: None,
    }
}

/// Closes the listing's open period and opens the next when `change` alters its city or
/// status.
fn change_listing(set: &mut AnalyticsSet, e: &Decoded, change: impl FnOnce(&mut ListingState)) {
    let Some(before) = set.listings.get(e.aggregate_id).cloned() else {
        return;
    };
    let mut after = before.clone();
    change(&mut after);
    if after.city == before.city && after.active == before.active {
        return;
    }
    let mut closed = open_period(&before);
    closed.to_us = Some(at(e));
    closed.to_position = Some(e.position);
    set.periods.put(closed);
    after.since_us = at(e);
    after.since_position = e.position;
    set.periods.put(open_period(&after));
    set.listings.put(after);
}

fn apply_booking(set: &mut AnalyticsSet, e: &Decoded, event: &BookingEvent) {
    let id = e.aggregate_id;
    if let BookingEvent::BookingHeld {
        listing_id,
        host_id,
        range,
        channel,
        price,
        ..
    } = event
    {
        let city = set
            .listings
            .get(*listing_id)
            .map(|l| l.city.clone())
            .unwrap_or_default();
        let nightly = price
            .nightly
            .iter()
            .map(|n| format!("{}={}", n.date, n.price_kzt.0))
            .collect::<Vec<_>>()
            .join(";");
        set.bookings.put(BookingFacts {
            booking_id: id,
            listing_id: *listing_id,
            host_id: *host_id,
            city,
            channel: channel.as_str().to_string(),
            check_in: range.check_in(),
            check_out: range.check_out(),
            nights: i64::from(range.nights()),
            room_kzt: price.nights_total_kzt.0,
            cleaning_kzt: price.cleaning_fee_kzt.0,
            nightly,
            held_us: at(e),
            held_position: e.position,
            confirmed_us: None,
            confirmed_position: None,
            checked_in_us: None,
            completed_us: None,
            expired_us: None,
            cancelled_us: None,
            cancelled_position: None,
        });
        return;
    }
    let (t, p) = (Some(at(e)), Some(e.position));
    let mut nights_changed = false;
    // +1: the stay's nights go on the books now; -1: they come off.
    let mut sold = 0;
    set.bookings.update(id, |b| match event {
        BookingEvent::BookingConfirmed { .. } if b.confirmed_us.is_none() => {
            b.confirmed_us = t;
            b.confirmed_position = p;
            nights_changed = true;
            sold = i64::from(b.cancelled_us.is_none());
        }
        BookingEvent::BookingCancelled { .. } if b.cancelled_us.is_none() => {
            b.cancelled_us = t;
            b.cancelled_position = p;
            nights_changed = b.confirmed_us.is_some();
            sold = -i64::from(b.confirmed_us.is_some());
        }
        BookingEvent::BookingExpired {} if b.expired_us.is_none() => b.expired_us = t,
        BookingEvent::BookingCheckedIn {} if b.checked_in_us.is_none() => b.checked_in_us = t,
        BookingEvent::BookingCompleted {} if b.completed_us.is_none() => b.completed_us = t,
        _ => {}
    });
    if nights_changed {
        let nights = set.bookings.get(id).map(nights_of).unwrap_or_default();
        if sold != 0 {
            count_sold(set, &nights, sold);
        }
        for night in nights {
            set.nights.put(night);
        }
    }
}

/// Adds (`sign` 1) or takes off (-1) a stay's sold nights, and the cleaning fee they carry, in
/// the running totals: a total per night and date, one per calendar month of the stay.
fn count_sold(set: &mut AnalyticsSet, nights: &[NightFact], sign: i64) {
    let mut month: Option<ListingMonthSums> = None;
    for n in nights {
        let mut day = DaySums::new(&n.city, &n.channel, n.night);
        day.nights = sign;
        day.room_kzt = sign * n.price_kzt;
        day.cleaning_kzt = sign * n.cleaning_kzt;
        set.days.add(day);
        let same = |m: &ListingMonthSums| {
            m.month == month_of(n.night) && m.listing_id == n.listing_id && m.city == n.city
        };
        if !month.as_ref().is_some_and(same) {
            if let Some(done) = month.take() {
                set.months.add(done);
            }
        }
        let m = month.get_or_insert_with(|| ListingMonthSums::new(n.listing_id, &n.city, n.night));
        m.nights += sign;
        m.room_kzt += sign * n.price_kzt;
        m.cleaning_kzt += sign * n.cleaning_kzt;
    }
    if let Some(done) = month {
        set.months.add(done);
    }
}

/// The sold nights of a confirmed booking, each with the interval it was sold.
pub fn nights_of(b: &BookingFacts) -> Vec<NightFact> {
    let (Some(from_us), Some(from_position)) = (b.confirmed_us, b.confirmed_position) else {
        return Vec::new();
    };
    b.nightly
        .split(';')
        .filter_map(|part| {
            let (date, price) = part.split_once('=')?;
            Some((date.parse().ok()?, price.parse().ok()?))
        })
        .map(|(night, price_kzt): (chrono::NaiveDate, i64)| NightFact {
            night_id: derived(b.booking_id, &night.to_string()),
            booking_id: b.booking_id,
            listing_id: b.listing_id,
            host_id: b.host_id,
            city: b.city.clone(),
            channel: b.channel.clone(),
            night,
            price_kzt,
            cleaning_kzt: if night == b.check_in {
                b.cleaning_kzt
            } else {
                0
            },
            held_position: b.held_position,
            sold_from_us: from_us,
            sold_from_position: from_position,
            sold_to_us: b.cancelled_us,
            sold_to_position: b.cancelled_position,
            changed_us: b.cancelled_us.map_or(from_us, |to| to.max(from_us)),
        })
        .collect()
}

fn apply_payment(set: &mut AnalyticsSet, e: &Decoded, event: &PaymentEvent) {
    match event {
        PaymentEvent::PaymentCreated { booking_id, .. } => {
            if let Some(b) = set.bookings.get(*booking_id) {
                let link = PaymentLink {
                    payment_id: e.aggregate_id,
                    booking_id: b.booking_id,
                    listing_id: b.listing_id,
                    host_id: b.host_id,
                    city: b.city.clone(),
                    channel: b.channel.clone(),
                };
                set.payments.put(link);
            }
        }
        PaymentEvent::PaymentRefunded {
            refund_id,
            amount_kzt,
            ..
        } => {
            if let Some(p) = set.payments.get(e.aggregate_id).cloned() {
                let key = refund_key(p.payment_id, *refund_id);
                // A refund told again replaces the one recorded: so does its total.
                if let Some(old) = set.refunds.get(key).cloned() {
                    count_refund(set, &old, -1);
                }
                let refund = RefundFact {
                    refund_key: key,
                    payment_id: p.payment_id,
                    booking_id: p.booking_id,
                    listing_id: p.listing_id,
                    host_id: p.host_id,
                    city: p.city,
                    channel: p.channel,
                    refund_date: domain::local_date(e.recorded_at),
                    amount_kzt: amount_kzt.0,
                    at_us: at(e),
                    position: e.position,
                };
                count_refund(set, &refund, 1);
                set.refunds.put(refund);
            }
        }
        _ => {}
    }
}

fn refund_key(payment_id: Uuid, refund_id: Uuid) -> Uuid {
    derived(payment_id, &refund_id.to_string())
}

/// Adds (`sign` 1) or takes off (-1) a refund in the running totals.
fn count_refund(set: &mut AnalyticsSet, r: &RefundFact, sign: i64) {
    let mut day = DaySums::new(&r.city, &r.channel, r.refund_date);
    day.refunds_kzt = sign * r.amount_kzt;
    set.days.add(day);
    let mut month = ListingMonthSums::new(r.listing_id, &r.city, r.refund_date);
    month.refunds_kzt = sign * r.amount_kzt;
    set.months.add(month);
}
