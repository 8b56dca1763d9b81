//! "A guest's own held reservation counts as theirs": `Commands::book_or_resume` against a
//! real (SQLite) event store.
use chrono::{Duration, Utc};
use commands::{BookRequest, CommandMeta, Commands, CommandsConfig, FlowError, MasterKey};
use domain::cancellation::CancellationPolicy;
use domain::listing::{ListingDetails, ListingError, ListingStatus};
use domain::pricing::PriceRules;
use domain::{Actor, Channel, DateRange, Kzt, Role};
use store::{with_pool, Database};
use uuid::Uuid;

struct World {
    commands: Commands,
    db: Database,
    listing: Uuid,
    _dir: TempDir,
}

/// A directory under the system's temp dir, removed at the end of the test.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn world() -> World {
    let dir = std::env::temp_dir().join(format!("zhilego-own-hold-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("store.db").display());
    let db = Database::connect(&url, 4).await.unwrap();
    db.migrate().await.unwrap();
    let key = MasterKey::from_hex(&MasterKey::generate_hex()).unwrap();
    let commands = Commands::new(db.clone(), CommandsConfig::default(), key);
    let details = ListingDetails {
        title: "Flat by the park".into(),
        city: "Almaty".into(),
        address: "Abay Ave 10".into(),
        location: None,
        rooms: 2,
        max_guests: 4,
        pricing: PriceRules {
            nightly_price_kzt: Kzt(20_000),
            cleaning_fee_kzt: Kzt(5_000),
            weekday_prices: vec![],
            range_prices: vec![],
        },
        min_nights: 1,
        max_nights: 30,
        cancellation_policy: CancellationPolicy::Moderate,
        photos: vec![],
        amenities: vec![],
    };
    let host = Uuid::now_v7();
    let listing = commands
        .create_listing(
            host,
            details,
            ListingStatus::Active,
            &meta(host, Role::Host, Channel::Api),
        )
        .await
        .unwrap()
        .value
        .id
        .unwrap();
    World {
        commands,
        db,
        listing,
        _dir: TempDir(dir),
    }
}

fn meta(user_id: Uuid, role: Role, channel: Channel) -> CommandMeta {
    CommandMeta::new(Actor { user_id, role }, channel, Uuid::now_v7())
}

fn guest(user_id: Uuid) -> CommandMeta {
    meta(user_id, Role::Guest, Channel::Telegram)
}

fn stay(from: i64, to: i64) -> DateRange {
    let today = domain::local_date(Utc::now());
    DateRange::parse(today + Duration::days(from), today + Duration::days(to)).unwrap()
}

impl World {
    fn request(&self, range: DateRange) -> BookRequest {
        BookRequest {
            listing_id: self.listing,
            range,
            guests: 2,
        }
    }

    async fn events(&self) -> i64 {
        with_pool!(&self.db, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events")
                .fetch_one(pool)
                .await
                .unwrap()
        })
    }
}

fn taken<T: std::fmt::Debug>(result: Result<T, FlowError>) -> bool {
    matches!(
        result,
        Err(FlowError::Listing(ListingError::DatesUnavailable))
    )
}

#[tokio::test]
async fn a_guests_own_held_booking_of_the_same_stay_is_theirs_again() {
    let w = world().await;
    let (aigerim, other) = (Uuid::now_v7(), Uuid::now_v7());
    let first = w
        .commands
        .book(w.request(stay(10, 13)), &guest(aigerim))
        .await
        .unwrap();
    let booking_id = first.value.id.unwrap();
    let written = w.events().await;

    // The same guest asking again for the same stay gets the booking they hold, and nothing
    // is written.
    let again = w
        .commands
        .book_or_resume(w.request(stay(10, 13)), &guest(aigerim))
        .await
        .unwrap();
    assert_eq!(again.value.id, Some(booking_id));
    assert_eq!(again.value.total(), first.value.total());
    assert_eq!(again.position, first.position);
    assert_eq!(w.events().await, written, "nothing new in the store");

    // Plain `book` (the REST API) still refuses the second request.
    assert!(taken(
        w.commands
            .book(w.request(stay(10, 13)), &guest(aigerim))
            .await
    ));
    // Another guest, or another stay over the same nights, is refused as before.
    assert!(taken(
        w.commands
            .book_or_resume(w.request(stay(10, 13)), &guest(other))
            .await
    ));
    assert!(taken(
        w.commands
            .book_or_resume(w.request(stay(11, 14)), &guest(aigerim))
            .await
    ));
    assert!(taken(
        w.commands
            .book_or_resume(w.request(stay(10, 12)), &guest(aigerim))
            .await
    ));
    assert_eq!(w.events().await, written, "refusals write nothing");
}

#[tokio::test]
async fn a_booking_that_is_no_longer_held_is_not_resumed() {
    let w = world().await;
    let aigerim = Uuid::now_v7();
    let first = w
        .commands
        .book(w.request(stay(10, 13)), &guest(aigerim))
        .await
        .unwrap();
    let booking_id = first.value.id.unwrap();
    w.commands
        .cancel_booking(booking_id, "plans changed".into(), &guest(aigerim))
        .await
        .unwrap();
    // The nights are free again: asking again is a new booking, not the cancelled one.
    let again = w
        .commands
        .book_or_resume(w.request(stay(10, 13)), &guest(aigerim))
        .await
        .unwrap();
    assert_ne!(again.value.id, Some(booking_id));
    assert_eq!(
        again.value.status,
        domain::booking::BookingStatus::Held,
        "a fresh hold"
    );
}
