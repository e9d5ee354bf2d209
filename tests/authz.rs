//! Authorization end to end: tokens from a real OpenID provider for every
//! persona, the example Cedar policies, the demo FHIR upstream and a legacy
//! echo app behind route templates; shadow mode; policy reload (file
//! watch, SIGHUP, admin endpoint) under load; an HTTP entity source going
//! down.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entities matching the test IdP's accounts (care teams ct-0001..).
fn entities_json(extra: &str) -> String {
    let now = jiff::Timestamp::now();
    let at = |secs: i64| {
        (now + jiff::SignedDuration::from_secs(secs))
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let patient = |id: &str, team: &str, flags: &str, enrolled: &str| {
        format!(
            r#"{{"uid": {{"type": "Phigate::Patient", "id": "{id}"}},
               "attrs": {{"care_teams": [{{"__entity": {{"type": "Phigate::CareTeam", "id": "{team}"}}}}],
                          "flags": [{flags}], "enrolled": [{enrolled}]}},
               "parents": [{{"type": "Phigate::CareTeam", "id": "{team}"}}]}}"#
        )
    };
    format!(
        r#"[
  {{"uid": {{"type": "Phigate::CareTeam", "id": "ct-0001"}}, "attrs": {{}}, "parents": []}},
  {},
  {},
  {},
  {},
  {{"uid": {{"type": "Phigate::Elevation", "id": "INC-1"}},
    "attrs": {{"grantee": {{"__entity": {{"type": "Phigate::User", "id": "sam"}}}},
               "patient": {{"__entity": {{"type": "Phigate::Patient", "id": "pat-0003"}}}},
               "not_before": {{"__extn": {{"fn": "datetime", "arg": "{}"}}}},
               "expires": {{"__extn": {{"fn": "datetime", "arg": "{}"}}}}}},
    "parents": []}}{extra}
]"#,
        patient("pat-0001", "ct-0001", "", r#""ccm", "rpm""#),
        patient("pat-0002", "ct-0009", r#""restricted""#, r#""ccm""#),
        patient("pat-0003", "ct-0009", "", r#""ccm""#),
        patient("pat-0007", "ct-0009", r#""vip""#, r#""ccm", "rpm""#),
        at(-3600),
        at(8 * 3600),
    )
}

/// A copy of the shipped policy directory (so a test can change it).
fn copy_policies(to: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dest = to.join("policies");
    copy_dir(&from, &dest);
    dest
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

struct Setup {
    px: Phigate,
    idp: Idp,
    _up: Upstream,
    dir: tempfile::TempDir,
    policies: PathBuf,
    device_key: String,
}

/// phigate with a FHIR route (enforced), the same FHIR route in shadow mode
/// on host `shadow.test`, and a legacy echo app behind templates.
fn setup(authz_extra: &str, admin_extra: &str) -> Setup {
    let idp = Idp::start();
    let up = Upstream::demo();
    let dir = tempfile::tempdir().unwrap();
    let policies = copy_policies(dir.path());
    let entities = dir.path().join("entities.json");
    std::fs::write(&entities, entities_json("")).unwrap();
    let (device_key, key_entry) = keygen_api_key("rpm-gateway", "device_gateway");
    let port = free_port();
    let body = format!(
        r#"{provider}
{key_entry}

[[routes]]
name = "fhir"
path_prefix = "/fhir"
upstream = "demo"
auth = {{ kind = "api", accept = ["bearer", "api_key"] }}
authorization = {{ mapping = "fhir", fhir_base_urls = ["https://ehr.test/fhir"] }}

[[routes]]
name = "fhir-shadow"
hosts = ["shadow.test"]
path_prefix = "/fhir"
upstream = "demo"
auth = {{ kind = "api", accept = ["bearer"] }}
authorization = {{ mode = "shadow", mapping = "fhir" }}

[[routes]]
name = "legacy"
path_prefix = "/__echo"
upstream = "demo"
auth = {{ kind = "api", accept = ["bearer", "api_key"] }}
authorization = {{ templates = [
  {{ path = "/__echo/patients/{{patient}}/vitals", methods = ["GET", "POST"], resource_type = "Observation" }},
  {{ path = "/__echo/patients/{{patient}}/notes/{{id}}", methods = ["GET"], resource_type = "DocumentReference" }},
] }}

[upstreams.demo]
origins = ["{origin}"]
[upstreams.demo.health_check]
path = "/healthz"

[authorization]
policies = "{policies}"
entities = "{entities}"
decision_header = true
# The safety poll, out of the way: changes must be seen through file events.
watch_interval = "1h"
{authz_extra}
"#,
        provider = idp.provider_config(""),
        origin = up.origin(),
        policies = policies.display(),
        entities = entities.display(),
    );
    let px = Phigate::start_full(&cleartext_listener(port), port, admin_extra, &body);
    Setup {
        px,
        idp,
        _up: up,
        dir,
        policies,
        device_key,
    }
}

fn request(px: &Phigate, method: &str, path: &str, headers: &str, body: &str) -> Response {
    let length = if body.is_empty() && method == "GET" {
        String::new()
    } else {
        format!(
            "Content-Type: application/fhir+json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    px.raw(
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}{length}Connection: close\r\n\r\n{body}")
            .as_bytes(),
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn decision(r: &Response) -> String {
    r.header("x-phigate-decision")
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_persona_is_decided_by_the_example_policies() {
    let s = setup("", "");
    let px = &s.px;
    let alice = bearer(&s.idp.token("alice", true, 0));
    let alice_no_mfa = bearer(&s.idp.token("alice", false, 0));
    let bob = bearer(&s.idp.token("bob", true, 0));
    let carol = bearer(&s.idp.token("carol", false, 0));
    let sam = bearer(&s.idp.token("sam", true, 0));
    let pat = bearer(&s.idp.token("pat", true, 0));

    // Care manager: her team's patient, not another team's; MFA required.
    let r = request(px, "GET", "/fhir/Patient/pat-0001", &alice, "");
    assert_eq!(r.status, 200, "{}", px.logs());
    assert_eq!(r.json()["resourceType"], "Patient");
    assert!(
        decision(&r).contains("care-team-clinical-access"),
        "{}",
        decision(&r)
    );
    let r = request(px, "GET", "/fhir/Patient/pat-0003", &alice, "");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    let outcome = r.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "forbidden");
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains(&id));
    // The denial names no patient and no policy in its body.
    assert!(
        !r.body.contains("pat-0003") && !r.body.contains("care-team"),
        "{}",
        r.body
    );
    let r = request(
        px,
        "GET",
        "/fhir/Observation?patient=pat-0001",
        &alice_no_mfa,
        "",
    );
    assert_eq!(r.status, 401, "the policies need MFA: step up");
    let www = r.header("www-authenticate").unwrap();
    assert!(www.contains("insufficient_user_authentication"), "{www}");
    // A patient named two ways, one of them not hers: denied whole.
    let r = request(
        px,
        "GET",
        "/fhir/Observation?patient=pat-0001,Patient/pat-0003",
        &alice,
        "",
    );
    assert_eq!(r.status, 403);

    // A write by id is decided on the record stored there too: her
    // patient's care plan may be updated (forwarded to the read-only demo
    // upstream, 405); another team's patient's care plan may not be
    // overwritten with a body that names her patient.
    let plan = |id: &str| {
        format!(
            r#"{{"resourceType":"CarePlan","id":"{id}","status":"active","intent":"plan","subject":{{"reference":"Patient/pat-0001"}}}}"#
        )
    };
    let r = request(
        px,
        "PUT",
        "/fhir/CarePlan/cp-0001",
        &alice,
        &plan("cp-0001"),
    );
    assert_eq!(r.status, 405, "{} {}", decision(&r), r.body);
    let r = request(
        px,
        "PUT",
        "/fhir/CarePlan/cp-0008",
        &alice,
        &plan("cp-0008"),
    );
    assert_eq!(r.status, 403, "{} {}", decision(&r), r.body);

    // Physician: notes for his patient; another team's only under break-glass.
    let r = request(
        px,
        "GET",
        "/fhir/Observation?subject=https://ehr.test/fhir/Patient/pat-0001",
        &bob,
        "",
    );
    assert!(
        decision(&r).starts_with("allow"),
        "a full URL on the configured base names the patient: {} {}",
        decision(&r),
        r.body
    );
    let r = request(
        px,
        "GET",
        "/fhir/Observation?subject=https://evil.test/fhir/Patient/pat-0001",
        &bob,
        "",
    );
    assert_eq!(r.status, 403, "a foreign base is not provably this patient");
    let r = request(px, "GET", "/fhir/Patient/pat-0002", &bob, "");
    assert_eq!(r.status, 403);
    assert!(decision(&r).contains("restricted-patients-care-team-only"));
    let glass = format!("{bob}X-Phigate-Purpose-Of-Use: ETREAT\r\nX-Phigate-Break-Glass: unresponsive in the ED\r\n");
    let r = request(px, "GET", "/fhir/Patient/pat-0002", &glass, "");
    assert_eq!(r.status, 200, "{}", decision(&r));
    assert!(decision(&r).contains("break-glass-emergency-treatment"));
    assert!(
        px.logs().contains("\"break_glass\":true"),
        "break-glass is flagged in the decision log"
    );
    // Fan-out is denied unless a policy permits it.
    let r = request(
        px,
        "GET",
        "/fhir/Patient?_has:Observation:patient:code=1234-5",
        &bob,
        "",
    );
    assert_eq!(r.status, 403);

    // Billing: claims yes, observations no.
    let r = request(px, "GET", "/fhir/Claim?patient=pat-0001", &carol, "");
    assert_eq!(r.status, 200, "{}", decision(&r));
    let r = request(px, "GET", "/fhir/Observation?patient=pat-0001", &carol, "");
    assert_eq!(r.status, 403);
    // Break-glass is an entitlement: billing declaring it does not open a
    // VIP patient's record (her ordinary permit would otherwise apply once
    // the guardrail lifted), and the refusal says why.
    let glass = format!("{carol}X-Phigate-Purpose-Of-Use: HPAYMT\r\nX-Phigate-Break-Glass: need the address for a claim\r\n");
    let r = request(px, "GET", "/fhir/Patient/pat-0007", &glass, "");
    assert_eq!(r.status, 403, "{}", decision(&r));
    assert!(
        decision(&r).contains("break-glass-is-an-entitlement"),
        "{}",
        decision(&r)
    );
    assert!(
        r.body.contains("break-glass is not permitted"),
        "{}",
        r.body
    );

    // Support: nothing without a ticket; the named patient with one.
    let r = request(px, "GET", "/fhir/Patient/pat-0003", &sam, "");
    assert_eq!(r.status, 403);
    let ticket = format!("{sam}X-Phigate-Ticket: INC-1\r\n");
    let r = request(px, "GET", "/fhir/Patient/pat-0003", &ticket, "");
    assert_eq!(r.status, 200, "{}", decision(&r));
    assert!(decision(&r).contains("support-just-in-time-elevation"));
    let r = request(px, "GET", "/fhir/Patient/pat-0001", &ticket, "");
    assert_eq!(r.status, 403, "the elevation names one patient");

    // Patient: her own record only.
    let r = request(px, "GET", "/fhir/Patient/pat-0001/$everything", &pat, "");
    assert_eq!(r.status, 200, "{}", decision(&r));
    let r = request(px, "GET", "/fhir/Patient/pat-0003", &pat, "");
    assert_eq!(r.status, 403);

    // Device gateway: creates Observations for enrolled patients. The body
    // is read for the decision and still reaches the upstream.
    let key = format!("Authorization: ApiKey {}\r\n", s.device_key);
    let reading = r#"{"resourceType":"Observation","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/pat-0001"}}"#;
    let r = request(px, "POST", "/fhir/Observation", &key, reading);
    assert!(decision(&r).starts_with("allow"), "{}", decision(&r));
    assert_eq!(r.status, 405, "forwarded to the (read-only) demo upstream");
    let other = reading.replace("pat-0001", "pat-0003");
    let r = request(px, "POST", "/fhir/Observation", &key, &other);
    assert_eq!(
        r.status, 403,
        "pat-0003 is not enrolled in remote monitoring"
    );
    let r = request(px, "GET", "/fhir/Patient/pat-0001", &key, "");
    assert_eq!(r.status, 403);

    // Each decision is counted once, under its outcome.
    let allowed =
        "phigate_authz_decisions_total{outcome=\"allow\",reason=\"permitted\",route=\"fhir\"}";
    let stepped = "phigate_authz_decisions_total{outcome=\"step_up\",reason=\"stronger_authentication\",route=\"fhir\"}";
    let count = |name: &str| metric_value(&px.metrics(), name).unwrap_or(0.0);
    let (a0, s0) = (count(allowed), count(stepped));
    assert!(a0 >= 7.0 && s0 >= 1.0, "{}", px.metrics());
    let r = request(px, "GET", "/fhir/Patient/pat-0001", &alice, "");
    assert_eq!(r.status, 200);
    assert_eq!((count(allowed), count(stepped)), (a0 + 1.0, s0));
    let r = request(px, "GET", "/fhir/Patient/pat-0001", &alice_no_mfa, "");
    assert_eq!(r.status, 401);
    assert_eq!((count(allowed), count(stepped)), (a0 + 1.0, s0 + 1.0));
    // Logs carry principals and policies, never patients, query strings or
    // what a clinician typed as a break-glass justification.
    let logs = px.logs();
    for leak in [
        "pat-0001",
        "pat-0002",
        "pat-0003",
        "pat-0007",
        "_has",
        "1234-5",
        "unresponsive in the ED",
        "need the address for a claim",
    ] {
        assert!(!logs.contains(leak), "{leak:?} in logs:\n{logs}");
    }
}

#[test]
fn legacy_templates_map_paths_and_bodies_reach_the_app() {
    let s = setup("", "");
    let px = &s.px;
    let alice = bearer(&s.idp.token("alice", true, 0));
    let bob = bearer(&s.idp.token("bob", true, 0));
    let r = request(px, "GET", "/__echo/patients/pat-0001/vitals", &alice, "");
    assert_eq!(r.status, 200, "{}", px.logs());
    assert_eq!(r.json()["path"], "/__echo/patients/pat-0001/vitals");
    // Declarations are read by phigate, never passed to the app.
    let declared = format!("{alice}X-Phigate-Purpose-Of-Use: TREAT\r\nX-Phigate-Ticket: INC-1\r\n");
    let r = request(px, "GET", "/__echo/patients/pat-0001/vitals", &declared, "");
    assert_eq!(r.status, 200);
    assert!(r.echoed("x-phigate-purpose-of-use").is_empty());
    assert!(r.echoed("x-phigate-ticket").is_empty());
    // Notes are physicians' (the template maps them to DocumentReference).
    let r = request(px, "GET", "/__echo/patients/pat-0001/notes/n1", &alice, "");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["status"], 403);
    let r = request(px, "GET", "/__echo/patients/pat-0001/notes/n1", &bob, "");
    assert_eq!(r.status, 200);
    // A path no template matches is denied, not guessed.
    let r = request(px, "GET", "/__echo/admin/export", &bob, "");
    assert_eq!(r.status, 403);
    assert!(decision(&r).contains("unmapped"), "{}", decision(&r));
}

#[test]
fn shadow_mode_forwards_denials_and_records_them() {
    let s = setup("", "");
    let px = &s.px;
    let carol = bearer(&s.idp.token("carol", false, 0));
    let shadow = |path: &str| {
        px.raw(
            format!("GET {path} HTTP/1.1\r\nHost: shadow.test\r\n{carol}Connection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let r = shadow("/fhir/Observation?patient=pat-0001");
    assert_eq!(r.status, 200, "shadow mode forwards");
    assert!(decision(&r).starts_with("shadow_deny"), "{}", decision(&r));
    let r = request(px, "GET", "/fhir/Observation?patient=pat-0001", &carol, "");
    assert_eq!(r.status, 403, "the enforcing route denies the same request");

    // A FHIR write too large to decide on: the enforcing route refuses it,
    // the shadow route decides without it and forwards it (the read-only
    // demo upstream answers 405).
    let big = format!(
        r#"{{"resourceType":"Observation","status":"final","note":[{{"text":"{}"}}],"subject":{{"reference":"Patient/pat-0001"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let post = |host: &str| {
        px.raw(
            format!(
                "POST /fhir/Observation HTTP/1.1\r\nHost: {host}\r\n{carol}Content-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
                big.len()
            )
            .as_bytes(),
        )
    };
    assert_eq!(post("localhost").status, 413);
    assert_eq!(
        post("shadow.test").status,
        405,
        "forwarded undecided-on-body"
    );
    let m = px.metrics();
    assert_eq!(
        metric_value(&m, "phigate_authz_decisions_total{outcome=\"shadow_deny\",reason=\"not_permitted\",route=\"fhir-shadow\"}"),
        Some(1.0),
        "{m}"
    );
}

/// Sends `request` on a fresh connection; the status, or 0 on a failure.
fn status_of(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(request).is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    match parse_response(&buf) {
        Some(r) => {
            let d = r
                .header("x-phigate-decision")
                .unwrap_or_default()
                .to_string();
            (r.status, d)
        }
        None => (0, String::new()),
    }
}

#[test]
fn policy_reloads_under_load_never_fail_or_wrongly_allow() {
    let token = "reload-secret-for-tests";
    std::env::set_var("PHIGATE_TEST_RELOAD_TOKEN", token);
    let s = setup("", "reload_token = \"env:PHIGATE_TEST_RELOAD_TOKEN\"");
    let px = &s.px;
    let bob = bearer(&s.idp.token("bob", true, 0));
    let carol = bearer(&s.idp.token("carol", false, 0));
    let allowed = format!("GET /fhir/Observation?patient=pat-0001 HTTP/1.1\r\nHost: localhost\r\n{bob}Connection: close\r\n\r\n");
    let denied = format!("GET /fhir/Observation?patient=pat-0001 HTTP/1.1\r\nHost: localhost\r\n{carol}Connection: close\r\n\r\n");

    // Load: two clients, one that must always be allowed (until the new
    // set forbids it), one that must never be.
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let forbidden_seen = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (req, must_allow) in [(allowed.clone(), true), (denied.clone(), false)] {
        let (stop, bad, sent, forbidden_seen) = (
            stop.clone(),
            bad.clone(),
            sent.clone(),
            forbidden_seen.clone(),
        );
        let addr = px.addr;
        workers.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let (status, d) = status_of(addr, req.as_bytes());
                sent.fetch_add(1, Ordering::Relaxed);
                let ok = if must_allow {
                    // 200 under the old set; 403 only once the new set (which
                    // forbids bob) is in force — and never back.
                    match status {
                        200 => !forbidden_seen.load(Ordering::Relaxed),
                        403 => {
                            let by_new = d.contains("suspended-clinician");
                            if by_new {
                                forbidden_seen.store(true, Ordering::Relaxed);
                            }
                            by_new
                        }
                        _ => false,
                    }
                } else {
                    status == 403
                };
                if !ok {
                    bad.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "unexpected {status} ({d}) for {}",
                        if must_allow { "bob" } else { "carol" }
                    );
                }
            }
        }));
    }
    let wait_for = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                px.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let reloads = |result: &str, trigger: &str| {
        metric_value(
            &px.metrics(),
            &format!("phigate_policy_reloads_total{{result=\"{result}\",trigger=\"{trigger}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let version = || {
        let r = http_get(px.admin, "/policies").unwrap();
        r.json()["version"].as_str().unwrap().to_string()
    };
    let v0 = version();
    std::thread::sleep(Duration::from_millis(500));

    // 1. A broken policy file: rejected by the watcher, the old set stays.
    let broken = s.policies.join("ccm/broken.cedar");
    std::fs::write(
        &broken,
        "@id(\"broken\")\npermit(principal, action, resource) when { resource.nope };\n",
    )
    .unwrap();
    wait_for("the broken set to be rejected", &|| {
        reloads("rejected", "watch") >= 1.0
    });
    assert_eq!(version(), v0);
    assert!(
        px.logs().contains("broken.cedar"),
        "the rejection names the file"
    );
    std::fs::remove_file(&broken).unwrap();

    // 2. A set whose own tests fail: rejected too.
    let test = s.policies.join("tests/zz-new.yaml");
    std::fs::write(&test, "cases:\n  - name: billing may read observations (false)\n    principal: {id: carol, roles: [billing]}\n    request: GET /Observation?patient=pat-0001\n    expect: allow\n").unwrap();
    wait_for("the failing tests to be rejected", &|| {
        reloads("rejected", "watch") >= 2.0
    });
    assert_eq!(version(), v0);
    // Each broken set was rejected once, not retried while unchanged.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reloads("rejected", "watch"), 2.0);
    std::fs::remove_file(&test).unwrap();

    // 3. The admin endpoint needs its token.
    let admin_post = |auth: &str| {
        let mut s = TcpStream::connect(px.admin).unwrap();
        s.write_all(format!("POST /policies/reload HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        parse_response(&buf).unwrap()
    };
    assert_eq!(admin_post("").status, 401);
    assert_eq!(admin_post("Authorization: Bearer wrong\r\n").status, 401);
    let r = admin_post(&format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(r.status, 200, "{}", r.body);

    // 4. A valid change applied by SIGHUP (watching is fast, so write the
    //    file and signal at once; either trigger may win).
    std::fs::write(
        s.policies.join("ccm/zz-today.cedar"),
        "@id(\"suspended-clinician\")\nforbid(principal is Phigate::User, action, resource)\nwhen { principal has npi && principal.npi == \"1000000002\" };\n",
    )
    .unwrap();
    std::fs::write(s.policies.join("tests/zz-today.yaml"), "cases:\n  - name: a suspended clinician is refused\n    principal: {id: bob, roles: [physician], care_teams: [team-01], mfa: true, npi: \"1000000002\"}\n    request: GET /Patient/pat-0001\n    expect: deny\n    determining: [suspended-clinician]\n").unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &px.pid().to_string()])
        .status();
    wait_for("the new set", &|| version() != v0);
    wait_for("the load to see the new set", &|| {
        forbidden_seen.load(Ordering::Relaxed)
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) > 50, "the load ran");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "a request failed or was wrongly allowed during a reload"
    );
    let m = px.metrics();
    assert!(
        m.contains(&format!(
            "phigate_policy_version{{version=\"{}\"}} 1",
            version()
        )),
        "{m}"
    );
    drop(s.dir);
}

/// A tiny HTTP entity source: Python's http.server over a directory.
struct FileServer {
    child: std::process::Child,
    addr: SocketAddr,
}

impl FileServer {
    fn start(dir: &Path) -> FileServer {
        let port = free_port();
        let python = require("python3");
        let mut child = std::process::Command::new(python)
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, "python http.server", &mut child);
        FileServer { child, addr }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_entity_source_that_is_down_denies() {
    let source_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(source_dir.path().join("patients")).unwrap();
    // pat-0005 and pat-0006 are known only to the source (on alice's team ct-0001).
    for id in ["pat-0005", "pat-0006"] {
        std::fs::write(
            source_dir.path().join("patients").join(id),
            format!(
                r#"[{{"uid": {{"type": "Phigate::Patient", "id": "{id}"}},
                    "attrs": {{"care_teams": [{{"__entity": {{"type": "Phigate::CareTeam", "id": "ct-0001"}}}}], "flags": [], "enrolled": ["ccm"]}},
                    "parents": [{{"type": "Phigate::CareTeam", "id": "ct-0001"}}]}}]"#
            ),
        )
        .unwrap();
    }
    // Care teams by practitioner, as a FHIR CareTeam search answers them
    // (http.server ignores the query: every practitioner gets this Bundle).
    std::fs::write(
        source_dir.path().join("CareTeam"),
        r#"{"resourceType": "Bundle", "type": "searchset", "entry": [
             {"resource": {"resourceType": "CareTeam", "id": "x", "identifier": [{"value": "ct-0009"}]}}]}"#,
    )
    .unwrap();
    let mut server = FileServer::start(source_dir.path());
    let s = setup(
        &format!(
            "[authorization.entity_source]\npatient_url = \"http://{0}/patients/{{patient}}\"\nprincipal_url = \"http://{0}/CareTeam?participant={{fhir_user}}\"\nprincipal_format = \"fhir-care-team\"\nttl = \"1h\"\nnegative_ttl = \"1h\"\ntimeout = \"1s\"\ndangerous_allow_http = true\n",
            server.addr
        ),
        "",
    );
    let px = &s.px;
    let alice = bearer(&s.idp.token("alice", true, 0));
    let bob = bearer(&s.idp.token("bob", true, 0));
    let r = request(px, "GET", "/fhir/Patient/pat-0005", &alice, "");
    assert_eq!(r.status, 200, "{} {}", decision(&r), px.logs());
    // ct-0009 comes from the source's CareTeam Bundle, not the token.
    let r = request(px, "GET", "/fhir/Patient/pat-0003", &alice, "");
    assert_eq!(r.status, 200, "{}", decision(&r));
    let r = request(px, "GET", "/fhir/Patient/pat-0404", &alice, "");
    assert_eq!(r.status, 403, "unknown to every source");
    assert!(decision(&r).contains("unknown_patient"), "{}", decision(&r));

    // The source goes down: a cached patient still decides; a new lookup
    // denies with 503.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let r = request(px, "GET", "/fhir/Patient/pat-0005", &alice, "");
    assert_eq!(r.status, 200, "cached within its TTL");
    let r = request(px, "GET", "/fhir/Patient/pat-0003", &alice, "");
    assert_eq!(r.status, 200, "relationships cached within their TTL");
    let r = request(px, "GET", "/fhir/Patient/pat-0001", &bob, "");
    assert_eq!(
        r.status, 503,
        "bob's relationships cannot be loaded: {}",
        r.body
    );
    let r = request(px, "GET", "/fhir/Patient/pat-0006", &alice, "");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    assert!(
        metric_value(&px.metrics(), "phigate_authz_decisions_total{outcome=\"unavailable\",reason=\"entity_source_failed\",route=\"fhir\"}")
            == Some(2.0)
    );
}

