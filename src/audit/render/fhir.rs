//! FHIR R4 `AuditEvent` JSON, shaped on IHE Basic Audit Log Patterns.
//!
//! Requests are `audit-event-type#rest` with the FHIR interaction as
//! subtype and BALP's action (R read, E search and operations, C/U/D);
//! agents are the user (requestor, `who.identifier` = issuer + user id,
//! `who.reference` = the SMART `fhirUser`, roles, network address and the
//! determining policies when allowed) and phigate as the server; entities
//! are each patient (`Patient/<id>`, role 1 Patient), the data
//! (`Type/id`, role 4) or the query (base64 of the redacted query, role 24),
//! and the request id (BALP's `XrequestId`) carrying the decision and
//! redaction counts as details. Other events use DICOM types: 110114 User
//! Authentication (Login/Logout), 110113 Security Alert (Security or
//! Software Configuration, Use of Restricted Function), 110100 Application
//! Activity (Application Start). Outcome is 0 success, 4 for a refusal
//! (denied, unauthenticated, step-up, refused, client gone) and 8 when
//! phigate or the upstream failed.

use super::{interaction, is_start, iso_millis, split_reference, Crud, PRODUCT};
use crate::audit::event::{bounded, AuditEvent, EventKind, Outcome};
use base64::Engine;
use serde_json::{json, Map, Value};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const BALP_ENTITY: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// The event as an R4 `AuditEvent` resource.
pub fn render(e: &AuditEvent) -> Value {
    let req = e.request.as_ref();
    let (ty, subtype) = kind_codes(e);
    let action = action(e);
    let outcome = match e.outcome {
        Outcome::Allowed | Outcome::Success => "0",
        Outcome::Denied
        | Outcome::AuthenticationFailed
        | Outcome::StepUpRequired
        | Outcome::Refused
        | Outcome::ClientClosed => "4",
        Outcome::RedactionFailed
        | Outcome::UpstreamFailed
        | Outcome::AuditDegraded
        | Outcome::Failure => "8",
    };
    let desc = match &e.reason {
        Some(r) => format!("{}: {}", e.outcome.as_str(), bounded(r)),
        None => e.outcome.as_str().to_string(),
    };
    let mut a = Map::new();
    a.insert("resourceType".into(), "AuditEvent".into());
    a.insert("id".into(), fhir_id(&e.id).into());
    a.insert("type".into(), ty);
    if let Some(s) = subtype {
        a.insert("subtype".into(), json!([s]));
    }
    a.insert("action".into(), action.into());
    a.insert("recorded".into(), iso_millis(e.time).into());
    a.insert("outcome".into(), outcome.into());
    a.insert("outcomeDesc".into(), desc.into());
    let purposes = purposes(e);
    if !purposes.is_empty() {
        a.insert("purposeOfEvent".into(), purposes.into());
    }
    a.insert("agent".into(), agents(e, action).into());
    a.insert(
        "source".into(),
        json!({
            "observer": {"display": PRODUCT},
            "type": [coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "6",
                "Security Server",
            )],
        }),
    );
    let mut entities: Vec<Value> = e
        .patients
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| patient(p))
        .collect();
    if let Some(r) = req {
        let mut has_reference = false;
        let mut types = Vec::new();
        for res in &r.resources {
            match split_reference(res) {
                (ty, Some(id)) => {
                    has_reference = true;
                    entities.push(json!({
                        "what": {"reference": format!("{}/{}", bounded(ty), bounded(id))},
                        "type": coding(ENTITY_TYPE, "2", "System Object"),
                        "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
                    }));
                }
                (ty, None) => types.push(bounded(ty)),
            }
        }
        let asked = match (&r.path, &r.query) {
            (Some(p), Some(q)) => Some(format!("{}?{}", bounded(p), bounded(q))),
            (Some(p), None) if action == "E" => Some(bounded(p)),
            (None, Some(q)) => Some(bounded(q)),
            _ => None,
        };
        if let Some(q) = asked.filter(|_| !has_reference) {
            let mut query = json!({
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "24", "Query"),
                "query": base64::engine::general_purpose::STANDARD.encode(q),
            });
            if !types.is_empty() {
                query["description"] = types.join(",").into();
            }
            entities.push(query);
        } else if !has_reference {
            for ty in types {
                entities.push(json!({
                    "type": coding(ENTITY_TYPE, "2", "System Object"),
                    "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
                    "name": ty,
                }));
            }
        }
        let mut transaction = json!({
            "type": coding(BALP_ENTITY, "XrequestId", "X-Request-Id"),
        });
        let id = bounded(&r.request_id);
        if !id.trim().is_empty() {
            transaction["what"] = json!({"identifier": {"value": id}});
        }
        let details = request_details(e);
        if !details.is_empty() {
            transaction["detail"] = details.into();
        }
        entities.push(transaction);
    } else {
        let details: Vec<Value> = e
            .details
            .iter()
            .map(|(k, v)| (bounded(k), bounded(v)))
            .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
            .map(|(k, v)| json!({"type": k, "valueString": v}))
            .collect();
        if !details.is_empty() {
            entities.push(json!({
                "type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "13", "Security Resource"),
                "name": PRODUCT,
                "detail": details,
            }));
        }
    }
    if !entities.is_empty() {
        a.insert("entity".into(), entities.into());
    }
    a.into()
}

