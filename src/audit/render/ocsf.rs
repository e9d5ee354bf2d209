//! OCSF 1.8.0 JSON.
//!
//! The classes, chosen because the 1.8.0 schema validates them (every
//! object there has `additionalProperties: false`; the integration test
//! `tests/audit_schemas.rs` checks each rendering against it):
//!
//! * access and outcome events: **6003 API Activity** with the
//!   `security_control` profile (action, disposition, policy,
//!   authorizations). Activity is Create/Read/Update/Delete from the FHIR
//!   interaction or the method, else 99 Other named by the operation.
//!   Admin actions are 6003 too (99 Other, named by the action): it is the
//!   class whose core has an `actor`.
//! * authentication events: **3002 Authentication**, activity Logon (a
//!   step-up is a failed logon with disposition Challenge); session events:
//!   3002 Logoff, `session.expiration_reason` saying why unless the user
//!   logged out.
//! * policy reloads and configuration changes: **6002 Application
//!   Lifecycle** (`app` is phigate), activity Update, or Start for a
//!   configuration change whose reason is `started` (or `start`). 6002 has
//!   no `actor` unless the `host` profile is declared, so an event with an
//!   actor declares it.
//!
//! `action_id`/`disposition_id` say what the control did: allowed/Allowed,
//! a denial or withheld response Denied/Blocked, unauthenticated
//! Denied/Unauthorized, step-up Denied/Challenge, a hygiene refusal
//! Denied/Rejected, a cut response Denied/Dropped, a shadow-mode denial
//! Allowed/Logged (and `policy.is_applied` false).
//!
//! Required fields phigate may not know are filled with a documented
//! stand-in: 6003 requires `src_endpoint` (one of ip, name, …) and
//! `actor`; 3002 requires `user`. A missing client address is
//! `{"name": "unknown"}`, a missing user `{"name": "unknown", "type_id":
//! 0}`. Whatever OCSF has no field for (patients, purpose of use,
//! break-glass, redaction counts, the decision's reason and mode, request
//! ids, route, mTLS identity, auth method, a method outside OCSF's
//! `http_method` enum) is under `unmapped`.
//!
//! The rendering is serialized straight to bytes from borrowed structs (no
//! intermediate `serde_json::Value`); keys come out in the order the
//! structs declare them.

use super::{counts, details, is_start, split_reference, Crud, Severity, PRODUCT};
use crate::audit::event::{bounded, Actor, AuditEvent, EventKind, Outcome, RequestInfo, MAX_TEXT};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The OCSF schema version rendered.
pub const VERSION: &str = "1.8.0";
/// The stand-in for a required name phigate does not know.
pub const UNKNOWN: &str = "unknown";

const HTTP_METHODS: [&str; 9] = [
    "OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT", "PATCH",
];

/// What a rendering's buffer starts with (a request's event is about 2 KB).
const CAPACITY: usize = 2048;

struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
}

const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};
const AUTHENTICATION: Class = Class {
    uid: 3002,
    name: "Authentication",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const APPLICATION_LIFECYCLE: Class = Class {
    uid: 6002,
    name: "Application Lifecycle",
    category_uid: 6,
    category_name: "Application Activity",
};

/// The event as one line of OCSF JSON, no trailing newline.
pub fn render_line(e: &AuditEvent, seq: u64, product_version: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(CAPACITY);
    // Strings, numbers and maps always serialize into a `Vec`.
    let written = match e.kind {
        EventKind::Access | EventKind::Outcome | EventKind::Admin => {
            serde_json::to_writer(&mut out, &api_activity(e, seq, product_version))
        }
        EventKind::Authentication | EventKind::Session => {
            serde_json::to_writer(&mut out, &authentication(e, seq, product_version))
        }
        EventKind::PolicyReload | EventKind::ConfigChange => {
            serde_json::to_writer(&mut out, &lifecycle(e, seq, product_version))
        }
    };
    written.map(|()| out).unwrap_or_default()
}

/// [`bounded`] without the copy: `s` itself when it is at most
/// [`MAX_TEXT`] bytes and has no control characters (then `bounded` would
/// return it unchanged), else exactly what `bounded` returns.
pub(crate) fn bounded_cow(s: &str) -> Cow<'_, str> {
    if is_bounded(s) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(bounded(s))
    }
}

