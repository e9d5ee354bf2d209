use super::*;
use crate::server::tls::SelfSigned;

fn with_cert() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    SelfSigned::generate(&["localhost"])
        .unwrap()
        .write(dir.path())
        .unwrap();
    let base = String::from(
        r#"
[[listeners]]
address = "0.0.0.0:8443"
[listeners.tls]
cert = "cert.pem"
key = "key.pem"

[[routes]]
name = "fhir"
path_prefix = "/fhir"
upstream = "ehr"
auth = { kind = "public" }

[upstreams.ehr]
origins = ["http://127.0.0.1:8080"]
"#,
    );
    (dir, base)
}

fn load(dir: &tempfile::TempDir, text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, &dir.path().join("phigate.toml"))
}

#[test]
fn good_config_loads_with_defaults() {
    let (dir, text) = with_cert();
    let c = load(&dir, &text).unwrap();
    assert_eq!(c.admin.address, "127.0.0.1:9090");
    assert_eq!(c.routes[0].max_body, ByteSize::mib(10));
    assert!(c.hygiene.trusted_proxies.is_empty());
    assert!(c.listeners[0].tls.as_ref().unwrap().cert.is_absolute());
    assert!(c.listeners[0].tls.as_ref().unwrap().http2);
}

#[test]
fn unknown_key_names_line() {
    let (dir, text) = with_cert();
    let text = text.replace(
        "upstream = \"ehr\"",
        "upstream = \"ehr\"\nmax_bodyy = \"1MiB\"",
    );
    let e = load(&dir, &text).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("phigate.toml:12"), "{s}");
    assert!(s.contains("max_bodyy"), "{s}");
}

#[test]
fn all_semantic_problems_reported_with_lines() {
    let (dir, text) = with_cert();
    let text = text
        .replace("upstream = \"ehr\"", "upstream = \"emr\"")
        .replace("http://127.0.0.1:8080", "ftp://x")
        .replace("0.0.0.0:8443", "nowhere");
    let e = load(&dir, &text).unwrap_err();
    let keys: Vec<(&str, Option<usize>)> = e.0.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert!(
        keys.contains(&("listeners[0].address", Some(3))),
        "{keys:?}"
    );
    assert!(keys.contains(&("routes[0].upstream", Some(11))), "{keys:?}");
    assert!(
        keys.contains(&("upstreams.ehr.origins[0]", Some(15))),
        "{keys:?}"
    );
    let s = e.to_string();
    assert!(
        s.contains("no upstream named \"emr\"; defined upstreams: [ehr]"),
        "{s}"
    );
}

#[test]
fn cleartext_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[[listeners]]
address = "0.0.0.0:8080"
[[routes]]
name = "r"
path_prefix = "/"
upstream = "u"
auth = { kind = "public" }
[upstreams.u]
origins = ["http://127.0.0.1:1"]
"#;
    let e = load(&dir, text).unwrap_err().to_string();
    assert!(
        e.contains("cleartext listener") && e.contains("insecure_cleartext"),
        "{e}"
    );
    let ok = text.replace(
        "0.0.0.0:8080\"",
        "0.0.0.0:8080\"\ninsecure_cleartext = true",
    );
    assert!(load(&dir, &ok).is_ok());
    let ok = text.replace("0.0.0.0:8080", "127.0.0.1:8080");
    assert!(load(&dir, &ok).is_ok());
}

#[test]
fn admin_off_loopback_needs_expose() {
    let (dir, text) = with_cert();
    let text = format!("{text}\n[admin]\naddress = \"0.0.0.0:9090\"\n");
    let e = load(&dir, &text).unwrap_err().to_string();
    assert!(e.contains("admin.address") && e.contains("expose"), "{e}");
}

#[test]
fn missing_cert_file_named() {
    let (dir, text) = with_cert();
    let text = text.replace("cert.pem", "nope.pem");
    let e = load(&dir, &text).unwrap_err().to_string();
    assert!(
        e.contains("listeners[0].tls.cert") && e.contains("nope.pem"),
        "{e}"
    );
}

#[test]
fn bad_units_and_prefixes() {
    let (dir, text) = with_cert();
    let bad = text.replace("path_prefix = \"/fhir\"", "path_prefix = \"/fhir/../x\"");
    let e = load(&dir, &bad).unwrap_err().to_string();
    assert!(e.contains("routes[0].path_prefix"), "{e}");
    let bad = text.replace(
        "upstream = \"ehr\"",
        "upstream = \"ehr\"\nmax_body = \"ten\"",
    );
    let e = load(&dir, &bad).unwrap_err().to_string();
    assert!(e.contains("invalid size"), "{e}");
}

