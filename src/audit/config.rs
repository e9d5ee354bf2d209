//! `[audit]`: where the spool lives, when a record counts as durable, the
//! checkpoint key, retention, and the sinks that ship the spool.

use crate::secret::SecretRef;
use crate::units::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The audit trail. Required whenever a route is not public: phigate
/// discloses nothing it has not recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The spool's directory (segments, checkpoints, sink cursors). Give it
    /// its own filesystem: when it is full, PHI routes answer 503.
    pub dir: PathBuf,
    /// When a record counts as durable before its response is released:
    /// `"interval"` (group commit: one `fdatasync` at most every
    /// `sync_interval`, every waiting response released together),
    /// `"always"` (one `fdatasync` per batch written), or `"os"` (handed to
    /// the OS: survives a crash of phigate, not of the host). Default
    /// `"interval"`.
    #[serde(default = "default_sync")]
    pub sync: String,
    /// The group commit's interval: at most one `fdatasync` per interval
    /// (a record arriving after a quiet spell is synced at once). Under
    /// load it is the latency a response waits at most, beyond the sync
    /// itself. Default `"200us"`: on a disk whose `fdatasync` takes a few
    /// hundred microseconds that is as fast as `always` (benches/RESULTS.md)
    /// while capping syncs at 5,000 a second on faster ones.
    #[serde(default = "default_sync_interval")]
    pub sync_interval: HumanDuration,
    /// A segment is sealed past this size. Default `"64MiB"`.
    #[serde(default = "default_segment_size")]
    pub segment_size: ByteSize,
    /// The Ed25519 key that signs checkpoints, by reference (`file:PATH`
    /// or `env:NAME`), as written by `phigate keygen audit`. Without it the
    /// chain still shows an edited record, but not a rewritten tail.
    #[serde(default)]
    pub signing_key: Option<SecretRef>,
    /// The checkpoints' origin line: a name unique to this log. Default:
    /// the signing key's name.
    #[serde(default)]
    pub origin: Option<String>,
    /// A signed checkpoint after this many records… Default `10000`.
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_records: u64,
    /// …or this long after the last one. Default `"10s"`.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// What of a query is recorded: `"names"` (parameter names, values
    /// withheld), `"full"`, or `"none"`. Default `"names"`.
    #[serde(default = "default_query")]
    pub record_query: String,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Where the spool is shipped.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// Sealed segments are deleted past either limit, oldest first, and never
/// before every sink has taken them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Default: no size limit.
    pub max_size: Option<ByteSize>,
    /// Default: no age limit.
    pub max_age: Option<HumanDuration>,
}

/// One sink: a cursor over the spool that advances only when the sink has
/// taken the records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names the sink's cursor (letters, digits, `-`, `_`).
    pub name: String,
    /// `"file"` (JSON lines) or `"syslog"` (RFC 5424, octet counting).
    pub kind: String,
    /// `"ocsf"` (default), `"ecs"`, `"cef"` or `"fhir"`.
    #[serde(default = "default_format")]
    pub format: String,
    /// `file`: the file appended to.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `syslog`: `host:port`.
    #[serde(default)]
    pub address: Option<String>,
    /// `syslog`: speak TLS (RFC 5425). Default `false` (TCP, RFC 6587).
    #[serde(default)]
    pub tls: bool,
    /// `syslog` over TLS: the CA bundle that signs the receiver's
    /// certificate. Default: the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `syslog` over TLS: the name in the receiver's certificate. Default:
    /// the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `syslog`: APP-NAME. Default `"phigate"`.
    #[serde(default)]
    pub app_name: Option<String>,
}

fn default_sync() -> String {
    "interval".into()
}
fn default_sync_interval() -> HumanDuration {
    HumanDuration(Duration::from_micros(200))
}
fn default_segment_size() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}
fn default_checkpoint_records() -> u64 {
    10_000
}
fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_query() -> String {
    "names".into()
}
fn default_format() -> String {
    "ocsf".into()
}

/// What of a query goes in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryRecord {
    Names,
    Full,
    None,
}

impl AuditConfig {
    /// Every problem, as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.sync_policy().is_none() {
            out.push((
                "audit.sync".into(),
                format!(
                    "unknown sync policy {:?}: use \"interval\", \"always\" or \"os\"",
                    self.sync
                ),
            ));
        }
        if self.query_record().is_none() {
            out.push((
                "audit.record_query".into(),
                format!(
                    "unknown value {:?}: use \"names\", \"full\" or \"none\"",
                    self.record_query
                ),
            ));
        }
        if self.checkpoint_records == 0 {
            out.push((
                "audit.checkpoint_records".into(),
                "must be at least 1".into(),
            ));
        }
        if self.segment_size.0 < 64 * 1024 {
            out.push(("audit.segment_size".into(), "must be at least 64KiB".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let key = format!("audit.sinks[{i}]");
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                out.push((
                    format!("{key}.name"),
                    "use letters, digits, '-' and '_'".into(),
                ));
            }
            if !names.insert(s.name.as_str()) {
                out.push((
                    format!("{key}.name"),
                    format!("sink {:?} is named twice", s.name),
                ));
            }
            if s.format.parse::<super::render::Format>().is_err() {
                out.push((
                    format!("{key}.format"),
                    format!("unknown format {:?}: use ocsf, ecs, cef or fhir", s.format),
                ));
            }
            match s.kind.as_str() {
                "file" if s.path.is_none() => {
                    out.push((format!("{key}.path"), "a file sink needs `path`".into()))
                }
                "syslog" if s.address.is_none() => out.push((
                    format!("{key}.address"),
                    "a syslog sink needs `address` (host:port)".into(),
                )),
                "file" | "syslog" => {}
                other => out.push((
                    format!("{key}.kind"),
                    format!("unknown sink kind {other:?}: use \"file\" or \"syslog\""),
                )),
            }
        }
        out
    }

    pub fn sync_policy(&self) -> Option<super::SyncPolicy> {
        match self.sync.as_str() {
            "interval" => Some(super::SyncPolicy::Interval(self.sync_interval.0)),
            "always" => Some(super::SyncPolicy::Always),
            "os" => Some(super::SyncPolicy::Os),
            _ => None,
        }
    }

    pub fn query_record(&self) -> Option<QueryRecord> {
        match self.record_query.as_str() {
            "names" => Some(QueryRecord::Names),
            "full" => Some(QueryRecord::Full),
            "none" => Some(QueryRecord::None),
            _ => None,
        }
    }
}
