//! Throughput of the streaming redaction engine against the baseline the
//! issue names: `serde_json::Value` parse + edit + serialize of the same
//! body, measured in the same run. Run: `cargo bench --bench redact`.
//!
//! Two groups: `redact/*` is the engine's own work (drop `telecom`,
//! `address` and `text` everywhere, holding each Bundle entry whole);
//! `ccm/*` is the whole response phase with the example CCM policies and
//! data classes — every record decided by Cedar, classes withheld as each
//! persona's `disclose` policies say — exactly as the proxy runs it.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use phigate::demo::data::DemoData;
use phigate::redact::{Action, Captured, Plan, Step, Transformer};
use serde_json::Value;
use std::hint::black_box;

const DROP: [&str; 3] = ["telecom", "address", "text"];

/// The plan; it keeps one transformer for the entries it holds, reused
/// from entry to entry.
#[derive(Default)]
struct Drop3 {
    inner: Option<Box<Transformer<Drop3>>>,
}

impl Plan for Drop3 {
    fn member(&mut self, _path: &[Step], key: &str) -> Action {
        if DROP.contains(&key) {
            Action::Remove
        } else {
            Action::Keep
        }
    }

    fn element(&mut self, path: &[Step], _index: usize) -> Action {
        if path.len() == 1 && path[0] == Step::Key("entry".into()) {
            Action::Capture
        } else {
            Action::Keep
        }
    }

    fn captured(
        &mut self,
        _path: &[Step],
        value: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Captured, String> {
        let inner = self
            .inner
            .get_or_insert_with(|| Box::new(Transformer::new(Drop3::default(), usize::MAX)));
        inner.reset();
        inner.feed(value, true, out).map_err(|e| e.to_string())?;
        Ok(Captured::Written)
    }
}

fn engine(body: &[u8]) -> Vec<u8> {
    let mut t = Transformer::new(Drop3::default(), 16 << 20);
    let mut out = Vec::with_capacity(body.len());
    // The upstream's body arrives in chunks.
    let mut chunks = body.chunks(16 * 1024).peekable();
    while let Some(chunk) = chunks.next() {
        t.feed(chunk, chunks.peek().is_none(), &mut out).unwrap();
    }
    out
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in DROP {
                m.remove(k);
            }
            m.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

fn baseline(body: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    strip(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn searchset(data: &DemoData, bytes: usize) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut size = 0;
    'fill: loop {
        for r in data.resources() {
            size += serde_json::to_vec(r).unwrap().len();
            entries.push(serde_json::json!({"fullUrl": "https://ehr.example/fhir/x", "resource": r, "search": {"mode": "match"}}));
            if size >= bytes {
                break 'fill;
            }
        }
    }
    serde_json::to_vec(
        &serde_json::json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}),
    )
    .unwrap()
}

