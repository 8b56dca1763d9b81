//! What a button stands for. Channels carry a button's meaning as a short string (Telegram's
//! `callback_data`, at most 64 bytes; the numbered WhatsApp menu kept between messages), so a
//! [`Choice`] is encoded once when a button is drawn and decoded once when it comes back.
//! The strings are the ones earlier versions sent, so keyboards already in guests' chats keep
//! working.
use chrono::NaiveDate;
use domain::booking::RATINGS;
use domain::user::Language;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::language_named;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Choice {
    /// `city:<name>`.
    City(String),
    /// `month:YYYY-MM-DD`: show this month in the date picker.
    Month(NaiveDate),
    /// `day:YYYY-MM-DD`: this day in the date picker.
    Day(NaiveDate),
    /// `guests:<n>`.
    Guests(u32),
    /// `more`: the next page of results.
    More,
    /// `pick:<listing id>`: this apartment from the results.
    Pick(Uuid),
    /// `book`: book the apartment being confirmed.
    Book,
    /// `cancelbk:<booking id>`: cancel this booking.
    CancelBooking(Uuid),
    /// `yes` / `no`: the answer to "really cancel?".
    Yes,
    No,
    /// `back` / `cancel`: one step back, or stop.
    Back,
    Cancel,
    /// `lang:<code>`.
    Lang(Language),
    /// `pay`: the Kaspi link button (a URL button; channels never send it back).
    Pay,
    /// `rate:<booking id>:<stars>`: the guest's rating of a stay.
    Rate {
        booking_id: Uuid,
        stars: u8,
    },
}

impl Choice {
    pub fn encode(&self) -> String {
        match self {
            Choice::City(city) => format!("city:{city}"),
            Choice::Month(month) => format!("month:{}", month.format(DATE)),
            Choice::Day(day) => format!("day:{}", day.format(DATE)),
            Choice::Guests(n) => format!("guests:{n}"),
            Choice::More => "more".into(),
            Choice::Pick(listing) => format!("pick:{listing}"),
            Choice::Book => "book".into(),
            Choice::CancelBooking(booking) => format!("cancelbk:{booking}"),
            Choice::Yes => "yes".into(),
            Choice::No => "no".into(),
            Choice::Back => "back".into(),
            Choice::Cancel => "cancel".into(),
            Choice::Lang(lang) => format!("lang:{}", lang.code()),
            Choice::Pay => "pay".into(),
            Choice::Rate { booking_id, stars } => format!("rate:{booking_id}:{stars}"),
        }
    }

    /// `None` for data no button of this version carries (a forged callback, or a rating
    /// outside 1–5).
    pub fn decode(data: &str) -> Option<Choice> {
        let (kind, rest) = match data.split_once(':') {
            Some((kind, rest)) => (kind, Some(rest)),
            None => (data, None),
        };
        let date = |s: &str| NaiveDate::parse_from_str(s, DATE).ok();
        Some(match (kind, rest) {
            ("city", Some(city)) => Choice::City(city.to_string()),
            ("month", Some(month)) => Choice::Month(date(month)?),
            ("day", Some(day)) => Choice::Day(date(day)?),
            ("guests", Some(n)) => Choice::Guests(n.parse().ok()?),
            ("pick", Some(id)) => Choice::Pick(Uuid::parse_str(id).ok()?),
            ("cancelbk", Some(id)) => Choice::CancelBooking(Uuid::parse_str(id).ok()?),
            ("lang", Some(code)) => Choice::Lang(language_named(code)?),
            ("rate", Some(rest)) => {
                let (id, stars) = rest.rsplit_once(':')?;
                let stars: u8 = stars.parse().ok()?;
                if !RATINGS.contains(&stars) {
                    return None;
                }
                Choice::Rate {
                    booking_id: Uuid::parse_str(id).ok()?,
                    stars,
                }
            }
            ("more", None) => Choice::More,
            ("book", None) => Choice::Book,
            ("yes", None) => Choice::Yes,
            ("no", None) => Choice::No,
            ("back", None) => Choice::Back,
            ("cancel", None) => Choice::Cancel,
            ("pay", None) => Choice::Pay,
            _ => return None,
        })
    }
}

