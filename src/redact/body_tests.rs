//! Bodies end to end through the redactor: Bundles at every split,
//! single resources, legacy JSON.

use super::*;
use crate::authz::mapping::AccessRequest;
use crate::redact::classes::{DataClasses, EXAMPLE};
use crate::redact::mask::MaskContext;
use serde_json::{json, Value};

/// Denies records of the patients in `denied` (and fan-outs), withholds
/// the classes in `withheld`.
struct TestJudge {
    denied: Vec<&'static str>,
    withheld: Vec<&'static str>,
    classes: Arc<DataClasses>,
}

impl Judge for TestJudge {
    fn may_read(&mut self, accesses: &[AccessRequest], _labels: &[String]) -> bool {
        accesses.iter().all(|a| {
            a.fan_out.is_none()
                && a.patient
                    .as_deref()
                    .is_none_or(|p| !self.denied.contains(&p))
        })
    }
    fn rules(&mut self, ty: &str) -> Arc<Rules> {
        let w = self.withheld.clone();
        Arc::new(Rules::for_type(&self.classes, ty, &mut |c| w.contains(&c)))
    }
}

fn cx(denied: &[&'static str], withheld: &[&'static str]) -> Context<TestJudge> {
    Context {
        judge: TestJudge {
            denied: denied.to_vec(),
            withheld: withheld.to_vec(),
            classes: Arc::new(DataClasses::parse(EXAMPLE).unwrap()),
        },
        settings: RecordSettings {
            bases: vec!["http://up:8080/fhir".into()],
            key: None,
            today: jiff::civil::date(2026, 12, 5),
            max_record: 1 << 20,
        },
        links: Links::new(&["http://up:8080/fhir".into()], "https://gw.example/fhir"),
        counts: false,
        disclosure: Disclosure::default(),
    }
}

/// Runs `body` split at `cut` (and at the end); the output, or the error.
fn run(
    cx: Context<TestJudge>,
    body: &[u8],
    cuts: &[usize],
) -> Result<(Progress, Vec<u8>, Disclosure), StreamError> {
    let mut r = BodyRedactor::fhir(cx);
    let mut out = Vec::new();
    let mut last = 0;
    let mut progress = Progress::Undecided;
    for &c in cuts.iter().chain([&body.len()]) {
        let c = c.clamp(last, body.len());
        progress = r.feed(&body[last..c], c == body.len(), &mut out)?;
        last = c;
    }
    Ok((progress, out, r.disclosure().cloned().unwrap()))
}

fn searchset() -> Value {
    json!({
        "resourceType": "Bundle", "type": "searchset", "total": 3,
        "link": [{"relation": "next", "url": "http://up:8080/fhir/Observation?_page=2"}],
        "entry": [
            {"fullUrl": "http://up:8080/fhir/Patient/a", "resource": {"resourceType": "Patient", "id": "a",
              "telecom": [{"system": "phone", "value": "617-555-0101"}], "gender": "female"},
             "search": {"mode": "include"}},
            {"fullUrl": "http://up:8080/fhir/Observation/1", "resource": {"resourceType": "Observation", "id": "1",
              "subject": {"reference": "http://up:8080/fhir/Patient/a"}}},
            {"fullUrl": "http://up:8080/fhir/Observation/2", "resource": {"resourceType": "Observation", "id": "2",
              "subject": {"reference": "Patient/vip"}}},
            {"request": {"method": "DELETE", "url": "Observation/9"}}
        ],
        "signature": {"data": "c2ln"}
    })
}

#[test]
fn a_bundle_is_filtered_entry_by_entry_at_any_split() {
    let body = serde_json::to_vec_pretty(&searchset()).unwrap();
    let (progress, whole, d) = run(cx(&["vip"], &["contact"]), &body, &[]).unwrap();
    assert_eq!(progress, Progress::Show);
    let v: Value = serde_json::from_slice(&whole).unwrap();
    assert!(v.get("total").is_none() && v.get("signature").is_none());
    assert_eq!(
        v["link"][0]["url"],
        "https://gw.example/fhir/Observation?_page=2"
    );
    let entries = v["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{v:#}");
    assert_eq!(entries[0]["fullUrl"], "https://gw.example/fhir/Patient/a");
    assert!(entries[0]["resource"].get("telecom").is_none());
    assert_eq!(
        entries[0]["resource"]["meta"]["security"][0]["code"],
        "REDACTED"
    );
    assert_eq!(entries[0]["search"]["mode"], "include");
    assert_eq!(
        entries[1]["resource"]["subject"]["reference"],
        "https://gw.example/fhir/Patient/a"
    );
    assert!(!String::from_utf8_lossy(&whole).contains("vip"));
    assert_eq!(d.patients.iter().collect::<Vec<_>>(), ["a"]);
    assert_eq!(d.removed, [("Observation".to_string(), 1)]);
    assert_eq!(d.records, 2);
    // The same at every split point.
    for cut in 0..body.len() {
        let (_, out, _) = run(cx(&["vip"], &["contact"]), &body, &[cut]).unwrap();
        assert_eq!(out, whole, "split at {cut}");
    }
}

