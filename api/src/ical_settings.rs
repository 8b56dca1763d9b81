//! The calendar feeds' settings (`ZHILEGO_ICAL_*`), read with the rest of [`crate::settings`].
use crate::settings::{positive, SettingsError};
use commands::calendar_feeds::fetch::FetchLimits;
use commands::FeedSyncConfig;
use std::time::Duration;

/// A duration as operators write it: `900` (seconds), `500ms`, `30s`, `15m`, `1h`.
fn duration(key: &'static str, raw: &str) -> Result<Duration, SettingsError> {
    let bad = || {
        SettingsError::Invalid(
            key,
            format!("{raw:?}: expected e.g. 900, 30s, 15m, 1h or 500ms"),
        )
    };
    let (number, unit_ms) = if let Some(n) = raw.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = raw.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = raw.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = raw.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (raw, 1_000)
    };
    let n: u64 = number.trim().parse().map_err(|_| bad())?;
    let ms = n
        .checked_mul(unit_ms)
        .filter(|ms| *ms > 0)
        .ok_or_else(bad)?;
    Ok(Duration::from_millis(ms))
}

/// - `ZHILEGO_ICAL_SYNC_INTERVAL` (default `15m`): each feed is synced once per this.
/// - `ZHILEGO_ICAL_CONCURRENCY` (default 32): feeds fetched at once per instance.
/// - `ZHILEGO_ICAL_TIMEOUT_MS` (default 20000): one feed's whole request.
/// - `ZHILEGO_ICAL_MAX_BYTES` (default 5 MiB): the largest feed read.
/// - `ZHILEGO_ICAL_MAX_REDIRECTS` (default 5).
/// - `ZHILEGO_ICAL_ALLOW_PRIVATE=1`: feeds may live on loopback, private and link-local
///   addresses (tests, private networks); off by default (docs/security.md).
pub fn from_values(get: &dyn Fn(&str) -> Option<String>) -> Result<FeedSyncConfig, SettingsError> {
    let defaults = FetchLimits::default();
    let interval = match get("ZHILEGO_ICAL_SYNC_INTERVAL") {
        Some(raw) => duration("ZHILEGO_ICAL_SYNC_INTERVAL", &raw)?,
        None => FeedSyncConfig::default().interval,
    };
    let allow_private = match get("ZHILEGO_ICAL_ALLOW_PRIVATE").as_deref() {
        None | Some("0" | "false" | "no") => false,
        Some("1" | "true" | "yes") => true,
        Some(other) => {
            return Err(SettingsError::Invalid(
                "ZHILEGO_ICAL_ALLOW_PRIVATE",
                format!("{other:?}: expected 1 or 0"),
            ))
        }
    };
    let too_large = |key| SettingsError::Invalid(key, "too large".into());
    Ok(FeedSyncConfig {
        interval,
        concurrency: usize::try_from(positive("ZHILEGO_ICAL_CONCURRENCY", get, 32)?)
            .map_err(|_| too_large("ZHILEGO_ICAL_CONCURRENCY"))?,
        fetch: FetchLimits {
            timeout: Duration::from_millis(positive(
                "ZHILEGO_ICAL_TIMEOUT_MS",
                get,
                defaults.timeout.as_millis() as u64,
            )?),
            max_bytes: usize::try_from(positive(
                "ZHILEGO_ICAL_MAX_BYTES",
                get,
                defaults.max_bytes as u64,
            )?)
            .map_err(|_| too_large("ZHILEGO_ICAL_MAX_BYTES"))?,
            max_redirects: match get("ZHILEGO_ICAL_MAX_REDIRECTS") {
                None => defaults.max_redirects,
                Some(s) => s.parse().map_err(|_| {
                    SettingsError::Invalid(
                        "ZHILEGO_ICAL_MAX_REDIRECTS",
                        format!("{s:?} is not a number"),
                    )
                })?,
            },
            allow_private,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_operators_write_them() {
        let read = |v: &str| duration("X", v).unwrap();
        assert_eq!(read("900"), Duration::from_secs(900));
        assert_eq!(read("15m"), Duration::from_secs(900));
        assert_eq!(read("30s"), Duration::from_secs(30));
        assert_eq!(read("1h"), Duration::from_secs(3600));
        assert_eq!(read("500ms"), Duration::from_millis(500));
        for bad in ["", "0", "-5", "15 minutes", "m"] {
            assert!(duration("X", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_safe() {
        let c = from_values(&|_| None).unwrap();
        assert_eq!(c.interval, Duration::from_secs(900));
        assert!(!c.fetch.allow_private);
        assert_eq!(c.fetch.max_redirects, 5);
    }
}
