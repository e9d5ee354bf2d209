//! The demo's identity provider: a random signing key per run, discovery
//! and JWKS on loopback, and access tokens for the demo personas.
//!
//! It exists only inside `phigate demo` — `phigate serve` has no way to
//! start it — and it never authenticates anyone: it mints tokens for
//! synthetic personas so the demo shows real verification.

use crate::authn::assertion::SigningKey;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
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

/// The running demo issuer.
pub struct DemoIssuer {
    pub issuer: String,
    key: SigningKey,
}

impl DemoIssuer {
    /// Binds `127.0.0.1:0` and serves discovery and JWKS on a background thread.
    pub fn start() -> anyhow::Result<Arc<DemoIssuer>> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let me = Arc::new(DemoIssuer {
            issuer,
            key: SigningKey::generate()?,
        });
        let served = me.clone();
        std::thread::Builder::new()
            .name("demo-issuer".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(served.serve(listener));
                }
            })?;
        Ok(me)
    }

    async fn serve(self: Arc<Self>, listener: std::net::TcpListener) {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let discovery = Bytes::from(
            json!({
                "issuer": self.issuer,
                "jwks_uri": format!("{}/jwks", self.issuer),
                "authorization_endpoint": format!("{}/authorize-unavailable", self.issuer),
                "token_endpoint": format!("{}/token-unavailable", self.issuer),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            })
            .to_string(),
        );
        let jwks = Bytes::from(self.key.jwks.to_string());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (discovery, jwks) = (discovery.clone(), jwks.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = match req.uri().path() {
                            "/.well-known/openid-configuration" => Some(discovery.clone()),
                            "/jwks" => Some(jwks.clone()),
                            _ => None,
                        };
                        async move {
                            let mut resp =
                                Response::new(Full::new(body.clone().unwrap_or_default()));
                            if body.is_none() {
                                *resp.status_mut() = StatusCode::NOT_FOUND;
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    /// An access token for `persona`, valid for `ttl_secs`.
    pub fn token(&self, persona: &Persona, ttl_secs: u64) -> Option<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = json!({
            "iss": self.issuer, "aud": "phigate", "sub": persona.sub,
            "iat": now, "exp": now + ttl_secs, "auth_time": now,
        });
        if let (Some(c), Some(extra)) = (claims.as_object_mut(), persona.claims.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        self.key.sign("at+jwt", &claims)
    }
}
