//! An issuer's signing keys: discovered, fetched, cached, refreshed.
//!
//! Keys come from the issuer's JWKS (found by OIDC discovery). An unknown
//! `kid` triggers a refresh, at most one at a time and at most once per
//! `min_refresh_interval`, so a flood of forged kids cannot hammer the IdP.
//! When the IdP is unreachable the last keys keep serving, with a warning,
//! for at most `max_stale`; after that verification fails closed.

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The key family a JWS algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    Ec,
    Okp,
}

/// The family of an asymmetric algorithm; `None` for HMAC (never accepted
/// for an issuer whose keys come from a JWKS).
pub fn family_of(alg: Algorithm) -> Option<KeyFamily> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(KeyFamily::Rsa),
        ES256 | ES384 => Some(KeyFamily::Ec),
        EdDSA => Some(KeyFamily::Okp),
        // HMAC, and anything a future version adds: not for JWKS issuers.
        _ => None,
    }
}

/// One verification key.
pub struct VerificationKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// The JWK's own `alg`, when it states one: the token must use exactly it.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl VerificationKey {
    fn from_jwk(jwk: &Jwk) -> Option<VerificationKey> {
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
            AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Okp,
            // Symmetric keys in a public JWKS are a misconfiguration: skip
            // them, and any key type a future version adds.
            _ => return None,
        };
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
        {
            return None;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => Some(signing_alg(a)?),
        };
        Some(VerificationKey {
            kid: jwk.common.key_id.clone(),
            family,
            alg,
            key: DecodingKey::from_jwk(jwk).ok()?,
        })
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        family_of(alg) == Some(self.family) && self.alg.is_none_or(|a| a == alg)
    }
}

fn signing_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    Some(match a {
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A fetched key set.
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerificationKey>>,
    without_kid: Vec<Arc<VerificationKey>>,
    fetched_at: Instant,
}

impl KeySet {
    pub fn from_jwks(set: &JwkSet, fetched_at: Instant) -> KeySet {
        let mut by_kid = HashMap::new();
        let mut without_kid = Vec::new();
        for k in set.keys.iter().filter_map(VerificationKey::from_jwk) {
            let k = Arc::new(k);
            match &k.kid {
                Some(kid) => {
                    by_kid.insert(kid.clone(), k);
                }
                None => without_kid.push(k),
            }
        }
        KeySet {
            by_kid,
            without_kid,
            fetched_at,
        }
    }

    /// The key for a token header: by `kid`, or the only key of the right
    /// family when the token has no `kid`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<VerificationKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).filter(|k| k.accepts(alg)).cloned(),
            None => {
                let mut fitting = self
                    .by_kid
                    .values()
                    .chain(self.without_kid.iter())
                    .filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where keys come from. The HTTP adapter is [`HttpJwks`]; tests use fakes.
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<JwkSet, String>;
}

/// Freshness rules for a cache.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Keys younger than this are used without asking the IdP.
    pub ttl: Duration,
    /// Minimum time between two fetches (unknown-kid floods, IdP outages).
    pub min_refresh_interval: Duration,
    /// How long keys may be used past `ttl` while the IdP cannot be reached.
    pub max_stale: Duration,
}

/// Why no key could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    #[error("no key with that id for this algorithm")]
    NotFound,
    #[error("the issuer's keys cannot be fetched and none are cached fresh enough")]
    Unavailable,
}

