//! The fixed list of API reads of the history fixture, recorded once with their answers
//! (`reads.json` next to each store) and replayed by every later version.
//!
//! What does depend on the date is handled here, and only here:
//! - `/availability` refuses a `check_in` in the past, so a read there carries `valid_until`
//!   (its check-in day) and is skipped once that day has passed;
//! - `calendar.ics` stamps each event with the request time (`DTSTAMP`) and covers today − 90
//!   to today + 800 days: both sides drop `DTSTAMP` and keep the events overlapping the window
//!   of the day the test runs;
//! - the reconciliation report's `last_pass` and `recent` are the running process's memory:
//!   only `mismatched_payments` (read model rows) is compared.
use super::script::{Cast, ADMIN, GUESTS, HOST_A, HOST_B};
use crate::helpers::TestApp;
use chrono::{Duration, NaiveDate};
use domain::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One read and the answer it got when the fixture was made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Read {
    pub name: String,
    pub path: String,
    /// Who asks: (role, user id), or nobody.
    pub caller: Option<(String, Uuid)>,
    /// Compare only this top-level field of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<String>,
    /// The read is refused from the day after this one (a check-in in the past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<NaiveDate>,
    #[serde(default)]
    pub status: u16,
    /// JSON, or for `calendar.ics` the text of the feed.
    #[serde(default)]
    pub answer: Value,
}

fn read(name: impl Into<String>, path: impl Into<String>, caller: Option<(Role, Uuid)>) -> Read {
    Read {
        name: name.into(),
        path: path.into(),
        caller: caller.map(|(r, id)| (r.as_str().to_string(), id)),
        pick: None,
        valid_until: None,
        status: 0,
        answer: Value::Null,
    }
}

/// The reads, for what the script made.
pub fn fixed_reads(cast: &Cast) -> Vec<Read> {
    let admin = Some((Role::Admin, ADMIN));
    let mut reads = vec![
        read("catalogue", "/api/v1/listings", None),
        read(
            "catalogue in Almaty for 4",
            "/api/v1/listings?city=Almaty&guests=4",
            None,
        ),
    ];
    for (i, listing) in cast.listings.iter().enumerate() {
        let host = if i == 0 || i == 3 { HOST_A } else { HOST_B };
        reads.push(read(
            format!("listing {i}"),
            format!("/api/v1/listings/{listing}"),
            None,
        ));
        reads.push(read(
            format!("listing {i} as its host"),
            format!("/api/v1/listings/{listing}"),
            Some((Role::Host, host)),
        ));
        reads.push(read(
            format!("listing {i} calendar"),
            format!("/api/v1/listings/{listing}/calendar?from=2028-08-28&to=2028-12-05"),
            None,
        ));
        reads.push(read(
            format!("listing {i} calendar.ics"),
            format!("/api/v1/listings/{listing}/calendar.ics"),
            None,
        ));
    }
    for (city, from, to, guests) in [
        ("Almaty", "2028-09-01", "2028-09-04", 2),
        ("Almaty", "2028-10-02", "2028-10-04", 1),
        ("Almaty", "2028-11-20", "2028-11-22", 1),
        ("Astana", "2028-10-20", "2028-10-23", 2),
        ("Almaty", "2031-03-01", "2031-03-04", 2),
        ("Astana", "2031-03-06", "2031-03-09", 2),
    ] {
        let mut r = read(
            format!("availability {city} {from}..{to}"),
            format!(
                "/api/v1/availability?city={city}&check_in={from}&check_out={to}&guests={guests}"
            ),
            None,
        );
        r.valid_until = Some(from.parse().expect("a date"));
        reads.push(r);
    }
    reads.push(read(
        "bookings (admin)",
        "/api/v1/bookings?limit=100",
        admin,
    ));
    for (who, id) in [("host A", HOST_A), ("host B", HOST_B)] {
        reads.push(read(
            format!("bookings ({who})"),
            "/api/v1/bookings?limit=100",
            Some((Role::Host, id)),
        ));
    }
    for (i, guest) in GUESTS.iter().enumerate() {
        reads.push(read(
            format!("bookings (guest {i})"),
            "/api/v1/bookings?limit=100",
            Some((Role::Guest, *guest)),
        ));
        reads.push(read(
            format!("profile (guest {i})"),
            "/api/v1/users/me",
            Some((Role::Guest, *guest)),
        ));
    }
    reads.push(read(
        "profile (host A)",
        "/api/v1/users/me",
        Some((Role::Host, HOST_A)),
    ));
    for (i, booking) in cast.bookings.iter().enumerate() {
        reads.push(read(
            format!("booking {i}"),
            format!("/api/v1/bookings/{booking}"),
            admin,
        ));
    }
    for (i, payment) in cast.payments.iter().enumerate() {
        reads.push(read(
            format!("payment {i}"),
            format!("/api/v1/payments/{payment}"),
            admin,
        ));
    }
    let mut report = read(
        "reconciliation report",
        "/api/v1/admin/payments/reconciliation",
        admin,
    );
    report.pick = Some("mismatched_payments".into());
    reads.push(report);
    reads
}

