//! The demo's side-by-side: once phigate is up, the same request is made
//! as three personas through the proxy itself, and what each received is
//! printed in columns — the response phase, visible at a glance.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Who is asked, with which token, and what (a path; for a search, the
/// first record of the answer is shown).
pub struct Column {
    pub label: &'static str,
    pub token: String,
    pub path: &'static str,
}

/// Waits for phigate on `addr`, asks each column's path as its persona
/// over TLS (trusting `ca`), and prints the answers side by side.
pub fn spawn(addr: SocketAddr, ca: PathBuf, path: &'static str, columns: Vec<Column>) {
    let _ = std::thread::Builder::new()
        .name("demo-side-by-side".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(_) => return,
            };
            if let Some(text) = rt.block_on(fetch_all(addr, &ca, path, &columns)) {
                println!("{text}");
            }
        });
}

async fn fetch_all(
    addr: SocketAddr,
    ca: &PathBuf,
    path: &str,
    columns: &[Column],
) -> Option<String> {
    let pem = std::fs::read(ca).ok()?;
    let cert = reqwest::Certificate::from_pem(&pem).ok()?;
    let client = reqwest::Client::builder()
        .add_root_certificate(cert)
        .resolve("localhost", addr)
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .ok()?;
    let mut answers = Vec::new();
    for c in columns {
        let url = format!("https://localhost:{}{}", addr.port(), c.path);
        let mut tries = 0;
        let answer = loop {
            match client.get(&url).bearer_auth(&c.token).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let mut body: Value = r.json().await.unwrap_or(Value::Null);
                    if body["resourceType"] == "Bundle" {
                        body = body["entry"][0]["resource"].take();
                    }
                    break (status, body);
                }
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(_) => return None,
            }
        };
        answers.push(answer);
    }
    Some(render(path, columns, &answers))
}

/// A value in a few characters.
fn brief(v: Option<&Value>) -> String {
    let s = match v {
        None => "—".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => match a.first() {
            Some(Value::Object(o)) => {
                let first = ["value", "family", "city", "code", "reference", "url", "div"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str))
                    .unwrap_or("…");
                format!("[{}] {first}", a.len())
            }
            _ => format!("[{}]", a.len()),
        },
        Some(Value::Object(o)) => {
            if let Some(sec) = o.get("security").and_then(Value::as_array) {
                let codes: Vec<&str> = sec
                    .iter()
                    .filter_map(|c| c.get("code").and_then(Value::as_str))
                    .collect();
                format!("security: {}", codes.join(","))
            } else if let Some(r) = o.get("reference").and_then(Value::as_str) {
                r.to_string()
            } else {
                "{…}".to_string()
            }
        }
        Some(other) => other.to_string(),
    };
    let chars: Vec<char> = s.chars().collect();
    if chars.len() > 24 {
        format!("{}…", chars[..23].iter().collect::<String>())
    } else {
        s
    }
}

fn render(path: &str, columns: &[Column], answers: &[(u16, Value)]) -> String {
    let mut keys: Vec<String> = Vec::new();
    for (_, body) in answers {
        if let Some(o) = body.as_object() {
            for k in o.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let mut out = format!(
        "\nA patient's record as each persona receives it (the response phase; {path}):\n\n"
    );
    out.push_str(&format!("  {:<22}", ""));
    for (c, (status, _)) in columns.iter().zip(answers) {
        out.push_str(&format!("{:<27}", format!("{} ({status})", c.label)));
    }
    out.push('\n');
    for k in keys {
        out.push_str(&format!("  {:<22}", k));
        for (_, body) in answers {
            out.push_str(&format!("{:<27}", brief(body.get(&k))));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_show_what_each_persona_got() {
        let columns = vec![
            Column {
                label: "care manager",
                token: String::new(),
                path: "/p",
            },
            Column {
                label: "billing",
                token: String::new(),
                path: "/p",
            },
        ];
        let answers = vec![
            (
                200,
                json!({"resourceType": "Patient", "telecom": [{"value": "555-0101"}, {"value": "a@b"}]}),
            ),
            (
                200,
                json!({"resourceType": "Patient", "meta": {"security": [{"code": "REDACTED"}]}}),
            ),
        ];
        let text = render("/fhir/Patient/p", &columns, &answers);
        assert!(text.contains("[2] 555-0101"), "{text}");
        assert!(text.contains("security: REDACTED"), "{text}");
        let telecom = text
            .lines()
            .find(|l| l.trim_start().starts_with("telecom"))
            .unwrap();
        assert!(telecom.trim_end().ends_with('—'), "{text}");
    }
}
