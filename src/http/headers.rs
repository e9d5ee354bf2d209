//! Header sanitation: which client-sent headers must not reach the upstream.
//! Hop-by-hop headers belong to one connection; identity, forwarding and
//! routing-override headers are the proxy's to assert, so a client that sends
//! its own could impersonate a user, an address, or a different URL/method.

use ::http::header::{CONNECTION, UPGRADE};
use ::http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};

/// Hop-by-hop headers always removed (RFC 9110 §7.6.1, plus the legacy
/// `keep-alive` and `proxy-connection`). `transfer-encoding` and `upgrade`
/// are deliberately absent: framing is [`super::check_framing`]'s job and
/// upgrades are decided by [`headers_to_strip`] / the caller.
pub const HOP_BY_HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
];

/// Client-sent forwarding and client-address headers. The proxy computes its
/// own (see [`super::forwarded_headers`]) and adds them after stripping.
pub const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-server",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "front-end-https",
];

/// Headers some frameworks honour to override the URL or method they route
/// on (IIS/Symfony `X-Original-URL`, method overrides). Policy is decided on
/// the real path and method, so these would bypass it.
pub const ROUTING_OVERRIDE_HEADERS: &[&str] = &[
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-original-method",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Names a `Connection` header may not nominate for removal: they carry
/// framing or routing, so such nominations are ignored.
const NOT_NOMINATABLE: &[&str] = &["host", "content-length", "transfer-encoding"];

/// Headers that assert who the user is. Only the proxy may set them upstream,
/// so any client-sent copy is stripped. Matching is ASCII case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeaderRules {
    /// Exact header names.
    pub names: Vec<String>,
    /// Header name prefixes; empty prefixes are ignored.
    pub prefixes: Vec<String>,
    /// Forward headers whose names contain `_` (they are still stripped when
    /// their dashed form is one the proxy owns). Default `false`: dropped.
    pub allow_underscores: bool,
}

impl Default for IdentityHeaderRules {
    fn default() -> Self {
        Self {
            names: [
                "x-forwarded-user",
                "x-forwarded-email",
                "x-forwarded-preferred-username",
                "x-forwarded-groups",
                "x-remote-user",
                "x-remote-email",
                "x-user",
                "remote-user",
            ]
            .map(String::from)
            .to_vec(),
            prefixes: ["x-phigate-", "x-auth-"].map(String::from).to_vec(),
            allow_underscores: false,
        }
    }
}

impl IdentityHeaderRules {
    /// The defaults plus extra names and prefixes (e.g. from configuration).
    pub fn with_additional(
        names: impl IntoIterator<Item = String>,
        prefixes: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut rules = Self::default();
        rules.names.extend(names);
        rules.prefixes.extend(prefixes);
        rules
    }

    /// Whether `name` is an identity header under these rules.
    pub fn matches(&self, name: &HeaderName) -> bool {
        self.matches_str(name.as_str())
    }

    fn matches_str(&self, name: &str) -> bool {
        let name = name.as_bytes();
        self.names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
            || self.prefixes.iter().any(|p| {
                !p.is_empty()
                    && name
                        .get(..p.len())
                        .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes()))
            })
    }
}

/// Hop-by-hop headers present in `headers`: the fixed list
/// [`HOP_BY_HOP_HEADERS`] plus every header nominated by a `Connection`
/// value (except `host`, `content-length`, `transfer-encoding`, whose
/// nomination is ignored). `upgrade` and `transfer-encoding` are not in the
/// fixed list: the caller decides those. Only names present are returned,
/// each once.
pub fn hop_by_hop_headers(headers: &HeaderMap) -> Vec<HeaderName> {
    let nominated = nominated_headers(headers);
    headers
        .keys()
        .filter(|name| is_hop_by_hop(name, &nominated))
        .cloned()
        .collect()
}

