//! The listener as an auditor measures it: Debian's testssl.sh against
//! phigate on loopback with a self-signed ECDSA P-256 certificate and the
//! shipped TLS defaults, its JSON findings held to pinned expectations.
//!
//! Pinned: TLS 1.2 and 1.3 only; exactly the six AEAD, forward-secret
//! suites rustls offers for an ECDSA key; session tickets with the default
//! lifetime and no session-ID resumption; no vulnerability; and an exact
//! list of the findings above INFO that a self-signed test certificate
//! causes. Anything new above INFO fails the test.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest testssl.sh may run before the test gives up (it takes about a
/// minute here).
const DEADLINE: Duration = Duration::from_secs(300);

/// The cipher suites phigate offers with an ECDSA certificate, by version
/// (OpenSSL names, as testssl.sh reports them).
const TLS12_SUITES: [&str; 3] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
];
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Findings above INFO that are expected, and why. The test certificate is
/// self-signed and has neither CRL nor OCSP URIs; testssl.sh's openssl has
/// no GOST engine. Nothing else may be above INFO.
const EXPECTED_ABOVE_INFO: &[(&str, &str)] = &[
    ("cert_chain_of_trust", "CRITICAL"),
    ("cert_revocation", "HIGH"),
];

/// What testssl.sh reports when its resumption probe closed before the
/// TLS 1.3 ticket arrived (see the test).
const PROBE_CLOSED_EARLY: &str = "check failed because of connect problem";

/// testssl.sh's notes about itself, not about the server (its OpenSSL
/// build's missing GOST engine, in some versions).
const ABOUT_TESTSSL: &[&str] = &["engine_problem"];

#[derive(Debug)]
struct Finding {
    severity: String,
    finding: String,
}

/// Whether a second OpenSSL connection (with `options`) resumes the
/// first's session. Each holds its connection a second, so a TLS 1.3 ticket
/// that follows the handshake is read.
fn openssl_resumes(port: u16, dir: &std::path::Path, options: &str) -> bool {
    let session = dir.join("openssl.session");
    let _ = std::fs::remove_file(&session);
    let connect = |flag: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep 1 | timeout 20 {} s_client -connect 127.0.0.1:{port} -servername localhost {options} {flag} {}",
                require("openssl").display(),
                session.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    connect("-sess_out");
    connect("-sess_in").contains("Reused,")
}

