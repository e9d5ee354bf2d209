//! Search parameters: which patients a query is provably limited to, and
//! which parameters let it reach past them. Only `patient`, `subject` and
//! `_id` on Patient scope a search; traps that widen or sidestep that scope
//! (`_has`, chains, `_filter`, includes, paging tokens) mark it fan-out.

use std::borrow::Cow;

use super::reference::{is_fhir_id, parse_reference, Reference};
use super::resource_types::{has_search_param, resource_type};
use super::stored::STORED_UNREAD;
use super::{AccessRequest, MappingError};

/// Fan-out reason of a request that reaches past its scope in more than one
/// way.
pub const MULTIPLE: &str = "multiple";

/// One decoded `name=value` pair.
pub(super) type Param<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Parameters that widen or sidestep a search's patient scope, with the
/// fan-out reason each raises. Paging tokens continue a result set whose
/// original criteria phigate never saw. Matched ignoring ASCII case, in case
/// a server does.
const TRAPS: [(&str, &str); 9] = [
    ("_has", "_has"),
    ("_filter", "_filter"),
    ("_query", "_query"),
    ("_getpages", "paging"),
    ("_getpagesoffset", "paging"),
    ("_pageId", "paging"),
    ("_page_token", "paging"),
    ("_cursor", "paging"),
    ("ct", "paging"),
];

/// Parameters that name the patients a search is about.
const SCOPING: [&str; 3] = ["patient", "subject", "_id"];

fn trap(base: &str) -> Option<&'static str> {
    TRAPS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(base))
        .map(|(_, reason)| *reason)
}

/// The patients a request is provably about, and the first reason it may
/// reach further.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Scope {
    patients: Vec<String>,
    fan_out: Option<&'static str>,
    /// Resource types an `_include`/`_revinclude` brings into the answer,
    /// with how (`include`, `revinclude`): each is decided as the same
    /// action on that type, for the same patients.
    included: Vec<(String, &'static str)>,
    /// Compartment searches and conditional writes: any include fans out.
    pub(super) no_includes: bool,
}

impl Scope {
    /// Adds a patient (deduplicated, first-seen order kept).
    pub(super) fn add_patient(&mut self, id: &str) {
        if !self.patients.iter().any(|p| p == id) {
            self.patients.push(id.to_owned());
        }
    }

    /// Marks fan-out. Two different reasons make it `multiple`: a policy
    /// that permits one reason must not let another through behind it. An
    /// unread stored record stays visible: the proxy reads it, and the
    /// request is mapped again.
    pub(super) fn fan(&mut self, reason: &'static str) {
        self.fan_out = Some(match self.fan_out {
            None => reason,
            Some(r) if r == reason || r == STORED_UNREAD => r,
            Some(_) if reason == STORED_UNREAD => reason,
            Some(_) => MULTIPLE,
        });
    }

    /// Records of `ty` come back too (deduplicated).
    fn include(&mut self, ty: &str, how: &'static str) {
        if !self.included.iter().any(|(t, _)| t == ty) {
            self.included.push((ty.to_owned(), how));
        }
    }

    pub(super) fn is_scoped(&self) -> bool {
        !self.patients.is_empty()
    }

    pub(super) fn has_fan_out(&self) -> bool {
        self.fan_out.is_some()
    }

    /// Takes in another scope's patients and fan-out reason.
    pub(super) fn absorb(&mut self, other: Scope) {
        for p in other.patients {
            self.add_patient(&p);
        }
        if let Some(reason) = other.fan_out {
            self.fan(reason);
        }
    }

    /// Adds this scope's patients to `other`.
    pub(super) fn patients_into(&self, other: &mut Scope) {
        for p in &self.patients {
            other.add_patient(p);
        }
    }

    #[cfg(test)]
    pub(super) fn patients(&self) -> &[String] {
        &self.patients
    }

