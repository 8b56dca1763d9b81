use super::*;
use crate::actor::{Actor, Role};
use crate::cancellation::CancellationPolicy;
use crate::pricing::{PriceBreakdown, PriceRules, RangePrice, WeekdayPrice};
use crate::values::{DateRange, Kzt, Location};
use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type ListingTest = TestFramework<Listing>;

#[path = "feed_tests.rs"]
mod feed_tests;

/// "Today" in every test: Tuesday, 2030-01-01.
const TODAY: &str = "2030-01-01";

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn today() -> NaiveDate {
    d(TODAY)
}

fn range(check_in: &str, check_out: &str) -> DateRange {
    DateRange::parse(d(check_in), d(check_out)).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn hold_until() -> DateTime<Utc> {
    at("2030-01-01T12:15:00Z")
}

fn listing_id() -> Uuid {
    Uuid::from_u128(0x1157)
}

fn host_id() -> Uuid {
    Uuid::from_u128(0x4057)
}

fn other_host_id() -> Uuid {
    Uuid::from_u128(0x4058)
}

fn guest_id() -> Uuid {
    Uuid::from_u128(0x6E57)
}

fn booking(n: u128) -> Uuid {
    Uuid::from_u128(0xB000 + n)
}

fn block(n: u128) -> Uuid {
    Uuid::from_u128(0xC000 + n)
}

fn actor(user_id: Uuid, role: Role) -> Actor {
    Actor { user_id, role }
}

fn the_host() -> Actor {
    actor(host_id(), Role::Host)
}

/// A valid apartment: 20 000 KZT a night, 5 000 cleaning fee, 1–4 guests, 2–14 nights.
fn details() -> ListingDetails {
    ListingDetails {
        title: "Cozy flat near Kok-Tobe".to_string(),
        city: "Almaty".to_string(),
        address: "Abay ave 10, apt 5".to_string(),
        location: Some(Location::parse(43.2389, 76.8897).unwrap()),
        rooms: 2,
        max_guests: 4,
        pricing: PriceRules {
            nightly_price_kzt: Kzt(20_000),
            cleaning_fee_kzt: Kzt(5_000),
            weekday_prices: vec![],
            range_prices: vec![],
        },
        min_nights: 2,
        max_nights: 14,
        cancellation_policy: CancellationPolicy::Moderate,
        photos: vec!["https://img.zhilyego.kz/1.jpg".to_string()],
        amenities: vec!["wifi".to_string(), "washer".to_string()],
    }
}

/// The price of `nights` nights of the sample listing, computed by hand (base price only).
fn flat_price(nights: u32) -> PriceBreakdown {
    PriceBreakdown {
        nights,
        nightly_kzt: vec![Kzt(20_000); nights as usize],
        nights_total_kzt: Kzt(20_000 * i64::from(nights)),
        cleaning_fee_kzt: Kzt(5_000),
        total_kzt: Kzt(20_000 * i64::from(nights) + 5_000),
    }
}

fn created_with(details: ListingDetails, status: ListingStatus) -> ListingEvent {
    ListingEvent::ListingCreated {
        listing_id: listing_id(),
        host_id: host_id(),
        details,
        status,
    }
}

fn created() -> ListingEvent {
    created_with(details(), ListingStatus::Active)
}

fn create_cmd(details: ListingDetails) -> ListingCommand {
    ListingCommand::CreateListing {
        listing_id: listing_id(),
        host_id: host_id(),
        details,
        status: ListingStatus::Active,
    }
}

fn invalid(field: &'static str, message: &'static str) -> ListingError {
    ListingError::Invalid { field, message }
}

fn reserve(booking_id: Uuid, stay: DateRange, guests: u32) -> ListingCommand {
    ListingCommand::ReserveDates {
        booking_id,
        guest_id: guest_id(),
        range: stay,
        guests,
        today: today(),
        hold_expires_at: hold_until(),
    }
}

/// A `DatesReserved` for the sample listing (base price only).
fn reserved(booking_id: Uuid, stay: DateRange, guests: u32) -> ListingEvent {
    ListingEvent::DatesReserved {
        booking_id,
        guest_id: guest_id(),
        range: stay,
        guests,
        price: flat_price(stay.nights()),
        hold_expires_at: hold_until(),
    }
}

fn block_cmd(by: Actor, block_id: Uuid, blocked: DateRange, reason: &str) -> ListingCommand {
    ListingCommand::BlockDates {
        actor: by,
        block_id,
        range: blocked,
        reason: reason.to_string(),
        today: today(),
    }
}

fn blocked(block_id: Uuid, blocked: DateRange, reason: &str) -> ListingEvent {
    ListingEvent::DatesBlocked {
        block_id,
        range: blocked,
        reason: reason.to_string(),
        source: None,
    }
}

fn update(by: Actor, changes: ListingChanges) -> ListingCommand {
    ListingCommand::UpdateListing { actor: by, changes }
}

/// Creating a listing whose details are `details` fails with `expected`.
fn creating_fails(details: ListingDetails, expected: ListingError) {
    ListingTest::with(())
        .given_no_previous_events()
        .when(create_cmd(details))
        .then_expect_error(expected);
}

// ---------------------------------------------------------------------------------------------
// Creating a listing
// ---------------------------------------------------------------------------------------------

#[test]
fn creating_a_valid_listing_records_it_with_its_details_and_status() {
    ListingTest::with(())
        .given_no_previous_events()
        .when(ListingCommand::CreateListing {
            listing_id: listing_id(),
            host_id: host_id(),
            details: details(),
            status: ListingStatus::Draft,
        })
        .then_expect_events(vec![created_with(details(), ListingStatus::Draft)]);
}

#[test]
fn a_listing_cannot_be_created_twice() {
    ListingTest::with(())
        .given(vec![created()])
        .when(create_cmd(details()))
        .then_expect_error(ListingError::AlreadyExists);
}

#[test]
fn title_must_not_be_blank() {
    let mut d = details();
    d.title = "   ".to_string();
    creating_fails(d, invalid("title", "must be 1 to 200 characters"));
}

#[test]
fn title_may_have_at_most_200_characters() {
    let mut ok = details();
    ok.title = "ж".repeat(200);
    ListingTest::with(())
        .given_no_previous_events()
        .when(create_cmd(ok.clone()))
        .then_expect_events(vec![created_with(ok, ListingStatus::Active)]);

    let mut too_long = details();
    too_long.title = "ж".repeat(201);
    creating_fails(too_long, invalid("title", "must be 1 to 200 characters"));
}

#[test]
fn city_must_not_be_blank() {
    let mut d = details();
    d.city = String::new();
    creating_fails(d, invalid("city", "must be 1 to 100 characters"));
}

#[test]
fn address_must_not_be_blank() {
    let mut d = details();
    d.address = " \t ".to_string();
    creating_fails(d, invalid("address", "must be 1 to 300 characters"));
}

#[test]
fn rooms_may_be_at_most_50() {
    let mut d = details();
    d.rooms = 51;
    creating_fails(d, invalid("rooms", "must be between 0 and 50"));
}

#[test]
fn max_guests_must_be_at_least_1() {
    let mut d = details();
    d.max_guests = 0;
    creating_fails(d, invalid("max_guests", "must be between 1 and 50"));
}

#[test]
fn max_guests_may_be_at_most_50() {
    let mut d = details();
    d.max_guests = 51;
    creating_fails(d, invalid("max_guests", "must be between 1 and 50"));
}

#[test]
fn nightly_price_must_be_positive() {
    let mut d = details();
    d.pricing.nightly_price_kzt = Kzt(0);
    creating_fails(
        d,
        invalid(
            "nightly_price_kzt",
            "must be a positive whole number of tenge",
        ),
    );
}

#[test]
fn cleaning_fee_must_not_be_negative() {
    let mut d = details();
    d.pricing.cleaning_fee_kzt = Kzt(-1);
    creating_fails(d, invalid("cleaning_fee_kzt", "must not be negative"));
}

#[test]
fn a_weekday_may_be_priced_at_most_once() {
    let mut d = details();
    d.pricing.weekday_prices = vec![
        WeekdayPrice {
            weekday: 5,
            nightly_price_kzt: Kzt(25_000),
        },
        WeekdayPrice {
            weekday: 5,
            nightly_price_kzt: Kzt(26_000),
        },
    ];
    creating_fails(
        d,
        invalid(
            "weekday_prices.weekday",
            "each weekday (1 = Monday … 7 = Sunday) at most once",
        ),
    );
}

#[test]
fn a_weekday_price_needs_a_weekday_between_1_and_7() {
    let mut d = details();
    d.pricing.weekday_prices = vec![WeekdayPrice {
        weekday: 0,
        nightly_price_kzt: Kzt(25_000),
    }];
    creating_fails(
        d,
        invalid(
            "weekday_prices.weekday",
            "each weekday (1 = Monday … 7 = Sunday) at most once",
        ),
    );
}

#[test]
fn weekday_price_overrides_must_be_positive() {
    let mut d = details();
    d.pricing.weekday_prices = vec![WeekdayPrice {
        weekday: 6,
        nightly_price_kzt: Kzt(0),
    }];
    creating_fails(
        d,
        invalid("nightly_price_kzt", "overrides must be positive"),
    );
}

#[test]
fn date_range_price_overrides_must_be_positive() {
    let mut d = details();
    d.pricing.range_prices = vec![RangePrice {
        range: range("2030-12-30", "2031-01-02"),
        nightly_price_kzt: Kzt(-5),
    }];
    creating_fails(
        d,
        invalid("nightly_price_kzt", "overrides must be positive"),
    );
}

#[test]
fn min_nights_must_be_at_least_1() {
    let mut d = details();
    d.min_nights = 0;
    creating_fails(d, invalid("min_nights", "must be between 1 and 90"));
}

#[test]
fn min_nights_may_be_at_most_90() {
    let mut d = details();
    d.min_nights = 91;
    d.max_nights = 91;
    creating_fails(d, invalid("min_nights", "must be between 1 and 90"));
}

#[test]
fn max_nights_must_not_be_below_min_nights() {
    let mut d = details();
    d.min_nights = 5;
    d.max_nights = 4;
    creating_fails(
        d,
        invalid("max_nights", "must be between min_nights and 90"),
    );
}

#[test]
fn max_nights_may_be_at_most_90() {
    let mut d = details();
    d.max_nights = 91;
    creating_fails(
        d,
        invalid("max_nights", "must be between min_nights and 90"),
    );
}

#[test]
fn photos_must_be_http_or_https_urls() {
    let mut d = details();
    d.photos = vec![
        "https://img.zhilyego.kz/1.jpg".to_string(),
        "ftp://img.zhilyego.kz/2.jpg".to_string(),
    ];
    creating_fails(d, invalid("photos", "must be at most 50 http(s) URLs"));
}

#[test]
fn a_photo_url_may_be_at_most_2000_bytes() {
    let mut d = details();
    d.photos = vec![format!("https://img.zhilyego.kz/{}", "a".repeat(2000))];
    creating_fails(d, invalid("photos", "must be at most 50 http(s) URLs"));
}

#[test]
fn a_listing_may_have_at_most_50_photos() {
    let mut d = details();
    d.photos = (0..51)
        .map(|i| format!("http://img.zhilyego.kz/{i}.jpg"))
        .collect();
    creating_fails(d, invalid("photos", "must be at most 50 http(s) URLs"));
}

#[test]
fn amenities_must_not_be_blank() {
    let mut d = details();
    d.amenities = vec!["wifi".to_string(), "  ".to_string()];
    creating_fails(
        d,
        invalid("amenities", "must be at most 100 non-empty names"),
    );
}

// ---------------------------------------------------------------------------------------------
// Updating a listing
// ---------------------------------------------------------------------------------------------

#[test]
fn updating_a_listing_that_does_not_exist_fails() {
    ListingTest::with(())
        .given_no_previous_events()
        .when(update(
            actor(host_id(), Role::Admin),
            ListingChanges {
                title: Some("New".to_string()),
                ..Default::default()
            },
        ))
        .then_expect_error(ListingError::NotFound);
}

#[test]
fn the_host_updates_their_listing_and_the_event_carries_the_merged_details() {
    let mut expected = details();
    expected.title = "Sunny flat near Kok-Tobe".to_string();
    expected.pricing.nightly_price_kzt = Kzt(22_000);
    ListingTest::with(())
        .given(vec![created()])
        .when(update(
            the_host(),
            ListingChanges {
                title: Some("Sunny flat near Kok-Tobe".to_string()),
                nightly_price_kzt: Some(Kzt(22_000)),
                ..Default::default()
            },
        ))
        .then_expect_events(vec![ListingEvent::ListingUpdated { details: expected }]);
}

#[test]
fn another_host_may_not_update_the_listing() {
    ListingTest::with(())
        .given(vec![created()])
        .when(update(
            actor(other_host_id(), Role::Host),
            ListingChanges {
                title: Some("Mine now".to_string()),
                ..Default::default()
            },
        ))
        .then_expect_error(ListingError::Forbidden);
}

#[test]
fn a_guest_may_not_update_a_listing() {
    ListingTest::with(())
        .given(vec![created()])
        .when(update(
            actor(guest_id(), Role::Guest),
            ListingChanges {
                max_guests: Some(10),
                ..Default::default()
            },
        ))
        .then_expect_error(ListingError::Forbidden);
}

#[test]
fn an_admin_may_update_any_listing() {
    let mut expected = details();
    expected.max_guests = 6;
    ListingTest::with(())
        .given(vec![created()])
        .when(update(
            actor(Uuid::from_u128(0xAD), Role::Admin),
            ListingChanges {
                max_guests: Some(6),
                ..Default::default()
            },
        ))
        .then_expect_events(vec![ListingEvent::ListingUpdated { details: expected }]);
}

#[test]
fn an_update_that_breaks_a_rule_is_refused() {
    ListingTest::with(())
        .given(vec![created()])
        .when(update(
            the_host(),
            ListingChanges {
                min_nights: Some(20),
                ..Default::default()
            },
        ))
        .then_expect_error(invalid("max_nights", "must be between min_nights and 90"));
}

#[test]
fn an_update_that_changes_nothing_emits_nothing() {
    ListingTest::with(())
        .given(vec![created()])
        .when(update(
            the_host(),
            ListingChanges {
                title: Some(details().title),
                max_guests: Some(details().max_guests),
                status: Some(ListingStatus::Active),
                ..Default::default()
            },
        ))
        .then_expect_events(vec![]);
}

#[test]
fn changing_only_the_status_emits_only_a_status_change() {
    ListingTest::with(())
        .given(vec![created()])
        .when(update(
            the_host(),
            ListingChanges {
                status: Some(ListingStatus::Paused),
                ..Default::default()
            },
        ))
        .then_expect_events(vec![ListingEvent::ListingStatusChanged {
            status: ListingStatus::Paused,
        }]);
}

#[test]
fn changing_details_and_status_emits_the_update_then_the_status_change() {
    let mut expected = details();
    expected.rooms = 3;
    ListingTest::with(())
        .given(vec![created_with(details(), ListingStatus::Draft)])
        .when(update(
            the_host(),
            ListingChanges {
                rooms: Some(3),
                status: Some(ListingStatus::Active),
                ..Default::default()
            },
        ))
        .then_expect_events(vec![
            ListingEvent::ListingUpdated { details: expected },
            ListingEvent::ListingStatusChanged {
                status: ListingStatus::Active,
            },
        ]);
}

// ---------------------------------------------------------------------------------------------
// Reserving dates
// ---------------------------------------------------------------------------------------------

#[test]
fn reserving_free_dates_on_an_active_listing_holds_them_at_the_quoted_price() {
    let stay = range("2030-02-04", "2030-02-07"); // Mon..Thu, 3 nights
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), stay, 2))
        .then_expect_events(vec![ListingEvent::DatesReserved {
            booking_id: booking(1),
            guest_id: guest_id(),
            range: stay,
            guests: 2,
            price: PriceBreakdown {
                nights: 3,
                nightly_kzt: vec![Kzt(20_000), Kzt(20_000), Kzt(20_000)],
                nights_total_kzt: Kzt(60_000),
                cleaning_fee_kzt: Kzt(5_000),
                total_kzt: Kzt(65_000),
            },
            hold_expires_at: hold_until(),
        }]);
}

