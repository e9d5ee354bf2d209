//! `phigate audit verify`: reads a spool front to back and names every
//! break in it by sequence number — a record modified, deleted or moved, a
//! gap, damage, a checkpoint that does not verify or does not match the
//! records, a tail cut short of a checkpoint held elsewhere.
//!
//! It streams (one segment in memory) and keeps one record of look-ahead,
//! which is what telling two swapped records from a deletion needs.

use super::checkpoint::{self, NoteVerifier};
use super::frame::{Hash, Kind};
use super::segment::{Item, Reader, Stored};
use std::path::Path;

/// One thing wrong (or worth saying) about a spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Bytes that are not a record (changed after writing, or cut).
    Damaged {
        segment: String,
        offset: usize,
        after_seq: Option<u64>,
        what: &'static str,
    },
    /// A file in `segments/` that is not a segment.
    BadSegment(String),
    /// Record `seq`'s bytes no longer hash to what record `seq + 1` holds.
    Modified { seq: u64 },
    /// Records `from..=to` are not there.
    Missing { from: u64, to: u64 },
    /// Records `a` and `b` are in each other's place.
    Swapped { a: u64, b: u64 },
    /// Record `seq` appears where it cannot (before records it follows).
    OutOfOrder { seq: u64, after: u64 },
    /// A checkpoint whose signature does not verify with the key.
    BadSignature { at: String, error: String },
    /// A checkpoint that verifies but names a different head.
    CheckpointMismatch { size: u64, at: String },
    /// The spool ends before a checkpoint's size.
    Truncated { checkpoint_size: u64, records: u64 },
    /// A checkpoint names another log.
    WrongOrigin { at: String, origin: String },
    /// The spool starts after record 0 and no retention anchor accounts
    /// for the records before it.
    MissingStart { first: u64 },
    /// A segment does not start with the record its header names.
    MisplacedSegment {
        segment: String,
        header_seq: u64,
        first_seq: u64,
    },
    /// The given checkpoint covers a record the spool does not hold.
    NotCovered { size: u64 },
    /// With a key: more records in a row than `max_unsigned` without a
    /// signed checkpoint over them (checkpoints removed and the chain
    /// rebuilt).
    Unsigned { from: u64, to: u64 },
}

impl Finding {
    pub fn describe(&self) -> String {
        match self {
            Finding::Damaged { segment, offset, after_seq, what } => match after_seq {
                Some(s) => format!("damaged record after seq {s} ({what}) in {segment} at byte {offset}"),
                None => format!("damaged record at the start of {segment} ({what}) at byte {offset}"),
            },
            Finding::BadSegment(p) => format!("{p} is not a spool segment"),
            Finding::Modified { seq } => format!(
                "record {seq} was modified: its hash does not match the link in record {}",
                seq + 1
            ),
            Finding::Missing { from, to } if from == to => {
                format!("record {from} is missing (deleted)")
            }
            Finding::Missing { from, to } => format!("records {from}..={to} are missing (a gap)"),
            Finding::Swapped { a, b } => format!("records {a} and {b} are reordered (swapped)"),
            Finding::OutOfOrder { seq, after } => {
                format!("record {seq} is out of order (found after record {after})")
            }
            Finding::BadSignature { at, error } => format!("checkpoint {at}: {error}"),
            Finding::CheckpointMismatch { size, at } => format!(
                "checkpoint {at} (size {size}) names a head that does not match record {}",
                size.saturating_sub(1)
            ),
            Finding::Truncated { checkpoint_size, records } => format!(
                "the spool is truncated: a checkpoint covers {checkpoint_size} records but the spool ends after {records}"
            ),
            Finding::WrongOrigin { at, origin } => {
                format!("checkpoint {at} is for another log ({origin})")
            }
            Finding::MissingStart { first } => format!(
                "records 0..={} are missing: the spool starts at record {first} and no retention anchor accounts for them",
                first - 1
            ),
            Finding::MisplacedSegment { segment, header_seq, first_seq } => format!(
                "{segment} should start at record {header_seq} but starts at {first_seq} (records removed from its start, or renamed)"
            ),
            Finding::NotCovered { size } => format!(
                "the given checkpoint covers record {} but the spool does not hold it",
                size.saturating_sub(1)
            ),
            Finding::Unsigned { from, to } => format!(
                "records {from}..={to} have no signed checkpoint over them (checkpoints removed?)"
            ),
        }
    }
}

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub records: u64,
    pub events: u64,
    /// Checkpoints in the spool that verified.
    pub checkpoints: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The external checkpoint held (when one was given and it verified).
    pub held_checkpoint: Option<u64>,
    /// The last segment ends in an incomplete record: a write in progress
    /// (phigate running) or a torn write the next start truncates.
    pub tail_incomplete: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verification inputs.
