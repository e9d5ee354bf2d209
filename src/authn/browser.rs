//! Browser single sign-on for apps that know nothing about OIDC.
//!
//! The authorization code flow with PKCE (S256), `state` and `nonce`, run by
//! the `openidconnect` crate, on phigate's reserved paths (`/.phigate/login`,
//! `/callback`, `/logout`, `/userinfo`). A successful login creates a new
//! server-side session (never reusing an id: no fixation) referenced by an
//! encrypted `__Host-` cookie. Pending logins live server-side too, keyed by
//! `state`, so a replayed or forged callback finds nothing.

use super::cookie::Keyring;
use super::mfa::{MfaRules, StepUp};
use super::principal::{AuthMethod, ClaimMapping, Principal};
use super::session::{new_session_id, Expiry, Session, SessionLimits, SessionStore};
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, RefreshToken,
    Scope, TokenResponse,
};
use std::sync::Arc;
use std::time::Duration;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Browser SSO settings, resolved from config.
pub struct BrowserSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: Option<String>,
    pub scopes: Vec<String>,
    pub cookie_name: String,
    pub refresh_interval: Duration,
    pub claims: ClaimMapping,
    pub mfa: MfaRules,
}

/// Why a browser login step failed. Reasons go to events; the browser sees
/// a generic error page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("identity provider unavailable: {0}")]
    Provider(String),
    #[error("unknown, expired or replayed login state")]
    BadState,
    #[error("the identity provider returned an error")]
    ProviderDenied,
    #[error("code exchange failed")]
    Exchange,
    #[error("ID token invalid: {0}")]
    IdToken(String),
    #[error("missing code")]
    MissingCode,
    #[error("too many sign-ins started from this client")]
    TooMany,
}

impl LoginError {
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::Provider(_) => "provider_unavailable",
            LoginError::BadState => "bad_state",
            LoginError::TooMany => "rate_limited",
            LoginError::ProviderDenied => "provider_denied",
            LoginError::Exchange => "code_exchange_failed",
            LoginError::IdToken(_) => "id_token_invalid",
            LoginError::MissingCode => "missing_code",
        }
    }
}

struct Pending {
    verifier: String,
    nonce: String,
    return_to: String,
}

/// What a completed login produced.
pub struct LoggedIn {
    pub set_cookie: String,
    pub return_to: String,
    pub principal: Arc<Principal>,
}

/// The browser SSO state of one phigate.
pub struct BrowserSso {
    settings: BrowserSettings,
    http: reqwest::Client,
    provider: tokio::sync::OnceCell<(Client, Option<String>)>,
    pending: moka::future::Cache<String, Arc<Pending>>,
    /// Sign-ins each client may start: an anonymous flood cannot crowd
    /// people's logins in progress out of `pending`.
    starts: SignInLimiter,
    pub store: Arc<dyn SessionStore>,
    keyring: Keyring,
}

/// How long a started login may take to come back.
const LOGIN_TTL: Duration = Duration::from_secs(600);

