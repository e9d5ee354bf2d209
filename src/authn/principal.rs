//! Who is asking: the verified identity every later stage works from.
//!
//! A [`Principal`] is built only from verified material (token claims,
//! a session, an API key, a client certificate) through a configured
//! [`ClaimMapping`]; nothing a client merely asserts in a header becomes part
//! of it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How the principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// An OAuth 2.0 bearer access token (JWT).
    Bearer,
    /// A browser session established by the OIDC code flow.
    Session,
    /// An API key for a service integration.
    ApiKey,
    /// A TLS client certificate.
    ClientCertificate,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Bearer => "bearer",
            AuthMethod::Session => "session",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::ClientCertificate => "client_certificate",
        }
    }
}

/// A person or a service, as far as phigate has verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable unique id: the issuer's `sub`, or a service id. Unique per
    /// issuer; `issuer` disambiguates.
    pub id: String,
    /// `iss` for people; `api-key` or `mtls` for services.
    pub issuer: String,
    pub kind: PrincipalKind,
    pub method: AuthMethod,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub organization: Option<String>,
    pub npi: Option<String>,
    pub care_teams: Vec<String>,
    /// SMART on FHIR `fhirUser` (e.g. `Practitioner/123`).
    pub fhir_user: Option<String>,
    /// SMART patient context (a patient's own id).
    pub patient: Option<String>,
    /// OAuth scopes granted to the token.
    pub scopes: Vec<String>,
    /// Authentication strength, as evaluated against the issuer's MFA rules.
    pub mfa: bool,
    /// When the person last actively authenticated (`auth_time`), Unix seconds.
    pub auth_time: Option<u64>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    Service,
}

impl Principal {
    /// A service principal (API key or certificate): no MFA, no auth time.
    pub fn service(id: &str, issuer: &str, method: AuthMethod, roles: Vec<String>) -> Principal {
        Principal {
            id: id.to_string(),
            issuer: issuer.to_string(),
            kind: PrincipalKind::Service,
            method,
            display_name: Some(id.to_string()),
            email: None,
            roles,
            organization: None,
            npi: None,
            care_teams: Vec::new(),
            fhir_user: None,
            patient: None,
            scopes: Vec::new(),
            mfa: false,
            auth_time: None,
            amr: Vec::new(),
            acr: None,
        }
    }

    /// Seconds since the last active authentication, if known.
    pub fn auth_age(&self, now: u64) -> Option<u64> {
        self.auth_time.map(|t| now.saturating_sub(t))
    }
}

/// Where each principal attribute comes from in the token's claims. Paths are
/// dotted (`realm_access.roles`); several paths for a list are merged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    /// Claim with the user id. Default `"sub"`.
    pub user_id: String,
    /// Default `"name"`.
    pub name: String,
    /// Default `"email"`.
    pub email: String,
    /// Claims holding role or group lists (strings or arrays of strings).
    /// Default `["roles", "groups", "realm_access.roles"]`.
    pub roles: Vec<String>,
    /// Default `"org"`.
    pub organization: String,
    /// Default `"npi"`.
    pub npi: String,
    /// Default `"care_teams"`.
    pub care_teams: String,
    /// Default `"fhirUser"`.
    pub fhir_user: String,
    /// Default `"patient"`.
    pub patient: String,
    /// Claim with granted scopes (space-separated string or array). Default `"scope"`.
    pub scopes: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            user_id: "sub".into(),
            name: "name".into(),
            email: "email".into(),
            roles: vec!["roles".into(), "groups".into(), "realm_access.roles".into()],
            organization: "org".into(),
            npi: "npi".into(),
            care_teams: "care_teams".into(),
            fhir_user: "fhirUser".into(),
            patient: "patient".into(),
            scopes: "scope".into(),
        }
    }
}

/// Limits that keep a principal (and the headers built from it) small.
pub const MAX_LIST_ITEMS: usize = 64;
const MAX_VALUE_LEN: usize = 256;

