//! The date picker: one month of day buttons ([`Choice::Day`]) and a row to move between
//! months ([`Choice::Month`]), plus [`parse_date`] for dates the guest types.

use chrono::{Datelike, Months, NaiveDate};

use domain::user::Language;

use crate::{texts, Button, Choice};

/// Day buttons per row.
pub const DAYS_PER_ROW: usize = 7;

/// The first day of `d`'s month.
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The first day of the month after `d`'s (`None` at the end of time).
pub fn next_month(d: NaiveDate) -> Option<NaiveDate> {
    month_start(d).checked_add_months(Months::new(1))
}

/// The first day of the month before `d`'s (`None` at the beginning of time).
pub fn prev_month(d: NaiveDate) -> Option<NaiveDate> {
    month_start(d).checked_sub_months(Months::new(1))
}

/// The day buttons of `month` from `first_allowed` on (earlier days are left out), seven a
/// row, then `‹ <previous month>` (unless that month is entirely before `first_allowed`) and
/// `<next month> ›`.
pub fn month_keyboard(
    month: NaiveDate,
    first_allowed: NaiveDate,
    lang: Language,
) -> Vec<Vec<Button>> {
    month_keyboard_until(month, first_allowed, None, lang)
}

/// [`month_keyboard`] that also leaves out the days after `last_allowed`, and the next-month
/// button when the next month is entirely after it.
pub fn month_keyboard_until(
    month: NaiveDate,
    first_allowed: NaiveDate,
    last_allowed: Option<NaiveDate>,
    lang: Language,
) -> Vec<Vec<Button>> {
    let start = month_start(month);
    let allowed = |d: NaiveDate| d >= first_allowed && last_allowed.is_none_or(|last| d <= last);
    let days: Vec<Button> = start
        .iter_days()
        .take_while(|d| d.month() == start.month())
        .filter(|d| allowed(*d))
        .map(|d| Button {
            label: d.day().to_string(),
            data: Choice::Day(d),
            url: None,
        })
        .collect();
    let mut rows: Vec<Vec<Button>> = days.chunks(DAYS_PER_ROW).map(<[Button]>::to_vec).collect();

    let mut nav = Vec::new();
    if let Some(prev) = prev_month(start) {
        // The previous month's last day is the day before `start`.
        if start
            .pred_opt()
            .is_some_and(|last_day| last_day >= first_allowed)
        {
            nav.push(Button {
                label: format!("‹ {}", texts::month_name(prev.month(), lang)),
                data: Choice::Month(prev),
                url: None,
            });
        }
    }
    if let Some(next) = next_month(start) {
        if last_allowed.is_none_or(|last| next <= last) {
            nav.push(Button {
                label: format!("{} ›", texts::month_name(next.month(), lang)),
                data: Choice::Month(next),
                url: None,
            });
        }
    }
    if !nav.is_empty() {
        rows.push(nav);
    }
    rows
}

