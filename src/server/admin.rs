//! The admin plane: `/metrics`, `/healthz`, `/readyz` on a separate listener.
//!
//! Kept off the data plane so a scrape can never be routed to an upstream
//! and the data plane's hygiene never has to know about it. Loopback unless
//! the config says otherwise.

use crate::metrics::metrics;
use crate::proxy::Pool;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What readiness depends on.
pub struct Readiness {
    pub started: AtomicBool,
    /// Set on SIGTERM: the process is finishing in-flight requests.
    pub draining: AtomicBool,
    pub pools: Vec<Arc<Pool>>,
    /// Policy status and reload.
    pub policies: Option<PolicyAdmin>,
    /// Identity providers' keys: without usable keys no bearer token can be
    /// verified, so the replica is not ready.
    pub authn: Option<Arc<crate::authn::Authenticator>>,
}

/// The admin plane's view of authorization.
pub struct PolicyAdmin {
    pub authz: Arc<crate::authz::Authorization>,
    /// Required as `Authorization: Bearer ...` to reload; `None` disables
    /// the endpoint.
    pub reload_token: Option<String>,
}

impl PolicyAdmin {
    fn handle(&self, req: &Request<Incoming>) -> (StatusCode, String) {
        if req.method() == hyper::Method::GET {
            return (
                StatusCode::OK,
                serde_json::json!({"version": self.authz.version()}).to_string(),
            );
        }
        if req.method() != hyper::Method::POST {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                "{\"error\":\"method_not_allowed\"}".into(),
            );
        }
        let Some(expected) = &self.reload_token else {
            return (
                StatusCode::NOT_FOUND,
                "{\"error\":\"reload endpoint disabled: set admin.reload_token\"}".into(),
            );
        };
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        use subtle::ConstantTimeEq;
        let digest = |s: &str| <sha2::Sha256 as sha2::Digest>::digest(s.as_bytes());
        if !bool::from(digest(given).ct_eq(&digest(expected))) {
            return (
                StatusCode::UNAUTHORIZED,
                "{\"error\":\"unauthorized\"}".into(),
            );
        }
        match self.authz.reload("admin") {
            Ok(crate::authz::Reloaded::Applied { version }) => (
                StatusCode::OK,
                serde_json::json!({"result": "applied", "version": version}).to_string(),
            ),
            Ok(crate::authz::Reloaded::Unchanged { version }) => (
                StatusCode::OK,
                serde_json::json!({"result": "unchanged", "version": version}).to_string(),
            ),
            Err(problems) => {
                // One problem per line (file:line: policy: message).
                let problems: Vec<&str> = problems
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    serde_json::json!({"result": "rejected", "version": self.authz.version(), "problems": problems}).to_string(),
                )
            }
        }
    }
}

impl Readiness {
    /// Ready once the server started and every pool finished its first round
    /// of health checks, until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && self.pools.iter().all(|p| p.checked_once())
            && self.issuer_keys().iter().all(|(_, ok)| *ok)
    }

    fn issuer_keys(&self) -> Vec<(String, bool)> {
        self.authn
            .as_ref()
            .and_then(|a| a.bearer.as_ref())
            .map(|b| b.key_status())
            .unwrap_or_default()
    }

    fn report(&self) -> serde_json::Value {
        let pools: serde_json::Map<String, serde_json::Value> = self
            .pools
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    serde_json::json!({ "checked": p.checked_once(), "healthy": p.any_healthy() }),
                )
            })
            .collect();
        serde_json::json!({
            "ready": self.is_ready(),
            "draining": self.draining.load(Ordering::Relaxed),
            "upstreams": pools,
            "identity_providers": self
                .issuer_keys()
                .into_iter()
                .map(|(name, ok)| (name, serde_json::json!({ "keys": ok })))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        })
    }
}

/// Serves the admin plane on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let readiness = readiness.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let readiness = readiness.clone();
                        async move { Ok::<_, Infallible>(handle(&req, &readiness)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

fn handle(req: &Request<Incoming>, readiness: &Readiness) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => {
            metrics().ready.set(readiness.is_ready() as i64);
            (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics().render(),
            )
        }
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/policies" | "/policies/reload" if readiness.policies.is_some() => {
            let admin = readiness.policies.as_ref();
            match admin {
                Some(a)
                    if req.uri().path() == "/policies/reload"
                        || req.method() == hyper::Method::GET =>
                {
                    let (status, body) = a.handle(req);
                    (status, "application/json", body)
                }
                _ => (
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "not found\n".to_string(),
                ),
            }
        }
        "/readyz" => {
            let status = if readiness.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "application/json", readiness.report().to_string())
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
