use super::*;
use crate::audit::render::fixtures;
use serde_json::{json, Value};

/// The rendering parsed back, to look at by key.
fn render(e: &AuditEvent, seq: u64, product_version: &str) -> Value {
    serde_json::from_slice(&render_line(e, seq, product_version)).expect("one JSON object")
}

#[test]
fn a_read_is_api_activity_read_with_the_security_control_profile() {
    let v = render(&fixtures::read(), 9, "0.1.0");
    assert_eq!(v["class_uid"], 6003);
    assert_eq!(v["category_uid"], 6);
    assert_eq!(v["activity_id"], 2);
    assert_eq!(v["type_uid"], 600302);
    assert_eq!(v["time"], 1_718_810_565_123i64);
    assert_eq!(v["severity_id"], 1);
    assert_eq!(v["status_id"], 1);
    assert_eq!(v["status_code"], "200");
    assert_eq!(v["action_id"], 1);
    assert_eq!(v["disposition_id"], 1);
    assert_eq!(v["duration"], 12);
    let md = &v["metadata"];
    assert_eq!(md["version"], "1.8.0");
    assert_eq!(md["profiles"], json!(["security_control"]));
    assert_eq!(md["sequence"], 9);
    assert_eq!(md["correlation_uid"], "req-1");
    assert_eq!(md["uid"], "0190a0a0-0000-7000-8000-000000000001");
    assert_eq!(md["product"]["version"], "0.1.0");
    assert_eq!(md["log_name"], "access");
    let user = &v["actor"]["user"];
    assert_eq!(user["uid"], "u-42");
    assert_eq!(user["groups"][1]["name"], "attending");
    assert_eq!(user["org"]["name"], "Princeton-Plainsboro");
    assert_eq!(user["has_mfa"], true);
    assert_eq!(v["actor"]["session"]["uid"], "5e55");
    assert_eq!(v["actor"]["idp"]["name"], "https://idp.example.org");
    assert_eq!(
        v["src_endpoint"],
        json!({"ip": "203.0.113.7", "port": 51234})
    );
    assert_eq!(v["http_request"]["http_method"], "GET");
    assert_eq!(v["http_request"]["url"]["path"], "/fhir/Patient/pat-1");
    assert_eq!(v["http_response"], json!({"code": 200, "length": 1234}));
    assert_eq!(v["api"]["operation"], "read");
    assert_eq!(v["api"]["request"]["uid"], "req-1");
    assert_eq!(v["resources"], json!([{"type": "Patient", "uid": "pat-1"}]));
    assert_eq!(v["policy"]["name"], "care-team-read");
    assert_eq!(v["policy"]["version"], "pv-7");
    assert_eq!(v["authorizations"][0]["decision"], "allow");
    let u = &v["unmapped"];
    assert_eq!(u["patients"], json!(["pat-1"]));
    assert_eq!(u["purpose_of_use"], "TREAT");
    assert_eq!(u["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(u["enforcement_mode"], "enforce");
    assert_eq!(u["auth_method"], "bearer");
}

#[test]
fn a_search_outcome_carries_patients_and_redaction_counts() {
    let v = render(&fixtures::search_outcome(), 1, "0.1.0");
    assert_eq!(v["activity_id"], 2);
    assert_eq!(v["metadata"]["log_name"], "outcome");
    assert_eq!(v["api"]["operation"], "search-type");
    assert_eq!(v["http_request"]["url"]["query_string"], "patient=*&code=*");
    assert_eq!(v["resources"][0]["name"], "Observation");
    let u = &v["unmapped"];
    assert_eq!(u["patients"].as_array().map(Vec::len), Some(3));
    assert_eq!(u["redaction"]["records_removed"]["Observation"], 2);
    assert_eq!(u["redaction"]["values_redacted"]["substance_use"], 3);
    assert_eq!(u["access_id"], "0190a0a0-0000-7000-8000-000000000000");
}

#[test]
fn a_denial_is_blocked_and_a_failure() {
    let v = render(&fixtures::denied(), 1, "0.1.0");
    assert_eq!(v["action_id"], 2);
    assert_eq!(v["disposition_id"], 2);
    assert_eq!(v["status_id"], 2);
    assert_eq!(v["status_detail"], "forbidden");
    assert_eq!(v["severity_id"], 2);
    assert!(v.get("policy").is_none());
    assert_eq!(v["authorizations"], json!([{"decision": "deny"}]));
    assert_eq!(v["unmapped"]["policy_version"], "pv-7");
}

#[test]
fn operations_that_are_not_crud_are_other_and_named() {
    let mut e = fixtures::read();
    if let Some(r) = e.request.as_mut() {
        r.method = "POST".into();
        r.operation = Some("transaction".into());
    }
    let v = render(&e, 1, "0.1.0");
    assert_eq!(v["activity_id"], 99);
    assert_eq!(v["activity_name"], "transaction");
    assert_eq!(v["type_uid"], 600399);
    assert_eq!(v["type_name"], "API Activity: Other");
}

#[test]
fn a_method_ocsf_does_not_list_goes_to_unmapped() {
    let mut e = fixtures::read();
    if let Some(r) = e.request.as_mut() {
        r.method = "PROPFIND".into();
        r.operation = None;
    }
    let v = render(&e, 1, "0.1.0");
    assert!(v["http_request"].get("http_method").is_none());
    assert_eq!(v["unmapped"]["http_method"], "PROPFIND");
    assert_eq!(v["activity_id"], 99);
}

#[test]
fn unknown_endpoint_and_user_use_the_documented_stand_in() {
    let mut e = fixtures::read();
    e.source = None;
    e.actor = None;
    let v = render(&e, 1, "0.1.0");
    assert_eq!(v["src_endpoint"], json!({"name": UNKNOWN}));
    assert_eq!(v["actor"]["user"]["name"], UNKNOWN);
    assert_eq!(v["actor"]["user"]["type_id"], 0);
}

#[test]
fn shadow_denials_are_logged_not_applied() {
    let mut e = fixtures::read();
    if let Some(d) = e.decision.as_mut() {
        d.outcome = "shadow_deny".into();
        d.mode = "shadow".into();
    }
    let v = render(&e, 1, "0.1.0");
    assert_eq!(v["action_id"], 1);
    assert_eq!(v["disposition_id"], 17);
    assert_eq!(v["policy"]["is_applied"], false);
}

#[test]
fn authentication_and_session_events_are_3002() {
    let v = render(&fixtures::auth_failed(), 1, "0.1.0");
    assert_eq!(v["class_uid"], 3002);
    assert_eq!(v["category_uid"], 3);
    assert_eq!(v["activity_id"], 1);
    assert_eq!(v["type_uid"], 300201);
    assert_eq!(v["disposition_id"], 26);
    assert_eq!(v["user"]["name"], UNKNOWN);

    let mut s = AuditEvent::new(EventKind::Session, Outcome::Success);
    s.reason = Some("session_idle_expired:idle".into());
    s.actor = Some(fixtures::actor());
    let v = render(&s, 1, "0.1.0");
    assert_eq!(v["activity_id"], 2);
    assert_eq!(v["type_uid"], 300202);
    assert_eq!(v["user"]["uid"], "u-42");
    assert_eq!(
        v["session"]["expiration_reason"],
        "session_idle_expired:idle"
    );
    assert_eq!(v["auth_protocol_id"], 6);
    s.reason = Some("logout:user".into());
    let v = render(&s, 1, "0.1.0");
    assert!(v["session"].get("expiration_reason").is_none());
}

#[test]
fn reloads_are_application_lifecycle_updates() {
    let v = render(&fixtures::reload_failed(), 1, "0.1.0");
    assert_eq!(v["class_uid"], 6002);
    assert_eq!(v["activity_id"], 8);
    assert_eq!(v["type_uid"], 600208);
    assert_eq!(v["status_id"], 2);
    assert_eq!(v["severity_id"], 3);
    assert_eq!(v["app"]["name"], "phigate");
    assert_eq!(v["unmapped"]["details"]["policy_version"], "pv-8");
    assert!(v.get("actor").is_none());

    let mut c = AuditEvent::new(EventKind::ConfigChange, Outcome::Success);
    c.reason = Some("started".into());
    c.actor = Some(fixtures::actor());
    let v = render(&c, 1, "0.1.0");
    assert_eq!(v["activity_id"], 3);
    assert_eq!(
        v["metadata"]["profiles"],
        json!(["security_control", "host"])
    );
    assert_eq!(v["actor"]["user"]["uid"], "u-42");
}

#[test]
fn free_text_is_bounded() {
    let mut e = fixtures::denied();
    e.reason = Some(format!("a\nb{}", "x".repeat(2000)));
    let v = render(&e, 1, "0.1.0");
    let detail = v["status_detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("abx"));
    assert_eq!(detail.len(), crate::audit::event::MAX_TEXT);
}
