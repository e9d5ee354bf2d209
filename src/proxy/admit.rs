//! Admission: is this request well-formed and unambiguous, and which route
//! serves it? Produces the [`Admission`] every later stage reads.
//!
//! On HTTP/1 framing and the target are judged on the head's bytes
//! ([`RawHead`]); on HTTP/2 hyper's parsed view is the request (there is no
//! other framing to disagree with).

use super::router::{request_host, routing_view, Router};
use super::routes::{Hygiene, Route};
use crate::http::{
    check_framing_for_version, forwarded_headers, normalize_path, ForwardedFor, NormalizedPath,
    PathRejection, RawHead,
};
use crate::server::conn::ConnInfo;
use http::request::Parts;
use http::Method;
use std::net::IpAddr;
use std::sync::Arc;

/// What admission established about a routed request.
#[derive(Debug)]
pub struct Admission {
    pub route: Arc<Route>,
    /// The one normalized view of the target: routing, policy mapping and
    /// the upstream all see it.
    pub path: NormalizedPath,
    /// The client and the forwarding headers for the upstream, from the
    /// trusted proxy chain.
    pub forwarded: ForwardedFor,
    /// The client's address: the trusted chain's client, else the peer.
    pub client_ip: IpAddr,
}

/// phigate's own endpoints under `/.phigate/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Jwks,
    Login,
    Callback,
    Logout,
    Userinfo,
}

/// Admission's answer.
#[derive(Debug)]
pub enum Admitted {
    Route(Admission),
    Reserved(Reserved, IpAddr),
}

/// A request refused by hygiene or routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    /// Close the connection after answering.
    pub close: bool,
}

fn reject(status: u16, reason: &'static str) -> Rejection {
    Rejection {
        status,
        reason,
        // After a framing or size error the rest of the stream cannot be
        // trusted: close it.
        close: matches!(status, 400 | 413 | 431),
    }
}

pub const RESERVED_PREFIX: &str = "/.phigate/";

/// Admits a request: hygiene, then routing.
pub fn admit(
    hygiene: &Hygiene,
    router: &Router<Arc<Route>>,
    head: &Parts,
    raw: Option<&RawHead>,
    conn: &ConnInfo,
) -> Result<Admitted, (Rejection, Option<Arc<Route>>)> {
    let h = hygiene;
    let plain = |r| (r, None);
    // Two Host fields, as sent (HTTP/1) or as parsed (any version).
    if raw.is_some_and(|r| r.hosts > 1)
        || head.headers.get_all(http::header::HOST).iter().count() > 1
    {
        return Err(plain(reject(400, "duplicate_host")));
    }
    if head.headers.len() > h.max_headers {
        return Err(plain(reject(431, "too_many_headers")));
    }
    let header_bytes: usize = head
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > h.max_header_bytes {
        return Err(plain(reject(431, "header_too_large")));
    }
    let framing = match raw {
        Some(r) => r.framing,
        None => check_framing_for_version(head.version, &head.headers),
    };
    if let Err(e) = framing {
        return Err(plain(reject(400, e.reason())));
    }
    if head.method == Method::CONNECT || head.method == Method::TRACE {
        return Err(plain(reject(405, "method_not_allowed")));
    }
    let target: &[u8] = match raw {
        Some(r) => &r.target,
        None => head
            .uri
            .path_and_query()
            .map(|p| p.as_str().as_bytes())
            .unwrap_or(b"/"),
    };
    if target.len() > h.max_uri {
        return Err(plain(reject(414, "uri_too_long")));
    }
    let host = request_host(host_bytes(head)).map_err(|_| plain(reject(400, "bad_host")))?;
    // Normalize strictly; a `//` is tolerated only if the route that claims
    // the request allows it.
    let (path, double_slash) = match normalize_path(target, &h.strict_path) {
        Ok(p) => (p, false),
        Err(PathRejection::DoubleSlash) => (
            normalize_path(target, &h.lenient_path).map_err(|e| plain(reject(400, e.reason())))?,
            true,
        ),
        Err(e) => return Err(plain(reject(400, e.reason()))),
    };
    let host_str = host_bytes(head).and_then(|b| std::str::from_utf8(b).ok());
    let forwarded = || {
        forwarded_headers(
            conn.peer.ip(),
            conn.tls,
            host_str,
            &head.headers,
            &h.trusted,
        )
    };
    // phigate's own endpoints come before every route and are never forwarded.
    if let Some(rest) = path.path().strip_prefix(RESERVED_PREFIX) {
        let which = match (rest, &head.method) {
            ("jwks.json", &Method::GET) => Reserved::Jwks,
            ("login", &Method::GET) => Reserved::Login,
            ("callback", &Method::GET) => Reserved::Callback,
            ("logout", &Method::GET | &Method::POST) => Reserved::Logout,
            ("userinfo", &Method::GET) => Reserved::Userinfo,
            _ => return Err(plain(reject(404, "reserved_path"))),
        };
        return Ok(Admitted::Reserved(which, forwarded().client_ip));
    }
    let route = router
        .route(host.as_deref(), &routing_view(path.path()))
        .cloned();
    if double_slash && !route.as_ref().is_some_and(|r| r.allow_double_slash) {
        return Err(plain(reject(400, PathRejection::DoubleSlash.reason())));
    }
    let Some(route) = route else {
        return Err(plain(reject(404, "no_route")));
    };
    if let Some(len) =
        header_str(head, http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok())
    {
        if len > route.max_body {
            return Err((reject(413, "body_too_large"), Some(route)));
        }
    }
    let forwarded = forwarded();
    Ok(Admitted::Route(Admission {
        route,
        path,
        client_ip: forwarded.client_ip,
        forwarded,
    }))
}

/// The request's host: the `Host` header, else the HTTP/2 `:authority`.
pub fn host_bytes(head: &Parts) -> Option<&[u8]> {
    head.headers
        .get(http::header::HOST)
        .map(|v| v.as_bytes())
        .or_else(|| head.uri.authority().map(|a| a.as_str().as_bytes()))
}

/// A header's value, when it is visible ASCII.
pub fn header_str(head: &Parts, name: http::header::HeaderName) -> Option<&str> {
    head.headers.get(name).and_then(|v| v.to_str().ok())
}