pub struct Verify<'a> {
    /// With a key, checkpoint signatures are checked and records must be
    /// covered by one at least every `max_unsigned` records.
    pub key: Option<&'a NoteVerifier>,
    /// A checkpoint held outside the host (from a SIEM), as text.
    pub checkpoint: Option<&'a str>,
    /// The log's expected origin (checked when set; otherwise every
    /// checkpoint must name the same one).
    pub origin: Option<&'a str>,
    /// With a key: the most records in a row without a signed checkpoint
    /// (the spool signs every `checkpoint_records`, default 10,000, or
    /// `checkpoint_interval`, and at every clean shutdown).
    pub max_unsigned: u64,
}

/// The default for [`Verify::max_unsigned`]: ten times the default
/// checkpoint cadence.
pub const MAX_UNSIGNED: u64 = 100_000;

struct State<'a> {
    opts: &'a Verify<'a>,
    report: Report,
    /// The last record in order: (seq, hash).
    last: Option<(u64, Hash)>,
    /// A record that jumped ahead, held one step to tell a swap from a gap.
    ahead: Option<Stored>,
    /// The external checkpoint, opened: (size, hash).
    held: Option<(u64, Hash)>,
    held_hash_seen: Option<Hash>,
    /// The first record's link, and the anchors found: (size, hash).
    first_prev: Option<Hash>,
    anchors: Vec<(u64, Hash)>,
    /// The first origin seen on a checkpoint or anchor.
    origin_seen: Option<String>,
    /// Where the current run of records without a signed checkpoint began.
    unsigned_from: Option<u64>,
    /// Damage was just reported: the records it took are not reported
    /// again as missing.
    after_damage: bool,
}

pub fn verify(dir: &Path, opts: &Verify<'_>) -> std::io::Result<Report> {
    let mut st = State {
        opts,
        report: Report::default(),
        last: None,
        ahead: None,
        held: None,
        held_hash_seen: None,
        first_prev: None,
        anchors: Vec::new(),
        origin_seen: None,
        unsigned_from: None,
        after_damage: false,
    };
    if let Some(text) = opts.checkpoint {
        match opts.key.map(|k| checkpoint::open(text, k)) {
            Some(Ok(c)) => {
                st.check_origin("(given)", &c.origin);
                st.held = Some((c.size, c.hash));
                st.report.held_checkpoint = Some(c.size);
            }
            Some(Err(e)) => st.report.findings.push(Finding::BadSignature {
                at: "(given)".into(),
                error: e.to_string(),
            }),
            None => st.report.findings.push(Finding::BadSignature {
                at: "(given)".into(),
                error: "no public key to verify it with (--pubkey)".into(),
            }),
        }
    }
    // A running spool may be mid-write at its very end: that is said, not
    // failed (a cut tail is caught against a held checkpoint).
    let mut reader = Reader::live(dir)?;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Record(r) => st.record(r),
            Item::Damaged {
                segment,
                offset,
                damage,
                after_seq,
            } => {
                st.after_damage = true;
                st.report.findings.push(Finding::Damaged {
                    segment: segment.display().to_string(),
                    offset,
                    after_seq,
                    what: damage.as_str(),
                })
            }
            Item::BadSegment(p) => st
                .report
                .findings
                .push(Finding::BadSegment(p.display().to_string())),
            Item::MisplacedSegment {
                segment,
                header_seq,
                first_seq,
            } => st.report.findings.push(Finding::MisplacedSegment {
                segment: segment.display().to_string(),
                header_seq,
                first_seq,
            }),
        }
    }
    if let Some(r) = st.ahead.take() {
        st.gap_then(r);
    }
    st.report.tail_incomplete = reader.tail_incomplete();
    // With a key, a long run of records no checkpoint covers is one whose
    // checkpoints were removed (the spool signs every N records or T
    // seconds and at every clean shutdown); a short trailing run is a
    // running spool's newest records.
    if let (Some(_), Some(from)) = (opts.key, st.unsigned_from) {
        let to = st.last.map_or(from, |(s, _)| s);
        if to.saturating_sub(from) >= opts.max_unsigned {
            st.report.findings.push(Finding::Unsigned { from, to });
        }
    }
    // The start: record 0 links to nothing; a later first record links to
    // a retention anchor the spool holds.
    if let (Some(first), Some(prev)) = (st.report.first_seq, st.first_prev) {
        let anchored = st
            .anchors
            .iter()
            .any(|(size, hash)| *size == first && *hash == prev);
        if (first == 0 && prev != [0; 32]) || (first > 0 && !anchored) {
            st.report.findings.push(Finding::MissingStart {
                first: first.max(1),
            });
        }
    }
    if let Some((size, hash)) = st.held {
        let records = st.last.map_or(0, |(s, _)| s.saturating_add(1));
        if records < size {
            st.report.findings.push(Finding::Truncated {
                checkpoint_size: size,
                records,
            });
        } else if size > 0 {
            match st.held_hash_seen {
                Some(h) if h != hash => st.report.findings.push(Finding::CheckpointMismatch {
                    size,
                    at: "(given)".into(),
                }),
                Some(_) => {}
                None => st.report.findings.push(Finding::NotCovered { size }),
            }
        }
    }
    Ok(st.report)
}

