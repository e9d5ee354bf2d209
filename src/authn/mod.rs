//! Authentication: who is asking?
//!
//! Each route says which credentials it accepts and how strong the
//! authentication must be. [`Authenticator::authenticate`] turns a request's
//! credentials into a [`Principal`] or into the exact answer the client
//! needs: a 401 challenge (RFC 6750) or a step-up (RFC 9470). Every refusal
//! emits an [`AuthEvent`]. Nothing here trusts a header a client could set
//! except the credential itself.

pub mod apikey;
pub mod assertion;
pub mod bearer;
pub mod browser;
pub mod config;
pub mod cookie;
pub mod events;
pub mod jwks;
pub mod mfa;
pub mod mtls;
pub mod principal;
pub mod session;
mod setup;

pub use apikey::{ApiKeyConfig, ApiKeyStore};
pub use assertion::AssertionSigner;
pub use bearer::{BearerVerifier, TokenRejection};
pub use events::{AuthEvent, AuthEventKind, AuthEventSink, LogSink};
pub use mfa::{MfaRules, StepUp, Strength};
pub use principal::{AuthMethod, ClaimMapping, Principal, PrincipalKind};
pub use setup::{
    asymmetric_algorithm as setup_asymmetric_algorithm, build, build_with_events, AuthnConfig,
    SetupError,
};

use config::{AuthKind, CredentialKind};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A route's authentication requirements, resolved from config.
#[derive(Debug, Clone)]
pub struct RouteAuth {
    pub kind: AuthKind,
    pub bearer: bool,
    pub api_key: bool,
    pub client_cert: bool,
    /// Identity provider names whose tokens count (empty = all).
    pub issuers: Vec<String>,
    pub strength: Strength,
    pub public_paths: Vec<String>,
    pub forward_authorization: bool,
    pub identity_headers: bool,
    pub audience: Arc<str>,
    /// Browser routes: session timeouts.
    pub limits: session::SessionLimits,
}

impl RouteAuth {
    pub fn from_config(
        route_name: &str,
        c: &config::RouteAuthConfig,
        browser: Option<&config::BrowserConfig>,
    ) -> RouteAuth {
        let default = session::SessionLimits::default();
        let limits = session::SessionLimits {
            idle: c
                .session_idle_timeout
                .or(browser.map(|b| b.session_idle_timeout))
                .map_or(default.idle, |d| d.get()),
            absolute: c
                .session_absolute_timeout
                .or(browser.map(|b| b.session_absolute_timeout))
                .map_or(default.absolute, |d| d.get()),
        };
        RouteAuth {
            kind: c.kind,
            bearer: c.accept.contains(&CredentialKind::Bearer),
            api_key: c.accept.contains(&CredentialKind::ApiKey),
            client_cert: c.accept.contains(&CredentialKind::ClientCertificate),
            issuers: c.issuers.clone(),
            strength: Strength {
                require_mfa: c.require_mfa,
                max_auth_age: c.max_auth_age.map(|d| d.get().as_secs()),
            },
            public_paths: c
                .public_paths
                .iter()
                .map(|p| trim_slash(p).to_string())
                .collect(),
            forward_authorization: c.forward_authorization,
            identity_headers: c.identity_headers,
            audience: Arc::from(c.assertion_audience.as_deref().unwrap_or(route_name)),
            limits,
        }
    }

    /// MFA or a recent sign-in is required: only a person can provide it.
    fn needs_a_person(&self) -> bool {
        self.strength.require_mfa || self.strength.max_auth_age.is_some()
    }

    /// Whether `path` (normalized) needs no credentials on this route: it
    /// equals one of the route's public paths, or lies under one written
    /// as `/prefix/*` (whole segments). Nothing else is public: a path that
    /// merely starts with a public one (`/fhir/metadata/..`) is not.
    pub fn is_public(&self, path: &str) -> bool {
        self.kind == AuthKind::Public
            || self
                .public_paths
                .iter()
                .any(|p| public_path_matches(p, path))
    }
}

/// `pattern` is an exact path, or `/prefix/*` for everything under
/// `/prefix/` (not `/prefix` itself).
fn public_path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(prefix) => path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
        None => path == pattern,
    }
}