#[test]
fn origins_parse() {
    assert_eq!(
        Origin::parse("https://ehr.example.org").unwrap(),
        Origin {
            tls: true,
            host: "ehr.example.org".into(),
            port: 443
        }
    );
    assert_eq!(
        Origin::parse("http://[::1]:81/").unwrap().authority(),
        "[::1]:81"
    );
    for bad in [
        "ehr:80",
        "http://",
        "http://a/b",
        "http://u@a",
        "http://a:x",
    ] {
        assert!(Origin::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn shipped_example_config_is_valid() {
    // config/phigate.toml documents every option; keep it loadable.
    let text = include_str!("../../config/phigate.toml");
    let dir = tempfile::tempdir().unwrap();
    SelfSigned::generate(&["localhost"])
        .unwrap()
        .write(dir.path())
        .unwrap();
    let text = text
        .replace("/etc/phigate/tls/cert.pem", "cert.pem")
        .replace("/etc/phigate/tls/key.pem", "key.pem");
    let text = text.replace("/etc/phigate/upstream-ca.pem", "cert.pem");
    let text = text.replace("/var/lib/phigate/audit", "audit");
    if let Err(e) = load(&dir, &text) {
        panic!("{e}");
    }
}

#[test]
fn compose_config_is_valid() {
    // docker-compose.yml mounts config/compose.toml; docker cannot run in CI,
    // so at least keep the config it mounts loadable.
    let text = include_str!("../../config/compose.toml");
    let dir = tempfile::tempdir().unwrap();
    SelfSigned::generate(&["localhost"])
        .unwrap()
        .write(dir.path())
        .unwrap();
    let text = text.replace("/run/phigate-tls/", "");
    if let Err(e) = load(&dir, &text) {
        panic!("{e}");
    }
}

#[test]
fn demo_config_template_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = SelfSigned::generate(&["localhost"])
        .unwrap()
        .write(dir.path())
        .unwrap();
    let args = crate::demo::DemoArgs {
        listen: "127.0.0.1:8443".parse().unwrap(),
        admin: "127.0.0.1:9090".parse().unwrap(),
        seed: 1,
        patients: 1,
        write_fixtures: None,
        upstream_only: None,
        state_dir: None,
    };
    let k = crate::authn::apikey::generate();
    let entities = dir.path().join("entities.json");
    let data = crate::demo::data::DemoData::generate(1, 5);
    std::fs::write(
        &entities,
        crate::demo::entities::cedar_entities(&data, jiff::Timestamp::now()).to_string(),
    )
    .unwrap();
    let text = crate::demo::render_config(
        &args,
        "127.0.0.1:1".parse().unwrap(),
        &cert,
        &key,
        "http://127.0.0.1:2",
        (&k.key_id, &k.hash),
        &entities,
    );
    for placeholder in [
        "{listen}",
        "{admin}",
        "{cert}",
        "{key}",
        "{upstream}",
        "{issuer}",
        "{api_key_id}",
        "{api_key_hash}",
        "{entities}",
        "{pseudonym_key}",
        "{audit_dir}",
        "{audit_key}",
    ] {
        assert!(
            !text.contains(placeholder),
            "unfilled {placeholder}:\n{text}"
        );
    }
    if let Err(e) = load(&dir, &text) {
        panic!("{e}");
    }
}

#[test]
fn public_paths_are_exact_normalized_paths_or_a_trailing_star() {
    let (dir, text) = with_cert();
    let with = |paths: &str| {
        let t = text.replace(
            "auth = { kind = \"public\" }",
            &format!("auth = {{ kind = \"api\", accept = [\"api_key\"], public_paths = [{paths}] }}"),
        ) + "\n[authorization]\nexample_policies = true\n[[api_keys]]\nid = \"s\"\nkey_id = \"0011223344\"\nhash = \"x\"\n";
        match load(&dir, &t) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .filter(|p| p.key.contains("public_paths"))
                    .map(|p| p.key)
                    .collect()
            }
        }
    };
    assert!(with("\"/fhir/metadata\", \"/fhir/assets/*\"").is_empty());
    for bad in [
        "\"/fhir/*/x\"",
        "\"/fhir/a*\"",
        "\"/fhir/%7Emeta\"",
        "\"/fhir/../x\"",
        "\"/fhir/x;y\"",
    ] {
        assert_eq!(
            with(bad),
            vec!["routes[0].auth.public_paths[0]".to_string()],
            "{bad}"
        );
    }
}

