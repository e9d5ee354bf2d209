//! The decision: one Cedar evaluation per access the request makes.
//!
//! The engine turns a mapped [`AccessRequest`] plus the request's
//! circumstances ([`RequestFacts`]) into a Cedar request over an entity
//! [`Slice`], and the answer into a [`Decision`] that names the policies that
//! determined it and the policy version. Anything that keeps it from
//! deciding — an unknown patient, a slice that will not build, a policy that
//! errors — is a denial with a named reason. When a denial would turn into a
//! permit with MFA or a fresher sign-in, the decision says so, so the proxy
//! can answer with a step-up challenge instead of a 403.

use super::entities::{
    types, uid, EntityError, EntityLookup, PrincipalEntity, RecordEntity, Slice,
};
use super::eval::evaluate;
use super::index::Reads;
use super::mapping::{AccessRequest, Action};
use super::store::PolicyBundle;
use crate::authn::principal::{Principal, PrincipalKind};
use cedar_policy::EntityUid;
use cedar_policy_core::ast::{self, EntityUIDEntry, Value};
use cedar_policy_core::evaluator::RestrictedEvaluator;
use cedar_policy_core::extensions::Extensions;
use serde::Serialize;
use smol_str::SmolStr;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The circumstances of a request, beyond who and what.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub client_ip: IpAddr,
    pub device_trusted: bool,
    pub purpose_of_use: Option<String>,
    /// A break-glass justification (`X-Phigate-Break-Glass`).
    pub break_glass: Option<String>,
    /// A just-in-time elevation ticket id (`X-Phigate-Ticket`).
    pub ticket: Option<String>,
    pub route: String,
    pub now: jiff::Timestamp,
}

/// Shortest break-glass justification that counts as one.
pub const MIN_JUSTIFICATION: usize = 8;

/// A declared break-glass justification, when it is long enough to mean
/// something (policies see `context.justification` only then).
pub fn justification(declared: &str) -> Option<&str> {
    let j = declared.trim();
    (j.chars().count() >= MIN_JUSTIFICATION).then_some(j)
}

/// Why a request was denied, for the response, the audit event and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// A forbid policy applied.
    Forbidden,
    /// No permit policy applied.
    NotPermitted,
    /// The patient the request names is unknown to every entity source.
    UnknownPatient,
    /// Entities could not be assembled or loaded.
    EntitiesUnavailable,
    /// A policy failed to evaluate; the request is denied rather than
    /// decided without it.
    PolicyError,
    /// The request could not be mapped to an action and resource.
    Unmapped,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Forbidden => "forbidden",
            DenyReason::NotPermitted => "not_permitted",
            DenyReason::UnknownPatient => "unknown_patient",
            DenyReason::EntitiesUnavailable => "entities_unavailable",
            DenyReason::PolicyError => "policy_error",
            DenyReason::Unmapped => "unmapped",
        }
    }
}

/// What a fresher or stronger sign-in would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StepUpNeed {
    pub mfa: bool,
    /// The largest authentication age (seconds) the policies accept, when
    /// the current one is too old.
    pub max_age: Option<u64>,
}

/// The outcome of one Cedar evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessDecision {
    pub allowed: bool,
    pub action: &'static str,
    pub resource: String,
    pub patient: Option<String>,
    /// Policy ids (`@id`) that determined the decision.
    pub determining: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<DenyReason>,
    /// Evaluation errors, by policy id (never request data).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The entities the decision saw (only when the engine records them,
    /// for `phigate policy explain`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<String>,
}

/// The decision for a whole request: allowed only if every access is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The policy set's version.
    pub version: String,
    pub accesses: Vec<AccessDecision>,
    /// A `@break_glass` policy permitted at least one access.
    pub break_glass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUpNeed>,
}

impl Decision {
    /// The first denial's reason.
    pub fn reason(&self) -> Option<DenyReason> {
        self.accesses
            .iter()
            .find(|a| !a.allowed)
            .and_then(|a| a.reason)
    }

