//! phigate's own endpoints under `/.phigate/`: the assertion keys and the
//! browser sign-in flow (login, callback, logout, userinfo). They are
//! answered here and never forwarded.

use super::admit::Reserved;
use super::identify::REALM_CHALLENGE;
use super::respond::{self, Generated};
use crate::authn::browser::{parse_query, safe_return_path, LoginError};
use crate::authn::session::SessionLimits;
use crate::authn::{AuthEventKind, Authenticator, RequestFacts};
use http::request::Parts;

/// The sign-out confirmation: a same-origin form, not framable, no scripts.
fn logout_page() -> Generated {
    let body = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign out</title></head>\
<body><form method=\"post\" action=\"/.phigate/logout\"><p>Sign out of this application?</p>\
<button id=\"logout-submit\" type=\"submit\">Sign out</button></form></body></html>";
    let mut resp = respond::html(200, body);
    let h = resp.headers_mut();
    h.insert(
        "content-security-policy",
        // No form-action: the sign-out redirects on to the identity provider.
        http::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert("x-frame-options", http::HeaderValue::from_static("DENY"));
    resp
}

/// Whether a state-changing request comes from this site: the browser's
/// `Sec-Fetch-Site` says `same-origin`, or (older browsers) its `Origin`
/// names this scheme and the host the request was sent to (default ports
/// ignored). Neither: refused.
fn same_origin(head: &Parts, tls: bool) -> bool {
    let get = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
    match get("sec-fetch-site") {
        Some(site) => site == "same-origin",
        None => {
            let host = super::admit::host_bytes(head).and_then(|h| std::str::from_utf8(h).ok());
            let (scheme, default_port) = if tls {
                ("https", ":443")
            } else {
                ("http", ":80")
            };
            let bare = |a: &str| {
                a.strip_suffix(default_port)
                    .unwrap_or(a)
                    .to_ascii_lowercase()
            };
            match (get("origin"), host) {
                (Some(origin), Some(host)) => origin
                    .split_once("://")
                    .is_some_and(|(s, authority)| s == scheme && bare(authority) == bare(host)),
                _ => false,
            }
        }
    }
}
use std::net::IpAddr;

/// Answers a reserved endpoint; returns the response and, for refusals,
/// the reason recorded at the exit.
pub async fn serve(
    authn: &Authenticator,
    limits: SessionLimits,
    which: Reserved,
    head: &Parts,
    client_ip: IpAddr,
    tls: bool,
    request_id: &str,
) -> (Generated, Option<&'static str>) {
    let facts = RequestFacts {
        request_id,
        route: ".phigate",
        client_ip: Some(client_ip),
        path: "",
    };
    let cookie = head.headers.get(http::header::COOKIE).map(|v| v.as_bytes());
    let query = head.uri.query().unwrap_or("");
    let browser = authn.browser.as_ref();
    let now = super::unix_now();
    match (which, browser) {
        (Reserved::Jwks, _) => (
            respond::json(200, authn.signer.jwks(), "public, max-age=300"),
            None,
        ),
        (_, None) => (respond::error(404), Some("reserved_path")),
        (Reserved::Login, Some(b)) => {
            let rd = parse_query(query)
                .into_iter()
                .find(|(k, _)| k == "rd")
                .and_then(|(_, v)| safe_return_path(&v))
                .unwrap_or_else(|| "/".into());
            match b.start_login(&rd, None, false, Some(client_ip)).await {
                Ok(url) => (respond::redirect(&url, None), None),
                Err(e) => {
                    authn.emit(&facts, AuthEventKind::LoginFailed, e.reason(), None);
                    match e {
                        LoginError::TooMany => {
                            (super::identify::too_many(), Some("sign_in_rate_limited"))
                        }
                        _ => (respond::error(503), Some("identity_provider_unavailable")),
                    }
                }
            }
        }
        (Reserved::Callback, Some(b)) => match b.callback(query, now).await {
            Ok(done) => {
                // A fresh session replaces whatever the browser had.
                if let Some(old) = cookie {
                    b.forget(old).await;
                }
                authn.emit(
                    &facts,
                    AuthEventKind::LoginSucceeded,
                    "code_flow",
                    Some(&done.principal),
                );
                (
                    respond::redirect(&done.return_to, Some(&done.set_cookie)),
                    None,
                )
            }
            Err(e) => {
                authn.emit(&facts, AuthEventKind::LoginFailed, e.reason(), None);
                let status = if matches!(e, LoginError::Provider(_)) {
                    503
                } else {
                    400
                };
                (respond::error(status), Some("login_failed"))
            }
        },
        // A GET changes nothing: a link or an <img> on another site must not
        // sign anyone out. It shows a form that POSTs back here.
        (Reserved::Logout, Some(_)) if head.method == http::Method::GET => (logout_page(), None),
        (Reserved::Logout, Some(_)) if !same_origin(head, tls) => {
            (respond::error(403), Some("logout_cross_site"))
        }
        (Reserved::Logout, Some(b)) => {
            let principal = match cookie {
                Some(c) => b.peek(c).await,
                None => None,
            };
            let (clear, target) = b.logout(cookie).await;
            authn.emit(&facts, AuthEventKind::Logout, "user", principal.as_deref());
            (respond::redirect(&target, Some(&clear)), None)
        }
        (Reserved::Userinfo, Some(b)) => match b.session(cookie, limits, now).await {
            Ok(Some(s)) => {
                let p = &s.principal;
                let body = serde_json::json!({
                    "sub": p.id, "idp": p.issuer, "name": p.display_name,
                    "email": p.email, "roles": p.roles, "mfa": p.mfa,
                    "auth_time": p.auth_time,
                });
                // Who the user is: never for a shared cache, nor kept after
                // sign-out.
                (respond::json(200, &body, "private, no-store"), None)
            }
            _ => (
                respond::error_with(
                    401,
                    &[(http::header::WWW_AUTHENTICATE, REALM_CHALLENGE.into())],
                ),
                Some("unauthenticated"),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::post("/.phigate/logout").header("host", "app.example:443");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_this_site_may_sign_out() {
        assert!(same_origin(
            &head(&[("sec-fetch-site", "same-origin")]),
            true
        ));
        for site in ["cross-site", "same-site", "none"] {
            assert!(
                !same_origin(&head(&[("sec-fetch-site", site)]), true),
                "{site}"
            );
        }
        assert!(same_origin(
            &head(&[("origin", "https://app.example")]),
            true
        ));
        assert!(
            !same_origin(&head(&[("origin", "http://app.example")]), true),
            "scheme"
        );
        assert!(!same_origin(
            &head(&[("origin", "https://evil.example")]),
            true
        ));
        assert!(!same_origin(&head(&[("origin", "null")]), true));
        assert!(!same_origin(&head(&[]), true), "no evidence at all");
    }
}
