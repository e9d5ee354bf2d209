//! Browser single sign-on with a real browser (Debian's headless Chromium)
//! against the real OpenID provider: the code flow lands on the original
//! URL, the session cookie's attributes, automatic logoff (idle and
//! absolute), logout, step-up, tampered cookies, replayed or missing
//! `state`, and open-redirect attempts.

mod common;
use common::*;
use serde_json::json;

struct Sso {
    px: Phigate,
    idp: Idp,
    _up: Upstream,
    _ca: TestCa,
    base: String,
}

/// phigate over TLS on `https://localhost:PORT` with a browser route `/__echo`.
fn sso(route_auth: &str) -> Sso {
    sso_with(route_auth, &[])
}

fn sso_with(route_auth: &str, idp_flags: &[&str]) -> Sso {
    let port = free_port();
    let idp = Idp::start_for_phigate_with(port, idp_flags);
    let up = Upstream::demo();
    let ca = TestCa::new();
    let (cert, key) = ca.issue("server", &["localhost", "127.0.0.1"]);
    let secret = ca.dir.path().join("client-secret");
    std::fs::write(&secret, "phigate-web-test-secret\n").unwrap();
    let body = format!(
        r#"{provider}
[browser]
identity_provider = "test"
client_id = "phigate-web"
client_secret = "file:{secret}"
redirect_uri = "https://localhost:{port}/.phigate/callback"
post_logout_redirect_uri = "https://localhost:{port}/"

[[routes]]
name = "app"
path_prefix = "/__echo"
upstream = "app"
auth = {{ kind = "browser", {route_auth} }}
{route_authz}

[upstreams.app]
origins = ["{origin}"]
[upstreams.app.health_check]
path = "/healthz"
{policies}"#,
        provider = idp.provider_config(""),
        route_authz = PAGE_ROUTE_AUTHZ,
        policies = page_policies(),
        secret = secret.display(),
        origin = up.origin(),
    );
    let px = Phigate::start_with(&tls_listener(port, &cert, &key, ""), port, &body);
    Sso {
        px,
        idp,
        _up: up,
        _ca: ca,
        base: format!("https://localhost:{port}"),
    }
}

/// A runtime and non-redirecting HTTP clients: one trusting phigate's test
/// CA, one for the IdP (for tests that script the flow without a browser).
struct Http {
    rt: tokio::runtime::Runtime,
    phigate: reqwest::Client,
    idp: reqwest::Client,
}

impl Sso {
    fn http(&self) -> Http {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self._ca.ca_pem).unwrap()).unwrap();
        let client = |ca: Option<reqwest::Certificate>| {
            let b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
            match ca {
                Some(ca) => b.add_root_certificate(ca),
                None => b,
            }
            .build()
            .unwrap()
        };
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            phigate: client(Some(ca)),
            idp: client(None),
        }
    }
}

/// Starts a sign-in at `/.phigate/login` and signs in at the IdP as alice
/// with MFA over plain HTTP; returns the callback URL the IdP sends back.
fn sign_in_over_http(s: &Sso, http: &Http) -> String {
    let r = http
        .rt
        .block_on(
            http.phigate
                .get(format!("{}/.phigate/login?rd=/__echo/x", s.base))
                .send(),
        )
        .unwrap();
    let authorize = r.headers()["location"].to_str().unwrap().to_string();
    let callback_base = format!("{}/.phigate/callback", s.base);
    http.rt.block_on(
        s.idp
            .follow_login(&http.idp, &authorize, &callback_base, "alice", true, 0),
    )
}

fn on_idp_login(step: &serde_json::Value, idp: &Idp) -> bool {
    step["url"].as_str().unwrap_or("").starts_with(&idp.issuer)
        && step["text"].as_str().unwrap_or("").contains("Sign in")
}

fn echoed_json(step: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(step["text"].as_str().unwrap_or("")).unwrap_or(json!(null))
}

