//! One FHIR record in a response: decided as a whole, then its fields
//! redacted, its contained resources treated as records of their own, and
//! the `REDACTED` label added when anything was taken out.
//!
//! Only the members that decide whose a record is are parsed (the rest is
//! skipped at validation speed); a record whose classes are all disclosed
//! is copied through untouched.

use super::mask::MaskContext;
use super::rules::{FieldPlan, Redacted, Rules};
use super::stream::{Captured, Transformer};
use crate::authz::mapping::{record_accesses, record_members, AccessRequest};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The v3 ObservationValue code system of the `REDACTED` label.
pub const OBSERVATION_VALUE: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// Largest single record (or Bundle entry) held to decide it.
pub const DEFAULT_MAX_RECORD: usize = 16 * 1024 * 1024;

/// Decides records and their classes for one request.
pub trait Judge: Send {
    /// Whether every access may be shown (the record's security labels
    /// are given alongside).
    fn may_read(&mut self, accesses: &[AccessRequest], labels: &[String]) -> bool;
    /// The field rules for records of `resource_type`.
    fn rules(&mut self, resource_type: &str) -> Arc<Rules>;
}

/// What the response phase learned, for the audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disclosure {
    /// Every patient whose record was shown.
    pub patients: BTreeSet<String>,
    /// Records shown.
    pub records: u32,
    /// Records removed, by type.
    pub removed: Vec<(String, u32)>,
    /// Values removed or masked, by class.
    pub redacted: Redacted,
}

impl Disclosure {
    fn removed(&mut self, ty: &str) {
        match self.removed.iter_mut().find(|(t, _)| t == ty) {
            Some((_, n)) => *n += 1,
            None => self.removed.push((ty.to_string(), 1)),
        }
    }

    /// Adds another part of the response's disclosure.
    pub fn absorb(&mut self, other: &Disclosure) {
        self.patients.extend(other.patients.iter().cloned());
        self.records += other.records;
        for (ty, n) in &other.removed {
            match self.removed.iter_mut().find(|(t, _)| t == ty) {
                Some((_, m)) => *m += n,
                None => self.removed.push((ty.clone(), *n)),
            }
        }
        self.redacted.absorb(&other.redacted);
    }

    /// Records removed, all types.
    pub fn removed_total(&self) -> u32 {
        self.removed.iter().map(|(_, n)| n).sum()
    }
}

/// Whether a record was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Yes,
    No,
}

/// Per-request settings of record handling.
pub struct RecordSettings {
    /// Base URLs under which absolute references name this server's records.
    pub bases: Vec<String>,
    pub key: Option<Arc<[u8]>>,
    pub today: jiff::civil::Date,
    pub max_record: usize,
}

/// Decides and redacts records one at a time.
pub struct Records<'j> {
    judge: &'j mut dyn Judge,
    settings: &'j RecordSettings,
    /// Security labels of the Bundles holding the records: each record is
    /// decided with them as well as its own.
    labels: &'j [String],
    /// Inside a contained resource: its id is local to its container.
    contained: bool,
    pub disclosure: Disclosure,
}

impl<'j> Records<'j> {
    pub fn new(judge: &'j mut dyn Judge, settings: &'j RecordSettings) -> Self {
        Records {
            judge,
            settings,
            labels: &[],
            contained: false,
            disclosure: Disclosure::default(),
        }
    }

    /// Records inside Bundles labelled `labels`.
    pub fn within(mut self, labels: &'j [String]) -> Self {
        self.labels = labels;
        self
    }

    /// As [`Records::record`], adding what was learned to `into`.
    pub fn record_into(
        &mut self,
        bytes: &[u8],
        inherited: &[String],
        out: &mut Vec<u8>,
        into: &mut Disclosure,
    ) -> Result<Shown, String> {
        let shown = self.record(bytes, inherited, out);
        into.absorb(&std::mem::take(&mut self.disclosure));
        shown
    }

