//! OCSF 1.8.0 JSON.
//!
//! The classes, chosen because the 1.8.0 schema validates them (every
//! object there has `additionalProperties: false`; the integration test
//! `tests/audit_schemas.rs` checks each rendering against it):
//!
//! * access and outcome events, and admin actions: **6003 API Activity**
//!   with the `security_control` profile (action, disposition, policy,
//!   authorizations). Activity is Create/Read/Update/Delete from the FHIR
//!   interaction or the method, else 99 Other named by the operation.
//! * authentication events: **3002 Authentication**, activity Logon (a
//!   step-up is a failed logon with disposition Challenge); session events:
//!   3002 Logoff, `session.expiration_reason` saying why unless the user
//!   logged out.
//! * policy reloads and configuration changes: **6002 Application
//!   Lifecycle** (`app` is phigate), activity Update, or Start for a
//!   configuration change whose reason is `start`. 6002 has no `actor`
//!   unless the `host` profile is declared, so an event with an actor
//!   declares it.
//!
//! Required fields phigate may not know are filled with a documented
//! stand-in: 6003 requires `src_endpoint` (one of ip, name, …) and
//! `actor`; 3002 requires `user`. A missing client address is
//! `{"name": "unknown"}`, a missing user `{"name": "unknown", "type_id":
//! 0}`. Whatever OCSF has no field for (patients, purpose of use,
//! break-glass, redaction counts, the decision's reason and mode, request
//! ids, route, mTLS identity, auth method) is under `unmapped`.

use super::{counts, details, split_reference, Crud, Severity, PRODUCT};
use crate::audit::event::{bounded, Actor, AuditEvent, EventKind, Outcome, RequestInfo};
use serde_json::{json, Map, Value};

/// The OCSF schema version rendered.
pub const VERSION: &str = "1.8.0";
/// The stand-in for a required name phigate does not know.
pub const UNKNOWN: &str = "unknown";

const HTTP_METHODS: [&str; 9] = [
    "OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT", "PATCH",
];

struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
}

