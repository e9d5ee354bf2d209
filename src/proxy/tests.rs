//! The pipeline driven in-process: requests handed to [`Pipeline::handle`]
//! directly, no listener. Each stage's contract, and every kind of
//! response leaving through the exit (the only place `X-Request-Id` is set).

use super::*;
use crate::http::HeadTracker;
use http_body_util::{BodyExt, Full};
use std::sync::Mutex;

/// An HTTP/1 server on loopback answering every request with `answer`.
pub(super) async fn loopback<F, Fut>(answer: F) -> std::net::SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let reply = answer(req);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An upstream on loopback that answers 200 and says what it received.
async fn upstream() -> std::net::SocketAddr {
    loopback(|req: Request<hyper::body::Incoming>| async move {
        let seen = serde_json::json!({
            "path": req.uri().path_and_query().map(|p| p.as_str()),
            "user": req.headers().get("x-phigate-user").and_then(|v| v.to_str().ok()),
            "forwarded_for": req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            "authorization": req.headers().contains_key("authorization"),
        });
        Response::new(Full::new(Bytes::from(seen.to_string())))
    })
    .await
}

struct Setup {
    pipeline: Pipeline<Full<Bytes>>,
    key: String,
    _dir: tempfile::TempDir,
}

async fn setup(origin: &str) -> Setup {
    setup_with(origin, "").await
}

/// [`setup`] with `extra` appended to the config (e.g. an `[audit]`).
async fn setup_with(origin: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let policies = policy_dir(
        dir.path(),
        &[(
            "pages.cedar",
            "@id(\"pages\")\npermit (principal, action, resource is Phigate::Record)\nwhen { resource.type == \"EchoPage\" };\n",
        )],
    );
    let key = crate::authn::apikey::generate();
    let text = format!(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[authorization]
policies = "{policies}"
[[api_keys]]
id = "svc"
key_id = "{key_id}"
hash = "{hash}"
roles = ["reader"]
[[routes]]
name = "open"
path_prefix = "/open"
upstream = "app"
auth = {{ kind = "public" }}
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = {{ kind = "api", accept = ["api_key"] }}
authorization = {{ templates = [
  {{ path = "/api/ok/{{*rest}}", resource_type = "EchoPage" }},
  {{ path = "/api/no/{{*rest}}", resource_type = "SecretPage" }},
] }}
[[routes]]
name = "down"
path_prefix = "/down"
upstream = "dead"
auth = {{ kind = "public" }}
[upstreams.app]
origins = ["{origin}"]
[upstreams.app.health_check]
enabled = false
[upstreams.dead]
origins = ["http://127.0.0.1:9"]
[upstreams.dead.health_check]
enabled = false
"#,
        policies = policies.display(),
        key_id = key.key_id,
        hash = key.hash,
    ) + extra;
    Setup {
        pipeline: pipeline(&text, dir.path()),
        key: key.key,
        _dir: dir,
    }
}

/// A directory of policies: phigate's schema and `files` (name, text).
pub(super) fn policy_dir(dir: &std::path::Path, files: &[(&str, &str)]) -> std::path::PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("phigate.cedarschema"),
        include_str!("../../policies/phigate.cedarschema"),
    )
    .unwrap();
    for (name, text) in files {
        std::fs::write(policies.join(name), text).unwrap();
    }
    policies
}