/// A date the guest typed: `DD.MM`, `DD.MM.YYYY` (also `DD.MM.YY`, and `/` for `.`) or
/// `YYYY-MM-DD`. Without a year, the next such date on or after `today`.
pub fn parse_date(text: &str, today: NaiveDate) -> Option<NaiveDate> {
    let text = text.trim().trim_end_matches('.');
    let number = |s: &str, min_len: usize, max_len: usize| -> Option<u32> {
        let ok = (min_len..=max_len).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if ok {
            s.parse().ok()
        } else {
            None
        }
    };

    let iso: Vec<&str> = text.split('-').collect();
    if let [y, m, d] = iso[..] {
        if y.len() == 4 {
            let y = i32::try_from(number(y, 4, 4)?).ok()?;
            return NaiveDate::from_ymd_opt(y, number(m, 1, 2)?, number(d, 1, 2)?);
        }
    }

    let parts: Vec<&str> = text.split(['.', '/']).collect();
    match parts[..] {
        [d, m] => {
            let (d, m) = (number(d, 1, 2)?, number(m, 1, 2)?);
            // The next one on or after today (29.02 may be a few years away).
            (today.year()..=today.year() + 8)
                .filter_map(|y| NaiveDate::from_ymd_opt(y, m, d))
                .find(|date| *date >= today)
        }
        [d, m, y] => {
            let year = match y.len() {
                2 => 2000 + number(y, 2, 2)?,
                _ => number(y, 4, 4)?,
            };
            NaiveDate::from_ymd_opt(
                i32::try_from(year).ok()?,
                number(m, 1, 2)?,
                number(d, 1, 2)?,
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn days(rows: &[Vec<Button>]) -> Vec<String> {
        rows.iter()
            .flatten()
            .map(|b| b.data.encode())
            .filter(|d| d.starts_with("day:"))
            .collect()
    }

    #[test]
    fn current_month_omits_past_days_and_has_no_prev() {
        let today = ymd(2025, 8, 20);
        let kb = month_keyboard(month_start(today), today, Language::Ru);
        let d = days(&kb);
        assert_eq!(d.len(), 12); // 20..=31
        assert_eq!(d[0], "day:2025-08-20");
        assert_eq!(d[11], "day:2025-08-31");
        assert_eq!(kb[0][0].label, "20");
        assert!(kb.iter().all(|row| row.len() <= DAYS_PER_ROW));
        let nav = kb.last().unwrap();
        assert_eq!(nav.len(), 1);
        assert_eq!(nav[0].data.encode(), "month:2025-09-01");
        assert_eq!(nav[0].label, "Сентябрь ›");
        assert!(!kb
            .iter()
            .flatten()
            .any(|b| b.data.encode() == "month:2025-07-01"));
    }

    #[test]
    fn later_month_has_every_day_and_both_arrows() {
        let today = ymd(2025, 8, 20);
        let kb = month_keyboard(ymd(2025, 9, 1), today, Language::En);
        assert_eq!(days(&kb).len(), 30);
        assert_eq!(kb.len(), 5 + 1); // 7+7+7+7+2, nav
        let nav = kb.last().unwrap();
        assert_eq!(nav[0].data.encode(), "month:2025-08-01");
        assert_eq!(nav[0].label, "‹ August");
        assert_eq!(nav[1].data.encode(), "month:2025-10-01");
        assert_eq!(nav[1].label, "October ›");
    }

    #[test]
    fn month_keyboard_until_stops_at_the_last_day() {
        let kb = month_keyboard_until(
            ymd(2025, 10, 1),
            ymd(2025, 8, 21),
            Some(ymd(2025, 10, 10)),
            Language::Kk,
        );
        assert_eq!(days(&kb).len(), 10);
        let nav = kb.last().unwrap();
        assert_eq!(nav.len(), 1);
        assert_eq!(nav[0].data.encode(), "month:2025-09-01");
        assert_eq!(nav[0].label, "‹ Қыркүйек");
    }

    #[test]
    fn december_rolls_over_to_january() {
        let kb = month_keyboard(ymd(2025, 12, 15), ymd(2025, 12, 1), Language::En);
        let nav = kb.last().unwrap();
        assert_eq!(nav.len(), 1);
        assert_eq!(nav[0].data.encode(), "month:2026-01-01");
    }

    #[test]
    fn parses_typed_dates() {
        let today = ymd(2025, 8, 20);
        assert_eq!(parse_date("25.08", today), Some(ymd(2025, 8, 25)));
        assert_eq!(parse_date(" 20.08 ", today), Some(ymd(2025, 8, 20)));
        assert_eq!(parse_date("5.1", today), Some(ymd(2026, 1, 5)));
        assert_eq!(parse_date("19.08", today), Some(ymd(2026, 8, 19)));
        assert_eq!(parse_date("25.08.2026", today), Some(ymd(2026, 8, 25)));
        assert_eq!(parse_date("25.08.26", today), Some(ymd(2026, 8, 25)));
        assert_eq!(parse_date("25/08/2026", today), Some(ymd(2026, 8, 25)));
        assert_eq!(parse_date("2026-08-25", today), Some(ymd(2026, 8, 25)));
        assert_eq!(parse_date("25.08.", today), Some(ymd(2025, 8, 25)));
        // past dates with a year parse; refusing them is the conversation's job
        assert_eq!(parse_date("01.01.2020", today), Some(ymd(2020, 1, 1)));
        assert_eq!(parse_date("29.02", today), Some(ymd(2028, 2, 29)));
        for bad in [
            "",
            "tomorrow",
            "32.01",
            "31.04",
            "12",
            "1.2.3.4",
            "+1.08",
            "2025-13-01",
        ] {
            assert_eq!(parse_date(bad, today), None, "{bad}");
        }
    }
}
