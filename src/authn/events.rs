//! Authentication events: what the audit pipeline will record about
//! sign-ins, rejections, step-ups and sessions.
//!
//! Until the audit stage lands they go to the structured log. An event
//! carries ids and reasons only — never a token, cookie, key or claim value
//! beyond the principal's id.

use super::principal::AuthMethod;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEventKind {
    LoginSucceeded,
    LoginFailed,
    TokenRejected,
    StepUpRequired,
    StepUpCompleted,
    SessionIdleExpired,
    SessionAbsoluteExpired,
    Logout,
    ApiKeyRejected,
    CertificateRejected,
    CredentialMissing,
}

impl AuthEventKind {
    pub fn as_str(self) -> &'static str {
        use AuthEventKind::*;
        match self {
            LoginSucceeded => "login_succeeded",
            LoginFailed => "login_failed",
            TokenRejected => "token_rejected",
            StepUpRequired => "step_up_required",
            StepUpCompleted => "step_up_completed",
            SessionIdleExpired => "session_idle_expired",
            SessionAbsoluteExpired => "session_absolute_expired",
            Logout => "logout",
            ApiKeyRejected => "api_key_rejected",
            CertificateRejected => "certificate_rejected",
            CredentialMissing => "credential_missing",
        }
    }
}

/// One authentication event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEvent {
    pub kind: AuthEventKind,
    /// A fixed reason label (e.g. `expired`, `bad_signature`).
    pub reason: &'static str,
    pub request_id: String,
    pub route: String,
    pub client_ip: Option<IpAddr>,
    pub principal: Option<String>,
    pub issuer: Option<String>,
    pub method: Option<AuthMethod>,
}

/// Where events go.
pub trait AuthEventSink: Send + Sync {
    fn emit(&self, event: AuthEvent);
}

/// The interim sink: one structured log line per event.
pub struct LogSink;

impl AuthEventSink for LogSink {
    fn emit(&self, e: AuthEvent) {
        crate::metrics::metrics()
            .auth_events
            .with_label_values(&[e.kind.as_str(), e.reason])
            .inc();
        tracing::info!(
            target: "phigate::authn::event",
            event = e.kind.as_str(),
            reason = e.reason,
            request_id = %e.request_id,
            route = %e.route,
            client_ip = %e.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            principal = e.principal.as_deref().unwrap_or(""),
            issuer = e.issuer.as_deref().unwrap_or(""),
            method = e.method.map(AuthMethod::as_str).unwrap_or(""),
            "authentication"
        );
    }
}

/// Collects events in memory (tests).
#[derive(Default)]
pub struct MemorySink(pub std::sync::Mutex<Vec<AuthEvent>>);

impl AuthEventSink for MemorySink {
    fn emit(&self, event: AuthEvent) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event);
        }
    }
}
