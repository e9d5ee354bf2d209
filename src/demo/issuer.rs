//! A development token issuer: discovery, JWKS and, for `phigate
//! dev-issuer`, a token endpoint that signs whatever claims it is given.
//!
//! It exists so a team can try its own `phigate.toml` before its real IdP
//! is wired in, and so `phigate demo` shows real verification. It never
//! authenticates anyone, so it binds only loopback addresses and answers
//! only requests whose `Host` is a loopback name (a page on another site
//! cannot reach it by DNS rebinding). Development only: a config that
//! trusts it trusts anyone on the host.

use crate::authn::assertion::SigningKey;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// A synthetic user or service of the demo.
pub struct Persona {
    /// Shell-friendly name, e.g. `CARE_MANAGER`.
    pub var: &'static str,
    pub description: &'static str,
    pub sub: &'static str,
    pub claims: serde_json::Value,
}

/// The demo's people: roles and MFA as a CCM program would have them.
pub fn personas() -> Vec<Persona> {
    vec![
        Persona {
            var: "CARE_MANAGER",
            description: "care manager (nurse), MFA",
            sub: "alice",
            claims: json!({"name": "Alice Carter (synthetic)", "email": "alice@demo.invalid",
                "roles": ["care_manager", "nurse"], "org": "org-0001", "npi": "1000000001",
                "care_teams": ["team-01"], "fhirUser": "Practitioner/prac-0002", "amr": ["pwd", "otp"]}),
        },
        Persona {
            var: "PHYSICIAN",
            description: "physician, MFA",
            sub: "bob",
            claims: json!({"name": "Bob Nguyen (synthetic)", "email": "bob@demo.invalid",
                "roles": ["physician"], "org": "org-0001", "npi": "1000000002",
                "care_teams": ["team-01"], "fhirUser": "Practitioner/prac-0003", "amr": ["pwd", "hwk"]}),
        },
        Persona {
            var: "BILLING",
            description: "billing specialist",
            sub: "carol",
            claims: json!({"name": "Carol Diaz (synthetic)", "email": "carol@demo.invalid",
                "roles": ["billing"], "org": "org-0001", "amr": ["pwd"]}),
        },
        Persona {
            var: "SUPPORT",
            description: "vendor support engineer, no MFA",
            sub: "sam",
            claims: json!({"name": "Sam Okafor (synthetic)", "email": "sam@vendor.invalid",
                "roles": ["support_engineer"], "org": "org-vendor", "amr": ["pwd"]}),
        },
        Persona {
            var: "RESEARCHER",
            description: "researcher (de-identified data), MFA",
            sub: "rita",
            claims: json!({"name": "Rita Okonkwo (synthetic)", "email": "rita@demo.invalid",
                "roles": ["researcher"], "org": "org-0001", "amr": ["pwd", "otp"]}),
        },
        Persona {
            var: "PATIENT",
            description: "patient pat-0001 (SMART patient context)",
            sub: "pat-0001",
            claims: json!({"name": "Pat Synthetic", "roles": ["patient"], "patient": "pat-0001",
                "fhirUser": "Patient/pat-0001", "scope": "openid patient/*.read", "amr": ["pwd", "otp"]}),
        },
    ]
}

/// The audience tokens carry unless the claims say otherwise.
pub const DEFAULT_AUDIENCE: &str = "phigate";
/// Longest lifetime the token endpoint signs.
pub const MAX_TTL_SECS: u64 = 24 * 3600;
/// Largest claims document the token endpoint reads.
const MAX_CLAIMS: usize = 64 * 1024;

/// A running development issuer.
pub struct DemoIssuer {
    pub issuer: String,
    key: SigningKey,
    /// Whether `POST /token` signs claims (`phigate dev-issuer`), or only
    /// discovery and keys are served (`phigate demo`).
    mint: bool,
}

