//! Peak memory of the response phase does not grow with the response: a
//! 5 MB and a 50 MB searchset are generated entry by entry, fed through
//! the redactor in 16 KiB chunks (the output is counted and dropped, as the
//! proxy hands it on), and the process's peak resident size (VmHWM) is read
//! after each. Run: `cargo bench --bench redact_memory`.

use phigate::demo::data::DemoData;
use phigate::redact::body::{BodyRedactor, Context};
use phigate::redact::record::{Disclosure, Judge, RecordSettings};

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Streams a searchset of about `bytes` through the redactor; returns
/// (input bytes, output bytes).
fn stream(off: &phigate::authz::cli::Offline, data: &DemoData, bytes: usize) -> (usize, usize) {
    let mut judge = off.judge().quiet();
    let mut r = BodyRedactor::fhir(Context {
        judge: &mut judge as &mut (dyn Judge + '_),
        settings: RecordSettings {
            bases: vec![],
            key: None,
            today: jiff::civil::date(2026, 12, 5),
            max_record: 16 << 20,
        },
        links: Default::default(),
        counts: false,
        disclosure: Disclosure::default(),
    });
    let mut pending: Vec<u8> = br#"{"resourceType":"Bundle","type":"searchset","entry":["#.to_vec();
    let (mut fed, mut sent) = (0usize, 0usize);
    let mut out = Vec::new();
    let mut first = true;
    'fill: loop {
        for resource in data.resources() {
            if !first {
                pending.push(b',');
            }
            first = false;
            serde_json::to_writer(
                &mut pending,
                &serde_json::json!({"fullUrl": "https://ehr.example/fhir/x", "resource": resource}),
            )
            .unwrap();
            while pending.len() >= 16 * 1024 {
                let chunk: Vec<u8> = pending.drain(..16 * 1024).collect();
                fed += chunk.len();
                r.feed(&chunk, false, &mut out).unwrap();
                sent += out.len();
                out.clear();
            }
            if fed >= bytes {
                break 'fill;
            }
        }
    }
    pending.extend_from_slice(b"]}");
    fed += pending.len();
    r.feed(&pending, true, &mut out).unwrap();
    sent += out.len();
    (fed, sent)
}

fn main() {
    // `cargo bench` passes `--bench`; a test runner listing or running every
    // target (`--list`, `--test`) gets nothing: this is a measurement.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let data = DemoData::generate(7, 200);
    let dir = tempfile::tempdir().unwrap();
    let entities = dir.path().join("entities.json");
    std::fs::write(
        &entities,
        phigate::demo::entities::cedar_entities(&data, jiff::Timestamp::now()).to_string(),
    )
    .unwrap();
    let claims = serde_json::json!({"sub": "alice", "roles": ["care_manager", "nurse"], "care_teams": ["team-01"], "amr": ["otp"]});
    let off = phigate::authz::cli::Offline::load(None, Some(&entities), &claims, &[]).unwrap();
    let base = vm_hwm_kib();
    println!("redact_memory: peak RSS before streaming: {base} KiB");
    for mb in [5usize, 50] {
        let started = std::time::Instant::now();
        let (fed, sent) = stream(&off, &data, mb << 20);
        let hwm = vm_hwm_kib();
        println!(
            "redact_memory: {:>3} MB searchset ({fed} bytes in, {sent} out, {:.2} s): peak RSS {hwm} KiB (+{} KiB over the start)",
            mb,
            started.elapsed().as_secs_f64(),
            hwm.saturating_sub(base)
        );
    }
}
