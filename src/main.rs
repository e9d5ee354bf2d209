//! The `phigate` command: serve, check, demo.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use phigate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: about 10% more throughput than glibc malloc on the proxy path
/// (benches/RESULTS.md), from fewer, cheaper allocations per request.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "phigate",
    version,
    about = "A reverse proxy that brokers every access to protected health information"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a config file.
    Serve {
        /// Path to phigate.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and the files it references; exit 0 if valid.
    Check {
        /// Path to phigate.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run phigate in front of a synthetic CCM/FHIR system, all on loopback.
    Demo(phigate::demo::DemoArgs),
    /// Generate credentials.
    #[command(subcommand)]
    Keygen(Keygen),
    /// Validate, test and explain Cedar policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Redact a response body offline: what a person would receive. The
    /// redacted body goes to stdout; with --explain, the plan and every
    /// record's decision go to stderr.
    Redact(RedactArgs),
    /// Read the audit trail: verify it, account for a patient's
    /// disclosures, search it, follow it.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// DEVELOPMENT ONLY: a token issuer on loopback for trying a config
    /// before the real IdP is wired in. Serves discovery and keys, and
    /// signs any claims POSTed to /token. Never trust it for real patients.
    DevIssuer {
        /// Where to listen; loopback addresses only.
        #[arg(long, default_value = "127.0.0.1:8400")]
        listen: std::net::SocketAddr,
        /// Keep the signing key in this file (created, owner-only, if it
        /// does not exist) so tokens survive a restart. Default: a new key
        /// each run.
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

/// Where a spool is: `--dir`, or the `[audit] dir` of `--config`.
#[derive(clap::Args)]
struct SpoolArg {
    /// The spool directory (`[audit] dir`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A phigate.toml whose [audit] dir to read.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the spool's hash chain, checksums and signed checkpoints;
    /// names every modified, missing, reordered or damaged record by
    /// sequence number. Exit 0 only when all holds.
    Verify {
        /// The spool directory.
        dir: PathBuf,
        /// The checkpoint verifier key (`phigate keygen audit` prints it),
        /// as text or a file holding it.
        #[arg(long)]
        pubkey: Option<String>,
        /// A signed checkpoint kept elsewhere (e.g. by the SIEM): the spool
        /// must still hold every record it covers, unchanged.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The origin the checkpoints must name (default: they must all
        /// name the same one).
        #[arg(long)]
        origin: Option<String>,
        /// With --pubkey: the most records in a row without a signed
        /// checkpoint before it is a finding (checkpoints removed).
        #[arg(long, default_value_t = phigate::audit::verify::MAX_UNSIGNED)]
        max_unsigned: u64,
    },
    /// The accounting of disclosures of one patient's PHI (45 CFR
    /// 164.528): date, recipient, description, purpose.
    Disclosures {
        #[command(flatten)]
        spool: SpoolArg,
        #[arg(long)]
        patient: String,
        /// From this date (YYYY-MM-DD, UTC) or instant (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Up to (not including) this date or instant.
        #[arg(long)]
        to: Option<String>,
        /// `table`, `csv` or `json`.
        #[arg(long, default_value = "table")]
        format: String,
        /// Keep disclosures for treatment, payment and operations too.
        #[arg(long)]
        all: bool,
    },
    /// Events by user, patient, time, decision and outcome.
    Search {
        #[command(flatten)]
        spool: SpoolArg,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        patient: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// `allow` or `deny`.
        #[arg(long)]
        decision: Option<String>,
        /// An outcome name, e.g. `denied`, `redaction_failed`.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
        /// Print each event's canonical JSON.
        #[arg(long)]
        json: bool,
    },
    /// The last events, then each new one as it is written.
    Tail {
        #[command(flatten)]
        spool: SpoolArg,
        /// How many past events to show first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Print and exit instead of following.
        #[arg(long)]
        no_follow: bool,
    },
}

#[derive(clap::Args)]
struct RedactArgs {
    /// Policy directory (default: the example set compiled into phigate).
    #[arg(long)]
    policies: Option<PathBuf>,
    #[arg(long)]
    entities: Option<PathBuf>,
    /// The principal's claims as JSON (see `policy explain`).
    #[arg(long, conflicts_with = "token")]
    claims: Option<String>,
    /// An access token; its claims are read WITHOUT verifying it.
    #[arg(long)]
    token: Option<String>,
    /// A declaration header, e.g. 'X-Phigate-Purpose-Of-Use: HRESCH'.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// A plan by hand instead of the policies: withhold these classes
    /// (comma-separated); every record is shown.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["claims", "token"])]
    withhold: Vec<String>,
    /// The data-classes.toml for --withhold (default: the policy
    /// directory's, else the example classes).
    #[arg(long)]
    classes: Option<PathBuf>,
    /// A legacy JSON document (classes by JSON path), not FHIR.
    #[arg(long)]
    json_paths: bool,
    /// For --json-paths: the resource type the classes are decided on (a
    /// template's `resource_type`).
    #[arg(long, default_value = "")]
    resource_type: String,
    /// The redaction key for keyed masks (a file, as `pseudonym_key`).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Print the plan and every record's decision to stderr.
    #[arg(long)]
    explain: bool,
    /// The response body to redact.
    file: PathBuf,
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policies against the schema (and an entities file); exit
    /// non-zero on any problem, naming file, line and policy.
    Validate {
        /// Policy directory (phigate.cedarschema, *.cedar). Default: the
        /// example set compiled into phigate.
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Cedar JSON entities file to validate too.
        #[arg(long)]
        entities: Option<PathBuf>,
    },
    /// Run policy tests (YAML suites, or the Cedar CLI's run-tests JSON);
    /// exit non-zero if any fails.
    Test {
        #[arg(long)]
        policies: Option<PathBuf>,
        /// A phigate.toml: its policies (unless --policies), data
        /// categories and entities, and its routes for suites with
        /// `mapping: routes`, exactly as `serve` runs them.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Suites to run. Default: the policy directory's tests/.
        files: Vec<PathBuf>,
    },
    /// Print the Cedar schema phigate decides with (the entity types,
    /// actions and context every policy is validated against).
    Schema,
    /// Start a policy directory: the schema, the data classes, the example
    /// CCM policies with their tests, and an example entities file. Refuses
    /// a directory that is not empty (nothing is overwritten).
    Init {
        /// The directory to create.
        dir: PathBuf,
    },
    /// Show how a request maps, which entities it uses, the decision and
    /// the policies that determined it.
    Explain {
        #[arg(long)]
        policies: Option<PathBuf>,
        #[arg(long)]
        entities: Option<PathBuf>,
        /// A phigate.toml: its [authorization] and the route serving the
        /// path are used (instead of --policies/--entities/--fhir-base).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The FHIR base path requests are relative to. Default "/fhir".
        #[arg(long, default_value = "/fhir")]
        fhir_base: String,
        /// The principal's claims as JSON, e.g.
        /// '{"sub":"alice","roles":["nurse"],"care_teams":["team-01"],"amr":["otp"]}'
        /// (add "kind":"service" for a service account).
        #[arg(long, conflicts_with = "token")]
        claims: Option<String>,
        /// An access token; its claims are read WITHOUT verifying it.
        #[arg(long)]
        token: Option<String>,
        /// A declaration header, e.g. 'X-Phigate-Break-Glass: reason' (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// A file with the request body (FHIR create/update/batch).
        #[arg(long)]
        body: Option<PathBuf>,
        /// An upstream answer to the request: shows every record's decision
        /// and the classes withheld, as the response phase would.
        #[arg(long)]
        response: Option<PathBuf>,
        /// The redaction key for keyed masks (a file, as `pseudonym_key`).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Exit 0 when the request is allowed, 1 when it is denied (or
        /// needs a step-up), 2 when it cannot be explained: for scripts.
        #[arg(long)]
        exit_code: bool,
        /// HTTP method.
        method: String,
        /// Path and query, e.g. '/fhir/Observation?patient=pat-0001'.
        target: String,
    },
}

#[derive(Subcommand)]
enum Keygen {
    /// A new API key for a service: prints the key once, and the
    /// `[[api_keys]]` entry (salted hash only) for phigate.toml.
    ApiKey {
        /// The service principal's id, e.g. `rpm-gateway`.
        #[arg(long)]
        id: String,
        /// Roles of the service principal (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// A key that signs audit checkpoints: writes the private key to --out
    /// (mode 0600, never overwritten) and prints the public verifier key;
    /// with --key, prints an existing key's verifier key.
    Audit {
        /// The key's name: use the log's origin, e.g. `phigate.example.org/audit`.
        #[arg(long, default_value = "phigate/audit")]
        name: String,
        /// Where to write the new private key.
        #[arg(long, conflicts_with = "key")]
        out: Option<PathBuf>,
        /// An existing private key file.
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("phigate: refusing to start with an invalid config");
                    return ExitCode::FAILURE;
                }
            };
            phigate::server::init_logging();
            match phigate::server::build(&config) {
                Ok(server) => server.run_forever(),
                Err(e) => {
                    eprintln!("phigate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config: path } => match Config::load(&path) {
            // The config is well-formed; now build what `serve` would build
            // (policies loaded and tested, keys, pools, TLS), without sockets.
            Ok(c) => match phigate::server::prepare(&c, None) {
                Ok(prepared) => {
                    for w in prepared.warnings(&c) {
                        eprintln!("warning: {w}");
                    }
                    println!(
                        "{}: ok ({} listener(s), {} route(s), {} upstream(s)); policy set {}",
                        path.display(),
                        c.listeners.len(),
                        c.routes.len(),
                        c.upstreams.len(),
                        prepared.policy_version()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {}", path.display(), e);
                    eprintln!("{}: 1 problem(s) found", path.display());
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{}: {} problem(s) found", path.display(), e.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Keygen(Keygen::Audit { name, out, key }) => {
            match phigate::audit::cli::keygen(&name, out.as_deref(), key.as_deref()) {
                Ok(public) => {
                    if let Some(out) = &out {
                        eprintln!(
                            "wrote the private key to {} (mode 0600); point [audit] signing_key = \"file:{}\" at it",
                            out.display(),
                            out.display()
                        );
                        eprintln!("the public verifier key (for `phigate audit verify --pubkey` and your SIEM):");
                    }
                    println!("{public}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("phigate keygen audit: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit(cmd) => audit_command(cmd),
        Command::DevIssuer { listen, key } => match dev_issuer(listen, key.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("phigate dev-issuer: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Keygen(Keygen::ApiKey { id, roles }) => {
            if id.is_empty() || id.chars().any(|c| c.is_control() || c == '"') {
                eprintln!("phigate keygen: --id must be a plain name");
                return ExitCode::FAILURE;
            }
            let k = phigate::authn::apikey::generate();
            let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
            eprintln!(
                "API key for {id} (shown once; give it to the service, store it as a secret):"
            );
            println!("{}", k.key);
            eprintln!();
            eprintln!("Add to phigate.toml:");
            eprintln!(
                "[[api_keys]]\nid = {id:?}\nkey_id = {:?}\nhash = {:?}\nroles = [{}]",
                k.key_id,
                k.hash,
                roles.join(", ")
            );
            ExitCode::SUCCESS
        }
        Command::Policy(cmd) => policy(cmd),
        Command::Redact(args) => redact(args),
        Command::Demo(args) => match phigate::demo::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("phigate demo: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn policy(cmd: PolicyCommand) -> ExitCode {
    use phigate::authz::cli;
    let finish = |(out, ok): (String, bool)| {
        if ok {
            print!("{out}");
            ExitCode::SUCCESS
        } else {
            eprint!("{out}");
            ExitCode::FAILURE
        }
    };
    match cmd {
        PolicyCommand::Schema => {
            print!("{}", phigate::authz::store::EMBEDDED[0].1);
            ExitCode::SUCCESS
        }
        PolicyCommand::Init { dir } => match cli::init(&dir) {
            Ok(files) => {
                println!("wrote {} files to {}", files.len(), dir.display());
                println!("next:");
                println!(
                    "  phigate policy validate --policies {0} --entities {0}/entities.json",
                    dir.display()
                );
                println!("  phigate policy test --policies {}", dir.display());
                println!("  and in phigate.toml: [authorization] policies = \"{0}\", entities = \"{0}/entities.json\"", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("phigate policy init: {e}");
                ExitCode::FAILURE
            }
        },
        PolicyCommand::Validate { policies, entities } => {
            finish(cli::validate(policies.as_deref(), entities.as_deref()))
        }
        PolicyCommand::Test {
            policies,
            config,
            files,
        } => {
            let config = match config.as_deref().map(Config::load).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            finish(cli::test(policies.as_deref(), &files, config.as_ref()))
        }
        PolicyCommand::Explain {
            policies,
            entities,
            config,
            fhir_base,
            claims,
            token,
            headers,
            body,
            response,
            key_file,
            json,
            exit_code,
            method,
            target,
        } => {
            let fail = |m: String| {
                eprintln!("phigate policy explain: {m}");
                if exit_code {
                    ExitCode::from(2)
                } else {
                    ExitCode::FAILURE
                }
            };
            // With --exit-code, the decision is the status.
            let status = |e: &cli::Explanation| {
                let allowed = e.decision.as_ref().is_some_and(|d| d.allowed);
                if exit_code && !allowed {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            };
            let claims = match (claims, token) {
                (Some(c), _) => match serde_json::from_str(&c) {
                    Ok(v) => v,
                    Err(e) => return fail(format!("--claims: {e}")),
                },
                (None, Some(t)) => match cli::unverified_claims(&t) {
                    Ok(v) => v,
                    Err(e) => return fail(format!("--token: {e}")),
                },
                (None, None) => return fail("give --claims or --token".into()),
            };
            let headers: Vec<(String, String)> = headers
                .iter()
                .filter_map(|h| h.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            let body = match body.map(std::fs::read).transpose() {
                Ok(b) => b,
                Err(e) => return fail(format!("--body: {e}")),
            };
            let (mut policies, mut entities) = (policies, entities);
            let (route, prefix) = match &config {
                Some(path) => {
                    let config = match Config::load(path) {
                        Ok(c) => c,
                        Err(e) => return fail(e.to_string()),
                    };
                    policies = policies.or(config.authorization.policies.clone());
                    entities = entities.or(config.authorization.entities.clone());
                    // The route serving the request, chosen as `serve`
                    // chooses it: by Host (`-H 'Host: …'`) and longest prefix.
                    let host = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
                        .map(|(_, v)| v.as_bytes());
                    let host = match phigate::proxy::request_host(host) {
                        Ok(h) => h,
                        Err(_) => return fail("the Host header is not a valid host".into()),
                    };
                    let host = host.as_deref();
                    let normalized = match phigate::authz::routed::normalize_target(&target) {
                        Ok(p) => p,
                        Err(e) => return fail(e),
                    };
                    let path_only = normalized.path();
                    let router = phigate::proxy::Router::new(
                        config
                            .routes
                            .iter()
                            .map(|r| (r.hosts.clone(), r.path_prefix.clone(), r)),
                    );
                    match router.route(host, &phigate::proxy::routing_view(path_only)) {
                        Some(r) if r.auth.kind == phigate::config::AuthKind::Public => {
                            return fail(format!(
                                "route `{}` serving {path_only} is public: nothing there is decided",
                                r.name
                            ))
                        }
                        Some(r) => (r.authorization.clone(), r.path_prefix.clone()),
                        None => {
                            return fail(format!(
                                "no route in {} serves {path_only}{}",
                                path.display(),
                                if host.is_none() { " (give -H 'Host: …' for routes with hosts)" } else { "" }
                            ))
                        }
                    }
                }
                None => (
                    phigate::authz::RouteAuthzConfig {
                        mapping: phigate::authz::config::MappingKind::Fhir,
                        ..Default::default()
                    },
                    fhir_base,
                ),
            };
            let response = match response.map(std::fs::read).transpose() {
                Ok(r) => r,
                Err(e) => return fail(format!("--response: {e}")),
            };
            let key = match key_file.as_deref().map(read_key).transpose() {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            let args = cli::ExplainArgs {
                policies: policies.as_deref(),
                entities: entities.as_deref(),
                // With a config: exactly its entities, as `serve` has them.
                exact_entities: config.is_some(),
                method: &method,
                target: &target,
                claims,
                headers,
                body,
                route,
                route_prefix: prefix,
                response,
                key,
            };
            match cli::explain(&args) {
                Ok(e) if json => {
                    println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
                    status(&e)
                }
                Ok(e) => {
                    print!("{}", cli::render(&e));
                    status(&e)
                }
                Err(e) => fail(e),
            }
        }
    }
}

/// Runs the development issuer until interrupted.
fn dev_issuer(listen: std::net::SocketAddr, key: Option<&std::path::Path>) -> anyhow::Result<()> {
    use phigate::demo::issuer;
    let key = match key {
        Some(path) => issuer::load_or_create_key(path)?,
        None => phigate::authn::assertion::SigningKey::generate()?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (issuer, listener) = issuer::DemoIssuer::bind(listen, key).await?;
        let url = &issuer.issuer;
        println!("phigate dev-issuer: DEVELOPMENT ONLY. It signs a token for anyone on this host who asks; never point a config for real patients at it.");
        println!();
        println!("issuer  {url}");
        println!();
        println!("In phigate.toml:");
        println!("[[identity_providers]]");
        println!("name = \"dev\"");
        println!("issuer = \"{url}\"");
        println!("audiences = [\"{}\"]", issuer::DEFAULT_AUDIENCE);
        println!("dangerous_allow_http = true   # loopback only; a real IdP is https");
        println!();
        println!("A token for the claims you give (?ttl=SECONDS, default 3600; format=jwt prints the token alone):");
        println!("TOKEN=$(curl -s -X POST '{url}/token?format=jwt' -d '{{\"sub\":\"alice\",\"roles\":[\"nurse\"],\"care_teams\":[\"team-01\"],\"amr\":[\"pwd\",\"otp\"]}}')");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = issuer.clone().serve(listener) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// A redaction key file, as `pseudonym_key = "file:…"` reads it.
fn read_key(path: &std::path::Path) -> Result<std::sync::Arc<[u8]>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = text.trim_end_matches(['\n', '\r']);
    if key.len() < 32 {
        return Err(format!("{}: a key has at least 32 bytes", path.display()));
    }
    Ok(std::sync::Arc::from(key.as_bytes()))
}

fn redact(a: RedactArgs) -> ExitCode {
    use phigate::redact::body::BodyKind;
    use phigate::redact::offline::{self, Decider, OfflineJudge};
    let fail = |m: String| {
        eprintln!("phigate redact: {m}");
        ExitCode::FAILURE
    };
    let input = match std::fs::read(&a.file) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", a.file.display())),
    };
    let key = match a.key_file.as_deref().map(read_key).transpose() {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let kind = if a.json_paths {
        BodyKind::Json
    } else {
        BodyKind::Fhir
    };
    let headers: Vec<(String, String)> = a
        .headers
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    // Either the policies decide, or a plan given by hand.
    let claims = match (&a.claims, &a.token) {
        (Some(c), _) => match serde_json::from_str(c) {
            Ok(v) => Some(v),
            Err(e) => return fail(format!("--claims: {e}")),
        },
        (None, Some(t)) => match phigate::authz::cli::unverified_claims(t) {
            Ok(v) => Some(v),
            Err(e) => return fail(format!("--token: {e}")),
        },
        (None, None) => None,
    };
    let classes;
    let off;
    let mut judge: OfflineJudge<'_> = match claims {
        Some(claims) => {
            off = match phigate::authz::cli::Offline::load(
                a.policies.as_deref(),
                a.entities.as_deref(),
                &claims,
                &headers,
            ) {
                Ok(o) => o,
                Err(e) => return fail(e),
            };
            off.judge()
        }
        None if a.withhold.is_empty() => {
            return fail(
                "give --claims or --token (the policies decide), or --withhold (a plan)".into(),
            )
        }
        None => {
            let text = match (&a.classes, &a.policies) {
                (Some(p), _) => std::fs::read_to_string(p),
                (None, Some(dir)) => {
                    std::fs::read_to_string(dir.join(phigate::redact::classes::CLASSES_FILE))
                }
                (None, None) => Ok(phigate::redact::classes::EXAMPLE.to_string()),
            };
            let text = match text {
                Ok(t) => t,
                Err(e) => return fail(format!("data classes: {e}")),
            };
            classes = match phigate::redact::classes::DataClasses::parse(&text) {
                Ok(c) => c,
                Err(problems) => return fail(problems.join("; ")),
            };
            for w in &a.withhold {
                if classes.get(w).is_none() {
                    return fail(format!("--withhold: no data class `{w}`"));
                }
            }
            OfflineJudge::new(Decider::Plan {
                classes: &classes,
                withheld: a.withhold.clone(),
            })
        }
    };
    let result = offline::redact(&mut judge, kind, &a.resource_type, key, &input);
    let redacted = match result {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "the body cannot be redacted ({e}); the proxy would refuse or cut it"
            ))
        }
    };
    if a.explain {
        eprint!("{}", offline::render(&judge, Some(&redacted)));
    }
    match &redacted.body {
        Some(body) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(body);
            let _ = out.write_all(b"\n");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("phigate redact: the record is withheld (the client would get 404 or 403)");
            ExitCode::from(3)
        }
    }
}

fn audit_command(cmd: AuditCommand) -> ExitCode {
    use phigate::audit::cli;
    use phigate::audit::report::{Filter, Window};
    let window = |from: Option<String>, to: Option<String>, all: bool| -> Result<Window, String> {
        Ok(Window {
            from: from.as_deref().map(cli::parse_time).transpose()?,
            to: to.as_deref().map(cli::parse_time).transpose()?,
            include_all: all,
        })
    };
    let result = match cmd {
        AuditCommand::Verify {
            dir,
            pubkey,
            checkpoint,
            origin,
            max_unsigned,
        } => cli::verify_cmd(
            &dir,
            pubkey.as_deref(),
            checkpoint.as_deref(),
            origin.as_deref(),
            max_unsigned,
        )
        .map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        AuditCommand::Disclosures {
            spool,
            patient,
            from,
            to,
            format,
            all,
        } => cli::spool_dir(spool.dir, spool.config.as_deref()).and_then(|dir| {
            let w = window(from, to, all)?;
            cli::disclosures_cmd(&dir, &patient, &w, &format).map(|()| ExitCode::SUCCESS)
        }),
        AuditCommand::Search {
            spool,
            user,
            patient,
            from,
            to,
            decision,
            outcome,
            request_id,
            json,
        } => cli::spool_dir(spool.dir, spool.config.as_deref()).and_then(|dir| {
            let filter = Filter {
                user,
                patient,
                window: window(from, to, false)?,
                decision,
                outcome,
                request_id,
            };
            cli::search_cmd(&dir, &filter, json).map(|_| ExitCode::SUCCESS)
        }),
        AuditCommand::Tail {
            spool,
            lines,
            no_follow,
        } => cli::spool_dir(spool.dir, spool.config.as_deref())
            .and_then(|dir| cli::tail_cmd(&dir, lines, !no_follow).map(|()| ExitCode::SUCCESS)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("phigate audit: {e}");
        ExitCode::from(2)
    })
}
