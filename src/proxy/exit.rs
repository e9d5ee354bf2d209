//! The exit: every response leaves through [`exit`], which sees every
//! stage's result for the request. It finishes generated bodies, adds the
//! request id, the decision header and the route's HSTS, bounds
//! keep-alive, and records the request (metrics and one log line, whatever
//! the outcome) — the place the audit record will be written before
//! anything is released.
//!
//! A request whose client goes away before the exit is recorded when its
//! context is dropped, as `client_closed` (status label `499`).

use super::decide::DecisionCtx;
use super::respond;
use super::routes::{Hygiene, Route};
use super::ResponseBody;
use crate::authn::Principal;
use crate::http::RequestId;
use crate::metrics::metrics;
use crate::server::conn::ConnInfo;
use http::header::{HeaderValue, CONNECTION};
use http::{Method, Request, Response};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What the stages established about one request, for the exit.
pub struct RequestCtx {
    pub started: Instant,
    pub request_id: RequestId,
    pub method: Method,
    pub route: Option<Arc<Route>>,
    pub client_ip: Option<IpAddr>,
    pub principal: Option<Arc<Principal>>,
    pub decision: Option<DecisionCtx>,
    /// Why phigate answered itself, when it did.
    pub rejection: Option<&'static str>,
    /// The client's connection was TLS: to phigate, or (once admitted) to
    /// a trusted proxy that says so. Decides whether HSTS is sent.
    pub secure: bool,
    /// On a redacting route: what the response disclosed, filled in when
    /// its body ends (for the audit record).
    pub disclosure: Option<super::redaction::DisclosureSlot>,
    /// What the audit record needs, and its progress.
    pub audit: super::audit::AuditCtx,
    /// Set once the exit recorded the request.
    recorded: bool,
}

impl RequestCtx {
    pub fn start<B>(
        req: &Request<B>,
        conn: &ConnInfo,
        audit: Option<Arc<crate::audit::Audit>>,
    ) -> RequestCtx {
        let _ = conn.count_request();
        RequestCtx {
            started: Instant::now(),
            request_id: RequestId::from_client(req.headers().get("x-request-id")),
            method: req.method().clone(),
            route: None,
            client_ip: None,
            principal: None,
            decision: None,
            rejection: None,
            secure: conn.tls,
            disclosure: None,
            audit: super::audit::AuditCtx::start(audit, req.headers(), conn),
            recorded: false,
        }
    }

    fn route_label(&self) -> &str {
        self.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-")
    }

    /// Metrics and one JSON log line — no path, query, headers or patients.
    fn record(&mut self, status: u16, outcome: &'static str) {
        self.recorded = true;
        let elapsed = self.started.elapsed();
        match &self.route {
            Some(r) => r.metrics.observe(status, elapsed),
            None => {
                let m = metrics();
                m.requests
                    .with_label_values(&["-", status_label(status)])
                    .inc();
                m.latency
                    .with_label_values(&["-"])
                    .observe(elapsed.as_secs_f64());
            }
        }
        if !tracing::enabled!(tracing::Level::INFO) {
            return;
        }
        let route = self.route_label();
        let d = self.decision.as_ref();
        let policies = d
            .and_then(|d| d.decision.as_ref())
            .map(|d| d.determining().join(","))
            .unwrap_or_default();
        tracing::info!(
            request_id = %self.request_id,
            method = %self.method,
            route = %route,
            status,
            outcome,
            latency_ms = (elapsed.as_micros() as f64) / 1000.0,
            rejection = self.rejection.unwrap_or(""),
            principal = self.principal.as_ref().map(|p| p.id.as_str()).unwrap_or(""),
            decision = d.map(|d| d.outcome).unwrap_or(""),
            decision_reason = d.map(|d| d.reason).unwrap_or(""),
            policies = %policies,
            mode = d.map(|d| d.mode.as_str()).unwrap_or(""),
            policy_version = d.and_then(|d| d.snapshot.as_deref()).map(|s| s.version()).unwrap_or(""),
            entities_version = d
                .and_then(|d| d.snapshot.as_deref())
                .map(|s| s.entities_version.as_str())
                .unwrap_or(""),
            break_glass = d.is_some_and(|d| d.break_glass.is_some()
                || d.decision.as_ref().is_some_and(|d| d.break_glass)),
            "request"
        );
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        super::audit::abandoned(self);
        if !self.recorded {
            self.record(499, "client_closed");
        }
    }
}