/// Every client-sent header to remove before forwarding, each once:
/// hop-by-hop ([`hop_by_hop_headers`]), `upgrade`, identity headers per
/// `rules`, [`FORWARDING_HEADERS`] and [`ROUTING_OVERRIDE_HEADERS`].
///
/// When `allow_upgrade` is true and the request is a WebSocket upgrade
/// ([`is_websocket_upgrade`]), `upgrade` and `connection` are kept. The
/// caller still checks method and version (HTTP/1.1 `GET`).
///
/// Call it on the request as received, before adding the proxy's own
/// headers (a client's `Connection` could otherwise nominate them), and
/// after [`super::forwarded_headers`] has read the client's forwarding chain.
pub fn headers_to_strip(
    headers: &HeaderMap,
    rules: &IdentityHeaderRules,
    allow_upgrade: bool,
) -> Vec<HeaderName> {
    let keep_upgrade = allow_upgrade && is_websocket_upgrade(headers);
    let nominated = nominated_headers(headers);
    headers
        .keys()
        .filter(|name| {
            if keep_upgrade && (*name == CONNECTION || *name == UPGRADE) {
                return false;
            }
            // CGI, PHP, IIS and some Rack servers read `X_Remote_User` as
            // `X-Remote-User`: judge underscored names by their dashed form,
            // and drop them all unless the rules allow them (nginx's default).
            let s = name.as_str();
            let dashed = s.contains('_').then(|| s.replace('_', "-"));
            if dashed.is_some() && !rules.allow_underscores {
                return true;
            }
            let canonical = dashed.as_deref().unwrap_or(s);
            *name == UPGRADE
                || is_hop_by_hop(name, &nominated)
                || FORWARDING_HEADERS.contains(&canonical)
                || ROUTING_OVERRIDE_HEADERS.contains(&canonical)
                || rules.matches_str(canonical)
        })
        .cloned()
        .collect()
}

/// A WebSocket handshake: exactly one `Upgrade` header equal to `websocket`
/// (case-insensitive) and a `Connection` header listing `upgrade`.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let mut upgrade = headers.get_all(UPGRADE).iter();
    let websocket = match (upgrade.next(), upgrade.next()) {
        (Some(v), None) => trim_ows(v.as_bytes()).eq_ignore_ascii_case(b"websocket"),
        _ => false,
    };
    websocket && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

fn is_hop_by_hop(name: &HeaderName, nominated: &[HeaderName]) -> bool {
    HOP_BY_HOP_HEADERS.contains(&name.as_str()) || nominated.contains(name)
}

