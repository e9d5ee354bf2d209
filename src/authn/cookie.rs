//! The session cookie: an encrypted, authenticated reference to a
//! server-side session.
//!
//! The cookie holds only a random session id, sealed with AES-256-GCM under
//! a keyring: the first key seals, every key opens, so keys rotate without
//! logging everyone out. A cookie that does not open is simply no session.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rand::RngCore;

/// Associated data binding a sealed value to its purpose.
const AAD: &[u8] = b"phigate-session-v1";

/// Cookie keys; the first seals. Each key is named by a fingerprint of
/// itself, so adding or retiring keys never renames the others.
pub struct Keyring {
    keys: Vec<(KeyId, Aes256Gcm)>,
}

type KeyId = [u8; 4];

fn key_id(raw: &[u8]) -> KeyId {
    use sha2::Digest;
    let d = sha2::Sha256::digest(raw);
    [d[0], d[1], d[2], d[3]]
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("a cookie key must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error("at most 255 cookie keys")]
    TooMany,
}

impl Keyring {
    /// Keys as base64 strings (standard or URL-safe), newest first.
    pub fn from_base64(keys: &[String]) -> Result<Keyring, KeyringError> {
        if keys.len() > 255 {
            return Err(KeyringError::TooMany);
        }
        let mut out = Vec::new();
        for k in keys {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .or_else(|_| B64.decode(k.trim()))
                .map_err(|_| KeyringError::BadKey)?;
            let cipher = Aes256Gcm::new_from_slice(&raw).map_err(|_| KeyringError::BadKey)?;
            out.push((key_id(&raw), cipher));
        }
        if out.is_empty() {
            return Err(KeyringError::BadKey);
        }
        Ok(Keyring { keys: out })
    }

    /// A keyring with one random key (sessions end when the process does).
    pub fn random() -> Keyring {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Keyring {
            keys: vec![(key_id(&k), Aes256Gcm::new(&k.into()))],
        }
    }

    /// Seals `plain` under the newest key.
    pub fn seal(&self, plain: &[u8]) -> String {
        let (id, cipher) = &self.keys[0];
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: AAD,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(4 + 12 + sealed.len());
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// Opens a sealed value; `None` for anything tampered, truncated or
    /// sealed under an unknown key.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > 512 {
            return None;
        }
        let raw = B64.decode(sealed).ok()?;
        if raw.len() < 4 + 12 + 16 {
            return None;
        }
        let (id, rest) = raw.split_at(4);
        let (nonce, ct) = rest.split_at(12);
        let (_, cipher) = self.keys.iter().find(|(k, _)| k[..] == *id)?;
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        base64::engine::general_purpose::STANDARD.encode(k)
    }

    #[test]
    fn seal_open_and_tamper() {
        let ring = Keyring::from_base64(&[key()]).unwrap();
        let c = ring.seal(b"session-123");
        assert_eq!(ring.open(&c).as_deref(), Some(&b"session-123"[..]));
        let mut bytes = B64.decode(&c).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(ring.open(&B64.encode(&bytes)), None);
        assert_eq!(ring.open("garbage!"), None);
        assert_eq!(ring.open(""), None);
        assert_ne!(ring.seal(b"x"), ring.seal(b"x"), "fresh nonce per seal");
    }

    #[test]
    fn rotation_old_keys_open_new_key_seals() {
        let (old, new) = (key(), key());
        let before = Keyring::from_base64(std::slice::from_ref(&old)).unwrap();
        let sealed_old = before.seal(b"a");
        let after = Keyring::from_base64(&[new.clone(), old]).unwrap();
        assert_eq!(after.open(&sealed_old).as_deref(), Some(&b"a"[..]));
        let sealed_new = after.seal(b"b");
        let only_new = Keyring::from_base64(&[new]).unwrap();
        assert_eq!(only_new.open(&sealed_new).as_deref(), Some(&b"b"[..]));
        assert_eq!(
            only_new.open(&sealed_old),
            None,
            "retired key no longer opens"
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(
            Keyring::from_base64(&["short".into()]).err(),
            Some(KeyringError::BadKey)
        );
        assert_eq!(Keyring::from_base64(&[]).err(), Some(KeyringError::BadKey));
    }
}
