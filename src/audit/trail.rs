//! The running audit trail: the spool opened from `[audit]`, the events the
//! rest of phigate hands it, and the sinks shipping it.

use super::checkpoint::NoteSigner;
use super::config::{AuditConfig, QueryRecord};
use super::event::{Actor, AuditEvent, EventKind, Outcome, Source};
use super::frame::Kind;
use super::spool::{Spool, SpoolOptions, Ticket};
use crate::authn::{AuthEvent, AuthEventKind, AuthEventSink};
use crate::metrics::metrics;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit.signing_key: {0}")]
    Key(String),
    #[error("{0}")]
    Sink(String),
    #[error("audit.dir {dir}: {source}")]
    Spool { dir: String, source: std::io::Error },
}

/// The audit trail of one process.
pub struct Audit {
    spool: Spool,
    pub query: QueryRecord,
    sinks: Vec<super::sink::Running>,
}

/// The signing key `[audit]` names, read and parsed (also what `check`
/// validates).
pub fn signing_key(config: &AuditConfig) -> Result<Option<NoteSigner>, AuditError> {
    for s in &config.sinks {
        super::sink::build(s).map_err(AuditError::Sink)?;
    }
    let Some(r) = &config.signing_key else {
        return Ok(None);
    };
    let text = r.resolve().map_err(|e| AuditError::Key(e.to_string()))?;
    NoteSigner::parse(&text)
        .map(Some)
        .map_err(|e| AuditError::Key(format!("{e} (write one with `phigate keygen audit`)")))
}

/// The verifier key of the private key in `path`.
pub fn signing_key_file(path: &std::path::Path) -> Result<String, AuditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))?;
    NoteSigner::parse(&text)
        .map(|s| s.verifier().text())
        .map_err(|e| AuditError::Key(e.to_string()))
}

impl Audit {
    /// Opens (and recovers) the spool and starts its sinks.
    pub fn open(config: &AuditConfig) -> Result<Arc<Audit>, AuditError> {
        let signer = signing_key(config)?;
        let mut o = SpoolOptions::new(&config.dir);
        o.sync = config.sync_policy().unwrap_or(o.sync);
        o.segment_bytes = config.segment_size.0;
        o.checkpoint_records = config.checkpoint_records;
        o.checkpoint_interval = config.checkpoint_interval.0;
        o.origin = config
            .origin
            .clone()
            .or_else(|| signer.as_ref().map(|s| s.name().to_string()))
            .unwrap_or_else(|| "phigate/audit".into());
        o.signer = signer.map(Arc::new);
        o.retention = super::retention::Retention {
            max_bytes: config.retention.max_size.map(|b| b.0),
            max_age: config.retention.max_age.map(|d| d.0),
            sinks: config.sinks.iter().map(|s| s.name.clone()).collect(),
        };
        let (spool, _recovery) = Spool::open(o).map_err(|source| AuditError::Spool {
            dir: config.dir.display().to_string(),
            source,
        })?;
        let sinks = super::sink::start(&spool, &config.sinks).map_err(|e| {
            spool.close();
            AuditError::Sink(e)
        })?;
        Ok(Arc::new(Audit {
            spool,
            query: config.query_record().unwrap_or(QueryRecord::Names),
            sinks,
        }))
    }

    /// An audit trail over an already open spool (tests, benches).
    pub fn over(spool: Spool) -> Arc<Audit> {
        Arc::new(Audit {
            spool,
            query: QueryRecord::Names,
            sinks: Vec::new(),
        })
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Appends `event`; the ticket resolves once it is durable.
    pub fn record(&self, event: &AuditEvent) -> Ticket {
        self.spool.append(Kind::Event, event.to_json())
    }

    /// Appends `event` without waiting (outcomes, sign-in events). A
    /// failure is counted and logged; it cannot hold back what already
    /// left.
    pub fn record_detached(&self, event: &AuditEvent) {
        if let Err(e) = self.spool.append_detached(Kind::Event, event.to_json()) {
            metrics()
                .audit
                .spool_errors
                .with_label_values(&["append"])
                .inc();
            tracing::error!(error = %e, kind = event.kind.as_str(), "audit: an event could not be queued");
        }
    }

    /// Whether records can be made durable now.
    pub fn healthy(&self) -> bool {
        self.spool.healthy()
    }

    /// Writes what is queued, syncs, and stops the sinks and the writer.
    pub fn close(&self) {
        for s in &self.sinks {
            s.stop();
        }
        self.spool.close();
    }
}

/// Authentication events go to the audit trail (and to the log, as
/// before).
pub struct AuditAuthSink {
    pub audit: Arc<Audit>,
}

impl AuthEventSink for AuditAuthSink {
    fn emit(&self, e: AuthEvent) {
        self.audit.record_detached(&auth_event(&e));
        crate::authn::LogSink.emit(e);
    }
}

/// The audit event for an authentication event.
pub fn auth_event(e: &AuthEvent) -> AuditEvent {
    use AuthEventKind::*;
    let (kind, outcome) = match e.kind {
        LoginSucceeded | StepUpCompleted => (EventKind::Authentication, Outcome::Success),
        StepUpRequired => (EventKind::Authentication, Outcome::StepUpRequired),
        LoginFailed | TokenRejected | ApiKeyRejected | CertificateRejected | CredentialMissing => {
            (EventKind::Authentication, Outcome::AuthenticationFailed)
        }
        SessionIdleExpired | SessionAbsoluteExpired | Logout => {
            (EventKind::Session, Outcome::Success)
        }
    };
    let mut ev = AuditEvent::new(kind, outcome);
    ev.reason = Some(format!("{}:{}", e.kind.as_str(), e.reason));
    ev.actor = e.principal.as_ref().map(|p| Actor {
        user_id: p.clone(),
        issuer: e.issuer.clone().unwrap_or_default(),
        kind: "user".into(),
        auth_method: e.method.map(|m| m.as_str()).unwrap_or("").to_string(),
        ..Default::default()
    });
    ev.source = e.client_ip.map(|ip| Source {
        ip: Some(ip.to_string()),
        ..Default::default()
    });
    ev.request = Some(super::event::RequestInfo {
        request_id: e.request_id.clone(),
        route: (!e.route.is_empty()).then(|| e.route.clone()),
        method: String::new(),
        ..Default::default()
    });
    ev
}

/// A non-request event: a reload, a config change, an admin action.
pub fn system_event(
    kind: EventKind,
    outcome: Outcome,
    reason: &str,
    details: &[(&str, &str)],
) -> AuditEvent {
    let mut ev = AuditEvent::new(kind, outcome);
    ev.reason = Some(reason.to_string());
    for (k, v) in details {
        ev.details
            .insert((*k).to_string(), super::event::bounded(v));
    }
    ev
}
