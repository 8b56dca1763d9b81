use super::*;
use crate::actor::{Actor, Channel, Role};
use crate::cancellation::CancellationPolicy;
use crate::pricing::{NightPrice, PriceBreakdown, StayPrice};
use crate::values::{DateRange, Kzt};
use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type BookingTest = TestFramework<Booking>;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn booking_id() -> Uuid {
    Uuid::from_u128(0xB001)
}

fn listing_id() -> Uuid {
    Uuid::from_u128(0x1157)
}

fn host_id() -> Uuid {
    Uuid::from_u128(0x4057)
}

fn guest_id() -> Uuid {
    Uuid::from_u128(0x6E57)
}

fn payment_id() -> Uuid {
    Uuid::from_u128(0xFA1D)
}

fn actor(user_id: Uuid, role: Role) -> Actor {
    Actor { user_id, role }
}

fn the_guest() -> Actor {
    actor(guest_id(), Role::Guest)
}

fn the_host() -> Actor {
    actor(host_id(), Role::Host)
}

/// The stay: Sun 2030-02-10 .. Wed 2030-02-13, three nights.
fn stay() -> DateRange {
    DateRange::parse(d("2030-02-10"), d("2030-02-13")).unwrap()
}

fn hold_until() -> DateTime<Utc> {
    at("2030-01-01T12:15:00Z")
}

/// Three nights at 20 000 plus a 5 001 cleaning fee: 65 001 KZT (odd, to see rounding).
fn price() -> PriceBreakdown {
    PriceBreakdown {
        nights: 3,
        nightly_kzt: vec![Kzt(20_000), Kzt(20_000), Kzt(20_000)],
        nights_total_kzt: Kzt(60_000),
        cleaning_fee_kzt: Kzt(5_001),
        total_kzt: Kzt(65_001),
    }
}

const TOTAL: Kzt = Kzt(65_001);

fn hold_cmd(policy: CancellationPolicy) -> BookingCommand {
    BookingCommand::HoldBooking {
        booking_id: booking_id(),
        listing_id: listing_id(),
        host_id: host_id(),
        guest_id: guest_id(),
        range: stay(),
        guests: 2,
        channel: Channel::Telegram,
        price: price(),
        cancellation_policy: policy,
        hold_expires_at: hold_until(),
    }
}

fn held_with(policy: CancellationPolicy) -> BookingEvent {
    BookingEvent::BookingHeld {
        booking_id: booking_id(),
        listing_id: listing_id(),
        host_id: host_id(),
        guest_id: guest_id(),
        range: stay(),
        guests: 2,
        channel: Channel::Telegram,
        price: StayPrice::dated(&stay(), &price()).unwrap(),
        cancellation_policy: policy,
        hold_expires_at: hold_until(),
    }
}

fn held() -> BookingEvent {
    held_with(CancellationPolicy::Moderate)
}

fn confirmed() -> BookingEvent {
    BookingEvent::BookingConfirmed {
        payment_id: payment_id(),
        paid_kzt: TOTAL,
        late: false,
    }
}

fn cancel(by: Actor, today: &str) -> BookingCommand {
    BookingCommand::CancelBooking {
        actor: by,
        reason: "plans changed".to_string(),
        today: d(today),
    }
}

fn cancelled(by: Actor, refund: i64) -> BookingEvent {
    BookingEvent::BookingCancelled {
        by_user: by.user_id,
        by_role: by.role,
        reason: "plans changed".to_string(),
        refund_kzt: Kzt(refund),
    }
}

/// A confirmed booking under `policy`, cancelled by its guest on `today`, refunds `refund`.
fn guest_cancel_refunds(policy: CancellationPolicy, today: &str, refund: i64) {
    BookingTest::with(())
        .given(vec![held_with(policy), confirmed()])
        .when(cancel(the_guest(), today))
        .then_expect_events(vec![cancelled(the_guest(), refund)]);
}

// ---------------------------------------------------------------------------------------------
// Holding
// ---------------------------------------------------------------------------------------------

#[test]
fn holding_a_new_booking_records_the_stay_price_and_policy() {
    BookingTest::with(())
        .given_no_previous_events()
        .when(hold_cmd(CancellationPolicy::Strict))
        .then_expect_events(vec![held_with(CancellationPolicy::Strict)]);
}

#[test]
fn the_held_price_puts_each_night_on_its_date() {
    let BookingEvent::BookingHeld { price, .. } = held() else {
        unreachable!()
    };
    let night = |date: &str| NightPrice {
        date: d(date),
        price_kzt: Kzt(20_000),
    };
    assert_eq!(
        price.nightly,
        vec![
            night("2030-02-10"),
            night("2030-02-11"),
            night("2030-02-12")
        ]
    );
    assert_eq!(price.total_kzt, TOTAL);
}