#[test]
fn reserving_on_a_missing_listing_fails() {
    ListingTest::with(())
        .given_no_previous_events()
        .when(reserve(booking(1), range("2030-02-04", "2030-02-07"), 2))
        .then_expect_error(ListingError::NotFound);
}

#[test]
fn a_draft_listing_takes_no_bookings() {
    ListingTest::with(())
        .given(vec![created_with(details(), ListingStatus::Draft)])
        .when(reserve(booking(1), range("2030-02-04", "2030-02-07"), 2))
        .then_expect_error(ListingError::NotBookable);
}

#[test]
fn a_paused_listing_takes_no_bookings() {
    ListingTest::with(())
        .given(vec![
            created(),
            ListingEvent::ListingStatusChanged {
                status: ListingStatus::Paused,
            },
        ])
        .when(reserve(booking(1), range("2030-02-04", "2030-02-07"), 2))
        .then_expect_error(ListingError::NotBookable);
}

#[test]
fn an_archived_listing_takes_no_bookings() {
    ListingTest::with(())
        .given(vec![created_with(details(), ListingStatus::Archived)])
        .when(reserve(booking(1), range("2030-02-04", "2030-02-07"), 2))
        .then_expect_error(ListingError::NotBookable);
}

#[test]
fn check_in_in_the_past_is_refused() {
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), range("2029-12-31", "2030-01-03"), 2))
        .then_expect_error(ListingError::PastCheckIn);
}

