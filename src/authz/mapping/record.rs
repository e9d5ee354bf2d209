//! Records in a response: the accesses that decide whether one may be
//! shown. A record is read, so it is decided as `read` of its type and id
//! for every patient it names — its own id for a Patient, else the
//! patient-compartment references — exactly as a write of it would be.
//! What cannot be proven (a subject that is not a patient, a reference
//! without a resolvable target) fans out; a record naming no patient is
//! decided without one, so only a policy that permits patient-less records
//! lets it through.

use super::reference::{body_patients, compartment_roots, is_fhir_id};
use super::search::Scope;
use super::{access_request, AccessRequest, Action};
use serde_json::Value;

/// The interaction response records are decided as (`context.interaction`).
pub const RESPONSE_RECORD: &str = "response-record";

/// The top-level members of a `resource_type` record that decide whose it
/// is: only these need parsing.
pub fn record_members(resource_type: &str) -> Vec<&'static str> {
    compartment_roots(resource_type)
}

/// The accesses deciding whether `resource` may be shown. `inherited`: the
/// patients of the record containing it (a contained resource that names
/// none belongs to its container's).
pub fn record_accesses(
    resource: &Value,
    bases: &[String],
    inherited: &[String],
) -> Vec<AccessRequest> {
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let id = resource.get("id").and_then(Value::as_str);
    let mut scope = Scope::default();
    if ty == "Patient" {
        match id.filter(|id| is_fhir_id(id)) {
            Some(id) => scope.add_patient(id),
            None => scope.fan("unresolved-reference"),
        }
    }
    if body_patients(resource, bases, &mut scope).is_err() {
        scope.fan("unreadable-reference");
    }
    if !scope.is_scoped() {
        for p in inherited {
            scope.add_patient(p);
        }
    }
    scope.into_requests(access_request(Action::Read, ty, id, RESPONSE_RECORD))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accesses(v: Value, inherited: &[&str]) -> Vec<(Option<String>, Option<&'static str>)> {
        let inherited: Vec<String> = inherited.iter().map(|s| s.to_string()).collect();
        record_accesses(&v, &["https://fhir.example/r4".into()], &inherited)
            .into_iter()
            .map(|a| {
                assert_eq!(a.action, Action::Read);
                (a.patient, a.fan_out)
            })
            .collect()
    }

    #[test]
    fn a_record_is_decided_for_every_patient_it_names() {
        let p = |s: &str| (Some(s.to_string()), None);
        assert_eq!(
            accesses(json!({"resourceType": "Patient", "id": "a"}), &[]),
            [p("a")]
        );
        assert_eq!(
            accesses(
                json!({"resourceType": "Patient", "id": "a", "link": [{"other": {"reference": "Patient/b"}}]}),
                &[]
            ),
            [p("a"), p("b")]
        );
        assert_eq!(
            accesses(
                json!({"resourceType": "Observation", "subject": {"reference": "https://fhir.example/r4/Patient/a"},
                       "performer": [{"reference": "Patient/c"}]}),
                &[]
            ),
            [p("a"), p("c")]
        );
        // No patient: decided without one; a contained one inherits.
        assert_eq!(
            accesses(json!({"resourceType": "Practitioner", "id": "x"}), &[]),
            [(None, None)]
        );
        assert_eq!(
            accesses(json!({"resourceType": "Medication"}), &["a"]),
            [p("a")]
        );
    }

    #[test]
    fn what_cannot_be_proven_fans_out() {
        let group = json!({"resourceType": "Observation", "subject": {"reference": "Group/g"}});
        assert_eq!(
            accesses(group, &["a"]),
            [(Some("a".into()), Some("subject-not-patient"))]
        );
        let foreign = json!({"resourceType": "Observation", "subject": {"reference": "https://elsewhere/Patient/a"}});
        assert_eq!(accesses(foreign, &[]), [(None, Some("foreign-reference"))]);
        let identifier =
            json!({"resourceType": "Condition", "subject": {"identifier": {"value": "1"}}});
        assert_eq!(
            accesses(identifier, &[]),
            [(None, Some("unresolved-reference"))]
        );
        let bad = json!({"resourceType": "Condition", "subject": "Patient/a"});
        assert_eq!(accesses(bad, &[]), [(None, Some("unreadable-reference"))]);
        let no_id = json!({"resourceType": "Patient"});
        assert_eq!(accesses(no_id, &[]), [(None, Some("unresolved-reference"))]);
    }
}
