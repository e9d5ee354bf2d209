//! Audit glue: the access record written before the upstream is asked and
//! awaited before the response head leaves, and the outcome record written
//! when the body ends (or is cut, or the client goes away).
//!
//! Writing the access record before forwarding lets its group commit
//! overlap the upstream's round trip; the exit waits for whatever is left.
//! A response whose record cannot be made durable is withheld: 503
//! `audit_unavailable`, never the upstream's body.

use super::body::{BoxError, ResponseBody};
use super::exit::RequestCtx;
use super::respond;
use crate::audit::config::QueryRecord;
use crate::audit::event::{
    bounded, query_names, Actor, AuditEvent, DecisionInfo, EventKind, Outcome, RedactionInfo,
    RequestInfo, Source,
};
use crate::audit::{Audit, Ticket};
use crate::metrics::metrics;
use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What the audit record needs beyond the stages' results, read from the
/// request as it arrives.
#[derive(Default)]
pub struct AuditCtx {
    pub audit: Option<Arc<Audit>>,
    pub user_agent: Option<String>,
    pub trace_id: Option<String>,
    pub port: Option<u16>,
    pub cert_subject: Option<String>,
    pub device_id: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub purpose_of_use: Option<String>,
    /// The request is for a path that needs authentication: an access to
    /// PHI, recorded whatever its outcome. (Public paths, unrouted requests
    /// and hygiene refusals are in the log and metrics, not the trail.)
    pub phi: bool,
    /// The access record, once queued: its id and durability.
    pub access_id: Option<String>,
    pub ticket: Option<Ticket>,
    /// The outcome record was written (or the access record was complete).
    pub closed: bool,
    /// The access record is already durable (awaited before a write was
    /// forwarded).
    pub durable: bool,
}

impl AuditCtx {
    pub fn start(
        audit: Option<Arc<Audit>>,
        h: &http::HeaderMap,
        conn: &crate::server::conn::ConnInfo,
    ) -> AuditCtx {
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(bounded);
        let trace_id = text("traceparent")
            .and_then(|t| t.split('-').nth(1).map(str::to_string))
            .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()));
        if audit.is_none() {
            return AuditCtx::default();
        }
        let cert = conn.client_cert.as_ref();
        AuditCtx {
            audit,
            user_agent: text("user-agent"),
            trace_id,
            port: Some(conn.peer.port()),
            cert_subject: cert.and_then(|c| c.subject_cn.as_deref().map(bounded)),
            device_id: cert.map(|c| c.fingerprint.iter().map(|b| format!("{b:02x}")).collect()),
            ..Default::default()
        }
    }

    /// The path and query as the audit records them.
    pub fn set_target(&mut self, path: &str, query: Option<&str>) {
        self.path = Some(bounded(path));
        let mode = self.audit.as_ref().map_or(QueryRecord::Names, |a| a.query);
        self.query = query.filter(|q| !q.is_empty()).and_then(|q| match mode {
            QueryRecord::Names => Some(query_names(q)),
            QueryRecord::Full => Some(bounded(q)),
            QueryRecord::None => None,
        });
    }
}

/// The access record of a request about to go upstream, queued now.
/// `Err` is the refusal when the spool cannot take records.
pub fn before_upstream(ctx: &mut RequestCtx) -> Result<(), respond::Stop> {
    let Some(audit) = ctx.audit.audit.clone() else {
        return Ok(());
    };
    if !audit.healthy() {
        metrics().audit.withheld.inc();
        return Err(respond::Stop::new(unavailable(), "audit_unavailable"));
    }
    let mut ev = event(ctx, EventKind::Access, Outcome::Allowed);
    ev.outcome_follows = true;
    ctx.audit.access_id = Some(ev.id.clone());
    ctx.audit.ticket = Some(audit.record(&ev));
    Ok(())
}

fn unavailable() -> Response<ResponseBody> {
    respond::error_with(503, &[(http::header::RETRY_AFTER, "1".into())])
}