/// Why the issuer would not start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{0} is not a loopback address: the development issuer signs tokens for anyone who asks, so it listens on 127.0.0.1 or ::1 only")]
    NotLoopback(SocketAddr),
    #[error("{path}: {reason}")]
    Key { path: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl DemoIssuer {
    /// `phigate demo`'s issuer: `127.0.0.1:0`, a fresh key, discovery and
    /// JWKS on a background thread, no token endpoint.
    pub fn start() -> anyhow::Result<Arc<DemoIssuer>> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let me = Arc::new(DemoIssuer {
            issuer,
            key: SigningKey::generate()?,
            mint: false,
        });
        let served = me.clone();
        std::thread::Builder::new()
            .name("demo-issuer".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    if let Ok(listener) =
                        rt.block_on(async { tokio::net::TcpListener::from_std(listener) })
                    {
                        rt.block_on(served.serve(listener));
                    }
                }
            })?;
        Ok(me)
    }

    /// `phigate dev-issuer`'s issuer on `addr` (loopback only), signing
    /// with `key`: discovery, JWKS and `POST /token`.
    pub async fn bind(
        addr: SocketAddr,
        key: SigningKey,
    ) -> Result<(Arc<DemoIssuer>, tokio::net::TcpListener), IssuerError> {
        if !addr.ip().is_loopback() {
            return Err(IssuerError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let host = match bound {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        Ok((
            Arc::new(DemoIssuer {
                issuer: format!("http://{host}"),
                key,
                mint: true,
            }),
            listener,
        ))
    }

    /// Serves until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let discovery = Bytes::from(
            json!({
                "issuer": self.issuer,
                "jwks_uri": format!("{}/jwks", self.issuer),
                "authorization_endpoint": format!("{}/authorize-unavailable", self.issuer),
                "token_endpoint": format!("{}/token", self.issuer),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            })
            .to_string(),
        );
        let jwks = Bytes::from(self.key.jwks.to_string());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let (me, discovery, jwks) = (self.clone(), discovery.clone(), jwks.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (me, discovery, jwks) = (me.clone(), discovery.clone(), jwks.clone());
                        async move { Ok::<_, Infallible>(me.answer(req, discovery, jwks).await) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        discovery: Bytes,
        jwks: Bytes,
    ) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, body: Bytes| {
            let mut resp = Response::new(Full::new(body));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            resp
        };
        let error = |status: StatusCode, m: &str| {
            reply(status, Bytes::from(json!({ "error": m }).to_string()))
        };
        if !loopback_host(&req) {
            return error(
                StatusCode::MISDIRECTED_REQUEST,
                "the Host is not a loopback name",
            );
        }
        match (req.method().as_str(), req.uri().path()) {
            ("GET", "/.well-known/openid-configuration") => reply(StatusCode::OK, discovery),
            ("GET", "/jwks") => reply(StatusCode::OK, jwks),
            ("POST", "/token") if self.mint => {
                let bare = param(req.uri().query(), "format") == Some("jwt");
                let ttl = match ttl_of(req.uri().query()) {
                    Ok(t) => t,
                    Err(m) => return error(StatusCode::BAD_REQUEST, &m),
                };
                let body = match Limited::new(req.into_body(), MAX_CLAIMS).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "claims are limited to 64 KiB",
                        )
                    }
                };
                let claims = match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(c) => c,
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("the body is not JSON: {e}"),
                        )
                    }
                };
                match self.mint(&claims, ttl) {
                    // `?format=jwt`: the token alone, for `TOKEN=$(curl …)`.
                    Ok(token) if bare => {
                        let mut resp = reply(StatusCode::OK, Bytes::from(format!("{token}\n")));
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("text/plain"),
                        );
                        resp
                    }
                    Ok(token) => reply(
                        StatusCode::OK,
                        Bytes::from(
                            json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl})
                                .to_string(),
                        ),
                    ),
                    Err(m) => error(StatusCode::BAD_REQUEST, &m),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Signs `claims` (an object with a string `sub`) as an access token
    /// valid for `ttl_secs`. `iss`, `aud` (`phigate`), `iat`, `exp` and
    /// `auth_time` are filled in unless the claims give them, so a test can
    /// also mint a wrong audience or an old sign-in.
    pub fn mint(&self, claims: &serde_json::Value, ttl_secs: u64) -> Result<String, String> {
        let given = claims.as_object().ok_or(
            "the claims must be a JSON object, e.g. {\"sub\":\"alice\",\"roles\":[\"nurse\"]}",
        )?;
        let subject = given.get("sub").and_then(|s| s.as_str()).unwrap_or("");
        if subject.is_empty() {
            return Err("the claims need a `sub` (the user's id)".into());
        }
        let now = jsonwebtoken::get_current_timestamp();
        let mut all = json!({
            "iss": self.issuer, "aud": DEFAULT_AUDIENCE,
            "iat": now, "exp": now + ttl_secs, "auth_time": now,
        });
        if let Some(c) = all.as_object_mut() {
            for (k, v) in given {
                c.insert(k.clone(), v.clone());
            }
        }
        // A development token never outlives a day, whatever `exp` it asks.
        match all.get("exp").map(|e| e.as_u64()) {
            Some(Some(exp)) if exp <= now + MAX_TTL_SECS => {}
            _ => {
                return Err(format!(
                    "`exp` must be a time within {MAX_TTL_SECS} seconds from now"
                ))
            }
        }
        self.key
            .sign("at+jwt", &all)
            .ok_or_else(|| "the token could not be signed".to_string())
    }

    /// An access token for `persona`, valid for `ttl_secs`.
    pub fn token(&self, persona: &Persona, ttl_secs: u64) -> Option<String> {
        let mut claims = persona.claims.clone();
        if let Some(c) = claims.as_object_mut() {
            c.insert("sub".into(), json!(persona.sub));
        }
        self.mint(&claims, ttl_secs).ok()
    }
}

