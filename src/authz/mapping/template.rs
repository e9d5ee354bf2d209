//! Route templates for legacy apps that do not speak FHIR: each configured
//! path pattern says which resource type a request touches and where its
//! patient id sits. Requests no template matches are unmapped (denied).
//!
//! When several templates match, the most specific wins: more literal
//! segments first, then templates without a `{*rest}`, then fewer captures,
//! then templates that list their methods over those that take any, then
//! declaration order.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::search::decode_component;
use super::{access_request, Action, Mapping, MappingError, RequestView};

/// Longest captured id, in bytes.
const MAX_CAPTURE_LEN: usize = 128;

/// One configured route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTemplate {
    /// Name for audit records (the request's `interaction`); defaults to the
    /// path.
    #[serde(default)]
    pub name: Option<String>,
    /// Segments: literals, `{name}` (one whole non-empty segment),
    /// `{patient}` (the patient id), `{id}` (the resource id), and a final
    /// `{*rest}` (the remaining zero or more segments). Case-sensitive.
    pub path: String,
    /// Methods this route answers (case-insensitive in config); empty means
    /// any. Default empty.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Cedar action id; default by method: GET/HEAD read, POST create,
    /// PUT/PATCH update, DELETE delete.
    #[serde(default)]
    pub action: Option<String>,
    /// Resource type reported to Cedar.
    pub resource_type: String,
    /// Query parameter that carries the patient id, if any.
    #[serde(default)]
    pub patient_query: Option<String>,
}

/// One thing wrong with a [`RouteTemplate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateProblem {
    #[error("template {index}: path must start with '/'")]
    PathNotAbsolute { index: usize },
    #[error("template {index}: empty path segment")]
    EmptySegment { index: usize },
    #[error("template {index}: unbalanced or misplaced brace in segment {segment:?}")]
    BadBrace { index: usize, segment: String },
    #[error("template {index}: invalid capture name {name:?}")]
    BadCaptureName { index: usize, name: String },
    #[error("template {index}: capture {name:?} appears twice")]
    DuplicateCapture { index: usize, name: String },
    #[error("template {index}: {{*{name}}} must be the last segment")]
    RestNotLast { index: usize, name: String },
    #[error("template {index}: unknown action {action:?}")]
    UnknownAction { index: usize, action: String },
    #[error("template {index}: invalid method {method:?}")]
    BadMethod { index: usize, method: String },
    #[error("template {index}: resource_type is empty")]
    EmptyResourceType { index: usize },
    #[error("template {index}: patient_query is empty")]
    EmptyPatientQuery { index: usize },
}

/// Every problem found in a template list, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub problems: Vec<TemplateProblem>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid route templates: ")?;
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TemplateError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(Capture),
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Patient,
    Id,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CompiledTemplate {
    segments: Vec<Segment>,
    methods: Vec<String>,
    action: Option<Action>,
    resource_type: String,
    patient_query: Option<String>,
    interaction: String,
}

/// Maps requests through route templates; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMapper {
    /// Most specific first.
    templates: Vec<CompiledTemplate>,
}

impl TemplateMapper {
    /// Validates and orders `templates`; reports every problem at once.
    pub fn new(templates: Vec<RouteTemplate>) -> Result<Self, TemplateError> {
        let mut problems = Vec::new();
        let mut compiled = Vec::with_capacity(templates.len());
        for (index, template) in templates.into_iter().enumerate() {
            if let Some(t) = compile(index, template, &mut problems) {
                compiled.push(t);
            }
        }
        if !problems.is_empty() {
            return Err(TemplateError { problems });
        }
        // Stable: ties keep declaration order.
        compiled.sort_by_key(|t| {
            let literals = t
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            let has_rest = t.segments.last() == Some(&Segment::Rest);
            let captures = t.segments.len() - literals;
            (
                std::cmp::Reverse(literals),
                has_rest,
                captures,
                t.methods.is_empty(),
            )
        });
        Ok(TemplateMapper {
            templates: compiled,
        })
    }

    /// Maps one request through the most specific matching template.
    pub fn map(&self, req: &RequestView<'_>) -> Result<Mapping, MappingError> {
        let path = req
            .path
            .strip_prefix('/')
            .ok_or(MappingError::bad("path does not start with /"))?;
        for template in &self.templates {
            // HEAD is a GET without the body: a template for GET serves it.
            let listed = |m: &String| m == req.method || (req.method == "HEAD" && m == "GET");
            if !template.methods.is_empty() && !template.methods.iter().any(listed) {
                continue;
            }
            if let Some(captured) = match_path(&template.segments, path) {
                return template.access(req, captured);
            }
        }
        Err(MappingError::unmapped("no-template"))
    }
}

/// What a matched path captured.
#[derive(Debug, Default)]
struct Captured<'a> {
    patient: Option<&'a str>,
    id: Option<&'a str>,
}

fn match_path<'a>(segments: &[Segment], path: &'a str) -> Option<Captured<'a>> {
    let mut captured = Captured::default();
    // `/` has no segments; otherwise every `/`-separated piece is one.
    let mut parts = (!path.is_empty())
        .then(|| path.split('/'))
        .into_iter()
        .flatten();
    for segment in segments {
        match segment {
            Segment::Rest => return Some(captured),
            Segment::Literal(literal) => {
                if parts.next()? != literal {
                    return None;
                }
            }
            Segment::Capture(kind) => {
                let part = parts.next().filter(|p| !p.is_empty())?;
                match kind {
                    Capture::Patient => captured.patient = Some(part),
                    Capture::Id => captured.id = Some(part),
                    Capture::Other => {}
                }
            }
        }
    }
    parts.next().is_none().then_some(captured)
}

