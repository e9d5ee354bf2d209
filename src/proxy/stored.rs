//! Pre-reads for writes by id. An update, patch or delete of
//! `Observation/1` changes whoever `Observation/1` belongs to now, which the
//! request cannot show: phigate reads the stored record through the same
//! upstream, with the same identity, before deciding ([`StoredRecords`]).
//!
//! Fails closed: a record that cannot be read (an upstream error, a status
//! other than 200/404/410, a body that is not the resource asked for or is
//! too large) refuses the write on an enforcing route. The stored record is
//! PHI: it is dropped after the decision and never logged. Reads are pinned
//! to one origin, which the write then uses, and bounded per request (50
//! records, 8 MiB, four at a time, one deadline). For a single update or
//! patch the stored version's `ETag` becomes the write's `If-Match` (a
//! client's own must admit it: [`if_match_admits`]), so a record changed
//! between the read and the write is refused by the server instead of
//! written on a decision about an older version.

use super::admit::Admission;
use super::body::{BoxError, UpstreamBody};
use super::respond::{self, Stop};
use super::upstream::{self, Outbound, Upstreams};
use crate::authz::mapping::{StoredRecords, MAX_STORED_RECORD};
use crate::metrics::metrics;
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, ETAG,
};
use http::request::Parts;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};

/// What the pre-reads found.
pub struct PreRead {
    pub records: StoredRecords,
    /// The stored version's entity tag, when exactly one record was read.
    pub etag: Option<HeaderValue>,
    /// The origin read from: the write goes there too (a replica that lags
    /// must not answer "nothing stored" for a record its primary holds).
    pub origin: usize,
}

/// Request headers that describe the client's write, or would make the
/// read answer something other than the whole current record (a range, a
/// condition, a cached copy). Everything else is kept: a tenant or
/// partition header must select the same record the write will change.
const WRITE_ONLY: [&str; 16] = [
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "expect",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    "prefer",
    "cache-control",
    "pragma",
    "te",
];

/// The head of a pre-read: `GET`, the client's request headers minus those
/// that belong to a write, asking for uncompressed FHIR JSON. The caller
/// adds phigate's outbound headers (identity, forwarding) as for the write.
pub fn read_head(write: &Parts) -> Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.uri = write.uri.clone();
    parts.version = write.version;
    let mut headers = HeaderMap::with_capacity(write.headers.len());
    for (name, value) in &write.headers {
        if !WRITE_ONLY.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(ACCEPT, HeaderValue::from_static("application/fhir+json"));
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    parts.headers = headers;
    parts
}

/// Reads each stored record in `reads` (type, id) from the route's
/// upstream; `head` is a [`read_head`] with phigate's outbound headers. A
/// Bundle's reads go [`CONCURRENT_READS`] at a time, all within the pool's
/// read timeout and [`MAX_STORED_TOTAL`] bytes together: a Bundle of
/// writes by id cannot hold a connection, or memory, for long.
pub async fn read<B>(
    upstreams: &Upstreams<B>,
    head: &Parts,
    admission: &Admission,
    request_id: &str,
    reads: &[(String, String)],
) -> Result<PreRead, Stop>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    use futures_util::stream::{StreamExt, TryStreamExt};
    let route = &admission.route;
    let Some(authz) = route.authz.as_ref() else {
        return Err(unreadable(admission, "stored_record_no_route"));
    };
    if reads.len() > MAX_STORED_READS {
        return Err(unreadable(admission, "too_many_stored_reads"));
    }
    // One origin for every read, and then for the write.
    let Some(origin) = route.pool.select().map(|o| o.index()) else {
        return Err(Stop::new(respond::error(503), "no_healthy_origin"));
    };
    let targets: Vec<String> = reads
        .iter()
        .map(|(ty, id)| authz.instance_path(ty, id))
        .collect();
    let each: Vec<_> = targets
        .iter()
        .zip(reads)
        .map(|(target, read)| {
            read_one(upstreams, head, admission, request_id, target, read, origin)
        })
        .collect();
    let all = futures_util::stream::iter(each)
        .buffered(CONCURRENT_READS)
        .try_collect::<Vec<_>>();
    let found = match tokio::time::timeout(route.pool.read_timeout, all).await {
        Ok(found) => found?,
        Err(_) => return Err(unreadable(admission, "stored_record_timeout")),
    };
    let total: usize = found.iter().map(|f| f.size).sum();
    if total > MAX_STORED_TOTAL {
        return Err(unreadable(admission, "stored_records_too_large"));
    }
    let etag = match found.as_slice() {
        [only] => only.etag.clone(),
        _ => None,
    };
    let mut records = StoredRecords::default();
    for ((ty, id), f) in reads.iter().zip(found) {
        records.insert(ty, id, f.record);
    }
    Ok(PreRead {
        records,
        etag,
        origin,
    })
}

/// Pre-reads in flight at once for one request.
const CONCURRENT_READS: usize = 4;