    #[cfg(test)]
    pub(super) fn fan_out(&self) -> Option<&'static str> {
        self.fan_out
    }

    /// One request per patient (or one without a patient), each carrying
    /// the fan-out reason.
    pub(super) fn into_requests(self, mut base: AccessRequest) -> Vec<AccessRequest> {
        base.fan_out = self.fan_out;
        let mut out = Vec::with_capacity(self.patients.len().max(1));
        if self.patients.is_empty() {
            out.push(base);
        } else {
            for patient in self.patients {
                out.push(AccessRequest {
                    patient: Some(patient),
                    ..base.clone()
                });
            }
        }
        // Included records are decided like a direct search of their type.
        let direct = out.len();
        for (ty, how) in &self.included {
            for i in 0..direct {
                let r = &out[i];
                out.push(AccessRequest {
                    resource: super::Resource {
                        resource_type: ty.clone(),
                        id: None,
                    },
                    interaction: (*how).to_owned(),
                    operation: None,
                    ..r.clone()
                });
            }
        }
        out
    }
}

/// Decodes one query or form component strictly
/// ([`crate::http::decode_component`]).
pub(super) fn decode_component(raw: &str) -> Result<Cow<'_, str>, MappingError> {
    crate::http::decode_component(raw).map_err(|e| match e {
        crate::http::FormError::Escape => MappingError::bad("malformed percent-encoding in query"),
        crate::http::FormError::Utf8 => MappingError::bad("query is not valid UTF-8"),
    })
}

/// Appends the decoded pairs of a query or form body to `out`. Empty pieces
/// (`a=1&&b=2`) are skipped; a piece without `=` has an empty value.
pub(super) fn parse_params<'a>(raw: &'a str, out: &mut Vec<Param<'a>>) -> Result<(), MappingError> {
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        out.push((decode_component(name)?, decode_component(value)?));
    }
    Ok(())
}

/// How a parameter names patients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// `patient`: targets Patient; a bare id is a Patient id.
    Patient,
    /// `subject`: targets many types; a bare id is ambiguous.
    Subject,
    /// `_id` on a Patient search: bare ids only.
    PatientId,
}

/// Scopes a search on `resource_type` (`None` for a system search) by its
/// parameters, adding patients and fan-out reasons to `scope`.
///
/// Several patient-naming parameters (or one repeated) are ANDed by the
/// server; phigate conservatively asks about every patient named. Values
/// separated by `,` are ORed, so each is asked about too.
pub(super) fn scope_search(
    resource_type: Option<&str>,
    params: &[Param<'_>],
    bases: &[String],
    scope: &mut Scope,
) -> Result<(), MappingError> {
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in params {
        // FHIR parameter names are ASCII. A server that compares names
        // ignoring Unicode case (Java's equalsIgnoreCase) reads `_İnclude`
        // as `_include` and `ſubject` as `subject`: refuse, never guess.
        if name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(MappingError::bad("invalid search parameter name"));
        }
        let (base, modifier) = split_modifier(name);
        // Servers differ on repeated parameters (first, last, AND) and on
        // case: a patient-scoping one that repeats, or that differs from its
        // name only in case, is refused rather than guessed at.
        if let Some(scoping) = SCOPING.iter().find(|s| s.eq_ignore_ascii_case(base)) {
            if base != *scoping {
                return Err(MappingError::bad(
                    "a search parameter differs only in case from a patient-scoping one",
                ));
            }
            if seen.contains(scoping) {
                return Err(MappingError::bad(
                    "a patient-scoping search parameter is repeated",
                ));
            }
            seen.push(scoping);
        }
        if let Some(reason) = trap(base) {
            scope.fan(reason);
            continue;
        }
        if name.contains('.') {
            scope.fan("chained");
            continue;
        }
        // `patient` and `subject` scope only a type that has them: anywhere
        // else they are unknown parameters a lenient server ignores.
        let has = |param| resource_type.is_some_and(|t| has_search_param(t, param));
        let naming = match base {
            "patient" if has("patient") => Naming::Patient,
            "subject" if has("subject") => Naming::Subject,
            "_id" if resource_type == Some("Patient") => Naming::PatientId,
            b if b.eq_ignore_ascii_case("_contained") && !value.eq_ignore_ascii_case("false") => {
                scope.fan("_contained");
                continue;
            }
            _ => continue,
        };
        scope_patient_param(naming, modifier, value, bases, scope)?;
    }
    // Includes are judged last: they are safe only once the search is
    // known to be limited to named patients.
    for (name, value) in params {
        let (base, modifier) = split_modifier(name);
        let reason = if base.eq_ignore_ascii_case("_include") {
            "_include"
        } else if base.eq_ignore_ascii_case("_revinclude") {
            "_revinclude"
        } else {
            continue;
        };
        let exact = base == reason && modifier.is_none();
        // A compartment search matches records through every compartment
        // reference (a performer, a recipient), so what it includes is not
        // provably the named patient's; a conditional write includes
        // nothing it could be decided on.
        if !exact
            || !scope.is_scoped()
            || scope.no_includes
            || !is_patient_include(value, reason == "_revinclude")
        {
            scope.fan(reason);
            continue;
        }
        // `Source:param[:Target]`: an include brings the referenced
        // patients (or `Target`), a reverse include the `Source` records.
        let mut parts = value.split(':');
        let source = parts.next().unwrap_or_default();
        let target = parts.nth(1);
        match reason {
            "_include" => scope.include(target.unwrap_or("Patient"), "include"),
            _ => scope.include(source, "revinclude"),
        }
    }
    Ok(())
}