#[test]
fn check_in_today_is_allowed() {
    let stay = range(TODAY, "2030-01-03");
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), stay, 1))
        .then_expect_events(vec![reserved(booking(1), stay, 1)]);
}

#[test]
fn check_in_more_than_730_days_ahead_is_refused() {
    // 2030-01-01 + 731 days = 2032-01-02.
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), range("2032-01-02", "2032-01-04"), 2))
        .then_expect_error(ListingError::BeyondHorizon);
}

#[test]
fn check_in_exactly_730_days_ahead_is_allowed() {
    let stay = range("2032-01-01", "2032-01-03");
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), stay, 2))
        .then_expect_events(vec![reserved(booking(1), stay, 2)]);
}

#[test]
fn a_stay_needs_at_least_one_guest() {
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), range("2030-02-04", "2030-02-07"), 0))
        .then_expect_error(invalid("guests", "must be at least 1"));
}

#[test]
fn a_stay_may_not_exceed_max_guests() {
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), range("2030-02-04", "2030-02-07"), 5))
        .then_expect_error(ListingError::TooManyGuests { max: 4 });
}

#[test]
fn a_stay_shorter_than_min_nights_is_refused() {
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), range("2030-02-04", "2030-02-05"), 2))
        .then_expect_error(ListingError::BelowMinNights { min: 2 });
}

