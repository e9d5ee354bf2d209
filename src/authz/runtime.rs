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
use super::mapping::{
    AccessRequest, FhirMapper, Mapping, MappingError, RequestView, TemplateMapper,
};
use super::policy_tests;
use super::source::HttpEntitySource;
use super::store::{PolicyBundle, PolicySource};
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
        matches!(self.mapper, RouteMapper::Fhir(_)) && matches!(method, "POST" | "PUT" | "PATCH")
    }

    /// Whether a `method` request on `path` may write by id (or carry a
    /// Bundle that does), so its stored records may need reading first.
    pub fn may_write_by_id(&self, method: &str, path: &str) -> bool {
        if !matches!(self.mapper, RouteMapper::Fhir(_)) {
            return false;
        }
        match method {
            "PUT" | "PATCH" | "DELETE" => true,
            "POST" => matches!(path.strip_prefix(self.base_path.as_str()), Some("" | "/")),
            _ => false,
        }
    }

    /// The upstream path of one FHIR instance on this route.
    pub fn instance_path(&self, resource_type: &str, id: &str) -> String {
        format!("{}/{resource_type}/{id}", self.base_path)
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

/// Most accesses one request may need decided.
pub const MAX_ACCESSES: usize = 1_000;

/// Policies (with their schema) and entities in force, loaded, validated
/// and swapped as one: a request decided on a snapshot sees one version of
/// each, never old policies over new entities.
#[derive(Debug)]
pub struct Snapshot {
    pub policies: Arc<PolicyBundle>,
    pub entities: Arc<EntityStore>,
    /// Content hash of the entities file (`"none"` without one).
    pub entities_version: String,
    /// Unique per snapshot: caches key on it, never on an address.
    pub generation: u64,
}

static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Snapshot {
    fn new(policies: PolicyBundle, entities: EntityStore, entities_version: String) -> Snapshot {
        Snapshot {
            policies: Arc::new(policies),
            entities: Arc::new(entities),
            entities_version,
            generation: NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The policy set's version.
    pub fn version(&self) -> &str {
        &self.policies.version
    }
}

/// What one request's authorization loaded: its snapshot, clock reading and
/// facts, the principal's entity and any patients fetched for it. Later
/// decisions for the same request (the response phase's per-record checks)
/// run synchronously over exactly this, with [`Authorization::decide_records`].
pub struct Loaded {
    pub snapshot: Arc<Snapshot>,
    pub facts: RequestFacts,
    principal: Arc<CachedPrincipal>,
    fetched: EntityStore,
}

impl Loaded {
    /// The snapshot's entities, then the patients fetched for the request.
    fn lookup(&self) -> Layered<'_> {
        Layered {
            first: self.snapshot.entities.as_ref(),
            then: &self.fetched,
        }
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            principal: &self.principal.principal,
            entity: &self.principal.entity,
        }
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("generation", &self.snapshot.generation)
            .finish_non_exhaustive()
    }
}

/// A decision and what it was decided on.
pub struct Decided {
    pub verdict: Verdict,
    /// `None` when nothing was loaded (the request could not be mapped or
    /// entities could not be had).
    pub loaded: Option<Loaded>,
}

/// The policies, entities and sources in force.
pub struct Authorization {
    policy_source: PolicySource,
    entities_path: Option<PathBuf>,
    snapshot: ArcSwap<Snapshot>,
    engine: Engine,
    categories: Categories,
    http: Option<HttpEntitySource>,
    /// (issuer, id) → the principal's Cedar entity, rebuilt when the
    /// principal or the entities change.
    principals: moka::sync::Cache<String, Arc<CachedPrincipal>>,
    /// A principal's compiled field rules per resource type, for requests
    /// alike in everything `disclose` can read (see [`Authorization::field_rules`]).
    field_rules:
        moka::sync::Cache<String, (Arc<CachedPrincipal>, Arc<crate::redact::rules::Rules>)>,
    pub decision_header: bool,
    test_on_reload: bool,
    /// The config's routes, which `mapping: routes` suites map through.
    routes: Option<Arc<super::routed::Routes>>,
    reload_lock: Mutex<String>,
    /// Told of every reload attempt (the audit trail records them).
    pub on_reload: std::sync::OnceLock<ReloadHook>,
}

/// What hears of reloads (the audit trail).
pub type ReloadHook = Box<dyn Fn(&ReloadReport<'_>) + Send + Sync>;

/// One reload attempt, for the audit trail.
#[derive(Debug)]
pub struct ReloadReport<'a> {
    pub trigger: &'a str,
    /// `applied`, `unchanged` or `rejected`.
    pub result: &'a str,
    pub version: &'a str,
    pub entities_version: &'a str,
    pub previous: &'a str,
    /// How many problems a rejected set had.
    pub problems: usize,
}

struct CachedPrincipal {
    principal: Arc<Principal>,
    /// The snapshot generation its entity was built from.
    generation: u64,
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
    /// Loads and checks everything; an error lists every problem. Suites
    /// with `mapping: routes` cannot run without routes: see
    /// [`Authorization::with_routes`].
    pub fn from_config(c: &AuthorizationConfig) -> Result<Authorization, String> {
        Self::with_routes(c, None)
    }

    /// As `serve` builds it: policy tests map routed suites through the
    /// config's `routes`, at start and at every reload.
    pub fn with_routes(
        c: &AuthorizationConfig,
        routes: Option<super::routed::Routes>,
    ) -> Result<Authorization, String> {
        let routes = routes.map(Arc::new);
        let policy_source = match (&c.policies, c.example_policies) {
            (Some(dir), _) => PolicySource::Dir(dir.clone()),
            (None, true) => PolicySource::Embedded,
            (None, false) => PolicySource::Nothing,
        };
        if matches!(policy_source, PolicySource::Embedded) {
            tracing::warn!(
                "deciding with the EXAMPLE policy set compiled into phigate (authorization.example_policies = true): for trying phigate, not for real patients"
            );
        }
        let overrides: HashMap<String, String> = c.categories.clone().into_iter().collect();
        let categories = Categories::with_overrides(&overrides);
        let (bundle, entities, entities_version) = load(
            &policy_source,
            c.entities.as_ref(),
            c.test_on_reload,
            &categories,
            routes.as_deref(),
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
            snapshot: ArcSwap::from_pointee(Snapshot::new(bundle, entities, entities_version)),
            engine: Engine::new(time_zone),
            categories,
            http,
            principals: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
            field_rules: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(std::time::Duration::from_secs(600))
                .build(),
            decision_header: c.decision_header,
            test_on_reload: c.test_on_reload,
            routes,
            reload_lock: Mutex::new(fingerprint),
            on_reload: std::sync::OnceLock::new(),
        })
    }

    /// The policy version in force.
    pub fn version(&self) -> String {
        self.snapshot.load().policies.version.clone()
    }

    /// The snapshot in force: a request takes it once and keeps it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Decides one request on `route` for `principal` with the snapshot
    /// in force.
    pub async fn decide(
        &self,
        route: &RouteAuthz,
        principal: &Arc<Principal>,
        view: &RequestView<'_>,
        facts: &RequestFacts,
    ) -> Verdict {
        self.decide_on(self.snapshot(), route, principal, view, facts.clone())
            .await
            .verdict
    }

    /// Decides one request on `snapshot`, and keeps what it loaded for the
    /// request's later decisions.
    pub async fn decide_on(
        &self,
        snapshot: Arc<Snapshot>,
        route: &RouteAuthz,
        principal: &Arc<Principal>,
        view: &RequestView<'_>,
        facts: RequestFacts,
    ) -> Decided {
        let unloaded = |verdict| Decided {
            verdict,
            loaded: None,
        };
        let mapping = match route.map(view) {
            Ok(m) => m,
            Err(e) => return unloaded(Verdict::Unmapped(e)),
        };
        // Every access is a Cedar decision: a request that asks for more
        // than any real one does (10,000 ids times a dozen includes) is
        // refused before it costs the data plane a second of CPU.
        if mapping.requests.len() > MAX_ACCESSES {
            return unloaded(Verdict::Unmapped(MappingError::bad(
                "the request asks about too many patients and types at once",
            )));
        }
        let principal_entity = match self.principal_entity(principal, &snapshot).await {
            Ok(p) => p,
            Err(reason) => return unloaded(Verdict::Unavailable(reason)),
        };
        let entities = &snapshot.entities;
        // Patients the static file does not know come from the source.
        let mut fetched = EntityStore::empty();
        if let Some(http) = self.http.as_ref().filter(|h| h.resolves_patients()) {
            for patient in mapping.requests.iter().filter_map(|r| r.patient.as_deref()) {
                let uid = super::entities::uid(super::entities::types::PATIENT, patient);
                if entities.contains(&uid) || fetched.contains(&uid) {
                    continue;
                }
                match http.patient(patient, &snapshot.policies.schema).await {
                    Ok(Some(store)) => {
                        for (entity, ancestors) in store.iter() {
                            fetched.insert_closed_over(entity, ancestors, entities.as_ref());
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // The cause, never the patient.
                        tracing::warn!(cause = %e.for_logs(), "entity source failed for a patient; the request is denied");
                        return unloaded(Verdict::Unavailable("entity_source_failed"));
                    }
                }
            }
        }
        let loaded = Loaded {
            snapshot,
            facts,
            principal: principal_entity,
            fetched,
        };
        let decision = Arc::new(self.decide_records(&loaded, &mapping.requests));
        let verdict = if decision.allowed {
            Verdict::Allow(decision)
        } else if let Some(need) = decision.step_up {
            Verdict::StepUp(decision, need)
        } else {
            Verdict::Deny(decision)
        };
        Decided {
            verdict,
            loaded: Some(loaded),
        }
    }

    /// Decides `requests` synchronously over what a request already loaded:
    /// its snapshot, principal entity, fetched patients, facts and clock.
    pub fn decide_records(&self, loaded: &Loaded, requests: &[AccessRequest]) -> Decision {
        let (lookup, subject) = (loaded.lookup(), loaded.subject());
        self.engine.decide(
            &loaded.snapshot.policies,
            &lookup,
            &subject,
            requests,
            &loaded.facts,
            &self.categories,
        )
    }

    /// Whether every access may be shown, for a record of a response with
    /// `labels`, over what the request loaded.
    pub fn shows_record(
        &self,
        loaded: &Loaded,
        requests: &[AccessRequest],
        labels: &[String],
    ) -> bool {
        let (lookup, subject) = (loaded.lookup(), loaded.subject());
        self.engine.allows_all(
            &loaded.snapshot.policies,
            &lookup,
            &subject,
            requests,
            &loaded.facts,
            &self.categories,
            labels,
        )
    }

    /// Whether data class `class` may be shown in records of
    /// `resource_type`, over what the request loaded.
    pub fn discloses(&self, loaded: &Loaded, class: &str, resource_type: &str) -> bool {
        let (lookup, subject) = (loaded.lookup(), loaded.subject());
        self.engine
            .disclose_decision(
                &loaded.snapshot.policies,
                &lookup,
                &subject,
                class,
                resource_type,
                &loaded.facts,
                &self.categories,
            )
            .allowed
    }

    /// The field rules for records of `resource_type` in this request's
    /// answers, built by `build` (which decides `disclose` per class) or
    /// taken from an earlier request alike in all `disclose` can read:
    /// the snapshot, the principal's entity, and the request's declared
    /// circumstances, client and route, to the minute. Policies that read
    /// `context.now` or `context.auth_age` change by the second: then
    /// nothing is shared.
    pub fn field_rules(
        &self,
        loaded: &Loaded,
        resource_type: &str,
        build: impl FnOnce() -> crate::redact::rules::Rules,
    ) -> Arc<crate::redact::rules::Rules> {
        let policies = &loaded.snapshot.policies;
        if policies.disclose_reads_time {
            return Arc::new(build());
        }
        let f = &loaded.facts;
        // The principal's entry stays alive in the value, so its address
        // names it for as long as the key exists.
        let key = format!(
            "{}\0{:p}\0{resource_type}\0{:?}\0{:?}\0{:?}\0{}\0{}\0{}\0{}",
            loaded.snapshot.generation,
            Arc::as_ptr(&loaded.principal),
            f.purpose_of_use,
            f.break_glass,
            f.ticket,
            f.client_ip,
            f.device_trusted,
            f.route,
            f.now.as_second().div_euclid(60),
        );
        if let Some((_, rules)) = self.field_rules.get(&key) {
            return rules;
        }
        let rules = Arc::new(build());
        self.field_rules
            .insert(key, (loaded.principal.clone(), rules.clone()));
        rules
    }

    async fn principal_entity(
        &self,
        principal: &Arc<Principal>,
        snapshot: &Snapshot,
    ) -> Result<Arc<CachedPrincipal>, &'static str> {
        let generation = snapshot.generation;
        let entities = &snapshot.entities;
        let key = format!("{}\u{0}{}", principal.issuer, principal.id);
        let relationships = match &self.http {
            Some(http) => http
                .relationships(principal)
                .await
                .map_err(|e| {
                    tracing::warn!(cause = %e.for_logs(), principal = %principal.id, "entity source failed for a principal; the request is denied");
                    "entity_source_failed"
                })?,
            None => None,
        };
        if let Some(cached) = self.principals.get(&key) {
            let same_relationships = match (&cached.relationships, &relationships) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                _ => false,
            };
            if cached.generation == generation
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
            generation,
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
        let current = self.version();
        if *last == print && trigger == "watch" {
            return Ok(Reloaded::Unchanged { version: current });
        }
        match load(
            &self.policy_source,
            self.entities_path.as_ref(),
            self.test_on_reload,
            &self.categories,
            self.routes.as_deref(),
        ) {
            Ok((bundle, entities, entities_version)) => {
                *last = print;
                let version = bundle.version.clone();
                let changed =
                    version != current || entities_version != self.snapshot.load().entities_version;
                set_version_metric(Some(&current), &version);
                // Policies and entities change together, in one swap.
                self.snapshot.store(Arc::new(Snapshot::new(
                    bundle,
                    entities,
                    entities_version.clone(),
                )));
                let result = if changed { "applied" } else { "unchanged" };
                metrics()
                    .policy_reloads
                    .with_label_values(&[trigger, result])
                    .inc();
                tracing::info!(event = "policy_reload", trigger, result, version = %version, entities_version = %entities_version, previous = %current, "policy reload");
                if let Some(hook) = self.on_reload.get() {
                    hook(&ReloadReport {
                        trigger,
                        result,
                        version: &version,
                        entities_version: &entities_version,
                        previous: &current,
                        problems: 0,
                    });
                }
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
                tracing::warn!(event = "policy_reload", trigger, result = "rejected", version = %current, problems = %problems, "policy reload rejected; the last good set stays");
                if let Some(hook) = self.on_reload.get() {
                    let entities_version = self.snapshot.load().entities_version.clone();
                    hook(&ReloadReport {
                        trigger,
                        result: "rejected",
                        version: &current,
                        entities_version: &entities_version,
                        previous: &current,
                        problems: problems.lines().count().max(1),
                    });
                }
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
        !self.watched_dirs().is_empty()
    }

    /// The directories whose changes may change policies or entities, and
    /// whether to watch them recursively: the policy directory, and the
    /// entities file's directory (files are often replaced by a rename).
    pub fn watched_dirs(&self) -> Vec<(PathBuf, bool)> {
        let mut dirs = Vec::new();
        if let PolicySource::Dir(dir) = &self.policy_source {
            dirs.push((dir.clone(), true));
        }
        if let Some(parent) = self.entities_path.as_ref().and_then(|p| p.parent()) {
            let parent = if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_path_buf()
            };
            if !dirs.iter().any(|(d, _)| parent.starts_with(d)) {
                dirs.push((parent, false));
            }
        }
        dirs
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
    routes: Option<&super::routed::Routes>,
) -> Result<(PolicyBundle, EntityStore, String), String> {
    let bundle = PolicyBundle::load(source).map_err(|e| e.to_string())?;
    if run_tests {
        let report = match source {
            PolicySource::Embedded => policy_tests::run_embedded(&bundle, categories),
            PolicySource::Nothing => policy_tests::TestReport::default(),
            PolicySource::Dir(dir) => {
                let files = policy_tests::suites_in(dir);
                policy_tests::run_files(&bundle, &files, Some(dir), categories, routes)
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
    let mut entities_version = String::from("none");
    let store = match entities {
        None => EntityStore::empty(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("authorization.entities {}: {e}", path.display()))?;
            entities_version = Sha256::digest(text.as_bytes())[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
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
    Ok((bundle, store, entities_version))
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
            example_policies: true,
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
        RequestView::get(path, query)
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

    /// The entities file with pat-0001 moved from team-01 to team-02 (its
    /// care team's access revoked).
    fn revoked_entities() -> String {
        let mut all: serde_json::Value =
            serde_json::from_str(policy_tests::EMBEDDED_ENTITIES).unwrap();
        for e in all.as_array_mut().unwrap() {
            if e["uid"]["id"] == "pat-0001" {
                let team = serde_json::json!({"type": "Phigate::CareTeam", "id": "team-02"});
                e["attrs"]["care_teams"] = serde_json::json!([{"__entity": team.clone()}]);
                e["parents"][0] = team;
            }
        }
        all.to_string()
    }

    #[tokio::test]
    async fn a_request_keeps_its_snapshot_across_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let a = authz(dir.path());
        let route = fhir_route();
        let view = get("/fhir/Observation", Some("patient=pat-0001"));
        let before = a.snapshot();
        let decided = a
            .decide_on(before.clone(), &route, &alice(), &view, facts())
            .await;
        assert!(matches!(decided.verdict, Verdict::Allow(_)));
        let loaded = decided.loaded.expect("loaded");

        std::fs::write(dir.path().join("entities.json"), revoked_entities()).unwrap();
        a.reload("admin").unwrap();
        let after = a.snapshot();
        assert_ne!(before.generation, after.generation);
        assert_ne!(before.entities_version, after.entities_version);
        assert_eq!(before.version(), after.version(), "same policies");

        // New requests see the revocation at once...
        let v = a.decide(&route, &alice(), &view, &facts()).await;
        assert!(matches!(v, Verdict::Deny(_)), "{v:?}");
        // ...and the request already under way decides its records over
        // the snapshot it took, synchronously, never a mix of the two.
        let mapping = route.map(&view).unwrap();
        assert!(a.decide_records(&loaded, &mapping.requests).allowed);
        assert_eq!(loaded.snapshot.generation, before.generation);
    }

    #[tokio::test]
    async fn a_reload_that_fails_keeps_the_last_good_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let a = authz(dir.path());
        let good = a.snapshot();
        std::fs::write(dir.path().join("entities.json"), "[{\"uid\": 1}]").unwrap();
        assert!(a.reload("admin").is_err());
        assert_eq!(a.snapshot().generation, good.generation);
    }

    #[tokio::test]
    async fn without_policies_every_request_is_denied() {
        // No policies named and no opt-in: the example set never decides.
        let dir = tempfile::tempdir().unwrap();
        let entities = dir.path().join("entities.json");
        std::fs::write(&entities, policy_tests::EMBEDDED_ENTITIES).unwrap();
        let a = Authorization::from_config(&AuthorizationConfig {
            entities: Some(entities),
            ..AuthorizationConfig::default()
        })
        .unwrap();
        let v = a
            .decide(
                &fhir_route(),
                &alice(),
                &get("/fhir/Observation", Some("patient=pat-0001")),
                &facts(),
            )
            .await;
        assert!(matches!(v, Verdict::Deny(_)), "{v:?}");
        assert!(!a.version().starts_with("example-"));
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
            example_policies: true,
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
