//! Authorization as the proxy uses it: the policy store, entities and
//! entity source behind one call per request, plus reload.
//!
//! [`Authorization::decide`] maps the request for its route, loads the
//! relationships it needs (static file, then the HTTP source), and asks the
//! engine; every failure is a [`Verdict`] that denies. [`Authorization::reload`]
//! re-reads policies and entities, validates, runs the policy tests, and
//! swaps only if all of that passed.

use super::config::{AuthorizationConfig, EnforcementMode, MappingKind, RouteAuthzConfig};
use super::engine::{Categories, Decision, Engine, RequestFacts, StepUpNeed, Subject};
use super::entities::{EntityLookup, EntityStore, Layered, PrincipalEntity, Relationships};
use super::mapping::{FhirMapper, Mapping, MappingError, RequestView, TemplateMapper};
use super::policy_tests;
use super::source::HttpEntitySource;
use super::store::{PolicyBundle, PolicySource, PolicyStore};
use crate::authn::principal::Principal;
use crate::metrics::metrics;
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How one route maps and enforces.
#[derive(Debug)]
pub struct RouteAuthz {
    pub mode: EnforcementMode,
    mapper: RouteMapper,
    /// For FHIR: the base path requests are relative to.
    base_path: String,
}

#[derive(Debug)]
enum RouteMapper {
    Fhir(FhirMapper),
    Templates(TemplateMapper),
}

impl RouteAuthz {
    pub fn from_config(c: &RouteAuthzConfig, path_prefix: &str) -> Result<RouteAuthz, String> {
        let mapper = match c.mapping {
            MappingKind::Fhir => RouteMapper::Fhir(FhirMapper::new(c.fhir_base_urls.clone())),
            MappingKind::Templates => RouteMapper::Templates(
                TemplateMapper::new(c.templates.clone()).map_err(|e| e.to_string())?,
            ),
        };
        let base_path = c
            .fhir_base_path
            .clone()
            .unwrap_or_else(|| path_prefix.to_string());
        Ok(RouteAuthz {
            mode: c.mode,
            mapper,
            base_path: base_path.trim_end_matches('/').to_string(),
        })
    }

    /// Does mapping this request need its body (FHIR writes and batches)?
    pub fn needs_body(&self, method: &str) -> bool {
        matches!(self.mapper, RouteMapper::Fhir(_)) && matches!(method, "POST" | "PUT")
    }

    /// Maps a request whose `path` is the whole normalized path.
    pub fn map(&self, view: &RequestView<'_>) -> Result<Mapping, MappingError> {
        match &self.mapper {
            RouteMapper::Templates(t) => t.map(view),
            RouteMapper::Fhir(f) => {
                let relative = match view.path.strip_prefix(self.base_path.as_str()) {
                    Some("") => "/",
                    Some(rest) if rest.starts_with('/') => rest,
                    _ => {
                        return Err(MappingError::Unmapped {
                            reason: "outside-fhir-base",
                        })
                    }
                };
                f.map(&RequestView {
                    path: relative,
                    ..*view
                })
            }
        }
    }
}

/// The answer for one request.
#[derive(Debug, Clone)]
pub enum Verdict {
    Allow(Arc<Decision>),
    Deny(Arc<Decision>),
    /// Denied now, allowed after the principal authenticates more strongly
    /// or more recently.
    StepUp(Arc<Decision>, StepUpNeed),
    /// The request could not be mapped (denied; `BadRequest` is a 400).
    Unmapped(MappingError),
    /// Entities could not be loaded: denied.
    Unavailable(&'static str),
}

impl Verdict {
    /// `(outcome, reason)` for metrics and logs.
    pub fn labels(&self) -> (&'static str, &'static str) {
        match self {
            Verdict::Allow(_) => ("allow", "permitted"),
            Verdict::Deny(d) => ("deny", d.reason().map(|r| r.as_str()).unwrap_or("denied")),
            Verdict::StepUp(..) => ("step_up", "stronger_authentication"),
            Verdict::Unmapped(MappingError::BadRequest { .. }) => ("unmapped", "bad_request"),
            Verdict::Unmapped(MappingError::Unmapped { reason }) => ("unmapped", reason),
            Verdict::Unavailable(reason) => ("unavailable", reason),
        }
    }

