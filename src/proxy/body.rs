//! Bodies on the data plane.
//!
//! [`UpstreamBody`] is what an upstream receives: nothing, bytes already
//! read to decide the request, or the client's stream under the route's size
//! limit and the client body deadline. [`ResponseBody`] is what a client
//! receives: a generated body or the upstream's stream (the response phase
//! wraps it here).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a client's body stream was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    TooLarge,
    TimedOut,
    Client,
}

/// Shared between a streaming body and the request that sent it: whether
/// the body was cut and why (a cut body is the client's failure, not the
/// upstream's), and when the upstream last took a part of it (the write
/// deadline is measured from there).
#[derive(Debug)]
pub struct BodyOutcome {
    failure: AtomicU8,
    finished: std::sync::atomic::AtomicBool,
    /// Milliseconds since `born` at the last frame taken.
    progress_ms: std::sync::atomic::AtomicU64,
    born: Instant,
}

impl Default for BodyOutcome {
    fn default() -> Self {
        BodyOutcome {
            failure: AtomicU8::new(0),
            finished: false.into(),
            progress_ms: 0.into(),
            born: Instant::now(),
        }
    }
}

impl BodyOutcome {
    fn set(&self, f: BodyFailure) {
        let v = match f {
            BodyFailure::TooLarge => 1,
            BodyFailure::TimedOut => 2,
            BodyFailure::Client => 3,
        };
        self.failure.store(v, Ordering::Relaxed);
    }

    fn progressed(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.progress_ms.store(ms, Ordering::Relaxed);
    }

    /// When the upstream last took a part of the body.
    pub fn last_progress(&self) -> Instant {
        self.born + Duration::from_millis(self.progress_ms.load(Ordering::Relaxed))
    }

    /// Whether the whole body has been handed to the upstream.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    pub fn failure(&self) -> Option<BodyFailure> {
        match self.failure.load(Ordering::Relaxed) {
            1 => Some(BodyFailure::TooLarge),
            2 => Some(BodyFailure::TimedOut),
            3 => Some(BodyFailure::Client),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body {0:?}")]
pub struct BodyError(pub BodyFailure);

/// A deadline between frames: armed at the first wait, restarted whenever
/// a frame moves.
struct IdleDeadline {
    after: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleDeadline {
    fn new(after: Duration) -> Self {
        IdleDeadline { after, sleep: None }
    }

    fn progressed(&mut self) {
        if let Some(sleep) = self.sleep.as_mut() {
            sleep.as_mut().reset(Instant::now() + self.after);
        }
    }

    /// Polled while waiting: true once `after` has passed without a frame.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let after = self.after;
        self.sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)))
            .as_mut()
            .poll(cx)
            .is_ready()
    }
}

/// The body sent upstream.
pub enum UpstreamBody<B> {
    Empty,
    Full(Option<Bytes>),
    Stream(Box<LimitedBody<B>>),
}

/// A client's body under a size limit and an idle deadline between frames.
pub struct LimitedBody<B> {
    inner: B,
    read: u64,
    max: u64,
    /// Armed at the first wait (not before the upstream is ready to take
    /// the body) and re-armed after each frame.
    idle: IdleDeadline,
    outcome: Arc<BodyOutcome>,
}

impl<B> UpstreamBody<B> {
    pub fn stream(inner: B, max: u64, idle: Duration, outcome: Arc<BodyOutcome>) -> Self {
        UpstreamBody::Stream(Box::new(LimitedBody {
            inner,
            read: 0,
            max,
            idle: IdleDeadline::new(idle),
            outcome,
        }))
    }
}

impl<B> Body for UpstreamBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Stream(s) => {
                let s = &mut **s;
                match Pin::new(&mut s.inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            s.read += d.len() as u64;
                            if s.read > s.max {
                                s.outcome.set(BodyFailure::TooLarge);
                                return Poll::Ready(Some(Err(
                                    BodyError(BodyFailure::TooLarge).into()
                                )));
                            }
                        }
                        s.idle.progressed();
                        s.outcome.progressed();
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        s.outcome.set(BodyFailure::Client);
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Poll::Ready(None) => {
                        s.outcome.progressed();
                        s.outcome.finished.store(true, Ordering::Relaxed);
                        Poll::Ready(None)
                    }
                    Poll::Pending => {
                        if s.idle.expired(cx) {
                            s.outcome.set(BodyFailure::TimedOut);
                            return Poll::Ready(Some(Err(BodyError(BodyFailure::TimedOut).into())));
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Full(b) => b.is_none(),
            UpstreamBody::Stream(s) => s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            UpstreamBody::Stream(s) => s.inner.size_hint(),
        }
    }
}

/// The body a client receives.
pub enum ResponseBody {
    Full(Option<Bytes>),
    /// The upstream's body, cut (the response aborted, never completed)
    /// when the upstream stalls longer than its read timeout.
    Upstream(Box<UpstreamResponse>),
    /// The upstream's body through the response phase's redactor (cut
    /// when it cannot be redacted).
    Redacted(Box<super::redaction::RedactedBody>),
    /// A body whose end writes the request's audit outcome record.
    Audited(Box<super::audit::AuditedBody>),
}

/// An upstream's response body under an idle deadline between frames.
pub struct UpstreamResponse {
    body: hyper::body::Incoming,
    idle: IdleDeadline,
}

#[derive(Debug, thiserror::Error)]
#[error("the upstream stalled mid-response")]
pub struct UpstreamStalled;

impl ResponseBody {
    /// The upstream's body, cut if it stalls for longer than `idle`.
    pub fn upstream(body: hyper::body::Incoming, idle: Duration) -> ResponseBody {
        ResponseBody::Upstream(Box::new(UpstreamResponse {
            body,
            idle: IdleDeadline::new(idle),
        }))
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::Full(None)
    }

    pub fn full(b: impl Into<Bytes>) -> ResponseBody {
        let b = b.into();
        ResponseBody::Full((!b.is_empty()).then_some(b))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(u) => match Pin::new(&mut u.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    u.idle.progressed();
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
                Poll::Pending => {
                    if u.idle.expired(cx) {
                        return Poll::Ready(Some(Err(UpstreamStalled.into())));
                    }
                    Poll::Pending
                }
            },
            ResponseBody::Redacted(r) => Pin::new(&mut **r).poll_frame(cx),
            ResponseBody::Audited(a) => Pin::new(&mut **a).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Upstream(u) => u.body.is_end_stream(),
            ResponseBody::Redacted(r) => r.is_end_stream(),
            ResponseBody::Audited(a) => a.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Upstream(u) => u.body.size_hint(),
            ResponseBody::Redacted(_) => SizeHint::default(),
            ResponseBody::Audited(a) => a.size_hint(),
        }
    }
}
