//! Secrets by reference: `env:NAME` or `file:PATH`, never a literal.
//!
//! Config files end up in tickets, repos and backups; keeping secrets out of
//! them is the only reliable way to keep them out of those places.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;

/// Where a secret lives. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "secrets must be references: write \"env:NAME\" or \"file:/path\", not the secret itself"
    )]
    Literal,
    #[error("environment variable {0} is not set or not UTF-8")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("secret from {0} is empty")]
    Empty(String),
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<SecretRef, SecretError> {
        if let Some(name) = s.strip_prefix("env:").filter(|n| !n.is_empty()) {
            Ok(SecretRef::Env(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            Ok(SecretRef::File(PathBuf::from(path)))
        } else {
            Err(SecretError::Literal)
        }
    }

    /// Reads the secret now; trailing newlines of files are trimmed.
    pub fn resolve(&self) -> Result<String, SecretError> {
        let value = match self {
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))?
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| SecretError::Unreadable {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(value)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SecretRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_refused() {
        assert_eq!(SecretRef::parse("hunter2"), Err(SecretError::Literal));
        assert_eq!(SecretRef::parse("env:"), Err(SecretError::Literal));
        assert_eq!(
            SecretRef::parse("env:X").unwrap(),
            SecretRef::Env("X".into())
        );
    }

    #[test]
    fn file_secret_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\n").unwrap();
        let r = SecretRef::parse(&format!("file:{}", p.display())).unwrap();
        assert_eq!(r.resolve().unwrap(), "abc");
        assert!(!format!("{r:?}").contains("abc"));
    }

    #[test]
    fn missing_env_is_named() {
        let r = SecretRef::Env("PHIGATE_TEST_SURELY_UNSET".into());
        assert_eq!(
            r.resolve(),
            Err(SecretError::MissingEnv("PHIGATE_TEST_SURELY_UNSET".into()))
        );
    }
}
