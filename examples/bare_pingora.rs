//! The floor for `scripts/bench-proxy`: a Pingora proxy that does nothing but
//! forward, with the same worker count and upstream keep-alive as phigate.
//! Comparing phigate with it separates phigate's own cost from Pingora's.
//!
//!   cargo run --release --example bare_pingora -- LISTEN_ADDR ORIGIN_ADDR

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Forward(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(origin)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_pingora LISTEN_ADDR ORIGIN_ADDR");
        std::process::exit(2);
    };
    let Ok(origin) = origin.parse() else {
        eprintln!("bare_pingora: {origin} is not IP:PORT");
        std::process::exit(2);
    };
    // PINGORA_WORK_STEALING=0 runs one current-thread runtime per worker.
    let work_stealing = std::env::var("PINGORA_WORK_STEALING").map_or(true, |v| v != "0");
    let conf = ServerConf {
        threads: 1,
        work_stealing,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Forward(origin));
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
