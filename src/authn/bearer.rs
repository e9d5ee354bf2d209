//! Bearer access tokens (JWT): verified against the issuer's keys and rules.
//!
//! The token's own header chooses nothing it should not: the algorithm must
//! be on the issuer's allowlist and fit the key's type (so no `none`, and no
//! HMAC "signed" with an RSA public key), and `jku`, `x5u` and embedded
//! `jwk` headers are never used to find keys. Verified tokens are cached by
//! the SHA-256 of the token and re-checked for expiry on every use.

use super::jwks::{family_of, JwksCache, KeyLookupError};
use super::mfa::MfaRules;
use super::principal::{AuthMethod, ClaimMapping, Principal};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a bearer token was refused. The label goes to metrics and the
/// authentication event; the client only learns `invalid_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token is too large")]
    TooLarge,
    #[error("token's issuer is not configured")]
    UnknownIssuer,
    #[error("token's algorithm is not allowed for its issuer")]
    AlgorithmNotAllowed,
    #[error("no key of the issuer matches the token")]
    KeyNotFound,
    #[error("issuer keys unavailable")]
    KeysUnavailable,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token is for another audience")]
    WrongAudience,
    #[error("token type is not accepted")]
    WrongType,
    #[error("token lacks a required claim")]
    MissingClaim,
}

impl TokenRejection {
    pub fn reason(self) -> &'static str {
        use TokenRejection::*;
        match self {
            Malformed => "malformed",
            TooLarge => "too_large",
            UnknownIssuer => "unknown_issuer",
            AlgorithmNotAllowed => "algorithm_not_allowed",
            KeyNotFound => "key_not_found",
            KeysUnavailable => "keys_unavailable",
            BadSignature => "bad_signature",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            IssuedInFuture => "issued_in_future",
            WrongAudience => "wrong_audience",
            WrongType => "wrong_type",
            MissingClaim => "missing_claim",
        }
    }
}

/// The verification rules of one issuer.
pub struct IssuerRules {
    /// Exactly the `iss` value tokens carry.
    pub issuer: String,
    /// Accepted `aud` values (any one must be present).
    pub audiences: Vec<String>,
    /// Accepted signature algorithms; never HMAC, never `none`.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Required `typ` header (e.g. `at+jwt`), if any.
    pub required_typ: Option<String>,
    pub claims: ClaimMapping,
    pub mfa: MfaRules,
}

/// One issuer: its rules and its keys.
pub struct Issuer {
    pub name: String,
    pub rules: IssuerRules,
    pub keys: JwksCache,
}

/// A verified token's principal and validity window.
#[derive(Debug)]
struct Verified {
    principal: Arc<Principal>,
    exp: u64,
    nbf: Option<u64>,
    leeway: u64,
}

/// Verifies bearer tokens for every configured issuer.
pub struct BearerVerifier {
    issuers: Vec<Arc<Issuer>>,
    cache: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

impl BearerVerifier {
    pub fn new(issuers: Vec<Arc<Issuer>>, cache_capacity: u64) -> BearerVerifier {
        BearerVerifier {
            issuers,
            cache: moka::sync::Cache::builder()
                .max_capacity(cache_capacity)
                // Entries are re-checked against `exp` on every hit; this
                // only bounds how long a revoked-but-unexpired key's tokens
                // could be served from memory after the key disappears.
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }

    /// The configured name of the issuer whose `iss` is `iss`.
    /// Each issuer's name and whether its keys are usable now.
    pub fn key_status(&self) -> Vec<(String, bool)> {
        self.issuers
            .iter()
            .map(|i| (i.name.clone(), i.keys.usable()))
            .collect()
    }

    /// Fetches keys for every issuer that has none usable.
    pub async fn warm_keys(&self) {
        for i in &self.issuers {
            if !i.keys.usable() {
                i.keys.warm().await;
            }
        }
    }

    pub fn issuer_name(&self, iss: &str) -> Option<&str> {
        self.issuers
            .iter()
            .find(|i| i.rules.issuer == iss)
            .map(|i| i.name.as_str())
    }

    /// Verifies `token` at `now` (Unix seconds): its principal, and the
    /// token's SHA-256 (which names the credential from here on).
    pub async fn verify(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Arc<Principal>, [u8; 32]), TokenRejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(v) = self.cache.get(&digest) {
            return check_window(&v, now).map(|()| (v.principal.clone(), digest));
        }
        let verified = Arc::new(self.verify_uncached(token, now).await?);
        self.cache.insert(digest, verified.clone());
        Ok((verified.principal.clone(), digest))
    }

