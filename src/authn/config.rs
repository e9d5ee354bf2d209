//! Authentication's configuration: identity providers, what each route
//! accepts, browser single sign-on, and the identity sent upstream.
//! `config/` composes it into `phigate.toml`.

use crate::secret::SecretRef;
use crate::units::HumanDuration;
use serde::Deserialize;
use std::path::PathBuf;

/// An OpenID Connect issuer whose tokens phigate accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderConfig {
    /// Short name used in route `issuers` lists, logs and events.
    pub name: String,
    /// The exact `iss` value; discovery reads
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Accepted `aud` values of access tokens (any one must be present).
    pub audiences: Vec<String>,
    /// Accepted signature algorithms. HMAC (`HS*`) and `none` are never
    /// accepted. Default `["RS256", "PS256", "ES256"]`.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`. Default `"60s"`.
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    /// Require this JWT `typ` header, e.g. `"at+jwt"` (RFC 9068). Default: not checked.
    pub required_typ: Option<String>,
    /// JWKS location; default: `jwks_uri` from discovery.
    pub jwks_uri: Option<String>,
    /// PEM CA bundle for the issuer's TLS (discovery, JWKS, token endpoint);
    /// default: system roots.
    pub ca_file: Option<PathBuf>,
    /// Keys younger than this are used without asking the IdP. Default `"10m"`.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_cache_ttl: HumanDuration,
    /// At most one key fetch per this interval (unknown `kid` floods,
    /// outages). Default `"30s"`.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_interval: HumanDuration,
    /// While the IdP is unreachable, keep using the last keys this long past
    /// their TTL, then reject tokens. Default `"24h"`.
    #[serde(default = "default_jwks_max_stale")]
    pub jwks_max_stale: HumanDuration,
    /// Allow an `http://` issuer. Only for a loopback test IdP: validation
    /// refuses it for any other host.
    #[serde(default)]
    pub dangerous_allow_http: bool,
    /// Where principal attributes come from in the claims.
    #[serde(default)]
    pub claims: crate::authn::ClaimMapping,
    /// Which `amr`/`acr` values count as MFA, and what to ask for on step-up.
    #[serde(default)]
    pub mfa: crate::authn::MfaRules,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "PS256".into(), "ES256".into()]
}
fn default_leeway() -> HumanDuration {
    HumanDuration::secs(60)
}
fn default_jwks_ttl() -> HumanDuration {
    HumanDuration::secs(600)
}
fn default_jwks_min_refresh() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_jwks_max_stale() -> HumanDuration {
    HumanDuration::secs(24 * 3600)
}

/// How a route authenticates requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// API clients: credentials in `Authorization`; missing or bad ones get
    /// 401 with `WWW-Authenticate`. The default.
    #[default]
    Api,
    /// People in browsers: a session from single sign-on (`[browser]`);
    /// page loads without one are redirected to the IdP, other requests
    /// get 401. Bearer tokens and API keys in `accept` also work.
    Browser,
    /// Anyone, no credentials: the route must say so explicitly.
    Public,
}

/// Credentials a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// `Authorization: Bearer <JWT>` from a configured identity provider.
    Bearer,
    /// `Authorization: ApiKey phg_...` from `[[api_keys]]`.
    ApiKey,
    /// A TLS client certificate listed in `[[service_certificates]]`,
    /// verified by the listener's `client_ca`.
    ClientCertificate,
}

/// A route's authentication requirements.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthConfig {
    /// `"api"` (default) or `"public"`.
    #[serde(default)]
    pub kind: AuthKind,
    /// Accepted credentials. Default `["bearer"]`.
    #[serde(default = "default_accept")]
    pub accept: Vec<CredentialKind>,
    /// Identity providers (by name) whose tokens count; default: all.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Require multi-factor authentication (per the issuer's `mfa` rules).
    /// Service credentials (API keys) never satisfy it. Default `false`.
    #[serde(default)]
    pub require_mfa: bool,
    /// Require an active authentication at most this long ago (`auth_time`).
    pub max_auth_age: Option<HumanDuration>,
    /// Paths under this route that need no credentials: each is an exact
    /// path (`/fhir/metadata`), or `/prefix/*` for everything below
    /// `/prefix/` (whole segments). A path that merely starts with a public
    /// one is not public. Default: none.
    #[serde(default)]
    pub public_paths: Vec<String>,
    /// Pass the client's `Authorization` header to the upstream. Default
    /// `false`: it is removed and the upstream gets phigate's identity
    /// headers and assertion instead.
    #[serde(default)]
    pub forward_authorization: bool,
    /// Send the identity headers and the signed assertion. Default `true`.
    #[serde(default = "yes")]
    pub identity_headers: bool,
    /// `aud` of the assertion; default: the route name.
    pub assertion_audience: Option<String>,
    /// Browser routes: idle timeout for this route; default `[browser]`'s.
    pub session_idle_timeout: Option<HumanDuration>,
    /// Browser routes: absolute timeout for this route; default `[browser]`'s.
    pub session_absolute_timeout: Option<HumanDuration>,
}

