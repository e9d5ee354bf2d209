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
            Ok(c) => {
                println!(
                    "{}: ok ({} listener(s), {} route(s), {} upstream(s))",
                    path.display(),
                    c.listeners.len(),
                    c.routes.len(),
                    c.upstreams.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{}: {} problem(s) found", path.display(), e.0.len());
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
        Command::Demo(args) => match phigate::demo::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("phigate demo: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
