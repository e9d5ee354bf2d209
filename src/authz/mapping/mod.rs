//! Request mapping: what Cedar must decide for one HTTP request.
//!
//! The authorizer never reads URLs. This stage turns an already-normalized
//! request into [`AccessRequest`]s (action, resource, patient) through the
//! FHIR R4 REST grammar ([`FhirMapper`]) or configured route templates
//! ([`TemplateMapper`]). It is pure and fails closed: what it cannot prove is
//! an error (deny) or is marked `fan_out`, which the engine turns into the
//! Cedar action `fan_out` (deny unless a policy explicitly permits it).

mod bundle;
mod fhir;
mod json;
mod record;
mod reference;
mod resource_types;
mod search;
mod stored;
mod template;

#[cfg(test)]
mod fhir_tests;
#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod template_tests;

use serde::Serialize;
use std::fmt;

pub use fhir::{FhirMapper, DEFAULT_MAX_BUNDLE_ENTRIES, SYSTEM_RESOURCE};
pub use record::{record_accesses, record_members, RESPONSE_RECORD};
pub use reference::{is_fhir_id, parse_reference, Reference, ReferenceError};
pub use resource_types::{resource_type, RESOURCE_TYPES};
pub use stored::{StoredRecords, MAX_STORED_RECORD, STORED_UNREAD};
pub use template::{RouteTemplate, TemplateError, TemplateMapper, TemplateProblem};

/// What a request does, as a Cedar action id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Search,
    Create,
    Update,
    Delete,
    Export,
    Everything,
    Operation,
    /// May a data class of a returned record be shown (response
    /// redaction; never a request's action).
    Disclose,
}

impl Action {
    /// Every action a request maps to, in declaration order.
    pub const ALL: [Action; 8] = [
        Action::Read,
        Action::Search,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Export,
        Action::Everything,
        Action::Operation,
    ];

    /// The Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Search => "search",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Export => "export",
            Action::Everything => "everything",
            Action::Operation => "operation",
            Action::Disclose => "disclose",
        }
    }

    /// The action whose [`as_str`](Self::as_str) is `id`, exactly.
    pub fn from_id(id: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == id)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource a request acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Resource {
    /// An R4 resource type, [`SYSTEM_RESOURCE`] for system-level
    /// interactions, or a template's configured type.
    pub resource_type: String,
    /// The logical id, when the request names one.
    pub id: Option<String>,
}

/// One decision Cedar must make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessRequest {
    pub action: Action,
    pub resource: Resource,
    /// The patient this request is provably about, if any (a bare logical
    /// id like `"123"`).
    pub patient: Option<String>,
    /// Set when the request reaches beyond what the mapper can prove; a
    /// short static slug such as `"_has"`, `"chained"` or
    /// `"conditional-unscoped"`. The engine turns it into the Cedar action
    /// `fan_out`.
    pub fan_out: Option<&'static str>,
    /// FHIR interaction (`"read"`, `"vread"`, `"search-type"`,
    /// `"batch-entry"`, ...) or the template's name, for context and audit.
    pub interaction: String,
    /// For [`Action::Operation`]: the operation name without `$`.
    pub operation: Option<String>,
}

/// How a `POST /` Bundle is processed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleKind {
    /// Entries are processed independently.
    Batch,
    /// Entries succeed or fail together.
    Transaction,
}

/// Everything a request needs authorized. The request is allowed only if
/// every [`AccessRequest`] is allowed: a search naming two patients yields
/// two requests. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub requests: Vec<AccessRequest>,
    pub bundle: Option<BundleKind>,
}

impl Mapping {
    /// Whether any request is marked fan-out.
    pub fn is_fan_out(&self) -> bool {
        self.requests.iter().any(|r| r.fan_out.is_some())
    }

    /// The records (`type`, `id`) whose stored versions must be read before
    /// this request can be decided (writes by id; see [`StoredRecords`]).
    pub fn stored_reads(&self) -> Vec<(&str, &str)> {
        let mut reads: Vec<(&str, &str)> = Vec::new();
        for r in &self.requests {
            if r.fan_out != Some(STORED_UNREAD) {
                continue;
            }
            if let Some(id) = r.resource.id.as_deref() {
                let read = (r.resource.resource_type.as_str(), id);
                if !reads.contains(&read) {
                    reads.push(read);
                }
            }
        }
        reads
    }
}

/// Why a request could not be mapped. Both variants deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MappingError {
    /// The request is not something this mapper understands (a 403 or 404).
    #[error("request not mapped: {reason}")]
    Unmapped { reason: &'static str },
    /// The request is malformed (a 400). `reason` never quotes request data.
    #[error("bad request: {reason}")]
    BadRequest { reason: String },
}

impl MappingError {
    pub(crate) fn unmapped(reason: &'static str) -> Self {
        MappingError::Unmapped { reason }
    }

    pub(crate) fn bad(reason: &'static str) -> Self {
        MappingError::BadRequest {
            reason: reason.to_owned(),
        }
    }

    /// The slug or message, for metrics and audit.
    pub fn reason(&self) -> &str {
        match self {
            MappingError::Unmapped { reason } => reason,
            MappingError::BadRequest { reason } => reason,
        }
    }
}

/// The parts of an HTTP request the mappers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestView<'a> {
    /// The HTTP method, as sent (methods are case-sensitive).
    pub method: &'a str,
    /// Relative to the FHIR base or route; starts with `/` and is already
    /// normalized: no dot segments, no `//`, percent-decoded except `%2F`.
    pub path: &'a str,
    /// The raw query without `?`, still percent-encoded.
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: Option<&'a [u8]>,
    /// `If-None-Exist` (a conditional create's search criteria, as a query
    /// string): the server runs that search, so it is authorized as one.
    pub if_none_exist: Option<&'a str>,
    /// The stored records this request's writes by id change, when the
    /// proxy has read them ([`StoredRecords`]).
    pub stored: Option<&'a StoredRecords>,
}

#[cfg(test)]
impl<'a> RequestView<'a> {
    /// A bodiless GET, for tests.
    pub fn get(path: &'a str, query: Option<&'a str>) -> RequestView<'a> {
        RequestView {
            method: "GET",
            path,
            query,
            content_type: None,
            body: None,
            if_none_exist: None,
            stored: None,
        }
    }
}

/// Builds the [`AccessRequest`] that every patient in a scope shares.
fn access_request(
    action: Action,
    resource_type: &str,
    id: Option<&str>,
    interaction: &str,
) -> AccessRequest {
    AccessRequest {
        action,
        resource: Resource {
            resource_type: resource_type.to_owned(),
            id: id.map(str::to_owned),
        },
        patient: None,
        fan_out: None,
        interaction: interaction.to_owned(),
        operation: None,
    }
}