fn trim_slash(p: &str) -> &str {
    if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    }
}

/// The result of authenticating one request.
#[derive(Debug)]
pub enum AuthOutcome {
    /// No credentials needed here.
    Public,
    /// Verified. `credential` identifies the credential (a hash), not the person.
    Authenticated {
        principal: Arc<Principal>,
        credential: [u8; 32],
    },
    /// 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// 401 asking for stronger or fresher authentication.
    StepUp(StepUp),
    /// Browser: 302 to the identity provider to sign in (or step up).
    Redirect(String),
    /// The identity provider cannot be reached to start a login: 503.
    Unavailable,
    /// This client started too many sign-ins: 429.
    TooMany,
}

/// What the glue knows about the request, for events.
pub struct RequestFacts<'a> {
    pub request_id: &'a str,
    pub route: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
    pub path: &'a str,
}

/// The credentials a request carries, and what a browser login needs.
pub struct Credentials<'a> {
    pub authorization: Option<&'a [u8]>,
    pub cookie: Option<&'a [u8]>,
    /// A page load (GET/HEAD accepting HTML): redirect to sign in rather than 401.
    pub wants_page: bool,
    /// The request's normalized target, to come back to after signing in.
    pub target: &'a crate::http::NormalizedPath,
    /// The verified TLS client certificate, if the client presented one.
    pub client_cert: Option<&'a mtls::ClientCertIdentity>,
}

/// All authentication state: verifiers, keys, the assertion signer, the event sink.
pub struct Authenticator {
    pub bearer: Option<BearerVerifier>,
    pub certificates: mtls::CertificateMap,
    pub browser: Option<browser::BrowserSso>,
    pub api_keys: ApiKeyStore,
    pub signer: AssertionSigner,
    pub events: Arc<dyn AuthEventSink>,
    /// Issuer name → its MFA rules (for step-up `acr_values`).
    mfa_by_issuer: Vec<(String, MfaRules)>,
}

const REALM: &str = "Bearer realm=\"phigate\"";
/// A service credential (API key, certificate) can never satisfy a person's MFA.
const SERVICE_CANNOT_STEP_UP: &str = "Bearer realm=\"phigate\", error=\"invalid_token\", error_description=\"this route requires a person's multi-factor sign-in\"";

impl Authenticator {
    pub fn new(
        bearer: Option<BearerVerifier>,
        api_keys: ApiKeyStore,
        signer: AssertionSigner,
        events: Arc<dyn AuthEventSink>,
        mfa_by_issuer: Vec<(String, MfaRules)>,
    ) -> Authenticator {
        Authenticator {
            bearer,
            certificates: mtls::CertificateMap::default(),
            browser: None,
            api_keys,
            signer,
            events,
            mfa_by_issuer,
        }
    }

    /// Authenticates a request on `route` at `now` (Unix seconds).
    pub async fn authenticate(
        &self,
        route: &RouteAuth,
        creds: &Credentials<'_>,
        facts: &RequestFacts<'_>,
        now: u64,
    ) -> AuthOutcome {
        if route.is_public(facts.path) {
            return AuthOutcome::Public;
        }
        let Some(authorization) = creds.authorization else {
            if route.client_cert {
                if let Some(cert) = creds.client_cert {
                    return self.with_certificate(route, cert, facts);
                }
            }
            if route.kind == AuthKind::Browser {
                return self.with_session(route, creds, facts, now).await;
            }
            self.emit(facts, AuthEventKind::CredentialMissing, "none", None);
            return AuthOutcome::Challenge(REALM.to_string());
        };
        if route.api_key {
            if let Some(key) = apikey::api_key_credential(authorization) {
                return self.with_api_key(route, key, facts);
            }
        }
        if route.bearer {
            if let Some(token) = bearer::bearer_token(authorization) {
                return self.with_bearer(route, token, facts, now).await;
            }
        }
        self.emit(
            facts,
            AuthEventKind::CredentialMissing,
            "unsupported_scheme",
            None,
        );
        AuthOutcome::Challenge(REALM.to_string())
    }

