//! HTTP Strict Transport Security on a route's responses: which header a
//! route sends, and where. Browsers remember it and use only HTTPS for the
//! host afterwards, so a later link or typed `http://` cannot be downgraded
//! on the way. Sent only where the client's connection was TLS; a route that
//! sets HSTS owns the header (the upstream's is replaced, or removed on
//! cleartext), a route without it leaves the upstream's as it is.

use super::config::{HstsConfig, RouteConfig};
use crate::authn::config::AuthKind;
use http::header::{HeaderMap, HeaderValue, STRICT_TRANSPORT_SECURITY};

/// The shortest `max-age` the browsers' preload list accepts (one year).
pub const PRELOAD_MIN_AGE_SECS: u64 = 31_536_000;

/// The header a route sends, or `None` when phigate leaves HSTS alone.
/// Browser routes send the default policy unless they turn it off.
pub fn for_route(r: &RouteConfig) -> Option<HeaderValue> {
    let policy = match &r.hsts {
        Some(c) => c.clone(),
        None if r.auth.kind == AuthKind::Browser => HstsConfig::default(),
        None => return None,
    };
    policy.enabled.then(|| header_value(&policy))
}

/// `max-age=N[; includeSubDomains][; preload]`.
pub fn header_value(c: &HstsConfig) -> HeaderValue {
    let mut v = format!("max-age={}", c.max_age.get().as_secs());
    if c.include_subdomains {
        v.push_str("; includeSubDomains");
    }
    if c.preload {
        v.push_str("; preload");
    }
    // Digits and fixed ASCII only: always a valid header value.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
}

/// Sets the route's header on a response the client got over TLS (`secure`),
/// replacing the upstream's; removes it from a cleartext one.
pub fn apply(headers: &mut HeaderMap, hsts: Option<&HeaderValue>, secure: bool) {
    match hsts {
        None => {}
        Some(v) if secure => {
            headers.insert(STRICT_TRANSPORT_SECURITY, v.clone());
        }
        Some(_) => {
            headers.remove(STRICT_TRANSPORT_SECURITY);
        }
    }
}

/// Problems with a route's `hsts`, as (dotted key, message).
pub fn check(c: &HstsConfig, key: &str, out: &mut Vec<(String, String)>) {
    let age = c.max_age.get();
    if age.subsec_nanos() != 0 {
        out.push((
            format!("{key}.max_age"),
            format!("{} must be whole seconds", c.max_age),
        ));
    }
    if c.preload && !(c.include_subdomains && age.as_secs() >= PRELOAD_MIN_AGE_SECS) {
        out.push((
            format!("{key}.preload"),
            "the browsers' preload list takes only include_subdomains = true and max_age of at least \"365d\"; preloading is hard to undo, so set it only for a whole domain that is HTTPS everywhere".into(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::HumanDuration;

    fn route(toml_text: &str) -> RouteConfig {
        toml::from_str(&format!(
            "name = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n{toml_text}"
        ))
        .unwrap()
    }

    #[test]
    fn browser_routes_get_hsts_by_default_api_routes_do_not() {
        let v = for_route(&route("auth = { kind = \"browser\" }"));
        assert_eq!(v.unwrap(), "max-age=31536000");
        assert_eq!(for_route(&route("")), None);
        assert_eq!(for_route(&route("auth = { kind = \"public\" }")), None);
        let off = route("auth = { kind = \"browser\" }\nhsts = { enabled = false }");
        assert_eq!(for_route(&off), None);
        let api = route("hsts = { max_age = \"730d\", include_subdomains = true, preload = true }");
        assert_eq!(
            for_route(&api).unwrap(),
            "max-age=63072000; includeSubDomains; preload"
        );
        assert!(toml::from_str::<RouteConfig>(
            "name = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\nhsts = { max_age = \"1y\", subdomains = true }"
        )
        .is_err());
    }

    #[test]
    fn the_routes_header_replaces_the_upstreams_and_never_goes_over_cleartext() {
        let ours = HeaderValue::from_static("max-age=600");
        let upstream = || {
            let mut h = HeaderMap::new();
            h.append(
                STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=1"),
            );
            h.append(
                STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=2"),
            );
            h
        };
        let mut h = upstream();
        apply(&mut h, Some(&ours), true);
        let all: Vec<_> = h.get_all(STRICT_TRANSPORT_SECURITY).iter().collect();
        assert_eq!(all, [&ours]);
        let mut h = upstream();
        apply(&mut h, Some(&ours), false);
        assert!(h.get(STRICT_TRANSPORT_SECURITY).is_none());
        let mut h = upstream();
        apply(&mut h, None, true);
        assert_eq!(h.get_all(STRICT_TRANSPORT_SECURITY).iter().count(), 2);
    }

    #[test]
    fn preload_needs_subdomains_and_a_year() {
        let mut out = Vec::new();
        let c = HstsConfig {
            preload: true,
            ..HstsConfig::default()
        };
        check(&c, "routes[0].hsts", &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, "routes[0].hsts.preload");
        out.clear();
        let c = HstsConfig {
            preload: true,
            include_subdomains: true,
            max_age: HumanDuration::secs(PRELOAD_MIN_AGE_SECS),
            ..HstsConfig::default()
        };
        check(&c, "k", &mut out);
        check(
            &HstsConfig {
                max_age: HumanDuration::millis(1500),
                ..HstsConfig::default()
            },
            "k",
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, "k.max_age");
    }
}
