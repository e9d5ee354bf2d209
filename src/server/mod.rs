//! Process wiring: the Pingora server, rustls listeners, the admin plane,
//! certificate reload, health checks, and graceful shutdown.
//!
//! Everything here is assembly; the request logic lives in `proxy` and the
//! stages it calls.

pub mod admin;
pub mod tls;

use crate::authn::mtls::ClientCertIdentity;
use crate::config::{Config, ListenerConfig};
use crate::metrics::metrics;
use crate::proxy::{Phigate, Pool};
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{TlsAccept, TlsAcceptCallbacks};
use pingora::protocols::tls::TlsRef;
use pingora::protocols::ALPN;
use pingora::proxy::ProxyServiceBuilder;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tls::{ReloadOutcome, ReloadingCert};

/// Why the server could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Pool(#[from] crate::proxy::PoolError),
    #[error(transparent)]
    Authn(#[from] crate::authn::SetupError),
    #[error("authorization: {0}")]
    Authz(String),
    #[error("listener {address}: {source}")]
    Tls {
        address: String,
        source: tls::TlsMaterialError,
    },
    #[error("admin listener {address}: {source}")]
    Admin {
        address: String,
        source: std::io::Error,
    },
}

/// After each handshake: count it by protocol version, and name the client
/// certificate (already verified against `client_ca` by rustls) for the
/// authentication stage.
struct HandshakeObserver;

#[async_trait]
impl TlsAccept for HandshakeObserver {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let version = tls.version().unwrap_or("unknown");
        metrics().tls_handshakes.with_label_values(&[version]).inc();
        let der = tls.peer_certificate_der()?;
        ClientCertIdentity::from_der(der).map(|id| Arc::new(id) as Arc<dyn Any + Send + Sync>)
    }
}

/// A rustls verifier for client certificates signed by `ca`.
fn client_verifier(
    tls: &crate::config::TlsConfig,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, tls::TlsMaterialError> {
    let Some(ca) = &tls.client_ca else {
        return Ok(None);
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::load_ca_bundle(ca)? {
        roots.add(c).map_err(|e| tls::TlsMaterialError::BadCa {
            path: ca.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match tls.client_auth {
        crate::config::ClientAuth::Optional => builder.allow_unauthenticated(),
        crate::config::ClientAuth::Required => builder,
    };
    builder
        .build()
        .map(Some)
        .map_err(|e| tls::TlsMaterialError::BadCa {
            path: ca.display().to_string(),
            reason: e.to_string(),
        })
}

/// Polls listener certificates for changes.
struct CertReloader {
    certs: Vec<(Arc<ReloadingCert>, Duration)>,
}

#[async_trait]
impl BackgroundService for CertReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(interval) = self.certs.iter().map(|(_, d)| *d).min() else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            for (cert, _) in &self.certs {
                match cert.check() {
                    ReloadOutcome::Unchanged => {}
                    ReloadOutcome::Reloaded => {
                        metrics()
                            .cert_reloads
                            .with_label_values(&["reloaded"])
                            .inc();
                        tracing::info!(cert = %cert.cert_path().display(), "listener certificate reloaded");
                    }
                    ReloadOutcome::Rejected(why) => {
                        metrics()
                            .cert_reloads
                            .with_label_values(&["rejected"])
                            .inc();
                        tracing::error!(cert = %cert.cert_path().display(), error = %why, "new listener certificate refused; still serving the previous one");
                    }
                }
            }
        }
    }
}

/// Reloads policies and entities when their files change and on SIGHUP.
struct PolicyReloader {
    authz: Arc<crate::authz::Authorization>,
    interval: Duration,
}

#[async_trait]
impl BackgroundService for PolicyReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; policy reload by signal is off");
                None
            }
        };
        let watching = self.authz.watches_files() && !self.interval.is_zero();
        let tick = if watching {
            self.interval
        } else {
            Duration::from_secs(3600)
        };
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => return,
                _ = async {
                    match hangup.as_mut() {
                        Some(h) => { h.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => "sighup",
                _ = tokio::time::sleep(tick) => "watch",
            };
            if trigger == "watch" && !(watching && self.authz.changed_on_disk()) {
                continue;
            }
            let authz = self.authz.clone();
            // Loading runs the policy tests: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || authz.reload(trigger)).await;
        }
    }
}

/// Runs upstream health checks.
struct HealthChecks {
    pools: Vec<Arc<Pool>>,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tasks: Vec<_> = self
            .pools
            .iter()
            .map(|p| tokio::spawn(p.clone().run_health_checks()))
            .collect();
        let _ = shutdown.changed().await;
        for t in tasks {
            t.abort();
        }
    }
}

/// Serves the admin plane.
struct AdminPlane {
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    readiness: Arc<admin::Readiness>,
}

#[async_trait]
impl BackgroundService for AdminPlane {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let std_listener = self.listener.lock().ok().and_then(|mut l| l.take());
        let Some(listener) = std_listener.and_then(|l| tokio::net::TcpListener::from_std(l).ok())
        else {
            tracing::error!("admin listener unavailable");
            return;
        };
        self.readiness.started.store(true, Ordering::Relaxed);
        // Keep answering through the shutdown grace period — /readyz says
        // 503 so load balancers stop sending, /metrics stays scrapeable —
        // until the runtime itself is torn down.
        let readiness = self.readiness.clone();
        tokio::spawn(async move {
            let _ = shutdown.changed().await;
            readiness.draining.store(true, Ordering::Relaxed);
        });
        admin::serve(listener, self.readiness.clone(), std::future::pending()).await;
    }
}

