//! Listeners: binding, accepting under limits, and serving each connection
//! with hyper (HTTP/1.1, or HTTP/2 when ALPN chose it).
//!
//! A listener that cannot bind fails start-up. Connections are limited in
//! total and per client address; over a limit, or at the file-descriptor
//! limit, a client gets a `503` and a closed connection rather than silence
//! (a descriptor is held in reserve for exactly that).

use super::conn::{ConnInfo, HeadDeadlines, TrackedIo};
use crate::authn::mtls::ClientCertIdentity;
use crate::http::HeadTracker;
use crate::metrics::metrics;
use crate::proxy::Pipeline;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// A bound listening socket and how its connections are served.
pub struct BoundListener {
    pub index: usize,
    pub socket: std::net::TcpListener,
    pub tls: Option<TlsListener>,
}

/// A TLS listener's acceptor and the client CA it verifies with (named on
/// each client certificate it verified).
#[derive(Clone)]
pub struct TlsListener {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub client_ca: Option<Arc<str>>,
}

/// Binds `address` (backlog 4096, `SO_REUSEADDR`), non-blocking.
pub fn bind(address: &str) -> std::io::Result<std::net::TcpListener> {
    let addr: SocketAddr = address.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{address} is not IP:PORT"),
        )
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Connection-level settings shared by every worker.
pub struct ConnSettings {
    pub max_connections: usize,
    pub max_per_client: usize,
    pub tls_handshake_timeout: Duration,
    pub deadlines: HeadDeadlines,
    pub keepalive: Duration,
    pub max_head_bytes: usize,
    pub max_head_fields: usize,
    /// Peers whose connections carry many clients (load balancers in
    /// `hygiene.trusted_proxies`): not held to the per-client limit.
    pub trusted: crate::http::TrustedProxies,
}

/// Open connections, in total and per client address.
#[derive(Default)]
pub struct Limits {
    per_client: Mutex<HashMap<IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
}

