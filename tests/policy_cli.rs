//! The policy tools a security team starts with: `policy init` writes a
//! directory that validates and whose tests pass, `policy schema` prints
//! the schema phigate decides with, and `policy explain --exit-code`
//! answers scripts with its status.

mod common;
use common::{keygen_api_key, phigate_bin};
use std::process::Command;

fn phigate(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(phigate_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn policy_init_writes_a_directory_that_validates_and_passes_its_tests() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("policies");
    let dir_s = dir.to_str().unwrap();
    let (code, out) = phigate(&["policy", "init", dir_s]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("phigate policy test --policies"), "{out}");
    for f in [
        "phigate.cedarschema",
        "data-classes.toml",
        "entities.json",
        "ccm/care-team.cedar",
        "tests/care-team.yaml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let entities = dir.join("entities.json");
    let (code, out) = phigate(&[
        "policy",
        "validate",
        "--policies",
        dir_s,
        "--entities",
        entities.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = phigate(&["policy", "test", "--policies", dir_s]);
    assert_eq!(code, Some(0), "{out}");
    // Nothing is overwritten.
    std::fs::write(dir.join("ccm/care-team.cedar"), "// mine").unwrap();
    let (code, out) = phigate(&["policy", "init", dir_s]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not empty"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("ccm/care-team.cedar")).unwrap(),
        "// mine"
    );
}

#[test]
fn policy_schema_prints_the_schema_phigate_decides_with() {
    let (code, out) = phigate(&["policy", "schema"]);
    assert_eq!(code, Some(0));
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/phigate.cedarschema"),
    )
    .unwrap();
    assert_eq!(out, shipped);
}

#[test]
fn policy_explain_exit_code_says_allow_deny_or_error() {
    let claims =
        r#"{"sub":"alice","roles":["care_manager"],"care_teams":["team-01"],"amr":["otp"]}"#;
    let explain = |target: &str, extra: &[&str]| {
        let mut args = vec!["policy", "explain", "--claims", claims];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["GET", target]);
        phigate(&args)
    };
    let (code, out) = explain("/fhir/Patient/pat-0001", &["--exit-code"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = explain("/fhir/Patient/pat-0002", &["--exit-code"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("DENY"), "{out}");
    // Without the flag a denial is still a successful explanation.
    let (code, _) = explain("/fhir/Patient/pat-0002", &[]);
    assert_eq!(code, Some(0));
    let (code, out) = explain(
        "/fhir/Patient/pat-0001",
        &["--exit-code", "--entities", "/nonexistent.json"],
    );
    assert_eq!(code, Some(2), "{out}");
}

/// A config with an API-key FHIR route at `/fhir` deciding with the
/// example policies: `routes` go before it, `authorization` keys after.
fn fhir_config(key_entry: &str, routes: &str, authorization: &str) -> String {
    format!(
        r#"
{key_entry}
[[listeners]]
address = "127.0.0.1:8080"
{routes}
[[routes]]
name = "fhir"
path_prefix = "/fhir"
upstream = "ehr"
auth = {{ kind = "api", accept = ["api_key"] }}
authorization = {{ mapping = "fhir" }}
[upstreams.ehr]
origins = ["http://127.0.0.1:9"]
[authorization]
example_policies = true
{authorization}
[audit]
dir = "audit"
"#
    )
}

#[test]
fn explain_with_a_config_decides_on_exactly_its_entities() {
    // `serve` with this config knows no patient (it names no entities
    // file): explain must say the same, not fall back to the examples.
    let d = tempfile::tempdir().unwrap();
    let key_entry = keygen_api_key("svc", "reader").1;
    let config = |entities: &str| fhir_config(&key_entry, "", entities);
    let path = d.path().join("phigate.toml");
    std::fs::write(&path, config("")).unwrap();
    let claims =
        r#"{"sub":"alice","roles":["care_manager"],"care_teams":["team-01"],"amr":["otp"]}"#;
    let explain = || {
        phigate(&[
            "policy",
            "explain",
            "--config",
            path.to_str().unwrap(),
            "--claims",
            claims,
            "--exit-code",
            "GET",
            "/fhir/Patient/pat-0001",
        ])
    };
    let (code, out) = explain();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("unknown_patient"), "{out}");
    let entities = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/entities.json");
    std::fs::write(
        &path,
        config(&format!("entities = \"{}\"", entities.display())),
    )
    .unwrap();
    let (code, out) = explain();
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn explain_with_a_config_picks_the_route_serve_would() {
    // Two routes on one prefix: the host-specific one is public, the other
    // decides with FHIR mapping. explain must route by Host as serve does.
    let d = tempfile::tempdir().unwrap();
    let key_entry = keygen_api_key("svc", "reader").1;
    let path = d.path().join("phigate.toml");
    let open_data = "[[routes]]\nname = \"open-data\"\nhosts = [\"open.example\"]\npath_prefix = \"/fhir\"\nupstream = \"ehr\"\nauth = { kind = \"public\" }\n";
    std::fs::write(&path, fhir_config(&key_entry, open_data, "")).unwrap();
    let explain = |host: &str| {
        let mut args = vec![
            "policy",
            "explain",
            "--config",
            path.to_str().unwrap(),
            "--claims",
            r#"{"sub":"alice","roles":["care_manager"]}"#,
            "--exit-code",
        ];
        if !host.is_empty() {
            args.extend(["-H", host]);
        }
        args.extend(["GET", "/fhir/Patient/pat-0001"]);
        phigate(&args)
    };
    let (code, out) = explain("");
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = explain("Host: OPEN.example:443");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("route `open-data`") && out.contains("public"),
        "{out}"
    );
}
