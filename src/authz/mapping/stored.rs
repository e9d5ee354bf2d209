//! Writes by id change a record that already exists: an update, a patch or
//! a delete of `Observation/1` is also a change to whoever `Observation/1`
//! belongs to now, which the request alone cannot show. The proxy reads the
//! stored record through the same upstream first ([`StoredRecords`]); the
//! write is then decided on the stored record's patients as well as on the
//! new body's. Without it the write fans out (`stored-record-unread`).
//!
//! A PATCH is decided on the record it would produce too: a JSON Patch is
//! applied to the stored record (within an operation, size and depth
//! budget) and the result read like a body; a FHIRPath Patch cannot be
//! applied here, so one that may write a compartment element fans out
//! (`patch-compartment`). Nothing read from the stored or patched record
//! becomes a 400: what cannot be read fans out, so a 400 never tells a
//! requester something about a record they may not read.

use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;

use super::fhir::{is_json, media_type_is, Payload};
use super::json::parse_strict;
use super::reference::{body_patients, compartment_roots};
use super::search::Scope;
use super::MappingError;

/// Fan-out reason of a write by id whose stored record was not read.
pub const STORED_UNREAD: &str = "stored-record-unread";

/// The stored versions of records that writes by id change, as the upstream
/// returned them: `None` when it has no such record (404 or 410).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredRecords {
    records: HashMap<(String, String), Option<Value>>,
}

impl StoredRecords {
    /// Records what the upstream holds at `resource_type/id`.
    pub fn insert(&mut self, resource_type: &str, id: &str, record: Option<Value>) {
        self.records
            .insert((resource_type.to_owned(), id.to_owned()), record);
    }

    /// `None`: not read; `Some(None)`: read, and absent.
    fn get(&self, resource_type: &str, id: &str) -> Option<Option<&Value>> {
        self.records
            .get(&(resource_type.to_owned(), id.to_owned()))
            .map(Option::as_ref)
    }
}

/// What a write by id does to the stored record.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change<'a> {
    /// `PUT`: the new body replaces it (already read by the caller).
    Replace,
    /// `PATCH` with this body.
    Patch(Payload<'a>),
    /// `DELETE`.
    Delete,
}

/// Adds the patients of the stored `ty/id` (and, for a patch, of the record
/// it produces) to `scope`, or marks the write unread.
pub(super) fn stored_patients(
    stored: Option<&StoredRecords>,
    ty: &str,
    id: &str,
    change: Change<'_>,
    bases: &[String],
    scope: &mut Scope,
) -> Result<(), MappingError> {
    let record = match stored.and_then(|s| s.get(ty, id)) {
        None => {
            scope.fan(STORED_UNREAD);
            return Ok(());
        }
        // Nothing stored: an update creates it (its body decides); a patch
        // or delete finds nothing to change.
        Some(None) => return Ok(()),
        Some(Some(record)) => record,
    };
    // Nothing about the stored record, or what a patch makes of it, may
    // turn into a 400: the requester may not be allowed to read it, and
    // 400 vs 403 would tell them something about it (a `test` that holds, a
    // value's shape). Whatever cannot be read fans out, decided like any
    // other denial.
    if check_identity(record, ty, id).is_err() {
        scope.fan("stored-record-mismatch");
        return Ok(());
    }
    read_patients(record, bases, scope, "stored-record-unreadable");
    if let Change::Patch(payload) = change {
        let doc = patch_document(payload)?;
        match &doc {
            PatchDoc::Json(ops) => match apply(record, ops) {
                Some(patched) if check_identity(&patched, ty, id).is_ok() => {
                    read_patients(&patched, bases, scope, "patch-unapplied");
                }
                _ => scope.fan("patch-unapplied"),
            },
            PatchDoc::FhirPath(_) => {
                if touches_compartment(&doc, ty) {
                    scope.fan("patch-compartment");
                }
            }
        }
    }
    Ok(())
}

/// Most operations in one JSON Patch.
const MAX_PATCH_OPS: usize = 100;

/// Largest stored record the proxy reads to decide a write.
pub const MAX_STORED_RECORD: usize = 1024 * 1024;

/// Largest document a patch may grow the stored record to, in serialized
/// bytes: `copy` can double a document per operation.
const MAX_PATCHED: usize = 2 * MAX_STORED_RECORD;

