//! The figures, computed from [`Facts`]: pure functions, one per kind of answer.
use super::figures::{local_date_us, Facts, GroupBy, Scope};
use super::totals::Totals;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use utoipa::ToSchema;
use uuid::Uuid;

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// `a / b` in whole tenge (rounded half away from zero), 0 when `b` is 0.
pub fn per(a: i64, b: i64) -> i64 {
    ratio(a, b).round() as i64
}

/// Keys seeded for a dated grouping (every period of the dates, zeros included); other
/// groupings have the keys that have facts.
fn seeded<T: Default>(scope: &Scope, group: GroupBy) -> BTreeMap<String, T> {
    let mut map = BTreeMap::new();
    if group.is_dated() {
        for k in group.date_keys(scope.from, scope.to) {
            map.insert(k, T::default());
        }
    }
    map
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct OccupancyItem {
    pub key: String,
    pub nights_available: i64,
    pub nights_blocked: i64,
    pub nights_sold: i64,
    /// nights_sold / nights_available, 0–1 (0 when nothing is available).
    pub occupancy: f64,
}

/// Nights available, blocked and sold per key (the part occupancy and revenue share).
#[derive(Clone, Copy, Debug, Default)]
struct Supply {
    available: i64,
    blocked: i64,
    sold: i64,
    room: i64,
}

fn supply(totals: &Totals, scope: &Scope, group: GroupBy) -> BTreeMap<String, Supply> {
    let facts = &totals.supply;
    let mut map: BTreeMap<String, Supply> = seeded(scope, group);
    let mut total = Supply::default();
    let days: Vec<NaiveDate> = scope
        .from
        .iter_days()
        .take_while(|d| *d < scope.to)
        .collect();
    let mut active: HashMap<Uuid, (&str, NaiveDate)> = HashMap::new();
    for p in &facts.listings {
        active.insert(p.listing_id, (p.city.as_str(), p.created_on));
    }
    // Each listing's blocked nights within the dates, from its creation on.
    let mut blocked: HashMap<Uuid, BTreeSet<NaiveDate>> = HashMap::new();
    for b in &facts.blocks {
        if let Some((_, created)) = active.get(&b.listing_id) {
            let first = b.first_night.max(scope.from).max(*created);
            let end = b.end_night.min(scope.to);
            let nights = blocked.entry(b.listing_id).or_default();
            nights.extend(first.iter_days().take_while(|d| *d < end));
        }
    }
    if group.is_dated() {
        // One key per date, looked up once. A date's nights are those of the listings created
        // by then (counted from each listing's first date), less the blocked ones.
        let keys: Vec<String> = days.iter().map(|d| group.date_key(*d)).collect();
        let mut cells = vec![Supply::default(); days.len()];
        let mut opened = vec![0i64; days.len() + 1];
        for (_, created) in active.values() {
            opened[days.partition_point(|d| d < created)] += 1;
        }
        let mut running = 0;
        for (cell, opened) in cells.iter_mut().zip(&opened) {
            running += opened;
            cell.available = running;
        }
        // Blocked nights are dates of the range from the listing's creation on.
        for nights in blocked.values() {
            for d in nights {
                let i = (*d - scope.from).num_days() as usize;
                cells[i].blocked += 1;
                cells[i].available -= 1;
            }
        }
        for (key, cell) in keys.iter().zip(&cells) {
            let s = map.entry(key.clone()).or_default();
            s.available += cell.available;
            s.blocked += cell.blocked;
        }
    } else {
        for (listing, (city, created)) in &active {
            let start = scope.from.max(*created);
            let nights = (scope.to - start).num_days().max(0);
            let blocked_nights = blocked.get(listing).map_or(0, |b| b.len() as i64);
            let s = if group == GroupBy::Channel {
                &mut total
            } else {
                map.entry(group.key(start, *listing, city, "")).or_default()
            };
            s.blocked += blocked_nights;
            s.available += nights - blocked_nights;
        }
    }
    let channel_wide = group == GroupBy::Channel;
    for sums in totals.sums.iter().filter(|s| s.sold > 0) {
        let s = map.entry(sums.key.clone()).or_default();
        s.sold += sums.sold;
        s.room += sums.room;
        // Sold on a listing no longer active: the nights were offered all the same.
        if channel_wide {
            total.available += sums.unoffered;
        } else {
            s.available += sums.unoffered;
        }
    }
    if channel_wide {
        for s in map.values_mut() {
            s.available = total.available;
            s.blocked = total.blocked;
        }
    }
    map
}

pub fn occupancy(totals: &Totals, scope: &Scope, group: GroupBy) -> Vec<OccupancyItem> {
    supply(totals, scope, group)
        .into_iter()
        .map(|(key, s)| OccupancyItem {
            key,
            nights_available: s.available,
            nights_blocked: s.blocked,
            nights_sold: s.sold,
            occupancy: ratio(s.sold, s.available),
        })
        .collect()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct RevenueItem {
    pub key: String,
    pub nights_sold: i64,
    pub nights_available: i64,
    pub room_revenue_kzt: i64,
    pub cleaning_fees_kzt: i64,
    pub refunds_kzt: i64,
    /// room + cleaning − refunds.
    pub net_revenue_kzt: i64,
    pub adr_kzt: i64,
    pub revpar_kzt: i64,
    pub trevpar_kzt: i64,
}

/// Whether a booking's stay is sold at the instant.
fn sold(b: &super::tables::BookingFacts, facts_as_of: super::figures::AsOf) -> bool {
    facts_as_of.reached(b.confirmed_us) && !facts_as_of.reached(b.cancelled_us)
}

pub fn revenue(totals: &Totals, scope: &Scope, group: GroupBy) -> Vec<RevenueItem> {
    let mut map: BTreeMap<String, RevenueItem> = supply(totals, scope, group)
        .into_iter()
        .map(|(key, s)| {
            (
                key.clone(),
                RevenueItem {
                    key,
                    nights_sold: s.sold,
                    nights_available: s.available,
                    room_revenue_kzt: s.room,
                    ..RevenueItem::default()
                },
            )
        })
        .collect();
    for sums in totals
        .sums
        .iter()
        .filter(|s| s.cleaning != 0 || s.refunds != 0)
    {
        let item = map.entry(sums.key.clone()).or_insert_with(|| RevenueItem {
            key: sums.key.clone(),
            ..RevenueItem::default()
        });
        item.cleaning_fees_kzt += sums.cleaning;
        item.refunds_kzt += sums.refunds;
    }
    if group == GroupBy::Channel {
        let available = map.values().map(|i| i.nights_available).max().unwrap_or(0);
        for i in map.values_mut() {
            i.nights_available = available;
        }
    }
    map.into_values()
        .map(|mut i| {
            let total = i.room_revenue_kzt + i.cleaning_fees_kzt;
            i.net_revenue_kzt = total - i.refunds_kzt;
            i.adr_kzt = per(i.room_revenue_kzt, i.nights_sold);
            i.revpar_kzt = per(i.room_revenue_kzt, i.nights_available);
            i.trevpar_kzt = per(total, i.nights_available);
            i
        })
        .collect()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct FunnelItem {
    pub key: String,
    /// Bookings held on the key's dates, and how far they got (as known at the instant).
    pub held: i64,
    pub paid: i64,
    pub checked_in: i64,
    pub completed: i64,
    pub expired: i64,
    pub cancelled: i64,
    /// paid / held, checked_in / paid, completed / checked_in.
    pub paid_rate: f64,
    pub checked_in_rate: f64,
    pub completed_rate: f64,
    /// By event date: confirmations, cancellations and expired holds on the key's dates.
    pub confirmations: i64,
    pub cancellations: i64,
    pub expirations: i64,
    /// cancellations / (confirmations + cancellations).
    pub cancellation_rate: f64,
    /// expirations / (confirmations + expirations).
    pub hold_expiry_rate: f64,
}

pub fn funnel(facts: &Facts, scope: &Scope, group: GroupBy) -> Vec<FunnelItem> {
    let mut map: BTreeMap<String, FunnelItem> = seeded(scope, group);
    let t = scope.as_of;
    let count = |map: &mut BTreeMap<String, FunnelItem>,
                 b: &super::tables::BookingFacts,
                 at: Option<i64>,
                 f: fn(&mut FunnelItem)| {
        if let Some(at) = at.filter(|at| t.reached(Some(*at))) {
            let d = local_date_us(at);
            if scope.contains(d) {
                f(map
                    .entry(group.key(d, b.listing_id, &b.city, &b.channel))
                    .or_default());
            }
        }
    };
    for b in &facts.bookings {
        let held_on = local_date_us(b.held_us);
        if scope.contains(held_on) && t.reached(Some(b.held_us)) {
            let item = map
                .entry(group.key(held_on, b.listing_id, &b.city, &b.channel))
                .or_default();
            item.held += 1;
            item.paid += i64::from(t.reached(b.confirmed_us));
            item.checked_in += i64::from(t.reached(b.checked_in_us));
            item.completed += i64::from(t.reached(b.completed_us));
            item.expired += i64::from(t.reached(b.expired_us));
            item.cancelled += i64::from(t.reached(b.cancelled_us));
        }
        count(&mut map, b, b.confirmed_us, |i| i.confirmations += 1);
        count(&mut map, b, b.cancelled_us, |i| i.cancellations += 1);
        count(&mut map, b, b.expired_us, |i| i.expirations += 1);
    }
    map.into_iter()
        .map(|(key, mut i)| {
            i.key = key;
            i.paid_rate = ratio(i.paid, i.held);
            i.checked_in_rate = ratio(i.checked_in, i.paid);
            i.completed_rate = ratio(i.completed, i.checked_in);
            i.cancellation_rate = ratio(i.cancellations, i.confirmations + i.cancellations);
            i.hold_expiry_rate = ratio(i.expirations, i.confirmations + i.expirations);
            i
        })
        .collect()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct ChannelItem {
    pub key: String,
    pub nights_sold: i64,
    pub room_revenue_kzt: i64,
    /// Bookings with a night sold on the dates.
    pub bookings: i64,
}

pub fn channels(facts: &Facts) -> Vec<ChannelItem> {
    let mut map: BTreeMap<&str, (i64, i64, BTreeSet<Uuid>)> = BTreeMap::new();
    for n in &facts.nights {
        let e = map.entry(n.channel.as_str()).or_default();
        e.0 += 1;
        e.1 += n.price_kzt;
        e.2.insert(n.booking_id);
    }
    map.into_iter()
        .map(|(key, (nights, room, bookings))| ChannelItem {
            key: key.to_string(),
            nights_sold: nights,
            room_revenue_kzt: room,
            bookings: bookings.len() as i64,
        })
        .collect()
}

/// Stays per booking-window bucket (days from confirmation to check-in).
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct WindowBuckets {
    #[serde(rename = "0-1")]
    pub d0_1: i64,
    #[serde(rename = "2-7")]
    pub d2_7: i64,
    #[serde(rename = "8-30")]
    pub d8_30: i64,
    #[serde(rename = "31-90")]
    pub d31_90: i64,
    #[serde(rename = "91+")]
    pub d91: i64,
}

impl WindowBuckets {
    pub fn add(&mut self, days: i64) {
        match days {
            ..=1 => self.d0_1 += 1,
            2..=7 => self.d2_7 += 1,
            8..=30 => self.d8_30 += 1,
            31..=90 => self.d31_90 += 1,
            _ => self.d91 += 1,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct StaysItem {
    /// The group of the stays' check-in dates.
    pub key: String,
    pub stays: i64,
    pub nights: i64,
    pub alos: f64,
    pub booking_window_days_avg: f64,
    pub booking_window_buckets: WindowBuckets,
    #[serde(skip)]
    window_days: i64,
}

pub fn stays(facts: &Facts, scope: &Scope, group: GroupBy) -> Vec<StaysItem> {
    let mut map: BTreeMap<String, StaysItem> = seeded(scope, group);
    for b in &facts.bookings {
        let Some(confirmed) = b.confirmed_us else {
            continue;
        };
        if !scope.contains(b.check_in) || !sold(b, scope.as_of) {
            continue;
        }
        let item = map
            .entry(group.key(b.check_in, b.listing_id, &b.city, &b.channel))
            .or_default();
        let window = (b.check_in - local_date_us(confirmed)).num_days();
        item.stays += 1;
        item.nights += b.nights;
        item.window_days += window;
        item.booking_window_buckets.add(window);
    }
    map.into_iter()
        .map(|(key, mut i)| {
            i.key = key;
            i.alos = ratio(i.nights, i.stays);
            i.booking_window_days_avg = ratio(i.window_days, i.stays);
            i
        })
        .collect()
}

/// Nights sold per key (pickup's count).
pub fn nights_sold(facts: &Facts, scope: &Scope, group: GroupBy) -> BTreeMap<String, i64> {
    let mut map: BTreeMap<String, i64> = seeded(scope, group);
    for n in &facts.nights {
        *map.entry(group.key(n.night, n.listing_id, &n.city, &n.channel))
            .or_default() += 1;
    }
    map
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct PickupItem {
    pub key: String,
    /// Nights on the books as known at `as_of`.
    pub nights_sold: i64,
    /// The same nights as known at `compare_to`.
    pub nights_sold_compare: i64,
    /// nights_sold − nights_sold_compare.
    pub pickup: i64,
    /// Pace: the same dates 12 months earlier, as known 12 months before `as_of`.
    pub nights_sold_last_year: i64,
}

pub fn pickup(
    at: &BTreeMap<String, i64>,
    compare: &BTreeMap<String, i64>,
    last_year: &BTreeMap<String, i64>,
) -> Vec<PickupItem> {
    let keys: BTreeSet<&String> = at.keys().chain(compare.keys()).collect();
    keys.into_iter()
        .map(|key| {
            let a = at.get(key).copied().unwrap_or(0);
            let b = compare.get(key).copied().unwrap_or(0);
            PickupItem {
                key: key.clone(),
                nights_sold: a,
                nights_sold_compare: b,
                pickup: a - b,
                nights_sold_last_year: last_year.get(key).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// One booking's night behind a figure.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct FactItem {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub date: NaiveDate,
    pub nights: i64,
    pub amount_kzt: i64,
    pub channel: String,
    pub city: String,
    /// The events that made it: the hold and the confirmation.
    pub positions: Vec<i64>,
}

pub fn facts(facts: &Facts) -> Vec<FactItem> {
    let mut items: Vec<FactItem> = facts
        .nights
        .iter()
        .map(|n| FactItem {
            booking_id: n.booking_id,
            listing_id: n.listing_id,
            date: n.night,
            nights: 1,
            amount_kzt: n.price_kzt,
            channel: n.channel.clone(),
            city: n.city.clone(),
            positions: vec![n.held_position, n.sold_from_position],
        })
        .collect();
    items.sort_by_key(|a| (a.date, a.booking_id));
    items
}

/// Nights sold per key of `scope`'s dates, counted on the same dates 12 months earlier
/// (`last_year` read for `scope` shifted back 12 months; 29 February maps to 28 February).
pub fn nights_sold_year_before(
    last_year: &Facts,
    scope: &Scope,
    group: GroupBy,
) -> BTreeMap<String, i64> {
    let mut back: HashMap<NaiveDate, Vec<NaiveDate>> = HashMap::new();
    for d in scope.from.iter_days().take_while(|d| *d < scope.to) {
        if let Some(ly) = year_before(d) {
            back.entry(ly).or_default().push(d);
        }
    }
    let mut map: BTreeMap<String, i64> = BTreeMap::new();
    for n in &last_year.nights {
        for d in back.get(&n.night).into_iter().flatten() {
            *map.entry(group.key(*d, n.listing_id, &n.city, &n.channel))
                .or_default() += 1;
        }
    }
    map
}

/// The date 12 months before `d`.
pub fn year_before(d: NaiveDate) -> Option<NaiveDate> {
    d.checked_sub_months(chrono::Months::new(12))
}
