//! Calendar feeds on the Listing: one test per rule, and the sync decision against a
//! night-by-night oracle on random calendars.
use super::*;
use crate::listing::feeds::feed_block_id;
use crate::listing::{FeedBooking, FeedConflict, FeedSource};
use cqrs_es::Aggregate;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn feed() -> Uuid {
    Uuid::from_u128(0xFEED)
}

const URL: &str = "https://www.airbnb.com/calendar/ical/1234.ics?s=abc";

fn feed_added() -> ListingEvent {
    ListingEvent::CalendarFeedAdded {
        feed_id: feed(),
        url: URL.to_string(),
        name: "Airbnb".to_string(),
    }
}

fn add(by: Actor, url: &str) -> ListingCommand {
    ListingCommand::AddCalendarFeed {
        actor: by,
        feed_id: feed(),
        url: url.to_string(),
        name: " Airbnb ".to_string(),
    }
}

fn booked(uid: &str, from: &str, to: &str) -> FeedBooking {
    FeedBooking {
        uid: uid.to_string(),
        range: range(from, to),
    }
}

fn sync(bookings: Vec<FeedBooking>) -> ListingCommand {
    ListingCommand::SyncCalendarFeed {
        actor: Actor::system(),
        feed_id: feed(),
        bookings,
        today: today(),
    }
}

fn feed_block(uid: &str, from: &str, to: &str) -> ListingEvent {
    let r = range(from, to);
    ListingEvent::DatesBlocked {
        block_id: feed_block_id(feed(), uid, &r),
        range: r,
        reason: "Airbnb".to_string(),
        source: Some(FeedSource {
            feed_id: feed(),
            uid: uid.to_string(),
        }),
    }
}

fn feed_unblock(uid: &str, from: &str, to: &str) -> ListingEvent {
    let r = range(from, to);
    ListingEvent::DatesUnblocked {
        block_id: feed_block_id(feed(), uid, &r),
        range: r,
    }
}

#[test]
fn the_host_adds_a_feed_with_its_name_trimmed() {
    ListingTest::with(())
        .given(vec![created()])
        .when(add(the_host(), URL))
        .then_expect_events(vec![feed_added()]);
}

#[test]
fn another_host_may_not_add_a_feed() {
    ListingTest::with(())
        .given(vec![created()])
        .when(add(actor(other_host_id(), Role::Host), URL))
        .then_expect_error(ListingError::Forbidden);
}

#[test]
fn a_feed_needs_an_http_url_and_is_added_once() {
    ListingTest::with(())
        .given(vec![created()])
        .when(add(the_host(), "ftp://example.com/a.ics"))
        .then_expect_error(invalid("url", "must be an http:// or https:// URL"));
    let mut again = add(the_host(), URL);
    if let ListingCommand::AddCalendarFeed { feed_id, .. } = &mut again {
        *feed_id = Uuid::from_u128(0xFEED2);
    }
    ListingTest::with(())
        .given(vec![created(), feed_added()])
        .when(again)
        .then_expect_error(ListingError::FeedExists);
}

#[test]
fn a_sync_blocks_each_event_and_a_repeated_sync_writes_nothing() {
    ListingTest::with(())
        .given(vec![created(), feed_added()])
        .when(sync(vec![
            booked("a@airbnb.com", "2030-01-10", "2030-01-13"),
            booked("b@airbnb.com", "2030-01-13", "2030-01-15"),
        ]))
        .then_expect_events(vec![
            feed_block("a@airbnb.com", "2030-01-10", "2030-01-13"),
            feed_block("b@airbnb.com", "2030-01-13", "2030-01-15"),
        ]);
    ListingTest::with(())
        .given(vec![
            created(),
            feed_added(),
            feed_block("a@airbnb.com", "2030-01-10", "2030-01-13"),
        ])
        .when(sync(vec![booked(
            "a@airbnb.com",
            "2030-01-10",
            "2030-01-13",
        )]))
        .then_expect_events(vec![]);
}

