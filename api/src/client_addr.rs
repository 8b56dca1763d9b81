//! The client's address as the service believes it. Behind a gateway every peer is the
//! gateway, so the client is in `X-Forwarded-For`; but anyone can send that header, so it is
//! believed only from a peer in `ZHILEGO_TRUSTED_PROXIES`, and read from the right: each
//! trusted hop appends the address it saw, so the first entry from the right that is not a
//! trusted proxy is the client (entries further left are whatever the client wrote).
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(&client) {
                    return client;
                }
            }
            // Garbage where an address should be: stop at the last address we could trust.
            Err(_) => return client,
        }
    }
    client
}

/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`, as a dual-stack socket reports it)
/// is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers(&[]), &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = [
            "10.0.0.0/8".parse().unwrap(),
            "172.28.0.0/16".parse().unwrap(),
        ];
        // The client forged an entry; nginx appended what it saw; a second proxy its own.
        let h = headers(&["6.6.6.6, 198.51.100.4", "10.1.2.3"]);
        assert_eq!(
            client_ip(ip("172.28.0.5"), &h, &trusted),
            ip("198.51.100.4")
        );
        // Only trusted hops: the leftmost of them.
        assert_eq!(
            client_ip(ip("172.28.0.5"), &headers(&["10.0.0.7"]), &trusted),
            ip("10.0.0.7")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("172.28.0.5"), &headers(&[]), &trusted),
            ip("172.28.0.5")
        );
        // Garbage stops the walk at the last address read.
        assert_eq!(
            client_ip(ip("172.28.0.5"), &headers(&["evil, 10.0.0.8"]), &trusted),
            ip("10.0.0.8")
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let trusted = ["127.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &headers(&["192.0.2.1"]), &trusted),
            ip("192.0.2.1")
        );
    }
}
