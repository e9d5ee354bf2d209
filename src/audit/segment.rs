//! Segment files: the spool's records on disk, recovery at start-up, and
//! reading them back in order.
//!
//! ```text
//! DIR/segments/00000000000000001042.seg   "PGSEG001" ‖ first seq (u64 LE) ‖ records…
//! DIR/quarantine/                         copies of damaged segments, kept as evidence
//! ```
//!
//! Recovery reads the last segment only. Bytes that do not decode at its
//! end, with no record after them, are a torn write and are truncated.
//! Damage with records after it is not a torn write: the segment is copied
//! to `quarantine/`, an alert is raised, the records stay where they are
//! (readers report the damaged range, never skip it silently), and writing
//! continues in a new segment.

use super::frame::{self, Damage, Hash, Kind};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const SEGMENT_MAGIC: [u8; 8] = *b"PGSEG001";
pub const SEGMENT_HEADER: usize = 16;

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub first_seq: u64,
}

pub fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    segments_dir(dir).join(format!("{first_seq:020}.seg"))
}

/// The spool's segments, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(segments_dir(dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(first_seq) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        out.push(SegmentFile { path, first_seq });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// Creates a segment whose first record will be `first_seq`, durably.
pub fn create(dir: &Path, first_seq: u64) -> io::Result<(File, PathBuf)> {
    fs::create_dir_all(segments_dir(dir))?;
    let path = segment_path(dir, first_seq);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let mut head = SEGMENT_MAGIC.to_vec();
    head.extend_from_slice(&first_seq.to_le_bytes());
    f.write_all(&head)?;
    f.sync_data()?;
    sync_dir(&segments_dir(dir))?;
    Ok((f, path))
}

/// Makes a directory entry change (a new or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Where the next record goes and what it links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    pub next_seq: u64,
    pub prev: Hash,
    pub segment: PathBuf,
    /// Where the next record is written in `segment`.
    pub offset: u64,
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn write truncated from the last segment.
    pub truncated: u64,
    /// A damaged segment copied to `quarantine/`, with the damaged range.
    pub quarantined: Option<Quarantined>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub copy: PathBuf,
    /// The damaged record comes after this sequence number (`None`: at the
    /// start of the segment).
    pub after_seq: Option<u64>,
    pub damage: Damage,
}

/// One pass over a segment's bytes.
#[derive(Debug, Default)]
struct Scan {
    /// The last decodable record before any damage: (seq, hash, end offset).
    last_good: Option<(u64, Hash, usize)>,
    /// The first damage: offset, kind, and whether records follow it.
    damage: Option<(usize, Damage, bool)>,
    /// The last decodable record in the whole segment (after damage too).
    last_any: Option<(u64, Hash, usize)>,
}

fn scan(buf: &[u8]) -> Scan {
    let mut s = Scan::default();
    let mut at = SEGMENT_HEADER.min(buf.len());
    while at < buf.len() {
        match frame::decode(&buf[at..]) {
            Ok(r) => {
                let end = at + r.len;
                if s.damage.is_none() {
                    s.last_good = Some((r.seq, r.hash, end));
                }
                s.last_any = Some((r.seq, r.hash, end));
                at = end;
            }
            Err(damage) => match frame::resync(buf, at + 1) {
                Some(next) => {
                    s.damage.get_or_insert((at, damage, true));
                    at = next;
                }
                None => {
                    if s.damage.is_none() {
                        s.damage = Some((at, damage, false));
                    }
                    break;
                }
            },
        }
    }
    s
}

