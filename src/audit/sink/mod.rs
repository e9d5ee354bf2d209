//! Sinks: each one a cursor over the spool that advances only when the
//! sink has taken the records. A sink gets what is durable, in order, in
//! batches, rendered in its format; delivery that fails is retried with
//! backoff from the same cursor, so a record is shipped at least once and
//! never skipped. Damage met on the way is counted and logged by sequence
//! number (never passed over silently).
//!
//! A new receiver (HEC, `_bulk`, Kafka) implements [`Sink::deliver`]: take
//! the whole batch or fail.

pub mod file;
pub mod syslog;

use super::config::SinkConfig;
use super::frame::Kind;
use super::render::Format;
use super::retention::cursor;
use super::segment::{Item, Reader, Stored};
use super::spool::Spool;
use crate::metrics::metrics;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One record, rendered for a sink.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub seq: u64,
    /// `event` or `checkpoint`.
    pub kind: &'static str,
    /// The event's kind (`access`, `outcome`, …) or `checkpoint`.
    pub msgid: String,
    pub failure: bool,
    pub time_ms: i64,
    /// One line (no newline).
    pub line: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A receiver of audit records.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Delivers the batch; `Ok` only when the receiver has taken all of it.
    async fn deliver(&mut self, batch: &[Rendered]) -> Result<(), SinkError>;
}

/// A sink's runner, stopped with the trail.
pub struct Running {
    stop: Arc<AtomicBool>,
    wake: tokio::sync::watch::Sender<bool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Running {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.send_replace(true);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

const BATCH: usize = 512;

/// Builds one sink from its config (what `check` validates too).
pub fn build(c: &SinkConfig) -> Result<(Format, Box<dyn Sink>), String> {
    let format: Format = c
        .format
        .parse()
        .map_err(|e| format!("audit sink {}: {e}", c.name))?;
    let sink: Box<dyn Sink> = match c.kind.as_str() {
        "file" => Box::new(file::FileSink::new(
            c.path
                .clone()
                .ok_or_else(|| format!("audit sink {}: no path", c.name))?,
        )),
        "syslog" => Box::new(
            syslog::SyslogSink::from_config(c)
                .map_err(|e| format!("audit sink {}: {e}", c.name))?,
        ),
        other => return Err(format!("audit sink {}: unknown kind {other:?}", c.name)),
    };
    Ok((format, sink))
}

/// Starts every configured sink on its own thread. A sink that cannot be
/// built stops the start: its cursor would hold retention forever while
/// nothing ships.
pub fn start(spool: &Spool, sinks: &[SinkConfig]) -> Result<Vec<Running>, String> {
    let mut out = Vec::new();
    for c in sinks {
        let (format, sink) = build(c)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, wake_rx) = tokio::sync::watch::channel(false);
        let name = c.name.clone();
        let dir = spool.dir().to_path_buf();
        let durable = spool.durable();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("phigate-audit-sink-{name}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(sink = %name, error = %e, "audit sink: no runtime");
                        return;
                    }
                };
                rt.block_on(run(name, dir, format, sink, durable, stop2, wake_rx));
            })
            .map_err(|e| format!("audit sink {}: {e}", c.name))?;
        out.push(Running {
            stop,
            wake,
            thread: std::sync::Mutex::new(Some(thread)),
        });
    }
    Ok(out)
}

