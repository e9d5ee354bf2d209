//! Batch and transaction Bundles (`POST /`). Each entry is a request of its
//! own, so each is mapped like one, and the Bundle is allowed only if every
//! entry is. Entry URLs never passed the path normalizer, so they are held
//! to a stricter grammar here.

use serde_json::Value;

use super::fhir::{is_json, FhirMapper, Method, Payload};
use super::json::parse_strict;
use super::{Action, BundleKind, Mapping, MappingError, RequestView};

/// Interaction recorded for every request that comes from a Bundle entry.
const BATCH_ENTRY: &str = "batch-entry";

impl FhirMapper {
    pub(super) fn map_bundle(&self, req: &RequestView<'_>) -> Result<Mapping, MappingError> {
        let bytes = req
            .body
            .filter(|b| !b.is_empty())
            .ok_or(MappingError::bad("POST / without a Bundle"))?;
        if !req.content_type.is_none_or(is_json) {
            return Err(MappingError::bad("Bundle is not FHIR JSON"));
        }
        let bundle = parse_strict(bytes)?;
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(MappingError::bad("POST / body is not a Bundle"));
        }
        let kind = match bundle.get("type").and_then(Value::as_str) {
            Some("batch") => BundleKind::Batch,
            Some("transaction") => BundleKind::Transaction,
            _ => return Err(MappingError::bad("Bundle type is not batch or transaction")),
        };
        let entries = match bundle.get("entry") {
            Some(Value::Array(entries)) if !entries.is_empty() => entries,
            // Nothing to authorize would read as "allowed": refuse instead.
            None | Some(Value::Array(_)) => return Err(MappingError::bad("Bundle has no entries")),
            Some(_) => return Err(MappingError::bad("Bundle.entry is not an array")),
        };
        if entries.len() > self.max_bundle_entries {
            return Err(MappingError::bad("Bundle has too many entries"));
        }
        let mut requests = Vec::with_capacity(entries.len());
        // Each write by id is decided on the record as stored before the
        // Bundle; a second write to the same record would land on what the
        // first made of it. (Ids compared ignoring case: some servers do.)
        // A conditional write may pick a record another entry changes by
        // id: not in the same Bundle, for the same type.
        let mut written: Vec<(String, String)> = Vec::new();
        let mut conditional: Vec<String> = Vec::new();
        for entry in entries {
            let mapped = self.map_entry(entry, req.stored)?;
            let mut here: Vec<(String, String)> = Vec::new();
            for r in &mapped {
                let ty = &r.resource.resource_type;
                match (r.action, &r.resource.id) {
                    (Action::Update | Action::Delete, Some(id)) => {
                        let key = (ty.clone(), id.to_ascii_lowercase());
                        if !here.contains(&key) {
                            here.push(key);
                        }
                    }
                    (Action::Update | Action::Delete, None) if !conditional.contains(ty) => {
                        conditional.push(ty.clone());
                    }
                    _ => {}
                }
            }
            for key in here {
                if written.contains(&key) {
                    return Err(MappingError::bad("a Bundle changes the same record twice"));
                }
                written.push(key);
            }
            if written.iter().any(|(ty, _)| conditional.contains(ty)) {
                return Err(MappingError::bad(
                    "a Bundle changes a type both by id and by criteria",
                ));
            }
            for mut request in mapped {
                request.interaction = BATCH_ENTRY.to_owned();
                requests.push(request);
            }
        }
        Ok(Mapping {
            requests,
            bundle: Some(kind),
        })
    }

    fn map_entry(
        &self,
        entry: &Value,
        stored: Option<&super::StoredRecords>,
    ) -> Result<Vec<super::AccessRequest>, MappingError> {
        let request = entry
            .get("request")
            .ok_or(MappingError::bad("Bundle entry without request"))?;
        let method = request
            .get("method")
            .and_then(Value::as_str)
            .ok_or(MappingError::bad("Bundle entry without request.method"))?;
        let url = request
            .get("url")
            .and_then(Value::as_str)
            .ok_or(MappingError::bad("Bundle entry without request.url"))?;
        let payload = match entry.get("resource") {
            None | Some(Value::Null) => Payload::None,
            Some(resource @ Value::Object(fields)) => {
                if fields.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
                    return Err(MappingError::bad("nested bundle"));
                }
                Payload::Resource(resource)
            }
            Some(_) => return Err(MappingError::bad("Bundle entry resource is not an object")),
        };
        let url = self.local_url(url)?;
        let (path, query) = match url.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (url, None),
        };
        let mut segments = Vec::new();
        if !path.is_empty() {
            for segment in path.split('/') {
                if !is_entry_segment(segment) {
                    return Err(MappingError::bad("invalid Bundle entry url"));
                }
                segments.push(segment);
            }
        }
        if query.is_some_and(|q| q.bytes().any(|b| !b.is_ascii_graphic() || b == b'#')) {
            return Err(MappingError::bad("invalid Bundle entry url"));
        }
        let method = Method::parse(method)?;
        let mut requests = self.map_interaction(method, &segments, query, payload, stored)?;
        // `ifNoneExist` makes the server search before it creates: that
        // search is decided too. (`ifMatch`, `ifModifiedSince` and
        // `ifNoneMatch` only compare versions.)
        match (request.get("ifNoneExist"), method, segments.as_slice()) {
            (None | Some(Value::Null), _, _) => {}
            (Some(Value::String(criteria)), Method::Post, [ty]) => {
                requests.extend(self.conditional_create(ty, criteria)?);
            }
            _ => return Err(MappingError::bad("ifNoneExist is only for a create")),
        }
        Ok(requests)
    }

    /// The entry URL relative to the base: an absolute URL must be on an
    /// accepted base; a leading `/` is dropped.
    fn local_url<'a>(&self, url: &'a str) -> Result<&'a str, MappingError> {
        if url.contains("://") {
            return self
                .bases
                .iter()
                .find_map(|base| url.strip_prefix(base.as_str()))
                .and_then(|rest| match rest.strip_prefix('/') {
                    Some(rest) => Some(rest),
                    None if rest.is_empty() || rest.starts_with('?') => Some(rest),
                    None => None,
                })
                .ok_or(MappingError::bad("Bundle entry url is not on this server"));
        }
        Ok(url.strip_prefix('/').unwrap_or(url))
    }
}

/// Entry path segments carry only what types, ids, `_history`, `$op` and
/// `*` need; no escapes, so nothing can decode into a separator.
fn is_entry_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'$' | b'*'))
}
