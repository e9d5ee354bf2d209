//! A whole response body under a request's redaction plan: Bundles
//! streamed entry by entry, single resources held and decided whole (their
//! status depends on it), legacy JSON documents streamed through the
//! classes' JSON paths.
//!
//! In a Bundle every entry is held, its resource decided and redacted,
//! and the entry written or left out; `total` goes unless counts are
//! disclosed (it arrives before the entries, so it cannot be recomputed);
//! a signature no longer holds and goes; links point back at phigate.
//! Memory is bounded by the largest entry.

use super::links::Links;
use super::record::{Disclosure, Judge, RecordSettings, Records, Shown};
use super::rules::{FieldPlan, Rules};
use super::stream::{Action, Captured, Plan, Step, StreamError, Transformer};
use serde_json::value::RawValue;
use std::sync::Arc;

/// What a body is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// FHIR resources and Bundles: records decided, classes by FHIR path.
    Fhir,
    /// Any JSON document: classes by JSON path, no records.
    Json,
}

/// Whether the response head may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More body is needed before anything can be said.
    Undecided,
    /// Output may flow.
    Show,
    /// The one record in the body may not be shown: answer with a denial.
    Denied,
}

/// Nested Bundles (a batch-response holding searchsets) are followed this
/// deep; deeper ones are refused.
const MAX_BUNDLE_NESTING: usize = 3;

/// The redactor of one response body.
pub struct BodyRedactor<J: Judge> {
    state: State<J>,
    progress: Progress,
}

enum State<J: Judge> {
    Sniff(Vec<u8>, Context<J>),
    Bundle(Box<Transformer<BundlePlan<J>>>),
    Single(Vec<u8>, Context<J>),
    Json(Box<Transformer<FieldPlan<'static>>>),
    Done(Option<Disclosure>),
}

/// What every record decision needs.
pub struct Context<J> {
    pub judge: J,
    pub settings: RecordSettings,
    pub links: Links,
    /// `Bundle.total` may stay.
    pub counts: bool,
    pub disclosure: Disclosure,
}

impl<J: Judge> BodyRedactor<J> {
    /// A FHIR body.
    pub fn fhir(cx: Context<J>) -> Self {
        BodyRedactor {
            state: State::Sniff(Vec::new(), cx),
            progress: Progress::Undecided,
        }
    }

    /// A legacy JSON body under `rules` (from [`Rules::for_json`]).
    pub fn json(rules: Arc<Rules>, mask: super::mask::MaskContext, max_record: usize) -> Self {
        let plan = FieldPlan::new(rules, mask, None);
        BodyRedactor {
            state: State::Json(Box::new(Transformer::new(plan, max_record))),
            progress: Progress::Show,
        }
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Feeds a chunk (`end`: the last) and appends what may be sent to
    /// `out`. Any error is final: the response must be aborted.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        end: bool,
        out: &mut Vec<u8>,
    ) -> Result<Progress, StreamError> {
        loop {
            match &mut self.state {
                State::Sniff(buf, _) => {
                    buf.extend_from_slice(chunk);
                    let verdict = sniff(buf);
                    if verdict.is_none() && !end {
                        if buf.len() > 64 * 1024 {
                            // Whitespace this long before the first key
                            // is no FHIR server's: read the whole body.
                            self.become_single();
                            continue;
                        }
                        return Ok(Progress::Undecided);
                    }
                    let held = std::mem::take(buf);
                    match verdict {
                        Some(true) => self.become_bundle(),
                        _ => self.become_single(),
                    }
                    // Feed what was held, as one chunk.
                    return self.feed_state(&held, end, out);
                }
                _ => return self.feed_state(chunk, end, out),
            }
        }
    }

    fn feed_state(
        &mut self,
        chunk: &[u8],
        end: bool,
        out: &mut Vec<u8>,
    ) -> Result<Progress, StreamError> {
        match &mut self.state {
            State::Sniff(..) => unreachable!("sniffing is over before any state is fed"),
            State::Bundle(t) => {
                self.progress = Progress::Show;
                t.feed(chunk, end, out)?;
                if end {
                    let cx = &mut t.plan_mut().cx;
                    let d = std::mem::take(&mut cx.disclosure);
                    self.state = State::Done(Some(d));
                }
            }
            State::Single(buf, cx) => {
                if buf.len() + chunk.len() > cx.settings.max_record {
                    return Err(StreamError::TooLarge(cx.settings.max_record));
                }
                buf.extend_from_slice(chunk);
                if end {
                    let body = std::mem::take(buf);
                    let cx = self.take_cx();
                    let (progress, d) = single(&body, cx, out)?;
                    self.progress = progress;
                    self.state = State::Done(Some(d));
                }
            }
            State::Json(t) => {
                t.feed(chunk, end, out)?;
            }
            State::Done(_) => {
                if !chunk.iter().all(u8::is_ascii_whitespace) {
                    return Err(StreamError::Malformed(0));
                }
            }
        }
        Ok(self.progress)
    }