/// `record` with `ops` applied, or `None` when they do not apply, are too
/// many, or would grow it past [`MAX_PATCHED`]. Applied one at a time on a
/// copy (nothing to undo), measuring what each `copy` adds.
fn apply(record: &Value, ops: &[json_patch::PatchOperation]) -> Option<Value> {
    use json_patch::PatchOperation;
    if ops.len() > MAX_PATCH_OPS {
        return None;
    }
    let mut size = serde_json::to_vec(record).ok()?.len();
    let mut doc = record.clone();
    for op in ops {
        // What the operation puts where: its size counts against the
        // budget, and its depth where it lands against MAX_DEPTH (copying a
        // value into itself doubles the depth, and a deep enough value
        // overflows the stack when it is dropped).
        let (value, at) = match op {
            PatchOperation::Add(a) => (Some(&a.value), &a.path),
            PatchOperation::Replace(r) => (Some(&r.value), &r.path),
            PatchOperation::Copy(c) => (Some(doc.pointer(c.from.as_str())?), &c.path),
            PatchOperation::Move(m) => (Some(doc.pointer(m.from.as_str())?), &m.path),
            PatchOperation::Remove(r) => (None, &r.path),
            PatchOperation::Test(t) => (None, &t.path),
        };
        if let Some(value) = value {
            if at.count() + depth(value) > MAX_DEPTH {
                return None;
            }
            if !matches!(op, PatchOperation::Move(_)) {
                size += serde_json::to_vec(value).ok()?.len();
            }
        }
        if size > MAX_PATCHED {
            return None;
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).ok()?;
    }
    Some(doc)
}

/// Deepest nesting a patched record may reach (serde_json parses to 128).
const MAX_DEPTH: usize = 100;

/// How deeply `value` nests (a scalar is 0), without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(fields) => stack.extend(fields.values().map(|f| (f, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// Whether a patch of a `ty` may change whose record it is: an operation
/// (other than `test`) on a compartment element or on the whole resource.
/// A conditional patch has no stored record to apply it to: such a patch
/// fans out (`patch-compartment`).
pub(super) fn patch_touches_compartment(
    ty: &str,
    payload: Payload<'_>,
) -> Result<bool, MappingError> {
    Ok(touches_compartment(&patch_document(payload)?, ty))
}

fn touches_compartment(doc: &PatchDoc, ty: &str) -> bool {
    let roots = compartment_roots(ty);
    match doc {
        PatchDoc::Json(ops) => ops.iter().any(|op| {
            let writes = |path: &json_patch::jsonptr::Pointer| match path.first() {
                None => true,
                Some(token) => roots.contains(&token.decoded().as_ref()),
            };
            match op {
                json_patch::PatchOperation::Test(_) => false,
                json_patch::PatchOperation::Move(m) => writes(&m.path) || writes(&m.from),
                _ => writes(op.path()),
            }
        }),
        PatchDoc::FhirPath(paths) => paths.iter().any(|p| touches(p, ty, &roots)),
    }
}

/// Whether `record` is `ty/id`.
fn check_identity(record: &Value, ty: &str, id: &str) -> Result<(), ()> {
    let same = record.get("resourceType").and_then(Value::as_str) == Some(ty)
        && record.get("id").and_then(Value::as_str) == Some(id);
    same.then_some(()).ok_or(())
}

/// Adds the patients `record` names to `scope`; a record whose references
/// cannot be read fans out with `reason` instead of failing the request.
fn read_patients(record: &Value, bases: &[String], scope: &mut Scope, reason: &'static str) {
    let mut found = Scope::default();
    match body_patients(record, bases, &mut found) {
        Ok(()) => scope.absorb(found),
        Err(_) => scope.fan(reason),
    }
}

/// A patch body, in one of FHIR's two formats.
enum PatchDoc {
    /// RFC 6902 operations.
    Json(Vec<json_patch::PatchOperation>),
    /// A FHIRPath Patch's operations.
    FhirPath(Vec<FhirPathOp>),
}

const JSON_PATCH: &str = "application/json-patch+json";

