//! Authentication against a real OpenID provider (oidc-provider on Node):
//! bearer tokens from a real code flow, forged and broken tokens, key
//! rotation, IdP outages, step-up, API keys, and identity to upstreams.

mod common;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::Duration;

/// phigate with the IdP and a protected `/__echo` route in front of the demo upstream.
fn protected(idp: &Idp, upstream: &Upstream, auth: &str, extra: &str) -> Phigate {
    Phigate::start(&format!(
        r#"{}
{extra}
[[routes]]
name = "echo"
path_prefix = "/__echo"
upstream = "echo"
auth = {{ {auth} }}
{}

[upstreams.echo]
origins = ["{}"]
[upstreams.echo.health_check]
path = "/healthz"
{}"#,
        idp.provider_config(""),
        PAGE_ROUTE_AUTHZ,
        upstream.origin(),
        page_policies(),
    ))
}

fn get_with(px: &Phigate, path: &str, headers: &str) -> Response {
    px.raw(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Signs `claims` with one of the IdP's own keys (edge cases a login cannot produce).
fn idp_signed(idp: &Idp, claims: serde_json::Value) -> String {
    let (kid, _, pem) = idp
        .signing_keys()
        .into_iter()
        .find(|(_, alg, _)| alg == "RS256")
        .unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid);
    jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims(idp: &Idp) -> serde_json::Value {
    json!({"iss": idp.issuer, "aud": "phigate", "sub": "alice", "iat": now(), "exp": now() + 300})
}

#[test]
fn real_token_passes_and_identity_reaches_the_upstream() {
    let idp = Idp::start();
    let up = Upstream::demo();
    let px = protected(&idp, &up, "", "");
    let token = idp.token("alice", true, 0);
    let r = get_with(
        &px,
        "/__echo/x",
        &format!(
            "{}X-Phigate-User: mallory\r\nX-Remote-User: mallory\r\n",
            bearer(&token)
        ),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body, px.logs());
    assert_eq!(r.echoed("x-phigate-user"), vec!["alice".to_string()]);
    assert_eq!(
        r.echoed("x-phigate-roles"),
        vec!["care_manager".to_string()]
    );
    assert_eq!(
        r.echoed("x-phigate-email"),
        vec!["alice@hospital.test".to_string()]
    );
    assert!(r.echoed("x-remote-user").is_empty());
    assert!(
        r.echoed("authorization").is_empty(),
        "the token must not reach the app"
    );

    // The assertion verifies against phigate's published keys.
    let assertion = r.echoed("x-phigate-assertion").pop().expect("assertion");
    let jwks = px.get("/.phigate/jwks.json");
    assert_eq!(jwks.status, 200);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks.body).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
    v.set_audience(&["echo"]);
    v.set_issuer(&["phigate"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &v).unwrap();
    assert_eq!(data.claims["sub"], "alice");
    assert_eq!(data.claims["idp"], idp.issuer);
    assert_eq!(data.claims["mfa"], true);
    // Other reserved paths are never forwarded.
    assert_eq!(px.get("/.phigate/anything").status, 404);
}

#[test]
fn missing_and_unusable_credentials_get_401_challenges() {
    let idp = Idp::start();
    let up = Upstream::demo();
    let px = protected(&idp, &up, "", "");
    let r = px.get("/__echo/x");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"phigate\"")
    );
    assert_eq!(r.json()["error"], "unauthorized");
    for h in [
        "Authorization: Basic YTpi\r\n",
        "Authorization: Bearer\r\n",
        "Authorization: Bearer not.a.jwt\r\n",
    ] {
        let r = get_with(&px, "/__echo/x", h);
        assert_eq!(r.status, 401, "{h}");
        assert!(!r.body.contains("\"headers\""), "forwarded: {h}");
    }
    let r = get_with(&px, "/__echo/x", "Authorization: Bearer not.a.jwt\r\n");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
}

