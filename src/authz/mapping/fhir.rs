//! FHIR R4 REST: which interaction a request is, on which resource, for
//! which patient. The patient comes only from what the request itself
//! proves (the path, patient-naming search parameters, a body's subject);
//! anything wider is marked fan-out for a policy to permit explicitly.

use serde_json::Value;
use std::borrow::Cow;

use super::json::parse_strict;
use super::reference::{body_patients, is_fhir_id};
use super::resource_types::resource_type;
use super::search::{parse_params, scope_search, Param, Scope};
use super::stored::{patch_touches_compartment, stored_patients, Change, StoredRecords};
use super::{access_request, AccessRequest, Action, Mapping, MappingError, RequestView};

/// Default for [`FhirMapper::with_max_bundle_entries`].
pub const DEFAULT_MAX_BUNDLE_ENTRIES: usize = 100;

/// Resource type of system-level interactions (`/metadata` aside). Not an
/// R4 type, so it cannot be confused with one.
pub const SYSTEM_RESOURCE: &str = "System";

const PATIENT: &str = "Patient";

/// Types whose instances define an R4 compartment.
const COMPARTMENTS: [&str; 5] = [
    "Patient",
    "Encounter",
    "RelatedPerson",
    "Practitioner",
    "Device",
];

/// Query parameters a write by id may carry: they change only how the
/// answer is formatted.
const WRITE_PARAMS: [&str; 2] = ["_format", "_pretty"];

/// Longest path handled, in segments (`/Type/id/_history/vid`).
const MAX_SEGMENTS: usize = 4;

/// Maps FHIR R4 REST requests.
///
/// Choices where the FHIR grammar leaves room, all failing closed:
/// - search references on a base not in `bases` fan out
///   (`foreign-reference`); references to another type fan out
///   (`subject-not-patient` for `subject`, `reference-not-patient` for
///   `patient`); an unknown type (`patient/1`), a bad id or a `urn:`/`#`
///   reference in a search is a bad request;
/// - modifiers other than `:Patient` on a patient parameter fan out
///   (`missing`, `identifier-reference`, otherwise `modifier`), as do
///   `_contained` (unless `false`) and trap names in any ASCII case;
/// - conditional writes are `conditional-update|patch|delete`, scoped by
///   their criteria only (`conditional-unscoped` otherwise);
/// - an update, patch or delete by id of a non-Patient record is decided
///   on the stored record's patients as well ([`StoredRecords`], read by
///   the proxy first), and a patch on the record it produces; unread, it
///   fans out (`stored-record-unread`);
/// - system-level interactions use the resource type [`SYSTEM_RESOURCE`];
/// - bodies must be JSON without repeated keys; Bundles must not be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirMapper {
    /// Absolute base URLs, without trailing `/`, that references may use.
    pub(super) bases: Vec<String>,
    pub(super) max_bundle_entries: usize,
}

/// HTTP methods the FHIR REST API uses; `HEAD` reads like `GET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub(super) fn parse(method: &str) -> Result<Method, MappingError> {
        match method {
            "GET" | "HEAD" => Ok(Method::Get),
            "POST" => Ok(Method::Post),
            "PUT" => Ok(Method::Put),
            "PATCH" => Ok(Method::Patch),
            "DELETE" => Ok(Method::Delete),
            _ => Err(MappingError::unmapped("method-not-supported")),
        }
    }
}

/// A request body: raw from the wire, or a Bundle entry's `resource`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Payload<'a> {
    None,
    Raw {
        content_type: Option<&'a str>,
        bytes: &'a [u8],
    },
    Resource(&'a Value),
}

