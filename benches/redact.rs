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

/// The response phase for one persona, over the example policies and the
/// demo data's entities.
fn ccm_run(off: &phigate::authz::cli::Offline, body: &[u8]) -> (usize, u32) {
    use phigate::redact::body::{BodyRedactor, Context};
    use phigate::redact::record::{Disclosure, RecordSettings};
    let mut judge = off.judge();
    let mut r = BodyRedactor::fhir(Context {
        judge: &mut judge as &mut (dyn phigate::redact::record::Judge + '_),
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
        for (persona, claims) in &personas {
            let off =
                phigate::authz::cli::Offline::load(None, Some(&entities), claims, &[]).unwrap();
            let (len, records) = ccm_run(&off, body);
            eprintln!(
                "ccm/{name}/{persona}: {} -> {len} bytes, {records} record(s) shown",
                body.len()
            );
            g.bench_function(*persona, |b| b.iter(|| ccm_run(&off, black_box(body))));
        }
        g.bench_function("serde_value", |b| b.iter(|| baseline(black_box(body))));
        g.finish();
    }
}

criterion_group!(benches, redact, ccm);
criterion_main!(benches);