    /// Determining policies of the whole request: the denial's when
    /// denied, all permits when allowed.
    pub fn determining(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = if self.allowed {
            self.accesses
                .iter()
                .flat_map(|a| a.determining.iter().map(String::as_str))
                .collect()
        } else {
            self.accesses
                .iter()
                .filter(|a| !a.allowed)
                .flat_map(|a| a.determining.iter().map(String::as_str))
                .collect()
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn patients(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .accesses
            .iter()
            .filter_map(|a| a.patient.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Authentication ages tried when asking "would a fresher sign-in do?"; the
/// largest one that passes becomes the challenge's `max_age`.
const MAX_AGE_CANDIDATES: [u64; 6] = [43_200, 3_600, 900, 300, 60, 0];

/// "Unknown" authentication age: old enough to fail any freshness rule.
const UNKNOWN_AGE: i64 = i64::MAX / 2;

/// Resource type → data category, for `resource.category`.
#[derive(Debug, Clone)]
pub struct Categories {
    by_type: HashMap<String, String>,
}

impl Default for Categories {
    fn default() -> Self {
        let mut by_type = HashMap::new();
        for (category, types) in DEFAULT_CATEGORIES {
            for t in *types {
                by_type.insert((*t).to_string(), (*category).to_string());
            }
        }
        Categories { by_type }
    }
}

/// The default data category of common FHIR resource types. Unlisted types
/// are `other`, which no example policy permits.
pub const DEFAULT_CATEGORIES: &[(&str, &[&str])] = &[
    ("demographics", &["Patient", "RelatedPerson", "Person"]),
    (
        "clinical",
        &[
            "Observation",
            "Condition",
            "Encounter",
            "Procedure",
            "MedicationRequest",
            "MedicationStatement",
            "MedicationAdministration",
            "MedicationDispense",
            "AllergyIntolerance",
            "Immunization",
            "DiagnosticReport",
            "Specimen",
            "FamilyMemberHistory",
            "RiskAssessment",
            "ServiceRequest",
            "ImagingStudy",
            "Media",
            "Device",
            "DeviceRequest",
            "NutritionOrder",
            "QuestionnaireResponse",
            "DetectedIssue",
            "AdverseEvent",
        ],
    ),
    (
        "care_plan",
        &[
            "CarePlan",
            "Goal",
            "CareTeam",
            "Task",
            "Communication",
            "CommunicationRequest",
            "Appointment",
            "EpisodeOfCare",
            "Flag",
        ],
    ),
    (
        "notes",
        &[
            "DocumentReference",
            "Composition",
            "ClinicalImpression",
            "Binary",
        ],
    ),
    (
        "billing",
        &[
            "Claim",
            "ClaimResponse",
            "Coverage",
            "CoverageEligibilityRequest",
            "CoverageEligibilityResponse",
            "ExplanationOfBenefit",
            "Account",
            "Invoice",
            "ChargeItem",
            "PaymentNotice",
            "PaymentReconciliation",
        ],
    ),
    (
        "directory",
        &[
            "Practitioner",
            "PractitionerRole",
            "Organization",
            "Location",
            "HealthcareService",
            "Endpoint",
        ],
    ),
    ("capabilities", &["CapabilityStatement"]),
    (
        "administrative",
        &["AuditEvent", "Provenance", "Consent", "Group", "List"],
    ),
];

impl Categories {
    /// Defaults plus configured overrides (type → category).
    pub fn with_overrides(overrides: &HashMap<String, String>) -> Categories {
        let mut categories = Categories::default();
        for (t, c) in overrides {
            categories.by_type.insert(t.clone(), c.clone());
        }
        categories
    }

    pub fn of(&self, resource_type: &str) -> &str {
        self.by_type
            .get(resource_type)
            .map(String::as_str)
            .unwrap_or("other")
    }
}

/// Decides requests with one policy bundle and entity store.
pub struct Engine {
    time_zone: jiff::tz::TimeZone,
    /// Keep the slice's entity uids in each decision (explain only; turns
    /// the memo off).
    pub record_entities: bool,
    /// Decisions by everything they depend on; `None` decides every time.
    memo: Option<Memo>,
}

/// Memoized decisions (and whether a `@break_glass` policy permitted).
type Memo = moka::sync::Cache<MemoKey, Arc<(AccessDecision, bool)>, ahash::RandomState>;

/// Everything one access decision depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MemoKey {
    /// The policy subset (unique per policy version and scope key).
    subset: u64,
    /// The principal's entity (unique per build: claims, memberships).
    principal: u64,
    /// The entity store (unique per load).
    store: u64,
    action: &'static str,
    resource_type: String,
    resource_id: Option<String>,
    category: String,
    patient: Option<String>,
    labels: Vec<String>,
    /// The context values the subset's policies can read.
    values: Vec<(&'static str, ContextValue)>,
}

/// How many decisions are memoized, and for how long at most.
const MEMO_CAPACITY: u64 = 100_000;
const MEMO_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// What the engine needs about the principal.
pub struct Subject<'a> {
    pub principal: &'a Principal,
    pub entity: &'a PrincipalEntity,
}

impl Engine {
    pub fn new(time_zone: jiff::tz::TimeZone) -> Engine {
        Engine {
            time_zone,
            record_entities: false,
            memo: Some(
                moka::sync::Cache::builder()
                    .max_capacity(MEMO_CAPACITY)
                    .time_to_live(MEMO_TTL)
                    // Keys carry request data (resource ids): a keyed
                    // hash, and a faster one than SipHash.
                    .build_with_hasher(ahash::RandomState::new()),
            ),
        }
    }

    /// An engine that evaluates every decision (no memo): benchmarks of the
    /// full path, tests.
    pub fn without_memo(time_zone: jiff::tz::TimeZone) -> Engine {
        Engine {
            memo: None,
            ..Engine::new(time_zone)
        }
    }

    /// Decides every access of one request. `categories` maps resource
    /// types for this route.
    pub fn decide(
        &self,
        bundle: &PolicyBundle,
        store: &dyn EntityLookup,
        subject: &Subject<'_>,
        accesses: &[AccessRequest],
        facts: &RequestFacts,
        categories: &Categories,
    ) -> Decision {
        self.decide_labelled(bundle, store, subject, accesses, facts, categories, &[])
    }

    /// Whether every access in `accesses` is allowed — records of a
    /// response, with their security labels — without asking what a
    /// stronger sign-in would change.
    #[allow(clippy::too_many_arguments)]
    pub fn allows_all(
        &self,
        bundle: &PolicyBundle,
        store: &dyn EntityLookup,
        subject: &Subject<'_>,
        accesses: &[AccessRequest],
        facts: &RequestFacts,
        categories: &Categories,
        labels: &[String],
    ) -> bool {
        let base = BaseContext::new(subject.principal, facts, &self.time_zone, labels);
        !accesses.is_empty()
            && accesses.iter().all(|access| {
                self.decide_one(bundle, store, subject, access, facts, categories, &base)
                    .0
                    .allowed
            })
    }

    /// Whether `class` may be shown in records of `resource_type`: the
    /// action `disclose` on a Record of that type (no patient), with
    /// `context.data_class`.
    #[allow(clippy::too_many_arguments)]
    pub fn disclose_decision(
        &self,
        bundle: &PolicyBundle,
        store: &dyn EntityLookup,
        subject: &Subject<'_>,
        class: &str,
        resource_type: &str,
        facts: &RequestFacts,
        categories: &Categories,
    ) -> AccessDecision {
        let mut base = BaseContext::new(subject.principal, facts, &self.time_zone, &[]);
        base.data_class = Some(uid(types::DATA_CLASS, class));
        let access = AccessRequest {
            action: Action::Disclose,
            resource: super::mapping::Resource {
                resource_type: resource_type.to_string(),
                id: None,
            },
            patient: None,
            fan_out: None,
            interaction: super::mapping::RESPONSE_RECORD.to_string(),
            operation: None,
        };
        self.decide_one(bundle, store, subject, &access, facts, categories, &base)
            .0
    }

    /// As [`Engine::decide`], for records whose security labels are known
    /// (policy tests; the response phase).
    #[allow(clippy::too_many_arguments)]
    pub fn decide_labelled(
        &self,
        bundle: &PolicyBundle,
        store: &dyn EntityLookup,
        subject: &Subject<'_>,
        accesses: &[AccessRequest],
        facts: &RequestFacts,
        categories: &Categories,
        labels: &[String],
    ) -> Decision {
        let base = BaseContext::new(subject.principal, facts, &self.time_zone, labels);
        let mut decisions = Vec::with_capacity(accesses.len());
        let mut break_glass = false;
        for access in accesses {
            let (decision, glass) =
                self.decide_one(bundle, store, subject, access, facts, categories, &base);
            break_glass |= glass;
            decisions.push(decision);
        }
        let allowed = !decisions.is_empty() && decisions.iter().all(|d| d.allowed);
        let step_up = if allowed {
            None
        } else {
            self.step_up(bundle, store, subject, accesses, facts, categories, &base)
        };
        Decision {
            allowed,
            version: bundle.version.clone(),
            accesses: decisions,
            break_glass: allowed && break_glass,
            step_up,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_one(
        &self,
        bundle: &PolicyBundle,
        store: &dyn EntityLookup,
        subject: &Subject<'_>,
        access: &AccessRequest,
        facts: &RequestFacts,
        categories: &Categories,
        base: &BaseContext,
    ) -> (AccessDecision, bool) {
        let action = cedar_action(access);
        let resource = match &access.resource.id {
            Some(id) => format!("{}/{}", access.resource.resource_type, id),
            None => access.resource.resource_type.clone(),
        };
        let deny = |reason: DenyReason, errors: Vec<String>| AccessDecision {
            allowed: false,
            action,
            resource: resource.clone(),
            patient: access.patient.clone(),
            determining: Vec::new(),
            reason: Some(reason),
            errors,
            entities: Vec::new(),
        };
        let patient = access.patient.as_deref().map(|p| uid(types::PATIENT, p));
        if let Some(patient) = &patient {
            if !store.contains(patient) {
                return (deny(DenyReason::UnknownPatient, vec![]), false);
            }
        }
        let category = categories.of(&access.resource.resource_type);
        let record_uid = RecordEntity::uid_for(
            &access.resource.resource_type,
            access.resource.id.as_deref(),
        );
        let elevation = facts
            .ticket
            .as_deref()
            .map(|t| uid(types::ELEVATION, t))
            .filter(|e| store.contains(e));
        let resource_ancestors: Vec<EntityUid> = match &patient {
            Some(p) => std::iter::once(p.clone())
                .chain(store.ancestors(p).iter().cloned())
                .collect(),
            None => Vec::new(),
        };
        let action_uid = action_uid(action);
        let key = bundle.index.key(
            &subject.entity.uid,
            subject.entity.ancestors.iter(),
            &action_uid,
            &record_uid,
            resource_ancestors.iter(),
        );
        let policies = bundle.index.policies_for(&key);
        let values = base.values(
            access,
            elevation.as_ref(),
            base.data_class.as_ref(),
            &policies.reads,
        );

        // The decision is a pure function of the policies, the entities and
        // the context values the policies can read: memoize it on exactly
        // those (ids, not addresses, so a freed and reused allocation can
        // never alias).
        let memo_key = match (&self.memo, store.memo_id()) {
            (Some(_), Some(store_id)) if !self.record_entities => Some(MemoKey {
                subset: policies.id,
                principal: subject.entity.id,
                store: store_id,
                action,
                resource_type: access.resource.resource_type.clone(),
                resource_id: access.resource.id.clone(),
                category: category.to_string(),
                patient: access.patient.clone(),
                labels: base.labels.to_vec(),
                values: values.clone(),
            }),
            _ => None,
        };
        if let (Some(memo), Some(k)) = (&self.memo, &memo_key) {
            if let Some(hit) = memo.get(k) {
                let mut decision = hit.0.clone();
                decision.resource = resource;
                return (decision, hit.1);
            }
        }

        let mut slice = Slice::new();
        slice.principal(subject.entity, store);
        if let Some(p) = &patient {
            slice.patient(p, store);
        }
        let record = RecordEntity::build(
            &access.resource.resource_type,
            access.resource.id.as_deref(),
            category,
            patient.as_ref(),
            resource_ancestors.get(1..).unwrap_or(&[]),
            base.labels,
        );
        slice.record(&record);
        if let Some(e) = &elevation {
            slice.known(e, store);
        }
        let seen = if self.record_entities {
            slice.uids()
        } else {
            Vec::new()
        };
        let assembled = to_context(values).and_then(|c| Ok((c, slice.into_entities()?)));
        let (context, entities) = match assembled {
            Ok(x) => x,
            // Only the kind of failure: Cedar's messages quote entity ids
            // and values, and decisions are logged and audited.
            Err(e) => {
                return (
                    deny(DenyReason::EntitiesUnavailable, vec![e.kind().into()]),
                    false,
                )
            }
        };
        // Concrete throughout (no unknowns): Cedar's own request type,
        // without the public API's round trip.
        let request = ast::Request::new_unchecked(
            EntityUIDEntry::known(subject.entity.uid.as_ref().clone(), None),
            EntityUIDEntry::known(action_uid.as_ref().clone(), None),
            EntityUIDEntry::known(record.uid.as_ref().clone(), None),
            Some(context),
        );
        let evaluated = evaluate(&policies.compiled, request, entities.as_ref());
        let determining: Vec<String> = evaluated
            .determining
            .iter()
            .map(|id| id.to_string())
            .collect();
        let outcome = if !evaluated.errors.is_empty() {
            // A policy that cannot be evaluated might have been a forbid:
            // deny rather than decide without it.
            let errors = evaluated
                .errors
                .iter()
                .map(|id| format!("policy `{id}` failed to evaluate"))
                .collect();
            let mut d = deny(DenyReason::PolicyError, errors);
            d.determining = determining;
            (d, false)
        } else {
            let glass = evaluated.allowed
                && evaluated
                    .determining
                    .iter()
                    .any(|id| bundle.break_glass.contains(id));
            let reason = match (evaluated.allowed, determining.is_empty()) {
                (true, _) => None,
                (false, true) => Some(DenyReason::NotPermitted),
                (false, false) => Some(DenyReason::Forbidden),
            };
            (
                AccessDecision {
                    allowed: evaluated.allowed,
                    action,
                    resource,
                    patient: access.patient.clone(),
                    determining,
                    reason,
                    errors: Vec::new(),
                    entities: seen,
                },
                glass,
            )
        };
        if let (Some(memo), Some(k)) = (&self.memo, memo_key) {
            memo.insert(k, Arc::new(outcome.clone()));
        }
        outcome
    }

    /// Would MFA or a fresh sign-in turn this denial into a permit?
    #[allow(clippy::too_many_arguments)]
    fn step_up(
        &self,
        bundle: &PolicyBundle,
        store: &dyn EntityLookup,
        subject: &Subject<'_>,
        accesses: &[AccessRequest],
        facts: &RequestFacts,
        categories: &Categories,
        base: &BaseContext,
    ) -> Option<StepUpNeed> {
        if subject.principal.kind != PrincipalKind::User {
            return None;
        }
        let mfa = base.mfa || subject.principal.mfa;
        // Nothing a sign-in changes is read by the policies: no probe.
        if !bundle.mentions_auth_age && (mfa || !bundle.mentions_mfa) {
            return None;
        }
        let passes = |mfa: bool, age: i64| {
            let probe = base.with_authentication(mfa, age);
            accesses.iter().all(|access| {
                self.decide_one(bundle, store, subject, access, facts, categories, &probe)
                    .0
                    .allowed
            })
        };
        if !passes(true, 0) {
            return None;
        }
        if !mfa && passes(true, base.auth_age) {
            return Some(StepUpNeed {
                mfa: true,
                max_age: None,
            });
        }
        if !bundle.mentions_auth_age {
            return None;
        }
        let max_age = MAX_AGE_CANDIDATES
            .iter()
            .copied()
            .filter(|age| (*age as i64) < base.auth_age)
            .find(|age| passes(true, *age as i64))?;
        Some(StepUpNeed {
            mfa: !mfa,
            max_age: Some(max_age),
        })
    }
}

fn cedar_action(access: &AccessRequest) -> &'static str {
    if access.fan_out.is_some() {
        "fan_out"
    } else {
        access.action.as_str()
    }
}

fn action_uid(action: &str) -> EntityUid {
    uid(types::ACTION, action)
}

/// The parts of the context shared by every access of one request.
#[derive(Clone)]
struct BaseContext<'a> {
    mfa: bool,
    auth_age: i64,
    auth_method: &'static str,
    facts: &'a RequestFacts,
    time_zone: &'a jiff::tz::TimeZone,
    /// The record's security labels, when known.
    labels: &'a [String],
    /// For `disclose`: the data class asked about.
    data_class: Option<EntityUid>,
}

impl<'a> BaseContext<'a> {
    /// Cheap: values are rendered only when a policy reads them.
    fn new(
        principal: &Principal,
        facts: &'a RequestFacts,
        time_zone: &'a jiff::tz::TimeZone,
        labels: &'a [String],
    ) -> BaseContext<'a> {
        let auth_age = match principal.auth_time {
            Some(t) => (facts.now.as_second() - t as i64).max(0),
            None => UNKNOWN_AGE,
        };
        BaseContext {
            mfa: principal.mfa,
            auth_age,
            auth_method: principal.method.as_str(),
            facts,
            time_zone,
            labels,
            data_class: None,
        }
    }

    fn with_authentication(&self, mfa: bool, auth_age: i64) -> BaseContext<'a> {
        BaseContext {
            mfa,
            auth_age,
            ..self.clone()
        }
    }

    /// The context values the subset's policies can read (a value no
    /// policy names cannot influence the decision).
    fn values(
        &self,
        access: &AccessRequest,
        elevation: Option<&EntityUid>,
        data_class: Option<&EntityUid>,
        reads: &Reads,
    ) -> Vec<(&'static str, ContextValue)> {
        use ContextValue::*;
        let mut v: Vec<(&'static str, ContextValue)> = Vec::with_capacity(12);
        let s = |x: &str| Str(x.to_string());
        if reads.has("mfa") {
            v.push(("mfa", Bool(self.mfa)));
        }
        if reads.has("auth_age") {
            v.push(("auth_age", Long(self.auth_age)));
        }
        if reads.has("auth_method") {
            v.push(("auth_method", s(self.auth_method)));
        }
        let facts = self.facts;
        if reads.has("client_ip") {
            v.push(("client_ip", Ip(facts.client_ip.to_string())));
        }
        if reads.has("device_trusted") {
            v.push(("device_trusted", Bool(facts.device_trusted)));
        }
        if reads.has("purpose_of_use") {
            if let Some(p) = &facts.purpose_of_use {
                v.push(("purpose_of_use", s(p)));
            }
        }
        if reads.has("break_glass") {
            // Declared with a real justification, or not declared at all:
            // a guardrail that lifts under break-glass never lifts for "er".
            let declared = facts.break_glass.as_deref().and_then(justification);
            v.push(("break_glass", Bool(declared.is_some())));
        }
        if reads.has("justification") {
            if let Some(j) = facts.break_glass.as_deref().and_then(justification) {
                v.push(("justification", s(j)));
            }
        }
        if reads.has("elevation") {
            if let Some(e) = elevation {
                v.push(("elevation", Entity(e.clone())));
            }
        }
        if reads.has("now") {
            let now = facts.now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            v.push(("now", DateTime(now)));
        }
        if reads.has("hour") || reads.has("weekday") {
            let local = facts.now.to_zoned_datetime(self.time_zone.clone());
            if reads.has("hour") {
                v.push(("hour", Long(local.hour() as i64)));
            }
            if reads.has("weekday") {
                v.push(("weekday", s(weekday(local.weekday()))));
            }
        }
        if reads.has("route") {
            v.push(("route", s(&facts.route)));
        }
        if reads.has("interaction") {
            v.push(("interaction", s(&access.interaction)));
        }
        if let Some(reason) = access.fan_out {
            if reads.has("fan_out_reason") {
                v.push(("fan_out_reason", s(reason)));
            }
            if reads.has("requested_action") {
                v.push(("requested_action", s(access.action.as_str())));
            }
        }
        if access.action == Action::Operation && reads.has("operation") {
            if let Some(op) = &access.operation {
                v.push(("operation", s(op)));
            }
        }
        if reads.has("data_class") {
            if let Some(dc) = data_class {
                v.push(("data_class", Entity(dc.clone())));
            }
        }
        v
    }
}

/// A context value, in a form that can be hashed (for the memo) and turned
/// into Cedar's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContextValue {
    Bool(bool),
    Long(i64),
    Str(String),
    Ip(String),
    DateTime(String),
    Entity(EntityUid),
}

/// Cedar's context record, built from values (only `ipaddr` and `datetime`
/// go through Cedar's extension functions).
fn to_context(values: Vec<(&'static str, ContextValue)>) -> Result<ast::Context, EntityError> {
    let mut record = BTreeMap::new();
    for (name, value) in values {
        let value = match value {
            ContextValue::Bool(b) => Value::from(b),
            ContextValue::Long(l) => Value::from(l),
            ContextValue::Str(s) => Value::from(s),
            ContextValue::Ip(ip) => extension_value("ip", ip)?,
            ContextValue::DateTime(t) => extension_value("datetime", t)?,
            ContextValue::Entity(e) => Value::from(e.as_ref().clone()),
        };
        record.insert(SmolStr::new_static(name), value);
    }
    Ok(ast::Context::Value(Arc::new(record)))
}

/// `function("arg")` evaluated by Cedar's extension (e.g. `ip("10.0.0.1")`).
fn extension_value(function: &str, arg: String) -> Result<Value, EntityError> {
    let name: ast::Name = function
        .parse()
        .map_err(|_| EntityError::Attribute(format!("no extension function {function}")))?;
    let call = ast::RestrictedExpr::call_extension_fn(name, [ast::RestrictedExpr::val(arg)]);
    RestrictedEvaluator::new(Extensions::all_available())
        .interpret(call.as_borrowed())
        // Not the error's text: it quotes the value (a client address).
        .map_err(|_| EntityError::Attribute(format!("context value for {function}()")))
}

fn weekday(w: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match w {
        Monday => "Mon",
        Tuesday => "Tue",
        Wednesday => "Wed",
        Thursday => "Thu",
        Friday => "Fri",
        Saturday => "Sat",
        Sunday => "Sun",
    }
}