    /// Decides the record in `bytes` (one JSON object) and, when it may be
    /// shown, appends it — redacted — to `out`. `inherited`: the
    /// container's patients, for a contained resource.
    pub fn record(
        &mut self,
        bytes: &[u8],
        inherited: &[String],
        out: &mut Vec<u8>,
    ) -> Result<Shown, String> {
        let mut head = RecordHead::parse(bytes)?;
        for l in self.labels {
            if !head.labels.contains(l) {
                head.labels.push(l.clone());
            }
        }
        let ty = head.resource_type.clone();
        let accesses = record_accesses(&head.decisive, &self.settings.bases, inherited);
        // A server's report on the request itself is no one's record.
        if ty != "OperationOutcome" {
            if !self.judge.may_read(&accesses, &head.labels) {
                self.disclosure.removed(&ty);
                return Ok(Shown::No);
            }
            for a in &accesses {
                if let Some(p) = &a.patient {
                    self.disclosure.patients.insert(p.clone());
                }
            }
        }
        self.disclosure.records += 1;
        let patients: Vec<String> = accesses.into_iter().filter_map(|a| a.patient).collect();
        let rules = self.judge.rules(&ty);
        if rules.passes_everything() && !head.contained {
            out.extend_from_slice(bytes);
            return Ok(Shown::Yes);
        }
        let start = out.len();
        let FieldPass {
            mut redacted,
            inner_changed: inner,
            meta_span,
        } = self.redact_fields(&rules, bytes, &patients, out)?;
        if rules.pseudonymizes_ids() {
            // Safe Harbor, wherever in the record: dates to their year,
            // identifiers pseudonymized, free text and names of references
            // gone.
            let record = out.split_off(start);
            let mut v: Value = serde_json::from_slice(&record).map_err(|e| e.to_string())?;
            let n = safe_harbor_scrub(&mut v, self.settings.key.as_deref(), true);
            if n > 0 {
                redacted.add(super::classes::IDENTIFIABLE, n);
            }
            if !redacted.is_empty() || inner {
                let meta = v
                    .as_object_mut()
                    .ok_or("a record is not an object")?
                    .entry("meta")
                    .or_insert_with(|| Value::Object(Map::new()));
                add_label(meta)?;
            }
            serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
        } else if !redacted.is_empty() || inner {
            match meta_span {
                Some((s, e)) => {
                    let mut meta: Value = serde_json::from_slice(&out[s..e])
                        .map_err(|_| "a record's meta is malformed")?;
                    add_label(&mut meta)?;
                    let text = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
                    out.splice(s..e, text);
                }
                None => append_meta(out, start)?,
            }
        }
        self.disclosure.redacted.absorb(&redacted);
        Ok(Shown::Yes)
    }

    /// One pass of the field plan; contained resources are decided as they
    /// come.
    fn redact_fields(
        &mut self,
        rules: &Arc<Rules>,
        bytes: &[u8],
        patients: &[String],
        out: &mut Vec<u8>,
    ) -> Result<FieldPass, String> {
        let mask = MaskContext {
            key: self.settings.key.clone(),
            patient: patients.first().cloned(),
            today: self.settings.today,
        };
        let mut inner_changed = false;
        let local_id = self.contained;
        let max = self.settings.max_record;
        let mut contained = |value: &[u8], out: &mut Vec<u8>| -> Result<Captured, String> {
            let before = self.disclosure.clone();
            let nested = RecordHead::parse(value)?;
            if nested.contained {
                // FHIR forbids nesting; such a resource is not shown.
                self.disclosure.removed(&nested.resource_type);
                inner_changed = true;
                return Ok(Captured::Remove);
            }
            let outer = std::mem::replace(&mut self.contained, true);
            let shown = self.record(value, patients, out);
            self.contained = outer;
            let shown = shown?;
            if shown == Shown::No || self.disclosure.redacted != before.redacted {
                inner_changed = true;
            }
            Ok(match shown {
                Shown::Yes => Captured::Written,
                Shown::No => Captured::Remove,
            })
        };
        let plan = FieldPlan::new(rules.clone(), mask, Some(&mut contained)).local_id(local_id);
        let mut t = Transformer::new(plan, max);
        t.feed(bytes, true, out).map_err(|e| e.to_string())?;
        let plan = t.into_plan();
        let (redacted, meta_span) = (plan.redacted, plan.meta_span);
        Ok(FieldPass {
            redacted,
            inner_changed,
            meta_span,
        })
    }
}

