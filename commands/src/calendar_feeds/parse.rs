//! A feed's text → the nights its events take, in the listing's local dates.
//!
//! Lines are unfolded and split into properties by the `ical` crate; what the values mean is
//! decided here:
//! - `DTSTART;VALUE=DATE:20261210` (Airbnb's and Booking.com's published feeds): all-day, the
//!   dates as they are; `DTEND` is the check-out day (exclusive), one night when missing.
//! - Timed events (`…T150000Z`, `TZID=Europe/Moscow:…T150000`, or floating `…T150000`, read
//!   in the listing's zone) become the local dates of their start and end: nights from the
//!   start's date to the end's date, at least one night.
//! - `STATUS:CANCELLED` events take no nights.
//! - An event without `DTSTART`, with a date that does not parse, an unknown `TZID`, or an end
//!   before its start makes the whole feed invalid: nothing of it is applied.
//!
//! Each event is keyed by its `UID` (repeated UIDs, as recurrence overrides have, get their
//! start appended; a missing UID is replaced by the event's dates).
use super::FeedError;
use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use domain::listing::FeedBooking;
use domain::DateRange;
use ical::parser::ical::component::IcalEvent;
use ical::property::Property;
use std::collections::HashSet;

/// The most events one feed may carry.
pub const MAX_EVENTS: usize = 5_000;

/// The zone every listing's dates are in today (listings have no zone of their own yet).
pub const LISTING_ZONE: Tz = chrono_tz::Asia::Almaty;

/// A moment as a feed writes it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    Date(NaiveDate),
    /// A local date in the listing's zone, from a timed value.
    Timed(NaiveDate),
}

impl When {
    fn date(self) -> NaiveDate {
        match self {
            When::Date(d) | When::Timed(d) => d,
        }
    }
}

fn param<'a>(p: &'a Property, name: &str) -> Option<&'a str> {
    p.params
        .as_ref()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(|v| v.trim_matches('"'))
}

fn prop<'a>(event: &'a IcalEvent, name: &str) -> Option<&'a Property> {
    event
        .properties
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

fn invalid(what: &str, value: &str) -> FeedError {
    FeedError::InvalidDates(format!("{what} {value:?} is not a date"))
}

/// Reads a DATE or DATE-TIME value into the listing's local date.
fn when(p: &Property, zone: Tz) -> Result<When, FeedError> {
    let raw = p.value.as_deref().unwrap_or("").trim();
    let date_only = param(p, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"))
        || (raw.len() == 8 && !raw.contains('T'));
    if date_only {
        let day = NaiveDate::parse_from_str(raw, "%Y%m%d").map_err(|_| invalid(&p.name, raw))?;
        return Ok(When::Date(sane(day, &p.name, raw)?));
    }
    let (text, utc) = match raw.strip_suffix('Z').or_else(|| raw.strip_suffix('z')) {
        Some(t) => (t, true),
        None => (raw, false),
    };
    let local =
        NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").map_err(|_| invalid(&p.name, raw))?;
    let instant = if utc {
        Utc.from_utc_datetime(&local)
    } else {
        let source: Tz = match param(p, "TZID") {
            Some(name) => name
                .trim_start_matches('/')
                .parse()
                .map_err(|_| FeedError::InvalidDates(format!("unknown time zone {name:?}")))?,
            None => zone,
        };
        source
            .from_local_datetime(&local)
            .earliest()
            .ok_or_else(|| invalid(&p.name, raw))?
            .with_timezone(&Utc)
    };
    let day = instant.with_timezone(&zone).date_naive();
    Ok(When::Timed(sane(day, &p.name, raw)?))
}

/// Refuses years no booking has (a typo such as 0026 or 20266).
fn sane(day: NaiveDate, what: &str, raw: &str) -> Result<NaiveDate, FeedError> {
    use chrono::Datelike;
    if (1970..=2200).contains(&day.year()) {
        Ok(day)
    } else {
        Err(invalid(what, raw))
    }
}

/// Days of a `DURATION` (`P3D`, `P1W`, `P1DT2H`); hours past whole days do not add a night.
fn duration_days(raw: &str) -> Option<i64> {
    let body = raw.trim().strip_prefix('+').unwrap_or(raw.trim());
    let body = body.strip_prefix('P')?;
    let date_part = body.split('T').next().unwrap_or("");
    if let Some(w) = date_part.strip_suffix('W') {
        return w.parse::<i64>().ok().map(|w| w * 7);
    }
    if date_part.is_empty() {
        return Some(0);
    }
    date_part.strip_suffix('D')?.parse().ok()
}

/// The nights one event takes; `None` when it takes none (cancelled).
fn nights(event: &IcalEvent, zone: Tz) -> Result<Option<DateRange>, FeedError> {
    if prop(event, "STATUS")
        .and_then(|p| p.value.as_deref())
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("CANCELLED"))
    {
        return Ok(None);
    }
    let start = prop(event, "DTSTART")
        .ok_or_else(|| FeedError::InvalidDates("an event has no DTSTART".into()))?;
    let start = when(start, zone)?;
    let end = match (prop(event, "DTEND"), prop(event, "DURATION")) {
        (Some(end), _) => Some(when(end, zone)?.date()),
        (None, Some(d)) => {
            let raw = d.value.as_deref().unwrap_or("");
            let days = duration_days(raw)
                .ok_or_else(|| FeedError::InvalidDates(format!("DURATION {raw:?}")))?;
            Some(start.date() + chrono::Duration::days(days))
        }
        (None, None) => None,
    };
    let check_in = start.date();
    let check_out = match end {
        Some(end) if end < check_in => {
            return Err(FeedError::InvalidDates(format!(
                "an event ends ({end}) before it starts ({check_in})"
            )))
        }
        // A timed event inside one day still takes that night; so does an all-day event
        // without an end.
        Some(end) if end > check_in => end,
        _ => check_in + chrono::Duration::days(1),
    };
    Ok(DateRange::parse(check_in, check_out).ok())
}

