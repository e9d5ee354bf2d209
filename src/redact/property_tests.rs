//! Properties of the whole redactor over generated FHIR Patients,
//! Observations and Bundles, against a `serde_json::Value` oracle that
//! applies the same plan the slow, obvious way.

use super::body::{BodyRedactor, Context, Progress};
use super::classes::DataClasses;
use super::links::Links;
use super::record::{Disclosure, Judge, RecordSettings};
use super::rules::Rules;
use crate::authz::mapping::AccessRequest;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const CLASSES: &str = r#"
[[class]]
name = "unclassified"
[[class]]
name = "contact"
fhir = ["Patient.telecom", "Patient.contact.telecom"]
[[class]]
name = "address"
fhir = ["Patient.address"]
[[class]]
name = "ssn"
fhir = ["Patient.identifier[system=urn:ssn]"]
[[class]]
name = "narrative"
fhir = ["*.text"]
[[class]]
name = "values"
fhir = ["Observation.value[x]"]
[[class]]
name = "minimum"
fhir = ["Patient.name", "Patient.gender", "Observation.status", "Observation.subject", "Observation.code"]
"#;

const WITHHOLDABLE: [&str; 6] = [
    "contact",
    "address",
    "ssn",
    "narrative",
    "values",
    "unclassified",
];

struct PlanJudge {
    withheld: Vec<&'static str>,
    denied: Vec<String>,
    classes: Arc<DataClasses>,
}

impl Judge for PlanJudge {
    fn may_read(&mut self, accesses: &[AccessRequest], _labels: &[String]) -> bool {
        accesses
            .iter()
            .all(|a| a.patient.as_ref().is_none_or(|p| !self.denied.contains(p)))
    }
    fn rules(&mut self, ty: &str) -> Arc<Rules> {
        let w = self.withheld.clone();
        Arc::new(Rules::for_type(&self.classes, ty, &mut |c| w.contains(&c)))
    }
}

fn redact(
    body: &[u8],
    withheld: &[&'static str],
    denied: &[String],
    cuts: &[usize],
) -> (Progress, Vec<u8>) {
    let judge = PlanJudge {
        withheld: withheld.to_vec(),
        denied: denied.to_vec(),
        classes: Arc::new(DataClasses::parse(CLASSES).unwrap()),
    };
    let mut r = BodyRedactor::fhir(Context {
        judge,
        settings: RecordSettings {
            bases: vec![],
            key: None,
            today: jiff::civil::date(2026, 12, 5),
            max_record: 1 << 22,
        },
        links: Links::default(),
        counts: false,
        disclosure: Disclosure::default(),
    });
    let mut out = Vec::new();
    let mut last = 0;
    let mut p = Progress::Undecided;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain([body.len()]) {
        let c = c.max(last);
        p = r.feed(&body[last..c], c == body.len(), &mut out).unwrap();
        last = c;
    }
    (p, out)
}

/// The oracle: the same plan on a parsed Value.
fn oracle_record(r: &Value, withheld: &[&str], denied: &[String]) -> Option<Value> {
    let ty = r["resourceType"].as_str().unwrap();
    let patient = match ty {
        "Patient" => r["id"].as_str().map(str::to_string),
        _ => r["subject"]["reference"]
            .as_str()
            .and_then(|s| s.strip_prefix("Patient/"))
            .map(str::to_string),
    };
    if patient.as_ref().is_some_and(|p| denied.contains(p)) {
        return None;
    }
    let w = |c: &str| withheld.contains(&c);
    let mut out = Map::new();
    let mut changed = false;
    for (k, v) in r.as_object().unwrap() {
        let base = k.strip_prefix('_').unwrap_or(k);
        let class = match (ty, base) {
            (_, "resourceType" | "id" | "meta") => Some("structural"),
            (_, "text") => Some("narrative"),
            ("Patient", "telecom") => Some("contact"),
            ("Patient", "address") => Some("address"),
            ("Patient", "name" | "gender") => Some("minimum"),
            ("Patient", "identifier") => Some("identifier"),
            ("Patient", "contact") => Some("contact-parent"),
            ("Observation", "status" | "subject" | "code") => Some("minimum"),
            ("Observation", b)
                if b.starts_with("value")
                    && b[5..].starts_with(|c: char| c.is_ascii_uppercase()) =>
            {
                Some("values")
            }
            _ => None,
        };
        let keep = match class {
            Some("structural") | Some("minimum") => Some(v.clone()),
            Some("identifier") => {
                let kept: Vec<Value> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|i| {
                        let ssn = i["system"] == "urn:ssn";
                        (!ssn || !w("ssn")) && (ssn || !w("unclassified"))
                    })
                    .cloned()
                    .collect();
                let before = v.as_array().unwrap().len();
                changed |= kept.len() != before;
                (before == 0 || !kept.is_empty()).then_some(Value::Array(kept))
            }
            // Not a class of its own: its classed part (telecom) follows
            // `contact`, the rest `unclassified`.
            Some("contact-parent") => {
                let items: Vec<Value> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let mut c = c.clone();
                        let m = c.as_object_mut().unwrap();
                        let before = m.len();
                        m.retain(|k, _| {
                            if k == "telecom" {
                                !w("contact")
                            } else {
                                !w("unclassified")
                            }
                        });
                        changed |= m.len() != before;
                        c
                    })
                    .collect();
                Some(Value::Array(items))
            }
            Some(c) if w(c) => None,
            Some(_) => Some(v.clone()),
            None if w("unclassified") => None,
            None => Some(v.clone()),
        };
        match keep {
            Some(v) => {
                out.insert(k.clone(), v);
            }
            None => changed = true,
        }
    }
    if changed {
        let meta = out.entry("meta").or_insert_with(|| json!({}));
        let sec = meta
            .as_object_mut()
            .unwrap()
            .entry("security")
            .or_insert_with(|| json!([]));
        sec.as_array_mut().unwrap().push(json!({
            "system": super::record::OBSERVATION_VALUE, "code": "REDACTED", "display": "redacted"}));
    }
    Some(Value::Object(out))
}

