//! Writes by id through the pipeline, against an upstream that holds
//! records: the stored record is read first (with phigate's identity, not
//! the client's write headers), decides the write with the new body, and
//! pins it with `If-Match`; a record that cannot be read refuses the write.

use super::*;
use http_body_util::{BodyExt, Full};
use std::sync::Mutex;

/// What the upstream saw: method, path, `If-Match`, `X-Phigate-User`,
/// whether a body came.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>, Option<String>, bool)>>>;

/// A FHIR upstream holding Observations `mine` (patient p1, ETag `W/"3"`)
/// and `theirs` (p2); `broken` fails, `liar` answers with another record,
/// `huge` is over the pre-read limit; any write succeeds.
async fn fhir_upstream(seen: Seen) -> std::net::SocketAddr {
    super::tests::loopback(move |req: Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let header = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
            let (if_match, user) = (header("if-match"), header("x-phigate-user"));
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push((
                method.clone(),
                path.clone(),
                if_match,
                user,
                !body.is_empty(),
            ));
            let obs = |id: &str, patient: &str| {
                serde_json::json!({"resourceType": "Observation", "id": id, "subject": {"reference": format!("Patient/{patient}")}}).to_string()
            };
            let (status, body) = match (method.as_str(), path.as_str()) {
                ("GET", "/fhir/Observation/mine") => (200, obs("mine", "p1")),
                ("GET", "/fhir/Observation/theirs") => (200, obs("theirs", "p2")),
                ("GET", "/fhir/Observation/mine2") => (200, obs("mine2", "p1")),
                ("GET", "/fhir/Observation/liar") => (200, obs("other", "p1")),
                ("GET", "/fhir/Observation/huge") => {
                    (200, format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20)))
                }
                ("GET", "/fhir/Observation/broken") => (500, String::new()),
                ("GET", _) => (404, String::new()),
                _ => (200, "{\"written\":true}".to_owned()),
            };
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            resp.headers_mut()
                .insert("etag", HeaderValue::from_static("W/\"3\""));
            resp
        }
    })
    .await
}

struct Setup {
    pipeline: Pipeline<Full<Bytes>>,
    auth: String,
    _dir: tempfile::TempDir,
}

/// A FHIR route where `svc` may update and delete patient p1's records.
async fn setup(origin: &str, mode: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let policies = super::tests::policy_dir(
        dir.path(),
        &[(
            "writes.cedar",
            "@id(\"p1-writes\")\npermit (principal, action in [Phigate::Action::\"update\", Phigate::Action::\"delete\"], resource is Phigate::Record)\nwhen { resource has patient && resource.patient == Phigate::Patient::\"p1\" };\n",
        )],
    );
    let patient = |id: &str| serde_json::json!({"uid": {"type": "Phigate::Patient", "id": id}, "attrs": {"care_teams": [], "flags": [], "enrolled": []}, "parents": []});
    let entities = dir.path().join("entities.json");
    std::fs::write(
        &entities,
        serde_json::json!([patient("p1"), patient("p2")]).to_string(),
    )
    .unwrap();
    let key = crate::authn::apikey::generate();
    let text = format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[authorization]
policies = "{policies}"
entities = "{entities}"
[[api_keys]]
id = "svc"
key_id = "{key_id}"
hash = "{hash}"
roles = ["writer"]
[[routes]]
name = "fhir"
path_prefix = "/fhir"
upstream = "ehr"
auth = {{ kind = "api", accept = ["api_key"] }}
authorization = {{ mapping = "fhir", mode = "{mode}" }}
[upstreams.ehr]
origins = ["{origin}"]
[upstreams.ehr.health_check]
enabled = false
"#,
        policies = policies.display(),
        entities = entities.display(),
        key_id = key.key_id,
        hash = key.hash,
    );
    Setup {
        pipeline: super::tests::pipeline(&text, dir.path()),
        auth: format!("ApiKey {}", key.key),
        _dir: dir,
    }
}

