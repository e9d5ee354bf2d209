//! Signed checkpoints: the spool's head, signed, in the C2SP signed-note
//! format (tlog-checkpoint body: origin, size, hash).
//!
//! ```text
//! phigate.example/audit          origin: which log
//! 1042                           size: records 0..1042 are covered
//! q7dg…base64…=                  hash: SHA-256 of record 1041 as written
//!
//! — phigate.example/audit AbCd…base64(key id ‖ Ed25519 signature)…
//! ```
//!
//! The third line is the head of the hash chain (every record carries its
//! predecessor's hash), not an RFC 6962 Merkle root: the chain gives the
//! same guarantee for a log read front to back. A SIEM that stores the
//! checkpoints holds heads the proxy host cannot rewrite without the key.
//! Keys use the signed-note encodings: `PRIVATE+KEY+name+keyid+base64` for
//! the signer, `name+keyid+base64` for verifiers (key id = the first four
//! bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

const ALG_ED25519: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a signed-note key (expected {0})")]
    Format(&'static str),
    #[error("the key's name is empty or contains '+', spaces or newlines")]
    Name,
    #[error("the key id does not match the key")]
    KeyId,
    #[error("not an Ed25519 key")]
    Algorithm,
}

/// Splits a signed-note key's text `name+keyid+base64(0x01 ‖ 32 bytes)`
/// into (name, key id text, the 32 bytes); `want` names the format in
/// errors.
fn split_key<'a>(
    text: &'a str,
    want: &'static str,
) -> Result<(&'a str, &'a str, [u8; 32]), KeyError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyError::Format(want));
    };
    if !valid_name(name) {
        return Err(KeyError::Name);
    }
    let raw = B64.decode(key).map_err(|_| KeyError::Format(want))?;
    let [alg, bytes @ ..] = raw.as_slice() else {
        return Err(KeyError::Format(want));
    };
    if *alg != ALG_ED25519 {
        return Err(KeyError::Algorithm);
    }
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Format(want))?;
    Ok((name, id, bytes))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', ' ', '\n', '\t'])
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The private key that signs checkpoints.
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A new key named `name` (the log's origin is a good name).
    pub fn generate(name: &str) -> Result<NoteSigner, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::Name);
        }
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut seed);
        Ok(Self::from_seed(name, seed))
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> NoteSigner {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        NoteSigner {
            name: name.to_string(),
            id,
            key,
        }
    }

    /// Parses `PRIVATE+KEY+name+keyid+base64(0x01 ‖ seed)`.
    pub fn parse(text: &str) -> Result<NoteSigner, KeyError> {
        const WANT: &str = "PRIVATE+KEY+name+keyid+base64";
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::Format(WANT))?;
        let (name, id, seed) = split_key(rest, WANT)?;
        let signer = Self::from_seed(name, seed);
        if id != hex(&signer.id) {
            return Err(KeyError::KeyId);
        }
        Ok(signer)
    }

    /// The private key's text (for a key file; never logged).
    pub fn private_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex(&self.id),
            B64.encode(raw)
        )
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs a note's text (which must end in a newline).
    pub fn sign(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut raw = self.id.to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(raw))
    }
}

/// A public key that checks checkpoints.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses `name+keyid+base64(0x01 ‖ public key)`.
    pub fn parse(text: &str) -> Result<NoteVerifier, KeyError> {
        const WANT: &str = "name+keyid+base64";
        let (name, id, public) = split_key(text.trim(), WANT)?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| KeyError::Format(WANT))?;
        let kid = key_id(name, &public);
        if id != hex(&kid) {
            return Err(KeyError::KeyId);
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id: kid,
            key,
        })
    }

    pub fn text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex(&self.id), B64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A checkpoint's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    /// Records covered: sequence numbers `0..size`.
    pub size: u64,
    /// The hash of record `size - 1` as written.
    pub hash: [u8; 32],
}