/// Opens the spool in `dir` for appending: creates it, truncates a torn
/// tail, quarantines damage.
pub fn recover(dir: &Path) -> io::Result<(File, Tail, Recovery)> {
    fs::create_dir_all(dir)?;
    let segments = list(dir)?;
    let Some(last) = segments.last() else {
        let (f, path) = create(dir, 0)?;
        let tail = Tail {
            next_seq: 0,
            prev: [0; 32],
            segment: path,
            offset: SEGMENT_HEADER as u64,
        };
        return Ok((f, tail, Recovery::default()));
    };
    let mut f = OpenOptions::new().read(true).write(true).open(&last.path)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let mut recovery = Recovery::default();
    if buf.len() < SEGMENT_HEADER || buf[..8] != SEGMENT_MAGIC {
        // The header itself was torn (a crash while creating the segment):
        // nothing in it can be a record that was acknowledged.
        if buf.len() > SEGMENT_HEADER && buf[..8] != SEGMENT_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a phigate spool segment", last.path.display()),
            ));
        }
        recovery.truncated = buf.len() as u64;
        drop(f);
        let (f, path) = create(dir, last.first_seq)?;
        let prev = previous_tail_hash(&segments[..segments.len() - 1])?;
        let tail = Tail {
            next_seq: last.first_seq,
            prev,
            segment: path,
            offset: SEGMENT_HEADER as u64,
        };
        return Ok((f, tail, recovery));
    }
    let s = scan(&buf);
    let start_prev = || previous_tail_hash(&segments[..segments.len() - 1]);
    // Only a torn write is truncated: a record cut short, or zeros a
    // crash left where a write was going. A complete record that fails
    // its checksum at the end is damage like any other.
    let torn =
        |at: usize, damage: Damage| damage == Damage::Short || buf[at..].iter().all(|b| *b == 0);
    match s.damage {
        None => finish_clean(&segments, last, f, buf.len(), &s, recovery),
        Some((at, damage, false)) if torn(at, damage) => {
            let end = s.last_good.map_or(SEGMENT_HEADER, |(_, _, e)| e);
            // The cut bytes are kept as evidence.
            quarantine(dir, &last.path, &format!("torn-at-{end}"), &buf[end..])?;
            if end < buf.len() {
                recovery.truncated = (buf.len() - end) as u64;
                f.set_len(end as u64)?;
                f.sync_data()?;
            }
            // Cut back to its last good record, the segment is clean.
            finish_clean(&segments, last, f, end, &s, recovery)
        }
        Some((offset, damage, records_follow)) => {
            let copy = quarantine(dir, &last.path, &format!("damaged-at-{offset}"), &buf)?;
            recovery.quarantined = Some(Quarantined {
                copy,
                after_seq: s.last_good.map(|(seq, _, _)| seq),
                damage,
            });
            // Records after the damage stay in place; new ones start a
            // new segment after the last one that decodes. Damage at the
            // very end took a sequence number of its own: it is not reused.
            let skip = u64::from(!records_follow);
            let (next, hash) = match s.last_any {
                Some((seq, hash, _)) => (seq + 1 + skip, hash),
                None => (last.first_seq + 1, start_prev()?),
            };
            drop(f);
            let (f, path) = create(dir, next)?;
            let tail = Tail {
                next_seq: next,
                prev: hash,
                segment: path,
                offset: SEGMENT_HEADER as u64,
            };
            Ok((f, tail, recovery))
        }
    }
}

/// The last decodable record of one segment: (seq, hash).
pub fn last_record(path: &Path) -> io::Result<Option<(u64, Hash)>> {
    let buf = fs::read(path)?;
    Ok(scan(&buf).last_any.map(|(seq, hash, _)| (seq, hash)))
}

/// Copies `bytes` of `segment` to `DIR/quarantine/<name>.<what>`, durably.
fn quarantine(dir: &Path, segment: &Path, what: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let qdir = dir.join("quarantine");
    fs::create_dir_all(&qdir)?;
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    let copy = qdir.join(format!("{name}.{what}"));
    fs::write(&copy, bytes)?;
    File::open(&copy)?.sync_all()?;
    sync_dir(&qdir)?;
    Ok(copy)
}

/// The tail of a last segment that decoded to its end.
fn finish_clean(
    segments: &[SegmentFile],
    last: &SegmentFile,
    mut f: File,
    len: usize,
    s: &Scan,
    recovery: Recovery,
) -> io::Result<(File, Tail, Recovery)> {
    let end = s
        .last_good
        .map_or(SEGMENT_HEADER, |(_, _, e)| e)
        .max(len.min(SEGMENT_HEADER));
    f.seek(SeekFrom::Start(end as u64))?;
    let (next_seq, prev) = match s.last_good {
        Some((seq, hash, _)) => (seq + 1, hash),
        None => (
            last.first_seq,
            previous_tail_hash(&segments[..segments.len() - 1])?,
        ),
    };
    let tail = Tail {
        next_seq,
        prev,
        segment: last.path.clone(),
        offset: end as u64,
    };
    Ok((f, tail, recovery))
}

/// The hash of the last record in the newest of `segments` that has one.
fn previous_tail_hash(segments: &[SegmentFile]) -> io::Result<Hash> {
    for seg in segments.iter().rev() {
        let buf = fs::read(&seg.path)?;
        if let Some((_, hash, _)) = scan(&buf).last_any {
            return Ok(hash);
        }
    }
    Ok([0; 32])
}

/// A record read back, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub prev: Hash,
    pub kind: Kind,
    pub payload: Vec<u8>,
    pub hash: Hash,
    /// The segment it is in and its offset there.
    pub segment: PathBuf,
    pub offset: usize,
}

