//! The conversation as a pure state machine: [`step`] takes the stored [`Dialogue`], what the
//! guest did (or what an effect returned) and the guest's local date, and gives the next
//! dialogue, the replies and at most one [`Effect`] to run.

mod prompts;
mod results;

use chrono::{Days, NaiveDate};
use domain::listing::{BOOKING_HORIZON_DAYS, MAX_STAY_NIGHTS};
use domain::user::Language;

use crate::calendar::{self, month_start};
use crate::{
    language_named, texts, Choice, Command, Dialogue, Effect, Failure, Input, Outcome, Reply,
    State, Stay, CITIES, PAGE_SIZE,
};
use prompts::{plain, with_buttons};

/// Most guests the guest may type: a bound on what the conversation takes in, not a rule of
/// any listing (each listing's own `max_guests` is checked when booking).
pub const MAX_GUESTS: u32 = 20;
/// Longest typed city name, in characters.
pub const MAX_CITY_CHARS: usize = 100;

/// Local spellings of the [`CITIES`] (lower case) and their canonical names.
const CITY_ALIASES: &[(&str, &str)] = &[
    ("алматы", "Almaty"),
    ("алма-ата", "Almaty"),
    ("астана", "Astana"),
    ("шымкент", "Shymkent"),
    ("актау", "Aktau"),
    ("ақтау", "Aktau"),
    ("караганда", "Karaganda"),
    ("караганды", "Karaganda"),
    ("қарағанды", "Karaganda"),
];

/// One turn of the conversation. Pure: no IO, no clock (`today` is the guest's local date).
pub fn step(dialogue: &Dialogue, input: Input, today: NaiveDate) -> (Dialogue, Outcome) {
    if dialogue.state == State::ChoosingLang {
        if let Some(lang) = chosen_lang(&input) {
            let outcome = say(vec![plain(texts::lang_set(lang))]);
            return (
                Dialogue {
                    state: State::Idle,
                    lang,
                },
                outcome,
            );
        }
    }
    let bot = Bot {
        lang: dialogue.lang,
        today,
    };
    let (state, outcome) = bot.handle(&dialogue.state, input);
    (
        Dialogue {
            state,
            lang: dialogue.lang,
        },
        outcome,
    )
}

/// The language picked in [`State::ChoosingLang`], if the input is one.
fn chosen_lang(input: &Input) -> Option<Language> {
    match input {
        Input::Choice(Choice::Lang(lang)) => Some(*lang),
        Input::Text(text) => language_named(text),
        _ => None,
    }
}

/// The canonical name of a city the guest typed or chose, or `None` if it is no city name.
fn city_of(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_CITY_CHARS || text.starts_with('/') {
        return None;
    }
    let lower = text.to_lowercase();
    let known = CITIES
        .iter()
        .copied()
        .find(|c| c.to_lowercase() == lower)
        .or_else(|| {
            CITY_ALIASES
                .iter()
                .find(|(alias, _)| *alias == lower)
                .map(|(_, c)| *c)
        });
    Some(known.unwrap_or(text).to_string())
}

fn say(replies: Vec<Reply>) -> Outcome {
    Outcome {
        replies,
        effect: None,
    }
}

fn act(effect: Effect) -> Outcome {
    Outcome {
        replies: Vec::new(),
        effect: Some(effect),
    }
}

fn nothing() -> Outcome {
    Outcome::default()
}

/// Clamps `month` (made a first of month) to the months of `first..=last`.
fn clamp_month(month: NaiveDate, first: NaiveDate, last: NaiveDate) -> NaiveDate {
    let (lo, hi) = (month_start(first), month_start(last));
    month_start(month).max(lo).min(hi.max(lo))
}

/// What the guest said: typed text or a button (`None`: one that is not on offer anywhere).
enum Said {
    Text(String),
    Pressed(Option<Choice>),
}

struct Bot {
    lang: Language,
    today: NaiveDate,
}