/// Whether [`bounded`] leaves `s` as it is.
fn is_bounded(s: &str) -> bool {
    s.len() <= MAX_TEXT && !s.chars().any(char::is_control)
}

/// An optional string, bounded; absent when that leaves nothing.
fn text(v: Option<&String>) -> Option<Cow<'_, str>> {
    v.map(|v| bounded_cow(v)).filter(|v| !v.is_empty())
}

// ---- the classes -----------------------------------------------------

#[derive(Serialize)]
struct ApiActivity<'a> {
    #[serde(flatten)]
    base: Base<'a>,
    actor: ActorObj<'a>,
    src_endpoint: Endpoint<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Resources<'a>>,
    api: Api<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_response: Option<HttpResponse>,
    #[serde(flatten)]
    control: Control,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<Policy<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizations: Option<Authorizations<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
}

#[derive(Serialize)]
struct Authentication<'a> {
    #[serde(flatten)]
    base: Base<'a>,
    user: UserObj<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<ActorObj<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_mfa: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_protocol_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Session<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_endpoint: Option<Endpoint<'a>>,
    service: Named<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_response: Option<HttpResponse>,
    #[serde(flatten)]
    control: Option<Control>,
}

#[derive(Serialize)]
struct Lifecycle<'a> {
    #[serde(flatten)]
    base: Base<'a>,
    app: Product<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<ActorObj<'a>>,
}

fn api_activity<'a>(e: &'a AuditEvent, seq: u64, version: &'a str) -> ApiActivity<'a> {
    let req = e.request.as_ref();
    let operation = match req {
        Some(r) => bounded_cow(r.operation.as_deref().unwrap_or(&r.method)),
        None => admin_action(e),
    };
    let (id, caption) = match req.map(Crud::of) {
        Some(Crud::Create) => (1, "Create"),
        Some(Crud::Read) => (2, "Read"),
        Some(Crud::Update) => (3, "Update"),
        Some(Crud::Delete) => (4, "Delete"),
        Some(Crud::Other) | None => (99, "Other"),
    };
    let name = if id == 99 {
        operation.clone()
    } else {
        Cow::Borrowed(caption)
    };
    let base = base(
        e,
        seq,
        version,
        &API_ACTIVITY,
        (id, caption, name),
        &["security_control"],
    );
    let (policy, authorizations) = match &e.decision {
        Some(d) => {
            let version = d.policy_version.as_deref().map(bounded_cow);
            let policy = (!d.policies.is_empty()).then(|| Policy {
                name: PolicyNames(&d.policies),
                version: version.clone(),
                is_applied: d.mode != "shadow",
            });
            let auths = Authorizations {
                decision: bounded_cow(&d.outcome),
                policies: &d.policies,
                version,
            };
            (policy, Some(auths))
        }
        None => (None, None),
    };
    ApiActivity {
        base,
        actor: actor(e.actor.as_ref()),
        src_endpoint: endpoint(e).unwrap_or(Endpoint {
            name: Some(UNKNOWN),
            ip: None,
            port: None,
        }),
        http_request: req.map(http_request),
        resources: req
            .filter(|r| !r.resources.is_empty())
            .map(|r| Resources(&r.resources)),
        api: Api {
            operation,
            service: Named {
                name: Cow::Borrowed(PRODUCT),
            },
            request: req.map(|r| Uid {
                uid: bounded_cow(&r.request_id),
            }),
        },
        http_response: http_response(e),
        control: control(e),
        policy,
        authorizations,
        duration: e.latency_ms,
    }
}

