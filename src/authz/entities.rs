//! Who is related to whom: the entities a decision needs.
//!
//! The principal's entity is built from its verified claims, merged with
//! what the static entities file (and entity sources) know about it. The
//! patient, its care teams and organization come from the same places. A
//! decision gets only a [`Slice`]: the principal, the record, the patient,
//! an elevation, and their ancestors — never the whole store, so a decision
//! costs the same with 10 or 10,000 patients loaded.

use crate::authn::principal::{Principal, PrincipalKind};
use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use cedar_policy_core::ast::{self, PartialValue, Value};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// The schema's entity types.
pub mod types {
    pub const USER: &str = "Phigate::User";
    pub const SERVICE: &str = "Phigate::ServiceAccount";
    pub const ROLE: &str = "Phigate::Role";
    pub const CARE_TEAM: &str = "Phigate::CareTeam";
    pub const ORGANIZATION: &str = "Phigate::Organization";
    pub const PATIENT: &str = "Phigate::Patient";
    pub const RECORD: &str = "Phigate::Record";
    pub const ELEVATION: &str = "Phigate::Elevation";
    pub const ACTION: &str = "Phigate::Action";
    pub const DATA_CLASS: &str = "Phigate::DataClass";
}

#[derive(Debug, thiserror::Error)]
pub enum EntityError {
    #[error("entities file: {0}")]
    Load(String),
    #[error("an identifier cannot be used as an entity id")]
    BadId,
    #[error("entity attributes: {0}")]
    Attribute(String),
    #[error("the entity slice is inconsistent: {0}")]
    Slice(String),
}

impl EntityError {
    /// What failed, without the details (which can quote entity ids and
    /// attribute values): for decisions, logs and audit.
    pub fn kind(&self) -> &'static str {
        match self {
            EntityError::Load(_) => "entities_file",
            EntityError::BadId => "bad_entity_id",
            EntityError::Attribute(_) => "entity_attributes",
            EntityError::Slice(_) => "entity_slice",
        }
    }
}

/// Builds `Type::"id"`; ids are arbitrary strings in Cedar, so this cannot
/// fail for a known type name.
pub fn uid(type_name: &'static str, id: &str) -> EntityUid {
    let type_name = type_name_of(type_name);
    EntityUid::from_type_name_and_id(type_name, EntityId::new(id))
}

fn type_name_of(name: &'static str) -> EntityTypeName {
    thread_local! {
        static NAMES: std::cell::RefCell<HashMap<&'static str, EntityTypeName>> =
            std::cell::RefCell::new(HashMap::new());
    }
    NAMES.with(|names| {
        names
            .borrow_mut()
            .entry(name)
            .or_insert_with(|| {
                // The names are the constants in `types`, all valid.
                EntityTypeName::from_str(name).unwrap_or_else(|_| unreachable_type(name))
            })
            .clone()
    })
}

#[cold]
fn unreachable_type(name: &str) -> EntityTypeName {
    // Only reachable if a constant above is malformed; covered by tests.
    panic!("invalid built-in entity type name {name}")
}

/// Cedar's own entity, shared: a slice holds references, not copies.
pub type SharedEntity = Arc<ast::Entity>;

/// What an entity source knows about one entity, beyond its claims.
#[derive(Debug, Clone)]
struct Known {
    entity: SharedEntity,
    /// Transitive ancestors, as computed when the store was loaded.
    ancestors: Vec<EntityUid>,
}

/// The static entities: patients, care teams, organizations, elevations and
/// user memberships from a Cedar JSON entities file, validated against the
/// schema once at load.
#[derive(Debug, Clone)]
pub struct EntityStore {
    known: HashMap<EntityUid, Known>,
    /// Unique per store built (decision memo keys use it).
    id: u64,
}

/// Unique ids for stores and principal entities, so memoized decisions are
/// keyed by what they were decided on, never by a reused address.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Default for EntityStore {
    fn default() -> Self {
        EntityStore {
            known: HashMap::new(),
            id: next_id(),
        }
    }
}

impl EntityStore {
    pub fn empty() -> EntityStore {
        EntityStore::default()
    }