fn tls_settings(
    l: &ListenerConfig,
    cert: Arc<ReloadingCert>,
    http2: bool,
    client: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> TlsSettings {
    let callbacks: TlsAcceptCallbacks = Box::new(HandshakeObserver);
    // `with_callbacks` only fails for OpenSSL backends; rustls always succeeds.
    let mut settings = match TlsSettings::with_callbacks(callbacks) {
        Ok(s) => s,
        Err(_) => unreachable_tls(&l.address),
    };
    settings.set_cert_resolver(cert);
    settings.set_alpn(if http2 { ALPN::H2H1 } else { ALPN::H1 });
    if let Some(v) = client {
        settings.set_client_cert_verifier(v);
    }
    settings
}

fn unreachable_tls(address: &str) -> ! {
    // Kept as a named exit rather than a panic: startup, not request path.
    eprintln!("phigate: cannot build TLS settings for {address}");
    std::process::exit(1)
}

/// Builds the Pingora server for a validated config. The admin listener is
/// bound here so a port conflict fails startup with a clear message.
pub fn build(config: &Config) -> Result<Server, StartError> {
    pingora::tls::install_default_crypto_provider();
    let mut conf = ServerConf {
        work_stealing: config.server.work_stealing,
        grace_period_seconds: Some(config.server.grace_period.get().as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.get().as_secs()),
        ..ServerConf::default()
    };
    if let Some(threads) = config.server.threads {
        conf.threads = threads.max(1);
    } else {
        conf.threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
    }
    // Pingora's pid/upgrade files default to /tmp paths shared by every
    // instance on the host; give each process its own.
    let run_dir = std::env::temp_dir().join(format!("phigate-{}", std::process::id()));
    conf.pid_file = run_dir.join("pid").display().to_string();
    conf.upgrade_sock = run_dir.join("upgrade.sock").display().to_string();

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let authn = crate::authn::build(config)?;
    let authz = Arc::new(
        crate::authz::Authorization::from_config(&config.authorization)
            .map_err(StartError::Authz)?,
    );
    let (phigate, pools) = Phigate::from_config(config, authn, authz.clone())?;
    let mut options = HttpServerOptions::default();
    options.keepalive_request_limit = Some(config.hygiene.max_requests_per_connection.max(1));
    options.h2_idle_timeout = Some(config.hygiene.keepalive_timeout.get());
    let mut service = ProxyServiceBuilder::new(&server.configuration, phigate)
        .name("phigate")
        .server_options(options)
        .build();
    let mut certs = Vec::new();
    for l in &config.listeners {
        match &l.tls {
            Some(t) => {
                let cert = Arc::new(ReloadingCert::load(&t.cert, &t.key).map_err(|source| {
                    StartError::Tls {
                        address: l.address.clone(),
                        source,
                    }
                })?);
                certs.push((cert.clone(), t.reload_interval.get()));
                let client = client_verifier(t).map_err(|source| StartError::Tls {
                    address: l.address.clone(),
                    source,
                })?;
                service.add_tls_with_settings(
                    &l.address,
                    None,
                    tls_settings(l, cert, t.http2, client),
                );
            }
            None => service.add_tcp(&l.address),
        }
    }
    server.add_service(service);

    let admin_listener = std::net::TcpListener::bind(&config.admin.address)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|source| StartError::Admin {
            address: config.admin.address.clone(),
            source,
        })?;
    let readiness = Arc::new(admin::Readiness {
        started: false.into(),
        draining: false.into(),
        pools: pools.clone(),
        policies: Some(admin::PolicyAdmin {
            authz: authz.clone(),
            reload_token: match &config.admin.reload_token {
                Some(t) => Some(
                    t.resolve()
                        .map_err(|e| StartError::Authz(format!("admin.reload_token: {e}")))?,
                ),
                None => None,
            },
        }),
    });
    server.add_service(background_service(
        "admin",
        AdminPlane {
            listener: std::sync::Mutex::new(Some(admin_listener)),
            readiness,
        },
    ));
    server.add_service(background_service("health checks", HealthChecks { pools }));
    if !certs.is_empty() {
        server.add_service(background_service("cert reload", CertReloader { certs }));
    }
    server.add_service(background_service(
        "policy reload",
        PolicyReloader {
            authz,
            interval: config.authorization.watch_interval.get(),
        },
    ));
    Ok(server)
}

/// Installs the JSON log subscriber (`RUST_LOG` filters; default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Pingora's debug and trace output includes request headers and paths:
    // cap it at info whatever RUST_LOG asks for, so no PHI reaches the log.
    let verbose = filter
        .max_level_hint()
        .is_none_or(|max| max > tracing::level_filters::LevelFilter::INFO);
    let filter = if verbose {
        ["pingora_core=info", "pingora_proxy=info", "pingora=info"]
            .iter()
            .filter_map(|d| d.parse().ok())
            .fold(filter, |f, d| f.add_directive(d))
    } else {
        filter
    };
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