#[test]
fn a_quote_for_other_nights_than_the_stay_is_refused() {
    let mut two_nights = price();
    two_nights.nights = 2;
    two_nights.nightly_kzt.pop();
    BookingTest::with(())
        .given_no_previous_events()
        .when(BookingCommand::HoldBooking {
            booking_id: booking_id(),
            listing_id: listing_id(),
            host_id: host_id(),
            guest_id: guest_id(),
            range: stay(),
            guests: 2,
            channel: Channel::Telegram,
            price: two_nights,
            cancellation_policy: CancellationPolicy::Flexible,
            hold_expires_at: hold_until(),
        })
        .then_expect_error(BookingError::PriceNotForStay(
            "the price quotes another number of nights than the stay has",
        ));
}

#[test]
fn retrying_the_same_hold_emits_nothing() {
    BookingTest::with(())
        .given(vec![held()])
        .when(hold_cmd(CancellationPolicy::Moderate))
        .then_expect_events(vec![]);
}

#[test]
fn holding_an_existing_booking_for_another_stay_fails() {
    BookingTest::with(())
        .given(vec![held()])
        .when(BookingCommand::HoldBooking {
            booking_id: booking_id(),
            listing_id: listing_id(),
            host_id: host_id(),
            guest_id: guest_id(),
            range: DateRange::parse(d("2030-03-10"), d("2030-03-13")).unwrap(),
            guests: 2,
            channel: Channel::Web,
            price: price(),
            cancellation_policy: CancellationPolicy::Moderate,
            hold_expires_at: hold_until(),
        })
        .then_expect_error(BookingError::AlreadyExists);
}

// ---------------------------------------------------------------------------------------------
// Confirming
// ---------------------------------------------------------------------------------------------

#[test]
fn paying_the_total_confirms_a_held_booking() {
    BookingTest::with(())
        .given(vec![held()])
        .when(BookingCommand::ConfirmBooking {
            payment_id: payment_id(),
            paid_kzt: TOTAL,
        })
        .then_expect_events(vec![confirmed()]);
}

#[test]
fn paying_a_different_amount_does_not_confirm() {
    BookingTest::with(())
        .given(vec![held()])
        .when(BookingCommand::ConfirmBooking {
            payment_id: payment_id(),
            paid_kzt: Kzt(65_000),
        })
        .then_expect_error(BookingError::AmountMismatch {
            paid: Kzt(65_000),
            due: TOTAL,
        });
}

#[test]
fn confirming_again_with_the_same_payment_emits_nothing() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(BookingCommand::ConfirmBooking {
            payment_id: payment_id(),
            paid_kzt: TOTAL,
        })
        .then_expect_events(vec![]);
}

#[test]
fn confirming_again_with_another_payment_fails() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(BookingCommand::ConfirmBooking {
            payment_id: Uuid::from_u128(0xFA1E),
            paid_kzt: TOTAL,
        })
        .then_expect_error(BookingError::WrongStatus("confirmed"));
}

#[test]
fn a_late_payment_confirms_an_expired_booking_as_late() {
    // The payment flow confirms an expired booking only after the listing took the nights again.
    BookingTest::with(())
        .given(vec![held(), BookingEvent::BookingExpired {}])
        .when(BookingCommand::ConfirmBooking {
            payment_id: payment_id(),
            paid_kzt: TOTAL,
        })
        .then_expect_events(vec![BookingEvent::BookingConfirmed {
            payment_id: payment_id(),
            paid_kzt: TOTAL,
            late: true,
        }]);
}

#[test]
fn a_cancelled_booking_cannot_be_confirmed() {
    BookingTest::with(())
        .given(vec![
            held(),
            BookingEvent::BookingCancelled {
                by_user: guest_id(),
                by_role: Role::Guest,
                reason: "no".to_string(),
                refund_kzt: Kzt::ZERO,
            },
        ])
        .when(BookingCommand::ConfirmBooking {
            payment_id: payment_id(),
            paid_kzt: TOTAL,
        })
        .then_expect_error(BookingError::WrongStatus("cancelled"));
}

#[test]
fn confirming_a_booking_that_does_not_exist_fails() {
    BookingTest::with(())
        .given_no_previous_events()
        .when(BookingCommand::ConfirmBooking {
            payment_id: payment_id(),
            paid_kzt: TOTAL,
        })
        .then_expect_error(BookingError::NotFound);
}

// ---------------------------------------------------------------------------------------------
// Cancelling
// ---------------------------------------------------------------------------------------------

#[test]
fn a_guest_cancelling_an_unpaid_hold_gets_nothing_back() {
    BookingTest::with(())
        .given(vec![held()])
        .when(cancel(the_guest(), "2030-02-09"))
        .then_expect_events(vec![cancelled(the_guest(), 0)]);
}