/// Every response passes here.
pub fn exit(
    ctx: &mut RequestCtx,
    mut resp: Response<ResponseBody>,
    conn: &ConnInfo,
    hygiene: &Hygiene,
) -> Response<ResponseBody> {
    respond::finish(&mut resp, ctx.request_id.as_str());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(ctx.request_id.as_str()) {
        h.insert("x-request-id", v);
    }
    if let Some(v) = ctx
        .decision
        .as_ref()
        .and_then(|d| d.header.as_deref())
        .and_then(|d| HeaderValue::from_str(d).ok())
    {
        h.insert("x-phigate-decision", v);
    }
    if let Some(route) = &ctx.route {
        super::hsts::apply(h, route.hsts.as_ref(), ctx.secure);
    }
    // HTTP/1.1 keep-alive is bounded by a request count, and ends after an
    // upgrade request that was not upgraded (its bytes are no longer
    // followed, so no later request on it could be judged).
    if let Some(heads) = &conn.heads {
        let served = conn.requests.load(std::sync::atomic::Ordering::Relaxed);
        let unfollowed = resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
            && heads.lock().map(|t| t.is_done()).unwrap_or(true);
        if served >= hygiene.max_requests_per_connection || unfollowed {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
    let outcome = match ctx.rejection {
        Some("") => "answered",
        Some(reason) => {
            metrics().rejections.with_label_values(&[reason]).inc();
            "refused"
        }
        None => "forwarded",
    };
    ctx.record(resp.status().as_u16(), outcome);
    resp
}

/// The status labels: common codes exactly, the rest by class.
const STATUS_LABELS: [&str; 24] = [
    "200", "204", "301", "302", "304", "400", "401", "403", "404", "405", "408", "413", "414",
    "431", "499", "500", "502", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx",
];

/// The index of `status`'s label in [`STATUS_LABELS`].
fn status_index(status: u16) -> usize {
    let exact = match status {
        200 => Some(0),
        204 => Some(1),
        301 => Some(2),
        302 => Some(3),
        304 => Some(4),
        400 => Some(5),
        401 => Some(6),
        403 => Some(7),
        404 => Some(8),
        405 => Some(9),
        408 => Some(10),
        413 => Some(11),
        414 => Some(12),
        431 => Some(13),
        499 => Some(14),
        500 => Some(15),
        502 => Some(16),
        503 => Some(17),
        504 => Some(18),
        _ => None,
    };
    exact.unwrap_or(match status / 100 {
        1 => 19,
        2 => 20,
        3 => 21,
        4 => 22,
        _ => 23,
    })
}

/// A bounded status label.
fn status_label(status: u16) -> &'static str {
    STATUS_LABELS[status_index(status)]
}

/// A route's request counters and latency histogram, resolved once (a
/// labelled lookup hashes its labels on every call).
pub struct RouteMetrics {
    route: String,
    latency: prometheus::Histogram,
    by_status: [std::sync::OnceLock<prometheus::IntCounter>; 24],
}

impl RouteMetrics {
    pub fn new(route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_string(),
            latency: metrics().latency.with_label_values(&[route]),
            by_status: Default::default(),
        }
    }

    fn observe(&self, status: u16, elapsed: std::time::Duration) {
        let i = status_index(status);
        self.by_status[i]
            .get_or_init(|| {
                metrics()
                    .requests
                    .with_label_values(&[&self.route, STATUS_LABELS[i]])
            })
            .inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_label() {
        for (status, label) in [
            (200, "200"),
            (499, "499"),
            (418, "4xx"),
            (101, "1xx"),
            (599, "5xx"),
            (206, "2xx"),
        ] {
            assert_eq!(status_label(status), label);
        }
    }
}
