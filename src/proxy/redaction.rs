//! The response phase on routes with `redaction`: what the upstream is
//! asked for, and what of its answer leaves.
//!
//! The upstream is asked for identity encoding, whole bodies and JSON.
//! Its answer is refused (502) before a byte is sent when it cannot be
//! redacted — an encoding phigate cannot read, a content type that is not
//! JSON and not declared PHI-free. A single record is decided whole before
//! its head goes (a denied one becomes 404 or 403); a Bundle streams entry
//! by entry. A body found malformed or too large mid-stream aborts the
//! response: HTTP/1 ends without its last chunk and closes, HTTP/2 resets
//! the stream, so no client sees a complete-looking answer.

use super::body::{BoxError, ResponseBody};
use super::config::{DeniedRecord, RouteRedactionConfig, UpstreamConfig};
use super::respond::{self, DenialStyle, Stop};
use crate::authz::mapping::AccessRequest;
use crate::authz::{Authorization, Loaded};
use crate::metrics::metrics;
use crate::redact::body::{BodyKind, BodyRedactor, Context, Progress};
use crate::redact::classes::{DataClasses, COUNT, IDENTIFIABLE};
use crate::redact::links::Links;
use crate::redact::mask::MaskContext;
use crate::redact::record::{Disclosure, Judge, RecordSettings};
use crate::redact::rules::Rules;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

/// Shortest pseudonym key accepted.
const MIN_KEY: usize = 32;

/// Most decoded bytes one compressed answer may grow to.
const MAX_DECODED: u64 = 1 << 30;

/// Compressed input is decoded this many bytes at a time.
const COMPRESSED_PIECE: usize = 1024;

/// A route's redaction, resolved at start.
#[derive(Debug)]
pub struct RouteRedaction {
    kind: BodyKind,
    denied_status: u16,
    max_record: usize,
    /// Where the upstream's absolute URLs start: each origin with the
    /// route's base path, and the configured extra bases.
    upstream_bases: Vec<String>,
    /// Absolute bases under which references name this server's records.
    reference_bases: Vec<String>,
    /// The route's base path (`/fhir`), after the public scheme and host.
    base_path: String,
    phi_free: Vec<String>,
    key: Option<Arc<[u8]>>,
}

impl RouteRedaction {
    pub fn from_config(
        c: &RouteRedactionConfig,
        authz: &crate::authz::RouteAuthzConfig,
        path_prefix: &str,
        upstream: Option<&UpstreamConfig>,
    ) -> Result<RouteRedaction, String> {
        let key = match &c.pseudonym_key {
            Some(r) => {
                let k = r.resolve().map_err(|e| format!("pseudonym_key: {e}"))?;
                if k.len() < MIN_KEY {
                    return Err(format!("pseudonym_key: at least {MIN_KEY} bytes"));
                }
                Some(Arc::from(k.into_bytes().into_boxed_slice()))
            }
            None => None,
        };
        let base_path = authz
            .fhir_base_path
            .clone()
            .unwrap_or_else(|| path_prefix.to_string())
            .trim_end_matches('/')
            .to_string();
        let mut upstream_bases: Vec<String> = upstream
            .map(|u| {
                u.origins
                    .iter()
                    .map(|o| format!("{}{base_path}", o.trim_end_matches('/')))
                    .collect()
            })
            .unwrap_or_default();
        upstream_bases.extend(c.upstream_base_urls.iter().cloned());
        let mut reference_bases = authz.fhir_base_urls.clone();
        reference_bases.extend(upstream_bases.iter().cloned());
        Ok(RouteRedaction {
            kind: match authz.mapping {
                crate::authz::config::MappingKind::Fhir => BodyKind::Fhir,
                crate::authz::config::MappingKind::Templates => BodyKind::Json,
            },
            denied_status: match c.denied_record {
                DeniedRecord::NotFound => 404,
                DeniedRecord::Forbidden => 403,
            },
            max_record: c.max_record.bytes() as usize,
            upstream_bases,
            reference_bases,
            base_path,
            phi_free: c
                .phi_free_content_types
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            key,
        })
    }
}

impl RouteRedaction {
    /// The route's base path, which follows the public scheme and host.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }
}

/// Decides records and classes over the request's authorization snapshot.
pub struct CedarJudge {
    authz: Arc<Authorization>,
    loaded: Arc<Loaded>,
    classes: Arc<DataClasses>,
    rules: HashMap<String, Arc<Rules>>,
}

