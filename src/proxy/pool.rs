//! Upstream pools: round-robin over healthy origins, with active health checks.
//!
//! Each origin keeps its own connector (address, TLS name, roots, connect
//! deadline), so a pool may mix host names and every TLS connection verifies
//! the right name. Health checks are plain GETs through the same connector.

use super::client::{origin_client, OriginClient, OriginConnector, OriginTls};
use super::config::{Origin, UpstreamConfig};
use crate::metrics::metrics;
use http_body_util::Empty;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One origin of a pool and what is known about its health.
pub struct OriginState {
    pub origin: Origin,
    pub addr: SocketAddr,
    index: usize,
    connector: OriginConnector,
    /// `Host` for requests that do not keep the client's.
    host: http::HeaderValue,
    /// Parsed once: every upstream request's URI is built from them.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    healthy: AtomicBool,
    /// Consecutive results in the direction opposite to the current state.
    streak: AtomicUsize,
    check_path: Option<String>,
}

impl OriginState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The connector for this origin (each worker builds its own client).
    pub fn connector(&self) -> OriginConnector {
        self.connector.clone()
    }

    /// The value for the upstream `Host` header when the client's is not kept.
    pub fn host_header(&self) -> &http::HeaderValue {
        &self.host
    }

    /// Position of this origin in its pool.
    pub fn index(&self) -> usize {
        self.index
    }
}

/// A named set of equivalent origins.
pub struct Pool {
    pub name: String,
    origins: Vec<OriginState>,
    next: AtomicUsize,
    interval: Duration,
    healthy_threshold: usize,
    unhealthy_threshold: usize,
    checked_once: AtomicBool,
    /// Upstream timeouts.
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("name", &self.name).finish()
    }
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
#[error("upstream {pool}: {reason}")]
pub struct PoolError {
    pub pool: String,
    pub reason: String,
}