async fn write(s: &Setup, method: &str, target: &str, body: &str, extra: &[(&str, &str)]) -> u16 {
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n",
        s.auth
    );
    let mut b = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "localhost")
        .header("authorization", &s.auth);
    let mut headers: Vec<(&str, String)> = extra.iter().map(|(n, v)| (*n, v.to_string())).collect();
    if !body.is_empty() {
        let ct = if body.starts_with('[') {
            "application/json-patch+json"
        } else {
            "application/fhir+json"
        };
        headers.push(("content-type", ct.to_owned()));
        headers.push(("content-length", body.len().to_string()));
    }
    for (n, v) in &headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
        b = b.header(*n, v.as_str());
    }
    raw.push_str("\r\n");
    let mut tracker = crate::http::HeadTracker::new(64 * 1024, 200);
    tracker.feed(raw.as_bytes());
    tracker.feed(body.as_bytes());
    let mut conn = ConnInfo::new("192.0.2.7:5555".parse().unwrap(), 0, false);
    conn.heads = Some(Arc::new(Mutex::new(tracker)));
    let req = b.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = s.pipeline.handle(req, &conn).await;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// `PUT /fhir/Observation/{id}` with a body for `patient`.
async fn put(s: &Setup, id: &str, patient: &str) -> u16 {
    let target = format!("/fhir/Observation/{id}");
    write(s, "PUT", &target, &obs(id, patient), &[]).await
}

fn obs(id: &str, patient: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","id":"{id}","status":"final","subject":{{"reference":"Patient/{patient}"}}}}"#
    )
}