impl Bot {
    fn handle(&self, state: &State, input: Input) -> (State, Outcome) {
        match input {
            Input::Command(c) => self.command(state, c),
            Input::Choice(Choice::Rate { booking_id, stars }) => (
                state.clone(),
                act(Effect::Review {
                    booking_id,
                    rating: stars,
                }),
            ),
            Input::Choice(choice) => self.guest(state, Said::Pressed(Some(choice))),
            Input::UnknownButton => self.guest(state, Said::Pressed(None)),
            Input::Text(text) => self.guest(state, Said::Text(text)),
            Input::Reviewed { .. } => (
                state.clone(),
                say(vec![plain(texts::thanks_for_rating(self.lang))]),
            ),
            Input::Failed(Failure::CannotReview) => (
                state.clone(),
                say(vec![plain(texts::cannot_review(self.lang))]),
            ),
            result => self.result(state, result),
        }
    }

    // ----- commands -----

    fn command(&self, state: &State, command: Command) -> (State, Outcome) {
        match command {
            Command::Start => self.start(),
            Command::Help => (state.clone(), say(vec![plain(texts::help(self.lang))])),
            Command::Lang => self.show(State::ChoosingLang),
            Command::MyBookings => (
                State::ListingBookings { for_cancel: false },
                act(Effect::ListBookings),
            ),
            Command::Cancel => match state {
                State::Idle | State::AwaitingPayment { .. } => (
                    State::ListingBookings { for_cancel: true },
                    act(Effect::ListBookings),
                ),
                _ => self.stop(),
            },
        }
    }

    fn start(&self) -> (State, Outcome) {
        let reply = with_buttons(texts::welcome(self.lang), self.city_keyboard());
        (State::ChoosingCity, say(vec![reply]))
    }

    fn stop(&self) -> (State, Outcome) {
        (State::Idle, say(vec![plain(texts::stopped(self.lang))]))
    }

    // ----- what the guest said -----

