//! The server's read-only view of a [`DemoData`]: every resource serialized
//! once at startup, indexed by type, id and patient, so a read is a hash
//! lookup plus a cheap `Bytes` clone and a searchset is byte concatenation.

use super::query::Search;
use crate::demo::data::{self, DemoData, RESOURCE_TYPES};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;

/// One resource with what searches need to know about it.
struct Entry {
    rtype: &'static str,
    id: String,
    /// Bare id of the patient this resource belongs to.
    patient: Option<String>,
    /// CareTeam member references, e.g. `Practitioner/prac-0003`.
    participants: Vec<String>,
    body: Bytes,
}

#[derive(Default)]
struct TypeIndex {
    all: Vec<usize>,
    by_id: HashMap<String, usize>,
    by_patient: HashMap<String, Vec<usize>>,
}

/// Serialized resources plus indexes; built once, shared by all connections.
pub(super) struct Store {
    entries: Vec<Entry>,
    types: HashMap<&'static str, TypeIndex>,
    /// Patient id → the patient followed by everything linked to it.
    everything: HashMap<String, Vec<usize>>,
    capability: Bytes,
}

/// A page of matches plus how to link to the neighbouring pages.
pub(super) struct Page<'a> {
    pub matches: &'a [usize],
    pub search: &'a Search,
    /// Absolute URL of the searched endpoint, without a query.
    pub endpoint: String,
    /// Base for `fullUrl`, e.g. `http://host/fhir`.
    pub base: &'a str,
}

impl Store {
    pub fn new(data: &DemoData) -> Store {
        let mut store = Store {
            entries: Vec::with_capacity(data.len()),
            types: RESOURCE_TYPES
                .iter()
                .map(|t| (*t, TypeIndex::default()))
                .collect(),
            everything: HashMap::new(),
            capability: json_bytes(&capability_statement()),
        };
        for resource in data.resources() {
            store.add(resource);
        }
        store
    }

    fn add(&mut self, resource: &Value) {
        let Some(rtype) = RESOURCE_TYPES
            .iter()
            .copied()
            .find(|t| *t == data::resource_type(resource))
        else {
            return;
        };
        let pos = self.entries.len();
        let id = data::resource_id(resource).to_owned();
        let patient = match rtype {
            "Patient" => Some(id.clone()),
            _ => data::patient_reference(resource)
                .and_then(|r| r.strip_prefix("Patient/"))
                .map(str::to_owned),
        };
        let index = self.types.entry(rtype).or_default();
        index.all.push(pos);
        index.by_id.insert(id.clone(), pos);
        if let Some(p) = &patient {
            index.by_patient.entry(p.clone()).or_default().push(pos);
            self.everything.entry(p.clone()).or_default().push(pos);
        }
        self.entries.push(Entry {
            rtype,
            id,
            patient,
            participants: participants(resource),
            body: json_bytes(resource),
        });
    }

    pub fn is_known_type(&self, rtype: &str) -> bool {
        self.types.contains_key(rtype)
    }

    pub fn capability(&self) -> Bytes {
        self.capability.clone()
    }

    /// The serialized resource, if it exists.
    pub fn read(&self, rtype: &str, id: &str) -> Option<Bytes> {
        let pos = *self.types.get(rtype)?.by_id.get(id)?;
        Some(self.entries[pos].body.clone())
    }

    /// Positions of every `rtype` resource matching `search`, in data order.
    pub fn search(&self, rtype: &str, search: &Search) -> Vec<usize> {
        let Some(index) = self.types.get(rtype) else {
            return Vec::new();
        };
        let candidates = match search.patients.first() {
            Some(p) => index
                .by_patient
                .get(p)
                .map(Vec::as_slice)
                .unwrap_or_default(),
            None => &index.all,
        };
        candidates
            .iter()
            .copied()
            .filter(|&pos| self.matches(&self.entries[pos], search))
            .collect()
    }