    /// Parses Cedar's JSON entity format and validates it against `schema`.
    pub fn from_json(
        text: &str,
        schema: Option<&cedar_policy::Schema>,
    ) -> Result<EntityStore, EntityError> {
        let entities = Entities::from_json_str(text, schema)
            .map_err(|e| EntityError::Load(miette_chain(&e)))?;
        Ok(EntityStore::from_entities(&entities))
    }

    fn from_entities(entities: &Entities) -> EntityStore {
        let mut known = HashMap::new();
        for entity in entities.iter() {
            let uid = entity.uid();
            if uid.type_name().to_string() == types::ACTION {
                continue;
            }
            let ancestors = entities
                .ancestors(&uid)
                .map(|a| a.cloned().collect())
                .unwrap_or_default();
            known.insert(
                uid,
                Known {
                    entity: Arc::new(entity.as_ref().clone()),
                    ancestors,
                },
            );
        }
        EntityStore {
            known,
            id: next_id(),
        }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Adds or replaces entities (from an entity source) in a copy-on-write
    /// fashion; used by sources that resolve one entity at a time.
    pub fn insert(&mut self, entity: SharedEntity, ancestors: Vec<EntityUid>) {
        let uid = EntityUid::from(entity.uid().clone());
        self.known.insert(uid, Known { entity, ancestors });
        self.id = next_id();
    }

    /// As [`EntityStore::insert`], for an entity fetched on its own whose
    /// ancestors may continue in `base`: a fetched patient in care team X,
    /// where only the static file says X is in organization A, is in A too.
    /// Without this, `resource in Organization::"A"` (or a `forbid` on it)
    /// would not see fetched patients: the slice's closure is trusted as
    /// complete, never recomputed.
    pub fn insert_closed_over(
        &mut self,
        entity: &SharedEntity,
        ancestors: &[EntityUid],
        base: &dyn EntityLookup,
    ) {
        let mut all = ancestors.to_vec();
        for a in ancestors {
            for b in base.ancestors(a) {
                if !all.contains(b) {
                    all.push(b.clone());
                }
            }
        }
        let entity = if all.len() > ancestors.len() {
            let mut e = ast::Entity::clone(entity);
            for extra in &all[ancestors.len()..] {
                e.add_indirect_ancestor(extra.as_ref().clone());
            }
            Arc::new(e)
        } else {
            entity.clone()
        };
        self.insert(entity, all);
    }

    /// Every entity with its ancestors (to merge stores).
    pub fn iter(&self) -> impl Iterator<Item = (&SharedEntity, &[EntityUid])> {
        self.known
            .values()
            .map(|k| (&k.entity, k.ancestors.as_slice()))
    }
}

/// Where a slice finds stored entities: the static store, or the static
/// store layered over what an entity source fetched for this request.
pub trait EntityLookup {
    fn entity(&self, uid: &EntityUid) -> Option<&SharedEntity>;
    fn ancestors(&self, uid: &EntityUid) -> &[EntityUid];

    fn contains(&self, uid: &EntityUid) -> bool {
        self.entity(uid).is_some()
    }

    /// An id naming exactly this content, if the lookup has one (decisions
    /// over it may be memoized).
    fn memo_id(&self) -> Option<u64> {
        None
    }

    /// The ancestors and care teams held for `uid`, to merge into a
    /// principal built from claims.
    fn memberships(&self, uid: &EntityUid) -> Option<(HashSet<EntityUid>, Vec<String>)> {
        self.entity(uid)?;
        let ancestors = self.ancestors(uid);
        let care_teams = ancestors
            .iter()
            .filter(|a| a.type_name().to_string() == types::CARE_TEAM)
            .map(|a| a.id().unescaped().to_string())
            .collect();
        Some((ancestors.iter().cloned().collect(), care_teams))
    }
}

impl EntityLookup for EntityStore {
    fn memo_id(&self) -> Option<u64> {
        Some(self.id)
    }

    fn entity(&self, uid: &EntityUid) -> Option<&SharedEntity> {
        self.known.get(uid).map(|k| &k.entity)
    }

    fn ancestors(&self, uid: &EntityUid) -> &[EntityUid] {
        self.known
            .get(uid)
            .map(|k| k.ancestors.as_slice())
            .unwrap_or(&[])
    }
}

/// Two stores, the first one winning.
pub struct Layered<'a> {
    pub first: &'a EntityStore,
    pub then: &'a EntityStore,
}

