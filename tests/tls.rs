//! TLS on both sides, against real peers: rustls and OpenSSL clients for the
//! listener, nginx with a test CA for upstream TLS.

mod common;
use common::*;
use rustls::pki_types::ServerName;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client_config(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(ca.root_store())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Full handshakes only: a resumed session reports the cached certificate.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// Handshakes, sends one HTTP/1.1 GET, returns (version, alpn, response head line, peer cert).
async fn tls_get(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> std::io::Result<(String, Option<Vec<u8>>, String, Vec<u8>)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let (_, conn) = tls.get_ref();
    let version = format!("{:?}", conn.protocol_version().unwrap());
    let alpn = conn.alpn_protocol().map(|p| p.to_vec());
    let cert = conn.peer_certificates().unwrap()[0].to_vec();
    if alpn.as_deref() == Some(b"h2") {
        return Ok((version, alpn, String::new(), cert));
    }
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.ok();
    let head = String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    Ok((version, alpn, head, cert))
}

#[tokio::test]
async fn tls12_and_tls13_succeed() {
    let ca = TestCa::new();
    let (px, _up) = tls_phigate(&ca, "");
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (version, _, head, _) =
            tls_get(px.addr, client_config(&ca, &[v], &[]), "/fhir/metadata")
                .await
                .unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert!(
            version.contains(if v == &rustls::version::TLS13 {
                "TLSv1_3"
            } else {
                "TLSv1_2"
            }),
            "{version}"
        );
        assert_eq!(head, "HTTP/1.1 200 OK");
    }
    let m = px.metrics();
    assert!(
        m.lines()
            .any(|l| l.starts_with("phigate_tls_handshakes_total{") && !l.ends_with(" 0")),
        "{m}"
    );
}

fn openssl_handshake(addr: SocketAddr, flag: &str) -> (bool, String) {
    let openssl = require("openssl");
    let out = Command::new(openssl)
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            flag,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-servername",
            "localhost",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let negotiated = text
        .lines()
        .any(|l| l.trim_start().starts_with("Protocol") && l.contains("TLSv1"))
        || text.contains("New, TLSv1");
    (negotiated && out.status.success(), text)
}

#[tokio::test]
async fn old_protocols_are_refused() {
    let ca = TestCa::new();
    let (px, _up) = tls_phigate(&ca, "");
    // The same client, same relaxed cipher policy, succeeds with TLS 1.2:
    // the refusals below are the server's.
    let (ok, text) = openssl_handshake(px.addr, "-tls1_2");
    assert!(ok, "TLS 1.2 via openssl should work:\n{text}");
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, text) = openssl_handshake(px.addr, flag);
        assert!(!ok, "{flag} must be refused:\n{text}");
    }
    // SSLv3 is not in Debian's openssl; send a raw SSLv3 ClientHello instead.
    let hello: Vec<u8> = {
        let mut body = vec![0x03, 0x00]; // client_version SSL 3.0
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0x00, 0x0a]); // two RSA suites
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![0x16, 0x03, 0x00, 0x00, hs.len() as u8];
        rec.extend(hs);
        rec
    };
    let mut s = std::net::TcpStream::connect(px.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(&hello).unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "SSLv3 hello must get an alert or a close, got {:?}",
        &buf[..n]
    );
}

