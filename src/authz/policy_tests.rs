//! Policy tests: security staff's executable statements of what the
//! policies must allow and deny.
//!
//! A YAML suite names principals (attributes and relationships), then cases
//! given either as an HTTP request (mapped exactly as the proxy maps it) or
//! as a Cedar action and resource, each with the expected decision and,
//! optionally, the policies that must determine it. The Cedar CLI's
//! `run-tests` JSON is accepted too. `phigate policy test` runs suites, and a
//! policy reload runs the shipped suites before it swaps anything in.
//!
//! A suite with `mapping: routes` names requests as clients send them; they
//! are routed and mapped through a `phigate.toml`'s routes ([`Routes`]),
//! which `policy test --config` and `serve` supply.

use super::engine::{Categories, Decision, Engine, RequestFacts, Subject};
use super::entities::{EntityStore, PrincipalEntity};
use super::mapping::{AccessRequest, Action, FhirMapper, RequestView, Resource, StoredRecords};
use super::routed::Routes;
use super::store::PolicyBundle;
use crate::authn::principal::{AuthMethod, Principal, PrincipalKind};
use cedar_policy::{Authorizer, Context, Entities, EntityUid, Request};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The base the test mapper treats as "this FHIR server" for full URLs.
pub const TEST_FHIR_BASE: &str = "https://phigate.test/fhir";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    /// Entities file, relative to the suite (default: `entities.json` in
    /// the policy directory, when present).
    entities: Option<PathBuf>,
    /// `fhir` (default): requests are relative to a FHIR base and mapped
    /// by the FHIR grammar. `routes`: requests are paths as clients send
    /// them, routed and mapped by phigate.toml's routes (templates or
    /// FHIR) exactly as `serve` maps them; such a suite decides on the
    /// config's entities unless it names its own.
    #[serde(default)]
    mapping: SuiteMapping,
    #[serde(default)]
    principals: BTreeMap<String, TestPrincipal>,
    #[serde(default)]
    defaults: TestContext,
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SuiteMapping {
    #[default]
    Fhir,
    Routes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestPrincipal {
    id: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    care_teams: Vec<String>,
    organization: Option<String>,
    patient: Option<String>,
    fhir_user: Option<String>,
    npi: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    mfa: bool,
    /// Seconds since sign-in (default 60 for people, unknown for services).
    auth_age: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestContext {
    now: Option<String>,
    client_ip: Option<String>,
    purpose_of_use: Option<String>,
    break_glass: Option<String>,
    ticket: Option<String>,
    device_trusted: Option<bool>,
    route: Option<String>,
    /// The `Host` a routed request is sent to (for routes with `hosts`).
    host: Option<String>,
    mfa: Option<bool>,
    auth_age: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PrincipalRef {
    Named(String),
    Inline(Box<TestPrincipal>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: PrincipalRef,
    /// `METHOD /path?query`, relative to the FHIR base.
    request: Option<String>,
    body: Option<serde_json::Value>,
    /// What the upstream holds at the record a write by id changes: the
    /// record, or `absent`. The proxy reads it before deciding.
    stored: Option<serde_json::Value>,
    action: Option<String>,
    resource: Option<TestResource>,
    /// With `action: disclose`: the data class asked about.
    data_class: Option<String>,
    #[serde(default)]
    context: TestContext,
    expect: Expect,
    determining: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestResource {
    #[serde(rename = "type")]
    resource_type: String,
    id: Option<String>,
    patient: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Expect {
    Allow,
    Deny,
    StepUp,
    /// The request does not map (no template matches, a FHIR request
    /// phigate cannot read): refused before any policy is asked.
    Unmapped,
}

/// One failed case.
#[derive(Debug, Clone)]
pub struct Failure {
    pub file: String,
    pub case: String,
    pub message: String,
}

/// The outcome of running suites.
#[derive(Debug, Default, Clone)]
pub struct TestReport {
    pub passed: usize,
    pub failures: Vec<Failure>,
}

impl TestReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    fn fail(&mut self, file: &str, case: &str, message: impl Into<String>) {
        self.failures.push(Failure {
            file: file.to_string(),
            case: case.to_string(),
            message: message.into(),
        });
    }

    fn merge(&mut self, other: TestReport) {
        self.passed += other.passed;
        self.failures.extend(other.failures);
    }
}

/// Finds the suites in a policy directory's `tests/` folder.
pub fn suites_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("tests"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

/// The example suites compiled into the binary, for the embedded policies.
pub const EMBEDDED_SUITES: &[(&str, &str)] = &[
    (
        "tests/care-team.yaml",
        include_str!("../../policies/tests/care-team.yaml"),
    ),
    (
        "tests/physicians.yaml",
        include_str!("../../policies/tests/physicians.yaml"),
    ),
    (
        "tests/billing.yaml",
        include_str!("../../policies/tests/billing.yaml"),
    ),
    (
        "tests/support.yaml",
        include_str!("../../policies/tests/support.yaml"),
    ),
    (
        "tests/patients.yaml",
        include_str!("../../policies/tests/patients.yaml"),
    ),
    (
        "tests/devices.yaml",
        include_str!("../../policies/tests/devices.yaml"),
    ),
    (
        "tests/guardrails.yaml",
        include_str!("../../policies/tests/guardrails.yaml"),
    ),
    (
        "tests/fan-out.yaml",
        include_str!("../../policies/tests/fan-out.yaml"),
    ),
    (
        "tests/disclose.yaml",
        include_str!("../../policies/tests/disclose.yaml"),
    ),
];

/// The example entities the embedded suites use.
pub const EMBEDDED_ENTITIES: &str = include_str!("../../policies/entities.json");

/// Runs suite files against a bundle. `policy_dir` locates the default
/// entities file.
pub fn run_files(
    bundle: &PolicyBundle,
    files: &[PathBuf],
    policy_dir: Option<&Path>,
    categories: &Categories,
    routes: Option<&Routes>,
) -> TestReport {
    let mut report = TestReport::default();
    for file in files {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                report.fail(&name, "-", format!("cannot read: {e}"));
                continue;
            }
        };
        let base = file.parent().unwrap_or(Path::new("."));
        let default_entities = policy_dir
            .map(|d| d.join("entities.json"))
            .filter(|p| p.exists());
        let load = |relative: Option<&Path>| -> Result<String, String> {
            let path = match relative {
                Some(r) => base.join(r),
                None => match &default_entities {
                    Some(p) => p.clone(),
                    // Suites run against the embedded policies use the
                    // embedded example entities.
                    None if policy_dir.is_none() => return Ok(EMBEDDED_ENTITIES.into()),
                    None => return Ok("[]".into()),
                },
            };
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        report.merge(run_text(bundle, &name, &text, &load, categories, routes));
    }
    report
}

/// Runs the suites compiled into the binary.
pub fn run_embedded(bundle: &PolicyBundle, categories: &Categories) -> TestReport {
    let mut report = TestReport::default();
    for (name, text) in EMBEDDED_SUITES {
        let load = |_: Option<&Path>| -> Result<String, String> { Ok(EMBEDDED_ENTITIES.into()) };
        report.merge(run_text(bundle, name, text, &load, categories, None));
    }
    report
}

type EntityLoader<'a> = dyn Fn(Option<&Path>) -> Result<String, String> + 'a;

/// Runs one suite's text (YAML, or Cedar CLI JSON when it is a JSON array).
pub fn run_text(
    bundle: &PolicyBundle,
    name: &str,
    text: &str,
    load: &EntityLoader<'_>,
    categories: &Categories,
    routes: Option<&Routes>,
) -> TestReport {
    let mut report = TestReport::default();
    if text.trim_start().starts_with('[') {
        return run_cedar_cli(bundle, name, text);
    }
    let suite: Suite = match serde_norway::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            report.fail(name, "-", format!("not a policy test suite: {e}"));
            return report;
        }
    };
    let mapper = match (suite.mapping, routes) {
        (SuiteMapping::Fhir, _) => Mapper::Fhir(FhirMapper::new(vec![TEST_FHIR_BASE.to_string()])),
        (SuiteMapping::Routes, Some(routes)) => Mapper::Routes(routes),
        (SuiteMapping::Routes, None) => {
            report.fail(
                name,
                "-",
                "this suite maps requests through phigate.toml's routes (`mapping: routes`): run it with `phigate policy test --config phigate.toml`",
            );
            return report;
        }
    };
    // A routed suite decides on what `serve` decides on: the config's
    // entities (none is an empty set), unless it names its own.
    let entities = match (&mapper, &suite.entities) {
        (Mapper::Routes(routes), None) => match &routes.entities {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
            }
            None => Ok("[]".to_string()),
        },
        _ => load(suite.entities.as_deref()),
    };
    let store = match entities
        .and_then(|t| EntityStore::from_json(&t, Some(&bundle.schema)).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            report.fail(name, "-", format!("entities: {e}"));
            return report;
        }
    };
    let engine = Engine::new(jiff::tz::TimeZone::UTC);
    for case in &suite.cases {
        match run_case(bundle, &store, &engine, &mapper, &suite, case, categories) {
            Ok(()) => report.passed += 1,
            Err(message) => report.fail(name, &case.name, message),
        }
    }
    report
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    bundle: &PolicyBundle,
    store: &EntityStore,
    engine: &Engine,
    mapper: &Mapper<'_>,
    suite: &Suite,
    case: &Case,
    categories: &Categories,
) -> Result<(), String> {
    let test_principal = match &case.principal {
        PrincipalRef::Named(n) => suite
            .principals
            .get(n)
            .cloned()
            .ok_or_else(|| format!("no principal named `{n}` in `principals`"))?,
        PrincipalRef::Inline(p) => (**p).clone(),
    };
    let context = merge(&suite.defaults, &case.context);
    let now = match &context.now {
        Some(t) => jiff::Timestamp::from_str(t).map_err(|e| format!("context.now: {e}"))?,
        None => jiff::Timestamp::from_second(1_772_463_600).map_err(|e| e.to_string())?,
    };
    let principal = to_principal(&test_principal, &context, now)?;
    let disclose = case.action.as_deref() == Some("disclose");
    let (accesses, routed) = if disclose {
        (Vec::new(), None)
    } else {
        match accesses_of(case, mapper, context.host.as_deref())? {
            Mapped::Accesses(accesses, route) => (accesses, route),
            Mapped::Refused { route, reason } => return check_refused(case, &route, &reason),
        }
    };
    let route = match (routed, &context.route) {
        (Some(routed), Some(given)) if *given != routed => {
            return Err(format!(
                "context.route `{given}`: the request is served by route `{routed}` (a routed suite's route is the one that serves the request; leave context.route out)"
            ))
        }
        (Some(routed), _) => routed,
        (None, given) => given.clone().unwrap_or_else(|| "fhir".into()),
    };
    let facts = RequestFacts {
        client_ip: context
            .client_ip
            .as_deref()
            .unwrap_or("10.1.2.3")
            .parse()
            .map_err(|_| "context.client_ip is not an IP address".to_string())?,
        device_trusted: context.device_trusted.unwrap_or(false),
        purpose_of_use: context.purpose_of_use.clone(),
        break_glass: context.break_glass.clone(),
        ticket: context.ticket.clone(),
        route,
        now,
    };
    let entity = PrincipalEntity::build(&principal, store, None).map_err(|e| e.to_string())?;
    let subject = Subject {
        principal: &principal,
        entity: &entity,
    };
    if disclose {
        let class = case
            .data_class
            .as_deref()
            .ok_or("an `action: disclose` case needs a `data_class`")?;
        if bundle.classes.get(class).is_none() {
            return Err(format!("data class `{class}` is not in data-classes.toml"));
        }
        let resource = case
            .resource
            .as_ref()
            .ok_or("an `action: disclose` case needs a `resource` (its type)")?;
        let d = engine.disclose_decision(
            bundle,
            store,
            &subject,
            class,
            &resource.resource_type,
            &facts,
            categories,
        );
        let decision = Decision {
            allowed: d.allowed,
            version: bundle.version.clone(),
            accesses: vec![d],
            break_glass: false,
            step_up: None,
        };
        return check(case, &decision);
    }
    if case.data_class.is_some() {
        return Err("`data_class` goes with `action: disclose`".into());
    }
    let labels = case
        .resource
        .as_ref()
        .map(|r| r.labels.clone())
        .unwrap_or_default();
    let decision = engine.decide_labelled(
        bundle, store, &subject, &accesses, &facts, categories, &labels,
    );
    check(case, &decision)
}

/// A request its route does not map (no template matches, a malformed
/// request): `serve` refuses it before any policy is asked. Only `expect:
/// unmapped` says so; a `deny` must come from the policies, or a typo in a
/// test's path would pass as a denial.
fn check_refused(case: &Case, route: &str, reason: &str) -> Result<(), String> {
    if case.expect == Expect::Unmapped && case.determining.is_none() {
        return Ok(());
    }
    Err(format!(
        "expected {:?}, but route `{route}` does not map this request ({reason}): serve refuses it before any policy is asked (write `expect: unmapped` if that is the point)",
        case.expect
    ))
}

fn check(case: &Case, decision: &Decision) -> Result<(), String> {
    if case.expect == Expect::Unmapped {
        return Err(format!(
            "expected the request to be unmapped, but it maps and the policies decide {}",
            if decision.allowed { "Allow" } else { "Deny" }
        ));
    }
    let got = if decision.allowed {
        Expect::Allow
    } else if decision.step_up.is_some() {
        Expect::StepUp
    } else {
        Expect::Deny
    };
    let matches = got == case.expect || (case.expect == Expect::Deny && got == Expect::StepUp);
    let describe = || {
        let reason = decision
            .reason()
            .map(|r| format!(", reason {}", r.as_str()))
            .unwrap_or_default();
        format!(
            "{:?} by [{}]{reason}",
            got,
            decision.determining().join(", ")
        )
    };
    if !matches {
        return Err(format!("expected {:?}, got {}", case.expect, describe()));
    }
    if let Some(expected) = &case.determining {
        let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        expected.sort_unstable();
        expected.dedup();
        if decision.determining() != expected {
            return Err(format!(
                "expected determining policies [{}], got {}",
                expected.join(", "),
                describe()
            ));
        }
    }
    Ok(())
}

fn merge(defaults: &TestContext, case: &TestContext) -> TestContext {
    TestContext {
        now: case.now.clone().or_else(|| defaults.now.clone()),
        client_ip: case
            .client_ip
            .clone()
            .or_else(|| defaults.client_ip.clone()),
        purpose_of_use: case
            .purpose_of_use
            .clone()
            .or_else(|| defaults.purpose_of_use.clone()),
        break_glass: case
            .break_glass
            .clone()
            .or_else(|| defaults.break_glass.clone()),
        ticket: case.ticket.clone().or_else(|| defaults.ticket.clone()),
        device_trusted: case.device_trusted.or(defaults.device_trusted),
        route: case.route.clone().or_else(|| defaults.route.clone()),
        host: case.host.clone().or_else(|| defaults.host.clone()),
        mfa: case.mfa.or(defaults.mfa),
        auth_age: case.auth_age.or(defaults.auth_age),
    }
}

fn to_principal(
    p: &TestPrincipal,
    ctx: &TestContext,
    now: jiff::Timestamp,
) -> Result<Principal, String> {
    let service = match p.kind.as_deref() {
        None | Some("user") => false,
        Some("service") => true,
        Some(other) => return Err(format!("principal kind `{other}`: use user or service")),
    };
    let mut principal = Principal::service(
        &p.id,
        if service {
            "api-key"
        } else {
            "https://idp.test"
        },
        if service {
            AuthMethod::ApiKey
        } else {
            AuthMethod::Bearer
        },
        p.roles.clone(),
    );
    if !service {
        principal.kind = PrincipalKind::User;
        principal.mfa = ctx.mfa.unwrap_or(p.mfa);
        let age = ctx.auth_age.or(p.auth_age).unwrap_or(60);
        principal.auth_time = Some((now.as_second() as u64).saturating_sub(age));
    }
    principal.care_teams = p.care_teams.clone();
    principal.organization = p.organization.clone();
    principal.patient = p.patient.clone();
    principal.fhir_user = p.fhir_user.clone();
    principal.npi = p.npi.clone();
    principal.scopes = p.scopes.clone();
    Ok(principal)
}

/// The case's `stored` record, at every record its writes by id change.
fn stored_records(
    case: &Case,
    mapper: &Mapper<'_>,
    host: Option<&str>,
    view: &RequestView<'_>,
) -> Result<Option<StoredRecords>, String> {
    let Some(stored) = &case.stored else {
        return Ok(None);
    };
    let reads: Vec<(String, String)> = match mapper {
        Mapper::Fhir(fhir) => match fhir.map(view) {
            Ok(mapping) => mapping
                .stored_reads()
                .into_iter()
                .map(|(t, i)| (t.to_owned(), i.to_owned()))
                .collect(),
            Err(_) => Vec::new(),
        },
        Mapper::Routes(routes) => routes.stored_reads(host, view),
    };
    if reads.is_empty() {
        return Err("stored: only a write by id of a non-Patient record reads one".into());
    }
    let mut records = StoredRecords::default();
    let given = match stored {
        serde_json::Value::String(s) if s == "absent" => {
            for (ty, id) in &reads {
                records.insert(ty, id, None);
            }
            return Ok(Some(records));
        }
        serde_json::Value::Object(_) => std::slice::from_ref(stored),
        serde_json::Value::Array(items) => items.as_slice(),
        _ => return Err("stored: write the stored record(s), or `absent`".into()),
    };
    // Each record goes where it says it is stored; one the request does
    // not change is a mistake in the test, not a denial.
    for record in given {
        let ty = record.get("resourceType").and_then(|v| v.as_str());
        let id = record.get("id").and_then(|v| v.as_str());
        let (Some(ty), Some(id)) = (ty, id) else {
            return Err("stored: each record needs resourceType and id".into());
        };
        if !reads.iter().any(|(t, i)| t == ty && i == id) {
            return Err(format!(
                "stored: {ty}/{id} is not a record this request changes by id"
            ));
        }
        records.insert(ty, id, Some(record.clone()));
    }
    Ok(Some(records))
}

/// How a suite's requests become access requests.
enum Mapper<'a> {
    /// FHIR-relative paths, the FHIR grammar, [`TEST_FHIR_BASE`].
    Fhir(FhirMapper),
    /// Paths as clients send them, through the configured routes.
    Routes(&'a Routes),
}

/// A case's request, mapped.
enum Mapped {
    /// What Cedar decides, and the route that serves it (routed suites).
    Accesses(Vec<AccessRequest>, Option<String>),
    /// The route refuses to map it: serve denies it undecided.
    Refused { route: String, reason: String },
}

fn accesses_of(case: &Case, mapper: &Mapper<'_>, host: Option<&str>) -> Result<Mapped, String> {
    match (&case.request, &case.action) {
        (Some(line), None) => {
            let (method, target) = line
                .split_once(' ')
                .ok_or("request: write it as `METHOD /path?query`")?;
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (target, None),
            };
            let body = case
                .body
                .as_ref()
                .map(|b| serde_json::to_vec(b).unwrap_or_default());
            let mut view = RequestView {
                method,
                path,
                query,
                content_type: body.as_ref().map(|_| "application/fhir+json"),
                body: body.as_deref(),
                if_none_exist: None,
                stored: None,
            };
            let stored = stored_records(case, mapper, host, &view)?;
            view.stored = stored.as_ref();
            match mapper {
                Mapper::Fhir(fhir) => match fhir.map(&view) {
                    Ok(mapping) => Ok(Mapped::Accesses(mapping.requests, None)),
                    Err(e) if case.expect == Expect::Unmapped => Ok(Mapped::Refused {
                        route: "fhir".into(),
                        reason: e.to_string(),
                    }),
                    Err(e) => Err(format!(
                        "request does not map as FHIR ({e}); a suite for an app's own routes sets `mapping: routes` and runs with --config"
                    )),
                },
                Mapper::Routes(routes) => {
                    let routed = routes.map(host, &view)?;
                    match routed.mapping {
                        Ok(mapping) => Ok(Mapped::Accesses(mapping.requests, Some(routed.route))),
                        Err(e) => Ok(Mapped::Refused {
                            route: routed.route,
                            reason: e.to_string(),
                        }),
                    }
                }
            }
        }
        (None, Some(action)) => {
            let action = Action::from_id(action)
                .ok_or_else(|| format!("action `{action}` is not one of the schema's actions"))?;
            let resource = case
                .resource
                .as_ref()
                .ok_or("an `action` case needs a `resource`")?;
            Ok(Mapped::Accesses(
                vec![AccessRequest {
                    action,
                    resource: Resource {
                        resource_type: resource.resource_type.clone(),
                        id: resource.id.clone(),
                    },
                    patient: resource.patient.clone(),
                    fan_out: None,
                    interaction: "test".into(),
                    operation: None,
                }],
                None,
            ))
        }
        _ => Err("give either `request` or `action` + `resource`".into()),
    }
}

