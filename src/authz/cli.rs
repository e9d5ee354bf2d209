//! `phigate policy validate | test | explain`: the tools security staff use
//! to check, test and understand policies without running the proxy.

use super::engine::{Categories, Decision, Engine, RequestFacts, Subject};
use super::entities::{EntityStore, PrincipalEntity};
use super::mapping::{Mapping, RequestView};
use super::policy_tests::{self, TestReport};
use super::runtime::RouteAuthz;
use super::store::{PolicyBundle, PolicySource};
use super::RouteAuthzConfig;
use crate::authn::principal::{AuthMethod, ClaimMapping, Principal, PrincipalKind};
use crate::authn::MfaRules;
use serde::Serialize;
use std::path::{Path, PathBuf};

fn source(dir: Option<&Path>) -> PolicySource {
    match dir {
        Some(d) => PolicySource::Dir(d.to_path_buf()),
        None => PolicySource::Embedded,
    }
}

/// `policy validate`: loads and strictly validates; the entities file too
/// when given. Returns the report text and success.
pub fn validate(dir: Option<&Path>, entities: Option<&Path>) -> (String, bool) {
    let src = source(dir);
    match PolicyBundle::load(&src) {
        Err(e) => (e.to_string(), false),
        Ok(bundle) => {
            let mut out = format!(
                "{}: {} policies valid against the schema (version {})\n",
                src.describe(),
                bundle.len(),
                bundle.version
            );
            if let Some(path) = entities {
                match std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        EntityStore::from_json(&t, Some(&bundle.schema)).map_err(|e| e.to_string())
                    }) {
                    Ok(store) => out.push_str(&format!(
                        "{}: {} entities valid\n",
                        path.display(),
                        store.len()
                    )),
                    Err(e) => return (format!("{out}{}: {e}\n", path.display()), false),
                }
            }
            (out, true)
        }
    }
}

/// `policy test`: runs the given suites, or the policy directory's
/// `tests/` (the embedded suites for the embedded policies). With a
/// config, as `serve` runs them: its policies (unless `dir` is given), its
/// data categories, and its routes for `mapping: routes` suites.
pub fn test(
    dir: Option<&Path>,
    files: &[PathBuf],
    config: Option<&crate::config::Config>,
) -> (String, bool) {
    let configured = config.map(|c| &c.authorization);
    let dir = dir.or(configured.and_then(|a| a.policies.as_deref()));
    let src = match (dir, configured) {
        (None, Some(a)) if !a.example_policies => {
            return (
                "the config names no [authorization] policies directory\n".into(),
                false,
            )
        }
        _ => source(dir),
    };
    let bundle = match PolicyBundle::load(&src) {
        Ok(b) => b,
        Err(e) => return (e.to_string(), false),
    };
    let categories = match configured {
        Some(a) => Categories::with_overrides(&a.categories.clone().into_iter().collect()),
        // The default data categories: no proxy configuration was given.
        None => Categories::default(),
    };
    let routes = match config {
        Some(c) => {
            match super::routed::Routes::from_config(&c.routes, c.authorization.entities.as_deref())
            {
                Ok(r) => Some(r),
                Err(e) => return (format!("{e}\n"), false),
            }
        }
        None => None,
    };
    let report: TestReport = match (dir, files.is_empty()) {
        (_, false) => policy_tests::run_files(&bundle, files, dir, &categories, routes.as_ref()),
        (Some(d), true) => policy_tests::run_files(
            &bundle,
            &policy_tests::suites_in(d),
            Some(d),
            &categories,
            routes.as_ref(),
        ),
        (None, true) => policy_tests::run_embedded(&bundle, &categories),
    };
    let mut out = String::new();
    for f in &report.failures {
        out.push_str(&format!(
            "FAIL {} :: {}\n     {}\n",
            f.file, f.case, f.message
        ));
    }
    out.push_str(&format!(
        "{} passed, {} failed\n",
        report.passed,
        report.failures.len()
    ));
    (out, report.ok())
}