#[test]
fn relative_paths_and_file_secrets_are_resolved_against_the_config_directory() {
    // Not the working directory: under systemd that is `/`.
    let text = r#"
[[listeners]]
address = "127.0.0.1:8080"
[[routes]]
name = "open"
path_prefix = "/"
upstream = "app"
auth = { kind = "public" }
[upstreams.app]
origins = ["http://127.0.0.1:9"]
[authorization]
policies = "policies"
entities = "policies/entities.json"
[identity_headers]
assertion_key = "file:keys/assertion.pem"
[audit]
dir = "audit"
signing_key = "file:keys/audit.key"
"#;
    let c = Config::from_toml(text, Path::new("/etc/phigate/phigate.toml")).unwrap();
    let base = Path::new("/etc/phigate");
    assert_eq!(
        c.authorization.policies.as_deref(),
        Some(base.join("policies").as_path())
    );
    assert_eq!(
        c.authorization.entities.as_deref(),
        Some(base.join("policies/entities.json").as_path())
    );
    let audit = c.audit.unwrap();
    assert_eq!(audit.dir, base.join("audit"));
    assert_eq!(
        audit.signing_key,
        Some(SecretRef::File(base.join("keys/audit.key")))
    );
    assert_eq!(
        c.identity_headers.assertion_key,
        Some(SecretRef::File(base.join("keys/assertion.pem")))
    );
}

#[test]
fn every_unknown_key_is_reported_and_the_rest_still_checked() {
    let (dir, text) = with_cert();
    let text = text
        .replace("key = \"key.pem\"", "key = \"key.pem\"\nhtp2 = true")
        .replace(
            "auth = { kind = \"public\" }",
            "auth = { kind = \"public\" }\nmax_bodyy = \"1MiB\"\nwebsocket = \"yes\"",
        )
        .replace("upstream = \"ehr\"", "upstream = \"nowhere\"");
    let e = load(&dir, &text).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"listeners[0].tls.htp2"), "{e}");
    assert!(keys.contains(&"routes[0].max_bodyy"), "{e}");
    assert!(keys.contains(&"routes[0].websocket"), "{e}");
    // After the typos, the semantic checks still ran.
    assert!(keys.contains(&"routes[0].upstream"), "{e}");
    let typo = e.0.iter().find(|p| p.key == "routes[0].max_bodyy").unwrap();
    assert_eq!(typo.line, Some(14), "{e}");
}

#[test]
fn a_missing_required_key_stops_the_semantic_checks() {
    // Taking a whole route out would make "no route" a false problem.
    let (dir, text) = with_cert();
    let text = text.replace("path_prefix = \"/fhir\"\n", "");
    let e = load(&dir, &text).unwrap_err();
    assert!(e.to_string().contains("path_prefix"), "{e}");
    assert!(!e.0.iter().any(|p| p.key == "routes"), "{e}");
}

#[test]
fn relative_paths_become_absolute_whatever_the_working_directory() {
    let (dir, text) = with_cert();
    let c = load(&dir, &text).unwrap();
    let cert = &c.listeners[0].tls.as_ref().unwrap().cert;
    assert!(
        cert.is_absolute() && cert.starts_with(dir.path()),
        "{cert:?}"
    );
    // A config named without a directory resolves against the working one.
    let c = Config::from_toml(&text, Path::new("phigate.toml"));
    let problems = c.err().map(|e| e.to_string()).unwrap_or_default();
    let cwd = std::env::current_dir().unwrap();
    assert!(
        problems.is_empty() || problems.contains(&cwd.join("cert.pem").display().to_string()),
        "{problems}"
    );
}

#[test]
fn a_route_that_can_only_deny_is_warned_about() {
    let (dir, text) = with_cert();
    let text = text.replace("auth = { kind = \"public\" }\n", "")
        + "\n[[identity_providers]]\nname = \"idp\"\nissuer = \"https://idp.example\"\naudiences = [\"phigate\"]\n\n[authorization]\nexample_policies = true\n\n[audit]\ndir = \"audit\"\n";
    let c = load(&dir, &text).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].message.contains("can only deny"));
    assert_eq!(c.warnings[0].key, "routes[0].authorization");
    let shadow = text.replace(
        "upstream = \"ehr\"\n",
        "upstream = \"ehr\"\nauthorization = { mode = \"shadow\", mapping = \"fhir\" }\n",
    );
    let c = load(&dir, &shadow).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].message.contains("shadow"));
}

