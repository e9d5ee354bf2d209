//! What an upstream learns about the principal: identity headers and the
//! signed assertion, prepared once per credential and audience and reused
//! until the assertion nears its expiry; and phigate's own session cookie,
//! which never reaches an upstream.

use super::routes::Route;
use super::PoolError;
use crate::authn::assertion::REUSE_MARGIN;
use crate::authn::{Authenticator, Principal};
use crate::http::cookies;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// Header names for identity injection, resolved once.
pub struct IdentityNames {
    user: HeaderName,
    name: HeaderName,
    email: HeaderName,
    roles: HeaderName,
    assertion: HeaderName,
    max_bytes: usize,
}

impl IdentityNames {
    fn all(&self) -> [&HeaderName; 5] {
        [
            &self.user,
            &self.name,
            &self.email,
            &self.roles,
            &self.assertion,
        ]
    }
}

/// Identity header values ready to send, and when the assertion expires.
pub struct IdentityBundle {
    headers: Vec<(HeaderName, HeaderValue)>,
    exp: u64,
}

/// Prepares and caches identity headers.
pub struct IdentityHeaders {
    names: IdentityNames,
    /// (credential, audience) → prepared identity headers.
    cache: moka::sync::Cache<([u8; 32], Arc<str>), Arc<IdentityBundle>>,
}

/// The assertion could not be signed: the request must not go upstream.
#[derive(Debug)]
pub struct SigningFailed;

impl IdentityHeaders {
    pub fn from_config(c: &crate::authn::config::IdentityHeadersConfig) -> Result<Self, PoolError> {
        let name = |s: &str| {
            HeaderName::from_bytes(s.as_bytes()).map_err(|_| PoolError {
                pool: "identity_headers".into(),
                reason: format!("{s:?} is not a header name"),
            })
        };
        Ok(IdentityHeaders {
            names: IdentityNames {
                user: name(&c.user)?,
                name: name(&c.name)?,
                email: name(&c.email)?,
                roles: name(&c.roles)?,
                assertion: name(&c.assertion)?,
                max_bytes: c.max_header_bytes.max(64),
            },
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(crate::authn::assertion::ASSERTION_TTL)
                .build(),
        })
    }

    /// Sets the identity headers for `principal` on an upstream request.
    pub fn inject(
        &self,
        authn: &Authenticator,
        headers: &mut HeaderMap,
        route: &Route,
        principal: &Principal,
        credential: [u8; 32],
        now: u64,
    ) -> Result<(), SigningFailed> {
        let key = (credential, route.auth.audience.clone());
        let bundle = match self.cache.get(&key) {
            Some(b) if b.exp > now + REUSE_MARGIN => b,
            _ => {
                let b = Arc::new(
                    self.bundle(authn, route, principal, now)
                        .ok_or(SigningFailed)?,
                );
                self.cache.insert(key, b.clone());
                b
            }
        };
        // Every identity header is phigate's: none the principal lacks may
        // survive from anywhere.
        for name in self.names.all() {
            headers.remove(name);
        }
        for (name, value) in &bundle.headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(())
    }

    fn bundle(
        &self,
        authn: &Authenticator,
        route: &Route,
        p: &Principal,
        now: u64,
    ) -> Option<IdentityBundle> {
        let names = &self.names;
        let cap = names.max_bytes;
        let value = |s: String| HeaderValue::from_str(&s).ok();
        let mut headers = vec![(names.user.clone(), value(header_safe(&p.id, cap))?)];
        if let Some(n) = &p.display_name {
            headers.push((names.name.clone(), value(header_safe(n, cap))?));
        }
        if let Some(e) = &p.email {
            headers.push((names.email.clone(), value(header_safe(e, cap))?));
        }
        if !p.roles.is_empty() {
            headers.push((names.roles.clone(), value(joined_within(&p.roles, cap))?));
        }
        let (assertion, exp) = authn.signer.assertion(p, &route.auth.audience, now)?;
        headers.push((names.assertion.clone(), value(assertion)?));
        Some(IdentityBundle { headers, exp })
    }
}

/// A claim value fit for a header: control characters become spaces and it
/// is cut (at a character boundary) to `cap` bytes.
fn header_safe(v: &str, cap: usize) -> String {
    let mut out = String::with_capacity(v.len().min(cap));
    for c in v.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > cap {
            break;
        }
        out.push(c);
    }
    out
}

/// Comma-joined values, stopping before the one that would exceed `cap`.
fn joined_within(values: &[String], cap: usize) -> String {
    let mut out = String::new();
    for v in values {
        let v = header_safe(&v.replace(',', " "), cap);
        let extra = if out.is_empty() { v.len() } else { v.len() + 1 };
        if out.len() + extra > cap {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&v);
    }
    out
}

/// Removes phigate's own session cookie from the request's `Cookie`
/// header(s): the app has no use for it and must never be able to replay it.
/// Works on the bytes, so no value (non-ASCII, invalid UTF-8) makes it give
/// up; every `Cookie` field is rewritten (HTTP/2 may split them).
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    if !headers.contains_key(http::header::COOKIE) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(http::header::COOKIE) {
        for pair in cookies::pairs(value.as_bytes()) {
            if cookies::names(pair, name) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    headers.remove(http::header::COOKIE);
    if !kept.is_empty() {
        // The kept bytes came from valid header values, minus separators.
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            headers.insert(http::header::COOKIE, v);
        }
    }
}

/// Removes `Set-Cookie` fields an upstream sent for phigate's own cookie.
pub fn strip_set_cookie(headers: &mut HeaderMap, name: &str) {
    let ours = |v: &HeaderValue| cookies::names(v.as_bytes(), name);
    if !headers.get_all(http::header::SET_COOKIE).iter().any(ours) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter(|v| !ours(v))
        .cloned()
        .collect();
    headers.remove(http::header::SET_COOKIE);
    for v in kept {
        headers.append(http::header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_never_survives_whatever_the_bytes() {
        let name = "__Host-phigate";
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"lang=fr\xc3\xa9; __Host-phigate=SECRET; a=b").unwrap(),
        );
        h.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"__Host-phigate=SECRET2").unwrap(),
        );
        strip_cookie(&mut h, name);
        let all: Vec<&[u8]> = h
            .get_all(http::header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(all, vec![&b"lang=fr\xc3\xa9; a=b"[..]]);
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("__Host-phigate=x"),
        );
        strip_cookie(&mut h, name);
        assert!(h.get(http::header::COOKIE).is_none());
    }

    #[test]
    fn an_upstream_cannot_set_the_session_cookie() {
        let mut h = HeaderMap::new();
        h.append(http::header::SET_COOKIE, HeaderValue::from_static("app=1"));
        h.append(
            http::header::SET_COOKIE,
            HeaderValue::from_static("__Host-phigate=fixed; Path=/"),
        );
        strip_set_cookie(&mut h, "__Host-phigate");
        let all: Vec<&str> = h
            .get_all(http::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(all, vec!["app=1"]);
        // A browser trims the name: ` __Host-phigate =x` would set it too.
        let mut h = HeaderMap::new();
        h.append(
            http::header::SET_COOKIE,
            HeaderValue::from_static("  __Host-phigate =fixed; Path=/"),
        );
        strip_set_cookie(&mut h, "__Host-phigate");
        assert!(h.get(http::header::SET_COOKIE).is_none());
    }

    #[test]
    fn a_spaced_session_cookie_is_stripped_too() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; __Host-phigate = SECRET; b=2"),
        );
        strip_cookie(&mut h, "__Host-phigate");
        assert_eq!(h[http::header::COOKIE], "a=1; b=2");
    }
}
