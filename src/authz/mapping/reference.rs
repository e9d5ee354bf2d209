//! FHIR references, as written in search values and resource bodies.
//! Patient scoping rests on this parser, so it reads a reference whole, the
//! way a FHIR server resolves it, and never by substring: `Patient/1234` is
//! patient `1234`, not a match for `123`.

use serde_json::Value;

use super::resource_types::resource_type;
use super::search::{parse_params, scope_search, Scope};
use super::MappingError;

/// Longest FHIR logical id, in bytes.
const MAX_ID_LEN: usize = 64;

/// What a reference string points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference<'a> {
    /// `Patient/123`, `Patient/123/_history/2` (version dropped), or either
    /// on an accepted base URL.
    Patient(&'a str),
    /// A resource of another type (`Group/5`).
    Other {
        resource_type: &'static str,
        id: &'a str,
    },
    /// A bare logical id (`123`); its type depends on where it appears.
    Bare(&'a str),
    /// An absolute URL on a base this server does not answer for.
    Foreign,
    /// Something no server resolves to a stored resource by itself: a
    /// contained `#id` or a `urn:` placeholder inside a transaction.
    Unresolved,
    /// A conditional reference (`Patient?identifier=mrn|7`): the server
    /// runs the search in `criteria` (still percent-encoded) and points the
    /// reference at the one match.
    Conditional {
        resource_type: &'static str,
        criteria: &'a str,
    },
}

/// Why a reference string is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference is empty")]
    Empty,
    #[error("reference id is not a valid FHIR id")]
    InvalidId,
    #[error("reference names an unknown resource type")]
    UnknownType,
    #[error("reference is not of the form Type/id[/_history/vid]")]
    Malformed,
}

impl From<ReferenceError> for MappingError {
    fn from(e: ReferenceError) -> Self {
        let reason = match e {
            ReferenceError::Empty => "empty reference",
            ReferenceError::InvalidId => "invalid id in reference",
            ReferenceError::UnknownType => "unknown resource type in reference",
            ReferenceError::Malformed => "malformed reference",
        };
        MappingError::bad(reason)
    }
}

/// FHIR id syntax: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_fhir_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Parses one (already percent-decoded) reference.
///
/// `bases` are accepted absolute base URLs without a trailing `/`; an
/// absolute reference counts only if it starts with one of them followed by
/// `/`, compared byte for byte (a differently cased host is foreign, which
/// fails closed).
pub fn parse_reference<'a>(
    value: &'a str,
    bases: &[String],
) -> Result<Reference<'a>, ReferenceError> {
    if value.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if value.starts_with('#') || value.starts_with("urn:") {
        return Ok(Reference::Unresolved);
    }
    // Only what precedes a `?` says where the reference points: conditional
    // criteria may hold URLs themselves (`identifier=http://hosp/mrn|7`).
    let head = value.split_once('?').map_or(value, |(head, _)| head);
    let relative = if head.contains("://") {
        let local = bases.iter().find_map(|base| {
            value
                .strip_prefix(base.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
        });
        match local {
            Some(rest) => rest,
            None => return Ok(Reference::Foreign),
        }
    } else {
        value
    };
    if let Some((ty, criteria)) = relative.split_once('?') {
        let resource_type = resource_type(ty).ok_or(ReferenceError::UnknownType)?;
        if criteria.is_empty() {
            return Err(ReferenceError::Malformed);
        }
        return Ok(Reference::Conditional {
            resource_type,
            criteria,
        });
    }
    let mut parts = relative.split('/');
    let first = parts.next().unwrap_or_default();
    let Some(id) = parts.next() else {
        return if is_fhir_id(first) {
            Ok(Reference::Bare(first))
        } else {
            Err(ReferenceError::InvalidId)
        };
    };
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => {}
        (Some("_history"), Some(vid), None) if is_fhir_id(vid) => {}
        (Some("_history"), Some(_), None) => return Err(ReferenceError::InvalidId),
        _ => return Err(ReferenceError::Malformed),
    }
    let resource_type = resource_type(first).ok_or(ReferenceError::UnknownType)?;
    if !is_fhir_id(id) {
        return Err(ReferenceError::InvalidId);
    }
    if resource_type == "Patient" {
        Ok(Reference::Patient(id))
    } else {
        Ok(Reference::Other { resource_type, id })
    }
}

