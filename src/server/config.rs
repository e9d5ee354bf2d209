//! The server's configuration: worker threads, shutdown, listeners and their
//! TLS, the admin plane. `config/` composes it into `phigate.toml`.

use crate::units::HumanDuration;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Worker threads for the data plane. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// Let idle worker threads steal connections from busy ones. Default
    /// `false`: each thread runs its own single-threaded runtime and accepts
    /// its own connections, which is cheaper per request; turn it on when a
    /// few long-lived connections carry most of the traffic.
    pub work_stealing: bool,
    /// On SIGTERM listeners stop accepting at once, idle keep-alive
    /// connections close, and in-flight requests get at most this long to
    /// finish; the process stops as soon as none is left. Default `"5s"`.
    pub grace_period: HumanDuration,
    /// After the grace period, how long the runtime may take to stop what is
    /// left (requests still running are cut). Default `"10s"`.
    pub shutdown_timeout: HumanDuration,
    /// Client connections open at once, over all listeners. A connection
    /// over the limit is answered `503` and closed. Default 10000.
    pub max_connections: usize,
    /// Client connections open at once from one client address (the TCP
    /// peer). Default 256.
    pub max_connections_per_client: usize,
    /// Longest TLS handshake. Default `"10s"`.
    pub tls_handshake_timeout: HumanDuration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            threads: None,
            work_stealing: false,
            grace_period: HumanDuration::secs(5),
            shutdown_timeout: HumanDuration::secs(10),
            max_connections: 10_000,
            max_connections_per_client: 256,
            tls_handshake_timeout: HumanDuration::secs(10),
        }
    }
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `IP:PORT` to bind, e.g. `"0.0.0.0:8443"`.
    pub address: String,
    /// TLS settings. Without them the listener speaks cleartext HTTP, which is
    /// refused unless `address` is loopback or `insecure_cleartext = true`.
    pub tls: Option<TlsConfig>,
    /// Allow a cleartext listener on a non-loopback address (for a trusted
    /// TLS-terminating load balancer in front). Default `false`.
    #[serde(default)]
    pub insecure_cleartext: bool,
}

/// Server TLS for a listener (rustls; TLS 1.2 and 1.3 only, AEAD suites only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Offer HTTP/2 by ALPN (with HTTP/1.1 as fallback). Default `true`.
    #[serde(default = "yes")]
    pub http2: bool,
    /// How often to check `cert`/`key` for changes; a changed, valid pair is
    /// swapped in without a restart. A broken pair is logged and ignored.
    /// Default `"10s"`.
    #[serde(default = "default_reload_interval")]
    pub reload_interval: HumanDuration,
    /// PEM CA bundle for client certificates (mTLS). When set, clients may
    /// (or must, see `client_auth`) present a certificate signed by it; a
    /// presented certificate that does not verify fails the handshake.
    pub client_ca: Option<PathBuf>,
    /// `"optional"` (default when `client_ca` is set) or `"required"`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// How long a client may resume its TLS session without a full
    /// handshake (stateless session tickets; the ticket's issue time is
    /// checked, and its key is rotated every lifetime and erased after two).
    /// `"0s"` turns session resumption off. At most 7 days (RFC 8446).
    /// Default `"1h"`: a working session's reconnects skip the handshake.
    /// The lifetime bounds each ticket, not a session that keeps resuming
    /// (docs/tls.md says what that means for TLS 1.2 and client
    /// certificates).
    #[serde(default = "default_session_ticket_lifetime")]
    pub session_ticket_lifetime: HumanDuration,
    /// A DER OCSP response for `cert` to staple (fetched by you, e.g. with
    /// `openssl ocsp` from cron; phigate does not fetch it). Reloaded with
    /// the certificate. It must be about this certificate, say "good" and
    /// be current; once past its nextUpdate it is no longer stapled.
    /// Default: none (no stapling).
    pub ocsp_response: Option<PathBuf>,
}

/// Whether a listener with `client_ca` demands a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Optional,
    Required,
}

fn yes() -> bool {
    true
}
fn default_reload_interval() -> HumanDuration {
    HumanDuration::secs(10)
}
fn default_session_ticket_lifetime() -> HumanDuration {
    HumanDuration::secs(3600)
}

/// The admin plane: a separate HTTP listener for operators.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `IP:PORT` for `/metrics`, `/healthz`, `/readyz`. Default `"127.0.0.1:9090"`.
    /// Binding a non-loopback address requires `expose = true`.
    pub address: String,
    /// Allow the admin listener on a non-loopback address. Default `false`.
    pub expose: bool,
    /// Bearer token for `POST /policies/reload` (`env:NAME` or
    /// `file:PATH`). Without it the endpoint is off; SIGHUP and the file
    /// watcher still reload.
    pub reload_token: Option<crate::secret::SecretRef>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:9090".into(),
            expose: false,
            reload_token: None,
        }
    }
}

impl ListenerConfig {
    /// Problems with this listener alone, as (dotted key, message).
    pub fn check(&self, key: &str, out: &mut Vec<(String, String)>) {
        let l = self;
        let addr = match l.address.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                out.push((
                    format!("{key}.address"),
                    format!("{:?} is not an IP:PORT address", l.address),
                ));
                return;
            }
        };
        match &l.tls {
            None if !addr.ip().is_loopback() && !l.insecure_cleartext => out.push((
                format!("{key}.address"),
                format!(
                    "cleartext listener on non-loopback {addr}: add [{key}.tls] with cert and key, \
                     or set `insecure_cleartext = true` if a trusted load balancer terminates TLS"
                ),
            )),
            None => {}
            Some(tls) => {
                for (field, p) in [("cert", &tls.cert), ("key", &tls.key)] {
                    if let Err(e) = std::fs::metadata(p) {
                        out.push((
                            format!("{key}.tls.{field}"),
                            format!("cannot read {}: {e}", p.display()),
                        ));
                    }
                }
                if let Some(ca) = &tls.client_ca {
                    if let Err(e) = super::tls::load_ca_bundle(ca) {
                        out.push((format!("{key}.tls.client_ca"), e.to_string()));
                    }
                }
                // A response that cannot be stapled is only a warning (see
                // `staple_warning`): the certificate is served without it.
                if tls.cert.exists() && tls.key.exists() {
                    if let Err(e) = super::tls::load_certified_key(&tls.cert, &tls.key) {
                        out.push((format!("{key}.tls.cert"), e.to_string()));
                    }
                }
                let lifetime = tls.session_ticket_lifetime.get();
                if !lifetime.is_zero()
                    && (lifetime.subsec_nanos() != 0
                        || lifetime > super::tickets::MAX_TICKET_LIFETIME)
                {
                    out.push((
                        format!("{key}.tls.session_ticket_lifetime"),
                        format!(
                            "{} must be whole seconds, at most 7 days (RFC 8446), or \"0s\" to turn resumption off",
                            tls.session_ticket_lifetime
                        ),
                    ));
                }
            }
        }
    }
}

/// Why a listener's configured OCSP response cannot be stapled now, if it
/// cannot: `check` warns, `serve` serves the certificate without it.
pub fn staple_warning(tls: &TlsConfig) -> Option<String> {
    let ocsp = tls.ocsp_response.as_ref()?;
    let ck = super::tls::load_certified_key(&tls.cert, &tls.key).ok()?;
    super::tls::load_staple(&ck, ocsp, std::time::SystemTime::now())
        .err()
        .map(|e| {
            format!(
                "{e}; the certificate will be served without a staple until the file is refreshed"
            )
        })
}
