//! Request-phase authorization cost: mapping, entity slicing and Cedar
//! evaluation, with 10,000 patients in 500 care teams loaded, for the
//! example policy set and the same set replicated to ~300 and ~3,000
//! policies — copies for other tenants (scoped by resource organization,
//! which the scope index skips) and copies told apart only in a `when`
//! clause (every one evaluated: the worst case).
//!
//! Criterion reports means; the issue's figures are percentiles, so a
//! second pass times single decisions and prints p50/p99 per case.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use phigate::authn::principal::{AuthMethod, Principal, PrincipalKind};
use phigate::authz::engine::{Categories, Engine, RequestFacts, Subject};
use phigate::authz::entities::{EntityStore, PrincipalEntity};
use phigate::authz::mapping::{FhirMapper, RequestView};
use phigate::authz::store::{PolicyBundle, EMBEDDED};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

/// The allocator the phigate binary uses (src/main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATIENTS: usize = 10_000;
const TEAMS: usize = 500;

fn entities_json() -> String {
    let mut out = vec![
        r#"{"uid":{"type":"Phigate::Organization","id":"org"},"attrs":{},"parents":[]}"#
            .to_string(),
    ];
    for t in 0..TEAMS {
        out.push(format!(
            r#"{{"uid":{{"type":"Phigate::CareTeam","id":"team-{t:03}"}},"attrs":{{}},"parents":[{{"type":"Phigate::Organization","id":"org"}}]}}"#
        ));
    }
    for p in 0..PATIENTS {
        let team = p % TEAMS;
        let flags = if p % 97 == 0 { r#""vip""# } else { "" };
        out.push(format!(
            r#"{{"uid":{{"type":"Phigate::Patient","id":"pat-{p:05}"}},"attrs":{{"care_teams":[{{"__entity":{{"type":"Phigate::CareTeam","id":"team-{team:03}"}}}}],"organization":{{"__entity":{{"type":"Phigate::Organization","id":"org"}}}},"flags":[{flags}],"enrolled":["ccm","rpm"]}},"parents":[{{"type":"Phigate::CareTeam","id":"team-{team:03}"}},{{"type":"Phigate::Organization","id":"org"}}]}}"#
        ));
    }
    format!("[{}]", out.join(","))
}

/// How copies of the example set are told apart.
#[derive(Clone, Copy)]
enum Copies {
    /// Each copy belongs to another tenant organization: its resource
    /// scope is `resource is Record in Organization::"tenant-k"` (a CCM
    /// vendor serving many clinics). The scope index skips other tenants.
    TenantScoped,
    /// Each copy ends with `when { context.route == "tenant-k" }`: the
    /// scopes are identical, so every copy is evaluated (the worst case).
    RouteCondition,
}

/// The example set plus `copies` copies of every policy.
fn bundle(copies: usize, how: Copies) -> PolicyBundle {
    let mut files: Vec<(String, String)> = EMBEDDED
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let originals = PolicyBundle::from_files(&files).expect("example set");
    let mut extra = String::new();
    for k in 0..copies {
        for policy in originals.policies.policies() {
            let id = policy.id().to_string();
            let text = policy.to_string();
            let text = text.replace(
                &format!("@id(\"{id}\")"),
                &format!("@id(\"{id}-copy-{k}\")"),
            );
            let body = text.trim_end().trim_end_matches(';');
            match how {
                Copies::RouteCondition => extra.push_str(&format!(
                    "{body}\nwhen {{ context.route == \"tenant-{k}\" }};\n\n"
                )),
                Copies::TenantScoped => {
                    // Rewrite the scope's resource part (scopes hold no parentheses).
                    let open = body
                        .find("permit")
                        .or_else(|| body.find("forbid"))
                        .expect("effect");
                    let open = open + body[open..].find('(').expect("scope");
                    let close = open + body[open..].find(')').expect("scope end");
                    let scope = &body[open + 1..close];
                    let at = scope.rfind("resource").expect("resource in scope");
                    let scoped = format!(
                        "{}resource is Phigate::Record in Phigate::Organization::\"tenant-{k}\"\n",
                        &scope[..at]
                    );
                    extra.push_str(&format!(
                        "{}({scoped}){};\n\n",
                        &body[..open],
                        &body[close + 1..]
                    ));
                }
            }
        }
    }
    if copies > 0 {
        files.push(("replicated.cedar".into(), extra));
    }
    PolicyBundle::from_files(&files).expect("replicated set validates")
}

fn care_manager() -> Principal {
    let mut p = Principal::service(
        "alice",
        "https://idp",
        AuthMethod::Bearer,
        vec!["care_manager".into(), "nurse".into()],
    );
    p.kind = PrincipalKind::User;
    p.care_teams = vec!["team-042".into()];
    p.mfa = true;
    p.auth_time = Some(1_772_463_000);
    p
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    query: Option<&'static str>,
}

const CASES: &[Case] = &[
    // pat-00042 is on team-042: allowed.
    Case {
        name: "search_allowed",
        method: "GET",
        path: "/Observation",
        query: Some("patient=Patient/pat-00042&code=8867-4&_count=50"),
    },
    // pat-00043 is on team-043: denied (no permit applies).
    Case {
        name: "read_denied",
        method: "GET",
        path: "/Patient/pat-00043",
        query: None,
    },
];

impl Case {
    fn view(&self) -> RequestView<'static> {
        RequestView {
            method: self.method,
            path: self.path,
            query: self.query,
            content_type: None,
            body: None,
            if_none_exist: None,
            stored: None,
        }
    }
}

fn facts() -> RequestFacts {
    RequestFacts {
        client_ip: "10.1.2.3".parse().expect("ip"),
        device_trusted: false,
        purpose_of_use: None,
        break_glass: None,
        ticket: None,
        route: "fhir".into(),
        now: jiff::Timestamp::from_second(1_772_463_600).expect("time"),
    }
}