/// What one pass of the field plan over a record did.
struct FieldPass {
    redacted: Redacted,
    /// A contained resource was removed or redacted.
    inner_changed: bool,
    /// Where the record's `meta` went in the output.
    meta_span: Option<(usize, usize)>,
}

/// Free-text members Safe Harbor removes wherever they are (they can
/// repeat any identifier).
const FREE_TEXT: [&str; 7] = [
    "valueString",
    "description",
    "comment",
    "note",
    "conclusion",
    "presentedForm",
    "div",
];

/// The Safe Harbor profile's pass over a whole record, beyond its
/// classes: every date or dateTime (including `meta.lastUpdated`) cut to
/// its year; every `identifier`'s values pseudonymized (the identifier
/// removed without a key); references' `display` names, free text and
/// address extensions (geolocation) removed. Returns how many values it
/// changed.
fn safe_harbor_scrub(v: &mut Value, key: Option<&[u8]>, top: bool) -> u32 {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            let digits = |r: std::ops::Range<usize>| {
                b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            };
            let dated = b.len() >= 7 && digits(0..4) && b[4] == b'-' && digits(5..7);
            if dated {
                s.truncate(4);
                1
            } else {
                0
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .map(|i| safe_harbor_scrub(i, key, false))
            .sum(),
        Value::Object(m) => {
            let mut n = 0;
            let before = m.len();
            m.retain(|k, _| !FREE_TEXT.contains(&k.as_str()));
            if m.contains_key("reference") {
                m.remove("display");
            }
            if m.contains_key("city") || m.contains_key("postalCode") || m.contains_key("line") {
                m.remove("extension");
            }
            n += (before - m.len()) as u32;
            for name in ["identifier", "masterIdentifier"] {
                let Some(ids) = m.get_mut(name) else {
                    continue;
                };
                match key {
                    Some(k) => n += pseudonymize_values(ids, k),
                    None => {
                        m.remove(name);
                        n += 1;
                    }
                }
            }
            for (k, child) in m.iter_mut() {
                if top && k == "meta" {
                    // What the record is and its labels stay; its date
                    // goes to the year.
                    if let Some(Value::String(s)) = child.get_mut("lastUpdated") {
                        s.truncate(4);
                        n += 1;
                    }
                    continue;
                }
                if k == "identifier" || k == "masterIdentifier" {
                    continue;
                }
                n += safe_harbor_scrub(child, key, false);
            }
            n
        }
        _ => 0,
    }
}

/// Pseudonymizes every `value` in an Identifier or a list of them.
fn pseudonymize_values(ids: &mut Value, key: &[u8]) -> u32 {
    match ids {
        Value::Array(items) => items.iter_mut().map(|i| pseudonymize_values(i, key)).sum(),
        Value::Object(m) => match m.get_mut("value") {
            Some(Value::String(s)) => {
                *s = super::mask::pseudonym(key, s);
                1
            }
            Some(_) => {
                m.remove("value");
                1
            }
            None => 0,
        },
        _ => 0,
    }
}

/// What decides a record, parsed from its top-level members only.
struct RecordHead {
    resource_type: String,
    /// `resourceType`, `id` and the compartment members.
    decisive: Value,
    labels: Vec<String>,
    contained: bool,
}