/// A captured or query-supplied id: non-empty, at most 128 bytes, no
/// control bytes, and no `%` (a left-over `%2F` would be read as a `/`).
fn valid_capture(value: &str) -> Result<(), MappingError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_CAPTURE_LEN
        && !value.chars().any(|c| c.is_control() || c == '%');
    if ok {
        Ok(())
    } else {
        Err(MappingError::bad("invalid id in route"))
    }
}

impl CompiledTemplate {
    fn access(
        &self,
        req: &RequestView<'_>,
        captured: Captured<'_>,
    ) -> Result<Mapping, MappingError> {
        let action = match self.action {
            Some(action) => action,
            None => match req.method {
                "GET" | "HEAD" => Action::Read,
                "POST" => Action::Create,
                "PUT" | "PATCH" => Action::Update,
                "DELETE" => Action::Delete,
                _ => return Err(MappingError::unmapped("method-not-supported")),
            },
        };
        if let Some(id) = captured.id {
            valid_capture(id)?;
        }
        let mut patients: Vec<String> = Vec::with_capacity(1);
        if let Some(patient) = captured.patient {
            valid_capture(patient)?;
            patients.push(patient.to_owned());
        }
        if let Some(param) = &self.patient_query {
            if let Some(patient) = query_patient(req.query, param)? {
                if !patients.contains(&patient) {
                    patients.push(patient);
                }
            }
        }
        let base = access_request(action, &self.resource_type, captured.id, &self.interaction);
        let requests = if patients.is_empty() {
            vec![base]
        } else {
            patients
                .into_iter()
                .map(|p| super::AccessRequest {
                    patient: Some(p),
                    ..base.clone()
                })
                .collect()
        };
        Ok(Mapping {
            requests,
            bundle: None,
        })
    }
}

/// The single value of query parameter `param`, decoded and validated.
fn query_patient(query: Option<&str>, param: &str) -> Result<Option<String>, MappingError> {
    let mut found: Option<String> = None;
    for piece in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        if decode_component(name)? != param {
            continue;
        }
        if found.is_some() {
            return Err(MappingError::bad("patient query parameter repeated"));
        }
        let value = decode_component(value)?;
        valid_capture(&value)?;
        found = Some(value.into_owned());
    }
    Ok(found)
}

fn compile(
    index: usize,
    t: RouteTemplate,
    problems: &mut Vec<TemplateProblem>,
) -> Option<CompiledTemplate> {
    let before = problems.len();
    let mut segments = Vec::new();
    match t.path.strip_prefix('/') {
        None => problems.push(TemplateProblem::PathNotAbsolute { index }),
        Some("") => {}
        Some(rest) => {
            let mut names: Vec<&str> = Vec::new();
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                if let Some(segment) =
                    compile_segment(index, part, i + 1 == parts.len(), &mut names, problems)
                {
                    segments.push(segment);
                }
            }
        }
    }
    let action = t.action.as_deref().and_then(|a| {
        let action = Action::from_id(a);
        if action.is_none() {
            problems.push(TemplateProblem::UnknownAction {
                index,
                action: a.to_owned(),
            });
        }
        action
    });
    let mut methods = Vec::with_capacity(t.methods.len());
    for method in &t.methods {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            problems.push(TemplateProblem::BadMethod {
                index,
                method: method.clone(),
            });
        }
        methods.push(method.to_ascii_uppercase());
    }
    if t.resource_type.is_empty() {
        problems.push(TemplateProblem::EmptyResourceType { index });
    }
    if t.patient_query.as_deref() == Some("") {
        problems.push(TemplateProblem::EmptyPatientQuery { index });
    }
    (problems.len() == before).then(|| CompiledTemplate {
        segments,
        methods,
        action,
        resource_type: t.resource_type,
        patient_query: t.patient_query,
        interaction: t.name.unwrap_or(t.path),
    })
}

fn compile_segment<'a>(
    index: usize,
    part: &'a str,
    last: bool,
    names: &mut Vec<&'a str>,
    problems: &mut Vec<TemplateProblem>,
) -> Option<Segment> {
    if part.is_empty() {
        problems.push(TemplateProblem::EmptySegment { index });
        return None;
    }
    let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
        if part.contains(['{', '}']) {
            problems.push(TemplateProblem::BadBrace {
                index,
                segment: part.to_owned(),
            });
            return None;
        }
        return Some(Segment::Literal(part.to_owned()));
    };
    let (rest, name) = match inner.strip_prefix('*') {
        Some(name) => (true, name),
        None => (false, inner),
    };
    let name_ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !name_ok {
        problems.push(TemplateProblem::BadCaptureName {
            index,
            name: name.to_owned(),
        });
        return None;
    }
    if names.contains(&name) {
        problems.push(TemplateProblem::DuplicateCapture {
            index,
            name: name.to_owned(),
        });
        return None;
    }
    names.push(name);
    if rest {
        if !last {
            problems.push(TemplateProblem::RestNotLast {
                index,
                name: name.to_owned(),
            });
            return None;
        }
        return Some(Segment::Rest);
    }
    Some(Segment::Capture(match name {
        "patient" => Capture::Patient,
        "id" => Capture::Id,
        _ => Capture::Other,
    }))
}