    fn take_cx(&mut self) -> Context<J> {
        match std::mem::replace(&mut self.state, State::Done(None)) {
            State::Sniff(_, cx) | State::Single(_, cx) => cx,
            _ => unreachable!("only a sniffing redactor changes state"),
        }
    }

    fn become_bundle(&mut self) {
        let cx = self.take_cx();
        let max = cx.settings.max_record;
        self.state = State::Bundle(Box::new(Transformer::new(BundlePlan::new(cx, 0), max)));
    }

    fn become_single(&mut self) {
        let cx = self.take_cx();
        self.state = State::Single(Vec::new(), cx);
    }

    /// What the response disclosed, once the body has ended.
    /// What was shown up to now — every entry already emitted — for the
    /// audit record of a response cut midway (a single record is shown
    /// whole or not at all).
    pub fn disclosed_so_far(&self) -> Disclosure {
        match &self.state {
            State::Done(d) => d.clone().unwrap_or_default(),
            State::Bundle(t) => t.plan().cx.disclosure.clone(),
            _ => Disclosure::default(),
        }
    }

    pub fn disclosure(&self) -> Option<&Disclosure> {
        match &self.state {
            State::Done(d) => d.as_ref(),
            _ => None,
        }
    }
}

/// Whether the body is a Bundle, from its first member: `Some(true)` when
/// it starts `{"resourceType":"Bundle"`, `Some(false)` when it starts any
/// other way, `None` when too little has arrived to say.
fn sniff(buf: &[u8]) -> Option<bool> {
    let mut i = 0;
    let skip = |i: &mut usize| {
        while buf.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    };
    let expect = |i: &mut usize, lit: &[u8]| -> Option<bool> {
        skip(i);
        let rest = &buf[(*i).min(buf.len())..];
        let n = rest.len().min(lit.len());
        if rest[..n] != lit[..n] {
            return Some(false);
        }
        if n < lit.len() {
            return None;
        }
        *i += lit.len();
        Some(true)
    };
    for lit in [&b"{"[..], b"\"resourceType\"", b":", b"\"Bundle\""] {
        match expect(&mut i, lit) {
            Some(true) => {}
            other => return other,
        }
    }
    Some(true)
}

/// A body that is one resource (or a Bundle whose type came late).
fn single<J: Judge>(
    body: &[u8],
    mut cx: Context<J>,
    out: &mut Vec<u8>,
) -> Result<(Progress, Disclosure), StreamError> {
    let start = out.len();
    if resource_type_of(body).as_deref() == Some("Bundle") {
        let max = cx.settings.max_record;
        let mut t = Transformer::new(BundlePlan::new(cx, 0), max);
        t.feed(body, true, out)?;
        return Ok((Progress::Show, t.into_plan().cx.disclosure));
    }
    let shown = Records::new(&mut cx.judge, &cx.settings)
        .record_into(body, &[], out, &mut cx.disclosure)
        .map_err(StreamError::Plan)?;
    let progress = match shown {
        Shown::Yes => {
            cx.links.rewrite_json(out, start);
            Progress::Show
        }
        Shown::No => Progress::Denied,
    };
    Ok((progress, cx.disclosure))
}

/// A JSON object's `resourceType` (anywhere among its members), when it
/// has one; `None` too for what is not one object with distinct members.
fn resource_type_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Ty {
        #[serde(rename = "resourceType")]
        resource_type: Option<String>,
    }
    serde_json::from_slice::<Ty>(body).ok()?.resource_type
}

/// The [`Plan`] of a Bundle: entries held and decided one at a time.
pub struct BundlePlan<J> {
    pub cx: Context<J>,
    nesting: usize,
    /// `Bundle.type`, when it came before the entries.
    bundle_type: Option<String>,
    /// Security labels of this Bundle and the ones holding it: every entry
    /// is decided with them.
    labels: Vec<String>,
    /// Top-level members seen (a repeated one is refused).
    seen: Vec<String>,
    /// A member came twice, or in a shape no Bundle has: refused when its
    /// value is captured.
    refuse: Option<&'static str>,
    scratch: Vec<u8>,
}

/// A Bundle's own members; any other is not passed on.
const BUNDLE_MEMBERS: [&str; 12] = [
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "identifier",
    "type",
    "timestamp",
    "total",
    "link",
    "entry",
    "signature",
];

