//! Server and upstream TLS material: loading, validation, and hot reload.
//!
//! Listeners present a certificate through [`ReloadingCert`], a rustls
//! resolver whose key pair is swapped atomically when the files change, so
//! certificate rotation needs no restart and a broken new pair is refused
//! while the old one keeps serving. An OCSP response from a file is
//! stapled with it ([`super::ocsp`]), reloaded with it, and dropped once
//! stale. Session resumption uses [`SessionTickets`], whose lifetime is
//! configured and enforced.

use super::ocsp::Staple;
use super::tickets::SessionTickets;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsMaterialError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} contains no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} contains no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("the key in {key} is not usable: {reason}")]
    BadKey { key: String, reason: String },
    #[error("the key in {key} does not match the certificate in {cert}")]
    Mismatch { cert: String, key: String },
    #[error("{path}: {reason}")]
    BadCa { path: String, reason: String },
    #[error("OCSP response {path} is not stapled: {reason}")]
    BadOcsp { path: String, reason: String },
    #[error("session tickets: {0}")]
    Tickets(String),
}

fn unreadable(path: &Path, e: impl fmt::Display) -> TlsMaterialError {
    TlsMaterialError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsMaterialError> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(path, e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(path, e))?;
    if certs.is_empty() {
        return Err(TlsMaterialError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// Loads a certificate chain and its private key, checking that they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsMaterialError> {
    let certs = load_certs(cert)?;
    let key_bytes = std::fs::read(key).map_err(|e| unreadable(key, e))?;
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|_| TlsMaterialError::NoKey {
            path: key.display().to_string(),
        })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsMaterialError::BadKey {
            key: key.display().to_string(),
            reason: e.to_string(),
        })?;
    let ck = CertifiedKey::new(certs, signing_key);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        // Key types rustls cannot compare (no SPKI): accept, the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(_) => Err(TlsMaterialError::Mismatch {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
        }),
    }
}

