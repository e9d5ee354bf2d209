//! The `phigate` command as users run it: check, serve's shutdown, demo.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phigate.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(phigate_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const GOOD: &str = r#"
[[listeners]]
address = "127.0.0.1:8080"

[[routes]]
name = "fhir"
path_prefix = "/fhir"
upstream = "ehr"
auth = { kind = "public" }

[upstreams.ehr]
origins = ["http://127.0.0.1:8081"]
"#;

#[test]
fn check_accepts_good_config() {
    let (ok, text) = check(GOOD);
    assert!(ok, "{text}");
    assert!(
        text.contains("ok (1 listener(s), 1 route(s), 1 upstream(s))"),
        "{text}"
    );
}

#[test]
fn check_names_file_line_and_key_of_every_problem() {
    let broken = GOOD
        .replace("upstream = \"ehr\"", "upstream = \"emr\"")
        .replace("127.0.0.1:8080", "0.0.0.0:8080");
    let (ok, text) = check(&broken);
    assert!(!ok);
    assert!(
        text.contains("phigate.toml:3: `listeners[0].address`"),
        "{text}"
    );
    assert!(text.contains("insecure_cleartext"), "{text}");
    assert!(
        text.contains("phigate.toml:8: `routes[0].upstream`: no upstream named \"emr\""),
        "{text}"
    );
    assert!(text.contains("2 problem(s) found"), "{text}");

    let (ok, text) = check(&GOOD.replace("path_prefix", "path_prefx"));
    assert!(!ok);
    assert!(
        text.contains("phigate.toml:7") && text.contains("unknown field `path_prefx`"),
        "{text}"
    );

    let (ok, text) = check("[[listeners]\n");
    assert!(!ok);
    assert!(text.contains("phigate.toml:1"), "{text}");
}

#[test]
fn serve_refuses_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phigate.toml");
    std::fs::write(&path, GOOD.replace("127.0.0.1:8080", "0.0.0.0:8080")).unwrap();
    let out = Command::new(phigate_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to start"));
}

