//! The listener's TLS defaults against real clients: session resumption
//! within the configured ticket lifetime (rustls and OpenSSL clients), the
//! stapled OCSP response and its reload, and HSTS only over TLS.

mod common;
use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, HandshakeKind, SignatureScheme};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A clock that stands still: the client keeps offering a ticket it got,
/// whatever the lifetime hint said, so only the server can refuse it.
#[derive(Debug)]
struct Frozen(UnixTime);

impl rustls::time_provider::TimeProvider for Frozen {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// Records the OCSP response the server stapled, then verifies as usual.
#[derive(Debug)]
struct SeesStaple {
    inner: Arc<dyn ServerCertVerifier>,
    stapled: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for SeesStaple {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.stapled.lock().unwrap() = Some(ocsp_response.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn verifier(ca: &TestCa) -> Arc<SeesStaple> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(ca.root_store()),
        provider,
    )
    .build()
    .unwrap();
    Arc::new(SeesStaple {
        inner,
        stapled: Mutex::new(None),
    })
}

/// A client of one TLS version with its own session cache and a stopped clock.
fn client(
    version: &'static rustls::SupportedProtocolVersion,
    verifier: Arc<SeesStaple>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg =
        rustls::ClientConfig::builder_with_details(provider, Arc::new(Frozen(UnixTime::now())))
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
    Arc::new(cfg)
}

/// Handshakes and completes one request; how the handshake went.
fn connect(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> HandshakeKind {
    use std::io::{Read, Write};
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    // Reading the response also takes in the TLS 1.3 tickets sent after
    // the handshake.
    s.write_all(b"GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    s.conn.handshake_kind().unwrap()
}

#[test]
fn sessions_resume_within_the_ticket_lifetime_and_never_after() {
    let ca = TestCa::new();
    let (px, _up) = tls_phigate(&ca, "session_ticket_lifetime = \"2s\"");
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let clients: Vec<_> = versions.iter().map(|v| client(v, verifier(&ca))).collect();
    for (v, cfg) in versions.iter().zip(&clients) {
        assert_eq!(connect(px.addr, cfg), HandshakeKind::Full, "{v:?}");
        assert_eq!(connect(px.addr, cfg), HandshakeKind::Resumed, "{v:?}");
    }
    // The newest tickets are now older than 2s: the clients (whose clocks
    // stand still) offer them, and the server refuses them.
    std::thread::sleep(Duration::from_millis(2300));
    for (v, cfg) in versions.iter().zip(&clients) {
        assert_eq!(connect(px.addr, cfg), HandshakeKind::Full, "{v:?}");
        assert_eq!(connect(px.addr, cfg), HandshakeKind::Resumed, "{v:?}");
    }

    // "0s": no resumption at all.
    let (px, _up) = tls_phigate(&ca, "session_ticket_lifetime = \"0s\"");
    for v in versions {
        let cfg = client(v, verifier(&ca));
        assert_eq!(connect(px.addr, &cfg), HandshakeKind::Full, "{v:?}");
        assert_eq!(connect(px.addr, &cfg), HandshakeKind::Full, "{v:?}");
    }
}

/// `openssl s_client`'s report of a connection that sent one request.
fn s_client(addr: SocketAddr, args: &[&str]) -> String {
    use std::io::Write;
    // Bounded: a server that never closes must fail the test, not hang it.
    let mut child = Command::new(require("timeout"))
        .arg("30")
        .arg(require("openssl"))
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-ign_eof",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every "TLS session ticket lifetime hint" OpenSSL saw, in seconds.
fn lifetime_hints(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("TLS session ticket lifetime hint: "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn the_lifetime_hint_is_the_configured_lifetime() {
    let ca = TestCa::new();
    for (extra, hint) in [("", 3600), ("session_ticket_lifetime = \"10m\"", 600)] {
        let (px, _up) = tls_phigate(&ca, extra);
        for flag in ["-tls1_2", "-tls1_3"] {
            let text = s_client(px.addr, &[flag]);
            let hints = lifetime_hints(&text);
            assert!(
                !hints.is_empty() && hints.iter().all(|h| *h == hint),
                "{flag}: {hints:?}\n{text}"
            );
        }
    }
    let (px, _up) = tls_phigate(&ca, "session_ticket_lifetime = \"0s\"");
    for flag in ["-tls1_2", "-tls1_3"] {
        let text = s_client(px.addr, &[flag]);
        assert!(text.contains("HTTP/1.1 200"), "{text}");
        assert_eq!(lifetime_hints(&text), Vec::<u64>::new(), "{flag}:\n{text}");
    }
}

fn stapled(
    addr: SocketAddr,
    ca: &TestCa,
    v: &'static rustls::SupportedProtocolVersion,
) -> Option<Vec<u8>> {
    let seen = verifier(ca);
    let mut cfg = (*client(v, seen.clone())).clone();
    cfg.resumption = rustls::client::Resumption::disabled();
    connect(addr, &Arc::new(cfg));
    let staple = seen.stapled.lock().unwrap().clone();
    staple.filter(|s| !s.is_empty())
}

fn write_atomically(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn the_ocsp_response_is_stapled_and_reloaded() {
    let ca = TestCa::new();
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("ocsp.der");
    ca.ocsp_response(&cert, false, &served);
    let first = std::fs::read(&served).unwrap();
    let upstream = Upstream::demo();
    let port = free_port();
    let extra = format!(
        "ocsp_response = \"{}\"\nreload_interval = \"100ms\"",
        served.display()
    );
    let px = Phigate::start_with(
        &tls_listener(port, &cert, &key, &extra),
        port,
        &route_to("fhir", "/fhir", &[upstream.origin()], ""),
    );
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        assert_eq!(stapled(px.addr, &ca, v).as_ref(), Some(&first), "{v:?}");
    }
    // OpenSSL reads it as the CA's "good" answer for this certificate.
    let text = s_client(
        px.addr,
        &["-status", "-CAfile", &ca.ca_pem.display().to_string()],
    );
    assert!(text.contains("OCSP Response Status: successful"), "{text}");
    assert!(text.contains("Cert Status: good"), "{text}");

    // A revoked answer is refused and the last good one stays stapled.
    let other = dir.path().join("revoked.der");
    ca.ocsp_response(&cert, true, &other);
    write_atomically(&other, &served);
    let m = px.metrics_when(
        "phigate_tls_cert_reloads_total{result=\"ocsp_rejected\"}",
        1.0,
    );
    assert_eq!(
        metric_value(
            &m,
            "phigate_tls_cert_reloads_total{result=\"ocsp_rejected\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert!(px.logs().contains("revoked"), "{}", px.logs());
    assert_eq!(
        stapled(px.addr, &ca, &rustls::version::TLS13).as_ref(),
        Some(&first)
    );

    // A fresh good answer replaces it, without a restart.
    std::thread::sleep(Duration::from_millis(1100)); // a new thisUpdate second
    let fresh = dir.path().join("fresh.der");
    ca.ocsp_response(&cert, false, &fresh);
    let fresh = std::fs::read(&fresh).unwrap();
    assert_ne!(fresh, first);
    std::fs::write(dir.path().join("fresh2.der"), &fresh).unwrap();
    write_atomically(&dir.path().join("fresh2.der"), &served);
    let mut now_stapled = None;
    for _ in 0..50 {
        now_stapled = stapled(px.addr, &ca, &rustls::version::TLS13);
        if now_stapled.as_ref() == Some(&fresh) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(now_stapled.as_ref(), Some(&fresh));

    // Without ocsp_response nothing is stapled.
    let (px, _up) = tls_phigate(&ca, "");
    assert_eq!(stapled(px.addr, &ca, &rustls::version::TLS13), None);
}

/// A response about another certificate (an OCSP job that is behind, a
/// renewed certificate) never keeps phigate from serving: `check` warns,
/// and `serve` presents the certificate without a staple.
#[test]
fn an_unusable_ocsp_response_is_warned_about_and_not_stapled() {
    let ca = TestCa::new();
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let (other, _) = ca.issue("other", &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let resp = dir.path().join("other.der");
    ca.ocsp_response(&other, false, &resp);
    let upstream = Upstream::demo();
    let port = free_port();
    let extra = format!("ocsp_response = \"{}\"", resp.display());
    let listener = tls_listener(port, &cert, &key, &extra);
    let route = route_to("fhir", "/fhir", &[upstream.origin()], "");
    let config = dir.path().join("phigate.toml");
    std::fs::write(
        &config,
        format!("{listener}\n{route}\n[audit]\ndir = \"audit\"\n"),
    )
    .unwrap();
    let out = Command::new(phigate_bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning:")
            && text.contains("listeners[0].tls.ocsp_response")
            && text.contains("another certificate"),
        "{text}"
    );
    let px = Phigate::start_with(&listener, port, &route);
    assert_eq!(stapled(px.addr, &ca, &rustls::version::TLS13), None);
    assert!(px.logs().contains("cannot be stapled"), "{}", px.logs());
}

#[tokio::test]
async fn hsts_is_sent_over_tls_only_and_replaces_the_upstreams() {
    let ca = TestCa::new();
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    // The app sends its own (weak) HSTS on every answer.
    let nginx = Upstream::nginx(
        "location / { add_header Strict-Transport-Security \"max-age=5\" always; return 200 'app'; }",
        None,
    );
    let tls_port = free_port();
    let clear_port = free_port();
    let listeners = format!(
        "{}\n[[listeners]]\naddress = \"127.0.0.1:{clear_port}\"\n",
        tls_listener(tls_port, &cert, &key, "")
    );
    let routes = format!(
        "[[routes]]\nname = \"portal\"\npath_prefix = \"/portal\"\nupstream = \"app\"\n\
         auth = {{ kind = \"public\" }}\nhsts = {{ max_age = \"1d\", include_subdomains = true }}\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nauth = {{ kind = \"public\" }}\n\n\
         [upstreams.app]\norigins = [\"{}\"]\n[upstreams.app.health_check]\npath = \"/healthz\"\n",
        nginx.origin()
    );
    let px = Phigate::start_with(&listeners, tls_port, &routes);
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca.ca_pem).unwrap()).unwrap();
    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .build()
        .unwrap();
    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .http1_only()
        .build()
        .unwrap();
    let hsts = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .get_all("strict-transport-security")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    let over_tls = |path: &str| format!("https://localhost:{tls_port}{path}");
    for (client, version) in [
        (&h1, reqwest::Version::HTTP_11),
        (&h2, reqwest::Version::HTTP_2),
    ] {
        let r = client.get(over_tls("/portal/x")).send().await.unwrap();
        assert_eq!(
            (r.status(), r.version()),
            (reqwest::StatusCode::OK, version)
        );
        assert_eq!(
            hsts(&r),
            ["max-age=86400; includeSubDomains"],
            "{version:?}"
        );
    }
    // A route without hsts leaves the app's header alone.
    let r = h2.get(over_tls("/api/x")).send().await.unwrap();
    assert_eq!(hsts(&r), ["max-age=5"]);
    // Over cleartext the route's header is never sent, and the app's is removed.
    let clear: SocketAddr = format!("127.0.0.1:{clear_port}").parse().unwrap();
    let r = http_get(clear, "/portal/x").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None, "{r:?}");
    // A client that is no trusted proxy cannot claim https for itself.
    let spoofed = raw_request(
        clear,
        b"GET /portal/x HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(spoofed.status, 200);
    assert_eq!(
        spoofed.header("strict-transport-security"),
        None,
        "{spoofed:?}"
    );
    drop(px);

    // Behind a trusted proxy that terminated TLS, its word is taken.
    let behind = Phigate::start_with(
        &format!("[[listeners]]\naddress = \"127.0.0.1:{clear_port}\"\n"),
        clear_port,
        &format!("[hygiene]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n{routes}"),
    );
    let via_proxy = |proto: &str| {
        behind.raw(
            format!("GET /portal/x HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: {proto}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let r = via_proxy("https");
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=86400; includeSubDomains"),
        "{r:?}"
    );
    assert_eq!(via_proxy("http").header("strict-transport-security"), None);
}
