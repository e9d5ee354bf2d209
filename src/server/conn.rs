//! One client connection as the pipeline sees it: who is at the other end
//! ([`ConnInfo`]) and, on HTTP/1, the raw request heads and head deadlines
//! ([`TrackedIo`]).
//!
//! hyper's own `header_read_timeout` bounds the wait for each head from the
//! moment hyper is ready for it (the keep-alive idle time). [`TrackedIo`]
//! adds what hyper lacks: a deadline for the first request of a new
//! connection and a whole-head deadline from a head's first byte, so a
//! client that trickles header bytes is closed however slowly it sends.

use crate::authn::mtls::ClientCertIdentity;
use crate::http::{HeadTracker, RawHead};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What keeps a connection counted: its place under the connection limits
/// and its worker's drain. A WebSocket tunnel that outlives the HTTP
/// connection holds it too, until the tunnel closes.
#[derive(Clone)]
pub struct Held(pub Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

/// What is known about a connection before any request on it.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// Index of the listener it arrived on (its TLS and client CA).
    pub listener: usize,
    pub tls: bool,
    /// The verified client certificate, when the client presented one.
    pub client_cert: Option<ClientCertIdentity>,
    /// HTTP/1: the raw heads of its requests, in order. `None` on HTTP/2.
    pub heads: Option<Arc<Mutex<HeadTracker>>>,
    /// Requests started on this connection.
    pub requests: AtomicU32,
    /// Its place under the limits and in the drain.
    pub held: Option<Held>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, listener: usize, tls: bool) -> ConnInfo {
        ConnInfo {
            peer,
            listener,
            tls,
            client_cert: None,
            heads: None,
            requests: AtomicU32::new(0),
            held: None,
        }
    }

    /// Counts a request; returns how many this connection has now served.
    pub fn count_request(&self) -> u32 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The raw head of the request now being served. `Err` when the
    /// connection's bytes could not be followed (refuse the request);
    /// `Ok(None)` on HTTP/2, where hyper's view is the only view.
    pub fn next_head(&self) -> Result<Option<RawHead>, Unfollowed> {
        let Some(heads) = &self.heads else {
            return Ok(None);
        };
        let mut t = heads.lock().map_err(|_| Unfollowed)?;
        t.pop().map(Some).ok_or(Unfollowed)
    }
}

/// An HTTP/1 request whose head the connection's bytes do not account for.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the connection's bytes could not be followed")]
pub struct Unfollowed;

/// Deadlines for request heads.
#[derive(Debug, Clone, Copy)]
pub struct HeadDeadlines {
    /// From accept (or the end of the TLS handshake) to the first head's
    /// first byte.
    pub first_request: Duration,
    /// From a head's first byte to its last.
    pub whole_head: Duration,
}

/// An HTTP/1 connection's byte stream, followed by a [`HeadTracker`].
pub struct TrackedIo<S> {
    inner: S,
    tracker: Arc<Mutex<HeadTracker>>,
    deadlines: HeadDeadlines,
    sleep: Pin<Box<Sleep>>,
    /// Which phase the sleep is armed for.
    armed: Phase,
    seen_a_head: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    FirstRequest,
    InHead,
    None,
}

impl<S> TrackedIo<S> {
    pub fn new(inner: S, tracker: Arc<Mutex<HeadTracker>>, deadlines: HeadDeadlines) -> Self {
        TrackedIo {
            inner,
            tracker,
            deadlines,
            sleep: Box::pin(tokio::time::sleep(deadlines.first_request)),
            armed: Phase::FirstRequest,
            seen_a_head: false,
        }
    }

    /// The phase the tracker is in now.
    fn phase(&self, t: &HeadTracker) -> Phase {
        match t.awaiting_head() {
            Some(true) => Phase::InHead,
            Some(false) if !self.seen_a_head => Phase::FirstRequest,
            _ => Phase::None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let phase = {
            let Ok(mut t) = this.tracker.lock() else {
                return Poll::Ready(Err(io::Error::other("head tracker poisoned")));
            };
            if let Poll::Ready(Ok(())) = &result {
                let fresh = &buf.filled()[before..];
                if !fresh.is_empty() {
                    let had = t.awaiting_head().is_some();
                    t.feed(fresh);
                    if had && t.awaiting_head() != Some(true) {
                        this.seen_a_head = true;
                    }
                }
            }
            this.phase(&t)
        };
        if phase != this.armed {
            match phase {
                Phase::InHead => {
                    let at = Instant::now() + this.deadlines.whole_head;
                    this.sleep.as_mut().reset(at);
                }
                Phase::FirstRequest | Phase::None => {}
            }
            this.armed = phase;
        }
        if result.is_pending()
            && this.armed != Phase::None
            && this.sleep.as_mut().poll(cx).is_ready()
        {
            crate::metrics::metrics()
                .connection_events
                .with_label_values(&[match this.armed {
                    Phase::FirstRequest => "first_request_timeout",
                    _ => "head_timeout",
                }])
                .inc();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head deadline passed",
            )));
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
