//! The `ProxyHttp` implementation: calls the stages in order, owns no policy.
//!
//! Each hook says which stage it runs. Today the journey is hygiene → route
//! → upstream; authentication, authorization, redaction and audit slot into
//! the same hooks as they land.

pub mod pool;
mod respond;
pub mod router;

pub use pool::{Pool, PoolError};
pub use respond::{error_body, error_code};
pub use router::{request_host, routing_view, Router};

use crate::authn::assertion::REUSE_MARGIN;
use crate::authn::browser::{parse_query, safe_return_path, LoginError};
use crate::authn::mtls::ClientCertIdentity;
use crate::authn::{AuthEventKind, Credentials, RequestFacts};
use crate::authn::{AuthOutcome, Authenticator, Principal, RouteAuth};
use crate::authz::mapping::RequestView;
use crate::authz::{Authorization, Decision, EnforcementMode, RouteAuthz, Verdict};
use crate::config::{Config, RouteConfig};
use crate::http::{
    check_framing_for_version, forwarded_headers, framing_headers_from_raw, headers_to_strip,
    normalize_path, request_target_from_raw, ForwardedFor, FramingRejection, IdentityHeaderRules,
    NormalizedPath, PathPolicy, PathRejection, RequestId, TrustedProxies,
};
use crate::metrics::metrics;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A configured route with its upstream pool.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub pool: Arc<Pool>,
    pub max_body: u64,
    pub websocket: bool,
    pub allow_double_slash: bool,
    pub preserve_host: bool,
    /// The route names its hosts, so the request's host was on a list.
    pub hosts_listed: bool,
    pub auth: RouteAuth,
    /// How requests are authorized; `None` on public routes.
    pub authz: Option<RouteAuthz>,
    pub denial_style: respond::DenialStyle,
}

/// Hygiene settings resolved from config once, used on every request.
struct Hygiene {
    strict_path: PathPolicy,
    lenient_path: PathPolicy,
    max_uri: usize,
    max_header_bytes: usize,
    max_headers: usize,
    identity: IdentityHeaderRules,
    trusted: TrustedProxies,
    body_timeout: Duration,
    keepalive_secs: u64,
}

/// Per-request state carried between hooks.
pub struct RequestCtx {
    started: Instant,
    request_id: RequestId,
    route: Option<Arc<Route>>,
    path: Option<NormalizedPath>,
    forwarded: Option<ForwardedFor>,
    upstream_host: Option<String>,
    body_bytes: u64,
    rejection: Option<&'static str>,
    client_ip: Option<std::net::IpAddr>,
    principal: Option<Arc<Principal>>,
    /// Hash of the credential that authenticated the request.
    credential: [u8; 32],
    /// Authorization inputs the client declared (read before the
    /// `X-Phigate-*` headers are stripped).
    declared: Declared,
    /// The authorization decision, for the response phase and audit.
    pub decision: Option<Arc<Decision>>,
    /// `X-Phigate-Decision`, when debugging headers are on.
    decision_header: Option<String>,
}

/// What a client may declare about a request: purpose of use, break-glass
/// justification, elevation ticket. Policies decide what they are worth.
#[derive(Debug, Default, Clone)]
struct Declared {
    purpose_of_use: Option<String>,
    break_glass: Option<String>,
    ticket: Option<String>,
}

/// Largest declared value kept (a justification is a sentence, not a file).
const MAX_DECLARED: usize = 512;

impl Declared {
    fn from_headers(h: &::http::HeaderMap) -> Declared {
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= MAX_DECLARED)
                .map(str::to_owned)
        };
        Declared {
            purpose_of_use: get("x-phigate-purpose-of-use"),
            break_glass: get("x-phigate-break-glass"),
            ticket: get("x-phigate-ticket"),
        }
    }
}

/// The largest body read to decide a request (FHIR creates, updates and
/// batches); Pingora replays at most this much to the upstream.
pub const MAX_DECISION_BODY: usize = 64 * 1024;

/// The proxy: hygiene, routing, authentication and upstream selection.
pub struct Phigate {
    router: Router<Arc<Route>>,
    hygiene: Hygiene,
    authn: Arc<Authenticator>,
    authz: Arc<Authorization>,
    identity: IdentityNames,
    /// (credential, audience) → prepared identity headers.
    identity_cache: moka::sync::Cache<([u8; 32], Arc<str>), Arc<IdentityBundle>>,
    browser_limits: crate::authn::session::SessionLimits,
}