fn role(name: &str) -> Role {
    match name {
        "guest" => Role::Guest,
        "host" => Role::Host,
        "admin" => Role::Admin,
        other => panic!("no role {other} in the fixture's reads"),
    }
}

/// Asks `app` one read; the answer as the golden file keeps it (before the date
/// normalisation, which [`comparable`] applies).
pub async fn ask(app: &TestApp, r: &Read) -> (u16, Value) {
    let mut req = app.client.get(app.url(&r.path));
    if let Some((name, id)) = &r.caller {
        req = req.bearer_auth(app.token(role(name), *id));
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("answer");
    let answer = if r.path.contains("calendar.ics") {
        Value::String(text)
    } else {
        let mut json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", r.name));
        if let Some(field) = &r.pick {
            json = json[field.as_str()].take();
        }
        json
    };
    (status, answer)
}

/// The answer with what depends on the day the read is made taken out (see the module).
pub fn comparable(answer: &Value, today: NaiveDate) -> Value {
    match answer {
        Value::String(feed) if feed.starts_with("BEGIN:VCALENDAR") => {
            Value::String(ics_in_window(feed, today))
        }
        other => other.clone(),
    }
}

fn ics_in_window(feed: &str, today: NaiveDate) -> String {
    let (first, last) = (today - Duration::days(90), today + Duration::days(800));
    let date = |event: &[&str], key: &str| -> NaiveDate {
        event
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            .unwrap_or_else(|| panic!("an event without {key}: {event:?}"))
    };
    let mut out = Vec::new();
    let mut event: Option<Vec<&str>> = None;
    for line in feed.split("\r\n") {
        if line == "BEGIN:VEVENT" {
            event = Some(vec![line]);
            continue;
        }
        let Some(e) = event.as_mut() else {
            out.push(line);
            continue;
        };
        if line.starts_with("DTSTAMP:") {
            continue;
        }
        e.push(line);
        if line == "END:VEVENT" {
            let e = event.take().unwrap_or_default();
            let (start, end) = (
                date(&e, "DTSTART;VALUE=DATE:"),
                date(&e, "DTEND;VALUE=DATE:"),
            );
            if start < last && end > first {
                out.extend(e);
            }
        }
    }
    out.join("\r\n")
}

/// Records every read's answer on `app` (the app the script ran on).
pub async fn record(app: &TestApp, reads: &mut [Read]) {
    for r in reads.iter_mut() {
        let (status, answer) = ask(app, r).await;
        r.status = status;
        r.answer = answer;
    }
}

/// Replays the golden reads on `app`; every answer must be the recorded one.
pub async fn check(app: &TestApp, golden: &[Read]) {
    let today = domain::local_date(chrono::Utc::now());
    let mut differ = Vec::new();
    for r in golden {
        if r.valid_until.is_some_and(|d| d < today) {
            continue;
        }
        let (status, answer) = ask(app, r).await;
        let (want, got) = (comparable(&r.answer, today), comparable(&answer, today));
        if status != r.status || want != got {
            differ.push(format!(
                "{} ({}): recorded {} {want}\n  now {status} {got}",
                r.name, r.path, r.status
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} reads answer differently:\n{}",
        differ.len(),
        golden.len(),
        differ.join("\n")
    );
}

/// The feed's window moves with the day of the read: events whose nights have left it are
/// not compared, and the request time never is.
#[test]
fn the_calendar_feed_is_compared_within_the_window_of_the_day() {
    let golden: Vec<Read> = serde_json::from_value(super::read_json(
        &super::fixture_dir().join("sqlite/reads.json"),
    ))
    .expect("reads.json");
    let feed = golden
        .iter()
        .find(|r| r.name == "listing 0 calendar.ics")
        .expect("listing 0's feed");
    let on = |day: &str| match comparable(&feed.answer, day.parse().expect("a date")) {
        Value::String(text) => text,
        other => panic!("a feed as text: {other}"),
    };
    let made = on("2026-12-01");
    assert!(made.contains("BEGIN:VEVENT") && !made.contains("DTSTAMP"));
    assert_eq!(made, on("2027-06-01"), "all stays still in the window");
    let later = on("2029-06-01");
    assert!(!later.contains("BEGIN:VEVENT"), "{later}");
    assert!(later.ends_with("END:VCALENDAR\r\n"), "{later:?}");
}
