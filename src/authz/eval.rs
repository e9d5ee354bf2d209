//! Evaluating a policy subset with Cedar's evaluator, conditions built once.
//!
//! `cedar_policy::Authorizer` partially evaluates every policy and rebuilds
//! each policy's condition expression on every call, then assembles a
//! response with annotations and residuals phigate never uses. phigate's
//! requests are always concrete (no unknowns), so each subset's conditions
//! are built once ([`CompiledPolicy`]) and evaluated per request by
//! cedar-policy-core's own `Evaluator` (the same interpreter the authorizer
//! uses). The answer is combined by Cedar's rule: a satisfied forbid denies;
//! otherwise a satisfied permit allows; otherwise deny. A policy that errors
//! (or leaves a residual) is reported, and phigate denies on any error.
//!
//! The engine evaluates only the `when`/`unless` bodies of the policies the
//! scope index selected ([`CompiledPolicy::scope_proven`]): the index
//! matches scopes exactly, so checking them again would only cost time.
//!
//! The tests hold both forms equal to `Authorizer::is_authorized` —
//! decision, determining policies and erroring policies — over a grid of
//! requests against the example policies and entities.

use cedar_policy::{Policy, PolicyId};
use cedar_policy_core::ast::{self, Effect, Expr, Literal, SlotEnv, ValueKind};
use cedar_policy_core::entities::Entities as CoreEntities;
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;

/// One policy, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub id: PolicyId,
    pub effect: Effect,
    /// What is evaluated: the whole condition, or only the `when`/`unless`
    /// body when the scope is already proven; `None` is `true`.
    condition: Option<Expr>,
    /// Slot values of a template-linked policy (empty for static ones).
    env: SlotEnv,
}

impl CompiledPolicy {
    /// The whole condition (scope and body): the reference the tests hold
    /// [`CompiledPolicy::scope_proven`] to.
    #[cfg(test)]
    pub fn new(policy: &Policy) -> CompiledPolicy {
        let core: &ast::Policy = policy.as_ref();
        CompiledPolicy {
            id: policy.id().clone(),
            effect: core.effect(),
            condition: Some(core.condition()),
            env: core.env().clone(),
        }
    }

    /// Only the `when`/`unless` conditions, for a policy whose principal,
    /// action and resource scope is already known to match the request
    /// (the scope index proves it, exactly: see `index.rs`). Scope
    /// constraints are the costly part of many conditions (`action in
    /// [...]` builds a set on every evaluation).
    pub fn scope_proven(policy: &Policy) -> CompiledPolicy {
        let core: &ast::Policy = policy.as_ref();
        CompiledPolicy {
            id: policy.id().clone(),
            effect: core.effect(),
            condition: core.non_scope_constraints().cloned(),
            env: core.env().clone(),
        }
    }
}

/// What a subset decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// The satisfied forbids when denied by one, else the satisfied permits
    /// (in policy order).
    pub determining: Vec<PolicyId>,
    /// Policies that failed to evaluate (ignored by Cedar's rule; phigate
    /// denies when there are any).
    pub errors: Vec<PolicyId>,
}