/// Header names listed in `Connection` values, minus framing headers and
/// tokens that are not header names.
fn nominated_headers(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for token in connection_tokens(headers) {
        let Ok(name) = HeaderName::from_bytes(token) else {
            continue;
        };
        if !NOT_NOMINATABLE.contains(&name.as_str()) && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Non-empty comma-separated tokens of all `Connection` values, OWS-trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// Strips spaces and tabs from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;

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

    fn names(v: Vec<HeaderName>) -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().map(|n| n.as_str().to_owned()).collect();
        v.sort();
        v
    }

    fn strip(pairs: &[(&str, &str)], allow_upgrade: bool) -> Vec<String> {
        names(headers_to_strip(
            &map(pairs),
            &IdentityHeaderRules::default(),
            allow_upgrade,
        ))
    }

    #[test]
    fn hop_by_hop_fixed_list() {
        let m = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "x"),
            ("proxy-authorization", "Basic x"),
            ("proxy-authenticate", "x"),
            ("te", "trailers"),
            ("trailer", "x-foo"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("host", "a"),
            ("accept", "*/*"),
        ]);
        assert_eq!(
            names(hop_by_hop_headers(&m)),
            [
                "connection",
                "keep-alive",
                "proxy-authenticate",
                "proxy-authorization",
                "proxy-connection",
                "te",
                "trailer"
            ]
        );
    }

    #[test]
    fn connection_nominations() {
        let m = map(&[
            ("connection", "close, X-Secret ,,  x-other\t"),
            ("connection", "x-third"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("x-third", "1"),
            ("x-kept", "1"),
        ]);
        assert_eq!(
            names(hop_by_hop_headers(&m)),
            ["connection", "x-other", "x-secret", "x-third"]
        );
    }

    #[test]
    fn framing_nominations_are_ignored() {
        let pairs = [
            (
                "connection",
                "host, content-length, transfer-encoding, Host",
            ),
            ("host", "example"),
            ("content-length", "3"),
            ("transfer-encoding", "chunked"),
        ];
        assert_eq!(names(hop_by_hop_headers(&map(&pairs))), ["connection"]);
        assert_eq!(strip(&pairs, false), ["connection"]);
    }

    #[test]
    fn invalid_tokens_are_ignored() {
        let m = map(&[("connection", "a b, (x), \"y\", ok"), ("ok", "1")]);
        assert_eq!(names(hop_by_hop_headers(&m)), ["connection", "ok"]);
    }

    #[test]
    fn identity_forwarding_and_overrides_stripped() {
        let got = strip(
            &[
                ("X-Forwarded-User", "alice"),
                ("x-forwarded-email", "a@x"),
                ("x-forwarded-preferred-username", "a"),
                ("x-forwarded-groups", "admin"),
                ("x-remote-user", "a"),
                ("x-remote-email", "a"),
                ("x-user", "a"),
                ("remote-user", "a"),
                ("X-Phigate-Subject", "a"),
                ("x-auth-request-user", "a"),
                ("forwarded", "for=1.2.3.4"),
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "h"),
                ("x-forwarded-port", "443"),
                ("x-real-ip", "1.2.3.4"),
                ("true-client-ip", "1.2.3.4"),
                ("x-original-url", "/admin"),
                ("x-http-method-override", "DELETE"),
                ("authorization", "Bearer t"),
                ("cookie", "a=b"),
                ("x-request-id", "r"),
                ("x-phigatex", "not a prefix match"),
                ("x-authorization", "not a prefix match"),
            ],
            false,
        );
        assert_eq!(
            got,
            [
                "forwarded",
                "remote-user",
                "true-client-ip",
                "x-auth-request-user",
                "x-forwarded-email",
                "x-forwarded-for",
                "x-forwarded-groups",
                "x-forwarded-host",
                "x-forwarded-port",
                "x-forwarded-preferred-username",
                "x-forwarded-proto",
                "x-forwarded-user",
                "x-http-method-override",
                "x-original-url",
                "x-phigate-subject",
                "x-real-ip",
                "x-remote-email",
                "x-remote-user",
                "x-user",
            ]
        );
    }

    #[test]
    fn custom_rules_case_insensitive() {
        let rules = IdentityHeaderRules::with_additional(
            ["X-Employee-ID".to_owned()],
            ["X-Corp-".to_owned(), String::new()],
        );
        let m = map(&[
            ("x-employee-id", "1"),
            ("x-corp-role", "1"),
            ("x-user", "1"),
            ("accept", "1"),
        ]);
        assert_eq!(
            names(headers_to_strip(&m, &rules, false)),
            ["x-corp-role", "x-employee-id", "x-user"]
        );
        let none = IdentityHeaderRules {
            names: vec![],
            prefixes: vec![],
            allow_underscores: false,
        };
        assert!(!none.matches(&HeaderName::from_static("x-user")));
    }

    #[test]
    fn websocket_upgrade() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            ("keep-alive", "1"),
            ("sec-websocket-key", "k"),
        ];
        assert!(is_websocket_upgrade(&map(&ws)));
        assert_eq!(strip(&ws, true), ["keep-alive"]);
        assert_eq!(strip(&ws, false), ["connection", "keep-alive", "upgrade"]);
    }

    #[test]
    fn not_websocket_upgrade() {
        for pairs in [
            &[("connection", "upgrade"), ("upgrade", "h2c")][..],
            &[("connection", "keep-alive"), ("upgrade", "websocket")],
            &[("upgrade", "websocket")],
            &[("connection", "upgrade")],
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "h2c"),
            ],
            &[("connection", "upgrade"), ("upgrade", "websocket, h2c")],
        ] {
            assert!(!is_websocket_upgrade(&map(pairs)), "{pairs:?}");
            let got = strip(pairs, true);
            for h in pairs.iter().map(|(k, _)| *k) {
                assert!(got.iter().any(|g| g == h), "{h} kept in {pairs:?}");
            }
        }
    }

    #[test]
    fn result_is_deduplicated() {
        let got = strip(
            &[
                ("connection", "x-forwarded-for, keep-alive, X-User, x-user"),
                ("connection", "upgrade"),
                ("x-forwarded-for", "1"),
                ("x-forwarded-for", "2"),
                ("keep-alive", "1"),
                ("x-user", "1"),
                ("upgrade", "foo"),
            ],
            false,
        );
        assert_eq!(
            got,
            [
                "connection",
                "keep-alive",
                "upgrade",
                "x-forwarded-for",
                "x-user"
            ]
        );
    }

    #[test]
    fn empty_map() {
        assert!(hop_by_hop_headers(&HeaderMap::new()).is_empty());
        assert!(strip(&[], true).is_empty());
    }

    #[test]
    fn underscored_names_are_judged_by_their_dashed_form() {
        let mut h = HeaderMap::new();
        for name in [
            "x_remote_user",
            "x_phigate_user",
            "x_forwarded_for",
            "x_original_url",
            "x_app_theme",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "v".parse().unwrap(),
            );
        }
        // Default: every underscored header is dropped.
        let strip = headers_to_strip(&h, &IdentityHeaderRules::default(), false);
        assert_eq!(strip.len(), 5);
        // Allowed: only those whose dashed form the proxy owns.
        let rules = IdentityHeaderRules {
            allow_underscores: true,
            ..IdentityHeaderRules::default()
        };
        let strip: Vec<String> = headers_to_strip(&h, &rules, false)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(strip.len(), 4, "{strip:?}");
        assert!(!strip.contains(&"x_app_theme".to_string()));
    }
}
