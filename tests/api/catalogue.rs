//! The catalogue (`GET /listings`) answered from the in-memory search index: against the
//! table's own search (`ListingsProjection::search`, SQL) on randomized listings and queries,
//! page by page; its rows against the table's; and an index loaded while the availability and
//! listings tables stand at different checkpoints.
use crate::helpers::*;
use crate::on_both_backends;
use crate::projections::{caught_up, index_caught_up, settle};
use crate::workload::{self, World, CITIES};
use commands::CommandMeta;
use domain::listing::ListingChanges;
use domain::{Actor, Channel, Kzt, Location, Role};
use projections::{CatalogueQuery, ListingsProjection, SearchIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

const AMENITIES: [&str; 4] = ["wifi", "parking", "kitchen", "sauna"];

/// Listings through the command side, then random bookings, edits and pauses, and some moves
/// to another city and new amenities (so that the index's city lists change).
async fn random_catalogue(app: &TestApp, seed: u64) -> Arc<Mutex<World>> {
    let world = Arc::new(Mutex::new(World::default()));
    workload::create_listings(&app.state.commands, &world, 30, seed).await;
    workload::run(app.state.commands.clone(), world.clone(), 300, 1, seed).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let listings = world.lock().unwrap().listings.clone();
    for l in &listings {
        if !rng.random_bool(0.3) {
            continue;
        }
        let (city, lat, lon) = CITIES[rng.random_range(0..CITIES.len())];
        let changes = ListingChanges {
            city: Some(city.to_string()),
            location: Some(Location::parse(lat, lon).unwrap()),
            amenities: Some(
                AMENITIES
                    .iter()
                    .filter(|_| rng.random_bool(0.5))
                    .map(|a| a.to_string())
                    .collect(),
            ),
            nightly_price_kzt: Some(Kzt(rng.random_range(10..60) * 1000)),
            ..ListingChanges::default()
        };
        let meta = CommandMeta::new(
            Actor {
                user_id: l.host,
                role: Role::Host,
            },
            Channel::Api,
            Uuid::now_v7(),
        );
        app.state
            .commands
            .update_listing(l.id, changes, &meta)
            .await
            .expect("move a listing");
    }
    world
}

fn random_query(rng: &mut StdRng) -> CatalogueQuery {
    let city = match rng.random_range(0..5) {
        0 => None,
        1 => Some("Nowhere".to_string()),
        // The city as guests type it: any case, spaces around.
        _ => Some(format!(
            " {} ",
            CITIES[rng.random_range(0..CITIES.len())].0.to_uppercase()
        )),
    };
    let near = rng.random_bool(0.3).then(|| {
        let (_, lat, lon) = CITIES[rng.random_range(0..CITIES.len())];
        (
            Location::parse(lat, lon).unwrap(),
            rng.random_range(0.5..8.0),
        )
    });
    CatalogueQuery {
        city,
        guests: rng.random_bool(0.5).then(|| rng.random_range(1..=6)),
        max_price_kzt: rng
            .random_bool(0.4)
            .then(|| rng.random_range(10..60) * 1000),
        amenities: AMENITIES
            .iter()
            .filter(|_| rng.random_bool(0.25))
            .map(|a| a.to_uppercase())
            .collect(),
        near,
        after: None,
        limit: rng.random_range(1..=7),
    }
}

/// Every page of a query: each page's (listing, distance in millimetres) pairs and its next
/// cursor. (Millimetres: a distance read back from JSON may differ in its last bit.)
type Pages = Vec<(Vec<(Uuid, Option<i64>)>, Option<Uuid>)>;

fn mm(km: Option<f64>) -> Option<i64> {
    km.map(|d| (d * 1e6).round() as i64)
}

async fn sql_pages(app: &TestApp, query: &CatalogueQuery) -> Pages {
    let mut q = query.clone();
    let mut pages = Vec::new();
    loop {
        let (rows, next) = ListingsProjection::search(&app.state.reads.primary, &q)
            .await
            .unwrap();
        pages.push((
            rows.into_iter()
                .map(|(r, d)| (r.listing_id, mm(d)))
                .collect(),
            next,
        ));
        match next {
            Some(after) => q.after = Some(after),
            None => return pages,
        }
    }
}

/// The same pages through `GET /api/v1/listings`.
async fn api_pages(app: &TestApp, query: &CatalogueQuery) -> Pages {
    let mut path = format!("/api/v1/listings?limit={}", query.limit);
    if let Some(city) = &query.city {
        path.push_str(&format!("&city={}", city.replace(' ', "%20")));
    }
    if let Some(g) = query.guests {
        path.push_str(&format!("&guests={g}"));
    }
    if let Some(p) = query.max_price_kzt {
        path.push_str(&format!("&max_price_kzt={p}"));
    }
    if !query.amenities.is_empty() {
        path.push_str(&format!("&amenities={}", query.amenities.join(",")));
    }
    if let Some((center, radius)) = query.near {
        path.push_str(&format!(
            "&near={},{}&radius_km={radius}",
            center.lat(),
            center.lon()
        ));
    }
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.clone(),
        };
        let (status, body) = app.get(&page_path, None).await;
        assert_eq!(status, 200, "{page_path}: {body}");
        let items = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().parse().unwrap(),
                    mm(i["distance_km"].as_f64()),
                )
            })
            .collect();
        let next: Option<Uuid> = body["next_cursor"].as_str().map(|c| c.parse().unwrap());
        pages.push((items, next));
        match next {
            Some(c) => cursor = Some(c.to_string()),
            None => return pages,
        }
    }
}

