//! The response phase end to end: tokens from the real OpenID provider,
//! the example policies and data classes, the demo FHIR upstream, and
//! nginx serving bodies no good upstream would (malformed, compressed,
//! XML, legacy JSON). Every persona sees its own answer to the same
//! request; what cannot be redacted is refused or cut, never passed.

mod common;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::Command;

/// pat-0001 and pat-0003 on team ct-0001 (pat-0003 has a substance-use
/// condition in the demo data), pat-0002 restricted and pat-0007 a VIP on
/// another team; every other patient is unknown.
fn entities_json() -> String {
    let patient = |id: &str, team: &str, flags: &str| {
        format!(
            r#"{{"uid": {{"type": "Phigate::Patient", "id": "{id}"}},
               "attrs": {{"care_teams": [{{"__entity": {{"type": "Phigate::CareTeam", "id": "{team}"}}}}],
                          "flags": [{flags}], "enrolled": ["ccm"]}},
               "parents": [{{"type": "Phigate::CareTeam", "id": "{team}"}}]}}"#
        )
    };
    format!(
        "[{}, {}, {}, {}]",
        patient("pat-0001", "ct-0001", ""),
        patient("pat-0002", "ct-0009", r#""restricted""#),
        patient("pat-0003", "ct-0001", ""),
        patient("pat-0007", "ct-0009", r#""vip""#),
    )
}

struct Setup {
    px: Phigate,
    idp: Idp,
    up: Upstream,
    _nginx: Upstream,
    _dir: tempfile::TempDir,
    /// A TLS listener (HTTP/2 by ALPN) and its CA.
    tls_port: u16,
    ca: TestCa,
}

/// A Bundle of `n` Observations of pat-0001, each about 1 KB, as the
/// upstream behind `prefix` writes it.
fn bundle(n: usize, prefix: &str) -> String {
    let entries: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"fullUrl":"http://upstream.internal{prefix}/Observation/o{i}","resource":{{"resourceType":"Observation","id":"o{i}","status":"final","subject":{{"reference":"Patient/pat-0001"}},"note":[{{"text":"{}"}}]}}}}"#,
                "n".repeat(900)
            )
        })
        .collect();
    format!(
        r#"{{"resourceType":"Bundle","type":"searchset","total":{n},"entry":[{}]}}"#,
        entries.join(",")
    )
}

