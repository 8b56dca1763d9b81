//! A listing's calendar as iCalendar (RFC 5545): one all-day `VEVENT` per reservation or
//! block, so channel managers and hosts' own calendars can subscribe. No guest data: a
//! reservation says only that the nights are taken.
use crate::availability::SpanRow;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Renders the feed. `host` qualifies the event UIDs (a domain name of the service).
pub fn render(
    listing_id: Uuid,
    title: &str,
    spans: &[SpanRow],
    host: &str,
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    let mut line = |text: &str| fold_into(&mut out, text);
    line("BEGIN:VCALENDAR");
    line("VERSION:2.0");
    line("PRODID:-//ZhilyeGO//Availability 1.0//EN");
    line("CALSCALE:GREGORIAN");
    line("METHOD:PUBLISH");
    line(&format!("X-WR-CALNAME:{}", escape(title)));
    line(&format!("X-WR-RELCALID:{listing_id}"));
    for span in spans {
        let (summary, status) = match span.status.as_str() {
            "held" => ("Reserved (awaiting payment)", "TENTATIVE"),
            "booked" => ("Reserved", "CONFIRMED"),
            _ => ("Not available", "CONFIRMED"),
        };
        line("BEGIN:VEVENT");
        line(&format!("UID:{}@{host}", span.span_id));
        line(&format!("DTSTAMP:{}", now.format("%Y%m%dT%H%M%SZ")));
        line(&format!(
            "LAST-MODIFIED:{}",
            span.updated_at.format("%Y%m%dT%H%M%SZ")
        ));
        line(&format!(
            "DTSTART;VALUE=DATE:{}",
            span.check_in.format("%Y%m%d")
        ));
        line(&format!(
            "DTEND;VALUE=DATE:{}",
            span.check_out.format("%Y%m%d")
        ));
        line(&format!("SUMMARY:{summary}"));
        line(&format!("STATUS:{status}"));
        line("TRANSP:OPAQUE");
        line("END:VEVENT");
    }
    line("END:VCALENDAR");
    out
}

/// TEXT value escaping (RFC 5545 §3.3.11).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line, folded at 75 octets without splitting a UTF-8 character, ended by
/// CRLF (RFC 5545 §3.1).
fn fold_into(out: &mut String, text: &str) {
    let mut width = 0;
    for c in text.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_fold_at_75_octets_on_character_boundaries() {
        let mut out = String::new();
        fold_into(
            &mut out,
            &format!("X-WR-CALNAME:{}", "Квартира ".repeat(20)),
        );
        for line in out.split("\r\n") {
            assert!(line.len() <= 75, "{} octets: {line}", line.len());
        }
        let unfolded = out.trim_end_matches("\r\n").replace("\r\n ", "");
        assert_eq!(unfolded, format!("X-WR-CALNAME:{}", "Квартира ".repeat(20)));
    }

    #[test]
    fn text_values_are_escaped() {
        assert_eq!(escape("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
    }
}
