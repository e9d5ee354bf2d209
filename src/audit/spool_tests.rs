//! The spool written by its real writer thread, read back and verified;
//! then tampered with in every way `audit verify` must name.

use super::checkpoint::{NoteSigner, NoteVerifier};
use super::frame::{self, Kind};
use super::segment;
use super::spool::{Spool, SpoolOptions, SyncPolicy};
use super::verify::{verify, Finding, Report, Verify};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn options(dir: &Path, signer: &Arc<NoteSigner>) -> SpoolOptions {
    let mut o = SpoolOptions::new(dir);
    o.sync = SyncPolicy::Interval(Duration::from_millis(1));
    o.signer = Some(signer.clone());
    o.origin = "phigate.test/audit".into();
    o.checkpoint_records = 5;
    o
}

fn signer() -> Arc<NoteSigner> {
    Arc::new(NoteSigner::generate("phigate.test/audit").unwrap())
}

/// Writes `n` events and closes the spool.
fn write(dir: &Path, signer: &Arc<NoteSigner>, n: usize) -> Vec<u64> {
    let (spool, _) = Spool::open(options(dir, signer)).unwrap();
    let tickets: Vec<_> = (0..n)
        .map(|i| spool.append(Kind::Event, format!("{{\"i\":{i}}}").into_bytes()))
        .collect();
    let seqs = tickets.into_iter().map(|t| t.wait().unwrap()).collect();
    spool.close();
    seqs
}

/// Appends `n` events, each durable before the next is written.
fn append_one_by_one(spool: &Spool, n: usize) {
    for i in 0..n {
        spool
            .append(Kind::Event, format!("{{\"i\":{i}}}").into_bytes())
            .wait()
            .unwrap();
    }
}

fn check(dir: &Path, key: &NoteVerifier, held: Option<&str>) -> Vec<Finding> {
    check_with(dir, key, held, crate::audit::verify::MAX_UNSIGNED)
}

/// Rewrites the only segment's records through `f` (re-framed, so each
/// record's own checksum is valid: the tamperer knows the format).
fn rewrite(dir: &Path, f: impl FnOnce(&mut Vec<(u64, [u8; 32], Kind, Vec<u8>)>)) {
    let seg = segment::list(dir).unwrap().remove(0).path;
    let bytes = std::fs::read(&seg).unwrap();
    let mut records = Vec::new();
    let mut at = segment::SEGMENT_HEADER;
    while at < bytes.len() {
        let r = frame::decode(&bytes[at..]).unwrap();
        records.push((r.seq, r.prev, r.kind, r.payload.to_vec()));
        at += r.len;
    }
    f(&mut records);
    let mut out = bytes[..segment::SEGMENT_HEADER].to_vec();
    for (seq, prev, kind, payload) in records {
        frame::encode(&mut out, seq, &prev, kind, &payload);
    }
    std::fs::write(&seg, out).unwrap();
}

#[test]
fn records_are_numbered_in_order_and_the_chain_verifies_across_restarts() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    let first = write(d.path(), &s, 12);
    assert!(first.windows(2).all(|w| w[0] < w[1]));
    let second = write(d.path(), &s, 3);
    assert!(second[0] > *first.last().unwrap());
    let report = verified(
        d.path(),
        &s.verifier(),
        None,
        crate::audit::verify::MAX_UNSIGNED,
    );
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.events, 15);
    assert!(report.checkpoints >= 2, "a checkpoint every 5 records");
    let held = std::fs::read_to_string(d.path().join("checkpoint")).unwrap();
    assert!(check(d.path(), &s.verifier(), Some(&held)).is_empty());
}