#[tokio::test]
async fn writes_by_id_are_decided_on_the_stored_record() {
    let seen: Seen = Arc::default();
    let origin = format!("http://{}", fhir_upstream(seen.clone()).await);
    let s = setup(&origin, "enforce").await;
    let take = || std::mem::take(&mut *seen.lock().unwrap());

    // p1's record, rewritten for p1: read first, then written, pinned to
    // the version read.
    assert_eq!(put(&s, "mine", "p1").await, 200);
    let log = take();
    assert_eq!(log.len(), 2, "{log:?}");
    let (m, p, if_match, user, body) = &log[0];
    assert_eq!(
        (m.as_str(), p.as_str(), if_match.as_deref(), *body),
        ("GET", "/fhir/Observation/mine", None, false)
    );
    assert_eq!(
        user.as_deref(),
        Some("svc"),
        "the read carries phigate's identity"
    );
    assert_eq!(
        (log[1].0.as_str(), log[1].2.as_deref()),
        ("PUT", Some("W/\"3\""))
    );
    // `If-Match: *` pins nothing: replaced by the version read. A client's
    // list that admits it is narrowed to it; one that does not (the next
    // version, guessed) is refused before anything is written.
    for (sent, forwarded) in [("*", "W/\"3\""), ("W/\"2\", W/\"3\"", "W/\"3\"")] {
        let mine = obs("mine", "p1");
        let status = write(
            &s,
            "PUT",
            "/fhir/Observation/mine",
            &mine,
            &[("if-match", sent)],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(take()[1].2.as_deref(), Some(forwarded), "{sent}");
    }

    let mine = obs("mine", "p1");
    let status = write(
        &s,
        "PUT",
        "/fhir/Observation/mine",
        &mine,
        &[("if-match", "W/\"4\"")],
    )
    .await;
    assert_eq!(status, 412);
    assert!(take().iter().all(|e| e.0 == "GET"), "not written");

    // p2's record overwritten with a body naming p1: refused, never written.
    assert_eq!(put(&s, "theirs", "p1").await, 403);
    assert_eq!(take().iter().filter(|e| e.0 != "GET").count(), 0);
    assert_eq!(
        write(&s, "DELETE", "/fhir/Observation/theirs", "", &[]).await,
        403
    );
    assert_eq!(
        write(&s, "DELETE", "/fhir/Observation/mine", "", &[]).await,
        200
    );
    // A patch is decided on the record it makes, too.
    let to_p2 = r#"[{"op":"replace","path":"/subject/reference","value":"Patient/p2"}]"#;
    assert_eq!(
        write(&s, "PATCH", "/fhir/Observation/mine", to_p2, &[]).await,
        403
    );
    // One that does not apply is refused like a denial (403, not 400), so
    // its `test`s reveal nothing about a record the requester cannot read.
    let unapplied = r#"[{"op":"replace","path":"/subject/display","value":"x"}]"#;
    assert_eq!(
        write(&s, "PATCH", "/fhir/Observation/mine", unapplied, &[]).await,
        403,
        "does not apply: no display"
    );
    let harmless = r#"[{"op":"add","path":"/status","value":"amended"}]"#;
    assert_eq!(
        write(&s, "PATCH", "/fhir/Observation/mine", harmless, &[]).await,
        200
    );
    // Nothing stored: the update creates it and is decided on its body.
    assert_eq!(put(&s, "fresh", "p1").await, 200);
    assert_eq!(put(&s, "fresh", "p2").await, 403);
    take();

    // A record that cannot be read refuses the write (fail closed).
    for id in ["broken", "liar", "huge"] {
        let status = put(&s, id, "p1").await;
        assert!(matches!(status, 400 | 502), "{id}: {status}");
    }
    assert_eq!(
        take().iter().filter(|e| e.0 != "GET").count(),
        0,
        "nothing written"
    );
}

#[tokio::test]
async fn a_shadow_route_decides_without_a_record_it_cannot_read() {
    let seen: Seen = Arc::default();
    let origin = format!("http://{}", fhir_upstream(seen.clone()).await);
    let s = setup(&origin, "shadow").await;
    assert_eq!(put(&s, "broken", "p1").await, 200);
    assert_eq!(put(&s, "theirs", "p1").await, 200);
    // Shadow mode observes: the write goes as the client sent it.
    let log = std::mem::take(&mut *seen.lock().unwrap());
    assert!(log.iter().all(|e| e.2.is_none()), "{log:?}");
}

#[tokio::test]
async fn a_bundles_writes_by_id_are_each_decided_on_their_stored_record() {
    let seen: Seen = Arc::default();
    let origin = format!("http://{}", fhir_upstream(seen.clone()).await);
    let s = setup(&origin, "enforce").await;
    let bundle = |ids: &[&str]| {
        let entries: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| serde_json::json!({"request": {"method": "DELETE", "url": format!("Observation/{id}")}}))
            .collect();
        serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
            .to_string()
    };
    assert_eq!(
        write(&s, "POST", "/fhir", &bundle(&["mine", "mine2"]), &[]).await,
        200
    );
    let log = std::mem::take(&mut *seen.lock().unwrap());
    let mut reads: Vec<&str> = log
        .iter()
        .filter(|e| e.0 == "GET")
        .map(|e| e.1.as_str())
        .collect();
    reads.sort_unstable();
    assert_eq!(reads, ["/fhir/Observation/mine", "/fhir/Observation/mine2"]);
    assert!(log.iter().all(|e| e.2.is_none()), "no If-Match on a Bundle");
    // One entry deletes p2's record: the whole transaction is refused.
    assert_eq!(
        write(&s, "POST", "/fhir", &bundle(&["mine", "theirs"]), &[]).await,
        403
    );
    assert_eq!(
        write(&s, "POST", "/fhir", &bundle(&["mine", "broken"]), &[]).await,
        502
    );
    let log = std::mem::take(&mut *seen.lock().unwrap());
    assert!(log.iter().all(|e| e.0 == "GET"), "nothing written: {log:?}");
    // More records than phigate reads for one request: refused unread.
    let many: Vec<String> = (0..51).map(|i| format!("n{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    seen.lock().unwrap().clear();
    assert_eq!(write(&s, "POST", "/fhir", &bundle(&many), &[]).await, 502);
    assert!(seen.lock().unwrap().is_empty(), "nothing read");
}
