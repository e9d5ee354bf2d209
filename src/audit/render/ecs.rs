//! Elastic Common Schema (ECS 8) JSON, nested objects (no dotted keys).
//!
//! ECS fields where ECS has them (`@timestamp`, `event.*`, `user.*`,
//! `source.*`, `http.*`, `url.*`, `trace.id`, `rule.*`, `tls.client.*`);
//! everything phigate-specific (patients, purpose of use, break-glass, the
//! decision, redaction counts, request ids) under `phigate`. Categories and
//! types pair as ECS expects: requests are `web`/`access` (plus `error`
//! when phigate or the upstream failed), sign-ins `authentication`/`start`,
//! session ends `authentication`+`session`/`end`, reloads, configuration
//! and admin actions `configuration`/`change`. `event.duration` is in
//! nanoseconds, as ECS defines it.

use super::{counts, details, iso_millis, Severity, PRODUCT};
use crate::audit::event::{bounded, AuditEvent, EventKind, Outcome};
use serde_json::{json, Map, Value};

/// The ECS version the field set follows.
pub const ECS_VERSION: &str = "8.17.0";

/// The event as an ECS document.
pub fn render(e: &AuditEvent, seq: u64, product_version: &str) -> Value {
    let (category, kind_type): (&[&str], &str) = match e.kind {
        EventKind::Access | EventKind::Outcome => (&["web"], "access"),
        EventKind::Authentication => (&["authentication"], "start"),
        EventKind::Session => (&["authentication", "session"], "end"),
        EventKind::PolicyReload | EventKind::ConfigChange | EventKind::Admin => {
            (&["configuration"], "change")
        }
    };
    let mut types = vec![kind_type];
    if matches!(
        e.outcome,
        Outcome::RedactionFailed | Outcome::UpstreamFailed | Outcome::AuditDegraded
    ) {
        types.push("error");
    }
    let mut event = json!({
        "id": bounded(&e.id),
        "kind": "event",
        "category": category,
        "type": types,
        "action": e.kind.as_str(),
        "outcome": if e.outcome.is_failure() { "failure" } else { "success" },
        "sequence": seq,
        "severity": Severity::of(e).ocsf().0,
        "dataset": "phigate.audit",
        "module": PRODUCT,
    });
    if let Some(r) = &e.reason {
        event["reason"] = bounded(r).into();
    }
    if let Some(ms) = e.latency_ms {
        event["duration"] = ms.saturating_mul(1_000_000).into();
    }

    let mut doc = Map::new();
    doc.insert("@timestamp".into(), iso_millis(e.time).into());
    doc.insert("ecs".into(), json!({"version": ECS_VERSION}));
    doc.insert(
        "message".into(),
        format!("{} {}", e.kind.as_str(), e.outcome.as_str()).into(),
    );
    doc.insert("event".into(), event);
    doc.insert(
        "service".into(),
        json!({"name": PRODUCT, "version": bounded(product_version)}),
    );
    let mut related = Map::new();

    if let Some(a) = &e.actor {
        let mut user = json!({"id": bounded(&a.user_id)});
        if let Some(n) = &a.name {
            user["name"] = bounded(n).into();
        }
        if !a.roles.is_empty() {
            let roles: Vec<String> = a.roles.iter().map(|r| bounded(r)).collect();
            user["roles"] = roles.into();
        }
        doc.insert("user".into(), user);
        related.insert("user".into(), json!([bounded(&a.user_id)]));
        if let Some(o) = &a.organization {
            doc.insert("organization".into(), json!({"name": bounded(o)}));
        }
    }
    if let Some(s) = &e.source {
        let mut source = Map::new();
        if let Some(ip) = &s.ip {
            source.insert("ip".into(), bounded(ip).into());
            related.insert("ip".into(), json!([bounded(ip)]));
        }
        if let Some(p) = s.port {
            source.insert("port".into(), p.into());
        }
        if !source.is_empty() {
            doc.insert("source".into(), source.into());
        }
        if let Some(ua) = &s.user_agent {
            doc.insert("user_agent".into(), json!({"original": bounded(ua)}));
        }
        let mut client = Map::new();
        if let Some(dn) = &s.cert_subject {
            client.insert(
                "x509".into(),
                json!({"subject": {"distinguished_name": bounded(dn)}}),
            );
        }
        if let Some(fp) = &s.device_id {
            client.insert("hash".into(), json!({"sha256": bounded(fp)}));
        }
        if !client.is_empty() {
            doc.insert("tls".into(), json!({ "client": client }));
        }
    }
    let mut http = Map::new();
    if let Some(r) = &e.request {
        let mut request = json!({"id": bounded(&r.request_id)});
        if !r.method.is_empty() {
            request["method"] = bounded(&r.method).into();
        }
        http.insert("request".into(), request);
        let mut url = Map::new();
        if let Some(p) = &r.path {
            url.insert("path".into(), bounded(p).into());
        }
        if let Some(q) = &r.query {
            url.insert("query".into(), bounded(q).into());
        }
        if !url.is_empty() {
            doc.insert("url".into(), url.into());
        }
        if let Some(t) = &r.trace_id {
            doc.insert("trace".into(), json!({"id": bounded(t)}));
        }
    }
    if let Some(status) = e.status {
        let mut resp = json!({"status_code": status});
        if let Some(b) = e.bytes {
            resp["body"] = json!({"bytes": b});
        }
        http.insert("response".into(), resp);
    }
    if !http.is_empty() {
        doc.insert("http".into(), http.into());
    }
    if let Some(d) = e.decision.as_ref().filter(|d| !d.policies.is_empty()) {
        let names: Vec<String> = d.policies.iter().map(|p| bounded(p)).collect();
        let mut rule = json!({"name": names.join(",")});
        if let Some(v) = &d.policy_version {
            rule["version"] = bounded(v).into();
        }
        doc.insert("rule".into(), rule);
    }
    if !related.is_empty() {
        doc.insert("related".into(), related.into());
    }
    doc.insert("phigate".into(), phigate(e).into());
    doc.into()
}

