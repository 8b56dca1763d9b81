//! The analytics oracle: every figure computed by brute force from the raw event list, written
//! from docs/analytics.md without the projection's code. For a question at instant T it replays
//! the events recorded at or before T and then looks at every (listing, date) and every booking.
use chrono::{Datelike, NaiveDate};
use domain::booking::BookingEvent;
use domain::listing::{ListingEvent, ListingStatus};
use domain::payment::PaymentEvent;
use domain::Event;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use store::Database;
use uuid::Uuid;

/// One raw event, decoded.
#[derive(Clone, Debug)]
pub struct Raw {
    pub position: i64,
    pub at_us: i64,
    pub id: Uuid,
    pub event: Event,
}

/// Every event of the store, in position order.
pub async fn events(db: &Database) -> Vec<Raw> {
    let stored = store::history::events_by_position(db, 0, 10_000_000)
        .await
        .expect("read events");
    stored
        .iter()
        .map(|e| Raw {
            position: e.position,
            at_us: e.recorded_at.timestamp_micros(),
            id: e.aggregate_id.parse().expect("aggregate id"),
            event: Event::decode(
                &e.aggregate_type,
                &e.event_type,
                &e.event_version,
                &e.payload,
            )
            .expect("decodes"),
        })
        .collect()
}

pub fn local(us: i64) -> NaiveDate {
    domain::local_date(chrono::DateTime::from_timestamp_micros(us).unwrap())
}

#[derive(Clone, Debug)]
struct Listing {
    host: Uuid,
    city: String,
    active: bool,
    created_on: NaiveDate,
}

#[derive(Clone, Debug, Default)]
struct Booking {
    listing: Uuid,
    host: Uuid,
    city: String,
    channel: String,
    check_in: NaiveDate,
    nightly: Vec<(NaiveDate, i64)>,
    cleaning: i64,
    held: i64,
    held_position: i64,
    confirmed: Option<(i64, i64)>,
    checked_in: Option<i64>,
    completed: Option<i64>,
    expired: Option<i64>,
    cancelled: Option<i64>,
}

impl Booking {
    fn sold(&self) -> bool {
        self.confirmed.is_some() && self.cancelled.is_none()
    }
}

/// What was known at an instant.
#[derive(Default)]
pub struct Known {
    listings: BTreeMap<Uuid, Listing>,
    blocks: HashMap<Uuid, (Uuid, NaiveDate, NaiveDate)>,
    bookings: BTreeMap<Uuid, Booking>,
    payments: HashMap<Uuid, Uuid>,
    /// (booking, local date, amount)
    refunds: Vec<(Uuid, NaiveDate, i64)>,
}

/// Replays the events recorded at or before `t`.
pub fn known_at(events: &[Raw], t: i64) -> Known {
    let mut k = Known::default();
    for e in events.iter().filter(|e| e.at_us <= t) {
        match &e.event {
            Event::Listing(ListingEvent::ListingCreated {
                host_id,
                details,
                status,
                ..
            }) => {
                k.listings.insert(
                    e.id,
                    Listing {
                        host: *host_id,
                        city: details.city.clone(),
                        active: *status == ListingStatus::Active,
                        created_on: local(e.at_us),
                    },
                );
            }
            Event::Listing(ListingEvent::ListingUpdated { details }) => {
                if let Some(l) = k.listings.get_mut(&e.id) {
                    l.city = details.city.clone();
                }
            }
            Event::Listing(ListingEvent::ListingStatusChanged { status }) => {
                if let Some(l) = k.listings.get_mut(&e.id) {
                    l.active = *status == ListingStatus::Active;
                }
            }
            Event::Listing(ListingEvent::DatesBlocked {
                block_id, range, ..
            }) => {
                k.blocks
                    .insert(*block_id, (e.id, range.check_in(), range.check_out()));
            }
            Event::Listing(ListingEvent::DatesUnblocked { block_id, .. }) => {
                k.blocks.remove(block_id);
            }
            Event::Booking(BookingEvent::BookingHeld {
                listing_id,
                host_id,
                range,
                channel,
                price,
                ..
            }) => {
                let city = k
                    .listings
                    .get(listing_id)
                    .map(|l| l.city.clone())
                    .unwrap_or_default();
                k.bookings.insert(
                    e.id,
                    Booking {
                        listing: *listing_id,
                        host: *host_id,
                        city,
                        channel: channel.as_str().to_string(),
                        check_in: range.check_in(),
                        nightly: price
                            .nightly
                            .iter()
                            .map(|n| (n.date, n.price_kzt.0))
                            .collect(),
                        cleaning: price.cleaning_fee_kzt.0,
                        held: e.at_us,
                        held_position: e.position,
                        ..Booking::default()
                    },
                );
            }
            Event::Booking(other) => {
                if let Some(b) = k.bookings.get_mut(&e.id) {
                    let slot = match other {
                        BookingEvent::BookingConfirmed { .. } => {
                            b.confirmed.get_or_insert((e.at_us, e.position));
                            None
                        }
                        BookingEvent::BookingCancelled { .. } => Some(&mut b.cancelled),
                        BookingEvent::BookingExpired {} => Some(&mut b.expired),
                        BookingEvent::BookingCheckedIn {} => Some(&mut b.checked_in),
                        BookingEvent::BookingCompleted {} => Some(&mut b.completed),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        slot.get_or_insert(e.at_us);
                    }
                }
            }
            Event::Payment(PaymentEvent::PaymentCreated { booking_id, .. }) => {
                k.payments.insert(e.id, *booking_id);
            }
            Event::Payment(PaymentEvent::PaymentRefunded { amount_kzt, .. }) => {
                if let Some(b) = k.payments.get(&e.id) {
                    k.refunds.push((*b, local(e.at_us), amount_kzt.0));
                }
            }
            _ => {}
        }
    }
    k
}

