//! Renderers: the canonical [`AuditEvent`] as a sink wants to read it.
//!
//! The spool keeps phigate's own event; a sink names a format and each
//! record is rendered on the way out, so one durable record can feed a SIEM
//! (OCSF 1.8.0 by default, ECS, CEF) and a FHIR audit repository (an R4
//! `AuditEvent` shaped on IHE BALP) without a second source of truth.
//! Rendering is pure: the same event, sequence number and version always
//! give the same bytes, one line without a trailing newline (a sink adds
//! its own framing). `seq` is the spool's sequence number, which orders
//! records but is not part of the event. Every string copied out of the
//! event goes through [`bounded`], so a line stays one line.

pub mod cef;
pub mod ecs;
pub mod fhir;
pub mod ocsf;

use super::event::{bounded, AuditEvent, Outcome, RequestInfo};
use std::fmt;
use std::str::FromStr;

/// The product and vendor name every format carries.
pub const PRODUCT: &str = "phigate";

/// A sink's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// OCSF 1.8.0 JSON.
    Ocsf,
    /// Elastic Common Schema JSON.
    Ecs,
    /// ArcSight Common Event Format.
    Cef,
    /// FHIR R4 `AuditEvent` JSON (IHE BALP).
    Fhir,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Ocsf, Format::Ecs, Format::Cef, Format::Fhir];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
            Format::Cef => "cef",
            Format::Fhir => "fhir",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is none of `ocsf`, `ecs`, `cef`, `fhir`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit format {0:?} (expected ocsf, ecs, cef or fhir)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(bounded(s)))
    }
}

/// `event` in `format`: one line, no trailing newline.
pub fn render(format: Format, event: &AuditEvent, seq: u64, product_version: &str) -> Vec<u8> {
    match format {
        Format::Ocsf => ocsf::render_line(event, seq, product_version),
        Format::Ecs => json_line(&ecs::render(event, seq, product_version)),
        Format::Cef => cef::render(event, seq, product_version).into_bytes(),
        Format::Fhir => json_line(&fhir::render(event)),
    }
}

fn json_line(v: &serde_json::Value) -> Vec<u8> {
    // A `Value` of strings, numbers and maps always serializes.
    serde_json::to_vec(v).unwrap_or_default()
}

/// How much attention an event deserves, shared by the formats that carry
/// a severity (OCSF `severity_id`, ECS `event.severity`, CEF's header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    Informational,
    Low,
    Medium,
    High,
}

impl Severity {
    pub(crate) fn of(e: &AuditEvent) -> Severity {
        match e.outcome {
            // A break-glass disclosure is lawful and still worth a look.
            Outcome::Allowed | Outcome::Success | Outcome::ClientClosed if e.break_glass => {
                Severity::Medium
            }
            Outcome::Allowed | Outcome::Success | Outcome::ClientClosed => Severity::Informational,
            Outcome::StepUpRequired => Severity::Informational,
            Outcome::Denied
            | Outcome::AuthenticationFailed
            | Outcome::Refused
            | Outcome::UpstreamFailed => Severity::Low,
            Outcome::Failure => Severity::Medium,
            // A control that could not do its work (the response was cut
            // or withheld).
            Outcome::RedactionFailed | Outcome::AuditDegraded => Severity::High,
        }
    }

    /// OCSF `severity_id` and its caption.
    pub(crate) fn ocsf(self) -> (u8, &'static str) {
        match self {
            Severity::Informational => (1, "Informational"),
            Severity::Low => (2, "Low"),
            Severity::Medium => (3, "Medium"),
            Severity::High => (4, "High"),
        }
    }

    /// CEF's 0–10 scale (0–3 low, 4–6 medium, 7–8 high).
    pub(crate) fn cef(self) -> u8 {
        match self {
            Severity::Informational => 1,
            Severity::Low => 3,
            Severity::Medium => 5,
            Severity::High => 7,
        }
    }
}

/// What a request does to data, from its FHIR interaction or, failing
/// that, its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crud {
    Create,
    Read,
    Update,
    Delete,
    Other,
}

impl Crud {
    pub(crate) fn of(req: &RequestInfo) -> Crud {
        match interaction(req) {
            Some("create") => Crud::Create,
            Some("update" | "patch") => Crud::Update,
            Some("delete") => Crud::Delete,
            Some("transaction" | "batch" | "operation") => Crud::Other,
            Some(_) => Crud::Read,
            None => match req.method.as_str() {
                "GET" | "HEAD" => Crud::Read,
                "POST" => Crud::Create,
                "PUT" | "PATCH" => Crud::Update,
                "DELETE" => Crud::Delete,
                _ => Crud::Other,
            },
        }
    }
}

