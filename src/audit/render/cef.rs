//! ArcSight Common Event Format:
//! `CEF:0|phigate|phigate|VERSION|signatureId|name|severity|extension`.
//!
//! The signature id is `kind:outcome` (`access:denied`), the name the same
//! in words, the severity on CEF's 0–10 scale. Header fields escape `\` and
//! `|`; extension values escape `\`, `=` and line breaks (`\n`, `\r`).
//! Extension keys come from the CEF dictionary: `rt` (Unix ms),
//! `externalId` (event id), `cat` (kind), `outcome`, `reason`, `act` (the
//! decision), `suser`/`suid`/`spriv` (user name, id, roles), `src`/`spt`,
//! `requestMethod`, `request` (path and redacted query),
//! `requestClientApplication` (user agent), `out` (bytes), and the custom
//! fields, labelled: `cs1` patients, `cs2` policies, `cs3` purposeOfUse,
//! `cs4` requestId, `cs5` redaction, `cs6` breakGlass (the justification,
//! or `true`), `flexString1` traceId, `flexString2` accessId, `cn1`
//! httpStatus, `cn2` sequence, `cn3` latencyMs. What has no key (decision
//! mode and versions, route, mTLS identity, details) is `k=v` words in
//! `msg`.

use super::{Severity, PRODUCT};
use crate::audit::event::{bounded, AuditEvent};
use std::fmt::Write;

/// The event as one CEF line.
pub fn render(e: &AuditEvent, seq: u64, product_version: &str) -> String {
    let kind = e.kind.as_str();
    let outcome = e.outcome.as_str();
    let mut line = format!(
        "CEF:0|{PRODUCT}|{PRODUCT}|{}|{}|{}|{}|",
        header(&bounded(product_version)),
        header(&format!("{kind}:{outcome}")),
        header(&format!("{kind} {outcome}").replace('_', " ")),
        Severity::of(e).cef(),
    );
    let mut ext = Ext(&mut line);
    ext.put("rt", &e.time.to_string());
    ext.put("externalId", &e.id);
    ext.put("cat", kind);
    ext.put("outcome", outcome);
    let reason = e
        .reason
        .as_deref()
        .or(e.decision.as_ref().map(|d| d.reason.as_str()));
    ext.opt("reason", reason);
    ext.opt("act", e.decision.as_ref().map(|d| d.outcome.as_str()));
    if let Some(a) = &e.actor {
        ext.put("suser", a.name.as_deref().unwrap_or(&a.user_id));
        ext.put("suid", &a.user_id);
        if !a.roles.is_empty() {
            ext.put("spriv", &a.roles.join(","));
        }
    }
    if let Some(s) = &e.source {
        ext.opt("src", s.ip.as_deref());
        ext.opt("spt", s.port.map(|p| p.to_string()).as_deref());
        ext.opt("requestClientApplication", s.user_agent.as_deref());
    }
    if let Some(r) = &e.request {
        ext.put("requestMethod", &r.method);
        if let Some(p) = &r.path {
            match &r.query {
                Some(q) => ext.put("request", &format!("{p}?{q}")),
                None => ext.put("request", p),
            }
        }
    }
    ext.opt("out", e.bytes.map(|b| b.to_string()).as_deref());
    if !e.patients.is_empty() {
        ext.custom("cs1", "patients", &e.patients.join(","));
    }
    if let Some(d) = e.decision.as_ref().filter(|d| !d.policies.is_empty()) {
        ext.custom("cs2", "policies", &d.policies.join(","));
    }
    if let Some(p) = &e.purpose_of_use {
        ext.custom("cs3", "purposeOfUse", p);
    }
    if let Some(id) = e.request_id() {
        ext.custom("cs4", "requestId", id);
    }
    if let Some(r) = &e.redaction {
        let mut s = format!("shown:{}", r.records_shown);
        for (ty, n) in &r.records_removed {
            let _ = write!(s, " removed.{ty}:{n}");
        }
        for (class, n) in &r.values_redacted {
            let _ = write!(s, " redacted.{class}:{n}");
        }
        ext.custom("cs5", "redaction", &s);
    }
    if e.break_glass {
        let why = e.justification.as_deref().unwrap_or("true");
        ext.custom("cs6", "breakGlass", why);
    }
    if let Some(t) = e.request.as_ref().and_then(|r| r.trace_id.as_deref()) {
        ext.custom("flexString1", "traceId", t);
    }
    if let Some(a) = &e.access_id {
        ext.custom("flexString2", "accessId", a);
    }
    if let Some(s) = e.status {
        ext.custom("cn1", "httpStatus", &s.to_string());
    }
    ext.custom("cn2", "sequence", &seq.to_string());
    if let Some(ms) = e.latency_ms {
        ext.custom("cn3", "latencyMs", &ms.to_string());
    }
    ext.opt("msg", msg(e).as_deref());
    line
}