#[test]
fn moderate_policy_refunds_everything_5_days_before_check_in() {
    guest_cancel_refunds(CancellationPolicy::Moderate, "2030-02-05", 65_001);
}

#[test]
fn moderate_policy_refunds_half_rounded_down_4_days_before_check_in() {
    guest_cancel_refunds(CancellationPolicy::Moderate, "2030-02-06", 32_500);
}

#[test]
fn moderate_policy_refunds_half_1_day_before_check_in() {
    guest_cancel_refunds(CancellationPolicy::Moderate, "2030-02-09", 32_500);
}

#[test]
fn moderate_policy_refunds_nothing_on_the_check_in_day() {
    guest_cancel_refunds(CancellationPolicy::Moderate, "2030-02-10", 0);
}

#[test]
fn strict_policy_refunds_everything_14_days_before_check_in() {
    guest_cancel_refunds(CancellationPolicy::Strict, "2030-01-27", 65_001);
}

#[test]
fn strict_policy_refunds_half_7_to_13_days_before_check_in() {
    guest_cancel_refunds(CancellationPolicy::Strict, "2030-01-28", 32_500);
    guest_cancel_refunds(CancellationPolicy::Strict, "2030-02-03", 32_500);
}

#[test]
fn strict_policy_refunds_nothing_6_days_before_check_in() {
    guest_cancel_refunds(CancellationPolicy::Strict, "2030-02-04", 0);
}

#[test]
fn flexible_policy_refunds_half_after_the_stay_began() {
    guest_cancel_refunds(CancellationPolicy::Flexible, "2030-02-11", 32_500);
}

#[test]
fn a_host_cancelling_refunds_everything_whatever_the_policy() {
    BookingTest::with(())
        .given(vec![held_with(CancellationPolicy::Strict), confirmed()])
        .when(cancel(the_host(), "2030-02-10"))
        .then_expect_events(vec![cancelled(the_host(), 65_001)]);
}

#[test]
fn an_admin_cancelling_refunds_everything() {
    let admin = actor(Uuid::from_u128(0xAD), Role::Admin);
    BookingTest::with(())
        .given(vec![held_with(CancellationPolicy::Strict), confirmed()])
        .when(cancel(admin, "2030-02-09"))
        .then_expect_events(vec![cancelled(admin, 65_001)]);
}

#[test]
fn another_guest_may_not_cancel() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(cancel(
            actor(Uuid::from_u128(0x6E58), Role::Guest),
            "2030-02-01",
        ))
        .then_expect_error(BookingError::Forbidden);
}

#[test]
fn the_host_of_another_listing_may_not_cancel() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(cancel(
            actor(Uuid::from_u128(0x4058), Role::Host),
            "2030-02-01",
        ))
        .then_expect_error(BookingError::Forbidden);
}

#[test]
fn an_analyst_may_not_cancel() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(cancel(
            actor(Uuid::from_u128(0xA7), Role::Analyst),
            "2030-02-01",
        ))
        .then_expect_error(BookingError::Forbidden);
}

#[test]
fn an_auditor_may_not_cancel() {
    BookingTest::with(())
        .given(vec![held()])
        .when(cancel(
            actor(Uuid::from_u128(0xA8), Role::Auditor),
            "2030-02-01",
        ))
        .then_expect_error(BookingError::Forbidden);
}

#[test]
fn a_cancel_reason_may_have_at_most_500_characters() {
    BookingTest::with(())
        .given(vec![held()])
        .when(BookingCommand::CancelBooking {
            actor: the_guest(),
            reason: "я".repeat(501),
            today: d("2030-02-01"),
        })
        .then_expect_error(BookingError::ReasonTooLong);
}

#[test]
fn an_expired_booking_cannot_be_cancelled() {
    BookingTest::with(())
        .given(vec![held(), BookingEvent::BookingExpired {}])
        .when(cancel(the_guest(), "2030-02-01"))
        .then_expect_error(BookingError::WrongStatus("expired"));
}

#[test]
fn a_cancelled_booking_cannot_be_cancelled_again() {
    BookingTest::with(())
        .given(vec![held(), cancelled(the_guest(), 0)])
        .when(cancel(the_guest(), "2030-02-01"))
        .then_expect_error(BookingError::WrongStatus("cancelled"));
}

#[test]
fn a_checked_in_booking_cannot_be_cancelled() {
    BookingTest::with(())
        .given(vec![held(), confirmed(), BookingEvent::BookingCheckedIn {}])
        .when(cancel(the_host(), "2030-02-11"))
        .then_expect_error(BookingError::WrongStatus("checked_in"));
}

#[test]
fn cancelling_a_booking_that_does_not_exist_fails() {
    BookingTest::with(())
        .given_no_previous_events()
        .when(cancel(the_guest(), "2030-02-01"))
        .then_expect_error(BookingError::NotFound);
}

