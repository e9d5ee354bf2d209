//! The canonical audit event: phigate's own record of one thing that
//! happened, stored in the spool as compact JSON and rendered for sinks
//! (OCSF by default, ECS, CEF, FHIR AuditEvent).
//!
//! A request is recorded as an *access* event, written durably before the
//! response head leaves (who, what was asked, the decision, the patients the
//! request names), and, when the response streams from an upstream, an
//! *outcome* event when the body ends (patients actually disclosed, records
//! removed, classes redacted, status, bytes). An access event whose outcome
//! never came (a crash mid-response) is reported as "outcome unknown".
//! Events carry ids and fixed labels; free text (a break-glass
//! justification, a user agent) is bounded.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest free-text value kept (user agent, justification, ids a
/// client sent).
pub const MAX_TEXT: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A request: who asked for what, and the decision.
    Access,
    /// How a streamed response ended: what it disclosed.
    Outcome,
    /// A sign-in, rejected credential or step-up.
    Authentication,
    /// A session ended (logout, idle or absolute expiry).
    Session,
    /// Policies or entities were reloaded (or a reload failed).
    PolicyReload,
    /// The process started with a configuration, or it changed.
    ConfigChange,
    /// An administrative action (key generation, audit tooling).
    Admin,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Access => "access",
            EventKind::Outcome => "outcome",
            EventKind::Authentication => "authentication",
            EventKind::Session => "session",
            EventKind::PolicyReload => "policy_reload",
            EventKind::ConfigChange => "config_change",
            EventKind::Admin => "admin",
        }
    }
}

/// What came of a request (or other event), by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed; the response follows (access event of a streamed answer).
    Allowed,
    /// The response was delivered whole.
    Success,
    /// Policy denied it.
    Denied,
    /// No valid credential.
    AuthenticationFailed,
    /// A stronger or fresher sign-in is needed.
    StepUpRequired,
    /// The response could not be redacted and was cut.
    RedactionFailed,
    /// The upstream failed or stalled.
    UpstreamFailed,
    /// The spool could not take the record: the response was withheld.
    AuditDegraded,
    /// Hygiene, routing or a limit refused the request.
    Refused,
    /// The client went away before the response ended.
    ClientClosed,
    /// A non-request event that failed (e.g. a policy reload).
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::AuthenticationFailed => "authentication_failed",
            Outcome::StepUpRequired => "step_up_required",
            Outcome::RedactionFailed => "redaction_failed",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::AuditDegraded => "audit_degraded",
            Outcome::Refused => "refused",
            Outcome::ClientClosed => "client_closed",
            Outcome::Failure => "failure",
        }
    }

    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Allowed | Outcome::Success)
    }
}

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: String,
    pub issuer: String,
    /// `user` or `service`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// SMART `fhirUser` (e.g. `Practitioner/123`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// SHA-256 of the session id, truncated (never the session id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_hash: Option<String>,
    /// `bearer`, `browser`, `api_key`, `mtls`.
    pub auth_method: String,
    pub mfa: bool,
}

/// Where the request came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The client address from the trusted forwarding chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_subject: Option<String>,
    /// The client certificate's SHA-256 fingerprint, when mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// What was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    /// phigate's request id.
    pub request_id: String,
    /// The id the client sent, if it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// W3C trace id from `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub method: String,
    /// The normalized path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The query: parameter names with values withheld, unless the config
    /// records it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The FHIR interaction or mapped action (`read`, `search`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Resources asked for, `Type/id` or `Type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

/// The authorization decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionInfo {
    pub allowed: bool,
    /// `allow`, `deny`, `shadow_deny`, `step_up`, …
    pub outcome: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities_version: Option<String>,
    /// `enforce` or `shadow`.
    pub mode: String,
}

/// What the response phase left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedactionInfo {
    pub records_shown: u32,
    /// Records removed, by resource type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub records_removed: BTreeMap<String, u32>,
    /// Values removed or masked, by data class.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values_redacted: BTreeMap<String, u32>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// UUIDv7.
    pub id: String,
    /// Unix milliseconds.
    pub time: i64,
    pub kind: EventKind,
    pub outcome: Outcome,
    /// A fixed label saying why (`unauthenticated`, `forbidden`, a reload
    /// error's kind, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// On an outcome event: the access event it completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_id: Option<String>,
    /// On an access event: an outcome event follows when the body ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outcome_follows: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo>,
    /// Access: the patients the request names. Outcome: every patient whose
    /// record was disclosed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    /// Whose records left is not known (a route without a response phase
    /// answering a search that names no patient, or an access whose
    /// response never ended): the accounting of disclosures lists it for
    /// every patient.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub patients_undetermined: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<RedactionInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Body bytes sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Non-request events: what changed (a policy version, a config file's
    /// hash), as fixed labels and ids.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    /// A new event of `kind`, stamped now with a fresh UUIDv7.
    pub fn new(kind: EventKind, outcome: Outcome) -> AuditEvent {
        let now = jiff::Timestamp::now();
        AuditEvent {
            id: uuid::Uuid::now_v7().to_string(),
            time: now.as_millisecond(),
            kind,
            outcome,
            reason: None,
            access_id: None,
            outcome_follows: false,
            actor: None,
            source: None,
            request: None,
            patients: Vec::new(),
            patients_undetermined: false,
            purpose_of_use: None,
            break_glass: false,
            justification: None,
            decision: None,
            redaction: None,
            status: None,
            bytes: None,
            latency_ms: None,
            details: BTreeMap::new(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(b: &[u8]) -> Result<AuditEvent, serde_json::Error> {
        serde_json::from_slice(b)
    }

    /// The request id, when the event is about a request.
    pub fn request_id(&self) -> Option<&str> {
        self.request.as_ref().map(|r| r.request_id.as_str())
    }
}

/// Cuts free text to [`MAX_TEXT`] bytes on a character boundary and drops
/// control characters (a log line stays one line).
pub fn bounded(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT));
    for c in s.chars() {
        if out.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// A query with every value withheld: `patient=*&code=*` (parameter
/// names tell what kind of search it was; values can be PHI).
pub fn query_names(query: &str) -> String {
    let mut out = String::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('&');
        }
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        out.push_str(&bounded(name));
        if pair.contains('=') {
            out.push_str("=*");
        }
        if out.len() > MAX_TEXT {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_its_json() {
        let mut e = AuditEvent::new(EventKind::Access, Outcome::Allowed);
        e.patients = vec!["pat-1".into()];
        e.request = Some(RequestInfo {
            request_id: "r1".into(),
            method: "GET".into(),
            ..Default::default()
        });
        let back = AuditEvent::from_json(&e.to_json()).unwrap();
        assert_eq!(back, e);
        assert_eq!(uuid::Uuid::parse_str(&e.id).unwrap().get_version_num(), 7);
    }

    #[test]
    fn query_values_are_withheld() {
        assert_eq!(
            query_names("name=Smith&birthdate=1970&_count=5&flag"),
            "name=*&birthdate=*&_count=*&flag"
        );
        assert_eq!(query_names(""), "");
    }

    #[test]
    fn free_text_is_bounded_and_one_line() {
        assert_eq!(bounded("a\nb\u{7}c"), "abc");
        assert_eq!(bounded(&"é".repeat(400)).len(), 512);
    }
}