impl CedarJudge {
    pub fn new(authz: Arc<Authorization>, loaded: Arc<Loaded>) -> CedarJudge {
        let classes = loaded.snapshot.policies.classes.clone();
        CedarJudge {
            authz,
            loaded,
            classes,
            rules: HashMap::new(),
        }
    }

    /// Whether `class` may be shown in records of `resource_type`.
    pub fn discloses(&self, class: &str, resource_type: &str) -> bool {
        self.authz.discloses(&self.loaded, class, resource_type)
    }
}

impl Judge for CedarJudge {
    fn may_read(&mut self, accesses: &[AccessRequest], labels: &[String]) -> bool {
        self.authz.shows_record(&self.loaded, accesses, labels)
    }

    fn rules(&mut self, resource_type: &str) -> Arc<Rules> {
        if let Some(r) = self.rules.get(resource_type) {
            return r.clone();
        }
        let (authz, loaded, classes) = (&self.authz, &self.loaded, &self.classes);
        let rules = authz.field_rules(loaded, resource_type, || {
            let mut withheld = |class: &str| !authz.discloses(loaded, class, resource_type);
            let mut rules = Rules::for_type(classes, resource_type, &mut withheld);
            if withheld(IDENTIFIABLE) {
                rules.add_withheld(crate::redact::safe_harbor::classes(), resource_type);
            }
            rules
        });
        // Types come from upstream data: bound what one request caches.
        if self.rules.len() < 256 {
            self.rules.insert(resource_type.to_string(), rules.clone());
        }
        rules
    }
}

/// The request as the upstream of a redacting route sees it. `Err`: the
/// request is refused (a format phigate cannot redact, a count the
/// principal may not see).
pub fn prepare_request(
    r: &RouteRedaction,
    head: &mut http::request::Parts,
    query: Option<&str>,
    judge: &CedarJudge,
    asked: &Asked<'_>,
    style: DenialStyle,
) -> Result<(), Stop> {
    let resource_type = asked.resource_type;
    // HEAD is asked as GET: its head must be the head of the redacted
    // answer (a withheld record's 404, no upstream length or date).
    if head.method == http::Method::HEAD {
        head.method = http::Method::GET;
    }
    let h = &mut head.headers;
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    for name in [
        header::RANGE,
        header::IF_RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
    ] {
        h.remove(name);
    }
    // De-identified answers are for searches over non-identifying
    // criteria only: a read by id, or a search by name, birth date,
    // identifier or address, would tie a pseudonym to a known person.
    if !judge.discloses(IDENTIFIABLE, resource_type) {
        let refuse = |detail: &'static str| {
            Err(Stop::new(
                respond::denial(style, 403, detail),
                "deidentified_request_refused",
            ))
        };
        if r.kind != BodyKind::Fhir {
            return refuse("de-identified access is not available on this route");
        }
        if asked.action != "search" {
            return refuse("de-identified access is by search only");
        }
        let identifying = query_params(query)
            .iter()
            .any(|(name, _)| !DEIDENTIFIED_PARAMS.contains(&name.as_str()));
        if identifying {
            return refuse(
                "a de-identified search may filter by code, category, status and gender only",
            );
        }
    }
    if r.kind != BodyKind::Fhir {
        return Ok(());
    }
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/fhir+json"),
    );
    for (name, value) in query_params(query) {
        let json_format = |v: &str| {
            matches!(
                v,
                "json" | "application/json" | "application/fhir+json" | "application/json+fhir"
            )
        };
        let refuse = match name.as_str() {
            "_format" if !json_format(value.as_str()) => Some((
                406,
                "this route answers in JSON only (_format=json)",
                "format_not_redactable",
            )),
            "_summary" if value == "count" => Some((
                403,
                "counts are not disclosed on this route",
                "count_withheld",
            )),
            "_total" if value != "none" => Some((
                403,
                "counts are not disclosed on this route",
                "count_withheld",
            )),
            _ => None,
        };
        if let Some((status, detail, reason)) = refuse {
            let counted = reason == "count_withheld" && judge.discloses(COUNT, resource_type);
            if !counted {
                return Err(Stop::new(respond::denial(style, status, detail), reason));
            }
        }
    }
    Ok(())
}

/// What a request asked, from its decision: the first access's action and
/// resource type.
pub struct Asked<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
}