fn run_testssl(target: &str, json: &std::path::Path) -> (Duration, String) {
    let testssl = require("testssl");
    let openssl = require("openssl");
    let started = Instant::now();
    let mut child = Command::new(testssl)
        .args(["--quiet", "--warnings", "off", "--color", "0", "-n", "none"])
        .args(["--connect-timeout", "10", "--openssl-timeout", "10"])
        .arg("--openssl")
        .arg(openssl)
        .arg("--jsonfile")
        .arg(json)
        // Protocols, cipher categories, forward secrecy, every cipher per
        // protocol, server defaults (tickets, certificate), vulnerabilities.
        .args(["-p", "-s", "-f", "-E", "-S", "-U"])
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start testssl: {e}: {SETUP}"));
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("testssl.sh ran longer than {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (started.elapsed(), text)
}

/// A self-signed ECDSA P-256 certificate valid for a year, as an operator
/// would make one with OpenSSL.
fn self_signed_p256(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new(require("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "365", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl req");
    assert!(status.success(), "openssl req failed: {SETUP}");
    (cert, key)
}

#[test]
fn testssl_measures_tls12_13_aead_forward_secrecy_and_no_vulnerability() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_p256(dir.path());
    let upstream = Upstream::demo();
    let port = free_port();
    let px = Phigate::start_with(
        &tls_listener(port, &cert, &key, ""),
        port,
        &format!(
            "[server]\nmax_connections_per_client = 4096\n\n{}",
            route_to("fhir", "/fhir", &[upstream.origin()], "")
        ),
    );
    let json = dir.path().join("testssl.json");
    // The pinned strings are testssl.sh 3.0's: say which one ran.
    let version = Command::new(require("testssl"))
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("testssl"))
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    eprintln!("{version}");
    let (took, text) = run_testssl(&format!("127.0.0.1:{port}"), &json);
    eprintln!("testssl.sh took {:.0}s", took.as_secs_f64());
    let raw = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("testssl.sh wrote no JSON ({e}):\n{text}"));
    let all: Vec<serde_json::Value> = serde_json::from_str(&raw).unwrap();
    let mut f: BTreeMap<String, Finding> = BTreeMap::new();
    for v in &all {
        let id = v["id"].as_str().unwrap_or_default().to_string();
        f.insert(
            id,
            Finding {
                severity: v["severity"].as_str().unwrap_or_default().to_string(),
                finding: v["finding"].as_str().unwrap_or_default().to_string(),
            },
        );
    }
    let get = |id: &str| {
        f.get(id)
            .unwrap_or_else(|| panic!("testssl.sh reported no {id:?}:\n{text}"))
    };
    let expect = |id: &str, severity: &str, finding: &str| {
        let x = get(id);
        assert!(
            x.severity == severity && x.finding.starts_with(finding),
            "{id}: expected {severity} {finding:?}, got {x:?}"
        );
    };

    // Protocols: TLS 1.2 and 1.3 only.
    expect("SSLv2", "OK", "not offered");
    expect("SSLv3", "OK", "not offered");
    expect("TLS1", "INFO", "not offered");
    expect("TLS1_1", "INFO", "not offered");
    expect("TLS1_2", "OK", "offered");
    expect("TLS1_3", "OK", "offered with final");

    // Cipher categories: nothing weak, no CBC ("AVERAGE"), AEAD only.
    for weak in ["NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"] {
        let x = get(&format!("cipherlist_{weak}"));
        assert_eq!(x.finding, "not offered", "cipherlist_{weak}: {x:?}");
    }
    expect("cipherlist_STRONG", "OK", "offered");

    // Every suite offered, per protocol: exactly the pinned AEAD ones, each
    // with an ephemeral key exchange, and each in the forward-secret list.
    let mut offered: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (id, x) in &f {
        let Some(rest) = id.strip_prefix("cipher-") else {
            continue;
        };
        // "TLS 1.2   xc02b   ECDHE-ECDSA-AES128-GCM-SHA256   ECDH 253   AESGCM   128   TLS_…"
        let cols: Vec<&str> = x.finding.split_whitespace().collect();
        let (proto, name, kx, enc) = match cols.as_slice() {
            ["TLS", v, _, name, kx, _, enc, ..] => (*v, *name, *kx, *enc),
            _ => panic!("{id}: unexpected finding {x:?}"),
        };
        assert!(
            rest.starts_with("tls1_2_") || rest.starts_with("tls1_3_"),
            "{id}: a suite offered over another protocol: {x:?}"
        );
        assert_eq!(
            kx, "ECDH",
            "{id}: not an ephemeral ECDH key exchange: {x:?}"
        );
        assert!(
            enc == "AESGCM" || enc == "ChaCha20",
            "{id}: not an AEAD cipher: {x:?}"
        );
        offered
            .entry(if proto == "1.3" { "TLSv1.3" } else { "TLSv1.2" })
            .or_default()
            .insert(name.to_string());
    }
    let set = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        offered.get("TLSv1.2"),
        Some(&set(&TLS12_SUITES)),
        "{offered:?}"
    );
    assert_eq!(
        offered.get("TLSv1.3"),
        Some(&set(&TLS13_SUITES)),
        "{offered:?}"
    );
    expect("PFS", "OK", "offered");
    let fs: BTreeSet<String> = get("PFS_ciphers")
        .finding
        .split_whitespace()
        .map(String::from)
        .collect();
    for suite in TLS12_SUITES.iter().chain(&TLS13_SUITES) {
        assert!(fs.contains(*suite), "{suite} is not forward-secret: {fs:?}");
    }

    // Resumption: tickets with the default lifetime, no session IDs.
    expect(
        "TLS_session_ticket",
        "INFO",
        "valid for 3600 seconds only (<daily)",
    );
    // testssl.sh's own resumption probe reads no further than the
    // handshake (`s_client </dev/null`), so a TLS 1.3 ticket that arrives
    // after its client closed leaves it nothing to resume with ("connect
    // problem"; about 4 runs in 10 against a debug build here). Then
    // OpenSSL is asked the same question, waiting for the ticket.
    // Findings settled by a check of our own instead (not counted below).
    let mut settled: Vec<&str> = Vec::new();
    let resumption = get("sessionresumption_ticket");
    if resumption.finding != PROBE_CLOSED_EARLY {
        expect("sessionresumption_ticket", "INFO", "supported");
    } else {
        eprintln!("testssl.sh's resumption probe closed before the ticket; asking OpenSSL");
        assert!(
            openssl_resumes(port, dir.path(), "-tls1_3"),
            "no ticket resumption with OpenSSL either"
        );
        settled.push("sessionresumption_ticket");
    }
    // testssl.sh's session-ID probe runs over TLS 1.3, where `-no_ticket`
    // does not stop the ticket: it measures the same race as above, not
    // IDs. Asked over TLS 1.2 without tickets, a session ID never resumes.
    assert!(
        !openssl_resumes(port, dir.path(), "-tls1_2 -no_ticket"),
        "a TLS 1.2 session resumed by its session ID"
    );
    assert!(
        openssl_resumes(port, dir.path(), "-tls1_2"),
        "a TLS 1.2 session did not resume by its ticket"
    );
    settled.push("sessionresumption_ID");

    // Certificate: ECDSA P-256.
    expect("cert_keySize", "OK", "EC 256 bits");
    expect("cert_signatureAlgorithm", "OK", "ECDSA with SHA256");

    // Vulnerabilities: every one checked, none found.
    for id in [
        "heartbleed",
        "CCS",
        "ticketbleed",
        "ROBOT",
        "secure_renego",
        "secure_client_renego",
        "CRIME_TLS",
        "BREACH",
        "POODLE_SSL",
        "fallback_SCSV",
        "SWEET32",
        "FREAK",
        "DROWN",
        "LOGJAM",
        "BEAST",
        "LUCKY13",
        "RC4",
    ] {
        let x = get(id);
        assert!(
            x.severity == "OK" || x.severity == "INFO",
            "{id} flagged: {x:?}"
        );
    }

    // Nothing else above INFO but the pinned, explained findings.
    // From every finding, not the map by id: a repeated id must not hide
    // a second finding above INFO.
    let above: BTreeSet<(String, String)> = all
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_string(),
                v["severity"].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(id, sev)| {
            !matches!(sev.as_str(), "OK" | "INFO")
                && !ABOUT_TESTSSL.contains(&id.as_str())
                && !settled.contains(&id.as_str())
        })
        .collect();
    let expected: BTreeSet<(String, String)> = EXPECTED_ABOVE_INFO
        .iter()
        .map(|(i, s)| (i.to_string(), s.to_string()))
        .collect();
    assert_eq!(
        above,
        expected,
        "findings above INFO changed: {:#?}",
        f.iter()
            .filter(|(id, _)| above.iter().any(|(a, _)| a == *id))
            .collect::<Vec<_>>()
    );
    drop(px);
}