impl<'a> Payload<'a> {
    /// The body as a resource of `resource_type`, if there is a body.
    fn resource(&self, resource_type: &str) -> Result<Option<Cow<'a, Value>>, MappingError> {
        let value = match *self {
            Payload::None => return Ok(None),
            Payload::Raw { bytes: [], .. } => return Ok(None),
            Payload::Raw {
                content_type,
                bytes,
            } => {
                if !content_type.is_none_or(is_json) {
                    return Err(MappingError::bad("body is not FHIR JSON"));
                }
                Cow::Owned(parse_strict(bytes)?)
            }
            Payload::Resource(value) => Cow::Borrowed(value),
        };
        match value.get("resourceType").and_then(Value::as_str) {
            Some(t) if t == resource_type => Ok(Some(value)),
            Some(_) => Err(MappingError::bad(
                "body resourceType does not match the URL",
            )),
            None => Err(MappingError::bad("body is not a FHIR resource")),
        }
    }

    /// A form-encoded search body, if there is one.
    fn form(&self) -> Result<Option<&'a str>, MappingError> {
        match *self {
            Payload::Raw { bytes: [], .. } => Ok(None),
            Payload::Raw {
                content_type,
                bytes,
            } => {
                if !content_type
                    .is_some_and(|ct| media_type_is(ct, "application/x-www-form-urlencoded"))
                {
                    return Err(MappingError::bad("search body is not form-encoded"));
                }
                std::str::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| MappingError::bad("search body is not valid UTF-8"))
            }
            Payload::None | Payload::Resource(_) => Ok(None),
        }
    }
}

/// Whether `content_type` is a JSON media type a FHIR server reads.
pub(super) fn is_json(content_type: &str) -> bool {
    [
        "application/fhir+json",
        "application/json",
        "application/json+fhir",
    ]
    .iter()
    .any(|m| media_type_is(content_type, m))
}

pub(super) fn media_type_is(content_type: &str, expected: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case(expected)
}

fn known_type(name: &str) -> Result<&'static str, MappingError> {
    resource_type(name).ok_or(MappingError::unmapped("unknown-resource-type"))
}

fn valid_id(id: &str) -> Result<&str, MappingError> {
    if is_fhir_id(id) {
        Ok(id)
    } else {
        Err(MappingError::bad("invalid resource id"))
    }
}

fn method_not_supported() -> MappingError {
    MappingError::unmapped("method-not-supported")
}

/// The patient a request on `resource_type/id` is about without reading a
/// body: the id itself for Patient, otherwise unknown.
fn instance_scope(resource_type: &str, id: &str) -> Scope {
    let mut scope = Scope::default();
    if resource_type == PATIENT {
        scope.add_patient(id);
    }
    scope
}

fn single(
    action: Action,
    resource_type: &str,
    id: Option<&str>,
    interaction: &str,
) -> Vec<AccessRequest> {
    vec![access_request(action, resource_type, id, interaction)]
}

/// Splits a normalized path into at most [`MAX_SEGMENTS`] segments; `/` is
/// none.
fn split_path(path: &str) -> Result<([&str; MAX_SEGMENTS], usize), MappingError> {
    let mut segments = [""; MAX_SEGMENTS];
    let Some(rest) = path.strip_prefix('/') else {
        return Err(MappingError::bad("path does not start with /"));
    };
    if rest.is_empty() {
        return Ok((segments, 0));
    }
    let mut len = 0;
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(MappingError::bad("empty path segment"));
        }
        let slot = segments
            .get_mut(len)
            .ok_or(MappingError::unmapped("unsupported-path"))?;
        *slot = segment;
        len += 1;
    }
    Ok((segments, len))
}

