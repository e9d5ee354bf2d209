//! Prometheus metrics for the data plane, scraped from the admin plane.
//!
//! One process-wide registry, shared by every worker runtime; every
//! replica exposes the same families. Labels are
//! bounded (route names, upstream names, fixed reasons) — never paths, ids or
//! anything a client controls.

use once_cell::sync::Lazy;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route (or `-` when none matched) and status.
    pub requests: IntCounterVec,
    /// Time from request header to response end, by route.
    pub latency: HistogramVec,
    /// Requests rejected before reaching an upstream, by reason.
    pub rejections: IntCounterVec,
    /// Upstream failures by upstream pool and kind (connect, timeout, ...).
    pub upstream_errors: IntCounterVec,
    /// 1 if an origin passes its health check, by upstream and origin index.
    pub upstream_healthy: IntGaugeVec,
    /// Completed TLS handshakes on listeners, by negotiated version.
    pub tls_handshakes: IntCounterVec,
    /// Certificate reload attempts by result (`reloaded`, `rejected`).
    pub cert_reloads: IntCounterVec,
    /// 1 once listeners and upstream pools are up.
    pub ready: IntGauge,
    /// Authentication events by kind and reason.
    pub auth_events: IntCounterVec,
    /// Authorization decisions by route, outcome and reason.
    pub authz_decisions: IntCounterVec,
    /// Policy reloads by trigger and result.
    pub policy_reloads: IntCounterVec,
    /// 1 for the policy version in force.
    pub policy_version: IntGaugeVec,
    /// Client connections open now.
    pub connections_open: IntGauge,
    /// Connection-level events: refused by a limit, timed out, closed by
    /// the HTTP parser, accept errors (labels are fixed names).
    pub connection_events: IntCounterVec,
    /// Records left out of responses, by route and resource type.
    pub redacted_records: IntCounterVec,
    /// Values removed or masked, by route and data class.
    pub redacted_values: IntCounterVec,
    /// Responses the response phase refused or aborted, by route and
    /// reason.
    pub redaction_failures: IntCounterVec,
    /// The audit trail's spool and sinks.
    pub audit: crate::audit::metrics::AuditMetrics,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "phigate_requests_total",
                "Requests answered, by route and status",
            ),
            &["route", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "phigate_request_duration_seconds",
                "Time from request header to end of response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        )
        .expect("static metric definition");
        let rejections = IntCounterVec::new(
            Opts::new(
                "phigate_rejections_total",
                "Requests rejected before reaching an upstream, by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "phigate_upstream_errors_total",
                "Upstream failures, by upstream and kind",
            ),
            &["upstream", "kind"],
        )
        .expect("static metric definition");
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "phigate_upstream_healthy",
                "1 if the origin passes its health check",
            ),
            &["upstream", "origin"],
        )
        .expect("static metric definition");
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "phigate_tls_handshakes_total",
                "Completed TLS handshakes on listeners, by version",
            ),
            &["version"],
        )
        .expect("static metric definition");
        let cert_reloads = IntCounterVec::new(
            Opts::new(
                "phigate_tls_cert_reloads_total",
                "Listener certificate reloads, by result: reloaded, rejected, ocsp_rejected (a response that cannot be stapled), ocsp_expired (a stale staple dropped)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let ready = IntGauge::new("phigate_ready", "1 when phigate is ready to serve")
            .expect("static metric definition");
        let auth_events = IntCounterVec::new(
            Opts::new(
                "phigate_auth_events_total",
                "Authentication events (rejections, step-ups, sign-ins), by kind and reason",
            ),
            &["event", "reason"],
        )
        .expect("static metric definition");
        let authz_decisions = IntCounterVec::new(
            Opts::new(
                "phigate_authz_decisions_total",
                "Authorization decisions, by route, outcome (allow, deny, step_up, shadow_deny, unmapped, unavailable) and reason",
            ),
            &["route", "outcome", "reason"],
        )
        .expect("static metric definition");
        let policy_reloads = IntCounterVec::new(
            Opts::new(
                "phigate_policy_reloads_total",
                "Policy reloads, by trigger (watch, sighup, admin) and result (applied, unchanged, rejected)",
            ),
            &["trigger", "result"],
        )
        .expect("static metric definition");
        let policy_version = IntGaugeVec::new(
            Opts::new(
                "phigate_policy_version",
                "1 for the policy set version in force",
            ),
            &["version"],
        )
        .expect("static metric definition");
        let connections_open =
            IntGauge::new("phigate_connections_open", "Client connections open now")
                .expect("static metric definition");
        let connection_events = IntCounterVec::new(
            Opts::new(
                "phigate_connection_events_total",
                "Connection events: limit refusals, deadlines, requests the HTTP parser refused, accept errors",
            ),
            &["event"],
        )
        .expect("static metric definition");
        let redacted_records = IntCounterVec::new(
            Opts::new(
                "phigate_redacted_records_total",
                "Records left out of responses (per-record decisions), by route and resource type",
            ),
            &["route", "resource_type"],
        )
        .expect("static metric definition");
        let redacted_values = IntCounterVec::new(
            Opts::new(
                "phigate_redacted_values_total",
                "Values removed or masked in responses, by route and data class",
            ),
            &["route", "class"],
        )
        .expect("static metric definition");
        let redaction_failures = IntCounterVec::new(
            Opts::new(
                "phigate_redaction_failures_total",
                "Responses refused (before the head) or aborted (mid-body) by the response phase, by route and reason",
            ),
            &["route", "reason"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(connections_open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(redacted_records.clone()),
            Box::new(redacted_values.clone()),
            Box::new(redaction_failures.clone()),
            Box::new(connection_events.clone()),
            Box::new(requests.clone()),
            Box::new(authz_decisions.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(policy_version.clone()),
            Box::new(latency.clone()),
            Box::new(rejections.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(upstream_healthy.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(cert_reloads.clone()),
            Box::new(ready.clone()),
            Box::new(auth_events.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        let audit = crate::audit::metrics::AuditMetrics::new(&registry);
        Metrics {
            audit,
            registry,
            requests,
            latency,
            rejections,
            upstream_errors,
            upstream_healthy,
            tls_handshakes,
            cert_reloads,
            ready,
            auth_events,
            authz_decisions,
            policy_reloads,
            policy_version,
            connections_open,
            connection_events,
            redacted_records,
            redacted_values,
            redaction_failures,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: Lazy<Metrics> = Lazy::new(Metrics::new);
    &METRICS
}
