//! The catalogue part of the [`SearchIndex`]: the listings projection's rows, with listing ids
//! in id order overall and by city, for `GET /listings`. A search answers what
//! [`ListingsProjection::search`] answers on the table: the same filters, order and cursors.
use super::SearchIndex;
use crate::availability::{bounding_box, city_key, reviewed_listing};
use crate::event::Decoded;
use crate::listings::{
    amenity_key, CatalogueQuery, CatalogueRow, CatalogueSet, ListingsProjection,
};
use crate::projector::Projection;
use crate::rows::WorkingSet;
use crate::table::Row;
use domain::Event;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use store::history::Checkpoint;
use uuid::Uuid;

pub(super) struct Part {
    /// Where the table stood when it was loaded: events up to here are in its rows.
    pub(super) loaded: Checkpoint,
    /// The projection's rows (a complete working set: a missing row is an absent one).
    set: CatalogueSet,
    /// Every listing id, in id order (the search's order), for a search without a city.
    all: BTreeSet<Uuid>,
    /// Listing ids by `city_key`, in id order.
    by_city: HashMap<String, BTreeSet<Uuid>>,
}

impl Default for Part {
    fn default() -> Self {
        Part {
            loaded: Checkpoint::default(),
            set: CatalogueSet::new(true),
            all: BTreeSet::new(),
            by_city: HashMap::new(),
        }
    }
}

impl Part {
    /// The part of a table read at `at`.
    pub(super) fn loaded(at: Checkpoint, rows: Vec<CatalogueRow>) -> Self {
        let mut part = Part {
            loaded: at,
            ..Part::default()
        };
        for row in rows {
            let id = row.listing_id;
            part.set.listings.put(row);
            part.index(id, None);
        }
        part
    }

    /// Files the listing under its city (and drops it from `before`, the city it was under).
    fn index(&mut self, listing: Uuid, before: Option<String>) {
        if let Some(city) = before {
            if let Some(ids) = self.by_city.get_mut(&city) {
                ids.remove(&listing);
                if ids.is_empty() {
                    self.by_city.remove(&city);
                }
            }
        }
        match self.set.listings.get(listing) {
            Some(row) => {
                self.all.insert(listing);
                self.by_city
                    .entry(row.city_key.clone())
                    .or_default()
                    .insert(listing);
            }
            None => {
                self.all.remove(&listing);
            }
        }
    }

    pub(super) fn apply(&mut self, e: &Decoded) {
        let listing = match (reviewed_listing(e), &e.event) {
            (Some((listing, _)), _) => listing,
            (None, Event::Listing(_)) => e.aggregate_id,
            _ => return,
        };
        let before = self.set.listings.get(listing).map(|r| r.city_key.clone());
        ListingsProjection::apply(&mut self.set, e);
        let after = self.set.listings.get(listing).map(|r| &r.city_key);
        // Most events (a reservation, a review) leave the city as it was.
        if before.as_ref() != after || !self.all.contains(&listing) {
            self.index(listing, before);
        }
    }
}

/// Whether `row` passes the catalogue's filters short of the exact distance: active, the
/// guests, the price, inside the circle's bounding box, and every amenity (each `,key,`).
fn passes(
    row: &CatalogueRow,
    query: &CatalogueQuery,
    bbox: Option<(f64, f64, f64, f64)>,
    amenities: &[String],
) -> bool {
    row.status == "active"
        && query.guests.is_none_or(|g| row.max_guests >= i64::from(g))
        && query
            .max_price_kzt
            .is_none_or(|p| row.nightly_price_kzt <= p)
        && bbox.is_none_or(|(lat0, lat1, lon0, lon1)| match (row.lat, row.lon) {
            (Some(lat), Some(lon)) => lat0 <= lat && lat <= lat1 && lon0 <= lon && lon <= lon1,
            _ => false,
        })
        && amenities.iter().all(|a| row.amenities.contains(a.as_str()))
}

impl SearchIndex {
    /// Active listings matching every given filter, in id order after the cursor, each with
    /// its distance when `near` is given; the page and the next cursor, which is the page's
    /// last listing when another listing passes the filters short of the distance (as the
    /// table's search pages).
    pub fn catalogue(
        &self,
        query: &CatalogueQuery,
    ) -> (Vec<(CatalogueRow, Option<f64>)>, Option<Uuid>) {
        let page = query.limit.max(1);
        let bbox = query.near.map(|(c, r)| bounding_box(&c, r));
        let amenities: Vec<String> = query
            .amenities
            .iter()
            .map(|a| format!(",{},", amenity_key(a)))
            .collect();
        let guard = self.state.read().expect("index lock");
        let part = &guard.catalogue;
        let ids = match &query.city {
            Some(city) => match part.by_city.get(&city_key(city)) {
                Some(ids) => ids,
                None => return (Vec::new(), None),
            },
            None => &part.all,
        };
        let start = match query.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut found: Vec<(CatalogueRow, Option<f64>)> = Vec::new();
        for id in ids.range((start, Bound::Unbounded)) {
            let Some(row) = part.set.listings.get(*id) else {
                continue;
            };
            if !passes(row, query, bbox, &amenities) {
                continue;
            }
            if found.len() == page {
                let next = found.last().map(|(r, _)| r.listing_id);
                return (found, next);
            }
            let distance_km = match query.near {
                Some((center, radius)) => {
                    let Some(at) = row.location() else { continue };
                    let d = center.distance_km(&at);
                    if d > radius {
                        continue;
                    }
                    Some(d)
                }
                None => None,
            };
            found.push((row.clone(), distance_km));
        }
        (found, None)
    }

    /// The catalogue rows in the projection's dump format (see `Projector::dump`), to compare
    /// with the table.
    pub fn catalogue_dump(&self) -> Vec<String> {
        let guard = self.state.read().expect("index lock");
        guard
            .catalogue
            .set
            .listings
            .iter()
            .map(|r| format!("{}: {r:?}", CatalogueRow::TABLE.name))
            .collect()
    }
}