impl FhirMapper {
    /// A mapper accepting full-URL references on `bases` (e.g.
    /// `https://phigate.example/fhir`; a trailing `/` is ignored).
    pub fn new(bases: Vec<String>) -> Self {
        let bases = bases
            .into_iter()
            .map(|b| b.trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        FhirMapper {
            bases,
            max_bundle_entries: DEFAULT_MAX_BUNDLE_ENTRIES,
        }
    }

    /// Largest batch/transaction accepted; more entries is a bad request.
    /// Default [`DEFAULT_MAX_BUNDLE_ENTRIES`].
    pub fn with_max_bundle_entries(mut self, max: usize) -> Self {
        self.max_bundle_entries = max;
        self
    }

    /// Maps one request. See the module docs for the rules.
    pub fn map(&self, req: &RequestView<'_>) -> Result<Mapping, MappingError> {
        let (segments, len) = split_path(req.path)?;
        if len == 0 && req.method == "POST" {
            return self.map_bundle(req);
        }
        let payload = match req.body {
            Some(bytes) => Payload::Raw {
                content_type: req.content_type,
                bytes,
            },
            None => Payload::None,
        };
        let method = Method::parse(req.method)?;
        let segments = segments.get(..len).unwrap_or_default();
        let mut requests =
            self.map_interaction(method, segments, req.query, payload, req.stored)?;
        // A conditional create makes the server run a search first: it is
        // authorized as that search too.
        if let (Some(criteria), Method::Post, [ty]) = (req.if_none_exist, method, segments) {
            requests.extend(self.conditional_create(ty, criteria)?);
        }
        Ok(Mapping {
            requests,
            bundle: None,
        })
    }

    /// The search an `If-None-Exist` header (or a Bundle entry's
    /// `ifNoneExist`) asks the server to run.
    pub(super) fn conditional_create(
        &self,
        ty: &str,
        criteria: &str,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        let ty = resource_type(ty).ok_or(MappingError::unmapped("unknown-resource-type"))?;
        let mut params: Vec<Param<'_>> = Vec::new();
        parse_params(criteria, &mut params)?;
        let mut scope = Scope::default();
        scope.no_includes = true;
        scope_search(Some(ty), &params, &self.bases, &mut scope)?;
        if !scope.is_scoped() {
            scope.fan("conditional-unscoped");
        }
        Ok(scope.into_requests(access_request(
            Action::Search,
            ty,
            None,
            "conditional-create",
        )))
    }

    /// Maps everything but a root `POST` Bundle; shared with bundle entries.
    pub(super) fn map_interaction(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        payload: Payload<'_>,
        stored: Option<&StoredRecords>,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        use Method::{Get, Post};
        match (segments, method) {
            ([], Get) => self.search(None, "search-system", query, payload),
            ([], Post) => Err(MappingError::bad("nested bundle")),
            (["metadata"] | [".well-known", "smart-configuration"], Get) => Ok(single(
                Action::Read,
                "CapabilityStatement",
                None,
                "capabilities",
            )),
            (["_history"], Get) => Ok(single(
                Action::Search,
                SYSTEM_RESOURCE,
                None,
                "history-system",
            )),
            (["_search"], Get | Post) => self.search(None, "search-system", query, payload),
            ([op], _) if op.starts_with('$') => self.operation(method, None, None, op),
            ([] | ["metadata" | "_history" | "_search"], _) => Err(method_not_supported()),
            ([ty, rest @ ..], _) => {
                let ty = known_type(ty)?;
                self.map_typed(method, ty, rest, query, payload, stored)
            }
        }
    }

    fn map_typed(
        &self,
        method: Method,
        ty: &'static str,
        rest: &[&str],
        query: Option<&str>,
        payload: Payload<'_>,
        stored: Option<&StoredRecords>,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        use Method::{Delete, Get, Patch, Post, Put};
        match (rest, method) {
            ([], Get) => self.search(Some(ty), "search-type", query, payload),
            ([], Post) => self.create(ty, payload),
            ([], Put | Patch | Delete) => self.conditional(method, ty, query, payload),
            (["_search"], Get | Post) => self.search(Some(ty), "search-type", query, payload),
            (["_history"], Get) => Ok(single(Action::Search, ty, None, "history-type")),
            ([op], _) if op.starts_with('$') => self.operation(method, Some(ty), None, op),
            ([id], _) => {
                let id = valid_id(id)?;
                self.instance(method, ty, id, query, payload, stored)
            }
            ([id, "_history"], Get) => {
                let id = valid_id(id)?;
                let base = access_request(Action::Read, ty, Some(id), "history-instance");
                Ok(instance_scope(ty, id).into_requests(base))
            }
            ([id, op], _) if op.starts_with('$') => {
                let id = valid_id(id)?;
                self.operation(method, Some(ty), Some(id), op)
            }
            ([id, "_history", vid], Get) => {
                let id = valid_id(id)?;
                valid_id(vid)?;
                let base = access_request(Action::Read, ty, Some(id), "vread");
                Ok(instance_scope(ty, id).into_requests(base))
            }
            ([id, target], Get) => self.compartment(ty, valid_id(id)?, target, query, payload),
            ([id, target, "_search"], Get | Post) => {
                self.compartment(ty, valid_id(id)?, target, query, payload)
            }
            ([_, "_history"] | [_, "_history", _] | [_, _] | [_, _, "_search"], _) => {
                Err(method_not_supported())
            }
            _ => Err(MappingError::unmapped("unsupported-path")),
        }
    }

    /// Read, update, patch or delete of one instance. A write to a
    /// non-Patient record is decided on its stored patients too.
    fn instance(
        &self,
        method: Method,
        ty: &'static str,
        id: &str,
        query: Option<&str>,
        payload: Payload<'_>,
        stored: Option<&StoredRecords>,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        // A parameter on a write can change how the server reads the body
        // (a vendor's `_method=merge-patch`): only formatting ones pass.
        if method != Method::Get {
            let mut params: Vec<Param<'_>> = Vec::new();
            parse_params(query.unwrap_or_default(), &mut params)?;
            if params
                .iter()
                .any(|(name, _)| !WRITE_PARAMS.contains(&name.as_ref()))
            {
                return Err(MappingError::bad("unsupported parameter on a write by id"));
            }
        }
        let (action, interaction) = match method {
            Method::Get => (Action::Read, "read"),
            Method::Put => (Action::Update, "update"),
            Method::Patch => (Action::Update, "patch"),
            Method::Delete => (Action::Delete, "delete"),
            Method::Post => return Err(method_not_supported()),
        };
        let mut scope = instance_scope(ty, id);
        if method == Method::Put {
            if let Some(resource) = payload.resource(ty)? {
                match resource.get("id") {
                    None => {}
                    Some(Value::String(body_id)) if body_id == id => {}
                    Some(_) => return Err(MappingError::bad("body id does not match the URL")),
                }
                // A Patient's `link.other` puts it in another patient's
                // compartment (a merge): that patient is decided too.
                body_patients(&resource, &self.bases, &mut scope)?;
            }
        }
        // The stored record may belong to someone other than the new body
        // says.
        let change = match method {
            Method::Put => Some(Change::Replace),
            Method::Patch => Some(Change::Patch(payload)),
            Method::Delete => Some(Change::Delete),
            Method::Get | Method::Post => None,
        };
        // A Patient too: its stored `link.other` puts it in another
        // patient's compartment, which replacing or deleting it changes.
        if let Some(change) = change {
            stored_patients(stored, ty, id, change, &self.bases, &mut scope)?;
        }
        Ok(scope.into_requests(access_request(action, ty, Some(id), interaction)))
    }

    fn create(
        &self,
        ty: &'static str,
        payload: Payload<'_>,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        let resource = payload
            .resource(ty)?
            .ok_or(MappingError::bad("create without a body"))?;
        let mut scope = Scope::default();
        // A new Patient is nobody yet, but its links name others.
        body_patients(&resource, &self.bases, &mut scope)?;
        Ok(scope.into_requests(access_request(Action::Create, ty, None, "create")))
    }

    /// `PUT|PATCH|DELETE /[type]?criteria`: the criteria pick the resources,
    /// so they must name the patients.
    fn conditional(
        &self,
        method: Method,
        ty: &'static str,
        query: Option<&str>,
        payload: Payload<'_>,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        let mut params: Vec<Param<'_>> = Vec::new();
        if let Some(query) = query {
            parse_params(query, &mut params)?;
        }
        // A cascading delete also removes whatever refers to the matches,
        // which may be other patients' records.
        if params
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("_cascade"))
        {
            return Err(MappingError::bad("cascading deletes are not authorized"));
        }
        let mut scope = Scope::default();
        scope.no_includes = true;
        scope_search(Some(ty), &params, &self.bases, &mut scope)?;
        if !scope.is_scoped() {
            scope.fan("conditional-unscoped");
        }
        let (action, interaction) = match method {
            Method::Put => {
                if let Some(resource) = payload.resource(ty)? {
                    body_patients(&resource, &self.bases, &mut scope)?;
                }
                (Action::Update, "conditional-update")
            }
            Method::Patch => {
                if patch_touches_compartment(ty, payload)? {
                    scope.fan("patch-compartment");
                }
                (Action::Update, "conditional-patch")
            }
            Method::Delete => (Action::Delete, "conditional-delete"),
            Method::Get | Method::Post => return Err(method_not_supported()),
        };
        Ok(scope.into_requests(access_request(action, ty, None, interaction)))
    }