/// `name:modifier` → (`name`, `Some(modifier)`).
fn split_modifier(name: &str) -> (&str, Option<&str>) {
    match name.split_once(':') {
        Some((base, modifier)) => (base, Some(modifier)),
        None => (name, None),
    }
}

fn scope_patient_param(
    naming: Naming,
    modifier: Option<&str>,
    value: &str,
    bases: &[String],
    scope: &mut Scope,
) -> Result<(), MappingError> {
    // `typed`: a bare id names a Patient.
    let typed = match (naming, modifier) {
        (_, Some("missing")) => return fan(scope, "missing"),
        (Naming::Patient | Naming::Subject, Some("identifier")) => {
            return fan(scope, "identifier-reference")
        }
        (Naming::Patient | Naming::Subject, Some("Patient")) | (Naming::Patient, None) => true,
        (Naming::Subject, None) => false,
        (Naming::Subject, Some(m)) if resource_type(m).is_some() => {
            return fan(scope, "subject-not-patient")
        }
        (Naming::Patient, Some(m)) if resource_type(m).is_some() => {
            return fan(scope, "reference-not-patient")
        }
        (Naming::PatientId, None) => true,
        // `:not`, `:above`, `:text`, ...: no longer a plain match.
        (_, Some(_)) => return fan(scope, "modifier"),
    };
    if value.is_empty() {
        return Err(MappingError::bad("empty patient search parameter"));
    }
    for item in value.split(',') {
        if naming == Naming::PatientId {
            if !is_fhir_id(item) {
                return Err(MappingError::bad("invalid id in _id"));
            }
            scope.add_patient(item);
            continue;
        }
        match parse_reference(item, bases)? {
            Reference::Patient(id) => scope.add_patient(id),
            Reference::Bare(id) if typed => scope.add_patient(id),
            Reference::Bare(_) => scope.fan("subject-not-patient"),
            Reference::Other { .. } if naming == Naming::Subject => {
                scope.fan("subject-not-patient")
            }
            Reference::Other { .. } => scope.fan("reference-not-patient"),
            Reference::Foreign => scope.fan("foreign-reference"),
            Reference::Unresolved | Reference::Conditional { .. } => {
                return Err(MappingError::bad("unresolvable reference in search"))
            }
        }
    }
    Ok(())
}

fn fan(scope: &mut Scope, reason: &'static str) -> Result<(), MappingError> {
    scope.fan(reason);
    Ok(())
}

