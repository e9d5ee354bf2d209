//! The upstream stage: the next healthy origin, the request as the upstream
//! sees it (normalized target, phigate's forwarding and identity headers,
//! never the client's), the pooled exchange with its deadlines, WebSocket
//! tunnels, and upstream failures as generic answers.

use super::admit::Admission;
use super::body::{BodyFailure, BodyOutcome, UpstreamBody};
use super::client::{origin_client, OriginClient};
use super::respond::{self, Stop};
use super::routes::Route;
use super::Pool;
use crate::http::hop_by_hop_headers;
use crate::metrics::metrics;
use bytes::Bytes;
use http::header::{HeaderValue, HOST, UPGRADE};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// One worker's pooled clients: by pool index, then origin index.
pub struct Upstreams<B> {
    clients: Vec<Vec<OriginClient<UpstreamBody<B>>>>,
}

impl<B> Upstreams<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<super::body::BoxError>,
{
    /// Clients for `pools` (in the routing table's pool order). Build one
    /// per worker runtime: a pooled connection belongs to the runtime that
    /// opened it.
    pub fn new(pools: &[Arc<Pool>]) -> Upstreams<B> {
        Upstreams {
            clients: pools
                .iter()
                .map(|p| {
                    p.origins()
                        .iter()
                        .map(|o| origin_client(o.connector(), p.idle_timeout))
                        .collect()
                })
                .collect(),
        }
    }
}

/// What forwarding adds to the request.
pub struct Outbound<'a> {
    pub admission: &'a Admission,
    pub request_id: &'a str,
    /// The client asked for a WebSocket upgrade on a route that allows it.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// Why the client's body stream was cut, if it was.
    pub body_outcome: Option<Arc<BodyOutcome>>,
    /// What keeps the connection counted, for a tunnel that outlives it.
    pub held: Option<crate::server::conn::Held>,
    /// A tunnel closes after this long with no bytes either way.
    pub tunnel_idle: std::time::Duration,
    /// Another path and query than the client's (a pre-read).
    pub target: Option<&'a str>,
    /// This origin (by index) rather than the next healthy one: a write
    /// goes where its stored record was read.
    pub origin: Option<usize>,
}

/// Sends the request to the route's next healthy origin. `head` already
/// carries the headers the upstream may see.
pub async fn forward<B>(
    upstreams: &Upstreams<B>,
    mut head: Parts,
    body: UpstreamBody<B>,
    out: Outbound<'_>,
) -> Result<Response<Incoming>, Stop>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<super::body::BoxError>,
{
    let route: &Route = &out.admission.route;
    let pool = &route.pool;
    let chosen = match out.origin {
        Some(i) => pool.origins().get(i).filter(|o| o.is_healthy()),
        None => pool.select(),
    };
    let Some(origin) = chosen else {
        metrics()
            .upstream_errors
            .with_label_values(&[&pool.name, "no_healthy_origin"])
            .inc();
        return Err(Stop::new(respond::error(503), "no_healthy_origin"));
    };
    let Some(client) = upstreams
        .clients
        .get(route.pool_index)
        .and_then(|p| p.get(origin.index()))
    else {
        return Err(Stop::new(respond::error(500), "no_client"));
    };
    let uri = Uri::builder()
        .scheme(origin.scheme.clone())
        .authority(origin.authority.clone())
        .path_and_query(out.target.unwrap_or(out.admission.path.as_uri_str()))
        .build();
    let Ok(uri) = uri else {
        return Err(Stop::new(respond::error(400), "bad_target"));
    };
    // The client's Host (HTTP/1) or :authority (HTTP/2), or the origin's.
    if route.preserve_host {
        if !head.headers.contains_key(HOST) {
            if let Some(v) = head
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                head.headers.insert(HOST, v);
            }
        }
    } else {
        head.headers.insert(HOST, origin.host_header().clone());
    }
    head.uri = uri;
    head.version = Version::HTTP_11;
    let upgrade = out.upgrade;
    let req = Request::from_parts(head, body);
    let mut exchange = std::pin::pin!(client.request(req));
    let sent_at = tokio::time::Instant::now();
    // While the upstream takes the body, each part must be taken within the
    // write timeout; once it has all of it, the head must come within the
    // read timeout.
    let deadline = || match out.body_outcome.as_deref() {
        Some(o) if !o.finished() => o.last_progress().max(sent_at) + pool.write_timeout,
        Some(o) => o.last_progress().max(sent_at) + pool.read_timeout,
        None => sent_at + pool.read_timeout,
    };
    let resp = loop {
        let at = deadline();
        tokio::select! {
            r = exchange.as_mut() => match r {
                Ok(r) => break r,
                Err(e) => return Err(failure(pool, &e, out.body_outcome.as_deref())),
            },
            _ = tokio::time::sleep_until(at) => {
                if deadline() > at {
                    continue;
                }
                metrics()
                    .upstream_errors
                    .with_label_values(&[&pool.name, "timeout"])
                    .inc();
                return Err(Stop::new(respond::error(504), "upstream_timeout"));
            }
        }
    };
    let mut resp = resp;
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    for name in hop_by_hop_headers(resp.headers()) {
        if switching && name == http::header::CONNECTION {
            continue;
        }
        resp.headers_mut().remove(name);
    }
    if switching {
        match upgrade {
            Some(client_side) => {
                let upstream_side = hyper::upgrade::on(&mut resp);
                tokio::spawn(tunnel(
                    client_side,
                    upstream_side,
                    out.held,
                    out.tunnel_idle,
                ));
            }
            // No upgrade was asked for: a 101 would leave the client talking
            // to nothing.
            None => return Err(Stop::new(respond::error(502), "unexpected_upgrade")),
        }
    } else {
        resp.headers_mut().remove(UPGRADE);
    }
    for name in DISCLOSURE_HEADERS {
        resp.headers_mut().remove(*name);
    }
    Ok(resp)
}

