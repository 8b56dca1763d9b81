//! Other sites' iCal feeds, served on loopback: a fake of what Airbnb and Booking.com publish
//! (their shapes written here from the published exports: CRLF, folded lines, all-day
//! `VALUE=DATE` events, timed events with `TZID`), with the ways feeds go wrong — HTML
//! instead of a calendar, a huge body, a slow answer, redirect loops. It honours
//! `If-None-Match` with 304 and records every request's instant per path.
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a path answers.
#[derive(Clone, Debug)]
pub enum Feed {
    /// 200 with this calendar and an ETag of its content; 304 when asked with that ETag.
    Calendar(String),
    /// A login page, as a feed URL that lost its token answers.
    Html,
    /// 200 with this many bytes of calendar-looking text, streamed (no Content-Length).
    Huge(usize),
    /// The calendar, after this long.
    Slow(Duration, String),
    /// 302 to another path of this server (to itself: a loop).
    Redirect(String),
    /// 302 to any URL.
    RedirectTo(String),
}

#[derive(Default)]
struct Inner {
    feeds: HashMap<String, Feed>,
    hits: HashMap<String, Vec<Instant>>,
    not_modified: HashMap<String, usize>,
}

/// The fake feed server.
#[derive(Clone)]
pub struct FakeFeeds {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: crate::Served,
}

fn etag_of(body: &str) -> String {
    use sha2::Digest;
    format!(
        "\"{}\"",
        hex::encode(&sha2::Sha256::digest(body.as_bytes())[..8])
    )
}

async fn serve(
    State(fake): State<FakeFeeds>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let feed = {
        let mut inner = fake.lock();
        inner
            .hits
            .entry(path.clone())
            .or_default()
            .push(Instant::now());
        inner.feeds.get(&path).cloned()
    };
    let calendar = |body: String, fake: &FakeFeeds| {
        let etag = etag_of(&body);
        let asked = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        if asked == Some(etag.as_str()) {
            *fake.lock().not_modified.entry(path.clone()).or_default() += 1;
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        }
        (
            [
                (
                    header::CONTENT_TYPE,
                    "text/calendar; charset=utf-8".to_string(),
                ),
                (header::ETAG, etag),
            ],
            body,
        )
            .into_response()
    };
    match feed {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Feed::Calendar(body)) => calendar(body, &fake),
        Some(Feed::Slow(wait, body)) => {
            tokio::time::sleep(wait).await;
            calendar(body, &fake)
        }
        Some(Feed::Html) => (
            [(header::CONTENT_TYPE, "text/html")],
            "<!DOCTYPE html><html><head><title>Log in</title></head><body>Please log in</body></html>",
        )
            .into_response(),
        Some(Feed::Huge(n)) => {
            // Streamed in 64 KiB chunks without a Content-Length, so only counting the body
            // as it arrives can stop it.
            let line = "X-FILLER:0123456789012345678901234567890123456789\r\n";
            let chunk: String = line.repeat(65_536 / line.len());
            let chunks = n.div_ceil(chunk.len());
            let head = futures::stream::once(async { Ok::<_, std::io::Error>("BEGIN:VCALENDAR\r\n".to_string()) });
            let rest = futures::stream::iter((0..chunks).map(move |_| Ok(chunk.clone())));
            (
                [(header::CONTENT_TYPE, "text/calendar")],
                axum::body::Body::from_stream(futures::StreamExt::chain(head, rest)),
            )
                .into_response()
        }
        Some(Feed::Redirect(to)) => (
            StatusCode::FOUND,
            [(header::LOCATION, format!("{}/{to}", fake.url))],
        )
            .into_response(),
        Some(Feed::RedirectTo(to)) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
    }
}

impl FakeFeeds {
    /// Starts the server on a free loopback port.
    pub async fn start() -> FakeFeeds {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake feed server");
        let fake = FakeFeeds {
            url: format!("http://{}", listener.local_addr().expect("bound")),
            inner: Arc::default(),
            task: Default::default(),
        };
        let app = Router::new()
            .route("/{*path}", get(serve))
            .with_state(fake.clone());
        fake.task.start(listener, app);
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `path` answers from now on.
    pub fn set(&self, path: &str, feed: Feed) {
        self.lock().feeds.insert(path.to_string(), feed);
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.url)
    }

