//! The spool: every audit record appended, chained and made durable by one
//! writer before the response it records is released.
//!
//! Requests hand their encoded event to [`Spool::append`] and await the
//! returned [`Ticket`]. One writer thread takes everything queued, frames
//! it (sequence number, previous hash, CRC32C), writes it in one `write`,
//! syncs once, and releases every waiting response together: group commit.
//! It is a thread rather than a task so that `fdatasync` never stalls a
//! data-plane runtime. When the spool cannot be written (disk full, I/O
//! error) every waiting ticket fails, new appends fail at once, and the
//! writer retries each second: PHI routes answer 503 meanwhile and recover
//! by themselves. Signed checkpoints are records of their own, written
//! every N records or T seconds.

use super::checkpoint::{Checkpoint, NoteSigner};
use super::frame::{self, Hash, Kind};
use super::segment::{self, Recovery, Tail};
use crate::metrics::metrics;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// When a record counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` after every batch.
    Always,
    /// `fdatasync` at most once per interval; records wait for it.
    Interval(Duration),
    /// Written to the OS (survives a crash of phigate, not of the host).
    Os,
}

/// How the spool is run.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    pub sync: SyncPolicy,
    /// A segment is sealed and a new one begun past this size.
    pub segment_bytes: u64,
    /// A signed checkpoint after this many records…
    pub checkpoint_records: u64,
    /// …or this long after the last one, whichever comes first.
    pub checkpoint_interval: Duration,
    pub signer: Option<Arc<NoteSigner>>,
    /// The checkpoints' origin line.
    pub origin: String,
    pub retention: super::retention::Retention,
}

impl SpoolOptions {
    pub fn new(dir: &Path) -> SpoolOptions {
        SpoolOptions {
            dir: dir.to_path_buf(),
            sync: SyncPolicy::Interval(Duration::from_micros(200)),
            segment_bytes: 64 * 1024 * 1024,
            checkpoint_records: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            signer: None,
            origin: "phigate/audit".into(),
            retention: Default::default(),
        }
    }
}

/// Why a record was not made durable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpoolError {
    #[error("the audit spool cannot be written ({0})")]
    Unavailable(String),
    #[error("the audit spool is shut down")]
    Closed,
    #[error("the audit record is too large")]
    TooLarge,
}

type Done = tokio::sync::oneshot::Sender<Result<u64, SpoolError>>;

struct Pending {
    kind: Kind,
    payload: Vec<u8>,
    queued: Instant,
    done: Option<Done>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Pending>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    degraded: AtomicBool,
    /// Set by [`Spool::close`]: nothing more is taken.
    closed: AtomicBool,
    /// Records `0..n` are durable.
    durable: tokio::sync::watch::Sender<u64>,
}

/// A handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    dir: PathBuf,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Held (locked) for as long as any handle lives.
    _lock: Arc<std::fs::File>,
}

/// Resolves when the record is durable (its sequence number) or cannot be.
pub struct Ticket(TicketInner);

enum TicketInner {
    Waiting(tokio::sync::oneshot::Receiver<Result<u64, SpoolError>>),
    Failed(SpoolError),
}

impl Ticket {
    pub async fn durable(self) -> Result<u64, SpoolError> {
        match self.0 {
            TicketInner::Waiting(rx) => rx.await.unwrap_or(Err(SpoolError::Closed)),
            TicketInner::Failed(e) => Err(e),
        }
    }

    /// Blocks the calling thread (tools and tests, never the data plane).
    pub fn wait(self) -> Result<u64, SpoolError> {
        match self.0 {
            TicketInner::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(SpoolError::Closed)),
            TicketInner::Failed(e) => Err(e),
        }
    }
}

