//! The audit trail's metrics: spool health, commit latency, damage found,
//! retention held back, and each sink's backlog.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct AuditMetrics {
    /// Records appended, by kind (`event`, `checkpoint`).
    pub records: IntCounterVec,
    /// Spool write or sync failures, by operation.
    pub spool_errors: IntCounterVec,
    /// 1 while the spool cannot be written (PHI routes answer 503).
    pub degraded: IntGauge,
    /// Responses withheld because their record could not be made durable.
    pub withheld: IntCounter,
    /// Time from append to durable (the group commit's added latency).
    pub commit_seconds: Histogram,
    /// Records per group commit.
    pub batch_records: Histogram,
    /// Bytes of torn writes truncated at start-up.
    pub truncated_bytes: IntCounter,
    /// Damaged segments copied to quarantine at start-up.
    pub quarantined: IntCounter,
    /// Damaged records met by a reader (a sink or a tool).
    pub damaged: IntCounter,
    /// Segments retention would delete but a sink has not taken.
    pub retention_held: IntGauge,
    /// Segments deleted by retention.
    pub retention_deleted: IntCounter,
    /// Records not yet taken, by sink.
    pub sink_backlog: IntGaugeVec,
    /// Records taken, by sink.
    pub sink_shipped: IntCounterVec,
    /// Delivery failures, by sink.
    pub sink_errors: IntCounterVec,
}

impl AuditMetrics {
    pub fn new(registry: &Registry) -> AuditMetrics {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric names");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric names");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric names");
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("static metric definition");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric names");
            h
        };
        let sink_backlog = IntGaugeVec::new(
            Opts::new(
                "phigate_audit_sink_backlog",
                "Audit records not yet taken, by sink",
            ),
            &["sink"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(sink_backlog.clone()))
            .expect("unique metric names");
        AuditMetrics {
            records: counter_vec(
                "phigate_audit_records_total",
                "Audit records appended to the spool, by kind",
                &["kind"],
            ),
            spool_errors: counter_vec(
                "phigate_audit_spool_errors_total",
                "Audit spool write or sync failures, by operation",
                &["op"],
            ),
            degraded: gauge(
                "phigate_audit_spool_degraded",
                "1 while the audit spool cannot be written (PHI routes answer 503)",
            ),
            withheld: counter(
                "phigate_audit_withheld_responses_total",
                "Responses withheld because their audit record could not be made durable",
            ),
            commit_seconds: histogram(
                "phigate_audit_commit_seconds",
                "Time from appending an audit record to it being durable",
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            ),
            batch_records: histogram(
                "phigate_audit_batch_records",
                "Audit records written per group commit",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
            ),
            truncated_bytes: counter(
                "phigate_audit_truncated_bytes_total",
                "Bytes of torn writes truncated from the spool at start-up",
            ),
            quarantined: counter(
                "phigate_audit_quarantined_segments_total",
                "Damaged spool segments copied to quarantine",
            ),
            damaged: counter(
                "phigate_audit_damaged_records_total",
                "Damaged audit records met while reading the spool",
            ),
            retention_held: gauge(
                "phigate_audit_retention_held_segments",
                "Spool segments past retention that a sink has not taken yet",
            ),
            retention_deleted: counter(
                "phigate_audit_retention_deleted_segments_total",
                "Spool segments deleted by retention",
            ),
            sink_backlog,
            sink_shipped: counter_vec(
                "phigate_audit_sink_shipped_total",
                "Audit records taken by each sink",
                &["sink"],
            ),
            sink_errors: counter_vec(
                "phigate_audit_sink_errors_total",
                "Audit delivery failures, by sink",
                &["sink"],
            ),
        }
    }
}