impl Phigate {
    /// Builds the data plane from validated config; resolves origins.
    pub fn from_config(
        config: &Config,
        authn: Arc<Authenticator>,
        authz: Arc<Authorization>,
    ) -> Result<(Phigate, Vec<Arc<Pool>>), PoolError> {
        let mut pools = BTreeMap::new();
        for (name, u) in &config.upstreams {
            pools.insert(name.clone(), Arc::new(Pool::from_config(name, u)?));
        }
        let routes = config.routes.iter().map(|r: &RouteConfig| {
            let pool = pools.get(&r.upstream).cloned().ok_or_else(|| PoolError {
                pool: r.upstream.clone(),
                reason: "not defined".into(),
            })?;
            Ok((
                r.hosts.clone(),
                r.path_prefix.clone(),
                Arc::new(Route {
                    name: r.name.clone(),
                    pool,
                    max_body: r.max_body.bytes(),
                    websocket: r.websocket,
                    allow_double_slash: r.allow_double_slash,
                    preserve_host: r.preserve_host,
                    hosts_listed: !r.hosts.is_empty(),
                    auth: RouteAuth::from_config(&r.name, &r.auth, config.browser.as_ref()),
                    authz: match r.auth.kind {
                        crate::config::AuthKind::Public => None,
                        _ => Some(
                            RouteAuthz::from_config(&r.authorization, &r.path_prefix).map_err(
                                |reason| PoolError {
                                    pool: r.name.clone(),
                                    reason,
                                },
                            )?,
                        ),
                    },
                    denial_style: match r.authorization.mapping {
                        crate::authz::config::MappingKind::Fhir => respond::DenialStyle::Fhir,
                        crate::authz::config::MappingKind::Templates => {
                            respond::DenialStyle::Problem
                        }
                    },
                }),
            ))
        });
        let router = Router::new(routes.collect::<Result<Vec<_>, PoolError>>()?);
        let h = &config.hygiene;
        let identity = IdentityHeaderRules::with_additional(
            h.strip_headers.iter().map(|s| s.to_ascii_lowercase()),
            h.strip_header_prefixes
                .iter()
                .map(|s| s.to_ascii_lowercase()),
        );
        let hygiene = Hygiene {
            strict_path: PathPolicy {
                max_len: h.max_path_length,
                allow_double_slash: false,
            },
            lenient_path: PathPolicy {
                max_len: h.max_path_length,
                allow_double_slash: true,
            },
            max_uri: h.max_uri_length,
            max_header_bytes: h.max_header_bytes.bytes() as usize,
            max_headers: h.max_headers,
            identity,
            trusted: TrustedProxies::new(h.trusted_proxies.clone()),
            body_timeout: h.client_body_timeout.get(),
            keepalive_secs: h.keepalive_timeout.get().as_secs().max(1),
        };
        let identity = IdentityNames::from_config(&config.identity_headers)?;
        Ok((
            Phigate {
                router,
                hygiene,
                authn,
                authz,
                identity,
                identity_cache: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(crate::authn::assertion::ASSERTION_TTL)
                    .build(),
                browser_limits: RouteAuth::from_config(
                    "",
                    &crate::config::RouteAuthConfig::default(),
                    config.browser.as_ref(),
                )
                .limits,
            },
            pools.into_values().collect(),
        ))
    }

