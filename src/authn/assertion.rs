//! The identity assertion upstreams can verify: a short-lived ES256 JWT in
//! `X-Phigate-Assertion`, with its public key at `/.phigate/jwks.json`.
//!
//! Plain identity headers are only as trustworthy as the network between
//! phigate and the app; a signed assertion is not. Signing costs tens of
//! microseconds, so callers reuse an assertion (the proxy caches it with
//! the other identity headers per credential) until shortly before `exp`.

use super::principal::Principal;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::time::Duration;

/// How long an assertion is valid.
pub const ASSERTION_TTL: Duration = Duration::from_secs(120);
/// Reuse an assertion only while more than this is left of it.
pub const REUSE_MARGIN: u64 = 60;

/// A P-256 signing key with its public JWK set (RFC 7638 thumbprint as `kid`).
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwks: serde_json::Value,
}

impl SigningKey {
    pub fn generate() -> Result<SigningKey, SignerError> {
        let kp = rcgen::KeyPair::generate().map_err(|e| SignerError::Key(e.to_string()))?;
        Self::from_key_pair(&kp)
    }

    pub fn from_key_pair(kp: &rcgen::KeyPair) -> Result<SigningKey, SignerError> {
        let public = kp.public_key_raw();
        if public.len() != 65 || public[0] != 4 {
            return Err(SignerError::Key(
                "unexpected P-256 public key encoding".into(),
            ));
        }
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let (x, y) = (b64(&public[1..33]), b64(&public[33..65]));
        let kid = {
            use sha2::Digest;
            let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            b64(&sha2::Sha256::digest(canonical.as_bytes()))
        };
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": x, "y": y,
        }]});
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_ec_der(&kp.serialize_der()),
            jwks,
        })
    }

    /// Signs `claims` as an ES256 JWT with this key's `kid` and `typ`.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Option<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).ok()
    }
}

/// Signs assertions with one P-256 key.
pub struct AssertionSigner {
    issuer: String,
    key: SigningKey,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    /// The identity provider (or service method) that vouched for `sub`.
    idp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    roles: &'a [String],
    amr: &'a [String],
    mfa: bool,
    method: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("assertion key: {0}")]
    Key(String),
}

impl AssertionSigner {
    /// A signer with a fresh key (one per process). Replicas behind one load
    /// balancer should share a key file instead, see [`Self::from_pem`].
    pub fn generate(issuer: &str) -> Result<AssertionSigner, SignerError> {
        let kp = rcgen::KeyPair::generate().map_err(|e| SignerError::Key(e.to_string()))?;
        Self::from_key_pair(issuer, &kp)
    }

    /// A signer from a PKCS#8 PEM P-256 private key.
    pub fn from_pem(issuer: &str, pem: &str) -> Result<AssertionSigner, SignerError> {
        let kp = rcgen::KeyPair::from_pem(pem).map_err(|e| SignerError::Key(e.to_string()))?;
        if !kp.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err(SignerError::Key("the key must be ECDSA P-256".into()));
        }
        Self::from_key_pair(issuer, &kp)
    }

    fn from_key_pair(issuer: &str, kp: &rcgen::KeyPair) -> Result<AssertionSigner, SignerError> {
        Ok(AssertionSigner {
            issuer: issuer.to_string(),
            key: SigningKey::from_key_pair(kp)?,
        })
    }

    /// The public key set for `/.phigate/jwks.json`.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.key.jwks
    }

    /// A signed assertion about `principal` for `audience`, and its `exp`.
    pub fn assertion(
        &self,
        principal: &Principal,
        audience: &str,
        now: u64,
    ) -> Option<(String, u64)> {
        let exp = now + ASSERTION_TTL.as_secs();
        let claims = Claims {
            iss: &self.issuer,
            aud: audience,
            sub: &principal.id,
            iat: now,
            exp,
            idp: &principal.issuer,
            name: principal.display_name.as_deref(),
            email: principal.email.as_deref(),
            roles: &principal.roles,
            amr: &principal.amr,
            mfa: principal.mfa,
            method: principal.method.as_str(),
        };
        Some((self.key.sign("JWT", &claims)?, exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::AuthMethod;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn assertions_verify_against_published_jwks() {
        let signer = AssertionSigner::generate("phigate").unwrap();
        let mut p = Principal::service(
            "alice",
            "https://idp",
            AuthMethod::Bearer,
            vec!["nurse".into()],
        );
        p.mfa = true;
        let now = jsonwebtoken::get_current_timestamp();
        let (a, exp) = signer.assertion(&p, "ehr", now).unwrap();
        assert_eq!(exp, now + ASSERTION_TTL.as_secs());

        let jwks: JwkSet = serde_json::from_value(signer.jwks().clone()).unwrap();
        let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["ehr"]);
        v.set_issuer(&["phigate"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&a, &key, &v).unwrap();
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["roles"][0], "nurse");
        assert_eq!(data.claims["mfa"], true);
        assert_eq!(
            data.header.kid.as_deref(),
            jwks.keys[0].common.key_id.as_deref()
        );
    }

    #[test]
    fn non_p256_keys_are_refused() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(AssertionSigner::from_pem("phigate", &kp.serialize_pem()).is_err());
    }
}