fn default_accept() -> Vec<CredentialKind> {
    vec![CredentialKind::Bearer]
}

impl Default for RouteAuthConfig {
    fn default() -> Self {
        Self {
            kind: AuthKind::Api,
            accept: default_accept(),
            issuers: Vec::new(),
            require_mfa: false,
            max_auth_age: None,
            public_paths: Vec::new(),
            forward_authorization: false,
            identity_headers: true,
            assertion_audience: None,
            session_idle_timeout: None,
            session_absolute_timeout: None,
        }
    }
}

/// What phigate tells upstreams about the authenticated principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeadersConfig {
    /// Header with the principal id. Default `"X-Phigate-User"`.
    pub user: String,
    /// Default `"X-Phigate-Name"`.
    pub name: String,
    /// Default `"X-Phigate-Email"`.
    pub email: String,
    /// Comma-separated roles. Default `"X-Phigate-Roles"`.
    pub roles: String,
    /// The signed assertion (ES256 JWT). Default `"X-Phigate-Assertion"`.
    pub assertion: String,
    /// Most bytes any one identity header may carry; longer role lists are
    /// cut at a whole role (the assertion carries all). Default 1024.
    pub max_header_bytes: usize,
    /// `iss` of the assertion. Default `"phigate"`.
    pub assertion_issuer: String,
    /// PKCS#8 PEM P-256 key for assertions, as a secret reference
    /// (`file:/path` or `env:NAME`). Default: a new key per process, which
    /// is fine for one replica; replicas behind one load balancer must share one.
    pub assertion_key: Option<SecretRef>,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        Self {
            user: "X-Phigate-User".into(),
            name: "X-Phigate-Name".into(),
            email: "X-Phigate-Email".into(),
            roles: "X-Phigate-Roles".into(),
            assertion: "X-Phigate-Assertion".into(),
            max_header_bytes: 1024,
            assertion_issuer: "phigate".into(),
            assertion_key: None,
        }
    }
}

/// Browser single sign-on (OIDC authorization code flow with PKCE) for
/// routes with `auth.kind = "browser"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserConfig {
    /// The `[[identity_providers]]` entry (by name) users sign in with.
    pub identity_provider: String,
    /// The OAuth client registered for phigate at the IdP.
    pub client_id: String,
    /// Its secret, by reference: `env:NAME` or `file:/path`.
    pub client_secret: SecretRef,
    /// Exactly the redirect URI registered at the IdP; its path must be
    /// `/.phigate/callback`, e.g. `https://portal.hospital.example/.phigate/callback`.
    pub redirect_uri: String,
    /// Where the IdP sends the browser after logout (registered there too).
    pub post_logout_redirect_uri: Option<String>,
    /// Scopes to request. Default `["openid", "profile", "email", "offline_access"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Session cookie name; must start with `__Host-`. Default `"__Host-phigate"`.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// AES-256-GCM keys for the cookie (32 bytes, base64), as secret
    /// references, newest first: the first encrypts, all decrypt. Default: a
    /// random key per process (sessions end on restart).
    #[serde(default)]
    pub cookie_keys: Vec<SecretRef>,
    /// Sign out after this long without a request. Default `"15m"`; routes may override.
    #[serde(default = "default_idle")]
    pub session_idle_timeout: HumanDuration,
    /// Sign out this long after login, whatever the activity. Default `"12h"`.
    #[serde(default = "default_absolute")]
    pub session_absolute_timeout: HumanDuration,
    /// How often a session is revalidated with the IdP using its refresh
    /// token (when one was issued); a refusal signs the user out. Default `"5m"`.
    #[serde(default = "default_refresh")]
    pub refresh_interval: HumanDuration,
    /// Most concurrent sessions kept in memory. Default 100000.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u64,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_cookie_name() -> String {
    "__Host-phigate".into()
}
fn default_idle() -> HumanDuration {
    HumanDuration::secs(15 * 60)
}
fn default_absolute() -> HumanDuration {
    HumanDuration::secs(12 * 3600)
}
fn default_refresh() -> HumanDuration {
    HumanDuration::secs(300)
}
fn default_max_sessions() -> u64 {
    100_000
}