impl Spool {
    /// Recovers the spool in `options.dir` and starts its writer.
    pub fn open(options: SpoolOptions) -> io::Result<(Spool, Recovery)> {
        // One writer per spool: a second process (an overlapping restart,
        // a copied config) would interleave records and reuse numbers.
        std::fs::create_dir_all(&options.dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(options.dir.join("lock"))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "another process is writing this spool (its `lock` file is held)",
            )
        })?;
        let (file, tail, recovery) = segment::recover(&options.dir)?;
        report_recovery(&recovery);
        let (durable, _) = tokio::sync::watch::channel(tail.next_seq);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            degraded: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            durable,
        });
        let dir = options.dir.clone();
        let writer = Writer {
            file: Some(file),
            tail,
            last_sync: Instant::now(),
            unsynced: Vec::new(),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            retry_at: None,
            last_retention: Instant::now(),
            pending_note: None,
            pending_anchor: None,
            shared: shared.clone(),
            options,
            buf: Vec::with_capacity(64 * 1024),
        };
        let handle = std::thread::Builder::new()
            .name("phigate-audit-spool".into())
            .spawn(move || writer.run())?;
        Ok((
            Spool {
                shared,
                dir,
                writer: Arc::new(Mutex::new(Some(handle))),
                _lock: Arc::new(lock),
            },
            recovery,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues a record; the ticket resolves once it is durable.
    pub fn append(&self, kind: Kind, payload: Vec<u8>) -> Ticket {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.push(kind, payload, Some(tx)) {
            Ok(()) => Ticket(TicketInner::Waiting(rx)),
            Err(e) => Ticket(TicketInner::Failed(e)),
        }
    }

    /// Queues a record nobody waits for (an outcome, a sign-in event): it
    /// is written in order with the rest.
    pub fn append_detached(&self, kind: Kind, payload: Vec<u8>) -> Result<(), SpoolError> {
        self.push(kind, payload, None)
    }

    fn push(&self, kind: Kind, payload: Vec<u8>, done: Option<Done>) -> Result<(), SpoolError> {
        if payload.len() > frame::MAX_PAYLOAD {
            return Err(SpoolError::TooLarge);
        }
        let mut q = self.shared.queue.lock().map_err(|_| SpoolError::Closed)?;
        if q.closed {
            return Err(SpoolError::Closed);
        }
        let first = q.items.is_empty();
        q.items.push(Pending {
            kind,
            payload,
            queued: Instant::now(),
            done,
        });
        drop(q);
        if first {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Whether the spool is taking records (false while it cannot write).
    pub fn healthy(&self) -> bool {
        !self.shared.degraded.load(Ordering::Relaxed) && !self.shared.closed.load(Ordering::Relaxed)
    }

    /// Watches how many records are durable (sinks ship only those).
    pub fn durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.durable.subscribe()
    }

    /// Writes what is queued, syncs, and stops the writer.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Ok(mut q) = self.shared.queue.lock() {
            q.closed = true;
        }
        self.shared.wake.notify_one();
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn report_recovery(r: &Recovery) {
    let m = &metrics().audit;
    if r.truncated > 0 {
        m.truncated_bytes.inc_by(r.truncated);
        tracing::warn!(
            bytes = r.truncated,
            "audit spool: a torn write at the end was truncated"
        );
    }
    if let Some(q) = &r.quarantined {
        m.quarantined.inc();
        tracing::error!(
            copy = %q.copy.display(),
            after_seq = ?q.after_seq,
            damage = q.damage.as_str(),
            "audit spool: a damaged segment was found and copied to quarantine; run `phigate audit verify`"
        );
    }
}

/// The writer thread's state.
struct Writer {
    file: Option<File>,
    tail: Tail,
    last_sync: Instant,
    /// Written, not yet synced: (seq, queued, waiter).
    unsynced: Vec<(u64, Instant, Option<Done>)>,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// While degraded: when to try the disk again.
    retry_at: Option<Instant>,
    last_retention: Instant,
    /// A checkpoint written and not yet durable.
    pending_note: Option<String>,
    /// A retention anchor not yet written.
    pending_anchor: Option<String>,
    shared: Arc<Shared>,
    options: SpoolOptions,
    buf: Vec<u8>,
}

const RETRY: Duration = Duration::from_secs(1);
const RETENTION_EVERY: Duration = Duration::from_secs(30);
const IDLE_TICK: Duration = Duration::from_millis(500);

impl Writer {
    fn run(mut self) {
        loop {
            let (batch, closed) = self.next_batch();
            if !batch.is_empty() {
                self.write(batch);
            }
            self.housekeeping(closed);
            if closed {
                self.sync_now();
                return;
            }
        }
    }

    /// Waits for records (or a deadline: a due sync or checkpoint).
    fn next_batch(&mut self) -> (Vec<Pending>, bool) {
        let Ok(mut q) = self.shared.queue.lock() else {
            return (Vec::new(), true);
        };
        while q.items.is_empty() && !q.closed {
            let wait = self
                .deadline()
                .map_or(IDLE_TICK, |d| d.saturating_duration_since(Instant::now()));
            if wait.is_zero() {
                break;
            }
            match self.shared.wake.wait_timeout(q, wait) {
                Ok((guard, timeout)) => {
                    q = guard;
                    if timeout.timed_out() {
                        break;
                    }
                }
                Err(_) => return (Vec::new(), true),
            }
        }
        (std::mem::take(&mut q.items), q.closed)
    }

    /// The next moment the writer must act without new records.
    fn deadline(&self) -> Option<Instant> {
        match self.options.sync {
            SyncPolicy::Interval(every) if !self.unsynced.is_empty() => {
                Some(self.last_sync + every)
            }
            _ => None,
        }
    }

    fn write(&mut self, batch: Vec<Pending>) {
        if !self.ready() {
            let e = SpoolError::Unavailable("degraded; retrying".into());
            for p in batch {
                fail(p.done, &e);
            }
            return;
        }
        if let Err(e) = self.roll_if_full() {
            return self.degrade("rotate", e, batch);
        }
        self.buf.clear();
        let mut seq = self.tail.next_seq;
        let mut prev = self.tail.prev;
        let mut written = Vec::with_capacity(batch.len() + 1);
        let closing_checkpoint = batch.is_empty() && self.since_checkpoint > 0;
        let note = (self.checkpoint_due() || closing_checkpoint)
            .then(|| self.checkpoint_note(seq, &prev))
            .flatten();
        if let Some(note) = &note {
            prev = frame::encode(&mut self.buf, seq, &prev, Kind::Checkpoint, note.as_bytes());
            written.push((seq, Instant::now(), None));
            seq += 1;
        }
        let anchor = self.pending_anchor.take();
        if let Some(a) = &anchor {
            prev = frame::encode(&mut self.buf, seq, &prev, Kind::Anchor, a.as_bytes());
            written.push((seq, Instant::now(), None));
            seq += 1;
        }
        let m = &metrics().audit;
        let events = batch.len() as u64;
        if events > 0 {
            m.batch_records.observe(events as f64);
        }
        let mut pending = Vec::with_capacity(batch.len());
        for p in batch {
            prev = frame::encode(&mut self.buf, seq, &prev, p.kind, &p.payload);
            pending.push((seq, p.queued, p.done));
            seq += 1;
        }
        let Some(file) = self.file.as_mut() else {
            self.pending_anchor = anchor;
            return self.degrade_pending("write", io::Error::other("no segment"), pending);
        };
        if let Err(e) = file.write_all(&self.buf) {
            self.pending_anchor = anchor;
            return self.degrade_pending("write", e, pending);
        }
        m.records.with_label_values(&["event"]).inc_by(events);
        if note.is_some() {
            m.records.with_label_values(&["checkpoint"]).inc();
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
            self.pending_note = note;
        }
        self.since_checkpoint += events;
        self.tail.offset += self.buf.len() as u64;
        self.tail.next_seq = seq;
        self.tail.prev = prev;
        written.extend(pending);
        self.unsynced.extend(written);
        match self.options.sync {
            SyncPolicy::Always => self.sync_now(),
            SyncPolicy::Interval(every) if self.last_sync.elapsed() >= every => self.sync_now(),
            SyncPolicy::Interval(_) => {}
            SyncPolicy::Os => self.release(),
        }
    }

    /// Whether the disk is usable; while degraded, tries it again each
    /// [`RETRY`].
    fn ready(&mut self) -> bool {
        let Some(at) = self.retry_at else {
            return true;
        };
        if Instant::now() < at {
            return false;
        }
        match segment::recover(&self.options.dir) {
            Ok((file, tail, recovery)) => {
                report_recovery(&recovery);
                self.file = Some(file);
                self.tail = tail;
                self.retry_at = None;
                self.shared.degraded.store(false, Ordering::Relaxed);
                metrics().audit.degraded.set(0);
                tracing::warn!("audit spool: writing again");
                true
            }
            Err(e) => {
                metrics()
                    .audit
                    .spool_errors
                    .with_label_values(&["recover"])
                    .inc();
                tracing::error!(error = %e, "audit spool: still cannot be written");
                self.retry_at = Some(Instant::now() + RETRY);
                false
            }
        }
    }

    fn roll_if_full(&mut self) -> io::Result<()> {
        if self.tail.offset < self.options.segment_bytes {
            return Ok(());
        }
        if let Some(f) = self.file.as_mut() {
            f.sync_data()?;
        }
        self.release_synced();
        let (file, path) = segment::create(&self.options.dir, self.tail.next_seq)?;
        self.file = Some(file);
        self.tail.segment = path;
        self.tail.offset = segment::SEGMENT_HEADER as u64;
        self.last_retention = Instant::now() - RETENTION_EVERY;
        Ok(())
    }

    fn sync_now(&mut self) {
        if self.unsynced.is_empty() {
            return;
        }
        let result = match self.file.as_mut() {
            Some(f) => f.sync_data(),
            None => Err(io::Error::other("no segment")),
        };
        match result {
            Ok(()) => self.release_synced(),
            Err(e) => {
                let pending = std::mem::take(&mut self.unsynced);
                self.degrade_pending("sync", e, pending);
            }
        }
    }

    fn release_synced(&mut self) {
        self.last_sync = Instant::now();
        self.release();
    }

    /// Everything written so far is durable (as the policy defines it).
    fn release(&mut self) {
        let m = &metrics().audit;
        self.shared.durable.send_replace(self.tail.next_seq);
        for (seq, queued, done) in self.unsynced.drain(..) {
            m.commit_seconds.observe(queued.elapsed().as_secs_f64());
            if let Some(done) = done {
                let _ = done.send(Ok(seq));
            }
        }
        if let Some(note) = self.pending_note.take() {
            // A checkpoint was part of what just became durable.
            self.publish_checkpoint(&note);
        }
    }

    fn degrade(&mut self, op: &'static str, e: io::Error, batch: Vec<Pending>) {
        let pending = batch.into_iter().map(|p| (0, p.queued, p.done)).collect();
        self.degrade_pending(op, e, pending);
    }

    /// The disk failed: every record not yet durable fails, the segment is
    /// dropped (re-read from disk on recovery), and appends fail at once
    /// until a retry succeeds.
    fn degrade_pending(
        &mut self,
        op: &'static str,
        e: io::Error,
        pending: Vec<(u64, Instant, Option<Done>)>,
    ) {
        let m = &metrics().audit;
        m.spool_errors.with_label_values(&[op]).inc();
        m.degraded.set(1);
        tracing::error!(op, error = %e, "audit spool: cannot be written; PHI routes answer 503 until it can");
        let err = SpoolError::Unavailable(e.kind().to_string());
        for (_, _, done) in pending.into_iter().chain(self.unsynced.drain(..)) {
            fail(done, &err);
        }
        self.file = None;
        self.pending_note = None;
        self.shared.degraded.store(true, Ordering::Relaxed);
        self.retry_at = Some(Instant::now() + RETRY);
    }

    fn checkpoint_due(&self) -> bool {
        self.options.signer.is_some()
            && self.tail.next_seq > 0
            && (self.since_checkpoint >= self.options.checkpoint_records
                || (self.since_checkpoint > 0
                    && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval))
    }

    fn checkpoint_note(&self, size: u64, head: &Hash) -> Option<String> {
        self.options.signer.as_ref()?;
        Some(self.note(size, head))
    }

    /// The newest durable checkpoint, also as `DIR/checkpoint` (replaced
    /// atomically) for tools and operators.
    fn publish_checkpoint(&self, note: &str) {
        let dir = &self.options.dir;
        let tmp = dir.join("checkpoint.tmp");
        let result =
            std::fs::write(&tmp, note).and_then(|()| std::fs::rename(&tmp, dir.join("checkpoint")));
        if let Err(e) = result {
            metrics()
                .audit
                .spool_errors
                .with_label_values(&["checkpoint"])
                .inc();
            tracing::warn!(error = %e, "audit spool: the checkpoint file could not be written");
        }
    }

    /// Idle work: a due interval sync, a due checkpoint, retention.
    fn housekeeping(&mut self, closing: bool) {
        if let SyncPolicy::Interval(every) = self.options.sync {
            if !self.unsynced.is_empty() && (closing || self.last_sync.elapsed() >= every) {
                self.sync_now();
            }
        }
        // A clean shutdown leaves a checkpoint over everything written.
        let final_one = closing && self.since_checkpoint > 0 && self.options.signer.is_some();
        if (self.checkpoint_due() || final_one) && self.retry_at.is_none() {
            self.write(Vec::new());
            self.sync_now();
        }
        // Retention runs while degraded too: it may be what frees the disk.
        if self.last_retention.elapsed() >= RETENTION_EVERY {
            self.last_retention = Instant::now();
            self.retain();
        }
    }

    /// Deletes sealed segments past the limits that every sink has taken,
    /// after an anchor record says where the spool now starts (when the
    /// disk cannot take the anchor, it is written once it can).
    fn retain(&mut self) {
        let dir = self.options.dir.clone();
        let plan = self.options.retention.plan(&dir);
        let (Some(through), Some(last)) = (plan.through, plan.delete.last()) else {
            return;
        };
        let head = match segment::last_record(&last.path) {
            Ok(Some((seq, hash))) if seq == through => hash,
            // A segment whose last record is not where the next begins
            // (damage): keep it for `audit verify` to report.
            _ => return,
        };
        let note = self.note(through + 1, &head);
        self.pending_anchor = Some(note);
        if self.retry_at.is_none() {
            self.write(Vec::new());
            self.sync_now();
        }
        super::retention::Retention::remove(&plan, &dir);
    }

    /// A checkpoint note (signed when there is a key) over `size` records
    /// ending in `head`.
    fn note(&self, size: u64, head: &Hash) -> String {
        let c = Checkpoint {
            origin: self.options.origin.clone(),
            size,
            hash: *head,
        };
        match &self.options.signer {
            Some(s) => c.sign(s),
            None => c.body(),
        }
    }
}

fn fail(done: Option<Done>, e: &SpoolError) {
    match done {
        Some(done) => {
            let _ = done.send(Err(e.clone()));
        }
        // Nobody waits for it (an outcome, a sign-in): counted and logged,
        // never dropped silently.
        None => {
            metrics()
                .audit
                .spool_errors
                .with_label_values(&["event_lost"])
                .inc();
            tracing::error!(error = %e, "audit spool: an event nobody waited for could not be written");
        }
    }
}
