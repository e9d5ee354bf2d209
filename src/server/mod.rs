//! Process wiring: listeners, worker runtimes, the admin plane, background
//! tasks (health checks, certificate and policy reload), and shutdown.
//!
//! [`build`] binds every socket, so a port that cannot be bound fails
//! start-up with a clear error. [`Server::run`] takes the shutdown signal as
//! an argument (as mini-redis's `run(listener, shutdown)` does): `serve`
//! passes SIGTERM/SIGINT, tests pass whatever they like. Everything here is
//! assembly; the request logic lives in `proxy` and the stages it calls.

pub mod admin;
pub mod config;
pub mod conn;
pub mod listen;
pub mod ocsp;
pub mod tickets;
pub mod tls;
mod watch;

use crate::config::{AuthKind, Config};
use crate::metrics::metrics;
use crate::proxy::{Pipeline, Pool, Stages};
use conn::HeadDeadlines;
use listen::{BoundListener, ConnSettings, Limits, Reserve};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tls::{ListenerKeys, ReloadOutcome, ReloadingCert};

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
    #[error("listener {address}: cannot listen: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("admin listener {address}: {source}")]
    Admin {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot start worker runtimes: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::trail::AuditError),
}

/// A server whose sockets are bound, ready to run.
pub struct Server {
    stages: Arc<Stages>,
    listeners: Vec<BoundListener>,
    admin: std::net::TcpListener,
    readiness: Arc<admin::Readiness>,
    certs: Vec<ListenerKeys>,
    authz: Arc<crate::authz::Authorization>,
    settings: Arc<ConnSettings>,
    threads: usize,
    work_stealing: bool,
    grace: Duration,
    shutdown_timeout: Duration,
    watch_interval: Duration,
}

/// Everything a server is made of except its sockets: the stages
/// (authentication, authorization, routes and pools) and each listener's
/// TLS. `phigate check` builds exactly this, so it fails where `serve` would.
pub struct Prepared {
    stages: Arc<Stages>,
    authz: Arc<crate::authz::Authorization>,
    tls: Vec<Option<listen::TlsListener>>,
    certs: Vec<ListenerKeys>,
}

impl Prepared {
    /// The policy set version the stages decide with.
    pub fn policy_version(&self) -> String {
        self.authz.version()
    }

    /// What will bite, for `check`: the config's warnings, and a policy set
    /// that can only deny.
    pub fn warnings(&self, config: &Config) -> Vec<String> {
        let mut out: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
        out.extend(permits_nothing(config, &self.authz));
        out
    }
}

/// A policy set with no `permit` (only `forbid`s, or none) while some route
/// needs authorization: every request there will be denied.
fn permits_nothing(config: &Config, authz: &crate::authz::Authorization) -> Option<String> {
    let decides = config
        .routes
        .iter()
        .any(|r| r.auth.kind != AuthKind::Public);
    let permits = authz
        .snapshot()
        .policies
        .policies
        .policies()
        .any(|p| p.effect() == cedar_policy::Effect::Permit);
    (decides && !permits).then(|| {
        "`authorization.policies`: the policy set has no `permit` policy, so every request on a route that needs authorization will be denied".to_string()
    })
}