const DATE: &str = "%Y-%m-%d";

impl From<Choice> for String {
    fn from(c: Choice) -> String {
        c.encode()
    }
}

impl TryFrom<String> for Choice {
    type Error = String;

    fn try_from(data: String) -> Result<Choice, String> {
        Choice::decode(&data).ok_or_else(|| format!("no button carries {data:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date() -> impl Strategy<Value = NaiveDate> {
        // Every day from year 1 to 9999 (four-digit years, as the pickers show them).
        (0i32..3_652_059).prop_map(|n| {
            NaiveDate::from_num_days_from_ce_opt(n + 1).expect("a day of years 1 to 9999")
        })
    }

    fn uuid() -> impl Strategy<Value = Uuid> {
        any::<u128>().prop_map(Uuid::from_u128)
    }

    fn choice() -> impl Strategy<Value = Choice> {
        prop_oneof![
            "[^\\p{Cc}]{0,40}".prop_map(Choice::City),
            date().prop_map(Choice::Month),
            date().prop_map(Choice::Day),
            any::<u32>().prop_map(Choice::Guests),
            Just(Choice::More),
            uuid().prop_map(Choice::Pick),
            Just(Choice::Book),
            uuid().prop_map(Choice::CancelBooking),
            Just(Choice::Yes),
            Just(Choice::No),
            Just(Choice::Back),
            Just(Choice::Cancel),
            prop_oneof![Just(Language::Ru), Just(Language::Kk), Just(Language::En)]
                .prop_map(Choice::Lang),
            Just(Choice::Pay),
            (uuid(), RATINGS).prop_map(|(booking_id, stars)| Choice::Rate { booking_id, stars }),
        ]
    }

    proptest! {
        #[test]
        fn every_choice_comes_back_as_itself(c in choice()) {
            prop_assert_eq!(Choice::decode(&c.encode()), Some(c));
        }

        #[test]
        fn decoding_never_panics_and_reencodes_what_it_read(data in "\\PC{0,80}") {
            if let Some(c) = Choice::decode(&data) {
                prop_assert_eq!(Choice::decode(&c.encode()), Some(c));
            }
        }
    }

    #[test]
    fn the_strings_are_those_keyboards_already_carry() {
        let id = Uuid::from_u128(7);
        let day = NaiveDate::from_ymd_opt(2025, 8, 20).unwrap();
        for (choice, data) in [
            (Choice::City("Almaty".into()), "city:Almaty".to_string()),
            (Choice::Month(day), "month:2025-08-20".into()),
            (Choice::Day(day), "day:2025-08-20".into()),
            (Choice::Guests(3), "guests:3".into()),
            (Choice::Pick(id), format!("pick:{id}")),
            (Choice::CancelBooking(id), format!("cancelbk:{id}")),
            (Choice::Lang(Language::Kk), "lang:kk".into()),
            (
                Choice::Rate {
                    booking_id: id,
                    stars: 5,
                },
                format!("rate:{id}:5"),
            ),
            (Choice::Back, "back".into()),
        ] {
            assert_eq!(choice.encode(), data);
            assert_eq!(Choice::decode(&data), Some(choice));
        }
    }

    #[test]
    fn unknown_or_out_of_range_data_is_no_choice() {
        let id = Uuid::from_u128(7);
        for bad in [
            String::new(),
            "?".into(),
            "x".into(),
            "more:1".into(),
            "guests:many".into(),
            "month:2025-13-01".into(),
            "pick:not-a-uuid".into(),
            format!("rate:{id}:0"),
            format!("rate:{id}:6"),
            format!("rate:{id}"),
            "lang:fr".into(),
        ] {
            assert_eq!(Choice::decode(&bad), None, "{bad}");
        }
        // A typed language name is read the way the language picker reads it.
        assert_eq!(
            Choice::decode("lang:English"),
            Some(Choice::Lang(Language::En))
        );
    }
}