/// The cached keys of one issuer.
pub struct JwksCache {
    source: Box<dyn JwksSource>,
    policy: CachePolicy,
    current: ArcSwapOption<KeySet>,
    refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksCache {
    pub fn new(source: Box<dyn JwksSource>, policy: CachePolicy) -> JwksCache {
        JwksCache {
            source,
            policy,
            current: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// The key for (`kid`, `alg`), refreshing when it is unknown or the set is old.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerificationKey>, KeyLookupError> {
        let now = Instant::now();
        if let Some(set) = self.current.load_full() {
            let fresh = now.duration_since(set.fetched_at) < self.policy.ttl;
            if fresh {
                if let Some(k) = set.find(kid, alg) {
                    return Ok(k);
                }
            }
        }
        let set = self.refresh(now).await;
        match set {
            Some(set) => set.find(kid, alg).ok_or(KeyLookupError::NotFound),
            None => Err(KeyLookupError::Unavailable),
        }
    }

    /// Whether keys young enough to verify with are held now.
    pub fn usable(&self) -> bool {
        self.current.load().as_ref().is_some_and(|set| {
            Instant::now().saturating_duration_since(set.fetched_at)
                < self.policy.ttl + self.policy.max_stale
        })
    }

    /// Fetches keys now (unless tried too recently), so readiness and the
    /// first request do not wait on the identity provider.
    pub async fn warm(&self) {
        let _ = self.refresh(Instant::now()).await;
    }

    /// Fetches new keys unless one was fetched (or tried) too recently;
    /// returns the set to use now, if any is still usable.
    async fn refresh(&self, now: Instant) -> Option<Arc<KeySet>> {
        let mut last_attempt = self.refresh.lock().await;
        // Another task may have refreshed while this one waited.
        let recently = last_attempt
            .is_some_and(|t| now.saturating_duration_since(t) < self.policy.min_refresh_interval);
        if !recently {
            *last_attempt = Some(Instant::now());
            match self.source.fetch().await {
                Ok(jwks) => {
                    let set = Arc::new(KeySet::from_jwks(&jwks, Instant::now()));
                    tracing::info!(keys = set.len(), "issuer keys fetched");
                    self.current.store(Some(set.clone()));
                    return Some(set);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fetch issuer keys; using cached keys if young enough");
                }
            }
        }
        let set = self.current.load_full()?;
        let age = Instant::now().saturating_duration_since(set.fetched_at);
        if age < self.policy.ttl + self.policy.max_stale {
            Some(set)
        } else {
            tracing::error!(
                age_secs = age.as_secs(),
                "issuer keys too old to use; rejecting tokens"
            );
            None
        }
    }
}

/// JWKS over HTTPS (or HTTP on loopback when explicitly allowed), found by
/// OIDC discovery on first use unless configured.
pub struct HttpJwks {
    pub client: reqwest::Client,
    pub issuer: String,
    pub jwks_uri: tokio::sync::OnceCell<String>,
}

impl HttpJwks {
    pub fn new(client: reqwest::Client, issuer: &str, jwks_uri: Option<String>) -> HttpJwks {
        HttpJwks {
            client,
            issuer: issuer.to_string(),
            jwks_uri: match jwks_uri {
                Some(u) => tokio::sync::OnceCell::new_with(Some(u)),
                None => tokio::sync::OnceCell::new(),
            },
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, uri: &str) -> Result<T, String> {
        let resp = self
            .client
            .get(uri)
            .send()
            .await
            .map_err(|e| format!("GET {uri}: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("GET {uri}: status {}", resp.status()));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {uri}: {}", e.without_url()))?;
        if bytes.len() > 512 * 1024 {
            return Err(format!("GET {uri}: larger than 512 KiB"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{uri}: {e}"))
    }

    /// OIDC discovery: the document's `issuer` must be exactly ours.
    async fn discover(&self) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer != self.issuer {
            return Err(format!(
                "discovery document names issuer {:?}, expected {:?}",
                d.issuer, self.issuer
            ));
        }
        Ok(d.jwks_uri)
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, String> {
        let uri = self.jwks_uri.get_or_try_init(|| self.discover()).await?;
        self.get_json(uri).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    pub(crate) struct Fake {
        pub set: Mutex<Result<JwkSet, String>>,
        pub calls: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl JwksSource for Fake {
        async fn fetch(&self) -> Result<JwkSet, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.set.lock().unwrap().clone()
        }
    }

    fn ec_jwks(kid: &str) -> JwkSet {
        serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }]}))
        .unwrap()
    }

    fn cache(
        calls: Arc<AtomicUsize>,
        set: Result<JwkSet, String>,
        policy: CachePolicy,
    ) -> JwksCache {
        JwksCache::new(
            Box::new(Fake {
                set: Mutex::new(set),
                calls,
            }),
            policy,
        )
    }

    const POLICY: CachePolicy = CachePolicy {
        ttl: Duration::from_secs(300),
        min_refresh_interval: Duration::from_secs(30),
        max_stale: Duration::from_secs(3600),
    };

    #[tokio::test]
    async fn unknown_kid_flood_fetches_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = cache(calls.clone(), Ok(ec_jwks("k1")), POLICY);
        assert!(c.key(Some("k1"), Algorithm::ES256).await.is_ok());
        for i in 0..100 {
            let kid = format!("forged-{i}");
            assert_eq!(
                c.key(Some(&kid), Algorithm::ES256).await.err(),
                Some(KeyLookupError::NotFound)
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn usable_means_keys_young_enough_to_verify_with() {
        let calls = Arc::new(AtomicUsize::new(0));
        let policy = CachePolicy {
            ttl: Duration::from_millis(10),
            min_refresh_interval: Duration::from_millis(0),
            max_stale: Duration::from_millis(50),
        };
        let up = cache(calls.clone(), Ok(ec_jwks("k1")), policy);
        assert!(!up.usable(), "nothing fetched yet");
        up.warm().await;
        assert!(up.usable());
        let down = cache(calls, Err("connection refused".into()), policy);
        down.warm().await;
        assert!(!down.usable(), "an IdP that never answered leaves no keys");
        down.current.store(up.current.load_full());
        assert!(down.usable());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!down.usable(), "past ttl + max_stale the keys are gone");
    }

    #[tokio::test]
    async fn key_family_and_alg_must_match() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = cache(calls, Ok(ec_jwks("k1")), POLICY);
        assert!(c.key(Some("k1"), Algorithm::ES256).await.is_ok());
        assert!(c.key(Some("k1"), Algorithm::RS256).await.is_err());
        assert!(c.key(Some("k1"), Algorithm::HS256).await.is_err());
        assert!(c.key(None, Algorithm::ES256).await.is_ok());
    }

    #[tokio::test]
    async fn idp_down_serves_stale_within_bound() {
        let calls = Arc::new(AtomicUsize::new(0));
        let policy = CachePolicy {
            ttl: Duration::from_millis(10),
            min_refresh_interval: Duration::from_millis(0),
            max_stale: Duration::from_millis(200),
        };
        let fake = Fake {
            set: Mutex::new(Ok(ec_jwks("k1"))),
            calls: calls.clone(),
        };
        let c = JwksCache::new(Box::new(fake), policy);
        assert!(c.key(Some("k1"), Algorithm::ES256).await.is_ok());
        // The IdP goes down.
        // (Swap the source's answer through a second cache sharing nothing:
        // simplest is to rebuild with an erroring source and the old set.)
        let down = JwksCache::new(
            Box::new(Fake {
                set: Mutex::new(Err("connection refused".into())),
                calls: calls.clone(),
            }),
            policy,
        );
        down.current.store(c.current.load_full());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            down.key(Some("k1"), Algorithm::ES256).await.is_ok(),
            "stale keys serve"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            down.key(Some("k1"), Algorithm::ES256).await.err(),
            Some(KeyLookupError::Unavailable),
            "too stale: fail closed"
        );
    }

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}))
        .unwrap();
        assert!(KeySet::from_jwks(&set, Instant::now()).is_empty());
    }
}
