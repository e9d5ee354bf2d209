//! Route matching: (host, normalized path) → the route that serves it.
//!
//! Pure and generic over the route's target so it is tested without sockets.
//! Longest path prefix wins, matched on whole segments; a request no route
//! claims is never forwarded.

/// A host pattern: exact name, `*.suffix`, or any host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// Matches names ending in `.suffix` (one or more labels before it).
    Wildcard(String),
}

impl HostPattern {
    fn parse(s: &str) -> HostPattern {
        let s = s.to_ascii_lowercase();
        match s.strip_prefix("*.") {
            Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
            None => HostPattern::Exact(s),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

/// One entry of the routing table.
#[derive(Debug)]
pub struct RouteEntry<T> {
    hosts: Vec<HostPattern>,
    prefix: String,
    pub target: T,
}

/// The routing table.
#[derive(Debug)]
pub struct Router<T> {
    /// Sorted by prefix length, longest first; host-specific before any-host.
    entries: Vec<RouteEntry<T>>,
}

impl<T> Router<T> {
    /// Builds the table from (hosts, path prefix, target) triples.
    pub fn new(routes: impl IntoIterator<Item = (Vec<String>, String, T)>) -> Router<T> {
        let mut entries: Vec<RouteEntry<T>> = routes
            .into_iter()
            .map(|(hosts, prefix, target)| RouteEntry {
                hosts: hosts.iter().map(|h| HostPattern::parse(h)).collect(),
                prefix: trim_trailing_slash(&prefix).to_string(),
                target,
            })
            .collect();
        entries.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(b.hosts.is_empty().cmp(&a.hosts.is_empty()).reverse())
        });
        Router { entries }
    }

    /// The route for a request. `host` must already be lowercased and
    /// stripped of its port (see [`request_host`]); `path` normalized.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|e| {
                (e.hosts.is_empty() || host.is_some_and(|h| e.hosts.iter().any(|p| p.matches(h))))
                    && prefix_matches(&e.prefix, path)
            })
            .map(|e| &e.target)
    }

    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.target)
    }
}

fn trim_trailing_slash(p: &str) -> &str {
    if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    }
}

/// Segment-aware prefix match: `/fhir` matches `/fhir`, `/fhir/`, `/fhir/x`, not `/fhirx`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The path as the router reads it: `;params` removed from every segment and
/// empty segments collapsed. Servlet containers serve `/a;x/b` as `/a/b`,
/// and many servers merge `//`; routing on the same reading keeps the router
/// and the upstream from disagreeing about which prefix a request is under.
/// Borrowed when there is nothing to remove (the common case).
pub fn routing_view(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') && !path.contains("//") {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        let name = segment.split(';').next().unwrap_or("");
        if name.is_empty() && segment.is_empty() {
            continue;
        }
        out.push('/');
        out.push_str(name);
    }
    if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    if out.is_empty() {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

/// Why the request's host cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHost;

/// Extracts the host name from a `Host`/`:authority` value: lowercased,
/// port removed, validated. `None` input means no host was sent.
pub fn request_host(raw: Option<&[u8]>) -> Result<Option<String>, BadHost> {
    let Some(raw) = raw else { return Ok(None) };
    let s = std::str::from_utf8(raw).map_err(|_| BadHost)?;
    if s.is_empty() || s.len() > 255 {
        return Err(BadHost);
    }
    let host = if let Some(v6) = s.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or(BadHost)?;
        if !(rest.is_empty() || valid_port(rest.strip_prefix(':').ok_or(BadHost)?)) {
            return Err(BadHost);
        }
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(BadHost);
        }
        return Ok(Some(h.to_ascii_lowercase()));
    } else {
        match s.split_once(':') {
            Some((h, port)) if valid_port(port) => h,
            Some(_) => return Err(BadHost),
            None => s,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(BadHost);
    }
    Ok(Some(host.to_ascii_lowercase()))
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new(vec![
            (vec![], "/".to_string(), "default"),
            (vec![], "/fhir".to_string(), "fhir"),
            (vec![], "/fhir/Binary/".to_string(), "binary"),
            (
                vec!["ehr.example.org".into()],
                "/fhir".to_string(),
                "ehr-fhir",
            ),
            (
                vec!["*.legacy.example".into()],
                "/app".to_string(),
                "legacy",
            ),
        ])
    }

    #[test]
    fn longest_prefix_on_segments() {
        let r = router();
        assert_eq!(r.route(None, "/fhir/Patient/1"), Some(&"fhir"));
        assert_eq!(r.route(None, "/fhir"), Some(&"fhir"));
        assert_eq!(r.route(None, "/fhirx"), Some(&"default"));
        assert_eq!(r.route(None, "/fhir/Binary/7"), Some(&"binary"));
        assert_eq!(r.route(None, "/fhir/Binaryx"), Some(&"fhir"));
    }

    #[test]
    fn host_specific_beats_any_host() {
        let r = router();
        assert_eq!(
            r.route(Some("ehr.example.org"), "/fhir/x"),
            Some(&"ehr-fhir")
        );
        assert_eq!(r.route(Some("other.org"), "/fhir/x"), Some(&"fhir"));
        assert_eq!(r.route(Some("a.legacy.example"), "/app/x"), Some(&"legacy"));
        assert_eq!(r.route(Some("a.b.legacy.example"), "/app"), Some(&"legacy"));
        assert_eq!(r.route(Some("legacy.example"), "/app"), Some(&"default"));
        assert_eq!(r.route(Some("xlegacy.example"), "/app"), Some(&"default"));
    }

    #[test]
    fn unrouted_is_none() {
        let r: Router<&str> = Router::new(vec![(vec![], "/fhir".into(), "fhir")]);
        assert_eq!(r.route(None, "/"), None);
        assert_eq!(r.route(None, "/admin"), None);
        let only_host: Router<&str> =
            Router::new(vec![(vec!["a.example".into()], "/".into(), "a")]);
        assert_eq!(only_host.route(None, "/"), None);
        assert_eq!(only_host.route(Some("b.example"), "/"), None);
    }

    #[test]
    fn routing_view_matches_servlet_and_merge_slashes_readings() {
        assert_eq!(routing_view("/fhir/Patient/1"), "/fhir/Patient/1");
        assert_eq!(routing_view("/fhir/Binary;x/7"), "/fhir/Binary/7");
        assert_eq!(routing_view("/app;jsessionid=ab/page"), "/app/page");
        assert_eq!(routing_view("/app//admin/x"), "/app/admin/x");
        assert_eq!(routing_view("/a/b/"), "/a/b/");
        assert_eq!(routing_view("/a;x/"), "/a/");
        assert_eq!(routing_view("//"), "/");
        let r = router();
        assert_eq!(
            r.route(None, &routing_view("/fhir/Binary;x/7")),
            Some(&"binary")
        );
    }

    #[test]
    fn hosts_are_validated() {
        assert_eq!(
            request_host(Some(b"Example.ORG:8443")),
            Ok(Some("example.org".into()))
        );
        assert_eq!(request_host(Some(b"[::1]:443")), Ok(Some("::1".into())));
        assert_eq!(
            request_host(Some(b"example.org.")),
            Ok(Some("example.org".into()))
        );
        assert_eq!(request_host(None), Ok(None));
        for bad in [
            &b""[..],
            b"a b",
            b"a/b",
            b"a:99999",
            b"a:",
            b"a:1:2",
            b"[::1",
            b"[zz]",
            b"a@b",
            b"\xff",
        ] {
            assert_eq!(request_host(Some(bad)), Err(BadHost), "{bad:?}");
        }
    }
}