fn patch_document(payload: Payload<'_>) -> Result<PatchDoc, MappingError> {
    match payload {
        Payload::None | Payload::Raw { bytes: [], .. } => {
            Err(MappingError::bad("patch without a body"))
        }
        Payload::Raw {
            content_type: Some(ct),
            bytes,
        } if media_type_is(ct, JSON_PATCH) => json_operations(bytes),
        Payload::Raw {
            content_type,
            bytes,
        } if content_type.is_none_or(is_json) => fhirpath_paths(&parse_strict(bytes)?),
        Payload::Raw { .. } => Err(MappingError::bad(
            "a patch is JSON Patch or FHIRPath Patch (JSON)",
        )),
        // In a Bundle: a Binary carrying a JSON Patch, or Parameters.
        Payload::Resource(resource) => match resource.get("resourceType").and_then(Value::as_str) {
            Some("Binary") => {
                let is_json_patch = resource
                    .get("contentType")
                    .and_then(Value::as_str)
                    .is_some_and(|ct| media_type_is(ct, JSON_PATCH));
                let data = resource.get("data").and_then(Value::as_str);
                let (true, Some(data)) = (is_json_patch, data) else {
                    return Err(MappingError::bad("a Binary patch must carry a JSON Patch"));
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| MappingError::bad("Binary.data is not base64"))?;
                json_operations(&bytes)
            }
            _ => fhirpath_paths(resource),
        },
    }
}

fn json_operations(bytes: &[u8]) -> Result<PatchDoc, MappingError> {
    let value = parse_strict(bytes)?;
    serde_json::from_value(value)
        .map(PatchDoc::Json)
        .map_err(|_| MappingError::bad("the body is not a JSON Patch"))
}

/// The paths a FHIRPath Patch (a `Parameters` resource) writes to.
fn fhirpath_paths(resource: &Value) -> Result<PatchDoc, MappingError> {
    let bad = || MappingError::bad("the body is not a FHIRPath Patch");
    if resource.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad());
    }
    let Some(Value::Array(params)) = resource.get("parameter") else {
        return Err(bad());
    };
    let mut paths = Vec::with_capacity(params.len());
    for param in params {
        if param.get("name").and_then(Value::as_str) != Some("operation") {
            return Err(bad());
        }
        let part = |name: &str| {
            param
                .get("part")
                .and_then(Value::as_array)
                .and_then(|parts| {
                    parts
                        .iter()
                        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
                })
        };
        // A part given twice is read first by one server, last by another.
        let names: Vec<&str> = param
            .get("part")
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("name").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            return Err(bad());
        }
        let text = |name: &str, kind: &str| part(name).and_then(|p| p.get(kind)?.as_str());
        paths.push(FhirPathOp {
            kind: text("type", "valueCode").map(str::to_owned),
            path: text("path", "valueString").ok_or_else(bad)?.to_owned(),
            name: text("name", "valueString").map(str::to_owned),
        });
    }
    Ok(PatchDoc::FhirPath(paths))
}

/// One FHIRPath Patch operation: its `type`, `path` and `name` parts.
struct FhirPathOp {
    kind: Option<String>,
    path: String,
    name: Option<String>,
}

/// Whether a FHIRPath Patch operation on a `ty` may write a compartment
/// element. Only plain paths are understood (`Type`, then `.element`
/// steps, each with an optional `[n]`): a function (`where(true)`,
/// `select($this)`), a variable, a quoted name or a bare root could reach
/// any element, so it counts as touching one.
fn touches(op: &FhirPathOp, ty: &str, roots: &[&str]) -> bool {
    let Some(rest) = op.path.strip_prefix(ty) else {
        return true;
    };
    let steps: Vec<&str> = match rest {
        "" => Vec::new(),
        _ => match rest.strip_prefix('.') {
            Some(steps) => steps.split('.').collect(),
            None => return true,
        },
    };
    if !steps.iter().all(|s| is_plain_step(s)) {
        return true;
    }
    let root = match (steps.first(), op.kind.as_deref(), op.name.as_deref()) {
        (Some(first), _, _) => first.split('[').next().unwrap_or(first),
        // `add` at the root names the element it adds.
        (None, Some("add"), Some(name)) if is_identifier(name) => name,
        _ => return true,
    };
    roots.contains(&root)
}