/// Types whose `patient` search parameter (and `subject`, when it is
/// narrowed to `:Patient`) is one reference to one patient. An include
/// along any other reference (an Appointment's participants, a Provenance's
/// targets, a Group's members, a subject that may be a Group or Device) can
/// bring other patients, so it is not decided as the scoped patient's.
const SINGLE_PATIENT_TYPES: &[&str] = &[
    "AllergyIntolerance",
    "CarePlan",
    "CareTeam",
    "Claim",
    "ClinicalImpression",
    "Communication",
    "Condition",
    "Consent",
    "Coverage",
    "DetectedIssue",
    "DeviceRequest",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "EpisodeOfCare",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "ImagingStudy",
    "Immunization",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "NutritionOrder",
    "Observation",
    "Procedure",
    "QuestionnaireResponse",
    "RiskAssessment",
    "ServiceRequest",
    "Specimen",
];

/// `[Type]:patient[:Patient]` or `[Type]:subject[:Patient]` on a type whose
/// reference names exactly one patient: the included resources are the
/// scoped patient (`_include`, where `subject` must be narrowed to
/// `:Patient`: it may name a Group or a Device) or point only at it
/// (`_revinclude`: `reverse`).
fn is_patient_include(value: &str, reverse: bool) -> bool {
    let mut parts = value.split(':');
    let (Some(ty), Some(param)) = (parts.next(), parts.next()) else {
        return false;
    };
    let target = parts.next();
    if parts.next().is_some() || target.is_some_and(|t| t != "Patient") {
        return false;
    }
    let param_ok = match param {
        "patient" => true,
        // A subject may be a Group or a Device unless narrowed.
        "subject" => reverse || target == Some("Patient"),
        _ => false,
    };
    param_ok && resource_type(ty).is_some() && SINGLE_PATIENT_TYPES.contains(&ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode_component("Patient%2F123").unwrap(), "Patient/123");
        assert_eq!(decode_component("a+b").unwrap(), "a b");
        assert_eq!(decode_component("plain").unwrap(), "plain");
        assert!(matches!(
            decode_component("plain").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(decode_component("%C3%A9").unwrap(), "é");
        assert!(decode_component("%2").is_err());
        assert!(decode_component("%zz").is_err());
        assert!(decode_component("%FF").is_err());
    }

    #[test]
    fn params() {
        let mut out = Vec::new();
        parse_params("a=1&&b&c=x%3Dy=z", &mut out).unwrap();
        let pairs: Vec<(&str, &str)> = out.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
        assert_eq!(pairs, [("a", "1"), ("b", ""), ("c", "x=y=z")]);
    }

    #[test]
    fn includes() {
        assert!(is_patient_include("Observation:patient", false));
        assert!(is_patient_include("Observation:subject:Patient", false));
        assert!(!is_patient_include("Observation:subject", false));
        assert!(is_patient_include("Observation:subject", true));
        assert!(!is_patient_include("Observation:subject:Group", false));
        assert!(!is_patient_include("Appointment:patient", true));
        assert!(!is_patient_include("Observation:performer", false));
        assert!(!is_patient_include("*", false));
        assert!(!is_patient_include("Observation:*", true));
        assert!(!is_patient_include("Nope:patient", false));
    }

    #[test]
    fn requests_per_patient() {
        let mut scope = Scope::default();
        scope.add_patient("1");
        scope.add_patient("2");
        scope.add_patient("1");
        scope.fan("_has");
        scope.fan("chained");
        let base = super::super::access_request(
            super::super::Action::Search,
            "Observation",
            None,
            "search-type",
        );
        let reqs = scope.into_requests(base);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].patient.as_deref(), Some("1"));
        assert_eq!(reqs[1].patient.as_deref(), Some("2"));
        // Two reasons: a policy permitting `_has` does not let a chained
        // search through behind it.
        assert!(reqs.iter().all(|r| r.fan_out == Some(MULTIPLE)));
        let mut scope = Scope::default();
        scope.fan("_has");
        scope.fan("_has");
        assert_eq!(scope.fan_out(), Some("_has"));
        scope.fan(STORED_UNREAD);
        scope.fan("chained");
        assert_eq!(
            scope.fan_out(),
            Some(STORED_UNREAD),
            "stays visible to the proxy"
        );
    }
}