/// What ECS has no field for.
fn phigate(e: &AuditEvent) -> Map<String, Value> {
    let mut p = Map::new();
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v.map(|v| bounded(v)).filter(|v| !v.is_empty()) {
            p.insert(k.into(), v.into());
        }
    };
    put("access_id", e.access_id.as_ref());
    put("purpose_of_use", e.purpose_of_use.as_ref());
    put("justification", e.justification.as_ref());
    if let Some(r) = &e.request {
        put("request_id", Some(&r.request_id));
        put("client_request_id", r.client_request_id.as_ref());
        put("route", r.route.as_ref());
        put("operation", r.operation.as_ref());
    }
    p.insert("kind".into(), e.kind.as_str().into());
    p.insert("outcome".into(), e.outcome.as_str().into());
    p.insert("break_glass".into(), e.break_glass.into());
    if e.outcome_follows {
        p.insert("outcome_follows".into(), true.into());
    }
    if e.patients_undetermined {
        p.insert("patients_undetermined".into(), true.into());
    }
    let list = |v: &[String]| -> Value { v.iter().map(|s| bounded(s)).collect::<Vec<_>>().into() };
    if !e.patients.is_empty() {
        p.insert("patients".into(), list(&e.patients));
    }
    if let Some(r) = e.request.as_ref().filter(|r| !r.resources.is_empty()) {
        p.insert("resources".into(), list(&r.resources));
    }
    if let Some(a) = &e.actor {
        let mut actor = json!({
            "issuer": bounded(&a.issuer),
            "kind": bounded(&a.kind),
            "auth_method": bounded(&a.auth_method),
            "mfa": a.mfa,
        });
        if let Some(s) = &a.session_hash {
            actor["session_hash"] = bounded(s).into();
        }
        if let Some(f) = &a.fhir_user {
            actor["fhir_user"] = bounded(f).into();
        }
        p.insert("actor".into(), actor);
    }
    if let Some(d) = &e.decision {
        let mut decision = json!({
            "allowed": d.allowed,
            "outcome": bounded(&d.outcome),
            "reason": bounded(&d.reason),
            "mode": bounded(&d.mode),
        });
        if !d.policies.is_empty() {
            decision["policies"] = list(&d.policies);
        }
        if let Some(v) = &d.policy_version {
            decision["policy_version"] = bounded(v).into();
        }
        if let Some(v) = &d.entities_version {
            decision["entities_version"] = bounded(v).into();
        }
        p.insert("decision".into(), decision);
    }
    if let Some(r) = &e.redaction {
        p.insert(
            "redaction".into(),
            json!({
                "records_shown": r.records_shown,
                "records_removed": counts(&r.records_removed),
                "values_redacted": counts(&r.values_redacted),
            }),
        );
    }
    if !e.details.is_empty() {
        p.insert("details".into(), details(e).into());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::render::fixtures;

    #[test]
    fn a_read_maps_onto_ecs_fields() {
        let v = render(&fixtures::read(), 5, "0.1.0");
        assert_eq!(v["@timestamp"], "2024-06-19T15:22:45.123Z");
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"], json!(["web"]));
        assert_eq!(v["event"]["type"], json!(["access"]));
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["event"]["sequence"], 5);
        assert_eq!(v["event"]["duration"], 12_000_000);
        assert_eq!(v["user"]["id"], "u-42");
        assert_eq!(v["user"]["roles"], json!(["clinician", "attending"]));
        assert_eq!(v["organization"]["name"], "Princeton-Plainsboro");
        assert_eq!(v["source"], json!({"ip": "203.0.113.7", "port": 51234}));
        assert_eq!(v["user_agent"]["original"], "curl/8.5");
        assert_eq!(v["http"]["request"]["method"], "GET");
        assert_eq!(v["http"]["response"]["status_code"], 200);
        assert_eq!(v["http"]["response"]["body"]["bytes"], 1234);
        assert_eq!(v["url"]["path"], "/fhir/Patient/pat-1");
        assert_eq!(v["trace"]["id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["rule"]["name"], "care-team-read");
        let p = &v["phigate"];
        assert_eq!(p["patients"], json!(["pat-1"]));
        assert_eq!(p["purpose_of_use"], "TREAT");
        assert_eq!(p["break_glass"], false);
        assert_eq!(p["decision"]["outcome"], "allow");
        assert_eq!(p["request_id"], "req-1");
        assert_eq!(p["client_request_id"], "cli-1");
    }

    #[test]
    fn a_search_outcome_has_its_query_and_redaction() {
        let v = render(&fixtures::search_outcome(), 1, "0.1.0");
        assert_eq!(v["url"]["query"], "patient=*&code=*");
        assert_eq!(v["phigate"]["patients"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["phigate"]["redaction"]["records_shown"], 7);
        assert_eq!(
            v["phigate"]["access_id"],
            "0190a0a0-0000-7000-8000-000000000000"
        );
    }

    #[test]
    fn failures_and_non_request_events() {
        let v = render(&fixtures::denied(), 1, "0.1.0");
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["event"]["reason"], "forbidden");
        assert!(v.get("rule").is_none());
        let mut e = fixtures::read();
        e.outcome = Outcome::RedactionFailed;
        let v = render(&e, 1, "0.1.0");
        assert_eq!(v["event"]["type"], json!(["access", "error"]));
        let v = render(&fixtures::auth_failed(), 1, "0.1.0");
        assert_eq!(v["event"]["category"], json!(["authentication"]));
        assert!(v.get("user").is_none());
        let v = render(&fixtures::reload_failed(), 1, "0.1.0");
        assert_eq!(v["event"]["category"], json!(["configuration"]));
        assert_eq!(v["phigate"]["details"]["policy_version"], "pv-8");
    }
}