/// The longest a response waits for its record: a disk that hangs (a
/// failing device, a stuck network filesystem) withholds responses with
/// 503 rather than holding every request forever.
const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn wait(t: Ticket) -> Result<u64, ()> {
    match tokio::time::timeout(AUDIT_WAIT, t.durable()).await {
        Ok(Ok(seq)) => Ok(seq),
        Ok(Err(_)) => Err(()),
        Err(_) => {
            metrics()
                .audit
                .spool_errors
                .with_label_values(&["timeout"])
                .inc();
            Err(())
        }
    }
}

/// A request that changes something upstream waits for its access record
/// before it is forwarded: the change must not happen unrecorded even when
/// the client then gets a 503.
pub async fn durable_before_forwarding(ctx: &mut RequestCtx) -> Result<(), respond::Stop> {
    let Some(ticket) = ctx.audit.ticket.take() else {
        return Ok(());
    };
    if wait(ticket).await.is_err() {
        metrics().audit.withheld.inc();
        return Err(respond::Stop::new(unavailable(), "audit_unavailable"));
    }
    ctx.audit.durable = true;
    Ok(())
}

/// Waits for the access record before the head leaves; writes the record
/// of a request phigate answered itself; arranges the outcome record.
pub async fn at_exit(ctx: &mut RequestCtx, resp: Response<ResponseBody>) -> Response<ResponseBody> {
    let Some(audit) = ctx.audit.audit.clone() else {
        return resp;
    };
    let ticket = ctx.audit.ticket.take();
    if ticket.is_none() && !ctx.audit.durable {
        if !ctx.audit.phi && ctx.principal.is_none() {
            return resp;
        }
        // Answered by phigate (a refusal, a denial, a failed sign-in): one
        // complete record.
        let outcome = outcome_of(ctx, resp.status().as_u16());
        let mut ev = event(ctx, EventKind::Access, outcome);
        ev.status = Some(resp.status().as_u16());
        ev.latency_ms = Some(ctx.started.elapsed().as_millis() as u64);
        ctx.audit.closed = true;
        if wait(audit.record(&ev)).await.is_err() {
            // phigate's own answer carries no PHI; it leaves, counted.
            metrics()
                .audit
                .spool_errors
                .with_label_values(&["refusal_record"])
                .inc();
        }
        return resp;
    }
    let durable = match ticket {
        Some(t) => wait(t).await.is_ok(),
        // Made durable before a write was forwarded.
        None => true,
    };
    if !durable {
        metrics().audit.withheld.inc();
        ctx.rejection = Some("audit_unavailable");
        ctx.audit.closed = true;
        return unavailable();
    }
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let mut outcome = event(ctx, EventKind::Outcome, Outcome::Success);
    outcome.access_id = ctx.audit.access_id.clone();
    let tail = OutcomeTail {
        audit,
        event: Some(outcome),
        disclosure: ctx.disclosure.clone(),
        rejection: ctx.rejection,
        status,
        started: ctx.started,
        bytes: 0,
    };
    ctx.audit.closed = true;
    if let ResponseBody::Full(b) = &body {
        let mut tail = tail;
        tail.bytes = b.as_ref().map_or(0, |b| b.len() as u64);
        tail.finish(None);
        return Response::from_parts(parts, body);
    }
    if body.is_end_stream() {
        let mut tail = tail;
        tail.finish(None);
        return Response::from_parts(parts, body);
    }
    Response::from_parts(
        parts,
        ResponseBody::Audited(Box::new(AuditedBody { inner: body, tail })),
    )
}

/// When the context goes without its outcome (the client left while the
/// record was awaited): say so.
pub fn abandoned(ctx: &mut RequestCtx) {
    if ctx.audit.closed {
        return;
    }
    let (Some(audit), Some(_)) = (ctx.audit.audit.clone(), ctx.audit.access_id.as_ref()) else {
        return;
    };
    ctx.audit.closed = true;
    let mut ev = event(ctx, EventKind::Outcome, Outcome::ClientClosed);
    ev.access_id = ctx.audit.access_id.clone();
    audit.record_detached(&ev);
}

