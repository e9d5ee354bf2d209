//! Service identities from TLS client certificates.
//!
//! The listener verifies the chain against its `client_ca` during the
//! handshake; this module only names what was verified ([`ClientCertIdentity`])
//! and maps it to a service principal by exact subject CN, DNS SAN or URI SAN
//! from `[[service_certificates]]`. A verified but unlisted certificate is
//! refused: being signed by the CA is not the same as being allowed in.

use super::principal::{AuthMethod, Principal};
use serde::Deserialize;
use std::sync::Arc;

/// What a verified client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertIdentity {
    pub subject_cn: Option<String>,
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
    /// SHA-256 of the certificate (hex), for events and the assertion cache.
    pub fingerprint: [u8; 32],
    /// The CA file (a listener's `tls.client_ca`) that verified it: a
    /// certificate maps to a principal only through the CA its entry names.
    pub verified_by: Option<std::sync::Arc<str>>,
}

impl ClientCertIdentity {
    /// Reads a DER certificate; `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<ClientCertIdentity> {
        use sha2::Digest;
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        // rustls checked the validity period at the full handshake; a
        // resumed session carries the certificate on without a look, and
        // resumption can chain. Checked on every connection, an expired
        // certificate is no identity, however the session was had.
        if !cert.validity().is_valid() {
            return None;
        }
        let subject_cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(String::from);
        let (mut san_dns, mut san_uri) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => san_dns.push(d.to_string()),
                    GeneralName::URI(u) => san_uri.push(u.to_string()),
                    _ => {}
                }
            }
        }
        Some(ClientCertIdentity {
            verified_by: None,
            subject_cn,
            san_dns,
            san_uri,
            fingerprint: sha2::Sha256::digest(der).into(),
        })
    }
}

/// One accepted service certificate (exactly one matcher).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCertificateConfig {
    /// The service principal's id.
    pub id: String,
    /// Match the certificate's subject common name exactly.
    pub subject_cn: Option<String>,
    /// Match a DNS subject alternative name exactly.
    pub san_dns: Option<String>,
    /// Match a URI subject alternative name exactly (e.g. a SPIFFE id).
    pub san_uri: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The CA (a listener's `tls.client_ca` file) whose certificates this
    /// entry accepts: the same name under another listener's CA is someone
    /// else. Required when listeners trust more than one CA; with one, it
    /// defaults to that one.
    pub client_ca: Option<std::path::PathBuf>,
}

impl ServiceCertificateConfig {
    /// How many matchers are set (must be exactly one).
    pub fn matchers(&self) -> usize {
        [&self.subject_cn, &self.san_dns, &self.san_uri]
            .iter()
            .filter(|m| m.is_some())
            .count()
    }

    fn matches(&self, c: &ClientCertIdentity) -> bool {
        match (&self.subject_cn, &self.san_dns, &self.san_uri) {
            (Some(cn), None, None) => c.subject_cn.as_deref() == Some(cn.as_str()),
            (None, Some(dns), None) => c.san_dns.iter().any(|d| d == dns),
            (None, None, Some(uri)) => c.san_uri.iter().any(|u| u == uri),
            _ => false,
        }
    }
}

/// The configured service certificates, each bound to the CA it trusts.
#[derive(Default)]
pub struct CertificateMap {
    entries: Vec<(ServiceCertificateConfig, Option<String>, Arc<Principal>)>,
}

impl CertificateMap {
    /// `listener_cas` are the listeners' `client_ca` files: an entry that
    /// names none is bound to the only one, or to nothing when there are
    /// several (it then matches no certificate).
    pub fn new(
        configs: &[ServiceCertificateConfig],
        listener_cas: &[std::path::PathBuf],
    ) -> CertificateMap {
        let mut distinct: Vec<String> = listener_cas
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        distinct.sort();
        distinct.dedup();
        CertificateMap {
            entries: configs
                .iter()
                .map(|c| {
                    let p = Principal::service(
                        &c.id,
                        "mtls",
                        AuthMethod::ClientCertificate,
                        c.roles.clone(),
                    );
                    let ca = match &c.client_ca {
                        Some(ca) => Some(ca.display().to_string()),
                        None if distinct.len() == 1 => distinct.first().cloned(),
                        None => None,
                    };
                    (c.clone(), ca, Arc::new(p))
                })
                .collect(),
        }
    }

    /// The service principal for a verified certificate, if it is listed
    /// under the CA that verified it.
    pub fn principal(&self, cert: &ClientCertIdentity) -> Option<Arc<Principal>> {
        let by = cert.verified_by.as_deref()?;
        self.entries
            .iter()
            .find(|(c, ca, _)| ca.as_deref() == Some(by) && c.matches(cert))
            .map(|(_, _, p)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_outside_its_validity_is_no_identity() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["gw.devices.test".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let expired = params.self_signed(&key).unwrap();
        assert!(ClientCertIdentity::from_der(expired.der()).is_none());
        params.not_before = rcgen::date_time_ymd(2090, 1, 1);
        params.not_after = rcgen::date_time_ymd(2091, 1, 1);
        let future = params.self_signed(&key).unwrap();
        assert!(ClientCertIdentity::from_der(future.der()).is_none());
    }

    #[test]
    fn parses_and_maps_exactly() {
        let mut params =
            rcgen::CertificateParams::new(vec!["gw.devices.test".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rpm-gateway");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let mut id = ClientCertIdentity::from_der(cert.der()).unwrap();
        id.verified_by = Some("/ca/devices.pem".into());
        assert_eq!(id.subject_cn.as_deref(), Some("rpm-gateway"));
        assert_eq!(id.san_dns, ["gw.devices.test"]);

        let entry = |cn: Option<&str>, dns: Option<&str>| ServiceCertificateConfig {
            id: "rpm-gateway".into(),
            subject_cn: cn.map(String::from),
            san_dns: dns.map(String::from),
            san_uri: None,
            roles: vec!["device_gateway".into()],
            client_ca: None,
        };
        let one = [std::path::PathBuf::from("/ca/devices.pem")];
        assert!(
            CertificateMap::new(&[entry(Some("rpm-gateway"), None)], &one)
                .principal(&id)
                .is_some()
        );
        assert!(
            CertificateMap::new(&[entry(None, Some("gw.devices.test"))], &one)
                .principal(&id)
                .is_some()
        );
        assert!(CertificateMap::new(&[entry(Some("rpm"), None)], &one)
            .principal(&id)
            .is_none());
        assert!(
            CertificateMap::new(&[entry(None, Some("devices.test"))], &one)
                .principal(&id)
                .is_none()
        );
        // The same name verified by another listener's CA is someone else.
        let two = [
            std::path::PathBuf::from("/ca/devices.pem"),
            std::path::PathBuf::from("/ca/partners.pem"),
        ];
        let mut partner = id.clone();
        partner.verified_by = Some("/ca/partners.pem".into());
        let bound = ServiceCertificateConfig {
            client_ca: Some("/ca/devices.pem".into()),
            ..entry(Some("rpm-gateway"), None)
        };
        let map = CertificateMap::new(&[bound], &two);
        assert!(map.principal(&id).is_some());
        assert!(map.principal(&partner).is_none());
        // Unbound among several CAs: matches nothing.
        assert!(
            CertificateMap::new(&[entry(Some("rpm-gateway"), None)], &two)
                .principal(&id)
                .is_none()
        );
        assert_eq!(entry(Some("a"), Some("b")).matchers(), 2);
    }
}
