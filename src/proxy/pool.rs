//! Upstream pools: round-robin over healthy origins, with active health checks.
//!
//! Each origin keeps its own peer template (address, SNI, CA, timeouts), so a
//! pool may mix host names and every TLS connection verifies the right name.
//! Health checks reuse Pingora's HTTP checker, one per origin.

use crate::config::{Origin, UpstreamConfig};
use crate::metrics::metrics;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One origin of a pool and what is known about its health.
pub struct OriginState {
    pub origin: Origin,
    pub addr: SocketAddr,
    index: usize,
    peer: HttpPeer,
    healthy: AtomicBool,
    /// Consecutive results in the direction opposite to the current state.
    streak: AtomicUsize,
    check: Option<HttpHealthCheck>,
}

impl OriginState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A fresh peer for one request.
    pub fn peer(&self) -> HttpPeer {
        self.peer.clone()
    }

    /// The value for the upstream `Host` header when the client's is not kept.
    pub fn host_header(&self) -> String {
        host_of(&self.origin)
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
        let ca: Option<Arc<[WrappedX509]>> = match &cfg.ca_file {
            Some(path) => {
                let certs =
                    crate::server::tls::load_ca_bundle(path).map_err(|e| err(e.to_string()))?;
                Some(
                    certs
                        .into_iter()
                        .map(|c| WrappedX509::new(c.to_vec(), pingora::utils::tls::parse_x509))
                        .collect::<Vec<_>>()
                        .into(),
                )
            }
            None => None,
        };
        let mut origins = Vec::with_capacity(cfg.origins.len());
        for (index, raw) in cfg.origins.iter().enumerate() {
            let origin = Origin::parse(raw).map_err(err)?;
            let addr = origin
                .authority()
                .to_socket_addrs()
                .map_err(|e| err(format!("cannot resolve {}: {e}", origin.authority())))?
                .next()
                .ok_or_else(|| err(format!("{} resolves to no address", origin.authority())))?;
            let sni = cfg
                .tls_server_name
                .clone()
                .unwrap_or_else(|| origin.host.clone());
            let sni = if origin.tls { sni } else { String::new() };
            let mut peer = HttpPeer::new(addr, origin.tls, sni.clone());
            let o = &mut peer.options;
            o.connection_timeout = Some(cfg.connect_timeout.get());
            o.total_connection_timeout = Some(cfg.connect_timeout.get() * 2);
            o.read_timeout = Some(cfg.read_timeout.get());
            o.write_timeout = Some(cfg.write_timeout.get());
            o.idle_timeout = Some(cfg.idle_timeout.get());
            o.verify_cert = true;
            o.verify_hostname = true;
            o.ca = ca.clone();
            let check = cfg.health_check.enabled.then(|| {
                let mut hc = HttpHealthCheck::new(&sni_or_host(&sni, &origin), origin.tls);
                hc.peer_template.options.ca = ca.clone();
                hc.peer_template.options.connection_timeout = Some(cfg.connect_timeout.get());
                hc.peer_template.options.read_timeout = Some(Duration::from_secs(2));
                if let Ok(mut req) = pingora::http::RequestHeader::build(
                    "GET",
                    cfg.health_check.path.as_bytes(),
                    None,
                ) {
                    let _ = req.insert_header("Host", host_of(&origin));
                    let _ = req.insert_header("User-Agent", "phigate-health-check");
                    hc.req = req;
                }
                hc.validator = Some(Box::new(|resp| {
                    if (200..400).contains(&resp.status.as_u16()) {
                        Ok(())
                    } else {
                        pingora::Error::e_explain(
                            pingora::ErrorType::CustomCode(
                                "unhealthy status",
                                resp.status.as_u16(),
                            ),
                            "health check",
                        )
                    }
                }));
                hc
            });
            metrics()
                .upstream_healthy
                .with_label_values(&[name, &index.to_string()])
                .set(1);
            origins.push(OriginState {
                origin,
                addr,
                index,
                peer,
                healthy: AtomicBool::new(true),
                streak: AtomicUsize::new(0),
                check,
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
        })
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
    pub async fn check_all(&self) {
        for o in &self.origins {
            let Some(hc) = &o.check else { continue };
            let Ok(backend) = Backend::new(&o.addr.to_string()) else {
                continue;
            };
            let ok = hc.check(&backend).await.is_ok();
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
        if self.origins.iter().all(|o| o.check.is_none()) {
            return;
        }
        loop {
            self.check_all().await;
            tokio::time::sleep(self.interval).await;
        }
    }
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

fn sni_or_host(sni: &str, origin: &Origin) -> String {
    if sni.is_empty() {
        origin.host.clone()
    } else {
        sni.to_string()
    }
}