impl Pool {
    pub fn from_config(name: &str, cfg: &UpstreamConfig) -> Result<Pool, PoolError> {
        let err = |reason: String| PoolError {
            pool: name.to_string(),
            reason,
        };
        let roots = match &cfg.ca_file {
            Some(path) => {
                Some(crate::server::tls::load_ca_bundle(path).map_err(|e| err(e.to_string()))?)
            }
            None => None,
        };
        let mut tls_config = None;
        let mut origins = Vec::with_capacity(cfg.origins.len());
        for (index, raw) in cfg.origins.iter().enumerate() {
            let origin = Origin::parse(raw).map_err(err)?;
            let addr = origin
                .authority()
                .to_socket_addrs()
                .map_err(|e| err(format!("cannot resolve {}: {e}", origin.authority())))?
                .next()
                .ok_or_else(|| err(format!("{} resolves to no address", origin.authority())))?;
            let tls = if origin.tls {
                let config = match &tls_config {
                    Some(c) => c,
                    None => tls_config
                        .insert(super::client::tls_client_config(roots.clone()).map_err(err)?),
                };
                let sni = cfg
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| origin.host.clone());
                let name = rustls::pki_types::ServerName::try_from(sni.clone())
                    .map_err(|_| err(format!("{sni:?} is not a TLS server name")))?;
                Some(OriginTls {
                    connector: tokio_rustls::TlsConnector::from(config.clone()),
                    name,
                })
            } else {
                None
            };
            let host = http::HeaderValue::from_str(&host_of(&origin))
                .map_err(|_| err(format!("{} is not a valid Host", origin.authority())))?;
            let authority = http::uri::Authority::try_from(origin.authority().as_str())
                .map_err(|_| err(format!("{} is not a valid authority", origin.authority())))?;
            let scheme = if origin.tls {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            };
            metrics()
                .upstream_healthy
                .with_label_values(&[name, &index.to_string()])
                .set(1);
            origins.push(OriginState {
                connector: OriginConnector {
                    addr,
                    tls,
                    connect_timeout: cfg.connect_timeout.get(),
                },
                origin,
                addr,
                index,
                host,
                scheme,
                authority,
                healthy: AtomicBool::new(true),
                streak: AtomicUsize::new(0),
                check_path: cfg
                    .health_check
                    .enabled
                    .then(|| cfg.health_check.path.clone()),
            });
        }
        if origins.is_empty() {
            return Err(err("no origins".into()));
        }
        Ok(Pool {
            name: name.to_string(),
            origins,
            next: AtomicUsize::new(0),
            interval: cfg.health_check.interval.get(),
            healthy_threshold: cfg.health_check.healthy_threshold.max(1),
            unhealthy_threshold: cfg.health_check.unhealthy_threshold.max(1),
            checked_once: AtomicBool::new(!cfg.health_check.enabled),
            read_timeout: cfg.read_timeout.get(),
            write_timeout: cfg.write_timeout.get(),
            idle_timeout: cfg.idle_timeout.get(),
        })
    }

    /// Every origin, in config order.
    pub fn origins(&self) -> &[OriginState] {
        &self.origins
    }

    /// The next healthy origin in round-robin order, or `None` if none is
    /// healthy. Rotates over the healthy origins only, so a dead origin's
    /// share is spread evenly rather than landing on its neighbour.
    pub fn select(&self) -> Option<&OriginState> {
        let healthy = self.origins.iter().filter(|o| o.is_healthy()).count();
        if healthy == 0 {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed) % healthy;
        self.origins.iter().filter(|o| o.is_healthy()).nth(k)
    }

    /// True once every origin has been checked at least once.
    pub fn checked_once(&self) -> bool {
        self.checked_once.load(Ordering::Relaxed)
    }

    pub fn any_healthy(&self) -> bool {
        self.origins.iter().any(OriginState::is_healthy)
    }

    /// Runs one round of health checks over every origin.
    pub async fn check_all(&self, clients: &[OriginClient<Empty<bytes::Bytes>>]) {
        for (o, client) in self.origins.iter().zip(clients) {
            let Some(path) = &o.check_path else { continue };
            let ok = check_once(client, o, path).await;
            self.observe(o, ok);
        }
        self.checked_once.store(true, Ordering::Relaxed);
    }

    fn observe(&self, o: &OriginState, ok: bool) {
        if ok == o.is_healthy() {
            o.streak.store(0, Ordering::Relaxed);
            return;
        }
        let threshold = if ok {
            self.healthy_threshold
        } else {
            self.unhealthy_threshold
        };
        let streak = o.streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak >= threshold {
            o.healthy.store(ok, Ordering::Relaxed);
            o.streak.store(0, Ordering::Relaxed);
            metrics()
                .upstream_healthy
                .with_label_values(&[&self.name, &o.index.to_string()])
                .set(ok as i64);
            if ok {
                tracing::info!(upstream = %self.name, origin = o.index, "origin healthy again");
            } else {
                tracing::warn!(upstream = %self.name, origin = o.index, "origin failed its health check");
            }
        }
    }

    /// Checks forever at the configured interval; run as a background task.
    pub async fn run_health_checks(self: Arc<Self>) {
        if self.origins.iter().all(|o| o.check_path.is_none()) {
            return;
        }
        let clients: Vec<_> = self
            .origins
            .iter()
            .map(|o| origin_client(o.connector(), Duration::from_secs(30)))
            .collect();
        loop {
            self.check_all(&clients).await;
            tokio::time::sleep(self.interval).await;
        }
    }
}

/// One health check: a GET answered 2xx or 3xx within two seconds.
async fn check_once(
    client: &OriginClient<Empty<bytes::Bytes>>,
    o: &OriginState,
    path: &str,
) -> bool {
    let scheme = if o.origin.tls { "https" } else { "http" };
    let Ok(req) = http::Request::get(format!("{scheme}://{}{path}", o.origin.authority()))
        .header(http::header::HOST, o.host.clone())
        .header(http::header::USER_AGENT, "phigate-health-check")
        .body(Empty::new())
    else {
        return false;
    };
    let check = async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        // Read the body so the connection can be reused.
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        Some((200..400).contains(&status))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(true))
    )
}

fn host_of(origin: &Origin) -> String {
    let default = if origin.tls { 443 } else { 80 };
    let host = if origin.host.contains(':') {
        format!("[{}]", origin.host)
    } else {
        origin.host.clone()
    };
    if origin.port == default {
        host
    } else {
        format!("{host}:{}", origin.port)
    }
}
