//! The audit trail's costs per event, against the target of
//! 100,000 events/s on one core: the canonical event serialized, each
//! renderer, and spool appends through the real writer thread (framing,
//! CRC32C, SHA-256 chain, one `write` per batch) under each sync policy.
//! The spool lives in `target/` (the machine's disk, so `fdatasync` is
//! real). Run: `cargo bench --bench audit`; the group commit's latency
//! under concurrent requests is `cargo bench --bench audit_latency`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use phigate::audit::event::{Actor, DecisionInfo, RedactionInfo, RequestInfo, Source};
use phigate::audit::frame::Kind;
use phigate::audit::render::{self, Format};
use phigate::audit::{AuditEvent, EventKind, Outcome, Spool, SpoolOptions, SyncPolicy};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// An outcome event of a searchset read: the size the proxy writes most.
pub fn sample() -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::Outcome, Outcome::Success);
    e.access_id = Some(uuid::Uuid::now_v7().to_string());
    e.actor = Some(Actor {
        user_id: "alice".into(),
        issuer: "https://idp.hospital.example".into(),
        kind: "user".into(),
        name: Some("Alice Example".into()),
        roles: vec!["care_manager".into()],
        organization: Some("org-0001".into()),
        fhir_user: Some("Practitioner/prac-0001".into()),
        session_hash: None,
        auth_method: "bearer".into(),
        mfa: true,
    });
    e.source = Some(Source {
        ip: Some("10.1.2.3".into()),
        port: Some(51234),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) EHR-Client/4.2".into()),
        ..Default::default()
    });
    e.request = Some(RequestInfo {
        request_id: uuid::Uuid::now_v7().to_string(),
        route: Some("fhir".into()),
        method: "GET".into(),
        path: Some("/fhir/Observation".into()),
        query: Some("patient=*&_count=*".into()),
        operation: Some("search".into()),
        resources: vec!["Observation".into()],
        ..Default::default()
    });
    e.patients = vec!["pat-0001".into(), "pat-0003".into(), "pat-0011".into()];
    e.purpose_of_use = Some("TREAT".into());
    e.decision = Some(DecisionInfo {
        allowed: true,
        outcome: "allow".into(),
        reason: "permitted".into(),
        policies: vec!["care-team-clinical-access".into()],
        policy_version: Some("24acb336ff0b34d3".into()),
        entities_version: Some("c92d0c878bc4c6d3".into()),
        mode: "enforce".into(),
    });
    e.redaction = Some(RedactionInfo {
        records_shown: 48,
        records_removed: [("Observation".to_string(), 12)].into(),
        values_redacted: [("notes".to_string(), 48)].into(),
    });
    e.status = Some(200);
    e.bytes = Some(48_213);
    e.latency_ms = Some(3);
    e
}

fn spool_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-audit")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn bench(c: &mut Criterion) {
    // The appends open real spools: nothing runs (or locks them) when a
    // test runner only lists the targets.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let e = sample();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("event_json", |b| b.iter(|| black_box(e.to_json())));
    for f in Format::ALL {
        g.bench_function(format!("render/{f}"), |b| {
            b.iter(|| black_box(render::render(f, &e, 42, "0.1.0")))
        });
    }
    for (name, sync) in [
        ("os", SyncPolicy::Os),
        (
            "interval_1ms",
            SyncPolicy::Interval(Duration::from_millis(1)),
        ),
        ("always", SyncPolicy::Always),
    ] {
        let mut o = SpoolOptions::new(&spool_dir(name));
        o.sync = sync;
        let (spool, _) = Spool::open(o).expect("open the bench spool");
        // One request thread serializes and appends (what the exit pays
        // per record); the last ticket of the batch is awaited, so every
        // record counted is durable under the policy. The writer thread
        // frames, checksums, chains, writes and syncs on the other core.
        g.bench_function(format!("append/{name}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut last = None;
                for _ in 0..iters {
                    last = Some(spool.append(Kind::Event, e.to_json()));
                }
                if let Some(t) = last {
                    t.wait().expect("durable");
                }
                start.elapsed()
            })
        });
        spool.close();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