/// A connection's place under the limits; released on drop.
pub struct Admitted {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    /// Takes a place for a connection from `ip`, or says which limit is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, s: &ConnSettings) -> Result<Admitted, &'static str> {
        use std::sync::atomic::Ordering;
        let total = self.total.fetch_add(1, Ordering::Relaxed);
        if total >= s.max_connections {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("max_connections");
        }
        let Ok(mut map) = self.per_client.lock() else {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("max_connections");
        };
        let n = map.entry(ip).or_insert(0);
        if *n >= s.max_per_client && !s.trusted.contains(ip) {
            drop(map);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err("max_connections_per_client");
        }
        *n += 1;
        metrics().connections_open.inc();
        Ok(Admitted {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
        metrics().connections_open.dec();
        if let Ok(mut map) = self.limits.per_client.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

/// A descriptor kept open so that, at the process's descriptor limit, one
/// can be freed to accept a connection and tell the client `503`.
pub struct Reserve(Mutex<Option<std::fs::File>>);

impl Reserve {
    pub fn new() -> Reserve {
        Reserve(Mutex::new(std::fs::File::open("/dev/null").ok()))
    }

    /// Frees the reserve, accepts and refuses one connection, re-arms.
    fn refuse_one(&self, listener: &TcpListener, tls: bool) {
        let Ok(mut slot) = self.0.lock() else { return };
        drop(slot.take());
        if let Ok((stream, _)) = listener_accept_now(listener) {
            if !tls {
                refuse(stream);
            }
        }
        *slot = std::fs::File::open("/dev/null").ok();
    }
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve::new()
    }
}

fn listener_accept_now(
    listener: &TcpListener,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    // A blocking accept would stall the runtime: the listener is
    // non-blocking, so this returns at once when nothing is waiting.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match listener.poll_accept(&mut cx) {
        std::task::Poll::Ready(Ok((s, a))) => Ok((s.into_std()?, a)),
        std::task::Poll::Ready(Err(e)) => Err(e),
        std::task::Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
    }
}

/// Tells a connection over a limit that the service is unavailable, and
/// closes it (plain bytes: no TLS, no parser, nothing it sent is read).
fn refuse(mut stream: std::net::TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 56\r\nconnection: close\r\nretry-after: 1\r\n\r\n{\"error\":\"service_unavailable\",\"status\":503,\"limit\":1}\n",
    );
}

/// What a connection needs to drain: the stop signal, and a sender whose
/// drop tells the worker this connection is gone (mini-redis's pattern).
#[derive(Clone)]
pub struct Drain {
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub done: tokio::sync::mpsc::Sender<()>,
}

impl Drain {
    /// Serves `conn` until it ends; on stop, or when `idle` fires, asks it
    /// to finish gracefully (in-flight requests complete, idle keep-alive
    /// closes at once, HTTP/2 gets GOAWAY).
    async fn serve<C, T, E>(mut self, conn: C, idle: impl Future<Output = ()>) -> Result<T, E>
    where
        C: Future<Output = Result<T, E>> + GracefulConn,
    {
        let mut conn = std::pin::pin!(conn);
        let stopping = *self.stop.borrow();
        if stopping {
            conn.as_mut().begin_graceful();
            return conn.await;
        }
        tokio::select! {
            r = conn.as_mut() => r,
            _ = stopped(&mut self.stop) => {
                conn.as_mut().begin_graceful();
                conn.await
            }
            _ = idle => {
                conn.as_mut().begin_graceful();
                conn.await
            }
        }
    }
}

/// Resolves once `stop` says true (or its sender is gone).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = *stop.borrow_and_update();
        if now {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// hyper's connections, which can be asked to finish gracefully.
pub trait GracefulConn {
    fn begin_graceful(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConn for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn begin_graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

impl<I, S, E, B> GracefulConn for http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn begin_graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

/// One worker's accept loop for one listener, until `stop` fires. Each
/// connection is served on this worker's runtime and drains with `drain`.
#[allow(clippy::too_many_arguments)]
pub async fn accept_loop(
    listener: TcpListener,
    index: usize,
    tls: Option<TlsListener>,
    pipeline: Arc<Pipeline<hyper::body::Incoming>>,
    settings: Arc<ConnSettings>,
    limits: Arc<Limits>,
    reserve: Arc<Reserve>,
    drain: Drain,
) {
    let mut stop = drain.stop.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut stop) => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE (24) and ENFILE (23): out of descriptors.
                let at_limit = matches!(e.raw_os_error(), Some(23 | 24));
                metrics()
                    .connection_events
                    .with_label_values(&[if at_limit {
                        "accept_fd_limit"
                    } else {
                        "accept_error"
                    }])
                    .inc();
                if at_limit {
                    reserve.refuse_one(&listener, tls.is_some());
                }
                // Back off so a persistent error does not spin the worker.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let place = match limits.admit(peer.ip(), &settings) {
            Ok(p) => p,
            Err(which) => {
                metrics()
                    .connection_events
                    .with_label_values(&[which])
                    .inc();
                if let Ok(s) = stream.into_std() {
                    refuse(s);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let held = super::conn::Held(Arc::new((place, drain.done.clone())));
        tokio::spawn(serve(
            stream,
            peer,
            index,
            tls.clone(),
            pipeline.clone(),
            settings.clone(),
            drain.clone(),
            held,
        ));
    }
}

/// Serves one connection: TLS handshake, then HTTP/1.1 or HTTP/2.
#[allow(clippy::too_many_arguments)]
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    index: usize,
    tls: Option<TlsListener>,
    pipeline: Arc<Pipeline<hyper::body::Incoming>>,
    settings: Arc<ConnSettings>,
    graceful: Drain,
    held: super::conn::Held,
) {
    match tls {
        None => {
            let mut info = ConnInfo::new(peer, index, false);
            info.held = Some(held);
            serve_h1(stream, info, pipeline, &settings, graceful).await
        }
        Some(TlsListener {
            acceptor,
            client_ca,
        }) => {
            let handshake = acceptor.accept(stream);
            let tls = match tokio::time::timeout(settings.tls_handshake_timeout, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(_)) => {
                    metrics()
                        .connection_events
                        .with_label_values(&["tls_handshake_failed"])
                        .inc();
                    return;
                }
                Err(_) => {
                    metrics()
                        .connection_events
                        .with_label_values(&["tls_handshake_timeout"])
                        .inc();
                    return;
                }
            };
            let (_, session) = tls.get_ref();
            let version = match session.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "unknown",
            };
            metrics().tls_handshakes.with_label_values(&[version]).inc();
            let h2 = session.alpn_protocol() == Some(b"h2");
            let mut info = ConnInfo::new(peer, index, true);
            info.held = Some(held);
            // rustls verified the chain against this listener's CA: the
            // identity says which CA, and maps to a principal only through it.
            info.client_cert = session
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| ClientCertIdentity::from_der(der))
                .map(|mut id| {
                    id.verified_by = client_ca.clone();
                    id
                });
            if h2 {
                serve_h2(tls, info, pipeline, &settings, graceful).await
            } else {
                serve_h1(tls, info, pipeline, &settings, graceful).await
            }
        }
    }
}