fn setup() -> Setup {
    let idp = Idp::start();
    let up = Upstream::demo();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Bodies for nginx to serve as an upstream would.
    // Large enough to arrive in several reads: the head goes before the
    // fault is found.
    let good = bundle(3000, "/bad");
    std::fs::write(
        d.join("malformed.json"),
        format!("{}garbage", &good[..good.len() - 1]),
    )
    .unwrap();
    std::fs::write(d.join("truncated.json"), &good[..good.len() - 300]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bundle(3, "/gz").as_bytes()).unwrap();
    std::fs::write(d.join("bundle.json.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        d.join("patient.xml"),
        "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"pat-0001\"/></Patient>",
    )
    .unwrap();
    std::fs::write(d.join("style.css"), "body { color: black }").unwrap();
    // A coverage search with its patients included: hers, and a VIP's.
    std::fs::write(
        d.join("included.json"),
        r#"{"resourceType":"Bundle","type":"searchset","total":1,"entry":[
          {"resource":{"resourceType":"Coverage","id":"cov-0001","beneficiary":{"reference":"Patient/pat-0001"}},"search":{"mode":"match"}},
          {"resource":{"resourceType":"Patient","id":"pat-0001","telecom":[{"system":"phone","value":"617-555-0101"}],"gender":"female"},"search":{"mode":"include"}},
          {"resource":{"resourceType":"Patient","id":"pat-0007","gender":"male"},"search":{"mode":"include"}}]}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("chart.json"),
        r#"{"patient":{"name":"Ann Example","ssn":"123-45-6789","phone":"617-555-0101"},"notes":[{"body":"private note"}],"vitals":[{"bp":"120/80"}]}"#,
    )
    .unwrap();
    let files = d.display();
    let nginx = Upstream::nginx(
        &format!(
            r#"
    location = /bad/Observation {{ default_type application/fhir+json; alias {files}/malformed.json; }}
    location = /cut/Observation {{ default_type application/fhir+json; alias {files}/truncated.json; }}
    location = /gz/Observation {{ default_type application/fhir+json; add_header Content-Encoding gzip; alias {files}/bundle.json.gz; }}
    location = /zz/Observation {{ default_type application/fhir+json; add_header Content-Encoding compress; alias {files}/bundle.json.gz; }}
    location = /xml/Patient/pat-0001 {{ default_type application/fhir+xml; alias {files}/patient.xml; }}
    location = /xml/Observation {{ default_type text/css; alias {files}/style.css; }}
    location = /inc/Coverage {{ default_type application/fhir+json; alias {files}/included.json; }}
    location = /legacy/patients/pat-0001/chart {{ default_type application/json; alias {files}/chart.json; }}
"#
        ),
        None,
    );
    let entities = d.join("entities.json");
    std::fs::write(&entities, entities_json()).unwrap();
    let key = d.join("pseudonym.key");
    std::fs::write(&key, "k".repeat(40)).unwrap();
    let port = free_port();
    let fhir_route = |name: &str, prefix: &str, upstream: &str| {
        format!(
            r#"
[[routes]]
name = "{name}"
path_prefix = "{prefix}"
upstream = "{upstream}"
auth = {{ kind = "api", accept = ["bearer"] }}
authorization = {{ mapping = "fhir" }}
[routes.redaction]
pseudonym_key = "file:{key}"
upstream_base_urls = ["http://upstream.internal{prefix}"]
"#,
            key = key.display()
        )
    };
    let mut body = idp.provider_config("");
    body += &fhir_route("fhir", "/fhir", "demo");
    for prefix in ["/bad", "/cut", "/gz", "/zz", "/inc"] {
        body += &fhir_route(&prefix[1..], prefix, "nginx");
    }
    body += &fhir_route("xml", "/xml", "nginx");
    body += r#"phi_free_content_types = ["text/css"]
"#;
    body += &format!(
        r#"
[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "nginx"
auth = {{ kind = "api", accept = ["bearer"] }}
authorization = {{ templates = [
  {{ path = "/legacy/patients/{{patient}}/chart", methods = ["GET"], action = "read", resource_type = "Patient" }},
] }}
[routes.redaction]

[upstreams.demo]
origins = ["{demo}"]
[upstreams.demo.health_check]
path = "/healthz"
[upstreams.nginx]
origins = ["{nginx}"]
[upstreams.nginx.health_check]
path = "/healthz"

[authorization]
example_policies = true
entities = "{entities}"
decision_header = true
"#,
        demo = up.origin(),
        nginx = nginx.origin(),
        entities = entities.display(),
    );
    let ca = TestCa::new();
    let (cert, cert_key) = ca.issue("localhost", &["localhost"]);
    let tls_port = free_port();
    let listeners = format!(
        "{}{}",
        cleartext_listener(port),
        tls_listener(tls_port, &cert, &cert_key, "")
    );
    let px = Phigate::start_full(&listeners, port, "", &body);
    Setup {
        px,
        idp,
        up,
        _nginx: nginx,
        _dir: dir,
        tls_port,
        ca,
    }
}

fn get(px: &Phigate, path: &str, token: &str, extra: &str) -> Response {
    px.raw(
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n{extra}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

fn upstream_json(up: &Upstream, path: &str) -> Value {
    http_get(up.addr, path).unwrap().json()
}

fn resources(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| &e["resource"]).collect())
        .unwrap_or_default()
}

