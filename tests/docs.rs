//! The docs cannot drift from the binary.
//!
//! `the_guide_runs_as_written` takes docs/front-a-legacy-app.md as it is:
//! every block marked `file=PATH` is written to a fresh directory, the
//! blocks marked `run` are run with bash, the stand-in app, the development
//! issuer and phigate are started with the guide's own files, and every row
//! of the guide's table of answers is requested with curl and compared.
//! Only the four loopback ports are changed, so tests can run side by side.
//!
//! `every_snippet_in_the_docs_is_valid` checks every other config, policy,
//! test suite, entities and data-class block in docs/ and the README
//! against the binary's own parsers and validators.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fenced block of a markdown file.
#[derive(Debug, Clone)]
struct Block {
    doc: String,
    line: usize,
    lang: String,
    /// `file=PATH` in the info string.
    file: Option<String>,
    /// `run` in the info string: the guide test runs it.
    run: bool,
    text: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.doc, self.line)
    }
}

fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                let mut words = info.split_whitespace();
                let lang = words.next().unwrap_or("").to_string();
                let mut block = Block {
                    doc: doc.clone(),
                    line: i + 1,
                    lang,
                    file: None,
                    run: false,
                    text: String::new(),
                };
                for w in words {
                    match w.split_once('=') {
                        Some(("file", f)) => block.file = Some(f.to_string()),
                        _ if w == "run" => block.run = true,
                        _ => panic!("{doc}:{}: unknown info word {w:?}", i + 1),
                    }
                }
                open = Some(block);
            }
            (Some(_), Some("")) => out.push(open.take().unwrap()),
            (Some(b), _) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{doc}: a fenced block is never closed");
    out
}

fn doc_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

const GUIDE: &str = "docs/front-a-legacy-app.md";

/// The guide's fixed ports and the free ones this run uses instead.
struct Ports(Vec<(String, u16)>);

impl Ports {
    fn new() -> Ports {
        Ports(
            ["8443", "9090", "8400", "8080"]
                .iter()
                .map(|p| (format!(":{p}"), free_port()))
                .collect(),
        )
    }

    fn apply(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (from, to) in &self.0 {
            text = text.replace(from.as_str(), &format!(":{to}"));
        }
        text
    }

    fn get(&self, guide_port: &str) -> u16 {
        self.0
            .iter()
            .find(|(p, _)| p == &format!(":{guide_port}"))
            .unwrap()
            .1
    }
}

/// Runs a guide block with bash in `dir`, phigate on the PATH.
fn bash(dir: &Path, script: &str, at: &str) -> String {
    let bin_dir = Path::new(phigate_bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{at}: the guide's commands failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn spawn(dir: &Path, name: &str, program: &str, args: &[&str], log: &Path) -> Proc {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({e}): {SETUP}"));
    Proc {
        child,
        name: name.into(),
    }
}

/// The rows of the guide's table of answers: (who, method, path, status).
fn promised_answers(text: &str) -> Vec<(String, String, String, u16)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("| Who | Request | Answer |") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells[1].starts_with("---") {
            continue;
        }
        let (method, path) = cells[2].trim_matches('`').split_once(' ').unwrap();
        rows.push((
            cells[1].to_string(),
            method.to_string(),
            path.to_string(),
            cells[3].parse().unwrap(),
        ));
    }
    rows
}