impl EntityLookup for Layered<'_> {
    fn memo_id(&self) -> Option<u64> {
        // Fetched entities change per request: memoize only without them.
        if self.then.is_empty() {
            self.first.memo_id()
        } else {
            None
        }
    }

    fn entity(&self, uid: &EntityUid) -> Option<&SharedEntity> {
        self.first.entity(uid).or_else(|| self.then.entity(uid))
    }

    fn ancestors(&self, uid: &EntityUid) -> &[EntityUid] {
        if self.first.entity(uid).is_some() {
            self.first.ancestors(uid)
        } else {
            self.then.ancestors(uid)
        }
    }
}

fn miette_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Relationships an entity source adds to a principal (e.g. care teams from
/// the EHR's CareTeam resources).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relationships {
    pub care_teams: Vec<String>,
    pub roles: Vec<String>,
}

/// The principal as Cedar sees it, built once per verified identity.
#[derive(Debug, Clone)]
pub struct PrincipalEntity {
    pub uid: EntityUid,
    entity: SharedEntity,
    parents: Vec<EntityUid>,
    /// Everything the principal is transitively in (for the scope index).
    pub ancestors: Vec<EntityUid>,
    /// Unique per build (decision memo keys use it).
    pub id: u64,
}

impl PrincipalEntity {
    /// Claims, merged with the store's memberships for the same id and with
    /// an entity source's relationships.
    pub fn build(
        principal: &Principal,
        store: &dyn EntityLookup,
        extra: Option<&Relationships>,
    ) -> Result<PrincipalEntity, EntityError> {
        let is_user = principal.kind == PrincipalKind::User;
        let uid = uid(
            if is_user { types::USER } else { types::SERVICE },
            &principal.id,
        );
        let mut parents: HashSet<EntityUid> = HashSet::new();
        let mut care_teams: Vec<String> = principal.care_teams.clone();
        let roles = principal
            .roles
            .iter()
            .chain(extra.into_iter().flat_map(|x| x.roles.iter()));
        for role in roles {
            parents.insert(self::uid(types::ROLE, role));
        }
        if let Some(extra) = extra {
            care_teams.extend(extra.care_teams.iter().cloned());
        }
        if let Some((more_parents, more_teams)) = store.memberships(&uid) {
            parents.extend(more_parents);
            care_teams.extend(more_teams);
        }
        care_teams.sort();
        care_teams.dedup();
        let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
        if let Some(org) = &principal.organization {
            let org = self::uid(types::ORGANIZATION, org);
            parents.insert(org.clone());
            attrs.insert(
                "organization".into(),
                RestrictedExpression::new_entity_uid(org),
            );
        }
        if is_user {
            for team in &care_teams {
                parents.insert(self::uid(types::CARE_TEAM, team));
            }
            attrs.insert(
                "care_teams".into(),
                RestrictedExpression::new_set(
                    care_teams.iter().map(|t| {
                        RestrictedExpression::new_entity_uid(self::uid(types::CARE_TEAM, t))
                    }),
                ),
            );
            attrs.insert(
                "scopes".into(),
                RestrictedExpression::new_set(
                    principal
                        .scopes
                        .iter()
                        .map(|s| RestrictedExpression::new_string(s.clone())),
                ),
            );
            if let Some(npi) = &principal.npi {
                attrs.insert("npi".into(), RestrictedExpression::new_string(npi.clone()));
            }
            if let Some(fhir_user) = &principal.fhir_user {
                attrs.insert(
                    "fhir_user".into(),
                    RestrictedExpression::new_string(fhir_user.clone()),
                );
            }
            if let Some(patient) = &principal.patient {
                attrs.insert(
                    "patient".into(),
                    RestrictedExpression::new_entity_uid(self::uid(types::PATIENT, patient)),
                );
            }
        }
        let parents_list: Vec<EntityUid> = parents.iter().cloned().collect();
        let mut ancestors: HashSet<EntityUid> = parents;
        for p in &parents_list {
            ancestors.extend(store.ancestors(p).iter().cloned());
        }
        // Every ancestor is a parent: the slice's transitive closure is
        // complete without recomputing it (see `Slice::into_entities`).
        let entity = Entity::new(uid.clone(), attrs, ancestors.clone())
            .map_err(|e| EntityError::Attribute(e.to_string()))?;
        Ok(PrincipalEntity {
            uid,
            entity: Arc::new(entity.as_ref().clone()),
            parents: parents_list,
            ancestors: ancestors.into_iter().collect(),
            id: next_id(),
        })
    }
}

