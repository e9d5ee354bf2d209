//! Authorization glue: maps the request, decides it with Cedar, and turns a
//! denial into its answer (403, a step-up, 400/413/503) unless the route
//! only shadows. The decision is kept for the exit and the response phase.

use super::admit::{header_str, Admission};
use super::identify::{wants_page, Identity};
use super::respond::{self, Stop};
use super::routes::Route;
use crate::authn::{AuthOutcome, Authenticator, Credentials, RequestFacts};
use crate::authz::mapping::{RequestView, StoredRecords};
use crate::authz::{Authorization, Decision, EnforcementMode, Loaded, Snapshot, Verdict};
use crate::metrics::metrics;
use http::request::Parts;
use std::sync::Arc;

/// The largest body read to decide a request (FHIR creates, updates and
/// batches); it is then sent upstream from memory.
pub const MAX_DECISION_BODY: usize = 64 * 1024;

/// What a client may declare about a request: purpose of use, break-glass
/// justification, elevation ticket. Policies decide what they are worth.
#[derive(Debug, Default, Clone)]
pub struct Declared {
    pub purpose_of_use: Option<String>,
    pub break_glass: Option<String>,
    pub ticket: Option<String>,
}

/// Largest declared value kept (a justification is a sentence, not a file).
const MAX_DECLARED: usize = 512;

impl Declared {
    /// Read before hygiene strips the `X-Phigate-*` headers.
    pub fn from_headers(h: &http::HeaderMap) -> Declared {
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= MAX_DECLARED)
                .map(str::to_owned)
        };
        Declared {
            purpose_of_use: get("x-phigate-purpose-of-use"),
            break_glass: get("x-phigate-break-glass"),
            ticket: get("x-phigate-ticket"),
        }
    }
}

/// The authorization stage's result, for the exit and the response phase.
#[derive(Debug, Clone)]
pub struct DecisionCtx {
    /// The decision, when Cedar was asked (`None` when the request could
    /// not be mapped or entities could not be had).
    pub decision: Option<Arc<Decision>>,
    /// The snapshot, clock reading, facts and principal entity the decision
    /// was made on: the response phase decides per record over exactly this.
    pub loaded: Option<Arc<Loaded>>,
    /// The snapshot decided with (its policy and entities versions), also
    /// when nothing was loaded.
    pub snapshot: Option<Arc<Snapshot>>,
    pub outcome: &'static str,
    pub reason: &'static str,
    pub mode: EnforcementMode,
    /// `X-Phigate-Decision`, when debugging headers are on.
    pub header: Option<String>,
    /// The break-glass justification as declared (allowed or not): every
    /// use and attempt is carried to the audit record and alerts (never to
    /// logs: it is free text a clinician typed).
    pub break_glass: Option<String>,
}

/// Whether the request's body must be read before deciding, and whether it
/// may be: `Err` is the refusal for a body too large to decide.
pub fn body_needed(route: &Route, head: &Parts) -> Result<bool, Stop> {
    let Some(route_authz) = route.authz.as_ref() else {
        return Ok(false);
    };
    if !route_authz.needs_body(head.method.as_str()) {
        return Ok(false);
    }
    let shadow = route_authz.mode == EnforcementMode::Shadow;
    // An encoded body would be decided on bytes the upstream reads
    // differently: refuse it (a shadow route decides without it).
    let encoded = head
        .headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return if shadow {
            Ok(false)
        } else {
            Err(Stop::new(
                respond::denial(
                    route.denial_style,
                    415,
                    "an encoded request body cannot be authorized; send it uncompressed",
                ),
                "encoded_body",
            ))
        };
    }
    let declared_too_large = header_str(head, http::header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_DECISION_BODY);
    // A shadow route decides without a body it cannot read and forwards it
    // untouched; an enforcing route refuses it before reading it.
    match (declared_too_large, shadow) {
        (true, true) => Ok(false),
        (true, false) => Err(undecidable_body(route)),
        (false, _) => Ok(true),
    }
}

/// A FHIR write whose body is over [`MAX_DECISION_BODY`]: nothing can be
/// decided about it.
pub fn undecidable_body(route: &Route) -> Stop {
    metrics()
        .authz_decisions
        .with_label_values(&[&route.name, "unmapped", "body_too_large"])
        .inc();
    Stop::new(
        respond::denial(
            route.denial_style,
            413,
            "the request body is too large to authorize",
        ),
        "body_too_large_to_authorize",
    )
}

/// Everything authorization reads about the request.
pub struct DecideInput<'a> {
    pub head: &'a Parts,
    pub admission: &'a Admission,
    pub identity: &'a Identity,
    pub declared: &'a Declared,
    pub body: Option<&'a [u8]>,
    pub device_trusted: bool,
    pub request_id: &'a str,
    /// The stored records the request's writes by id change, once read.
    pub stored: Option<&'a StoredRecords>,
}