fn authentication<'a>(e: &'a AuditEvent, seq: u64, version: &'a str) -> Authentication<'a> {
    let activity = match e.kind {
        EventKind::Session => (2, "Logoff", Cow::Borrowed("Logoff")),
        _ => (1, "Logon", Cow::Borrowed("Logon")),
    };
    let base = base(
        e,
        seq,
        version,
        &AUTHENTICATION,
        activity,
        &["security_control"],
    );
    let a = e.actor.as_ref();
    let protocol = a.map(|a| match a.auth_method.as_str() {
        "bearer" => (6, "OAUTH 2.0"),
        "browser" | "session" => (4, "OpenID"),
        "api_key" => (99, "API key"),
        "mtls" | "client_certificate" => (99, "mTLS"),
        _ => (0, "Unknown"),
    });
    let mut session = a.and_then(session).unwrap_or_default();
    if e.kind == EventKind::Session {
        // `logout` or `logout:<why>`: the user ended it; else it expired.
        if let Some(r) = e.reason.as_deref().filter(|r| !r.starts_with("logout")) {
            session.expiration_reason = Some(bounded_cow(r));
        }
    }
    Authentication {
        base,
        user: a.map_or(UserObj::Unknown(UnknownUser::new()), |a| {
            UserObj::Known(user(a))
        }),
        actor: a.map(|a| actor(Some(a))),
        is_mfa: a.map(|a| a.mfa),
        auth_protocol_id: protocol.map(|(id, _)| id),
        auth_protocol: protocol.map(|(_, name)| name),
        session: (!session.is_empty()).then_some(session),
        src_endpoint: endpoint(e),
        service: Named {
            name: Cow::Borrowed(PRODUCT),
        },
        http_request: e.request.as_ref().map(http_request),
        http_response: http_response(e),
        control: (e.kind == EventKind::Authentication).then(|| control(e)),
    }
}

fn lifecycle<'a>(e: &'a AuditEvent, seq: u64, version: &'a str) -> Lifecycle<'a> {
    let activity = if is_start(e) {
        (3, "Start", Cow::Borrowed("Start"))
    } else {
        (8, "Update", Cow::Borrowed("Update"))
    };
    let profiles: &'static [&'static str] = if e.actor.is_some() {
        &["security_control", "host"]
    } else {
        &["security_control"]
    };
    Lifecycle {
        base: base(e, seq, version, &APPLICATION_LIFECYCLE, activity, profiles),
        app: Product::new(version),
        actor: e.actor.as_ref().map(|a| actor(Some(a))),
    }
}

// ---- what every class shares -----------------------------------------

/// The fields every class shares: classification, time, severity, status,
/// metadata and `unmapped`.
#[derive(Serialize)]
struct Base<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: Cow<'a, str>,
    type_uid: u32,
    type_name: Text<Concat>,
    time: i64,
    severity_id: u8,
    severity: &'static str,
    status_id: u8,
    status: &'static str,
    status_detail: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<Text<u16>>,
    message: Text<Concat>,
    metadata: Metadata<'a>,
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    product: Product<'a>,
    version: &'static str,
    uid: Cow<'a, str>,
    sequence: u64,
    profiles: &'static [&'static str],
    log_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_uid: Option<Cow<'a, str>>,
}

/// phigate as a product (`metadata.product`) or an app (6002's `app`).
#[derive(Serialize)]
struct Product<'a> {
    name: &'static str,
    vendor_name: &'static str,
    version: Cow<'a, str>,
}

impl<'a> Product<'a> {
    fn new(version: &'a str) -> Product<'a> {
        Product {
            name: PRODUCT,
            vendor_name: PRODUCT,
            version: bounded_cow(version),
        }
    }
}

fn base<'a>(
    e: &'a AuditEvent,
    seq: u64,
    version: &'a str,
    class: &Class,
    (activity_id, caption, activity_name): (u32, &'static str, Cow<'a, str>),
    profiles: &'static [&'static str],
) -> Base<'a> {
    let (severity_id, severity) = Severity::of(e).ocsf();
    let (status_id, status) = if e.outcome.is_failure() {
        (2, "Failure")
    } else {
        (1, "Success")
    };
    let detail = e.reason.as_deref().unwrap_or(e.outcome.as_str());
    Base {
        class_uid: class.uid,
        class_name: class.name,
        category_uid: class.category_uid,
        category_name: class.category_name,
        activity_id,
        activity_name,
        type_uid: class.uid * 100 + activity_id,
        type_name: Text(Concat(class.name, ": ", caption)),
        time: e.time,
        severity_id,
        severity,
        status_id,
        status,
        status_detail: bounded_cow(detail),
        status_code: e.status.map(Text),
        message: Text(Concat(e.kind.as_str(), " ", e.outcome.as_str())),
        metadata: Metadata {
            product: Product::new(version),
            version: VERSION,
            uid: bounded_cow(&e.id),
            sequence: seq,
            profiles,
            log_name: e.kind.as_str(),
            correlation_uid: e.request_id().map(bounded_cow),
        },
        unmapped: unmapped(e),
    }
}