/// Builds every stage and listener TLS config for a validated config,
/// recording to `audit` (`check` passes `None` and only reads the key).
pub fn prepare(
    config: &Config,
    audit: Option<Arc<crate::audit::Audit>>,
) -> Result<Prepared, StartError> {
    if let Some(a) = &config.audit {
        crate::audit::trail::signing_key(a)?;
    }
    let events: Arc<dyn crate::authn::AuthEventSink> = match &audit {
        Some(audit) => Arc::new(crate::audit::trail::AuditAuthSink {
            audit: audit.clone(),
        }),
        None => Arc::new(crate::authn::LogSink),
    };
    let authn = crate::authn::build_with_events(config.authn(), events)?;
    let authz = Arc::new(
        crate::authz::Authorization::with_routes(
            &config.authorization,
            Some(
                crate::authz::routed::Routes::from_config(
                    &config.routes,
                    config.authorization.entities.as_deref(),
                )
                .map_err(StartError::Authz)?,
            ),
        )
        .map_err(StartError::Authz)?,
    );
    let stages = Arc::new(Stages::from_config(
        config.pipeline(),
        authn,
        authz.clone(),
        audit,
    )?);
    let mut certs = Vec::new();
    let mut tls = Vec::new();
    for l in &config.listeners {
        tls.push(match &l.tls {
            Some(t) => {
                let tls_err = |source| StartError::Tls {
                    address: l.address.clone(),
                    source,
                };
                let cert = Arc::new(
                    ReloadingCert::load(&t.cert, &t.key, t.ocsp_response.as_deref())
                        .map_err(tls_err)?,
                );
                let tickets = tls::session_tickets(t).map_err(tls_err)?;
                certs.push(ListenerKeys {
                    cert: cert.clone(),
                    tickets: tickets.clone(),
                    reload_interval: t.reload_interval.get(),
                });
                let config = tls::server_config(t, cert, tickets).map_err(tls_err)?;
                Some(listen::TlsListener {
                    acceptor: tokio_rustls::TlsAcceptor::from(config),
                    client_ca: t
                        .client_ca
                        .as_ref()
                        .map(|p| Arc::from(p.display().to_string())),
                })
            }
            None => None,
        });
    }
    Ok(Prepared {
        stages,
        authz,
        tls,
        certs,
    })
}

