//! Routing and upstream behaviour against real servers: nginx and the demo
//! upstream, round-robin, health checks, WebSockets, failures and timeouts.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn routes_to_nginx_and_demo_by_prefix_and_host() {
    let nginx = Upstream::nginx(
        "location / { default_type text/plain; return 200 'legacy app'; }",
        None,
    );
    let demo = Upstream::demo();
    let px = Phigate::start(&format!(
        "{}\n{}\n{}",
        route_to("fhir", "/fhir", &[demo.origin()], ""),
        route_to("portal", "/portal", &[nginx.origin()], ""),
        "[[routes]]\nname = \"ehr-host\"\nhosts = [\"ehr.example.org\"]\npath_prefix = \"/\"\nupstream = \"portal\"\nauth = { kind = \"public\" }\n",
    ));
    let r = px.get("/fhir/Patient/pat-0001");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], "pat-0001");
    assert!(r.header("x-request-id").is_some());

    let r = px.get("/portal/login");
    assert_eq!((r.status, r.body.as_str()), (200, "legacy app"));
    // The upstream's software banner does not reach the client.
    assert!(
        r.header("server").is_none_or(|s| !s.contains("nginx")),
        "{:?}",
        r.headers
    );

    // Unrouted: 404 with the generic body, never forwarded.
    for path in ["/", "/fhirx", "/admin", "/portalx/a"] {
        let r = px.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "not_found");
    }
    // A host-specific route serves its host only.
    let r = px
        .raw(b"GET /anything HTTP/1.1\r\nHost: EHR.example.org:8443\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.body.as_str()), (200, "legacy app"));

    let m = px.metrics();
    assert_eq!(
        metric_value(&m, "phigate_requests_total{route=\"fhir\",status=\"200\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "phigate_requests_total{route=\"-\",status=\"404\"}"),
        Some(4.0),
        "{m}"
    );
    assert!(m.contains("phigate_request_duration_seconds_bucket{route=\"portal\""));
}

#[test]
fn round_robin_skips_unhealthy_origins() {
    let a = Upstream::nginx("location / { return 200 'a'; }", None);
    let b = Upstream::nginx("location / { return 200 'b'; }", None);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let px = Phigate::start(&route_to(
        "pool",
        "/",
        &[a.origin(), b.origin(), dead],
        "[upstreams.pool.health_check]\npath = \"/healthz\"\ninterval = \"200ms\"\n",
    ));
    let bodies: Vec<String> = (0..6).map(|_| px.get("/x").body).collect();
    assert!(bodies.iter().all(|b| b == "a" || b == "b"), "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| *b == "a").count(), 3, "{bodies:?}");
    let m = px.metrics();
    assert_eq!(
        metric_value(
            &m,
            "phigate_upstream_healthy{origin=\"2\",upstream=\"pool\"}"
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "phigate_upstream_healthy{origin=\"0\",upstream=\"pool\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn upstream_down_gives_502_or_503_generic() {
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    // Without health checks the connect fails per request: 502.
    let px = Phigate::start(&route_to(
        "down",
        "/",
        std::slice::from_ref(&origin),
        "[upstreams.down.health_check]\nenabled = false\n",
    ));
    let r = px.get("/fhir/Patient/1");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "bad_gateway");
    assert!(
        !r.body.contains(&port.to_string()),
        "error body leaks the upstream: {}",
        r.body
    );
    let m = px.metrics_when("phigate_requests_total{route=\"down\",status=\"502\"}", 1.0);
    assert_eq!(
        metric_value(
            &m,
            "phigate_upstream_errors_total{kind=\"connect\",upstream=\"down\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "phigate_requests_total{route=\"down\",status=\"502\"}"),
        Some(1.0),
        "{m}"
    );
    drop(px);

    // With health checks the origin is known down: 503 without trying.
    let px = Phigate::start(&route_to("down", "/", &[origin], ""));
    let r = px.get("/fhir/Patient/1");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "service_unavailable");
    let ready = http_get(px.admin, "/readyz").unwrap();
    assert_eq!(ready.json()["upstreams"]["down"]["healthy"], false);
    let m = px.metrics();
    assert_eq!(
        metric_value(
            &m,
            "phigate_upstream_errors_total{kind=\"no_healthy_origin\",upstream=\"down\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn slow_upstream_gives_504() {
    let demo = Upstream::demo();
    let px = Phigate::start(&route_to(
        "slow",
        "/__slow",
        &[demo.origin()],
        "read_timeout = \"300ms\"\n",
    ));
    let started = Instant::now();
    let r = px.get("/__slow?ms=3000");
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "gateway_timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    let r = px.get("/__slow?ms=10");
    assert_eq!(r.status, 200);
    let m = px.metrics();
    assert_eq!(
        metric_value(
            &m,
            "phigate_upstream_errors_total{kind=\"timeout\",upstream=\"slow\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn keep_alive_and_chunked_bodies_pass_through() {
    let demo = Upstream::demo();
    let px = Phigate::start(&route_to("echo", "/__echo", &[demo.origin()], ""));
    let mut s = std::net::TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Two requests on one connection; the second with a chunked body.
    s.write_all(b"GET /__echo/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s.write_all(b"POST /__echo/2 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let r = parse_response(&rest).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 5);
}

#[test]
fn websocket_upgrade_only_where_allowed() {
    let nginx = Upstream::nginx(
        r#"location / {
            if ($http_upgrade = "websocket") { return 200 "upgrade-seen"; }
            return 200 "plain";
        }"#,
        None,
    );
    let px = Phigate::start(&format!(
        "{}\n[[routes]]\nname = \"ws\"\npath_prefix = \"/ws\"\nupstream = \"app\"\nwebsocket = true\nauth = {{ kind = \"public\" }}\n",
        route_to("app", "/app", &[nginx.origin()], "")
    ));
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let r =
        px.raw(format!("GET /ws/socket HTTP/1.1\r\nHost: localhost\r\n{upgrade}\r\n").as_bytes());
    assert_eq!(r.body, "upgrade-seen");
    let r =
        px.raw(format!("GET /app/socket HTTP/1.1\r\nHost: localhost\r\n{upgrade}\r\n").as_bytes());
    assert_eq!(r.body, "plain");
}

/// A minimal upgrade-then-echo server: answers the handshake with 101 and then
/// echoes raw bytes, which is all a proxy tunnel can observe.
/// A raw upstream on loopback: reads each request head (lowercased) and
/// lets `answer` write whatever it likes on the connection.
fn raw_upstream(answer: fn(&str, &mut std::net::TcpStream)) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                answer(&String::from_utf8_lossy(&head).to_ascii_lowercase(), &mut s);
            });
        }
    });
    addr
}