struct World {
    store: EntityStore,
    mapper: FhirMapper,
    /// Evaluates every decision: the cost of mapping + slicing + Cedar.
    cold: Engine,
    /// With the decision memo (what phigate runs): repeated decisions hit.
    warm: Engine,
    principal: Principal,
    entity: PrincipalEntity,
    categories: Categories,
    facts: RequestFacts,
}

impl World {
    fn new(schema_bundle: &PolicyBundle) -> World {
        let store = EntityStore::from_json(&entities_json(), Some(&schema_bundle.schema))
            .expect("entities");
        let principal = care_manager();
        let entity = PrincipalEntity::build(&principal, &store, None).expect("principal");
        World {
            store,
            mapper: FhirMapper::new(vec!["https://ehr.example/fhir".into()]),
            cold: Engine::without_memo(jiff::tz::TimeZone::UTC),
            warm: Engine::new(jiff::tz::TimeZone::UTC),
            principal,
            entity,
            categories: Categories::default(),
            facts: facts(),
        }
    }

    /// Map + slice + evaluate: one request's decision (`warm`: through the
    /// memo).
    fn decide(&self, bundle: &PolicyBundle, case: &Case, warm: bool) -> bool {
        let view = case.view();
        let mapping = self.mapper.map(&view).expect("maps");
        let subject = Subject {
            principal: &self.principal,
            entity: &self.entity,
        };
        let engine = if warm { &self.warm } else { &self.cold };
        engine
            .decide(
                bundle,
                &self.store,
                &subject,
                &mapping.requests,
                &self.facts,
                &self.categories,
            )
            .allowed
    }
}

fn percentiles(world: &World, bundle: &PolicyBundle, case: &Case, warm: bool) -> (f64, f64) {
    let n = (2_000_000 / bundle.len()).clamp(2_000, 20_000);
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n / 10 {
        black_box(world.decide(bundle, case, warm));
    }
    for _ in 0..n {
        let start = Instant::now();
        black_box(world.decide(bundle, case, warm));
        samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[n / 2], samples[n * 99 / 100])
}

/// The policy sets: (copies, how, label). Built lazily, so listing the
/// benchmarks or running one of them builds only what it needs.
const SETS: [(usize, Copies, &str); 5] = [
    (0, Copies::TenantScoped, "example"),
    (18, Copies::TenantScoped, "tenants"),
    (187, Copies::TenantScoped, "tenants"),
    (18, Copies::RouteCondition, "unscoped"),
    (187, Copies::RouteCondition, "unscoped"),
];

struct Lazy {
    bundles: Vec<OnceLock<PolicyBundle>>,
    world: OnceLock<World>,
}

impl Lazy {
    fn bundle(&self, i: usize) -> &PolicyBundle {
        self.bundles[i].get_or_init(|| bundle(SETS[i].0, SETS[i].1))
    }

    fn world(&self) -> &World {
        self.world.get_or_init(|| {
            let world = World::new(self.bundle(0));
            for warm in [false, true] {
                assert!(
                    world.decide(self.bundle(0), &CASES[0], warm),
                    "the allowed case is allowed"
                );
                assert!(
                    !world.decide(self.bundle(0), &CASES[1], warm),
                    "the denied case is denied"
                );
            }
            world
        })
    }
}

/// ~16, ~300, ~3,000: the example set has 16 policies, each copy adds 16.
fn label(i: usize) -> String {
    let (copies, _, name) = SETS[i];
    format!("{name}_{}_policies", 16 * (copies + 1))
}

fn bench(c: &mut Criterion) {
    let lazy = Lazy {
        bundles: (0..SETS.len()).map(|_| OnceLock::new()).collect(),
        world: OnceLock::new(),
    };

    let mut map = c.benchmark_group("authz/map");
    for case in CASES {
        let view = case.view();
        let mapper = FhirMapper::new(vec!["https://ehr.example/fhir".into()]);
        map.bench_function(case.name, |b| {
            b.iter(|| black_box(mapper.map(black_box(&view))))
        });
    }
    map.finish();

    let mut decide = c.benchmark_group("authz/decide");
    for i in 0..SETS.len() {
        for case in CASES {
            decide.bench_function(BenchmarkId::new(case.name, label(i)), |b| {
                let (world, bundle) = (lazy.world(), lazy.bundle(i));
                b.iter(|| black_box(world.decide(bundle, case, false)))
            });
        }
    }
    decide.finish();

    let mut memo = c.benchmark_group("authz/decide_memo");
    for case in CASES {
        memo.bench_function(BenchmarkId::new(case.name, label(0)), |b| {
            let (world, bundle) = (lazy.world(), lazy.bundle(0));
            b.iter(|| black_box(world.decide(bundle, case, true)))
        });
    }
    memo.finish();

    // The percentile pass only in a real benchmark run (not when listing,
    // testing or profiling).
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--list" || a == "--test" || a == "--profile-time");
    if !measuring {
        return;
    }
    println!("\nPer-decision latency, {PATIENTS} patients / {TEAMS} care teams loaded:");
    println!("  cold = map + slice + Cedar evaluation every time; memo = phigate's decision memo, repeated decision");
    let world = lazy.world();
    for i in 0..SETS.len() {
        let bundle = lazy.bundle(i);
        for case in CASES {
            let (p50, p99) = percentiles(world, bundle, case, false);
            let (m50, m99) = percentiles(world, bundle, case, true);
            println!(
                "  {:<24} {:<16} cold p50 {p50:>7.2} µs  p99 {p99:>7.2} µs   memo p50 {m50:>5.2} µs  p99 {m99:>5.2} µs",
                label(i),
                case.name
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