    /// Hygiene and routing. `Err((status, reason))` rejects the request.
    fn admit(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> Result<Admission, (u16, &'static str)> {
        let req = session.req_header();
        let h = &self.hygiene;

        if req.headers.len() > h.max_headers {
            return Err((431, "too_many_headers"));
        }
        let header_bytes: usize = req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > h.max_header_bytes {
            return Err((431, "header_too_large"));
        }

        // Judge framing and the target as the client sent them: the HTTP
        // layer reconciles Content-Length/Transfer-Encoding and the URI
        // parser drops fragments before any hook sees the request.
        let raw_head = session
            .as_downstream()
            .as_http1()
            .map(|h1| h1.get_headers_raw_bytes());
        let framing = match &raw_head {
            Some(head) => check_framing_for_version(req.version, &framing_headers_from_raw(head)),
            None => check_framing_for_version(req.version, &req.headers),
        };
        framing.map_err(|e: FramingRejection| (400, e.reason()))?;

        if req.method == ::http::Method::CONNECT || req.method == ::http::Method::TRACE {
            return Err((405, "method_not_allowed"));
        }
        let raw = match &raw_head {
            Some(head) => request_target_from_raw(head).ok_or((400, "bad_request_line"))?,
            None => req.raw_path(),
        };
        if raw.len() > h.max_uri {
            return Err((414, "uri_too_long"));
        }
        let host = request_host(host_bytes(req)).map_err(|_| (400, "bad_host"))?;
        // Normalize strictly; a `//` is tolerated only if the route that
        // claims the request allows it.
        let (path, double_slash) = match normalize_path(raw, &h.strict_path) {
            Ok(p) => (p, false),
            Err(PathRejection::DoubleSlash) => (
                normalize_path(raw, &h.lenient_path).map_err(|e| (400, e.reason()))?,
                true,
            ),
            Err(e) => return Err((400, e.reason())),
        };
        // phigate's own endpoints come before every route and are never forwarded.
        if let Some(rest) = path.path().strip_prefix(RESERVED_PREFIX) {
            use ::http::Method;
            let which = match (rest, &req.method) {
                ("jwks.json", &Method::GET) => Reserved::Jwks,
                ("login", &Method::GET) => Reserved::Login,
                ("callback", &Method::GET) => Reserved::Callback,
                ("logout", &Method::GET | &Method::POST) => Reserved::Logout,
                ("userinfo", &Method::GET) => Reserved::Userinfo,
                _ => return Err((404, "reserved_path")),
            };
            ctx.client_ip = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            return Ok(Admission::Reserved(which));
        }
        let route = self
            .router
            .route(host.as_deref(), &routing_view(path.path()))
            .cloned();
        if double_slash && !route.as_ref().is_some_and(|r| r.allow_double_slash) {
            return Err((400, PathRejection::DoubleSlash.reason()));
        }
        let route = route.ok_or((404, "no_route"))?;
        if let Some(len) =
            header_str(req, ::http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok())
        {
            if len > route.max_body {
                ctx.route = Some(route);
                return Err((413, "body_too_large"));
            }
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let host_str = host_bytes(req).and_then(|b| std::str::from_utf8(b).ok());
        ctx.forwarded = Some(forwarded_headers(
            peer,
            tls,
            host_str,
            &req.headers,
            &h.trusted,
        ));
        ctx.client_ip = Some(peer);
        ctx.path = Some(path);
        ctx.route = Some(route);
        Ok(Admission::Routed)
    }

    /// Authentication: who is this? `Err` is the 401 to send.
    async fn authenticate(&self, session: &Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        // Admission always sets both; if it ever did not, deny rather than
        // forward an unauthenticated request.
        let (Some(route), Some(path)) = (&ctx.route, &ctx.path) else {
            return Err(Refusal::Unauthenticated(REALM_CHALLENGE.to_string()));
        };
        let facts = RequestFacts {
            request_id: ctx.request_id.as_str(),
            route: &route.name,
            client_ip: ctx.client_ip,
            path: path.path(),
        };
        let req = session.req_header();
        let header = |name| {
            req.headers
                .get(name)
                .map(|v: &::http::HeaderValue| v.as_bytes())
        };
        let client_cert = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|s| s.extension.get::<ClientCertIdentity>());
        let creds = Credentials {
            client_cert,
            authorization: header(::http::header::AUTHORIZATION),
            cookie: header(::http::header::COOKIE),
            wants_page: wants_page(req),
            target: path,
        };
        match self
            .authn
            .authenticate(&route.auth, &creds, &facts, unix_now())
            .await
        {
            AuthOutcome::Public => Ok(()),
            AuthOutcome::Authenticated {
                principal,
                credential,
            } => {
                ctx.principal = Some(principal);
                ctx.credential = credential;
                Ok(())
            }
            AuthOutcome::Challenge(www) => Err(Refusal::Unauthenticated(www)),
            AuthOutcome::StepUp(step_up) => Err(Refusal::StepUp(step_up.challenge())),
            AuthOutcome::Redirect(url) => Err(Refusal::SignIn(url)),
            AuthOutcome::Unavailable => Err(Refusal::ProviderUnavailable),
        }
    }

    /// Authorization: map the request, decide it with Cedar, and answer a
    /// denial (403, a step-up challenge, 400/413/503) unless the route only
    /// shadows. `Ok(true)` means a response was sent.
    async fn authorize(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let (Some(route), Some(path)) = (ctx.route.clone(), ctx.path.clone()) else {
            return Ok(false);
        };
        let Some(route_authz) = route.authz.as_ref() else {
            return Ok(false);
        };
        // Public paths under a protected route carry no principal.
        let Some(principal) = ctx.principal.clone() else {
            return Ok(false);
        };
        let shadow = route_authz.mode == EnforcementMode::Shadow;
        // A body larger than can be decided on: an enforcing route refuses it
        // before reading it; a shadow route decides without it and forwards
        // it untouched. A chunked one found too large while reading cannot
        // be replayed, so both refuse it.
        let req = session.req_header();
        let needs_body = route_authz.needs_body(req.method.as_str());
        let declared_too_large = header_str(req, ::http::header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_DECISION_BODY);
        let body = if !needs_body || (declared_too_large && shadow) {
            None
        } else if declared_too_large {
            return self.refuse_undecidable_body(session, ctx, &route).await;
        } else {
            match read_decision_body(session).await? {
                Some(b) => Some(b),
                None => return self.refuse_undecidable_body(session, ctx, &route).await,
            }
        };
        let client_cert = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some_and(|s| s.extension.get::<ClientCertIdentity>().is_some());
        let facts = crate::authz::RequestFacts {
            client_ip: ctx
                .client_ip
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            device_trusted: client_cert,
            purpose_of_use: ctx.declared.purpose_of_use.clone(),
            break_glass: ctx.declared.break_glass.clone(),
            ticket: ctx.declared.ticket.clone(),
            route: route.name.clone(),
            now: jiff::Timestamp::now(),
        };
        // Borrowed from the request head: nothing is copied per request.
        let req = session.req_header();
        let view = RequestView {
            method: req.method.as_str(),
            path: path.path(),
            query: path.query(),
            content_type: header_str(req, ::http::header::CONTENT_TYPE),
            body: body.as_deref(),
        };
        let verdict = self
            .authz
            .decide(route_authz, &principal, &view, &facts)
            .await;
        let (outcome, reason) = verdict.labels();
        let allowed = matches!(verdict, Verdict::Allow(_));
        let outcome = if shadow && !allowed {
            "shadow_deny"
        } else {
            outcome
        };
        metrics()
            .authz_decisions
            .with_label_values(&[&route.name, outcome, reason])
            .inc();
        let decision = verdict.decision().cloned();
        // The log line and the debug header name the determining policies
        // and the version; render them only when one of them is wanted.
        if self.authz.decision_header || tracing::enabled!(tracing::Level::INFO) {
            let policies = decision
                .as_ref()
                .map(|d| d.determining().join(","))
                .unwrap_or_default();
            let version = match &decision {
                Some(d) => d.version.clone(),
                None => self.authz.version(),
            };
            // Principal ids and policy ids, never patients or request data.
            tracing::info!(
                event = "authz_decision",
                request_id = %ctx.request_id.as_str(),
                route = %route.name,
                principal = %principal.id,
                outcome,
                reason,
                policies = %policies,
                version = %version,
                mode = route_authz.mode.as_str(),
                break_glass = decision.as_ref().is_some_and(|d| d.break_glass),
            );
            if self.authz.decision_header {
                ctx.decision_header = Some(format!(
                    "{outcome}; reason={reason}; policies=\"{policies}\"; version={version}"
                ));
            }
        }
        ctx.decision = decision;
        if allowed || shadow {
            return Ok(false);
        }
        match verdict {
            Verdict::StepUp(_, need) => {
                let id = ctx.request_id.as_str().to_string();
                let creds = Credentials {
                    client_cert: None,
                    authorization: None,
                    cookie: None,
                    wants_page: wants_page(session.req_header()),
                    target: &path,
                };
                let auth_facts = RequestFacts {
                    request_id: &id,
                    route: &route.name,
                    client_ip: ctx.client_ip,
                    path: path.path(),
                };
                let outcome = self
                    .authn
                    .policy_step_up(&principal, need.mfa, need.max_age, &creds, &auth_facts)
                    .await;
                let reason = match outcome {
                    AuthOutcome::Redirect(url) => {
                        respond::redirect(session, &url, None, &id).await?;
                        "step_up_redirect"
                    }
                    AuthOutcome::StepUp(step_up) => {
                        respond::send_error_with(
                            session,
                            401,
                            &id,
                            false,
                            &[("WWW-Authenticate", step_up.challenge())],
                        )
                        .await?;
                        "step_up_required"
                    }
                    _ => {
                        respond::send_error(session, 503, &id, false).await?;
                        "identity_provider_unavailable"
                    }
                };
                ctx.rejection = Some(reason);
                metrics().rejections.with_label_values(&[reason]).inc();
                Ok(true)
            }
            Verdict::Unmapped(crate::authz::mapping::MappingError::BadRequest { .. }) => {
                self.refuse(
                    session,
                    ctx,
                    &route,
                    400,
                    "the request cannot be authorized as sent",
                    "authz_bad_request",
                )
                .await
            }
            Verdict::Unavailable(_) => {
                self.refuse(
                    session,
                    ctx,
                    &route,
                    503,
                    "authorization is temporarily unavailable",
                    "authz_unavailable",
                )
                .await
            }
            _ => {
                self.refuse(
                    session,
                    ctx,
                    &route,
                    403,
                    "access denied by policy",
                    "forbidden",
                )
                .await
            }
        }
    }

    /// A FHIR write whose body is over [`MAX_DECISION_BODY`]: nothing can
    /// be decided about it.
    async fn refuse_undecidable_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Route,
    ) -> pingora::Result<bool> {
        metrics()
            .authz_decisions
            .with_label_values(&[&route.name, "unmapped", "body_too_large"])
            .inc();
        self.refuse(
            session,
            ctx,
            route,
            413,
            "the request body is too large to authorize",
            "body_too_large_to_authorize",
        )
        .await
    }

    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Route,
        status: u16,
        detail: &str,
        reason: &'static str,
    ) -> pingora::Result<bool> {
        ctx.rejection = Some(reason);
        metrics().rejections.with_label_values(&[reason]).inc();
        respond::send_denial(
            session,
            route.denial_style,
            status,
            detail,
            ctx.request_id.as_str(),
            ctx.decision_header.clone(),
        )
        .await?;
        Ok(true)
    }

    /// phigate's own endpoints under `/.phigate/`.
    async fn reserved(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        which: Reserved,
    ) -> pingora::Result<()> {
        let id = ctx.request_id.as_str().to_string();
        let facts = RequestFacts {
            request_id: &id,
            route: ".phigate",
            client_ip: ctx.client_ip,
            path: "",
        };
        let cookie = session
            .req_header()
            .headers
            .get(::http::header::COOKIE)
            .map(|v| v.as_bytes().to_vec());
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        let browser = self.authn.browser.as_ref();
        match (which, browser) {
            (Reserved::Jwks, _) => {
                let jwks = self.authn.signer.jwks().clone();
                respond::send_json(session, 200, &jwks, &id).await
            }
            (_, None) => respond::send_error(session, 404, &id, false).await,
            (Reserved::Login, Some(b)) => {
                let rd = parse_query(&query)
                    .into_iter()
                    .find(|(k, _)| k == "rd")
                    .and_then(|(_, v)| safe_return_path(&v))
                    .unwrap_or_else(|| "/".into());
                match b.start_login(&rd, None, false).await {
                    Ok(url) => respond::redirect(session, &url, None, &id).await,
                    Err(e) => {
                        self.authn
                            .emit(&facts, AuthEventKind::LoginFailed, e.reason(), None);
                        respond::send_error(session, 503, &id, false).await
                    }
                }
            }
            (Reserved::Callback, Some(b)) => match b.callback(&query, unix_now()).await {
                Ok(done) => {
                    // A fresh session replaces whatever the browser had.
                    if let Some(old) = cookie.as_deref() {
                        b.forget(old).await;
                    }
                    self.authn.emit(
                        &facts,
                        AuthEventKind::LoginSucceeded,
                        "code_flow",
                        Some(&done.principal),
                    );
                    respond::redirect(session, &done.return_to, Some(&done.set_cookie), &id).await
                }
                Err(e) => {
                    self.authn
                        .emit(&facts, AuthEventKind::LoginFailed, e.reason(), None);
                    let status = if matches!(e, LoginError::Provider(_)) {
                        503
                    } else {
                        400
                    };
                    respond::send_error(session, status, &id, false).await
                }
            },
            (Reserved::Logout, Some(b)) => {
                let principal = match cookie.as_deref() {
                    Some(c) => b.peek(c).await,
                    None => None,
                };
                let (clear, target) = b.logout(cookie.as_deref()).await;
                self.authn
                    .emit(&facts, AuthEventKind::Logout, "user", principal.as_deref());
                respond::redirect(session, &target, Some(&clear), &id).await
            }
            (Reserved::Userinfo, Some(b)) => {
                let limits = crate::authn::session::SessionLimits {
                    idle: self.browser_limits.idle,
                    absolute: self.browser_limits.absolute,
                };
                match b.session(cookie.as_deref(), limits, unix_now()).await {
                    Ok(Some(s)) => {
                        let p = &s.principal;
                        let body = serde_json::json!({
                            "sub": p.id, "idp": p.issuer, "name": p.display_name,
                            "email": p.email, "roles": p.roles, "mfa": p.mfa,
                            "auth_time": p.auth_time,
                        });
                        respond::send_json(session, 200, &body, &id).await
                    }
                    _ => {
                        respond::send_error_with(
                            session,
                            401,
                            &id,
                            false,
                            &[("WWW-Authenticate", REALM_CHALLENGE.into())],
                        )
                        .await
                    }
                }
            }
        }
    }

    /// The identity headers and assertion for the upstream, prepared once
    /// per credential and audience and reused until the assertion nears `exp`.
    fn inject_identity(
        &self,
        upstream: &mut RequestHeader,
        route: &Route,
        principal: &Principal,
        credential: [u8; 32],
    ) -> pingora::Result<()> {
        let now = unix_now();
        let key = (credential, route.auth.audience.clone());
        let bundle = match self.identity_cache.get(&key) {
            Some(b) if b.exp > now + REUSE_MARGIN => b,
            _ => {
                let Some(b) = self.identity_bundle(route, principal, now) else {
                    // Never forward an authenticated request without its assertion.
                    return Error::e_explain(
                        ErrorType::HTTPStatus(500),
                        "assertion signing failed",
                    );
                };
                let b = Arc::new(b);
                self.identity_cache.insert(key, b.clone());
                b
            }
        };
        for (name, value) in &bundle.headers {
            upstream.insert_header(name.clone(), value.clone())?;
        }
        Ok(())
    }

    fn identity_bundle(&self, route: &Route, p: &Principal, now: u64) -> Option<IdentityBundle> {
        let names = &self.identity;
        let cap = names.max_bytes;
        let value = |s: String| ::http::HeaderValue::from_str(&s).ok();
        let mut headers = vec![(names.user.clone(), value(header_safe(&p.id, cap))?)];
        if let Some(n) = &p.display_name {
            headers.push((names.name.clone(), value(header_safe(n, cap))?));
        }
        if let Some(e) = &p.email {
            headers.push((names.email.clone(), value(header_safe(e, cap))?));
        }
        if !p.roles.is_empty() {
            headers.push((names.roles.clone(), value(joined_within(&p.roles, cap))?));
        }
        let (assertion, exp) = self.authn.signer.assertion(p, &route.auth.audience, now)?;
        headers.push((names.assertion.clone(), value(assertion)?));
        Some(IdentityBundle { headers, exp })
    }
}