impl RecordHead {
    fn parse(bytes: &[u8]) -> Result<RecordHead, String> {
        let members: Members<'_> = serde_json::from_slice(bytes)
            .map_err(|e| format!("a record is not a JSON object with distinct members ({e})"))?;
        let get = |name: &str| members.get(name);
        let resource_type: String = get("resourceType")
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .ok_or("a record without a resourceType")?;
        let mut decisive = Map::new();
        decisive.insert("resourceType".into(), Value::String(resource_type.clone()));
        if let Some(id) = get("id") {
            let id: Value = serde_json::from_str(id.get()).map_err(|e| e.to_string())?;
            decisive.insert("id".into(), id);
        }
        for name in record_members(&resource_type) {
            if let Some(raw) = get(name) {
                let v: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
                decisive.insert(name.to_string(), v);
            }
        }
        let labels = match get("meta") {
            Some(raw) => labels(raw)?,
            None => Vec::new(),
        };
        Ok(RecordHead {
            resource_type,
            decisive: Value::Object(decisive),
            labels,
            contained: get("contained").is_some(),
        })
    }
}

/// `meta.security` codes of a `meta` object's text.
pub(crate) fn labels_of(meta: &[u8]) -> Result<Vec<String>, String> {
    let raw: &RawValue = serde_json::from_slice(meta).map_err(|_| "a meta is malformed")?;
    labels(raw)
}

/// `meta.security` codes.
fn labels(meta: &RawValue) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        security: Vec<Coding>,
    }
    #[derive(serde::Deserialize)]
    struct Coding {
        code: Option<String>,
    }
    let meta: Meta =
        serde_json::from_str(meta.get()).map_err(|_| "a record's meta is malformed")?;
    Ok(meta.security.into_iter().filter_map(|c| c.code).collect())
}

