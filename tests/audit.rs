//! The audit trail end to end, with real processes: phigate killed with
//! SIGKILL mid-load and restarted on the same spool, a real rsyslog taking
//! RFC 5425 syslog over TLS, a spool on a small tmpfs that fills up, and
//! the `phigate audit` tools run on what was recorded.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A real rsyslogd receiving octet-counted syslog on TCP, or TLS with the
/// test CA's certificate, writing each message's body to `out`.
struct Rsyslog {
    port: u16,
    out: PathBuf,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Rsyslog {
    fn start(tls: Option<&TestCa>) -> Rsyslog {
        let bin = require("rsyslogd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let out = d.join("received.log");
        let driver = match tls {
            Some(ca) => {
                let (cert, key) = ca.issue("rsyslog", &["localhost", "127.0.0.1"]);
                assert!(
                    Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists()
                        || Path::new("/usr/lib/rsyslog/lmnsd_gtls.so").exists(),
                    "rsyslog's TLS module (rsyslog-gnutls) is not installed: {SETUP}"
                );
                format!(
                    r#"global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")"#,
                    ca.ca_pem.display(),
                    cert.display(),
                    key.display()
                )
            }
            None => r#"module(load="imtcp")"#.to_string(),
        };
        let conf = format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k")
{driver}
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="body" type="string" string="%msg%\n")
action(type="omfile" file="{out}" template="body")
"#,
            d = d.display(),
            out = out.display()
        );
        let conf_path = d.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = d.join("rsyslogd.log");
        let mut child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf_path)
            .arg("-i")
            .arg(d.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rsyslogd ({e}): {SETUP}"));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port_or_log(addr, "rsyslogd", &mut child, Some(&log));
        Rsyslog {
            port,
            out,
            _proc: Proc {
                child,
                name: "rsyslogd".into(),
            },
            _dir: dir,
        }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// A phigate that can be killed and started again on the same config and
/// spool.
struct Proxy {
    dir: tempfile::TempDir,
    config: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    key: String,
    proc: Option<Proc>,
    starts: usize,
}

impl Proxy {
    /// An `EchoPage` route (any authenticated caller may read it) to
    /// `origin`, an API key, and `[audit]` with a signing key and `sinks`.
    fn new(origin: &str, sinks: &str, audit_extra: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (key, entry) = keygen_api_key("svc", "reader");
        let out = Command::new(phigate_bin())
            .args(["keygen", "audit", "--name", "phigate.test/audit", "--out"])
            .arg(d.join("audit.key"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            d.join("audit.pub"),
            String::from_utf8(out.stdout).unwrap().trim(),
        )
        .unwrap();
        let port = free_port();
        let admin_port = free_port();
        let text = format!(
            r#"[server]
grace_period = "0s"
shutdown_timeout = "1s"
threads = 2
{listener}
[admin]
address = "127.0.0.1:{admin_port}"
{policies}
{entry}
[[routes]]
name = "pages"
path_prefix = "/"
upstream = "app"
auth = {{ kind = "api", accept = ["api_key"] }}
{authz}
[upstreams.app]
origins = ["{origin}"]
[audit]
dir = "{spool}"
signing_key = "file:{keyfile}"
checkpoint_records = 50
checkpoint_interval = "1s"
{audit_extra}
{sinks}
"#,
            listener = cleartext_listener(port),
            policies = page_policies(),
            authz = PAGE_ROUTE_AUTHZ,
            spool = d.join("spool").display(),
            keyfile = d.join("audit.key").display(),
        );
        let config = d.join("phigate.toml");
        std::fs::write(&config, text).unwrap();
        Proxy {
            config,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            admin: format!("127.0.0.1:{admin_port}").parse().unwrap(),
            key,
            proc: None,
            starts: 0,
            dir,
        }
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    fn start(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("phigate-{}.log", self.starts));
        let mut child = Command::new(phigate_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port_or_log(self.addr, "phigate", &mut child, Some(&log));
        self.proc = Some(Proc {
            child,
            name: "phigate".into(),
        });
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    fn stop(&mut self) {
        self.proc = None;
    }

    fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("phigate-{i}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// A GET with request id `id`: (status, body) if a response came.
    fn get(&self, path: &str, id: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: ApiKey {}\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n",
            self.key
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        parse_response(&buf).map(|r| (r.status, r.body))
    }

    fn phigate(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(phigate_bin()).args(args).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn pubkey(&self) -> String {
        self.dir.path().join("audit.pub").display().to_string()
    }

    /// `audit verify` against the given held checkpoint.
    fn verify(&self, checkpoint: &Path) -> (bool, String) {
        self.phigate(&[
            "audit",
            "verify",
            self.spool().to_str().unwrap(),
            "--pubkey",
            &self.pubkey(),
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ])
    }

    /// Every event in the spool (`audit search --json`).
    fn events(&self) -> Vec<serde_json::Value> {
        let (ok, out) = self.phigate(&[
            "audit",
            "search",
            "--dir",
            self.spool().to_str().unwrap(),
            "--json",
        ]);
        assert!(ok, "{out}");
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Request ids of access records in the spool.
    fn recorded_ids(&self) -> BTreeSet<String> {
        self.events()
            .iter()
            .filter(|e| e["kind"] == "access")
            .filter_map(|e| e["request"]["request_id"].as_str().map(str::to_string))
            .collect()
    }

    fn event_ids(&self) -> BTreeSet<String> {
        self.events()
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect()
    }
}

/// Event ids in lines of OCSF JSON (wherever each line starts).
fn ocsf_ids(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["metadata"]["uid"].as_str().map(str::to_string))
        .collect()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} within {secs}s");
}

#[test]
fn syslog_over_tls_reaches_a_real_rsyslog_with_every_event() {
    let ca = TestCa::new();
    let rsyslog = Rsyslog::start(Some(&ca));
    let nginx = Upstream::nginx("location / { return 200 'page'; }", None);
    let sinks = format!(
        "[[audit.sinks]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{}\"\ntls = true\nca = \"{}\"\nserver_name = \"localhost\"\n",
        rsyslog.port,
        ca.ca_pem.display()
    );
    let mut px = Proxy::new(&nginx.origin(), &sinks, "");
    px.start();
    for i in 0..40 {
        let (status, body) = px
            .get(&format!("/page/{i}"), &format!("tls-{i}"))
            .expect("a response");
        assert_eq!((status, body.as_str()), (200, "page"));
    }
    // A denial and a failed sign-in are events too.
    px.key = "wrong".into();
    assert_eq!(px.get("/page/x", "tls-bad").unwrap().0, 401);
    let expected = px.event_ids();
    wait_until("rsyslog received every event", 20, || {
        ocsf_ids(&rsyslog.received()).is_superset(&expected)
    });
    let received = rsyslog.received();
    assert!(received.contains("\"class_uid\":6003"), "{received}");
    assert!(received.contains("tls-39") && received.contains("tls-bad"));
    // The checkpoints reach the SIEM too.
    wait_until("a checkpoint reached rsyslog", 10, || {
        rsyslog.received().contains("phigate_checkpoint")
    });
}

#[test]
fn sigkill_mid_load_five_times_loses_no_record_a_client_got_a_response_for() {
    let rsyslog = Rsyslog::start(None);
    let up = Upstream::nginx("location / { return 200 'page'; }", None);
    let file = tempfile::tempdir().unwrap();
    let jsonl = file.path().join("audit.jsonl");
    let sinks = format!(
        "[[audit.sinks]]\nname = \"file\"\nkind = \"file\"\npath = \"{}\"\n[[audit.sinks]]\nname = \"syslog\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{}\"\n",
        jsonl.display(),
        rsyslog.port
    );
    let mut px = Proxy::new(&up.origin(), &sinks, "");
    let mut answered = BTreeSet::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..5 {
        px.start();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Two clients load it until the kill.
        let clients: Vec<_> = (0..2)
            .map(|c| {
                let stop = stop.clone();
                let addr = px.addr;
                let key = px.key.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 5000 {
                        let id = format!("k{round}-{c}-{i}");
                        i += 1;
                        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
                            continue;
                        };
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        let req = format!("GET /page HTTP/1.1\r\nHost: localhost\r\nAuthorization: ApiKey {key}\r\nX-Request-Id: {id}\r\nConnection: close\r\n\r\n");
                        if s.write_all(req.as_bytes()).is_err() {
                            continue;
                        }
                        let mut buf = Vec::new();
                        let _ = s.read_to_end(&mut buf);
                        // A response head came back: its record must exist.
                        if buf.starts_with(b"HTTP/1.1 200") {
                            got.push(id);
                        }
                    }
                    got
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + rand(900)));
        px.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            answered.extend(c.join().unwrap());
        }
    }
    assert!(
        answered.len() > 50,
        "the load ran ({} answered)\n{}",
        answered.len(),
        px.logs()
            .lines()
            .filter(|l| !l.contains("\"status\":200"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Restarted once more, cleanly stopped: recovery ran after each kill.
    px.start();
    let recorded = px.recorded_ids();
    let missing: Vec<_> = answered.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no access record: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // The sinks catch up with everything, across the kills.
    let all = px.event_ids();
    wait_until("the file sink held every record", 30, || {
        ocsf_ids(&std::fs::read_to_string(&jsonl).unwrap_or_default()).is_superset(&all)
    });
    wait_until("rsyslog held every record", 30, || {
        ocsf_ids(&rsyslog.received()).is_superset(&all)
    });
    px.stop();
    let checkpoint = px.spool().join("checkpoint");
    let (ok, out) = px.verify(&checkpoint);
    assert!(ok, "{out}\n{}", px.logs());
    assert!(out.contains("signed checkpoints verified"), "{out}");
}

/// A tmpfs of `size` mounted at `dir` (root only: CI runs as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_spool_answers_503_discloses_nothing_and_recovers_when_space_returns() {
    let nginx = Upstream::nginx("location / { return 200 'PHI-BODY'; }", None);
    let mut px = Proxy::new(&nginx.origin(), "", "segment_size = \"64KiB\"");
    let _fs = Tmpfs::mount(&px.spool(), "1m");
    px.start();
    assert_eq!(px.get("/a", "before").unwrap(), (200, "PHI-BODY".into()));
    // Fill the filesystem.
    let filler = px.spool().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    // To the last byte: big blocks, then smaller ones.
    for size in [64 * 1024, 4096, 512, 1] {
        let block = vec![b'x'; size];
        while f.write_all(&block).is_ok() {}
    }
    drop(f);
    // Records may still fit in the segment's last page; once they do not,
    // every PHI answer is 503, and any 200 must have its record.
    let mut refused = 0;
    let mut served = Vec::new();
    for i in 0..40 {
        let id = format!("full-{i}");
        let (status, body) = px.get("/a", &id).expect("a response");
        match status {
            503 => {
                assert!(!body.contains("PHI-BODY"));
                refused += 1;
            }
            200 => served.push(id),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(
        refused >= 30,
        "PHI routes answer 503 while the spool is full ({refused}/40)"
    );
    let metrics = http_get(px.admin, "/metrics").unwrap().body;
    assert_eq!(
        metric_value(&metrics, "phigate_audit_spool_degraded"),
        Some(1.0),
        "{metrics}"
    );
    // Space returns: service resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_until("service resumed after space returned", 10, || {
        px.get("/a", "after")
            .is_some_and(|r| r == (200, "PHI-BODY".into()))
    });
    let recorded = px.recorded_ids();
    assert!(recorded.contains("before") && recorded.contains("after"));
    for id in &served {
        assert!(recorded.contains(id), "{id} was answered without a record");
    }
    px.stop();
    let (ok, out) = px.verify(&px.spool().join("checkpoint"));
    assert!(ok, "{out}");
}

#[test]
fn audit_verify_names_tampering_and_exits_non_zero() {
    let nginx = Upstream::nginx("location / { return 200 'page'; }", None);
    let mut px = Proxy::new(&nginx.origin(), "", "");
    px.start();
    for i in 0..20 {
        assert_eq!(px.get("/p", &format!("t-{i}")).unwrap().0, 200);
    }
    px.stop();
    let held = px.dir.path().join("held-checkpoint");
    std::fs::copy(px.spool().join("checkpoint"), &held).unwrap();
    let (ok, out) = px.verify(&held);
    assert!(ok && out.starts_with("ok: records 0..="), "{out}");
    // A flipped byte.
    let seg = std::fs::read_dir(px.spool().join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let original = std::fs::read(&seg).unwrap();
    let mut bad = original.clone();
    bad[200] ^= 0x01;
    std::fs::write(&seg, &bad).unwrap();
    let (ok, out) = px.verify(&held);
    assert!(!ok && out.contains("FAIL damaged record"), "{out}");
    // A cut tail, against the checkpoint held elsewhere.
    std::fs::write(&seg, &original[..original.len() / 2]).unwrap();
    let (ok, out) = px.verify(&held);
    assert!(!ok && out.contains("truncated"), "{out}");
    std::fs::write(&seg, &original).unwrap();
    // A forged checkpoint.
    let forged = std::fs::read_to_string(&held)
        .unwrap()
        .replacen("\n", "\n9", 1);
    std::fs::write(&held, forged).unwrap();
    let (ok, out) = px.verify(&held);
    assert!(!ok && out.contains("does not verify"), "{out}");
}
