//! The audit renderers against the real schemas: a representative set of
//! events is rendered in every format to a temporary directory and checked
//! by `tests/audit/validate.py` — OCSF 1.8.0's JSON schema (with the
//! profiles each event declares), FHIR R4 `AuditEvent` (fhir.resources),
//! ECS and CEF structure. The Python comes from `tests/audit/.venv`, which
//! `scripts/setup` creates; without it the test fails, never skips.

use phigate::audit::event::*;
use phigate::audit::render::{render, Format};
use phigate::audit::trail::{auth_event, system_event};
use phigate::authn::principal::AuthMethod;
use phigate::authn::{AuthEvent, AuthEventKind};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = "0.1.0";

fn actor() -> Actor {
    Actor {
        user_id: "u-42".into(),
        issuer: "https://idp.example.org/realms/phigate".into(),
        kind: "user".into(),
        name: Some("Dr. Gregory House".into()),
        roles: vec!["clinician".into()],
        organization: Some("Princeton-Plainsboro".into()),
        fhir_user: Some("Practitioner/prac-1".into()),
        session_hash: Some("9f2c1e".into()),
        auth_method: "browser".into(),
        mfa: true,
    }
}

fn request(method: &str, path: &str, query: Option<&str>, op: &str, res: &[&str]) -> RequestInfo {
    RequestInfo {
        request_id: "0190a0a0-aaaa-7000-8000-00000000beef".into(),
        client_request_id: Some("client-7".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        route: Some("fhir".into()),
        method: method.into(),
        path: Some(path.into()),
        query: query.map(String::from),
        operation: Some(op.into()),
        resources: res.iter().map(|s| s.to_string()).collect(),
    }
}

fn decision(allowed: bool, outcome: &str, policies: &[&str]) -> DecisionInfo {
    DecisionInfo {
        allowed,
        outcome: outcome.into(),
        reason: if allowed { "permit" } else { "no permit" }.into(),
        policies: policies.iter().map(|s| s.to_string()).collect(),
        policy_version: Some("sha256:abc".into()),
        entities_version: Some("e-12".into()),
        mode: "enforce".into(),
    }
}

fn request_event(kind: EventKind, outcome: Outcome) -> AuditEvent {
    let mut e = AuditEvent::new(kind, outcome);
    e.actor = Some(actor());
    e.source = Some(Source {
        ip: Some("2001:db8::7".into()),
        port: Some(443),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        cert_subject: None,
        device_id: None,
    });
    e.request = Some(request(
        "GET",
        "/fhir/Patient/pat-1",
        None,
        "read",
        &["Patient/pat-1"],
    ));
    e.patients = vec!["pat-1".into()];
    e.purpose_of_use = Some("TREAT".into());
    e.decision = Some(decision(true, "allow", &["care-team-read"]));
    e.status = Some(200);
    e.bytes = Some(2048);
    e.latency_ms = Some(9);
    e
}

/// Each event, by name, with the OCSF class it must land in.
fn events() -> Vec<(&'static str, u32, AuditEvent)> {
    let mut out = Vec::new();
    out.push((
        "read_allowed",
        6003,
        request_event(EventKind::Access, Outcome::Success),
    ));

    let mut e = request_event(EventKind::Outcome, Outcome::Success);
    e.access_id = Some(uuid_like(1));
    e.request = Some(request(
        "GET",
        "/fhir/Observation",
        Some("patient=*&code=*&_count=*"),
        "search-type",
        &["Observation"],
    ));
    e.patients = vec!["pat-1".into(), "pat-2".into(), "pat-3".into()];
    e.redaction = Some(RedactionInfo {
        records_shown: 12,
        records_removed: BTreeMap::from([("Observation".into(), 3), ("Condition".into(), 1)]),
        values_redacted: BTreeMap::from([("substance_use".into(), 2), ("hiv".into(), 1)]),
    });
    out.push(("searchset_outcome", 6003, e));

    let mut e = request_event(EventKind::Access, Outcome::Denied);
    e.reason = Some("forbidden".into());
    e.decision = Some(decision(false, "deny", &["vip-forbid"]));
    e.status = Some(403);
    out.push(("denied", 6003, e));

    // Authentication and session events as the trail makes them.
    let auth = |kind, reason, principal: Option<&str>| {
        auth_event(&AuthEvent {
            kind,
            reason,
            request_id: "0190a0a0-aaaa-7000-8000-00000000cafe".into(),
            route: "fhir".into(),
            client_ip: "198.51.100.23".parse().ok(),
            principal: principal.map(String::from),
            issuer: principal.map(|_| "https://idp.example.org/realms/phigate".into()),
            method: principal.map(|_| AuthMethod::Session),
        })
    };
    let e = auth(AuthEventKind::TokenRejected, "bad_signature", None);
    out.push(("authentication_failed", 3002, e));
    let e = auth(AuthEventKind::StepUpRequired, "mfa", Some("u-42"));
    out.push(("step_up", 3002, e));
    let e = auth(AuthEventKind::Logout, "user", Some("u-42"));
    out.push(("logout", 3002, e));
    let e = auth(AuthEventKind::SessionIdleExpired, "idle", Some("u-42"));
    out.push(("session_idle_expired", 3002, e));

    // The request a step-up stopped.
    let mut e = request_event(EventKind::Access, Outcome::StepUpRequired);
    e.reason = Some("step_up_required".into());
    e.decision = Some(decision(false, "step_up", &[]));
    e.status = Some(401);
    out.push(("step_up_request", 6003, e));

    let mut e = request_event(EventKind::Outcome, Outcome::RedactionFailed);
    e.reason = Some("redaction_unparseable".into());
    out.push(("redaction_failed", 6003, e));

    let mut e = request_event(EventKind::Access, Outcome::AuditDegraded);
    e.reason = Some("audit_unavailable".into());
    e.status = Some(503);
    out.push(("audit_degraded", 6003, e));

    // Reloads and configuration as the server records them.
    let reload = |outcome, result, problems| {
        system_event(
            EventKind::PolicyReload,
            outcome,
            result,
            &[
                ("trigger", "file_change"),
                ("policy_version", "sha256:def"),
                ("entities_version", "e-13"),
                ("previous_version", "sha256:abc"),
                ("problems", problems),
            ],
        )
    };
    out.push((
        "policy_reload",
        6002,
        reload(Outcome::Success, "reloaded", "0"),
    ));
    let e = reload(Outcome::Failure, "rejected", "2 errors");
    out.push(("policy_reload_failed", 6002, e));
    let e = system_event(
        EventKind::ConfigChange,
        Outcome::Success,
        "started",
        &[("config_sha256", "0badc0de"), ("routes", "3")],
    );
    out.push(("config_started", 6002, e));

    // Beyond the list: break-glass, a shadow denial, an anonymous request
    // with a method OCSF does not list, a configuration change by an
    // operator, an admin action, a transaction, a fan-out search.
    let mut e = request_event(EventKind::Access, Outcome::Allowed);
    e.break_glass = true;
    e.justification = Some("ER: unresponsive patient | no consent on file".into());
    e.purpose_of_use = Some("ETREAT".into());
    e.outcome_follows = true;
    out.push(("break_glass", 6003, e));

    let mut e = request_event(EventKind::Access, Outcome::Success);
    e.decision = Some(DecisionInfo {
        mode: "shadow".into(),
        ..decision(false, "shadow_deny", &["new-rule"])
    });
    out.push(("shadow_deny", 6003, e));

    let mut e = AuditEvent::new(EventKind::Access, Outcome::Refused);
    e.reason = Some("method_not_allowed".into());
    e.request = Some(RequestInfo {
        request_id: "r-anon".into(),
        method: "PROPFIND".into(),
        path: Some("/".into()),
        ..Default::default()
    });
    e.status = Some(405);
    out.push(("anonymous_refused", 6003, e));

    let mut e = AuditEvent::new(EventKind::ConfigChange, Outcome::Success);
    e.reason = Some("reloaded".into());
    e.actor = Some(Actor {
        kind: "service".into(),
        ..actor()
    });
    e.details = BTreeMap::from([("config_sha256".into(), "0badc0de".into())]);
    out.push(("config_change_by_operator", 6002, e));

    let mut e = AuditEvent::new(EventKind::Admin, Outcome::Success);
    e.reason = Some("keygen".into());
    e.details = BTreeMap::from([("key_id".into(), "k-2026-01".into())]);
    out.push(("admin_keygen", 6003, e));

    let mut e = request_event(EventKind::Access, Outcome::UpstreamFailed);
    e.request = Some(request("POST", "/fhir", None, "transaction", &[]));
    e.patients.clear();
    e.status = Some(502);
    out.push(("transaction_upstream_failed", 6003, e));

    let mut e = request_event(EventKind::Access, Outcome::Allowed);
    e.outcome_follows = true;
    e.request = Some(request(
        "GET",
        "/fhir/Observation",
        Some("subject:Patient.name=*"),
        "fan_out",
        &["Observation"],
    ));
    e.patients.clear();
    e.status = None;
    e.bytes = None;
    out.push(("fan_out_search", 6003, e));
    out
}

fn uuid_like(n: u8) -> String {
    format!("0190a0a0-0000-7000-8000-0000000000{n:02}")
}

fn write_renderings(dir: &Path) -> usize {
    let events = events();
    for (seq, (name, _, e)) in events.iter().enumerate() {
        for format in Format::ALL {
            let line = render(format, e, seq as u64 + 1, VERSION);
            assert!(!line.contains(&b'\n'), "{name} {format} is not one line");
            let file = match format {
                Format::Cef => dir.join(format!("{name}.cef")),
                _ => dir.join(format!("{name}.{format}.json")),
            };
            std::fs::write(&file, &line).expect("write a rendering");
        }
    }
    events.len()
}

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/audit/.venv/bin/python")
}

