//! `phigate demo`: the synthetic upstream and phigate in front of it, in one
//! process on loopback, with a certificate generated for the run.

use super::data::DemoData;
use crate::config::Config;
use crate::server::tls::SelfSigned;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The embedded demo configuration template.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Address of phigate's TLS listener (loopback only).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Address of the admin plane (metrics, health).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
    /// Seed for the synthetic data; the same seed gives the same data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Number of synthetic patients.
    #[arg(long, default_value_t = 200)]
    pub patients: usize,
    /// Write the synthetic data as FHIR JSON files into DIR and exit.
    #[arg(long, value_name = "DIR")]
    pub write_fixtures: Option<PathBuf>,
    /// Run only the synthetic FHIR upstream on this address (no proxy).
    #[arg(long, value_name = "ADDR")]
    pub upstream_only: Option<SocketAddr>,
    /// Directory for the generated certificate and config (default: a new
    /// directory under the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Runs the demo until the process is stopped.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let data = Arc::new(DemoData::generate(args.seed, args.patients));
    if let Some(dir) = &args.write_fixtures {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let n = data
            .write_fixtures(dir)
            .with_context(|| format!("writing fixtures to {}", dir.display()))?;
        println!("wrote {n} FHIR resources to {}", dir.display());
        return Ok(());
    }
    crate::server::init_logging();
    if let Some(addr) = args.upstream_only {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("binding the demo upstream to {addr}"))?;
        println!(
            "synthetic FHIR upstream on http://{}/fhir",
            listener.local_addr()?
        );
        return run_upstream(listener, data);
    }
    for (what, addr) in [("--listen", args.listen), ("--admin", args.admin)] {
        if !addr.ip().is_loopback() {
            bail!("{what} {addr}: the demo serves synthetic data on loopback only");
        }
    }
    let upstream =
        std::net::TcpListener::bind("127.0.0.1:0").context("binding the demo upstream")?;
    let upstream_addr = upstream.local_addr()?;
    let data_for_entities = data.clone();
    std::thread::Builder::new()
        .name("demo-upstream".into())
        .spawn(move || {
            if let Err(e) = run_upstream(upstream, data) {
                eprintln!("phigate demo: upstream stopped: {e:#}");
            }
        })?;

    let issuer = super::issuer::DemoIssuer::start().context("starting the demo issuer")?;
    let api_key = crate::authn::apikey::generate();

    let dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("phigate-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (cert, key) = SelfSigned::generate(&["localhost", "127.0.0.1", "::1"])?
        .write(&dir)
        .context("writing the demo certificate")?;
    let entities = dir.join("entities.json");
    std::fs::write(
        &entities,
        super::entities::cedar_entities(&data_for_entities, jiff::Timestamp::now()).to_string(),
    )
    .context("writing the demo entities")?;
    // Beside the entities file, where the config names it.
    let pseudonym_key: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    crate::server::tls::write_private(
        &entities.with_file_name("pseudonym.key"),
        pseudonym_key.as_bytes(),
    )
    .context("writing the demo pseudonym key")?;
    // The audit spool's checkpoint key: kept with the spool, so a demo
    // restarted on the same state directory continues one verifiable log.
    let audit_key = dir.join("audit.key");
    if !audit_key.exists() {
        let signer = crate::audit::checkpoint::NoteSigner::generate("phigate.demo/audit")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::server::tls::write_private(&audit_key, signer.private_text().as_bytes())
            .context("writing the demo audit key")?;
    }
    let audit_pub =
        crate::audit::trail::signing_key_file(&audit_key).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config_path = dir.join("phigate-demo.toml");
    let text = render_config(
        &args,
        upstream_addr,
        &cert,
        &key,
        &issuer.issuer,
        (&api_key.key_id, &api_key.hash),
        &entities,
    );
    std::fs::write(&config_path, &text)?;
    let config = Config::from_toml(&text, &config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let server = crate::server::build(&config)?;
    let tokens = write_tokens(&dir, &issuer, &api_key.key)?;
    print_banner(&args, &cert, &config_path, &tokens);
    print_audit_help(&dir, &audit_pub);
    // The same request as three personas, once the proxy answers.
    let columns = ["CARE_MANAGER", "BILLING", "RESEARCHER"]
        .iter()
        .filter_map(|var| {
            let p = super::issuer::personas()
                .into_iter()
                .find(|p| p.var == *var)?;
            let token = issuer.token(&p, 600)?;
            // Research sees de-identified records through searches only.
            let (label, path) = match *var {
                "CARE_MANAGER" => ("care manager", "/fhir/Patient/pat-0001"),
                "BILLING" => ("billing", "/fhir/Patient/pat-0001"),
                _ => ("researcher", "/fhir/Patient?_count=1"),
            };
            Some(super::side_by_side::Column { label, token, path })
        })
        .collect();
    super::side_by_side::spawn(
        args.listen,
        cert.clone(),
        "the researcher's from GET /fhir/Patient?_count=1, the others' from GET /fhir/Patient/pat-0001",
        columns,
    );
    server.run(crate::server::stop_signal())?;
    Ok(())
}

fn run_upstream(listener: std::net::TcpListener, data: Arc<DemoData>) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        super::fhir::serve(listener, data, crate::server::stop_signal()).await
    })?;
    Ok(())
}

