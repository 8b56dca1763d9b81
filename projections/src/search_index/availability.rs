//! The availability part of the [`SearchIndex`]: the availability projection's offers and
//! taken spans, with listing ids by city and spans by listing, for searches by stay.
use super::SearchIndex;
use crate::availability::span_of;
use crate::availability::{
    bounding_box, city_key, AvailabilityProjection, AvailabilitySet, Offer, OfferRow, SpanRow,
    StayQuery,
};
use crate::event::Decoded;
use crate::projector::Projection;
use crate::rows::WorkingSet;
use crate::table::Row;
use chrono::NaiveDate;
use domain::pricing::PriceRules;
use domain::Event;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use store::history::Checkpoint;
use uuid::Uuid;

pub(super) struct Part {
    /// Where the table stood when it was loaded: events up to here are in its rows.
    pub(super) loaded: Checkpoint,
    /// The projection's rows (a complete working set: a missing row is an absent one).
    set: AvailabilitySet,
    /// Listing ids by `city_key`, in id order (the search's order).
    by_city: HashMap<String, BTreeSet<Uuid>>,
    /// Taken spans by listing: (check_in, check_out, span id).
    taken: HashMap<Uuid, Vec<(NaiveDate, NaiveDate, Uuid)>>,
    /// Parsed price rules by listing.
    prices: HashMap<Uuid, PriceRules>,
}

impl Default for Part {
    fn default() -> Self {
        Part {
            loaded: Checkpoint::default(),
            set: AvailabilitySet::new(true),
            by_city: HashMap::new(),
            taken: HashMap::new(),
            prices: HashMap::new(),
        }
    }
}

impl Part {
    /// The part of a table read at `at`.
    pub(super) fn loaded(at: Checkpoint, offers: Vec<OfferRow>, spans: Vec<SpanRow>) -> Self {
        let mut part = Part {
            loaded: at,
            ..Part::default()
        };
        for row in offers {
            let id = row.listing_id;
            part.set.offers.put(row);
            part.index_offer(id, None);
        }
        for row in spans {
            let (id, listing) = (row.span_id, row.listing_id);
            part.set.spans.put(row);
            part.index_span(id, listing);
        }
        part
    }

    fn index_offer(&mut self, listing: Uuid, before: Option<String>) {
        if let Some(city) = before {
            if let Some(ids) = self.by_city.get_mut(&city) {
                ids.remove(&listing);
            }
        }
        if let Some(row) = self.set.offers.get(listing) {
            self.by_city
                .entry(row.city_key.clone())
                .or_default()
                .insert(listing);
            self.prices.insert(listing, row.price_rules());
        }
    }

    fn index_span(&mut self, span: Uuid, listing: Uuid) {
        let spans = self.taken.entry(listing).or_default();
        spans.retain(|(_, _, id)| *id != span);
        if let Some(row) = self.set.spans.get(span) {
            let at = spans.partition_point(|(from, _, _)| *from <= row.check_in);
            spans.insert(at, (row.check_in, row.check_out, span));
        }
        if spans.is_empty() {
            self.taken.remove(&listing);
        }
    }

    pub(super) fn apply(&mut self, e: &Decoded) {
        if let Some((listing, _)) = crate::availability::reviewed_listing(e) {
            let before = self.set.offers.get(listing).map(|r| r.city_key.clone());
            AvailabilityProjection::apply(&mut self.set, e);
            self.index_offer(listing, before);
            return;
        }
        let Event::Listing(event) = &e.event else {
            return;
        };
        let listing = e.aggregate_id;
        let before = self.set.offers.get(listing).map(|r| r.city_key.clone());
        AvailabilityProjection::apply(&mut self.set, e);
        match span_of(event) {
            Some(span) => self.index_span(span, listing),
            None => self.index_offer(listing, before),
        }
    }

    /// Whether some night of `[from, until)` is in no taken span of the listing.
    fn has_free_night(&self, listing: Uuid, from: NaiveDate, until: NaiveDate) -> bool {
        let Some(spans) = self.taken.get(&listing) else {
            return from < until;
        };
        // Sorted by check-in: walk the spans that start before `until`, pushing the first
        // night not yet covered forward; a gap before the next span is a free night.
        let mut first_uncovered = from;
        for (check_in, check_out, _) in spans.iter().take_while(|(ci, _, _)| *ci < until) {
            if *check_in > first_uncovered {
                return true;
            }
            first_uncovered = first_uncovered.max(*check_out);
            if first_uncovered >= until {
                return false;
            }
        }
        first_uncovered < until
    }

    fn is_free(&self, listing: Uuid, check_in: NaiveDate, check_out: NaiveDate) -> bool {
        self.taken.get(&listing).is_none_or(|spans| {
            // Sorted by check-in: only spans starting before the stay ends can overlap.
            let end = spans.partition_point(|(from, _, _)| *from < check_out);
            !spans[..end].iter().any(|(_, to, _)| *to > check_in)
        })
    }
}

