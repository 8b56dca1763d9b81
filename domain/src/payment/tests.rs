use super::*;
use crate::values::Kzt;
use chrono::{DateTime, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type PaymentTest = TestFramework<Payment>;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn payment_id() -> Uuid {
    Uuid::from_u128(0xFA1D)
}

fn booking_id() -> Uuid {
    Uuid::from_u128(0xB001)
}

fn payer_id() -> Uuid {
    Uuid::from_u128(0x6E57)
}

fn refund(n: u128) -> Uuid {
    Uuid::from_u128(0x2EF0 + n)
}

const AMOUNT: Kzt = Kzt(65_000);

fn expires_at() -> DateTime<Utc> {
    at("2030-01-01T12:15:00Z")
}

fn create_cmd(amount: i64, total: i64) -> PaymentCommand {
    PaymentCommand::CreatePayment {
        payment_id: payment_id(),
        booking_id: booking_id(),
        payer_id: payer_id(),
        amount_kzt: Kzt(amount),
        booking_total_kzt: Kzt(total),
        expires_at: expires_at(),
    }
}

fn created() -> PaymentEvent {
    PaymentEvent::PaymentCreated {
        payment_id: payment_id(),
        booking_id: booking_id(),
        payer_id: payer_id(),
        amount_kzt: AMOUNT,
        expires_at: expires_at(),
    }
}

fn succeeded() -> PaymentEvent {
    PaymentEvent::PaymentSucceeded {
        txn_id: "kaspi-1".to_string(),
        amount_kzt: AMOUNT,
    }
}

fn success_cmd(txn: &str, amount: i64) -> PaymentCommand {
    PaymentCommand::RecordSuccess {
        txn_id: txn.to_string(),
        amount_kzt: Kzt(amount),
    }
}

fn refund_cmd(n: u128, amount: i64) -> PaymentCommand {
    PaymentCommand::Refund {
        refund_id: refund(n),
        amount_kzt: Kzt(amount),
    }
}

fn refunded(n: u128, amount: i64, total: i64) -> PaymentEvent {
    PaymentEvent::PaymentRefunded {
        refund_id: refund(n),
        amount_kzt: Kzt(amount),
        total_refunded_kzt: Kzt(total),
    }
}

/// The payment after `events`, to look at its status.
fn state(events: Vec<PaymentEvent>) -> Payment {
    let mut p = Payment::default();
    for e in events {
        p.apply(e);
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Creating
// ---------------------------------------------------------------------------------------------

#[test]
fn creating_a_payment_for_the_booking_total_records_it_pending() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(create_cmd(65_000, 65_000))
        .then_expect_events(vec![created()]);
    assert_eq!(state(vec![created()]).status, PaymentStatus::Pending);
}

#[test]
fn the_amount_must_equal_the_booking_total() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(create_cmd(60_000, 65_000))
        .then_expect_error(PaymentError::AmountNotTotal {
            amount: Kzt(60_000),
            total: Kzt(65_000),
        });
}

#[test]
fn the_amount_must_be_positive() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(create_cmd(0, 0))
        .then_expect_error(PaymentError::AmountNotTotal {
            amount: Kzt(0),
            total: Kzt(0),
        });
}

#[test]
fn a_payment_cannot_be_created_twice() {
    PaymentTest::with(())
        .given(vec![created()])
        .when(create_cmd(65_000, 65_000))
        .then_expect_error(PaymentError::AlreadyExists);
}

#[test]
fn commands_on_a_payment_that_does_not_exist_fail() {
    PaymentTest::with(())
        .given_no_previous_events()
        .when(success_cmd("kaspi-1", 65_000))
        .then_expect_error(PaymentError::NotFound);
}

// ---------------------------------------------------------------------------------------------
// Provider notifications
// ---------------------------------------------------------------------------------------------

#[test]
fn money_received_for_the_full_amount_succeeds_the_payment() {
    PaymentTest::with(())
        .given(vec![created()])
        .when(success_cmd("kaspi-1", 65_000))
        .then_expect_events(vec![succeeded()]);
    assert_eq!(
        state(vec![created(), succeeded()]).status,
        PaymentStatus::Succeeded
    );
}

#[test]
fn a_second_success_is_refused_as_already_paid() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(success_cmd("kaspi-2", 65_000))
        .then_expect_error(PaymentError::AlreadyPaid);
}

#[test]
fn a_success_after_a_refund_is_refused_as_already_paid() {
    PaymentTest::with(())
        .given(vec![created(), succeeded(), refunded(1, 1_000, 1_000)])
        .when(success_cmd("kaspi-1", 65_000))
        .then_expect_error(PaymentError::AlreadyPaid);
}