impl Checkpoint {
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.hash)
        )
    }

    pub fn sign(&self, signer: &NoteSigner) -> String {
        signer.sign(&self.body())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("not a signed note (no blank line before the signatures)")]
    Shape,
    #[error("the checkpoint body is not origin, size, hash")]
    Body,
    #[error("no signature by key {0}")]
    Unsigned(String),
    #[error("the signature by key {0} does not verify (forged or altered checkpoint)")]
    BadSignature(String),
}

/// Opens a signed checkpoint with `key`: the body only if `key` signed
/// exactly this text.
pub fn open(note: &str, key: &NoteVerifier) -> Result<Checkpoint, NoteError> {
    let (text, sigs) = note.split_once("\n\n").ok_or(NoteError::Shape)?;
    let text = format!("{text}\n");
    let mut found = false;
    for line in sigs.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            continue;
        };
        let Some((name, sig)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(raw) = B64.decode(sig.trim()) else {
            continue;
        };
        if name != key.name || raw.len() != 68 || raw[..4] != key.id {
            continue;
        }
        found = true;
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&raw[4..]) else {
            continue;
        };
        if key.key.verify(text.as_bytes(), &sig).is_ok() {
            return parse_body(&text);
        }
    }
    Err(if found {
        NoteError::BadSignature(key.name.clone())
    } else {
        NoteError::Unsigned(key.name.clone())
    })
}

/// The body of a note whether or not it is signed (a retention anchor of
/// a spool without a key); signatures, if any, are not checked.
pub fn parse_unsigned(note: &str) -> Result<Checkpoint, NoteError> {
    let text = note.split_once("\n\n").map_or(note, |(t, _)| t);
    parse_body(&format!("{}\n", text.trim_end_matches('\n')))
}

fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
    let mut lines = text.lines();
    let (Some(origin), Some(size), Some(hash)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(NoteError::Body);
    };
    let size = size.parse().map_err(|_| NoteError::Body)?;
    let hash = B64.decode(hash).map_err(|_| NoteError::Body)?;
    Ok(Checkpoint {
        origin: origin.to_string(),
        size,
        hash: hash.try_into().map_err(|_| NoteError::Body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "phigate.test/audit".into(),
            size: 42,
            hash: [7; 32],
        }
    }

    #[test]
    fn keys_round_trip_through_their_text() {
        let s = NoteSigner::generate("phigate.test/audit").unwrap();
        let again = NoteSigner::parse(&s.private_text()).unwrap();
        assert_eq!(again.verifier().text(), s.verifier().text());
        let v = NoteVerifier::parse(&s.verifier().text()).unwrap();
        assert_eq!(v.text(), s.verifier().text());
        assert!(s.verifier().text().starts_with("phigate.test/audit+"));
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let s = NoteSigner::generate("phigate.test/audit").unwrap();
        let note = checkpoint().sign(&s);
        assert!(note.contains("\n\n\u{2014} phigate.test/audit "));
        assert_eq!(open(&note, &s.verifier()).unwrap(), checkpoint());
        let other = NoteSigner::generate("phigate.test/audit").unwrap();
        assert!(matches!(
            open(&note, &other.verifier()),
            Err(NoteError::BadSignature(_)) | Err(NoteError::Unsigned(_))
        ));
    }

    #[test]
    fn an_altered_checkpoint_does_not_verify() {
        let s = NoteSigner::generate("phigate.test/audit").unwrap();
        let note = checkpoint().sign(&s).replace("\n42\n", "\n41\n");
        assert_eq!(
            open(&note, &s.verifier()),
            Err(NoteError::BadSignature("phigate.test/audit".into()))
        );
    }

    #[test]
    fn a_key_with_a_wrong_id_is_refused() {
        let s = NoteSigner::generate("a").unwrap();
        let text = s.verifier().text();
        let bad =
            text.replacen("+", "+0", 1)
                .replacen(&text.split('+').nth(1).unwrap()[..1], "", 0);
        assert!(NoteVerifier::parse(&bad).is_err());
        let renamed = text.replacen("a+", "b+", 1);
        assert_eq!(NoteVerifier::parse(&renamed).unwrap_err(), KeyError::KeyId);
    }
}