/// Fills the embedded template. `api_key` is (key id, salted hash).
pub fn render_config(
    args: &DemoArgs,
    upstream: SocketAddr,
    cert: &Path,
    key: &Path,
    issuer: &str,
    api_key: (&str, &str),
    entities: &Path,
) -> String {
    DEMO_CONFIG
        .replace("{listen}", &args.listen.to_string())
        .replace("{admin}", &args.admin.to_string())
        .replace("{cert}", &cert.display().to_string())
        .replace("{key}", &key.display().to_string())
        .replace("{upstream}", &upstream.to_string())
        .replace("{issuer}", issuer)
        .replace("{api_key_id}", api_key.0)
        .replace("{api_key_hash}", api_key.1)
        .replace("{entities}", &entities.display().to_string())
        .replace(
            "{pseudonym_key}",
            &entities
                .with_file_name("pseudonym.key")
                .display()
                .to_string(),
        )
        .replace(
            "{audit_dir}",
            &entities.with_file_name("audit").display().to_string(),
        )
        .replace(
            "{audit_key}",
            &entities.with_file_name("audit.key").display().to_string(),
        )
}

/// Mints a token per persona and writes them, with the device gateway's
/// key, as shell exports to `DIR/tokens.env` (owner-only). Returns its path.
fn write_tokens(
    dir: &Path,
    issuer: &super::issuer::DemoIssuer,
    api_key: &str,
) -> anyhow::Result<PathBuf> {
    use std::fmt::Write as _;
    let mut out = String::from("# phigate demo credentials for synthetic personas (valid 12 h)\n");
    for p in super::issuer::personas() {
        let token = issuer
            .token(&p, 12 * 3600)
            .context("signing a demo token")?;
        let _ = writeln!(out, "# {}\nexport {}_TOKEN={token}", p.description, p.var);
    }
    let _ = writeln!(
        out,
        "# remote-monitoring device gateway (API key)\nexport DEVICE_GATEWAY_KEY={api_key}"
    );
    let path = dir.join("tokens.env");
    crate::server::tls::write_private(&path, out.as_bytes())?;
    Ok(path)
}

fn print_banner(args: &DemoArgs, cert: &Path, config: &Path, tokens: &Path) {
    let base = format!("https://localhost:{}", args.listen.port());
    let ca = cert.display();
    let personas: Vec<String> = super::issuer::personas()
        .iter()
        .map(|p| {
            format!(
                "  ${}_TOKEN{:>width$}{}",
                p.var,
                "",
                p.description,
                width = 14 - p.var.len()
            )
        })
        .collect();
    println!(
        r#"phigate demo is running (synthetic data: {patients} patients, seed {seed})

  proxy (TLS)   {base}/fhir            -> synthetic CCM/FHIR R4 upstream
  admin plane   http://{admin}/metrics  /healthz  /readyz
  certificate   {ca}  (generated for this run)
  config        {config}
  credentials   {tokens}

Personas (synthetic; tokens from the demo's own issuer, valid 12 h):
{personas}
  $DEVICE_GATEWAY_KEY     remote-monitoring device gateway (API key)

Try:
  source {tokens}
  curl --cacert {ca} -H "Authorization: Bearer $CARE_MANAGER_TOKEN" {base}/fhir/Patient/pat-0001
  curl --cacert {ca} -H "Authorization: Bearer $PHYSICIAN_TOKEN" '{base}/fhir/Observation?patient=Patient/pat-0001&_count=5'
  curl --cacert {ca} -i -H "Authorization: Bearer $BILLING_TOKEN" '{base}/fhir/Observation?patient=pat-0001'   # 403: not billing data
  curl --cacert {ca} -i -H "Authorization: Bearer $SUPPORT_TOKEN" -H 'X-Phigate-Ticket: INC-1001' {base}/fhir/Patient/pat-0003   # 401: the elevation needs MFA
  curl --cacert {ca} -i -H "Authorization: Bearer $PHYSICIAN_TOKEN" -H 'X-Phigate-Purpose-Of-Use: ETREAT' -H 'X-Phigate-Break-Glass: chest pain in the ED' {base}/fhir/Patient/pat-0002   # break-glass
  curl --cacert {ca} -i {base}/fhir/Patient/pat-0001                        # no credentials: 401
  curl --cacert {ca} {base}/fhir/metadata                                   # public
  curl --cacert {ca} -i {base}/fhir/Patient/..%2F..%2Fadmin                 # ambiguous path: 400
  curl --cacert {ca} {base}/.phigate/jwks.json                              # keys for X-Phigate-Assertion
  curl -s http://{admin}/metrics | grep ^phigate_

Stop with Ctrl-C."#,
        patients = args.patients,
        seed = args.seed,
        admin = args.admin,
        config = config.display(),
        tokens = tokens.display(),
        personas = personas.join("\n"),
    );
}

/// How to follow, verify and account for the demo's audit trail.
fn print_audit_help(dir: &Path, pubkey: &str) {
    let spool = dir.join("audit");
    let spool = spool.display();
    println!(
        r#"
Audit trail (every access, recorded before its response leaves):
  phigate audit tail --dir {spool}
  phigate audit verify {spool} --pubkey '{pubkey}' --checkpoint {spool}/checkpoint
  phigate audit disclosures --dir {spool} --patient pat-0001
  phigate audit search --dir {spool} --outcome denied
  shipped as OCSF JSON lines to {spool}/audit.ocsf.jsonl"#
    );
}
