//! The pipeline: one service that takes a request through the stages in
//! order and lets every response out through one exit.
//!
//! ```text
//! admit ─▶ identify ─▶ decide ─▶ upstream ─▶ (response phase) ─▶ exit
//! ```
//!
//! Each stage is a file and hands the next a small typed result
//! ([`Admission`], [`Identity`], [`DecisionCtx`]); none re-derives what an
//! earlier one decided. The service owns no policy: hygiene, authentication
//! and authorization live in their own modules. It takes any request body,
//! so tests drive it in-process as well as through sockets.

pub mod admit;
pub mod audit;
pub mod body;
pub mod client;
pub mod config;
pub mod decide;
mod endpoints;
pub mod exit;
pub mod hsts;
pub mod identify;
mod identity;
pub mod pool;
pub mod redaction;
pub mod respond;
pub mod router;
pub mod routes;
pub mod stored;
pub mod upstream;

#[cfg(test)]
mod stored_tests;
#[cfg(test)]
mod tests;

pub use admit::{Admission, Admitted, Rejection, Reserved};
pub use body::ResponseBody;
pub use decide::{DecisionCtx, Declared, MAX_DECISION_BODY};
pub use exit::RequestCtx;
pub use identify::Identity;
pub use pool::{Pool, PoolError};
pub use respond::{error_body, error_code};
pub use router::{request_host, routing_view, Router};
pub use routes::Route;
pub use upstream::Upstreams;

use crate::authn::Authenticator;
use crate::authz::Authorization;
use crate::http::headers_to_strip;
use crate::server::conn::ConnInfo;
use body::{BodyOutcome, BoxError, UpstreamBody};
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION};
use http::{Request, Response};
use http_body_util::BodyExt;
use respond::Stop;
use routes::Hygiene;
use std::sync::Arc;

/// The stages' shared state: routes, hygiene, authentication and
/// authorization. One per process; every worker reads it.
pub struct Stages {
    router: Router<Arc<Route>>,
    hygiene: Hygiene,
    pub authn: Arc<Authenticator>,
    pub authz: Arc<Authorization>,
    identity: identity::IdentityHeaders,
    browser_limits: crate::authn::session::SessionLimits,
    pools: Vec<Arc<Pool>>,
    /// The audit trail every request is recorded in (`None` only where no
    /// route carries PHI).
    pub audit: Option<Arc<crate::audit::Audit>>,
}

impl Stages {
    /// Builds the stages from validated config; resolves origins.
    pub fn from_config(
        config: config::PipelineConfig<'_>,
        authn: Arc<Authenticator>,
        authz: Arc<Authorization>,
        audit: Option<Arc<crate::audit::Audit>>,
    ) -> Result<Stages, PoolError> {
        let (router, pools) = routes::build(&config)?;
        Ok(Stages {
            router,
            hygiene: Hygiene::from_config(config.hygiene, config.identity_headers),
            authn,
            authz,
            identity: identity::IdentityHeaders::from_config(config.identity_headers)?,
            browser_limits: crate::authn::RouteAuth::from_config(
                "",
                &crate::authn::config::RouteAuthConfig::default(),
                config.browser,
            )
            .limits,
            pools,
            audit,
        })
    }

    /// Every upstream pool, in the order routes index them.
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.pools
    }
}

/// The pipeline as one worker runs it: the shared stages and this worker's
/// upstream clients.
pub struct Pipeline<B> {
    pub stages: Arc<Stages>,
    upstreams: Upstreams<B>,
}

