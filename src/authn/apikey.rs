//! API keys for service integrations (e.g. a remote-monitoring device gateway).
//!
//! A key looks like `phg_<key id>_<secret>`. Config stores only the key id
//! and a salted SHA-256 of the secret; the secret is shown once, by
//! `phigate keygen api-key`. Keys are 256-bit random, so a fast salted hash
//! is enough (password hashing is for guessable secrets); comparison is
//! constant-time. Clients send `Authorization: ApiKey phg_...`.

use super::principal::{AuthMethod, Principal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

const PREFIX: &str = "phg_";

/// One configured key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The service principal's id, e.g. `rpm-gateway`.
    pub id: String,
    /// The public key id embedded in the key (8+ characters of `[a-z0-9]`).
    pub key_id: String,
    /// `sha256:<salt>:<digest>` as printed by `phigate keygen api-key`.
    pub hash: String,
    /// Roles of the service principal.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Why a presented key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyRejection {
    Malformed,
    UnknownKeyId,
    Mismatch,
}

impl ApiKeyRejection {
    pub fn reason(self) -> &'static str {
        match self {
            ApiKeyRejection::Malformed => "malformed",
            ApiKeyRejection::UnknownKeyId => "unknown_key_id",
            ApiKeyRejection::Mismatch => "mismatch",
        }
    }
}

struct StoredKey {
    salt: Vec<u8>,
    digest: [u8; 32],
    principal: std::sync::Arc<Principal>,
}

/// The configured keys, by key id.
#[derive(Default)]
pub struct ApiKeyStore {
    keys: HashMap<String, StoredKey>,
}

impl ApiKeyStore {
    /// Builds the store; errors name the offending entry.
    pub fn new(configs: &[ApiKeyConfig]) -> Result<ApiKeyStore, String> {
        let mut keys = HashMap::new();
        for (i, c) in configs.iter().enumerate() {
            let (salt, digest) = parse_hash(&c.hash)
                .ok_or_else(|| format!("api_keys[{i}].hash: expected sha256:<salt>:<digest> from `phigate keygen api-key`"))?;
            if !valid_key_id(&c.key_id) {
                return Err(format!(
                    "api_keys[{i}].key_id: 8-32 characters of a-z and 0-9"
                ));
            }
            let principal =
                Principal::service(&c.id, "api-key", AuthMethod::ApiKey, c.roles.clone());
            if keys
                .insert(
                    c.key_id.clone(),
                    StoredKey {
                        salt,
                        digest,
                        principal: std::sync::Arc::new(principal),
                    },
                )
                .is_some()
            {
                return Err(format!("api_keys[{i}].key_id: {} is used twice", c.key_id));
            }
        }
        Ok(ApiKeyStore { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a presented key.
    pub fn verify(&self, presented: &str) -> Result<std::sync::Arc<Principal>, ApiKeyRejection> {
        let (key_id, secret) = split_key(presented).ok_or(ApiKeyRejection::Malformed)?;
        let stored = self.keys.get(key_id).ok_or(ApiKeyRejection::UnknownKeyId)?;
        let digest = salted(&stored.salt, secret.as_bytes());
        if bool::from(digest.ct_eq(&stored.digest)) {
            Ok(stored.principal.clone())
        } else {
            Err(ApiKeyRejection::Mismatch)
        }
    }
}

/// The key from an `Authorization: ApiKey ...` value.
pub fn api_key_credential(authorization: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(authorization).ok()?;
    let (scheme, key) = s.split_once(' ')?;
    scheme.eq_ignore_ascii_case("apikey").then(|| key.trim())
}

fn split_key(k: &str) -> Option<(&str, &str)> {
    let rest = k.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (valid_key_id(id) && secret.len() >= 32 && secret.len() <= 128).then_some((id, secret))
}

fn valid_key_id(id: &str) -> bool {
    (8..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn salted(salt: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"phigate-api-key-v1");
    h.update(salt);
    h.update(secret);
    h.finalize().into()
}

fn parse_hash(s: &str) -> Option<(Vec<u8>, [u8; 32])> {
    let rest = s.strip_prefix("sha256:")?;
    let (salt, digest) = rest.split_once(':')?;
    let salt = B64.decode(salt).ok()?;
    let digest: [u8; 32] = B64.decode(digest).ok()?.try_into().ok()?;
    (salt.len() >= 16).then_some((salt, digest))
}

/// A newly generated key: show `key` once, put `config_line` in phigate.toml.
pub struct GeneratedKey {
    pub key: String,
    pub key_id: String,
    pub hash: String,
}

/// Generates a key for service `id`.
pub fn generate() -> GeneratedKey {
    let mut rng = rand::rng();
    let mut id_bytes = [0u8; 5];
    rng.fill_bytes(&mut id_bytes);
    let key_id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let secret = B64.encode(secret);
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let digest = salted(&salt, secret.as_bytes());
    GeneratedKey {
        key: format!("{PREFIX}{key_id}_{secret}"),
        hash: format!("sha256:{}:{}", B64.encode(salt), B64.encode(digest)),
        key_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_verify_and_nothing_else_does() {
        let g = generate();
        let store = ApiKeyStore::new(&[ApiKeyConfig {
            id: "rpm-gateway".into(),
            key_id: g.key_id.clone(),
            hash: g.hash.clone(),
            roles: vec!["device_gateway".into()],
        }])
        .unwrap();
        let p = store.verify(&g.key).unwrap();
        assert_eq!(p.id, "rpm-gateway");
        assert_eq!(p.method, AuthMethod::ApiKey);
        let mut wrong = g.key.clone();
        wrong.pop();
        wrong.push(if g.key.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(store.verify(&wrong).err(), Some(ApiKeyRejection::Mismatch));
        assert_eq!(
            store
                .verify(&format!("phg_zzzzzzzz_{}", "a".repeat(43)))
                .err(),
            Some(ApiKeyRejection::UnknownKeyId)
        );
        assert_eq!(
            store.verify("hunter2").err(),
            Some(ApiKeyRejection::Malformed)
        );
        assert!(
            !g.hash.contains(&g.key[4 + 10 + 1..]),
            "hash must not contain the secret"
        );
    }

    #[test]
    fn config_errors_name_the_entry() {
        let e = ApiKeyStore::new(&[ApiKeyConfig {
            id: "x".into(),
            key_id: "abcdefgh".into(),
            hash: "plain".into(),
            roles: vec![],
        }])
        .err()
        .unwrap();
        assert!(e.starts_with("api_keys[0].hash"), "{e}");
    }

    #[test]
    fn authorization_scheme() {
        assert_eq!(api_key_credential(b"ApiKey phg_x"), Some("phg_x"));
        assert_eq!(api_key_credential(b"apikey  phg_x "), Some("phg_x"));
        assert_eq!(api_key_credential(b"Bearer phg_x"), None);
    }
}