/// Identity header values ready to send, and when the assertion expires.
struct IdentityBundle {
    headers: Vec<(::http::HeaderName, ::http::HeaderValue)>,
    exp: u64,
}

/// What admission decided.
enum Admission {
    Routed,
    Reserved(Reserved),
}

/// phigate's own endpoints.
#[derive(Clone, Copy)]
enum Reserved {
    Jwks,
    Login,
    Callback,
    Logout,
    Userinfo,
}

/// Why authentication did not let a request through.
enum Refusal {
    Unauthenticated(String),
    StepUp(String),
    SignIn(String),
    ProviderUnavailable,
}

/// Removes phigate's own session cookie from the request's `Cookie`
/// header(s): the app has no use for it and must never be able to replay it.
fn strip_cookie(req: &mut RequestHeader, name: &str) -> pingora::Result<()> {
    let values: Vec<String> = req
        .headers
        .get_all(::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(String::from)
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let prefix = format!("{name}=");
    let kept: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with(&prefix))
        .collect();
    req.remove_header(&::http::header::COOKIE);
    if !kept.is_empty() {
        req.insert_header(::http::header::COOKIE, kept.join("; "))?;
    }
    Ok(())
}

/// A page load a browser makes (navigate), as opposed to an API call.
/// Reads the whole request body (≤ [`MAX_DECISION_BODY`]) so the decision
/// can see it; Pingora's retry buffer then replays it to the upstream.
/// `None` when it is larger (the request cannot be decided).
async fn read_decision_body(session: &mut Session) -> pingora::Result<Option<Vec<u8>>> {
    session.as_mut().enable_retry_buffering();
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DECISION_BODY {
            return Ok(None);
        }
    }
    Ok(Some(body))
}

