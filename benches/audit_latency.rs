//! The group commit's added latency: N request threads each append an
//! event and wait until it is durable, over and over, for a few seconds
//! per sync policy; prints p50/p99/p99.9 of append-to-durable and the
//! events/s reached. The spool is in `target/` on the machine's disk.
//! Run: `cargo bench --bench audit_latency` (nothing runs under a test
//! runner's `--list`).

use phigate::audit::frame::Kind;
use phigate::audit::{Spool, SpoolOptions, SyncPolicy};
use std::time::{Duration, Instant};

#[path = "audit.rs"]
#[allow(dead_code)]
mod events;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let threads: usize = std::env::var("AUDIT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let secs: u64 = std::env::var("AUDIT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let payload = events::sample().to_json();
    println!(
        "{threads} request threads, {secs} s per policy, {} B events",
        payload.len()
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "policy", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "events/s"
    );
    for (name, sync) in [
        ("os", SyncPolicy::Os),
        (
            "interval_200us",
            SyncPolicy::Interval(Duration::from_micros(200)),
        ),
        (
            "interval_1ms",
            SyncPolicy::Interval(Duration::from_millis(1)),
        ),
        (
            "interval_2ms",
            SyncPolicy::Interval(Duration::from_millis(2)),
        ),
        ("always", SyncPolicy::Always),
    ] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/bench-audit-latency")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let mut o = SpoolOptions::new(&dir);
        o.sync = sync;
        let (spool, _) = Spool::open(o).expect("open the bench spool");
        let until = Instant::now() + Duration::from_secs(secs);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let spool = spool.clone();
                let payload = payload.clone();
                std::thread::spawn(move || {
                    let mut lat = Vec::new();
                    while Instant::now() < until {
                        let t0 = Instant::now();
                        spool
                            .append(Kind::Event, payload.clone())
                            .wait()
                            .expect("durable");
                        lat.push(t0.elapsed().as_micros() as u64);
                    }
                    lat
                })
            })
            .collect();
        let mut all: Vec<u64> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        spool.close();
        all.sort_unstable();
        let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "{:<14} {:>10} {:>10} {:>10} {:>10} {:>12.0}",
            name,
            q(0.5),
            q(0.99),
            q(0.999),
            all[all.len() - 1],
            all.len() as f64 / secs as f64
        );
    }
}