/// The named outcome of a request phigate answered itself.
fn outcome_of(ctx: &RequestCtx, status: u16) -> Outcome {
    match ctx.rejection {
        None | Some("") => {
            if status < 400 {
                Outcome::Success
            } else {
                Outcome::Refused
            }
        }
        Some(r) => reason_outcome(r),
    }
}

/// A refusal's reason as a named outcome.
pub fn reason_outcome(reason: &str) -> Outcome {
    match reason {
        "unauthenticated"
        | "sign_in_redirect"
        | "sign_in_rate_limited"
        | "identity_provider_unavailable" => Outcome::AuthenticationFailed,
        "forbidden"
        | "record_withheld"
        | "authz_bad_request"
        | "authz_unavailable"
        | "precondition_failed" => Outcome::Denied,
        "step_up_required" | "step_up_redirect" => Outcome::StepUpRequired,
        "upstream_failed" | "upstream_timeout" | "no_healthy_origin" | "no_client" => {
            Outcome::UpstreamFailed
        }
        "audit_unavailable" => Outcome::AuditDegraded,
        r if r.starts_with("redaction") || r.starts_with("response_") => Outcome::RedactionFailed,
        _ => Outcome::Refused,
    }
}

/// The event for `ctx` as it stands.
fn event(ctx: &RequestCtx, kind: EventKind, outcome: Outcome) -> AuditEvent {
    let mut ev = AuditEvent::new(kind, outcome);
    ev.reason = ctx.rejection.filter(|r| !r.is_empty()).map(str::to_string);
    let a = &ctx.audit;
    ev.actor = ctx.principal.as_ref().map(|p| Actor {
        user_id: p.id.clone(),
        issuer: p.issuer.clone(),
        kind: match p.kind {
            crate::authn::principal::PrincipalKind::User => "user".into(),
            crate::authn::principal::PrincipalKind::Service => "service".into(),
        },
        name: p.display_name.as_deref().map(bounded),
        roles: p.roles.clone(),
        organization: p.organization.clone(),
        fhir_user: p.fhir_user.clone(),
        session_hash: None,
        auth_method: p.method.as_str().to_string(),
        mfa: p.mfa,
    });
    ev.source = Some(Source {
        ip: ctx.client_ip.map(|ip| ip.to_string()),
        port: a.port,
        user_agent: a.user_agent.clone(),
        cert_subject: a.cert_subject.clone(),
        device_id: a.device_id.clone(),
    });
    let d = ctx.decision.as_ref();
    let decision = d.and_then(|d| d.decision.as_deref());
    let accesses = decision.map(|d| d.accesses.as_slice()).unwrap_or(&[]);
    let mut resources: Vec<String> = accesses.iter().map(|a| a.resource.clone()).collect();
    resources.dedup();
    ev.request = Some(RequestInfo {
        request_id: ctx.request_id.as_str().to_string(),
        client_request_id: ctx
            .request_id
            .was_client_supplied()
            .then(|| ctx.request_id.as_str().to_string()),
        trace_id: a.trace_id.clone(),
        route: ctx.route.as_ref().map(|r| r.name.clone()),
        method: ctx.method.as_str().to_string(),
        path: a.path.clone(),
        query: a.query.clone(),
        operation: accesses.first().map(|a| a.action.to_string()),
        resources,
    });
    ev.patients = decision
        .map(|d| d.patients().into_iter().map(str::to_string).collect())
        .unwrap_or_default();
    ev.purpose_of_use = a.purpose_of_use.clone();
    ev.justification = d.and_then(|d| d.break_glass.as_deref()).map(bounded);
    ev.break_glass = decision.is_some_and(|d| d.break_glass);
    ev.decision = d.map(|d| DecisionInfo {
        allowed: decision.is_some_and(|x| x.allowed),
        outcome: d.outcome.to_string(),
        reason: d.reason.to_string(),
        policies: decision
            .map(|x| x.determining().into_iter().map(str::to_string).collect())
            .unwrap_or_default(),
        policy_version: d.snapshot.as_deref().map(|s| s.version().to_string()),
        entities_version: d.snapshot.as_deref().map(|s| s.entities_version.clone()),
        mode: d.mode.as_str().to_string(),
    });
    ev
}

