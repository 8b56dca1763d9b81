//! What each state asks the guest, with its buttons: the city keyboard, the date picker, the
//! guest counts, result cards a page at a time, confirmations, the language picker.
use super::{check_out_range, clamp_month, say, Bot};
use crate::calendar;
use crate::{
    texts, Button, Choice, Offer, Outcome, Reply, State, Stay, CITIES, MAX_GUEST_BUTTONS, PAGE_SIZE,
};

pub(super) fn plain(text: impl Into<String>) -> Reply {
    Reply {
        text: text.into(),
        photo: None,
        buttons: Vec::new(),
    }
}

pub(super) fn with_buttons(text: impl Into<String>, buttons: Vec<Vec<Button>>) -> Reply {
    Reply {
        text: text.into(),
        photo: None,
        buttons,
    }
}

pub(super) fn button(label: impl Into<String>, data: Choice) -> Button {
    Button {
        label: label.into(),
        data,
        url: None,
    }
}

impl Bot {
    /// Goes to `state` and shows its prompt.
    pub(super) fn show(&self, state: State) -> (State, Outcome) {
        let replies = self.prompt(&state);
        (state, say(replies))
    }

    /// "Please use the buttons" and the current prompt again.
    pub(super) fn stale(&self, state: &State) -> (State, Outcome) {
        self.fail(state.clone(), texts::use_buttons(self.lang))
    }

    /// Goes to `state` and shows `text` before its prompt.
    pub(super) fn fail(&self, state: State, text: impl Into<String>) -> (State, Outcome) {
        let text = text.into();
        let mut replies = self.prompt(&state);
        match replies.first_mut() {
            // Photo cards (results) get a message of their own before them.
            Some(first) if !matches!(state, State::Browsing { .. }) => {
                first.text = format!("{text}\n\n{}", first.text);
            }
            _ => replies.insert(0, plain(text)),
        }
        (state, say(replies))
    }

    /// The messages that ask for what `state` waits for.
    pub(super) fn prompt(&self, state: &State) -> Vec<Reply> {
        let lang = self.lang;
        match state {
            State::Idle => vec![with_buttons(texts::welcome(lang), self.city_keyboard())],
            State::ChoosingCity => vec![with_buttons(texts::ask_city(lang), self.city_keyboard())],
            State::ChoosingCheckIn { city, month } => {
                let (first, last) = self.check_in_range();
                let month = clamp_month(*month, first, last);
                let mut rows = calendar::month_keyboard_until(month, first, Some(last), lang);
                rows.push(self.back_cancel_row());
                vec![with_buttons(texts::ask_check_in(city, month, lang), rows)]
            }
            State::ChoosingCheckOut {
                check_in, month, ..
            } => {
                let (first, last) = check_out_range(*check_in);
                let month = clamp_month(*month, first, last);
                let mut rows = calendar::month_keyboard_until(month, first, Some(last), lang);
                rows.push(self.back_cancel_row());
                vec![with_buttons(
                    texts::ask_check_out(*check_in, month, lang),
                    rows,
                )]
            }
            State::ChoosingGuests {
                check_in,
                check_out,
                ..
            } => {
                let numbers: Vec<Button> = (1..=MAX_GUEST_BUTTONS)
                    .map(|n| button(n.to_string(), Choice::Guests(n)))
                    .collect();
                let mut rows: Vec<Vec<Button>> =
                    numbers.chunks(3).map(<[Button]>::to_vec).collect();
                rows.push(self.back_cancel_row());
                vec![with_buttons(
                    texts::ask_guests(*check_in, *check_out, lang),
                    rows,
                )]
            }
            State::Browsing { stay, offers, page } => self.page(stay, offers, *page),
            State::Confirming { stay, offer } => vec![with_buttons(
                texts::confirm_booking(stay, offer, lang),
                vec![
                    vec![button(texts::book_and_pay_button(lang), Choice::Book)],
                    self.back_cancel_row(),
                ],
            )],
            State::AwaitingPayment {
                url, amount_kzt, ..
            } => vec![with_buttons(
                texts::payment_reminder(*amount_kzt, lang),
                vec![vec![self.pay_button(url)]],
            )],
            State::ChoosingCancellation { bookings } => {
                let mut rows: Vec<Vec<Button>> = bookings
                    .iter()
                    .map(|b| {
                        vec![button(
                            texts::booking_label(b),
                            Choice::CancelBooking(b.booking_id),
                        )]
                    })
                    .collect();
                rows.push(self.cancel_row());
                vec![with_buttons(texts::choose_cancellation(lang), rows)]
            }
            // No "✖ cancel" here: next to "Yes, cancel it" it would read as the same thing.
            State::ConfirmingCancellation { booking } => vec![with_buttons(
                texts::confirm_cancellation(booking, lang),
                vec![
                    vec![
                        button(texts::yes_cancel_button(lang), Choice::Yes),
                        button(texts::no_button(lang), Choice::No),
                    ],
                    vec![button(texts::back_button(lang), Choice::Back)],
                ],
            )],
            State::ChoosingLang => {
                let langs = texts::lang_options()
                    .iter()
                    .map(|(label, l)| button(*label, Choice::Lang(*l)))
                    .collect();
                vec![with_buttons(
                    texts::choose_lang(lang),
                    vec![langs, self.cancel_row()],
                )]
            }
            State::Searching { .. }
            | State::Booking { .. }
            | State::ListingBookings { .. }
            | State::Cancelling { .. } => vec![plain(texts::please_wait(lang))],
        }
    }

    /// One card per offer of `page`, then the page's navigation.
    pub(super) fn page(&self, stay: &Stay, offers: &[Offer], page: usize) -> Vec<Reply> {
        let lang = self.lang;
        let pages = offers.len().div_ceil(PAGE_SIZE).max(1);
        let page = page.min(pages - 1);
        let mut replies: Vec<Reply> = offers
            .iter()
            .skip(page * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|offer| Reply {
                text: texts::offer_card(offer, stay, lang),
                photo: offer.photo.clone(),
                buttons: vec![vec![button(
                    texts::book_button(lang),
                    Choice::Pick(offer.listing_id),
                )]],
            })
            .collect();
        let mut rows = Vec::new();
        if page + 1 < pages {
            rows.push(vec![button(texts::more_button(lang), Choice::More)]);
        }
        rows.push(self.back_cancel_row());
        replies.push(with_buttons(
            texts::results_page(offers.len(), page + 1, pages, lang),
            rows,
        ));
        replies
    }

    pub(super) fn city_keyboard(&self) -> Vec<Vec<Button>> {
        let cities: Vec<Button> = CITIES
            .iter()
            .map(|c| button(texts::city_name(c, self.lang), Choice::City(c.to_string())))
            .collect();
        let mut rows: Vec<Vec<Button>> = cities.chunks(2).map(<[Button]>::to_vec).collect();
        rows.push(self.cancel_row());
        rows
    }

    pub(super) fn back_cancel_row(&self) -> Vec<Button> {
        vec![
            button(texts::back_button(self.lang), Choice::Back),
            button(texts::cancel_button(self.lang), Choice::Cancel),
        ]
    }

    pub(super) fn cancel_row(&self) -> Vec<Button> {
        vec![button(texts::cancel_button(self.lang), Choice::Cancel)]
    }

    pub(super) fn pay_button(&self, url: &str) -> Button {
        Button {
            label: texts::pay_button(self.lang).to_string(),
            data: Choice::Pay,
            url: Some(url.to_string()),
        }
    }
}