impl<B> Pipeline<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    pub fn new(stages: Arc<Stages>) -> Pipeline<B> {
        let upstreams = Upstreams::new(&stages.pools);
        Pipeline { stages, upstreams }
    }

    /// Serves one request that arrived on `conn`.
    pub async fn handle(&self, req: Request<B>, conn: &ConnInfo) -> Response<ResponseBody> {
        let mut ctx = RequestCtx::start(&req, conn, self.stages.audit.clone());
        let resp = match self.journey(req, conn, &mut ctx).await {
            Ok(resp) => resp,
            Err(stop) => {
                ctx.rejection = Some(stop.reason);
                *stop.response
            }
        };
        // Nothing leaves before its access record is durable.
        let resp = audit::at_exit(&mut ctx, resp).await;
        exit::exit(&mut ctx, resp, conn, &self.stages.hygiene)
    }

    async fn journey(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
        ctx: &mut RequestCtx,
    ) -> Result<Response<ResponseBody>, Stop> {
        let s = &*self.stages;
        let (mut head, mut body) = req.into_parts();

        // Admission: hygiene and routing.
        let raw = match conn.next_head() {
            Ok(raw) => raw,
            Err(_unfollowed) => {
                let mut r = respond::error(400);
                respond::close(&mut r);
                return Err(Stop::new(r, "unfollowable_connection"));
            }
        };
        let admission = match admit::admit(&s.hygiene, &s.router, &head, raw.as_ref(), conn) {
            Ok(Admitted::Route(a)) => a,
            Ok(Admitted::Reserved(which, client_ip)) => {
                ctx.client_ip = Some(client_ip);
                let (resp, refusal) = endpoints::serve(
                    &s.authn,
                    s.browser_limits,
                    which,
                    &head,
                    client_ip,
                    conn.tls,
                    ctx.request_id.as_str(),
                )
                .await;
                return Err(Stop::new(resp, refusal.unwrap_or("")));
            }
            Err((rejection, route)) => {
                ctx.route = route;
                let mut r = respond::error(rejection.status);
                if rejection.close {
                    respond::close(&mut r);
                }
                return Err(Stop::new(r, rejection.reason));
            }
        };
        let route = admission.route.clone();
        ctx.route = Some(route.clone());
        ctx.client_ip = Some(admission.client_ip);
        ctx.secure = admission.forwarded.proto == "https";
        ctx.audit
            .set_target(admission.path.path(), admission.path.query());

        // Client-sent identity, hop-by-hop and forwarding headers go now,
        // before any later stage could read them; declarations are read first.
        let public = route.auth.is_public(admission.path.path());
        ctx.audit.phi = !public;
        let declared = if public {
            Declared::default()
        } else {
            Declared::from_headers(&head.headers)
        };
        ctx.audit.purpose_of_use = declared.purpose_of_use.clone();
        let wants_upgrade = route.websocket && crate::http::is_websocket_upgrade(&head.headers);
        for name in headers_to_strip(&head.headers, &s.hygiene.identity, route.websocket) {
            head.headers.remove(name);
        }
        if wants_upgrade {
            // Exactly this: the client's own tokens could nominate phigate's
            // headers for removal further along.
            head.headers.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
        }

        // Authentication: who is asking? (Boxed: its future is large and
        // public paths never build it.)
        let identity = if public {
            None
        } else {
            Some(
                Box::pin(identify::identify(
                    &s.authn,
                    &head,
                    &admission,
                    conn.client_cert.as_ref(),
                    ctx.request_id.as_str(),
                ))
                .await?,
            )
        };
        ctx.principal = identity.as_ref().map(|i| i.principal.clone());

        // Authorization: may they ask this? (Public paths carry no principal.)
        let mut body_in_hand = None;
        let mut pre_read = None;
        if let Some(identity) = &identity {
            if decide::body_needed(&route, &head)? {
                body_in_hand =
                    Some(read_decision_body(&mut body, &route, s.hygiene.body_timeout).await?);
            }
            let mut input = decide::DecideInput {
                head: &head,
                admission: &admission,
                identity,
                declared: &declared,
                body: body_in_hand.as_deref(),
                device_trusted: conn.client_cert.is_some(),
                request_id: ctx.request_id.as_str(),
                stored: None,
            };
            // Writes by id are decided on the records they change too.
            let reads = input.stored_reads();
            if !reads.is_empty() {
                let mut read_head = stored::read_head(&head);
                self.outbound_headers(&mut read_head, &admission, Some(identity), ctx)?;
                let read = stored::read(
                    &self.upstreams,
                    &read_head,
                    &admission,
                    ctx.request_id.as_str(),
                    &reads,
                )
                .await;
                match read {
                    Ok(read) => pre_read = Some(read),
                    // A shadow route decides without it (the write fans out).
                    Err(_)
                        if route
                            .authz
                            .as_ref()
                            .is_some_and(|a| a.mode == crate::authz::EnforcementMode::Shadow) => {}
                    Err(stop) => return Err(stop),
                }
                input.stored = pre_read.as_ref().map(|r| &r.records);
            }
            match Box::pin(decide::decide(&s.authz, &s.authn, input)).await {
                Ok(d) => ctx.decision = Some(d),
                Err((stop, d)) => {
                    ctx.decision = Some(d);
                    return Err(stop);
                }
            }
        }
        // The write goes where its record was read, and only onto the
        // version it was decided on (a shadow route changes nothing).
        let pre_origin = pre_read.as_ref().map(|r| r.origin);
        let enforcing = route
            .authz
            .as_ref()
            .is_some_and(|a| a.mode == crate::authz::EnforcementMode::Enforce);
        let versioned = matches!(head.method, http::Method::PUT | http::Method::PATCH);
        if let Some(etag) = pre_read
            .and_then(|r| r.etag)
            .filter(|_| enforcing && versioned)
        {
            // The client's own condition must admit the version decided
            // on (else the write could land on a later one); then exactly
            // that version is asked for.
            let admits = head
                .headers
                .get(http::header::IF_MATCH)
                .is_none_or(|v| stored::if_match_admits(v.as_bytes(), etag.as_bytes()));
            if !admits {
                return Err(Stop::new(respond::error(412), "precondition_failed"));
            }
            head.headers.insert(http::header::IF_MATCH, etag);
        }

        let read = matches!(head.method, http::Method::GET | http::Method::HEAD);
        // The response phase: what the upstream is asked for on a
        // redacting route, and the judge of what may leave.
        let phase = match self.response_phase(&route, &admission, ctx) {
            Some((red, judge, resource_type, action)) => {
                redaction::prepare_request(
                    red,
                    &mut head,
                    admission.path.query(),
                    &judge,
                    &redaction::Asked {
                        action,
                        resource_type: &resource_type,
                    },
                    route.denial_style,
                )?;
                Some((red, judge, resource_type))
            }
            None => None,
        };

        // Upstream: what it sees of the request.
        self.outbound_headers(&mut head, &admission, identity.as_ref(), ctx)?;
        // The access record goes to the spool now; its commit overlaps the
        // upstream's round trip and the exit awaits it.
        if identity.is_some() {
            audit::before_upstream(ctx)?;
            if !matches!(
                head.method,
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            ) {
                audit::durable_before_forwarding(ctx).await?;
            }
        }
        let upgrade = wants_upgrade
            .then(|| head.extensions.remove::<hyper::upgrade::OnUpgrade>())
            .flatten();
        let (body, outcome) = match body_in_hand {
            Some(b) => (UpstreamBody::Full(Some(b)), None),
            None => match body {
                body if body.is_end_stream() => (UpstreamBody::Empty, None),
                body => {
                    let outcome = Arc::new(BodyOutcome::default());
                    let b = UpstreamBody::stream(
                        body,
                        route.max_body,
                        s.hygiene.body_timeout,
                        outcome.clone(),
                    );
                    (b, Some(outcome))
                }
            },
        };
        let out = upstream::Outbound {
            admission: &admission,
            request_id: ctx.request_id.as_str(),
            held: upgrade.as_ref().and(conn.held.clone()),
            upgrade,
            body_outcome: outcome,
            tunnel_idle: s.hygiene.tunnel_idle,
            target: None,
            origin: pre_origin,
        };
        let mut resp = upstream::forward(&self.upstreams, head, body, out).await?;
        // Only phigate sets its session cookie: an upstream that tries
        // (session fixation) is ignored.
        if let Some(name) = s.authn.browser.as_ref().map(|b| b.cookie_name()) {
            identity::strip_set_cookie(resp.headers_mut(), name);
        }
        let idle = route.pool.read_timeout;
        let Some((red, judge, resource_type)) = phase else {
            return Ok(resp.map(|b| ResponseBody::upstream(b, idle)));
        };
        let counts = judge.discloses(crate::redact::classes::COUNT, &resource_type);
        let public_base = admission
            .forwarded
            .host
            .as_deref()
            .map(|host| format!("{}://{host}{}", admission.forwarded.proto, red.base_path()));
        let slot = redaction::DisclosureSlot::default();
        ctx.disclosure = Some(slot.clone());
        redaction::respond(
            redaction::ResponsePhase {
                redaction: red,
                judge,
                counts,
                public_base,
                route: &route.name,
                style: route.denial_style,
                idle,
                read,
                slot,
                resource_type,
            },
            resp,
        )
        .await
    }

    /// The redaction and judge for this request's answer: on a redacting
    /// route in enforce mode, for a principal whose request was decided.
    fn response_phase<'r>(
        &self,
        route: &'r Route,
        _admission: &Admission,
        ctx: &RequestCtx,
    ) -> Option<(
        &'r redaction::RouteRedaction,
        redaction::CedarJudge,
        String,
        &'static str,
    )> {
        let red = route.redaction.as_ref()?;
        let decision = ctx.decision.as_ref()?;
        if decision.mode != crate::authz::EnforcementMode::Enforce {
            return None;
        }
        let loaded = decision.loaded.clone()?;
        let resource_type = decision
            .decision
            .as_ref()
            .and_then(|d| d.accesses.first())
            .map(|a| {
                a.resource
                    .split_once('/')
                    .map_or(a.resource.as_str(), |(t, _)| t)
                    .to_string()
            })
            .unwrap_or_default();
        let action = decision
            .decision
            .as_ref()
            .and_then(|d| d.accesses.first())
            .map_or("", |a| a.action);
        let judge = redaction::CedarJudge::new(self.stages.authz.clone(), loaded);
        Some((red, judge, resource_type, action))
    }

    /// phigate's forwarding headers, the request id, and the principal's
    /// identity; the client's `Authorization` and phigate's cookie removed.
    fn outbound_headers(
        &self,
        head: &mut http::request::Parts,
        admission: &Admission,
        identity: Option<&Identity>,
        ctx: &RequestCtx,
    ) -> Result<(), Stop> {
        let s = &*self.stages;
        let route = &admission.route;
        let h = &mut head.headers;
        let fwd = &admission.forwarded;
        let value = |v: &str| HeaderValue::from_str(v).ok();
        if let Some(v) = value(&fwd.x_forwarded_for) {
            h.insert("x-forwarded-for", v);
        }
        h.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if fwd.proto == "https" {
                "https"
            } else {
                "http"
            }),
        );
        if let Some(v) = fwd
            .host
            .as_deref()
            .filter(|_| route.hosts_listed)
            .and_then(value)
        {
            h.insert("x-forwarded-host", v);
        }
        if let Some(v) = value(ctx.request_id.as_str()) {
            h.insert("x-request-id", v);
        }
        if !route.auth.forward_authorization {
            h.remove(AUTHORIZATION);
        }
        if let Some(name) = s.authn.browser.as_ref().map(|b| b.cookie_name()) {
            identity::strip_cookie(h, name);
        }
        if let Some(id) = identity.filter(|_| route.auth.identity_headers) {
            // Never forward an authenticated request without its assertion.
            s.identity
                .inject(&s.authn, h, route, &id.principal, id.credential, unix_now())
                .map_err(|_| Stop::new(respond::error(500), "assertion_signing_failed"))?;
        }
        Ok(())
    }
}

/// Reads the whole request body (≤ [`MAX_DECISION_BODY`]) so the decision
/// can see it; it is then sent upstream from memory. A body found too large
/// while reading cannot be replayed, so it is refused.
async fn read_decision_body<B>(
    body: &mut B,
    route: &Route,
    idle: std::time::Duration,
) -> Result<Bytes, Stop>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                let mut r = respond::error(408);
                respond::close(&mut r);
                return Err(Stop::new(r, "client_body_timeout"));
            }
        };
        let Ok(frame) = frame else {
            let mut r = respond::error(400);
            respond::close(&mut r);
            return Err(Stop::new(r, "client_body_error"));
        };
        if let Some(d) = frame.data_ref() {
            buf.extend_from_slice(d);
            if buf.len() as u64 > route.max_body {
                let mut r = respond::error(413);
                respond::close(&mut r);
                return Err(Stop::new(r, "body_too_large"));
            }
            if buf.len() > MAX_DECISION_BODY {
                let mut stop = decide::undecidable_body(route);
                respond::close(&mut stop.response);
                return Err(stop);
            }
        }
    }
    Ok(buf.freeze())
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