/// An object's members, unparsed; a member named twice is an error.
pub(crate) struct Members<'a>(pub(crate) Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    // Which of two members counts is the reader's choice:
                    // decide on one and a client reads the other. Refused.
                    if out.iter().any(|(seen, _)| *seen == k.0) {
                        return Err(serde::de::Error::custom("a member appears twice"));
                    }
                    out.push((k.0, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A key, borrowed unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Adds the `REDACTED` label to a `meta` object (once).
fn add_label(meta: &mut Value) -> Result<(), String> {
    let Value::Object(m) = meta else {
        return Err("a record's meta is not an object".into());
    };
    let security = m
        .entry("security")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(codings) = security else {
        return Err("a record's meta.security is not an array".into());
    };
    let present = codings.iter().any(|c| {
        c.get("system").and_then(Value::as_str) == Some(OBSERVATION_VALUE)
            && c.get("code").and_then(Value::as_str) == Some("REDACTED")
    });
    if !present {
        codings.push(serde_json::from_str(&redacted_coding()).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// A record without `meta` (written from `start` in `out`) gets one with
/// the label, before its closing brace.
fn append_meta(out: &mut Vec<u8>, start: usize) -> Result<(), String> {
    let end = out
        .iter()
        .rposition(|b| *b == b'}')
        .filter(|at| *at > start)
        .ok_or("a record is not an object")?;
    let empty = out[start + 1..end].iter().all(u8::is_ascii_whitespace);
    let member = format!(
        "{}\"meta\":{{\"security\":[{}]}}",
        if empty { "" } else { "," },
        redacted_coding()
    );
    out.splice(end..end, member.into_bytes());
    Ok(())
}

fn redacted_coding() -> String {
    format!("{{\"system\":\"{OBSERVATION_VALUE}\",\"code\":\"REDACTED\",\"display\":\"redacted\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::classes::{DataClasses, EXAMPLE};
    use serde_json::json;

    /// Denies records of patients in `denied`, and withholds `withheld`.
    pub(crate) struct TestJudge {
        pub denied: Vec<&'static str>,
        pub withheld: Vec<&'static str>,
        pub classes: DataClasses,
    }

    impl Judge for TestJudge {
        fn may_read(&mut self, accesses: &[AccessRequest], labels: &[String]) -> bool {
            accesses.iter().all(|a| {
                a.fan_out.is_none()
                    && a.patient
                        .as_deref()
                        .is_none_or(|p| !self.denied.contains(&p))
            }) && !labels.iter().any(|l| l == "PSY")
        }
        fn rules(&mut self, ty: &str) -> Arc<Rules> {
            let withheld = self.withheld.clone();
            Arc::new(Rules::for_type(&self.classes, ty, &mut |c| {
                withheld.contains(&c)
            }))
        }
    }

    fn settings() -> RecordSettings {
        RecordSettings {
            bases: vec![],
            key: Some(Arc::from(&b"k"[..])),
            today: jiff::civil::date(2026, 12, 5),
            max_record: 1 << 20,
        }
    }

    fn judge(denied: &[&'static str], withheld: &[&'static str]) -> TestJudge {
        TestJudge {
            denied: denied.to_vec(),
            withheld: withheld.to_vec(),
            classes: DataClasses::parse(EXAMPLE).unwrap(),
        }
    }

    fn one(j: &mut TestJudge, v: &Value) -> (Option<Value>, Disclosure) {
        let s = settings();
        let mut r = Records::new(j, &s);
        let mut out = Vec::new();
        let shown = r
            .record(&serde_json::to_vec(v).unwrap(), &[], &mut out)
            .unwrap();
        let v = (shown == Shown::Yes).then(|| serde_json::from_slice(&out).unwrap());
        (v, r.disclosure)
    }

    #[test]
    fn records_are_decided_by_patient_and_label() {
        let mut j = judge(&["b"], &[]);
        let obs = json!({"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/b"}});
        let (shown, d) = one(&mut j, &obs);
        assert_eq!(shown, None);
        assert_eq!(d.removed, [("Observation".to_string(), 1)]);
        let psy = json!({"resourceType": "Condition", "meta": {"security": [{"code": "PSY"}]},
                         "subject": {"reference": "Patient/a"}});
        assert_eq!(one(&mut j, &psy).0, None);
        // Shown untouched, byte for byte, when nothing is withheld.
        let mine = json!({"resourceType": "Observation", "subject": {"reference": "Patient/a"}, "valueQuantity": {"value": 1.50}});
        let (shown, d) = one(&mut j, &mine);
        assert_eq!(shown, Some(mine));
        assert_eq!(d.patients.iter().collect::<Vec<_>>(), ["a"]);
        // Not a record without a type.
        let s = settings();
        let mut r = Records::new(&mut j, &s);
        assert!(r.record(b"{\"id\":\"x\"}", &[], &mut Vec::new()).is_err());
    }

    #[test]
    fn a_redacted_record_is_labelled_and_contained_records_are_decided() {
        let mut j = judge(&["b"], &["contact", "narrative"]);
        let patient = json!({"resourceType": "Patient", "id": "a", "text": {"div": "x"},
                             "telecom": [{"value": "1"}], "gender": "female"});
        let (shown, d) = one(&mut j, &patient);
        let shown = shown.unwrap();
        assert_eq!(
            shown,
            json!({"resourceType": "Patient", "id": "a", "gender": "female",
                   "meta": {"security": [{"system": OBSERVATION_VALUE, "code": "REDACTED", "display": "redacted"}]}})
        );
        assert_eq!(d.redacted.by_class.len(), 2);
        let with_meta = json!({"resourceType": "Patient", "id": "a", "meta": {"versionId": "2"}, "telecom": []});
        let shown = one(&mut j, &with_meta).0.unwrap();
        assert_eq!(shown["meta"]["versionId"], "2");
        assert_eq!(shown["meta"]["security"][0]["code"], "REDACTED");
        // Contained: another patient's record goes, one naming nobody
        // belongs to its container.
        let request = json!({"resourceType": "MedicationRequest", "subject": {"reference": "Patient/a"},
        "contained": [
            {"resourceType": "Medication", "id": "m"},
            {"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/b"}}
        ]});
        let (shown, d) = one(&mut j, &request);
        let shown = shown.unwrap();
        assert_eq!(
            shown["contained"],
            json!([{"resourceType": "Medication", "id": "m"}])
        );
        assert_eq!(shown["meta"]["security"][0]["code"], "REDACTED");
        assert_eq!(d.removed, [("Observation".to_string(), 1)]);
        assert_eq!(d.records, 2);
    }
}