/// Evaluates `policies` for one concrete request.
pub fn evaluate(
    policies: &[CompiledPolicy],
    request: ast::Request,
    entities: &CoreEntities,
) -> Outcome {
    let evaluator = Evaluator::new(request, entities, Extensions::all_available());
    let mut permits = Vec::new();
    let mut forbids = Vec::new();
    let mut errors = Vec::new();
    for policy in policies {
        // Anything but a boolean (an error, a residual, another value) is
        // an error, as in Cedar.
        let satisfied = match &policy.condition {
            None => Some(true),
            Some(condition) => match evaluator.interpret(condition, &policy.env) {
                Ok(ast::Value {
                    value: ValueKind::Lit(Literal::Bool(b)),
                    ..
                }) => Some(b),
                _ => None,
            },
        };
        match (satisfied, policy.effect) {
            (Some(true), Effect::Permit) => permits.push(policy.id.clone()),
            (Some(true), Effect::Forbid) => forbids.push(policy.id.clone()),
            (Some(false), _) => {}
            (None, _) => errors.push(policy.id.clone()),
        }
    }
    if !forbids.is_empty() {
        Outcome {
            allowed: false,
            determining: forbids,
            errors,
        }
    } else {
        Outcome {
            allowed: !permits.is_empty(),
            determining: permits,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::store::{PolicyBundle, PolicySource};
    use cedar_policy::{Authorizer, Context, Entities, EntityUid, Request};
    use std::collections::BTreeSet;
    use std::str::FromStr;

    fn uid(s: &str) -> EntityUid {
        EntityUid::from_str(s).unwrap()
    }

    fn authorizer_outcome(
        set: &cedar_policy::PolicySet,
        request: &Request,
        entities: &Entities,
    ) -> (bool, BTreeSet<String>, BTreeSet<String>) {
        let response = Authorizer::new().is_authorized(request, set, entities);
        let d = response.diagnostics();
        (
            response.decision() == cedar_policy::Decision::Allow,
            d.reason().map(|p| p.to_string()).collect(),
            d.errors()
                .map(|e| match e {
                    cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                        e.policy_id().to_string()
                    }
                })
                .collect(),
        )
    }

    fn ours(
        compiled: &[CompiledPolicy],
        request: &Request,
        entities: &Entities,
    ) -> (bool, BTreeSet<String>, BTreeSet<String>) {
        let o = evaluate(compiled, request.as_ref().clone(), entities.as_ref());
        (
            o.allowed,
            o.determining.iter().map(|p| p.to_string()).collect(),
            o.errors.iter().map(|p| p.to_string()).collect(),
        )
    }

    /// The example policies, decided both ways over every combination of
    /// persona, action, record and a spread of contexts (including ones
    /// missing fields, so policies error): always the same answer.
    #[test]
    fn agrees_with_cedars_authorizer_on_the_example_policies() {
        let bundle = PolicyBundle::load(&PolicySource::Embedded).unwrap();
        let compiled: Vec<CompiledPolicy> = bundle
            .policies
            .policies()
            .map(CompiledPolicy::new)
            .collect();
        let mut entities_json: Vec<serde_json::Value> =
            serde_json::from_str(crate::authz::policy_tests::EMBEDDED_ENTITIES).unwrap();
        // People in every role the policies name, and a device gateway.
        let role = |r: &str| serde_json::json!({"type": "Phigate::Role", "id": r});
        let team = |t: &str| serde_json::json!({"type": "Phigate::CareTeam", "id": t});
        let org = serde_json::json!({"type": "Phigate::Organization", "id": "org-0001"});
        let entity_ref = |v: &serde_json::Value| serde_json::json!({"__entity": v});
        for (id, roles, teams, extra) in [
            (
                "u-cm",
                vec!["care_manager", "nurse"],
                vec!["team-01"],
                serde_json::json!({}),
            ),
            (
                "u-doc",
                vec!["physician"],
                vec!["team-02"],
                serde_json::json!({"npi": "1000000002"}),
            ),
            ("u-bill", vec!["billing"], vec![], serde_json::json!({})),
            (
                "u-sup",
                vec!["support_engineer"],
                vec![],
                serde_json::json!({}),
            ),
            (
                "u-pat",
                vec!["patient"],
                vec![],
                serde_json::json!({"patient": {"__entity": {"type": "Phigate::Patient", "id": "pat-0001"}}}),
            ),
        ] {
            let mut attrs = serde_json::json!({
                "care_teams": teams.iter().map(|t| entity_ref(&team(t))).collect::<Vec<_>>(),
                "organization": entity_ref(&org),
                "scopes": [],
            });
            for (k, v) in extra.as_object().unwrap() {
                attrs[k] = v.clone();
            }
            let mut parents: Vec<_> = roles.iter().map(|r| role(r)).collect();
            parents.extend(teams.iter().map(|t| team(t)));
            parents.push(org.clone());
            entities_json.push(serde_json::json!({
                "uid": {"type": "Phigate::User", "id": id}, "attrs": attrs, "parents": parents
            }));
        }
        entities_json.push(serde_json::json!({
            "uid": {"type": "Phigate::ServiceAccount", "id": "rpm-gw"},
            "attrs": {"organization": entity_ref(&org)},
            "parents": [role("device_gateway"), org.clone()]
        }));
        // Records of several kinds, with and without patients and labels.
        let records = [
            ("obs-1", "Observation", "clinical", Some("pat-0001"), vec![]),
            (
                "obs-2",
                "Observation",
                "clinical",
                Some("pat-0002"),
                vec!["R"],
            ),
            ("cp-1", "CarePlan", "care_plan", Some("pat-0001"), vec![]),
            ("claim-1", "Claim", "billing", Some("pat-0003"), vec![]),
            ("prac-1", "Practitioner", "directory", None, vec![]),
            (
                "cond-1",
                "Condition",
                "clinical",
                Some("pat-0003"),
                vec!["PSY"],
            ),
        ];
        for (id, ty, category, patient, labels) in &records {
            let mut attrs = serde_json::json!({"type": ty, "category": category, "labels": labels});
            let mut parents = vec![];
            if let Some(p) = patient {
                attrs["patient"] =
                    serde_json::json!({"__entity": {"type": "Phigate::Patient", "id": p}});
                parents.push(serde_json::json!({"type": "Phigate::Patient", "id": p}));
            }
            entities_json.push(serde_json::json!({
                "uid": {"type": "Phigate::Record", "id": id}, "attrs": attrs, "parents": parents
            }));
        }
        let entities = Entities::from_json_value(
            serde_json::Value::Array(entities_json.clone()),
            Some(&bundle.schema),
        )
        .unwrap();
        let principals: Vec<String> = entities_json
            .iter()
            .filter_map(|e| {
                let ty = e["uid"]["type"].as_str()?;
                let id = e["uid"]["id"].as_str()?;
                matches!(ty, "Phigate::User" | "Phigate::ServiceAccount")
                    .then(|| format!("{ty}::\"{id}\""))
            })
            .collect();
        assert!(principals.len() >= 4, "{principals:?}");
        let actions = [
            "read",
            "search",
            "create",
            "update",
            "delete",
            "export",
            "fan_out",
            "operation",
        ];
        let contexts = [
            serde_json::json!({}),
            serde_json::json!({"mfa": true, "auth_age": 30, "purpose_of_use": "TREAT",
                "break_glass": false, "hour": 10, "weekday": "Tue", "device_trusted": false,
                "client_ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
                "route": "fhir", "interaction": "read"}),
            serde_json::json!({"mfa": false, "auth_age": 9000, "purpose_of_use": "HPAYMT",
                "break_glass": true, "justification": "code blue", "hour": 2,
                "weekday": "Sun", "device_trusted": true,
                "client_ip": {"__extn": {"fn": "ip", "arg": "192.168.1.9"}},
                "route": "fhir", "interaction": "update",
                "elevation": {"__entity": {"type": "Phigate::Elevation", "id": "INC-1001"}}}),
        ];
        let mut compared = 0;
        let mut allowed = 0;
        let mut errored = 0;
        let mut forbidden = 0;
        for principal in &principals {
            for action in actions {
                for (record, ..) in &records {
                    for context in &contexts {
                        let request = Request::new(
                            uid(principal),
                            uid(&format!("Phigate::Action::\"{action}\"")),
                            uid(&format!("Phigate::Record::\"{record}\"")),
                            Context::from_json_value(context.clone(), None).unwrap(),
                            None,
                        )
                        .unwrap();
                        let theirs = authorizer_outcome(&bundle.policies, &request, &entities);
                        assert_eq!(
                            ours(&compiled, &request, &entities),
                            theirs,
                            "whole conditions: {principal} {action} {record} {context}"
                        );
                        // What the engine does: the scope index's subset,
                        // bodies only.
                        let ancestors = |u: &EntityUid| -> Vec<EntityUid> {
                            entities
                                .ancestors(u)
                                .map(|a| a.cloned().collect())
                                .unwrap_or_default()
                        };
                        let (p, a, r) = (
                            uid(principal),
                            uid(&format!("Phigate::Action::\"{action}\"")),
                            uid(&format!("Phigate::Record::\"{record}\"")),
                        );
                        let key = bundle.index.key(
                            &p,
                            ancestors(&p).iter(),
                            &a,
                            &r,
                            ancestors(&r).iter(),
                        );
                        let subset = bundle.index.policies_for(&key);
                        assert_eq!(
                            ours(&subset.compiled, &request, &entities),
                            theirs,
                            "indexed bodies: {principal} {action} {record} {context}"
                        );
                        compared += 1;
                        allowed += theirs.0 as usize;
                        errored += !theirs.2.is_empty() as usize;
                        forbidden += (!theirs.0 && !theirs.1.is_empty()) as usize;
                    }
                }
            }
        }
        // The grid exercises all three outcomes, not just denials.
        assert!(compared > 300, "{compared}");
        assert!(allowed > 40, "only {allowed} allowed");
        assert!(forbidden > 40, "only {forbidden} denied by a forbid");
        assert!(errored > 100, "only {errored} with errors");
    }

    #[test]
    fn forbid_overrides_and_errors_are_reported_not_decisive() {
        let set = cedar_policy::PolicySet::from_str(
            r#"
            @id("p") permit(principal, action, resource);
            @id("f") forbid(principal, action, resource) when { context.deny };
            @id("e") forbid(principal, action, resource) when { context.missing == 1 };
        "#,
        )
        .unwrap();
        let compiled: Vec<CompiledPolicy> = set.policies().map(CompiledPolicy::new).collect();
        let entities = Entities::empty();
        for deny in [false, true] {
            let request = Request::new(
                uid("U::\"a\""),
                uid("A::\"b\""),
                uid("R::\"c\""),
                Context::from_json_value(serde_json::json!({"deny": deny}), None).unwrap(),
                None,
            )
            .unwrap();
            let o = ours(&compiled, &request, &entities);
            assert_eq!(o, authorizer_outcome(&set, &request, &entities));
            assert_eq!(o.0, !deny);
            // (`from_str` ignores `@id`: the third policy is `policy2`.)
            assert_eq!(o.2, BTreeSet::from(["policy2".to_string()]));
        }
    }
}