#[test]
fn many_waiting_appends_share_a_sync() {
    let d = tempfile::tempdir().unwrap();
    let mut o = SpoolOptions::new(d.path());
    o.sync = SyncPolicy::Always;
    let (spool, _) = Spool::open(o).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        spool
                            .append(Kind::Event, format!("{t}-{i}").into_bytes())
                            .wait()
                            .unwrap()
                    })
                    .count()
            })
        })
        .collect();
    let n: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(n, 400);
    assert_eq!(*spool.durable().borrow(), 400);
    spool.close();
    let report = verify(
        d.path(),
        &Verify {
            key: None,
            checkpoint: None,
            origin: None,
            max_unsigned: crate::audit::verify::MAX_UNSIGNED,
        },
    )
    .unwrap();
    assert!(report.ok() && report.events == 400, "{report:?}");
}

#[test]
fn a_flipped_byte_is_named() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    write(d.path(), &s, 4);
    let seg = segment::list(d.path()).unwrap().remove(0).path;
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let f = check(d.path(), &s.verifier(), None);
    assert!(matches!(f.as_slice(), [Finding::Damaged { .. }]), "{f:?}");
}

#[test]
fn a_modified_record_with_a_recomputed_checksum_is_named() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    write(d.path(), &s, 4);
    rewrite(d.path(), |r| r[1].3 = b"{\"i\":99}".to_vec());
    assert_eq!(
        check(d.path(), &s.verifier(), None),
        vec![Finding::Modified { seq: 1 }]
    );
}

#[test]
fn a_deleted_record_is_named() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    write(d.path(), &s, 4);
    rewrite(d.path(), |r| {
        r.remove(2);
    });
    assert_eq!(
        check(d.path(), &s.verifier(), None),
        vec![Finding::Missing { from: 2, to: 2 }]
    );
}

#[test]
fn swapped_records_are_named() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    write(d.path(), &s, 4);
    rewrite(d.path(), |r| r.swap(1, 2));
    assert_eq!(
        check(d.path(), &s.verifier(), None),
        vec![Finding::Swapped { a: 1, b: 2 }]
    );
}

#[test]
fn a_truncated_tail_is_named_against_a_held_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    write(d.path(), &s, 12);
    let held = std::fs::read_to_string(d.path().join("checkpoint")).unwrap();
    rewrite(d.path(), |r| r.truncate(4));
    let f = check(d.path(), &s.verifier(), Some(&held));
    assert!(
        matches!(f.as_slice(), [Finding::Truncated { records: 4, .. }]),
        "{f:?}"
    );
}

#[test]
fn a_forged_checkpoint_is_named() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    write(d.path(), &s, 6);
    let forger = NoteSigner::generate("phigate.test/audit").unwrap();
    let forged = super::checkpoint::Checkpoint {
        origin: "phigate.test/audit".into(),
        size: 100,
        hash: [0; 32],
    }
    .sign(&forger);
    let f = check(d.path(), &s.verifier(), Some(&forged));
    assert!(
        matches!(f.as_slice(), [Finding::BadSignature { .. }]),
        "{f:?}"
    );
    // A checkpoint record rewritten in place (re-framed) fails too.
    rewrite(d.path(), |r| {
        let i = r.iter().position(|r| r.2 == Kind::Checkpoint).unwrap();
        r[i].3 = forged.clone().into_bytes();
    });
    let f = check(d.path(), &s.verifier(), None);
    assert!(
        f.iter().any(|f| matches!(f, Finding::BadSignature { .. })),
        "{f:?}"
    );
}

/// Rewrites the only segment as a careful forger would: records through
/// `f`, then renumbered from the first one kept and re-chained, every
/// checksum and link valid.
fn forge(dir: &Path, f: impl FnOnce(&mut Vec<(u64, [u8; 32], Kind, Vec<u8>)>)) {
    rewrite(dir, |r| {
        f(r);
        let Some(first) = r.first().map(|x| x.0) else {
            return;
        };
        let mut prev = r[0].1;
        let mut buf = Vec::new();
        for (i, rec) in r.iter_mut().enumerate() {
            rec.0 = first + i as u64;
            rec.1 = prev;
            buf.clear();
            prev = frame::encode(&mut buf, rec.0, &rec.1, rec.2, &rec.3);
        }
    });
}

