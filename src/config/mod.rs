//! Typed configuration, loaded from one TOML file and validated as a whole.
//!
//! Validation reports every problem at once, each with the file, line and
//! key it is about and how to fix it, so `phigate check` is a useful linter
//! and `serve` refuses to start on anything it would have to guess at.

mod model;
mod problems;

pub use crate::secret::{SecretError, SecretRef};
pub use crate::units::{parse_byte_size, ByteSize, HumanDuration};
pub use model::*;
pub use problems::fragment_problems;
use problems::{deserialize_all, hide_values};

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
        let mut config: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => return Err(Self::every_problem(text, path, &locator, e)),
        };
        config.resolve_paths(&base_of(path));
        config.fingerprint = {
            use sha2::Digest;
            sha2::Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let placed = |found: Vec<(String, String)>| -> Vec<ConfigProblem> {
            found
                .into_iter()
                .map(|(key, message)| ConfigProblem {
                    file: path.to_path_buf(),
                    line: locator.line(&key),
                    key,
                    message,
                })
                .collect()
        };
        let problems = placed(config.problems());
        if problems.is_empty() {
            config.warnings = placed(config.warnings());
            Ok(config)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// A file that does not deserialize: every unknown key and wrongly
    /// typed value, not just the first. Each one found is reported and
    /// taken out, and the rest read again; when only leaves had to go, the
    /// semantic checks run on what remains too.
    fn every_problem(
        text: &str,
        path: &Path,
        locator: &Locator<'_>,
        first: toml::de::Error,
    ) -> ConfigErrors {
        let problem = |line, key: String, message: &str| ConfigProblem {
            file: path.to_path_buf(),
            line,
            key,
            message: hide_values(message.trim()),
        };
        // Not TOML at all: the parser's own message is all there is.
        let Ok(table) = text.parse::<toml::Table>() else {
            let line = first.span().map(|s| line_of(text, s.start));
            return ConfigErrors(vec![problem(line, String::new(), first.message())]);
        };
        let (found, config) = deserialize_all(table);
        let mut problems: Vec<ConfigProblem> = found
            .into_iter()
            .map(|(key, message)| problem(locator.line(&key), key, &message))
            .collect();
        // Only when nothing had to be made up do the semantic checks mean
        // anything.
        if let Some(mut config) = config {
            config.resolve_paths(&base_of(path));
            problems.extend(
                config
                    .problems()
                    .into_iter()
                    .map(|(key, message)| problem(locator.line(&key), key, &message)),
            );
        }
        if problems.is_empty() {
            let line = first.span().map(|s| line_of(text, s.start));
            problems.push(problem(line, String::new(), first.message()));
        }
        ConfigErrors(problems)
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
                if let Some(ocsp) = &mut tls.ocsp_response {
                    fix(ocsp);
                }
            }
        }
        for u in self.upstreams.values_mut() {
            if let Some(ca) = &mut u.ca_file {
                fix(ca);
            }
        }
        for c in &mut self.service_certificates {
            if let Some(ca) = &mut c.client_ca {
                fix(ca);
            }
        }
        // `file:` secrets too: a relative one names a file beside the config.
        let fix_secret = |r: &mut SecretRef| {
            if let SecretRef::File(p) = r {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        };
        let a = &mut self.authorization;
        if let Some(p) = &mut a.policies {
            fix(p);
        }
        if let Some(p) = &mut a.entities {
            fix(p);
        }
        if let Some(s) = &mut a.entity_source {
            if let Some(t) = &mut s.bearer_token {
                fix_secret(t);
            }
            if let Some(p) = &mut s.ca_file {
                fix(p);
            }
        }
        if let Some(t) = &mut self.admin.reload_token {
            fix_secret(t);
        }
        if let Some(k) = &mut self.identity_headers.assertion_key {
            fix_secret(k);
        }
        if let Some(b) = &mut self.browser {
            fix_secret(&mut b.client_secret);
            for k in &mut b.cookie_keys {
                fix_secret(k);
            }
        }
        for r in &mut self.routes {
            if let Some(k) = r.redaction.as_mut().and_then(|x| x.pseudonym_key.as_mut()) {
                fix_secret(k);
            }
        }
        if let Some(a) = &mut self.audit {
            if let Some(k) = &mut a.signing_key {
                fix_secret(k);
            }
            fix(&mut a.dir);
            for s in &mut a.sinks {
                if let Some(p) = &mut s.path {
                    fix(p);
                }
                if let Some(p) = &mut s.ca {
                    fix(p);
                }
            }
        }
    }

    /// What is valid but will bite: routes that can only ever deny, and
    /// routes that forward what their policies deny. Each is (dotted key,
    /// message); `check` prints them and `serve` logs them at start.
    pub fn warnings(&self) -> Vec<(String, String)> {
        use crate::authz::config::{EnforcementMode, MappingKind};
        let mut out = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if let Some(why) = l
                .tls
                .as_ref()
                .and_then(crate::server::config::staple_warning)
            {
                out.push((format!("listeners[{i}].tls.ocsp_response"), why));
            }
        }
        for (i, idp) in self.identity_providers.iter().enumerate() {
            if idp.issuer.starts_with("http://") {
                out.push((
                    format!("identity_providers[{i}].issuer"),
                    format!(
                        "identity provider {:?} is an http:// issuer on this host (a development issuer such as `phigate dev-issuer`): whoever can reach it can mint any role. Never for real patients",
                        idp.name
                    ),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.auth.kind == AuthKind::Public {
                continue;
            }
            let key = format!("routes[{i}].authorization");
            if r.authorization.mapping == MappingKind::Templates
                && r.authorization.templates.is_empty()
            {
                out.push((
                    key.clone(),
                    format!(
                        "route {:?} can only deny: it needs authorization but describes no requests. Add `templates` (docs/front-a-legacy-app.md), or `mapping = \"fhir\"` for a FHIR server; until then every authenticated request on it gets 403",
                        r.name
                    ),
                ));
            }
            if r.authorization.mode == EnforcementMode::Shadow {
                out.push((
                    format!("{key}.mode"),
                    format!(
                        "route {:?} is in shadow mode: requests its policies deny are recorded but forwarded. Remove `mode` to enforce",
                        r.name
                    ),
                ));
            }
        }
        out
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
            l.check(&format!("listeners[{i}]"), &mut out);
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
        self.hygiene.check(&mut out);
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
            u.check(&format!("upstreams.{name}"), &mut out);
        }
        // A route that needs authorization decides with the policies the
        // config names; the example set is an explicit opt-in, never a
        // silent default.
        let needs: Vec<&str> = self
            .routes
            .iter()
            .filter(|r| r.auth.kind != AuthKind::Public)
            .map(|r| r.name.as_str())
            .collect();
        let a = &self.authorization;
        if !needs.is_empty() && a.policies.is_none() && !a.example_policies {
            out.push((
                "authorization.policies".into(),
                format!(
                    "route(s) {} need authorization but no policies are configured: set `policies` to a directory with phigate.cedarschema and your *.cedar files (docs/policies.md), or `example_policies = true` to try the example CCM set",
                    needs.join(", ")
                ),
            ));
        }
        match &self.audit {
            None if !needs.is_empty() => out.push((
                "audit".into(),
                format!(
                    "route(s) {} carry PHI but no audit trail is configured: add [audit] with `dir`, where every access is recorded before its response is released (docs/audit.md)",
                    needs.join(", ")
                ),
            )),
            None => {}
            Some(audit) => out.extend(audit.problems()),
        }
        if a.policies.is_some() && a.example_policies {
            out.push((
                "authorization.example_policies".into(),
                "set either `policies` or `example_policies`, not both".into(),
            ));
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
            idp.check(&key, &mut out);
        }
        // Compared as the runtime compares them: the resolved paths' text.
        let mut cas: Vec<String> = self
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref().and_then(|t| t.client_ca.as_ref()))
            .map(|p| p.display().to_string())
            .collect();
        cas.sort();
        cas.dedup();
        for (i, c) in self.service_certificates.iter().enumerate() {
            if c.matchers() != 1 {
                out.push((
                    format!("service_certificates[{i}]"),
                    "set exactly one of subject_cn, san_dns, san_uri".into(),
                ));
            }
            match &c.client_ca {
                None if cas.len() > 1 => out.push((
                    format!("service_certificates[{i}]"),
                    "listeners trust more than one client CA: name the one this certificate comes from with `client_ca`".into(),
                )),
                Some(ca) if !cas.contains(&ca.display().to_string()) => out.push((
                    format!("service_certificates[{i}].client_ca"),
                    format!("{} is no listener's tls.client_ca", ca.display()),
                )),
                _ => {}
            }
        }
        if let Err(e) = crate::authn::ApiKeyStore::new(&self.api_keys) {
            out.push(("api_keys".into(), e));
        }
        if let Some(b) = &self.browser {
            if !self
                .identity_providers
                .iter()
                .any(|p| p.name == b.identity_provider)
            {
                out.push((
                    "browser.identity_provider".into(),
                    format!("no identity provider named {:?}", b.identity_provider),
                ));
            }
            b.check(&mut out);
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

fn check_route(key: &str, r: &RouteConfig, config: &Config, out: &mut Vec<(String, String)>) {
    r.check(key, config.hygiene.max_path_length, out);
    check_route_auth(key, r, config, out);
    // Explicit HSTS that no client could ever receive is a mistake worth
    // naming (browser routes' default is quietly inert on such a setup).
    let secure_somewhere = config.listeners.iter().any(|l| l.tls.is_some())
        || !config.hygiene.trusted_proxies.is_empty();
    if r.hsts.as_ref().is_some_and(|h| h.enabled) && !secure_somewhere {
        out.push((
            format!("{key}.hsts"),
            "HSTS is sent only over TLS, but no listener has [listeners.tls] and no trusted proxy can report https (hygiene.trusted_proxies)".into(),
        ));
    }
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
        // Matched against normalized paths: a pattern that is not one
        // (`%7e`, `..`, `;x`) would silently never match.
        let bare = p.strip_suffix("/*").unwrap_or(p);
        let policy = crate::http::PathPolicy {
            max_len: config.hygiene.max_path_length,
            allow_double_slash: false,
        };
        let normalized = crate::http::normalize_path(bare.as_bytes(), &policy);
        if p.starts_with('/')
            && !normalized
                .is_ok_and(|n| n.path() == bare && n.query().is_none() && !bare.contains(';'))
        {
            out.push((
                format!("{key}.public_paths[{i}]"),
                format!("{p:?} is not a normalized path (no dot segments, escapes of unreserved characters, `;` parameters or query)"),
            ));
        }
        if p.contains('*') && !(p.ends_with("/*") && p.matches('*').count() == 1) {
            out.push((
                format!("{key}.public_paths[{i}]"),
                format!("{p:?}: `*` is allowed only as a whole last segment (`/prefix/*` opens everything below `/prefix/`)"),
            ));
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

/// The directory relative paths in the config at `path` are resolved
/// against, made absolute: every error and log line then names the file it
/// means, whatever the working directory is.
fn base_of(path: &Path) -> PathBuf {
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf())
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