fn yes() -> bool {
    true
}

impl IdentityProviderConfig {
    /// Problems with this identity provider alone, as (dotted key, message).
    pub fn check(&self, key: &str, out: &mut Vec<(String, String)>) {
        let idp = self;
        match idp.issuer.split_once("://") {
            Some(("https", _)) => {}
            Some(("http", rest)) => {
                let host = rest.split(['/', ':']).next().unwrap_or("");
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !(idp.dangerous_allow_http && loopback) {
                    out.push((format!("{key}.issuer"), "issuers must be https://; an http:// issuer is allowed only on loopback with `dangerous_allow_http = true` (test IdPs)".into()));
                }
            }
            _ => out.push((
                format!("{key}.issuer"),
                format!("{:?} is not an https:// URL", idp.issuer),
            )),
        }
        if idp.audiences.is_empty() {
            out.push((format!("{key}.audiences"), "list the `aud` values phigate's tokens carry; accepting any audience would accept tokens meant for other apps".into()));
        }
        if idp.algorithms.is_empty() {
            out.push((
                format!("{key}.algorithms"),
                "list at least one algorithm".into(),
            ));
        }
        for (i, a) in idp.algorithms.iter().enumerate() {
            if super::setup_asymmetric_algorithm(a).is_none() {
                out.push((format!("{key}.algorithms[{i}]"), format!("{a:?} is not allowed: use RS256/384/512, PS256/384/512, ES256/384 or EdDSA (HMAC and none are never accepted for an identity provider)")));
            }
        }
        if let Some(ca) = &idp.ca_file {
            if let Err(e) = crate::server::tls::load_ca_bundle(ca) {
                out.push((format!("{key}.ca_file"), e.to_string()));
            }
        }
    }
}

impl BrowserConfig {
    /// Problems with the browser sign-in settings alone, as (dotted key,
    /// message); that its identity provider exists is a cross-reference
    /// `config/` checks.
    pub fn check(&self, out: &mut Vec<(String, String)>) {
        let b = self;
        let https_or_loopback = |u: &str| {
            u.starts_with("https://")
                || u.starts_with("http://127.0.0.1")
                || u.starts_with("http://localhost")
        };
        if !b.redirect_uri.ends_with("/.phigate/callback") || !https_or_loopback(&b.redirect_uri) {
            out.push((
                "browser.redirect_uri".into(),
                "must be an https:// URL ending in /.phigate/callback, registered at the IdP"
                    .into(),
            ));
        }
        if !b.cookie_name.starts_with("__Host-") {
            out.push((
                "browser.cookie_name".into(),
                "must start with __Host- (host-only, Secure, Path=/)".into(),
            ));
        }
        if !b.scopes.iter().any(|s| s == "openid") {
            out.push(("browser.scopes".into(), "must include \"openid\"".into()));
        }
        if let Err(e) = b.client_secret.resolve() {
            out.push(("browser.client_secret".into(), e.to_string()));
        }
        let keys: Result<Vec<String>, _> = b.cookie_keys.iter().map(|k| k.resolve()).collect();
        match keys {
            Err(e) => out.push(("browser.cookie_keys".into(), e.to_string())),
            Ok(keys) if !keys.is_empty() => {
                if let Err(e) = super::cookie::Keyring::from_base64(&keys) {
                    out.push(("browser.cookie_keys".into(), e.to_string()));
                }
            }
            Ok(_) => {}
        }
        if b.session_idle_timeout > b.session_absolute_timeout {
            out.push((
                "browser.session_idle_timeout".into(),
                "longer than session_absolute_timeout".into(),
            ));
        }
    }
}