/// Writes the outcome record when the response body ends.
pub struct OutcomeTail {
    audit: Arc<Audit>,
    event: Option<AuditEvent>,
    disclosure: Option<super::redaction::DisclosureSlot>,
    rejection: Option<&'static str>,
    status: u16,
    started: std::time::Instant,
    bytes: u64,
}

impl OutcomeTail {
    /// `error`: why the body was cut, if it was.
    fn finish(&mut self, error: Option<Outcome>) {
        let Some(mut ev) = self.event.take() else {
            return;
        };
        ev.outcome = match (error, self.rejection.filter(|r| !r.is_empty())) {
            (Some(o), _) => o,
            (None, Some(r)) => reason_outcome(r),
            (None, None) if self.status >= 500 => Outcome::UpstreamFailed,
            (None, None) => Outcome::Success,
        };
        ev.status = Some(self.status);
        ev.bytes = Some(self.bytes);
        ev.latency_ms = Some(self.started.elapsed().as_millis() as u64);
        let nothing_left = self.status >= 400 || error.is_some_and(|o| o != Outcome::ClientClosed);
        if let Some(slot) = &self.disclosure {
            // A redacting route: what was actually shown (up to a cut).
            let shown = slot.lock().ok().and_then(|s| s.clone());
            match shown {
                // Nothing tracked (a legacy JSON document, or every record
                // removed): the request's patients stand, over-reporting
                // rather than under.
                Some(d) => {
                    if d.patients.is_empty() && d.records == 0 {
                        ev.patients_undetermined = ev.patients.is_empty() && !nothing_left;
                    } else {
                        ev.patients = d.patients.iter().cloned().collect();
                    }
                    ev.redaction = Some(RedactionInfo {
                        records_shown: d.records,
                        records_removed: d.removed.iter().cloned().collect(),
                        values_redacted: d
                            .redacted
                            .by_class
                            .iter()
                            .map(|(k, v)| (k.to_string(), *v))
                            .collect(),
                    });
                }
                // Refused before anything was shown (a withheld single
                // record, a body that could not be redacted from the
                // start): nothing disclosed.
                None => {
                    ev.patients.clear();
                    ev.redaction = Some(RedactionInfo::default());
                }
            }
        } else if ev.patients.is_empty() && !nothing_left {
            // No response phase: whose records a search returned is not
            // known here.
            ev.patients_undetermined = true;
        }
        self.audit.record_detached(&ev);
    }
}

/// A response body that writes its outcome record when it ends.
pub struct AuditedBody {
    inner: ResponseBody,
    tail: OutcomeTail,
}

impl Body for AuditedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.tail.bytes += d.len() as u64;
                }
                // hyper stops polling a body that says it has ended.
                if this.inner.is_end_stream() {
                    this.tail.finish(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let outcome = if e.is::<super::redaction::RedactionAborted>() {
                    Outcome::RedactionFailed
                } else {
                    Outcome::UpstreamFailed
                };
                this.tail.finish(Some(outcome));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.tail.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        // Dropped before its end: the client went away (or the server
        // stopped) mid-response. The inner body goes first, so a redacted
        // one leaves what it had shown for the record.
        drop(std::mem::replace(&mut self.inner, ResponseBody::empty()));
        self.tail.finish(Some(Outcome::ClientClosed));
    }
}