fn oracle(v: &Value, withheld: &[&str], denied: &[String]) -> Option<Value> {
    if v["resourceType"] != "Bundle" {
        return oracle_record(v, withheld, denied);
    }
    let mut b = v.clone();
    let m = b.as_object_mut().unwrap();
    m.remove("total");
    let entries: Vec<Value> = v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let r = oracle_record(&e["resource"], withheld, denied)?;
            let mut e = e.clone();
            e["resource"] = r;
            Some(e)
        })
        .collect();
    m.insert("entry".into(), Value::Array(entries));
    Some(b)
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 é\"\\\\/-]{6,14}"
}

fn patient() -> impl Strategy<Value = Value> {
    (
        0..6u8,
        prop::collection::vec(text(), 1..3),
        prop::collection::vec((prop::bool::ANY, text()), 0..3),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(n, telecom, ids, city, note, extra)| {
            let mut p = json!({
                "resourceType": "Patient", "id": format!("p{n}"),
                "name": [{"family": "Family", "given": ["Given"]}],
                "gender": "female",
                "telecom": telecom.iter().map(|t| json!({"system": "phone", "value": t})).collect::<Vec<_>>(),
                "identifier": ids.iter().map(|(ssn, v)| json!({"system": if *ssn {"urn:ssn"} else {"urn:mrn"}, "value": v})).collect::<Vec<_>>(),
                "contact": [{"relationship": [{"text": "kin"}], "telecom": [{"value": telecom[0].clone() + "-kin"}]}],
            });
            if let Some(c) = city {
                p["address"] = json!([{"city": c, "postalCode": "02139"}]);
            }
            if let Some(n) = note {
                p["text"] = json!({"status": "generated", "div": n});
            }
            if let Some(e) = extra {
                p["futureElement"] = json!({"nested": [e]});
                p["_gender"] = json!({"extension": [{"url": "urn:x", "valueString": "y"}]});
            }
            p
        })
}