/// What `policy explain` is asked about.
pub struct ExplainArgs<'a> {
    pub policies: Option<&'a Path>,
    pub entities: Option<&'a Path>,
    /// The entities are exactly `entities` (from a config: what `serve`
    /// decides with), with no example fallback.
    pub exact_entities: bool,
    pub method: &'a str,
    /// Path and query as the client sends it, e.g. `/fhir/Observation?patient=1`.
    pub target: &'a str,
    /// Claims of the principal (a token's payload or hand-written JSON).
    pub claims: serde_json::Value,
    /// `X-Phigate-*` declarations as (name, value).
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// The route's authorization settings and path prefix.
    pub route: RouteAuthzConfig,
    pub route_prefix: String,
    /// An upstream answer to run through the response phase.
    pub response: Option<Vec<u8>>,
    /// The redaction key (`pseudonym_key`), for keyed masks.
    pub key: Option<std::sync::Arc<[u8]>>,
}

/// What an offline decision is made over: the policies, entities, the
/// principal and the request's circumstances.
pub struct Offline {
    pub bundle: PolicyBundle,
    pub store: EntityStore,
    pub principal: Principal,
    pub entity: PrincipalEntity,
    pub facts: RequestFacts,
    pub engine: Engine,
}

impl Offline {
    /// Loads what `explain` and `redact` decide with. Without an entities
    /// file, the example entities go with the example policies and a
    /// policy directory's `entities.json` with it.
    pub fn load(
        policies: Option<&Path>,
        entities: Option<&Path>,
        claims: &serde_json::Value,
        headers: &[(String, String)],
    ) -> Result<Offline, String> {
        Self::load_with(policies, entities, false, claims, headers)
    }

    /// [`Offline::load`]; with `exact`, the entities are exactly `entities`
    /// (none when `None`), as `serve` has them from a config.
    pub fn load_with(
        policies: Option<&Path>,
        entities: Option<&Path>,
        exact: bool,
        claims: &serde_json::Value,
        headers: &[(String, String)],
    ) -> Result<Offline, String> {
        let bundle = PolicyBundle::load(&source(policies)).map_err(|e| e.to_string())?;
        let store = match entities {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                EntityStore::from_json(&text, Some(&bundle.schema)).map_err(|e| e.to_string())?
            }
            None if exact => EntityStore::empty(),
            None if policies.is_none() => {
                EntityStore::from_json(policy_tests::EMBEDDED_ENTITIES, Some(&bundle.schema))
                    .map_err(|e| e.to_string())?
            }
            None => match policies
                .map(|d| d.join("entities.json"))
                .filter(|p| p.exists())
            {
                Some(p) => {
                    let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
                    EntityStore::from_json(&text, Some(&bundle.schema))
                        .map_err(|e| e.to_string())?
                }
                None => EntityStore::empty(),
            },
        };
        let is_service = claims.get("kind").and_then(|k| k.as_str()) == Some("service");
        let mut principal = ClaimMapping::default()
            .principal(claims, "explain", AuthMethod::Bearer, &MfaRules::default())
            .ok_or("the claims have no `sub`")?;
        if is_service {
            principal.kind = PrincipalKind::Service;
            principal.method = AuthMethod::ApiKey;
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let facts = RequestFacts {
            client_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            device_trusted: false,
            purpose_of_use: header("x-phigate-purpose-of-use"),
            break_glass: header("x-phigate-break-glass"),
            ticket: header("x-phigate-ticket"),
            route: "explain".into(),
            now: jiff::Timestamp::now(),
        };
        let entity = PrincipalEntity::build(&principal, &store, None).map_err(|e| e.to_string())?;
        let mut engine = Engine::new(jiff::tz::TimeZone::UTC);
        engine.record_entities = true;
        Ok(Offline {
            bundle,
            store,
            principal,
            entity,
            facts,
            engine,
        })
    }