/// The audit trail hears of the configuration the process starts with and
/// of every policy reload from now on.
fn record_start(
    audit: &Arc<crate::audit::Audit>,
    config: &Config,
    authz: &Arc<crate::authz::Authorization>,
) {
    use crate::audit::trail::system_event;
    use crate::audit::{EventKind, Outcome};
    let routes = config.routes.len().to_string();
    audit.record_detached(&system_event(
        EventKind::ConfigChange,
        Outcome::Success,
        "started",
        &[
            ("config_sha256", &config.fingerprint),
            ("routes", &routes),
            ("policy_version", &authz.version()),
            ("phigate_version", env!("CARGO_PKG_VERSION")),
        ],
    ));
    let trail = audit.clone();
    let _ = authz.on_reload.set(Box::new(move |r| {
        let problems = r.problems.to_string();
        let outcome = if r.result == "rejected" {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        trail.record_detached(&system_event(
            EventKind::PolicyReload,
            outcome,
            r.result,
            &[
                ("trigger", r.trigger),
                ("policy_version", r.version),
                ("entities_version", r.entities_version),
                ("previous_version", r.previous),
                ("problems", &problems),
            ],
        ));
    }));
}

/// One start-up line per listener, route and issuer, and the policy and
/// entity versions in force: what an operator checks first.
fn announce(config: &Config, authz: &crate::authz::Authorization) {
    for w in &config.warnings {
        let key = w.key.as_str();
        tracing::warn!(key, "{}", w.message);
    }
    if let Some(w) = permits_nothing(config, authz) {
        tracing::warn!(key = "authorization.policies", "{w}");
    }
    for l in &config.listeners {
        let tls = l.tls.is_some();
        tracing::info!(address = %l.address, tls, "listener");
    }
    for r in &config.routes {
        let auth = match r.auth.kind {
            AuthKind::Api => "api",
            AuthKind::Browser => "browser",
            AuthKind::Public => "public",
        };
        let mapping = match (r.auth.kind, r.authorization.mapping) {
            (AuthKind::Public, _) => "none",
            (_, crate::authz::config::MappingKind::Fhir) => "fhir",
            (_, crate::authz::config::MappingKind::Templates) => "templates",
        };
        tracing::info!(
            route = %r.name,
            hosts = %r.hosts.join(","),
            path_prefix = %r.path_prefix,
            upstream = %r.upstream,
            auth,
            authorization = mapping,
            mode = r.authorization.mode.as_str(),
            redaction = r.redaction.is_some(),
            "route"
        );
    }
    for idp in &config.identity_providers {
        tracing::info!(name = %idp.name, issuer = %idp.issuer, "identity provider");
    }
    let snapshot = authz.snapshot();
    tracing::info!(
        policy_version = %snapshot.version(),
        entities_version = %snapshot.entities_version,
        "policies loaded"
    );
    if let Some(a) = &config.audit {
        tracing::info!(
            dir = %a.dir.display(),
            sync = %a.sync,
            signed = a.signing_key.is_some(),
            sinks = a.sinks.len(),
            "audit trail"
        );
    }
}

/// Builds the server for a validated config: every stage, every socket.
pub fn build(config: &Config) -> Result<Server, StartError> {
    let audit = match &config.audit {
        Some(a) => Some(crate::audit::Audit::open(a)?),
        None => None,
    };
    let Prepared {
        stages,
        authz,
        tls,
        certs,
    } = prepare(config, audit.clone())?;
    if let Some(audit) = audit {
        record_start(&audit, config, &authz);
    }
    announce(config, &authz);
    let mut listeners = Vec::new();
    for ((index, l), tls) in config.listeners.iter().enumerate().zip(tls) {
        let socket = listen::bind(&l.address).map_err(|source| StartError::Bind {
            address: l.address.clone(),
            source,
        })?;
        listeners.push(BoundListener { index, socket, tls });
    }
    let admin = listen::bind(&config.admin.address).map_err(|source| StartError::Admin {
        address: config.admin.address.clone(),
        source,
    })?;
    let readiness = Arc::new(admin::Readiness {
        started: false.into(),
        draining: false.into(),
        pools: stages.pools().to_vec(),
        authn: Some(stages.authn.clone()),
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
    let h = &config.hygiene;
    let max_head_bytes = h.max_header_bytes.bytes() as usize + h.max_uri_length + 4096;
    let settings = Arc::new(ConnSettings {
        max_connections: config.server.max_connections.max(1),
        max_per_client: config.server.max_connections_per_client.max(1),
        tls_handshake_timeout: config.server.tls_handshake_timeout.get(),
        deadlines: HeadDeadlines {
            first_request: h.first_request_timeout.get(),
            whole_head: h.request_head_timeout.get(),
        },
        keepalive: h.keepalive_timeout.get(),
        max_head_bytes,
        // hyper must refuse what the hygiene check would not see: allow it
        // more lines than the limit, so the limit answers with its own 431.
        max_head_fields: (h.max_headers + 100).min(crate::http::MAX_FIELDS),
        trusted: crate::http::TrustedProxies::new(h.trusted_proxies.clone()),
    });
    Ok(Server {
        stages,
        listeners,
        admin,
        readiness,
        certs,
        authz,
        settings,
        threads: config.server.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        work_stealing: config.server.work_stealing,
        grace: config.server.grace_period.get(),
        shutdown_timeout: config.server.shutdown_timeout.get(),
        watch_interval: config.authorization.watch_interval.get(),
    })
}

impl Server {
    /// The addresses the data-plane listeners are bound to.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok())
            .collect()
    }

    /// Runs until SIGTERM or SIGINT, then drains; the process's exit code.
    pub fn run_forever(self) -> std::process::ExitCode {
        match self.run(stop_signal()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("phigate: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish for at most the grace period, and returns.
    pub fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let background = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("phigate-background")
            .build()
            .map_err(StartError::Runtime)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let accepting = Arc::new(AtomicUsize::new(0));
        let limits = Arc::new(Limits::default());
        let reserve = Arc::new(Reserve::new());
        let workers = if self.work_stealing {
            1
        } else {
            self.threads.max(1)
        };
        let expected_loops = workers * self.listeners.len();
        let mut handles = Vec::new();
        let listeners = self.listeners;
        for w in 0..workers {
            let sockets = listeners
                .iter()
                .map(|l| Ok((l.index, l.socket.try_clone()?, l.tls.clone())))
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(StartError::Runtime)?;
            let runtime = if self.work_stealing {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(self.threads.max(1))
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            .map_err(StartError::Runtime)?;
            let worker = Worker {
                stages: self.stages.clone(),
                settings: self.settings.clone(),
                limits: limits.clone(),
                reserve: reserve.clone(),
                stop: stop_rx.clone(),
                accepting: accepting.clone(),
                grace: self.grace,
            };
            let handle = std::thread::Builder::new()
                .name(format!("phigate-worker-{w}"))
                .spawn(move || runtime.block_on(worker.run(sockets)))
                .map_err(StartError::Runtime)?;
            handles.push(handle);
        }

        // Only the workers hold the listening sockets now: when they stop
        // accepting, the sockets close.
        drop(listeners);
        let readiness = self.readiness.clone();
        let admin = self.admin;
        let pools = self.stages.pools().to_vec();
        let audit = self.stages.audit.clone();
        let certs = self.certs;
        let authz = self.authz;
        let watch_interval = self.watch_interval;
        let grace = self.grace;
        let shutdown_timeout = self.shutdown_timeout;
        background.block_on(async move {
            let admin = match tokio::net::TcpListener::from_std(admin) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "admin listener unavailable");
                    let _ = stop_tx.send(true);
                    return;
                }
            };
            let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(admin::serve(admin, readiness.clone(), async move {
                let _ = admin_stop_rx.await;
            }));
            let health: Vec<_> = pools
                .iter()
                .map(|p: &Arc<Pool>| tokio::spawn(p.clone().run_health_checks()))
                .collect();
            if !certs.is_empty() {
                tokio::spawn(reload_certificates(certs));
            }
            tokio::spawn(reload_policies(authz, watch_interval));
            if let Some(authn) = readiness.authn.clone() {
                tokio::spawn(warm_issuer_keys(authn));
            }
            // Ready once every worker accepts on every listener.
            let ready_when_accepting = {
                let readiness = readiness.clone();
                async move {
                    while accepting.load(Ordering::Acquire) < expected_loops {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    readiness.started.store(true, Ordering::Relaxed);
                    metrics().ready.set(1);
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                _ = shutdown => {}
                _ = ready_when_accepting => {}
            }
            // Draining: /readyz says 503 so load balancers stop sending;
            // /metrics stays scrapeable until the end.
            readiness.draining.store(true, Ordering::Relaxed);
            metrics().ready.set(0);
            let _ = stop_tx.send(true);
            let waited = tokio::task::spawn_blocking(move || {
                for h in handles {
                    let _ = h.join();
                }
            });
            let _ = tokio::time::timeout(grace + shutdown_timeout, waited).await;
            for t in health {
                t.abort();
            }
            let _ = admin_stop_tx.send(());
        });
        // Everything recorded is written and synced, with a last checkpoint.
        if let Some(audit) = audit {
            audit.close();
        }
        Ok(())
    }
}

/// One worker runtime: accept loops for every listener, each connection
/// served on this runtime with this worker's upstream clients.
struct Worker {
    stages: Arc<Stages>,
    settings: Arc<ConnSettings>,
    limits: Arc<Limits>,
    reserve: Arc<Reserve>,
    stop: tokio::sync::watch::Receiver<bool>,
    accepting: Arc<AtomicUsize>,
    grace: Duration,
}

impl Worker {
    async fn run(self, sockets: Vec<(usize, std::net::TcpListener, Option<listen::TlsListener>)>) {
        let pipeline = Arc::new(Pipeline::new(self.stages.clone()));
        let (done, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
        let drain = listen::Drain {
            stop: self.stop.clone(),
            done,
        };
        let mut loops = Vec::new();
        for (index, socket, tls) in sockets {
            let listener = match tokio::net::TcpListener::from_std(socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, listener = index, "cannot accept on listener");
                    continue;
                }
            };
            self.accepting.fetch_add(1, Ordering::Release);
            loops.push(tokio::spawn(listen::accept_loop(
                listener,
                index,
                tls,
                pipeline.clone(),
                self.settings.clone(),
                self.limits.clone(),
                self.reserve.clone(),
                drain.clone(),
            )));
        }
        let mut stop = self.stop.clone();
        listen::stopped(&mut stop).await;
        for l in loops {
            let _ = l.await;
        }
        // Listeners are closed; connections finish their requests (idle
        // keep-alive ones close now) for at most the grace period, and the
        // worker stops as soon as the last one is gone.
        drop(drain);
        let _ = tokio::time::timeout(self.grace, all_done.recv()).await;
    }
}

/// SIGINT or SIGTERM.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! { _ = i.recv() => {}, _ = t.recv() => {} }
        }
        _ => std::future::pending().await,
    }
}

