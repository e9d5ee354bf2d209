//! An in-memory FHIR R4 REST server over hyper (HTTP/1.1, keep-alive) that
//! serves a [`DemoData`] set as phigate's demo and test upstream.
//!
//! Besides the read-only FHIR API under `/fhir` it answers `/healthz` for the
//! proxy's active health checks, `/__echo/...` to show exactly what reached
//! the upstream, and `/__slow?ms=N` to exercise proxy timeouts. Only method
//! and status are logged: paths, queries and bodies carry PHI.

mod query;
mod rest;
mod store;

use crate::demo::data::DemoData;
use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rest::Reply;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Echo bodies are read whole, so they are capped.
const ECHO_BODY_LIMIT: usize = 1 << 20;
/// `/__slow` refuses longer sleeps, so a typo cannot wedge a test run.
const MAX_SLOW_MS: u64 = 120_000;
/// How long shutdown waits for in-flight requests before aborting them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

type Body = Full<Bytes>;

/// Serves `data` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish (for up to five seconds) and
/// returns. Each resource is serialized once, up front.
pub async fn serve(
    listener: TcpListener,
    data: Arc<DemoData>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = Arc::new(Store::new(&data));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let store = Arc::clone(&store);
                    connections.spawn(serve_connection(stream, store, stop_rx.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "demo upstream: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Receivers only fail once every connection is gone, which is fine.
    let _ = stop_tx.send(true);
    drain(connections).await;
    Ok(())
}

/// Waits for connections to finish, aborting any still busy at the deadline.
async fn drain(mut connections: JoinSet<()>) {
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, finished).await.is_err() {
        tracing::warn!("demo upstream: aborting connections still busy at shutdown");
        connections.shutdown().await;
    }
}

async fn serve_connection(stream: TcpStream, store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    // Latency matters more than packet count for a benchmark upstream.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let store = Arc::clone(&store);
        async move { Ok::<_, Infallible>(handle(&store, request).await) }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "demo upstream: connection ended with an error");
    }
}

/// Resolves once shutdown begins (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

async fn handle(store: &Store, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path();
    let response = if path == "/healthz" {
        health(&method)
    } else if path == "/__slow" {
        slow(&method, request.uri().query()).await
    } else if path == "/__echo" || path.starts_with("/__echo/") {
        echo(request).await
    } else if let Some(rest) = path
        .strip_prefix("/fhir")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    {
        let base = base_url(request.headers());
        let rest = rest.to_string();
        let (head, body) = request.into_parts();
        // Read (and discard) a body before answering, as a well-behaved
        // server does: closing with it unread resets the connection under
        // the response.
        let _ = Limited::new(body, 16 * 1024 * 1024).collect().await;
        into_response(rest::route(store, &method, &rest, head.uri.query(), &base))
    } else {
        text(StatusCode::NOT_FOUND, "not found")
    };
    tracing::debug!(method = %method, status = response.status().as_u16(), "demo upstream request");
    response
}

fn health(method: &Method) -> Response<Body> {
    match *method {
        Method::GET | Method::HEAD => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

/// `GET /__slow?ms=N`: answers after N milliseconds.
async fn slow(method: &Method, query: Option<&str>) -> Response<Body> {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let pairs = query::parse_query(query.unwrap_or("")).unwrap_or_default();
    let ms = pairs
        .iter()
        .find(|(name, _)| name == "ms")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    match ms.filter(|ms| *ms <= MAX_SLOW_MS) {
        Some(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, "ok")
        }
        None => text(
            StatusCode::BAD_REQUEST,
            "ms must be an integer from 0 to 120000",
        ),
    }
}

/// `ANY /__echo/...`: reports the method, raw target, every header (values
/// of one name in received order) and the body length, as JSON.
async fn echo(request: Request<Incoming>) -> Response<Body> {
    let method = request.method().as_str().to_owned();
    let target = match request.uri().path_and_query() {
        Some(pq) => pq.as_str().to_owned(),
        None => request.uri().path().to_owned(),
    };
    let headers: Vec<[String; 2]> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            [
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let body_len = match Limited::new(request.into_body(), ECHO_BODY_LIMIT)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes().len(),
        Err(e) if e.is::<LengthLimitError>() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB")
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    let report = serde_json::json!({
        "method": method, "path": target, "headers": headers, "body_len": body_len
    });
    respond(
        StatusCode::OK,
        "application/json",
        store::json_bytes(&report),
    )
}

/// `http://<Host>/fhir` for `fullUrl`s and links; a missing or odd-looking
/// Host falls back to `localhost` rather than being echoed into JSON.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}/fhir")
}

fn into_response(reply: Reply) -> Response<Body> {
    let mut response = respond(reply.status, reply.content_type, reply.body);
    if reply.status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
    }
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests;