/// Parses a feed into its events' nights, in the listing's `zone`.
pub fn parse_feed(text: &str, zone: Tz) -> Result<Vec<FeedBooking>, FeedError> {
    let text = text.trim_start_matches('\u{feff}');
    let head = text.trim_start();
    if !head
        .get(..15)
        .is_some_and(|h| h.eq_ignore_ascii_case("BEGIN:VCALENDAR"))
    {
        let shown: String = head.chars().take(40).collect();
        return Err(FeedError::NotCalendar(format!(
            "the body starts with {shown:?}, not BEGIN:VCALENDAR"
        )));
    }
    let mut parser = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()));
    let calendar = match parser.next() {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(FeedError::NotCalendar(e.to_string())),
        None => return Err(FeedError::NotCalendar("no calendar in the body".into())),
    };
    if calendar.events.len() > MAX_EVENTS {
        return Err(FeedError::TooManyEvents(MAX_EVENTS));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(calendar.events.len());
    for event in &calendar.events {
        let Some(range) = nights(event, zone)? else {
            continue;
        };
        let uid = prop(event, "UID")
            .and_then(|p| p.value.as_deref())
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}/{}", range.check_in(), range.check_out()));
        let uid = if seen.contains(&uid) {
            format!("{uid}#{}", range.check_in())
        } else {
            uid
        };
        if !seen.insert(uid.clone()) {
            return Err(FeedError::InvalidDates(format!(
                "the event {uid:?} is repeated on the same day"
            )));
        }
        out.push(FeedBooking { uid, range });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn nights_of(feed: &str) -> Vec<(String, NaiveDate, NaiveDate)> {
        parse_feed(feed, LISTING_ZONE)
            .unwrap()
            .into_iter()
            .map(|b| (b.uid, b.range.check_in(), b.range.check_out()))
            .collect()
    }

    #[test]
    fn all_day_events_keep_their_dates_and_folded_lines_unfold() {
        let feed = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261210\r\n\
                    DTEND;VALUE=DATE:20261213\r\nUID:1418fb94e984-ab3c0b4f6cc6a7f1ee9cd3b5\r\n 0c3e9a1@airbnb.com\r\n\
                    SUMMARY:Reserved\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(
            nights_of(feed),
            vec![(
                "1418fb94e984-ab3c0b4f6cc6a7f1ee9cd3b50c3e9a1@airbnb.com".to_string(),
                d("2026-12-10"),
                d("2026-12-13")
            )]
        );
    }

    #[test]
    fn timed_events_land_on_the_listing_s_local_dates() {
        // 20:00 UTC on the 9th is 01:00 on the 10th in Almaty (UTC+5); Moscow 22:00 on the
        // 11th is 00:00 on the 12th.
        let feed = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:a\nDTSTART:20261209T200000Z\n\
                    DTEND;TZID=Europe/Moscow:20261211T220000\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_eq!(
            nights_of(feed),
            vec![("a".to_string(), d("2026-12-10"), d("2026-12-12"))]
        );
    }

    #[test]
    fn a_timed_event_within_a_day_takes_that_night_and_cancelled_ones_none() {
        let feed = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:a\nDTSTART:20261210T100000\n\
                    DTEND:20261210T180000\nEND:VEVENT\nBEGIN:VEVENT\nUID:b\nSTATUS:CANCELLED\n\
                    DTSTART;VALUE=DATE:20261220\nDTEND;VALUE=DATE:20261222\nEND:VEVENT\n\
                    BEGIN:VEVENT\nUID:c\nDTSTART;VALUE=DATE:20261224\nDURATION:P2D\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_eq!(
            nights_of(feed),
            vec![
                ("a".to_string(), d("2026-12-10"), d("2026-12-11")),
                ("c".to_string(), d("2026-12-24"), d("2026-12-26"))
            ]
        );
    }

    #[test]
    fn html_and_bad_dates_are_refused() {
        assert!(matches!(
            parse_feed("<!DOCTYPE html><html>login</html>", LISTING_ZONE),
            Err(FeedError::NotCalendar(_))
        ));
        for bad in [
            "DTSTART;VALUE=DATE:20261310\nDTEND;VALUE=DATE:20261312",
            "DTSTART;VALUE=DATE:20261212\nDTEND;VALUE=DATE:20261210",
            "DTSTART;TZID=Mars/Olympus:20261210T100000",
            "DTEND;VALUE=DATE:20261210",
            "DTSTART:2026-12-10",
        ] {
            let feed =
                format!("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\n{bad}\nEND:VEVENT\nEND:VCALENDAR\n");
            assert!(
                matches!(
                    parse_feed(&feed, LISTING_ZONE),
                    Err(FeedError::InvalidDates(_))
                ),
                "{bad}"
            );
        }
    }
}