#[test]
fn a_missing_key_does_not_hide_the_problems_after_it() {
    let (dir, text) = with_cert();
    let text = text.replace("path_prefix = \"/fhir\"\n", "")
        + "\n[[routes]]\nname = \"two\"\npath_prefix = \"/two\"\nupstream = \"ehr\"\nauth = { kind = \"public\" }\nwebsockt = true\n";
    let e = load(&dir, &text).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["routes[0]", "routes[1].websockt"], "{e}");
    assert!(e.0[0].message.contains("path_prefix"), "{e}");
}

#[test]
fn fragments_are_checked_for_keys_and_types_only() {
    assert!(fragment_problems("[audit]\ndir = \"/var/lib/phigate/audit\"\n").is_empty());
    // A route without its required keys is still a fine fragment...
    assert!(fragment_problems("[[routes]]\nname = \"x\"\nwebsocket = true\n").is_empty());
    // ...but not one with a renamed key or a wrong type.
    let p = fragment_problems("[[routes]]\nname = \"x\"\nwebsockets = true\nmax_body = []\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p.iter().any(|m| m.contains("websockets")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("max_body")), "{p:?}");
    assert!(fragment_problems("[audit\n").len() == 1);
}

#[test]
fn tls_resumption_ocsp_and_hsts_are_validated() {
    let (dir, text) = with_cert();
    let c = load(&dir, &text).unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.session_ticket_lifetime, HumanDuration::secs(3600));
    assert!(tls.ocsp_response.is_none());

    // Relative OCSP paths resolve beside the config; an unusable response
    // is a warning naming its key and file (the certificate is served
    // without a staple), a lifetime rustls could not announce an error.
    std::fs::write(dir.path().join("resp.der"), b"not DER").unwrap();
    let with_ocsp = text.replace(
        "key = \"key.pem\"",
        "key = \"key.pem\"\nocsp_response = \"resp.der\"",
    );
    let c = load(&dir, &with_ocsp).unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("`listeners[0].tls.ocsp_response`")
                && w.contains(&dir.path().join("resp.der").display().to_string())),
        "{w:?}"
    );
    let bad = with_ocsp.replace(
        "ocsp_response = \"resp.der\"",
        "ocsp_response = \"resp.der\"\nsession_ticket_lifetime = \"8days\"",
    );
    let e = load(&dir, &bad).unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["listeners[0].tls.session_ticket_lifetime"], "{e}");
    for ok in ["0s", "10m", "7days"] {
        let t = text.replace(
            "key = \"key.pem\"",
            &format!("key = \"key.pem\"\nsession_ticket_lifetime = \"{ok}\""),
        );
        load(&dir, &t).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }

    // Explicit HSTS where no client connection can be TLS.
    let cleartext = text
        .replace("address = \"0.0.0.0:8443\"", "address = \"127.0.0.1:8080\"")
        .replace(
            "[listeners.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
            "",
        )
        .replace(
            "auth = { kind = \"public\" }",
            "auth = { kind = \"public\" }\nhsts = { max_age = \"1d\" }",
        );
    let e = load(&dir, &cleartext).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].key, "routes[0].hsts");
    let behind_lb = cleartext.replace(
        "[upstreams.ehr]",
        "[hygiene]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\n[upstreams.ehr]",
    );
    load(&dir, &behind_lb).unwrap();
}

#[test]
fn the_tls_guides_config_fragments_are_valid() {
    // docs/tls.md shows real keys: each ```toml block, appended to the
    // shipped example, must load (OCSP response included).
    use crate::server::ocsp::tests::{chain, response, spec};
    let doc = include_str!("../../docs/tls.md");
    let shipped = include_str!("../../config/phigate.toml");
    let dir = tempfile::tempdir().unwrap();
    let ch = chain();
    std::fs::write(dir.path().join("cert.pem"), &ch.chain_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &ch.key_pem).unwrap();
    std::fs::write(dir.path().join("ocsp.der"), response(&ch, spec())).unwrap();
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert_eq!(blocks.len(), 3, "docs/tls.md's toml blocks changed");
    for block in blocks {
        let text = format!("{shipped}\n{block}")
            .replace("/etc/phigate/tls/", "")
            .replace("/etc/phigate/upstream-ca.pem", "cert.pem")
            .replace("/var/lib/phigate/audit", "audit");
        if let Err(e) = load(&dir, &text) {
            panic!("{block}\n{e}");
        }
    }
}
