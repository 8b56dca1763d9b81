//! Given a dialogue and what the guest did, the next dialogue and what they see.
use super::prompts::button;
use super::*;
use crate::{BookingSummary, Button, Offer, MAX_GUEST_BUTTONS};
use uuid::Uuid;

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The guest's local date in these tests.
fn today() -> NaiveDate {
    ymd(2025, 8, 20)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn offer(n: u128) -> Offer {
    Offer {
        listing_id: id(n),
        title: format!("Flat {n}"),
        city: "Almaty".into(),
        nightly_price_kzt: 20_000,
        total_kzt: 65_000,
        max_guests: 4,
        photo: Some(format!("https://img.example/{n}.jpg")),
        rating: match n % 2 {
            0 => Some(4.5),
            _ => None,
        },
    }
}

fn offers(n: u128) -> Vec<Offer> {
    (1..=n).map(offer).collect()
}

fn stay() -> Stay {
    Stay {
        city: "Almaty".into(),
        check_in: ymd(2025, 8, 25),
        check_out: ymd(2025, 8, 28),
        guests: 2,
    }
}

fn summary(n: u128, status: &str) -> BookingSummary {
    BookingSummary {
        booking_id: id(100 + n),
        title: format!("Loft {n}"),
        check_in: ymd(2025, 9, 1),
        check_out: ymd(2025, 9, 4),
        status: status.into(),
        total_kzt: 45_000,
    }
}

fn at(state: State) -> Dialogue {
    Dialogue {
        state,
        lang: Language::Ru,
    }
}

fn all_buttons(replies: &[Reply]) -> Vec<&Button> {
    replies
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .collect()
}

fn has_button(replies: &[Reply], data: &str) -> bool {
    all_buttons(replies).iter().any(|b| b.data.encode() == data)
}

fn last_row_data(reply: &Reply) -> Vec<String> {
    reply
        .buttons
        .last()
        .unwrap()
        .iter()
        .map(|b| b.data.encode())
        .collect()
}

/// A guest talking to the bot: counts their actions and checks that every tap is on a
/// button they were shown.
struct Guest {
    dialogue: Dialogue,
    shown: Vec<Reply>,
    actions: usize,
}

impl Guest {
    fn new() -> Guest {
        Guest {
            dialogue: Dialogue::default(),
            shown: Vec::new(),
            actions: 0,
        }
    }

    fn send(&mut self, input: Input) -> Outcome {
        if matches!(
            input,
            Input::Command(_) | Input::Text(_) | Input::Choice(_) | Input::UnknownButton
        ) {
            self.actions += 1;
        }
        let (dialogue, outcome) = step(&self.dialogue, input, today());
        self.dialogue = dialogue;
        if !outcome.replies.is_empty() {
            self.shown = outcome.replies.clone();
        }
        outcome
    }

    fn tap(&mut self, data: &str) -> Outcome {
        assert!(
            has_button(&self.shown, data),
            "no button {data} in {:#?}",
            self.shown
        );
        self.send(Input::button(data))
    }

    fn state(&self) -> &State {
        &self.dialogue.state
    }
}

fn check_in_at(city: &str, month: NaiveDate) -> State {
    State::ChoosingCheckIn {
        city: city.into(),
        month,
    }
}

fn check_out_at(check_in: NaiveDate, month: NaiveDate) -> State {
    State::ChoosingCheckOut {
        city: "Almaty".into(),
        check_in,
        month,
    }
}

fn guests_at() -> State {
    State::ChoosingGuests {
        city: "Almaty".into(),
        check_in: ymd(2025, 8, 25),
        check_out: ymd(2025, 8, 28),
    }
}

fn browsing(n: u128, page: usize) -> State {
    State::Browsing {
        stay: stay(),
        offers: offers(n),
        page,
    }
}

fn confirming() -> State {
    State::Confirming {
        stay: stay(),
        offer: offer(2),
    }
}

fn booking() -> State {
    State::Booking {
        stay: stay(),
        offer: offer(2),
    }
}

/// Drives a fresh guest from /start to the search results.
fn to_results(guest: &mut Guest) {
    guest.send(Input::Command(Command::Start));
    guest.tap("city:Almaty");
    guest.tap("day:2025-08-25");
    guest.tap("day:2025-08-28");
    let out = guest.tap("guests:2");
    assert!(matches!(out.effect, Some(Effect::Search { .. })));
    guest.send(Input::Found(offers(7)));
}

#[test]
fn happy_path_from_start_to_the_kaspi_button() {
    let mut g = Guest::new();

    let out = g.send(Input::Command(Command::Start));
    assert_eq!(*g.state(), State::ChoosingCity);
    assert_eq!(out.replies.len(), 1);
    assert_eq!(out.replies[0].text, texts::welcome(Language::Ru));
    let rows = &out.replies[0].buttons;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0][0].data.encode(), "city:Almaty");
    assert_eq!(rows[0][1].data.encode(), "city:Astana");
    assert_eq!(rows[0][0].label, "Алматы");
    assert_eq!(rows[2].len(), 1);
    assert_eq!(last_row_data(&out.replies[0]), ["cancel"]);

    let out = g.tap("city:Almaty");
    assert_eq!(*g.state(), check_in_at("Almaty", ymd(2025, 8, 1)));
    let reply = &out.replies[0];
    assert!(reply.text.contains("Алматы"));
    assert!(reply.text.contains("Август 2025"));
    assert_eq!(reply.buttons[0][0].data.encode(), "day:2025-08-20");
    assert!(!has_button(&out.replies, "day:2025-08-19"));
    assert_eq!(last_row_data(reply), ["back", "cancel"]);

    let out = g.tap("day:2025-08-25");
    assert_eq!(*g.state(), check_out_at(ymd(2025, 8, 25), ymd(2025, 8, 1)));
    assert_eq!(out.replies[0].buttons[0][0].data.encode(), "day:2025-08-26");
    assert!(out.replies[0].text.contains("25.08.2025"));

    let out = g.tap("day:2025-08-28");
    assert_eq!(*g.state(), guests_at());
    let reply = &out.replies[0];
    assert!(reply.text.contains("3 ночи"));
    let guests: Vec<&Button> = all_buttons(&out.replies)
        .into_iter()
        .filter(|b| b.data.encode().starts_with("guests:"))
        .collect();
    assert_eq!(guests.len(), MAX_GUEST_BUTTONS as usize);
    assert_eq!(guests[0].data.encode(), "guests:1");
    assert_eq!(last_row_data(reply), ["back", "cancel"]);

    let out = g.tap("guests:2");
    assert_eq!(*g.state(), State::Searching { stay: stay() });
    assert!(out.replies.is_empty());
    assert_eq!(
        out.effect,
        Some(Effect::Search {
            city: "Almaty".into(),
            check_in: ymd(2025, 8, 25),
            check_out: ymd(2025, 8, 28),
            guests: 2,
        })
    );

    let out = g.send(Input::Found(offers(7)));
    assert_eq!(*g.state(), browsing(7, 0));
    assert_eq!(out.replies.len(), PAGE_SIZE + 1);
    let card = &out.replies[1];
    assert_eq!(card.photo.as_deref(), Some("https://img.example/2.jpg"));
    for part in [
        "Flat 2",
        "Алматы",
        "20 000 ₸",
        "65 000 ₸",
        "★ 4.5",
        "3 ночи",
    ] {
        assert!(card.text.contains(part), "{part}: {}", card.text);
    }
    assert_eq!(
        card.buttons,
        vec![vec![button("Забронировать", Choice::Pick(id(2)))]]
    );
    let nav = out.replies.last().unwrap();
    assert!(nav.text.contains("1/2"));
    assert_eq!(nav.buttons[0][0].data.encode(), "more");
    assert_eq!(last_row_data(nav), ["back", "cancel"]);
    assert!(out.effect.is_none());

    let out = g.tap(&format!("pick:{}", id(2)));
    assert_eq!(*g.state(), confirming());
    let reply = &out.replies[0];
    for part in [
        "Flat 2",
        "25.08.2025–28.08.2025",
        "3 ночи",
        "2 гостя",
        "65 000 ₸",
    ] {
        assert!(reply.text.contains(part), "{part}: {}", reply.text);
    }
    assert_eq!(reply.buttons[0][0].data.encode(), "book");
    assert_eq!(last_row_data(reply), ["back", "cancel"]);

    let out = g.tap("book");
    assert_eq!(*g.state(), booking());
    assert!(out.replies.is_empty());
    assert_eq!(
        out.effect,
        Some(Effect::Book {
            listing_id: id(2),
            check_in: ymd(2025, 8, 25),
            check_out: ymd(2025, 8, 28),
            guests: 2,
        })
    );

    let out = g.send(Input::Booked {
        booking_id: id(50),
        total_kzt: 65_000,
    });
    assert_eq!(*g.state(), booking());
    assert!(out.replies.is_empty());
    assert_eq!(out.effect, Some(Effect::Pay { booking_id: id(50) }));

    let url = "https://kaspi.kz/pay/50";
    let out = g.send(Input::PaymentLink {
        booking_id: id(50),
        url: url.into(),
        amount_kzt: 65_000,
    });
    assert_eq!(
        *g.state(),
        State::AwaitingPayment {
            booking_id: id(50),
            url: url.into(),
            amount_kzt: 65_000,
        }
    );
    assert!(out.effect.is_none());
    let reply = &out.replies[0];
    assert!(reply.text.contains("15 минут"));
    assert!(reply.text.contains("65 000 ₸"));
    assert!(reply.text.contains("/mybookings"));
    let pay = &reply.buttons[0][0];
    assert_eq!(pay.url.as_deref(), Some(url));
    assert_eq!(pay.label, "Оплатить Kaspi");

    assert!(g.actions <= 8, "{} actions to the Kaspi button", g.actions);
    assert_eq!(g.actions, 7);

    // Anything said now: the reminder with the same link.
    let out = g.send(Input::Text("hello?".into()));
    assert!(matches!(g.state(), State::AwaitingPayment { .. }));
    assert_eq!(out.replies[0].buttons[0][0].url.as_deref(), Some(url));
    let out = g.send(Input::button("back"));
    assert!(matches!(g.state(), State::AwaitingPayment { .. }));
    assert_eq!(out.replies[0].buttons[0][0].url.as_deref(), Some(url));
}

