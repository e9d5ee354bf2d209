//! Trusted-proxy logic: who the client really is, and what forwarding
//! headers the upstream gets. Client-sent `X-Forwarded-*` values are believed
//! only from configured proxies; from anyone else they are spoofable and
//! ignored, because audit records and policy key on the client address.

use ::http::header::HOST;
use ::http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Networks whose forwarding headers are believed. Empty (the default)
/// trusts nobody. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as seen on
/// dual-stack sockets) match the IPv4 networks too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts exactly these networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether `ip` is inside a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.0
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// The trusted networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// True when nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client as the proxy determined it, and the forwarding values to send
/// upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedFor {
    /// The client's address (IPv4-mapped IPv6 shown as IPv4).
    pub client_ip: IpAddr,
    /// Value for the upstream `X-Forwarded-For`: the verified part of the
    /// chain (client first, then trusted hops), ending with the peer.
    pub x_forwarded_for: String,
    /// Value for `X-Forwarded-Proto`: `http` or `https`.
    pub proto: String,
    /// Value for `X-Forwarded-Host`, lowercased; `None` if no valid host.
    pub host: Option<String>,
}

/// Works out the client and the forwarding headers for the upstream.
///
/// `peer` is the TCP peer, `tls` whether this hop was TLS, `host` the
/// request's host (the `Host` header or HTTP/2 `:authority`; when `None` the
/// `Host` header in `headers` is used), `headers` the request as received.
///
/// From an untrusted peer every client-sent forwarding header is ignored:
/// client = peer, chain = peer, proto from `tls`, host from `host`.
///
/// From a trusted peer, `X-Forwarded-For` (all fields, in order) is walked
/// right to left, skipping trusted hops; the first untrusted address is the
/// client. A malformed entry (or non-ASCII field) stops the walk and the
/// client is the last valid address reached, or the peer. Entries may carry
/// a port (`1.2.3.4:80`, `[::1]:80`), which is dropped. Only the walked
/// entries are forwarded, rewritten canonically, so unverifiable entries
/// left of the client and garbage never reach the upstream.
/// `X-Forwarded-Proto` (`http`/`https`) and `X-Forwarded-Host` (a valid
/// `host[:port]`) are taken if present exactly once and valid; otherwise the
/// same fallbacks as for an untrusted peer apply. `Forwarded` (RFC 7239) is
/// not read.
pub fn forwarded_headers(
    peer: IpAddr,
    tls: bool,
    host: Option<&str>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> ForwardedFor {
    let peer_ip = peer.to_canonical();
    let own_proto = if tls { "https" } else { "http" };
    let own_host = host
        .or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|h| is_valid_host(h))
        .map(str::to_ascii_lowercase);

    if !trusted.contains(peer) {
        return ForwardedFor {
            client_ip: peer_ip,
            x_forwarded_for: peer_ip.to_string(),
            proto: own_proto.to_owned(),
            host: own_host,
        };
    }

    // Right to left; `walked` collects the verified hops, nearest first.
    let mut walked: Vec<IpAddr> = Vec::new();
    let mut client = peer_ip;
    'walk: for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            break;
        };
        for entry in value.rsplit(',') {
            let Some(ip) = parse_xff_entry(entry) else {
                break 'walk;
            };
            client = ip;
            walked.push(ip);
            if !trusted.contains(ip) {
                break 'walk;
            }
        }
    }
    let mut x_forwarded_for = String::new();
    for ip in walked.iter().rev() {
        x_forwarded_for.push_str(&ip.to_string());
        x_forwarded_for.push_str(", ");
    }
    x_forwarded_for.push_str(&peer_ip.to_string());

    let proto = single_value(headers, &X_FORWARDED_PROTO)
        .map(str::trim)
        .filter(|p| p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https"))
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| own_proto.to_owned());
    let host = single_value(headers, &X_FORWARDED_HOST)
        .map(str::trim)
        .filter(|h| is_valid_host(h))
        .map(str::to_ascii_lowercase)
        .or(own_host);

    ForwardedFor {
        client_ip: client,
        x_forwarded_for,
        proto,
        host,
    }
}

