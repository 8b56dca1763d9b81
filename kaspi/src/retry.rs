//! The one retry policy of the service's outbound HTTP calls (Kaspi's API, the sandbox's
//! callbacks, Twilio, Telegram), on `backon`: exponential backoff with jitter between
//! attempts, and a server's own wait (`Retry-After`, or Telegram's `retry_after`) taken
//! instead of the backoff's when it gives one. A wait longer than [`MAX_RETRY_AFTER`] is not
//! shortened: the call gives up, since retrying sooner than asked only earns another refusal.
use chrono::{DateTime, Utc};
use std::time::Duration;

pub use backon::{ExponentialBuilder, Retryable};

/// The longest wait a server may ask for that a call still waits out.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The longest pause the backoff itself makes between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// At most `attempts` attempts in all (at least one), pausing `first`, then about twice as long
/// each time (up to [`MAX_BACKOFF`]), each pause lengthened by a random part of itself so
/// that clients refused together do not come back together.
pub fn backoff(first: Duration, attempts: u32) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(MAX_BACKOFF)
        .with_factor(2.0)
        .with_max_times(attempts.saturating_sub(1) as usize)
        .with_jitter()
}

/// The pause before the next attempt: `None` (stop) when the backoff has no attempts left or
/// the server asks for more than [`MAX_RETRY_AFTER`]; the server's wait when it names one;
/// else the backoff's.
pub fn pause(asked: Option<Duration>, backoff: Option<Duration>) -> Option<Duration> {
    let backoff = backoff?;
    match asked {
        Some(wait) if wait > MAX_RETRY_AFTER => None,
        Some(wait) => Some(wait),
        None => Some(backoff),
    }
}

/// The `Retry-After` header of an answer (RFC 9110 §10.2.3), if it has a readable one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, Utc::now())
}

/// `Retry-After` as delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`,
/// a date already past being no wait at all).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-10-21T07:27:30Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date past is no wait"
        );
        for bad in ["", "-1", "1.5", "soon", "99999999999999999999x"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(
            parse_retry_after("99999999999999999999", now),
            Some(Duration::from_secs(u64::MAX)),
            "too long to wait, not unreadable"
        );
    }

    #[test]
    fn a_server_wait_replaces_the_backoff_unless_too_long() {
        let b = Some(Duration::from_millis(200));
        let asked = Some(Duration::from_secs(3));
        assert_eq!(pause(asked, b), asked);
        assert_eq!(pause(None, b), b);
        assert_eq!(pause(Some(MAX_RETRY_AFTER), b), Some(MAX_RETRY_AFTER));
        assert_eq!(
            pause(Some(MAX_RETRY_AFTER + Duration::from_secs(1)), b),
            None
        );
        assert_eq!(pause(asked, None), None, "no attempts left");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops() {
        for _ in 0..50 {
            let pauses: Vec<Duration> = backoff(Duration::from_millis(200), 4).build().collect();
            assert_eq!(pauses.len(), 3, "4 attempts, 3 pauses");
            for (i, p) in pauses.iter().enumerate() {
                let base = Duration::from_millis(200 << i);
                assert!(*p >= base && *p < base * 2, "pause {i}: {p:?}");
            }
        }
        assert_eq!(backoff(Duration::from_millis(1), 1).build().count(), 0);
        assert_eq!(backoff(Duration::from_millis(1), 0).build().count(), 0);
        let long: Vec<Duration> = backoff(Duration::from_secs(4), 6).build().collect();
        assert!(long.iter().all(|p| *p < MAX_BACKOFF * 2), "{long:?}");
    }
}
