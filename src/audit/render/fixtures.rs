//! Events the renderers' unit tests share.

use crate::audit::event::*;
use std::collections::BTreeMap;

pub fn actor() -> Actor {
    Actor {
        user_id: "u-42".into(),
        issuer: "https://idp.example.org".into(),
        kind: "user".into(),
        name: Some("dr.house".into()),
        roles: vec!["clinician".into(), "attending".into()],
        organization: Some("Princeton-Plainsboro".into()),
        fhir_user: Some("Practitioner/prac-1".into()),
        session_hash: Some("5e55".into()),
        auth_method: "bearer".into(),
        mfa: true,
    }
}

pub fn source() -> Source {
    Source {
        ip: Some("203.0.113.7".into()),
        port: Some(51234),
        user_agent: Some("curl/8.5".into()),
        cert_subject: None,
        device_id: None,
    }
}

/// An allowed read of one patient, answered whole.
pub fn read() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Access, Outcome::Success);
    e.id = "0190a0a0-0000-7000-8000-000000000001".into();
    e.time = 1_718_810_565_123;
    e.actor = Some(actor());
    e.source = Some(source());
    e.request = Some(RequestInfo {
        request_id: "req-1".into(),
        client_request_id: Some("cli-1".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        route: Some("fhir".into()),
        method: "GET".into(),
        path: Some("/fhir/Patient/pat-1".into()),
        query: None,
        operation: Some("read".into()),
        resources: vec!["Patient/pat-1".into()],
    });
    e.patients = vec!["pat-1".into()];
    e.purpose_of_use = Some("TREAT".into());
    e.decision = Some(DecisionInfo {
        allowed: true,
        outcome: "allow".into(),
        reason: "permit".into(),
        policies: vec!["care-team-read".into()],
        policy_version: Some("pv-7".into()),
        entities_version: Some("ev-3".into()),
        mode: "enforce".into(),
    });
    e.status = Some(200);
    e.bytes = Some(1234);
    e.latency_ms = Some(12);
    e
}

/// A search's outcome: three patients disclosed, some records removed.
pub fn search_outcome() -> AuditEvent {
    let mut e = read();
    e.kind = EventKind::Outcome;
    e.access_id = Some("0190a0a0-0000-7000-8000-000000000000".into());
    e.patients = vec!["pat-1".into(), "pat-2".into(), "pat-3".into()];
    if let Some(r) = e.request.as_mut() {
        r.method = "GET".into();
        r.path = Some("/fhir/Observation".into());
        r.query = Some("patient=*&code=*".into());
        r.operation = Some("search-type".into());
        r.resources = vec!["Observation".into()];
    }
    e.redaction = Some(RedactionInfo {
        records_shown: 7,
        records_removed: BTreeMap::from([("Observation".into(), 2)]),
        values_redacted: BTreeMap::from([("substance_use".into(), 3)]),
    });
    e
}

/// A denied read.
pub fn denied() -> AuditEvent {
    let mut e = read();
    e.outcome = Outcome::Denied;
    e.reason = Some("forbidden".into());
    e.status = Some(403);
    if let Some(d) = e.decision.as_mut() {
        d.allowed = false;
        d.outcome = "deny".into();
        d.reason = "no matching permit".into();
        d.policies.clear();
    }
    e
}

/// A rejected bearer token: no actor is known.
pub fn auth_failed() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Authentication, Outcome::AuthenticationFailed);
    e.time = 1_718_810_565_123;
    e.reason = Some("expired".into());
    e.source = Some(source());
    e.request = read().request;
    e.status = Some(401);
    e
}

/// A policy reload that failed.
pub fn reload_failed() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::PolicyReload, Outcome::Failure);
    e.time = 1_718_810_565_123;
    e.reason = Some("parse_error".into());
    e.details = BTreeMap::from([("policy_version".into(), "pv-8".into())]);
    e
}