fn websocket_echo_server() -> std::net::SocketAddr {
    raw_upstream(|head, s| {
        if head.contains("upgrade: websocket") {
            let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        } else {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    })
}

#[test]
fn websocket_tunnel_carries_frames_both_ways() {
    let ws = websocket_echo_server();
    let px = Phigate::start(&format!(
        r#"[[routes]]
name = "ws"
path_prefix = "/ws"
upstream = "ws"
websocket = true
auth = {{ kind = "public" }}

[upstreams.ws]
origins = ["http://{ws}"]
[upstreams.ws.health_check]
enabled = false
"#
    ));
    let mut s = std::net::TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws/chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A masked text frame "hi" (opaque to the proxy) comes back byte for byte.
    let frame = [0x81u8, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    s.write_all(&frame).unwrap();
    let mut echoed = [0u8; 8];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, frame);
}

#[test]
fn slow_request_body_times_out_with_408() {
    let demo = Upstream::demo();
    let px = Phigate::start(&format!(
        "[hygiene]\nclient_body_timeout = \"300ms\"\n\n{}",
        route_to("echo", "/__echo", &[demo.origin()], "")
    ));
    let mut s = std::net::TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Promise 10 bytes, send 2, then stall.
    s.write_all(b"POST /__echo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab")
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let r = parse_response(&out);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "slow body was not cut"
    );
    // The request never completes upstream, and the client is told why.
    let r = r.expect("a 408 response, not just a closed connection");
    assert_eq!(r.status, 408, "{}", r.body);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let demo = Upstream::demo();
    let px = Phigate::start(&format!(
        "[hygiene]\nkeepalive_timeout = \"1s\"\n\n{}",
        route_to("echo", "/__echo", &[demo.origin()], "")
    ));
    let mut s = std::net::TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /__echo/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "idle connection should be closed by phigate");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// A WebSocket route on a phigate whose config starts with `server`.
fn websocket_phigate(server: &str, ws: std::net::SocketAddr) -> Phigate {
    Phigate::start(&format!(
        r#"{server}
[[routes]]
name = "ws"
path_prefix = "/ws"
upstream = "ws"
websocket = true
auth = {{ kind = "public" }}

[upstreams.ws]
origins = ["http://{ws}"]
[upstreams.ws.health_check]
enabled = false
"#
    ))
}

fn open_tunnel(px: &Phigate) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ws/chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Forwarded-For\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    s
}

#[test]
fn a_tunnel_keeps_its_place_under_the_limits_and_closes_when_idle() {
    let ws = websocket_echo_server();
    let px = websocket_phigate(
        "[server]\nmax_connections_per_client = 2\ngrace_period = \"0s\"\n[hygiene]\nkeepalive_timeout = \"1s\"\n",
        ws,
    );
    let mut first = open_tunnel(&px);
    let _second = open_tunnel(&px);
    // Both tunnels hold their places: a third connection is refused.
    let mut third = std::net::TcpStream::connect(px.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = third.read(&mut buf).unwrap_or(0);
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 503"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // An idle tunnel is closed after the keep-alive timeout...
    let started = Instant::now();
    let n = first.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the idle tunnel was kept open");
    assert!(started.elapsed() < Duration::from_secs(4));
    // ...and its place is free again.
    std::thread::sleep(Duration::from_millis(1500));
    let _again = open_tunnel(&px);
}

/// An upstream that answers a head promising 100 bytes, sends 10, stalls.
fn stalling_upstream() -> std::net::SocketAddr {
    raw_upstream(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        std::thread::sleep(Duration::from_secs(5));
    })
}

#[test]
fn a_stalled_upstream_body_is_cut_never_completed() {
    let up = stalling_upstream();
    let px = Phigate::start(&route_to(
        "stall",
        "/stall",
        &[format!("http://{up}")],
        "read_timeout = \"500ms\"\n[upstreams.stall.health_check]\nenabled = false\n",
    ));
    let mut s = std::net::TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    s.write_all(b"GET /stall/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(started.elapsed() < Duration::from_secs(3), "not cut");
    let text = String::from_utf8_lossy(&out);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        body.len() < 100,
        "a stalled body must never look complete: {text}"
    );
}

#[test]
fn a_slow_steady_upload_is_not_an_upstream_timeout() {
    let demo = Upstream::demo();
    let px = Phigate::start(&route_to(
        "echo",
        "/__echo",
        &[demo.origin()],
        "read_timeout = \"600ms\"\n",
    ));
    let mut s = std::net::TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /__echo/up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").unwrap();
    // Five parts 250 ms apart: 1.25 s in all, each well inside the timeout.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(250));
        s.write_all(b"5\r\nhello\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let r = parse_response(&out).expect("a response");
    assert_eq!(r.status, 200, "{}", r.body);
}
