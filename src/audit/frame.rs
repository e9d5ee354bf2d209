//! One spool record on disk: a fixed header, then the payload.
//!
//! ```text
//! magic "PGA1" | len u32 | crc32c u32 | seq u64 | prev [32] | kind u8 | payload[len]
//! ```
//!
//! Little-endian. The CRC32C covers everything after itself (sequence,
//! previous hash, kind, payload), so a torn or flipped record is found
//! without reading the chain. The record's hash is SHA-256 over every byte
//! written, header included; the next record carries it as `prev`, so
//! changing, removing or reordering any record breaks the chain at a named
//! sequence number. The per-record magic lets a reader find the next record
//! after a damaged one (to tell a torn tail from damage in the middle).

use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 4] = *b"PGA1";
pub const HEADER: usize = 4 + 4 + 4 + 8 + 32 + 1;
/// The largest payload accepted (an event is a few KiB).
pub const MAX_PAYLOAD: usize = 4 * 1024 * 1024;

pub type Hash = [u8; 32];

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An audit event (phigate's canonical JSON, `event.rs`).
    Event = 1,
    /// A signed checkpoint over the records before it (`checkpoint.rs`).
    Checkpoint = 2,
    /// Written before retention deletes segments: a (signed) checkpoint
    /// over the last record deleted, so the spool's new first record is
    /// anchored rather than looking like a cut.
    Anchor = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Event),
            2 => Some(Kind::Checkpoint),
            3 => Some(Kind::Anchor),
            _ => None,
        }
    }
}

/// A decoded record, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: u64,
    pub prev: Hash,
    pub kind: Kind,
    pub payload: &'a [u8],
    /// SHA-256 of the bytes as written.
    pub hash: Hash,
    /// Bytes the record takes on disk.
    pub len: usize,
}

/// Appends one record to `out` and returns its hash.
pub fn encode(out: &mut Vec<u8>, seq: u64, prev: &Hash, kind: Kind, payload: &[u8]) -> Hash {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(prev);
    out.push(kind as u8);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 12..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Sha256::digest(&out[start..]).into()
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Fewer bytes than the header or the declared length: a write that
    /// did not finish (or a file cut short).
    Short,
    /// No record magic where a record should start.
    NoMagic,
    /// The declared length is impossible.
    BadLength,
    /// The checksum does not match: bytes changed after writing.
    Checksum,
    /// An unknown record kind (with a valid checksum).
    UnknownKind,
}

impl Damage {
    pub fn as_str(self) -> &'static str {
        match self {
            Damage::Short => "incomplete record",
            Damage::NoMagic => "no record marker",
            Damage::BadLength => "impossible record length",
            Damage::Checksum => "checksum mismatch",
            Damage::UnknownKind => "unknown record kind",
        }
    }
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Record<'_>, Damage> {
    if buf.len() < HEADER {
        return Err(if buf.len() >= 4 && buf[..4] != MAGIC {
            Damage::NoMagic
        } else {
            Damage::Short
        });
    }
    if buf[..4] != MAGIC {
        return Err(Damage::NoMagic);
    }
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(Damage::BadLength);
    }
    let total = HEADER + len;
    if buf.len() < total {
        return Err(Damage::Short);
    }
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if crc32c::crc32c(&buf[12..total]) != crc {
        return Err(Damage::Checksum);
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&buf[12..20]);
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&buf[20..52]);
    let kind = Kind::from_u8(buf[52]).ok_or(Damage::UnknownKind)?;
    Ok(Record {
        seq: u64::from_le_bytes(seq),
        prev,
        kind,
        payload: &buf[HEADER..total],
        hash: Sha256::digest(&buf[..total]).into(),
        len: total,
    })
}

/// The offset of the next decodable record at or after `from`, if any:
/// how a reader tells damage in the middle (records follow) from a torn
/// tail (nothing follows).
pub fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at < buf.len() {
        let rel = memchr::memmem::find(&buf[at..], &MAGIC)?;
        let pos = at + rel;
        if decode(&buf[pos..]).is_ok() {
            return Some(pos);
        }
        at = pos + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_its_hash_covers_every_byte() {
        let mut out = Vec::new();
        let h = encode(&mut out, 7, &[9; 32], Kind::Event, b"{\"a\":1}");
        let r = decode(&out).unwrap();
        assert_eq!(
            (r.seq, r.prev, r.kind, r.payload),
            (7, [9; 32], Kind::Event, &b"{\"a\":1}"[..])
        );
        assert_eq!(r.hash, h);
        assert_eq!(r.len, out.len());
    }

    #[test]
    fn every_flipped_byte_is_found() {
        let mut out = Vec::new();
        encode(&mut out, 1, &[0; 32], Kind::Event, b"payload bytes");
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x20;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn a_cut_record_is_short_and_resync_finds_the_next() {
        let mut out = Vec::new();
        encode(&mut out, 1, &[0; 32], Kind::Event, b"first");
        let second = out.len();
        encode(&mut out, 2, &[1; 32], Kind::Event, b"second");
        assert_eq!(decode(&out[..second - 1]), Err(Damage::Short));
        let mut bad = out.clone();
        bad[HEADER + 1] ^= 1;
        assert_eq!(decode(&bad), Err(Damage::Checksum));
        assert_eq!(resync(&bad, 1), Some(second));
        assert_eq!(resync(&bad[..out.len() - 1], 1), None);
    }
}
