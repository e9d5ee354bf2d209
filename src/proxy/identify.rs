//! Authentication glue: turns the request's credentials into an
//! [`Identity`], or into the answer the client needs (401, step-up, a
//! sign-in redirect, 503 when the identity provider cannot be reached).

use super::admit::Admission;
use super::respond::{self, Stop};
use crate::authn::mtls::ClientCertIdentity;
use crate::authn::{AuthOutcome, Authenticator, Credentials, Principal, RequestFacts};
use http::request::Parts;
use std::sync::Arc;

/// Who is asking, for every later stage.
#[derive(Debug, Clone)]
pub struct Identity {
    pub principal: Arc<Principal>,
    /// Hash of the credential that authenticated the request (never the
    /// credential itself).
    pub credential: [u8; 32],
}

/// The challenge every 401 carries.
pub const REALM_CHALLENGE: &str = "Bearer realm=\"phigate\"";

/// Authentication's answer.
pub type Identified = Result<Identity, Stop>;

/// Every `Cookie` field joined as one (HTTP/2 clients may split them), or
/// `None` without cookies.
pub fn joined_cookies(headers: &http::HeaderMap) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut all = headers.get_all(http::header::COOKIE).iter();
    let first = all.next()?;
    let Some(second) = all.next() else {
        return Some(std::borrow::Cow::Borrowed(first.as_bytes()));
    };
    let mut joined = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(all) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    Some(std::borrow::Cow::Owned(joined))
}

/// Authenticates the request on a path of its route that is not public.
pub async fn identify(
    authn: &Authenticator,
    head: &Parts,
    admission: &Admission,
    client_cert: Option<&ClientCertIdentity>,
    request_id: &str,
) -> Identified {
    let route = &admission.route;
    let facts = RequestFacts {
        request_id,
        route: &route.name,
        client_ip: Some(admission.client_ip),
        path: admission.path.path(),
    };
    let header = |name| {
        head.headers
            .get(name)
            .map(|v: &http::HeaderValue| v.as_bytes())
    };
    let creds = Credentials {
        client_cert,
        authorization: header(http::header::AUTHORIZATION),
        cookie: header(http::header::COOKIE),
        wants_page: wants_page(head),
        target: &admission.path,
    };
    match authn
        .authenticate(&route.auth, &creds, &facts, super::unix_now())
        .await
    {
        // The caller only asks about paths that are not public: a "public"
        // answer here would skip authorization, so it is refused.
        AuthOutcome::Public => Err(Stop::new(
            respond::error_with(
                401,
                &[(http::header::WWW_AUTHENTICATE, REALM_CHALLENGE.into())],
            ),
            "unauthenticated",
        )),
        AuthOutcome::Authenticated {
            principal,
            credential,
        } => Ok(Identity {
            principal,
            credential,
        }),
        AuthOutcome::Challenge(www) => Err(Stop::new(
            respond::error_with(401, &[(http::header::WWW_AUTHENTICATE, www)]),
            "unauthenticated",
        )),
        AuthOutcome::StepUp(step_up) => Err(Stop::new(
            respond::error_with(
                401,
                &[(http::header::WWW_AUTHENTICATE, step_up.challenge())],
            ),
            "unauthenticated",
        )),
        AuthOutcome::Redirect(url) => {
            Err(Stop::new(respond::redirect(&url, None), "sign_in_redirect"))
        }
        AuthOutcome::Unavailable => Err(Stop::new(
            respond::error(503),
            "identity_provider_unavailable",
        )),
        AuthOutcome::TooMany => Err(Stop::new(too_many(), "sign_in_rate_limited")),
    }
}

/// 429 with the wait a client should allow before the next sign-in.
pub fn too_many() -> super::respond::Generated {
    let wait = crate::authn::browser::SIGN_IN_EVERY
        .as_secs()
        .max(1)
        .to_string();
    respond::error_with(429, &[(http::header::RETRY_AFTER, wait)])
}

/// A page load a browser makes (navigate), as opposed to an API call.
pub fn wants_page(head: &Parts) -> bool {
    let get = head.method == http::Method::GET || head.method == http::Method::HEAD;
    let html = super::admit::header_str(head, http::header::ACCEPT)
        .is_some_and(|a| a.contains("text/html"));
    get && html
}