/// The pipeline a config text (in `dir`) builds, as `serve` builds it.
pub(super) fn pipeline(text: &str, dir: &std::path::Path) -> Pipeline<Full<Bytes>> {
    // Every pipeline records to a real spool, as `serve` does.
    let text = if text.contains("[audit]") {
        text.to_string()
    } else {
        format!("{text}\n[audit]\ndir = \"audit\"\nsync = \"os\"\n")
    };
    let config = crate::config::Config::from_toml(&text, &dir.join("phigate.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let audit = config
        .audit
        .as_ref()
        .map(|a| crate::audit::Audit::open(a).unwrap());
    let authn = crate::authn::build(config.authn()).unwrap();
    let authz = Arc::new(Authorization::from_config(&config.authorization).unwrap());
    let stages = Arc::new(Stages::from_config(config.pipeline(), authn, authz, audit).unwrap());
    Pipeline::new(stages)
}

/// An HTTP/1 connection that has carried exactly `raw` (the head is what
/// admission judges).
fn h1(raw: &[u8]) -> ConnInfo {
    let mut t = HeadTracker::new(64 * 1024, 200);
    t.feed(raw);
    let mut c = ConnInfo::new("192.0.2.7:5555".parse().unwrap(), 0, false);
    c.heads = Some(Arc::new(Mutex::new(t)));
    c
}

fn request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (Request<Full<Bytes>>, ConnInfo) {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
    let mut b = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "localhost");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
        b = b.header(*n, *v);
    }
    raw.push_str("\r\n");
    (b.body(Full::new(Bytes::new())).unwrap(), h1(raw.as_bytes()))
}

async fn send(
    s: &Setup,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, serde_json::Value) {
    let (req, conn) = request(method, target, headers);
    let resp = s.pipeline.handle(req, &conn).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

#[tokio::test]
async fn admission_refuses_ambiguity_before_any_other_stage() {
    let s = setup("http://127.0.0.1:9").await;
    let (status, h, body) = send(&s, "GET", "/open/%2e%2e/x", &[("x-request-id", "r-1")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["request_id"], "r-1");
    assert_eq!(h.get("connection").unwrap(), "close");
    let (status, _, body) = send(&s, "GET", "/nowhere", &[]).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    // The raw head is the truth: hyper's view of this request is clean,
    // the bytes said two Content-Lengths.
    let req = Request::post("/open/x")
        .header("host", "localhost")
        .header("content-length", "0")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let conn = h1(b"POST /open/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n");
    let resp = s.pipeline.handle(req, &conn).await;
    assert_eq!(resp.status(), 400);
    // A request the connection's bytes do not account for is refused.
    let req = Request::get("/open/x")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = s.pipeline.handle(req, &h1(b"")).await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn identity_is_required_and_never_taken_from_the_client() {
    let origin = format!("http://{}", upstream().await);
    let s = setup(&origin).await;
    let (status, h, _) = send(&s, "GET", "/api/ok/1", &[("x-phigate-user", "admin")]).await;
    assert_eq!(status, 401);
    assert!(h.get("www-authenticate").is_some());
    let auth = format!("ApiKey {}", s.key);
    let (status, _, seen) = send(
        &s,
        "GET",
        "/api/ok/1",
        &[("authorization", &auth), ("x-phigate-user", "admin")],
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["user"], "svc", "phigate's identity, not the client's");
    assert_eq!(seen["authorization"], false, "the credential stays here");
    assert_eq!(seen["forwarded_for"], "192.0.2.7");
}

#[tokio::test]
async fn the_decision_is_taken_once_and_recorded_for_the_exit() {
    let origin = format!("http://{}", upstream().await);
    let s = setup(&origin).await;
    let auth = format!("ApiKey {}", s.key);
    let (status, h, body) = send(&s, "GET", "/api/no/1", &[("authorization", &auth)]).await;
    assert_eq!(status, 403);
    assert_eq!(h.get("content-type").unwrap(), "application/problem+json");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains(h.get("x-request-id").unwrap().to_str().unwrap()));
    // The stage's result, as the exit sees it.
    let (req, conn) = request("GET", "/api/no/1", &[("authorization", &auth)]);
    let mut ctx = RequestCtx::start(&req, &conn, None);
    let Err(stop) = s.pipeline.journey(req, &conn, &mut ctx).await else {
        panic!("not denied");
    };
    assert_eq!(stop.reason, "forbidden");
    let d = ctx.decision.as_ref().expect("decision kept");
    assert_eq!((d.outcome, d.reason), ("deny", "not_permitted"));
    let loaded = d
        .loaded
        .as_ref()
        .expect("snapshot kept for the response phase");
    let snapshot = d.snapshot.as_ref().expect("the snapshot decided with");
    assert_eq!(
        loaded.snapshot.generation, snapshot.generation,
        "one snapshot"
    );
    assert_eq!(ctx.principal.as_ref().unwrap().id, "svc");
    ctx.rejection = Some(stop.reason);
    let _ = exit::exit(&mut ctx, *stop.response, &conn, &s.pipeline.stages.hygiene);
}

#[tokio::test]
async fn every_kind_of_response_leaves_through_the_exit() {
    let origin = format!("http://{}", upstream().await);
    let s = setup(&origin).await;
    let auth = format!("ApiKey {}", s.key);
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("GET", "/open/page", vec![], 200),          // forwarded
        ("GET", "/open/a%2fb", vec![], 400),         // hygiene
        ("TRACE", "/open/x", vec![], 405),           // method
        ("GET", "/nowhere", vec![], 404),            // routing
        ("GET", "/.phigate/jwks.json", vec![], 200), // phigate's endpoint
        ("GET", "/.phigate/login", vec![], 404),     // no browser sign-in here
        ("GET", "/api/ok/1", vec![], 401),           // authentication
        (
            "GET",
            "/api/no/1",
            vec![("authorization", auth.as_str())],
            403,
        ), // authorization
        ("GET", "/down/x", vec![], 502),             // upstream failure
        (
            "POST",
            "/open/x",
            vec![("content-length", "999999999")],
            413,
        ), // body limit
    ];
    for (method, target, headers, want) in cases {
        let (status, h, _) = send(&s, method, target, &headers).await;
        assert_eq!(status, want, "{method} {target}");
        assert!(
            h.get("x-request-id").is_some(),
            "{method} {target} ({status}) did not pass the exit"
        );
        // What phigate says itself (denials with details, errors) is never
        // stored by a cache.
        if status >= 400 {
            assert_eq!(
                h.get("cache-control").map(|v| v.to_str().unwrap()),
                Some("no-store"),
                "{method} {target}"
            );
        }
    }
}

/// Every event in the pipeline's spool, as written so far.
fn recorded(s: &Setup) -> Vec<crate::audit::AuditEvent> {
    let mut out = Vec::new();
    crate::audit::report::events(
        &s._dir.path().join("audit"),
        |_, e| out.push(e),
        |d| panic!("{d}"),
    )
    .unwrap();
    out
}

fn by_request<'a>(
    events: &'a [crate::audit::AuditEvent],
    id: &str,
) -> Vec<&'a crate::audit::AuditEvent> {
    events
        .iter()
        .filter(|e| e.request_id() == Some(id))
        .collect()
}

