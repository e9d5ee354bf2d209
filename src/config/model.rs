//! The typed configuration: every field documented, every default stated.
//!
//! These structs are the reference for `phigate.toml`; `config/phigate.toml`
//! mirrors them with comments. Unknown keys are errors, so a typo never
//! silently turns a safeguard off.

use super::units::{ByteSize, HumanDuration};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole `phigate.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings (worker threads, shutdown).
    #[serde(default)]
    pub server: ServerSettings,
    /// Where clients connect. At least one listener is required.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// The admin plane (metrics, health, readiness).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Request hygiene applied to every request before routing.
    #[serde(default)]
    pub hygiene: HygieneConfig,
    /// Routes, matched by host and longest path prefix.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Upstream pools by name; routes refer to them.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// OpenID Connect issuers whose tokens are accepted.
    #[serde(default)]
    pub identity_providers: Vec<IdentityProviderConfig>,
    /// API keys for service integrations (`phigate keygen api-key`).
    #[serde(default)]
    pub api_keys: Vec<crate::authn::ApiKeyConfig>,
    /// Client certificates accepted as service identities (mTLS).
    #[serde(default)]
    pub service_certificates: Vec<crate::authn::mtls::ServiceCertificateConfig>,
    /// The identity headers and assertion sent to upstreams.
    #[serde(default)]
    pub identity_headers: IdentityHeadersConfig,
    /// Browser single sign-on, for routes with `auth.kind = "browser"`.
    pub browser: Option<BrowserConfig>,
    /// Cedar policies, entities and entity sources deciding every
    /// authenticated request.
    #[serde(default)]
    pub authorization: crate::authz::AuthorizationConfig,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Worker threads for the data plane. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// Let idle worker threads steal connections from busy ones. Default
    /// `false`: each thread runs its own single-threaded runtime and accepts
    /// its own connections, which is cheaper per request; turn it on when a
    /// few long-lived connections carry most of the traffic.
    pub work_stealing: bool,
    /// On SIGTERM listeners stop accepting at once, idle keep-alive
    /// connections close, and in-flight requests get at most this long to
    /// finish; the process stops as soon as none is left. Default `"5s"`.
    pub grace_period: HumanDuration,
    /// After the grace period, how long the runtime may take to stop what is
    /// left (requests still running are cut). Default `"10s"`.
    pub shutdown_timeout: HumanDuration,
    /// Client connections open at once, over all listeners. A connection
    /// over the limit is answered `503` and closed. Default 10000.
    pub max_connections: usize,
    /// Client connections open at once from one client address (the TCP
    /// peer). Default 256.
    pub max_connections_per_client: usize,
    /// Longest TLS handshake. Default `"10s"`.
    pub tls_handshake_timeout: HumanDuration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            threads: None,
            work_stealing: false,
            grace_period: HumanDuration::secs(5),
            shutdown_timeout: HumanDuration::secs(10),
            max_connections: 10_000,
            max_connections_per_client: 256,
            tls_handshake_timeout: HumanDuration::secs(10),
        }
    }
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `IP:PORT` to bind, e.g. `"0.0.0.0:8443"`.
    pub address: String,
    /// TLS settings. Without them the listener speaks cleartext HTTP, which is
    /// refused unless `address` is loopback or `insecure_cleartext = true`.
    pub tls: Option<TlsConfig>,
    /// Allow a cleartext listener on a non-loopback address (for a trusted
    /// TLS-terminating load balancer in front). Default `false`.
    #[serde(default)]
    pub insecure_cleartext: bool,
}

/// Server TLS for a listener (rustls; TLS 1.2 and 1.3 only, AEAD suites only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Offer HTTP/2 by ALPN (with HTTP/1.1 as fallback). Default `true`.
    #[serde(default = "yes")]
    pub http2: bool,
    /// How often to check `cert`/`key` for changes; a changed, valid pair is
    /// swapped in without a restart. A broken pair is logged and ignored.
    /// Default `"10s"`.
    #[serde(default = "default_reload_interval")]
    pub reload_interval: HumanDuration,
    /// PEM CA bundle for client certificates (mTLS). When set, clients may
    /// (or must, see `client_auth`) present a certificate signed by it; a
    /// presented certificate that does not verify fails the handshake.
    pub client_ca: Option<PathBuf>,
    /// `"optional"` (default when `client_ca` is set) or `"required"`.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// Whether a listener with `client_ca` demands a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Optional,
    Required,
}

fn yes() -> bool {
    true
}
fn default_reload_interval() -> HumanDuration {
    HumanDuration::secs(10)
}

/// The admin plane: a separate HTTP listener for operators.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `IP:PORT` for `/metrics`, `/healthz`, `/readyz`. Default `"127.0.0.1:9090"`.
    /// Binding a non-loopback address requires `expose = true`.
    pub address: String,
    /// Allow the admin listener on a non-loopback address. Default `false`.
    pub expose: bool,
    /// Bearer token for `POST /policies/reload` (`env:NAME` or
    /// `file:PATH`). Without it the endpoint is off; SIGHUP and the file
    /// watcher still reload.
    pub reload_token: Option<super::SecretRef>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:9090".into(),
            expose: false,
            reload_token: None,
        }
    }
}

/// Request hygiene, applied before routing to every request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HygieneConfig {
    /// Longest accepted request target (path and query), in bytes. Default 8192.
    pub max_uri_length: usize,
    /// Longest accepted path, in bytes. Default 2048.
    pub max_path_length: usize,
    /// Total size of all request header names and values. Default `"32KiB"`.
    /// Larger requests get 431.
    pub max_header_bytes: ByteSize,
    /// Number of request header lines. Default 100. More get 431.
    pub max_headers: usize,
    /// Header names the proxy owns and always strips from client requests
    /// (case-insensitive), in addition to the built-in list
    /// (`X-Forwarded-User`, `X-Forwarded-Email`, `X-Remote-User`, ...).
    pub strip_headers: Vec<String>,
    /// Header name prefixes always stripped from client requests, in addition
    /// to `X-Phigate-` and `X-Auth-`.
    pub strip_header_prefixes: Vec<String>,
    /// Peers (CIDRs) whose `X-Forwarded-For`/`-Proto`/`-Host` are believed.
    /// Default: none, so client-supplied forwarding headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a client may take between body reads before the request is
    /// cut with `408` (slow-body protection). Default `"30s"`.
    pub client_body_timeout: HumanDuration,
    /// How long a new connection may take to send the first byte of its
    /// first request (after the TLS handshake). Default `"10s"`.
    pub first_request_timeout: HumanDuration,
    /// How long a request head may take from its first byte to its last,
    /// however slowly it trickles in. Default `"10s"`.
    pub request_head_timeout: HumanDuration,
    /// How long an idle keep-alive connection (HTTP/1.1 between requests,
    /// HTTP/2 with no streams) stays open. Whole seconds. Default `"60s"`.
    pub keepalive_timeout: HumanDuration,
    /// Requests served on one HTTP/1.1 connection before it is closed.
    /// Default 1000.
    pub max_requests_per_connection: u32,
    /// Forward request headers whose names contain `_`. Default `false`:
    /// they are dropped (as nginx does), because CGI-style servers read
    /// `X_Remote_User` as `X-Remote-User`. Even when allowed, underscored
    /// forms of identity and forwarding headers are stripped.
    pub allow_underscore_headers: bool,
}

impl Default for HygieneConfig {
    fn default() -> Self {
        Self {
            max_uri_length: 8192,
            max_path_length: 2048,
            max_header_bytes: ByteSize::kib(32),
            max_headers: 100,
            strip_headers: Vec::new(),
            strip_header_prefixes: Vec::new(),
            trusted_proxies: Vec::new(),
            client_body_timeout: HumanDuration::secs(30),
            first_request_timeout: HumanDuration::secs(10),
            request_head_timeout: HumanDuration::secs(10),
            keepalive_timeout: HumanDuration::secs(60),
            max_requests_per_connection: 1000,
            allow_underscore_headers: false,
        }
    }
}

/// One route: which requests go to which upstream pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A short name used in metrics, logs and audit events.
    pub name: String,
    /// Hosts this route serves (`Host`/`:authority` without port,
    /// case-insensitive). A leading `*.` matches one or more subdomains.
    /// Empty (the default) matches any host. Only a listed host is passed to
    /// the upstream as `X-Forwarded-Host`: a client-chosen `Host` is not
    /// something an app should build links from.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix, matched on whole segments after normalization:
    /// `"/fhir"` matches `/fhir` and `/fhir/Patient` but not `/fhirx`.
    pub path_prefix: String,
    /// Name of the upstream pool in `[upstreams]`.
    pub upstream: String,
    /// Largest request body accepted; larger requests get 413. Default `"10MiB"`.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Let WebSocket upgrades through on this route. Default `false`.
    #[serde(default)]
    pub websocket: bool,
    /// Accept empty path segments (`//`) on this route. Default `false`.
    #[serde(default)]
    pub allow_double_slash: bool,
    /// Send the client's `Host` to the upstream instead of the upstream's own
    /// host. Needs `hosts`, so only host names you listed reach the app.
    /// Default `false`.
    #[serde(default)]
    pub preserve_host: bool,
    /// Authentication. Default: API credentials (a bearer token) required;
    /// a route open to anyone must say `auth = { kind = "public" }`.
    #[serde(default)]
    pub auth: RouteAuthConfig,
    /// Authorization: how requests map to Cedar (`mapping = "fhir"` or
    /// route `templates`) and whether denials are enforced or only
    /// recorded (`mode = "shadow"`). Default: enforce, templates, none
    /// defined — so every authenticated request on the route is denied
    /// until mapped.
    #[serde(default)]
    pub authorization: crate::authz::RouteAuthzConfig,
}