const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};
const AUTHENTICATION: Class = Class {
    uid: 3002,
    name: "Authentication",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const APPLICATION_LIFECYCLE: Class = Class {
    uid: 6002,
    name: "Application Lifecycle",
    category_uid: 6,
    category_name: "Application Activity",
};

/// The event as an OCSF object.
pub fn render(e: &AuditEvent, seq: u64, product_version: &str) -> Value {
    let m = match e.kind {
        EventKind::Access | EventKind::Outcome | EventKind::Admin => {
            api_activity(e, seq, product_version)
        }
        EventKind::Authentication | EventKind::Session => authentication(e, seq, product_version),
        EventKind::PolicyReload | EventKind::ConfigChange => {
            lifecycle(e, seq, product_version)
        }
    };
    Value::Object(m)
}

fn api_activity(e: &AuditEvent, seq: u64, version: &str) -> Map<String, Value> {
    let req = e.request.as_ref();
    let operation = match req {
        Some(r) => bounded(r.operation.as_deref().unwrap_or(&r.method)),
        None => admin_action(e),
    };
    let (id, caption) = match req.map(Crud::of) {
        Some(Crud::Create) => (1, "Create"),
        Some(Crud::Read) => (2, "Read"),
        Some(Crud::Update) => (3, "Update"),
        Some(Crud::Delete) => (4, "Delete"),
        Some(Crud::Other) | None => (99, "Other"),
    };
    let name = if id == 99 { operation.clone() } else { caption.into() };
    let mut m = base(e, seq, version, &API_ACTIVITY, (id, caption, &name), &["security_control"]);
    m.insert("actor".into(), actor(e.actor.as_ref()));
    m.insert(
        "src_endpoint".into(),
        endpoint(e).unwrap_or_else(|| json!({"name": UNKNOWN})),
    );
    let mut api = json!({"operation": operation, "service": {"name": PRODUCT}});
    if let Some(r) = req {
        api["request"] = json!({"uid": bounded(&r.request_id)});
        m.insert("http_request".into(), http_request(r));
        let resources: Vec<Value> = r.resources.iter().map(|s| resource(s)).collect();
        if !resources.is_empty() {
            m.insert("resources".into(), resources.into());
        }
    }
    m.insert("api".into(), api);
    if let Some(resp) = http_response(e) {
        m.insert("http_response".into(), resp);
    }
    control(e, &mut m);
    if let Some(d) = &e.decision {
        let ids: Vec<String> = d.policies.iter().map(|p| bounded(p)).collect();
        let mut policy = Map::new();
        if !ids.is_empty() {
            policy.insert("name".into(), ids.join(",").into());
            if let Some(v) = &d.policy_version {
                policy.insert("version".into(), bounded(v).into());
            }
            policy.insert("is_applied".into(), (d.mode != "shadow").into());
            m.insert("policy".into(), policy.into());
        }
        let verdict = bounded(&d.outcome);
        let auths: Vec<Value> = if ids.is_empty() {
            vec![json!({"decision": verdict})]
        } else {
            ids.iter()
                .map(|id| {
                    let mut p = json!({"uid": id});
                    if let Some(v) = &d.policy_version {
                        p["version"] = bounded(v).into();
                    }
                    json!({"decision": verdict, "policy": p})
                })
                .collect()
        };
        m.insert("authorizations".into(), auths.into());
    }
    if let Some(ms) = e.latency_ms {
        m.insert("duration".into(), ms.into());
    }
    m
}

fn authentication(e: &AuditEvent, seq: u64, version: &str) -> Map<String, Value> {
    let activity = match e.kind {
        EventKind::Session => (2, "Logoff", "Logoff"),
        _ => (1, "Logon", "Logon"),
    };
    let mut m = base(e, seq, version, &AUTHENTICATION, activity, &["security_control"]);
    let a = e.actor.as_ref();
    m.insert("user".into(), a.map_or_else(unknown_user, user));
    if let Some(a) = a {
        m.insert("actor".into(), actor(Some(a)));
        m.insert("is_mfa".into(), a.mfa.into());
        let (id, name) = match a.auth_method.as_str() {
            "bearer" => (6, "OAUTH 2.0"),
            "browser" => (4, "OpenID"),
            "api_key" => (99, "API key"),
            "mtls" => (99, "mTLS"),
            _ => (0, "Unknown"),
        };
        m.insert("auth_protocol_id".into(), id.into());
        m.insert("auth_protocol".into(), name.into());
    }
    let mut session = a.and_then(session).unwrap_or_default();
    if e.kind == EventKind::Session {
        if let Some(r) = e.reason.as_deref().filter(|r| *r != "logout") {
            session.insert("expiration_reason".into(), bounded(r).into());
        }
    }
    if !session.is_empty() {
        m.insert("session".into(), session.into());
    }
    if let Some(src) = endpoint(e) {
        m.insert("src_endpoint".into(), src);
    }
    m.insert("service".into(), json!({"name": PRODUCT}));
    if let Some(r) = &e.request {
        m.insert("http_request".into(), http_request(r));
    }
    if let Some(resp) = http_response(e) {
        m.insert("http_response".into(), resp);
    }
    if e.kind == EventKind::Authentication {
        control(e, &mut m);
    }
    m
}

fn lifecycle(e: &AuditEvent, seq: u64, version: &str) -> Map<String, Value> {
    let start = e.kind == EventKind::ConfigChange && e.reason.as_deref() == Some("start");
    let activity = if start {
        (3, "Start", "Start")
    } else {
        (8, "Update", "Update")
    };
    let profiles: &[&str] = if e.actor.is_some() {
        &["security_control", "host"]
    } else {
        &["security_control"]
    };
    let mut m = base(e, seq, version, &APPLICATION_LIFECYCLE, activity, profiles);
    m.insert(
        "app".into(),
        json!({"name": PRODUCT, "vendor_name": PRODUCT, "version": bounded(version)}),
    );
    if e.actor.is_some() {
        m.insert("actor".into(), actor(e.actor.as_ref()));
    }
    m
}

/// The fields every class shares: classification, time, severity, status,
/// metadata and `unmapped`.
fn base(
    e: &AuditEvent,
    seq: u64,
    version: &str,
    class: &Class,
    (activity_id, caption, activity_name): (u32, &str, &str),
    profiles: &[&str],
) -> Map<String, Value> {
    let (severity_id, severity) = Severity::of(e).ocsf();
    let (status_id, status) = if e.outcome.is_failure() {
        (2, "Failure")
    } else {
        (1, "Success")
    };
    let mut metadata = json!({
        "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": bounded(version)},
        "version": VERSION,
        "uid": bounded(&e.id),
        "sequence": seq,
        "profiles": profiles,
        "log_name": e.kind.as_str(),
    });
    if let Some(id) = e.request_id() {
        metadata["correlation_uid"] = bounded(id).into();
    }
    let mut m = Map::new();
    m.insert("class_uid".into(), class.uid.into());
    m.insert("class_name".into(), class.name.into());
    m.insert("category_uid".into(), class.category_uid.into());
    m.insert("category_name".into(), class.category_name.into());
    m.insert("activity_id".into(), activity_id.into());
    m.insert("activity_name".into(), activity_name.into());
    m.insert("type_uid".into(), (class.uid * 100 + activity_id).into());
    m.insert("type_name".into(), format!("{}: {caption}", class.name).into());
    m.insert("time".into(), e.time.into());
    m.insert("severity_id".into(), severity_id.into());
    m.insert("severity".into(), severity.into());
    m.insert("status_id".into(), status_id.into());
    m.insert("status".into(), status.into());
    let detail = e.reason.as_deref().unwrap_or(e.outcome.as_str());
    m.insert("status_detail".into(), bounded(detail).into());
    if let Some(s) = e.status {
        m.insert("status_code".into(), s.to_string().into());
    }
    let message = format!("{} {}", e.kind.as_str(), e.outcome.as_str());
    m.insert("message".into(), message.into());
    m.insert("metadata".into(), metadata);
    m.insert("unmapped".into(), unmapped(e).into());
    m
}

