//! A deterministic synthetic chronic-care-management data set as FHIR R4
//! JSON, so the demo upstream, fixtures and benchmarks are reproducible
//! without ever touching real PHI.
//!
//! Ids are stable and readable: `org-0001` (clinic), `org-0002` (payer),
//! `prac-0001` (medical director, on every team), `pat-0001`…, and per
//! patient `ct-0001`, `cov-0001`, `cp-0001`, `claim-0001`, `cond-0001-01`…,
//! `obs-0001-01`…, `comm-0001-01`…, `enc-0001-01`….
//!
//! Privacy markers are placed by patient number, independent of the seed:
//! - `meta.security` confidentiality `R` on pat-0002, 0012, 0022…; `V` (which
//!   wins) on pat-0004, 0029, 0054…;
//! - `meta.tag` v3-PatientImportance `VIP` on pat-0007, 0027…; `STF` (staff,
//!   i.e. employee) on pat-0009, 0024…;
//! - a Condition labelled `SUD` on pat-0003, 0012…; `PSY` on pat-0005,
//!   0013…; `HIV` on pat-0006, 0018….

mod clinical;
mod synth;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// Every resource type the generator produces, in generation order.
pub const RESOURCE_TYPES: [&str; 11] = [
    "Organization",
    "Practitioner",
    "Patient",
    "CareTeam",
    "Coverage",
    "Condition",
    "CarePlan",
    "Observation",
    "Communication",
    "Encounter",
    "Claim",
];

/// The generated data set: resources in generation order plus an index.
#[derive(Debug, Clone)]
pub struct DemoData {
    seed: u64,
    patients: usize,
    resources: Vec<Value>,
    /// type → id → position in `resources`.
    index: HashMap<String, HashMap<String, usize>>,
}

impl DemoData {
    /// Generates `patients` patients and everything linked to them from
    /// `seed`; the same arguments always give byte-identical JSON.
    pub fn generate(seed: u64, patients: usize) -> DemoData {
        let resources = synth::Synth::new(seed, patients).build(patients);
        let mut index: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (pos, resource) in resources.iter().enumerate() {
            let (rtype, id) = (resource_type(resource), resource_id(resource));
            index
                .entry(rtype.to_owned())
                .or_default()
                .insert(id.to_owned(), pos);
        }
        DemoData {
            seed,
            patients,
            resources,
            index,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn patient_count(&self) -> usize {
        self.patients
    }

    /// The number of resources of all types.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// All resources in a stable order (organizations, practitioners, then
    /// each patient followed by that patient's resources).
    pub fn resources(&self) -> impl Iterator<Item = &Value> + '_ {
        self.resources.iter()
    }

    /// The resources of one type, in the same stable order.
    pub fn of_type<'a>(&'a self, resource_type: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.resources
            .iter()
            .filter(move |r| self::resource_type(r) == resource_type)
    }

    /// Looks a resource up by type and id.
    pub fn get(&self, resource_type: &str, id: &str) -> Option<&Value> {
        let pos = *self.index.get(resource_type)?.get(id)?;
        self.resources.get(pos)
    }

    /// Resolves a relative literal reference such as `Patient/pat-0001`.
    pub fn resolve(&self, reference: &str) -> Option<&Value> {
        let (rtype, id) = reference.split_once('/')?;
        self.get(rtype, id)
    }

    /// A FHIR `collection` Bundle of every resource.
    pub fn collection_bundle(&self) -> Value {
        let entries: Vec<Value> = self
            .resources
            .iter()
            .map(|r| json!({"fullUrl": full_url(r), "resource": r}))
            .collect();
        json!({"resourceType": "Bundle", "id": format!("demo-{}", self.seed),
               "type": "collection", "total": entries.len(), "entry": entries})
    }

    /// Writes `DIR/<Type>/<id>.json` for every resource plus `DIR/bundle.json`
    /// (pretty-printed, so fixtures diff well) and returns how many resource
    /// files were written, not counting the bundle.
    pub fn write_fixtures(&self, dir: &Path) -> std::io::Result<usize> {
        for rtype in self.index.keys() {
            std::fs::create_dir_all(dir.join(rtype))?;
        }
        for resource in &self.resources {
            let path = dir
                .join(resource_type(resource))
                .join(format!("{}.json", resource_id(resource)));
            std::fs::write(path, pretty(resource)?)?;
        }
        std::fs::write(dir.join("bundle.json"), pretty(&self.collection_bundle())?)?;
        Ok(self.resources.len())
    }
}

/// The base used for `fullUrl` in fixtures (`.example` is reserved, RFC 2606).
pub const FIXTURE_BASE: &str = "http://demo.phigate.example/fhir";

fn full_url(resource: &Value) -> String {
    format!(
        "{FIXTURE_BASE}/{}/{}",
        resource_type(resource),
        resource_id(resource)
    )
}

fn pretty(value: &Value) -> std::io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A resource's `resourceType`, or `""` if it has none.
pub fn resource_type(resource: &Value) -> &str {
    resource["resourceType"].as_str().unwrap_or_default()
}

/// A resource's `id`, or `""` if it has none.
pub fn resource_id(resource: &Value) -> &str {
    resource["id"].as_str().unwrap_or_default()
}