fn default_max_body() -> ByteSize {
    ByteSize::mib(10)
}

/// A pool of equivalent origins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Origins as `http://host:port` or `https://host:port`; all in one pool
    /// must use the same scheme. Requests are balanced round-robin over the
    /// healthy ones.
    pub origins: Vec<String>,
    /// PEM bundle of CAs trusted for `https://` origins instead of the system
    /// roots. Certificates and host names are always verified.
    pub ca_file: Option<PathBuf>,
    /// TLS server name to send and verify; default: the origin's host.
    pub tls_server_name: Option<String>,
    /// TCP (and TLS) connect timeout. Default `"2s"`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Longest wait for the upstream between reads (time to first byte, and
    /// gaps while streaming). Exceeding it gives 504. Default `"30s"`.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    /// Longest wait to write a request chunk upstream. Default `"30s"`.
    #[serde(default = "default_read_timeout")]
    pub write_timeout: HumanDuration,
    /// How long an idle pooled keep-alive connection is kept. Default `"60s"`.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Active health checks. Default: `GET /` every 5 s, any 2xx/3xx is healthy.
    #[serde(default)]
    pub health_check: HealthCheckConfig,
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::secs(2)
}
fn default_read_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}

/// Active health checking of an upstream pool's origins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Turn active checks off (every origin is then assumed healthy). Default `true`.
    pub enabled: bool,
    /// Path requested with `GET`. Default `"/"`.
    pub path: String,
    /// Time between checks. Default `"5s"`.
    pub interval: HumanDuration,
    /// Consecutive failures before an origin is taken out. Default 1.
    pub unhealthy_threshold: usize,
    /// Consecutive successes before it is put back. Default 1.
    pub healthy_threshold: usize,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/".into(),
            interval: HumanDuration::secs(5),
            unhealthy_threshold: 1,
            healthy_threshold: 1,
        }
    }
}

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
    /// Path prefixes under this route that need no credentials (on whole
    /// segments, like `path_prefix`). Default: none.
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
    pub assertion_key: Option<super::SecretRef>,
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
    pub client_secret: super::SecretRef,
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
    pub cookie_keys: Vec<super::SecretRef>,
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