#[test]
fn a_stay_longer_than_max_nights_is_refused() {
    // 15 nights against a maximum of 14.
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), range("2030-02-01", "2030-02-16"), 2))
        .then_expect_error(ListingError::AboveMaxNights { max: 14 });
}

#[test]
fn a_stay_of_exactly_max_nights_is_allowed() {
    let stay = range("2030-02-01", "2030-02-15");
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve(booking(1), stay, 2))
        .then_expect_events(vec![reserved(booking(1), stay, 2)]);
}

#[test]
fn nights_held_by_another_booking_are_unavailable() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-08"), 2),
        ])
        .when(reserve(booking(2), range("2030-02-07", "2030-02-10"), 2))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn nights_of_a_confirmed_booking_are_unavailable() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-08"), 2),
            ListingEvent::ReservationConfirmed {
                booking_id: booking(1),
            },
        ])
        .when(reserve(booking(2), range("2030-02-02", "2030-02-05"), 2))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn a_stay_inside_a_longer_reservation_is_unavailable() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-01", "2030-02-12"), 2),
        ])
        .when(reserve(booking(2), range("2030-02-04", "2030-02-06"), 2))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn nights_blocked_by_the_host_are_unavailable() {
    ListingTest::with(())
        .given(vec![
            created(),
            blocked(block(1), range("2030-02-06", "2030-02-07"), "repairs"),
        ])
        .when(reserve(booking(1), range("2030-02-04", "2030-02-08"), 2))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn a_stay_checking_out_on_anothers_check_in_day_is_allowed() {
    let stay = range("2030-02-01", "2030-02-04");
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-08"), 2),
        ])
        .when(reserve(booking(2), stay, 2))
        .then_expect_events(vec![reserved(booking(2), stay, 2)]);
}

#[test]
fn a_stay_checking_in_on_anothers_check_out_day_is_allowed() {
    let stay = range("2030-02-08", "2030-02-10");
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-08"), 2),
            blocked(block(1), range("2030-02-10", "2030-02-12"), "family visit"),
        ])
        .when(reserve(booking(2), stay, 2))
        .then_expect_events(vec![reserved(booking(2), stay, 2)]);
}

#[test]
fn the_quoted_price_applies_weekday_overrides_and_the_cleaning_fee() {
    let mut priced = details();
    priced.pricing.weekday_prices = vec![
        WeekdayPrice {
            weekday: 5,
            nightly_price_kzt: Kzt(25_000),
        }, // Friday
        WeekdayPrice {
            weekday: 6,
            nightly_price_kzt: Kzt(27_000),
        }, // Saturday
    ];
    // Thu 2030-01-10 .. Sun 2030-01-13: Thu, Fri, Sat nights.
    let stay = range("2030-01-10", "2030-01-13");
    ListingTest::with(())
        .given(vec![created_with(priced, ListingStatus::Active)])
        .when(reserve(booking(1), stay, 2))
        .then_expect_events(vec![ListingEvent::DatesReserved {
            booking_id: booking(1),
            guest_id: guest_id(),
            range: stay,
            guests: 2,
            price: PriceBreakdown {
                nights: 3,
                nightly_kzt: vec![Kzt(20_000), Kzt(25_000), Kzt(27_000)],
                nights_total_kzt: Kzt(72_000),
                cleaning_fee_kzt: Kzt(5_000),
                total_kzt: Kzt(77_000),
            },
            hold_expires_at: hold_until(),
        }]);
}

