//! The availability projection held in memory by each API process, so that searches run at
//! memory speed instead of a database round trip each.
//!
//! It starts from the projection's tables (one snapshot: rows and checkpoint), then folds new
//! events from the store with the very same fold as the projection ([`AvailabilityProjection`]),
//! after every local write and on a short timer; a read with `min_position` pulls what it
//! needs at once. It may run ahead of the tables, never behind what it has promised.
use crate::availability::span_of;
use crate::availability::{
    bounding_box, city_key, AvailabilityProjection, AvailabilitySet, Offer, OfferRow, SpanRow,
    StayQuery,
};
use crate::event::{decode_until_fault, Decoded, Undecodable};
use crate::projector::Projection;
use crate::rows::WorkingSet;
use crate::table::{Arg, ReadTx, Row};
use chrono::NaiveDate;
use domain::pricing::PriceRules;
use domain::Event;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::RwLock;
use std::time::Duration;
use store::history::{self, Checkpoint};
use store::{Database, StoreError, StoredEvent};
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

struct IndexState {
    checkpoint: Checkpoint,
    /// The projection's rows (a complete working set: a missing row is an absent one).
    set: AvailabilitySet,
    /// Listing ids by `city_key`, in id order (the search's order).
    by_city: HashMap<String, BTreeSet<Uuid>>,
    /// Taken spans by listing: (check_in, check_out, span id).
    taken: HashMap<Uuid, Vec<(NaiveDate, NaiveDate, Uuid)>>,
    /// Parsed price rules by listing.
    prices: HashMap<Uuid, PriceRules>,
}

impl IndexState {
    fn empty() -> Self {
        IndexState {
            checkpoint: Checkpoint::default(),
            set: AvailabilitySet::new(true),
            by_city: HashMap::new(),
            taken: HashMap::new(),
            prices: HashMap::new(),
        }
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

    fn apply(&mut self, e: &Decoded) {
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

    /// Folds a run of events that continues from the checkpoint, up to the first that does
    /// not decode; the checkpoint is then `tail`, or the last event folded before a fault.
    fn fold<'a>(
        &mut self,
        run: impl IntoIterator<Item = &'a StoredEvent>,
        tail: Checkpoint,
    ) -> Result<(), Box<Undecodable>> {
        let (events, fault) = decode_until_fault(run);
        for e in &events {
            self.apply(e);
        }
        match fault {
            None => self.checkpoint = tail,
            Some(fault) => {
                if let Some(last) = events.last() {
                    self.checkpoint = last.checkpoint();
                }
                return Err(fault);
            }
        }
        Ok(())
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

/// The index stops before an event it cannot decode, as the projection does (which records
/// and reports the fault).
fn index_stopped(fault: Box<Undecodable>) -> StoreError {
    StoreError::Integrity(format!("availability index stopped: {fault}"))
}

pub struct AvailabilityIndex {
    store: Database,
    read: Database,
    state: RwLock<IndexState>,
    /// One catch-up at a time; the others wait for it and find the work done.
    catching_up: Mutex<()>,
    applied: watch::Sender<Checkpoint>,
}

const BATCH: i64 = 5_000;

impl AvailabilityIndex {
    pub fn new(store: Database, read: Database) -> Self {
        AvailabilityIndex {
            store,
            read,
            state: RwLock::new(IndexState::empty()),
            catching_up: Mutex::new(()),
            applied: watch::channel(Checkpoint::default()).0,
        }
    }

    /// Loads the projection's tables (one snapshot) and catches up from the store.
    pub async fn load(&self) -> Result<(), StoreError> {
        let _turn = self.catching_up.lock().await;
        let mut tx = ReadTx::begin_snapshot(&self.read).await?;
        #[derive(sqlx::FromRow)]
        struct Cp {
            tx: i64,
            position: i64,
        }
        let checkpoint = tx
            .fetch::<Cp>(
                "SELECT tx, position FROM projection_checkpoints WHERE name = $1",
                &[Arg::Text(AvailabilityProjection::NAME.to_string())],
            )
            .await?
            .pop()
            .map(|c| Checkpoint {
                tx: c.tx,
                position: c.position,
            })
            .unwrap_or_default();
        let offers: Vec<OfferRow> = tx.fetch(&OfferRow::TABLE.select(), &[]).await?;
        let spans: Vec<SpanRow> = tx.fetch(&SpanRow::TABLE.select(), &[]).await?;
        drop(tx);
        let mut state = IndexState::empty();
        state.checkpoint = checkpoint;
        for row in offers {
            let id = row.listing_id;
            state.set.offers.put(row);
            state.index_offer(id, None);
        }
        for row in spans {
            let (id, listing) = (row.span_id, row.listing_id);
            state.set.spans.put(row);
            state.index_span(id, listing);
        }
        *self.state.write().expect("index lock") = state;
        self.applied.send_replace(checkpoint);
        drop(_turn);
        self.catch_up().await?;
        Ok(())
    }

    pub fn checkpoint(&self) -> Checkpoint {
        self.state.read().expect("index lock").checkpoint
    }

    /// Folds in whatever the store has after the index's checkpoint.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        let _turn = self.catching_up.lock().await;
        let mut total = 0;
        loop {
            let from = self.checkpoint();
            let events = history::events_after_for_folding(&self.store, from, BATCH).await?;
            let n = events.len();
            if n == 0 {
                return Ok(total);
            }
            let reached = events.last().expect("non-empty").checkpoint();
            let folded = {
                let mut state = self.state.write().expect("index lock");
                let folded = state.fold(&events, reached);
                self.applied.send_replace(state.checkpoint);
                folded
            };
            folded.map_err(index_stopped)?;
            total += n;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// Applies linked events from the in-process bus: duplicates are skipped, the next events
    /// applied, and a gap filled from the store.
    pub async fn apply_links(&self, links: &[bus::Link]) -> Result<(), StoreError> {
        let gap = {
            let _turn = self.catching_up.lock().await;
            let mut state = self.state.write().expect("index lock");
            let (run, tail, gap) = bus::follow(state.checkpoint, links);
            let folded = state.fold(run, tail);
            self.applied.send_replace(state.checkpoint);
            folded.map_err(index_stopped)?;
            gap
        };
        if gap.is_some() {
            self.catch_up().await?;
            return Box::pin(self.apply_links(links)).await;
        }
        Ok(())
    }

    /// Keeps the index current from the in-process bus until `shutdown`, reading the store
    /// when it starts, falls behind the bus, or every 5 s.
    pub async fn follow_bus(
        &self,
        bus: &bus::LocalBus,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        tokio::pin!(shutdown);
        let mut rx = bus.subscribe();
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, "availability index: catching up failed");
            }
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    batch = rx.recv() => match batch {
                        Ok(links) => {
                            if let Err(e) = self.apply_links(&links).await {
                                tracing::warn!(error = %e, "availability index: applying failed");
                                break;
                            }
                        }
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep(Duration::from_secs(5)) => break,
                }
            }
        }
    }