/// What a reader meets in order: a record, or damage it reports (and then
/// reads on past).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Record(Stored),
    Damaged {
        segment: PathBuf,
        offset: usize,
        damage: Damage,
        /// The last record read before it.
        after_seq: Option<u64>,
    },
    /// A segment file that is not a spool segment.
    BadSegment(PathBuf),
    /// A segment whose first record is not the one its header (and name)
    /// says: records were removed from its start, or it was renamed.
    MisplacedSegment {
        segment: PathBuf,
        header_seq: u64,
        first_seq: u64,
    },
}

/// Reads a spool front to back (one segment in memory at a time).
pub struct Reader {
    segments: Vec<SegmentFile>,
    next_segment: usize,
    buf: Vec<u8>,
    path: PathBuf,
    at: usize,
    last_seq: Option<u64>,
    /// Whether the last segment may still grow (a live spool): then bytes
    /// at its end that do not decode are a write in progress, not damage.
    live: bool,
    /// A live read stopped at an incomplete last record.
    tail_incomplete: bool,
    /// The loaded segment's header sequence number, until its first
    /// record is checked against it.
    expect_first: Option<u64>,
}

impl Reader {
    pub fn open(dir: &Path) -> io::Result<Reader> {
        Ok(Reader {
            segments: list(dir)?,
            next_segment: 0,
            buf: Vec::new(),
            path: PathBuf::new(),
            at: 0,
            last_seq: None,
            live: false,
            tail_incomplete: false,
            expect_first: None,
        })
    }

    /// A reader that treats an undecodable end of the last segment as not
    /// yet written (for following a running spool).
    pub fn live(dir: &Path) -> io::Result<Reader> {
        let mut r = Self::open(dir)?;
        r.live = true;
        Ok(r)
    }

    /// Starts at the segment holding `seq` (records before it are skipped
    /// by the caller).
    pub fn seek_segment(&mut self, seq: u64) {
        let i = self
            .segments
            .iter()
            .rposition(|s| s.first_seq <= seq)
            .unwrap_or(0);
        self.next_segment = i;
    }

    fn load_next(&mut self) -> io::Result<Load> {
        let Some(seg) = self.segments.get(self.next_segment) else {
            return Ok(Load::End);
        };
        self.next_segment += 1;
        self.buf = fs::read(&seg.path)?;
        self.path = seg.path.clone();
        if self.buf.len() < SEGMENT_HEADER || self.buf[..8] != SEGMENT_MAGIC {
            self.at = self.buf.len();
            // A live spool's newest segment may be being created.
            if self.buf.len() < SEGMENT_HEADER && self.live && self.is_last() {
                return Ok(Load::Loaded);
            }
            return Ok(Load::Bad(seg.path.clone()));
        }
        self.at = SEGMENT_HEADER;
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.buf[8..16]);
        let header_seq = u64::from_le_bytes(first);
        if header_seq != seg.first_seq {
            return Ok(Load::Misnamed(header_seq));
        }
        self.expect_first = Some(header_seq);
        Ok(Load::Loaded)
    }

    /// Picks up what was written since: bytes appended to the segment being
    /// read and segments created after it (for following a running spool).
    pub fn refresh(&mut self, dir: &Path) -> io::Result<()> {
        // Listed first: a segment is sealed before the next one is created,
        // so the bytes read after listing include all of the current one.
        let current = self
            .segments
            .get(self.next_segment.wrapping_sub(1))
            .map(|s| s.first_seq);
        self.segments = list(dir)?;
        if let Some(first) = current {
            if let Some(i) = self.segments.iter().position(|s| s.first_seq == first) {
                self.next_segment = i + 1;
            }
        }
        if !self.path.as_os_str().is_empty() {
            let mut f = File::open(&self.path)?;
            let len = f.metadata()?.len() as usize;
            if len < self.buf.len() {
                // Truncated under us (a torn tail recovered): what was read
                // past `len` was never durable; read again from there.
                self.buf.truncate(len);
                self.at = self.at.min(len);
            }
            f.seek(SeekFrom::Start(self.buf.len() as u64))?;
            f.read_to_end(&mut self.buf)?;
        }
        Ok(())
    }

    /// Whether the last read ended at an incomplete record (a write in
    /// progress, or a torn write the next start-up truncates).
    pub fn tail_incomplete(&self) -> bool {
        self.tail_incomplete
    }

    fn is_last(&self) -> bool {
        self.next_segment >= self.segments.len()
    }

    /// The next item, `None` at the end.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        loop {
            if self.at >= self.buf.len() {
                match self.load_next()? {
                    Load::End => return Ok(None),
                    Load::Loaded => continue,
                    Load::Bad(path) => return Ok(Some(Item::BadSegment(path))),
                    Load::Misnamed(header_seq) => {
                        let name_seq = self.segments[self.next_segment - 1].first_seq;
                        return Ok(Some(Item::MisplacedSegment {
                            segment: self.path.clone(),
                            header_seq,
                            first_seq: name_seq,
                        }));
                    }
                }
            }
            match frame::decode(&self.buf[self.at..]) {
                Ok(r) => {
                    let stored = Stored {
                        seq: r.seq,
                        prev: r.prev,
                        kind: r.kind,
                        payload: r.payload.to_vec(),
                        hash: r.hash,
                        segment: self.path.clone(),
                        offset: self.at,
                    };
                    if let Some(want) = self.expect_first.take() {
                        if want != r.seq {
                            // Reported once; the record is read next.
                            return Ok(Some(Item::MisplacedSegment {
                                segment: self.path.clone(),
                                header_seq: want,
                                first_seq: r.seq,
                            }));
                        }
                    }
                    self.at += r.len;
                    self.last_seq = Some(r.seq);
                    return Ok(Some(Item::Record(stored)));
                }
                Err(damage) => {
                    let offset = self.at;
                    match frame::resync(&self.buf, offset + 1) {
                        Some(next) => self.at = next,
                        // A live spool's last record may be half written:
                        // read it again after the next refresh.
                        None if self.live && self.is_last() && damage == Damage::Short => {
                            // Dropped, and read again on refresh: recovery
                            // may truncate these bytes and write others.
                            self.buf.truncate(offset);
                            self.tail_incomplete = true;
                            return Ok(None);
                        }
                        None => self.at = self.buf.len(),
                    }
                    return Ok(Some(Item::Damaged {
                        segment: self.path.clone(),
                        offset,
                        damage,
                        after_seq: self.last_seq,
                    }));
                }
            }
        }
    }
}