/// The record a request is about, as a Cedar entity.
#[derive(Debug, Clone)]
pub struct RecordEntity {
    pub uid: EntityUid,
    entity: SharedEntity,
}

impl RecordEntity {
    /// `Record::"Type/id"`, or `Record::"Type"` for type-level requests.
    pub fn uid_for(resource_type: &str, id: Option<&str>) -> EntityUid {
        match id {
            Some(id) => uid(types::RECORD, &format!("{resource_type}/{id}")),
            None => uid(types::RECORD, resource_type),
        }
    }

    /// `patient_ancestors`: everything the patient is in (the record is in
    /// them too). Built per decision, so its attributes are Cedar values
    /// from the start (no expressions to evaluate).
    pub fn build(
        resource_type: &str,
        id: Option<&str>,
        category: &str,
        patient: Option<&EntityUid>,
        patient_ancestors: &[EntityUid],
        labels: &[String],
    ) -> RecordEntity {
        let uid = RecordEntity::uid_for(resource_type, id);
        let mut attrs: Vec<(smol_str::SmolStr, PartialValue)> = Vec::with_capacity(4);
        attrs.push(("type".into(), Value::from(resource_type).into()));
        attrs.push(("category".into(), Value::from(category).into()));
        attrs.push((
            "labels".into(),
            Value::set(labels.iter().map(|l| Value::from(l.as_str())), None).into(),
        ));
        let mut parents = HashSet::new();
        if let Some(patient) = patient {
            let patient: &ast::EntityUID = patient.as_ref();
            attrs.push(("patient".into(), Value::from(patient.clone()).into()));
            parents.insert(patient.clone());
            parents.extend(patient_ancestors.iter().map(|a| a.as_ref().clone()));
        }
        let entity = ast::Entity::new_with_attr_partial_value(
            uid.as_ref().clone(),
            attrs,
            HashSet::new(),
            parents,
            [],
        );
        RecordEntity {
            uid,
            entity: Arc::new(entity),
        }
    }
}

/// Assembles the entities one decision needs: shared references to stored
/// entities (never copies), in the order they were added.
#[derive(Default)]
pub struct Slice {
    entities: Vec<SharedEntity>,
}

impl Slice {
    pub fn new() -> Slice {
        Slice::default()
    }

    /// A slice holds a handful of entities: a scan beats hashing.
    fn push(&mut self, entity: &SharedEntity) {
        if !self.holds(entity.uid()) {
            self.entities.push(entity.clone());
        }
    }

    fn holds(&self, uid: &ast::EntityUID) -> bool {
        self.entities.iter().any(|e| e.uid() == uid)
    }