/// Body elements that name the patient a resource is about.
const PATIENT_ELEMENTS: [&str; 3] = ["subject", "patient", "beneficiary"];

/// Further elements that put a resource in a patient's compartment (after
/// FHIR R4's patient CompartmentDefinition), by type: a write can land in
/// another patient's record through any of them, so each Patient reference
/// there is decided too. Dotted paths go through arrays.
const COMPARTMENT_ELEMENTS: &[(&str, &[&str])] = &[
    ("AllergyIntolerance", &["recorder", "asserter"]),
    ("Appointment", &["participant.actor"]),
    ("AppointmentResponse", &["actor"]),
    ("Basic", &["author"]),
    ("CarePlan", &["activity.detail.performer"]),
    ("CareTeam", &["participant.member"]),
    ("Claim", &["payee.party"]),
    ("Communication", &["sender", "recipient"]),
    (
        "CommunicationRequest",
        &["sender", "recipient", "requester"],
    ),
    ("Composition", &["author", "attester.party"]),
    ("Condition", &["asserter"]),
    ("Coverage", &["subscriber", "policyHolder", "payor"]),
    ("DeviceRequest", &["performer"]),
    ("DocumentReference", &["author"]),
    ("ExplanationOfBenefit", &["payee.party"]),
    ("Group", &["member.entity"]),
    ("List", &["source"]),
    ("MedicationAdministration", &["performer.actor"]),
    ("MedicationDispense", &["performer.actor", "receiver"]),
    ("MedicationRequest", &["performer", "requester"]),
    ("MedicationStatement", &["informationSource"]),
    ("Observation", &["performer"]),
    ("Patient", &["link.other"]),
    ("Person", &["link.target"]),
    ("Procedure", &["performer.actor"]),
    ("Provenance", &["target", "agent.who"]),
    ("QuestionnaireResponse", &["author", "source"]),
    ("ServiceRequest", &["performer", "requester"]),
];

/// [`COMPARTMENT_ELEMENTS`] of `ty` (none for a type not listed).
fn compartment_elements(ty: &str) -> &'static [&'static str] {
    COMPARTMENT_ELEMENTS
        .iter()
        .find(|(t, _)| *t == ty)
        .map(|(_, paths)| *paths)
        .unwrap_or(&[])
}

/// The top-level elements of a `ty` that put it in a patient's compartment:
/// a change to any of them may move the record between patients.
pub(super) fn compartment_roots(ty: &str) -> Vec<&'static str> {
    let mut roots: Vec<&'static str> = PATIENT_ELEMENTS.to_vec();
    for path in compartment_elements(ty) {
        let root = path.split('.').next().unwrap_or(path);
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    roots
}

/// Adds the patients a resource body names to `scope`.
///
/// Reads `subject`, `patient` and `beneficiary` (a Reference or an array of
/// them). A reference to another type marks `subject-not-patient`, a foreign
/// URL `foreign-reference`, and one without a resolvable `reference` (only
/// an identifier, a contained `#id`, a transaction `urn:uuid:`)
/// `unresolved-reference`. Then every other compartment element of the
/// resource's type ([`COMPARTMENT_ELEMENTS`]): a Patient reference there is
/// a patient the write touches too (a practitioner there is nobody's
/// record; a foreign URL may be a patient, so it fans out). A conditional
/// reference to a Patient is the search the server runs to resolve it: it
/// names the patients its criteria name, and fans out
/// (`conditional-reference`) when they name none.
pub(super) fn body_patients(
    resource: &Value,
    bases: &[String],
    scope: &mut Scope,
) -> Result<(), MappingError> {
    for element in PATIENT_ELEMENTS {
        match resource.get(element) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    body_reference(item, bases, scope)?;
                }
            }
            Some(item) => body_reference(item, bases, scope)?,
        }
    }
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    for path in compartment_elements(ty) {
        let mut found = Vec::new();
        collect(resource, path, &mut found);
        for item in found {
            compartment_reference(item, bases, scope)?;
        }
    }
    Ok(())
}