/// Loads a PEM CA bundle for verifying upstream servers.
pub fn load_ca_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsMaterialError> {
    let certs = load_certs(path)?;
    let mut store = rustls::RootCertStore::empty();
    for c in &certs {
        store.add(c.clone()).map_err(|e| TlsMaterialError::BadCa {
            path: path.display().to_string(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(certs)
}

/// What a listener serves: its key pair, and the pair with the OCSP
/// response stapled until the response's nextUpdate.
struct Serving {
    stapled: Arc<CertifiedKey>,
    bare: Arc<CertifiedKey>,
    until: Option<SystemTime>,
}

impl Serving {
    fn new(ck: CertifiedKey, staple: Option<&Staple>) -> Serving {
        let mut stapled = ck.clone();
        stapled.ocsp = staple.map(|s| s.der.clone());
        Serving {
            stapled: Arc::new(stapled),
            bare: Arc::new(ck),
            until: staple.map(|s| s.next_update),
        }
    }

    /// The key to present now: never a staple past its nextUpdate.
    fn at(&self, now: SystemTime) -> &Arc<CertifiedKey> {
        match self.until {
            Some(until) if now < until => &self.stapled,
            _ => &self.bare,
        }
    }
}

/// Reads the OCSP response at `path` and checks it is fit to staple to `ck`.
pub fn load_staple(
    ck: &CertifiedKey,
    path: &Path,
    now: SystemTime,
) -> Result<Staple, TlsMaterialError> {
    let der = std::fs::read(path).map_err(|e| unreadable(path, e))?;
    let chain: Vec<&[u8]> = ck.cert.iter().map(|c| c.as_ref()).collect();
    Staple::check(der, &chain, now).map_err(|e| TlsMaterialError::BadOcsp {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The modification times of the files a listener's key comes from (the
/// OCSP response's, when it is configured and there).
type Stamp = Option<(SystemTime, SystemTime, Option<SystemTime>)>;

/// A server certificate that can be replaced while serving.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    ocsp_path: Option<PathBuf>,
    current: ArcSwap<Serving>,
    /// The files' stamp at the last look; held while a reload runs.
    stamp: std::sync::Mutex<Stamp>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert_path)
            .field("ocsp", &self.ocsp_path)
            .finish_non_exhaustive()
    }
}

/// What a reload check found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Reloaded,
    /// The files changed but the new set is unusable; the old one stays.
    Rejected(String),
    /// The stapled OCSP response passed its nextUpdate and is no longer
    /// stapled (the certificate is still served).
    StapleExpired,
    /// The key pair is served, but the OCSP response cannot be stapled with
    /// it (stale, about another certificate, unreadable): served without
    /// one, or with the previous one while it is current for the same
    /// certificate. A staple is optional to clients; a listener is not.
    StapleRefused(String),
}

impl ReloadingCert {
    /// Loads the pair; an OCSP response that cannot be stapled is logged
    /// and the pair served without it.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        ocsp_path: Option<&Path>,
    ) -> Result<Self, TlsMaterialError> {
        let stamp = file_stamp(cert_path, key_path, ocsp_path);
        let ck = load_certified_key(cert_path, key_path)?;
        let staple = match ocsp_path.map(|o| load_staple(&ck, o, SystemTime::now())) {
            Some(Err(e)) => {
                tracing::warn!(cert = %cert_path.display(), error = %e, "the OCSP response cannot be stapled; serving the certificate without it");
                None
            }
            Some(Ok(s)) => Some(s),
            None => None,
        };
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            ocsp_path: ocsp_path.map(Path::to_path_buf),
            current: ArcSwap::from_pointee(Serving::new(ck, staple.as_ref())),
            stamp: std::sync::Mutex::new(stamp),
        })
    }

    /// Reloads if a file's modification time changed since the last look;
    /// otherwise drops a staple that went stale.
    pub fn check(&self) -> ReloadOutcome {
        self.check_at(SystemTime::now())
    }

    fn check_at(&self, now: SystemTime) -> ReloadOutcome {
        let stamp = file_stamp(&self.cert_path, &self.key_path, self.ocsp_path.as_deref());
        let mut last = self
            .stamp
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let serving = self.current.load_full();
        if stamp == *last {
            if serving.until.is_some_and(|until| now >= until) {
                // Handshakes already present it bare; this says so once.
                self.current.store(Arc::new(Serving::new(
                    CertifiedKey::clone(&serving.bare),
                    None,
                )));
                return ReloadOutcome::StapleExpired;
            }
            return ReloadOutcome::Unchanged;
        }
        *last = stamp;
        let ck = match load_certified_key(&self.cert_path, &self.key_path) {
            Ok(ck) => ck,
            Err(e) => return ReloadOutcome::Rejected(e.to_string()),
        };
        let Some(ocsp) = self.ocsp_path.as_deref() else {
            self.current.store(Arc::new(Serving::new(ck, None)));
            return ReloadOutcome::Reloaded;
        };
        match load_staple(&ck, ocsp, now) {
            Ok(staple) => {
                self.current
                    .store(Arc::new(Serving::new(ck, Some(&staple))));
                ReloadOutcome::Reloaded
            }
            Err(e) => {
                // The same certificate keeps its current staple while it is
                // good; a new certificate is served without one.
                let same = serving.bare.cert == ck.cert;
                if !same || serving.until.is_none_or(|until| now >= until) {
                    self.current.store(Arc::new(Serving::new(ck, None)));
                }
                ReloadOutcome::StapleRefused(e.to_string())
            }
        }
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

fn file_stamp(cert: &Path, key: &Path, ocsp: Option<&Path>) -> Stamp {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // A missing response must not hide a renewed certificate: it only
    // leaves its own part of the stamp empty.
    Some((m(cert)?, m(key)?, ocsp.and_then(m)))
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let serving = self.current.load();
        let key = match serving.until {
            None => &serving.bare,
            Some(_) => serving.at(SystemTime::now()),
        };
        Some(key.clone())
    }
}

/// A TLS listener's material that changes while serving, for the task that
/// reloads certificates and erases expired ticket keys.
pub struct ListenerKeys {
    pub cert: Arc<ReloadingCert>,
    pub tickets: Option<Arc<SessionTickets>>,
    pub reload_interval: std::time::Duration,
}

/// The listener's session tickets, or `None` when `session_ticket_lifetime`
/// is `"0s"` (resumption off).
pub fn session_tickets(
    t: &super::config::TlsConfig,
) -> Result<Option<Arc<SessionTickets>>, TlsMaterialError> {
    let lifetime = t.session_ticket_lifetime.get();
    if lifetime.is_zero() {
        return Ok(None);
    }
    SessionTickets::new(lifetime)
        .map(|t| Some(Arc::new(t)))
        .map_err(TlsMaterialError::Tickets)
}

/// A listener's rustls config: TLS 1.2 and 1.3 only, the certificate from
/// `cert` (hot-reloaded, with its OCSP staple), client certificates
/// verified against the listener's `client_ca` when configured, ALPN `h2`
/// (when `http2`) then `http/1.1`. Sessions resume only by `tickets`
/// (stateless, lifetime enforced); with none, not at all. Session-ID
/// resumption is off: rustls's session cache has no expiry.
pub fn server_config(
    t: &super::config::TlsConfig,
    cert: Arc<ReloadingCert>,
    tickets: Option<Arc<SessionTickets>>,
) -> Result<Arc<rustls::ServerConfig>, TlsMaterialError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsMaterialError::BadKey {
            key: t.key.display().to_string(),
            reason: e.to_string(),
        })?;
    let builder = match &t.client_ca {
        Some(ca) => {
            let bad = |e: String| TlsMaterialError::BadCa {
                path: ca.display().to_string(),
                reason: e,
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in load_ca_bundle(ca)? {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = match t.client_auth {
                super::config::ClientAuth::Optional => v.allow_unauthenticated(),
                super::config::ClientAuth::Required => v,
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| bad(e.to_string()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    match tickets {
        Some(tickets) => config.ticketer = tickets,
        None => config.send_tls13_tickets = 0,
    }
    config.alpn_protocols = if t.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// A self-signed certificate for `phigate demo` and tests, written as PEM files.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
}

impl SelfSigned {
    /// A fresh ECDSA P-256 key and certificate for the given names (DNS names or IPs).
    pub fn generate(names: &[&str]) -> anyhow::Result<SelfSigned> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names)?;
        Ok(SelfSigned {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        })
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, &self.cert_pem)?;
        write_private(&key, self.key_pem.as_bytes())?;
        Ok((cert, key))
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_swaps_valid_and_refuses_broken() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = SelfSigned::generate(&["localhost"])
            .unwrap()
            .write(dir.path())
            .unwrap();
        let rc = ReloadingCert::load(&c, &k, None).unwrap();
        assert_eq!(rc.check(), ReloadOutcome::Unchanged);
        let before = rc.current.load_full().bare.clone();
        assert!(before.ocsp.is_none());

        // A mismatched pair: new cert, old key.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let other = SelfSigned::generate(&["localhost"]).unwrap();
        std::fs::write(&c, &other.cert_pem).unwrap();
        assert!(matches!(rc.check(), ReloadOutcome::Rejected(_)));
        assert!(Arc::ptr_eq(&before, &rc.current.load_full().bare));

        std::fs::write(&k, &other.key_pem).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Touch the cert too so the stamp differs from the rejected one.
        std::fs::write(&c, &other.cert_pem).unwrap();
        assert_eq!(rc.check(), ReloadOutcome::Reloaded);
        assert!(!Arc::ptr_eq(&before, &rc.current.load_full().bare));
    }

    /// The OCSP response a handshake at `now` would get.
    fn stapled(rc: &ReloadingCert, now: SystemTime) -> Option<Vec<u8>> {
        rc.current.load().at(now).ocsp.clone()
    }

    #[test]
    fn the_staple_reloads_with_the_certificate_and_goes_when_stale() {
        use crate::server::ocsp::tests::{chain, response, spec, Spec};
        let dir = tempfile::tempdir().unwrap();
        let (c, k, o) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("ocsp.der"),
        );
        let ch = chain();
        std::fs::write(&c, &ch.chain_pem).unwrap();
        std::fs::write(&k, &ch.key_pem).unwrap();
        let good = response(&ch, spec());
        std::fs::write(&o, &good).unwrap();
        let rc = ReloadingCert::load(&c, &k, Some(&o)).unwrap();
        let now = SystemTime::now();
        assert_eq!(stapled(&rc, now).as_deref(), Some(&good[..]));

        // A response about another certificate is refused; the current
        // staple, still good for the same certificate, stays.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&o, response(&chain(), spec())).unwrap();
        let outcome = rc.check();
        assert!(
            matches!(&outcome, ReloadOutcome::StapleRefused(e) if e.contains("another certificate")),
            "{outcome:?}"
        );
        assert_eq!(stapled(&rc, now).as_deref(), Some(&good[..]));

        // A fresh one for this certificate is picked up.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = SystemTime::now();
        let fresher = Spec {
            next_update: Some(now + std::time::Duration::from_secs(3600)),
            ..spec()
        };
        let fresher_der = response(&ch, fresher);
        std::fs::write(&o, &fresher_der).unwrap();
        assert_eq!(rc.check(), ReloadOutcome::Reloaded);
        assert_eq!(stapled(&rc, now).as_deref(), Some(&fresher_der[..]));

        // Past its nextUpdate no handshake gets it, even before the reload
        // timer notices; then it is dropped for good.
        let later = now + std::time::Duration::from_secs(3601);
        assert!(stapled(&rc, later).is_none());
        assert_eq!(rc.check_at(later), ReloadOutcome::StapleExpired);
        assert!(stapled(&rc, now).is_none());
        assert_eq!(rc.current.load().bare.cert.len(), 2);
        assert_eq!(rc.check_at(later), ReloadOutcome::Unchanged);

        // A renewed certificate whose response is not refreshed yet is
        // served, without a staple.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&o, &fresher_der).unwrap();
        let renewed = chain();
        std::fs::write(&c, &renewed.chain_pem).unwrap();
        std::fs::write(&k, &renewed.key_pem).unwrap();
        assert!(matches!(rc.check(), ReloadOutcome::StapleRefused(_)));
        assert_eq!(rc.current.load().bare.cert, load_certs(&c).unwrap());
        assert!(stapled(&rc, now).is_none());

        // An OCSP file that is missing at start: served without a staple,
        // and a renewed certificate is still picked up.
        std::fs::remove_file(&o).unwrap();
        let rc = ReloadingCert::load(&c, &k, Some(&o)).unwrap();
        assert!(stapled(&rc, SystemTime::now()).is_none());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = chain();
        std::fs::write(&c, &again.chain_pem).unwrap();
        std::fs::write(&k, &again.key_pem).unwrap();
        assert!(matches!(rc.check(), ReloadOutcome::StapleRefused(_)));
        assert_eq!(rc.current.load().bare.cert, load_certs(&c).unwrap());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "").unwrap();
        let e = load_certs(&p).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = load_ca_bundle(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