#[test]
fn renderings_validate_against_the_real_schemas() {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it creates tests/audit/.venv with \
         ocsf-json-schema, jsonschema and fhir.resources)",
        python.display()
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let n = write_renderings(dir.path());
    // To look at them: PHIGATE_AUDIT_RENDERINGS=/some/dir cargo test --test audit_schemas
    if let Some(keep) = std::env::var_os("PHIGATE_AUDIT_RENDERINGS") {
        std::fs::create_dir_all(&keep).expect("create the renderings dir");
        write_renderings(Path::new(&keep));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/audit/validate.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("run the validator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(3),
        "the validator's Python packages are missing: run scripts/setup\n{stderr}"
    );
    assert!(
        out.status.success(),
        "renderings failed validation ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for format in ["ocsf", "fhir", "ecs", "cef"] {
        let want = format!("{format} {n} ok");
        assert!(
            stdout.lines().any(|l| l == want),
            "expected `{want}` in:\n{stdout}"
        );
    }
}

#[test]
fn each_event_lands_in_its_ocsf_class_and_balp_shape() {
    for (seq, (name, class, e)) in events().into_iter().enumerate() {
        let ocsf: Value =
            serde_json::from_slice(&render(Format::Ocsf, &e, seq as u64, VERSION)).expect("json");
        assert_eq!(ocsf["class_uid"], class, "{name}");
        assert_eq!(ocsf["metadata"]["uid"], e.id.as_str(), "{name}");
        assert_eq!(ocsf["metadata"]["sequence"], seq as u64, "{name}");
        let fhir: Value =
            serde_json::from_slice(&render(Format::Fhir, &e, 0, VERSION)).expect("json");
        assert_eq!(fhir["id"], e.id.as_str(), "{name}");
        let patients: Vec<&str> = fhir["entity"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter(|x| x["role"]["code"] == "1")
                    .filter_map(|x| x["what"]["reference"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<String> = e.patients.iter().map(|p| format!("Patient/{p}")).collect();
        assert_eq!(patients, want, "{name}: one entity per patient");
        let requestors = fhir["agent"]
            .as_array()
            .map(|a| a.iter().filter(|x| x["requestor"] == true).count());
        let want = usize::from(e.actor.is_some() || e.source.is_some());
        assert_eq!(requestors, Some(want), "{name}");
    }
}