    fn matches(&self, entry: &Entry, search: &Search) -> bool {
        search.ids.iter().all(|ids| ids.contains(&entry.id))
            && search
                .patients
                .iter()
                .all(|p| entry.patient.as_deref() == Some(p.as_str()))
            && search
                .participants
                .iter()
                .all(|p| entry.participants.contains(p))
    }

    /// The patient and everything in its compartment, or `None` if unknown.
    pub fn everything(&self, patient: &str) -> Option<&[usize]> {
        self.everything.get(patient).map(Vec::as_slice)
    }

    /// Assembles a `searchset` Bundle around the pre-serialized resources.
    pub fn searchset(&self, page: &Page<'_>) -> Bytes {
        let (search, total) = (page.search, page.matches.len());
        let start = search.offset.min(total);
        let end = start.saturating_add(search.count).min(total);
        let shown = &page.matches[start..end];
        let body_len: usize = shown
            .iter()
            .map(|&p| self.entries[p].body.len() + 128)
            .sum();
        let mut out = Vec::with_capacity(body_len + 512);
        out.extend_from_slice(b"{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":");
        out.extend_from_slice(total.to_string().as_bytes());
        out.extend_from_slice(b",\"link\":[");
        push_link(&mut out, "self", page, search.offset);
        if end < total {
            out.push(b',');
            push_link(&mut out, "next", page, end);
        }
        if start > 0 {
            out.push(b',');
            push_link(
                &mut out,
                "previous",
                page,
                start.saturating_sub(search.count),
            );
        }
        out.push(b']');
        if !shown.is_empty() {
            out.extend_from_slice(b",\"entry\":[");
            for (i, &pos) in shown.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                self.push_entry(&mut out, &self.entries[pos], page.base);
            }
            out.push(b']');
        }
        out.push(b'}');
        Bytes::from(out)
    }

    fn push_entry(&self, out: &mut Vec<u8>, entry: &Entry, base: &str) {
        out.extend_from_slice(b"{\"fullUrl\":");
        push_json_string(out, &format!("{base}/{}/{}", entry.rtype, entry.id));
        out.extend_from_slice(b",\"resource\":");
        out.extend_from_slice(&entry.body);
        out.extend_from_slice(b",\"search\":{\"mode\":\"match\"}}");
    }
}

fn push_link(out: &mut Vec<u8>, relation: &str, page: &Page<'_>, offset: usize) {
    out.extend_from_slice(b"{\"relation\":");
    push_json_string(out, relation);
    out.extend_from_slice(b",\"url\":");
    push_json_string(
        out,
        &format!("{}?{}", page.endpoint, page.search.query_string(offset)),
    );
    out.push(b'}');
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if u32::from(c) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes())
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

fn participants(resource: &Value) -> Vec<String> {
    let members = resource["participant"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    members
        .iter()
        .filter_map(|p| p["member"]["reference"].as_str().map(str::to_owned))
        .collect()
}

/// Serializes a value; a `Value` always serializes, the fallback is defensive.
pub(super) fn json_bytes(value: &Value) -> Bytes {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{}"))
}

const EVERYTHING: &str = "http://hl7.org/fhir/OperationDefinition/Patient-everything";

/// A minimal CapabilityStatement listing what this server really supports.
fn capability_statement() -> Value {
    let resources: Vec<Value> = RESOURCE_TYPES
        .iter()
        .map(|t| {
            let mut params = vec![search_param("_id", "token")];
            if !matches!(*t, "Patient" | "Practitioner" | "Organization") {
                params.push(search_param("patient", "reference"));
                params.push(search_param("subject", "reference"));
            }
            if *t == "CareTeam" {
                params.push(search_param("participant", "reference"));
            }
            json!({"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}],
                   "searchParam": params})
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement", "status": "active", "date": "2024-01-01",
        "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
        "software": {"name": "phigate demo FHIR server (synthetic data)"},
        "rest": [{"mode": "server", "resource": resources,
                  "operation": [{"name": "everything", "definition": EVERYTHING}]}]
    })
}

fn search_param(name: &str, kind: &str) -> Value {
    json!({"name": name, "type": kind})
}