#[test]
fn counts_stay_when_disclosed_and_batch_responses_keep_their_statuses() {
    let mut c = cx(&[], &[]);
    c.counts = true;
    let body = serde_json::to_vec(&searchset()).unwrap();
    let (_, out, _) = run(c, &body, &[]).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["total"], 3);
    let batch = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
        {"response": {"status": "201 Created", "location": "http://up:8080/fhir/Observation/5/_history/1"}},
        {"resource": {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [
            {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/vip"}}}]},
         "response": {"status": "200 OK"}}
    ]});
    let (_, out, d) = run(cx(&["vip"], &[]), &serde_json::to_vec(&batch).unwrap(), &[]).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["entry"][0]["response"]["location"],
        "https://gw.example/fhir/Observation/5/_history/1"
    );
    assert_eq!(v["entry"][1]["resource"]["entry"], json!([]));
    assert!(v["entry"][1]["resource"].get("total").is_none());
    assert_eq!(d.removed_total(), 1);
}

#[test]
fn a_single_resource_is_decided_before_anything_is_sent() {
    let vip =
        json!({"resourceType": "Observation", "id": "2", "subject": {"reference": "Patient/vip"}});
    let body = serde_json::to_vec(&vip).unwrap();
    let mut r = BodyRedactor::fhir(cx(&["vip"], &[]));
    let mut out = Vec::new();
    assert_eq!(
        r.feed(&body[..10], false, &mut out).unwrap(),
        Progress::Undecided
    );
    assert_eq!(
        r.feed(&body[10..], true, &mut out).unwrap(),
        Progress::Denied
    );
    assert!(out.is_empty());
    // A Bundle whose resourceType is not its first member is still one.
    let late = br#"{"type":"searchset","total":1,"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"Patient/vip"}}}]}"#;
    let (p, out, _) = run(cx(&["vip"], &[]), late, &[5]).unwrap();
    assert_eq!(p, Progress::Show);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["entry"], json!([]));
    assert!(v.get("total").is_none());
}

#[test]
fn what_cannot_be_redacted_fails() {
    for bad in [
        &br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation""#[..],
        br#"{"resourceType":"Bundle","entry":[{"resource":{"id":"x"}}]}"#,
        br#"{"resourceType":"Patient","id":"a"} {}"#,
        br#"{"resourceType":"Patient","id":"a""#,
        br#"[1,2]"#,
        b"",
    ] {
        assert!(
            run(cx(&[], &[]), bad, &[3]).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut c = cx(&[], &[]);
    c.settings.max_record = 64;
    let big =
        serde_json::to_vec(&json!({"resourceType": "Patient", "id": "a", "x": "y".repeat(100)}))
            .unwrap();
    assert!(matches!(run(c, &big, &[]), Err(StreamError::TooLarge(64))));
}

#[test]
fn legacy_json_is_redacted_by_json_path() {
    let classes = DataClasses::parse(EXAMPLE).unwrap();
    let rules = Arc::new(Rules::for_json(&classes, &mut |c| {
        c == "ssn" || c == "notes"
    }));
    let mask = MaskContext {
        key: None,
        patient: None,
        today: jiff::civil::date(2026, 12, 5),
    };
    let mut r = BodyRedactor::<TestJudge>::json(rules, mask, 1 << 20);
    let doc = br#"{"patient":{"ssn":"123-45-6789","name":"Ann"},"notes":[{"body":"x"}]}"#;
    let mut out = Vec::new();
    assert_eq!(r.feed(doc, true, &mut out).unwrap(), Progress::Show);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, json!({"patient": {"ssn": "***6789", "name": "Ann"}}));
}

#[test]
fn members_named_twice_and_shapes_no_bundle_has_are_refused() {
    for bad in [
        // Decided as one thing, read by a client as another.
        &br#"{"resourceType":"OperationOutcome","resourceType":"Patient","id":"vip","telecom":[{"value":"1"}]}"#[..],
        br#"{"resourceType":"Bundle","resourceType":"Patient","id":"vip"}"#,
        br#"{"resourceType":"Observation","subject":{"reference":"Patient/a"},"subject":{"reference":"Patient/vip"}}"#,
        br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"OperationOutcome","resourceType":"Patient","id":"vip"}}]}"#,
        br#"{"resourceType":"Bundle","entry":[{"fullUrl":"x","fullUrl":"y","resource":{"resourceType":"Patient","id":"a"}}]}"#,
        // An entry that is an object, contained that is an object.
        br#"{"resourceType":"Bundle","entry":{"resource":{"resourceType":"Patient","id":"vip"}}}"#,
        br#"{"resourceType":"Observation","subject":{"reference":"Patient/a"},"contained":{"resourceType":"Patient","id":"vip"}}"#,
        // Labels after the entries they would have applied to.
        br#"{"resourceType":"Bundle","entry":[],"meta":{"security":[{"code":"R"}]}}"#,
    ] {
        let mut c = cx(&["vip"], &["narrative"]);
        c.judge.withheld.push("contact");
        let r = run(c, bad, &[]);
        assert!(r.is_err(), "{} passed: {:?}", String::from_utf8_lossy(bad), r.map(|x| String::from_utf8_lossy(&x.1).into_owned()));
    }
}