/// The value of a query parameter (the token endpoint's are plain ASCII).
fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// `?ttl=SECONDS` (default one hour, at most a day).
fn ttl_of(query: Option<&str>) -> Result<u64, String> {
    match param(query, "ttl").map(str::parse::<u64>) {
        None => Ok(3600),
        Some(Ok(t)) if (1..=MAX_TTL_SECS).contains(&t) => Ok(t),
        Some(_) => Err(format!(
            "ttl is a number of seconds from 1 to {MAX_TTL_SECS}"
        )),
    }
}

/// Whether the request's `Host`, read as the proxy reads it, names this
/// machine's loopback.
fn loopback_host<B>(req: &hyper::Request<B>) -> bool {
    let raw = req.headers().get(hyper::header::HOST).map(|h| h.as_bytes());
    match crate::proxy::request_host(raw) {
        Ok(Some(name)) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// The issuer's signing key from `path`: read if it exists, else created
/// (owner-only), so tokens minted before a restart still verify.
pub fn load_or_create_key(path: &Path) -> Result<SigningKey, IssuerError> {
    let bad = |reason: String| IssuerError::Key {
        path: path.display().to_string(),
        reason,
    };
    let pair = match std::fs::read_to_string(path) {
        Ok(pem) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| bad(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "readable by others (mode {:o}): chmod 600 it",
                    mode & 0o777
                )));
            }
            rcgen::KeyPair::from_pem(&pem).map_err(|e| bad(e.to_string()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = rcgen::KeyPair::generate().map_err(|e| bad(e.to_string()))?;
            crate::server::tls::write_private(path, pair.serialize_pem().as_bytes())
                .map_err(|e| bad(e.to_string()))?;
            pair
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    SigningKey::from_key_pair(&pair).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_endpoint_needs_a_subject_and_a_sane_lifetime() {
        assert_eq!(ttl_of(None), Ok(3600));
        assert_eq!(ttl_of(Some("ttl=60")), Ok(60));
        assert!(ttl_of(Some("ttl=0")).is_err());
        assert!(ttl_of(Some("ttl=99999999")).is_err());
        assert_eq!(ttl_of(Some("format=jwt&ttl=60")), Ok(60));
        assert_eq!(param(Some("ttlx=1&format=jwt"), "format"), Some("jwt"));
        assert_eq!(param(Some("ttlx=1"), "ttl"), None);
        let issuer = DemoIssuer {
            issuer: "http://127.0.0.1:1".into(),
            key: SigningKey::generate().unwrap(),
            mint: true,
        };
        assert!(issuer.mint(&json!({"roles": ["nurse"]}), 60).is_err());
        assert!(issuer.mint(&json!([1]), 60).is_err());
        let token = issuer
            .mint(
                &json!({"sub": "alice", "aud": "other", "acr": "urn:mfa"}),
                60,
            )
            .unwrap();
        let payload = token.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["aud"], "other");
        assert_eq!(claims["acr"], "urn:mfa");
        assert_eq!(claims["iss"], "http://127.0.0.1:1");
        // Never a token for longer than a day, even when asked.
        assert!(issuer
            .mint(&json!({"sub": "a", "exp": 9_999_999_999u64}), 60)
            .is_err());
    }

    #[test]
    fn only_loopback_hosts_are_answered() {
        let req = |host: &str| {
            hyper::Request::builder()
                .header("host", host)
                .body(())
                .unwrap()
        };
        assert!(loopback_host(&req("127.0.0.1:8400")));
        assert!(loopback_host(&req("localhost:8400")));
        assert!(loopback_host(&req("[::1]:8400")));
        assert!(!loopback_host(&req("evil.example:8400")));
        assert!(!loopback_host(&req("10.0.0.1")));
        assert!(!loopback_host(&req("[::1]junk")));
        assert!(!loopback_host(&req("localhost.evil.example")));
    }

    #[tokio::test]
    async fn a_non_loopback_address_is_refused() {
        let e = DemoIssuer::bind(
            "0.0.0.0:0".parse().unwrap(),
            SigningKey::generate().unwrap(),
        )
        .await
        .err()
        .unwrap();
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