#[test]
fn the_quoted_price_applies_date_range_overrides_over_weekday_ones() {
    let mut priced = details();
    priced.pricing.weekday_prices = vec![WeekdayPrice {
        weekday: 2,
        nightly_price_kzt: Kzt(21_000),
    }]; // Tuesday
    priced.pricing.range_prices = vec![RangePrice {
        range: range("2030-12-31", "2031-01-02"),
        nightly_price_kzt: Kzt(50_000),
    }];
    // Mon 2030-12-30, Tue 2030-12-31 (range wins over Tuesday), Wed 2031-01-01, Thu 2031-01-02.
    let stay = range("2030-12-30", "2031-01-03");
    ListingTest::with(())
        .given(vec![created_with(priced, ListingStatus::Active)])
        .when(reserve(booking(1), stay, 2))
        .then_expect_events(vec![ListingEvent::DatesReserved {
            booking_id: booking(1),
            guest_id: guest_id(),
            range: stay,
            guests: 2,
            price: PriceBreakdown {
                nights: 4,
                nightly_kzt: vec![Kzt(20_000), Kzt(50_000), Kzt(50_000), Kzt(20_000)],
                nights_total_kzt: Kzt(140_000),
                cleaning_fee_kzt: Kzt(5_000),
                total_kzt: Kzt(145_000),
            },
            hold_expires_at: hold_until(),
        }]);
}

#[test]
fn retrying_a_reservation_for_the_same_booking_and_range_emits_nothing() {
    let stay = range("2030-02-04", "2030-02-07");
    ListingTest::with(())
        .given(vec![created(), reserved(booking(1), stay, 2)])
        .when(reserve(booking(1), stay, 2))
        .then_expect_events(vec![]);
}

#[test]
fn the_same_booking_may_not_reserve_a_different_range() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
        ])
        .when(reserve(booking(1), range("2030-03-04", "2030-03-07"), 2))
        .then_expect_error(ListingError::DatesUnavailable);
}

// ---------------------------------------------------------------------------------------------
// Confirming and releasing reservations
// ---------------------------------------------------------------------------------------------

#[test]
fn confirming_a_held_reservation_records_the_confirmation() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
        ])
        .when(ListingCommand::ConfirmReservation {
            booking_id: booking(1),
        })
        .then_expect_events(vec![ListingEvent::ReservationConfirmed {
            booking_id: booking(1),
        }]);
}

#[test]
fn confirming_an_already_confirmed_reservation_emits_nothing() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
            ListingEvent::ReservationConfirmed {
                booking_id: booking(1),
            },
        ])
        .when(ListingCommand::ConfirmReservation {
            booking_id: booking(1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn confirming_an_unknown_reservation_fails() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
        ])
        .when(ListingCommand::ConfirmReservation {
            booking_id: booking(2),
        })
        .then_expect_error(ListingError::UnknownReservation);
}

#[test]
fn releasing_a_reservation_records_its_range_and_reason() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
        ])
        .when(ListingCommand::ReleaseDates {
            booking_id: booking(1),
            reason: ReleaseReason::Expired,
        })
        .then_expect_events(vec![ListingEvent::DatesReleased {
            booking_id: booking(1),
            range: range("2030-02-04", "2030-02-07"),
            reason: ReleaseReason::Expired,
        }]);
}

#[test]
fn released_nights_can_be_reserved_again() {
    let stay = range("2030-02-04", "2030-02-07");
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), stay, 2),
            ListingEvent::ReservationConfirmed {
                booking_id: booking(1),
            },
            ListingEvent::DatesReleased {
                booking_id: booking(1),
                range: stay,
                reason: ReleaseReason::Cancelled,
            },
        ])
        .when(reserve(booking(2), stay, 3))
        .then_expect_events(vec![reserved(booking(2), stay, 3)]);
}

#[test]
fn releasing_an_unknown_or_already_released_booking_emits_nothing() {
    let stay = range("2030-02-04", "2030-02-07");
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), stay, 2),
            ListingEvent::DatesReleased {
                booking_id: booking(1),
                range: stay,
                reason: ReleaseReason::Compensated,
            },
        ])
        .when(ListingCommand::ReleaseDates {
            booking_id: booking(1),
            reason: ReleaseReason::Compensated,
        })
        .then_expect_events(vec![]);
}

// ---------------------------------------------------------------------------------------------
// Host blocks
// ---------------------------------------------------------------------------------------------

#[test]
fn the_host_blocks_free_nights() {
    ListingTest::with(())
        .given(vec![created()])
        .when(block_cmd(
            the_host(),
            block(1),
            range("2030-03-01", "2030-03-05"),
            "repairs",
        ))
        .then_expect_events(vec![blocked(
            block(1),
            range("2030-03-01", "2030-03-05"),
            "repairs",
        )]);
}