/// OCSF's `action_id` and `disposition_id` for a control's verdict.
#[derive(Serialize)]
struct Control {
    action_id: u8,
    action: &'static str,
    disposition_id: u8,
    disposition: &'static str,
}

fn control(e: &AuditEvent) -> Control {
    let shadow_deny = e
        .decision
        .as_ref()
        .is_some_and(|d| d.outcome == "shadow_deny");
    let ((action_id, action), (disposition_id, disposition)) = match e.outcome {
        Outcome::Allowed | Outcome::Success | Outcome::ClientClosed if shadow_deny => {
            ((1, "Allowed"), (17, "Logged"))
        }
        Outcome::Allowed | Outcome::Success | Outcome::ClientClosed => {
            ((1, "Allowed"), (1, "Allowed"))
        }
        Outcome::Denied | Outcome::AuditDegraded => ((2, "Denied"), (2, "Blocked")),
        Outcome::AuthenticationFailed => ((2, "Denied"), (26, "Unauthorized")),
        Outcome::StepUpRequired => ((2, "Denied"), (23, "Challenge")),
        Outcome::Refused => ((2, "Denied"), (25, "Rejected")),
        Outcome::RedactionFailed => ((2, "Denied"), (6, "Dropped")),
        Outcome::UpstreamFailed => ((1, "Allowed"), (27, "Error")),
        Outcome::Failure => ((0, "Unknown"), (27, "Error")),
    };
    Control {
        action_id,
        action,
        disposition_id,
        disposition,
    }
}

// ---- who -------------------------------------------------------------

#[derive(Serialize)]
struct ActorObj<'a> {
    user: UserObj<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Session<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idp: Option<Idp<'a>>,
}

#[derive(Serialize)]
struct Idp<'a> {
    name: Cow<'a, str>,
    issuer: Cow<'a, str>,
}

fn actor(a: Option<&Actor>) -> ActorObj<'_> {
    let Some(a) = a else {
        return ActorObj {
            user: UserObj::Unknown(UnknownUser::new()),
            session: None,
            idp: None,
        };
    };
    ActorObj {
        user: UserObj::Known(user(a)),
        session: session(a),
        idp: (!a.issuer.is_empty()).then(|| {
            let issuer = bounded_cow(&a.issuer);
            Idp {
                name: issuer.clone(),
                issuer,
            }
        }),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum UserObj<'a> {
    Known(User<'a>),
    Unknown(UnknownUser),
}

#[derive(Serialize)]
struct User<'a> {
    uid: Cow<'a, str>,
    type_id: u8,
    #[serde(rename = "type")]
    kind: Cow<'a, str>,
    has_mfa: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Groups<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid_alt: Option<Cow<'a, str>>,
}

fn user(a: &Actor) -> User<'_> {
    let (type_id, kind) = match a.kind.as_str() {
        "user" => (1, Cow::Borrowed("User")),
        "service" => (4, Cow::Borrowed("Service")),
        other => (99, bounded_cow(other)),
    };
    User {
        uid: bounded_cow(&a.user_id),
        type_id,
        kind,
        has_mfa: a.mfa,
        name: a.name.as_deref().map(bounded_cow),
        org: a.organization.as_deref().map(|o| Named {
            name: bounded_cow(o),
        }),
        groups: (!a.roles.is_empty()).then_some(Groups(&a.roles)),
        uid_alt: a.fhir_user.as_deref().map(bounded_cow),
    }
}

#[derive(Serialize)]
struct UnknownUser {
    name: &'static str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl UnknownUser {
    fn new() -> UnknownUser {
        UnknownUser {
            name: UNKNOWN,
            type_id: 0,
            kind: "Unknown",
        }
    }
}

/// `{"name": …}` for each role.
struct Groups<'a>(&'a [String]);

impl Serialize for Groups<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| Named {
            name: bounded_cow(r),
        }))
    }
}