    fn guest(&self, state: &State, said: Said) -> (State, Outcome) {
        match state {
            State::Idle => return self.start(),
            State::AwaitingPayment { .. } => return (state.clone(), say(self.prompt(state))),
            _ => {}
        }
        let pressed = matches!(said, Said::Pressed(_));
        let choice = match &said {
            Said::Pressed(choice) => choice.as_ref(),
            Said::Text(_) => None,
        };
        if choice == Some(&Choice::Cancel) {
            return self.stop();
        }
        let back = choice == Some(&Choice::Back);

        match state {
            State::Idle | State::AwaitingPayment { .. } => unreachable!("handled above"),

            State::ChoosingCity => match &said {
                Said::Pressed(Some(Choice::City(city))) => self.city(state, city),
                Said::Pressed(_) => self.stale(state),
                Said::Text(text) => self.city(state, text),
            },

            State::ChoosingCheckIn { city, .. } => {
                if back {
                    return self.show(State::ChoosingCity);
                }
                match &said {
                    Said::Pressed(Some(Choice::Month(month))) => {
                        let (first, last) = self.check_in_range();
                        if self.month_in(*month, first, last) {
                            return self.show(State::ChoosingCheckIn {
                                city: city.clone(),
                                month: *month,
                            });
                        }
                        self.stale(state)
                    }
                    Said::Pressed(Some(Choice::Day(day))) => self.check_in(state, city, *day),
                    Said::Pressed(_) => self.stale(state),
                    Said::Text(text) => match calendar::parse_date(text, self.today) {
                        Some(day) => self.check_in(state, city, day),
                        None => self.fail(state.clone(), texts::bad_date(self.lang)),
                    },
                }
            }

            State::ChoosingCheckOut { city, check_in, .. } => {
                if back {
                    return self.show(self.check_in_state(city, *check_in));
                }
                match &said {
                    Said::Pressed(Some(Choice::Month(month))) => {
                        let (first, last) = check_out_range(*check_in);
                        if self.month_in(*month, first, last) {
                            return self.show(State::ChoosingCheckOut {
                                city: city.clone(),
                                check_in: *check_in,
                                month: *month,
                            });
                        }
                        self.stale(state)
                    }
                    Said::Pressed(Some(Choice::Day(day))) => {
                        self.check_out(state, city, *check_in, *day)
                    }
                    Said::Pressed(_) => self.stale(state),
                    Said::Text(text) => {
                        let after = check_in.succ_opt().unwrap_or(*check_in);
                        match calendar::parse_date(text, after) {
                            Some(day) => self.check_out(state, city, *check_in, day),
                            None => self.fail(state.clone(), texts::bad_date(self.lang)),
                        }
                    }
                }
            }

            State::ChoosingGuests {
                city,
                check_in,
                check_out,
            } => {
                if back {
                    return self.show(State::ChoosingCheckOut {
                        city: city.clone(),
                        check_in: *check_in,
                        month: month_start(*check_out),
                    });
                }
                let guests = match &said {
                    Said::Pressed(Some(Choice::Guests(n))) => Some(*n),
                    Said::Pressed(_) => return self.stale(state),
                    Said::Text(text) => text.trim().parse::<u32>().ok(),
                };
                match guests {
                    Some(guests) if (1..=MAX_GUESTS).contains(&guests) => {
                        if *check_in < self.today {
                            return self.fail(
                                self.check_in_state(city, self.today),
                                texts::past_date(self.lang),
                            );
                        }
                        let stay = Stay {
                            city: city.clone(),
                            check_in: *check_in,
                            check_out: *check_out,
                            guests,
                        };
                        let effect = search(&stay);
                        (State::Searching { stay }, act(effect))
                    }
                    _ if pressed => self.stale(state),
                    _ => self.fail(state.clone(), texts::bad_guests(self.lang)),
                }
            }

            State::Browsing { stay, offers, page } => {
                if back {
                    return self.show(State::ChoosingGuests {
                        city: stay.city.clone(),
                        check_in: stay.check_in,
                        check_out: stay.check_out,
                    });
                }
                match choice {
                    Some(Choice::More) if (page + 1) * PAGE_SIZE < offers.len() => {
                        self.show(State::Browsing {
                            stay: stay.clone(),
                            offers: offers.clone(),
                            page: page + 1,
                        })
                    }
                    Some(Choice::Pick(id)) => match offers.iter().find(|o| o.listing_id == *id) {
                        Some(offer) => self.show(State::Confirming {
                            stay: stay.clone(),
                            offer: offer.clone(),
                        }),
                        None => self.stale(state),
                    },
                    _ => self.stale(state),
                }
            }

            State::Confirming { stay, offer } => match choice {
                // The offers are not kept while confirming: search again for page one.
                _ if back => (State::Searching { stay: stay.clone() }, act(search(stay))),
                Some(Choice::Book) => {
                    if stay.check_in < self.today {
                        return self.fail(
                            self.check_in_state(&stay.city, self.today),
                            texts::past_date(self.lang),
                        );
                    }
                    let effect = Effect::Book {
                        listing_id: offer.listing_id,
                        check_in: stay.check_in,
                        check_out: stay.check_out,
                        guests: stay.guests,
                    };
                    (
                        State::Booking {
                            stay: stay.clone(),
                            offer: offer.clone(),
                        },
                        act(effect),
                    )
                }
                _ => self.stale(state),
            },

            State::ChoosingCancellation { bookings } => {
                let picked = match choice {
                    Some(Choice::CancelBooking(id)) => {
                        bookings.iter().find(|b| b.booking_id == *id)
                    }
                    _ => None,
                };
                match picked {
                    Some(booking) => self.show(State::ConfirmingCancellation {
                        booking: booking.clone(),
                    }),
                    None => self.stale(state),
                }
            }

            State::ConfirmingCancellation { booking } => match choice {
                Some(Choice::Yes) => (
                    State::Cancelling {
                        booking_id: booking.booking_id,
                    },
                    act(Effect::CancelBooking {
                        booking_id: booking.booking_id,
                    }),
                ),
                Some(Choice::No) => (
                    State::Idle,
                    say(vec![plain(texts::booking_kept(self.lang))]),
                ),
                // The list is not kept while confirming: fetch it again.
                Some(Choice::Back) => (
                    State::ListingBookings { for_cancel: true },
                    act(Effect::ListBookings),
                ),
                _ => self.stale(state),
            },

            // A valid language was taken in `step`.
            State::ChoosingLang => self.stale(state),

            State::Searching { .. }
            | State::Booking { .. }
            | State::ListingBookings { .. }
            | State::Cancelling { .. } => (state.clone(), say(self.prompt(state))),
        }
    }