impl<J: Judge> BundlePlan<J> {
    fn new(cx: Context<J>, nesting: usize) -> Self {
        BundlePlan {
            cx,
            nesting,
            bundle_type: None,
            labels: Vec::new(),
            seen: Vec::new(),
            refuse: None,
            scratch: Vec::new(),
        }
    }

    /// Entries without a resource report on the client's own batch or
    /// transaction entries; anywhere else they are not shown (a deleted
    /// record's history entry names a record no one decided).
    fn keeps_resourceless(&self) -> bool {
        matches!(
            self.bundle_type.as_deref(),
            Some("batch-response" | "transaction-response")
        )
    }

    fn entry(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<Captured, String> {
        let members: super::record::Members<'_> = serde_json::from_slice(value).map_err(|e| {
            format!("a Bundle entry is not a JSON object with distinct members ({e})")
        })?;
        let Some(resource) = members.get("resource") else {
            if !self.keeps_resourceless() {
                return Ok(Captured::Remove);
            }
            let start = out.len();
            out.extend_from_slice(value);
            self.cx.links.rewrite_json(out, start);
            return Ok(Captured::Written);
        };
        // Where the resource sits in the entry (a slice of it).
        let (at, end) = span(value, resource);
        let bytes = &value[at..end];
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let ty = resource_type_of(bytes);
        let shown = if ty.as_deref() == Some("Bundle") {
            if self.nesting + 1 >= MAX_BUNDLE_NESTING {
                return Err("Bundles nest too deep".into());
            }
            self.nested_bundle(bytes, &mut scratch)?;
            Shown::Yes
        } else {
            Records::new(&mut self.cx.judge, &self.cx.settings)
                .within(&self.labels)
                .record_into(bytes, &[], &mut scratch, &mut self.cx.disclosure)?
        };
        let result = match shown {
            Shown::No => Captured::Remove,
            Shown::Yes if self.pseudonymized(ty.as_deref()) => {
                // Safe Harbor: the entry is rebuilt around the record — its
                // fullUrl pseudonymized like the record's id, its request
                // and response (real ids and dates) left out.
                let mut entry: serde_json::Value =
                    serde_json::from_slice(value).map_err(|e| e.to_string())?;
                let resource: serde_json::Value =
                    serde_json::from_slice(&scratch).map_err(|e| e.to_string())?;
                if let Some(m) = entry.as_object_mut() {
                    m.insert("resource".into(), resource);
                    m.remove("request");
                    m.remove("response");
                    let url = m.remove("fullUrl");
                    let url = url.as_ref().and_then(|u| u.as_str()).and_then(|u| {
                        if u.starts_with("urn:") {
                            return Some(u.to_string());
                        }
                        let k = self.cx.settings.key.as_deref()?;
                        super::safe_harbor::pseudonymize_reference(k, u)
                    });
                    if let Some(u) = url {
                        m.insert("fullUrl".into(), u.into());
                    }
                }
                let start = out.len();
                serde_json::to_writer(&mut *out, &entry).map_err(|e| e.to_string())?;
                self.cx.links.rewrite_json(out, start);
                Captured::Written
            }
            Shown::Yes => {
                let start = out.len();
                out.extend_from_slice(&value[..at]);
                out.extend_from_slice(&scratch);
                out.extend_from_slice(&value[end..]);
                self.cx.links.rewrite_json(out, start);
                Captured::Written
            }
        };
        self.scratch = scratch;
        Ok(result)
    }

    /// Whether the record's ids are pseudonymized (the Safe Harbor
    /// profile applies to its type).
    fn pseudonymized(&mut self, resource_type: Option<&str>) -> bool {
        resource_type.is_some_and(|ty| self.cx.judge.rules(ty).pseudonymizes_ids())
    }

    fn nested_bundle(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        // The nested plan borrows this one's context for the while.
        let cx = Context {
            judge: &mut self.cx.judge as &mut (dyn Judge + '_),
            settings: RecordSettings {
                bases: self.cx.settings.bases.clone(),
                key: self.cx.settings.key.clone(),
                today: self.cx.settings.today,
                max_record: self.cx.settings.max_record,
            },
            links: self.cx.links.clone(),
            counts: self.cx.counts,
            disclosure: Disclosure::default(),
        };
        let mut plan = BundlePlan::new(cx, self.nesting + 1);
        plan.labels = self.labels.clone();
        let mut t = Transformer::new(plan, self.cx.settings.max_record);
        t.feed(bytes, true, out).map_err(|e| e.to_string())?;
        let d = t.into_plan().cx.disclosure;
        self.cx.disclosure.absorb(&d);
        Ok(())
    }
}