#[test]
fn english_after_lang() {
    let mut g = Guest::new();
    let out = g.send(Input::Command(Command::Lang));
    assert_eq!(*g.state(), State::ChoosingLang);
    let data: Vec<String> = out.replies[0].buttons[0]
        .iter()
        .map(|b| b.data.encode())
        .collect();
    assert_eq!(data, ["lang:ru", "lang:kk", "lang:en"]);
    let labels: Vec<&str> = out.replies[0].buttons[0]
        .iter()
        .map(|b| b.label.as_str())
        .collect();
    assert_eq!(labels, ["Русский", "Қазақша", "English"]);

    let out = g.tap("lang:en");
    assert_eq!(g.dialogue.lang, Language::En);
    assert_eq!(*g.state(), State::Idle);
    assert_eq!(out.replies[0].text, texts::lang_set(Language::En));
    assert!(out.replies[0].text.contains("/start"));

    let en = g.send(Input::Command(Command::Start));
    let ru = step(
        &Dialogue::default(),
        Input::Command(Command::Start),
        today(),
    )
    .1;
    assert_ne!(en.replies[0].text, ru.replies[0].text);
    assert_eq!(en.replies[0].text, texts::welcome(Language::En));
    assert_eq!(en.replies[0].buttons[0][0].label, "Almaty");
    assert_eq!(last_row_data(&en.replies[0]), ["cancel"]);
    assert_eq!(en.replies[0].buttons[3][0].label, "✖ Cancel");

    let out = g.tap("city:Almaty");
    assert!(out.replies[0].text.contains("Check-in"));
    assert!(out.replies[0].text.contains("August 2025"));
    assert_eq!(g.dialogue.lang, Language::En);

    // A typed language too, and Kazakh.
    let mut g = Guest::new();
    g.send(Input::Command(Command::Lang));
    let out = g.send(Input::Text("қазақша".into()));
    assert_eq!(g.dialogue.lang, Language::Kk);
    assert_eq!(out.replies[0].text, texts::lang_set(Language::Kk));
}