/// The patient a resource belongs to, as `Patient/<id>`, read from the
/// element its type uses: `subject`, `patient` (Claim) or `beneficiary`
/// (Coverage). A Patient is not linked to itself.
pub fn patient_reference(resource: &Value) -> Option<&str> {
    ["subject", "patient", "beneficiary"]
        .iter()
        .filter_map(|key| resource[*key]["reference"].as_str())
        .find(|r| r.starts_with("Patient/"))
}

/// Every literal `reference` string anywhere inside `value`.
pub fn references(value: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    collect_references(value, &mut out);
    out
}

fn collect_references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("reference", Value::String(r)) => out.push(r),
                    _ => collect_references(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(data: &DemoData) -> Vec<u8> {
        serde_json::to_vec(&data.collection_bundle()).unwrap()
    }

    #[test]
    fn same_seed_gives_identical_bytes_and_other_seeds_differ() {
        let a = DemoData::generate(7, 30);
        assert_eq!(bytes(&a), bytes(&DemoData::generate(7, 30)));
        assert_ne!(bytes(&a), bytes(&DemoData::generate(8, 30)));
    }

    #[test]
    fn every_reference_resolves() {
        let data = DemoData::generate(1, 45);
        for resource in data.resources() {
            for reference in references(resource) {
                assert!(data.resolve(reference).is_some(), "dangling {reference}");
            }
        }
    }

    #[test]
    fn ids_are_unique_and_indexed() {
        let data = DemoData::generate(3, 25);
        let indexed: usize = data.index.values().map(HashMap::len).sum();
        assert_eq!(indexed, data.len());
        assert!(data.get("Patient", "pat-0025").is_some());
        assert!(data.get("Patient", "pat-0026").is_none());
        assert_eq!(data.of_type("Organization").count(), 2);
    }

    #[test]
    fn patient_linked_resources_point_at_their_patient() {
        let data = DemoData::generate(5, 10);
        for r in data.resources() {
            let rtype = resource_type(r);
            let linked = !matches!(rtype, "Patient" | "Practitioner" | "Organization");
            assert_eq!(patient_reference(r).is_some(), linked, "{rtype}");
        }
        let per_patient = (data.len() - data.of_type("Practitioner").count() - 2) / 10;
        assert!(
            (10..=20).contains(&per_patient),
            "{per_patient} per patient"
        );
    }

    #[test]
    fn patient_serializes_to_a_realistic_size() {
        let data = DemoData::generate(11, 60);
        for patient in data.of_type("Patient") {
            let len = serde_json::to_vec(patient).unwrap().len();
            assert!(
                (1000..=2500).contains(&len),
                "{} is {len} bytes",
                resource_id(patient)
            );
        }
    }

    #[test]
    fn privacy_markers_sit_on_the_documented_patients() {
        let data = DemoData::generate(99, 12);
        let label =
            |id: &str| data.get("Patient", id).unwrap()["meta"]["security"][0]["code"].clone();
        assert_eq!(label("pat-0002"), "R");
        assert_eq!(label("pat-0004"), "V");
        assert!(label("pat-0001").is_null());
        let tag = |id: &str| data.get("Patient", id).unwrap()["meta"]["tag"][0]["code"].clone();
        assert_eq!(tag("pat-0007"), "VIP");
        assert_eq!(tag("pat-0009"), "STF");
        let sensitive: Vec<String> = data
            .of_type("Condition")
            .filter_map(|c| {
                Some(format!(
                    "{}:{}",
                    patient_reference(c)?,
                    c["meta"]["security"][0]["code"].as_str()?
                ))
            })
            .collect();
        assert!(sensitive.contains(&"Patient/pat-0003:SUD".to_owned()));
        assert!(sensitive.contains(&"Patient/pat-0005:PSY".to_owned()));
        assert!(sensitive.contains(&"Patient/pat-0006:HIV".to_owned()));
    }

    #[test]
    fn care_teams_group_patients_and_have_several_practitioners() {
        let data = DemoData::generate(2, 40);
        let teams: std::collections::BTreeSet<&str> = data
            .of_type("CareTeam")
            .map(|t| t["identifier"][0]["value"].as_str().unwrap())
            .collect();
        assert_eq!(teams.len(), 2);
        for team in data.of_type("CareTeam") {
            assert!(team["participant"].as_array().unwrap().len() >= 3);
        }
    }

    #[test]
    fn zero_patients_still_has_one_team_of_practitioners() {
        let data = DemoData::generate(0, 0);
        assert_eq!(data.of_type("Practitioner").count(), 4);
        assert_eq!(data.of_type("Patient").count(), 0);
    }

    #[test]
    fn fixtures_are_written_per_resource_plus_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let data = DemoData::generate(4, 3);
        let written = data.write_fixtures(dir.path()).unwrap();
        assert_eq!(written, data.len());
        let patient = std::fs::read(dir.path().join("Patient/pat-0002.json")).unwrap();
        let patient: Value = serde_json::from_slice(&patient).unwrap();
        assert_eq!(&patient, data.get("Patient", "pat-0002").unwrap());
        let bundle: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("bundle.json")).unwrap())
                .unwrap();
        assert_eq!(bundle["entry"].as_array().unwrap().len(), written);
    }
}