impl SearchIndex {
    /// Active listings in the city that take the guests and the stay's length and are free
    /// every night of it, in listing-id order after the cursor; the page and the next cursor.
    pub fn search(&self, query: &StayQuery) -> (Vec<Offer>, Option<Uuid>) {
        let range = query.range.expect("availability search needs dates");
        let nights = range.nights();
        let page = query.limit.max(1);
        let bbox = query.near.map(|(c, r)| bounding_box(&c, r));
        let guard = self.state.read().expect("index lock");
        let state = &guard.availability;
        let Some(ids) = state.by_city.get(&city_key(&query.city)) else {
            return (Vec::new(), None);
        };
        let start = match query.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut offers = Vec::new();
        for id in ids.range((start, Bound::Unbounded)) {
            let Some(row) = state.set.offers.get(*id) else {
                continue;
            };
            if row.status != "active"
                || row.max_guests < i64::from(query.guests)
                || row.min_nights > i64::from(nights)
                || row.max_nights < i64::from(nights)
                || query
                    .max_price_kzt
                    .is_some_and(|p| row.nightly_price_kzt > p)
            {
                continue;
            }
            let distance_km = match query.near {
                Some((center, radius)) => {
                    let Some(at) = row.location() else { continue };
                    let (lat0, lat1, lon0, lon1) = bbox.expect("box of the circle");
                    if at.lat() < lat0 || at.lat() > lat1 || at.lon() < lon0 || at.lon() > lon1 {
                        continue;
                    }
                    let d = center.distance_km(&at);
                    if d > radius {
                        continue;
                    }
                    Some(d)
                }
                None => None,
            };
            if !state.is_free(*id, range.check_in(), range.check_out()) {
                continue;
            }
            if offers.len() == page {
                // One more match exists: the page ends at the last one taken.
                let next = offers.last().map(|o: &Offer| o.listing.listing_id);
                return (offers, next);
            }
            let quote = state
                .prices
                .get(id)
                .map(|rules| rules.quote(&range))
                .unwrap_or_else(|| row.price_rules().quote(&range));
            offers.push(Offer {
                nights: quote.nights,
                total_kzt: quote.total_kzt.value(),
                distance_km,
                listing: row.clone(),
            });
        }
        (offers, None)
    }

    /// The availability rows in the projection's dump format (see `Projector::dump`), to
    /// compare with the tables.
    pub fn dump(&self) -> Vec<String> {
        let guard = self.state.read().expect("index lock");
        let state = &guard.availability;
        let offers = state
            .set
            .offers
            .iter()
            .map(|r| format!("{}: {r:?}", OfferRow::TABLE.name));
        let spans = state
            .set
            .spans
            .iter()
            .map(|r| format!("{}: {r:?}", SpanRow::TABLE.name));
        offers.chain(spans).collect()
    }

    /// Per city (as the first listing of it spells it): active listings with at least one
    /// free night in `[from, from + nights)`. The low-inventory gauge.
    pub fn free_listings_by_city(&self, from: NaiveDate, nights: u32) -> Vec<(String, usize)> {
        let until = from + chrono::Days::new(u64::from(nights));
        let guard = self.state.read().expect("index lock");
        let state = &guard.availability;
        let mut out = Vec::new();
        for ids in state.by_city.values() {
            let mut label = None;
            let mut free = 0;
            for id in ids {
                let Some(row) = state.set.offers.get(*id) else {
                    continue;
                };
                label.get_or_insert_with(|| row.city.trim().to_string());
                if row.status == "active" && state.has_free_night(*id, from, until) {
                    free += 1;
                }
            }
            if let Some(city) = label {
                out.push((city, free));
            }
        }
        out
    }

    /// How many listings and taken spans the index holds.
    pub fn size(&self) -> (usize, usize) {
        let guard = self.state.read().expect("index lock");
        let state = &guard.availability;
        (state.set.offers.len(), state.set.spans.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `has_free_night` against asking every night of the window, on random calendars.
    #[test]
    fn a_free_night_is_found_exactly_when_one_exists() {
        let day0 = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        let day = |n: u64| day0 + chrono::Days::new(n);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..2000 {
            let listing = Uuid::now_v7();
            let mut state = Part::default();
            let mut spans = Vec::new();
            for _ in 0..next(6) {
                let from = next(20);
                spans.push((day(from), day(from + 1 + next(6)), Uuid::now_v7()));
            }
            spans.sort_by_key(|s| s.0);
            if !spans.is_empty() {
                state.taken.insert(listing, spans.clone());
            }
            let (from, len) = (next(20), next(9));
            let brute = (from..from + len).any(|n| {
                !spans
                    .iter()
                    .any(|(ci, co, _)| *ci <= day(n) && day(n) < *co)
            });
            assert_eq!(
                state.has_free_night(listing, day(from), day(from + len)),
                brute,
                "spans {spans:?}, window {from}+{len}"
            );
        }
    }
}
