use super::*;
use crate::audit::render::fixtures;

fn codes(v: &Value) -> (String, String) {
    (
        v["system"].as_str().unwrap_or_default().to_string(),
        v["code"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn a_read_is_a_balp_rest_read_with_patient_and_data_entities() {
    let v = render(&fixtures::read());
    assert_eq!(v["resourceType"], "AuditEvent");
    assert_eq!(v["id"], "0190a0a0-0000-7000-8000-000000000001");
    assert_eq!(
        codes(&v["type"]),
        (
            "http://terminology.hl7.org/CodeSystem/audit-event-type".into(),
            "rest".into()
        )
    );
    assert_eq!(
        codes(&v["subtype"][0]),
        (
            "http://hl7.org/fhir/restful-interaction".into(),
            "read".into()
        )
    );
    assert_eq!(v["action"], "R");
    assert_eq!(v["recorded"], "2024-06-19T15:22:45.123Z");
    assert_eq!(v["outcome"], "0");
    assert_eq!(
        codes(&v["purposeOfEvent"][0]["coding"][0]),
        (ACT_REASON.into(), "TREAT".into())
    );

    let user = &v["agent"][0];
    assert_eq!(user["requestor"], true);
    assert_eq!(user["who"]["identifier"]["value"], "u-42");
    assert_eq!(
        user["who"]["identifier"]["system"],
        "https://idp.example.org"
    );
    assert_eq!(user["who"]["reference"], "Practitioner/prac-1");
    assert_eq!(user["type"]["coding"][0]["code"], "IRCP");
    assert_eq!(user["role"][0]["text"], "clinician");
    assert_eq!(
        user["network"],
        json!({"address": "203.0.113.7", "type": "2"})
    );
    assert_eq!(user["policy"], json!(["care-team-read"]));
    let server = &v["agent"][1];
    assert_eq!(server["requestor"], false);
    assert_eq!(server["who"]["display"], "phigate");
    assert_eq!(v["source"]["observer"]["display"], "phigate");

    let entities = v["entity"].as_array().cloned().unwrap_or_default();
    assert_eq!(entities.len(), 3);
    assert_eq!(entities[0]["what"]["reference"], "Patient/pat-1");
    assert_eq!(
        codes(&entities[0]["role"]),
        (OBJECT_ROLE.into(), "1".into())
    );
    assert_eq!(entities[1]["what"]["reference"], "Patient/pat-1");
    assert_eq!(
        codes(&entities[1]["role"]),
        (OBJECT_ROLE.into(), "4".into())
    );
    assert_eq!(entities[2]["what"]["identifier"]["value"], "req-1");
    assert_eq!(
        codes(&entities[2]["type"]),
        (BALP_ENTITY.into(), "XrequestId".into())
    );
}

#[test]
fn a_search_has_one_entity_per_patient_and_the_query_in_base64() {
    let v = render(&fixtures::search_outcome());
    assert_eq!(v["action"], "E");
    assert_eq!(v["subtype"][0]["code"], "search-type");
    let entities = v["entity"].as_array().cloned().unwrap_or_default();
    let patients: Vec<&Value> = entities
        .iter()
        .filter(|e| e["role"]["code"] == "1")
        .collect();
    assert_eq!(patients.len(), 3);
    assert_eq!(patients[2]["what"]["reference"], "Patient/pat-3");
    let query = entities.iter().find(|e| e["role"]["code"] == "24");
    let b64 = query.and_then(|q| q["query"].as_str()).unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    assert_eq!(decoded, b"/fhir/Observation?patient=*&code=*");
    let detail = &entities
        .last()
        .map(|e| e["detail"].clone())
        .unwrap_or_default();
    assert!(detail.as_array().is_some_and(
        |d| d.contains(&json!({"type": "records_removed.Observation", "valueString": "2"}))
    ));
}

#[test]
fn denials_are_minor_and_control_failures_serious() {
    let v = render(&fixtures::denied());
    assert_eq!(v["outcome"], "4");
    assert_eq!(v["outcomeDesc"], "denied: forbidden");
    assert!(v["agent"][0].get("policy").is_none());
    let mut e = fixtures::read();
    e.outcome = Outcome::RedactionFailed;
    assert_eq!(render(&e)["outcome"], "8");
}

#[test]
fn break_glass_adds_btg_with_the_justification() {
    let mut e = fixtures::read();
    e.break_glass = true;
    e.justification = Some("ER trauma".into());
    let v = render(&e);
    assert_eq!(v["purposeOfEvent"][1]["coding"][0]["code"], "BTG");
    assert_eq!(v["purposeOfEvent"][1]["text"], "ER trauma");
}

#[test]
fn non_request_events_use_dicom_types() {
    let v = render(&fixtures::auth_failed());
    assert_eq!(codes(&v["type"]), (DCM.into(), "110114".into()));
    assert_eq!(v["subtype"][0]["code"], "110122");
    assert_eq!(v["outcome"], "4");
    // Nobody authenticated: the client address is the requestor.
    assert_eq!(v["agent"][0]["requestor"], true);
    assert_eq!(v["agent"][0]["network"]["address"], "203.0.113.7");

    let v = render(&fixtures::reload_failed());
    assert_eq!(v["subtype"][0]["code"], "110129");
    assert_eq!(v["outcome"], "8");
    assert_eq!(v["action"], "E");
    assert_eq!(v["entity"][0]["detail"][0]["type"], "policy_version");
    assert_eq!(v["agent"][0]["type"]["coding"][0]["code"], "110150");
}

#[test]
fn ids_are_fhir_ids() {
    assert_eq!(
        fhir_id("0190a0a0-0000-7000-8000-000000000001"),
        "0190a0a0-0000-7000-8000-000000000001"
    );
    assert_eq!(fhir_id("a b/c"), "abc");
    assert_eq!(fhir_id("///"), "unknown");
    assert_eq!(fhir_id(&"x".repeat(100)).len(), 64);
}

#[test]
fn blank_values_are_left_out() {
    let mut e = fixtures::read();
    e.purpose_of_use = Some(String::new());
    e.break_glass = true;
    e.justification = Some(" ".into());
    e.patients.push(String::new());
    if let Some(a) = e.actor.as_mut() {
        a.issuer = String::new();
        a.name = Some(String::new());
    }
    let text = serde_json::to_string(&render(&e)).unwrap_or_default();
    assert!(!text.contains("\"\""), "{text}");
    assert!(!text.contains("\" \""), "{text}");
    assert!(!text.contains("\"Patient/\""), "{text}");
}