    pub fn decision(&self) -> Option<&Arc<Decision>> {
        match self {
            Verdict::Allow(d) | Verdict::Deny(d) | Verdict::StepUp(d, _) => Some(d),
            _ => None,
        }
    }
}

/// The policies, entities and sources in force.
pub struct Authorization {
    policy_source: PolicySource,
    entities_path: Option<PathBuf>,
    policies: PolicyStore,
    entities: ArcSwap<EntityStore>,
    engine: Engine,
    categories: Categories,
    http: Option<HttpEntitySource>,
    /// (issuer, id) → the principal's Cedar entity, rebuilt when the
    /// principal or the entities change.
    principals: moka::sync::Cache<String, Arc<CachedPrincipal>>,
    pub decision_header: bool,
    test_on_reload: bool,
    reload_lock: Mutex<String>,
}

struct CachedPrincipal {
    principal: Arc<Principal>,
    entities_generation: usize,
    relationships: Option<Arc<Relationships>>,
    entity: PrincipalEntity,
}

/// The outcome of a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    Applied { version: String },
    Unchanged { version: String },
}

impl Authorization {
    /// Loads and checks everything; an error lists every problem.
    pub fn from_config(c: &AuthorizationConfig) -> Result<Authorization, String> {
        let policy_source = match &c.policies {
            Some(dir) => PolicySource::Dir(dir.clone()),
            None => PolicySource::Embedded,
        };
        let overrides: HashMap<String, String> = c.categories.clone().into_iter().collect();
        let categories = Categories::with_overrides(&overrides);
        let (bundle, entities) = load(
            &policy_source,
            c.entities.as_ref(),
            c.test_on_reload,
            &categories,
        )?;
        let time_zone = jiff::tz::TimeZone::get(&c.time_zone)
            .map_err(|e| format!("authorization.time_zone `{}`: {e}", c.time_zone))?;
        let http = match &c.entity_source {
            Some(s) => Some(
                HttpEntitySource::from_config(s)
                    .map_err(|e| format!("authorization.entity_source: {e}"))?,
            ),
            None => None,
        };
        let fingerprint = fingerprint(&policy_source, c.entities.as_ref());
        set_version_metric(None, &bundle.version);
        Ok(Authorization {
            policy_source,
            entities_path: c.entities.clone(),
            policies: PolicyStore::new(bundle),
            entities: ArcSwap::from_pointee(entities),
            engine: Engine::new(time_zone),
            categories,
            http,
            principals: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
            decision_header: c.decision_header,
            test_on_reload: c.test_on_reload,
            reload_lock: Mutex::new(fingerprint),
        })
    }

    /// The policy version in force.
    pub fn version(&self) -> String {
        self.policies.current().version.clone()
    }

    /// Decides one request on `route` for `principal`.
    pub async fn decide(
        &self,
        route: &RouteAuthz,
        principal: &Arc<Principal>,
        view: &RequestView<'_>,
        facts: &RequestFacts,
    ) -> Verdict {
        let mapping = match route.map(view) {
            Ok(m) => m,
            Err(e) => return Verdict::Unmapped(e),
        };
        let bundle = self.policies.current();
        let entities = self.entities.load_full();
        let principal_entity = match self.principal_entity(principal, &entities).await {
            Ok(p) => p,
            Err(reason) => return Verdict::Unavailable(reason),
        };
        // Patients the static file does not know come from the source.
        let mut fetched = EntityStore::empty();
        if let Some(http) = self.http.as_ref().filter(|h| h.resolves_patients()) {
            for patient in mapping.requests.iter().filter_map(|r| r.patient.as_deref()) {
                let uid = super::entities::uid(super::entities::types::PATIENT, patient);
                if entities.contains(&uid) || fetched.contains(&uid) {
                    continue;
                }
                match http.patient(patient, &bundle.schema).await {
                    Ok(Some(store)) => {
                        for (entity, ancestors) in store.iter() {
                            fetched.insert_closed_over(entity, ancestors, entities.as_ref());
                        }
                    }
                    Ok(None) => {}
                    Err(_) => return Verdict::Unavailable("entity_source_failed"),
                }
            }
        }
        let lookup = Layered {
            first: &entities,
            then: &fetched,
        };
        let subject = Subject {
            principal,
            entity: &principal_entity.entity,
        };
        let decision = Arc::new(self.engine.decide(
            &bundle,
            &lookup,
            &subject,
            &mapping.requests,
            facts,
            &self.categories,
        ));
        if decision.allowed {
            Verdict::Allow(decision)
        } else if let Some(need) = decision.step_up {
            Verdict::StepUp(decision, need)
        } else {
            Verdict::Deny(decision)
        }
    }