// ---------------------------------------------------------------------------------------------
// Hold expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn a_hold_cannot_expire_before_its_end() {
    BookingTest::with(())
        .given(vec![held()])
        .when(BookingCommand::ExpireHold {
            now: at("2030-01-01T12:14:59Z"),
        })
        .then_expect_error(BookingError::HoldNotExpired);
}

#[test]
fn a_hold_expires_once_its_end_is_reached() {
    BookingTest::with(())
        .given(vec![held()])
        .when(BookingCommand::ExpireHold { now: hold_until() })
        .then_expect_events(vec![BookingEvent::BookingExpired {}]);
}

#[test]
fn a_confirmed_booking_does_not_expire() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(BookingCommand::ExpireHold {
            now: at("2030-01-02T00:00:00Z"),
        })
        .then_expect_error(BookingError::WrongStatus("confirmed"));
}

// ---------------------------------------------------------------------------------------------
// Check-in and completion
// ---------------------------------------------------------------------------------------------

#[test]
fn checking_in_before_the_check_in_day_fails() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(BookingCommand::CheckIn {
            today: d("2030-02-09"),
        })
        .then_expect_error(BookingError::WrongStatus("not yet started"));
}

#[test]
fn a_confirmed_booking_checks_in_on_the_check_in_day() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(BookingCommand::CheckIn {
            today: d("2030-02-10"),
        })
        .then_expect_events(vec![BookingEvent::BookingCheckedIn {}]);
}

#[test]
fn an_unpaid_hold_cannot_check_in() {
    BookingTest::with(())
        .given(vec![held()])
        .when(BookingCommand::CheckIn {
            today: d("2030-02-10"),
        })
        .then_expect_error(BookingError::WrongStatus("held"));
}

#[test]
fn completing_before_the_check_out_day_fails() {
    BookingTest::with(())
        .given(vec![held(), confirmed(), BookingEvent::BookingCheckedIn {}])
        .when(BookingCommand::Complete {
            today: d("2030-02-12"),
        })
        .then_expect_error(BookingError::WrongStatus("not yet over"));
}

#[test]
fn a_checked_in_booking_completes_on_the_check_out_day() {
    BookingTest::with(())
        .given(vec![held(), confirmed(), BookingEvent::BookingCheckedIn {}])
        .when(BookingCommand::Complete {
            today: d("2030-02-13"),
        })
        .then_expect_events(vec![BookingEvent::BookingCompleted {}]);
}

#[test]
fn a_booking_that_never_checked_in_cannot_complete() {
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(BookingCommand::Complete {
            today: d("2030-02-13"),
        })
        .then_expect_error(BookingError::WrongStatus("confirmed"));
}

// ---------------------------------------------------------------------------------------------
// Reviews
// ---------------------------------------------------------------------------------------------

fn completed_stay() -> Vec<BookingEvent> {
    vec![
        held(),
        confirmed(),
        BookingEvent::BookingCheckedIn {},
        BookingEvent::BookingCompleted {},
    ]
}

fn review(by: Actor, rating: u8, text: &str) -> BookingCommand {
    BookingCommand::Review {
        actor: by,
        rating,
        text: text.to_string(),
    }
}

#[test]
fn the_guest_reviews_a_completed_stay_once() {
    let guest = actor(guest_id(), Role::Guest);
    let reviewed = BookingEvent::BookingReviewed {
        listing_id: listing_id(),
        rating: 5,
        text: "Отличная квартира".to_string(),
    };
    BookingTest::with(())
        .given(completed_stay())
        .when(review(guest, 5, "  Отличная квартира "))
        .then_expect_events(vec![reviewed.clone()]);
    let mut again = completed_stay();
    again.push(reviewed);
    BookingTest::with(())
        .given(again)
        .when(review(guest, 4, "second thoughts"))
        .then_expect_error(BookingError::AlreadyReviewed);
}

#[test]
fn only_the_guest_reviews_and_only_after_the_stay() {
    BookingTest::with(())
        .given(completed_stay())
        .when(review(actor(Uuid::from_u128(0xBAD), Role::Guest), 5, ""))
        .then_expect_error(BookingError::Forbidden);
    BookingTest::with(())
        .given(completed_stay())
        .when(review(actor(guest_id(), Role::Host), 5, ""))
        .then_expect_error(BookingError::Forbidden);
    BookingTest::with(())
        .given(vec![held(), confirmed()])
        .when(review(actor(guest_id(), Role::Guest), 5, ""))
        .then_expect_error(BookingError::WrongStatus("confirmed"));
}

#[test]
fn a_rating_is_one_to_five() {
    for bad in [0u8, 6] {
        BookingTest::with(())
            .given(completed_stay())
            .when(review(actor(guest_id(), Role::Guest), bad, ""))
            .then_expect_error(BookingError::InvalidReview {
                field: "rating",
                message: "must be 1 to 5",
            });
    }
}