    /// A stronger or fresher sign-in that authorization policies demand:
    /// an RFC 9470 challenge for API clients, a re-login with `acr_values`,
    /// `max_age` and `prompt=login` for browser sessions.
    pub async fn policy_step_up(
        &self,
        principal: &Principal,
        mfa: bool,
        max_age: Option<u64>,
        creds: &Credentials<'_>,
        facts: &RequestFacts<'_>,
    ) -> AuthOutcome {
        let step_up = StepUp {
            reason: if mfa {
                mfa::StepUpReason::MfaRequired
            } else {
                mfa::StepUpReason::AuthenticationTooOld
            },
            acr_values: if mfa {
                self.rules_for(&principal.issuer).step_up_acr().to_vec()
            } else {
                Vec::new()
            },
            max_age,
        };
        self.emit(
            facts,
            AuthEventKind::StepUpRequired,
            if mfa {
                "policy_requires_mfa"
            } else {
                "policy_requires_fresh_sign_in"
            },
            Some(principal),
        );
        if principal.method == AuthMethod::Session && creds.wants_page {
            if let Some(browser) = &self.browser {
                return self
                    .sign_in(browser, creds, Some(&step_up), false, facts)
                    .await;
            }
        }
        AuthOutcome::StepUp(step_up)
    }

    /// Browser routes: the session cookie, or a redirect to sign in.
    async fn with_session(
        &self,
        route: &RouteAuth,
        creds: &Credentials<'_>,
        facts: &RequestFacts<'_>,
        now: u64,
    ) -> AuthOutcome {
        let Some(browser) = &self.browser else {
            return AuthOutcome::Challenge(REALM.to_string());
        };
        let mut logged_off = false;
        let session = match browser.session(creds.cookie, route.limits, now).await {
            Ok(s) => s,
            Err(expiry) => {
                logged_off = true;
                let kind = match expiry {
                    session::Expiry::Idle => AuthEventKind::SessionIdleExpired,
                    session::Expiry::Absolute => AuthEventKind::SessionAbsoluteExpired,
                };
                self.emit(facts, kind, "timeout", None);
                None
            }
        };
        let step_up = match &session {
            Some(s) => {
                let rules = self.rules_for(&s.principal.issuer);
                match mfa::check_strength(&s.principal, route.strength, rules, now) {
                    Ok(()) => {
                        return AuthOutcome::Authenticated {
                            credential: browser::BrowserSso::credential(s),
                            principal: s.principal.clone(),
                        }
                    }
                    Err(step_up) => {
                        self.emit(
                            facts,
                            AuthEventKind::StepUpRequired,
                            step_up.reason.as_str(),
                            Some(&s.principal),
                        );
                        Some(step_up)
                    }
                }
            }
            None => None,
        };
        if !creds.wants_page {
            return match step_up {
                Some(s) => AuthOutcome::StepUp(s),
                None => AuthOutcome::Challenge(REALM.to_string()),
            };
        }
        self.sign_in(browser, creds, step_up.as_ref(), logged_off, facts)
            .await
    }

    /// A redirect to the IdP that returns to the requested page (with
    /// step-up demands, or `prompt=login` after an automatic logoff).
    async fn sign_in(
        &self,
        browser: &browser::BrowserSso,
        creds: &Credentials<'_>,
        step_up: Option<&StepUp>,
        force: bool,
        facts: &RequestFacts<'_>,
    ) -> AuthOutcome {
        let return_to =
            browser::safe_return_path(&creds.target.to_uri_string()).unwrap_or_else(|| "/".into());
        match browser
            .start_login(&return_to, step_up, force, facts.client_ip)
            .await
        {
            Ok(url) => AuthOutcome::Redirect(url),
            Err(e) => {
                self.emit(facts, AuthEventKind::LoginFailed, e.reason(), None);
                match e {
                    browser::LoginError::TooMany => AuthOutcome::TooMany,
                    _ => AuthOutcome::Unavailable,
                }
            }
        }
    }

    /// The MFA rules of the identity provider whose `iss` is `issuer`
    /// (borrowed: this runs on every authenticated request).
    fn rules_for(&self, issuer: &str) -> &MfaRules {
        static NONE: once_cell::sync::Lazy<MfaRules> =
            once_cell::sync::Lazy::new(MfaRules::default);
        self.bearer
            .as_ref()
            .and_then(|b| b.issuer_name(issuer))
            .and_then(|n| self.mfa_by_issuer.iter().find(|(i, _)| i == n))
            .map(|(_, r)| r)
            .unwrap_or(&NONE)
    }