impl State<'_> {
    fn check_origin(&mut self, at: &str, origin: &str) {
        let want = self
            .opts
            .origin
            .map(str::to_string)
            .or_else(|| self.origin_seen.clone());
        if want.is_none() {
            self.origin_seen = Some(origin.to_string());
        }
        if want.is_some_and(|want| want != origin) {
            self.report.findings.push(Finding::WrongOrigin {
                at: at.to_string(),
                origin: origin.to_string(),
            });
        }
    }

    fn record(&mut self, r: Stored) {
        self.report.records += 1;
        if self.report.first_seq.is_none() {
            self.report.first_seq = Some(r.seq);
            self.first_prev = Some(r.prev);
        }
        let Some((last_seq, _)) = self.last else {
            // The first record: retention may have removed what came before.
            return self.accept(r);
        };
        let expected = last_seq.saturating_add(1);
        if let Some(ahead) = self.ahead.take() {
            if r.seq == expected {
                // `ahead` and this one are in each other's place.
                self.report.findings.push(Finding::Swapped {
                    a: r.seq,
                    b: ahead.seq,
                });
                self.accept_unlinked(r);
                self.accept_unlinked(ahead);
                return;
            }
            self.gap_then(ahead);
            return self.record_after_ahead(r);
        }
        self.record_after_ahead(r)
    }

    fn record_after_ahead(&mut self, r: Stored) {
        let Some((last_seq, _)) = self.last else {
            return self.accept(r);
        };
        let expected = last_seq.saturating_add(1);
        if r.seq == expected {
            self.accept(r)
        } else if r.seq > expected {
            self.ahead = Some(r);
        } else {
            self.report.findings.push(Finding::OutOfOrder {
                seq: r.seq,
                after: last_seq,
            });
        }
    }

    /// `r` came after a gap.
    fn gap_then(&mut self, r: Stored) {
        let from = self.last.map_or(0, |(s, _)| s.saturating_add(1));
        if !self.after_damage {
            self.report.findings.push(Finding::Missing {
                from,
                to: r.seq - 1,
            });
        }
        self.accept_unlinked(r);
    }

    fn accept(&mut self, r: Stored) {
        if let Some((seq, hash)) = self.last {
            if r.prev != hash && r.seq == seq.saturating_add(1) {
                self.report.findings.push(Finding::Modified { seq });
            }
        }
        self.accept_unlinked(r);
    }

    /// Takes `r` as the chain's new end without checking its link (already
    /// reported).
    fn accept_unlinked(&mut self, r: Stored) {
        self.after_damage = false;
        if let Some((size, _)) = self.held {
            if r.seq.saturating_add(1) == size {
                self.held_hash_seen = Some(r.hash);
            }
        }
        match r.kind {
            Kind::Event => self.report.events += 1,
            Kind::Checkpoint => self.checkpoint(&r),
            Kind::Anchor => self.anchor(&r),
        }
        if self.opts.key.is_some() && r.kind != Kind::Checkpoint {
            self.unsigned_from.get_or_insert(r.seq);
        }
        if self.last.is_none_or(|(s, _)| r.seq > s) {
            self.last = Some((r.seq, r.hash));
        }
        self.report.last_seq = self.last.map(|(s, _)| s);
    }

    /// A retention anchor: where the records deleted before it ended.
    fn anchor(&mut self, r: &Stored) {
        let at = format!("anchor at record {}", r.seq);
        let text = String::from_utf8_lossy(&r.payload);
        let opened = match self.opts.key {
            Some(key) => checkpoint::open(&text, key).map_err(|e| e.to_string()),
            None => checkpoint::parse_unsigned(&text).map_err(|e| e.to_string()),
        };
        match opened {
            Ok(c) => {
                self.check_origin(&at, &c.origin);
                self.anchors.push((c.size, c.hash));
            }
            Err(error) => self
                .report
                .findings
                .push(Finding::BadSignature { at, error }),
        }
    }

    fn checkpoint(&mut self, r: &Stored) {
        let at = format!("record {}", r.seq);
        let Some(key) = self.opts.key else {
            return;
        };
        let text = String::from_utf8_lossy(&r.payload);
        match checkpoint::open(&text, key) {
            Ok(c) => {
                self.check_origin(&at, &c.origin);
                if c.size != r.seq || c.hash != r.prev {
                    self.report
                        .findings
                        .push(Finding::CheckpointMismatch { size: c.size, at });
                } else {
                    self.report.checkpoints += 1;
                    if let Some(from) = self.unsigned_from.take() {
                        if r.seq.saturating_sub(from) > self.opts.max_unsigned {
                            self.report.findings.push(Finding::Unsigned {
                                from,
                                to: r.seq.saturating_sub(1),
                            });
                        }
                    }
                }
            }
            Err(e) => self.report.findings.push(Finding::BadSignature {
                at,
                error: e.to_string(),
            }),
        }
    }
}