    /// A search on `ty` (system-wide when `None`).
    fn search(
        &self,
        ty: Option<&'static str>,
        interaction: &str,
        query: Option<&str>,
        payload: Payload<'_>,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        let scope = self.scoped(ty, query, payload, Scope::default())?;
        let base = access_request(
            Action::Search,
            ty.unwrap_or(SYSTEM_RESOURCE),
            None,
            interaction,
        );
        Ok(scope.into_requests(base))
    }

    /// `scope`, narrowed or widened by a search's parameters (the query
    /// and a form body).
    fn scoped(
        &self,
        ty: Option<&'static str>,
        query: Option<&str>,
        payload: Payload<'_>,
        mut scope: Scope,
    ) -> Result<Scope, MappingError> {
        let mut params: Vec<Param<'_>> = Vec::new();
        if let Some(query) = query {
            parse_params(query, &mut params)?;
        }
        if let Some(form) = payload.form()? {
            parse_params(form, &mut params)?;
        }
        scope_search(ty, &params, &self.bases, &mut scope)?;
        Ok(scope)
    }

    /// `/[compartment type]/[id]/[type]` and `/.../*`. Only a Patient
    /// compartment names a patient; any other fans out (`compartment`), and
    /// the search's own parameters are judged either way (a trap beside it
    /// makes the reason `multiple`).
    fn compartment(
        &self,
        ty: &'static str,
        id: &str,
        target: &str,
        query: Option<&str>,
        payload: Payload<'_>,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        if !COMPARTMENTS.contains(&ty) {
            return Err(MappingError::unmapped("not-a-compartment"));
        }
        let mut scope = Scope::default();
        // A compartment matches through every compartment reference, so
        // what it would include is not provably the named patient's.
        scope.no_includes = true;
        if ty == PATIENT {
            scope.add_patient(id);
        } else {
            scope.fan("compartment");
        }
        if target == "*" {
            let scope = self.scoped(None, query, payload, scope)?;
            let base = access_request(Action::Everything, ty, Some(id), "search-compartment");
            return Ok(scope.into_requests(base));
        }
        let target = known_type(target)?;
        let scope = self.scoped(Some(target), query, payload, scope)?;
        let base = access_request(Action::Search, target, None, "search-compartment");
        Ok(scope.into_requests(base))
    }

    /// `$op` at system (`ty` None), type (`id` None) or instance level.
    fn operation(
        &self,
        method: Method,
        ty: Option<&'static str>,
        id: Option<&str>,
        segment: &str,
    ) -> Result<Vec<AccessRequest>, MappingError> {
        if !matches!(method, Method::Get | Method::Post) {
            return Err(method_not_supported());
        }
        let name = segment.strip_prefix('$').unwrap_or(segment);
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(MappingError::bad("invalid operation name"));
        }
        let resource_type = ty.unwrap_or(SYSTEM_RESOURCE);
        let mut req = match name {
            "everything" => {
                let mut req = access_request(Action::Everything, resource_type, id, "everything");
                match (ty, id) {
                    (Some(PATIENT), Some(id)) => req.patient = Some(id.to_owned()),
                    _ => req.fan_out = Some("everything-unscoped"),
                }
                return Ok(vec![req]);
            }
            "export" => {
                return match (ty, id) {
                    (None, None) | (Some(PATIENT), None) | (Some("Group"), Some(_)) => {
                        Ok(single(Action::Export, resource_type, id, "export"))
                    }
                    _ => Err(MappingError::unmapped("export-not-supported")),
                };
            }
            "graphql" => {
                let mut req = access_request(Action::Operation, resource_type, id, "operation");
                req.fan_out = Some("graphql");
                req
            }
            _ => access_request(Action::Operation, resource_type, id, "operation"),
        };
        req.operation = Some(name.to_owned());
        if let (Some(PATIENT), Some(id)) = (ty, id) {
            req.patient = Some(id.to_owned());
        }
        Ok(vec![req])
    }
}