    async fn principal_entity(
        &self,
        principal: &Arc<Principal>,
        entities: &Arc<EntityStore>,
    ) -> Result<Arc<CachedPrincipal>, &'static str> {
        let generation = Arc::as_ptr(entities) as usize;
        let key = format!("{}\u{0}{}", principal.issuer, principal.id);
        let relationships = match &self.http {
            Some(http) => http
                .relationships(principal)
                .await
                .map_err(|_| "entity_source_failed")?,
            None => None,
        };
        if let Some(cached) = self.principals.get(&key) {
            let same_relationships = match (&cached.relationships, &relationships) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                _ => false,
            };
            if cached.entities_generation == generation
                && same_relationships
                && (Arc::ptr_eq(&cached.principal, principal) || *cached.principal == **principal)
            {
                return Ok(cached);
            }
        }
        let entity = PrincipalEntity::build(principal, entities.as_ref(), relationships.as_deref())
            .map_err(|_| "principal_entity_invalid")?;
        let cached = Arc::new(CachedPrincipal {
            principal: principal.clone(),
            entities_generation: generation,
            relationships,
            entity,
        });
        self.principals.insert(key, cached.clone());
        Ok(cached)
    }

    /// Re-reads policies and entities; swaps them in only if they load,
    /// validate and pass their tests. `trigger` names what asked.
    pub fn reload(&self, trigger: &'static str) -> Result<Reloaded, String> {
        let mut last = self
            .reload_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let print = fingerprint(&self.policy_source, self.entities_path.as_ref());
        let current = self.policies.current().version.clone();
        if *last == print && trigger == "watch" {
            return Ok(Reloaded::Unchanged { version: current });
        }
        match load(
            &self.policy_source,
            self.entities_path.as_ref(),
            self.test_on_reload,
            &self.categories,
        ) {
            Ok((bundle, entities)) => {
                *last = print;
                let version = bundle.version.clone();
                let changed = version != current;
                set_version_metric(Some(&current), &version);
                self.policies.swap(bundle);
                self.entities.store(Arc::new(entities));
                let result = if changed { "applied" } else { "unchanged" };
                metrics()
                    .policy_reloads
                    .with_label_values(&[trigger, result])
                    .inc();
                tracing::info!(event = "policy_reload", trigger, result, version = %version, previous = %current);
                Ok(if changed {
                    Reloaded::Applied { version }
                } else {
                    Reloaded::Unchanged { version }
                })
            }
            Err(problems) => {
                // Remember the broken content so the watcher does not
                // retry it every tick; a fix changes the fingerprint.
                *last = print;
                metrics()
                    .policy_reloads
                    .with_label_values(&[trigger, "rejected"])
                    .inc();
                tracing::warn!(event = "policy_reload", trigger, result = "rejected", version = %current, problems = %problems);
                Err(problems)
            }
        }
    }

    /// Has anything the watcher watches changed since the last (attempted)
    /// load?
    pub fn changed_on_disk(&self) -> bool {
        let print = fingerprint(&self.policy_source, self.entities_path.as_ref());
        let last = self
            .reload_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *last != print
    }

    pub fn watches_files(&self) -> bool {
        matches!(self.policy_source, PolicySource::Dir(_)) || self.entities_path.is_some()
    }
}

fn set_version_metric(previous: Option<&str>, version: &str) {
    if let Some(previous) = previous {
        let _ = metrics().policy_version.remove_label_values(&[previous]);
    }
    metrics()
        .policy_version
        .with_label_values(&[version])
        .set(1);
}

