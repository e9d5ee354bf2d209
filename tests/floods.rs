//! Floods and faults against a real phigate over loopback: a port that
//! cannot be bound, connection limits, trickled and missing heads, the
//! descriptor limit, upstream outages on keep-alive connections, oversized
//! heads, client aborts, requests the HTTP parser refuses, and SIGTERM with
//! nothing in flight. Every loop is bounded in count and time.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn echo_route(upstream: &Upstream) -> String {
    route_to("echo", "/__echo", &[upstream.origin()], "")
}

/// Reads until the peer closes or `limit` passes; returns what arrived and
/// whether the peer closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => {}
        }
    }
    (out, false)
}

#[test]
fn a_listener_that_cannot_bind_fails_startup() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phigate.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[admin]\naddress = \"127.0.0.1:{}\"\n\n{}",
            free_port(),
            route_to("echo", "/__echo", &["http://127.0.0.1:9".into()], "")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(phigate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must exit non-zero: {stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("cannot listen"),
        "{stderr}"
    );
}

#[test]
fn connections_over_the_per_client_limit_get_503() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&format!(
        "[server]\nmax_connections_per_client = 4\ngrace_period = \"0s\"\n\n{}",
        echo_route(&upstream)
    ));
    // The harness's own port probe must be gone first.
    px.metrics_when("phigate_connections_open", 0.0);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(px.addr).unwrap())
        .collect();
    // Make sure phigate has accepted all four before the fifth.
    px.metrics_when("phigate_connections_open", 4.0);
    let mut fifth = TcpStream::connect(px.addr).unwrap();
    let (bytes, closed) = read_until_closed(&mut fifth, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(closed);
    let m = px.metrics_when(
        "phigate_connection_events_total{event=\"max_connections_per_client\"}",
        1.0,
    );
    assert_eq!(
        metric_value(
            &m,
            "phigate_connection_events_total{event=\"max_connections_per_client\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // A place frees up when a held connection closes.
    drop(held);
    px.metrics_when("phigate_connections_open", 0.0);
    assert_eq!(px.get("/__echo/x").status, 200);
}

#[test]
fn a_trickled_head_is_cut_at_its_deadline() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&format!(
        "[hygiene]\nrequest_head_timeout = \"1s\"\n\n{}",
        echo_route(&upstream)
    ));
    let mut s = TcpStream::connect(px.addr).unwrap();
    let started = Instant::now();
    s.write_all(b"GET /__echo/x HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    // A byte every 200 ms: never idle long enough for a per-read timeout.
    let mut closed = false;
    for i in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        if s.write_all(format!("X-{i}: v\r\n").as_bytes()).is_err() {
            closed = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut b = [0u8; 64];
        if matches!(s.read(&mut b), Ok(0)) {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "a trickling head was never cut");
    assert!(
        took < Duration::from_secs(3),
        "cut after {took:?}, deadline 1 s"
    );
}

#[test]
fn a_silent_connection_is_closed_at_the_first_request_deadline() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&format!(
        "[hygiene]\nfirst_request_timeout = \"1s\"\n\n{}",
        echo_route(&upstream)
    ));
    let mut s = TcpStream::connect(px.addr).unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(4));
    assert!(closed, "a connection that never spoke was kept");
    assert!(started.elapsed() < Duration::from_secs(3));
    let m = px.metrics_when(
        "phigate_connection_events_total{event=\"first_request_timeout\"}",
        1.0,
    );
    assert_eq!(
        metric_value(
            &m,
            "phigate_connection_events_total{event=\"first_request_timeout\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn at_the_descriptor_limit_new_clients_get_503_and_others_keep_working() {
    let upstream = Upstream::demo();
    let px = Phigate::start_with_fd_limit(&echo_route(&upstream), 64);
    // A keep-alive connection in use before the flood keeps being served.
    let mut kept = TcpStream::connect(px.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    kept.write_all(b"GET /__echo/k HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 65536];
    let n = kept.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    // All the clients first, then what each was told: on a busy machine
    // (the whole suite in parallel) a refusal can take longer to arrive
    // than a short read timeout per client would allow.
    let mut clients = Vec::new();
    for _ in 0..120 {
        let Ok(s) = TcpStream::connect(px.addr) else {
            break;
        };
        clients.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut held = Vec::new();
    let mut refused = 0;
    for mut s in clients {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut b = [0u8; 256];
        if let Ok(n) = s.read(&mut b) {
            if n > 0 && b.starts_with(b"HTTP/1.1 503") {
                refused += 1;
                continue;
            }
        }
        held.push(s);
    }
    assert!(
        refused > 0,
        "no client was told 503 at the descriptor limit ({} held)",
        held.len()
    );
    kept.write_all(b"GET /__echo/k HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = kept.read_to_end(&mut out);
    let r = parse_response(&out).expect("an answer on the connection opened earlier");
    // Its upstream connection may itself need a descriptor: either the
    // request went through or phigate said why, never silence.
    assert!(r.status == 200 || r.status == 502, "{}", r.status);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        px.get("/__echo/after").status,
        200,
        "recovers after the flood"
    );
}

#[test]
fn upstream_errors_on_keep_alive_say_what_happens_to_the_connection() {
    // Nothing listens on the upstream's port: every request is a 502.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let px = Phigate::start(&route_to("dead", "/__echo", &[dead], ""));
    let mut s = TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..3 {
        s.write_all(format!("GET /__echo/{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let r = parse_response(&buf[..n]).expect("a response");
        assert!(r.status == 502 || r.status == 503, "{}", r.status);
        // Either the connection stays open (and the loop goes on) or the
        // answer says it closes.
        if r.header("connection") == Some("close") {
            return;
        }
    }
}

#[test]
fn an_oversized_head_gets_431() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&echo_route(&upstream));
    // Over every limit: hyper's buffer refuses it before the hygiene check.
    let big = format!("X-Big: {}\r\n", "b".repeat(200_000));
    let r = px.raw(format!("GET /__echo/x HTTP/1.1\r\nHost: localhost\r\n{big}\r\n").as_bytes());
    assert_eq!(r.status, 431);
    let m = px.metrics_when(
        "phigate_connection_events_total{event=\"parse_too_large\"}",
        1.0,
    );
    assert_eq!(
        metric_value(
            &m,
            "phigate_connection_events_total{event=\"parse_too_large\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn requests_the_parser_refuses_are_counted_and_logged_without_their_bytes() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&echo_route(&upstream));
    for bad in [
        "POST /__echo/secret-1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
        "POST /__echo/secret-2 HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let r = px.raw(bad.as_bytes());
        assert_eq!(r.status, 400);
    }
    let m = px.metrics_when(
        "phigate_connection_events_total{event=\"parse_error\"}",
        2.0,
    );
    assert_eq!(
        metric_value(&m, "phigate_connection_events_total{event=\"parse_error\"}"),
        Some(2.0),
        "{m}"
    );
    let logs = px.logs();
    assert_eq!(
        logs.matches("request refused by the HTTP parser").count(),
        2,
        "{logs}"
    );
    assert!(!logs.contains("secret-"), "{logs}");
}

#[test]
fn a_client_that_goes_away_is_recorded_as_499() {
    let upstream = Upstream::demo();
    let px = Phigate::start(&route_to("slow", "/__slow", &[upstream.origin()], ""));
    let mut s = TcpStream::connect(px.addr).unwrap();
    s.write_all(b"GET /__slow?ms=1500 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    let series = "phigate_requests_total{route=\"slow\",status=\"499\"}";
    let m = px.metrics_when(series, 1.0);
    assert_eq!(metric_value(&m, series), Some(1.0), "{m}");
    assert!(!m.contains("status=\"0\""), "{m}");
}

#[test]
fn sigterm_with_nothing_in_flight_exits_at_once() {
    let upstream = Upstream::demo();
    let mut px = Phigate::start(&format!(
        "[server]\ngrace_period = \"10s\"\nshutdown_timeout = \"5s\"\n\n{}",
        echo_route(&upstream)
    ));
    // An idle keep-alive connection does not hold the process either.
    let mut idle = TcpStream::connect(px.addr).unwrap();
    idle.write_all(b"GET /__echo/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut b = [0u8; 1024];
    assert!(idle.read(&mut b).unwrap() > 0);
    let started = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &px.pid().to_string()])
        .status();
    loop {
        if let Ok(Some(status)) = px.proc.child.try_wait() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still running {:?} after SIGTERM with nothing in flight",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