/// OCSF's `action_id` and `disposition_id` for a control's verdict.
fn control(e: &AuditEvent, m: &mut Map<String, Value>) {
    let shadow_deny = e.decision.as_ref().is_some_and(|d| d.outcome == "shadow_deny");
    let ((action_id, action), (disposition_id, disposition)) = match e.outcome {
        Outcome::Allowed | Outcome::Success | Outcome::ClientClosed if shadow_deny => {
            ((1, "Allowed"), (17, "Logged"))
        }
        Outcome::Allowed | Outcome::Success | Outcome::ClientClosed => {
            ((1, "Allowed"), (1, "Allowed"))
        }
        Outcome::Denied | Outcome::AuditDegraded => ((2, "Denied"), (2, "Blocked")),
        Outcome::AuthenticationFailed => ((2, "Denied"), (26, "Unauthorized")),
        Outcome::StepUpRequired => ((2, "Denied"), (23, "Challenge")),
        Outcome::Refused => ((2, "Denied"), (25, "Rejected")),
        Outcome::RedactionFailed => ((2, "Denied"), (6, "Dropped")),
        Outcome::UpstreamFailed => ((1, "Allowed"), (27, "Error")),
        Outcome::Failure => ((0, "Unknown"), (27, "Error")),
    };
    m.insert("action_id".into(), action_id.into());
    m.insert("action".into(), action.into());
    m.insert("disposition_id".into(), disposition_id.into());
    m.insert("disposition".into(), disposition.into());
}

fn actor(a: Option<&Actor>) -> Value {
    let Some(a) = a else {
        return json!({"user": unknown_user()});
    };
    let mut m = Map::new();
    m.insert("user".into(), user(a));
    if let Some(s) = session(a) {
        m.insert("session".into(), s.into());
    }
    if !a.issuer.is_empty() {
        let issuer = bounded(&a.issuer);
        m.insert("idp".into(), json!({"name": issuer, "issuer": issuer}));
    }
    m.into()
}

fn user(a: &Actor) -> Value {
    let (type_id, kind) = match a.kind.as_str() {
        "user" => (1, "User".to_string()),
        "service" => (4, "Service".to_string()),
        other => (99, bounded(other)),
    };
    let mut u = json!({
        "uid": bounded(&a.user_id),
        "type_id": type_id,
        "type": kind,
        "has_mfa": a.mfa,
    });
    if let Some(n) = &a.name {
        u["name"] = bounded(n).into();
    }
    if let Some(o) = &a.organization {
        u["org"] = json!({"name": bounded(o)});
    }
    if !a.roles.is_empty() {
        let groups: Vec<Value> = a.roles.iter().map(|r| json!({"name": bounded(r)})).collect();
        u["groups"] = groups.into();
    }
    if let Some(f) = &a.fhir_user {
        u["uid_alt"] = bounded(f).into();
    }
    u
}

