//! A scope index: only the policies whose scope can match a request are
//! evaluated.
//!
//! Cedar evaluates every policy of a set, and each evaluation rebuilds the
//! policy's condition, so cost grows with the set. A policy whose principal,
//! action or resource scope cannot match the request is never applicable
//! (its scope is checked before its conditions, so it cannot error either),
//! which makes dropping it exact, not an approximation. Requests with the
//! same scope-relevant facts — action, entity types, and which scope
//! targets the principal and resource are (in) — share one cached subset.
//!
//! The subset's policies are then evaluated without their scope
//! constraints (`eval::CompiledPolicy::scope_proven`), so exactness here
//! is what makes a decision right, not only fast. It rests on two things:
//! the ancestors given to [`ScopeIndex::key`] are the ones the slice gives
//! Cedar, and schemas declare no action groups (the store refuses them).
//! The differential test in `eval.rs` checks the whole path against
//! Cedar's authorizer.

use super::eval::CompiledPolicy;
use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Scope {
    Any,
    In(u32),
    Eq(u32),
    Is(EntityTypeName),
    IsIn(EntityTypeName, u32),
}

impl Scope {
    fn matches(&self, side: &Side) -> bool {
        match self {
            Scope::Any => true,
            Scope::In(t) => side.within.binary_search(t).is_ok(),
            Scope::Eq(t) => side.itself == Some(*t),
            Scope::Is(ty) => &side.type_name == ty,
            Scope::IsIn(ty, t) => &side.type_name == ty && side.within.binary_search(t).is_ok(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Scope,
    /// `None` = any action.
    actions: Option<Vec<EntityUid>>,
    resource: Scope,
}

/// The scope-relevant facts of one side (principal or resource).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Side {
    type_name: EntityTypeName,
    /// The target index of the entity itself, if it is a scope target.
    itself: Option<u32>,
    /// Sorted target indices the entity is `in` (itself included).
    within: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeKey {
    action: EntityUid,
    principal: Side,
    resource: Side,
}

pub struct ScopeIndex {
    policies: Vec<Policy>,
    entries: Vec<Entry>,
    /// Looked up for every ancestor of every request: a fast keyed hash.
    targets: HashMap<EntityUid, u32, ahash::RandomState>,
    subsets: moka::sync::Cache<ScopeKey, Arc<Subset>, ahash::RandomState>,
}

/// The policies that can apply to one kind of request, and which context
/// values they can read.
#[derive(Debug)]
pub struct Subset {
    /// Unique for the life of the process (memo keys use it).
    pub id: u64,
    /// The policies, their `when`/`unless` bodies built for evaluation.
    pub compiled: Vec<CompiledPolicy>,
    pub reads: Reads,
}

/// The context fields the schema defines.
pub const CONTEXT_FIELDS: &[&str] = &[
    "mfa",
    "auth_age",
    "auth_method",
    "client_ip",
    "device_trusted",
    "purpose_of_use",
    "break_glass",
    "justification",
    "elevation",
    "now",
    "hour",
    "weekday",
    "route",
    "interaction",
    "fan_out_reason",
    "requested_action",
    "operation",
    "data_class",
];

/// Which context fields a set of policies can read.
#[derive(Debug, Clone)]
pub struct Reads {
    all: bool,
    names: Vec<&'static str>,
}

impl Reads {
    /// Every field (for callers without a subset).
    pub fn all() -> Reads {
        Reads {
            all: true,
            names: Vec::new(),
        }
    }

    /// From policy text: a field is read if its name occurs anywhere (a
    /// plain substring search: over-inclusive, never under); a bare
    /// `context` (compared or passed whole) reads everything.
    pub fn from_text(text: &str) -> Reads {
        let whole = text.match_indices("context").any(|(i, _)| {
            !matches!(
                text.as_bytes().get(i + 7),
                Some(b'.') | Some(b' ') | Some(b'[')
            )
        });
        Reads {
            all: whole,
            names: CONTEXT_FIELDS
                .iter()
                .copied()
                .filter(|f| text.contains(f))
                .collect(),
        }
    }

    pub fn has(&self, field: &str) -> bool {
        self.all || self.names.contains(&field)
    }
}

static NEXT_SUBSET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for ScopeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeIndex")
            .field("policies", &self.policies.len())
            .field("targets", &self.targets.len())
            .finish()
    }
}

impl ScopeIndex {
    pub fn new(set: &PolicySet) -> ScopeIndex {
        let mut targets: HashMap<EntityUid, u32, ahash::RandomState> = HashMap::default();
        let mut target = |uid: EntityUid| {
            let next = targets.len() as u32;
            *targets.entry(uid).or_insert(next)
        };
        let mut policies = Vec::new();
        let mut entries = Vec::new();
        for policy in set.policies() {
            let principal = match policy.principal_constraint() {
                PrincipalConstraint::Any => Scope::Any,
                PrincipalConstraint::In(u) => Scope::In(target(u)),
                PrincipalConstraint::Eq(u) => Scope::Eq(target(u)),
                PrincipalConstraint::Is(t) => Scope::Is(t),
                PrincipalConstraint::IsIn(t, u) => Scope::IsIn(t, target(u)),
            };
            let resource = match policy.resource_constraint() {
                ResourceConstraint::Any => Scope::Any,
                ResourceConstraint::In(u) => Scope::In(target(u)),
                ResourceConstraint::Eq(u) => Scope::Eq(target(u)),
                ResourceConstraint::Is(t) => Scope::Is(t),
                ResourceConstraint::IsIn(t, u) => Scope::IsIn(t, target(u)),
            };
            let actions = match policy.action_constraint() {
                ActionConstraint::Any => None,
                ActionConstraint::Eq(a) => Some(vec![a]),
                ActionConstraint::In(list) => Some(list),
            };
            policies.push(policy.clone());
            entries.push(Entry {
                principal,
                actions,
                resource,
            });
        }
        ScopeIndex {
            policies,
            entries,
            targets,
            subsets: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .build_with_hasher(ahash::RandomState::new()),
        }
    }