/// A header's value, when it is visible ASCII.
fn header_str(req: &RequestHeader, name: ::http::header::HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn wants_page(req: &RequestHeader) -> bool {
    let get = req.method == ::http::Method::GET || req.method == ::http::Method::HEAD;
    let html = header_str(req, ::http::header::ACCEPT).is_some_and(|a| a.contains("text/html"));
    get && html
}

const RESERVED_PREFIX: &str = "/.phigate/";
const REALM_CHALLENGE: &str = "Bearer realm=\"phigate\"";

/// Header names for identity injection, resolved once.
struct IdentityNames {
    user: ::http::HeaderName,
    name: ::http::HeaderName,
    email: ::http::HeaderName,
    roles: ::http::HeaderName,
    assertion: ::http::HeaderName,
    max_bytes: usize,
}

impl IdentityNames {
    fn from_config(c: &crate::config::IdentityHeadersConfig) -> Result<IdentityNames, PoolError> {
        let name = |s: &str| {
            ::http::HeaderName::from_bytes(s.as_bytes()).map_err(|_| PoolError {
                pool: "identity_headers".into(),
                reason: format!("{s:?} is not a header name"),
            })
        };
        Ok(IdentityNames {
            user: name(&c.user)?,
            name: name(&c.name)?,
            email: name(&c.email)?,
            roles: name(&c.roles)?,
            assertion: name(&c.assertion)?,
            max_bytes: c.max_header_bytes.max(64),
        })
    }
}

/// A claim value fit for a header: control characters become spaces and it
/// is cut (at a character boundary) to `cap` bytes.
fn header_safe(v: &str, cap: usize) -> String {
    let mut out = String::with_capacity(v.len().min(cap));
    for c in v.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > cap {
            break;
        }
        out.push(c);
    }
    out
}

