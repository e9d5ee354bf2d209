//! What phigate writes to its log, read as a SIEM pipeline would: one JSON
//! object per line, each with a `message`, values as values (never a
//! debug rendering such as `Some(…)`), and start-up lines saying what was
//! started.

mod common;
use common::*;

#[test]
fn every_log_line_is_json_with_a_message_and_startup_says_what_runs() {
    let nginx = Upstream::nginx("location / { return 200 'page'; }", None);
    let (key, entry) = keygen_api_key("svc", "reader");
    let body = format!(
        r#"{policies}
{entry}
[[routes]]
name = "pages"
path_prefix = "/p"
upstream = "app"
auth = {{ kind = "api", accept = ["api_key"] }}
{authz}
[[routes]]
name = "open"
path_prefix = "/"
upstream = "app"
auth = {{ kind = "public" }}
[upstreams.app]
origins = ["{origin}"]
"#,
        policies = page_policies(),
        authz = PAGE_ROUTE_AUTHZ,
        origin = nginx.origin(),
    );
    let px = Phigate::start(&body);
    assert_eq!(px.get("/hello").status, 200);
    let auth = |k: &str| {
        format!("GET /p/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: ApiKey {k}\r\nConnection: close\r\n\r\n")
    };
    assert_eq!(px.raw(auth(&key).as_bytes()).status, 200);
    assert_eq!(px.raw(auth("wrong").as_bytes()).status, 401);
    let logs = px.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for (l, v) in logs.lines().zip(&lines) {
        assert!(v["message"].is_string(), "no message: {l}");
        assert!(!l.contains("Some("), "a debug rendering: {l}");
    }
    let find = |msg: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|v| v["message"] == msg).collect()
    };
    assert!(
        find("listener").iter().any(|v| v["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))),
        "{logs}"
    );
    let routes: Vec<&str> = find("route")
        .iter()
        .filter_map(|v| v["route"].as_str())
        .collect();
    assert_eq!(routes, ["pages", "open"], "{logs}");
    assert!(
        find("policies loaded")
            .iter()
            .any(|v| v["policy_version"].is_string()),
        "{logs}"
    );
    assert!(find("audit trail").len() == 1, "{logs}");
    // An authentication event names the client as an address.
    let rejected = lines
        .iter()
        .find(|v| v["message"] == "authentication" && v["event"] == "api_key_rejected")
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(rejected["client_ip"], "127.0.0.1");
    // Requests carry numbers as numbers.
    let request = find("request")[0];
    assert!(
        request["status"].is_u64() && request["latency_ms"].is_number(),
        "{request}"
    );
}