/// Polls listener certificates (and their OCSP staples) for changes, and
/// erases session ticket keys whose tickets have all expired.
async fn reload_certificates(certs: Vec<ListenerKeys>) {
    let Some(interval) = certs.iter().map(|k| k.reload_interval).min() else {
        return;
    };
    loop {
        tokio::time::sleep(interval).await;
        for keys in &certs {
            if let Some(tickets) = &keys.tickets {
                tickets.erase_expired();
            }
            let cert = &keys.cert;
            let result = match cert.check() {
                ReloadOutcome::Unchanged => continue,
                ReloadOutcome::Reloaded => {
                    tracing::info!(cert = %cert.cert_path().display(), "listener certificate reloaded");
                    "reloaded"
                }
                ReloadOutcome::Rejected(why) => {
                    tracing::error!(cert = %cert.cert_path().display(), error = %why, "new listener certificate refused; still serving the previous one");
                    "rejected"
                }
                ReloadOutcome::StapleRefused(why) => {
                    tracing::warn!(cert = %cert.cert_path().display(), error = %why, "the OCSP response cannot be stapled; the certificate is served without it (or with the previous response while that is current)");
                    "ocsp_rejected"
                }
                ReloadOutcome::StapleExpired => {
                    tracing::error!(cert = %cert.cert_path().display(), "the stapled OCSP response passed its nextUpdate and is no longer stapled; refresh the ocsp_response file");
                    "ocsp_expired"
                }
            };
            metrics().cert_reloads.with_label_values(&[result]).inc();
        }
    }
}