/// Comma-joined values, stopping before the one that would exceed `cap`.
fn joined_within(values: &[String], cap: usize) -> String {
    let mut out = String::new();
    for v in values {
        let v = header_safe(&v.replace(',', " "), cap);
        let extra = if out.is_empty() { v.len() } else { v.len() + 1 };
        if out.len() + extra > cap {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&v);
    }
    out
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn host_bytes(req: &RequestHeader) -> Option<&[u8]> {
    req.headers
        .get(::http::header::HOST)
        .map(|v| v.as_bytes())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()))
}

fn route_label(ctx: &RequestCtx) -> &str {
    ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-")
}

#[async_trait]
impl ProxyHttp for Phigate {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: RequestId::unassigned(),
            route: None,
            path: None,
            forwarded: None,
            upstream_host: None,
            body_bytes: 0,
            rejection: None,
            client_ip: None,
            principal: None,
            credential: [0; 32],
            declared: Declared::default(),
            decision: None,
            decision_header: None,
        }
    }

    /// Hygiene: request id and slow-body protection, before anything else.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.started = Instant::now();
        ctx.request_id = RequestId::from_client(session.req_header().headers.get("x-request-id"));
        session.set_read_timeout(Some(self.hygiene.body_timeout));
        Ok(())
    }

    /// Hygiene and routing: reject what is ambiguous or unrouted.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        match self.admit(session, ctx) {
            Ok(Admission::Reserved(which)) => {
                self.reserved(session, ctx, which).await?;
                Ok(true)
            }
            Ok(Admission::Routed) => {
                // Remove client-sent identity, hop-by-hop and forwarding
                // headers now, before any later stage could read them.
                let websocket = ctx.route.as_ref().is_some_and(|r| r.websocket);
                ctx.declared = Declared::from_headers(&session.req_header().headers);
                let req = session.req_header_mut();
                for name in headers_to_strip(&req.headers, &self.hygiene.identity, websocket) {
                    req.remove_header(&name);
                }
                // HTTP/1.1 keep-alive is unbounded by default; bound the idle wait.
                if session.get_keepalive() == Some(0) {
                    session.set_keepalive(Some(self.hygiene.keepalive_secs));
                }
                // Authentication: who is asking?
                if let Err(refusal) = self.authenticate(session, ctx).await {
                    let id = ctx.request_id.as_str().to_string();
                    let reason = match refusal {
                        Refusal::Unauthenticated(www) | Refusal::StepUp(www) => {
                            respond::send_error_with(
                                session,
                                401,
                                &id,
                                false,
                                &[("WWW-Authenticate", www)],
                            )
                            .await?;
                            "unauthenticated"
                        }
                        Refusal::SignIn(url) => {
                            respond::redirect(session, &url, None, &id).await?;
                            "sign_in_redirect"
                        }
                        Refusal::ProviderUnavailable => {
                            respond::send_error(session, 503, &id, false).await?;
                            "identity_provider_unavailable"
                        }
                    };
                    ctx.rejection = Some(reason);
                    metrics().rejections.with_label_values(&[reason]).inc();
                    return Ok(true);
                }
                // Authorization: may they ask this?
                self.authorize(session, ctx).await
            }
            Err((status, reason)) => {
                ctx.rejection = Some(reason);
                metrics().rejections.with_label_values(&[reason]).inc();
                let close = status == 400 || status == 413 || status == 431;
                respond::send_error(session, status, ctx.request_id.as_str(), close).await?;
                Ok(true)
            }
        }
    }

    /// Hygiene: enforce the route's body limit on streamed bodies.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        // After a 101 the "body" is a WebSocket stream, not a request body.
        if session.was_upgraded() {
            return Ok(());
        }
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx
                .route
                .as_ref()
                .is_some_and(|r| ctx.body_bytes > r.max_body)
            {
                ctx.rejection = Some("body_too_large");
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over limit");
            }
        }
        Ok(())
    }

    /// Upstream: the next healthy origin of the route's pool.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(route) = &ctx.route else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        match route.pool.select() {
            Some(origin) => {
                ctx.upstream_host = Some(origin.host_header());
                Ok(Box::new(origin.peer()))
            }
            None => {
                metrics()
                    .upstream_errors
                    .with_label_values(&[&route.pool.name, "no_healthy_origin"])
                    .inc();
                Error::e_explain(ErrorType::HTTPStatus(503), "no healthy origin")
            }
        }
    }

    /// Hygiene: the upstream sees the normalized path and phigate's own
    /// forwarding headers (the client's were removed in `request_filter`).
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        if let Some(path) = &ctx.path {
            upstream.set_raw_path(path.to_uri_string().as_bytes())?;
        }
        if let Some(fwd) = &ctx.forwarded {
            upstream.insert_header("X-Forwarded-For", fwd.x_forwarded_for.as_str())?;
            upstream.insert_header("X-Forwarded-Proto", fwd.proto.as_str())?;
            if let Some(host) = fwd.host.as_ref().filter(|_| route.hosts_listed) {
                upstream.insert_header("X-Forwarded-Host", host.as_str())?;
            }
        }
        upstream.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        if !route.auth.forward_authorization {
            upstream.remove_header(&::http::header::AUTHORIZATION);
        }
        if let Some(name) = self.authn.browser.as_ref().map(|b| b.cookie_name()) {
            strip_cookie(upstream, name)?;
        }
        if let Some(principal) = &ctx.principal {
            if route.auth.identity_headers {
                self.inject_identity(upstream, &route, principal, ctx.credential)?;
            }
        }
        if !route.preserve_host {
            if let Some(host) = &ctx.upstream_host {
                upstream.insert_header("Host", host.as_str())?;
            }
        } else if upstream.headers.get(::http::header::HOST).is_none() {
            if let Some(a) = session.req_header().uri.authority() {
                upstream.insert_header("Host", a.as_str())?;
            }
        }
        Ok(())
    }

    /// Tell the client which request this was.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        // Version banners help an attacker more than a user.
        for name in DISCLOSURE_HEADERS {
            upstream_response.remove_header(*name);
        }
        upstream_response.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        if let Some(d) = &ctx.decision_header {
            upstream_response.insert_header("X-Phigate-Decision", d.as_str())?;
        }
        Ok(())
    }

    /// Errors after admission: a generic body with the request id, never the
    /// upstream's address or the error chain.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, kind) = classify(e);
        if let (Some(route), Some(kind)) = (&ctx.route, kind) {
            metrics()
                .upstream_errors
                .with_label_values(&[&route.pool.name, kind])
                .inc();
        }
        if code > 0 && session.response_written().is_none() {
            let close = code < 500;
            if respond::send_error(session, code, ctx.request_id.as_str(), close)
                .await
                .is_err()
            {
                tracing::debug!(request_id = %ctx.request_id, "client went away before the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Metrics and one JSON log line per request — no path, query or headers.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let route = route_label(ctx);
        let elapsed = ctx.started.elapsed();
        let m = metrics();
        m.requests
            .with_label_values(&[route, status_label(status)])
            .inc();
        m.latency
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        tracing::info!(
            request_id = %ctx.request_id,
            method = %session.req_header().method,
            route,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            rejection = ctx.rejection.unwrap_or(""),
            error = e.map(|e| e.etype().as_str()).unwrap_or(""),
            "request"
        );
    }

    /// What Pingora's own log lines say about a request (on retries and
    /// errors): only the request id. Its default names the path and query,
    /// which identify patients.
    fn request_summary(&self, _session: &Session, ctx: &RequestCtx) -> String {
        format!("request_id={}", ctx.request_id)
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Pingora's own error log includes the request summary (path and
        // query); our `logging` line carries what operators need instead.
        true
    }
}

/// Response headers that advertise the upstream's software and version.
const DISCLOSURE_HEADERS: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-runtime",
    "x-generator",
];

/// Maps an error to (status for the client, upstream error kind for metrics).
fn classify(e: &Error) -> (u16, Option<&'static str>) {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => (*code, None),
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ConnectTimedout | ReadTimedout | WriteTimedout => (504, Some("timeout")),
                ConnectRefused | ConnectNoRoute | ConnectError | BindError => {
                    (502, Some("connect"))
                }
                TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => {
                    (502, Some("tls"))
                }
                _ => (502, Some("protocol")),
            },
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => (0, None),
                ReadTimedout => (408, None),
                _ => (400, None),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, None),
        },
    }
}

/// A bounded status label: common codes exactly, the rest by class.
fn status_label(status: u16) -> &'static str {
    match status {
        0 => "0",
        200 => "200",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        414 => "414",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => status_class(other),
    }
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}