    /// When each request for `path` arrived.
    pub fn hits(&self, path: &str) -> Vec<Instant> {
        self.lock().hits.get(path).cloned().unwrap_or_default()
    }

    /// Requests answered 304 for `path`.
    pub fn not_modified(&self, path: &str) -> usize {
        self.lock().not_modified.get(path).copied().unwrap_or(0)
    }

    /// Requests for all paths.
    pub fn total_hits(&self) -> usize {
        self.lock().hits.values().map(Vec::len).sum()
    }

    pub fn stop(&self) {
        self.task.stop();
    }
}

/// One booking on another site: its UID and its dates (`YYYYMMDD`, check-out exclusive).
#[derive(Clone, Debug)]
pub struct Stay {
    pub uid: String,
    pub from: String,
    pub to: String,
}

impl Stay {
    pub fn new(uid: &str, from: &str, to: &str) -> Stay {
        let compact = |d: &str| d.replace('-', "");
        Stay {
            uid: uid.to_string(),
            from: compact(from),
            to: compact(to),
        }
    }
}

/// Appends a content line folded at 75 octets (RFC 5545 §3.1), CRLF-ended.
fn line(out: &mut String, text: &str) {
    let mut width = 0;
    for c in text.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

/// A feed shaped like Airbnb's export: reservations with a long (folded) description, and
/// "Not available" blocks.
pub fn airbnb(stays: &[Stay]) -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(
        &mut out,
        "PRODID;X-RICAL-TZSOURCE=TZINFO:-//Airbnb Inc//Hosting Calendar 0.8.8//EN",
    );
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "VERSION:2.0");
    for (i, s) in stays.iter().enumerate() {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("DTEND;VALUE=DATE:{}", s.to));
        line(&mut out, &format!("DTSTART;VALUE=DATE:{}", s.from));
        line(&mut out, &format!("UID:{}", s.uid));
        if i % 2 == 0 {
            line(
                &mut out,
                "DESCRIPTION:Reservation URL: https://www.airbnb.com/hosting/reservations/details/HMQWERTY42\\nPhone Number (Last 4 Digits): 4821",
            );
            line(&mut out, "SUMMARY:Reserved");
        } else {
            line(&mut out, "SUMMARY:Airbnb (Not available)");
        }
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

/// A feed shaped like Booking.com's export: `CLOSED - Not available` all-day events, and
/// (as channel managers that feed it write) timed events with a `TZID` and a `VTIMEZONE`.
/// `timed` stays are written as 14:00 check-in and 12:00 check-out in Asia/Almaty.
pub fn booking_com(stays: &[Stay], timed: &[Stay]) -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//admin.booking.com//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(&mut out, "BEGIN:VTIMEZONE");
    line(&mut out, "TZID:Asia/Almaty");
    line(&mut out, "BEGIN:STANDARD");
    line(&mut out, "DTSTART:19700101T000000");
    line(&mut out, "TZOFFSETFROM:+0500");
    line(&mut out, "TZOFFSETTO:+0500");
    line(&mut out, "END:STANDARD");
    line(&mut out, "END:VTIMEZONE");
    for s in stays {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", s.uid));
        line(&mut out, "DTSTAMP:20261201T080000Z");
        line(&mut out, &format!("DTSTART;VALUE=DATE:{}", s.from));
        line(&mut out, &format!("DTEND;VALUE=DATE:{}", s.to));
        line(&mut out, "SUMMARY:CLOSED - Not available");
        line(&mut out, "END:VEVENT");
    }
    for s in timed {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", s.uid));
        line(&mut out, "DTSTAMP:20261201T080000Z");
        line(
            &mut out,
            &format!("DTSTART;TZID=Asia/Almaty:{}T140000", s.from),
        );
        line(&mut out, &format!("DTEND;TZID=Asia/Almaty:{}T120000", s.to));
        line(&mut out, "SUMMARY:CLOSED - Not available");
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}
