//! Routes and upstream pools: which requests go where, and how phigate
//! talks to the origins. `config/` composes them into `phigate.toml`.

use crate::authn::config::{BrowserConfig, IdentityHeadersConfig, RouteAuthConfig};
use crate::http::config::HygieneConfig;
use crate::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The pipeline's parts of the configuration.
#[derive(Clone, Copy)]
pub struct PipelineConfig<'a> {
    pub routes: &'a [RouteConfig],
    pub upstreams: &'a BTreeMap<String, UpstreamConfig>,
    pub hygiene: &'a HygieneConfig,
    pub identity_headers: &'a IdentityHeadersConfig,
    pub browser: Option<&'a BrowserConfig>,
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
    /// Response redaction (docs/redaction.md): every record in an answer
    /// decided as a `read`, data classes removed or masked as `disclose`
    /// decides, links pointed back at phigate. FHIR routes read records;
    /// template routes redact JSON documents by the classes' JSON paths.
    /// Default: none (answers pass as the upstream sent them).
    pub redaction: Option<RouteRedactionConfig>,
    /// HTTP Strict Transport Security: browsers that saw it use only HTTPS
    /// for this host (every port) until `max_age` passes. Sent only on
    /// responses whose client connection was TLS (to phigate, or to a
    /// trusted proxy saying `X-Forwarded-Proto: https`), never over
    /// cleartext; it replaces any the upstream sent. Default: on for
    /// `auth.kind = "browser"` routes (`max_age = "365d"`, this host only,
    /// no preload), off for others (API clients ignore it; the upstream's
    /// header, if any, passes). `hsts = { enabled = false }` turns it off.
    pub hsts: Option<HstsConfig>,
}

/// A route's `hsts` table (RFC 6797).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HstsConfig {
    /// Send the header. Default `true` (writing the table turns it on).
    pub enabled: bool,
    /// How long browsers hold to HTTPS-only, in whole seconds. Default
    /// `"365d"`. `"0s"` tells browsers to forget an earlier policy.
    pub max_age: HumanDuration,
    /// `includeSubDomains`: every subdomain of the host too. Default
    /// `false`: a hospital domain often has plain-HTTP devices below it.
    pub include_subdomains: bool,
    /// `preload`: consent to the browsers' built-in list. Needs
    /// `include_subdomains` and `max_age` of at least `"365d"`, and is hard
    /// to undo. Default `false`.
    pub preload: bool,
}

impl Default for HstsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: HumanDuration::secs(365 * 24 * 60 * 60),
            include_subdomains: false,
            preload: false,
        }
    }
}

fn default_max_body() -> ByteSize {
    ByteSize::mib(10)
}

/// A route's `redaction` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRedactionConfig {
    /// What a client gets for a single record it may not see:
    /// `"not_found"` (404, the default: a record's existence is itself
    /// information) or `"forbidden"` (403).
    #[serde(default)]
    pub denied_record: DeniedRecord,
    /// Largest record (a single resource, or one Bundle entry) held to
    /// decide it; a larger one aborts the response. Default `"16MiB"`.
    #[serde(default = "default_max_record")]
    pub max_record: ByteSize,
    /// Absolute base URLs the upstream writes into its answers besides its
    /// origins (a server configured with its own public name), rewritten
    /// to the base the client used.
    #[serde(default)]
    pub upstream_base_urls: Vec<String>,
    /// Content types the route declares carry no PHI (`"text/css"`,
    /// `"image/png"`): passed as they are. Any other non-JSON answer is
    /// refused with 502.
    #[serde(default)]
    pub phi_free_content_types: Vec<String>,
    /// Key for keyed masks (`pseudonym`, `date_shift`, the Safe Harbor
    /// profile's ids), as `env:NAME` or `file:PATH`; at least 32 bytes.
    /// Without one those masks remove instead. Use the same key on every
    /// route whose pseudonyms should match.
    pub pseudonym_key: Option<crate::secret::SecretRef>,
}