impl<'a> DecideInput<'a> {
    /// The request as the mappers read it.
    fn view(&self) -> RequestView<'a> {
        let path = &self.admission.path;
        RequestView {
            method: self.head.method.as_str(),
            path: path.path(),
            query: path.query(),
            content_type: header_str(self.head, http::header::CONTENT_TYPE),
            body: self.body,
            if_none_exist: header_str(
                self.head,
                http::header::HeaderName::from_static("if-none-exist"),
            ),
            stored: self.stored,
        }
    }

    /// The records (type, id) whose stored versions must be read before
    /// this request is decided: its writes by id. A request that cannot be
    /// mapped needs none (deciding it refuses it).
    pub fn stored_reads(&self) -> Vec<(String, String)> {
        let Some(route_authz) = self.admission.route.authz.as_ref() else {
            return Vec::new();
        };
        if !route_authz.may_write_by_id(self.head.method.as_str(), self.admission.path.path()) {
            return Vec::new();
        }
        match route_authz.map(&self.view()) {
            Ok(mapping) => mapping
                .stored_reads()
                .into_iter()
                .map(|(ty, id)| (ty.to_owned(), id.to_owned()))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Decides the request. `Ok` lets it through (allowed, or denied in shadow
/// mode); `Err` is the answer to send.
pub async fn decide(
    authz: &Authorization,
    authn: &Authenticator,
    input: DecideInput<'_>,
) -> Result<DecisionCtx, (Stop, DecisionCtx)> {
    let route = &input.admission.route;
    let Some(route_authz) = route.authz.as_ref() else {
        // Routes with authentication always carry authorization; a route
        // without it never reaches here with a principal.
        return Err((
            Stop::new(
                respond::denial(route.denial_style, 403, "access denied by policy"),
                "forbidden",
            ),
            DecisionCtx {
                decision: None,
                loaded: None,
                snapshot: None,
                outcome: "deny",
                reason: "no_authorization",
                mode: EnforcementMode::Enforce,
                header: None,
                break_glass: None,
            },
        ));
    };
    let principal = &input.identity.principal;
    let path = &input.admission.path;
    let shadow = route_authz.mode == EnforcementMode::Shadow;
    let facts = crate::authz::RequestFacts {
        client_ip: input.admission.client_ip,
        device_trusted: input.device_trusted,
        purpose_of_use: input.declared.purpose_of_use.clone(),
        break_glass: input.declared.break_glass.clone(),
        ticket: input.declared.ticket.clone(),
        route: route.name.clone(),
        now: jiff::Timestamp::now(),
    };
    let view = input.view();
    // One snapshot and one clock reading for the whole request.
    let snapshot = authz.snapshot();
    let decided = authz
        .decide_on(snapshot.clone(), route_authz, principal, &view, facts)
        .await;
    let verdict = decided.verdict;
    let (outcome, reason) = verdict.labels();
    let allowed = matches!(verdict, Verdict::Allow(_));
    let outcome = if shadow && !allowed {
        "shadow_deny"
    } else {
        outcome
    };
    metrics()
        .authz_decisions
        .with_label_values(&[&route.name, outcome, reason])
        .inc();
    let decision = verdict.decision().cloned();
    let header = authz.decision_header.then(|| {
        let policies = decision
            .as_ref()
            .map(|d| d.determining().join(","))
            .unwrap_or_default();
        let version = snapshot.version();
        format!("{outcome}; reason={reason}; policies=\"{policies}\"; version={version}")
    });
    let ctx = DecisionCtx {
        decision,
        loaded: decided.loaded.map(Arc::new),
        snapshot: Some(snapshot),
        outcome,
        reason,
        mode: route_authz.mode,
        header,
        // Every declaration, allowed or refused, valid or not: the audit
        // record and alerts judge it.
        break_glass: input.declared.break_glass.clone(),
    };
    if allowed || shadow {
        return Ok(ctx);
    }
    let refusal = match verdict {
        Verdict::StepUp(_, need) => {
            let creds = Credentials {
                client_cert: None,
                authorization: None,
                cookie: None,
                wants_page: wants_page(input.head),
                target: path,
            };
            let auth_facts = RequestFacts {
                request_id: input.request_id,
                route: &route.name,
                client_ip: Some(input.admission.client_ip),
                path: path.path(),
            };
            match authn
                .policy_step_up(principal, need.mfa, need.max_age, &creds, &auth_facts)
                .await
            {
                AuthOutcome::Redirect(url) => (respond::redirect(&url, None), "step_up_redirect"),
                AuthOutcome::StepUp(step_up) => (
                    respond::error_with(
                        401,
                        &[(http::header::WWW_AUTHENTICATE, step_up.challenge())],
                    ),
                    "step_up_required",
                ),
                _ => (respond::error(503), "identity_provider_unavailable"),
            }
        }
        Verdict::Unmapped(crate::authz::mapping::MappingError::BadRequest { .. }) => (
            respond::denial(
                route.denial_style,
                400,
                "the request cannot be authorized as sent",
            ),
            "authz_bad_request",
        ),
        Verdict::Unavailable(_) => (
            respond::denial(
                route.denial_style,
                503,
                "authorization is temporarily unavailable",
            ),
            "authz_unavailable",
        ),
        _ => {
            // A forbid that says why (its `@refusal`) is worded as written;
            // anything else stays non-revealing.
            let detail = ctx
                .decision
                .as_ref()
                .zip(ctx.loaded.as_ref())
                .and_then(|(d, l)| {
                    d.determining()
                        .iter()
                        .find_map(|id| l.snapshot.policies.refusals.get(*id).cloned())
                })
                .map(std::borrow::Cow::Owned)
                .unwrap_or(std::borrow::Cow::Borrowed("access denied by policy"));
            (
                respond::denial(route.denial_style, 403, detail),
                "forbidden",
            )
        }
    };
    Err((Stop::new(refusal.0, refusal.1), ctx))
}
