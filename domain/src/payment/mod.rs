//! One charge for a booking: `pending → succeeded | failed | expired`, then refunds
//! (`refunded` / `partially_refunded`). A payment is applied at most once; an amount that does
//! not match is rejected *and recorded*.
mod aggregate;
#[cfg(test)]
mod tests;

pub use aggregate::{
    Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentSource, PaymentStatus, Refund,
    RefundReason,
};
