//! An HTTP entity source: patients and principal relationships the static
//! entities file does not hold, looked up per request and cached.
//!
//! Found entities are cached for `ttl`, "not found" for `negative_ttl`;
//! errors and timeouts are never cached and deny the request — a decision
//! is never made on relationships phigate could not load.

use super::config::{EntitySourceConfig, PrincipalFormat};
use super::entities::{types, EntityStore, Relationships};
use crate::authn::principal::Principal;
use cedar_policy::Schema;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("entity source unreachable or failed: {0}")]
    Unavailable(String),
    #[error("entity source returned an invalid answer: {0}")]
    Invalid(String),
}

impl SourceError {
    /// The cause as logs may carry it: transport failures and statuses, but
    /// never the content of an invalid answer (Cedar's errors quote entity
    /// ids and attribute values).
    pub fn for_logs(&self) -> String {
        match self {
            SourceError::Unavailable(why) => format!("unavailable: {why}"),
            SourceError::Invalid(_) => {
                "invalid answer (details withheld: they can quote patient data)".into()
            }
        }
    }
}

/// What a lookup found.
#[derive(Debug, Clone)]
enum Found<T> {
    Some(T),
    NotFound,
}

/// Per-entry expiry: found entries live `ttl`, absences `negative_ttl`.
struct Expiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl<K, T> moka::Expiry<K, Found<T>> for Expiry {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &Found<T>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value {
            Found::Some(_) => self.ttl,
            Found::NotFound => self.negative_ttl,
        })
    }
}

pub struct HttpEntitySource {
    http: reqwest::Client,
    patient_url: Option<String>,
    principal_url: Option<String>,
    principal_format: PrincipalFormat,
    bearer: Option<String>,
    patients: moka::future::Cache<String, Found<Arc<EntityStore>>>,
    principals: moka::future::Cache<String, Found<Arc<Relationships>>>,
}

impl HttpEntitySource {
    pub fn from_config(c: &EntitySourceConfig) -> Result<HttpEntitySource, String> {
        for url in [&c.patient_url, &c.principal_url].into_iter().flatten() {
            check_url(url, c.dangerous_allow_http)?;
        }
        let mut builder = reqwest::Client::builder()
            .timeout(c.timeout.get())
            .connect_timeout(c.timeout.get())
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &c.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {e}", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
            builder = builder.tls_built_in_root_certs(false);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        let bearer = match &c.bearer_token {
            Some(s) => Some(s.resolve().map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(HttpEntitySource {
            http,
            patient_url: c.patient_url.clone(),
            principal_url: c.principal_url.clone(),
            principal_format: c.principal_format,
            bearer,
            patients: cache(c.ttl.get(), c.negative_ttl.get()),
            principals: cache(c.ttl.get(), c.negative_ttl.get()),
        })
    }

    pub fn resolves_patients(&self) -> bool {
        self.patient_url.is_some()
    }

    /// The patient's entities; `Ok(None)` when the source says there is no
    /// such patient.
    pub async fn patient(
        &self,
        id: &str,
        schema: &Schema,
    ) -> Result<Option<Arc<EntityStore>>, SourceError> {
        let Some(template) = &self.patient_url else {
            return Ok(None);
        };
        let url = template.replace("{patient}", &encode(id));
        let found = self
            .patients
            .try_get_with(id.to_string(), async {
                match self.fetch(&url).await? {
                    None => Ok(Found::NotFound),
                    Some(body) => {
                        let store = EntityStore::from_json(&body, Some(schema))
                            .map_err(|e| SourceError::Invalid(e.to_string()))?;
                        let patient = super::entities::uid(types::PATIENT, id);
                        if !super::entities::EntityLookup::contains(&store, &patient) {
                            return Err(SourceError::Invalid(
                                "the answer does not contain the patient asked for".into(),
                            ));
                        }
                        Ok(Found::Some(Arc::new(store)))
                    }
                }
            })
            .await
            .map_err(|e: Arc<SourceError>| (*e).clone())?;
        Ok(match found {
            Found::Some(s) => Some(s),
            Found::NotFound => None,
        })
    }

    /// Relationships of the principal (care teams, roles); empty when the
    /// source has none or the URL needs a `fhirUser` the principal lacks.
    pub async fn relationships(
        &self,
        principal: &Principal,
    ) -> Result<Option<Arc<Relationships>>, SourceError> {
        let Some(template) = &self.principal_url else {
            return Ok(None);
        };
        if template.contains("{fhir_user}") && principal.fhir_user.is_none() {
            return Ok(None);
        }
        let url = template
            .replace("{principal}", &encode(&principal.id))
            .replace(
                "{fhir_user}",
                &encode(principal.fhir_user.as_deref().unwrap_or_default()),
            );
        let key = format!("{}\u{0}{}", principal.issuer, principal.id);
        let format = self.principal_format;
        let id = principal.id.clone();
        let found = self
            .principals
            .try_get_with(key, async move {
                match self.fetch(&url).await? {
                    None => Ok(Found::NotFound),
                    Some(body) => Ok(Found::Some(Arc::new(parse_relationships(
                        &body, format, &id,
                    )?))),
                }
            })
            .await
            .map_err(|e: Arc<SourceError>| (*e).clone())?;
        Ok(match found {
            Found::Some(r) => Some(r),
            Found::NotFound => None,
        })
    }

    /// GET `url`: the body on 200, `None` on 404, an error otherwise.
    async fn fetch(&self, url: &str) -> Result<Option<String>, SourceError> {
        let mut req = self.http.get(url).header("accept", "application/json");
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SourceError::Unavailable(without_url(&e)))?;
        match resp.status().as_u16() {
            200 => resp
                .text()
                .await
                .map(Some)
                .map_err(|e| SourceError::Unavailable(without_url(&e))),
            404 | 410 => Ok(None),
            status => Err(SourceError::Unavailable(format!("HTTP {status}"))),
        }
    }
}

/// reqwest errors quote the URL, which carries patient ids: keep only the
/// kind of failure.
fn cache<T: Clone + Send + Sync + 'static>(
    ttl: Duration,
    negative_ttl: Duration,
) -> moka::future::Cache<String, Found<T>> {
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .expire_after(Expiry { ttl, negative_ttl })
        .build()
}

fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_decode() || e.is_body() {
        "bad response body".into()
    } else {
        "request failed".into()
    }
}

fn parse_relationships(
    body: &str,
    format: PrincipalFormat,
    principal_id: &str,
) -> Result<Relationships, SourceError> {
    let invalid = |m: &str| SourceError::Invalid(m.to_string());
    let value: serde_json::Value = serde_json::from_str(body).map_err(|_| invalid("not JSON"))?;
    let mut out = Relationships::default();
    match format {
        PrincipalFormat::Cedar => {
            let entities = value
                .as_array()
                .ok_or_else(|| invalid("expected an array of entities"))?;
            for e in entities {
                let uid = &e["uid"];
                let is_principal = (uid["type"] == types::USER || uid["type"] == types::SERVICE)
                    && uid["id"] == principal_id;
                if !is_principal {
                    continue;
                }
                for parent in e["parents"].as_array().into_iter().flatten() {
                    let id = parent["id"].as_str().unwrap_or_default().to_string();
                    if parent["type"] == types::CARE_TEAM {
                        out.care_teams.push(id);
                    } else if parent["type"] == types::ROLE {
                        out.roles.push(id);
                    }
                }
            }
        }
        PrincipalFormat::FhirCareTeam => {
            if value["resourceType"] != "Bundle" {
                return Err(invalid("expected a FHIR Bundle"));
            }
            for entry in value["entry"].as_array().into_iter().flatten() {
                let team = &entry["resource"];
                if team["resourceType"] != "CareTeam" {
                    continue;
                }
                let id = team["identifier"][0]["value"]
                    .as_str()
                    .or_else(|| team["id"].as_str());
                if let Some(id) = id {
                    out.care_teams.push(id.to_string());
                }
            }
        }
    }
    out.care_teams.retain(|t| !t.is_empty());
    Ok(out)
}

fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(&url.replace(['{', '}'], "")).map_err(|e| format!("{url}: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http && is_loopback(&parsed) => Ok(()),
        "http" => Err(format!(
            "{url}: http:// only to a loopback source with dangerous_allow_http = true"
        )),
        other => Err(format!("{url}: unsupported scheme {other}")),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Percent-encodes an id for a URL path or query.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_care_teams_use_the_identifier_then_the_id() {
        let body = r#"{"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "CareTeam", "id": "ct-1", "identifier": [{"value": "team-01"}]}},
            {"resource": {"resourceType": "CareTeam", "id": "ct-2"}},
            {"resource": {"resourceType": "Patient", "id": "p"}}]}"#;
        let r = parse_relationships(body, PrincipalFormat::FhirCareTeam, "x").unwrap();
        assert_eq!(r.care_teams, ["team-01", "ct-2"]);
        assert!(parse_relationships("{}", PrincipalFormat::FhirCareTeam, "x").is_err());
    }

    #[test]
    fn cedar_relationships_come_from_the_principals_parents_only() {
        let body = r#"[
          {"uid": {"type": "Phigate::User", "id": "alice"}, "attrs": {}, "parents": [
             {"type": "Phigate::CareTeam", "id": "team-07"}, {"type": "Phigate::Role", "id": "nurse"}]},
          {"uid": {"type": "Phigate::User", "id": "mallory"}, "attrs": {}, "parents": [
             {"type": "Phigate::CareTeam", "id": "team-99"}]}]"#;
        let r = parse_relationships(body, PrincipalFormat::Cedar, "alice").unwrap();
        assert_eq!(r.care_teams, ["team-07"]);
        assert_eq!(r.roles, ["nurse"]);
    }

    #[test]
    fn urls_must_be_https_unless_loopback_and_allowed() {
        assert!(check_url("https://ehr.example/p/{patient}", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/p/{patient}", true).is_ok());
        assert!(check_url("http://127.0.0.1:9/p/{patient}", false).is_err());
        assert!(check_url("http://ehr.example/p/{patient}", true).is_err());
        assert_eq!(encode("Practitioner/1 x"), "Practitioner%2F1%20x");
    }
}