#[test]
fn an_event_moved_upstream_moves_its_block_and_one_gone_is_unblocked() {
    ListingTest::with(())
        .given(vec![
            created(),
            feed_added(),
            feed_block("a", "2030-01-10", "2030-01-13"),
            feed_block("b", "2030-01-20", "2030-01-22"),
        ])
        .when(sync(vec![booked("a", "2030-01-11", "2030-01-14")]))
        .then_expect_events(vec![
            feed_unblock("a", "2030-01-10", "2030-01-13"),
            feed_unblock("b", "2030-01-20", "2030-01-22"),
            feed_block("a", "2030-01-11", "2030-01-14"),
        ]);
}

#[test]
fn an_event_on_a_live_stay_is_a_conflict_and_the_stay_stays() {
    let stay = range("2030-01-10", "2030-01-12");
    let conflict = FeedConflict {
        uid: "a".to_string(),
        range: range("2030-01-11", "2030-01-13"),
        booking_id: booking(1),
    };
    ListingTest::with(())
        .given(vec![created(), feed_added(), reserved(booking(1), stay, 2)])
        .when(sync(vec![booked("a", "2030-01-11", "2030-01-13")]))
        .then_expect_events(vec![ListingEvent::FeedConflictsChanged {
            feed_id: feed(),
            conflicts: vec![conflict.clone()],
        }]);
    // Recorded once: the same conflict at the next sync writes nothing; once it is gone
    // upstream, the record is cleared.
    let recorded = ListingEvent::FeedConflictsChanged {
        feed_id: feed(),
        conflicts: vec![conflict],
    };
    ListingTest::with(())
        .given(vec![
            created(),
            feed_added(),
            reserved(booking(1), stay, 2),
            recorded.clone(),
        ])
        .when(sync(vec![booked("a", "2030-01-11", "2030-01-13")]))
        .then_expect_events(vec![]);
    ListingTest::with(())
        .given(vec![
            created(),
            feed_added(),
            reserved(booking(1), stay, 2),
            recorded,
        ])
        .when(sync(vec![]))
        .then_expect_events(vec![ListingEvent::FeedConflictsChanged {
            feed_id: feed(),
            conflicts: vec![],
        }]);
}

#[test]
fn past_events_are_left_out_and_ends_past_the_horizon_are_cut() {
    let end = horizon_end(today());
    let far = FeedBooking {
        uid: "far".to_string(),
        range: DateRange::parse(
            end - chrono::Duration::days(2),
            end + chrono::Duration::days(5),
        )
        .unwrap(),
    };
    let cut = DateRange::parse(end - chrono::Duration::days(2), end).unwrap();
    ListingTest::with(())
        .given(vec![created(), feed_added()])
        .when(sync(vec![booked("old", "2029-12-01", "2030-01-01"), far]))
        .then_expect_events(vec![ListingEvent::DatesBlocked {
            block_id: feed_block_id(feed(), "far", &cut),
            range: cut,
            reason: "Airbnb".to_string(),
            source: Some(FeedSource {
                feed_id: feed(),
                uid: "far".to_string(),
            }),
        }]);
}

#[test]
fn the_host_may_not_unblock_a_feed_block_by_hand() {
    let r = range("2030-01-10", "2030-01-13");
    ListingTest::with(())
        .given(vec![
            created(),
            feed_added(),
            feed_block("a", "2030-01-10", "2030-01-13"),
        ])
        .when(ListingCommand::UnblockDates {
            actor: the_host(),
            block_id: feed_block_id(feed(), "a", &r),
        })
        .then_expect_error(ListingError::FeedBlock);
}