impl BrowserSso {
    pub fn new(
        settings: BrowserSettings,
        http: reqwest::Client,
        store: Arc<dyn SessionStore>,
        keyring: Keyring,
    ) -> BrowserSso {
        BrowserSso {
            settings,
            http,
            provider: tokio::sync::OnceCell::new(),
            pending: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LOGIN_TTL)
                .build(),
            starts: SignInLimiter::new(),
            store,
            keyring,
        }
    }

    /// Discovery, once (retried on the next login if it failed).
    async fn provider(&self) -> Result<&(Client, Option<String>), LoginError> {
        self.provider
            .get_or_try_init(|| async {
                let issuer = IssuerUrl::new(self.settings.issuer.clone())
                    .map_err(|e| LoginError::Provider(e.to_string()))?;
                // One discovery fetch, read with RP-initiated logout's
                // `end_session_endpoint` as well as the core metadata.
                let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
                    .await
                    .map_err(|e| LoginError::Provider(e.to_string()))?;
                let end_session = metadata
                    .additional_metadata()
                    .end_session_endpoint
                    .as_ref()
                    .map(|u| u.url().to_string());
                let redirect = RedirectUrl::new(self.settings.redirect_uri.clone())
                    .map_err(|e| LoginError::Provider(e.to_string()))?;
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(self.settings.client_id.clone()),
                    Some(ClientSecret::new(self.settings.client_secret.clone())),
                )
                .set_redirect_uri(redirect);
                Ok((client, end_session))
            })
            .await
    }

    /// The IdP authorization URL that starts a login returning to `return_to`.
    /// A step-up adds `acr_values`, `max_age` and `prompt=login`; `force`
    /// (after an automatic logoff) adds `prompt=login` so the IdP's own
    /// session cannot sign the user back in silently.
    pub async fn start_login(
        &self,
        return_to: &str,
        step_up: Option<&StepUp>,
        force: bool,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<String, LoginError> {
        if let Some(ip) = client_ip {
            self.starts.check(ip)?;
        }
        let (client, _) = self.provider().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &self.settings.scopes {
            if s != "openid" {
                req = req.add_scope(Scope::new(s.clone()));
            }
        }
        if let Some(s) = step_up {
            for acr in &s.acr_values {
                req = req.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
            }
            if let Some(age) = s.max_age {
                req = req.set_max_age(Duration::from_secs(age));
            }
        }
        if force || step_up.is_some() {
            req = req.add_prompt(CoreAuthPrompt::Login);
        }
        let (url, state, nonce) = req.url();
        self.pending
            .insert(
                state.secret().clone(),
                Arc::new(Pending {
                    verifier: verifier.secret().clone(),
                    nonce: nonce.secret().clone(),
                    return_to: return_to.to_string(),
                }),
            )
            .await;
        Ok(url.to_string())
    }

    /// Completes a login from the callback's query string.
    pub async fn callback(&self, query: &str, now: u64) -> Result<LoggedIn, LoginError> {
        let params = parse_query(query);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let state = get("state").ok_or(LoginError::BadState)?;
        // One use only: taking it out defeats replay.
        let pending = self
            .pending
            .remove(state)
            .await
            .ok_or(LoginError::BadState)?;
        if get("error").is_some() {
            return Err(LoginError::ProviderDenied);
        }
        let code = get("code").ok_or(LoginError::MissingCode)?;
        let (client, _) = self.provider().await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| LoginError::Exchange)?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|_| LoginError::Exchange)?;
        let id_token = token
            .id_token()
            .ok_or_else(|| LoginError::IdToken("no id_token".into()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map_err(|e| LoginError::IdToken(e.to_string()))?;
        // Verified above: now read every claim (roles and the like) from it.
        let raw = id_token.to_string();
        let claims = jwt_payload(&raw).ok_or_else(|| LoginError::IdToken("payload".into()))?;
        let principal = self
            .settings
            .claims
            .principal(
                &claims,
                &self.settings.issuer,
                AuthMethod::Session,
                &self.settings.mfa,
            )
            .ok_or_else(|| LoginError::IdToken("no subject".into()))?;
        let principal = Arc::new(principal);
        let session = Session {
            id: new_session_id(),
            principal: principal.clone(),
            created_at: now,
            last_seen: now,
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
            last_refreshed: now,
            id_token: Some(raw),
        };
        let set_cookie = self.cookie(&session.id);
        self.store.put(session).await;
        Ok(LoggedIn {
            set_cookie,
            return_to: pending.return_to.clone(),
            principal,
        })
    }

    /// The session a request's `Cookie` header refers to, checked against
    /// `limits` and touched. `Ok(None)`: no (valid) cookie at all.
    pub async fn session(
        &self,
        cookie_header: Option<&[u8]>,
        limits: SessionLimits,
        now: u64,
    ) -> Result<Option<Session>, Expiry> {
        let Some(id) = cookie_header.and_then(|h| self.session_id(h)) else {
            return Ok(None);
        };
        let Some(mut session) = self.store.get(&id).await else {
            return Ok(None);
        };
        if let Err(e) = session.check(limits, now) {
            self.store.remove(&id).await;
            return Err(e);
        }
        if now.saturating_sub(session.last_refreshed) > self.settings.refresh_interval.as_secs() {
            if let Some(rt) = session.refresh_token.clone() {
                match self.refresh(&rt).await {
                    Some(new_rt) => {
                        session.refresh_token = new_rt.or(Some(rt));
                        session.last_refreshed = now;
                    }
                    None => {
                        // The IdP no longer vouches for this user: sign out.
                        self.store.remove(&id).await;
                        return Ok(None);
                    }
                }
            }
        }
        session.last_seen = now;
        self.store.put(session.clone()).await;
        Ok(Some(session))
    }

    /// Revalidates with the IdP; `Some(new refresh token if rotated)` on success.
    async fn refresh(&self, refresh_token: &str) -> Option<Option<String>> {
        let (client, _) = self.provider().await.ok()?;
        let rt = RefreshToken::new(refresh_token.to_string());
        let resp = client
            .exchange_refresh_token(&rt)
            .ok()?
            .request_async(&self.http)
            .await
            .ok()?;
        Some(resp.refresh_token().map(|t| t.secret().clone()))
    }

    /// Ends the session; returns (clearing Set-Cookie, where to send the browser).
    pub async fn logout(&self, cookie_header: Option<&[u8]>) -> (String, String) {
        let mut id_token = None;
        if let Some(id) = cookie_header.and_then(|h| self.session_id(h)) {
            if let Some(s) = self.store.get(&id).await {
                id_token = s.id_token;
            }
            self.store.remove(&id).await;
        }
        let fallback = self
            .settings
            .post_logout_redirect_uri
            .clone()
            .unwrap_or_else(|| "/".into());
        let target = match self.provider().await {
            Ok((_, Some(end))) => {
                let mut u = format!("{end}?client_id={}", urlencode(&self.settings.client_id));
                if let Some(t) = id_token {
                    u.push_str(&format!("&id_token_hint={}", urlencode(&t)));
                }
                if let Some(p) = &self.settings.post_logout_redirect_uri {
                    u.push_str(&format!("&post_logout_redirect_uri={}", urlencode(p)));
                }
                u
            }
            _ => fallback,
        };
        (self.clear_cookie(), target)
    }

    pub fn cookie_name(&self) -> &str {
        &self.settings.cookie_name
    }

    /// Removes the session a cookie refers to, if any.
    pub async fn forget(&self, cookie_header: &[u8]) {
        if let Some(id) = self.session_id(cookie_header) {
            self.store.remove(&id).await;
        }
    }

    /// The principal of a cookie's session, without touching it.
    pub async fn peek(&self, cookie_header: &[u8]) -> Option<Arc<Principal>> {
        let id = self.session_id(cookie_header)?;
        self.store.get(&id).await.map(|s| s.principal)
    }

    fn session_id(&self, cookie_header: &[u8]) -> Option<String> {
        let sealed = crate::http::cookies::value_of(cookie_header, &self.settings.cookie_name)?;
        String::from_utf8(self.keyring.open(&sealed)?).ok()
    }

    fn cookie(&self, session_id: &str) -> String {
        format!(
            "{}={}; Path=/; Secure; HttpOnly; SameSite=Lax",
            self.settings.cookie_name,
            self.keyring.seal(session_id.as_bytes())
        )
    }

    pub fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
            self.settings.cookie_name
        )
    }

    /// A hash identifying the session's credential (for the assertion cache).
    pub fn credential(session: &Session) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(session.id.as_bytes()).into()
    }
}