/// Parameters a de-identified search may carry: paging and shape, and
/// criteria that name no one.
const DEIDENTIFIED_PARAMS: [&str; 14] = [
    "_count",
    "_offset",
    "_getpagesoffset",
    "_page",
    "_elements",
    "_summary",
    "_format",
    "_total",
    "code",
    "category",
    "status",
    "clinical-status",
    "verification-status",
    "gender",
];

/// Decoded query parameters (undecodable ones as they are: the mapper has
/// already refused those).
fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| {
                crate::http::decode_component(s)
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| s.to_string())
            };
            (d(k), d(v))
        })
        .collect()
}

/// Where the response's facts go when its body ends (the audit record
/// reads them).
pub type DisclosureSlot = Arc<Mutex<Option<Disclosure>>>;

/// Everything the response phase needs for one response.
pub struct ResponsePhase<'a> {
    pub redaction: &'a RouteRedaction,
    pub judge: CedarJudge,
    pub counts: bool,
    pub public_base: Option<String>,
    pub route: &'a str,
    pub style: DenialStyle,
    pub idle: std::time::Duration,
    /// The client asked to read (GET or HEAD), not to write.
    pub read: bool,
    pub slot: DisclosureSlot,
    /// The request's resource type (what a JSON document's classes are
    /// decided on).
    pub resource_type: String,
}

/// The upstream's answer, redacted; `Err` is phigate's own answer instead
/// (a refusal before anything was sent).
pub async fn respond(
    phase: ResponsePhase<'_>,
    resp: http::Response<hyper::body::Incoming>,
) -> Result<http::Response<ResponseBody>, Stop> {
    let r = phase.redaction;
    let fail = |status: u16, reason: &'static str| {
        metrics()
            .redaction_failures
            .with_label_values(&[phase.route, reason])
            .inc();
        Stop::new(respond::error(status), reason)
    };
    let (mut parts, body) = resp.into_parts();
    let links = Links::new(
        &r.upstream_bases,
        phase.public_base.as_deref().unwrap_or(&r.base_path),
    );
    rewrite_headers(&mut parts.headers, &links);
    let status = parts.status.as_u16();
    // (HEAD was asked upstream as GET: its answer is decided like one.)
    let bodiless = status < 200 || status == 204 || status == 304 || body.is_end_stream();
    if bodiless {
        scrub(&mut parts.headers);
        return Ok(http::Response::from_parts(parts, ResponseBody::empty()));
    }
    // Two content types: which one a client believes is its choice.
    if parts.headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Err(fail(502, "response_not_redactable"));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let is_json = content_type
        .as_deref()
        .is_some_and(|t| t == "application/json" || t.ends_with("+json"));
    if !is_json {
        let declared = content_type
            .as_deref()
            .is_some_and(|t| r.phi_free.iter().any(|p| p == t));
        let plain = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if declared && plain {
            return Ok(http::Response::from_parts(
                parts,
                ResponseBody::upstream(body, phase.idle),
            ));
        }
        return Err(fail(502, "response_not_redactable"));
    }
    let decoder = match Decoder::for_headers(&parts.headers) {
        Ok(d) => d,
        Err(()) => return Err(fail(502, "response_encoding_unsupported")),
    };
    scrub(&mut parts.headers);
    parts.headers.remove(header::CONTENT_ENCODING);
    // The request's one clock reading.
    let today = phase
        .judge
        .loaded
        .facts
        .now
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let redactor = match r.kind {
        BodyKind::Fhir => BodyRedactor::fhir(Context {
            judge: phase.judge,
            settings: RecordSettings {
                bases: r.reference_bases.clone(),
                key: r.key.clone(),
                today,
                max_record: r.max_record,
            },
            links,
            counts: phase.counts,
            disclosure: Disclosure::default(),
        }),
        BodyKind::Json => {
            let mut judge = phase.judge;
            let rules = {
                let (authz, loaded) = (&judge.authz, &judge.loaded);
                let ty = phase.resource_type.as_str();
                let mut withheld = |c: &str| !authz.discloses(loaded, c, ty);
                Arc::new(Rules::for_json(&judge.classes, &mut withheld))
            };
            judge.rules.clear();
            let mask = MaskContext {
                key: r.key.clone(),
                patient: None,
                today,
            };
            BodyRedactor::json(rules, mask, r.max_record)
        }
    };
    let mut body = RedactedBody {
        inner: ResponseBody::upstream(body, phase.idle),
        decoder,
        redactor,
        out: Vec::new(),
        finished: false,
        failed: false,
        decoded_total: 0,
        route: phase.route.to_string(),
        slot: phase.slot,
    };
    // Nothing leaves until the redactor says what may: for one record,
    // not before the whole of it is decided.
    let first = loop {
        match std::future::poll_fn(|cx| body.poll_output(cx)).await {
            Some(Ok(out)) => match body.redactor.progress() {
                Progress::Undecided => continue,
                Progress::Denied => break Bytes::new(),
                Progress::Show => break out,
            },
            Some(Err(reason)) => return Err(fail(502, reason)),
            None => break Bytes::new(),
        }
    };
    if body.redactor.progress() == Progress::Denied {
        if !phase.read {
            // A write's answer (the record as stored): the write happened,
            // so its status stands — without the record.
            parts.headers.remove(header::CONTENT_TYPE);
            return Ok(http::Response::from_parts(parts, ResponseBody::empty()));
        }
        let resp = respond::denial(
            phase.style,
            r.denied_status,
            "the record is not available to you",
        );
        return Err(Stop::new(resp, "record_withheld"));
    }
    body.out = first.to_vec();
    Ok(http::Response::from_parts(
        parts,
        ResponseBody::Redacted(Box::new(body)),
    ))
}