/// `type` and `subtype` by kind.
fn kind_codes(e: &AuditEvent) -> (Value, Option<Value>) {
    let alert = || coding(DCM, "110113", "Security Alert");
    match e.kind {
        EventKind::Access | EventKind::Outcome => (
            coding(
                "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "rest",
                "Restful Operation",
            ),
            e.request
                .as_ref()
                .and_then(interaction)
                .map(|code| coding("http://hl7.org/fhir/restful-interaction", code, code)),
        ),
        EventKind::Authentication => (
            coding(DCM, "110114", "User Authentication"),
            Some(coding(DCM, "110122", "Login")),
        ),
        EventKind::Session => (
            coding(DCM, "110114", "User Authentication"),
            Some(coding(DCM, "110123", "Logout")),
        ),
        EventKind::PolicyReload => (
            alert(),
            Some(coding(DCM, "110129", "Security Configuration")),
        ),
        EventKind::ConfigChange if is_start(e) => (
            coding(DCM, "110100", "Application Activity"),
            Some(coding(DCM, "110120", "Application Start")),
        ),
        EventKind::ConfigChange => (
            alert(),
            Some(coding(DCM, "110131", "Software Configuration")),
        ),
        EventKind::Admin => (
            alert(),
            Some(coding(DCM, "110132", "Use of Restricted Function")),
        ),
    }
}

/// BALP's action: a search or operation is Execute, a read Read.
fn action(e: &AuditEvent) -> &'static str {
    let Some(r) = e
        .request
        .as_ref()
        .filter(|_| matches!(e.kind, EventKind::Access | EventKind::Outcome))
    else {
        return "E";
    };
    match interaction(r) {
        Some("read" | "vread" | "history-instance" | "capabilities") => "R",
        Some(i) if i.starts_with("search") || i.starts_with("history") => "E",
        _ => match Crud::of(r) {
            Crud::Create => "C",
            Crud::Read => "R",
            Crud::Update => "U",
            Crud::Delete => "D",
            Crud::Other => "E",
        },
    }
}

fn purposes(e: &AuditEvent) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(p) = e.purpose_of_use.as_deref().and_then(text) {
        let (system, code) = p.split_once('|').unwrap_or((ACT_REASON, &p));
        out.push(json!({"coding": [{"system": system, "code": code}]}));
    }
    if e.break_glass {
        let mut btg = json!({"coding": [coding(ACT_REASON, "BTG", "break the glass")]});
        if let Some(j) = e.justification.as_deref().and_then(text) {
            btg["text"] = j.into();
        }
        out.push(btg);
    }
    out
}