    /// Keeps the index current until `shutdown`: after every nudge and every `poll`.
    pub async fn follow(
        &self,
        nudge: &tokio::sync::Notify,
        poll: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, "availability index: catching up failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                // Let a burst of writes land, then read them in one go.
                _ = nudge.notified() => tokio::time::sleep(Duration::from_millis(10)).await,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Makes sure the index has the event at `position`, pulling from the store if needed;
    /// gives up after `timeout`.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // The event's order key, once the store has it.
        let mut target = None;
        loop {
            if target.is_none() {
                target = history::checkpoint_of(&self.store, position).await?;
            }
            let reached = match target {
                Some(target) => self.checkpoint() >= target,
                None => self.checkpoint().position >= position,
            };
            if reached {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            if self.catch_up().await? == 0 {
                // An event still in an open transaction: the store has not released it yet.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Active listings in the city that take the guests and the stay's length and are free
    /// every night of it, in listing-id order after the cursor; the page and the next cursor.
    pub fn search(&self, query: &StayQuery) -> (Vec<Offer>, Option<Uuid>) {
        let range = query.range.expect("availability search needs dates");
        let nights = range.nights();
        let page = query.limit.max(1);
        let bbox = query.near.map(|(c, r)| bounding_box(&c, r));
        let state = self.state.read().expect("index lock");
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

    /// The index's rows in the projection's dump format (see `Projector::dump`), to compare
    /// with the tables.
    pub fn dump(&self) -> Vec<String> {
        let state = self.state.read().expect("index lock");
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
        let state = self.state.read().expect("index lock");
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
        let state = self.state.read().expect("index lock");
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
            let mut state = IndexState::empty();
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