fn observation() -> impl Strategy<Value = Value> {
    (0..6u8, text(), prop::bool::ANY).prop_map(|(n, v, q)| {
        let mut o = json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "bp"}, "subject": {"reference": format!("Patient/p{n}")}});
        if q {
            o["valueQuantity"] = json!({"value": 1.50, "unit": "mmHg"});
        } else {
            o["valueString"] = json!(v);
        }
        o
    })
}

fn body() -> impl Strategy<Value = Value> {
    prop_oneof![
        patient(),
        observation(),
        prop::collection::vec(prop_oneof![patient(), observation()], 0..6).prop_map(|rs| {
            json!({"resourceType": "Bundle", "type": "searchset", "total": rs.len(),
                   "entry": rs.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
        }),
    ]
}

/// Every string value in `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Values of a withheld class in the input, that must appear nowhere.
fn hidden(v: &Value, withheld: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let records: Vec<&Value> = match v["entry"].as_array() {
        Some(e) => e.iter().map(|e| &e["resource"]).collect(),
        None => vec![v],
    };
    for r in records {
        if withheld.contains(&"contact") {
            strings(&r["telecom"], &mut out);
        }
        if withheld.contains(&"address") {
            strings(&r["address"], &mut out);
        }
        if withheld.contains(&"narrative") {
            strings(&r["text"]["div"], &mut out);
        }
        if withheld.contains(&"ssn") {
            for i in r["identifier"].as_array().into_iter().flatten() {
                if i["system"] == "urn:ssn" {
                    strings(&i["value"], &mut out);
                }
            }
        }
    }
    out.retain(|s| s.len() >= 6 && s != "02139");
    out
}

fn plan() -> impl Strategy<Value = (Vec<&'static str>, Vec<String>)> {
    (
        prop::sample::subsequence(WITHHOLDABLE.to_vec(), 0..=WITHHOLDABLE.len()),
        prop::sample::subsequence(vec!["p0", "p1", "p2"], 0..=2)
            .prop_map(|d| d.into_iter().map(String::from).collect::<Vec<String>>()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_redactor_matches_the_oracle_and_keeps_its_promises(
        v in body(),
        (withheld, denied) in plan(),
        pretty in any::<bool>(),
        escaped in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let mut input = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
        if escaped {
            // Keys are matched after unescaping.
            let s = String::from_utf8(input).unwrap().replace("\"telecom\"", "\"tele\\u0063om\"");
            input = s.into_bytes();
        }
        let (progress, out) = redact(&input, &withheld, &denied, &cuts);
        let expected = oracle(&v, &withheld, &denied);
        match expected {
            None => prop_assert_eq!(progress, Progress::Denied),
            Some(expected) => {
                prop_assert_eq!(progress, Progress::Show);
                // Valid JSON, and what the oracle says.
                let got: Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(&got, &expected);
                // No withheld value anywhere (by value, not substring).
                let mut seen = Vec::new();
                strings(&got, &mut seen);
                for h in hidden(&v, &withheld) {
                    prop_assert!(!seen.contains(&h), "{} leaked", h);
                }
                // Untouched members are byte-identical.
                if !pretty && !escaped {
                    let name = br#""name":[{"family":"Family","given":["Given"]}]"#;
                    let count = |b: &[u8]| b.windows(name.len()).filter(|w| w == name).count();
                    let expected_names = expected.to_string().matches(r#""name":[{"family""#).count();
                    prop_assert_eq!(count(&out), expected_names);
                }
                // Applying the plan twice is applying it once.
                let (_, again) = redact(&out, &withheld, &denied, &[]);
                let again: Value = serde_json::from_slice(&again).unwrap();
                prop_assert_eq!(again, got);
            }
        }
    }
}

#[test]
fn numbers_are_never_reformatted() {
    let input = br#"{"resourceType":"Observation","status":"final","valueQuantity":{"value":1.50,"unit":"mmHg"},"code":{"text":"bp"},"x":1e400}"#;
    let (_, out) = redact(input, &["narrative"], &[], &[7, 40]);
    assert_eq!(&out[..], &input[..]);
}