fn default_max_record() -> ByteSize {
    ByteSize::mib(16)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeniedRecord {
    #[default]
    NotFound,
    Forbidden,
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
    /// Longest wait for the upstream between reads: from the end of the
    /// request to the response head (then 504), and between parts of the
    /// response body (then the response is cut, never completed). Default
    /// `"30s"`.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    /// Longest the upstream may take to accept the next part of a request
    /// body phigate has for it (then 504). Default `"30s"`.
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

impl RouteConfig {
    /// Problems with this route alone, as (dotted key, message); its upstream
    /// and credentials are cross-references `config/` checks.
    pub fn check(&self, key: &str, max_path_length: usize, out: &mut Vec<(String, String)>) {
        let r = self;
        if let Err(e) = crate::authz::RouteAuthz::from_config(&r.authorization, &r.path_prefix) {
            out.push((format!("{key}.authorization"), e));
        }
        if !r.path_prefix.starts_with('/') {
            out.push((
                format!("{key}.path_prefix"),
                format!("{:?} must start with '/'", r.path_prefix),
            ));
        } else {
            let policy = crate::http::PathPolicy {
                max_len: max_path_length,
                allow_double_slash: r.allow_double_slash,
            };
            let normalized = crate::http::normalize_path(r.path_prefix.as_bytes(), &policy);
            if !normalized.is_ok_and(|p| p.path() == r.path_prefix && p.query().is_none()) {
                out.push((
                    format!("{key}.path_prefix"),
                    format!(
                        "{:?} is not a normalized path (no dot segments, encoded slashes or query)",
                        r.path_prefix
                    ),
                ));
            }
        }
        if let Some(red) = &r.redaction {
            if matches!(r.auth.kind, crate::authn::config::AuthKind::Public) {
                out.push((
                    format!("{key}.redaction"),
                    "a public route has no principal to redact for; redaction needs authentication and authorization".into(),
                ));
            }
            if r.websocket {
                out.push((
                    format!("{key}.redaction"),
                    "WebSocket messages cannot be redacted; turn `websocket` off on a redacting route".into(),
                ));
            }
            if red.max_record.bytes() < 1024 {
                out.push((
                    format!("{key}.redaction.max_record"),
                    "must be at least 1KiB".into(),
                ));
            }
            for (i, b) in red.upstream_base_urls.iter().enumerate() {
                if !(b.starts_with("http://") || b.starts_with("https://")) {
                    out.push((
                        format!("{key}.redaction.upstream_base_urls[{i}]"),
                        format!("{b:?} must be an absolute http:// or https:// URL"),
                    ));
                }
            }
            for (i, t) in red.phi_free_content_types.iter().enumerate() {
                let json = t.contains("json");
                if json || !t.contains('/') {
                    out.push((
                        format!("{key}.redaction.phi_free_content_types[{i}]"),
                        format!(
                            "{t:?}: list media types like \"text/css\" (JSON is always redacted)"
                        ),
                    ));
                }
            }
        }
        if let Some(h) = &r.hsts {
            super::hsts::check(h, &format!("{key}.hsts"), out);
        }
        if r.preserve_host && r.hosts.is_empty() {
            out.push((
                format!("{key}.preserve_host"),
                "preserve_host passes the client's Host to the app; list the route's `hosts` so only those names reach it".into(),
            ));
        }
        for (i, h) in r.hosts.iter().enumerate() {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            if bare.is_empty()
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                out.push((
                    format!("{key}.hosts[{i}]"),
                    format!(
                        "{h:?} is not a host name (no port, scheme or path; `*.` prefix allowed)"
                    ),
                ));
            }
        }
    }
}

impl UpstreamConfig {
    /// Problems with this upstream pool alone, as (dotted key, message).
    pub fn check(&self, key: &str, out: &mut Vec<(String, String)>) {
        let u = self;
        if u.origins.is_empty() {
            out.push((
                format!("{key}.origins"),
                "an upstream needs at least one origin".into(),
            ));
        }
        let mut schemes = std::collections::HashSet::new();
        for (i, o) in u.origins.iter().enumerate() {
            match Origin::parse(o) {
                Ok(origin) => {
                    schemes.insert(origin.tls);
                }
                Err(e) => out.push((format!("{key}.origins[{i}]"), e)),
            }
        }
        if schemes.len() > 1 {
            out.push((
                format!("{key}.origins"),
                "mixes http:// and https:// origins; use one scheme per pool".into(),
            ));
        }
        if let Some(ca) = &u.ca_file {
            if let Err(e) = crate::server::tls::load_ca_bundle(ca) {
                out.push((format!("{key}.ca_file"), e.to_string()));
            }
        }
        if !u.health_check.path.starts_with('/') {
            out.push((
                format!("{key}.health_check.path"),
                "must start with '/'".into(),
            ));
        }
    }
}

/// A parsed upstream origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses `http://host:port` / `https://host[:port]`; no path, user info or query.
    pub fn parse(s: &str) -> Result<Origin, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{s:?} must start with http:// or https://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '@', '?', '#', ' ']) {
            return Err(format!(
                "{s:?} must be scheme://host[:port] with no path, user or query"
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?} has an unclosed IPv6 bracket"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{s:?} has a bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("{s:?} is malformed after the IPv6 address")),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("{s:?} has a bad port"))?,
                ),
                None => (rest.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        Ok(Origin { tls, host, port })
    }

    /// `host:port` with IPv6 bracketed, for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
