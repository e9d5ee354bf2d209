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
    let Some(origin) = pool.select() else {
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
        .path_and_query(out.admission.path.as_uri_str())
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
    let exchange = client.request(req);
    let resp = match tokio::time::timeout(pool.read_timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(failure(pool, &e, out.body_outcome.as_deref())),
        Err(_) => {
            metrics()
                .upstream_errors
                .with_label_values(&[&pool.name, "timeout"])
                .inc();
            return Err(Stop::new(respond::error(504), "upstream_timeout"));
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
                tokio::spawn(tunnel(client_side, upstream_side));
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

/// Copies bytes both ways between an upgraded client and upstream.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
        return;
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
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