/// An actor's session (`uid`, `is_mfa`); 3002's also says why it expired.
#[derive(Serialize, Default)]
struct Session<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_mfa: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_reason: Option<Cow<'a, str>>,
}

impl Session<'_> {
    fn is_empty(&self) -> bool {
        self.uid.is_none() && self.is_mfa.is_none() && self.expiration_reason.is_none()
    }
}

fn session(a: &Actor) -> Option<Session<'_>> {
    let hash = a.session_hash.as_deref()?;
    Some(Session {
        uid: Some(bounded_cow(hash)),
        is_mfa: Some(a.mfa),
        expiration_reason: None,
    })
}

// ---- where and what --------------------------------------------------

/// `{"ip": …, "port": …}`, or the stand-in `{"name": "unknown"}`.
#[derive(Serialize)]
struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
}

fn endpoint(e: &AuditEvent) -> Option<Endpoint<'_>> {
    let s = e.source.as_ref()?;
    let ip = s.ip.as_deref()?;
    Some(Endpoint {
        name: None,
        ip: Some(bounded_cow(ip)),
        port: s.port,
    })
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    uid: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Url<'a>>,
}

#[derive(Serialize)]
struct Url<'a> {
    path: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string: Option<Cow<'a, str>>,
}

fn http_request(r: &RequestInfo) -> HttpRequest<'_> {
    HttpRequest {
        uid: bounded_cow(&r.request_id),
        http_method: Some(r.method.as_str()).filter(|m| HTTP_METHODS.contains(m)),
        url: r.path.as_deref().map(|p| Url {
            path: bounded_cow(p),
            query_string: r.query.as_deref().map(bounded_cow),
        }),
    }
}

#[derive(Serialize)]
struct HttpResponse {
    code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
}

fn http_response(e: &AuditEvent) -> Option<HttpResponse> {
    Some(HttpResponse {
        code: e.status?,
        length: e.bytes,
    })
}

#[derive(Serialize)]
struct Api<'a> {
    operation: Cow<'a, str>,
    service: Named<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Uid<'a>>,
}

#[derive(Serialize)]
struct Named<'a> {
    name: Cow<'a, str>,
}

#[derive(Serialize)]
struct Uid<'a> {
    uid: Cow<'a, str>,
}

/// A request's resources: `{"type", "uid"}` for `Type/id`, `{"type",
/// "name"}` for a bare type.
struct Resources<'a>(&'a [String]);

#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "type")]
    ty: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
}

impl Serialize for Resources<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| resource(r)))
    }
}

fn resource(r: &str) -> Resource<'_> {
    match split_reference(r) {
        (ty, Some(id)) => Resource {
            ty: bounded_cow(ty),
            uid: Some(bounded_cow(id)),
            name: None,
        },
        (ty, None) => Resource {
            ty: bounded_cow(ty),
            uid: None,
            name: Some(bounded_cow(ty)),
        },
    }
}

/// What an admin event did, by its fixed label.
fn admin_action(e: &AuditEvent) -> Cow<'_, str> {
    let label = e.details.get("action").or(e.reason.as_ref());
    bounded_cow(label.map_or(e.kind.as_str(), |s| s.as_str()))
}

// ---- the decision ----------------------------------------------------

#[derive(Serialize)]
struct Policy<'a> {
    name: PolicyNames<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<Cow<'a, str>>,
    is_applied: bool,
}

/// The policy ids, bounded, joined by commas.
struct PolicyNames<'a>(&'a [String]);

impl Serialize for PolicyNames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => s.serialize_str(&bounded_cow(one)),
            _ => s.collect_str(self),
        }
    }
}

impl fmt::Display for PolicyNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&bounded_cow(p))?;
        }
        Ok(())
    }
}

/// `[{"decision"}]` without policies, else `{"decision", "policy": {"uid",
/// "version"}}` for each.
struct Authorizations<'a> {
    decision: Cow<'a, str>,
    policies: &'a [String],
    version: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Authorization<'b> {
    decision: &'b str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<PolicyRef<'b>>,
}

#[derive(Serialize)]
struct PolicyRef<'b> {
    uid: Cow<'b, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'b str>,
}