/// Copies bytes both ways between an upgraded client and upstream. The
/// tunnel keeps its connection's place under the limits and holds shutdown
/// for at most the grace period (`held`); it closes when neither side has
/// sent anything for `idle`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    held: Option<crate::server::conn::Held>,
    idle: std::time::Duration,
) {
    let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
        return;
    };
    let activity = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let born = tokio::time::Instant::now();
    let mut client = Active::new(TokioIo::new(client), activity.clone(), born);
    let mut upstream = Active::new(TokioIo::new(upstream), activity.clone(), born);
    let watch_idle = async {
        loop {
            tokio::time::sleep(idle / 2).await;
            let last = born
                + std::time::Duration::from_millis(
                    activity.load(std::sync::atomic::Ordering::Relaxed),
                );
            if last.elapsed() >= idle {
                metrics()
                    .connection_events
                    .with_label_values(&["tunnel_idle_timeout"])
                    .inc();
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = watch_idle => {}
    }
    drop(held);
}

/// A stream that notes when it last read anything.
struct Active<S> {
    inner: S,
    last: Arc<std::sync::atomic::AtomicU64>,
    born: tokio::time::Instant,
}

impl<S> Active<S> {
    fn new(inner: S, last: Arc<std::sync::atomic::AtomicU64>, born: tokio::time::Instant) -> Self {
        Active { inner, last, born }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Active<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = self.born.elapsed().as_millis() as u64;
            self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Active<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        b: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, b)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An upstream exchange that failed, as the client's answer. A body the
/// client cut short is the client's failure (413, 408), not the upstream's.
fn failure(pool: &Pool, e: &hyper_util::client::legacy::Error, body: Option<&BodyOutcome>) -> Stop {
    match body.and_then(BodyOutcome::failure) {
        Some(BodyFailure::TooLarge) => {
            let mut r = respond::error(413);
            respond::close(&mut r);
            return Stop::new(r, "body_too_large");
        }
        Some(BodyFailure::TimedOut) => {
            let mut r = respond::error(408);
            respond::close(&mut r);
            return Stop::new(r, "client_body_timeout");
        }
        Some(BodyFailure::Client) => {
            let mut r = respond::error(400);
            respond::close(&mut r);
            return Stop::new(r, "client_body_error");
        }
        None => {}
    }
    let io_kind = std::error::Error::source(e).and_then(|s| {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(s);
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            cur = err.source();
        }
        None
    });
    let (status, kind) = if e.is_connect() {
        match io_kind {
            Some(std::io::ErrorKind::TimedOut) => (504, "timeout"),
            Some(std::io::ErrorKind::InvalidData) => (502, "tls"),
            _ => (502, "connect"),
        }
    } else {
        (502, "protocol")
    };
    metrics()
        .upstream_errors
        .with_label_values(&[&pool.name, kind])
        .inc();
    // hyper's error chain names the failure, never the request.
    let mut chain = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        chain.push_str(": ");
        chain.push_str(&err.to_string());
        cur = err.source();
    }
    tracing::warn!(upstream = %pool.name, kind, error = %chain, "upstream exchange failed");
    Stop::new(respond::error(status), "upstream_failed")
}

/// Response headers that advertise the upstream's software and version.
const DISCLOSURE_HEADERS: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-runtime",
    "x-generator",
];
