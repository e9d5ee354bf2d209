//! Retention: sealed segments past the size or age limit are deleted,
//! oldest first, but never one holding a record a configured sink has not
//! taken (its cursor says how far it got).

use super::segment;
use crate::metrics::metrics;
use std::path::Path;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// Keep the spool under this many bytes (sealed segments count).
    pub max_bytes: Option<u64>,
    /// Delete sealed segments older than this.
    pub max_age: Option<Duration>,
    /// Sinks whose cursors must have passed a segment before it goes.
    pub sinks: Vec<String>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub deleted: usize,
    /// Segments past the limits that a sink still needs.
    pub held: usize,
}

/// The segments a pass would delete, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub delete: Vec<segment::SegmentFile>,
    /// The last sequence number in them: the spool then starts after it.
    pub through: Option<u64>,
    pub held: usize,
}

impl Retention {
    /// Which sealed segments are past the limits and taken by every sink.
    pub fn plan(&self, dir: &Path) -> Plan {
        let mut out = Plan::default();
        if self.max_bytes.is_none() && self.max_age.is_none() {
            return out;
        }
        let Ok(segments) = segment::list(dir) else {
            return out;
        };
        let taken = self
            .sinks
            .iter()
            .map(|s| cursor::load(dir, s))
            .min()
            .unwrap_or(u64::MAX);
        let sizes: Vec<(u64, Option<SystemTime>)> = segments
            .iter()
            .map(|s| {
                let meta = std::fs::metadata(&s.path).ok();
                (
                    meta.as_ref().map_or(0, |m| m.len()),
                    meta.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        let mut total: u64 = sizes.iter().map(|(n, _)| n).sum();
        // The newest segment is being written: never a candidate.
        for (i, seg) in segments
            .iter()
            .enumerate()
            .take(segments.len().saturating_sub(1))
        {
            let (bytes, modified) = sizes[i];
            let too_big = self.max_bytes.is_some_and(|max| total > max);
            let too_old = self.max_age.is_some_and(|age| {
                modified
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|e| e > age)
            });
            if !too_big && !too_old {
                break;
            }
            let last_seq = segments[i + 1].first_seq.saturating_sub(1);
            if taken <= last_seq {
                out.held = segments.len() - 1 - i;
                break;
            }
            out.delete.push(seg.clone());
            out.through = Some(last_seq);
            total -= bytes;
        }
        out
    }

    /// Deletes what `plan` names (after the anchor saying where the spool
    /// now starts was written).
    pub fn remove(plan: &Plan, dir: &Path) -> Applied {
        let mut out = Applied {
            deleted: 0,
            held: plan.held,
        };
        for seg in &plan.delete {
            if std::fs::remove_file(&seg.path).is_err() {
                break;
            }
            out.deleted += 1;
        }
        if out.deleted > 0 {
            let _ = segment::sync_dir(&segment::segments_dir(dir));
        }
        let m = &metrics().audit;
        m.retention_deleted.inc_by(out.deleted as u64);
        m.retention_held.set(out.held as i64);
        if out.held > 0 {
            tracing::warn!(
                segments = out.held,
                "audit retention: segments past the limit are kept until every sink has taken them"
            );
        }
        out
    }

    /// Plans and deletes in one step (no anchor: tests only; the spool's
    /// writer anchors before it removes).
    #[cfg(test)]
    pub fn apply(&self, dir: &Path) -> Applied {
        Self::remove(&self.plan(dir), dir)
    }
}

/// Each sink's cursor: the next sequence number it has not taken.
pub mod cursor {
    use std::io;
    use std::path::{Path, PathBuf};

    fn path(dir: &Path, sink: &str) -> PathBuf {
        dir.join("cursors").join(sink)
    }

    /// 0 when the sink has taken nothing (or its cursor cannot be read:
    /// re-sending is safe, skipping is not).
    pub fn load(dir: &Path, sink: &str) -> u64 {
        std::fs::read_to_string(path(dir, sink))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Replaced atomically after the sink acknowledged records `..next`.
    pub fn store(dir: &Path, sink: &str, next: u64) -> io::Result<()> {
        let p = path(dir, sink);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, format!("{next}\n"))?;
        std::fs::rename(tmp, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::frame::{self, Kind};
    use std::io::Write;

    fn spool_with_segments(dir: &Path, n: u64) {
        let mut prev = [0; 32];
        for i in 0..n {
            let (mut f, _) = segment::create(dir, i * 10).unwrap();
            let mut buf = Vec::new();
            for seq in i * 10..i * 10 + 10 {
                prev = frame::encode(&mut buf, seq, &prev, Kind::Event, &[b'x'; 100]);
            }
            f.write_all(&buf).unwrap();
        }
    }

    #[test]
    fn retention_deletes_oldest_first_but_never_what_a_sink_has_not_taken() {
        let d = tempfile::tempdir().unwrap();
        spool_with_segments(d.path(), 4);
        let r = Retention {
            max_bytes: Some(1),
            max_age: None,
            sinks: vec!["siem".into()],
        };
        cursor::store(d.path(), "siem", 15).unwrap();
        assert_eq!(
            r.apply(d.path()),
            Applied {
                deleted: 1,
                held: 2
            }
        );
        assert_eq!(segment::list(d.path()).unwrap()[0].first_seq, 10);
        cursor::store(d.path(), "siem", 40).unwrap();
        assert_eq!(
            r.apply(d.path()),
            Applied {
                deleted: 2,
                held: 0
            }
        );
        assert_eq!(
            segment::list(d.path()).unwrap().len(),
            1,
            "the newest segment stays"
        );
    }

    #[test]
    fn a_sink_that_never_took_anything_holds_everything() {
        let d = tempfile::tempdir().unwrap();
        spool_with_segments(d.path(), 3);
        let r = Retention {
            max_bytes: Some(1),
            max_age: Some(Duration::ZERO),
            sinks: vec!["file".into()],
        };
        assert_eq!(r.apply(d.path()).deleted, 0);
        assert_eq!(segment::list(d.path()).unwrap().len(), 3);
    }
}