fn unknown_user() -> Value {
    json!({"name": UNKNOWN, "type_id": 0, "type": "Unknown"})
}

fn session(a: &Actor) -> Option<Map<String, Value>> {
    let hash = a.session_hash.as_deref()?;
    let mut s = Map::new();
    s.insert("uid".into(), bounded(hash).into());
    s.insert("is_mfa".into(), a.mfa.into());
    Some(s)
}

fn endpoint(e: &AuditEvent) -> Option<Value> {
    let s = e.source.as_ref()?;
    let ip = s.ip.as_deref()?;
    let mut v = json!({"ip": bounded(ip)});
    if let Some(p) = s.port {
        v["port"] = p.into();
    }
    Some(v)
}

fn http_request(r: &RequestInfo) -> Value {
    let mut h = json!({"uid": bounded(&r.request_id)});
    if HTTP_METHODS.contains(&r.method.as_str()) {
        h["http_method"] = r.method.as_str().into();
    }
    if let Some(p) = &r.path {
        let mut url = json!({"path": bounded(p)});
        if let Some(q) = &r.query {
            url["query"] = bounded(q).into(); // BROKEN
        }
        h["url"] = url;
    }
    h
}

fn http_response(e: &AuditEvent) -> Option<Value> {
    let mut v = json!({"code": e.status?});
    if let Some(b) = e.bytes {
        v["length"] = b.into();
    }
    Some(v)
}

fn resource(r: &str) -> Value {
    match split_reference(r) {
        (ty, Some(id)) => json!({"type": bounded(ty), "uid": bounded(id)}),
        (ty, None) => json!({"type": bounded(ty), "name": bounded(ty)}),
    }
}

/// What an admin event did, by its fixed label.
fn admin_action(e: &AuditEvent) -> String {
    let label = e.details.get("action").or(e.reason.as_ref());
    bounded(label.map_or(e.kind.as_str(), |s| s.as_str()))
}

fn unmapped(e: &AuditEvent) -> Map<String, Value> {
    let mut u = Map::new();
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            u.insert(k.into(), bounded(v).into());
        }
    };
    put("reason", e.reason.as_ref());
    put("access_id", e.access_id.as_ref());
    put("purpose_of_use", e.purpose_of_use.as_ref());
    put("justification", e.justification.as_ref());
    if let Some(r) = &e.request {
        put("client_request_id", r.client_request_id.as_ref());
        put("trace_id", r.trace_id.as_ref());
        put("route", r.route.as_ref());
        if !HTTP_METHODS.contains(&r.method.as_str()) {
            put("http_method", Some(&r.method));
        }
    }
    if let Some(s) = &e.source {
        put("cert_subject", s.cert_subject.as_ref());
        put("device_id", s.device_id.as_ref());
    }
    if let Some(a) = &e.actor {
        put("auth_method", Some(&a.auth_method));
    }
    if let Some(d) = &e.decision {
        put("decision_reason", Some(&d.reason));
        put("enforcement_mode", Some(&d.mode));
        put("entities_version", d.entities_version.as_ref());
        if d.policies.is_empty() {
            put("policy_version", d.policy_version.as_ref());
        }
    }
    u.insert("outcome".into(), e.outcome.as_str().into());
    if e.outcome_follows {
        u.insert("outcome_follows".into(), true.into());
    }
    if !e.patients.is_empty() {
        let p: Vec<Value> = e.patients.iter().map(|p| bounded(p).into()).collect();
        u.insert("patients".into(), p.into());
    }
    if e.break_glass {
        u.insert("break_glass".into(), true.into());
    }
    if let Some(r) = &e.redaction {
        u.insert(
            "redaction".into(),
            json!({
                "records_shown": r.records_shown,
                "records_removed": counts(&r.records_removed),
                "values_redacted": counts(&r.values_redacted),
            }),
        );
    }
    if !e.details.is_empty() {
        u.insert("details".into(), details(e).into());
    }
    u
}

#[cfg(test)]
#[path = "ocsf_tests.rs"]
mod tests;