#[test]
fn sigterm_drains_in_flight_requests() {
    let demo = Upstream::demo();
    let mut px = Phigate::start(&format!(
        "[server]\ngrace_period = \"3s\"\nshutdown_timeout = \"1s\"\n\n{}",
        route_to("slow", "/__slow", &[demo.origin()], "")
    ));
    let addr = px.addr;
    let inflight = std::thread::spawn(move || {
        raw_request(
            addr,
            b"GET /__slow?ms=1500 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &px.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // New connections are refused once shutdown starts.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after SIGTERM"
    );
    let r = inflight.join().unwrap();
    assert_eq!(r.status, 200, "in-flight request cut by shutdown");
    // grace_period 3s + shutdown_timeout 1s bound the exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = px.proc.child.try_wait().unwrap() {
            assert!(status.success(), "a graceful stop exits 0: {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "phigate did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn demo_serves_synthetic_fhir_over_tls() {
    let port = free_port();
    let admin = free_port();
    let state = tempfile::tempdir().unwrap();
    let child = Command::new(phigate_bin())
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--patients",
            "12",
            "--state-dir",
        ])
        .arg(state.path())
        .stdout(std::fs::File::create(state.path().join("stdout")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = Proc {
        child,
        name: "demo".into(),
    };
    wait_for_port(
        format!("127.0.0.1:{admin}").parse().unwrap(),
        "demo admin",
        &mut proc.child,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(format!("127.0.0.1:{admin}").parse().unwrap(), "/readyz")
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "demo never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let banner = std::fs::read_to_string(state.path().join("stdout")).unwrap();
    assert!(banner.contains("curl --cacert"), "{banner}");
    assert!(banner.contains("$CARE_MANAGER_TOKEN"), "{banner}");

    // The credentials file the banner points at: tokens per persona, the API key.
    let env = std::fs::read_to_string(state.path().join("tokens.env")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} missing from tokens.env"))
            .to_string()
    };
    let ca = reqwest::Certificate::from_pem(&std::fs::read(state.path().join("cert.pem")).unwrap())
        .unwrap();
    let client = reqwest::blocking_client(ca);
    let base = format!("https://localhost:{port}");
    let care_manager = format!("Bearer {}", var("CARE_MANAGER_TOKEN"));
    let r = client
        .get_with(format!("{base}/fhir/Patient/pat-0001"), &care_manager)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let patient: serde_json::Value = r.json().unwrap();
    assert_eq!(patient["resourceType"], "Patient");
    // The example policies decide each persona's search of pat-0001's
    // observations; X-Phigate-Decision (on in the demo) names the policy.
    for (persona, status, policy) in [
        ("PHYSICIAN", 200, "physician-own-patients"),
        ("PATIENT", 200, "patient-own-records"),
        ("BILLING", 403, ""),
        ("SUPPORT", 403, ""),
    ] {
        let auth = format!("Bearer {}", var(&format!("{persona}_TOKEN")));
        let url = format!("{base}/fhir/Observation?patient=Patient/pat-0001&_count=5");
        let r = client.get_with(url, &auth).send().unwrap();
        assert_eq!(r.status(), status, "{persona}");
        let decision = r.headers()["x-phigate-decision"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            decision.contains(&format!("policies=\"{policy}\"")),
            "{persona}: {decision}"
        );
        let body: serde_json::Value = r.json().unwrap();
        let expected = if status == 200 {
            "Bundle"
        } else {
            "OperationOutcome"
        };
        assert_eq!(body["resourceType"], expected, "{persona}");
    }
    // The device gateway may post readings, not read records.
    let device = format!("ApiKey {}", var("DEVICE_GATEWAY_KEY"));
    let r = client.get_with(format!("{base}/fhir/Patient/pat-0001"), &device);
    assert_eq!(r.send().unwrap().status(), 403);
    // Without credentials: 401; the metadata is public; unrouted is 404.
    let status = |path: &str| client.get(format!("{base}{path}")).send().unwrap().status();
    assert_eq!(status("/fhir/Patient/pat-0001"), 401);
    assert_eq!(status("/fhir/metadata"), 200);
    assert_eq!(status("/admin"), 404);

    // The response phase: the same record, three answers.
    let patient_as = |persona: &str| -> serde_json::Value {
        let auth = format!("Bearer {}", var(&format!("{persona}_TOKEN")));
        let r = client
            .get_with(format!("{base}/fhir/Patient/pat-0001"), &auth)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{persona}");
        r.json().unwrap()
    };
    let billing = patient_as("BILLING");
    for gone in ["telecom", "address", "text"] {
        assert!(billing.get(gone).is_none(), "billing sees {gone}");
    }
    assert!(billing.get("name").is_some());
    // Research: searches only, de-identified.
    let auth = format!("Bearer {}", var("RESEARCHER_TOKEN"));
    let r = client
        .get_with(format!("{base}/fhir/Patient/pat-0001"), &auth)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "a de-identified read by id");
    let r = client
        .get_with(format!("{base}/fhir/Patient?_count=3"), &auth)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let found: serde_json::Value = r.json().unwrap();
    let research = &found["entry"][0]["resource"];
    assert!(
        research.get("name").is_none() && research["id"].as_str().unwrap().len() == 32,
        "{found}"
    );
    assert!(
        patient.get("telecom").is_some(),
        "the care manager sees contact details"
    );
    // And the demo printed them side by side.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::fs::read_to_string(state.path().join("stdout")).unwrap();
        if out.contains("as each persona receives it") {
            let telecom = out
                .lines()
                .find(|l| l.trim_start().starts_with("telecom"))
                .unwrap_or_else(|| panic!("{out}"));
            assert!(
                telecom.contains('—'),
                "billing's column has no telecom: {out}"
            );
            assert!(
                out.contains("billing (200)") && out.contains("researcher (200)"),
                "{out}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no side-by-side printed: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn demo_writes_deterministic_fixtures() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [&a, &b] {
        let out = Command::new(phigate_bin())
            .args([
                "demo",
                "--patients",
                "5",
                "--seed",
                "42",
                "--write-fixtures",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let p1 = std::fs::read(a.path().join("Patient/pat-0001.json")).unwrap();
    let p2 = std::fs::read(b.path().join("Patient/pat-0001.json")).unwrap();
    assert_eq!(p1, p2);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("bundle.json")).unwrap()).unwrap();
    assert_eq!(bundle["type"], "collection");
    for t in [
        "Patient",
        "Practitioner",
        "CareTeam",
        "CarePlan",
        "Condition",
        "Observation",
        "Communication",
        "Encounter",
        "Claim",
        "Coverage",
    ] {
        assert!(a.path().join(t).is_dir(), "no {t} fixtures");
    }
}

mod reqwest {
    pub use ::reqwest::*;
    /// A blocking-style helper over the async client, for plain tests.
    pub fn blocking_client(ca: Certificate) -> BlockingClient {
        BlockingClient {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: Client::builder().add_root_certificate(ca).build().unwrap(),
        }
    }
    pub struct BlockingClient {
        rt: tokio::runtime::Runtime,
        client: Client,
    }
    pub struct Pending<'a>(&'a BlockingClient, RequestBuilder);
    pub struct Resp<'a>(&'a BlockingClient, Response);
    impl BlockingClient {
        pub fn get(&self, url: String) -> Pending<'_> {
            Pending(self, self.client.get(url))
        }
        pub fn get_with(&self, url: String, authorization: &str) -> Pending<'_> {
            Pending(
                self,
                self.client.get(url).header("Authorization", authorization),
            )
        }
    }
    impl<'a> Pending<'a> {
        pub fn send(self) -> Result<Resp<'a>> {
            let c = self.0;
            c.rt.block_on(self.1.send()).map(|r| Resp(c, r))
        }
    }
    impl Resp<'_> {
        pub fn headers(&self) -> &reqwest::header::HeaderMap {
            self.1.headers()
        }

        pub fn status(&self) -> StatusCode {
            self.1.status()
        }
        pub fn json(self) -> Result<serde_json::Value> {
            self.0.rt.block_on(self.1.json())
        }
    }
}