    /// Adds the store's entities for `uids` (those it knows) and their
    /// ancestors.
    fn push_known_with_ancestors<'a>(
        &mut self,
        store: &dyn EntityLookup,
        uids: impl IntoIterator<Item = &'a EntityUid>,
    ) {
        for uid in uids {
            if self.holds(uid.as_ref()) {
                continue;
            }
            if let Some(entity) = store.entity(uid) {
                self.push(entity);
                for ancestor in store.ancestors(uid) {
                    if let Some(a) = store.entity(ancestor) {
                        self.push(a);
                    }
                }
            }
        }
    }

    pub fn principal(&mut self, principal: &PrincipalEntity, store: &dyn EntityLookup) {
        self.push(&principal.entity);
        self.push_known_with_ancestors(store, principal.parents.iter());
    }

    pub fn record(&mut self, record: &RecordEntity) {
        self.push(&record.entity);
    }

    /// The patient (and ancestors) from the store; `false` when unknown.
    pub fn patient(&mut self, patient: &EntityUid, store: &dyn EntityLookup) -> bool {
        if !store.contains(patient) {
            return false;
        }
        self.push_known_with_ancestors(store, [patient]);
        true
    }

    /// Any other stored entity the context names (an elevation, and what
    /// it references).
    pub fn known(&mut self, uid: &EntityUid, store: &dyn EntityLookup) -> bool {
        if !store.contains(uid) {
            return false;
        }
        self.push_known_with_ancestors(store, [uid]);
        true
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// The uids in the slice, in the order they were added.
    pub fn uids(&self) -> Vec<String> {
        self.entities.iter().map(|e| e.uid().to_string()).collect()
    }

    /// The slice as Cedar entities. Every entity in it already lists all
    /// its ancestors (store entities were closed when the store loaded;
    /// principal and record entities are built with their ancestors as
    /// parents), so the closure is not recomputed — that was a third of a
    /// decision's cost.
    pub fn into_entities(self) -> Result<Entities, EntityError> {
        cedar_policy_core::entities::Entities::new()
            .add_entities(
                self.entities,
                None::<&cedar_policy_core::entities::NoEntitiesSchema>,
                cedar_policy_core::entities::TCComputation::AssumeAlreadyComputed,
                cedar_policy_core::extensions::Extensions::all_available(),
            )
            .map(Entities::from)
            .map_err(|e| EntityError::Slice(e.to_string()))
    }
}