/// Headers that describe the upstream's body (its length, version, digest,
/// date and ranges) go; the answer is nobody else's to cache.
fn scrub(h: &mut http::HeaderMap) {
    for name in [
        header::CONTENT_LENGTH,
        header::ETAG,
        header::LAST_MODIFIED,
        header::ACCEPT_RANGES,
        header::CONTENT_RANGE,
        HeaderName::from_static("content-md5"),
        HeaderName::from_static("digest"),
        HeaderName::from_static("repr-digest"),
        HeaderName::from_static("content-digest"),
    ] {
        h.remove(name);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn rewrite_headers(h: &mut http::HeaderMap, links: &Links) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let rewritten = h
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| links.rewrite_url(v))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        if let Some(v) = rewritten {
            h.insert(name, v);
        }
    }
}

/// A compressed answer, decoded as it arrives.
enum Decoder {
    Identity,
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Deflate(Box<flate2::write::ZlibDecoder<Vec<u8>>>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Vec<u8>>>),
}

impl Decoder {
    /// `Err` for an encoding phigate cannot decode (or more than one).
    fn for_headers(h: &http::HeaderMap) -> Result<Decoder, ()> {
        let mut codings = h
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity");
        let first = codings.next();
        if codings.next().is_some() {
            return Err(());
        }
        Ok(match first.as_deref() {
            None => Decoder::Identity,
            Some("gzip" | "x-gzip") => {
                Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new())))
            }
            Some("deflate") => {
                Decoder::Deflate(Box::new(flate2::write::ZlibDecoder::new(Vec::new())))
            }
            Some("br") => Decoder::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                Vec::new(),
                16 * 1024,
            ))),
            Some(_) => return Err(()),
        })
    }

    fn is_identity(&self) -> bool {
        matches!(self, Decoder::Identity)
    }

    /// Decodes `chunk` (`end`: the last) into `out`.
    fn decode(&mut self, chunk: &[u8], end: bool, out: &mut Vec<u8>) -> std::io::Result<()> {
        fn drain(buf: &mut Vec<u8>, out: &mut Vec<u8>) {
            out.append(buf);
        }
        match self {
            Decoder::Identity => out.extend_from_slice(chunk),
            Decoder::Gzip(d) => {
                d.write_all(chunk)?;
                if end {
                    d.try_finish()?;
                }
                drain(d.get_mut(), out);
            }
            Decoder::Deflate(d) => {
                d.write_all(chunk)?;
                if end {
                    d.try_finish()?;
                }
                drain(d.get_mut(), out);
            }
            Decoder::Brotli(d) => {
                d.write_all(chunk)?;
                if end {
                    d.close()?;
                }
                drain(d.get_mut(), out);
            }
        }
        Ok(())
    }
}

/// The upstream's body through the decoder and the redactor.
pub struct RedactedBody {
    inner: ResponseBody,
    decoder: Decoder,
    redactor: BodyRedactor<CedarJudge>,
    /// Output not yet handed on.
    out: Vec<u8>,
    finished: bool,
    failed: bool,
    /// Bytes decoded so far (bounded by [`MAX_DECODED`]).
    decoded_total: u64,
    route: String,
    slot: DisclosureSlot,
}