#[test]
fn a_route_needing_authorization_must_name_its_policies() {
    // A hospital's own `nurse` role must never be let in by an example
    // policy it never wrote: without `policies`, check refuses the config.
    let config = GOOD.replace(
        "auth = { kind = \"public\" }",
        "auth = { kind = \"api\", accept = [\"api_key\"] }",
    ) + "\n[[api_keys]]\nid = \"svc\"\nkey_id = \"0011223344\"\nhash = \"x\"\n";
    let (ok, text) = check(&config);
    assert!(!ok, "{text}");
    assert!(
        text.contains("`authorization.policies`") && text.contains("fhir"),
        "{text}"
    );
    // The example set only by explicit opt-in.
    let (_, text) = check(&format!(
        "{config}\n[authorization]\nexample_policies = true\n"
    ));
    assert!(!text.contains("`authorization.policies`"), "{text}");
}

/// `phigate dev-issuer`: loopback only, and `--key` keeps tokens valid
/// across a restart (the same key id in the JWKS).
#[test]
fn the_dev_issuer_binds_loopback_only_and_keeps_its_key() {
    let out = Command::new(phigate_bin())
        .args(["dev-issuer", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a loopback address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("issuer.key");
    let jwks = || {
        let port = free_port();
        let mut p = Proc {
            child: Command::new(phigate_bin())
                .args([
                    "dev-issuer",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--key",
                ])
                .arg(&key)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            name: "dev-issuer".into(),
        };
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, "dev-issuer", &mut p.child);
        let discovery = http_get(addr, "/.well-known/openid-configuration").unwrap();
        assert_eq!(discovery.status, 200);
        assert_eq!(
            discovery.json()["issuer"],
            format!("http://127.0.0.1:{port}")
        );
        http_get(addr, "/jwks").unwrap().json()["keys"][0]["kid"].clone()
    };
    let first = jwks();
    assert!(first.is_string());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(jwks(), first, "a restart with --key keeps the key");
}

/// `check` passes a config that will bite, but says how: a route with no
/// templates and a policy set with nothing to permit can only deny.
#[test]
fn check_warns_about_routes_that_can_only_deny() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/phigate.cedarschema"),
        policies.join("phigate.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        policies.join("only.cedar"),
        "@id(\"no-exports\")\nforbid (principal, action == Phigate::Action::\"export\", resource);\n",
    )
    .unwrap();
    let (_, entry) = keygen_api_key("svc", "nurse");
    let config = GOOD.replace(
        "auth = { kind = \"public\" }",
        "auth = { kind = \"api\", accept = [\"api_key\"] }",
    ) + &format!(
        "\n{entry}\n[authorization]\npolicies = \"{}\"\n\n[audit]\ndir = \"{}\"\n",
        policies.display(),
        dir.path().join("audit").display()
    );
    let (ok, text) = check(&config);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning:")
            && text.contains("`routes[0].authorization`: route \"fhir\" can only deny"),
        "{text}"
    );
    assert!(text.contains("has no `permit` policy"), "{text}");
}