/// Largest sum of stored records read for one request.
pub const MAX_STORED_TOTAL: usize = 8 * 1024 * 1024;

/// Most records read for one request (a Bundle's writes by id).
pub const MAX_STORED_READS: usize = 50;

/// One stored record as read: `None` when the upstream has none.
struct Found {
    record: Option<serde_json::Value>,
    etag: Option<HeaderValue>,
    size: usize,
}

async fn read_one<B>(
    upstreams: &Upstreams<B>,
    head: &Parts,
    admission: &Admission,
    request_id: &str,
    target: &str,
    (ty, id): &(String, String),
    origin: usize,
) -> Result<Found, Stop>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let out = Outbound {
        admission,
        request_id,
        upgrade: None,
        body_outcome: None,
        held: None,
        tunnel_idle: std::time::Duration::ZERO,
        target: Some(target),
        origin: Some(origin),
    };
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.uri = head.uri.clone();
    parts.version = head.version;
    parts.headers = head.headers.clone();
    let resp = upstream::forward(upstreams, parts, UpstreamBody::Empty, out).await?;
    let status = resp.status();
    if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
        return Ok(Found {
            record: None,
            etag: None,
            size: 0,
        });
    }
    if status != StatusCode::OK {
        tracing::warn!(route = %admission.route.name, status = status.as_u16(), "stored record read refused by the upstream");
        return Err(unreadable(admission, "stored_record_status"));
    }
    let encoded = resp
        .headers()
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(unreadable(admission, "stored_record_encoded"));
    }
    let etag = resp.headers().get(ETAG).cloned();
    let bytes = match Limited::new(resp.into_body(), MAX_STORED_RECORD)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(unreadable(admission, "stored_record_body")),
    };
    let Ok(record) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Err(unreadable(admission, "stored_record_not_json"));
    };
    // Another record than the one asked for is the upstream failing.
    let is = |field: &str, want: &str| record.get(field).and_then(|v| v.as_str()) == Some(want);
    if !(is("resourceType", ty) && is("id", id)) {
        return Err(unreadable(admission, "stored_record_mismatch"));
    }
    Ok(Found {
        record: Some(record),
        etag,
        size: bytes.len(),
    })
}

/// Whether an `If-Match` value (`*`, or a list of entity tags) admits the
/// version `etag`, comparing weakly (`W/"3"` is `"3"`).
pub fn if_match_admits(if_match: &[u8], etag: &[u8]) -> bool {
    let opaque = |tag: &[u8]| -> Vec<u8> {
        let tag = tag.trim_ascii();
        tag.strip_prefix(b"W/").unwrap_or(tag).to_vec()
    };
    let want = opaque(etag);
    let value = if_match.trim_ascii();
    value == b"*" || value.split(|&b| b == b',').any(|tag| opaque(tag) == want)
}

fn unreadable(admission: &Admission, reason: &'static str) -> Stop {
    let route = &admission.route;
    metrics()
        .authz_decisions
        .with_label_values(&[&route.name, "unavailable", reason])
        .inc();
    Stop::new(
        respond::denial(
            route.denial_style,
            502,
            "the stored record could not be read to authorize this change",
        ),
        reason,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_admits_the_version_read() {
        assert!(if_match_admits(b"*", b"W/\"3\""));
        assert!(if_match_admits(b"W/\"3\"", b"W/\"3\""));
        assert!(if_match_admits(b"\"3\"", b"W/\"3\""));
        assert!(if_match_admits(b"W/\"2\", W/\"3\"", b"W/\"3\""));
        assert!(!if_match_admits(b"W/\"4\"", b"W/\"3\""));
        assert!(!if_match_admits(b"W/\"2\", W/\"4\"", b"W/\"3\""));
        assert!(!if_match_admits(b"W/\"33\"", b"W/\"3\""));
    }

    #[test]
    fn a_pre_read_carries_no_part_of_the_write() {
        let req = http::Request::put("/fhir/Observation/1")
            .header("content-type", "application/fhir+json")
            .header("content-length", "12")
            .header("if-match", "W/\"3\"")
            .header("prefer", "return=minimal")
            .header("accept-encoding", "gzip")
            .header("range", "bytes=0-10")
            .header("cache-control", "max-stale=600")
            .header("x-tenant", "east")
            .header("x-custom", "kept")
            .body(())
            .unwrap();
        let (write, ()) = req.into_parts();
        let read = read_head(&write);
        assert_eq!(read.method, Method::GET);
        for name in WRITE_ONLY.iter().filter(|n| **n != "cache-control") {
            assert!(!read.headers.contains_key(*name), "{name}");
        }
        assert_eq!(read.headers["cache-control"], "no-cache");
        assert_eq!(read.headers["accept-encoding"], "identity");
        assert_eq!(read.headers["accept"], "application/fhir+json");
        assert_eq!(read.headers["x-custom"], "kept");
        assert_eq!(read.headers["x-tenant"], "east", "the same tenant's record");
    }
}