#[test]
fn bundle_labels_reach_every_entry_and_counts_leave_no_last_link() {
    // Only records of patient `a`, and no record labelled PSY.
    struct Labelled;
    impl Judge for Labelled {
        fn may_read(&mut self, _: &[AccessRequest], labels: &[String]) -> bool {
            !labels.iter().any(|l| l == "PSY")
        }
        fn rules(&mut self, ty: &str) -> Arc<Rules> {
            let classes = DataClasses::parse(EXAMPLE).unwrap();
            Arc::new(Rules::for_type(&classes, ty, &mut |_| false))
        }
    }
    let c = |judge| Context {
        judge,
        settings: RecordSettings {
            bases: vec![],
            key: None,
            today: jiff::civil::date(2026, 12, 5),
            max_record: 1 << 20,
        },
        links: Links::default(),
        counts: false,
        disclosure: Disclosure::default(),
    };
    let labelled = br#"{"resourceType":"Bundle","meta":{"security":[{"code":"PSY"}]},"type":"document","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"Patient/a"}}}]}"#;
    let mut r = BodyRedactor::fhir(c(Labelled));
    let mut out = Vec::new();
    r.feed(labelled, true, &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["entry"], json!([]), "{v}");
    let paged = br#"{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"a"},{"relation":"last","url":"b?page=41"}],"extra":{"x":1},"entry":[]}"#;
    let mut r = BodyRedactor::fhir(c(Labelled));
    let mut out = Vec::new();
    r.feed(paged, true, &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["link"], json!([{"relation": "self", "url": "a"}]));
    assert!(
        v.get("extra").is_none(),
        "a member no Bundle has is not passed on"
    );
}

#[test]
fn safe_harbor_leaves_no_name_identifier_date_or_free_text() {
    struct Research;
    impl Judge for Research {
        fn may_read(&mut self, _: &[AccessRequest], _: &[String]) -> bool {
            true
        }
        fn rules(&mut self, ty: &str) -> Arc<Rules> {
            let classes = DataClasses::parse(EXAMPLE).unwrap();
            let mut rules = Rules::for_type(&classes, ty, &mut |c| c == "identifiable");
            rules.add_withheld(crate::redact::safe_harbor::classes(), ty);
            Arc::new(rules)
        }
    }
    let body = json!({"resourceType": "Bundle", "type": "history", "entry": [
        {"fullUrl": "http://up:8080/fhir/DiagnosticReport/r1",
         "resource": {"resourceType": "DiagnosticReport", "id": "r1",
            "meta": {"lastUpdated": "2024-03-04T09:00:00Z"},
            "identifier": [{"system": "http://acme.com/lab/reports", "value": "5234342"}],
            "subject": {"reference": "Patient/pat-0001", "display": "Eve Everywoman"},
            "effectiveDateTime": "2024-03-01T08:00:00Z",
            "result": [{"reference": "Observation/o1", "display": "Hemoglobin"}],
            "contained": [{"resourceType": "Specimen", "id": "s1",
                "accessionIdentifier": {"value": "X1"}, "note": [{"text": "drawn by Dr Who"}]}],
            "specimen": [{"reference": "#s1"}],
            "conclusion": "Eve is anaemic"},
         "request": {"method": "PUT", "url": "DiagnosticReport/r1"}}
    ]});
    let mut c = cx(&[], &[]);
    c.settings.key = Some(Arc::from(&b"0123456789abcdef0123456789abcdef"[..]));
    let ctx = Context {
        judge: Research,
        settings: c.settings,
        links: c.links,
        counts: false,
        disclosure: Disclosure::default(),
    };
    let mut r = BodyRedactor::fhir(ctx);
    let mut out = Vec::new();
    r.feed(&serde_json::to_vec(&body).unwrap(), true, &mut out)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    for secret in [
        "5234342",
        "Eve",
        "pat-0001",
        "2024-03-01",
        "2024-03-04",
        "Dr Who",
        "\"r1\"",
        "DiagnosticReport/r1",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    let e = &v["entry"][0];
    assert!(e.get("request").is_none());
    let id = e["resource"]["id"].as_str().unwrap();
    assert!(
        e["fullUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/DiagnosticReport/{id}")),
        "{e}"
    );
    // A contained resource keeps its local id, so `#s1` still resolves.
    assert_eq!(e["resource"]["contained"][0]["id"], "s1");
    assert_eq!(e["resource"]["specimen"][0]["reference"], "#s1");
    assert_eq!(e["resource"]["effectiveDateTime"], "2024");
}
