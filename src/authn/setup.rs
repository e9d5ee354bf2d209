//! Builds the [`Authenticator`](super::Authenticator) from validated config.

use super::bearer::{BearerVerifier, Issuer, IssuerRules};
use super::config::{BrowserConfig, IdentityHeadersConfig, IdentityProviderConfig};
use super::jwks::{CachePolicy, HttpJwks, JwksCache};
use super::{ApiKeyStore, AssertionSigner, Authenticator, LogSink};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Parses a JWS algorithm name allowed for a JWKS issuer (no HMAC, no `none`).
pub fn asymmetric_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    let alg = jsonwebtoken::Algorithm::from_str(name).ok()?;
    super::jwks::family_of(alg).map(|_| alg)
}

/// An HTTP client for talking to identity providers.
pub fn idp_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, SetupError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("phigate");
    if let Some(path) = ca_file {
        let certs =
            crate::server::tls::load_ca_bundle(path).map_err(|e| SetupError(e.to_string()))?;
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            let cert = reqwest::Certificate::from_der(&c).map_err(|e| SetupError(e.to_string()))?;
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| SetupError(format!("HTTP client: {e}")))
}

/// Authentication's parts of the configuration.
#[derive(Clone)]
pub struct AuthnConfig<'a> {
    /// Every listener's `tls.client_ca` file: service certificates are
    /// bound to the CA that verifies them.
    pub listener_cas: Vec<std::path::PathBuf>,
    pub identity_providers: &'a [IdentityProviderConfig],
    pub api_keys: &'a [super::ApiKeyConfig],
    pub service_certificates: &'a [super::mtls::ServiceCertificateConfig],
    pub identity_headers: &'a IdentityHeadersConfig,
    pub browser: Option<&'a BrowserConfig>,
}

pub fn build(config: AuthnConfig<'_>) -> Result<Arc<Authenticator>, SetupError> {
    build_with_events(config, Arc::new(LogSink))
}

/// [`build`], with authentication events going to `events` (the audit
/// trail when one is configured).
pub fn build_with_events(
    config: AuthnConfig<'_>,
    events: Arc<dyn super::AuthEventSink>,
) -> Result<Arc<Authenticator>, SetupError> {
    let mut issuers = Vec::new();
    let mut mfa = Vec::new();
    for idp in config.identity_providers {
        let client = idp_client(idp.ca_file.as_deref())?;
        let source = HttpJwks::new(client, &idp.issuer, idp.jwks_uri.clone());
        let keys = JwksCache::new(
            Box::new(source),
            CachePolicy {
                ttl: idp.jwks_cache_ttl.get(),
                min_refresh_interval: idp.jwks_min_refresh_interval.get(),
                max_stale: idp.jwks_max_stale.get(),
            },
        );
        let algorithms = idp
            .algorithms
            .iter()
            .map(|a| {
                asymmetric_algorithm(a).ok_or_else(|| {
                    SetupError(format!(
                        "identity provider {}: algorithm {a} not allowed",
                        idp.name
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        issuers.push(Arc::new(Issuer {
            name: idp.name.clone(),
            rules: IssuerRules {
                issuer: idp.issuer.clone(),
                audiences: idp.audiences.clone(),
                algorithms,
                leeway: idp.leeway.get(),
                required_typ: idp.required_typ.clone(),
                claims: idp.claims.clone(),
                mfa: idp.mfa.clone(),
            },
            keys,
        }));
        mfa.push((idp.name.clone(), idp.mfa.clone()));
    }
    let bearer = (!issuers.is_empty()).then(|| BearerVerifier::new(issuers, 100_000));
    let api_keys = ApiKeyStore::new(config.api_keys).map_err(SetupError)?;
    let ih = config.identity_headers;
    let signer = match &ih.assertion_key {
        Some(secret) => {
            let pem = secret
                .resolve()
                .map_err(|e| SetupError(format!("identity_headers.assertion_key: {e}")))?;
            AssertionSigner::from_pem(&ih.assertion_issuer, &pem)
        }
        None => AssertionSigner::generate(&ih.assertion_issuer),
    }
    .map_err(|e| SetupError(e.to_string()))?;
    let browser = match config.browser {
        Some(b) => Some(browser_sso(b, config.identity_providers)?),
        None => None,
    };
    let mut authn = Authenticator::new(bearer, api_keys, signer, events, mfa);
    authn.browser = browser;
    authn.certificates =
        super::mtls::CertificateMap::new(config.service_certificates, &config.listener_cas);
    Ok(Arc::new(authn))
}

fn browser_sso(
    b: &BrowserConfig,
    identity_providers: &[IdentityProviderConfig],
) -> Result<super::browser::BrowserSso, SetupError> {
    use super::browser::{BrowserSettings, BrowserSso};
    let idp = identity_providers
        .iter()
        .find(|p| p.name == b.identity_provider)
        .ok_or_else(|| {
            SetupError(format!(
                "browser: no identity provider {:?}",
                b.identity_provider
            ))
        })?;
    let secret = b
        .client_secret
        .resolve()
        .map_err(|e| SetupError(format!("browser.client_secret: {e}")))?;
    let keys = b
        .cookie_keys
        .iter()
        .map(|k| k.resolve())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError(format!("browser.cookie_keys: {e}")))?;
    let keyring = if keys.is_empty() {
        super::cookie::Keyring::random()
    } else {
        super::cookie::Keyring::from_base64(&keys)
            .map_err(|e| SetupError(format!("browser.cookie_keys: {e}")))?
    };
    let store = Arc::new(super::session::MemoryStore::new(
        b.max_sessions,
        b.session_absolute_timeout.get(),
    ));
    Ok(BrowserSso::new(
        BrowserSettings {
            issuer: idp.issuer.clone(),
            client_id: b.client_id.clone(),
            client_secret: secret,
            redirect_uri: b.redirect_uri.clone(),
            post_logout_redirect_uri: b.post_logout_redirect_uri.clone(),
            scopes: b.scopes.clone(),
            cookie_name: b.cookie_name.clone(),
            refresh_interval: b.refresh_interval.get(),
            claims: idp.claims.clone(),
            mfa: idp.mfa.clone(),
        },
        idp_client(idp.ca_file.as_deref())?,
        store,
        keyring,
    ))
}