#[test]
fn blocking_nights_of_a_reservation_is_refused() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
        ])
        .when(block_cmd(
            the_host(),
            block(1),
            range("2030-02-06", "2030-02-10"),
            "repairs",
        ))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn blocking_nights_already_blocked_is_refused() {
    ListingTest::with(())
        .given(vec![
            created(),
            blocked(block(1), range("2030-03-01", "2030-03-05"), "repairs"),
        ])
        .when(block_cmd(
            the_host(),
            block(2),
            range("2030-03-04", "2030-03-06"),
            "guests",
        ))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn another_host_may_not_block_dates() {
    ListingTest::with(())
        .given(vec![created()])
        .when(block_cmd(
            actor(other_host_id(), Role::Host),
            block(1),
            range("2030-03-01", "2030-03-05"),
            "mine",
        ))
        .then_expect_error(ListingError::Forbidden);
}

#[test]
fn a_block_entirely_in_the_past_is_refused() {
    // check_out == today: no night of the block is in the future.
    ListingTest::with(())
        .given(vec![created()])
        .when(block_cmd(
            the_host(),
            block(1),
            range("2029-12-28", TODAY),
            "late",
        ))
        .then_expect_error(ListingError::PastCheckIn);
}

#[test]
fn a_block_ends_within_the_booking_horizon() {
    // 2030-01-01 + 730 days + 90 nights = 2032-03-31: the last day a stay can end on.
    let last = range("2032-03-28", "2032-03-31");
    ListingTest::with(())
        .given(vec![created()])
        .when(block_cmd(the_host(), block(1), last, "far"))
        .then_expect_events(vec![blocked(block(1), last, "far")]);
    ListingTest::with(())
        .given(vec![created()])
        .when(block_cmd(
            the_host(),
            block(1),
            range("2032-03-28", "2032-04-01"),
            "far",
        ))
        .then_expect_error(ListingError::Invalid {
            field: "to",
            message: "must be within the booking horizon (730 days ahead, plus the longest stay)",
        });
}

#[test]
fn a_block_reason_may_have_at_most_500_characters() {
    ListingTest::with(())
        .given(vec![created()])
        .when(block_cmd(
            the_host(),
            block(1),
            range("2030-03-01", "2030-03-05"),
            &"x".repeat(501),
        ))
        .then_expect_error(invalid("reason", "must be at most 500 characters"));
}

#[test]
fn repeating_a_block_with_the_same_id_emits_nothing() {
    ListingTest::with(())
        .given(vec![
            created(),
            blocked(block(1), range("2030-03-01", "2030-03-05"), "repairs"),
        ])
        .when(block_cmd(
            the_host(),
            block(1),
            range("2030-03-01", "2030-03-05"),
            "repairs",
        ))
        .then_expect_events(vec![]);
}

#[test]
fn unblocking_records_the_freed_range() {
    ListingTest::with(())
        .given(vec![
            created(),
            blocked(block(1), range("2030-03-01", "2030-03-05"), "repairs"),
        ])
        .when(ListingCommand::UnblockDates {
            actor: the_host(),
            block_id: block(1),
        })
        .then_expect_events(vec![ListingEvent::DatesUnblocked {
            block_id: block(1),
            range: range("2030-03-01", "2030-03-05"),
        }]);
}

#[test]
fn unblocked_nights_can_be_reserved() {
    let stay = range("2030-03-01", "2030-03-05");
    ListingTest::with(())
        .given(vec![
            created(),
            blocked(block(1), stay, "repairs"),
            ListingEvent::DatesUnblocked {
                block_id: block(1),
                range: stay,
            },
        ])
        .when(reserve(booking(1), stay, 2))
        .then_expect_events(vec![reserved(booking(1), stay, 2)]);
}

#[test]
fn unblocking_an_unknown_block_fails() {
    ListingTest::with(())
        .given(vec![
            created(),
            blocked(block(1), range("2030-03-01", "2030-03-05"), "repairs"),
        ])
        .when(ListingCommand::UnblockDates {
            actor: the_host(),
            block_id: block(2),
        })
        .then_expect_error(ListingError::UnknownBlock);
}

#[test]
fn another_host_may_not_unblock_dates() {
    ListingTest::with(())
        .given(vec![
            created(),
            blocked(block(1), range("2030-03-01", "2030-03-05"), "repairs"),
        ])
        .when(ListingCommand::UnblockDates {
            actor: actor(other_host_id(), Role::Host),
            block_id: block(1),
        })
        .then_expect_error(ListingError::Forbidden);
}

// ---------------------------------------------------------------------------------------------
// Reserving confirmed (a payment that arrived after the hold ran out)
// ---------------------------------------------------------------------------------------------

/// When the late payment is handled.
fn paid_at() -> DateTime<Utc> {
    at("2030-01-01T12:40:00Z")
}

fn reserve_confirmed(booking_id: Uuid, stay: DateRange, guests: u32) -> ListingCommand {
    ListingCommand::ReserveConfirmed {
        booking_id,
        guest_id: guest_id(),
        range: stay,
        guests,
        today: today(),
        now: paid_at(),
    }
}

#[test]
fn reserving_confirmed_takes_free_nights_and_confirms_them_at_once() {
    let stay = range("2030-02-04", "2030-02-07");
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve_confirmed(booking(1), stay, 2))
        .then_expect_events(vec![
            ListingEvent::DatesReserved {
                booking_id: booking(1),
                guest_id: guest_id(),
                range: stay,
                guests: 2,
                price: flat_price(3),
                hold_expires_at: paid_at(),
            },
            ListingEvent::ReservationConfirmed {
                booking_id: booking(1),
            },
        ]);
}

#[test]
fn reserving_confirmed_after_the_nights_were_released_takes_them_again() {
    let stay = range("2030-02-04", "2030-02-07");
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), stay, 2),
            ListingEvent::DatesReleased {
                booking_id: booking(1),
                range: stay,
                reason: ReleaseReason::Expired,
            },
        ])
        .when(reserve_confirmed(booking(1), stay, 2))
        .then_expect_events(vec![
            ListingEvent::DatesReserved {
                booking_id: booking(1),
                guest_id: guest_id(),
                range: stay,
                guests: 2,
                price: flat_price(3),
                hold_expires_at: paid_at(),
            },
            ListingEvent::ReservationConfirmed {
                booking_id: booking(1),
            },
        ]);
}