    async fn verify_uncached(&self, token: &str, now: u64) -> Result<Verified, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        // Pick the issuer from the unverified payload; everything is checked
        // against that issuer's rules and keys below.
        let iss = unverified_issuer(token).ok_or(TokenRejection::Malformed)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.rules.issuer == iss)
            .ok_or(TokenRejection::UnknownIssuer)?;
        let rules = &issuer.rules;
        if !rules.algorithms.contains(&header.alg) || family_of(header.alg).is_none() {
            return Err(TokenRejection::AlgorithmNotAllowed);
        }
        if let Some(want) = &rules.required_typ {
            let typ = header.typ.as_deref().unwrap_or("");
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case(want) {
                return Err(TokenRejection::WrongType);
            }
        }
        let key = issuer
            .keys
            .key(header.kid.as_deref(), header.alg)
            .await
            .map_err(|e| match e {
                KeyLookupError::NotFound => TokenRejection::KeyNotFound,
                KeyLookupError::Unavailable => TokenRejection::KeysUnavailable,
            })?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = rules.leeway.as_secs();
        validation.set_issuer(&[&rules.issuer]);
        validation.set_audience(&rules.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let data =
            jsonwebtoken::decode::<Value>(token, &key.key, &validation).map_err(map_error)?;
        let claims = data.claims;
        let leeway = rules.leeway.as_secs();
        if let Some(iat) = claims.get("iat").and_then(Value::as_u64) {
            if iat > now + leeway {
                return Err(TokenRejection::IssuedInFuture);
            }
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenRejection::MissingClaim)?;
        let nbf = claims.get("nbf").and_then(Value::as_u64);
        let principal = rules
            .claims
            .principal(&claims, &rules.issuer, AuthMethod::Bearer, &rules.mfa)
            .ok_or(TokenRejection::MissingClaim)?;
        let verified = Verified {
            principal: Arc::new(principal),
            exp,
            nbf,
            leeway,
        };
        check_window(&verified, now)?;
        Ok(verified)
    }
}

fn check_window(v: &Verified, now: u64) -> Result<(), TokenRejection> {
    if now > v.exp + v.leeway {
        return Err(TokenRejection::Expired);
    }
    if v.nbf.is_some_and(|nbf| nbf > now + v.leeway) {
        return Err(TokenRejection::NotYetValid);
    }
    Ok(())
}

fn map_error(e: jsonwebtoken::errors::Error) -> TokenRejection {
    use jsonwebtoken::errors::ErrorKind::*;
    match e.kind() {
        InvalidSignature => TokenRejection::BadSignature,
        ExpiredSignature => TokenRejection::Expired,
        ImmatureSignature => TokenRejection::NotYetValid,
        InvalidAudience => TokenRejection::WrongAudience,
        InvalidIssuer => TokenRejection::UnknownIssuer,
        MissingRequiredClaim(_) => TokenRejection::MissingClaim,
        InvalidAlgorithm | InvalidAlgorithmName => TokenRejection::AlgorithmNotAllowed,
        _ => TokenRejection::Malformed,
    }
}

/// The `iss` of a JWT's payload, before verification (only to choose rules).
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: String,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Issuer>(token)
        .ok()
        .map(|c| c.iss)
}

/// The token from an `Authorization: Bearer ...` value.
pub fn bearer_token(authorization: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(authorization).ok()?;
    let (scheme, token) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}