/// The Cedar CLI's `run-tests` format: a JSON array of cases with a Cedar
/// request, entities, the expected decision and reasons (policy `@id`s).
#[derive(Debug, Deserialize)]
struct CedarCliCase {
    name: String,
    request: CedarCliRequest,
    #[serde(default)]
    entities: serde_json::Value,
    decision: String,
    #[serde(default)]
    reason: Vec<String>,
    #[serde(default)]
    num_errors: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct CedarCliRequest {
    principal: String,
    action: String,
    resource: String,
    #[serde(default)]
    context: serde_json::Value,
}

fn run_cedar_cli(bundle: &PolicyBundle, name: &str, text: &str) -> TestReport {
    let mut report = TestReport::default();
    let cases: Vec<CedarCliCase> = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(e) => {
            report.fail(name, "-", format!("not a Cedar run-tests file: {e}"));
            return report;
        }
    };
    let authorizer = Authorizer::new();
    for case in cases {
        match run_cedar_case(bundle, &authorizer, &case) {
            Ok(()) => report.passed += 1,
            Err(m) => report.fail(name, &case.name, m),
        }
    }
    report
}

fn run_cedar_case(
    bundle: &PolicyBundle,
    authorizer: &Authorizer,
    case: &CedarCliCase,
) -> Result<(), String> {
    let parse_uid = |s: &str| EntityUid::from_str(s).map_err(|e| format!("`{s}`: {e}"));
    let context = if case.request.context.is_null() {
        Context::empty()
    } else {
        Context::from_json_value(case.request.context.clone(), None).map_err(|e| e.to_string())?
    };
    let request = Request::new(
        parse_uid(&case.request.principal)?,
        parse_uid(&case.request.action)?,
        parse_uid(&case.request.resource)?,
        context,
        Some(&bundle.schema),
    )
    .map_err(|e| e.to_string())?;
    let entities_json = if case.entities.is_null() {
        serde_json::json!([])
    } else {
        case.entities.clone()
    };
    let entities = Entities::from_json_value(entities_json, Some(&bundle.schema))
        .map_err(|e| e.to_string())?;
    let response = authorizer.is_authorized(&request, &bundle.policies, &entities);
    let decision = match response.decision() {
        cedar_policy::Decision::Allow => "allow",
        cedar_policy::Decision::Deny => "deny",
    };
    let mut reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|r| r.to_string())
        .collect();
    reasons.sort();
    let mut expected = case.reason.clone();
    expected.sort();
    let errors = response.diagnostics().errors().count();
    if decision != case.decision.to_ascii_lowercase() {
        return Err(format!(
            "expected {}, got {decision} by [{}]",
            case.decision,
            reasons.join(", ")
        ));
    }
    if reasons != expected {
        return Err(format!(
            "expected reasons [{}], got [{}]",
            expected.join(", "),
            reasons.join(", ")
        ));
    }
    if let Some(n) = case.num_errors {
        if n != errors {
            return Err(format!("expected {n} evaluation errors, got {errors}"));
        }
    }
    Ok(())
}