/// Loads policies (validated), runs their tests, and loads entities
/// (validated against the new schema).
fn load(
    source: &PolicySource,
    entities: Option<&PathBuf>,
    run_tests: bool,
    categories: &Categories,
) -> Result<(PolicyBundle, EntityStore), String> {
    let bundle = PolicyBundle::load(source).map_err(|e| e.to_string())?;
    if run_tests {
        let report = match source {
            PolicySource::Embedded => policy_tests::run_embedded(&bundle, categories),
            PolicySource::Dir(dir) => {
                let files = policy_tests::suites_in(dir);
                policy_tests::run_files(&bundle, &files, Some(dir), categories)
            }
        };
        if !report.ok() {
            let mut text = format!(
                "{} policy test(s) failed ({} passed):\n",
                report.failures.len(),
                report.passed
            );
            for f in &report.failures {
                text.push_str(&format!("  {}: {}: {}\n", f.file, f.case, f.message));
            }
            return Err(text);
        }
    }
    let store = match entities {
        None => EntityStore::empty(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("authorization.entities {}: {e}", path.display()))?;
            // This message reaches logs. Cedar's errors quote entity ids
            // and attribute values (a patient's id next to its flags is
            // PHI), so they are withheld; the CLI shows them.
            EntityStore::from_json(&text, Some(&bundle.schema)).map_err(|_| {
                format!(
                    "authorization.entities {}: does not load or does not match the schema (details withheld from logs: they can quote patient data; `phigate policy validate --entities {}` shows them)",
                    path.display(),
                    path.display()
                )
            })?
        }
    };
    Ok((bundle, store))
}