#[test]
fn an_entity_revocation_under_load_takes_effect_within_one_reload() {
    let s = setup("", "");
    let px = &s.px;
    let bob = bearer(&s.idp.token("bob", true, 0));
    let req = format!("GET /fhir/Observation?patient=pat-0001 HTTP/1.1\r\nHost: localhost\r\n{bob}Connection: close\r\n\r\n");
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<std::sync::Mutex<Vec<(u16, String)>>> = Arc::default();
    let worker = {
        let (stop, seen, addr) = (stop.clone(), seen.clone(), px.addr);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = status_of(addr, req.as_bytes());
                seen.lock().unwrap().push(r);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // Revoke: pat-0001 leaves bob's care team (entities only; the policies
    // are untouched).
    let path = s.dir.path().join("entities.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"ct-0001\"", "\"ct-0009\"")).unwrap();
    let revoked_at = Instant::now();
    let deadline = revoked_at + Duration::from_secs(10);
    loop {
        let last = seen.lock().unwrap().last().map(|(s, _)| *s);
        if last == Some(403) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation never took effect:\n{}",
            px.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = revoked_at.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let seen = seen.lock().unwrap();
    // Allowed, then denied from one point on: never back, never an error.
    let first_denied = seen.iter().position(|(s, _)| *s == 403).unwrap();
    assert!(first_denied > 0, "never allowed before the revocation");
    assert!(
        seen[..first_denied].iter().all(|(s, _)| *s == 200),
        "{seen:?}"
    );
    assert!(
        seen[first_denied..].iter().all(|(s, _)| *s == 403),
        "{seen:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} (watch interval 200 ms)"
    );
}