/// Shared, swappable static entities.
pub type SharedStore = Arc<arc_swap::ArcSwap<EntityStore>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::principal::AuthMethod;

    const ENTITIES: &str = r#"[
      {"uid": {"type": "Phigate::Organization", "id": "org-1"}, "attrs": {}, "parents": []},
      {"uid": {"type": "Phigate::CareTeam", "id": "team-01"}, "attrs": {"name": "Team 1"},
       "parents": [{"type": "Phigate::Organization", "id": "org-1"}]},
      {"uid": {"type": "Phigate::Patient", "id": "p1"},
       "attrs": {"care_teams": [{"__entity": {"type": "Phigate::CareTeam", "id": "team-01"}}],
                 "flags": [], "enrolled": ["ccm"]},
       "parents": [{"type": "Phigate::CareTeam", "id": "team-01"}]},
      {"uid": {"type": "Phigate::User", "id": "alice"},
       "attrs": {"care_teams": [{"__entity": {"type": "Phigate::CareTeam", "id": "team-01"}}], "scopes": []},
       "parents": [{"type": "Phigate::CareTeam", "id": "team-01"}]}
    ]"#;

    fn schema() -> cedar_policy::Schema {
        let text = include_str!("../../policies/phigate.cedarschema");
        cedar_policy::Schema::from_cedarschema_str(text).unwrap().0
    }

    #[test]
    fn type_names_are_valid() {
        for name in [
            types::USER,
            types::SERVICE,
            types::ROLE,
            types::CARE_TEAM,
            types::ORGANIZATION,
            types::PATIENT,
            types::RECORD,
            types::ELEVATION,
            types::ACTION,
        ] {
            assert_eq!(uid(name, "x").type_name().to_string(), name);
        }
    }

    #[test]
    fn the_store_validates_against_the_schema() {
        let store = EntityStore::from_json(ENTITIES, Some(&schema())).unwrap();
        assert_eq!(store.len(), 4);
        let bad = r#"[{"uid": {"type": "Phigate::Patient", "id": "p"}, "attrs": {"flags": "vip"}, "parents": []}]"#;
        let err = EntityStore::from_json(bad, Some(&schema())).unwrap_err();
        assert!(err.to_string().contains("entities file"), "{err}");
    }

    #[test]
    fn principals_merge_claims_with_stored_memberships() {
        let store = EntityStore::from_json(ENTITIES, Some(&schema())).unwrap();
        let mut alice = Principal::service("alice", "https://idp", AuthMethod::Bearer, vec![]);
        alice.kind = PrincipalKind::User;
        alice.roles = vec!["nurse".into()];
        let built = PrincipalEntity::build(&alice, &store, None).unwrap();
        let mut parents: Vec<String> = built.parents.iter().map(|p| p.to_string()).collect();
        parents.sort();
        assert_eq!(
            parents,
            [
                r#"Phigate::CareTeam::"team-01""#,
                r#"Phigate::Organization::"org-1""#,
                r#"Phigate::Role::"nurse""#
            ]
        );
    }

    #[test]
    fn fetched_entities_inherit_ancestors_the_static_store_knows() {
        // Static: team-01 in org-1. Fetched on its own: p9 in team-01 only.
        let store = EntityStore::from_json(ENTITIES, Some(&schema())).unwrap();
        let doc = r#"[
          {"uid": {"type": "Phigate::Patient", "id": "p9"},
           "attrs": {"care_teams": [{"__entity": {"type": "Phigate::CareTeam", "id": "team-01"}}],
                     "flags": [], "enrolled": []},
           "parents": [{"type": "Phigate::CareTeam", "id": "team-01"}]}
        ]"#;
        let source = EntityStore::from_json(doc, Some(&schema())).unwrap();
        let p9 = uid(types::PATIENT, "p9");
        let org = uid(types::ORGANIZATION, "org-1");
        assert!(!source.ancestors(&p9).contains(&org));
        let mut fetched = EntityStore::empty();
        for (entity, ancestors) in source.iter() {
            fetched.insert_closed_over(entity, ancestors, &store);
        }
        let lookup = Layered {
            first: &store,
            then: &fetched,
        };
        assert!(lookup.ancestors(&p9).contains(&org));
        // Cedar sees it too: the record and the patient are in org-1.
        let record = RecordEntity::build(
            "Observation",
            None,
            "clinical",
            Some(&p9),
            lookup.ancestors(&p9),
            &[],
        );
        let mut slice = Slice::new();
        slice.record(&record);
        assert!(slice.patient(&p9, &lookup));
        assert_all_in(&slice.into_entities().unwrap(), &[&record.uid, &p9], &org);
    }

    /// Cedar, given the slice, sees each of `who` in `org`.
    fn assert_all_in(entities: &Entities, who: &[&EntityUid], org: &EntityUid) {
        for who in who {
            let ancestors: Vec<&EntityUid> = entities.ancestors(who).unwrap().collect();
            assert!(ancestors.contains(&org), "{who} is in {org}: {ancestors:?}");
        }
    }

    #[test]
    fn the_slice_carries_transitive_ancestors_without_recomputing_them() {
        let store = EntityStore::from_json(ENTITIES, Some(&schema())).unwrap();
        // Claims say team-01; only the store knows team-01 is in org-1.
        let mut bob = Principal::service("bob", "https://idp", AuthMethod::Bearer, vec![]);
        bob.kind = PrincipalKind::User;
        bob.care_teams = vec!["team-01".into()];
        let principal = PrincipalEntity::build(&bob, &store, None).unwrap();
        let p1 = uid(types::PATIENT, "p1");
        let record = RecordEntity::build(
            "Observation",
            None,
            "clinical",
            Some(&p1),
            store.ancestors(&p1),
            &[],
        );
        let mut slice = Slice::new();
        slice.principal(&principal, &store);
        slice.record(&record);
        slice.patient(&p1, &store);
        let org = uid(types::ORGANIZATION, "org-1");
        assert_all_in(
            &slice.into_entities().unwrap(),
            &[&principal.uid, &record.uid, &p1],
            &org,
        );
    }

    #[test]
    fn a_slice_holds_only_what_the_decision_needs() {
        let store = EntityStore::from_json(ENTITIES, Some(&schema())).unwrap();
        let p1 = uid(types::PATIENT, "p1");
        let record = RecordEntity::build("Observation", None, "clinical", Some(&p1), &[], &[]);
        let service = Principal::service(
            "gw",
            "api-key",
            AuthMethod::ApiKey,
            vec!["device_gateway".into()],
        );
        let principal = PrincipalEntity::build(&service, &store, None).unwrap();
        let mut slice = Slice::new();
        slice.principal(&principal, &store);
        slice.record(&record);
        assert!(slice.patient(&p1, &store));
        assert!(!slice.patient(&uid(types::PATIENT, "nobody"), &store));
        // principal, record, patient, team, org — not alice.
        assert_eq!(slice.len(), 5);
        let entities = slice.into_entities().unwrap();
        assert!(entities.get(&uid(types::USER, "alice")).is_none());
    }
}