/// The values at a dotted `path`, through arrays at every step.
fn collect<'v>(v: &'v Value, path: &str, out: &mut Vec<&'v Value>) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for item in items {
        match (item.get(head), rest) {
            (None | Some(Value::Null), _) => {}
            (Some(next), Some(rest)) => collect(next, rest, out),
            (Some(Value::Array(a)), None) => out.extend(a.iter()),
            (Some(value), None) => out.push(value),
        }
    }
}

/// A compartment element other than the primary patient elements.
fn compartment_reference(
    item: &Value,
    bases: &[String],
    scope: &mut Scope,
) -> Result<(), MappingError> {
    let Some(Value::String(reference)) = item.get("reference") else {
        return Ok(());
    };
    match parse_reference(reference, bases)? {
        Reference::Patient(id) => scope.add_patient(id),
        Reference::Foreign => scope.fan("foreign-reference"),
        Reference::Conditional {
            resource_type: "Patient",
            criteria,
        } => conditional_patients(criteria, bases, scope)?,
        // A practitioner, an organization, a contained or not-yet-created
        // resource: nobody's patient record.
        _ => {}
    }
    Ok(())
}

fn body_reference(item: &Value, bases: &[String], scope: &mut Scope) -> Result<(), MappingError> {
    let Value::Object(fields) = item else {
        return Err(MappingError::bad("patient element is not a Reference"));
    };
    let reference = match fields.get("reference") {
        None => {
            scope.fan("unresolved-reference");
            return Ok(());
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(MappingError::bad("Reference.reference is not a string")),
    };
    match parse_reference(reference, bases)? {
        Reference::Patient(id) => scope.add_patient(id),
        Reference::Other { .. } | Reference::Bare(_) => scope.fan("subject-not-patient"),
        Reference::Foreign => scope.fan("foreign-reference"),
        Reference::Unresolved => scope.fan("unresolved-reference"),
        Reference::Conditional {
            resource_type: "Patient",
            criteria,
        } => conditional_patients(criteria, bases, scope)?,
        Reference::Conditional { .. } => scope.fan("subject-not-patient"),
    }
    Ok(())
}

/// The patients a conditional Patient reference resolves among: the ones
/// its criteria name, as a Patient search would be scoped.
fn conditional_patients(
    criteria: &str,
    bases: &[String],
    scope: &mut Scope,
) -> Result<(), MappingError> {
    let mut params = Vec::new();
    parse_params(criteria, &mut params)?;
    let mut search = Scope::default();
    search.no_includes = true;
    scope_search(Some("Patient"), &params, bases, &mut search)?;
    if !search.is_scoped() || search.has_fan_out() {
        scope.fan("conditional-reference");
    }
    search.patients_into(scope);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases() -> Vec<String> {
        vec!["https://phigate.example/fhir".to_owned()]
    }

    #[test]
    fn fhir_ids() {
        assert!(is_fhir_id("123"));
        assert!(is_fhir_id("a-b.C9"));
        assert!(is_fhir_id(&"x".repeat(64)));
        assert!(!is_fhir_id(&"x".repeat(65)));
        assert!(!is_fhir_id(""));
        assert!(!is_fhir_id("1 2"));
        assert!(!is_fhir_id("1/2"));
        assert!(!is_fhir_id("a_b"));
        assert!(!is_fhir_id("é"));
        assert!(!is_fhir_id("1%2F2"));
    }

    #[test]
    fn references() {
        let b = bases();
        let cases: &[(&str, Result<Reference<'_>, ReferenceError>)] = &[
            ("Patient/123", Ok(Reference::Patient("123"))),
            ("Patient/1234", Ok(Reference::Patient("1234"))),
            ("Patient/123/_history/2", Ok(Reference::Patient("123"))),
            ("123", Ok(Reference::Bare("123"))),
            (
                "Group/5",
                Ok(Reference::Other {
                    resource_type: "Group",
                    id: "5",
                }),
            ),
            (
                "https://phigate.example/fhir/Patient/7",
                Ok(Reference::Patient("7")),
            ),
            (
                "https://phigate.example/fhir/Patient/7/_history/1",
                Ok(Reference::Patient("7")),
            ),
            (
                "https://phigate.example/fhirx/Patient/7",
                Ok(Reference::Foreign),
            ),
            (
                "https://evil.example/fhir/Patient/1",
                Ok(Reference::Foreign),
            ),
            (
                "HTTPS://PHIGATE.EXAMPLE/fhir/Patient/1",
                Ok(Reference::Foreign),
            ),
            ("https://phigate.example/fhir/7", Ok(Reference::Bare("7"))),
            ("#p1", Ok(Reference::Unresolved)),
            (
                "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
                Ok(Reference::Unresolved),
            ),
            (
                "https://phigate.example/fhir/Patient?_id=4",
                Ok(Reference::Conditional {
                    resource_type: "Patient",
                    criteria: "_id=4",
                }),
            ),
            (
                "Patient?identifier=http://hosp.example/mrn|7",
                Ok(Reference::Conditional {
                    resource_type: "Patient",
                    criteria: "identifier=http://hosp.example/mrn|7",
                }),
            ),
            (
                "https://evil.example/fhir/Patient?_id=4",
                Ok(Reference::Foreign),
            ),
            ("Patients?_id=1", Err(ReferenceError::UnknownType)),
            ("", Err(ReferenceError::Empty)),
            ("patient/1", Err(ReferenceError::UnknownType)),
            ("Patients/1", Err(ReferenceError::UnknownType)),
            ("Patient/", Err(ReferenceError::InvalidId)),
            ("Patient/1 2", Err(ReferenceError::InvalidId)),
            ("Patient/1/_history/", Err(ReferenceError::InvalidId)),
            ("Patient/1/_history", Err(ReferenceError::Malformed)),
            ("Patient/1/Observation", Err(ReferenceError::Malformed)),
            ("Patient/1/_history/2/x", Err(ReferenceError::Malformed)),
            ("1,2", Err(ReferenceError::InvalidId)),
            ("Patient:1", Err(ReferenceError::InvalidId)),
        ];
        for (input, expected) in cases {
            assert_eq!(&parse_reference(input, &b), expected, "reference {input:?}");
        }
    }

    #[test]
    fn body_references() {
        let b = bases();
        let run = |v: Value| {
            let mut scope = Scope::default();
            body_patients(&v, &b, &mut scope).map(|()| scope)
        };
        // A write's other compartment references count too: an Observation
        // "performed" by another patient, a message sent to one.
        let s = run(serde_json::json!({"resourceType": "Observation", "subject": {"reference": "Patient/9"}, "performer": [{"reference": "Practitioner/p"}, {"reference": "Patient/10"}]})).unwrap();
        assert_eq!(s.patients(), ["9", "10"]);
        let s = run(serde_json::json!({"resourceType": "Communication", "subject": {"reference": "Patient/9"}, "recipient": [{"reference": "Patient/11"}]})).unwrap();
        assert_eq!(s.patients(), ["9", "11"]);
        let s = run(serde_json::json!({"resourceType": "CareTeam", "subject": {"reference": "Patient/9"}, "participant": [{"member": {"reference": "Patient/12"}}, {"member": {"reference": "Practitioner/x"}}]})).unwrap();
        assert_eq!(s.patients(), ["9", "12"]);
        let s = run(serde_json::json!({"subject": {"reference": "Patient/9"}})).unwrap();
        assert_eq!(s.patients(), ["9"]);
        assert_eq!(s.fan_out(), None);

        let s = run(serde_json::json!({"subject": {"reference": "Group/9"}})).unwrap();
        assert_eq!(s.fan_out(), Some("subject-not-patient"));

        let s = run(serde_json::json!({"patient": {"identifier": {"value": "x"}}})).unwrap();
        assert_eq!(s.fan_out(), Some("unresolved-reference"));

        let s = run(serde_json::json!({"beneficiary": [{"reference": "Patient/1"}, {"reference": "Patient/2"}]}))
            .unwrap();
        assert_eq!(s.patients(), ["1", "2"]);

        assert!(run(serde_json::json!({"subject": "Patient/1"})).is_err());
        assert!(run(serde_json::json!({"subject": {"reference": "Patient/1 2"}})).is_err());
    }
}