#[test]
fn lang_prompt_refuses_other_input_and_can_be_cancelled() {
    let d = at(State::ChoosingLang);
    let (next, out) = step(&d, Input::Text("deutsch".into()), today());
    assert_eq!(next, d);
    assert!(out.replies[0]
        .text
        .starts_with(texts::use_buttons(Language::Ru)));
    assert!(has_button(&out.replies, "lang:en"));
    let (next, out) = step(&d, Input::button("cancel"), today());
    assert_eq!(next.state, State::Idle);
    assert_eq!(out.replies[0].text, texts::stopped(Language::Ru));
}

#[test]
fn back_at_each_step() {
    let cases = [
        (
            check_in_at("Almaty", ymd(2025, 9, 1)),
            State::ChoosingCity,
            texts::ask_city(Language::Ru).to_string(),
        ),
        (
            check_out_at(ymd(2025, 8, 25), ymd(2025, 9, 1)),
            check_in_at("Almaty", ymd(2025, 8, 1)),
            "Дата заезда".to_string(),
        ),
        (
            guests_at(),
            check_out_at(ymd(2025, 8, 25), ymd(2025, 8, 1)),
            "Дата выезда".to_string(),
        ),
        (
            browsing(7, 1),
            guests_at(),
            "Сколько будет гостей".to_string(),
        ),
    ];
    for (from, to, text) in cases {
        let (next, out) = step(&at(from.clone()), Input::button("back"), today());
        assert_eq!(next.state, to, "back from {from:?}");
        assert_eq!(out.replies.len(), 1);
        assert!(
            out.replies[0].text.contains(&text),
            "{}",
            out.replies[0].text
        );
        assert!(out.effect.is_none());
    }

    // Confirming → the results again, page one (searched afresh).
    let (next, out) = step(&at(confirming()), Input::button("back"), today());
    assert_eq!(next.state, State::Searching { stay: stay() });
    assert_eq!(out.effect, Some(search(&stay())));
    let (next, out) = step(&next, Input::Found(offers(7)), today());
    assert_eq!(next.state, browsing(7, 0));
    assert_eq!(out.replies.len(), PAGE_SIZE + 1);

    // No back from the city: it is no button there, and a stale one is refused.
    let (next, out) = step(&at(State::ChoosingCity), Input::button("back"), today());
    assert_eq!(next.state, State::ChoosingCity);
    assert!(out.replies[0]
        .text
        .starts_with(texts::use_buttons(Language::Ru)));
}