#[tokio::test]
async fn alpn_offers_h2_and_serves_http2() {
    let ca = TestCa::new();
    let (px, _up) = tls_phigate(&ca, "");
    let (_, alpn, _, _) = tls_get(
        px.addr,
        client_config(&ca, &[&rustls::version::TLS13], &[b"h2", b"http/1.1"]),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    let ca_cert = reqwest::Certificate::from_pem(&std::fs::read(&ca.ca_pem).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca_cert)
        .https_only(true)
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://localhost:{}/fhir/Patient/pat-0001",
            px.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "Patient");
    // HTTP/2 requests go through the same hygiene. (The client's URL parser
    // resolves encoded dot segments itself, so use an encoded slash.)
    let r = client
        .get(format!("https://localhost:{}/fhir/a%2Fb", px.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // With http2 = false the listener offers HTTP/1.1 only.
    let (px, _up) = tls_phigate(&ca, "http2 = false");
    let (_, alpn, head, _) = tls_get(
        px.addr,
        client_config(&ca, &[&rustls::version::TLS13], &[b"h2", b"http/1.1"]),
        "/fhir/metadata",
    )
    .await
    .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(head, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn certificate_reloads_without_restart() {
    let ca = TestCa::new();
    let (px, _up) = tls_phigate(&ca, "reload_interval = \"100ms\"");
    let cfg = client_config(&ca, &[&rustls::version::TLS13], &[]);
    let (_, _, _, first) = tls_get(px.addr, cfg.clone(), "/fhir/metadata")
        .await
        .unwrap();

    // Rotate: a new pair, written over the served files.
    let (new_cert, new_key) = ca.issue("rotated", &["localhost"]);
    let served_cert = ca.dir.path().join("server.pem");
    let served_key = ca.dir.path().join("server.key");
    std::fs::copy(&new_key, &served_key).unwrap();
    std::fs::copy(&new_cert, &served_cert).unwrap();
    let mut rotated = first.clone();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        rotated = tls_get(px.addr, cfg.clone(), "/fhir/metadata")
            .await
            .unwrap()
            .3;
        if rotated != first {
            break;
        }
    }
    assert_ne!(rotated, first, "certificate was not reloaded");
    assert_eq!(
        rotated,
        std::fs::read(&new_cert)
            .map(|pem| {
                rustls::pki_types::pem::PemObject::from_pem_slice(&pem)
                    .map(|c: rustls::pki_types::CertificateDer| c.to_vec())
                    .unwrap()
            })
            .unwrap()
    );

    // A broken pair is refused and the last good one keeps serving.
    std::fs::write(&served_cert, "not a certificate").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, _, head, still) = tls_get(px.addr, cfg, "/fhir/metadata").await.unwrap();
    assert_eq!(still, rotated);
    assert_eq!(head, "HTTP/1.1 200 OK");
    let m = px.metrics();
    assert_eq!(
        metric_value(&m, "phigate_tls_cert_reloads_total{result=\"reloaded\"}"),
        Some(1.0),
        "{m}"
    );
    // One broken write, one rejection (it is not retried while unchanged).
    assert_eq!(
        metric_value(&m, "phigate_tls_cert_reloads_total{result=\"rejected\"}"),
        Some(1.0),
        "{m}"
    );
}

fn https_nginx(ca: &TestCa) -> Upstream {
    let (cert, key) = ca.issue("upstream", &["localhost", "127.0.0.1"]);
    Upstream::nginx(
        "location / { default_type application/json; return 200 '{\"resourceType\":\"Patient\",\"id\":\"tls\"}'; }",
        Some((&cert, &key)),
    )
}

#[test]
fn upstream_tls_verifies_with_custom_ca() {
    let ca = TestCa::new();
    let nginx = https_nginx(&ca);
    let origin = format!("https://localhost:{}", nginx.addr.port());
    let px = Phigate::start(&route_to(
        "ehr",
        "/fhir",
        &[origin],
        &format!("ca_file = \"{}\"", ca.ca_pem.display()),
    ));
    let r = px.get("/fhir/Patient/tls");
    assert_eq!(r.status, 200, "{}", px.logs());
    assert_eq!(r.json()["id"], "tls");
}

#[test]
fn upstream_tls_refuses_wrong_name_and_unknown_ca() {
    let ca = TestCa::new();
    let nginx = https_nginx(&ca);
    let origin = format!("https://localhost:{}", nginx.addr.port());
    let no_hc = "[upstreams.ehr.health_check]\nenabled = false\n";
    // Right CA, wrong name.
    let px = Phigate::start(&route_to(
        "ehr",
        "/fhir",
        std::slice::from_ref(&origin),
        &format!(
            "ca_file = \"{}\"\ntls_server_name = \"wrong.example\"\n{no_hc}",
            ca.ca_pem.display()
        ),
    ));
    let r = px.get("/fhir/Patient/tls");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "bad_gateway");
    assert!(!r.body.contains("127.0.0.1") && !r.body.contains("wrong.example"));
    let m = px.metrics();
    assert_eq!(
        metric_value(
            &m,
            "phigate_upstream_errors_total{kind=\"tls\",upstream=\"ehr\"}"
        ),
        Some(1.0),
        "{m}"
    );
    drop(px);
    // Right name, CA not trusted (system roots only).
    let px = Phigate::start(&route_to("ehr", "/fhir", &[origin], no_hc));
    assert_eq!(px.get("/fhir/Patient/tls").status, 502);
    // With health checks on, the unverifiable origin is taken out: 503.
    let px2 = Phigate::start(&route_to(
        "ehr",
        "/fhir",
        &[format!("https://localhost:{}", nginx.addr.port())],
        "[upstreams.ehr.health_check]\npath = \"/healthz\"\ninterval = \"200ms\"\n",
    ));
    let mut status = 0;
    for _ in 0..40 {
        status = px2.get("/fhir/Patient/tls").status;
        if status == 503 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status, 503);
}

/// Resident memory of the phigate process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// What an idle TLS connection costs: 400 clients complete a handshake and
/// send nothing. Prints the figure (benches/RESULTS.md records it) and
/// holds it under a bound an idle-connection flood would break.
#[test]
fn an_idle_tls_connection_costs_little_memory() {
    let ca = TestCa::new();
    let upstream = Upstream::demo();
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let port = free_port();
    let px = Phigate::start_with(
        &tls_listener(port, &cert, &key, ""),
        port,
        &format!(
            "[server]\nmax_connections_per_client = 1000\n\n{}",
            route_to("fhir", "/fhir", &[upstream.origin()], "")
        ),
    );
    let cfg = client_config(&ca, &[&rustls::version::TLS13], &[b"http/1.1"]);
    // Warm up allocator pools with a few connections first.
    let handshake =
        |n: usize| -> Vec<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
            (0..n)
                .map(|_| {
                    let sock = std::net::TcpStream::connect(px.addr).unwrap();
                    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
                    let mut s = rustls::StreamOwned::new(conn, sock);
                    while s.conn.is_handshaking() {
                        s.conn.complete_io(&mut s.sock).unwrap();
                    }
                    s
                })
                .collect()
        };
    let warm = handshake(20);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = rss_kib(px.pid());
    let n = 400;
    let idle = handshake(n);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = rss_kib(px.pid());
    let per_conn = (after.saturating_sub(before)) as f64 / n as f64;
    eprintln!("idle TLS connection: {per_conn:.1} KiB each ({n} connections, RSS {before} -> {after} KiB)");
    assert!(per_conn < 64.0, "{per_conn:.1} KiB per idle TLS connection");
    drop((warm, idle));
}
