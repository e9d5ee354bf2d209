//! Writes by id change a record that already exists: an update, a patch or
//! a delete of `Observation/1` is also a change to whoever `Observation/1`
//! belongs to now, which the request alone cannot show. The proxy reads the
//! stored record through the same upstream first ([`StoredRecords`]); the
//! write is then decided on the stored record's patients as well as on the
//! new body's. Without it the write fans out (`stored-record-unread`).
//!
//! A PATCH is decided on the record it would produce too: a JSON Patch is
//! applied to the stored record and the result read like a body; a FHIRPath
//! Patch that touches a compartment element cannot be applied here and fans
//! out (`patch-compartment`).

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

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
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
    check_identity(
        record,
        ty,
        id,
        "the stored record is not the one the URL names",
    )?;
    body_patients(record, bases, scope)?;
    if let Change::Patch(payload) = change {
        match patch_document(payload)? {
            PatchDoc::Json(ops) => {
                let mut patched = record.clone();
                json_patch::patch(&mut patched, &ops).map_err(|_| {
                    MappingError::bad("the patch does not apply to the stored record")
                })?;
                check_identity(
                    &patched,
                    ty,
                    id,
                    "a patch may not change resourceType or id",
                )?;
                body_patients(&patched, bases, scope)?;
            }
            PatchDoc::FhirPath(_) => {
                if patch_touches_compartment(ty, payload)? {
                    scope.fan("patch-compartment");
                }
            }
        }
    }
    Ok(())
}

/// Whether a patch of a `ty` may change whose record it is: an operation
/// (other than `test`) on a compartment element or on the whole resource.
/// A conditional patch has no stored record to apply it to: such a patch
/// fans out (`patch-compartment`).
pub(super) fn patch_touches_compartment(
    ty: &str,
    payload: Payload<'_>,
) -> Result<bool, MappingError> {
    let roots = compartment_roots(ty);
    Ok(match patch_document(payload)? {
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
    })
}

fn check_identity(
    record: &Value,
    ty: &str,
    id: &str,
    reason: &'static str,
) -> Result<(), MappingError> {
    let same = record.get("resourceType").and_then(Value::as_str) == Some(ty)
        && record.get("id").and_then(Value::as_str) == Some(id);
    if same {
        Ok(())
    } else {
        Err(MappingError::bad(reason))
    }
}

/// A patch body, in one of FHIR's two formats.
enum PatchDoc {
    /// RFC 6902 operations.
    Json(Vec<json_patch::PatchOperation>),
    /// A FHIRPath Patch: the `path` of every operation, with the `name` it
    /// adds under it appended (`Observation` + `subject`).
    FhirPath(Vec<String>),
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
        let text = |name: &str| part(name).and_then(|p| p.get("valueString")?.as_str());
        let path = text("path").ok_or_else(bad)?;
        match text("name") {
            Some(name) => paths.push(format!("{path}.{name}")),
            None => paths.push(path.to_owned()),
        }
    }
    Ok(PatchDoc::FhirPath(paths))
}

/// Whether a FHIRPath Patch `path` on a `ty` may write a compartment
/// element. Anything not plainly `ty.element…` counts as touching one.
fn touches(path: &str, ty: &str, roots: &[&str]) -> bool {
    let Some(rest) = path.strip_prefix(ty).and_then(|r| r.strip_prefix('.')) else {
        return true;
    };
    let element: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    element.is_empty() || roots.contains(&element.as_str())
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
        // An upstream that answers with another record fails closed.
        let s = stored(json!({"resourceType": "Observation", "id": "o2"}));
        assert!(run(&s, "o1", Change::Delete).is_err());
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
        // Does not apply, changes the id, or is not a patch: refused.
        assert!(run(
            &s,
            "o1",
            patch(r#"[{"op":"test","path":"/status","value":"x"}]"#)
        )
        .is_err());
        assert!(run(
            &s,
            "o1",
            patch(r#"[{"op":"replace","path":"/id","value":"o2"}]"#)
        )
        .is_err());
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
            let mut parts = vec![
                json!({"name": "type", "valueCode": "replace"}),
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
        assert!(fan(json!({"resourceType": "Observation"})).is_err());
        // In a Bundle, a Binary carries a JSON Patch.
        let data = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"replace","path":"/subject/reference","value":"Patient/12"}]"#);
        let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data});
        let scope = run(&s, "o1", Change::Patch(Payload::Resource(&binary))).unwrap();
        assert_eq!(scope.patients(), ["9", "12"]);
    }
}