#[derive(Debug, thiserror::Error)]
#[error("the response could not be redacted ({0}); it was cut")]
pub struct RedactionAborted(&'static str);

impl RedactedBody {
    /// The next piece of output: `None` at the end, `Err` with the
    /// failure's name when the body cannot be redacted.
    fn poll_output(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Bytes, &'static str>>> {
        let mut decoded: Vec<u8> = Vec::new();
        loop {
            if self.failed {
                return Poll::Ready(None);
            }
            if !self.out.is_empty() {
                return Poll::Ready(Some(Ok(Bytes::from(std::mem::take(&mut self.out)))));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            let (chunk, end): (Bytes, bool) = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) => (d, false),
                    // Trailers are not passed on a redacted body.
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(_))) => {
                    return Poll::Ready(Some(Err(self.fail("upstream_body_failed"))))
                }
                Poll::Ready(None) => (Bytes::new(), true),
            };
            // Compressed input goes in small pieces, each piece's output
            // redacted before the next is decoded: what one piece can grow
            // to is all the memory a compression bomb gets.
            let pieces = if self.decoder.is_identity() {
                chunk.len().max(1)
            } else {
                COMPRESSED_PIECE
            };
            let parts: Vec<&[u8]> = if chunk.is_empty() {
                vec![&[]]
            } else {
                chunk.chunks(pieces).collect()
            };
            let count = parts.len();
            for (i, piece) in parts.into_iter().enumerate() {
                let last = end && i + 1 == count;
                // An identity body is fed as it came, without a copy.
                let input: &[u8] = if self.decoder.is_identity() {
                    piece
                } else {
                    decoded.clear();
                    if self.decoder.decode(piece, last, &mut decoded).is_err() {
                        return Poll::Ready(Some(Err(self.fail("response_encoding_corrupt"))));
                    }
                    self.decoded_total += decoded.len() as u64;
                    if self.decoded_total > MAX_DECODED {
                        return Poll::Ready(Some(Err(self.fail("response_too_large"))));
                    }
                    &decoded
                };
                let mut out = std::mem::take(&mut self.out);
                match self.redactor.feed(input, last, &mut out) {
                    Ok(_) => self.out = out,
                    Err(e) => {
                        let reason = match e {
                            crate::redact::StreamError::TooLarge(_) => "record_too_large",
                            crate::redact::StreamError::TooDeep => "response_too_deep",
                            _ => "response_malformed",
                        };
                        return Poll::Ready(Some(Err(self.fail(reason))));
                    }
                }
            }
            if end {
                self.finished = true;
                self.record_end();
            }
            if self.redactor.progress() == Progress::Undecided && !end {
                // Nothing may be said yet: keep what came and read on.
                continue;
            }
        }
    }

    fn fail(&mut self, reason: &'static str) -> &'static str {
        self.failed = true;
        // The audit record names whose records went out before the cut.
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(self.redactor.disclosed_so_far());
        }
        metrics()
            .redaction_failures
            .with_label_values(&[&self.route, reason])
            .inc();
        reason
    }

    /// Counts what was left out and leaves the facts for the audit record.
    fn record_end(&mut self) {
        let Some(d) = self.redactor.disclosure() else {
            return;
        };
        let m = metrics();
        for (ty, n) in &d.removed {
            let ty = crate::authz::mapping::resource_type(ty).unwrap_or("other");
            m.redacted_records
                .with_label_values(&[&self.route, ty])
                .inc_by(u64::from(*n));
        }
        for (class, n) in &d.redacted.by_class {
            m.redacted_values
                .with_label_values(&[&self.route, class])
                .inc_by(u64::from(*n));
        }
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(d.clone());
        }
    }
}

impl Drop for RedactedBody {
    fn drop(&mut self) {
        // Dropped mid-stream (the client left): what went out so far is
        // what the audit record must name.
        if !self.finished && !self.failed {
            if let Ok(mut slot) = self.slot.lock() {
                *slot = Some(self.redactor.disclosed_so_far());
            }
        }
    }
}

impl Body for RedactedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.poll_output(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(reason))) => {
                Poll::Ready(Some(Err(RedactionAborted(reason).into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