async fn serve_h1<S>(
    stream: S,
    mut info: ConnInfo,
    pipeline: Arc<Pipeline<hyper::body::Incoming>>,
    settings: &ConnSettings,
    graceful: Drain,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tracker = Arc::new(Mutex::new(HeadTracker::new(
        settings.max_head_bytes,
        settings.max_head_fields,
    )));
    info.heads = Some(tracker.clone());
    let io = TokioIo::new(TrackedIo::new(stream, tracker, settings.deadlines));
    let info = Arc::new(info);
    let service = service_fn(move |req| {
        let pipeline = pipeline.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(pipeline.handle(req, &info).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.keepalive)
        .max_headers(settings.max_head_fields)
        // The head limit the tracker holds too: anything larger is hyper's 431.
        .max_header_size(settings.max_head_bytes)
        .max_buf_size(settings.max_head_bytes.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(io, service).with_upgrades();
    // hyper's header_read_timeout closes idle HTTP/1 keep-alive.
    if let Err(e) = graceful.serve(conn, std::future::pending()).await {
        record_connection_error(&e);
    }
}

async fn serve_h2<S>(
    stream: S,
    info: ConnInfo,
    pipeline: Arc<Pipeline<hyper::body::Incoming>>,
    settings: &ConnSettings,
    graceful: Drain,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let idle = idle_h2(info.clone(), settings.keepalive);
    let service = service_fn(move |req| {
        let pipeline = pipeline.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(pipeline.handle(req, &info).await) }
    });
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(settings.max_head_bytes as u32);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = graceful.serve(conn, idle).await {
        record_connection_error(&e);
    }
}

/// Resolves once an HTTP/2 connection has started no request for a whole
/// `keepalive` period (so between one and two periods of idleness). Streams
/// still running finish after the GOAWAY this triggers.
async fn idle_h2(info: Arc<ConnInfo>, keepalive: Duration) {
    let mut seen = info.requests.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        tokio::time::sleep(keepalive).await;
        let now = info.requests.load(std::sync::atomic::Ordering::Relaxed);
        if now == seen {
            metrics()
                .connection_events
                .with_label_values(&["h2_idle_goaway"])
                .inc();
            return;
        }
        seen = now;
    }
}

/// Requests the HTTP parser refused never reach the pipeline: count them
/// (no bytes of the request are logged).
fn record_connection_error(e: &hyper::Error) {
    let event = if e.is_parse_too_large() {
        "parse_too_large"
    } else if e.is_parse() {
        "parse_error"
    } else if e.is_timeout() {
        "head_timeout"
    } else if e.is_incomplete_message() {
        "incomplete_request"
    } else {
        "connection_error"
    };
    metrics()
        .connection_events
        .with_label_values(&[event])
        .inc();
    if event.starts_with("parse") {
        tracing::info!(event, "request refused by the HTTP parser");
    }
}