/// Which example policies no case exercises (a suite should cover every
/// policy it ships).
pub fn uncovered(bundle: &PolicyBundle, texts: &[&str]) -> Vec<String> {
    let mut mentioned: HashMap<&str, bool> =
        bundle.origins.keys().map(|k| (k.as_str(), false)).collect();
    for text in texts {
        for (id, seen) in mentioned.iter_mut() {
            if text.contains(id) {
                *seen = true;
            }
        }
    }
    let mut missing: Vec<String> = mentioned
        .into_iter()
        .filter(|(_, seen)| !seen)
        .map(|(id, _)| id.to_string())
        .collect();
    missing.sort();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::store::PolicySource;

    #[test]
    fn the_shipped_suites_pass_and_cover_every_example_policy() {
        let bundle = PolicyBundle::load(&PolicySource::Embedded).unwrap();
        let report = run_embedded(&bundle, &Categories::default());
        let failures: Vec<String> = report
            .failures
            .iter()
            .map(|f| format!("{} / {}: {}", f.file, f.case, f.message))
            .collect();
        assert!(report.ok(), "{}", failures.join("\n"));
        assert!(report.passed >= 40, "{} cases", report.passed);
        let texts: Vec<&str> = EMBEDDED_SUITES.iter().map(|(_, t)| *t).collect();
        assert_eq!(uncovered(&bundle, &texts), Vec::<String>::new());
    }

    #[test]
    fn a_wrong_expectation_fails_with_the_actual_decision() {
        let bundle = PolicyBundle::load(&PolicySource::Embedded).unwrap();
        let suite = r#"
principals:
  billing: {id: carol, roles: [billing]}
cases:
  - name: billing reads a clinical note
    principal: billing
    request: GET /DocumentReference?patient=pat-0001
    expect: allow
"#;
        let load = |_: Option<&Path>| -> Result<String, String> { Ok(EMBEDDED_ENTITIES.into()) };
        let report = run_text(
            &bundle,
            "x.yaml",
            suite,
            &load,
            &Categories::default(),
            None,
        );
        assert_eq!(report.failures.len(), 1);
        assert!(
            report.failures[0]
                .message
                .contains("expected Allow, got Deny"),
            "{:?}",
            report.failures
        );
    }

    #[test]
    fn cedar_cli_run_tests_json_is_accepted() {
        let bundle = PolicyBundle::load(&PolicySource::Embedded).unwrap();
        let text = r#"[{
          "name": "device gateway posts an enrolled patient's reading",
          "request": {"principal": "Phigate::ServiceAccount::\"gw\"", "action": "Phigate::Action::\"create\"",
                      "resource": "Phigate::Record::\"Observation\"",
                      "context": {"mfa": false, "auth_age": 0, "auth_method": "api_key",
                                  "client_ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
                                  "device_trusted": false, "break_glass": false,
                                  "now": {"__extn": {"fn": "datetime", "arg": "2026-03-02T15:00:00Z"}},
                                  "hour": 15, "weekday": "Mon", "route": "fhir", "interaction": "create"}},
          "entities": [
            {"uid": {"type": "Phigate::ServiceAccount", "id": "gw"}, "attrs": {}, "parents": [{"type": "Phigate::Role", "id": "device_gateway"}]},
            {"uid": {"type": "Phigate::Role", "id": "device_gateway"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Phigate::Patient", "id": "p"}, "attrs": {"care_teams": [], "flags": [], "enrolled": ["rpm"]}, "parents": []},
            {"uid": {"type": "Phigate::Record", "id": "Observation"}, "attrs": {"type": "Observation", "category": "clinical", "labels": [],
              "patient": {"__entity": {"type": "Phigate::Patient", "id": "p"}}}, "parents": [{"type": "Phigate::Patient", "id": "p"}]}
          ],
          "decision": "allow",
          "reason": ["device-gateway-observations"],
          "num_errors": 0
        }]"#;
        let report = run_text(
            &bundle,
            "cli.json",
            text,
            &|_| Ok("[]".into()),
            &Categories::default(),
            None,
        );
        assert!(report.ok(), "{:?}", report.failures);
        assert_eq!(report.passed, 1);
    }

    fn routed(templates: &str) -> Routes {
        #[derive(Deserialize)]
        struct R {
            routes: Vec<crate::proxy::config::RouteConfig>,
        }
        let text = format!(
            "[[routes]]\nname = \"portal\"\npath_prefix = \"/portal\"\nupstream = \"portal\"\nauthorization = {{ templates = [{templates}] }}\n\n[[routes]]\nname = \"fhir\"\npath_prefix = \"/fhir\"\nupstream = \"ehr\"\nauthorization = {{ mapping = \"fhir\" }}\n"
        );
        let r: R = toml::from_str(&text).unwrap();
        Routes::from_config(&r.routes, None).unwrap()
    }

    const ROUTED_SUITE: &str = r#"
mapping: routes
entities: entities.json
principals:
  alice: {id: alice, roles: [care_manager, nurse], care_teams: [team-01], mfa: true}
defaults: {now: "2026-03-02T15:00:00Z"}
cases:
  - name: reads her patient's vitals through the portal
    principal: alice
    request: GET /portal/patients/pat-0001/vitals
    expect: allow
    determining: [care-team-clinical-access]
  - name: the same patient through the FHIR route
    principal: alice
    request: GET /fhir/Observation?patient=pat-0001
    expect: allow
  - name: another team's patient
    principal: alice
    request: GET /portal/patients/pat-0008/vitals
    expect: deny
  - name: a page no template describes is refused unmapped
    principal: alice
    request: GET /portal/admin
    expect: unmapped
"#;

    fn run_routed(routes: Option<&Routes>, suite: &str) -> TestReport {
        let bundle = PolicyBundle::load(&PolicySource::Embedded).unwrap();
        let load = |_: Option<&Path>| -> Result<String, String> { Ok(EMBEDDED_ENTITIES.into()) };
        run_text(
            &bundle,
            "app.yaml",
            suite,
            &load,
            &Categories::default(),
            routes,
        )
    }

    #[test]
    fn routed_suites_map_through_the_configured_templates() {
        let routes = routed(
            r#"{ path = "/portal/patients/{patient}/vitals", methods = ["GET"], resource_type = "Observation" }"#,
        );
        let report = run_routed(Some(&routes), ROUTED_SUITE);
        assert!(report.ok(), "{:?}", report.failures);
        assert_eq!(report.passed, 4);
    }

    #[test]
    fn a_wrong_template_fails_the_suite() {
        // A wrong resource type: notes are not what care teams may read,
        // so the case that expects an allow fails.
        let routes = routed(
            r#"{ path = "/portal/patients/{patient}/vitals", methods = ["GET"], resource_type = "ClinicalNote" }"#,
        );
        let report = run_routed(Some(&routes), ROUTED_SUITE);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert_eq!(
            report.failures[0].case,
            "reads her patient's vitals through the portal"
        );
        // A template that does not match the path at all: a refusal, named.
        let routes = routed(
            r#"{ path = "/portal/patient/{patient}/vitals", methods = ["GET"], resource_type = "Observation" }"#,
        );
        // Both cases about the vitals page fail: the allow, and the deny,
        // which must not pass on a request no policy was asked about.
        let report = run_routed(Some(&routes), ROUTED_SUITE);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(
            report
                .failures
                .iter()
                .all(|f| f.message.contains("route `portal` does not map")),
            "{:?}",
            report.failures
        );
    }

    #[test]
    fn a_denial_must_come_from_the_policies_not_from_a_typo() {
        let routes = routed(
            r#"{ path = "/portal/patients/{patient}/vitals", methods = ["GET"], resource_type = "Observation" }"#,
        );
        // A mistyped path maps nowhere: `deny` does not pass on that.
        let suite = "mapping: routes\nentities: e.json\ncases:\n  - name: typo\n    principal: {id: a, roles: [nurse], care_teams: [team-01], mfa: true}\n    request: GET /portal/patient/pat-0008/vitals\n    expect: deny\n  - name: mapped, but expected unmapped\n    principal: {id: a, roles: [nurse]}\n    request: GET /portal/patients/pat-0008/vitals\n    expect: unmapped\n";
        let report = run_routed(Some(&routes), suite);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(report.failures[0].message.contains("expect: unmapped"));
        assert!(report.failures[1].message.contains("it maps"));
    }

    #[test]
    fn a_routed_suite_without_routes_says_how_to_run_it() {
        let report = run_routed(None, ROUTED_SUITE);
        assert_eq!(report.failures.len(), 1);
        assert!(report.failures[0].message.contains("--config"));
    }

    #[test]
    fn a_routed_request_no_route_serves_is_a_test_error() {
        let routes = routed(
            r#"{ path = "/portal/patients/{patient}/vitals", methods = ["GET"], resource_type = "Observation" }"#,
        );
        let suite = "mapping: routes\nentities: e.json\ncases:\n  - name: x\n    principal: {id: a, roles: [nurse]}\n    request: GET /elsewhere/1\n    expect: deny\n";
        let report = run_routed(Some(&routes), suite);
        assert_eq!(report.failures.len(), 1);
        assert!(report.failures[0]
            .message
            .contains("no route serves /elsewhere/1"));
    }
}