enum Load {
    End,
    Loaded,
    Bad(PathBuf),
    /// The header's first sequence number differs from the file name's.
    Misnamed(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_records(dir: &Path, n: u64) -> Vec<Hash> {
        let (mut f, tail, _) = recover(dir).unwrap();
        let mut prev = tail.prev;
        let mut hashes = Vec::new();
        let mut buf = Vec::new();
        for seq in tail.next_seq..tail.next_seq + n {
            prev = frame::encode(
                &mut buf,
                seq,
                &prev,
                Kind::Event,
                format!("{{\"n\":{seq}}}").as_bytes(),
            );
            hashes.push(prev);
        }
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        hashes
    }

    fn read_all(dir: &Path) -> Vec<Item> {
        let mut r = Reader::open(dir).unwrap();
        let mut out = Vec::new();
        while let Some(i) = r.next_item().unwrap() {
            out.push(i);
        }
        out
    }

    #[test]
    fn a_fresh_spool_starts_at_zero_and_continues_after_reopening() {
        let d = tempfile::tempdir().unwrap();
        let hashes = write_records(d.path(), 3);
        let (_, tail, rec) = recover(d.path()).unwrap();
        assert_eq!((tail.next_seq, tail.prev), (3, hashes[2]));
        assert_eq!(rec, Recovery::default());
        write_records(d.path(), 2);
        let seqs: Vec<u64> = read_all(d.path())
            .into_iter()
            .map(|i| match i {
                Item::Record(r) => r.seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_torn_tail_is_truncated_and_nothing_before_it_is_lost() {
        let d = tempfile::tempdir().unwrap();
        let hashes = write_records(d.path(), 3);
        let seg = &list(d.path()).unwrap()[0].path;
        let full = fs::read(seg).unwrap();
        fs::write(seg, &full[..full.len() - 5]).unwrap();
        let (_, tail, rec) = recover(d.path()).unwrap();
        assert_eq!(tail.next_seq, 2);
        assert_eq!(tail.prev, hashes[1]);
        assert!(rec.truncated > 0 && rec.quarantined.is_none());
    }

    #[test]
    fn damage_in_the_middle_is_quarantined_not_truncated() {
        let d = tempfile::tempdir().unwrap();
        let hashes = write_records(d.path(), 4);
        let seg = list(d.path()).unwrap()[0].path.clone();
        let mut bytes = fs::read(&seg).unwrap();
        let second = SEGMENT_HEADER + frame::HEADER + 7 + 10;
        bytes[second] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let (_, tail, rec) = recover(d.path()).unwrap();
        let q = rec.quarantined.expect("quarantined");
        assert_eq!(q.after_seq, Some(0));
        assert!(q.copy.exists());
        assert_eq!(fs::read(&seg).unwrap(), bytes, "the damaged segment stays");
        assert_eq!((tail.next_seq, tail.prev), (4, hashes[3]));
        assert_eq!(list(d.path()).unwrap().len(), 2);
        let items = read_all(d.path());
        assert!(items.iter().any(|i| matches!(
            i,
            Item::Damaged {
                after_seq: Some(0),
                damage: Damage::Checksum,
                ..
            }
        )));
    }
}
