//! Test harness: real processes on real sockets.
//!
//! `Upstream::nginx(..)`, `Upstream::demo()` and `Phigate::start(..)` each
//! start a real server on an ephemeral loopback port and stop it on drop.
//! A missing system dependency fails the test with the command that installs it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SETUP: &str = "run `scripts/setup` (installs nginx, openssl, wrk, cmake)";

/// A port nobody is listening on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

pub fn phigate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_phigate")
}

/// Finds a system binary or fails naming the setup command.
pub fn require(bin: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("`{bin}` is not installed: {SETUP}");
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, what: &str, child: &mut Child) {
    wait_for_port_or_log(addr, what, child, None);
}

/// The same, quoting the process's log when it exits early (a port taken
/// between choosing it and binding it says so there).
pub fn wait_for_port_or_log(addr: SocketAddr, what: &str, child: &mut Child, log: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = log
                .and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default();
            panic!("{what} exited early with {status}\n{said}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on {addr} within 20s");
}

/// A child process stopped on drop: SIGTERM first (nginx's master then takes
/// its workers down with it), SIGKILL if it lingers.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream server for phigate to proxy to.
pub struct Upstream {
    pub addr: SocketAddr,
    _proc: Proc,
    _dir: Option<tempfile::TempDir>,
}

impl Upstream {
    /// The synthetic CCM/FHIR upstream (`phigate demo --upstream-only`),
    /// which also serves `/__echo` (what it received) and `/__slow?ms=N`.
    pub fn demo() -> Upstream {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new(phigate_bin())
            .args([
                "demo",
                "--patients",
                "20",
                "--upstream-only",
                &addr.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo upstream");
        wait_for_port(addr, "demo upstream", &mut child);
        Upstream {
            addr,
            _proc: Proc {
                child,
                name: "demo upstream".into(),
            },
            _dir: None,
        }
    }

    /// nginx with `server_body` inside a `server { listen ...; }` block.
    /// `tls` gives (cert, key) paths to serve HTTPS instead.
    pub fn nginx(server_body: &str, tls: Option<(&Path, &Path)>) -> Upstream {
        let nginx = require("nginx");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let listen = match tls {
            Some((cert, key)) => format!(
                "listen 127.0.0.1:{port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};",
                cert.display(),
                key.display()
            ),
            None => format!("listen 127.0.0.1:{port};"),
        };
        let d = dir.path().display();
        let conf = format!(
            r#"worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  default_type application/octet-stream;
  server {{
    {listen}
    location = /healthz {{ return 200 "ok"; }}
    {server_body}
  }}
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = Command::new(nginx)
            .args([
                "-p",
                &d.to_string(),
                "-c",
                "nginx.conf",
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx ({e}): {SETUP}"));
        wait_for_port(addr, "nginx", &mut child);
        Upstream {
            addr,
            _proc: Proc {
                child,
                name: "nginx".into(),
            },
            _dir: Some(dir),
        }
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A running `phigate serve`.
pub struct Phigate {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub proc: Proc,
    pub log: PathBuf,
}

/// Default hygiene/listener settings a test config starts from.
pub fn cleartext_listener(port: u16) -> String {
    format!("[[listeners]]\naddress = \"127.0.0.1:{port}\"\n")
}

impl Phigate {
    /// Starts phigate with `body` (routes, upstreams, ...) plus a cleartext
    /// loopback listener and an admin plane, and waits until it is ready.
    pub fn start(body: &str) -> Phigate {
        let port = free_port();
        Self::start_with(&cleartext_listener(port), port, body)
    }

    /// Starts phigate with explicit listener text; `port` is the one tests use.
    pub fn start_with(listeners: &str, port: u16, body: &str) -> Phigate {
        Self::start_full(listeners, port, "", body)
    }

    /// As [`Phigate::start_with`], with extra `[admin]` keys.
    pub fn start_full(listeners: &str, port: u16, admin_extra: &str, body: &str) -> Phigate {
        Self::launch(listeners, port, admin_extra, body, &[])
    }

    /// Starts phigate on a cleartext listener with at most `nofile` open
    /// file descriptors (`prlimit`).
    pub fn start_with_fd_limit(body: &str, nofile: u32) -> Phigate {
        let port = free_port();
        let limit = format!("--nofile={nofile}:{nofile}");
        Self::launch(
            &cleartext_listener(port),
            port,
            "",
            body,
            &[&require("prlimit").display().to_string(), &limit],
        )
    }

    fn launch(listeners: &str, port: u16, admin_extra: &str, body: &str, wrap: &[&str]) -> Phigate {
        let dir = tempfile::tempdir().unwrap();
        let admin_port = free_port();
        let server = if body.contains("[server]") {
            ""
        } else {
            "[server]\ngrace_period = \"0s\"\nshutdown_timeout = \"1s\"\n"
        };
        // Every phigate under test records to its own spool, as in
        // production (group commit, the default sync policy).
        let audit = if body.contains("[audit]") {
            String::new()
        } else {
            format!(
                "\n[audit]\ndir = \"{}\"\n",
                dir.path().join("audit").display()
            )
        };
        let text = format!(
            "{server}\n{listeners}\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\n{admin_extra}\n\n{body}{audit}"
        );
        let config = dir.path().join("phigate.toml");
        std::fs::write(&config, &text).unwrap();
        let log = dir.path().join("phigate.log");
        let mut command = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(phigate_bin());
                c
            }
            None => Command::new(phigate_bin()),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start phigate");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        wait_for_port_or_log(admin, "phigate admin", &mut child, Some(&log));
        wait_for_port_or_log(addr, "phigate", &mut child, Some(&log));
        let p = Phigate {
            addr,
            admin,
            dir,
            proc: Proc {
                child,
                name: "phigate".into(),
            },
            log,
        };
        p.wait_ready();
        p
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = http_get(self.admin, "/readyz") {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("phigate not ready in 20s; log:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Metrics once `series` reads `value`: request counters are bumped in
    /// the logging phase, just after the response has gone out.
    pub fn metrics_when(&self, series: &str, value: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let m = self.metrics();
            if metric_value(&m, series) == Some(value) || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics")
            .expect("scrape metrics")
            .body
    }

    /// Sends raw bytes and returns the parsed first response.
    pub fn raw(&self, request: &[u8]) -> Response {
        raw_request(self.addr, request)
    }

    pub fn get(&self, path: &str) -> Response {
        raw_request(
            self.addr,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// For echo responses: every value of a header the upstream received.
    pub fn echoed(&self, name: &str) -> Vec<String> {
        self.json()["headers"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .filter(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                    .filter_map(|h| h[1].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_response(&buf).ok_or_else(|| std::io::Error::other("unparseable response"))
}

/// Writes `request` on a fresh connection and reads until the server closes
/// or the first response is complete.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before it has read everything we send.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if response_complete(&buf) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    parse_response(&buf).unwrap_or(Response {
        status: 0,
        headers: vec![],
        body: String::from_utf8_lossy(&buf).into_owned(),
    })
}

type Headers = Vec<(String, String)>;

/// (body offset, headers, status) of a response head.
fn split_head(buf: &[u8]) -> Option<(usize, Headers, u16)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((end + 4, headers, status))
}

fn response_complete(buf: &[u8]) -> bool {
    let Some((start, headers, _)) = split_head(buf) else {
        return false;
    };
    let get = |n: &str| {
        headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return buf.len() >= start + len;
    }
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return buf.ends_with(b"0\r\n\r\n");
    }
    false
}

pub fn parse_response(buf: &[u8]) -> Option<Response> {
    let (start, headers, status) = split_head(buf)?;
    let raw_body = &buf[start..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size_str = std::str::from_utf8(&b[..i]).unwrap_or("0");
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        b = &b[i + 2..];
        if size == 0 || b.len() < size {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// A minimal public route + upstream config for one pool. Health checks go to
/// `/healthz` (the demo upstream and the harness's nginx both serve it)
/// unless `extra_upstream` configures them.
pub fn route_to(name: &str, prefix: &str, origins: &[String], extra_upstream: &str) -> String {
    let origins: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
    let health = if extra_upstream.contains("health_check") {
        String::new()
    } else {
        format!("[upstreams.{name}.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\n")
    };
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{name}\"\nauth = {{ kind = \"public\" }}\n\n[upstreams.{name}]\norigins = [{}]\n{extra_upstream}\n{health}",
        origins.join(", ")
    )
}

/// Reads a metric sample value: `metric_value(text, "phigate_requests_total{route=\"x\",status=\"200\"}")`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A throwaway certificate authority for TLS tests.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "phigate test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, issuer.pem()).unwrap();
        TestCa {
            issuer,
            dir,
            ca_pem,
        }
    }

    /// Issues a server certificate for `names`, written as `<stem>.pem` and
    /// `<stem>.key` in the CA's directory.
    pub fn issue(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        self.sign_and_write(stem, rcgen::CertificateParams::new(names).unwrap())
    }

    fn sign_and_write(&self, stem: &str, params: rcgen::CertificateParams) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.path().join(format!("{stem}.pem"));
        let key_path = self.dir.path().join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// Issues a client certificate (clientAuth EKU) with common name `cn`
    /// and DNS SANs `names`.
    pub fn issue_client(&self, stem: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_and_write(stem, params)
    }

    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }

    /// A DER OCSP response about `cert` signed by this CA (`openssl ocsp` as
    /// a local responder), valid for a day, written to `out`.
    pub fn ocsp_response(&self, cert: &Path, revoked: bool, out: &Path) {
        let openssl = require("openssl");
        let dir = self.dir.path();
        let key = dir.join("ca.key");
        std::fs::write(&key, self.issuer.key().serialize_pem()).unwrap();
        let serial = Command::new(&openssl)
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(cert)
            .output()
            .expect("run openssl x509");
        let serial = String::from_utf8_lossy(&serial.stdout);
        let serial = serial.trim().trim_start_matches("serial=");
        // openssl's CA database: V(alid) or R(evoked), expiry, revocation time.
        let line = if revoked {
            format!("R\t301231000000Z\t250101000000Z\t{serial}\tunknown\t/CN=test\n")
        } else {
            format!("V\t301231000000Z\t\t{serial}\tunknown\t/CN=test\n")
        };
        let index = dir.join("ocsp-index.txt");
        std::fs::write(&index, line).unwrap();
        let status = Command::new(&openssl)
            .arg("ocsp")
            .arg("-index")
            .arg(&index)
            .arg("-rsigner")
            .arg(&self.ca_pem)
            .arg("-rkey")
            .arg(&key)
            .arg("-CA")
            .arg(&self.ca_pem)
            .arg("-issuer")
            .arg(&self.ca_pem)
            .arg("-cert")
            .arg(cert)
            .args(["-ndays", "1", "-no_nonce", "-respout"])
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl ocsp");
        assert!(status.success(), "openssl ocsp failed: {SETUP}");
    }
}

/// A TLS listener section for phigate.
/// phigate on a TLS listener with a certificate from `ca` (plus
/// `extra_tls` keys), in front of the demo upstream at `/fhir`.
pub fn tls_phigate(ca: &TestCa, extra_tls: &str) -> (Phigate, Upstream) {
    let upstream = Upstream::demo();
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let port = free_port();
    let px = Phigate::start_with(
        &tls_listener(port, &cert, &key, extra_tls),
        port,
        &route_to("fhir", "/fhir", &[upstream.origin()], ""),
    );
    (px, upstream)
}

pub fn tls_listener(port: u16, cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n",
        cert.display(),
        key.display()
    )
}

/// The real OpenID provider (`oidc-provider` on Node, from `tests/idp`).
pub struct Idp {
    pub port: u16,
    pub issuer: String,
    pub keys: PathBuf,
    pub dir: tempfile::TempDir,
    proc: Option<Proc>,
    access_ttl: u64,
    extra: Vec<String>,
}

impl Idp {
    pub fn start() -> Idp {
        Self::start_with_ttl(300)
    }

    /// An IdP whose access tokens live `access_ttl` seconds.
    pub fn start_with_ttl(access_ttl: u64) -> Idp {
        Self::start_for(access_ttl, &[])
    }

    /// An IdP whose `phigate-web` client accepts phigate at `https://localhost:PORT`.
    pub fn start_for_phigate(phigate_port: u16) -> Idp {
        Self::start_for_phigate_with(phigate_port, &[])
    }

    /// Same, with extra flags for the IdP (e.g. `--tamper-nonce`).
    pub fn start_for_phigate_with(phigate_port: u16, flags: &[&str]) -> Idp {
        let mut extra = vec![
            format!("--redirect-uri=https://localhost:{phigate_port}/.phigate/callback"),
            format!("--post-logout-uri=https://localhost:{phigate_port}/"),
        ];
        extra.extend(flags.iter().map(|f| f.to_string()));
        Self::start_for(300, &extra)
    }

    fn start_for(access_ttl: u64, extra: &[String]) -> Idp {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut idp = Idp {
            port,
            issuer: format!("http://127.0.0.1:{port}"),
            keys: dir.path().join("keys.json"),
            dir,
            proc: None,
            access_ttl,
            extra: extra.to_vec(),
        };
        idp.launch();
        idp
    }

    fn launch(&mut self) {
        let node = require("node");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        assert!(
            root.join("node_modules/oidc-provider").exists(),
            "the test IdP's npm packages are not installed: {SETUP}"
        );
        let mut child = Command::new(node)
            .arg(root.join("server.js"))
            .args(["--port", &self.port.to_string(), "--keys"])
            .arg(&self.keys)
            .args(["--access-ttl", &self.access_ttl.to_string()])
            .args(self.extra.iter().flat_map(|a| match a.split_once('=') {
                Some((k, v)) => vec![k.to_string(), v.to_string()],
                None => vec![a.clone()],
            }))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node ({e}): {SETUP}"));
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        wait_for_port(addr, "test IdP", &mut child);
        self.proc = Some(Proc {
            child,
            name: "idp".into(),
        });
    }

    /// Stops the IdP (its port goes dark).
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Restarts on the same port (same issuer) with brand-new signing keys.
    pub fn rotate_keys(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.keys);
        let _ = std::fs::remove_file(self.keys.with_extension("json.pem.json"));
        self.launch();
    }

    /// The `[[identity_providers]]` table for phigate.
    pub fn provider_config(&self, extra: &str) -> String {
        format!(
            "[[identity_providers]]\nname = \"test\"\nissuer = \"{}\"\naudiences = [\"phigate\"]\ndangerous_allow_http = true\n{extra}\n[identity_providers.mfa]\nacr_values = [\"urn:phigate:mfa\"]\n",
            self.issuer
        )
    }

    /// How many times the JWKS endpoint was fetched.
    pub fn jwks_requests(&self) -> u64 {
        let r = http_get(
            format!("127.0.0.1:{}", self.port).parse().unwrap(),
            "/__stats",
        )
        .unwrap();
        r.json()["jwks_requests"].as_u64().unwrap_or(0)
    }

    /// The IdP's private signing keys as (kid, alg, PKCS#8 PEM).
    pub fn signing_keys(&self) -> Vec<(String, String, String)> {
        let path = PathBuf::from(format!("{}.pem.json", self.keys.display()));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        v.as_object()
            .unwrap()
            .iter()
            .map(|(kid, k)| {
                (
                    kid.clone(),
                    k["alg"].as_str().unwrap().to_string(),
                    k["pem"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// An access token for `user` through the real authorization code flow
    /// with PKCE: sign in (password, plus the one-time code when `mfa`),
    /// `auth_age` seconds ago, then exchange the code.
    pub fn token(&self, user: &str, mfa: bool, auth_age: u64) -> String {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self.token_async(user, mfa, auth_age))
    }

    async fn token_async(&self, user: &str, mfa: bool, auth_age: u64) -> String {
        use base64::Engine;
        use sha2::Digest;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let verifier = b64(&rand::random::<[u8; 32]>());
        let challenge = b64(&sha2::Sha256::digest(verifier.as_bytes()));
        let redirect = "http://127.0.0.1/cli-callback";
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let url = format!(
            "{}/auth?client_id=test-cli&response_type=code&scope=openid%20phigate%20offline_access&prompt=consent&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st&nonce=nc",
            self.issuer,
            phigate::authn::browser::urlencode(redirect)
        );
        let loc = self
            .follow_login(&client, &url, redirect, user, mfa, auth_age)
            .await;
        let code = loc
            .split("code=")
            .nth(1)
            .and_then(|s| s.split('&').next())
            .expect("code in callback")
            .to_string();
        let resp = client
            .post(format!("{}/token", self.issuer))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}&client_id=test-cli&code_verifier={verifier}",
                phigate::authn::browser::urlencode(redirect)
            ))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = resp.json().await.unwrap();
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// Follows an authorization URL through the IdP's sign-in (as `user`)
    /// and returns the callback URL it redirects to (starting with `redirect`).
    pub async fn follow_login(
        &self,
        client: &reqwest::Client,
        start: &str,
        redirect: &str,
        user: &str,
        mfa: bool,
        auth_age: u64,
    ) -> String {
        let mut cookies: std::collections::BTreeMap<String, String> = Default::default();
        let mut url = start.to_string();
        let mut logged_in = false;
        for _ in 0..12 {
            let resp = client
                .get(&url)
                .header("Cookie", cookie_header(&cookies))
                .send()
                .await
                .unwrap();
            keep_cookies(&resp, &mut cookies);
            if resp.status() == 200 && !logged_in {
                let body = resp.text().await.unwrap();
                let action = body
                    .split("action=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .expect("login form")
                    .to_string();
                let form = format!(
                    "login={user}&password=test&otp={}&auth_age={auth_age}",
                    if mfa { "1" } else { "0" }
                );
                let resp = client
                    .post(format!("{}{action}", self.issuer))
                    .header("Cookie", cookie_header(&cookies))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form)
                    .send()
                    .await
                    .unwrap();
                keep_cookies(&resp, &mut cookies);
                logged_in = true;
                url = absolute(&self.issuer, location(&resp));
                continue;
            }
            let loc = absolute(&self.issuer, location(&resp));
            if loc.starts_with(redirect) {
                return loc;
            }
            url = loc;
        }
        panic!("the code flow did not reach the callback");
    }
}

fn cookie_header(jar: &std::collections::BTreeMap<String, String>) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no redirect from the IdP (status {})", resp.status()))
        .to_string()
}

fn absolute(base: &str, loc: String) -> String {
    if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    }
}

fn keep_cookies(resp: &reqwest::Response, jar: &mut std::collections::BTreeMap<String, String>) {
    for v in resp.headers().get_all("set-cookie") {
        let Ok(v) = v.to_str() else { continue };
        if let Some((kv, _)) = v.split_once(';').or(Some((v, ""))) {
            if let Some((k, val)) = kv.split_once('=') {
                if val.is_empty() {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_string(), val.to_string());
                }
            }
        }
    }
}

/// Runs a headless-Chromium scenario (tests/idp/browser.mjs) and returns
/// one JSON result per step.
pub fn browser(steps: serde_json::Value) -> Vec<serde_json::Value> {
    let node = require("node");
    require("chromium");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
    assert!(
        root.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: {SETUP}"
    );
    let out = Command::new(node)
        .arg(root.join("browser.mjs"))
        .arg(steps.to_string())
        .output()
        .expect("run the browser driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("[]");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "browser driver output ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "browser driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    v.as_array().cloned().unwrap_or_default()
}

/// Route authorization for tests about something else (authentication,
/// TLS): every request on the route maps to an `EchoPage` record, which
/// [`page_policies`] permits to anyone authenticated. Still decided by
/// Cedar, so a route without it denies.
pub const PAGE_ROUTE_AUTHZ: &str =
    r#"authorization = { templates = [{ path = "/{*rest}", resource_type = "EchoPage" }] }"#;

/// `[authorization]` pointing at a policy set (the shipped schema plus one
/// permit for `EchoPage`), written once per test process.
pub fn page_policies() -> String {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("phigate-test-page-policies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/phigate.cedarschema");
        std::fs::copy(schema, dir.join("phigate.cedarschema")).unwrap();
        std::fs::write(
            dir.join("pages.cedar"),
            "@id(\"test-echo-pages\")\npermit (principal, action, resource is Phigate::Record)\nwhen { resource.type == \"EchoPage\" };\n",
        )
        .unwrap();
        dir
    });
    format!("\n[authorization]\npolicies = \"{}\"\n", dir.display())
}

/// `phigate keygen api-key --id ID --role ROLE`: the key (stdout) and the
/// `[[api_keys]]` config entry (stderr).
pub fn keygen_api_key(id: &str, role: &str) -> (String, String) {
    let out = Command::new(phigate_bin())
        .args(["keygen", "api-key", "--id", id, "--role", role])
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let entry = stderr[stderr.find("[[api_keys]]").expect("config entry")..].to_string();
    (key, entry)
}