async fn catalogue_agrees_with_the_table(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    random_catalogue(&app, 7).await;
    settle(&app).await;
    let reads = &app.state.reads;
    assert_eq!(
        reads.search_index.catalogue_dump(),
        reads.listings.dump().await.unwrap(),
        "the index's catalogue rows are the table's"
    );
    let mut rng = StdRng::seed_from_u64(11);
    let (mut listed, mut paged) = (0, 0);
    for _ in 0..150 {
        let query = random_query(&mut rng);
        let expected = sql_pages(&app, &query).await;
        let answered = api_pages(&app, &query).await;
        assert_eq!(answered, expected, "{query:?}");
        listed += expected.iter().map(|(items, _)| items.len()).sum::<usize>();
        paged += usize::from(expected.len() > 1);
    }
    assert!(
        listed > 200 && paged > 20,
        "the queries found too little to tell: {listed} listed, {paged} paged"
    );
    app.finish().await;
}
on_both_backends!(
    catalogue_search_agrees_with_the_tables_search,
    catalogue_agrees_with_the_table
);

/// The builders are off, so the test moves the two tables apart: listings at the middle of the
/// history, availability at its end; an index loaded then holds what the tables hold once both
/// are caught up.
async fn index_loads_tables_at_different_checkpoints(backend: Backend, test: &str) {
    let Some(app) = spawn_app_with(backend, test, &[("ZHILEGO_PROJECTIONS", "off")]).await else {
        return;
    };
    let reads = &app.state.reads;
    let world = random_catalogue(&app, 3).await;
    caught_up(&reads.listings).await;
    workload::run(app.state.commands.clone(), world, 600, 1, 5).await;
    random_catalogue(&app, 4).await;
    caught_up(&reads.availability).await;
    let listings_at = reads.listings.checkpoint().await.unwrap().checkpoint;
    let availability_at = reads.availability.checkpoint().await.unwrap().checkpoint;
    assert!(listings_at < availability_at);

    let index = SearchIndex::new(app.db.clone(), reads.primary.clone());
    index.load().await.unwrap();
    index_caught_up(&app, &index).await;
    caught_up(&reads.listings).await;
    assert_eq!(index.catalogue_dump(), reads.listings.dump().await.unwrap());
    assert_eq!(index.dump(), reads.availability.dump().await.unwrap());
    app.finish().await;
}
on_both_backends!(
    search_index_loads_tables_at_different_checkpoints,
    index_loads_tables_at_different_checkpoints
);