#[test]
fn removing_a_feed_unblocks_its_nights_and_leaves_the_host_s_own() {
    ListingTest::with(())
        .given(vec![
            created(),
            feed_added(),
            feed_block("a", "2030-01-10", "2030-01-13"),
            blocked(block(1), range("2030-02-01", "2030-02-03"), "repairs"),
        ])
        .when(ListingCommand::RemoveCalendarFeed {
            actor: the_host(),
            feed_id: feed(),
        })
        .then_expect_events(vec![
            feed_unblock("a", "2030-01-10", "2030-01-13"),
            ListingEvent::CalendarFeedRemoved { feed_id: feed() },
        ]);
}

// ---------------------------------------------------------------------------------------------
// The decision against an oracle
// ---------------------------------------------------------------------------------------------

/// Days after today.
fn day_n(n: i64) -> NaiveDate {
    today() + chrono::Duration::days(n)
}

/// Non-overlapping spans from (gap, length) pairs, starting `start` days after today.
fn spans(start: i64, parts: &[(i64, i64)]) -> Vec<DateRange> {
    let mut at = start;
    parts
        .iter()
        .map(|(gap, len)| {
            at += gap;
            let r = DateRange::parse(day_n(at), day_n(at + len)).unwrap();
            at += len;
            r
        })
        .collect()
}

/// The oracle: a feed event is blocked in full when none of its nights is a stay's, else it
/// is a conflict; nothing else is blocked by the feed.
fn expected(stays: &[DateRange], events: &[FeedBooking]) -> (BTreeSet<NaiveDate>, usize) {
    let stay_nights: BTreeSet<NaiveDate> = stays.iter().flat_map(|s| s.each_night()).collect();
    let mut nights = BTreeSet::new();
    let mut conflicts = 0;
    for e in events {
        let mine: Vec<NaiveDate> = e.range.each_night().collect();
        if mine.iter().any(|n| stay_nights.contains(n)) {
            conflicts += 1;
        } else {
            nights.extend(mine);
        }
    }
    (nights, conflicts)
}

fn run(listing: &mut Listing, cmd: ListingCommand) {
    // The aggregate's own decision, applied the way the store would.
    let events = match cmd {
        ListingCommand::SyncCalendarFeed {
            feed_id,
            bookings,
            today,
            ..
        } => listing.feed_sync(feed_id, &bookings, today).0,
        _ => unreachable!(),
    };
    for e in events {
        listing.apply(e);
    }
}

fn feed_nights(listing: &Listing) -> BTreeSet<NaiveDate> {
    listing
        .blocks
        .values()
        .filter(|b| b.source.as_ref().is_some_and(|s| s.feed_id == feed()))
        .flat_map(|b| b.range.each_night())
        .collect()
}

proptest! {
    #[test]
    fn a_sync_blocks_exactly_the_nights_the_oracle_says(
        stays in prop::collection::vec((0i64..6, 1i64..5), 0..5),
        first in prop::collection::vec((0i64..4, 1i64..6), 0..8),
        second in prop::collection::vec((0i64..4, 1i64..6), 0..8),
    ) {
        let mut listing = Listing::default();
        listing.apply(created());
        listing.apply(feed_added());
        let stays = spans(1, &stays);
        for (i, s) in stays.iter().enumerate() {
            listing.apply(reserved(booking(i as u128), *s, 1));
        }
        // Two versions of the feed: the same UIDs at other dates (moved), some gone or new.
        for version in [first, second] {
            let events: Vec<FeedBooking> = spans(0, &version)
                .into_iter()
                .enumerate()
                .map(|(i, range)| FeedBooking { uid: format!("e{i}@airbnb.com"), range })
                .collect();
            run(&mut listing, sync(events.clone()));
            let (nights, conflicts) = expected(&stays, &events);
            prop_assert_eq!(feed_nights(&listing), nights);
            prop_assert_eq!(
                listing.feed_conflicts.get(&feed()).map_or(0, Vec::len),
                conflicts
            );
            // Stays are never touched.
            prop_assert_eq!(listing.reservations.len(), stays.len());
        }
    }
}