#[test]
fn reserving_confirmed_over_the_same_bookings_hold_only_confirms_it() {
    let stay = range("2030-02-04", "2030-02-07");
    ListingTest::with(())
        .given(vec![created(), reserved(booking(1), stay, 2)])
        .when(reserve_confirmed(booking(1), stay, 2))
        .then_expect_events(vec![ListingEvent::ReservationConfirmed {
            booking_id: booking(1),
        }]);
}

#[test]
fn reserving_confirmed_an_already_confirmed_reservation_emits_nothing() {
    let stay = range("2030-02-04", "2030-02-07");
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), stay, 2),
            ListingEvent::ReservationConfirmed {
                booking_id: booking(1),
            },
        ])
        .when(reserve_confirmed(booking(1), stay, 2))
        .then_expect_events(vec![]);
}

#[test]
fn reserving_confirmed_nights_another_booking_holds_fails() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
        ])
        .when(reserve_confirmed(
            booking(2),
            range("2030-02-06", "2030-02-09"),
            2,
        ))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn reserving_confirmed_blocked_nights_fails() {
    ListingTest::with(())
        .given(vec![
            created(),
            blocked(block(1), range("2030-02-05", "2030-02-06"), "repairs"),
        ])
        .when(reserve_confirmed(
            booking(1),
            range("2030-02-04", "2030-02-07"),
            2,
        ))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn reserving_confirmed_another_range_for_the_same_booking_fails() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
        ])
        .when(reserve_confirmed(
            booking(1),
            range("2030-03-04", "2030-03-07"),
            2,
        ))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn reserving_confirmed_another_range_for_a_confirmed_booking_fails() {
    ListingTest::with(())
        .given(vec![
            created(),
            reserved(booking(1), range("2030-02-04", "2030-02-07"), 2),
            ListingEvent::ReservationConfirmed {
                booking_id: booking(1),
            },
        ])
        .when(reserve_confirmed(
            booking(1),
            range("2030-02-04", "2030-02-08"),
            2,
        ))
        .then_expect_error(ListingError::DatesUnavailable);
}

#[test]
fn reserving_confirmed_on_an_unknown_listing_fails() {
    ListingTest::with(())
        .given_no_previous_events()
        .when(reserve_confirmed(
            booking(1),
            range("2030-02-04", "2030-02-07"),
            2,
        ))
        .then_expect_error(ListingError::NotFound);
}

#[test]
fn reserving_confirmed_still_checks_the_stay_rules() {
    // Too many guests for the listing.
    ListingTest::with(())
        .given(vec![created()])
        .when(reserve_confirmed(
            booking(1),
            range("2030-02-04", "2030-02-07"),
            5,
        ))
        .then_expect_error(ListingError::TooManyGuests { max: 4 });
}

#[test]
fn a_late_confirmed_reservation_is_confirmed_in_the_state() {
    use cqrs_es::Aggregate;
    let stay = range("2030-02-04", "2030-02-07");
    let mut listing = Listing::default();
    listing.apply(created());
    listing.apply(ListingEvent::DatesReserved {
        booking_id: booking(1),
        guest_id: guest_id(),
        range: stay,
        guests: 2,
        price: flat_price(3),
        hold_expires_at: paid_at(),
    });
    listing.apply(ListingEvent::ReservationConfirmed {
        booking_id: booking(1),
    });
    let r = listing
        .reservations
        .get(&booking(1))
        .expect("a reservation");
    assert_eq!(r.state, ReservationState::Confirmed);
    assert_eq!(r.range, stay);
    assert!(!listing.is_free(&range("2030-02-06", "2030-02-08")));
}

// ---------------------------------------------------------------------------------------------
// Access instructions
// ---------------------------------------------------------------------------------------------

fn sealed_access(s: &str) -> crate::user::Sealed {
    crate::user::Sealed(s.to_string())
}

fn set_access(by: Actor, access: &str) -> ListingCommand {
    ListingCommand::SetAccess {
        actor: by,
        access: sealed_access(access),
    }
}

#[test]
fn the_host_sets_access_and_the_event_carries_the_sealed_text() {
    ListingTest::with(())
        .given(vec![created()])
        .when(set_access(the_host(), "zhs1:sealed-1"))
        .then_expect_events(vec![ListingEvent::AccessUpdated {
            access: sealed_access("zhs1:sealed-1"),
        }]);
}

#[test]
fn setting_access_again_records_the_new_access() {
    ListingTest::with(())
        .given(vec![
            created(),
            ListingEvent::AccessUpdated {
                access: sealed_access("zhs1:sealed-1"),
            },
        ])
        .when(set_access(the_host(), "zhs1:sealed-2"))
        .then_expect_events(vec![ListingEvent::AccessUpdated {
            access: sealed_access("zhs1:sealed-2"),
        }]);
}

#[test]
fn an_admin_may_not_set_access_for_another_hosts_listing() {
    ListingTest::with(())
        .given(vec![created()])
        .when(set_access(
            actor(Uuid::from_u128(0xAD), Role::Admin),
            "zhs1:sealed-1",
        ))
        .then_expect_error(ListingError::Forbidden);
}