/// A question, as the test asks it.
#[derive(Clone, Debug)]
pub struct Question {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub city: Option<String>,
    pub listing: Option<Uuid>,
    pub host: Option<Uuid>,
    pub group: &'static str,
}

impl Question {
    fn days(&self) -> Vec<NaiveDate> {
        let mut d = self.from;
        let mut out = vec![];
        while d < self.to {
            out.push(d);
            d = d.succ_opt().unwrap();
        }
        out
    }

    fn dated(&self) -> bool {
        matches!(self.group, "day" | "week" | "month")
    }

    fn date_key(&self, d: NaiveDate) -> String {
        match self.group {
            "week" => format!("{}-W{:02}", d.iso_week().year(), d.iso_week().week()),
            "month" => format!("{}-{:02}", d.year(), d.month()),
            _ => d.format("%Y-%m-%d").to_string(),
        }
    }

    fn key(&self, d: NaiveDate, listing: Uuid, city: &str, channel: &str) -> String {
        match self.group {
            "listing" => listing.to_string(),
            "city" => city.to_string(),
            "channel" => channel.to_string(),
            _ => self.date_key(d),
        }
    }

    fn in_scope(&self, listing: Uuid, host: Uuid, city: &str) -> bool {
        self.listing.is_none_or(|l| l == listing)
            && self.host.is_none_or(|h| h == host)
            && self
                .city
                .as_ref()
                .is_none_or(|c| c.to_lowercase() == city.to_lowercase())
    }

    fn inside(&self, d: NaiveDate) -> bool {
        self.from <= d && d < self.to
    }

    /// Every key a dated grouping lists.
    fn seed<T: Clone>(&self, zero: T) -> BTreeMap<String, T> {
        let mut m = BTreeMap::new();
        if self.dated() {
            for d in self.days() {
                m.insert(self.date_key(d), zero.clone());
            }
        }
        m
    }
}

fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn per(a: i64, b: i64) -> i64 {
    ratio(a, b).round() as i64
}

/// [available, blocked, sold, room] per key.
fn supply(k: &Known, q: &Question) -> BTreeMap<String, [i64; 4]> {
    let mut m = q.seed([0i64; 4]);
    let mut shared = [0i64; 4];
    for (id, l) in &k.listings {
        if !l.active || !q.in_scope(*id, l.host, &l.city) {
            continue;
        }
        for d in q.days().into_iter().filter(|d| *d >= l.created_on) {
            let blocked = k
                .blocks
                .values()
                .any(|(at, first, end)| at == id && *first <= d && d < *end);
            let cell = if q.group == "channel" {
                &mut shared
            } else {
                m.entry(q.key(d, *id, &l.city, "")).or_insert([0; 4])
            };
            cell[if blocked { 1 } else { 0 }] += 1;
        }
    }
    for b in k.bookings.values() {
        if !b.sold() || !q.in_scope(b.listing, b.host, &b.city) {
            continue;
        }
        let offered = k.listings.get(&b.listing).is_some_and(|l| l.active);
        for (d, price) in b.nightly.iter().filter(|(d, _)| q.inside(*d)) {
            let offered_then = offered && k.listings[&b.listing].created_on <= *d;
            let cell = m
                .entry(q.key(*d, b.listing, &b.city, &b.channel))
                .or_insert([0; 4]);
            cell[2] += 1;
            cell[3] += price;
            if !offered_then {
                if q.group == "channel" {
                    shared[0] += 1;
                } else {
                    cell[0] += 1;
                }
            }
        }
    }
    if q.group == "channel" {
        for cell in m.values_mut() {
            cell[0] = shared[0];
            cell[1] = shared[1];
        }
    }
    m
}