impl Serialize for Authorizations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let decision = &*self.decision;
        if self.policies.is_empty() {
            return s.collect_seq([Authorization {
                decision,
                policy: None,
            }]);
        }
        s.collect_seq(self.policies.iter().map(|id| Authorization {
            decision,
            policy: Some(PolicyRef {
                uid: bounded_cow(id),
                version: self.version.as_deref(),
            }),
        }))
    }
}

// ---- unmapped --------------------------------------------------------

#[derive(Serialize)]
struct Unmapped<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose_of_use: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    justification: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_request_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_method: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_subject: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_method: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_reason: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enforcement_mode: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entities_version: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_version: Option<Cow<'a, str>>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    outcome_follows: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patients: Option<Patients<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    patients_undetermined: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    break_glass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    redaction: Option<Redaction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
}

fn unmapped(e: &AuditEvent) -> Unmapped<'_> {
    let req = e.request.as_ref();
    let src = e.source.as_ref();
    let d = e.decision.as_ref();
    Unmapped {
        reason: text(e.reason.as_ref()),
        access_id: text(e.access_id.as_ref()),
        purpose_of_use: text(e.purpose_of_use.as_ref()),
        justification: text(e.justification.as_ref()),
        client_request_id: req.and_then(|r| text(r.client_request_id.as_ref())),
        trace_id: req.and_then(|r| text(r.trace_id.as_ref())),
        route: req.and_then(|r| text(r.route.as_ref())),
        http_method: req
            .filter(|r| !HTTP_METHODS.contains(&r.method.as_str()))
            .and_then(|r| text(Some(&r.method))),
        cert_subject: src.and_then(|s| text(s.cert_subject.as_ref())),
        device_id: src.and_then(|s| text(s.device_id.as_ref())),
        auth_method: e.actor.as_ref().and_then(|a| text(Some(&a.auth_method))),
        decision_reason: d.and_then(|d| text(Some(&d.reason))),
        enforcement_mode: d.and_then(|d| text(Some(&d.mode))),
        entities_version: d.and_then(|d| text(d.entities_version.as_ref())),
        policy_version: d
            .filter(|d| d.policies.is_empty())
            .and_then(|d| text(d.policy_version.as_ref())),
        outcome: e.outcome.as_str(),
        outcome_follows: e.outcome_follows,
        patients: (!e.patients.is_empty()).then_some(Patients(&e.patients)),
        patients_undetermined: e.patients_undetermined,
        break_glass: e.break_glass,
        redaction: e.redaction.as_ref().map(|r| Redaction {
            records_shown: r.records_shown,
            records_removed: Counts(&r.records_removed),
            values_redacted: Counts(&r.values_redacted),
        }),
        details: (!e.details.is_empty()).then_some(Details(e)),
    }
}

/// The patients, each bounded.
struct Patients<'a>(&'a [String]);

impl Serialize for Patients<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| bounded_cow(p)))
    }
}

#[derive(Serialize)]
struct Redaction<'a> {
    records_shown: u32,
    records_removed: Counts<'a>,
    values_redacted: Counts<'a>,
}

/// Counts by name, names bounded. Names bounding leaves alone are
/// distinct and already in order; otherwise [`counts`] builds the map
/// (where two names bounded alike become one).
struct Counts<'a>(&'a BTreeMap<String, u32>);

impl Serialize for Counts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.keys().all(|k| is_bounded(k)) {
            s.collect_map(self.0)
        } else {
            counts(self.0).serialize(s)
        }
    }
}

/// The event's `details`, keys and values bounded (through [`details`]
/// when a key needs it, as for [`Counts`]).
struct Details<'a>(&'a AuditEvent);

impl Serialize for Details<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = &self.0.details;
        if m.keys().all(|k| is_bounded(k)) {
            s.collect_map(m.iter().map(|(k, v)| (k, bounded_cow(v))))
        } else {
            details(self.0).serialize(s)
        }
    }
}

// ---- text made at serialization --------------------------------------

/// A value written as a JSON string through its `Display`.
struct Text<T>(T);

impl<T: fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Three strings, one after another.
struct Concat(&'static str, &'static str, &'static str);

impl fmt::Display for Concat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)?;
        f.write_str(self.2)
    }
}

#[cfg(test)]
#[path = "ocsf_tests.rs"]
mod tests;