/// The payload of a JWT whose signature has already been verified.
fn jwt_payload(jwt: &str) -> Option<serde_json::Value> {
    jsonwebtoken::dangerous::insecure_decode_claims(jwt).ok()
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded; a pair that
/// does not decode is dropped.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = crate::http::decode_component(k).ok()?;
            let v = crate::http::decode_component(v).ok()?;
            Some((k.into_owned(), v.into_owned()))
        })
        .collect()
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` as one URL component.
pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// A post-login return target: a same-origin path only. Absolute URLs,
/// scheme-relative `//host`, `/\host`, backslashes, control characters and
/// encoded whitespace or slashes that a browser would fold into one of those
/// are refused (open redirects).
pub fn safe_return_path(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > 2048 || !raw.starts_with('/') {
        return None;
    }
    let lower = raw.to_ascii_lowercase();
    let bad_encodings = ["%09", "%0a", "%0d", "%00", "%20", "%2f", "%5c", "%25"];
    if raw
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'\\' || b == b' ')
        || raw.starts_with("//")
        || bad_encodings.iter().any(|e| lower.contains(e))
        || !raw.is_ascii()
    {
        return None;
    }
    Some(raw.to_string())
}

/// How many sign-ins one client address may start: a burst of
/// [`SIGN_IN_BURST`], then one every [`SIGN_IN_EVERY`] (IPv6 by /64, which
/// one client usually holds whole).
pub struct SignInLimiter(governor::DefaultKeyedRateLimiter<std::net::IpAddr>);