    fn side<'a>(&self, uid: &EntityUid, ancestors: impl Iterator<Item = &'a EntityUid>) -> Side {
        let itself = self.targets.get(uid).copied();
        let mut within: Vec<u32> = ancestors
            .filter_map(|a| self.targets.get(a).copied())
            .chain(itself)
            .collect();
        within.sort_unstable();
        within.dedup();
        Side {
            type_name: uid.type_name().clone(),
            itself,
            within,
        }
    }

    /// The key for a request; `*_ancestors` are every entity the principal
    /// and resource are transitively in. The schema declares no action
    /// groups, so an action is `in` a list only by being on it.
    pub fn key<'a>(
        &self,
        principal: &EntityUid,
        principal_ancestors: impl Iterator<Item = &'a EntityUid>,
        action: &EntityUid,
        resource: &EntityUid,
        resource_ancestors: impl Iterator<Item = &'a EntityUid>,
    ) -> ScopeKey {
        ScopeKey {
            action: action.clone(),
            principal: self.side(principal, principal_ancestors),
            resource: self.side(resource, resource_ancestors),
        }
    }

    /// The policies whose scopes match `key` (cached).
    pub fn policies_for(&self, key: &ScopeKey) -> Arc<Subset> {
        if let Some(set) = self.subsets.get(key) {
            return set;
        }
        let mut compiled = Vec::new();
        let mut text = String::new();
        for (policy, entry) in self.policies.iter().zip(&self.entries) {
            let action = entry
                .actions
                .as_ref()
                .is_none_or(|list| list.contains(&key.action));
            if action
                && entry.principal.matches(&key.principal)
                && entry.resource.matches(&key.resource)
            {
                compiled.push(CompiledPolicy::scope_proven(policy));
                text.push_str(&policy.to_string());
            }
        }
        // A context value no policy names cannot be read, so leaving it out
        // is exact.
        let set = Arc::new(Subset {
            id: NEXT_SUBSET.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            reads: Reads::from_text(&text),
            compiled,
        });
        self.subsets.insert(key.clone(), set.clone());
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn uid(s: &str) -> EntityUid {
        EntityUid::from_str(s).unwrap()
    }

    #[test]
    fn only_policies_whose_scope_can_match_are_kept() {
        let set: PolicySet = r#"
            @id("any") permit(principal, action, resource);
            @id("role") permit(principal in Phigate::Role::"nurse", action == Phigate::Action::"read", resource);
            @id("other-role") permit(principal in Phigate::Role::"billing", action, resource);
            @id("user-type") permit(principal is Phigate::User, action in [Phigate::Action::"read", Phigate::Action::"search"], resource);
            @id("tenant") permit(principal, action, resource is Phigate::Record in Phigate::Organization::"t1");
            @id("tenant-2") permit(principal, action, resource is Phigate::Record in Phigate::Organization::"t2");
            @id("exact") permit(principal == Phigate::User::"alice", action, resource);
        "#
        .parse()
        .unwrap();
        let index = ScopeIndex::new(&set);
        let roles = [uid(r#"Phigate::Role::"nurse""#)];
        let orgs = [
            uid(r#"Phigate::Patient::"p""#),
            uid(r#"Phigate::Organization::"t1""#),
        ];
        let key = index.key(
            &uid(r#"Phigate::User::"alice""#),
            roles.iter(),
            &uid(r#"Phigate::Action::"read""#),
            &uid(r#"Phigate::Record::"Observation""#),
            orgs.iter(),
        );
        // `parse` ignores `@id`: name the kept policies by it.
        let ids = |subset: Arc<Subset>| -> Vec<String> {
            let mut ids: Vec<String> = subset
                .compiled
                .iter()
                .map(|c| {
                    set.policy(&c.id)
                        .unwrap()
                        .annotation("id")
                        .unwrap()
                        .to_string()
                })
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(
            ids(index.policies_for(&key)),
            ["any", "exact", "role", "tenant", "user-type"]
        );
        let key = index.key(
            &uid(r#"Phigate::User::"bob""#),
            [].iter(),
            &uid(r#"Phigate::Action::"delete""#),
            &uid(r#"Phigate::Record::"Observation""#),
            [].iter(),
        );
        assert_eq!(ids(index.policies_for(&key)), ["any"]);
    }
}
