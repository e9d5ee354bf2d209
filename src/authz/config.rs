//! Authorization settings: `[authorization]` and each route's
//! `authorization` table.

use super::mapping::RouteTemplate;
use crate::secret::SecretRef;
use crate::units::HumanDuration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Process-wide authorization settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationConfig {
    /// Directory holding `phigate.cedarschema`, `*.cedar` policy files and
    /// `tests/` (policy tests run before every reload). Required when any
    /// route needs authorization (every route that is not public). Default:
    /// none.
    pub policies: Option<PathBuf>,
    /// Decide with the example CCM policy set compiled into phigate instead
    /// of `policies`: for trying phigate (`phigate demo` uses it), never for
    /// a real deployment, whose roles the example knows nothing about. The
    /// policy version then reads `example-…` in every decision and log
    /// line. Default `false`.
    pub example_policies: bool,
    /// Cedar JSON entities file: patients (care teams, flags, programs),
    /// care teams, organizations, user memberships and elevations.
    /// Validated against the schema. Default: none (every patient unknown,
    /// so patient-scoped requests are denied).
    pub entities: Option<PathBuf>,
    /// IANA time zone for `context.hour` and `context.weekday`. Default
    /// `"UTC"`.
    pub time_zone: String,
    /// Add `X-Phigate-Decision` (decision, determining policies, version)
    /// to responses. For debugging policies; default `false`.
    pub decision_header: bool,
    /// Changes to the policy directory and entities file are seen through
    /// file-system events; this is how often they are also re-checked, for
    /// mounts that raise none. `"0s"` turns watching off (SIGHUP and the
    /// admin endpoint still reload). Default `"10s"`.
    pub watch_interval: HumanDuration,
    /// Run the policy directory's `tests/` before swapping in a reload (and
    /// at startup); a failing test keeps the last good set. Default `true`.
    pub test_on_reload: bool,
    /// Data category by resource type, overriding the defaults (e.g.
    /// `Communication = "notes"`). Categories are what policies grant.
    pub categories: BTreeMap<String, String>,
    /// An HTTP entity source for patients and principal relationships the
    /// entities file does not hold.
    pub entity_source: Option<EntitySourceConfig>,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            policies: None,
            example_policies: false,
            entities: None,
            time_zone: "UTC".into(),
            decision_header: false,
            watch_interval: HumanDuration::secs(10),
            test_on_reload: true,
            categories: BTreeMap::new(),
            entity_source: None,
        }
    }
}

/// Looks up entities over HTTP, cached with a TTL; failures deny.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySourceConfig {
    /// URL returning Cedar JSON entities for one patient (the Patient and
    /// optionally its care teams); `{patient}` is replaced by the
    /// URL-encoded id. 404 means "no such patient".
    pub patient_url: Option<String>,
    /// URL returning the principal's relationships; `{principal}` is the
    /// principal id, `{fhir_user}` its SMART fhirUser (e.g.
    /// `Practitioner/123`), both URL-encoded.
    pub principal_url: Option<String>,
    /// What `principal_url` returns: `"cedar"` (entities; the principal's
    /// CareTeam and Role parents are used) or `"fhir-care-team"` (a FHIR
    /// Bundle of CareTeam resources, e.g. `CareTeam?participant=...`; each
    /// team's first identifier value, else its id). Default `"cedar"`.
    #[serde(default)]
    pub principal_format: PrincipalFormat,
    /// How long a found entity is cached. Default `"5m"`.
    #[serde(default = "default_ttl")]
    pub ttl: HumanDuration,
    /// How long "not found" is cached. Default `"30s"`.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: HumanDuration,
    /// Per-lookup timeout; a timeout denies. Default `"2s"`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Bearer token sent to the source (`env:NAME` or `file:PATH`).
    pub bearer_token: Option<SecretRef>,
    /// PEM CA bundle for an `https://` source instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Allow `http://` to a loopback source (tests, sidecars). Default
    /// `false`.
    #[serde(default)]
    pub dangerous_allow_http: bool,
}

fn default_ttl() -> HumanDuration {
    HumanDuration::secs(300)
}
fn default_negative_ttl() -> HumanDuration {
    HumanDuration::secs(30)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::secs(2)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalFormat {
    #[default]
    Cedar,
    FhirCareTeam,
}

/// How a route's requests are decided.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteAuthzConfig {
    /// `"enforce"` (default): denials are answered with 403. `"shadow"`:
    /// decide and record, but forward — for rolling policies out in front
    /// of an app that already runs.
    pub mode: EnforcementMode,
    /// `"fhir"`: FHIR R4 REST requests. `"templates"` (default): the
    /// route's `templates`; a path no template matches is denied.
    pub mapping: MappingKind,
    /// For `"fhir"`: the FHIR base path. Default: the route's
    /// `path_prefix`.
    pub fhir_base_path: Option<String>,
    /// For `"fhir"`: absolute base URLs under which full-URL references
    /// (`https://host/fhir/Patient/1`) name this server's patients.
    pub fhir_base_urls: Vec<String>,
    /// For `"templates"`: `{ path = "/api/patients/{patient}/notes/{id}",
    /// methods = ["GET"], action = "read", resource_type = "ClinicalNote",
    /// patient_query = "pid" }`. The most specific template wins.
    pub templates: Vec<RouteTemplate>,
}

impl Default for RouteAuthzConfig {
    fn default() -> Self {
        RouteAuthzConfig {
            mode: EnforcementMode::Enforce,
            mapping: MappingKind::Templates,
            fhir_base_path: None,
            fhir_base_urls: Vec::new(),
            templates: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementMode {
    #[default]
    Enforce,
    Shadow,
}

impl EnforcementMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementMode::Enforce => "enforce",
            EnforcementMode::Shadow => "shadow",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingKind {
    Fhir,
    #[default]
    Templates,
}