fn patient_of(r: &Value) -> &str {
    ["subject", "patient", "beneficiary"]
        .iter()
        .find_map(|k| r[*k]["reference"].as_str())
        .unwrap_or("")
}

/// Every string value in `v`, recursively.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn each_persona_sees_what_policy_lets_them_see() {
    let s = setup();
    let px = &s.px;
    let alice = s.idp.token("alice", true, 0);
    let bob = s.idp.token("bob", true, 0);
    let carol = s.idp.token("carol", false, 0);
    let rita = s.idp.token("rita", true, 0);
    let original = upstream_json(&s.up, "/fhir/Patient/pat-0001");
    assert!(original.get("telecom").is_some() && original.get("address").is_some());

    // Billing: the minimum for payment, labelled as redacted.
    let r = get(px, "/fhir/Patient/pat-0001", &carol, "");
    assert_eq!(r.status, 200, "{}", px.logs());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("etag"), None);
    let p = r.json();
    for gone in ["telecom", "address", "text", "communication", "extension"] {
        assert!(p.get(gone).is_none(), "billing sees {gone}: {p:#}");
    }
    assert_eq!(p["name"], original["name"]);
    assert_eq!(p["birthDate"], original["birthDate"]);
    let security = p["meta"]["security"].as_array().unwrap();
    assert!(security.iter().any(|c| c["code"] == "REDACTED"), "{p:#}");
    // Its values are nowhere in the answer.
    let mut hidden = Vec::new();
    strings(&original["telecom"], &mut hidden);
    strings(&original["address"], &mut hidden);
    for v in hidden.iter().filter(|v| v.len() > 4 && *v != "home") {
        assert!(!r.body.contains(v.as_str()), "billing sees {v}");
    }

    // The care manager sees contact details (and no REDACTED label).
    let r = get(px, "/fhir/Patient/pat-0001", &alice, "");
    assert_eq!(r.status, 200);
    let p = r.json();
    assert_eq!(p["telecom"], original["telecom"]);
    assert!(!r.body.contains("REDACTED"));

    // An unscoped claims search: only claims of patients billing may see,
    // no total, links back through phigate.
    let r = get(px, "/fhir/Claim", &carol, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    assert!(b.get("total").is_none(), "{b:#}");
    let mut seen: Vec<&str> = resources(&b).iter().map(|c| patient_of(c)).collect();
    seen.sort_unstable();
    assert_eq!(seen, ["Patient/pat-0001", "Patient/pat-0003"], "{b:#}");
    for e in b["entry"].as_array().unwrap() {
        let url = e["fullUrl"].as_str().unwrap();
        assert!(url.starts_with("http://localhost/fhir/Claim/"), "{url}");
    }
    let self_link = b["link"][0]["url"].as_str().unwrap();
    assert!(
        self_link.starts_with("http://localhost/fhir/Claim"),
        "{self_link}"
    );
    assert!(
        !r.body.contains(&s.up.addr.to_string()),
        "the upstream's address leaks"
    );
    // The VIP's claim by id: as if it did not exist.
    let r = get(px, "/fhir/Claim/claim-0007", &carol, "");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(!r.body.contains("pat-0007"));
    let r = get(px, "/fhir/Claim/claim-0001", &carol, "");
    assert_eq!(r.status, 200);

    // The care manager's condition search: the substance-use condition
    // is reserved for break-glass.
    let all = upstream_json(&s.up, "/fhir/Condition?patient=pat-0003");
    let sensitive = resources(&all)
        .iter()
        .filter(|c| !c["meta"]["security"].is_null())
        .count();
    assert!(
        sensitive > 0,
        "the demo data gives pat-0003 a sensitive condition"
    );
    let r = get(px, "/fhir/Condition?patient=pat-0003", &alice, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let got = r.json();
    assert_eq!(resources(&got).len(), resources(&all).len() - sensitive);
    assert!(resources(&got)
        .iter()
        .all(|c| c["meta"]["security"].is_null()));
    let r = get(
        px,
        "/fhir/Condition?patient=pat-0003",
        &alice,
        "X-Phigate-Purpose-Of-Use: ETREAT\r\nX-Phigate-Break-Glass: overdose suspected in the ED\r\n",
    );
    assert_eq!(resources(&r.json()).len(), resources(&all).len());

    // $everything for a physician: no claims or coverage.
    let r = get(px, "/fhir/Patient/pat-0001/$everything", &bob, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    let types: Vec<&str> = resources(&b)
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"Observation") && types.contains(&"Patient"),
        "{types:?}"
    );
    assert!(
        !types.contains(&"Claim") && !types.contains(&"Coverage"),
        "{types:?}"
    );

    // Included records are decided and redacted like the others: her
    // patient as billing sees it, the VIP not at all.
    let r = get(
        px,
        "/inc/Coverage?patient=pat-0001&_include=Coverage:patient",
        &carol,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    let ids: Vec<&str> = resources(&b)
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cov-0001", "pat-0001"]);
    assert!(resources(&b)[1].get("telecom").is_none());
    // A server's error is shown as it is.
    let r = get(
        px,
        "/fhir/Coverage?patient=pat-0001&_include=Coverage:patient",
        &carol,
        "",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["issue"][0]["diagnostics"].is_string(),
        "{}",
        r.body
    );

    // Research: de-identified.
    let r = get(px, "/fhir/Patient?_count=50", &rita, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json();
    let people = resources(&b);
    assert_eq!(
        people.len(),
        2,
        "only enrolled, unflagged, known patients: {b:#}"
    );
    for p in people {
        assert!(
            p.get("name").is_none() && p.get("telecom").is_none(),
            "{p:#}"
        );
        assert_eq!(p["birthDate"].as_str().unwrap().len(), 4);
        let id = p["id"].as_str().unwrap();
        assert!(id.len() == 32 && !id.starts_with("pat-"), "{id}");
        assert_eq!(p["address"][0]["postalCode"].as_str().unwrap().len(), 3);
        assert!(p["address"][0].get("line").is_none());
    }
    assert!(
        !r.body.contains("pat-0001") && !r.body.contains("MRN"),
        "{}",
        r.body
    );
    // De-identified answers come from searches on criteria that name no
    // one: a read by id or a search by name would tie a pseudonym to a
    // person.
    for path in [
        "/fhir/Patient/pat-0001",
        "/fhir/Patient?family=Mockridge",
        "/fhir/Observation?patient=pat-0001",
    ] {
        let r = get(px, path, &rita, "");
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    let r = get(px, "/fhir/Observation?_count=5", &rita, "");
    assert_eq!(r.status, 200, "{}", r.body);
    // And never on a route that cannot de-identify.
    let r = get(px, "/legacy/patients/pat-0001/chart", &rita, "");
    assert_eq!(r.status, 403, "{}", r.body);

    // HEAD answers as GET would: a withheld record is 404, and no upstream
    // length or date describes what was not sent.
    let head = |path: &str, token: &str| {
        px.raw(
            format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let r = head("/fhir/Claim/claim-0007", &carol);
    assert_eq!(r.status, 404);
    let r = head("/fhir/Claim/claim-0001", &carol);
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").is_none() && r.header("last-modified").is_none());
}

#[test]
fn counts_formats_and_paging_are_side_channels_closed() {
    let s = setup();
    let px = &s.px;
    let alice = s.idp.token("alice", true, 0);
    for q in ["_summary=count", "_total=accurate"] {
        let r = get(
            px,
            &format!("/fhir/Observation?patient=pat-0001&{q}"),
            &alice,
            "",
        );
        assert_eq!(r.status, 403, "{q}: {}", r.body);
    }
    let r = get(
        px,
        "/fhir/Observation?patient=pat-0001&_format=xml",
        &alice,
        "",
    );
    assert_eq!(r.status, 406);
    // Asked for XML by Accept, answered in JSON (never XML unredacted).
    let r = get(
        px,
        "/fhir/Patient/pat-0001",
        &alice,
        "Accept: application/fhir+xml\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().contains("json"));
    r.json();
    // An XML answer anyway is refused; a declared PHI-free type passes.
    let r = get(px, "/xml/Patient/pat-0001", &alice, "");
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(!r.body.contains("pat-0001"));
    let r = get(px, "/xml/Observation?patient=pat-0001", &alice, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "body { color: black }");

    // Paging goes on through phigate, each page decided again.
    let r = get(
        px,
        "/fhir/Observation?patient=pat-0001&_count=2",
        &alice,
        "",
    );
    assert_eq!(r.status, 200);
    let b = r.json();
    assert!(b.get("total").is_none());
    let next = b["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next page")["url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = next
        .strip_prefix("http://localhost")
        .expect("a link back through phigate");
    let r = get(px, path, &alice, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(resources(&r.json()).len(), 2);
}

#[test]
fn what_cannot_be_redacted_is_refused_or_cut() {
    let s = setup();
    let px = &s.px;
    let bob = s.idp.token("bob", true, 0);
    let curl = require("curl");
    let run_curl = |path: &str| {
        Command::new(&curl)
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {bob}"))
            .arg(format!("http://{}{path}", px.addr))
            .output()
            .unwrap()
    };
    // Malformed after the head went: the transfer is cut, and curl says so.
    for path in [
        "/bad/Observation?patient=pat-0001",
        "/cut/Observation?patient=pat-0001",
    ] {
        let out = run_curl(path);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{path}");
        assert!(
            matches!(out.status.code(), Some(18) | Some(56)),
            "{path}: curl exit {:?} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Over HTTP/2 the stream is reset: curl reports the error.
    let ca_file = &s.ca.ca_pem;
    let out = Command::new(&curl)
        .args([
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--cacert",
        ])
        .arg(ca_file)
        .arg("-H")
        .arg(format!("Authorization: Bearer {bob}"))
        .arg(format!(
            "https://localhost:{}/bad/Observation?patient=pat-0001",
            s.tls_port
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "an HTTP/2 answer that cannot be redacted must be reset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The raw client sees no last chunk.
    let r = get(px, "/bad/Observation?patient=pat-0001", &bob, "");
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<Value>(&r.body).is_err());
    // A compressed answer is decoded and redacted; an unknown coding is
    // refused before anything is sent.
    let r = get(
        px,
        "/gz/Observation?patient=pat-0001",
        &bob,
        "Accept-Encoding: gzip\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-encoding"), None);
    let b = r.json();
    assert_eq!(resources(&b).len(), 3);
    assert_eq!(
        b["entry"][0]["fullUrl"].as_str().unwrap(),
        "http://localhost/gz/Observation/o0"
    );
    let out = run_curl("/zz/Observation?patient=pat-0001");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "502");
    let m = px.metrics();
    assert!(m.contains("phigate_redaction_failures_total"), "{m}");
}

#[test]
fn legacy_json_is_redacted_by_json_path() {
    let s = setup();
    let alice = s.idp.token("alice", true, 0);
    let r = get(&s.px, "/legacy/patients/pat-0001/chart", &alice, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["patient"]["ssn"], "***6789");
    assert!(
        v.get("notes").is_none(),
        "a care manager sees no notes: {v}"
    );
    assert_eq!(v["vitals"][0]["bp"], "120/80");
    assert_eq!(v["patient"]["phone"], "617-555-0101");
}

/// `phigate audit disclosures --patient P --format json` (request ids).
fn accounted(px: &Phigate, patient: &str, all: bool) -> std::collections::BTreeSet<String> {
    let spool = px.dir.path().join("audit");
    let mut args = vec![
        "audit",
        "disclosures",
        "--dir",
        spool.to_str().unwrap(),
        "--patient",
        patient,
        "--format",
        "json",
    ];
    if all {
        args.push("--all");
    }
    let out = Command::new(phigate_bin()).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| d["request_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_accounting_of_disclosures_matches_what_clients_received() {
    let s = setup();
    let px = &s.px;
    let alice = s.idp.token("alice", true, 0);
    let carol = s.idp.token("carol", false, 0);
    // (request id, token, path, purpose of use)
    let workload = [
        // Coverage with its patients included: hers is shown, the VIP's
        // (another team) is removed from the answer — and from the record.
        (
            "d-0",
            &carol,
            "/inc/Coverage?patient=pat-0001&_include=Coverage:patient",
            Some("HPAYMT"),
        ),
        ("d-1", &alice, "/fhir/Patient/pat-0001", Some("TREAT")),
        (
            "d-2",
            &alice,
            "/fhir/Observation?patient=pat-0003&_count=5",
            None,
        ),
        (
            "d-3",
            &alice,
            "/fhir/Observation?_count=40",
            Some("PUBHLTH"),
        ),
        ("d-4", &alice, "/fhir/Patient/pat-0002", Some("TREAT")),
        ("d-5", &carol, "/fhir/Patient/pat-0001", Some("HPAYMT")),
        (
            "d-6",
            &carol,
            "/fhir/Observation?patient=pat-0001",
            Some("HPAYMT"),
        ),
        ("d-7", &alice, "/fhir/Patient/pat-0007", Some("HLEGAL")),
    ];
    let mut received = Vec::new();
    for (id, token, path, purpose) in workload {
        let mut extra = format!("X-Request-Id: {id}\r\n");
        if let Some(p) = purpose {
            extra.push_str(&format!("X-Phigate-Purpose-Of-Use: {p}\r\n"));
        }
        let r = get(px, path, token, &extra);
        received.push((id, purpose, r.status, r.body));
    }
    assert!(
        received.iter().any(|r| r.2 == 200) && received.iter().any(|r| r.2 != 200),
        "{:?}",
        received.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>()
    );
    let status = |id: &str| received.iter().find(|r| r.0 == id).map(|r| r.2);
    // The care manager reads her team's patients; the restricted one and
    // the VIP of another team are withheld; billing reads for payment.
    assert_eq!(
        ["d-0", "d-1", "d-2", "d-4", "d-5", "d-7"].map(status),
        [
            Some(200),
            Some(200),
            Some(200),
            Some(403),
            Some(200),
            Some(403)
        ],
        "{}",
        px.logs()
    );
    // Outcome records are written as bodies end; wait for the last.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for patient in ["pat-0001", "pat-0002", "pat-0003", "pat-0007"] {
        let got = |tpo_too: bool| -> std::collections::BTreeSet<String> {
            received
                .iter()
                .filter(|(_, purpose, status, body)| {
                    *status == 200
                        && body.contains(patient)
                        && (tpo_too || !matches!(*purpose, Some("TREAT" | "HPAYMT")))
                })
                .map(|(id, ..)| id.to_string())
                .collect()
        };
        assert_eq!(
            accounted(px, patient, true),
            got(true),
            "{patient}, everything"
        );
        assert_eq!(
            accounted(px, patient, false),
            got(false),
            "{patient}, TPO left out"
        );
    }
    // Not vacuous: her treatment read and billing's payment read are left
    // out, the undeclared search is kept.
    assert!(
        accounted(px, "pat-0001", true).is_superset(&["d-1".to_string(), "d-5".to_string()].into())
    );
    assert!(accounted(px, "pat-0003", false).contains("d-2"));
    assert!(accounted(px, "pat-0001", true).contains("d-0"));
    assert!(
        accounted(px, "pat-0007", true).is_empty(),
        "the VIP's record never left"
    );
}