#[test]
fn cancel_at_each_step() {
    let flow = [
        State::ChoosingCity,
        check_in_at("Almaty", ymd(2025, 8, 1)),
        check_out_at(ymd(2025, 8, 25), ymd(2025, 8, 1)),
        guests_at(),
        browsing(7, 0),
        confirming(),
        State::ChoosingLang,
        State::ChoosingCancellation {
            bookings: vec![summary(1, "held")],
        },
        State::ConfirmingCancellation {
            booking: summary(1, "held"),
        },
        State::Searching { stay: stay() },
        booking(),
    ];
    for state in flow {
        for input in [Input::button("cancel"), Input::Command(Command::Cancel)] {
            let (next, out) = step(&at(state.clone()), input.clone(), today());
            assert_eq!(next.state, State::Idle, "{input:?} in {state:?}");
            assert_eq!(out.replies.len(), 1);
            assert_eq!(out.replies[0].text, texts::stopped(Language::Ru));
            assert!(out.replies[0].text.contains("/start"));
            assert!(out.effect.is_none());
        }
    }

    // Each prompt of the flow ends with back/cancel (the city with cancel alone).
    for state in [
        check_in_at("Almaty", ymd(2025, 8, 1)),
        check_out_at(ymd(2025, 8, 25), ymd(2025, 8, 1)),
        guests_at(),
        confirming(),
    ] {
        let (_, out) = step(&at(state.clone()), Input::button("?"), today());
        assert_eq!(
            last_row_data(out.replies.last().unwrap()),
            ["back", "cancel"],
            "{state:?}"
        );
    }
    let (_, out) = step(&at(browsing(3, 0)), Input::button("?"), today());
    assert_eq!(
        last_row_data(out.replies.last().unwrap()),
        ["back", "cancel"]
    );
    let (_, out) = step(&at(State::ChoosingCity), Input::button("?"), today());
    assert_eq!(last_row_data(&out.replies[0]), ["cancel"]);

    // From Idle or with a payment link out, /cancel is about cancelling a booking.
    for state in [
        State::Idle,
        State::AwaitingPayment {
            booking_id: id(1),
            url: "u".into(),
            amount_kzt: 1,
        },
    ] {
        let (next, out) = step(&at(state), Input::Command(Command::Cancel), today());
        assert_eq!(next.state, State::ListingBookings { for_cancel: true });
        assert_eq!(out.effect, Some(Effect::ListBookings));
        assert!(out.replies.is_empty());
    }
}

#[test]
fn typed_city_dates_and_guests() {
    let mut g = Guest::new();
    g.send(Input::Command(Command::Start));
    g.send(Input::Text("  алматы ".into()));
    assert_eq!(*g.state(), check_in_at("Almaty", ymd(2025, 8, 1)));

    let out = g.send(Input::Text("25.08".into()));
    assert_eq!(*g.state(), check_out_at(ymd(2025, 8, 25), ymd(2025, 8, 1)));
    assert!(has_button(&out.replies, "day:2025-08-26"));
    assert!(!has_button(&out.replies, "day:2025-08-25"));

    g.send(Input::Text("28.08.2025".into()));
    assert_eq!(*g.state(), guests_at());

    let out = g.send(Input::Text("two".into()));
    assert_eq!(*g.state(), guests_at());
    assert!(out.replies[0]
        .text
        .starts_with(texts::bad_guests(Language::Ru)));
    let out = g.send(Input::Text("21".into()));
    assert_eq!(*g.state(), guests_at());
    assert!(out.replies[0]
        .text
        .starts_with(texts::bad_guests(Language::Ru)));

    let out = g.send(Input::Text(" 12 ".into()));
    let mut expected = stay();
    expected.guests = 12;
    assert_eq!(*g.state(), State::Searching { stay: expected });
    assert!(matches!(
        out.effect,
        Some(Effect::Search { guests: 12, .. })
    ));

    // Other cities: canonical when known, as typed otherwise.
    for (typed, city) in [
        ("ASTANA", "Astana"),
        ("Караганда", "Karaganda"),
        ("Ақтау", "Aktau"),
        (" Костанай ", "Костанай"),
    ] {
        let (next, _) = step(&at(State::ChoosingCity), Input::Text(typed.into()), today());
        assert_eq!(next.state, check_in_at(city, ymd(2025, 8, 1)), "{typed}");
    }
    for bad in ["   ", &"x".repeat(101), "/weird"] {
        let (next, out) = step(&at(State::ChoosingCity), Input::Text(bad.into()), today());
        assert_eq!(next.state, State::ChoosingCity);
        assert!(out.replies[0]
            .text
            .starts_with(texts::bad_city(Language::Ru)));
        assert!(has_button(&out.replies, "city:Almaty"));
    }
    let (next, _) = step(
        &at(State::ChoosingCity),
        Input::Text("y".repeat(100)),
        today(),
    );
    assert!(matches!(next.state, State::ChoosingCheckIn { .. }));

    // A typed check-out without a year follows the check-in.
    let d = at(check_out_at(ymd(2025, 12, 28), ymd(2025, 12, 1)));
    let (next, _) = step(&d, Input::Text("03.01".into()), today());
    assert_eq!(
        next.state,
        State::ChoosingGuests {
            city: "Almaty".into(),
            check_in: ymd(2025, 12, 28),
            check_out: ymd(2026, 1, 3),
        }
    );
}

