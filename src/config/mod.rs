//! Typed configuration, loaded from one TOML file and validated as a whole.
//!
//! Validation reports every problem at once, each with the file, line and
//! key it is about and how to fix it, so `phigate check` is a useful linter
//! and `serve` refuses to start on anything it would have to guess at.

mod model;
mod secret;
mod units;

pub use model::*;
pub use secret::{SecretError, SecretRef};
pub use units::{parse_byte_size, ByteSize, HumanDuration};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub file: PathBuf,
    /// 1-based line, when the problem can be placed.
    pub line: Option<usize>,
    /// Dotted key, e.g. `routes[1].upstream`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything wrong with a config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and validates `path`. Relative paths inside the file are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigProblem {
                file: path.to_path_buf(),
                line: None,
                key: String::new(),
                message: format!("cannot read the config file: {e}"),
            }])
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates config text; `path` names it in errors and
    /// anchors relative file paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let locator = Locator::new(text);
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigErrors(vec![ConfigProblem {
                file: path.to_path_buf(),
                line,
                key: String::new(),
                message: e.message().trim().to_string(),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        let problems: Vec<ConfigProblem> = config
            .problems()
            .into_iter()
            .map(|(key, message)| ConfigProblem {
                file: path.to_path_buf(),
                line: locator.line(&key),
                key,
                message,
            })
            .collect();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        for idp in &mut self.identity_providers {
            if let Some(ca) = &mut idp.ca_file {
                if ca.is_relative() {
                    *ca = base.join(&*ca);
                }
            }
        }
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for l in &mut self.listeners {
            if let Some(tls) = &mut l.tls {
                fix(&mut tls.cert);
                fix(&mut tls.key);
                if let Some(ca) = &mut tls.client_ca {
                    fix(ca);
                }
            }
        }
        for u in self.upstreams.values_mut() {
            if let Some(ca) = &mut u.ca_file {
                fix(ca);
            }
        }
    }

    /// Semantic checks; each result is (dotted key, message).
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.listeners.is_empty() {
            out.push((
                "listeners".into(),
                "no listener is configured; add a [[listeners]] table with an address and [listeners.tls]".into(),
            ));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            check_listener(&format!("listeners[{i}]"), l, &mut out);
        }
        match self.admin.address.parse::<SocketAddr>() {
            Err(_) => out.push((
                "admin.address".into(),
                format!("{:?} is not an IP:PORT address", self.admin.address),
            )),
            Ok(a) if !a.ip().is_loopback() && !self.admin.expose => out.push((
                "admin.address".into(),
                "the admin plane binds loopback by default; set `expose = true` to bind another address".into(),
            )),
            Ok(_) => {}
        }
        if self.hygiene.max_headers == 0 || self.hygiene.max_header_bytes.bytes() < 1024 {
            out.push((
                "hygiene.max_header_bytes".into(),
                "header limits are too small to serve real clients (at least 1KiB and 1 header)"
                    .into(),
            ));
        }
        for (i, h) in self.hygiene.strip_headers.iter().enumerate() {
            if ::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                out.push((
                    format!("hygiene.strip_headers[{i}]"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
        }
        if self.routes.is_empty() {
            out.push((
                "routes".into(),
                "no route is configured; every request would get 404. Add a [[routes]] table"
                    .into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            if !names.insert(r.name.as_str()) {
                out.push((
                    format!("{key}.name"),
                    format!("route name {:?} is used twice", r.name),
                ));
            }
            check_route(&key, r, self, &mut out);
        }
        for (name, u) in &self.upstreams {
            check_upstream(&format!("upstreams.{name}"), u, &mut out);
        }
        // Policies are part of the configuration: a set that does not load,
        // validate and pass its tests refuses to start, naming every problem.
        if let Err(e) = crate::authz::Authorization::from_config(&self.authorization) {
            out.push(("authorization".into(), e));
        }
        let mut idp_names = std::collections::HashSet::new();
        for (i, idp) in self.identity_providers.iter().enumerate() {
            let key = format!("identity_providers[{i}]");
            if !idp_names.insert(idp.name.as_str()) {
                out.push((
                    format!("{key}.name"),
                    format!("identity provider name {:?} is used twice", idp.name),
                ));
            }
            check_identity_provider(&key, idp, &mut out);
        }
        for (i, c) in self.service_certificates.iter().enumerate() {
            if c.matchers() != 1 {
                out.push((
                    format!("service_certificates[{i}]"),
                    "set exactly one of subject_cn, san_dns, san_uri".into(),
                ));
            }
        }
        if let Err(e) = crate::authn::ApiKeyStore::new(&self.api_keys) {
            out.push(("api_keys".into(), e));
        }
        if let Some(b) = &self.browser {
            check_browser(b, self, &mut out);
        }
        let ih = &self.identity_headers;
        for (field, v) in [
            ("user", &ih.user),
            ("name", &ih.name),
            ("email", &ih.email),
            ("roles", &ih.roles),
            ("assertion", &ih.assertion),
        ] {
            if ::http::HeaderName::from_bytes(v.as_bytes()).is_err() {
                out.push((
                    format!("identity_headers.{field}"),
                    format!("{v:?} is not a valid header name"),
                ));
            }
        }
        out
    }
}

fn check_listener(key: &str, l: &ListenerConfig, out: &mut Vec<(String, String)>) {
    let addr = match l.address.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            out.push((
                format!("{key}.address"),
                format!("{:?} is not an IP:PORT address", l.address),
            ));
            return;
        }
    };
    match &l.tls {
        None if !addr.ip().is_loopback() && !l.insecure_cleartext => out.push((
            format!("{key}.address"),
            format!(
                "cleartext listener on non-loopback {addr}: add [{key}.tls] with cert and key, \
                 or set `insecure_cleartext = true` if a trusted load balancer terminates TLS"
            ),
        )),
        None => {}
        Some(tls) => {
            for (field, p) in [("cert", &tls.cert), ("key", &tls.key)] {
                if let Err(e) = std::fs::metadata(p) {
                    out.push((
                        format!("{key}.tls.{field}"),
                        format!("cannot read {}: {e}", p.display()),
                    ));
                }
            }
            if let Some(ca) = &tls.client_ca {
                if let Err(e) = crate::server::tls::load_ca_bundle(ca) {
                    out.push((format!("{key}.tls.client_ca"), e.to_string()));
                }
            }
            if tls.cert.exists() && tls.key.exists() {
                if let Err(e) = crate::server::tls::load_certified_key(&tls.cert, &tls.key) {
                    out.push((format!("{key}.tls.cert"), e.to_string()));
                }
            }
        }
    }
}

fn check_route(key: &str, r: &RouteConfig, config: &Config, out: &mut Vec<(String, String)>) {
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
            max_len: config.hygiene.max_path_length,
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
    if r.preserve_host && r.hosts.is_empty() {
        out.push((
            format!("{key}.preserve_host"),
            "preserve_host passes the client's Host to the app; list the route's `hosts` so only those names reach it".into(),
        ));
    }
    check_route_auth(key, r, config, out);
    if !config.upstreams.contains_key(&r.upstream) {
        let known: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
        out.push((
            format!("{key}.upstream"),
            format!(
                "no upstream named {:?}; defined upstreams: [{}]",
                r.upstream,
                known.join(", ")
            ),
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
                format!("{h:?} is not a host name (no port, scheme or path; `*.` prefix allowed)"),
            ));
        }
    }
}

fn check_route_auth(key: &str, r: &RouteConfig, config: &Config, out: &mut Vec<(String, String)>) {
    let a = &r.auth;
    let key = format!("{key}.auth");
    if a.kind == AuthKind::Public {
        return;
    }
    if a.kind == AuthKind::Browser && config.browser.is_none() {
        out.push((
            format!("{key}.kind"),
            "browser routes need a [browser] section (single sign-on client)".into(),
        ));
    }
    if a.accept.is_empty() && a.kind != AuthKind::Browser {
        out.push((
            format!("{key}.accept"),
            "accepts no credential; list \"bearer\" and/or \"api_key\", or make the route public"
                .into(),
        ));
    }
    if a.kind == AuthKind::Api
        && a.accept.contains(&CredentialKind::Bearer)
        && config.identity_providers.is_empty()
    {
        out.push((
            format!("{key}.accept"),
            format!(
                "route {:?} needs bearer tokens but no [[identity_providers]] is configured; add one, or set `auth = {{ kind = \"public\" }}` if the route is meant to be open",
                r.name
            ),
        ));
    }
    if a.accept.contains(&CredentialKind::ClientCertificate) {
        if config.service_certificates.is_empty() {
            out.push((
                format!("{key}.accept"),
                "accepts client_certificate but no [[service_certificates]] are configured".into(),
            ));
        }
        if !config
            .listeners
            .iter()
            .any(|l| l.tls.as_ref().is_some_and(|t| t.client_ca.is_some()))
        {
            out.push((
                format!("{key}.accept"),
                "accepts client_certificate but no listener has tls.client_ca".into(),
            ));
        }
    }
    if a.accept.contains(&CredentialKind::ApiKey) && config.api_keys.is_empty() {
        out.push((
            format!("{key}.accept"),
            "accepts api_key but no [[api_keys]] are configured (`phigate keygen api-key`)".into(),
        ));
    }
    for (i, name) in a.issuers.iter().enumerate() {
        if !config.identity_providers.iter().any(|p| &p.name == name) {
            out.push((
                format!("{key}.issuers[{i}]"),
                format!("no identity provider named {name:?}"),
            ));
        }
    }
    for (i, p) in a.public_paths.iter().enumerate() {
        let under = p
            .strip_prefix(r.path_prefix.trim_end_matches('/'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if !p.starts_with('/') || !under {
            out.push((
                format!("{key}.public_paths[{i}]"),
                format!(
                    "{p:?} must be a path under the route's prefix {:?}",
                    r.path_prefix
                ),
            ));
        }
    }
}

fn check_browser(b: &BrowserConfig, config: &Config, out: &mut Vec<(String, String)>) {
    if !config
        .identity_providers
        .iter()
        .any(|p| p.name == b.identity_provider)
    {
        out.push((
            "browser.identity_provider".into(),
            format!("no identity provider named {:?}", b.identity_provider),
        ));
    }
    let https_or_loopback = |u: &str| {
        u.starts_with("https://")
            || u.starts_with("http://127.0.0.1")
            || u.starts_with("http://localhost")
    };
    if !b.redirect_uri.ends_with("/.phigate/callback") || !https_or_loopback(&b.redirect_uri) {
        out.push((
            "browser.redirect_uri".into(),
            "must be an https:// URL ending in /.phigate/callback, registered at the IdP".into(),
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
            if let Err(e) = crate::authn::cookie::Keyring::from_base64(&keys) {
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

fn check_identity_provider(
    key: &str,
    idp: &IdentityProviderConfig,
    out: &mut Vec<(String, String)>,
) {
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
        if crate::authn::setup_asymmetric_algorithm(a).is_none() {
            out.push((format!("{key}.algorithms[{i}]"), format!("{a:?} is not allowed: use RS256/384/512, PS256/384/512, ES256/384 or EdDSA (HMAC and none are never accepted for an identity provider)")));
        }
    }
    if let Some(ca) = &idp.ca_file {
        if let Err(e) = crate::server::tls::load_ca_bundle(ca) {
            out.push((format!("{key}.ca_file"), e.to_string()));
        }
    }
}

fn check_upstream(key: &str, u: &UpstreamConfig, out: &mut Vec<(String, String)>) {
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

/// Finds the line of a dotted key such as `routes[1].upstream` in TOML text.
struct Locator<'a> {
    text: &'a str,
    root: Option<toml::Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// The line of the deepest part of `key` that exists in the file.
    fn line(&self, key: &str) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut span = None;
        let mut table: Option<&DeTable> = Some(root.get_ref());
        let mut value: Option<&toml::Spanned<DeValue>> = None;
        for part in key.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let t = match (table, value) {
                (Some(t), _) => t,
                (None, Some(v)) => match v.get_ref() {
                    DeValue::Table(t) => t,
                    _ => break,
                },
                _ => break,
            };
            let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref() == name) else {
                break;
            };
            span = Some(k.span().start);
            let mut v = v;
            if let Some(i) = index {
                match v.get_ref() {
                    DeValue::Array(a) => match a.get(i) {
                        Some(item) => {
                            v = item;
                            span = Some(item.span().start);
                        }
                        None => break,
                    },
                    _ => break,
                }
            }
            table = None;
            value = Some(v);
        }
        span.map(|s| line_of(self.text, s))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