    fn with_certificate(
        &self,
        route: &RouteAuth,
        cert: &mtls::ClientCertIdentity,
        facts: &RequestFacts<'_>,
    ) -> AuthOutcome {
        let Some(principal) = self.certificates.principal(cert) else {
            self.emit(
                facts,
                AuthEventKind::CertificateRejected,
                "not_listed",
                None,
            );
            return AuthOutcome::Challenge(REALM.to_string());
        };
        if route.needs_a_person() {
            self.emit(
                facts,
                AuthEventKind::CertificateRejected,
                "mfa_required",
                Some(&principal),
            );
            return AuthOutcome::Challenge(SERVICE_CANNOT_STEP_UP.to_string());
        }
        AuthOutcome::Authenticated {
            credential: cert.fingerprint,
            principal,
        }
    }

    fn with_api_key(&self, route: &RouteAuth, key: &str, facts: &RequestFacts<'_>) -> AuthOutcome {
        match self.api_keys.verify(key) {
            Ok(principal) => {
                if route.needs_a_person() {
                    self.emit(
                        facts,
                        AuthEventKind::ApiKeyRejected,
                        "mfa_required",
                        Some(&principal),
                    );
                    return AuthOutcome::Challenge(SERVICE_CANNOT_STEP_UP.to_string());
                }
                AuthOutcome::Authenticated {
                    credential: Sha256::digest(key.as_bytes()).into(),
                    principal,
                }
            }
            Err(e) => {
                self.emit(facts, AuthEventKind::ApiKeyRejected, e.reason(), None);
                AuthOutcome::Challenge(
                    "ApiKey realm=\"phigate\", error=\"invalid_key\"".to_string(),
                )
            }
        }
    }

    async fn with_bearer(
        &self,
        route: &RouteAuth,
        token: &str,
        facts: &RequestFacts<'_>,
        now: u64,
    ) -> AuthOutcome {
        let Some(verifier) = &self.bearer else {
            self.emit(
                facts,
                AuthEventKind::TokenRejected,
                "no_identity_provider",
                None,
            );
            return AuthOutcome::Challenge(invalid_token());
        };
        let (principal, credential) = match verifier.verify(token, now).await {
            Ok(verified) => verified,
            Err(e) => {
                self.emit(facts, AuthEventKind::TokenRejected, e.reason(), None);
                return AuthOutcome::Challenge(invalid_token());
            }
        };
        let issuer_name = verifier.issuer_name(&principal.issuer);
        if !route.issuers.is_empty()
            && !issuer_name.is_some_and(|n| route.issuers.iter().any(|i| i == n))
        {
            self.emit(
                facts,
                AuthEventKind::TokenRejected,
                "issuer_not_allowed_here",
                Some(&principal),
            );
            return AuthOutcome::Challenge(invalid_token());
        }
        let rules = self.rules_for(&principal.issuer);
        if let Err(step_up) = mfa::check_strength(&principal, route.strength, rules, now) {
            self.emit(
                facts,
                AuthEventKind::StepUpRequired,
                step_up.reason.as_str(),
                Some(&principal),
            );
            return AuthOutcome::StepUp(step_up);
        }
        AuthOutcome::Authenticated {
            credential,
            principal,
        }
    }

    pub fn emit(
        &self,
        facts: &RequestFacts<'_>,
        kind: AuthEventKind,
        reason: &'static str,
        principal: Option<&Principal>,
    ) {
        self.events.emit(AuthEvent {
            kind,
            reason,
            request_id: facts.request_id.to_string(),
            route: facts.route.to_string(),
            client_ip: facts.client_ip,
            principal: principal.map(|p| p.id.clone()),
            issuer: principal.map(|p| p.issuer.clone()),
            method: principal.map(|p| p.method),
        });
    }
}

fn invalid_token() -> String {
    format!("{REALM}, error=\"invalid_token\", error_description=\"the access token is not valid\"")
}