/// A hash of every watched file's name and content (policies, schema,
/// tests, entities); cheap for policy-sized directories.
fn fingerprint(source: &PolicySource, entities: Option<&PathBuf>) -> String {
    let mut h = Sha256::new();
    if let PolicySource::Dir(dir) = source {
        if let Ok(files) = source.read() {
            for (name, text) in files {
                h.update(name.as_bytes());
                h.update([0]);
                h.update(text.as_bytes());
                h.update([0]);
            }
        } else {
            h.update(b"unreadable");
        }
        for test in policy_tests::suites_in(dir) {
            h.update(test.to_string_lossy().as_bytes());
            h.update(std::fs::read(&test).unwrap_or_default());
        }
        h.update(std::fs::read(dir.join("entities.json")).unwrap_or_default());
    }
    if let Some(path) = entities {
        h.update(std::fs::read(path).unwrap_or_default());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::principal::{AuthMethod, PrincipalKind};

    fn alice() -> Arc<Principal> {
        let mut p = Principal::service(
            "alice",
            "https://idp",
            AuthMethod::Bearer,
            vec!["care_manager".into()],
        );
        p.kind = PrincipalKind::User;
        p.care_teams = vec!["team-01".into()];
        p.mfa = true;
        p.auth_time = Some(1_772_463_500);
        Arc::new(p)
    }

    fn facts() -> RequestFacts {
        RequestFacts {
            client_ip: "127.0.0.1".parse().unwrap(),
            device_trusted: false,
            purpose_of_use: None,
            break_glass: None,
            ticket: None,
            route: "fhir".into(),
            now: jiff::Timestamp::from_second(1_772_463_600).unwrap(),
        }
    }

    fn authz(dir: &std::path::Path) -> Authorization {
        let entities = dir.join("entities.json");
        std::fs::write(&entities, policy_tests::EMBEDDED_ENTITIES).unwrap();
        Authorization::from_config(&AuthorizationConfig {
            entities: Some(entities),
            ..AuthorizationConfig::default()
        })
        .unwrap()
    }

    fn fhir_route() -> RouteAuthz {
        let c = RouteAuthzConfig {
            mapping: MappingKind::Fhir,
            ..RouteAuthzConfig::default()
        };
        RouteAuthz::from_config(&c, "/fhir").unwrap()
    }

    fn get<'a>(path: &'a str, query: Option<&'a str>) -> RequestView<'a> {
        RequestView {
            method: "GET",
            path,
            query,
            content_type: None,
            body: None,
        }
    }

    #[tokio::test]
    async fn a_fhir_route_decides_relative_to_its_base() {
        let dir = tempfile::tempdir().unwrap();
        let a = authz(dir.path());
        let route = fhir_route();
        let v = a
            .decide(
                &route,
                &alice(),
                &get("/fhir/Observation", Some("patient=pat-0001")),
                &facts(),
            )
            .await;
        assert!(matches!(v, Verdict::Allow(_)), "{v:?}");
        let v = a
            .decide(
                &route,
                &alice(),
                &get("/fhir/Observation", Some("patient=pat-0008")),
                &facts(),
            )
            .await;
        assert!(matches!(v, Verdict::Deny(_)), "{v:?}");
        let v = a
            .decide(&route, &alice(), &get("/other", None), &facts())
            .await;
        assert!(matches!(v, Verdict::Unmapped(_)), "{v:?}");
    }

    #[tokio::test]
    async fn an_unmapped_template_path_is_denied() {
        let dir = tempfile::tempdir().unwrap();
        let a = authz(dir.path());
        let route = RouteAuthz::from_config(&RouteAuthzConfig::default(), "/app").unwrap();
        let v = a
            .decide(&route, &alice(), &get("/app/anything", None), &facts())
            .await;
        assert!(
            matches!(v, Verdict::Unmapped(MappingError::Unmapped { .. })),
            "{v:?}"
        );
    }

    #[test]
    fn policy_tests_decide_with_the_configured_categories() {
        // Calling Observations "notes" takes them from care managers: the
        // shipped suites say otherwise, so the set must not load.
        let c = AuthorizationConfig {
            categories: [("Observation".to_string(), "notes".to_string())].into(),
            ..AuthorizationConfig::default()
        };
        let err = Authorization::from_config(&c).err().expect("tests fail");
        assert!(err.contains("policy test(s) failed"), "{err}");
    }

    #[test]
    fn a_broken_entities_file_is_reported_without_patient_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entities.json");
        std::fs::write(
            &path,
            r#"[{"uid": {"type": "Phigate::Patient", "id": "MRN-4417"},
                 "attrs": {"care_teams": [], "flags": "vip", "enrolled": []},
                 "parents": []}]"#,
        )
        .unwrap();
        let err = Authorization::from_config(&AuthorizationConfig {
            entities: Some(path.clone()),
            ..AuthorizationConfig::default()
        })
        .err()
        .expect("the file is invalid");
        assert!(!err.contains("MRN-4417"), "{err}");
        assert!(!err.contains("vip"), "{err}");
        assert!(err.contains("policy validate --entities"), "{err}");
        // The CLI, run by the person fixing the file, names the entity.
        let (out, ok) = crate::authz::cli::validate(None, Some(&path));
        assert!(!ok);
        assert!(out.contains("MRN-4417"), "{out}");
    }

    #[tokio::test]
    async fn a_reload_with_a_broken_policy_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(policies.join("tests")).unwrap();
        for (name, text) in crate::authz::store::EMBEDDED {
            let path = policies.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let a = Authorization::from_config(&AuthorizationConfig {
            policies: Some(policies.clone()),
            ..AuthorizationConfig::default()
        })
        .unwrap();
        let before = a.version();
        assert!(!a.changed_on_disk());
        std::fs::write(
            policies.join("ccm/broken.cedar"),
            "@id(\"x\") permit(principal, action, resource) when { nope };",
        )
        .unwrap();
        assert!(a.changed_on_disk());
        let err = a.reload("watch").unwrap_err();
        assert!(err.contains("broken.cedar"), "{err}");
        assert_eq!(a.version(), before);
        // The same broken content is not retried every tick.
        assert_eq!(
            a.reload("watch"),
            Ok(Reloaded::Unchanged {
                version: before.clone()
            })
        );
        // A failing policy test also keeps the old set.
        std::fs::remove_file(policies.join("ccm/broken.cedar")).unwrap();
        std::fs::write(policies.join("tests/t.yaml"), "cases:\n  - name: nobody\n    principal: {id: x}\n    request: GET /metadata\n    expect: deny\n").unwrap();
        let err = a.reload("admin").unwrap_err();
        assert!(err.contains("1 policy test(s) failed"), "{err}");
        std::fs::remove_file(policies.join("tests/t.yaml")).unwrap();
        std::fs::write(
            policies.join("ccm/extra.cedar"),
            "@id(\"night-shift\") forbid(principal, action, resource) when { context.hour == 3 };",
        )
        .unwrap();
        match a.reload("sighup").unwrap() {
            Reloaded::Applied { version } => assert_ne!(version, before),
            other => panic!("{other:?}"),
        }
    }
}
