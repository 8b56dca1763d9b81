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
        account: "ACC123".to_string(),
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
        account: "ACC123".to_string(),
        amount_kzt: AMOUNT,
        expires_at: expires_at(),
    }
}

fn succeeded() -> PaymentEvent {
    PaymentEvent::PaymentSucceeded {
        txn_id: "kaspi-1".to_string(),
        amount_kzt: AMOUNT,
        source: PaymentSource::Callback,
    }
}

fn success_cmd(txn: &str, amount: i64) -> PaymentCommand {
    PaymentCommand::RecordSuccess {
        txn_id: txn.to_string(),
        amount_kzt: Kzt(amount),
        source: PaymentSource::Callback,
    }
}

fn refund_cmd(n: u128, amount: i64) -> PaymentCommand {
    PaymentCommand::RequestRefund {
        refund_id: refund(n),
        amount_kzt: Kzt(amount),
        reason: RefundReason::Cancellation,
    }
}

fn requested(n: u128, amount: i64) -> PaymentEvent {
    PaymentEvent::RefundRequested {
        refund_id: refund(n),
        amount_kzt: Kzt(amount),
        reason: RefundReason::Cancellation,
    }
}

fn returned(n: u128, amount: i64, total: i64) -> PaymentEvent {
    PaymentEvent::PaymentRefunded {
        refund_id: refund(n),
        amount_kzt: Kzt(amount),
        total_refunded_kzt: Kzt(total),
        return_operation_id: 500 + n as i64,
    }
}

/// A refund decided and returned.
fn refunded(n: u128, amount: i64, total: i64) -> Vec<PaymentEvent> {
    vec![requested(n, amount), returned(n, amount, total)]
}

fn history(parts: Vec<Vec<PaymentEvent>>) -> Vec<PaymentEvent> {
    parts.into_iter().flatten().collect()
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
fn the_same_notification_again_changes_nothing() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(success_cmd("kaspi-1", 65_000))
        .then_expect_events(vec![]);
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
        .given(history(vec![
            vec![created(), succeeded()],
            refunded(1, 1_000, 1_000),
        ]))
        .when(success_cmd("kaspi-2", 65_000))
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
        .given(vec![created(), expired()])
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

fn expired() -> PaymentEvent {
    PaymentEvent::PaymentExpired {
        reason: "hold ran out".to_string(),
    }
}

#[test]
fn a_pending_payment_expires() {
    PaymentTest::with(())
        .given(vec![created()])
        .when(PaymentCommand::Expire {
            reason: "hold ran out".to_string(),
        })
        .then_expect_events(vec![expired()]);
    assert_eq!(
        state(vec![created(), expired()]).status,
        PaymentStatus::Expired
    );
}

#[test]
fn expiring_twice_emits_nothing() {
    PaymentTest::with(())
        .given(vec![created(), expired()])
        .when(PaymentCommand::Expire {
            reason: "again".to_string(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_succeeded_payment_does_not_expire() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(PaymentCommand::Expire {
            reason: "late".to_string(),
        })
        .then_expect_error(PaymentError::WrongStatus("succeeded"));
}

#[test]
fn a_link_is_issued_once() {
    let issued = PaymentEvent::PaymentLinkIssued {
        kaspi_payment_id: 7,
        payment_url: "http://kaspi/pay/7".to_string(),
        link_expires_at: expires_at(),
    };
    let issue = |id| PaymentCommand::IssueLink {
        kaspi_payment_id: id,
        payment_url: format!("http://kaspi/pay/{id}"),
        link_expires_at: expires_at(),
    };
    PaymentTest::with(())
        .given(vec![created()])
        .when(issue(7))
        .then_expect_events(vec![issued.clone()]);
    PaymentTest::with(())
        .given(vec![created(), issued.clone()])
        .when(issue(7))
        .then_expect_events(vec![]);
    PaymentTest::with(())
        .given(vec![created(), issued])
        .when(issue(8))
        .then_expect_error(PaymentError::WrongStatus("pending"));
}

// ---------------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------------

#[test]
fn a_refund_is_decided_then_returned() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(refund_cmd(1, 20_000))
        .then_expect_events(vec![requested(1, 20_000)]);
    let decided = state(vec![created(), succeeded(), requested(1, 20_000)]);
    assert_eq!(decided.status, PaymentStatus::Succeeded);
    assert_eq!(decided.refundable(), Kzt(45_000));
    assert_eq!(decided.pending_refunds().count(), 1);
    PaymentTest::with(())
        .given(vec![created(), succeeded(), requested(1, 20_000)])
        .when(PaymentCommand::CompleteRefund {
            refund_id: refund(1),
            return_operation_id: 501,
        })
        .then_expect_events(vec![returned(1, 20_000, 20_000)]);
}

#[test]
fn a_partial_refund_leaves_the_payment_partially_refunded() {
    let after = state(history(vec![
        vec![created(), succeeded()],
        refunded(1, 20_000, 20_000),
    ]));
    assert_eq!(after.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(after.refundable(), Kzt(45_000));
    assert_eq!(after.pending_refunds().count(), 0);
}

#[test]
fn refunding_the_rest_leaves_the_payment_refunded() {
    PaymentTest::with(())
        .given(history(vec![
            vec![created(), succeeded()],
            refunded(1, 20_000, 20_000),
        ]))
        .when(refund_cmd(2, 45_000))
        .then_expect_events(vec![requested(2, 45_000)]);
    let after = state(history(vec![
        vec![created(), succeeded()],
        refunded(1, 20_000, 20_000),
        refunded(2, 45_000, 65_000),
    ]));
    assert_eq!(after.status, PaymentStatus::Refunded);
    assert_eq!(after.refundable(), Kzt(0));
}

#[test]
fn a_refund_above_what_is_left_is_refused() {
    PaymentTest::with(())
        .given(vec![created(), succeeded(), requested(1, 20_000)])
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
        .given(vec![created(), succeeded(), requested(1, 20_000)])
        .when(refund_cmd(1, 20_000))
        .then_expect_events(vec![]);
    PaymentTest::with(())
        .given(history(vec![
            vec![created(), succeeded()],
            refunded(1, 20_000, 20_000),
        ]))
        .when(PaymentCommand::CompleteRefund {
            refund_id: refund(1),
            return_operation_id: 999,
        })
        .then_expect_events(vec![]);
}

#[test]
fn completing_an_unknown_refund_fails() {
    PaymentTest::with(())
        .given(vec![created(), succeeded()])
        .when(PaymentCommand::CompleteRefund {
            refund_id: refund(9),
            return_operation_id: 1,
        })
        .then_expect_error(PaymentError::UnknownRefund);
}

#[test]
fn a_fully_refunded_payment_takes_no_further_refunds() {
    PaymentTest::with(())
        .given(history(vec![
            vec![created(), succeeded()],
            refunded(1, 65_000, 65_000),
        ]))
        .when(refund_cmd(2, 1))
        .then_expect_error(PaymentError::RefundTooLarge { available: Kzt(0) });
}

#[test]
fn an_unpaid_payment_cannot_be_refunded() {
    PaymentTest::with(())
        .given(vec![created()])
        .when(refund_cmd(1, 1_000))
        .then_expect_error(PaymentError::WrongStatus("pending"));
}