impl<'a> Judge for &mut (dyn Judge + 'a) {
    fn may_read(
        &mut self,
        accesses: &[crate::authz::mapping::AccessRequest],
        labels: &[String],
    ) -> bool {
        (**self).may_read(accesses, labels)
    }
    fn rules(&mut self, resource_type: &str) -> Arc<Rules> {
        (**self).rules(resource_type)
    }
}

/// Where `part` (a slice of `whole`) starts and ends in it.
fn span(whole: &[u8], part: &RawValue) -> (usize, usize) {
    let at = part.get().as_ptr() as usize - whole.as_ptr() as usize;
    (at, at + part.get().len())
}

impl<J: Judge> Plan for BundlePlan<J> {
    fn member(&mut self, path: &[Step], key: &str) -> Action {
        match path {
            [] => {}
            // An `entry` that is an object (not an array): no Bundle has
            // that shape.
            [Step::Key(k)] if k == "entry" => {
                self.refuse = Some("Bundle.entry is not an array");
                return Action::Capture;
            }
            // Inside a Bundle's own members (`identifier`): as they are.
            _ => return Action::Keep,
        }
        if self.seen.iter().any(|k| k == key) {
            self.refuse = Some("a Bundle member appears twice");
            return Action::Capture;
        }
        self.seen.push(key.to_string());
        match key {
            "total" if !self.cx.counts => Action::Remove,
            "signature" => Action::Remove,
            // Labels apply to every entry: they must come before the first.
            "meta" if self.seen.iter().any(|k| k == "entry") => {
                self.refuse = Some("Bundle.meta comes after its entries");
                Action::Capture
            }
            // The Bundle's own id, identifier and time: pseudonymized and
            // generalized under Safe Harbor (a document's identifier is
            // one more unique number).
            "link" | "type" | "meta" | "id" | "identifier" | "timestamp" => Action::Capture,
            k if BUNDLE_MEMBERS.contains(&k) => Action::Keep,
            // Not a Bundle's: not passed on.
            _ => Action::Remove,
        }
    }

    fn element(&mut self, path: &[Step], _index: usize) -> Action {
        match path {
            [Step::Key(k)] if k == "entry" => Action::Capture,
            _ => Action::Keep,
        }
    }

    fn captured(
        &mut self,
        path: &[Step],
        value: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Captured, String> {
        if let Some(why) = self.refuse {
            return Err(why.into());
        }
        match path {
            [Step::Key(k)] if k == "type" => {
                self.bundle_type = serde_json::from_slice(value).ok();
                out.extend_from_slice(value);
            }
            [Step::Key(k)] if matches!(k.as_str(), "id" | "identifier" | "timestamp") => {
                if !self.cx.judge.rules("Bundle").pseudonymizes_ids() {
                    out.extend_from_slice(value);
                    return Ok(Captured::Written);
                }
                let Some(key) = self.cx.settings.key.clone() else {
                    return Ok(Captured::Remove);
                };
                let mut v: serde_json::Value =
                    serde_json::from_slice(value).map_err(|e| e.to_string())?;
                match (k.as_str(), &mut v) {
                    ("id", serde_json::Value::String(s)) => *s = super::mask::pseudonym(&key, s),
                    ("timestamp", serde_json::Value::String(s)) => s.truncate(4),
                    ("identifier", serde_json::Value::Object(m)) => {
                        if let Some(serde_json::Value::String(s)) = m.get_mut("value") {
                            *s = super::mask::pseudonym(&key, s);
                        }
                    }
                    _ => return Ok(Captured::Remove),
                }
                serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
            }
            [Step::Key(k)] if k == "meta" => {
                for l in super::record::labels_of(value)? {
                    if !self.labels.contains(&l) {
                        self.labels.push(l);
                    }
                }
                out.extend_from_slice(value);
            }
            [Step::Key(k)] if k == "link" => {
                // A `last` link's page number or offset tells the total.
                let mut links: serde_json::Value =
                    serde_json::from_slice(value).map_err(|_| "Bundle.link is malformed")?;
                if !self.cx.counts {
                    if let Some(items) = links.as_array_mut() {
                        items
                            .retain(|l| l.get("relation").and_then(|r| r.as_str()) != Some("last"));
                    }
                }
                let start = out.len();
                serde_json::to_writer(&mut *out, &links).map_err(|e| e.to_string())?;
                self.cx.links.rewrite_json(out, start);
            }
            [Step::Key(_), Step::Index(_)] => return self.entry(value, out),
            _ => out.extend_from_slice(value),
        }
        Ok(Captured::Written)
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