/// Sign-ins a client may start at once.
pub const SIGN_IN_BURST: u32 = 20;
/// Then one per this long.
pub const SIGN_IN_EVERY: Duration = Duration::from_secs(3);

impl SignInLimiter {
    pub fn new() -> SignInLimiter {
        let quota = governor::Quota::with_period(SIGN_IN_EVERY)
            .unwrap_or(governor::Quota::per_second(std::num::NonZeroU32::MIN))
            .allow_burst(
                std::num::NonZeroU32::new(SIGN_IN_BURST).unwrap_or(std::num::NonZeroU32::MIN),
            );
        SignInLimiter(governor::RateLimiter::keyed(quota))
    }

    /// Takes one sign-in for `ip`, or refuses.
    pub fn check(&self, ip: std::net::IpAddr) -> Result<(), LoginError> {
        let key = match ip.to_canonical() {
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        };
        // Forget clients that have been quiet, so the table stays small.
        if self.0.len() > 10_000 {
            self.0.retain_recent();
        }
        self.0.check_key(&key).map_err(|_| LoginError::TooMany)
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_per_client() {
        let l = SignInLimiter::new();
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..SIGN_IN_BURST {
            assert!(l.check(a).is_ok());
        }
        assert!(matches!(l.check(a), Err(LoginError::TooMany)));
        // Another client is not held to the first one's count...
        assert!(l.check("192.0.2.2".parse().unwrap()).is_ok());
        // ...but addresses of one IPv6 /64 are one client.
        let v6 = |last: u16| {
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last))
        };
        for i in 0..SIGN_IN_BURST {
            assert!(l.check(v6(i as u16)).is_ok());
        }
        assert!(l.check(v6(999)).is_err());
    }
}

impl Default for SignInLimiter {
    fn default() -> Self {
        SignInLimiter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_are_same_origin_only() {
        for ok in ["/", "/portal/chart?id=1", "/a/b#frag"] {
            assert_eq!(safe_return_path(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2f%2fevil.example",
            "/%5cevil.example",
            "/%09/evil.example",
            "/%0d%0aSet-Cookie:x=y",
            "/a b",
            "javascript:alert(1)",
            "",
            "/%2F%2Fevil",
            "/\u{3000}/evil",
            "/%252f%252fevil",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn queries_decode() {
        let q = parse_query("code=a%2Bb&state=x+y&empty=");
        assert_eq!(q[0], ("code".into(), "a+b".into()));
        assert_eq!(q[1], ("state".into(), "x y".into()));
        assert!(parse_query("bad=%zz").is_empty());
    }
}