#[test]
fn past_and_bad_dates_are_refused() {
    let d = at(check_in_at("Almaty", ymd(2025, 8, 1)));
    for input in [
        Input::button("day:2025-08-19"),
        Input::Text("01.01.2020".into()),
    ] {
        let (next, out) = step(&d, input, today());
        assert_eq!(next, d);
        assert_eq!(out.replies.len(), 1);
        assert!(out.replies[0]
            .text
            .starts_with(texts::past_date(Language::Ru)));
        assert!(has_button(&out.replies, "day:2025-08-20"));
    }
    let (next, out) = step(&d, Input::Text("2028-01-01".into()), today());
    assert_eq!(next, d);
    assert!(out.replies[0]
        .text
        .starts_with(texts::too_far_ahead(Language::Ru)));
    let (next, out) = step(&d, Input::Text("завтра".into()), today());
    assert_eq!(next, d);
    assert!(out.replies[0]
        .text
        .starts_with(texts::bad_date(Language::Ru)));
    // The last day allowed.
    let (next, _) = step(&d, Input::Text("2027-08-20".into()), today());
    assert!(matches!(next.state, State::ChoosingCheckOut { .. }));

    let d = at(check_out_at(ymd(2025, 8, 25), ymd(2025, 8, 1)));
    let (next, out) = step(&d, Input::button("day:2025-08-25"), today());
    assert_eq!(next, d);
    assert!(out.replies[0]
        .text
        .starts_with(&texts::check_out_not_after(ymd(2025, 8, 25), Language::Ru)));
    let (next, out) = step(&d, Input::Text("24.11.2025".into()), today());
    assert_eq!(next, d);
    assert!(out.replies[0]
        .text
        .starts_with(texts::stay_too_long(Language::Ru)));
    let (next, _) = step(&d, Input::Text("23.11.2025".into()), today());
    assert!(matches!(next.state, State::ChoosingGuests { .. }));

    // A check-in that has passed while the guest was away.
    let d = at(check_out_at(ymd(2025, 8, 18), ymd(2025, 8, 1)));
    let (next, out) = step(&d, Input::button("day:2025-08-22"), today());
    assert_eq!(next.state, check_in_at("Almaty", ymd(2025, 8, 1)));
    assert!(out.replies[0]
        .text
        .starts_with(texts::past_date(Language::Ru)));
}

#[test]
fn month_navigation() {
    let d = at(check_in_at("Almaty", ymd(2025, 8, 1)));
    let (_, out) = step(&d, Input::button("x"), today());
    assert!(has_button(&out.replies, "month:2025-09-01"));
    assert!(!has_button(&out.replies, "month:2025-07-01"));

    let (next, out) = step(&d, Input::button("month:2025-09-01"), today());
    assert_eq!(next.state, check_in_at("Almaty", ymd(2025, 9, 1)));
    assert!(out.replies[0].text.contains("Сентябрь 2025"));
    assert!(has_button(&out.replies, "day:2025-09-01"));
    assert!(has_button(&out.replies, "month:2025-08-01"));

    // Months out of reach are stale.
    for bad in ["month:2025-07-01", "month:2027-09-01", "month:2025-09-15"] {
        let (next, out) = step(&d, Input::button(bad), today());
        assert_eq!(next, d, "{bad}");
        assert!(out.replies[0]
            .text
            .starts_with(texts::use_buttons(Language::Ru)));
    }

    // The check-out picker ends 90 nights after the check-in.
    let d = at(check_out_at(ymd(2025, 8, 25), ymd(2025, 8, 1)));
    let (next, out) = step(&d, Input::button("month:2025-11-01"), today());
    assert_eq!(next.state, check_out_at(ymd(2025, 8, 25), ymd(2025, 11, 1)));
    assert!(has_button(&out.replies, "day:2025-11-23"));
    assert!(!has_button(&out.replies, "day:2025-11-24"));
    assert!(!has_button(&out.replies, "month:2025-12-01"));

    // A check-in on the last day of a month opens the check-out on the next month.
    let d = at(check_in_at("Almaty", ymd(2025, 8, 1)));
    let (next, out) = step(&d, Input::button("day:2025-08-31"), today());
    assert_eq!(next.state, check_out_at(ymd(2025, 8, 31), ymd(2025, 9, 1)));
    assert_eq!(out.replies[0].buttons[0][0].data.encode(), "day:2025-09-01");
}

#[test]
fn results_pages_and_picks() {
    let d = at(browsing(7, 0));
    let (next, out) = step(&d, Input::button("more"), today());
    assert_eq!(next.state, browsing(7, 1));
    assert_eq!(out.replies.len(), 2 + 1);
    let nav = out.replies.last().unwrap();
    assert!(nav.text.contains("2/2"));
    assert!(!has_button(&out.replies, "more"));
    assert_eq!(nav.buttons.len(), 1);

    // No page after the last one; a card of the first page still works.
    let (again, out) = step(&next, Input::button("more"), today());
    assert_eq!(again, next);
    assert_eq!(out.replies[0].text, texts::use_buttons(Language::Ru));
    let (picked, _) = step(&next, Input::button(&format!("pick:{}", id(1))), today());
    assert_eq!(
        picked.state,
        State::Confirming {
            stay: stay(),
            offer: offer(1),
        }
    );

    // An empty search: other dates.
    let (next, out) = step(
        &at(State::Searching { stay: stay() }),
        Input::Found(vec![]),
        today(),
    );
    assert_eq!(next.state, check_in_at("Almaty", ymd(2025, 8, 1)));
    assert!(out.replies[0]
        .text
        .starts_with(&texts::nothing_found("Almaty", Language::Ru)));
    assert!(has_button(&out.replies, "day:2025-08-20"));
}