#[test]
fn the_guide_runs_as_written() {
    for tool in ["openssl", "curl", "python3", "bash"] {
        require(tool);
    }
    let guide = std::fs::read_to_string(doc_path(GUIDE)).unwrap();
    let all = blocks(&doc_path(GUIDE));
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::new();

    // Every file the guide asks to save, as it is.
    let files: Vec<&Block> = all.iter().filter(|b| b.file.is_some()).collect();
    for name in [
        "app.py",
        "setup.sh",
        "phigate.toml",
        "policies/portal.cedar",
        "policies/tests/portal.yaml",
        "entities.json",
        "claims/nurse.json",
    ] {
        assert!(
            files.iter().any(|b| b.file.as_deref() == Some(name)),
            "the guide no longer saves {name}"
        );
    }
    for b in &files {
        let path = dir.path().join(b.file.as_deref().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, ports.apply(&b.text)).unwrap();
    }
    bash(dir.path(), "bash setup.sh", "setup.sh");

    // The checks the guide runs before starting anything.
    let runs: Vec<&Block> = all.iter().filter(|b| b.run).collect();
    assert!(runs.len() >= 4, "the guide's runnable blocks went missing");
    let (checks, later) = runs.split_at(2);
    for b in checks {
        bash(dir.path(), &ports.apply(&b.text), &b.at());
    }

    let log = |n: &str| dir.path().join(format!("{n}.log"));
    let app_port = ports.get("8080").to_string();
    let mut app = spawn(
        dir.path(),
        "the stand-in app",
        "python3",
        &["app.py", &app_port],
        &log("app"),
    );
    wait_for_port_or_log(
        format!("127.0.0.1:{app_port}").parse().unwrap(),
        "the stand-in app",
        &mut app.child,
        Some(&log("app")),
    );
    let issuer_listen = format!("127.0.0.1:{}", ports.get("8400"));
    let mut issuer = spawn(
        dir.path(),
        "phigate dev-issuer",
        phigate_bin(),
        &["dev-issuer", "--listen", &issuer_listen],
        &log("issuer"),
    );
    wait_for_port_or_log(
        issuer_listen.parse().unwrap(),
        "dev-issuer",
        &mut issuer.child,
        Some(&log("issuer")),
    );
    let mut px = spawn(
        dir.path(),
        "phigate",
        phigate_bin(),
        &["serve", "--config", "phigate.toml"],
        &log("phigate"),
    );
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", ports.get("9090")).parse().unwrap();
    wait_for_port_or_log(admin, "phigate", &mut px.child, Some(&log("phigate")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(admin, "/readyz").map(|r| r.status).ok() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "phigate did not become ready:\n{}",
            std::fs::read_to_string(log("phigate")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The tokens block, then each promised answer with curl.
    let tokens_block = ports.apply(&later[0].text);
    let vars: Vec<String> = tokens_block
        .lines()
        .filter_map(|l| l.split_once("=$(").map(|(v, _)| v.trim().to_string()))
        .collect();
    let printed = bash(
        dir.path(),
        &format!(
            "{tokens_block}\nprintf '%s\\n' {}",
            vars.iter()
                .map(|v| format!("\"${v}\""))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        &later[0].at(),
    );
    let tokens: HashMap<String, String> = vars
        .iter()
        .cloned()
        .zip(printed.lines().map(str::to_string))
        .collect();
    let answers = promised_answers(&guide);
    assert!(answers.len() >= 8, "the guide's table of answers is gone");
    let base = format!("https://localhost:{}", ports.get("8443"));
    for (who, method, path, expected) in &answers {
        let mut args = vec![
            "-s".to_string(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}".into(),
            "--cacert".into(),
            "tls/portal.pem".into(),
            "-X".into(),
            method.clone(),
        ];
        if who != "nobody" {
            let var = who.to_ascii_uppercase().replace('-', "_");
            let token = tokens
                .get(&var)
                .unwrap_or_else(|| panic!("the guide mints no ${var} for `{who}`"));
            assert!(token.starts_with("eyJ"), "${var} is not a token: {token}");
            args.push("-H".into());
            args.push(format!("Authorization: Bearer {token}"));
        }
        args.push(format!("{base}{path}"));
        let out = Command::new("curl")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            status,
            expected.to_string(),
            "{who} {method} {path}: the guide promises {expected}\n{}",
            std::fs::read_to_string(log("phigate")).unwrap_or_default()
        );
    }

    // The guide's own curl line shows the chart, as the verified user.
    let exports: String = tokens.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let shown = bash(
        dir.path(),
        &format!("{exports}{}", ports.apply(&later[1].text)),
        &later[1].at(),
    );
    let chart: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(chart["patient"], "p-1001", "{shown}");
    assert_eq!(chart["viewer"], "nina", "{shown}");

    // What was recorded: the guide's audit commands name the accesses.
    let recorded = bash(dir.path(), &ports.apply(&later[2].text), &later[2].at());
    assert!(
        recorded.contains("nina") && recorded.contains("phil"),
        "{recorded}"
    );
    // The accounting lists exactly the answers that disclosed p-1001: the
    // table's 200s about that patient and the guide's own curl.
    let disclosed = answers
        .iter()
        .filter(|(_, _, path, status)| *status == 200 && path.contains("p-1001"))
        .count()
        + 1;
    assert!(
        recorded.contains(&format!("{disclosed} disclosure(s)")),
        "{recorded}"
    );

    // Reloads run routed suites through the routes too: one that holds
    // only through the portal's templates is accepted, a false one refused.
    let reload_with = |name: &str, suite: &str, want: &str| {
        std::fs::write(dir.path().join("policies/tests").join(name), suite).unwrap();
        let before = std::fs::read_to_string(log("phigate"))
            .unwrap()
            .matches("\"event\":\"policy_reload\"")
            .count();
        Command::new("kill")
            .args(["-HUP", &px.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = std::fs::read_to_string(log("phigate")).unwrap();
            let reloads: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("\"event\":\"policy_reload\""))
                .collect();
            if reloads.len() > before {
                let last = reloads[reloads.len() - 1];
                assert!(
                    last.contains(&format!("\"result\":\"{want}\"")),
                    "{name}: {last}"
                );
                return;
            }
            assert!(Instant::now() < deadline, "no reload logged:\n{logs}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let suite = |expect: &str| {
        format!("mapping: routes\ncases:\n  - name: ward 5 through the vitals page\n    principal: {{id: wendy, roles: [nurse], care_teams: [ward-5], mfa: true}}\n    request: GET /api/vitals?patient_id=p-1002\n    expect: {expect}\n")
    };
    reload_with("zz-ward5.yaml", &suite("allow"), "unchanged");
    reload_with("zz-ward5.yaml", &suite("deny"), "rejected");

    // The start-up lines the guide describes.
    let logs = std::fs::read_to_string(log("phigate")).unwrap();
    for message in [
        "\"listener\"",
        "\"route\"",
        "\"identity provider\"",
        "\"policies loaded\"",
        "\"audit trail\"",
    ] {
        assert!(
            logs.contains(&format!("\"message\":{message}")),
            "no {message} line:\n{logs}"
        );
    }
}

#[test]
fn every_snippet_in_the_docs_is_valid() {
    use phigate::authz::store::{PolicyBundle, EMBEDDED};
    let mut docs: Vec<PathBuf> = std::fs::read_dir(doc_path("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.push(doc_path("README.md"));
    docs.sort();
    let schema = EMBEDDED[0];
    let mut problems = Vec::new();
    let mut checked = HashMap::<String, usize>::new();
    for doc in &docs {
        let all = blocks(doc);
        // A doc's policies, for its own test suites.
        let policies: Vec<(String, String)> = all
            .iter()
            .filter(|b| b.lang == "cedar")
            .enumerate()
            .map(|(i, b)| (format!("doc-{i}.cedar"), b.text.clone()))
            .collect();
        for b in &all {
            let mut fail = |m: String| problems.push(format!("{}: {m}", b.at()));
            match b.lang.as_str() {
                "toml" if b.text.contains("[[class]]") => {
                    if let Err(e) = phigate::redact::classes::DataClasses::parse(&b.text) {
                        fail(e.join("; "));
                    }
                }
                "toml" => {
                    for p in phigate::config::fragment_problems(&in_context(&b.text)) {
                        fail(p);
                    }
                }
                "cedar" => {
                    let files = [
                        (schema.0.to_string(), schema.1.to_string()),
                        ("doc.cedar".to_string(), b.text.clone()),
                    ];
                    if let Err(e) = PolicyBundle::from_files(&files) {
                        fail(e.to_string());
                    }
                }
                "yaml" if b.file.is_none() => {
                    let mut files: Vec<(String, String)> = EMBEDDED
                        .iter()
                        .map(|(n, t)| (n.to_string(), t.to_string()))
                        .collect();
                    // The doc's policies replace example ones of the same id.
                    files.extend(policies.iter().cloned());
                    let bundle = match PolicyBundle::from_files(&dedupe_ids(files)) {
                        Ok(b) => b,
                        Err(e) => {
                            fail(e.to_string());
                            continue;
                        }
                    };
                    let load = |_: Option<&Path>| -> Result<String, String> {
                        Ok(phigate::authz::policy_tests::EMBEDDED_ENTITIES.into())
                    };
                    let report = phigate::authz::policy_tests::run_text(
                        &bundle,
                        &b.at(),
                        &b.text,
                        &load,
                        &Default::default(),
                        None,
                    );
                    for f in report.failures {
                        fail(format!("{}: {}", f.case, f.message));
                    }
                }
                "json" => match serde_json::from_str::<serde_json::Value>(&b.text) {
                    Err(e) => fail(format!("not JSON: {e}")),
                    Ok(serde_json::Value::Array(items))
                        if items.iter().any(|i| i.get("uid").is_some()) =>
                    {
                        let bundle = PolicyBundle::from_files(&[(
                            schema.0.to_string(),
                            schema.1.to_string(),
                        )])
                        .unwrap();
                        if let Err(e) = phigate::authz::entities::EntityStore::from_json(
                            &b.text,
                            Some(&bundle.schema),
                        ) {
                            fail(format!("entities: {e}"));
                        }
                    }
                    Ok(_) => {}
                },
                _ => continue,
            }
            *checked.entry(b.lang.clone()).or_default() += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check itself went somewhere: each kind was seen.
    for kind in ["toml", "cedar", "yaml", "json"] {
        assert!(
            checked.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} block checked: {checked:?}"
        );
    }
}

/// A fragment's tables where phigate.toml has them: `[routes.x]` belongs to
/// a `[[routes]]` entry, `[listeners.tls]` to a `[[listeners]]` one.
fn in_context(text: &str) -> String {
    let mut prefix = String::new();
    for array in ["routes", "listeners", "identity_providers"] {
        if text.contains(&format!("[{array}.")) && !text.contains(&format!("[[{array}]]")) {
            prefix.push_str(&format!("[[{array}]]\n"));
        }
    }
    format!("{prefix}{text}")
}

/// Drops example policy files whose `@id`s a doc's own policy reuses.
fn dedupe_ids(files: Vec<(String, String)>) -> Vec<(String, String)> {
    let ids = |text: &str| -> Vec<String> {
        text.match_indices("@id(\"")
            .filter_map(|(at, _)| text[at + 5..].split('"').next().map(str::to_string))
            .collect()
    };
    let doc_ids: Vec<String> = files
        .iter()
        .filter(|(n, _)| n.starts_with("doc-"))
        .flat_map(|(_, t)| ids(t))
        .collect();
    files
        .into_iter()
        .filter(|(n, t)| n.starts_with("doc-") || !ids(t).iter().any(|i| doc_ids.contains(i)))
        .collect()
}