pub fn occupancy(k: &Known, q: &Question) -> Vec<Value> {
    supply(k, q)
        .into_iter()
        .map(|(key, [a, bl, s, _])| {
            json!({"key": key, "nights_available": a, "nights_blocked": bl, "nights_sold": s,
                   "occupancy": ratio(s, a)})
        })
        .collect()
}

pub fn revenue(k: &Known, q: &Question) -> Vec<Value> {
    // [sold, available, room, cleaning, refunds]
    let mut m: BTreeMap<String, [i64; 5]> = supply(k, q)
        .into_iter()
        .map(|(key, [a, _, s, room])| (key, [s, a, room, 0, 0]))
        .collect();
    for b in k.bookings.values() {
        if b.sold() && q.inside(b.check_in) && q.in_scope(b.listing, b.host, &b.city) {
            m.entry(q.key(b.check_in, b.listing, &b.city, &b.channel))
                .or_insert([0; 5])[3] += b.cleaning;
        }
    }
    for (booking, date, amount) in &k.refunds {
        let b = &k.bookings[booking];
        if q.inside(*date) && q.in_scope(b.listing, b.host, &b.city) {
            m.entry(q.key(*date, b.listing, &b.city, &b.channel))
                .or_insert([0; 5])[4] += amount;
        }
    }
    if q.group == "channel" {
        let available = m.values().map(|v| v[1]).max().unwrap_or(0);
        for v in m.values_mut() {
            v[1] = available;
        }
    }
    m.into_iter()
        .map(|(key, [s, a, room, cleaning, refunds])| {
            json!({"key": key, "nights_sold": s, "nights_available": a,
                "room_revenue_kzt": room, "cleaning_fees_kzt": cleaning, "refunds_kzt": refunds,
                "net_revenue_kzt": room + cleaning - refunds, "adr_kzt": per(room, s),
                "revpar_kzt": per(room, a), "trevpar_kzt": per(room + cleaning, a)})
        })
        .collect()
}

pub fn funnel(k: &Known, q: &Question) -> Vec<Value> {
    // held, paid, checked_in, completed, expired, cancelled, confirmations, cancellations, expirations
    let mut m = q.seed([0i64; 9]);
    for b in k.bookings.values() {
        if !q.in_scope(b.listing, b.host, &b.city) {
            continue;
        }
        let held_on = local(b.held);
        if q.inside(held_on) {
            let c = m
                .entry(q.key(held_on, b.listing, &b.city, &b.channel))
                .or_insert([0; 9]);
            c[0] += 1;
            c[1] += i64::from(b.confirmed.is_some());
            c[2] += i64::from(b.checked_in.is_some());
            c[3] += i64::from(b.completed.is_some());
            c[4] += i64::from(b.expired.is_some());
            c[5] += i64::from(b.cancelled.is_some());
        }
        for (slot, at) in [
            (6, b.confirmed.map(|c| c.0)),
            (7, b.cancelled),
            (8, b.expired),
        ] {
            if let Some(at) = at.filter(|at| q.inside(local(*at))) {
                m.entry(q.key(local(at), b.listing, &b.city, &b.channel))
                    .or_insert([0; 9])[slot] += 1;
            }
        }
    }
    m.into_iter()
        .map(|(key, c)| {
            json!({"key": key, "held": c[0], "paid": c[1], "checked_in": c[2], "completed": c[3],
                "expired": c[4], "cancelled": c[5], "paid_rate": ratio(c[1], c[0]),
                "checked_in_rate": ratio(c[2], c[1]), "completed_rate": ratio(c[3], c[2]),
                "confirmations": c[6], "cancellations": c[7], "expirations": c[8],
                "cancellation_rate": ratio(c[7], c[6] + c[7]),
                "hold_expiry_rate": ratio(c[8], c[6] + c[8])})
        })
        .collect()
}

