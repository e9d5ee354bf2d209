//! The FHIR R4 (4.0.1) resource types. A path segment or reference type
//! that is not one of these is not a resource, so nothing downstream may
//! guess what it means (`Patients`, `patient`).

/// Every concrete R4 resource type, sorted by byte order for binary search.
pub const RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// The canonical `&'static str` for `name` if it is an R4 resource type
/// (exact, case-sensitive).
pub fn resource_type(name: &str) -> Option<&'static str> {
    RESOURCE_TYPES
        .binary_search(&name)
        .ok()
        .and_then(|i| RESOURCE_TYPES.get(i).copied())
}

/// Types with a `patient` search parameter in R4 4.0.1 (the official
/// search-parameters bundle; checked against HAPI's and Health
/// Intersections' generated R4 models). On any other type `patient=` is an
/// unknown parameter, which a lenient server ignores: it scopes nothing.
/// Sorted for binary search.
pub const PATIENT_PARAM_TYPES: &[&str] = &[
    "Account",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "BodyStructure",
    "CarePlan",
    "CareTeam",
    "ChargeItem",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "Encounter",
    "EnrollmentRequest",
    "EpisodeOfCare",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GuidanceResponse",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "Invoice",
    "List",
    "MeasureReport",
    "Media",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "MolecularSequence",
    "NutritionOrder",
    "Observation",
    "Person",
    "Procedure",
    "Provenance",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchSubject",
    "RiskAssessment",
    "ServiceRequest",
    "Specimen",
    "SupplyDelivery",
    "Task",
    "VisionPrescription",
];

/// Types with a `subject` search parameter in R4 4.0.1 (same source).
pub const SUBJECT_PARAM_TYPES: &[&str] = &[
    "Account",
    "AdverseEvent",
    "Basic",
    "CarePlan",
    "CareTeam",
    "ChargeItem",
    "ClinicalImpression",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Condition",
    "Contract",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "Encounter",
    "EnrollmentRequest",
    "Flag",
    "Goal",
    "GuidanceResponse",
    "ImagingStudy",
    "Invoice",
    "List",
    "MeasureReport",
    "Media",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductInteraction",
    "MedicinalProductPackaged",
    "MedicinalProductUndesirableEffect",
    "Observation",
    "Procedure",
    "QuestionnaireResponse",
    "RequestGroup",
    "RiskAssessment",
    "ServiceRequest",
    "Specimen",
    "SupplyRequest",
    "Task",
];

/// Whether `resource_type` has the search parameter `name` (`patient` or
/// `subject`) in R4.
pub fn has_search_param(resource_type: &str, name: &str) -> bool {
    let types = match name {
        "patient" => PATIENT_PARAM_TYPES,
        "subject" => SUBJECT_PARAM_TYPES,
        _ => return false,
    };
    types.binary_search(&resource_type).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_unique_and_complete() {
        assert!(RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(RESOURCE_TYPES.len(), 146);
    }

    #[test]
    fn search_parameter_tables_are_sorted_r4_types() {
        for table in [PATIENT_PARAM_TYPES, SUBJECT_PARAM_TYPES] {
            assert!(table.windows(2).all(|w| w[0] < w[1]));
            assert!(
                table.iter().all(|t| resource_type(t).is_some()),
                "{table:?}"
            );
        }
        assert!(has_search_param("Observation", "patient"));
        assert!(has_search_param("Observation", "subject"));
        assert!(!has_search_param("Group", "patient"));
        assert!(!has_search_param("Patient", "patient"));
        assert!(!has_search_param("AdverseEvent", "patient"));
        assert!(has_search_param("AdverseEvent", "subject"));
        assert!(!has_search_param("Observation", "_id"));
    }

    #[test]
    fn lookup_is_exact() {
        assert_eq!(resource_type("Patient"), Some("Patient"));
        assert_eq!(
            resource_type("VisionPrescription"),
            Some("VisionPrescription")
        );
        assert_eq!(resource_type("Account"), Some("Account"));
        assert_eq!(resource_type("patient"), None);
        assert_eq!(resource_type("Patients"), None);
        assert_eq!(resource_type(""), None);
        assert_eq!(resource_type("Resource"), None);
    }
}