/// The code from `http://hl7.org/fhir/restful-interaction` (R4) for the
/// request's operation, which is a FHIR interaction (`read`,
/// `search-type`, `conditional-update`, …) or a Cedar action (`search`,
/// `export`, …); `None` for a template's own name.
pub(crate) fn interaction(req: &RequestInfo) -> Option<&'static str> {
    Some(match req.operation.as_deref()? {
        "read" => "read",
        "vread" => "vread",
        "update" | "conditional-update" => "update",
        "patch" | "conditional-patch" | "patch-compartment" => "patch",
        "delete" | "conditional-delete" => "delete",
        "create" | "conditional-create" => "create",
        "history" => "history",
        "history-instance" => "history-instance",
        "history-type" => "history-type",
        "history-system" => "history-system",
        // `fan_out`: a search reaching past what the mapper can prove.
        "search" | "search-compartment" | "fan_out" => "search",
        "search-type" => "search-type",
        "search-system" => "search-system",
        "capabilities" | "metadata" | "smart-configuration" => "capabilities",
        "transaction" => "transaction",
        "batch" => "batch",
        "operation" | "everything" | "export" | "graphql" => "operation",
        _ => return None,
    })
}

/// `Type/id` as (`Type`, `Some(id)`); `Type` as (`Type`, `None`).
pub(crate) fn split_reference(r: &str) -> (&str, Option<&str>) {
    match r.split_once('/') {
        Some((ty, id)) if !id.is_empty() => (ty, Some(id)),
        Some((ty, _)) => (ty, None),
        None => (r, None),
    }
}

/// Unix milliseconds as an RFC 3339 instant in UTC with milliseconds
/// (`2024-06-19T15:22:45.123Z`); a time outside jiff's range (never made
/// by [`AuditEvent::new`]) is clamped to it.
pub(crate) fn iso_millis(ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    format!("{ts:.3}")
}

/// The `details` map with keys and values bounded.
pub(crate) fn details(e: &AuditEvent) -> serde_json::Map<String, serde_json::Value> {
    e.details
        .iter()
        .map(|(k, v)| (bounded(k), serde_json::Value::String(bounded(v))))
        .collect()
}

/// Whether a configuration change is the process starting with it
/// (`started`, or `start`) rather than a change while running.
pub(crate) fn is_start(e: &AuditEvent) -> bool {
    e.kind == super::event::EventKind::ConfigChange
        && matches!(e.reason.as_deref(), Some("start" | "started"))
}

/// Counts by name, names bounded.
pub(crate) fn counts(m: &std::collections::BTreeMap<String, u32>) -> serde_json::Value {
    m.iter()
        .map(|(k, v)| (bounded(k), serde_json::Value::from(*v)))
        .collect::<serde_json::Map<String, serde_json::Value>>()
        .into()
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::EventKind;

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert!("OCSF".parse::<Format>().is_err());
        assert!("json".parse::<Format>().is_err());
    }

    #[test]
    fn interactions_and_methods_map_to_crud() {
        let req = |method: &str, op: Option<&str>| RequestInfo {
            request_id: "r".into(),
            method: method.into(),
            operation: op.map(String::from),
            ..Default::default()
        };
        assert_eq!(Crud::of(&req("GET", Some("read"))), Crud::Read);
        assert_eq!(Crud::of(&req("POST", Some("search-type"))), Crud::Read);
        assert_eq!(
            Crud::of(&req("POST", Some("conditional-create"))),
            Crud::Create
        );
        assert_eq!(Crud::of(&req("PATCH", Some("patch"))), Crud::Update);
        assert_eq!(Crud::of(&req("POST", Some("transaction"))), Crud::Other);
        assert_eq!(Crud::of(&req("DELETE", Some("Archive"))), Crud::Delete);
        assert_eq!(Crud::of(&req("PROPFIND", None)), Crud::Other);
    }

    #[test]
    fn severity_follows_the_outcome() {
        let mut e = AuditEvent::new(EventKind::Access, Outcome::Success);
        assert_eq!(Severity::of(&e), Severity::Informational);
        e.break_glass = true;
        assert_eq!(Severity::of(&e), Severity::Medium);
        e.outcome = Outcome::RedactionFailed;
        assert_eq!(Severity::of(&e), Severity::High);
    }

    #[test]
    fn instants_have_milliseconds_and_are_clamped() {
        assert_eq!(iso_millis(1_718_810_565_000), "2024-06-19T15:22:45.000Z");
        assert_eq!(iso_millis(1_718_810_565_123), "2024-06-19T15:22:45.123Z");
        assert!(iso_millis(i64::MAX).starts_with("9999-"));
    }

    #[test]
    fn references_split_on_the_first_slash() {
        assert_eq!(split_reference("Patient/p1"), ("Patient", Some("p1")));
        assert_eq!(split_reference("Observation"), ("Observation", None));
        assert_eq!(split_reference("Observation/"), ("Observation", None));
    }
}