fn redact(c: &mut Criterion) {
    let data = DemoData::generate(7, 200);
    let patient = serde_json::to_vec(data.of_type("Patient").next().unwrap()).unwrap();
    let cases = [
        ("patient_2k", patient),
        ("searchset_100k", searchset(&data, 100 * 1024)),
        ("searchset_5m", searchset(&data, 5 * 1024 * 1024)),
    ];
    for (name, body) in &cases {
        // Same answer, by meaning.
        let a: Value = serde_json::from_slice(&engine(body)).unwrap();
        let b: Value = serde_json::from_slice(&baseline(body)).unwrap();
        assert_eq!(a, b, "{name}");
        let mut g = c.benchmark_group(format!("redact/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        if body.len() > 1 << 20 {
            g.sample_size(10);
        }
        g.bench_function("engine", |b| b.iter(|| engine(black_box(body))));
        g.bench_function("serde_value", |b| b.iter(|| baseline(black_box(body))));
        g.finish();
    }
}

/// One persona's authorization, as the proxy holds it for a request: the
/// example policies and the demo's entities, the principal's entity and
/// the request's snapshot (what `CedarJudge` decides over).
struct Persona {
    authz: std::sync::Arc<phigate::authz::Authorization>,
    loaded: std::sync::Arc<phigate::authz::Loaded>,
}

fn persona(entities: &std::path::Path, claims: &serde_json::Value) -> Persona {
    use phigate::authz::config::{AuthorizationConfig, MappingKind};
    use phigate::authz::mapping::RequestView;
    use phigate::authz::{Authorization, RequestFacts, RouteAuthz, RouteAuthzConfig};
    let config = AuthorizationConfig {
        example_policies: true,
        entities: Some(entities.to_path_buf()),
        ..AuthorizationConfig::default()
    };
    let authz = std::sync::Arc::new(Authorization::from_config(&config).unwrap());
    let off = phigate::authz::cli::Offline::load(None, Some(entities), claims, &[]).unwrap();
    let principal = std::sync::Arc::new(off.principal.clone());
    let route = RouteAuthz::from_config(
        &RouteAuthzConfig {
            mapping: MappingKind::Fhir,
            ..RouteAuthzConfig::default()
        },
        "/fhir",
    )
    .unwrap();
    let view = RequestView {
        method: "GET",
        path: "/fhir/Patient/pat-0001",
        query: None,
        content_type: None,
        body: None,
        if_none_exist: None,
        stored: None,
    };
    let facts = RequestFacts {
        client_ip: "127.0.0.1".parse().unwrap(),
        device_trusted: false,
        purpose_of_use: None,
        break_glass: None,
        ticket: None,
        route: "fhir".into(),
        now: jiff::Timestamp::now(),
    };
    let decided = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(authz.decide_on(authz.snapshot(), &route, &principal, &view, facts));
    Persona {
        authz,
        loaded: std::sync::Arc::new(decided.loaded.expect("the request was decided")),
    }
}

/// The response phase for one persona, exactly as the proxy runs it (a
/// fresh judge per response: class decisions cached per request only).
fn ccm_run(p: &Persona, body: &[u8]) -> (usize, u32) {
    use phigate::proxy::redaction::CedarJudge;
    use phigate::redact::body::{BodyRedactor, Context};
    use phigate::redact::record::{Disclosure, RecordSettings};
    let judge = CedarJudge::new(p.authz.clone(), p.loaded.clone());
    let mut r = BodyRedactor::fhir(Context {
        judge,
        settings: RecordSettings {
            bases: vec!["https://ehr.example/fhir".into()],
            key: Some(std::sync::Arc::from(&[7u8; 32][..])),
            today: jiff::civil::date(2026, 12, 5),
            max_record: 16 << 20,
        },
        links: phigate::redact::links::Links::new(
            &["https://ehr.example/fhir".into()],
            "https://gw.example/fhir",
        ),
        counts: false,
        disclosure: Disclosure::default(),
    });
    let mut out = Vec::with_capacity(body.len());
    let mut chunks = body.chunks(16 * 1024).peekable();
    while let Some(chunk) = chunks.next() {
        r.feed(chunk, chunks.peek().is_none(), &mut out).unwrap();
    }
    let d = r.disclosure().cloned().unwrap_or_default();
    (out.len(), d.records)
}

fn ccm(c: &mut Criterion) {
    let data = DemoData::generate(7, 200);
    let dir = tempfile::tempdir().unwrap();
    let entities = dir.path().join("entities.json");
    let now = jiff::Timestamp::now();
    std::fs::write(
        &entities,
        phigate::demo::entities::cedar_entities(&data, now).to_string(),
    )
    .unwrap();
    let personas = [
        (
            "billing",
            serde_json::json!({"sub": "carol", "roles": ["billing"]}),
        ),
        (
            "care_manager",
            serde_json::json!({"sub": "alice", "roles": ["care_manager", "nurse"], "care_teams": ["team-01"], "amr": ["otp"]}),
        ),
        (
            "research",
            serde_json::json!({"sub": "rita", "roles": ["researcher"], "amr": ["otp"]}),
        ),
    ];
    let personas: Vec<(&str, Persona)> = personas
        .iter()
        .map(|(name, claims)| (*name, persona(&entities, claims)))
        .collect();
    let patient = serde_json::to_vec(data.get("Patient", "pat-0001").unwrap()).unwrap();
    let cases = [
        ("patient_2k", patient),
        ("searchset_100k", searchset(&data, 100 * 1024)),
        ("searchset_5m", searchset(&data, 5 * 1024 * 1024)),
    ];
    for (name, body) in &cases {
        let mut g = c.benchmark_group(format!("ccm/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        if body.len() > 1 << 20 {
            g.sample_size(10);
        }
        for (persona, p) in &personas {
            let (len, records) = ccm_run(p, body);
            eprintln!(
                "ccm/{name}/{persona}: {} -> {len} bytes, {records} record(s) shown",
                body.len()
            );
            g.bench_function(*persona, |b| b.iter(|| ccm_run(p, black_box(body))));
        }
        g.bench_function("serde_value", |b| b.iter(|| baseline(black_box(body))));
        g.finish();
    }
}

criterion_group!(benches, redact, ccm);
criterion_main!(benches);