/// Ships the spool in `dir` through `sink` from its cursor, as records
/// become durable, until stopped.
pub async fn run(
    name: String,
    dir: PathBuf,
    format: Format,
    mut sink: Box<dyn Sink>,
    mut durable: tokio::sync::watch::Receiver<u64>,
    stop: Arc<AtomicBool>,
    mut wake: tokio::sync::watch::Receiver<bool>,
) {
    let m = &metrics().audit;
    let backlog = m.sink_backlog.with_label_values(&[&name]);
    let shipped = m.sink_shipped.with_label_values(&[&name]);
    let errors = m.sink_errors.with_label_values(&[&name]);
    // A cursor past the spool's end (records lost in a host crash under
    // `sync = "os"`, then numbered again) would skip the new ones.
    let mut next = cursor::load(&dir, &name).min(*durable.borrow());
    let mut reader: Option<Reader> = None;
    let mut held: Option<Stored> = None;
    let mut backoff = Duration::from_millis(200);
    let version = env!("CARGO_PKG_VERSION");
    loop {
        let upto = *durable.borrow_and_update();
        backlog.set(upto.saturating_sub(next) as i64);
        if next < upto {
            let batch = match read_batch(&dir, &mut reader, &mut held, next, upto, format, version)
            {
                Ok(b) => b,
                Err(e) => {
                    errors.inc();
                    tracing::error!(sink = %name, error = %e, "audit sink: the spool could not be read");
                    reader = None;
                    held = None;
                    Vec::new()
                }
            };
            if let Some(last) = batch.last().map(|r| r.seq) {
                match sink.deliver(&batch).await {
                    Ok(()) => {
                        next = last + 1;
                        shipped.inc_by(batch.len() as u64);
                        if let Err(e) = cursor::store(&dir, &name, next) {
                            tracing::warn!(sink = %name, error = %e, "audit sink: the cursor could not be saved (records may be sent again)");
                        }
                        backoff = Duration::from_millis(200);
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        continue;
                    }
                    Err(e) => {
                        errors.inc();
                        tracing::warn!(sink = %name, error = %e, "audit sink: delivery failed; retrying from the same record");
                        reader = None;
                        held = None;
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = wake.changed() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            } else if next < upto {
                // Records counted durable but not readable yet (or skipped
                // as damage): look again shortly.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        tokio::select! {
            r = durable.changed() => if r.is_err() { return },
            _ = wake.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Up to [`BATCH`] records from `next` (below `upto`), rendered.
fn read_batch(
    dir: &Path,
    reader: &mut Option<Reader>,
    held: &mut Option<Stored>,
    next: u64,
    upto: u64,
    format: Format,
    version: &str,
) -> std::io::Result<Vec<Rendered>> {
    let r = match reader {
        Some(r) => {
            r.refresh(dir)?;
            r
        }
        None => {
            let mut r = Reader::live(dir)?;
            r.seek_segment(next);
            reader.insert(r)
        }
    };
    let mut out = Vec::new();
    while out.len() < BATCH {
        let item = match held.take() {
            Some(rec) => Item::Record(rec),
            None => match r.next_item()? {
                Some(item) => item,
                None => break,
            },
        };
        match item {
            Item::Record(rec) if rec.seq < next => continue,
            Item::Record(rec) if rec.seq >= upto => {
                // Not durable yet: kept for the next batch.
                *held = Some(rec);
                break;
            }
            Item::Record(rec) => out.push(render(&rec.payload, rec.kind, rec.seq, format, version)),
            Item::Damaged {
                segment,
                offset,
                damage,
                after_seq,
            } => {
                metrics().audit.damaged.inc();
                tracing::error!(
                    segment = %segment.display(),
                    offset,
                    after_seq = ?after_seq,
                    damage = damage.as_str(),
                    "audit sink: a damaged record in the spool; run `phigate audit verify`"
                );
            }
            Item::MisplacedSegment { segment, .. } => {
                metrics().audit.damaged.inc();
                tracing::error!(segment = %segment.display(), "audit sink: a segment does not start where its name says; run `phigate audit verify`");
            }
            Item::BadSegment(p) => {
                metrics().audit.damaged.inc();
                tracing::error!(segment = %p.display(), "audit sink: not a spool segment");
            }
        }
    }
    Ok(out)
}

/// Renders one record: an event in the sink's format, a checkpoint as
/// `{"checkpoint": note, "seq": n}` in any format (SIEMs keep the heads).
pub fn render(payload: &[u8], kind: Kind, seq: u64, format: Format, version: &str) -> Rendered {
    match kind {
        Kind::Checkpoint | Kind::Anchor => {
            let note = String::from_utf8_lossy(payload);
            let (key, name) = match kind {
                Kind::Anchor => ("phigate_anchor", "anchor"),
                _ => ("phigate_checkpoint", "checkpoint"),
            };
            let line = serde_json::json!({ key: note, "seq": seq });
            Rendered {
                seq,
                kind: name,
                msgid: name.into(),
                failure: false,
                time_ms: jiff::Timestamp::now().as_millisecond(),
                line: line.to_string().into_bytes(),
            }
        }
        Kind::Event => match super::AuditEvent::from_json(payload) {
            Ok(e) => Rendered {
                seq,
                kind: "event",
                msgid: e.kind.as_str().to_string(),
                failure: e.outcome.is_failure(),
                time_ms: e.time,
                line: super::render::render(format, &e, seq, version),
            },
            Err(_) => {
                // A record whose checksum held but whose event does not
                // parse: shipped as what it is, flagged.
                let line = serde_json::json!({ "phigate_unparsed_record": String::from_utf8_lossy(payload), "seq": seq });
                Rendered {
                    seq,
                    kind: "event",
                    msgid: "unparsed".into(),
                    failure: true,
                    time_ms: jiff::Timestamp::now().as_millisecond(),
                    line: line.to_string().into_bytes(),
                }
            }
        },
    }
}
