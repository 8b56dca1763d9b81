//! Reading a feed over HTTP, safely: only `http`/`https`; the host's addresses are checked
//! after DNS resolution (and on every redirect) so a feed URL cannot reach loopback, private,
//! link-local, multicast or unspecified addresses unless the operator allows private ones
//! (`ZHILEGO_ICAL_ALLOW_PRIVATE=1`, for tests and private networks); no proxies from the
//! environment; a whole-request timeout, a cap on the body (counted while it streams, not
//! trusted from `Content-Length`), a bounded number of redirects, and the validators of the
//! last good answer (`ETag`, `Last-Modified`) sent back so an unchanged feed costs a 304.
use super::FeedError;
use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use reqwest::redirect;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How feeds are fetched.
#[derive(Clone, Debug)]
pub struct FetchLimits {
    /// The whole request, connecting to the last byte.
    pub timeout: Duration,
    /// The largest body read.
    pub max_bytes: usize,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// Let feeds live on private, loopback and link-local addresses.
    pub allow_private: bool,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            timeout: Duration::from_secs(20),
            max_bytes: 5 * 1024 * 1024,
            max_redirects: 5,
            allow_private: false,
        }
    }
}

/// What the validators of the last good answer were.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A feed's answer.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the feed is as it was at the last good sync.
    NotModified,
    Body {
        text: String,
        validators: Validators,
    },
}

/// The HTTP client every feed is read with.
#[derive(Clone)]
pub struct FeedFetcher {
    client: reqwest::Client,
    limits: FetchLimits,
}

/// An address a feed may not be fetched from.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a public address")]
struct AddressRefused(String);

/// A redirect that was not followed.
#[derive(Debug, thiserror::Error)]
enum RedirectRefused {
    #[error("more than {0} redirects")]
    TooMany(usize),
    #[error("a redirect to {0} (only public http and https addresses)")]
    Target(String),
}

/// True for addresses anyone on the Internet can reach: not loopback, private, link-local,
/// multicast, unspecified, shared (CGNAT), documentation or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let [first, second, ..] = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                || first == 0
                || first >= 240
                || (first == 100 && (64..128).contains(&second))
                || (first == 192 && second == 0 && a.octets()[2] == 0))
        }
        IpAddr::V6(a) => {
            let head = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (head & 0xfe00) == 0xfc00
                || (head & 0xffc0) == 0xfe80
                || (head == 0x2001 && a.segments()[1] == 0x0db8))
        }
    }
}

/// DNS through the system resolver, keeping only addresses a feed may live on.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                let shown = found.first().map(|a| a.ip().to_string()).unwrap_or(host);
                return Err(Box::new(AddressRefused(shown)) as _);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `url` may be requested at all (before DNS): its scheme, and its host when it is an
/// address written out.
fn check_url(url: &url::Url, allow_private: bool) -> Result<(), FeedError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FeedError::UrlRefused(format!(
            "{}: only http and https",
            url.scheme()
        )));
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(FeedError::UrlRefused("the URL has no host".into())),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(FeedError::AddressRefused(format!(
            "{ip} is not a public address"
        )))
    }
}

/// The first error of `kind` in `e`'s chain of sources.
fn find<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut at = Some(e);
    while let Some(err) = at {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        at = err.source();
    }
    None
}

fn classify(e: reqwest::Error) -> FeedError {
    if let Some(refused) = find::<AddressRefused>(&e) {
        return FeedError::AddressRefused(refused.to_string());
    }
    if let Some(r) = find::<RedirectRefused>(&e) {
        return match r {
            RedirectRefused::TooMany(_) => FeedError::TooManyRedirects(r.to_string()),
            RedirectRefused::Target(_) => FeedError::AddressRefused(r.to_string()),
        };
    }
    if e.is_timeout() {
        return FeedError::Timeout;
    }
    let mut detail = e.to_string();
    let mut at = std::error::Error::source(&e);
    while let Some(cause) = at {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        at = cause.source();
    }
    FeedError::Unreachable(detail)
}

impl FeedFetcher {
    pub fn new(limits: FetchLimits) -> Result<FeedFetcher, reqwest::Error> {
        let max = limits.max_redirects;
        let allow_private = limits.allow_private;
        let policy = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                return attempt.error(RedirectRefused::TooMany(max));
            }
            if check_url(attempt.url(), allow_private).is_err() {
                let shown = attempt.url().to_string();
                return attempt.error(RedirectRefused::Target(shown));
            }
            attempt.follow()
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "ZhilyeGO-calendar-sync/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(limits.timeout)
            .connect_timeout(limits.timeout.min(Duration::from_secs(10)))
            .redirect(policy)
            .no_proxy()
            .pool_max_idle_per_host(8);
        if !limits.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(FeedFetcher {
            client: builder.build()?,
            limits,
        })
    }

    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// GETs the feed, conditionally on `last` when given.
    pub async fn fetch(&self, url: &str, last: &Validators) -> Result<Fetched, FeedError> {
        let parsed = url::Url::parse(url).map_err(|e| FeedError::UrlRefused(e.to_string()))?;
        check_url(&parsed, self.limits.allow_private)?;
        let mut headers = HeaderMap::new();
        let header = |v: &str| HeaderValue::from_str(v).ok();
        if let Some(v) = last.etag.as_deref().and_then(header) {
            headers.insert(IF_NONE_MATCH, v);
        }
        if let Some(v) = last.last_modified.as_deref().and_then(header) {
            headers.insert(IF_MODIFIED_SINCE, v);
        }
        let read = async {
            let mut res = self
                .client
                .get(parsed)
                .headers(headers)
                .send()
                .await
                .map_err(classify)?;
            let status = res.status();
            if status == reqwest::StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if !status.is_success() {
                return Err(FeedError::HttpStatus(status.as_u16()));
            }
            let declared = res
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|n| n > self.limits.max_bytes) {
                return Err(FeedError::TooLarge(self.limits.max_bytes));
            }
            let text_header = |name| {
                res.headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let validators = Validators {
                etag: text_header(ETAG),
                last_modified: text_header(LAST_MODIFIED),
            };
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > self.limits.max_bytes {
                    return Err(FeedError::TooLarge(self.limits.max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(body)
                .map_err(|_| FeedError::NotCalendar("the body is not UTF-8 text".into()))?;
            Ok(Fetched::Body { text, validators })
        };
        // reqwest's timeout covers the body too; this one also bounds a slow trickle between
        // chunks whatever the client does.
        match tokio::time::timeout(self.limits.timeout + Duration::from_secs(1), read).await {
            Ok(result) => result,
            Err(_) => Err(FeedError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2a00:1450:4001::1", "95.59.1.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_are_checked_before_dns() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(matches!(
            check_url(&url("ftp://example.com/a.ics"), true),
            Err(FeedError::UrlRefused(_))
        ));
        assert!(matches!(
            check_url(&url("file:///etc/passwd"), true),
            Err(FeedError::UrlRefused(_))
        ));
        assert!(matches!(
            check_url(&url("http://127.0.0.1:8080/a.ics"), false),
            Err(FeedError::AddressRefused(_))
        ));
        assert!(matches!(
            check_url(&url("http://[::1]/a.ics"), false),
            Err(FeedError::AddressRefused(_))
        ));
        assert!(check_url(&url("http://127.0.0.1:8080/a.ics"), true).is_ok());
        assert!(check_url(&url("https://www.airbnb.com/calendar/ical/1.ics"), false).is_ok());
    }
}