fn echoed_header(step: &serde_json::Value, name: &str) -> Vec<String> {
    echoed_json(step)["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter(|h| h[0].as_str() == Some(name))
                .filter_map(|h| h[1].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn code_flow_lands_on_the_original_url_with_a_safe_cookie() {
    let s = sso("");
    let target = format!("{}/__echo/chart?id=7", s.base);
    let r = browser(json!([
        {"op": "goto", "url": target},
        {"op": "login", "user": "alice", "mfa": true},
        {"op": "cookies", "url": s.base},
        {"op": "goto", "url": format!("{}/.phigate/userinfo", s.base)},
    ]));
    assert!(
        on_idp_login(&r[0], &s.idp),
        "not sent to the IdP: {:?}",
        r[0]
    );
    assert_eq!(
        r[1]["url"], target,
        "did not land on the original URL: {:?}",
        r[1]
    );
    assert_eq!(
        echoed_header(&r[1], "x-phigate-user"),
        vec!["alice".to_string()]
    );
    // The app never sees phigate's session cookie.
    let cookies_seen = echoed_header(&r[1], "cookie").join(";");
    assert!(!cookies_seen.contains("__Host-phigate"), "{cookies_seen}");

    let cookies = r[2]["cookies"].as_array().unwrap();
    let c = cookies
        .iter()
        .find(|c| c["name"] == "__Host-phigate")
        .expect("session cookie");
    assert_eq!(c["secure"], true);
    assert_eq!(c["httpOnly"], true);
    assert_eq!(c["sameSite"], "Lax");
    assert_eq!(c["path"], "/");
    assert!(c
        .get("domain")
        .and_then(|d| d.as_str())
        .is_none_or(|d| d == "localhost"));

    let me: serde_json::Value = serde_json::from_str(r[3]["text"].as_str().unwrap()).unwrap();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["mfa"], true);
    // Exactly one: this test caused exactly one such event.
    let series = "phigate_auth_events_total{event=\"login_succeeded\",reason=\"code_flow\"}";
    let m = s.px.metrics_when(series, 1.0);
    assert_eq!(metric_value(&m, series), Some(1.0), "{m}");
}

#[test]
fn idle_timeout_forces_a_real_sign_in_again() {
    // Timestamps are whole seconds: keep gaps well clear of the limit.
    let s = sso("session_idle_timeout = \"3s\"");
    let target = format!("{}/__echo/x", s.base);
    let r = browser(json!([
        {"op": "goto", "url": target},
        {"op": "login", "user": "bob", "mfa": false},
        {"op": "sleep", "ms": 800},
        {"op": "goto", "url": target},
        {"op": "sleep", "ms": 5000},
        {"op": "goto", "url": target},
    ]));
    assert_eq!(r[1]["url"], target);
    assert_eq!(
        r[3]["url"], target,
        "activity within the idle window keeps the session"
    );
    // The IdP still has its own session, but automatic logoff demands a sign-in.
    assert!(
        on_idp_login(&r[5], &s.idp),
        "idle session was not logged off: {:?}",
        r[5]
    );
    // Exactly one: this test caused exactly one such event.
    let series = "phigate_auth_events_total{event=\"session_idle_expired\",reason=\"timeout\"}";
    let m = s.px.metrics_when(series, 1.0);
    assert_eq!(metric_value(&m, series), Some(1.0), "{m}");
}

#[test]
fn absolute_timeout_ends_even_an_active_session() {
    let s = sso("session_idle_timeout = \"1m\", session_absolute_timeout = \"4s\"");
    let target = format!("{}/__echo/x", s.base);
    let r = browser(json!([
        {"op": "goto", "url": target},
        {"op": "login", "user": "bob", "mfa": false},
        {"op": "sleep", "ms": 800},
        {"op": "goto", "url": target},
        {"op": "sleep", "ms": 5000},
        {"op": "goto", "url": target},
    ]));
    assert_eq!(r[3]["url"], target);
    assert!(
        on_idp_login(&r[5], &s.idp),
        "absolute timeout not enforced: {:?}",
        r[5]
    );
}

#[test]
fn logout_ends_both_sessions() {
    let s = sso("");
    let target = format!("{}/__echo/x", s.base);
    let r = browser(json!([
        {"op": "goto", "url": target},
        {"op": "login", "user": "alice", "mfa": true},
        {"op": "goto", "url": format!("{}/.phigate/logout", s.base)},
        {"op": "click", "selector": "#logout-submit"},
        {"op": "cookies", "url": s.base},
        {"op": "goto", "url": target},
    ]));
    assert_eq!(r[1]["url"], target);
    assert!(
        r[2]["text"].as_str().unwrap_or("").contains("Sign out"),
        "GET shows the sign-out form: {:?}",
        r[2]
    );
    assert!(
        r[3]["url"].as_str().unwrap().starts_with(&s.base),
        "not back from the IdP: {:?}",
        r[3]
    );
    assert!(!r[4]["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "__Host-phigate"));
    assert!(
        on_idp_login(&r[5], &s.idp),
        "still signed in after logout: {:?}",
        r[5]
    );
}

#[test]
fn step_up_sends_the_browser_back_for_mfa() {
    let s = sso("require_mfa = true");
    let target = format!("{}/__echo/records", s.base);
    let r = browser(json!([
        {"op": "goto", "url": target},
        {"op": "login", "user": "bob", "mfa": false},
        {"op": "login", "user": "bob", "mfa": true},
    ]));
    assert!(
        on_idp_login(&r[1], &s.idp),
        "a password-only login was let through: {:?}",
        r[1]
    );
    assert_eq!(r[2]["url"], target);
    assert_eq!(
        echoed_header(&r[2], "x-phigate-user"),
        vec!["bob".to_string()]
    );
}

#[test]
fn open_redirects_are_refused() {
    let s = sso("");
    for rd in [
        "https://evil.example/",
        "//evil.example/",
        "/%2F%2Fevil.example",
        "/\\evil.example",
    ] {
        let r = browser(json!([
            {"op": "goto", "url": format!("{}/.phigate/login?rd={}", s.base, phigate::authn::browser::urlencode(rd))},
            {"op": "login", "user": "alice", "mfa": true},
        ]));
        let landed = r[1]["url"].as_str().unwrap_or("");
        assert!(landed.starts_with(&s.base), "rd={rd} led to {landed}");
        assert!(!landed.contains("evil"), "rd={rd} led to {landed}");
    }
}

#[test]
fn tampered_cookies_and_bad_callbacks_are_refused() {
    let s = sso("");
    let target = format!("{}/__echo/x", s.base);
    let r = browser(json!([
        {"op": "goto", "url": target},
        {"op": "login", "user": "alice", "mfa": true},
        {"op": "cookies", "url": s.base},
    ]));
    let cookie = r[2]["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-phigate")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    let Http {
        rt,
        phigate: client,
        ..
    } = s.http();
    let status = |path: &str, cookie: Option<&str>| {
        let mut req = client
            .get(format!("{}{path}", s.base))
            .header("Accept", "application/json");
        if let Some(c) = cookie {
            req = req.header("Cookie", format!("__Host-phigate={c}"));
        }
        rt.block_on(req.send()).unwrap().status().as_u16()
    };
    assert_eq!(
        status("/__echo/x", Some(&cookie)),
        200,
        "the real cookie works outside the browser too"
    );
    let mut flipped = cookie.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        status("/__echo/x", Some(std::str::from_utf8(&flipped).unwrap())),
        401
    );
    assert_eq!(status("/__echo/x", Some("garbage")), 401);
    assert_eq!(status("/__echo/x", None), 401);
    // Callbacks without, with unknown, or with replayed state.
    assert_eq!(status("/.phigate/callback?code=abc", None), 400);
    assert_eq!(
        status("/.phigate/callback?code=abc&state=forged", None),
        400
    );
    // Exactly the two callbacks above failed on their state.
    let m = s.px.metrics();
    assert_eq!(
        metric_value(
            &m,
            "phigate_auth_events_total{event=\"login_failed\",reason=\"bad_state\"}"
        ),
        Some(2.0),
        "{m}"
    );
}

#[test]
fn an_id_token_with_another_nonce_is_refused() {
    // The IdP re-signs its ID tokens, with its own key, carrying a foreign nonce.
    let s = sso_with("", &["--tamper-nonce"]);
    let http = s.http();
    let callback = sign_in_over_http(&s, &http);
    let Http { rt, phigate, .. } = http;
    let r = rt.block_on(phigate.get(&callback).send()).unwrap();
    assert_eq!(
        r.status(),
        400,
        "an ID token with a foreign nonce was accepted"
    );
    assert!(r.headers().get("set-cookie").is_none());
    // Exactly one: this test caused exactly one such event.
    let series = "phigate_auth_events_total{event=\"login_failed\",reason=\"id_token_invalid\"}";
    let m = s.px.metrics_when(series, 1.0);
    assert_eq!(metric_value(&m, series), Some(1.0), "{m}");
}

#[test]
fn replayed_callbacks_and_injected_codes_are_refused() {
    let s = sso("");
    let Http {
        rt,
        phigate,
        idp: idp_client,
    } = s.http();
    let start = |rd: &str| {
        let r = rt
            .block_on(
                phigate
                    .get(format!("{}/.phigate/login?rd={rd}", s.base))
                    .send(),
            )
            .unwrap();
        assert_eq!(r.status(), 302);
        r.headers()["location"].to_str().unwrap().to_string()
    };
    let callback_base = format!("{}/.phigate/callback", s.base);
    let state_of = |url: &str| {
        url.split("state=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string()
    };
    // Two logins started; only the second is completed at the IdP.
    let first = start("/__echo/a");
    let second = start("/__echo/b");
    let callback =
        rt.block_on(
            s.idp
                .follow_login(&idp_client, &second, &callback_base, "alice", true, 0),
        );
    assert_eq!(state_of(&callback), state_of(&second));

    // Code injection: the second login's code delivered with the first's state.
    let injected = callback.replace(&state_of(&second), &state_of(&first));
    let r = rt.block_on(phigate.get(&injected).send()).unwrap();
    assert_eq!(r.status(), 400, "a code from another login was accepted");

    // The genuine callback works once...
    let callback2 = {
        let third = start("/__echo/c");
        rt.block_on(
            s.idp
                .follow_login(&idp_client, &third, &callback_base, "alice", true, 0),
        )
    };
    let r = rt.block_on(phigate.get(&callback2).send()).unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/__echo/c");
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("__Host-phigate="));
    // ...and a replay of it is refused.
    let r = rt.block_on(phigate.get(&callback2).send()).unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn logout_cannot_be_triggered_cross_site() {
    let s = sso("");
    let http = s.http();
    let callback = sign_in_over_http(&s, &http);
    let Http { rt, phigate, .. } = http;
    let r = rt.block_on(phigate.get(&callback).send()).unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let userinfo = || {
        rt.block_on(
            phigate
                .get(format!("{}/.phigate/userinfo", s.base))
                .header("Cookie", &cookie)
                .send(),
        )
        .unwrap()
        .status()
    };
    assert_eq!(userinfo(), 200);
    // Identity is never cached by a shared cache (or the browser's).
    let r = rt
        .block_on(
            phigate
                .get(format!("{}/.phigate/userinfo", s.base))
                .header("Cookie", &cookie)
                .send(),
        )
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let logout = |headers: &[(&str, String)], post: bool| {
        let url = format!("{}/.phigate/logout", s.base);
        let mut req = if post {
            phigate.post(&url)
        } else {
            phigate.get(&url)
        };
        req = req.header("Cookie", &cookie);
        for (n, v) in headers {
            req = req.header(*n, v);
        }
        rt.block_on(req.send()).unwrap()
    };
    // A link or image on another site: a page, nothing changes.
    let r = logout(&[("Sec-Fetch-Site", "cross-site".into())], false);
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(userinfo(), 200, "a GET signed the user out");
    // A form on another site: refused.
    let r = logout(&[("Sec-Fetch-Site", "cross-site".into())], true);
    assert_eq!(r.status(), 403);
    let r = logout(&[("Origin", "https://evil.example".into())], true);
    assert_eq!(r.status(), 403);
    assert_eq!(userinfo(), 200, "a cross-site POST signed the user out");
    // The same-origin form signs out.
    let r = logout(&[("Sec-Fetch-Site", "same-origin".into())], true);
    assert_eq!(r.status(), 302);
    assert_eq!(userinfo(), 401);
}

#[test]
fn anonymous_sign_in_floods_are_rate_limited_per_client() {
    let s = sso("");
    let Http { rt, phigate, .. } = s.http();
    let start = || {
        rt.block_on(
            phigate
                .get(format!("{}/.phigate/login?rd=/__echo/x", s.base))
                .send(),
        )
        .unwrap()
    };
    // A burst of 20 starts is allowed; the next is refused with a wait.
    for i in 0..20 {
        assert_eq!(start().status(), 302, "start {i}");
    }
    let r = start();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // A browser route sends the same client to sign-in no more often.
    let r = rt
        .block_on(
            phigate
                .get(format!("{}/__echo/x", s.base))
                .header("Accept", "text/html")
                .send(),
        )
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[test]
fn browser_routes_send_hsts_by_default() {
    // Even a refusal: the browser learns HTTPS-only before it signs in.
    let s = sso("");
    let Http { rt, phigate, .. } = s.http();
    let r = rt
        .block_on(
            phigate
                .get(format!("{}/__echo/x", s.base))
                .header("Accept", "application/json")
                .send(),
        )
        .unwrap();
    assert_eq!(r.status(), 401);
    let hsts: Vec<_> = r
        .headers()
        .get_all("strict-transport-security")
        .iter()
        .collect();
    assert_eq!(hsts, ["max-age=31536000"]);
}