/// `name` or `name[n]`.
fn is_plain_step(step: &str) -> bool {
    match step.split_once('[') {
        None => is_identifier(step),
        Some((name, index)) => {
            is_identifier(name)
                && index
                    .strip_suffix(']')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(record: Value) -> StoredRecords {
        let mut s = StoredRecords::default();
        s.insert("Observation", "o1", Some(record));
        s.insert("Observation", "gone", None);
        s
    }

    fn run(s: &StoredRecords, id: &str, change: Change<'_>) -> Result<Scope, MappingError> {
        let mut scope = Scope::default();
        stored_patients(Some(s), "Observation", id, change, &[], &mut scope).map(|()| scope)
    }

    fn obs(patient: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o1", "subject": {"reference": format!("Patient/{patient}")}})
    }

    #[test]
    fn the_stored_record_names_its_patients() {
        let s = stored(obs("9"));
        let scope = run(&s, "o1", Change::Replace).unwrap();
        assert_eq!(scope.patients(), ["9"]);
        assert_eq!(scope.fan_out(), None);
        // Absent: nothing stored to protect.
        let scope = run(&s, "gone", Change::Delete).unwrap();
        assert!(scope.patients().is_empty());
        assert_eq!(scope.fan_out(), None);
        // Never read: fan-out.
        let scope = run(&s, "other", Change::Delete).unwrap();
        assert_eq!(scope.fan_out(), Some(STORED_UNREAD));
        let mut scope = Scope::default();
        stored_patients(None, "Observation", "o1", Change::Delete, &[], &mut scope).unwrap();
        assert_eq!(scope.fan_out(), Some(STORED_UNREAD));
        // An upstream that answers with another record, or one whose
        // references cannot be read, fails closed (a denial, not a 400).
        let s = stored(json!({"resourceType": "Observation", "id": "o2"}));
        let scope = run(&s, "o1", Change::Delete).unwrap();
        assert_eq!(scope.fan_out(), Some("stored-record-mismatch"));
        let s = stored(json!({"resourceType": "Observation", "id": "o1", "subject": "Patient/1"}));
        let scope = run(&s, "o1", Change::Delete).unwrap();
        assert_eq!(scope.fan_out(), Some("stored-record-unreadable"));
    }

    #[test]
    fn a_json_patch_is_decided_on_the_record_it_produces() {
        let s = stored(obs("9"));
        let patch = |body: &'static str| {
            Change::Patch(Payload::Raw {
                content_type: Some("application/json-patch+json"),
                bytes: body.as_bytes(),
            })
        };
        let scope = run(
            &s,
            "o1",
            patch(r#"[{"op":"replace","path":"/subject/reference","value":"Patient/10"}]"#),
        )
        .unwrap();
        assert_eq!(scope.patients(), ["9", "10"]);
        let scope = run(
            &s,
            "o1",
            patch(r#"[{"op":"add","path":"/performer","value":[{"reference":"Patient/11"}]}]"#),
        )
        .unwrap();
        assert_eq!(scope.patients(), ["9", "11"]);
        let scope = run(
            &s,
            "o1",
            patch(r#"[{"op":"add","path":"/status","value":"final"}]"#),
        )
        .unwrap();
        assert_eq!(scope.patients(), ["9"]);
        // Whether it applies (a `test`, a path that is not there) says
        // something about the record: a fan-out like any denial, so a
        // requester who may not read it learns nothing from 400 vs 403.
        let unapplied = |body: &'static str| {
            let scope = run(&s, "o1", patch(body)).unwrap();
            (scope.patients().to_vec(), scope.fan_out())
        };
        for body in [
            r#"[{"op":"test","path":"/status","value":"x"}]"#,
            r#"[{"op":"remove","path":"/valueQuantity"}]"#,
            r#"[{"op":"replace","path":"/id","value":"o2"}]"#,
            // The undo of a failed patch must not panic (json-patch's
            // `patch` does, on this).
            r#"[{"op":"add","path":"/x","value":1},{"op":"move","from":"/x","path":"/nope/y"}]"#,
            // What the patch makes is unreadable: a fan-out too, so a
            // `test` before it cannot tell 400 from 403.
            r#"[{"op":"test","path":"/id","value":"o1"},{"op":"add","path":"/subject","value":"x"}]"#,
        ] {
            assert_eq!(
                unapplied(body),
                (vec!["9".to_owned()], Some("patch-unapplied")),
                "{body}"
            );
        }
        // A patch that doubles the record per `copy` stops at the budget.
        let mut ops = vec![
            r#"{"op":"add","path":"/a","value":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#.to_owned(),
        ];
        for i in 0..40 {
            ops.push(format!(r#"{{"op":"copy","from":"","path":"/k{i}"}}"#));
        }
        let bomb: &'static str = Box::leak(format!("[{}]", ops.join(",")).into_boxed_str());
        assert_eq!(unapplied(bomb).1, Some("patch-unapplied"));
        let many: &'static str = Box::leak(
            format!(
                "[{}]",
                vec![r#"{"op":"test","path":"/id","value":"o1"}"#; 101].join(",")
            )
            .into_boxed_str(),
        );
        assert_eq!(unapplied(many).1, Some("patch-unapplied"));
        // Copying a value into its own depths doubles the nesting: refused
        // before it is deep enough to overflow the stack when dropped.
        let mut deep = "1".to_owned();
        for _ in 0..60 {
            deep = format!(r#"{{"a":{deep}}}"#);
        }
        let into_itself = format!("/c{}", "/a".repeat(59));
        let bomb: &'static str = Box::leak(
            format!(
                r#"[{{"op":"add","path":"/c","value":{deep}}},{{"op":"copy","from":"/c","path":"{into_itself}"}}]"#
            )
            .into_boxed_str(),
        );
        assert_eq!(unapplied(bomb).1, Some("patch-unapplied"));
        assert_eq!(depth(&serde_json::from_str(&deep).unwrap()), 60);
        // Not a patch at all: the request is malformed whatever is stored.
        assert!(run(&s, "o1", patch(r#"{"op":"replace"}"#)).is_err());
        let xml = Change::Patch(Payload::Raw {
            content_type: Some("application/xml-patch+xml"),
            bytes: b"<x/>",
        });
        assert!(run(&s, "o1", xml).is_err());
    }

    #[test]
    fn a_fhirpath_patch_on_a_compartment_element_fans_out() {
        let s = stored(obs("9"));
        let op = |path: &str, name: Option<&str>| {
            let kind = if name.is_some() { "add" } else { "replace" };
            let mut parts = vec![
                json!({"name": "type", "valueCode": kind}),
                json!({"name": "path", "valueString": path}),
            ];
            if let Some(name) = name {
                parts.push(json!({"name": "name", "valueString": name}));
            }
            json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]})
        };
        let fan = |body: Value| {
            let bytes = serde_json::to_vec(&body).unwrap();
            let change = Change::Patch(Payload::Raw {
                content_type: Some("application/fhir+json"),
                bytes: &bytes,
            });
            run(&s, "o1", change).map(|scope| scope.fan_out())
        };
        assert_eq!(fan(op("Observation.status", None)).unwrap(), None);
        assert_eq!(
            fan(op("Observation.subject", None)).unwrap(),
            Some("patch-compartment")
        );
        assert_eq!(
            fan(op("Observation.performer[0]", None)).unwrap(),
            Some("patch-compartment")
        );
        assert_eq!(
            fan(op("Observation", Some("performer"))).unwrap(),
            Some("patch-compartment")
        );
        assert_eq!(
            fan(op("Patient.name", None)).unwrap(),
            Some("patch-compartment")
        );
        // Functions, variables and quoted names reach anywhere.
        for path in [
            "Observation.where(true)",
            "Observation.select($this).subject",
            "Observation.`status`",
            "Observation.status.where(true)",
            "Observation",
            "Observation.status[x]",
        ] {
            assert_eq!(
                fan(op(path, None)).unwrap(),
                Some("patch-compartment"),
                "{path}"
            );
        }
        assert_eq!(fan(op("Observation.note[0]", None)).unwrap(), None);
        assert_eq!(
            fan(op("Observation", Some("note"))).unwrap(),
            None,
            "add at the root"
        );
        assert!(fan(json!({"resourceType": "Observation"})).is_err());
        let twice = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Observation.status"},
            {"name": "path", "valueString": "Observation.subject"}]}]});
        assert!(fan(twice).is_err(), "a part given twice");
        // In a Bundle, a Binary carries a JSON Patch.
        let data = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"replace","path":"/subject/reference","value":"Patient/12"}]"#);
        let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data});
        let scope = run(&s, "o1", Change::Patch(Payload::Resource(&binary))).unwrap();
        assert_eq!(scope.patients(), ["9", "12"]);
    }
}