impl ClaimMapping {
    /// Builds the principal from verified claims. `None` if the user id claim
    /// is missing or not a usable string.
    pub fn principal(
        &self,
        claims: &Value,
        issuer: &str,
        method: AuthMethod,
        mfa: &super::mfa::MfaRules,
    ) -> Option<Principal> {
        let id = string_at(claims, &self.user_id).filter(|s| !s.is_empty())?;
        let amr = strings_at(claims, "amr");
        let acr = string_at(claims, "acr");
        let mut roles = Vec::new();
        for path in &self.roles {
            for r in strings_at(claims, path) {
                if !roles.contains(&r) && roles.len() < MAX_LIST_ITEMS {
                    roles.push(r);
                }
            }
        }
        let scopes = match lookup(claims, &self.scopes) {
            Some(Value::String(s)) => s
                .split_ascii_whitespace()
                .map(String::from)
                .take(MAX_LIST_ITEMS)
                .collect(),
            _ => strings_at(claims, &self.scopes),
        };
        Some(Principal {
            mfa: mfa.satisfied(&amr, acr.as_deref()),
            id,
            issuer: issuer.to_string(),
            kind: PrincipalKind::User,
            method,
            display_name: string_at(claims, &self.name),
            email: string_at(claims, &self.email),
            roles,
            organization: string_at(claims, &self.organization),
            npi: string_at(claims, &self.npi),
            care_teams: strings_at(claims, &self.care_teams),
            fhir_user: string_at(claims, &self.fhir_user),
            patient: string_at(claims, &self.patient),
            scopes,
            auth_time: lookup(claims, "auth_time").and_then(Value::as_u64),
            amr,
            acr,
        })
    }
}

/// The value at a dotted path.
fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v); // claim names may themselves contain dots (URIs)
    }
    path.split('.').try_fold(claims, |v, key| v.get(key))
}

fn string_at(claims: &Value, path: &str) -> Option<String> {
    match lookup(claims, path)? {
        Value::String(s) if s.len() <= MAX_VALUE_LEN => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn strings_at(claims: &Value, path: &str) -> Vec<String> {
    match lookup(claims, path) {
        Some(Value::String(s)) if s.len() <= MAX_VALUE_LEN => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| s.len() <= MAX_VALUE_LEN)
            .take(MAX_LIST_ITEMS)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::mfa::MfaRules;
    use serde_json::json;

    #[test]
    fn maps_nested_and_flat_claims() {
        let claims = json!({
            "sub": "alice", "name": "Alice", "email": "a@h.test",
            "roles": ["care_manager"], "realm_access": {"roles": ["nurse", "care_manager"]},
            "org": "org-1", "npi": 1000000001u64, "care_teams": ["ct-1", "ct-2"],
            "fhirUser": "Practitioner/p1", "scope": "openid fhir",
            "amr": ["pwd", "otp"], "acr": "urn:x:mfa", "auth_time": 100,
        });
        let p = ClaimMapping::default()
            .principal(
                &claims,
                "https://idp",
                AuthMethod::Bearer,
                &MfaRules::default(),
            )
            .unwrap();
        assert_eq!(p.id, "alice");
        assert_eq!(p.roles, ["care_manager", "nurse"]);
        assert_eq!(p.npi.as_deref(), Some("1000000001"));
        assert_eq!(p.scopes, ["openid", "fhir"]);
        assert!(p.mfa);
        assert_eq!(p.auth_age(160), Some(60));
    }

    #[test]
    fn missing_subject_is_no_principal() {
        let m = ClaimMapping::default();
        let rules = MfaRules::default();
        assert!(m
            .principal(&json!({"name": "x"}), "i", AuthMethod::Bearer, &rules)
            .is_none());
        assert!(m
            .principal(&json!({"sub": ""}), "i", AuthMethod::Bearer, &rules)
            .is_none());
        assert!(m
            .principal(&json!({"sub": ["a"]}), "i", AuthMethod::Bearer, &rules)
            .is_none());
    }

    #[test]
    fn lists_are_bounded() {
        let many: Vec<String> = (0..1000).map(|i| format!("g{i}")).collect();
        let claims = json!({"sub": "x", "groups": many});
        let p = ClaimMapping::default()
            .principal(&claims, "i", AuthMethod::Bearer, &MfaRules::default())
            .unwrap();
        assert_eq!(p.roles.len(), MAX_LIST_ITEMS);
    }
}