#[test]
fn stale_choices_reprompt() {
    let d = at(check_in_at("Almaty", ymd(2025, 8, 1)));
    let (next, out) = step(&d, Input::button("guests:2"), today());
    assert_eq!(next, d);
    assert_eq!(out.replies.len(), 1);
    assert!(out.replies[0]
        .text
        .starts_with(texts::use_buttons(Language::Ru)));
    assert!(out.replies[0].text.contains("Дата заезда"));
    assert!(has_button(&out.replies, "day:2025-08-20"));
    assert!(out.effect.is_none());

    // Results: the notice, then the page again.
    let d = at(browsing(3, 0));
    let (next, out) = step(&d, Input::button(&format!("pick:{}", id(99))), today());
    assert_eq!(next, d);
    assert_eq!(out.replies.len(), 1 + 3 + 1);
    assert_eq!(out.replies[0].text, texts::use_buttons(Language::Ru));
    assert!(out.replies[1].photo.is_some());
    let (next, out) = step(&d, Input::Text("the first one".into()), today());
    assert_eq!(next, d);
    assert_eq!(out.replies[0].text, texts::use_buttons(Language::Ru));

    for state in [
        State::ChoosingCity,
        guests_at(),
        confirming(),
        State::ChoosingCancellation {
            bookings: vec![summary(1, "held")],
        },
        State::ConfirmingCancellation {
            booking: summary(1, "held"),
        },
    ] {
        let (next, out) = step(&at(state.clone()), Input::button("day:2025-08-25"), today());
        assert_eq!(next.state, state);
        assert!(out.replies[0]
            .text
            .starts_with(texts::use_buttons(Language::Ru)));
        assert!(!out.replies.last().unwrap().buttons.is_empty());
    }

    // While an effect runs: please wait.
    for state in [
        State::Searching { stay: stay() },
        booking(),
        State::ListingBookings { for_cancel: false },
        State::Cancelling { booking_id: id(1) },
    ] {
        let (next, out) = step(&at(state.clone()), Input::Text("hello".into()), today());
        assert_eq!(next.state, state);
        assert_eq!(out.replies[0].text, texts::please_wait(Language::Ru));
    }

    // Idle: anything starts over.
    let (next, out) = step(&Dialogue::default(), Input::button("book"), today());
    assert_eq!(next.state, State::ChoosingCity);
    assert_eq!(out.replies[0].text, texts::welcome(Language::Ru));
}

#[test]
fn results_in_the_wrong_state_are_ignored() {
    let inputs = [
        Input::Found(offers(2)),
        Input::Booked {
            booking_id: id(1),
            total_kzt: 1,
        },
        Input::DatesTaken(vec![]),
        Input::PaymentLink {
            booking_id: id(1),
            url: "u".into(),
            amount_kzt: 1,
        },
        Input::Bookings(vec![]),
        Input::Cancelled {
            booking_id: id(1),
            refund_kzt: 1,
        },
        Input::Failed(Failure::Unavailable),
        Input::Failed(Failure::NotAllowed),
        Input::Failed(Failure::CannotCancel),
    ];
    for state in [State::Idle, State::ChoosingCity, guests_at(), confirming()] {
        for input in inputs.clone() {
            let d = at(state.clone());
            let (next, out) = step(&d, input.clone(), today());
            assert_eq!(next, d, "{input:?} in {state:?}");
            assert_eq!(out, Outcome::default(), "{input:?} in {state:?}");
        }
    }
    // A cancellation result for another booking.
    let d = at(State::Cancelling { booking_id: id(1) });
    let (next, out) = step(
        &d,
        Input::Cancelled {
            booking_id: id(2),
            refund_kzt: 5,
        },
        today(),
    );
    assert_eq!(next, d);
    assert_eq!(out, Outcome::default());
}

#[test]
fn dates_taken_with_alternatives() {
    let (next, out) = step(&at(booking()), Input::DatesTaken(offers(2)), today());
    assert_eq!(
        next.state,
        State::Browsing {
            stay: stay(),
            offers: offers(2),
            page: 0,
        }
    );
    assert_eq!(out.replies.len(), 1 + 2 + 1);
    assert_eq!(out.replies[0].text, texts::dates_taken(true, Language::Ru));
    assert!(out.replies[0].text.contains("только что забронировали"));
    assert!(has_button(&out.replies, &format!("pick:{}", id(1))));
    assert!(out.effect.is_none());
}

#[test]
fn dates_taken_then_book_an_alternative() {
    let mut g = Guest::new();
    to_results(&mut g);
    g.tap(&format!("pick:{}", id(1)));
    g.tap("book");
    let out = g.send(Input::DatesTaken(vec![offer(8), offer(9)]));
    assert_eq!(out.replies[0].text, texts::dates_taken(true, Language::Ru));
    g.tap(&format!("pick:{}", id(9)));
    let out = g.tap("book");
    assert!(matches!(out.effect, Some(Effect::Book { listing_id, .. }) if listing_id == id(9)));
    let out = g.send(Input::Booked {
        booking_id: id(60),
        total_kzt: 65_000,
    });
    assert_eq!(out.effect, Some(Effect::Pay { booking_id: id(60) }));
    let out = g.send(Input::PaymentLink {
        booking_id: id(60),
        url: "https://kaspi.kz/pay/60".into(),
        amount_kzt: 65_000,
    });
    assert!(matches!(g.state(), State::AwaitingPayment { .. }));
    assert!(out.replies[0].buttons[0][0].url.is_some());
    assert_eq!(g.actions, 7 + 2);
}

#[test]
fn dates_taken_without_alternatives() {
    let (next, out) = step(&at(booking()), Input::DatesTaken(vec![]), today());
    assert_eq!(next.state, check_in_at("Almaty", ymd(2025, 8, 1)));
    assert_eq!(out.replies.len(), 1);
    assert!(out.replies[0]
        .text
        .starts_with(texts::dates_taken(false, Language::Ru)));
    assert!(has_button(&out.replies, "day:2025-08-25"));
}