/// The facts CEF has no key for, as `k=v` words (the `=` is escaped with
/// the rest of the value).
fn msg(e: &AuditEvent) -> Option<String> {
    let mut words: Vec<(String, &str)> = Vec::new();
    if let Some(d) = &e.decision {
        // Without an event reason, `reason` already carries the decision's.
        if e.reason.is_some() {
            words.push(("decision_reason".into(), &d.reason));
        }
        words.push(("mode".into(), &d.mode));
        if let Some(v) = &d.policy_version {
            words.push(("policy_version".into(), v));
        }
        if let Some(v) = &d.entities_version {
            words.push(("entities_version".into(), v));
        }
    }
    if let Some(r) = &e.request {
        if let Some(v) = &r.route {
            words.push(("route".into(), v));
        }
        if let Some(v) = &r.operation {
            words.push(("operation".into(), v));
        }
        if let Some(v) = &r.client_request_id {
            words.push(("client_request_id".into(), v));
        }
    }
    if let Some(s) = &e.source {
        if let Some(v) = &s.device_id {
            words.push(("device_id".into(), v));
        }
        if let Some(v) = &s.cert_subject {
            words.push(("cert_subject".into(), v));
        }
    }
    if let Some(a) = &e.actor {
        words.push(("auth_method".into(), &a.auth_method));
    }
    for (k, v) in &e.details {
        words.push((format!("details.{k}"), v));
    }
    if words.is_empty() {
        return None;
    }
    let mut out = String::new();
    for (k, v) in words.into_iter().filter(|(_, v)| !v.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{k}={}", bounded(v).replace(' ', "_"));
    }
    Some(out)
}

/// The extension being written: ` key=value` pairs after the header.
struct Ext<'a>(&'a mut String);

impl Ext<'_> {
    /// ` key=value`; nothing for an empty value.
    fn put(&mut self, key: &str, value: &str) {
        let value = bounded(value);
        if value.is_empty() {
            return;
        }
        if !self.0.ends_with('|') {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&value_escape(&value));
    }

    fn opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.put(key, v);
        }
    }

    fn custom(&mut self, key: &str, label: &str, value: &str) {
        if !bounded(value).is_empty() {
            self.put(&format!("{key}Label"), label);
            self.put(key, value);
        }
    }
}

/// A header field: `\` and `|` escaped; a line break (never in a bounded
/// value) becomes a space, as the header cannot carry one.
pub fn header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An extension value: `\`, `=` and line breaks escaped.
pub fn value_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::render::fixtures;

    #[test]
    fn header_fields_escape_backslash_and_pipe() {
        assert_eq!(header(r"a|b\c"), r"a\|b\\c");
        assert_eq!(header("x=y"), "x=y");
        assert_eq!(header("a\nb"), "a b");
    }

    #[test]
    fn extension_values_escape_backslash_equals_and_newlines() {
        assert_eq!(value_escape(r"a=b\c"), r"a\=b\\c");
        assert_eq!(value_escape("a|b"), "a|b");
        assert_eq!(value_escape("l1\nl2\r"), r"l1\nl2\r");
    }

    #[test]
    fn a_read_renders_header_and_dictionary_keys() {
        let line = render(&fixtures::read(), 42, "0.1.0");
        assert!(
            line.starts_with(
                "CEF:0|phigate|phigate|0.1.0|access:success|access success|1|rt=1718810565123 "
            ),
            "{line}"
        );
        for kv in [
            "externalId=0190a0a0-0000-7000-8000-000000000001",
            "outcome=success",
            "act=allow",
            "suser=dr.house",
            "suid=u-42",
            "src=203.0.113.7",
            "spt=51234",
            "requestMethod=GET",
            "request=/fhir/Patient/pat-1",
            "cs1Label=patients cs1=pat-1",
            "cs2Label=policies cs2=care-team-read",
            "cs3Label=purposeOfUse cs3=TREAT",
            "cs4Label=requestId cs4=req-1",
            "cn1Label=httpStatus cn1=200",
            "cn2Label=sequence cn2=42",
            "reason=permit",
            "msg=mode\\=enforce policy_version\\=pv-7",
        ] {
            assert!(line.contains(kv), "{kv} missing from {line}");
        }
        assert!(!line.contains('\n') && !line.ends_with(' '));
    }

    #[test]
    fn empty_values_leave_their_keys_out() {
        let mut e = fixtures::auth_failed();
        if let Some(r) = e.request.as_mut() {
            r.method = String::new();
        }
        e.purpose_of_use = Some(String::new());
        let line = render(&e, 1, "0.1.0");
        assert!(!line.contains("requestMethod="), "{line}");
        assert!(!line.contains("cs3"), "{line}");
        assert!(!line.contains("= ") && !line.ends_with('='), "{line}");
    }

    #[test]
    fn hostile_values_cannot_forge_keys_or_lines() {
        let mut e = fixtures::search_outcome();
        e.break_glass = true;
        e.justification = Some("ER | trauma\nsuid=root \\ done".into());
        if let Some(r) = e.request.as_mut() {
            r.method = "GET|x".into();
        }
        let line = render(&e, 1, "1|2");
        assert!(line.starts_with(r"CEF:0|phigate|phigate|1\|2|"), "{line}");
        assert!(
            line.contains(r"cs6=ER | traumasuid\=root \\ done"),
            "{line}"
        );
        assert!(
            line.contains("request=/fhir/Observation?patient\\=*&code\\=*"),
            "{line}"
        );
        assert!(line.contains("cs5=shown:7 removed.Observation:2 redacted.substance_use:3"));
        assert!(!line.contains('\n'));
    }
}