#[tokio::test]
async fn every_request_is_recorded_before_its_response_leaves_and_completed_after() {
    use crate::audit::{EventKind, Outcome};
    let origin = format!("http://{}", upstream().await);
    let s = setup(&origin).await;
    let auth = format!("ApiKey {}", s.key);
    let (req, conn) = request(
        "GET",
        "/api/ok/1?name=Smith&_count=2",
        &[("authorization", &auth), ("x-request-id", "rq-ok")],
    );
    let resp = s.pipeline.handle(req, &conn).await;
    assert_eq!(resp.status(), 200);
    // The head is out: its access record is already in the spool.
    let events = recorded(&s);
    let access = by_request(&events, "rq-ok");
    assert_eq!(access.len(), 1, "{events:?}");
    let access = access[0].clone();
    assert_eq!(
        (access.kind, access.outcome),
        (EventKind::Access, Outcome::Allowed)
    );
    assert!(access.outcome_follows);
    let req = access.request.as_ref().unwrap();
    assert_eq!(
        req.query.as_deref(),
        Some("name=*&_count=*"),
        "values withheld"
    );
    assert_eq!(req.path.as_deref(), Some("/api/ok/1"));
    assert_eq!(access.actor.as_ref().unwrap().user_id, "svc");
    let d = access.decision.as_ref().unwrap();
    assert!(
        d.allowed && d.policies == vec!["pages".to_string()],
        "{d:?}"
    );
    assert!(
        !format!("{events:?}").contains("Smith"),
        "no query value recorded"
    );
    // The body ends: the outcome record follows, tied to the access.
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let (status, _, _) = send(
        &s,
        "GET",
        "/api/no/1",
        &[("authorization", &auth), ("x-request-id", "rq-no")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = send(&s, "GET", "/api/ok/1", &[("x-request-id", "rq-anon")]).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(&s, "GET", "/open/page", &[("x-request-id", "rq-public")]).await;
    assert_eq!(status, 200);
    let audit = s.pipeline.stages.audit.clone().unwrap();
    audit.close();
    let events = recorded(&s);
    let ok = by_request(&events, "rq-ok");
    assert_eq!(ok.len(), 2);
    let outcome = ok[1];
    assert_eq!(
        (outcome.kind, outcome.outcome),
        (EventKind::Outcome, Outcome::Success)
    );
    assert_eq!(outcome.access_id.as_deref(), Some(access.id.as_str()));
    assert_eq!(
        (outcome.status, outcome.bytes),
        (Some(200), Some(body.len() as u64))
    );
    let no = by_request(&events, "rq-no");
    assert_eq!(no.len(), 1, "a denial is one complete record");
    assert_eq!((no[0].outcome, no[0].status), (Outcome::Denied, Some(403)));
    assert!(!no[0].decision.as_ref().unwrap().allowed);
    assert!(
        by_request(&events, "rq-public").is_empty(),
        "a public path carries no PHI"
    );
    let anon = by_request(&events, "rq-anon");
    assert_eq!(
        (anon[0].outcome, anon[0].status),
        (Outcome::AuthenticationFailed, Some(401))
    );
    let report = crate::audit::verify::verify(
        &s._dir.path().join("audit"),
        &crate::audit::verify::Verify {
            key: None,
            checkpoint: None,
            origin: None,
            max_unsigned: crate::audit::verify::MAX_UNSIGNED,
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}

#[tokio::test]
async fn nothing_is_forwarded_while_the_spool_cannot_take_records() {
    let origin = format!("http://{}", upstream().await);
    let s = setup(&origin).await;
    let auth = format!("ApiKey {}", s.key);
    // A closed spool takes nothing: the PHI route refuses, the public one
    // still answers.
    s.pipeline.stages.audit.clone().unwrap().close();
    let (status, h, _) = send(&s, "GET", "/api/ok/1", &[("authorization", &auth)]).await;
    assert_eq!(status, 503);
    assert_eq!(h.get("retry-after").unwrap(), "1");
    let (status, _, _) = send(&s, "GET", "/open/page", &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_response_waits_for_its_record_and_is_withheld_when_it_never_comes() {
    // A group commit that will not sync for a minute: the record is
    // written but not durable, so nothing may leave; after the exit's
    // deadline the answer is 503, never the upstream's body.
    let origin = format!("http://{}", upstream().await);
    let s = setup_with(
        &origin,
        "[audit]\ndir = \"audit\"\nsync = \"interval\"\nsync_interval = \"60s\"\n",
    )
    .await;
    let auth = format!("ApiKey {}", s.key);
    let started = std::time::Instant::now();
    let (status, h, _) = send(&s, "GET", "/api/ok/1", &[("authorization", &auth)]).await;
    assert_eq!(status, 503);
    assert_eq!(h.get("retry-after").unwrap(), "1");
    assert!(started.elapsed() >= std::time::Duration::from_secs(9));
    s.pipeline.stages.audit.clone().unwrap().close();
}
