//! Per-request cost of the pure hygiene and routing stages.
//! Run: `cargo bench --bench hygiene`.

use criterion::{criterion_group, criterion_main, Criterion};
use phigate::http::{
    check_framing_for_version, framing_headers_from_raw, normalize_path, PathPolicy,
};
use phigate::proxy::Router;
use std::hint::black_box;

fn hygiene(c: &mut Criterion) {
    let policy = PathPolicy::default();
    let clean = b"/fhir/Observation?patient=Patient/pat-0001&_count=50".as_slice();
    let encoded = b"/fhir/Patient/pat%2D0001/%24everything?_count=20".as_slice();
    c.bench_function("normalize_path/clean", |b| {
        b.iter(|| normalize_path(black_box(clean), &policy))
    });
    c.bench_function("normalize_path/encoded", |b| {
        b.iter(|| normalize_path(black_box(encoded), &policy))
    });
    let head = b"GET /fhir/Patient/pat-0001 HTTP/1.1\r\nHost: ehr.example.org\r\nUser-Agent: bench\r\nAccept: application/fhir+json\r\nAuthorization: Bearer abc.def.ghi\r\nX-Request-Id: 0192-abc\r\n\r\n";
    c.bench_function("framing/raw_head", |b| {
        b.iter(|| {
            check_framing_for_version(
                ::http::Version::HTTP_11,
                &framing_headers_from_raw(black_box(head)),
            )
        })
    });
    let router = Router::new((0..20).map(|i| (vec![], format!("/app{i}"), i)).chain([(
        vec!["ehr.example.org".to_string()],
        "/fhir".to_string(),
        99,
    )]));
    c.bench_function("router/21_routes", |b| {
        b.iter(|| {
            router.route(
                black_box(Some("ehr.example.org")),
                black_box("/fhir/Patient/1"),
            )
        })
    });
}

criterion_group!(benches, hygiene);
criterion_main!(benches);