fn agents(e: &AuditEvent, action: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let network = e
        .source
        .as_ref()
        .and_then(|s| s.ip.as_deref())
        .map(|ip| json!({"address": bounded(ip), "type": "2"}));
    if let Some(a) = &e.actor {
        let mut who = json!({"identifier": {"value": bounded(&a.user_id)}});
        if let Some(issuer) = text(&a.issuer) {
            who["identifier"]["system"] = issuer.into();
        }
        if let Some(f) = a.fhir_user.as_deref().and_then(text) {
            who["reference"] = f.into();
        }
        let mut user = json!({"who": who, "requestor": true});
        let rest = matches!(e.kind, EventKind::Access | EventKind::Outcome);
        match action {
            "R" | "E" if rest => {
                user["type"] =
                    json!({"coding": [coding(PARTICIPATION, "IRCP", "information recipient")]})
            }
            "C" | "U" => {
                user["type"] =
                    json!({"coding": [coding(PARTICIPATION, "AUT", "author (originator)")]})
            }
            _ => {}
        }
        if let Some(n) = a.name.as_deref().and_then(text) {
            user["name"] = n.into();
        }
        let roles: Vec<Value> = a
            .roles
            .iter()
            .map(|r| bounded(r))
            .filter(|r| !r.trim().is_empty())
            .map(|r| json!({ "text": r }))
            .collect();
        if !roles.is_empty() {
            user["role"] = roles.into();
        }
        if let Some(d) = e
            .decision
            .as_ref()
            .filter(|d| d.allowed && !d.policies.is_empty())
        {
            let ids: Vec<String> = d.policies.iter().map(|p| uri_safe(p)).collect();
            user["policy"] = ids.into();
        }
        if let Some(n) = &network {
            user["network"] = n.clone();
        }
        out.push(user);
    } else if let Some(n) = network {
        // Nobody authenticated: the client is the requestor, by address.
        out.push(json!({
            "type": {"coding": [coding(DCM, "110153", "Source Role ID")]},
            "requestor": true,
            "network": n,
        }));
    }
    let (code, display) = if e.request.is_some() {
        ("110152", "Destination Role ID")
    } else {
        ("110150", "Application")
    };
    out.push(json!({
        "type": {"coding": [coding(DCM, code, display)]},
        "who": {"display": PRODUCT},
        "requestor": false,
    }));
    out
}

fn patient(id: &str) -> Value {
    json!({
        "what": {"reference": format!("Patient/{}", bounded(id))},
        "type": coding(ENTITY_TYPE, "1", "Person"),
        "role": coding(OBJECT_ROLE, "1", "Patient"),
    })
}

/// The decision, redaction and request facts BALP has no element for,
/// as `entity.detail` on the transaction entity.
fn request_details(e: &AuditEvent) -> Vec<Value> {
    let mut out = Vec::new();
    let mut put = |k: &str, v: &str| {
        let v = bounded(v);
        // FHIR strings are never empty.
        if !v.trim().is_empty() {
            out.push(json!({"type": k, "valueString": v}));
        }
    };
    if let Some(a) = &e.access_id {
        put("access_id", a);
    }
    if let Some(r) = &e.request {
        for (k, v) in [
            ("client_request_id", &r.client_request_id),
            ("trace_id", &r.trace_id),
            ("route", &r.route),
            ("operation", &r.operation),
        ] {
            if let Some(v) = v {
                put(k, v);
            }
        }
    }
    if let Some(d) = &e.decision {
        put("decision", &d.outcome);
        put("decision_reason", &d.reason);
        put("enforcement_mode", &d.mode);
        if !d.policies.is_empty() {
            put("policies", &d.policies.join(","));
        }
        if let Some(v) = &d.policy_version {
            put("policy_version", v);
        }
        if let Some(v) = &d.entities_version {
            put("entities_version", v);
        }
    }
    if let Some(r) = &e.redaction {
        put("records_shown", &r.records_shown.to_string());
        for (ty, n) in &r.records_removed {
            put(&format!("records_removed.{}", bounded(ty)), &n.to_string());
        }
        for (class, n) in &r.values_redacted {
            put(
                &format!("values_redacted.{}", bounded(class)),
                &n.to_string(),
            );
        }
    }
    if let Some(s) = e.status {
        put("http_status", &s.to_string());
    }
    out
}

/// A FHIR `id`: `[A-Za-z0-9-.]{1,64}` (a UUID already is).
fn fhir_id(s: &str) -> String {
    let id: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect();
    if id.is_empty() {
        "unknown".into()
    } else {
        id
    }
}

/// Free text as a FHIR `string`, which is never blank.
fn text(s: &str) -> Option<String> {
    Some(bounded(s)).filter(|t| !t.trim().is_empty())
}

/// A FHIR `uri` has no whitespace.
fn uri_safe(s: &str) -> String {
    bounded(s).replace(char::is_whitespace, "_")
}

#[cfg(test)]
#[path = "fhir_tests.rs"]
mod tests;