pub fn stays(k: &Known, q: &Question) -> Vec<Value> {
    // stays, nights, window days, buckets ×5
    let mut m = q.seed([0i64; 8]);
    for b in k.bookings.values() {
        if !b.sold() || !q.inside(b.check_in) || !q.in_scope(b.listing, b.host, &b.city) {
            continue;
        }
        let window = (b.check_in - local(b.confirmed.unwrap().0)).num_days();
        let c = m
            .entry(q.key(b.check_in, b.listing, &b.city, &b.channel))
            .or_insert([0; 8]);
        c[0] += 1;
        c[1] += b.nightly.len() as i64;
        c[2] += window;
        let bucket = if window <= 1 {
            3
        } else if window <= 7 {
            4
        } else if window <= 30 {
            5
        } else if window <= 90 {
            6
        } else {
            7
        };
        c[bucket] += 1;
    }
    m.into_iter()
        .map(|(key, c)| {
            json!({"key": key, "stays": c[0], "nights": c[1], "alos": ratio(c[1], c[0]),
                "booking_window_days_avg": ratio(c[2], c[0]),
                "booking_window_buckets": {"0-1": c[3], "2-7": c[4], "8-30": c[5], "31-90": c[6], "91+": c[7]}})
        })
        .collect()
}

pub fn channels(k: &Known, q: &Question) -> Vec<Value> {
    let mut m: BTreeMap<String, (i64, i64, BTreeSet<Uuid>)> = BTreeMap::new();
    for (id, b) in &k.bookings {
        if !b.sold() || !q.in_scope(b.listing, b.host, &b.city) {
            continue;
        }
        for (_, price) in b.nightly.iter().filter(|(d, _)| q.inside(*d)) {
            let e = m.entry(b.channel.clone()).or_default();
            e.0 += 1;
            e.1 += price;
            e.2.insert(*id);
        }
    }
    m.into_iter()
        .map(|(key, (n, room, bookings))| {
            json!({"key": key, "nights_sold": n, "room_revenue_kzt": room, "bookings": bookings.len()})
        })
        .collect()
}

/// Nights sold per key (pickup's counts).
pub fn nights_by_key(k: &Known, q: &Question) -> BTreeMap<String, i64> {
    let mut m = q.seed(0i64);
    for b in k.bookings.values() {
        if !b.sold() || !q.in_scope(b.listing, b.host, &b.city) {
            continue;
        }
        for (d, _) in b.nightly.iter().filter(|(d, _)| q.inside(*d)) {
            *m.entry(q.key(*d, b.listing, &b.city, &b.channel))
                .or_default() += 1;
        }
    }
    m
}

/// Pickup between what was known at `a` and at `b` (the test's data has no year before).
pub fn pickup(events: &[Raw], q: &Question, a: i64, b: i64) -> Vec<Value> {
    let at = nights_by_key(&known_at(events, a), q);
    let before = nights_by_key(&known_at(events, b), q);
    let keys: BTreeSet<&String> = at.keys().chain(before.keys()).collect();
    keys.into_iter()
        .map(|key| {
            let (x, y) = (
                at.get(key).copied().unwrap_or(0),
                before.get(key).copied().unwrap_or(0),
            );
            json!({"key": key, "nights_sold": x, "nights_sold_compare": y, "pickup": x - y,
                   "nights_sold_last_year": 0})
        })
        .collect()
}

/// The sold nights behind a figure, by date then booking.
pub fn facts(k: &Known, q: &Question) -> Vec<Value> {
    let mut rows = vec![];
    for (id, b) in &k.bookings {
        if !b.sold() || !q.in_scope(b.listing, b.host, &b.city) {
            continue;
        }
        for (d, price) in b.nightly.iter().filter(|(d, _)| q.inside(*d)) {
            rows.push((*d, *id, b, *price));
        }
    }
    rows.sort_by_key(|r| (r.0, r.1));
    rows.into_iter()
        .map(|(d, id, b, price)| {
            json!({"booking_id": id, "listing_id": b.listing, "date": d.to_string(), "nights": 1,
                "amount_kzt": price, "channel": b.channel, "city": b.city,
                "positions": [b.held_position, b.confirmed.unwrap().1]})
        })
        .collect()
}

/// Equal JSON, numbers compared as numbers (floats within 1e-9).
pub fn same(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => {
            (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            b.iter().all(|(k, v)| a.get(k).is_some_and(|x| same(x, v)))
        }
        (a, b) => a == b,
    }
}