#[test]
fn booking_failures() {
    let (next, out) = step(&at(booking()), Input::Failed(Failure::Unavailable), today());
    assert_eq!(next.state, confirming());
    assert!(out.replies[0]
        .text
        .starts_with(texts::try_again(Language::Ru)));
    assert_eq!(out.replies[0].buttons[0][0].data.encode(), "book");

    let (next, out) = step(&at(booking()), Input::Failed(Failure::NotAllowed), today());
    assert_eq!(next.state, check_in_at("Almaty", ymd(2025, 8, 1)));
    assert!(out.replies[0]
        .text
        .starts_with(texts::not_allowed(Language::Ru)));
    assert!(has_button(&out.replies, "day:2025-08-20"));
}

#[test]
fn my_bookings() {
    let (next, out) = step(
        &at(guests_at()),
        Input::Command(Command::MyBookings),
        today(),
    );
    assert_eq!(next.state, State::ListingBookings { for_cancel: false });
    assert_eq!(out.effect, Some(Effect::ListBookings));
    assert!(out.replies.is_empty());

    let list = vec![summary(1, "confirmed"), summary(2, "completed")];
    let (next, out) = step(&next, Input::Bookings(list), today());
    assert_eq!(next.state, State::Idle);
    let text = &out.replies[0].text;
    for part in [
        "Loft 1",
        "Loft 2",
        "01.09.2025–04.09.2025",
        "подтверждено",
        "завершено",
        "45 000 ₸",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }

    let d = at(State::ListingBookings { for_cancel: false });
    let (next, out) = step(&d, Input::Bookings(vec![]), today());
    assert_eq!(next.state, State::Idle);
    assert_eq!(out.replies[0].text, texts::no_bookings(Language::Ru));
    assert!(out.replies[0].text.contains("/start"));
}

#[test]
fn cancelling_a_booking() {
    let mut g = Guest::new();
    let out = g.send(Input::Command(Command::Cancel));
    assert_eq!(*g.state(), State::ListingBookings { for_cancel: true });
    assert_eq!(out.effect, Some(Effect::ListBookings));

    let list = vec![
        summary(1, "held"),
        summary(2, "completed"),
        summary(3, "confirmed"),
        summary(4, "cancelled"),
    ];
    let out = g.send(Input::Bookings(list));
    assert_eq!(
        *g.state(),
        State::ChoosingCancellation {
            bookings: vec![summary(1, "held"), summary(3, "confirmed")],
        }
    );
    let reply = &out.replies[0];
    assert_eq!(reply.buttons.len(), 3);
    assert_eq!(
        reply.buttons[0][0].data.encode(),
        format!("cancelbk:{}", id(101))
    );
    assert_eq!(reply.buttons[0][0].label, "Loft 1 · 01.09–04.09");
    assert_eq!(last_row_data(reply), ["cancel"]);

    // Not in the list: stale.
    let out = g.send(Input::button(&format!("cancelbk:{}", id(102))));
    assert!(matches!(g.state(), State::ChoosingCancellation { .. }));
    assert!(out.replies[0]
        .text
        .starts_with(texts::use_buttons(Language::Ru)));

    let out = g.tap(&format!("cancelbk:{}", id(103)));
    assert_eq!(
        *g.state(),
        State::ConfirmingCancellation {
            booking: summary(3, "confirmed"),
        }
    );
    let reply = &out.replies[0];
    assert!(reply.text.contains("Loft 3"));
    assert!(reply.text.contains("01.09.2025–04.09.2025"));
    assert!(reply.text.contains("правила отмены"));
    assert_eq!(reply.buttons[0][0].data.encode(), "yes");
    assert_eq!(reply.buttons[0][1].data.encode(), "no");

    // Back: the list again, fetched afresh.
    let back = step(&g.dialogue, Input::button("back"), today());
    assert_eq!(back.0.state, State::ListingBookings { for_cancel: true });
    assert_eq!(back.1.effect, Some(Effect::ListBookings));

    // No: kept.
    let no = step(&g.dialogue, Input::button("no"), today());
    assert_eq!(no.0.state, State::Idle);
    assert_eq!(no.1.replies[0].text, texts::booking_kept(Language::Ru));

    let out = g.tap("yes");
    assert_eq!(
        *g.state(),
        State::Cancelling {
            booking_id: id(103)
        }
    );
    assert_eq!(
        out.effect,
        Some(Effect::CancelBooking {
            booking_id: id(103)
        })
    );
    assert!(out.replies.is_empty());

    let cancelling = g.dialogue.clone();
    let out = g.send(Input::Cancelled {
        booking_id: id(103),
        refund_kzt: 15_000,
    });
    assert_eq!(*g.state(), State::Idle);
    assert!(out.replies[0].text.contains("15 000 ₸"));
    assert!(out.replies[0].text.contains("Kaspi"));

    let (next, out) = step(
        &cancelling,
        Input::Cancelled {
            booking_id: id(103),
            refund_kzt: 0,
        },
        today(),
    );
    assert_eq!(next.state, State::Idle);
    assert_eq!(out.replies[0].text, texts::cancelled(0, Language::Ru));
    assert!(!out.replies[0].text.contains('₸'));

    let (next, out) = step(&cancelling, Input::Failed(Failure::CannotCancel), today());
    assert_eq!(next.state, State::Idle);
    assert_eq!(out.replies[0].text, texts::cannot_cancel(Language::Ru));

    // Nothing cancellable.
    let d = at(State::ListingBookings { for_cancel: true });
    let (next, out) = step(&d, Input::Bookings(vec![summary(1, "completed")]), today());
    assert_eq!(next.state, State::Idle);
    assert_eq!(out.replies[0].text, texts::nothing_to_cancel(Language::Ru));
}

