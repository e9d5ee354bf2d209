//! Golden tests: FHIR written by others (HL7's R4 examples, a third-party
//! synthetic generator; tests/fixtures/fhir/SOURCE.md) and the demo
//! generator's data, redacted under the CCM example classes with three
//! plans, compared with the committed outputs byte for byte. Run with
//! `PHIGATE_BLESS=1` to rewrite them after a deliberate change (and read
//! the diff).

use super::body::BodyKind;
use super::classes::{DataClasses, EXAMPLE};
use super::offline::{redact, Decider, OfflineJudge};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// (plan name, classes withheld).
const PLANS: [(&str, &[&str]); 3] = [
    // Billing's allow-list.
    (
        "billing",
        &[
            "unclassified",
            "count",
            "ssn",
            "contact",
            "address",
            "demographics-extended",
            "sensitive",
            "narrative",
            "notes",
        ],
    ),
    // A care manager: SSNs masked, no notes, no counts.
    ("care-manager", &["ssn", "notes", "count"]),
    // Research: Safe Harbor.
    ("research", &["identifiable", "count"]),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fhir")
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    let demo = crate::demo::data::DemoData::generate(7, 5);
    let patient = demo.get("Patient", "pat-0001").unwrap();
    out.push((
        "demo-patient".into(),
        serde_json::to_vec_pretty(patient).unwrap(),
    ));
    out.push((
        "demo-collection".into(),
        serde_json::to_vec(&demo.collection_bundle()).unwrap(),
    ));
    out.sort();
    out
}

fn run(plan: &[&str], input: &[u8]) -> Vec<u8> {
    let classes = DataClasses::parse(EXAMPLE).unwrap();
    let mut judge = OfflineJudge::new(Decider::Plan {
        classes: &classes,
        withheld: plan.iter().map(|s| s.to_string()).collect(),
    });
    let key: Arc<[u8]> = Arc::from(&b"golden-test-pseudonym-key-32bytes!"[..]);
    let r = redact(&mut judge, BodyKind::Fhir, "", Some(key), input).unwrap();
    r.body.unwrap()
}

#[test]
fn fixtures_redact_to_their_golden_outputs() {
    let bless = std::env::var_os("PHIGATE_BLESS").is_some();
    let golden = dir().join("golden");
    let mut checked = 0;
    for (name, input) in inputs() {
        for (plan, withheld) in PLANS {
            let out = run(withheld, &input);
            let v: Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{name} under {plan}: not JSON ({e})"));
            // Applying a plan twice is applying it once (keyed masks aside:
            // a pseudonym of a pseudonym is another one).
            if plan != "research" {
                assert_eq!(
                    run(withheld, &out),
                    out,
                    "{name} under {plan}: not idempotent"
                );
            }
            let path = golden.join(format!("{name}.{plan}.json"));
            let pretty = serde_json::to_vec_pretty(&v).unwrap();
            if bless {
                std::fs::create_dir_all(&golden).unwrap();
                std::fs::write(&path, &pretty).unwrap();
            } else {
                let want = std::fs::read(&path).unwrap_or_else(|_| {
                    panic!(
                        "no golden output {}: run with PHIGATE_BLESS=1",
                        path.display()
                    )
                });
                assert!(
                    want == pretty,
                    "{name} under {plan} differs from {} (PHIGATE_BLESS=1 rewrites it)",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} golden outputs");
}

/// Identifier values of every record, and the names and birth dates of
/// the people records are about (patients, relatives; not the staff).
fn identifying(v: &Value, out: &mut Vec<String>) {
    identifying_in(v, false, out)
}

fn identifying_in(v: &Value, person: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let person = match m.get("resourceType").and_then(Value::as_str) {
                Some(t) => matches!(t, "Patient" | "RelatedPerson" | "Person"),
                None => person,
            };
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("family", Value::String(s)) if person => out.push(s.clone()),
                    ("given", Value::Array(a)) if person => {
                        out.extend(a.iter().filter_map(|g| g.as_str().map(str::to_string)))
                    }
                    ("identifier", _) => {
                        let mut values = Vec::new();
                        collect_values(x, &mut values);
                        out.extend(values);
                    }
                    ("birthDate", Value::String(s)) => out.push(s.clone()),
                    _ => identifying_in(x, person, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| identifying_in(x, person, out)),
        _ => {}
    }
}

fn collect_values(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(s)) = m.get("value") {
                out.push(s.clone());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_values(x, out)),
        _ => {}
    }
}

fn exposed(v: &Value, person: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let person = match m.get("resourceType").and_then(Value::as_str) {
                Some(t) => matches!(t, "Patient" | "RelatedPerson" | "Person"),
                None => person,
            };
            for (k, x) in m {
                if person
                    || matches!(
                        k.as_str(),
                        "identifier" | "display" | "text" | "div" | "note" | "valueString"
                    )
                {
                    all_strings(x, out);
                }
                exposed(x, person, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exposed(x, person, out)),
        Value::String(s) if person => out.push(s.clone()),
        _ => {}
    }
}

fn all_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

#[test]
fn research_output_holds_no_name_identifier_or_birth_date_of_the_input() {
    for (name, input) in inputs() {
        let original: Value = serde_json::from_slice(&input).unwrap();
        let mut secrets = Vec::new();
        identifying(&original, &mut secrets);
        secrets.retain(|s| s.len() >= 3);
        let out: Value = serde_json::from_slice(&run(PLANS[2].1, &input)).unwrap();
        // Where a person's identity could be: the people's own records,
        // every identifier, references' names, narrative and notes.
        let mut seen = Vec::new();
        exposed(&out, false, &mut seen);
        for s in &secrets {
            assert!(
                !seen.contains(s),
                "{name}: `{s}` survives de-identification"
            );
            if s.chars().all(char::is_alphabetic) && s.len() >= 4 {
                assert!(
                    !seen.iter().any(|x| x.contains(s.as_str())),
                    "{name}: `{s}` appears in the output's text"
                );
            }
        }
    }
}

#[test]
fn what_each_plan_promises_holds_on_the_hl7_patient() {
    let input = std::fs::read(dir().join("Patient-example.json")).unwrap();
    let original: Value = serde_json::from_slice(&input).unwrap();
    let billing: Value = serde_json::from_slice(&run(PLANS[0].1, &input)).unwrap();
    for gone in ["telecom", "address", "contact", "text"] {
        assert!(billing.get(gone).is_none(), "billing sees {gone}");
    }
    assert_eq!(billing["name"], original["name"]);
    let research: Value = serde_json::from_slice(&run(PLANS[2].1, &input)).unwrap();
    assert!(research.get("name").is_none() && research.get("telecom").is_none());
    assert_eq!(research["birthDate"], "1974");
    assert_ne!(research["id"], original["id"]);
    assert_eq!(
        research["managingOrganization"]["reference"]
            .as_str()
            .unwrap()
            .len(),
        13 + 32
    );
    // Values of the identifiers are pseudonyms, never the originals.
    let text = serde_json::to_string(&research).unwrap();
    assert!(
        !text.contains("12345") && !text.contains("Chalmers") && !text.contains("PleasantVille")
    );
}