/// Fetches identity providers' keys at start and whenever none are usable
/// (readiness waits on them), so an IdP outage at start shows in /readyz.
async fn warm_issuer_keys(authn: Arc<crate::authn::Authenticator>) {
    let Some(bearer) = authn.bearer.as_ref() else {
        return;
    };
    loop {
        bearer.warm_keys().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Reloads policies and entities when their files change and on SIGHUP.
async fn reload_policies(authz: Arc<crate::authz::Authorization>, poll: Duration) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; policy reload by signal is off");
            None
        }
    };
    let watching = authz.watches_files() && !poll.is_zero();
    let mut events = if watching {
        match watch::FileEvents::watch(&authz.watched_dirs()) {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!(error = %e, poll_secs = poll.as_secs_f64(), "cannot watch the policy files; polling them instead");
                None
            }
        }
    } else {
        None
    };
    let tick = if watching {
        poll
    } else {
        Duration::from_secs(3600)
    };
    loop {
        let trigger = tokio::select! {
            _ = async {
                match hangup.as_mut() {
                    Some(h) => { h.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => "sighup",
            _ = async {
                match events.as_mut() {
                    Some(e) => e.changed().await,
                    None => std::future::pending::<()>().await,
                }
            } => "watch",
            _ = tokio::time::sleep(tick) => "watch",
        };
        if trigger == "watch" && !watching {
            continue;
        }
        let authz = authz.clone();
        // Hashing the files and loading them (which runs the policy tests)
        // stay off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            if trigger == "watch" && !authz.changed_on_disk() {
                return;
            }
            let _ = authz.reload(trigger);
        })
        .await;
    }
}

/// Installs the JSON log subscriber (`RUST_LOG` filters; default `info`).
pub fn init_logging() {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    // phigate's own lines at INFO; libraries only when they warn (their
    // INFO lines are framework chatter, some with build paths).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,phigate=info"));
    // The HTTP and TLS libraries' debug output names headers and paths: it
    // is dropped whatever RUST_LOG asks for (a more specific directive such
    // as `h2::codec=trace` included), so no PHI reaches the log.
    let clamp = tracing_subscriber::filter::filter_fn(|meta| {
        !(*meta.level() > tracing::Level::INFO && is_wire_library(meta.target()))
    });
    // People at a terminal read lines; files, journald and SIEMs get one
    // JSON object per line with `message` and every field at the top.
    use std::io::IsTerminal as _;
    let layer = if std::io::stderr().is_terminal() {
        tracing_subscriber::fmt::layer()
            .compact()
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter.and(clamp)))
        .try_init();
}

/// Libraries whose debug logs carry request bytes.
fn is_wire_library(target: &str) -> bool {
    [
        "hyper",
        "hyper_util",
        "h2",
        "rustls",
        "tokio_rustls",
        "reqwest",
        "httparse",
    ]
    .iter()
    .any(|lib| {
        target
            .strip_prefix(lib)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn wire_libraries_are_known_by_target() {
        assert!(super::is_wire_library("h2::codec::framed_read"));
        assert!(super::is_wire_library("hyper"));
        assert!(!super::is_wire_library("hyperlocal_thing"));
        assert!(!super::is_wire_library("phigate::proxy::exit"));
    }
}