#[test]
fn review_rating_from_any_state() {
    let booking_id = id(77);
    for state in [State::Idle, guests_at(), browsing(3, 0)] {
        let d = at(state.clone());
        let (next, out) = step(&d, Input::button(&format!("rate:{booking_id}:4")), today());
        assert_eq!(next, d);
        assert!(out.replies.is_empty());
        assert_eq!(
            out.effect,
            Some(Effect::Review {
                booking_id,
                rating: 4,
            })
        );
        let (next, out) = step(&d, Input::Reviewed { booking_id }, today());
        assert_eq!(next, d);
        assert_eq!(out.replies.len(), 1);
        assert_eq!(out.replies[0].text, texts::thanks_for_rating(Language::Ru));
        assert!(out.effect.is_none());
        let (next, out) = step(&d, Input::Failed(Failure::CannotReview), today());
        assert_eq!(next, d);
        assert_eq!(out.replies[0].text, texts::cannot_review(Language::Ru));
    }
    // Out of range: not a rating.
    let d = at(guests_at());
    for bad in [
        format!("rate:{booking_id}:0"),
        format!("rate:{booking_id}:6"),
        "rate:x:3".to_string(),
    ] {
        let (next, out) = step(&d, Input::button(&bad), today());
        assert_eq!(next, d, "{bad}");
        assert!(out.effect.is_none());
        assert!(out.replies[0]
            .text
            .starts_with(texts::use_buttons(Language::Ru)));
    }
    // The notification's buttons are what the conversation takes.
    let notice = texts::notice(
        &domain::notice::Notice::ReviewRequest {
            booking_id,
            title: "Loft".into(),
        },
        Language::Ru,
    );
    let five = &notice.buttons[0][4];
    let (_, out) = step(&d, Input::Choice(five.data.clone()), today());
    assert_eq!(
        out.effect,
        Some(Effect::Review {
            booking_id,
            rating: 5
        })
    );
}

#[test]
fn help_keeps_the_state() {
    let d = at(guests_at());
    let (next, out) = step(&d, Input::Command(Command::Help), today());
    assert_eq!(next, d);
    assert_eq!(out.replies[0].text, texts::help(Language::Ru));
    assert!(out.effect.is_none());
}

#[test]
fn start_from_anywhere() {
    for state in [
        guests_at(),
        booking(),
        State::ChoosingLang,
        State::AwaitingPayment {
            booking_id: id(1),
            url: "u".into(),
            amount_kzt: 1,
        },
    ] {
        let (next, out) = step(&at(state), Input::Command(Command::Start), today());
        assert_eq!(next.state, State::ChoosingCity);
        assert_eq!(out.replies[0].text, texts::welcome(Language::Ru));
    }
}

#[test]
fn serde_round_trip_of_every_state() {
    let states = [
        State::Idle,
        State::ChoosingCity,
        check_in_at("Almaty", ymd(2025, 8, 1)),
        check_out_at(ymd(2025, 8, 25), ymd(2025, 8, 1)),
        guests_at(),
        State::Searching { stay: stay() },
        browsing(7, 1),
        confirming(),
        booking(),
        State::AwaitingPayment {
            booking_id: id(5),
            url: "https://kaspi.kz/pay/5".into(),
            amount_kzt: 65_000,
        },
        State::ListingBookings { for_cancel: true },
        State::ChoosingCancellation {
            bookings: vec![summary(1, "held"), summary(2, "confirmed")],
        },
        State::ConfirmingCancellation {
            booking: summary(1, "held"),
        },
        State::Cancelling { booking_id: id(9) },
        State::ChoosingLang,
    ];
    for (i, state) in states.into_iter().enumerate() {
        let lang = [Language::Ru, Language::Kk, Language::En][i % 3];
        let d = Dialogue { state, lang };
        let json = serde_json::to_string(&d).unwrap();
        let back: Dialogue = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d, "{json}");
    }
    let json = serde_json::to_value(at(State::ChoosingCity)).unwrap();
    assert_eq!(json["state"]["step"], "choosing_city");
    assert_eq!(json["lang"], "ru");
}

#[test]
fn every_text_differs_between_languages() {
    // The same step in the three languages gives three different replies.
    let inputs = [
        (State::Idle, Input::Command(Command::Start)),
        (State::Idle, Input::Command(Command::Help)),
        (guests_at(), Input::button("cancel")),
        (booking(), Input::DatesTaken(vec![])),
        (browsing(2, 0), Input::button("?")),
        (confirming(), Input::button("?")),
    ];
    for (state, input) in inputs {
        let texts: Vec<String> = [Language::Ru, Language::Kk, Language::En]
            .into_iter()
            .map(|lang| {
                let (_, out) = step(
                    &Dialogue {
                        state: state.clone(),
                        lang,
                    },
                    input.clone(),
                    today(),
                );
                out.replies
                    .iter()
                    .map(|r| r.text.clone())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        assert_ne!(texts[0], texts[1], "{state:?} {input:?}");
        assert_ne!(texts[0], texts[2], "{state:?} {input:?}");
        assert_ne!(texts[1], texts[2], "{state:?} {input:?}");
    }
}
