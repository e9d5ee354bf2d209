//! The typed configuration: every field documented, every default stated.
//!
//! Each stage owns its part (`server::config`, `http::config`,
//! `proxy::config`, `authn::config`, `authz::config`); this file composes
//! them. These structs are the reference for `phigate.toml`;
//! `config/phigate.toml` mirrors them with comments. Unknown keys are errors, so a typo never
//! silently turns a safeguard off.

use serde::Deserialize;
use std::collections::BTreeMap;

pub use crate::authn::config::{
    AuthKind, BrowserConfig, CredentialKind, IdentityHeadersConfig, IdentityProviderConfig,
    RouteAuthConfig,
};
pub use crate::http::config::HygieneConfig;
pub use crate::proxy::config::{HealthCheckConfig, Origin, RouteConfig, UpstreamConfig};
pub use crate::server::config::{
    AdminConfig, ClientAuth, ListenerConfig, ServerSettings, TlsConfig,
};

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
    /// The audit trail: the spool every access is recorded in before its
    /// response is released, checkpoints, retention and sinks. Required
    /// when any route is not public.
    pub audit: Option<crate::audit::config::AuditConfig>,
    /// SHA-256 (hex) of the file's text, for the audit record of the
    /// configuration a process ran with.
    #[serde(skip)]
    pub fingerprint: String,
    /// What is valid but will bite ([`Config::warnings`]), placed in the
    /// file: `check` prints them, `serve` logs them.
    #[serde(skip)]
    pub warnings: Vec<super::ConfigProblem>,
}

impl Config {
    /// Authentication's parts.
    pub fn authn(&self) -> crate::authn::AuthnConfig<'_> {
        crate::authn::AuthnConfig {
            listener_cas: self
                .listeners
                .iter()
                .filter_map(|l| l.tls.as_ref().and_then(|t| t.client_ca.clone()))
                .collect(),
            identity_providers: &self.identity_providers,
            api_keys: &self.api_keys,
            service_certificates: &self.service_certificates,
            identity_headers: &self.identity_headers,
            browser: self.browser.as_ref(),
        }
    }

    /// The pipeline's parts.
    pub fn pipeline(&self) -> crate::proxy::config::PipelineConfig<'_> {
        crate::proxy::config::PipelineConfig {
            routes: &self.routes,
            upstreams: &self.upstreams,
            hygiene: &self.hygiene,
            identity_headers: &self.identity_headers,
            browser: self.browser.as_ref(),
        }
    }
}