    fn city(&self, state: &State, text: &str) -> (State, Outcome) {
        match city_of(text) {
            Some(city) => self.show(self.check_in_state(&city, self.today)),
            None => self.fail(state.clone(), texts::bad_city(self.lang)),
        }
    }

    fn check_in(&self, state: &State, city: &str, day: NaiveDate) -> (State, Outcome) {
        let (first, last) = self.check_in_range();
        if day < first {
            self.fail(state.clone(), texts::past_date(self.lang))
        } else if day > last {
            self.fail(state.clone(), texts::too_far_ahead(self.lang))
        } else {
            let (first_out, _) = check_out_range(day);
            self.show(State::ChoosingCheckOut {
                city: city.to_string(),
                check_in: day,
                month: month_start(first_out),
            })
        }
    }

    fn check_out(
        &self,
        state: &State,
        city: &str,
        check_in: NaiveDate,
        day: NaiveDate,
    ) -> (State, Outcome) {
        let (first, last) = check_out_range(check_in);
        if check_in < self.today {
            self.fail(
                self.check_in_state(city, self.today),
                texts::past_date(self.lang),
            )
        } else if day < first {
            self.fail(
                state.clone(),
                texts::check_out_not_after(check_in, self.lang),
            )
        } else if day > last {
            self.fail(state.clone(), texts::stay_too_long(self.lang))
        } else {
            self.show(State::ChoosingGuests {
                city: city.to_string(),
                check_in,
                check_out: day,
            })
        }
    }

    // ----- dates -----

    /// Check-in days on offer: today to two years ahead.
    fn check_in_range(&self) -> (NaiveDate, NaiveDate) {
        let last = self
            .today
            .checked_add_days(Days::new(BOOKING_HORIZON_DAYS.unsigned_abs()))
            .unwrap_or(self.today);
        (self.today, last)
    }

    /// Whether `month` is a first of month that a picker for `first..=last` may show.
    fn month_in(&self, month: NaiveDate, first: NaiveDate, last: NaiveDate) -> bool {
        month == month_start(month) && month >= month_start(first) && month <= month_start(last)
    }

    /// Choosing the check-in in `city`, showing `month` (kept within the allowed months).
    fn check_in_state(&self, city: &str, month: NaiveDate) -> State {
        let (first, last) = self.check_in_range();
        State::ChoosingCheckIn {
            city: city.to_string(),
            month: clamp_month(month, first, last),
        }
    }
}

/// Check-out days for `check_in`: the next day up to [`MAX_STAY_NIGHTS`] later.
fn check_out_range(check_in: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = check_in.succ_opt().unwrap_or(check_in);
    let last = check_in
        .checked_add_days(Days::new(u64::from(MAX_STAY_NIGHTS)))
        .unwrap_or(first);
    (first, last)
}

fn search(stay: &Stay) -> Effect {
    Effect::Search {
        city: stay.city.clone(),
        check_in: stay.check_in,
        check_out: stay.check_out,
        guests: stay.guests,
    }
}

#[cfg(test)]
mod tests;