/// `host[:port]`: a registered name (`A-Z a-z 0-9 - . _`, at most 253
/// bytes), an IPv4 address, or a bracketed IPv6 address; optional port of
/// 1–5 digits up to 65535. No spaces, slashes, user info or lists.
pub fn is_valid_host(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        return inner.parse::<Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(':').is_some_and(is_valid_port));
    }
    let (name, port) = match s.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (s, None),
    };
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && port.is_none_or(is_valid_port)
}

fn is_valid_port(p: &str) -> bool {
    (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

/// One `X-Forwarded-For` entry: an IP, `v4:port`, `[v6]` or `[v6]:port`.
fn parse_xff_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches([' ', '\t']);
    if let Some(rest) = entry.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_valid_port)) {
            return None;
        }
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (v4, port) = entry.split_once(':')?;
    if !is_valid_port(port) {
        return None;
    }
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The value of a header present exactly once, if it is visible ASCII.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn lb() -> TrustedProxies {
        trusted(&["10.0.0.0/8", "fd00::/8"])
    }

    #[test]
    fn trusted_proxies_contains() {
        let t = lb();
        assert!(t.contains(ip("10.1.2.3")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("fd00::1")));
        assert!(!t.contains(ip("fe80::1")));
        assert!(t.contains(ip("::ffff:10.0.0.1")));
        assert!(!t.contains(ip("::ffff:11.0.0.1")));
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
        assert!(TrustedProxies::default().is_empty());
        assert_eq!(t.nets().len(), 2);
    }

    #[test]
    fn untrusted_peer_ignores_everything() {
        let h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("host", "Api.Example:8443"),
        ]);
        for t in [TrustedProxies::default(), lb()] {
            let f = forwarded_headers(ip("203.0.113.9"), false, None, &h, &t);
            assert_eq!(
                f,
                ForwardedFor {
                    client_ip: ip("203.0.113.9"),
                    x_forwarded_for: "203.0.113.9".into(),
                    proto: "http".into(),
                    host: Some("api.example:8443".into()),
                }
            );
        }
    }

    #[test]
    fn untrusted_ipv6_peer() {
        let h = map(&[("x-forwarded-for", "::1")]);
        let f = forwarded_headers(ip("2001:db8::7"), true, Some("h"), &h, &lb());
        assert_eq!(f.client_ip, ip("2001:db8::7"));
        assert_eq!(f.x_forwarded_for, "2001:db8::7");
        assert_eq!(f.proto, "https");
        assert_eq!(f.host.as_deref(), Some("h"));
    }

    #[test]
    fn mapped_peer_is_canonicalized() {
        let f = forwarded_headers(
            ip("::ffff:192.0.2.1"),
            false,
            None,
            &HeaderMap::new(),
            &lb(),
        );
        assert_eq!(f.client_ip, ip("192.0.2.1"));
        assert_eq!(f.x_forwarded_for, "192.0.2.1");
        assert_eq!(f.host, None);
    }

    #[test]
    fn trusted_peer_walks_chain() {
        let h = map(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.4"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "Portal.Example"),
            ("host", "internal"),
        ]);
        let f = forwarded_headers(ip("10.0.0.1"), false, None, &h, &lb());
        assert_eq!(
            f,
            ForwardedFor {
                client_ip: ip("198.51.100.4"),
                x_forwarded_for: "198.51.100.4, 10.0.0.2, 10.0.0.1".into(),
                proto: "https".into(),
                host: Some("portal.example".into()),
            }
        );
    }

    #[test]
    fn trusted_ipv6_chain_with_ports() {
        let h = map(&[(
            "x-forwarded-for",
            "[2001:db8::1]:5555, [fd00::2], 198.51.100.4:80, fd00::3",
        )]);
        let f = forwarded_headers(ip("fd00::9"), true, Some("h:443"), &h, &lb());
        assert_eq!(f.client_ip, ip("198.51.100.4"));
        assert_eq!(f.x_forwarded_for, "198.51.100.4, fd00::3, fd00::9");
        assert_eq!(f.proto, "https");
        assert_eq!(f.host.as_deref(), Some("h:443"));

        let h = map(&[("x-forwarded-for", "[2001:db8::1]:5555, [fd00::2]")]);
        let f = forwarded_headers(ip("fd00::9"), false, None, &h, &lb());
        assert_eq!(f.client_ip, ip("2001:db8::1"));
        assert_eq!(f.x_forwarded_for, "2001:db8::1, fd00::2, fd00::9");
    }

    #[test]
    fn all_trusted_chain_uses_leftmost() {
        let h = map(&[("x-forwarded-for", "10.0.0.5, 10.0.0.4")]);
        let f = forwarded_headers(ip("10.0.0.1"), false, None, &h, &lb());
        assert_eq!(f.client_ip, ip("10.0.0.5"));
        assert_eq!(f.x_forwarded_for, "10.0.0.5, 10.0.0.4, 10.0.0.1");
    }

    #[test]
    fn no_chain_from_trusted_peer() {
        let f = forwarded_headers(ip("10.0.0.1"), true, None, &HeaderMap::new(), &lb());
        assert_eq!(f.client_ip, ip("10.0.0.1"));
        assert_eq!(f.x_forwarded_for, "10.0.0.1");
        assert_eq!(f.proto, "https");
    }

    #[test]
    fn garbage_stops_the_walk() {
        let cases: &[(&str, &str, &str)] = &[
            // (XFF, client, forwarded chain)
            ("garbage", "10.0.0.1", "10.0.0.1"),
            ("", "10.0.0.1", "10.0.0.1"),
            ("1.1.1.1, unknown", "10.0.0.1", "10.0.0.1"),
            (
                "1.1.1.1, unknown, 10.0.0.7",
                "10.0.0.7",
                "10.0.0.7, 10.0.0.1",
            ),
            ("1.1.1.1,,10.0.0.7", "10.0.0.7", "10.0.0.7, 10.0.0.1"),
            ("1.1.1.1, 10.0.0.7,", "10.0.0.1", "10.0.0.1"),
            ("garbage, 1.1.1.1", "1.1.1.1", "1.1.1.1, 10.0.0.1"),
            ("1.1.1.1 2.2.2.2", "10.0.0.1", "10.0.0.1"),
            ("1.1.1.1:99999", "10.0.0.1", "10.0.0.1"),
            ("1.1.1.1:", "10.0.0.1", "10.0.0.1"),
            ("[::1", "10.0.0.1", "10.0.0.1"),
            ("[::1]x", "10.0.0.1", "10.0.0.1"),
            ("fe80::1%eth0", "10.0.0.1", "10.0.0.1"),
            ("256.1.1.1", "10.0.0.1", "10.0.0.1"),
            ("_hidden", "10.0.0.1", "10.0.0.1"),
            ("1.1.1.1\t", "1.1.1.1", "1.1.1.1, 10.0.0.1"),
            ("::ffff:1.1.1.1", "1.1.1.1", "1.1.1.1, 10.0.0.1"),
        ];
        for (xff, client, chain) in cases {
            let h = map(&[("x-forwarded-for", xff)]);
            let f = forwarded_headers(ip("10.0.0.1"), false, None, &h, &lb());
            assert_eq!(f.client_ip, ip(client), "{xff:?}");
            assert_eq!(f.x_forwarded_for, *chain, "{xff:?}");
        }
        // Non-ASCII field stops the walk too.
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff").unwrap());
        let f = forwarded_headers(ip("10.0.0.1"), false, None, &h, &lb());
        assert_eq!(f.client_ip, ip("10.0.0.1"));
    }

    #[test]
    fn proto_and_host_validation_from_trusted_peer() {
        let peer = ip("10.0.0.1");
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (&[("x-forwarded-proto", "https")], "https", Some("own")),
            (&[("x-forwarded-proto", " http ")], "http", Some("own")),
            (&[("x-forwarded-proto", "ftp")], "http", Some("own")),
            (&[("x-forwarded-proto", "https, http")], "http", Some("own")),
            (
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-proto", "https"),
                ],
                "http",
                Some("own"),
            ),
            (
                &[("x-forwarded-host", "a.example:8080")],
                "http",
                Some("a.example:8080"),
            ),
            (
                &[("x-forwarded-host", "[2001:db8::1]:443")],
                "http",
                Some("[2001:db8::1]:443"),
            ),
            (&[("x-forwarded-host", "a b")], "http", Some("own")),
            (&[("x-forwarded-host", "a/b")], "http", Some("own")),
            (
                &[("x-forwarded-host", "a.example, b.example")],
                "http",
                Some("own"),
            ),
            (&[("x-forwarded-host", "user@a")], "http", Some("own")),
            (&[("x-forwarded-host", "a:99999")], "http", Some("own")),
            (&[("x-forwarded-host", "")], "http", Some("own")),
        ];
        for (pairs, proto, host) in cases {
            let f = forwarded_headers(peer, false, Some("own"), &map(pairs), &lb());
            assert_eq!(f.proto, *proto, "{pairs:?}");
            assert_eq!(f.host.as_deref(), *host, "{pairs:?}");
        }
    }

    #[test]
    fn host_validation() {
        for ok in [
            "a",
            "a.example",
            "A-B_c.example:1",
            "1.2.3.4",
            "1.2.3.4:65535",
            "[::1]",
            "[2001:db8::1]:80",
        ] {
            assert!(is_valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "a:",
            "a:0x50",
            "a:65536",
            "a:123456",
            "a:1:2",
            "::1",
            "[::1",
            "[::1]:",
            "[zz]",
            "[::1]x",
            "a b",
            "a/b",
            "a\\b",
            "a@b",
            "a?b",
            "a#b",
            "a,b",
            "caf\u{e9}",
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
        assert!(!is_valid_host(&"a".repeat(254)));
        // Own host falls back to the Host header, and is validated.
        let f = forwarded_headers(
            ip("1.1.1.1"),
            false,
            None,
            &map(&[("host", "bad host")]),
            &lb(),
        );
        assert_eq!(f.host, None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_and_untrusted_is_peer(
                xff in "[0-9a-f:.\\[\\], ]{0,40}",
                peer in any::<[u8; 4]>(),
                trusted_peer in any::<bool>(),
            ) {
                let mut h = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(&xff) {
                    h.insert(X_FORWARDED_FOR, v);
                }
                let peer = if trusted_peer {
                    IpAddr::V4(Ipv4Addr::new(10, peer[1], peer[2], peer[3]))
                } else {
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, peer[3]))
                };
                let f = forwarded_headers(peer, false, None, &h, &lb());
                prop_assert!(f.x_forwarded_for.ends_with(&peer.to_string()));
                if !trusted_peer {
                    prop_assert_eq!(f.client_ip, peer);
                    prop_assert_eq!(f.x_forwarded_for, peer.to_string());
                } else {
                    // Every forwarded entry parses back as an address.
                    for e in f.x_forwarded_for.split(", ") {
                        prop_assert!(e.parse::<IpAddr>().is_ok());
                    }
                    prop_assert!(f.x_forwarded_for.starts_with(&f.client_ip.to_string()));
                }
            }

            #[test]
            fn host_validator_never_panics(s in "\\PC{0,40}") {
                let _ = is_valid_host(&s);
                let _ = parse_xff_entry(&s);
            }
        }
    }
}
