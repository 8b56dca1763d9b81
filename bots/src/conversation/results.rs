//! What the conversation does with the result of an effect it asked for: the next state and
//! what the guest sees (results, the payment link, "those nights were just taken", …).
use super::prompts::{plain, with_buttons};
use super::{act, nothing, say, Bot};
use crate::{texts, BookingSummary, Effect, Failure, Input, Outcome, State};

impl Bot {
    pub(super) fn result(&self, state: &State, input: Input) -> (State, Outcome) {
        match (state, input) {
            (State::Searching { stay }, Input::Found(offers)) => {
                if offers.is_empty() {
                    self.fail(
                        self.check_in_state(&stay.city, stay.check_in),
                        texts::nothing_found(&stay.city, self.lang),
                    )
                } else {
                    self.show(State::Browsing {
                        stay: stay.clone(),
                        offers,
                        page: 0,
                    })
                }
            }
            (State::Searching { stay }, Input::Failed(Failure::Unavailable)) => self.fail(
                State::ChoosingGuests {
                    city: stay.city.clone(),
                    check_in: stay.check_in,
                    check_out: stay.check_out,
                },
                texts::try_again(self.lang),
            ),
            (State::Searching { stay }, Input::Failed(Failure::NotAllowed)) => self.fail(
                self.check_in_state(&stay.city, stay.check_in),
                texts::not_allowed(self.lang),
            ),

            (State::Booking { .. }, Input::Booked { booking_id, .. }) => {
                (state.clone(), act(Effect::Pay { booking_id }))
            }
            (
                State::Booking { .. },
                Input::PaymentLink {
                    booking_id,
                    url,
                    amount_kzt,
                },
            ) => {
                let reply = with_buttons(
                    texts::held_for_payment(amount_kzt, self.lang),
                    vec![vec![self.pay_button(&url)]],
                );
                (
                    State::AwaitingPayment {
                        booking_id,
                        url,
                        amount_kzt,
                    },
                    say(vec![reply]),
                )
            }
            (State::Booking { stay, .. }, Input::DatesTaken(alternatives)) => {
                let sorry = texts::dates_taken(!alternatives.is_empty(), self.lang);
                if alternatives.is_empty() {
                    self.fail(self.check_in_state(&stay.city, stay.check_in), sorry)
                } else {
                    self.fail(
                        State::Browsing {
                            stay: stay.clone(),
                            offers: alternatives,
                            page: 0,
                        },
                        sorry,
                    )
                }
            }
            (State::Booking { stay, offer }, Input::Failed(Failure::Unavailable)) => self.fail(
                State::Confirming {
                    stay: stay.clone(),
                    offer: offer.clone(),
                },
                texts::try_again(self.lang),
            ),
            (State::Booking { stay, .. }, Input::Failed(Failure::NotAllowed)) => self.fail(
                self.check_in_state(&stay.city, stay.check_in),
                texts::not_allowed(self.lang),
            ),

            (State::ListingBookings { for_cancel }, Input::Bookings(list)) => {
                if !for_cancel {
                    return (
                        State::Idle,
                        say(vec![plain(texts::bookings_list(&list, self.lang))]),
                    );
                }
                let bookings: Vec<BookingSummary> = list
                    .into_iter()
                    .filter(|b| b.status == "held" || b.status == "confirmed")
                    .collect();
                if bookings.is_empty() {
                    (
                        State::Idle,
                        say(vec![plain(texts::nothing_to_cancel(self.lang))]),
                    )
                } else {
                    self.show(State::ChoosingCancellation { bookings })
                }
            }
            (State::ListingBookings { .. }, Input::Failed(Failure::Unavailable)) => {
                (State::Idle, say(vec![plain(texts::try_again(self.lang))]))
            }

            (
                State::Cancelling { booking_id },
                Input::Cancelled {
                    booking_id: cancelled,
                    refund_kzt,
                },
            ) if *booking_id == cancelled => (
                State::Idle,
                say(vec![plain(texts::cancelled(refund_kzt, self.lang))]),
            ),
            (State::Cancelling { .. }, Input::Failed(Failure::CannotCancel)) => (
                State::Idle,
                say(vec![plain(texts::cannot_cancel(self.lang))]),
            ),
            (State::Cancelling { .. }, Input::Failed(Failure::Unavailable)) => {
                (State::Idle, say(vec![plain(texts::try_again(self.lang))]))
            }

            // Late or out of place: nothing to say.
            _ => (state.clone(), nothing()),
        }
    }
}