fn check_with(
    dir: &Path,
    key: &NoteVerifier,
    held: Option<&str>,
    max_unsigned: u64,
) -> Vec<Finding> {
    verified(dir, key, held, max_unsigned).findings
}

/// `audit verify` with the test log's key and origin.
fn verified(dir: &Path, key: &NoteVerifier, held: Option<&str>, max_unsigned: u64) -> Report {
    verify(
        dir,
        &Verify {
            key: Some(key),
            checkpoint: held,
            origin: Some("phigate.test/audit"),
            max_unsigned,
        },
    )
    .unwrap()
}

#[test]
fn records_deleted_from_the_start_are_named() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    write(d.path(), &s, 6);
    forge(d.path(), |r| {
        r.drain(..2);
    });
    let f = check(d.path(), &s.verifier(), None);
    assert!(f.contains(&Finding::MissingStart { first: 2 }), "{f:?}");
}

#[test]
fn stripped_checkpoints_are_named_with_the_key() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    // One at a time: a checkpoint every 5 records.
    let (spool, _) = Spool::open(options(d.path(), &s)).unwrap();
    append_one_by_one(&spool, 30);
    spool.close();
    drop(spool);
    let f = check_with(d.path(), &s.verifier(), None, 10);
    assert!(f.is_empty(), "{f:?}");
    forge(d.path(), |r| r.retain(|x| x.2 != Kind::Checkpoint));
    let f = check_with(d.path(), &s.verifier(), None, 10);
    assert!(
        f.iter().any(|f| matches!(f, Finding::Unsigned { .. })),
        "{f:?}"
    );
}

#[test]
fn a_held_checkpoint_whose_record_is_gone_is_named() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    write(d.path(), &s, 12);
    let held = std::fs::read_to_string(d.path().join("checkpoint")).unwrap();
    let size: usize = held.lines().nth(1).unwrap().parse().unwrap();
    // The covered record is replaced by a forged one, numbered and chained
    // as if it belonged.
    forge(d.path(), |r| r[size - 1].3 = b"{\"forged\":true}".to_vec());
    let f = check(d.path(), &s.verifier(), Some(&held));
    assert!(
        f.iter().any(|f| matches!(
            f,
            Finding::CheckpointMismatch { .. } | Finding::NotCovered { .. }
        )),
        "{f:?}"
    );
}

#[test]
fn checkpoints_of_another_log_are_named() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    let mut o = options(d.path(), &s);
    o.origin = "another.log/audit".into();
    let (spool, _) = Spool::open(o).unwrap();
    append_one_by_one(&spool, 6);
    spool.close();
    drop(spool);
    let f = check(d.path(), &s.verifier(), None);
    assert!(
        f.iter().any(|f| matches!(f, Finding::WrongOrigin { .. })),
        "{f:?}"
    );
}

#[test]
fn a_second_writer_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    let (first, _) = Spool::open(options(d.path(), &s)).unwrap();
    assert!(Spool::open(options(d.path(), &s)).is_err());
    first.close();
}

#[test]
fn retention_anchors_the_new_start_and_verify_accepts_it() {
    let d = tempfile::tempdir().unwrap();
    let s = signer();
    let mut o = options(d.path(), &s);
    o.segment_bytes = 2_000;
    o.retention = super::retention::Retention {
        max_bytes: Some(5_000),
        max_age: None,
        sinks: vec![],
    };
    let (spool, _) = Spool::open(o).unwrap();
    for i in 0..200 {
        spool
            .append(
                Kind::Event,
                format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes(),
            )
            .wait()
            .unwrap();
    }
    spool.close();
    drop(spool);
    let segments = segment::list(d.path()).unwrap();
    assert!(
        segments[0].first_seq > 0,
        "retention deleted the oldest segments"
    );
    let report = verified(
        d.path(),
        &s.verifier(),
        None,
        crate::audit::verify::MAX_UNSIGNED,
    );
    assert!(report.ok(), "{:?}", report.findings);
}