#[test]
fn forged_and_broken_tokens_are_refused_with_reasons() {
    let idp = Idp::start();
    let up = Upstream::demo();
    let px = protected(&idp, &up, "", "");
    let good = idp.token("alice", true, 0);
    assert_eq!(get_with(&px, "/__echo/x", &bearer(&good)).status, 200);

    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let parts: Vec<&str> = good.split('.').collect();
    let payload: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();

    // alg: none
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    // HS256 "signed" with the IdP's RSA public key as the HMAC secret.
    let jwks = http_get(format!("127.0.0.1:{}", idp.port).parse().unwrap(), "/jwks")
        .unwrap()
        .body;
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &payload,
        &EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    let mut hs_kid = Header::new(Algorithm::HS256);
    hs_kid.kid = jsonwebtoken::decode_header(&good).unwrap().kid;
    let hs_with_kid = jsonwebtoken::encode(
        &hs_kid,
        &payload,
        &EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    // Tampered payload, original signature.
    let mut evil = payload.clone();
    evil["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&evil), parts[2]);
    // Valid signatures from the IdP's own key, bad claims.
    let mut c = claims(&idp);
    c["exp"] = json!(now() - 3600);
    let expired = idp_signed(&idp, c);
    let mut c = claims(&idp);
    c["nbf"] = json!(now() + 3600);
    let not_yet = idp_signed(&idp, c);
    let mut c = claims(&idp);
    c["iat"] = json!(now() + 3600);
    let future_iat = idp_signed(&idp, c);
    let mut c = claims(&idp);
    c["aud"] = json!("another-app");
    let wrong_aud = idp_signed(&idp, c);
    let mut c = claims(&idp);
    c["iss"] = json!("https://evil.example");
    let wrong_iss = idp_signed(&idp, c);
    // A token that embeds its own key and points jku at the attacker.
    let own = rcgen::KeyPair::generate().unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("attacker".into());
    h.jku = Some("https://evil.example/jwks".into());
    let self_signed = jsonwebtoken::encode(
        &h,
        &claims(&idp),
        &EncodingKey::from_ec_der(&own.serialize_der()),
    )
    .unwrap();

    for (name, token, reason) in [
        ("alg none", none.as_str(), "malformed"),
        (
            "HS256 with public key",
            hs.as_str(),
            "algorithm_not_allowed",
        ),
        (
            "HS256 with public key and kid",
            hs_with_kid.as_str(),
            "algorithm_not_allowed",
        ),
        ("tampered payload", tampered.as_str(), "bad_signature"),
        ("expired", expired.as_str(), "expired"),
        ("not yet valid", not_yet.as_str(), "not_yet_valid"),
        (
            "issued in the future",
            future_iat.as_str(),
            "issued_in_future",
        ),
        ("wrong audience", wrong_aud.as_str(), "wrong_audience"),
        ("wrong issuer", wrong_iss.as_str(), "unknown_issuer"),
        (
            "unknown key with jku",
            self_signed.as_str(),
            "key_not_found",
        ),
    ] {
        let series =
            format!("phigate_auth_events_total{{event=\"token_rejected\",reason=\"{reason}\"}}");
        let before = metric_value(&px.metrics(), &series).unwrap_or(0.0);
        let r = get_with(&px, "/__echo/x", &bearer(token));
        assert_eq!(r.status, 401, "{name} was accepted");
        let m = px.metrics();
        assert_eq!(
            metric_value(&m, &series).unwrap_or(0.0),
            before + 1.0,
            "{name}: this rejection was not counted as {series}\n{m}"
        );
    }
    // Nothing about the token reaches the log.
    assert!(!px.logs().contains(&good[..40]));
}

#[test]
fn unknown_kid_flood_does_not_hammer_the_idp() {
    let idp = Idp::start();
    let up = Upstream::demo();
    let px = protected(&idp, &up, "", "");
    let good = idp.token("bob", false, 0);
    assert_eq!(get_with(&px, "/__echo/x", &bearer(&good)).status, 200);
    let before = idp.jwks_requests();
    let own = rcgen::KeyPair::generate().unwrap();
    let key = EncodingKey::from_ec_der(&own.serialize_der());
    for i in 0..60 {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(format!("forged-{i}"));
        let t = jsonwebtoken::encode(&h, &claims(&idp), &key).unwrap();
        assert_eq!(get_with(&px, "/__echo/x", &bearer(&t)).status, 401);
    }
    let fetched = idp.jwks_requests() - before;
    assert!(
        fetched <= 1,
        "60 unknown kids caused {fetched} JWKS fetches"
    );
}

#[test]
fn key_rotation_and_idp_outage() {
    let mut idp = Idp::start();
    let up = Upstream::demo();
    // A short refresh interval so rotation is picked up within the test.
    let px = Phigate::start(&format!(
        "{}\n[[routes]]\nname = \"echo\"\npath_prefix = \"/__echo\"\nupstream = \"echo\"\n{}\n\n[upstreams.echo]\norigins = [\"{}\"]\n[upstreams.echo.health_check]\npath = \"/healthz\"\n{}",
        idp.provider_config("jwks_min_refresh_interval = \"1s\"\njwks_cache_ttl = \"1h\"\n"),
        PAGE_ROUTE_AUTHZ,
        up.origin(),
        page_policies()
    ));
    let old = idp.token("alice", false, 0);
    // Minted now, first shown after the outage: it is not in phigate's
    // verified-token cache, so only the cached keys can verify it.
    let unseen = idp.token("bob", false, 0);
    assert_eq!(get_with(&px, "/__echo/x", &bearer(&old)).status, 200);

    // The IdP goes down: cached keys keep verifying.
    idp.stop();
    assert_eq!(
        get_with(&px, "/__echo/x", &bearer(&unseen)).status,
        200,
        "cached keys should serve while the IdP is down"
    );

    // It comes back with new keys: new tokens pass without restarting phigate.
    idp.rotate_keys();
    std::thread::sleep(Duration::from_millis(1100));
    let new = idp.token("alice", false, 0);
    assert_eq!(
        get_with(&px, "/__echo/x", &bearer(&new)).status,
        200,
        "{}",
        px.logs()
    );
}

#[test]
fn step_up_for_mfa_and_max_age() {
    let idp = Idp::start();
    let up = Upstream::demo();
    let px = protected(&idp, &up, "require_mfa = true, max_auth_age = \"10m\"", "");
    let weak = idp.token("bob", false, 0);
    let r = get_with(&px, "/__echo/x", &bearer(&weak));
    assert_eq!(r.status, 401);
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.contains("error=\"insufficient_user_authentication\""),
        "{www}"
    );
    assert!(www.contains("acr_values=\"urn:phigate:mfa\""), "{www}");
    assert!(www.contains("max_age=600"), "{www}");

    let stale = idp.token("bob", true, 3600);
    let www = get_with(&px, "/__echo/x", &bearer(&stale))
        .header("www-authenticate")
        .unwrap()
        .to_string();
    assert!(www.contains("recent authentication"), "{www}");

    let strong = idp.token("bob", true, 0);
    assert_eq!(get_with(&px, "/__echo/x", &bearer(&strong)).status, 200);
    // One weak token asked once: one MFA step-up (the stale one is a
    // max-age step-up).
    let m = px.metrics();
    assert_eq!(
        metric_value(
            &m,
            "phigate_auth_events_total{event=\"step_up_required\",reason=\"mfa_required\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

#[test]
fn api_keys_identify_services() {
    let (key, entry) = keygen_api_key("rpm-gateway", "device_gateway");
    let entry = entry.as_str();
    assert!(
        !entry.contains(&key[15..]),
        "the config entry must not contain the secret"
    );

    let idp = Idp::start();
    let up = Upstream::demo();
    let px = protected(&idp, &up, "accept = [\"bearer\", \"api_key\"]", entry);
    let r = get_with(
        &px,
        "/__echo/obs",
        &format!("Authorization: ApiKey {key}\r\n"),
    );
    assert_eq!(r.status, 200, "{}", px.logs());
    assert_eq!(r.echoed("x-phigate-user"), vec!["rpm-gateway".to_string()]);
    assert_eq!(
        r.echoed("x-phigate-roles"),
        vec!["device_gateway".to_string()]
    );
    let mut wrong = key.clone();
    wrong.replace_range(key.len() - 4.., "AAAA");
    let r = get_with(
        &px,
        "/__echo/obs",
        &format!("Authorization: ApiKey {wrong}\r\n"),
    );
    assert_eq!(r.status, 401);
    // A bearer-only route does not take API keys.
    let px2 = protected(&idp, &up, "", entry);
    assert_eq!(
        get_with(
            &px2,
            "/__echo/obs",
            &format!("Authorization: ApiKey {key}\r\n")
        )
        .status,
        401
    );
}

#[test]
fn public_paths_and_public_routes_need_no_credentials() {
    let idp = Idp::start();
    let up = Upstream::demo();
    let px = protected(
        &idp,
        &up,
        "public_paths = [\"/__echo/open\", \"/__echo/assets/*\"]",
        "",
    );
    // Exact paths are exact: nothing below them is public.
    assert_eq!(px.get("/__echo/open").status, 200);
    assert_eq!(px.get("/__echo/open/x").status, 401);
    assert_eq!(px.get("/__echo/openx").status, 401);
    assert_eq!(px.get("/__echo/x").status, 401);
    // `/*` is the explicit way to open a subtree.
    assert_eq!(px.get("/__echo/assets/app.js").status, 200);
    assert_eq!(px.get("/__echo/assets").status, 401);
}

#[test]
fn readiness_reports_each_issuers_keys() {
    let idp = Idp::start();
    let up = Upstream::demo();
    let px = protected(&idp, &up, "", "");
    // Ready only once the keys are fetched; the report names the issuer.
    let r = http_get(px.admin, "/readyz").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let idps = v["identity_providers"]
        .as_object()
        .expect("identity_providers");
    assert!(!idps.is_empty(), "{v}");
    assert!(idps.values().all(|i| i["keys"] == true), "{v}");
}