#[test]
fn an_admin_who_hosts_the_listing_may_set_its_access() {
    ListingTest::with(())
        .given(vec![created()])
        .when(set_access(actor(host_id(), Role::Admin), "zhs1:sealed-1"))
        .then_expect_events(vec![ListingEvent::AccessUpdated {
            access: sealed_access("zhs1:sealed-1"),
        }]);
}

#[test]
fn another_host_may_not_set_access() {
    ListingTest::with(())
        .given(vec![created()])
        .when(set_access(actor(other_host_id(), Role::Host), "zhs1:x"))
        .then_expect_error(ListingError::Forbidden);
}

#[test]
fn a_guest_may_not_set_access() {
    ListingTest::with(())
        .given(vec![created()])
        .when(set_access(actor(guest_id(), Role::Guest), "zhs1:x"))
        .then_expect_error(ListingError::Forbidden);
}

#[test]
fn setting_access_on_an_unknown_listing_fails() {
    ListingTest::with(())
        .given_no_previous_events()
        .when(set_access(the_host(), "zhs1:x"))
        .then_expect_error(ListingError::NotFound);
}

#[test]
fn applied_access_is_kept_in_the_state_and_the_latest_wins() {
    use cqrs_es::Aggregate;
    let mut listing = Listing::default();
    listing.apply(created());
    assert_eq!(listing.access, None);
    listing.apply(ListingEvent::AccessUpdated {
        access: sealed_access("zhs1:sealed-1"),
    });
    assert_eq!(listing.access, Some(sealed_access("zhs1:sealed-1")));
    listing.apply(ListingEvent::AccessUpdated {
        access: sealed_access("zhs1:sealed-2"),
    });
    assert_eq!(listing.access, Some(sealed_access("zhs1:sealed-2")));
}

#[test]
fn access_survives_a_snapshot_round_trip() {
    use cqrs_es::Aggregate;
    let mut listing = Listing::default();
    listing.apply(created());
    listing.apply(ListingEvent::AccessUpdated {
        access: sealed_access("zhs1:sealed-1"),
    });
    let json = serde_json::to_value(&listing).unwrap();
    let back: Listing = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back.access, Some(sealed_access("zhs1:sealed-1")));
    // Snapshots written before access existed still load.
    let mut old = json;
    old.as_object_mut().unwrap().remove("access");
    let back: Listing = serde_json::from_value(old).unwrap();
    assert_eq!(back.access, None);
}

// ---------------------------------------------------------------------------------------------
// Moderation and hold extension (admins)
// ---------------------------------------------------------------------------------------------

fn moderate(action: ModerationAction) -> ListingCommand {
    ListingCommand::Moderate {
        action,
        reason: "photos are not of this flat".into(),
        by: Uuid::from_u128(0xAD),
    }
}

fn moderated(action: ModerationAction) -> ListingEvent {
    ListingEvent::ListingModerated {
        action,
        reason: "photos are not of this flat".into(),
        by: Uuid::from_u128(0xAD),
    }
}

#[test]
fn pausing_records_the_reason_then_the_status() {
    ListingTest::with(())
        .given(vec![created()])
        .when(moderate(ModerationAction::Pause))
        .then_expect_events(vec![
            moderated(ModerationAction::Pause),
            ListingEvent::ListingStatusChanged {
                status: ListingStatus::Paused,
            },
        ]);
}

#[test]
fn restoring_gives_back_the_status_the_host_had() {
    ListingTest::with(())
        .given(vec![
            created_with(details(), ListingStatus::Draft),
            moderated(ModerationAction::Archive),
            ListingEvent::ListingStatusChanged {
                status: ListingStatus::Archived,
            },
        ])
        .when(moderate(ModerationAction::Restore))
        .then_expect_events(vec![
            moderated(ModerationAction::Restore),
            ListingEvent::ListingStatusChanged {
                status: ListingStatus::Draft,
            },
        ]);
}

#[test]
fn restoring_an_unmoderated_listing_is_refused() {
    ListingTest::with(())
        .given(vec![created()])
        .when(moderate(ModerationAction::Restore))
        .then_expect_error(ListingError::NotModerated);
}

#[test]
fn the_host_cannot_switch_a_moderated_listing_back_on() {
    ListingTest::with(())
        .given(vec![
            created(),
            moderated(ModerationAction::Pause),
            ListingEvent::ListingStatusChanged {
                status: ListingStatus::Paused,
            },
        ])
        .when(update(
            the_host(),
            ListingChanges {
                status: Some(ListingStatus::Active),
                ..Default::default()
            },
        ))
        .then_expect_error(ListingError::Moderated {
            reason: "photos are not of this flat".into(),
        });
}

#[test]
fn a_held_reservation_is_extended_only_forward_and_at_most_a_week() {
    let given = || {
        vec![
            created(),
            reserved(booking(1), range("2030-02-01", "2030-02-03"), 2),
        ]
    };
    let now = at("2030-01-01T12:00:00Z");
    let extend = |until: &str| ListingCommand::ExtendHold {
        booking_id: booking(1),
        until: at(until),
        now,
    };
    ListingTest::with(())
        .given(given())
        .when(extend("2030-01-02T12:00:00Z"))
        .then_expect_events(vec![ListingEvent::HoldExtended {
            booking_id: booking(1),
            hold_expires_at: at("2030-01-02T12:00:00Z"),
        }]);
    ListingTest::with(())
        .given(given())
        .when(extend("2030-01-01T12:10:00Z"))
        .then_expect_events(vec![]);
    ListingTest::with(())
        .given(given())
        .when(extend("2030-01-09T12:00:01Z"))
        .then_expect_error(invalid(
            "hold_expires_at",
            "must be in the future and at most 7 days ahead",
        ));
}