#[test]
fn a_mismatched_amount_is_recorded_and_the_payment_stays_pending() {
    let mismatched = PaymentEvent::PaymentAmountMismatched {
        txn_id: "kaspi-1".to_string(),
        amount_kzt: Kzt(64_999),
        expected_kzt: AMOUNT,
    };
    PaymentTest::with(())
        .given(vec![created()])
        .when(success_cmd("kaspi-1", 64_999))
        .then_expect_events(vec![mismatched.clone()]);
    let after = state(vec![created(), mismatched.clone()]);
    assert_eq!(after.status, PaymentStatus::Pending);
    assert_eq!(after.txn_id, None);
    // …and the right amount can still arrive afterwards.
    PaymentTest::with(())
        .given(vec![created(), mismatched])
        .when(success_cmd("kaspi-1", 65_000))
        .then_expect_events(vec![succeeded()]);
}

#[test]
fn money_arriving_after_expiry_is_still_recorded() {
    PaymentTest::with(())
        .given(vec![created(), PaymentEvent::PaymentExpired {}])
        .when(success_cmd("kaspi-1", 65_000))
        .then_expect_events(vec![succeeded()]);
}

#[test]
fn a_pending_payment_can_fail() {
    PaymentTest::with(())
        .given(vec![created()])
        .when(PaymentCommand::RecordFailure {
            reason: "card declined".to_string(),
        })
        .then_expect_events(vec![PaymentEvent::PaymentFailed {
            reason: "card declined".to_string(),
        }]);
}

#[test]
fn a_succeeded_payment_cannot_fail() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(PaymentCommand::RecordFailure {
            reason: "late decline".to_string(),
        })
        .then_expect_error(PaymentError::WrongStatus("succeeded"));
}

// ---------------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pending_payment_cannot_expire_before_its_deadline() {
    PaymentTest::with(())
        .given(vec![created()])
        .when(PaymentCommand::Expire {
            now: at("2030-01-01T12:14:59Z"),
        })
        .then_expect_error(PaymentError::NotExpired);
}

#[test]
fn a_pending_payment_expires_at_its_deadline() {
    PaymentTest::with(())
        .given(vec![created()])
        .when(PaymentCommand::Expire { now: expires_at() })
        .then_expect_events(vec![PaymentEvent::PaymentExpired {}]);
    assert_eq!(
        state(vec![created(), PaymentEvent::PaymentExpired {}]).status,
        PaymentStatus::Expired
    );
}

#[test]
fn a_succeeded_payment_does_not_expire() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(PaymentCommand::Expire {
            now: at("2030-01-02T00:00:00Z"),
        })
        .then_expect_error(PaymentError::WrongStatus("succeeded"));
}

// ---------------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------------

#[test]
fn a_partial_refund_leaves_the_payment_partially_refunded() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(refund_cmd(1, 20_000))
        .then_expect_events(vec![refunded(1, 20_000, 20_000)]);
    let after = state(vec![created(), succeeded(), refunded(1, 20_000, 20_000)]);
    assert_eq!(after.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(after.refundable(), Kzt(45_000));
}

#[test]
fn refunding_the_rest_leaves_the_payment_refunded() {
    PaymentTest::with(())
        .given(vec![created(), succeeded(), refunded(1, 20_000, 20_000)])
        .when(refund_cmd(2, 45_000))
        .then_expect_events(vec![refunded(2, 45_000, 65_000)]);
    let after = state(vec![
        created(),
        succeeded(),
        refunded(1, 20_000, 20_000),
        refunded(2, 45_000, 65_000),
    ]);
    assert_eq!(after.status, PaymentStatus::Refunded);
    assert_eq!(after.refundable(), Kzt(0));
}

#[test]
fn a_refund_above_what_is_left_is_refused() {
    PaymentTest::with(())
        .given(vec![created(), succeeded(), refunded(1, 20_000, 20_000)])
        .when(refund_cmd(2, 45_001))
        .then_expect_error(PaymentError::RefundTooLarge {
            available: Kzt(45_000),
        });
}

#[test]
fn a_refund_must_be_positive() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(refund_cmd(1, 0))
        .then_expect_error(PaymentError::RefundTooLarge { available: AMOUNT });
}

#[test]
fn the_same_refund_id_twice_emits_nothing() {
    PaymentTest::with(())
        .given(vec![created(), succeeded(), refunded(1, 20_000, 20_000)])
        .when(refund_cmd(1, 20_000))
        .then_expect_events(vec![]);
}

#[test]
fn a_fully_refunded_payment_takes_no_further_refunds() {
    PaymentTest::with(())
        .given(vec![created(), succeeded(), refunded(1, 65_000, 65_000)])
        .when(refund_cmd(2, 1))
        .then_expect_error(PaymentError::WrongStatus("refunded"));
}

#[test]
fn an_unpaid_payment_cannot_be_refunded() {
    PaymentTest::with(())
        .given(vec![created()])
        .when(refund_cmd(1, 1_000))
        .then_expect_error(PaymentError::WrongStatus("pending"));
}