    /// A judge of records and classes over this.
    pub fn judge(&self) -> crate::redact::offline::OfflineJudge<'_> {
        crate::redact::offline::OfflineJudge::new(crate::redact::offline::Decider::Cedar {
            bundle: &self.bundle,
            store: &self.store,
            principal: &self.principal,
            entity: &self.entity,
            facts: &self.facts,
            engine: &self.engine,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub request: String,
    pub mapping: Option<Mapping>,
    pub mapping_error: Option<String>,
    pub principal: Principal,
    pub decision: Option<Decision>,
    pub policy_version: String,
    /// The response phase: the plan for the request's type and, with a
    /// response, every record's decision (rendered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redaction: Option<String>,
    /// The redacted response body (with a response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted: Option<serde_json::Value>,
}

/// Decodes a JWT's payload without verifying it (explain is offline
/// tooling: it shows what a token *would* be allowed, it admits nothing).
pub fn unverified_claims(token: &str) -> Result<serde_json::Value, String> {
    jsonwebtoken::dangerous::insecure_decode_claims(token.trim())
        .map_err(|e| format!("not a JWT: {e}"))
}

pub fn explain(args: &ExplainArgs<'_>) -> Result<Explanation, String> {
    let off = Offline::load_with(
        args.policies,
        args.entities,
        args.exact_entities,
        &args.claims,
        &args.headers,
    )?;
    let (bundle, principal) = (&off.bundle, &off.principal);
    let route = RouteAuthz::from_config(&args.route, &args.route_prefix)?;
    // The path as serve maps it: normalized first.
    let normalized = super::routed::normalize_target(args.target)?;
    let view = RequestView {
        method: args.method,
        path: normalized.path(),
        query: normalized.query(),
        content_type: args.body.as_ref().map(|_| "application/fhir+json"),
        body: args.body.as_deref(),
        if_none_exist: None,
        stored: None,
    };
    let mut explanation = Explanation {
        request: format!("{} {}", args.method, args.target),
        mapping: None,
        mapping_error: None,
        principal: principal.clone(),
        decision: None,
        policy_version: bundle.version.clone(),
        redaction: None,
        redacted: None,
    };
    let mapping = match route.map(&view) {
        Ok(m) => m,
        Err(e) => {
            explanation.mapping_error = Some(e.to_string());
            return Ok(explanation);
        }
    };
    let decision = off.engine.decide(
        bundle,
        &off.store,
        &Subject {
            principal,
            entity: &off.entity,
        },
        &mapping.requests,
        &off.facts,
        &Categories::default(),
    );
    // The response phase: the plan for the request's type, and every
    // record of a given response.
    let resource_type = mapping
        .requests
        .first()
        .map(|r| r.resource.resource_type.clone())
        .unwrap_or_default();
    explanation.mapping = Some(mapping);
    explanation.decision = Some(decision);
    let mut judge = off.judge();
    judge.plan_for(&resource_type);
    let kind = match args.route.mapping {
        super::config::MappingKind::Fhir => crate::redact::body::BodyKind::Fhir,
        super::config::MappingKind::Templates => crate::redact::body::BodyKind::Json,
    };
    let redacted = match &args.response {
        Some(body) => Some(crate::redact::offline::redact(
            &mut judge,
            kind,
            &resource_type,
            args.key.clone(),
            body,
        )?),
        None => None,
    };
    explanation.redaction = Some(crate::redact::offline::render(&judge, redacted.as_ref()));
    explanation.redacted = redacted
        .and_then(|r| r.body)
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(explanation)
}

/// The human-readable explanation.
pub fn render(e: &Explanation) -> String {
    let mut out = format!("request    {}\n", e.request);
    let p = &e.principal;
    out.push_str(&format!(
        "principal  {} (roles: {}; care teams: {}; mfa: {}{})\n",
        p.id,
        p.roles.join(", "),
        p.care_teams.join(", "),
        if p.mfa { "yes" } else { "no" },
        p.patient
            .as_ref()
            .map(|x| format!("; patient: {x}"))
            .unwrap_or_default(),
    ));
    if let Some(err) = &e.mapping_error {
        out.push_str(&format!(
            "mapping    {err}\ndecision   DENY (an unmapped request is never forwarded)\n"
        ));
        return out;
    }
    if let (Some(m), Some(d)) = (&e.mapping, &e.decision) {
        for (r, a) in m.requests.iter().zip(&d.accesses) {
            out.push_str(&format!(
                "access     {} {}{}{}  [{}]\n",
                a.action,
                a.resource,
                r.patient
                    .as_ref()
                    .map(|p| format!(" of patient {p}"))
                    .unwrap_or_default(),
                r.fan_out
                    .map(|f| format!(" (fan-out: {f})"))
                    .unwrap_or_default(),
                r.interaction,
            ));
            out.push_str(&format!("  entities {}\n", a.entities.join(", ")));
            out.push_str(&format!(
                "  result   {}{}{}\n",
                if a.allowed { "allow" } else { "deny" },
                a.reason
                    .map(|r| format!(" ({})", r.as_str()))
                    .unwrap_or_default(),
                if a.determining.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", a.determining.join(", "))
                },
            ));
        }
        let verdict = if d.allowed {
            "ALLOW"
        } else if d.step_up.is_some() {
            "STEP-UP (denied now; allowed after stronger or fresher sign-in)"
        } else {
            "DENY"
        };
        out.push_str(&format!(
            "decision   {verdict}{}  (policy version {})\n",
            if d.break_glass {
                " — break-glass, flagged for review"
            } else {
                ""
            },
            e.policy_version
        ));
    }
    if let Some(r) = &e.redaction {
        out.push_str(r);
    }
    out
}

/// `phigate policy init DIR`: the schema, the data classes, the example
/// CCM policies and their tests, and the example entities, written into a
/// new (or empty) directory. Returns the files written.
pub fn init(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "{} is not empty: nothing is overwritten; name a new directory",
            dir.display()
        ));
    }
    let files = super::store::EMBEDDED
        .iter()
        .chain(super::policy_tests::EMBEDDED_SUITES)
        .copied()
        .chain(std::iter::once((
            "entities.json",
            super::policy_tests::EMBEDDED_ENTITIES,
        )));
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_names_mapping_entities_and_policies() {
        let args = ExplainArgs {
            policies: None,
            entities: None,
            exact_entities: false,
            method: "GET",
            target: "/fhir/Observation?patient=pat-0001",
            claims: serde_json::json!({"sub": "alice", "roles": ["care_manager"], "care_teams": ["team-01"], "amr": ["pwd", "otp"]}),
            headers: vec![],
            body: None,
            route: RouteAuthzConfig {
                mapping: super::super::config::MappingKind::Fhir,
                ..RouteAuthzConfig::default()
            },
            route_prefix: "/fhir".into(),
            response: None,
            key: None,
        };
        let e = explain(&args).unwrap();
        let text = render(&e);
        assert!(
            text.contains("search Observation of patient pat-0001"),
            "{text}"
        );
        assert!(text.contains("Phigate::Patient::\"pat-0001\""), "{text}");
        assert!(text.contains("ALLOW"), "{text}");
        assert!(text.contains("care-team-clinical-access"), "{text}");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["decision"]["allowed"], true);
        // The plan for the request's type, always.
        assert!(text.contains("classes    Observation: shown ["), "{text}");
        assert!(text.contains("withheld [count, notes]"), "{text}");

        // With an answer: every record's decision and the redacted body.
        let response = serde_json::json!({"resourceType": "Bundle", "type": "searchset", "total": 3, "entry": [
            {"resource": {"resourceType": "Observation", "id": "a", "subject": {"reference": "Patient/pat-0001"},
                          "note": [{"text": "private"}], "status": "final"}},
            {"resource": {"resourceType": "Observation", "id": "b", "subject": {"reference": "Patient/pat-0001"},
                          "meta": {"security": [{"code": "PSY"}]}}},
            {"resource": {"resourceType": "Observation", "id": "c", "subject": {"reference": "Patient/pat-0008"}}}
        ]});
        let args = ExplainArgs {
            response: Some(serde_json::to_vec(&response).unwrap()),
            ..args
        };
        let e = explain(&args).unwrap();
        let text = render(&e);
        assert!(
            text.contains("record     Observation/a of patient pat-0001  shown"),
            "{text}"
        );
        assert!(
            text.contains("record     Observation/b of patient pat-0001 [labels PSY]  REMOVED (forbidden by sensitive-labels-need-break-glass)"),
            "{text}"
        );
        assert!(
            text.contains("Observation/c of patient pat-0008  REMOVED"),
            "{text}"
        );
        assert!(
            text.contains("removed [2 Observation], redacted [notes ×1]"),
            "{text}"
        );
        let redacted = e.redacted.unwrap();
        assert_eq!(redacted["entry"].as_array().unwrap().len(), 1);
        assert!(redacted["entry"][0]["resource"].get("note").is_none());
        assert!(redacted.get("total").is_none());
    }

    #[test]
    fn validate_and_test_report_on_the_embedded_set() {
        let (out, ok) = validate(None, None);
        assert!(ok, "{out}");
        let (out, ok) = test(None, &[], None);
        assert!(ok, "{out}");
        assert!(out.contains(" passed, 0 failed"), "{out}");
    }

    #[test]
    fn unverified_claims_decode_a_jwt_payload() {
        let token = "e30.eyJzdWIiOiJhbGljZSJ9.sig";
        assert_eq!(unverified_claims(token).unwrap()["sub"], "alice");
        assert!(unverified_claims("nope").is_err());
    }
}
