//! The benchmark's reference forwarder: the least a hyper 1.x reverse proxy
//! does (one current-thread runtime, hyper-util's pooled client, mimalloc,
//! `X-Forwarded-For` added, hop-by-hop headers removed) and nothing else —
//! no hygiene, no authentication, no policy. `scripts/bench-proxy` runs it
//! beside nginx so phigate's own cost can be told from hyper's.
//!
//!   cargo run --release --example hyper_bare -- LISTEN_ADDR ORIGIN_ADDR
#![forbid(unsafe_code)]

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: hyper_bare LISTEN_ADDR ORIGIN_ADDR");
        std::process::exit(2);
    }
    let (Ok(listen), Ok(origin)) = (args[1].parse::<SocketAddr>(), args[2].parse::<SocketAddr>())
    else {
        eprintln!("hyper_bare: addresses must be IP:PORT");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("hyper_bare: {e}");
            std::process::exit(1)
        });
    rt.block_on(serve(listen, origin));
}

async fn serve(listen: SocketAddr, origin: SocketAddr) {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hyper_bare: {listen}: {e}");
            std::process::exit(1)
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let base = format!("http://{origin}");
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                let base = base.clone();
                async move { Ok::<_, Infallible>(forward(&client, &base, peer, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    base: &str,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<http_body_util::Either<Incoming, http_body_util::Full<Bytes>>> {
    let (mut head, body) = req.into_parts();
    let target = head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    head.uri = match format!("{base}{target}").parse() {
        Ok(u) => u,
        Err(_) => return status(400),
    };
    for name in HOP_BY_HOP {
        head.headers.remove(*name);
    }
    if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
        head.headers.insert("x-forwarded-for", v);
    }
    match client.request(Request::from_parts(head, body)).await {
        Ok(mut resp) => {
            resp.headers_mut().remove(CONNECTION);
            resp.map(http_body_util::Either::Left)
        }
        Err(_) => status(502),
    }
}

fn status(code: u16) -> Response<http_body_util::Either<Incoming, http_body_util::Full<Bytes>>> {
    let mut r = Response::new(http_body_util::Either::Right(http_body_util::Full::new(
        Bytes::new(),
    )));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r
}
