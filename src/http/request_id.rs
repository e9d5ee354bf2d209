//! Request IDs tie proxy logs, audit records and upstream logs together.
//! A client-supplied ID is kept only if it is short and made of safe
//! characters (so it cannot inject into logs); otherwise a UUIDv7 is minted.

use std::fmt;

/// Longest client-supplied ID accepted, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A request's correlation ID: 1–128 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId {
    value: String,
    client_supplied: bool,
}

impl RequestId {
    /// Keeps the client's ID (e.g. from `X-Request-Id`) if it is 1–128
    /// characters of `[A-Za-z0-9._:-]`; otherwise generates a fresh one.
    pub fn from_client(value: Option<&::http::HeaderValue>) -> RequestId {
        match value.and_then(|v| v.to_str().ok()).filter(|s| is_valid(s)) {
            Some(s) => RequestId {
                value: s.to_owned(),
                client_supplied: true,
            },
            None => Self::generate(),
        }
    }

    /// A fresh time-ordered UUIDv7, hyphenated lowercase.
    pub fn generate() -> RequestId {
        RequestId {
            value: uuid::Uuid::now_v7().hyphenated().to_string(),
            client_supplied: false,
        }
    }

    /// A placeholder before the request's headers are read (allocates
    /// nothing, generates nothing); its string is empty.
    pub fn unassigned() -> RequestId {
        RequestId {
            value: String::new(),
            client_supplied: false,
        }
    }

    /// The ID.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Whether the ID came from the client rather than being generated.
    pub fn was_client_supplied(&self) -> bool {
        self.client_supplied
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl serde::Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.value)
    }
}

fn is_valid(s: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;

    fn from(bytes: &[u8]) -> RequestId {
        RequestId::from_client(Some(&HeaderValue::from_bytes(bytes).unwrap()))
    }

    fn is_uuid_v7(s: &str) -> bool {
        uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 7)
    }

    #[test]
    fn accepts_safe_ids() {
        let max = "a".repeat(MAX_REQUEST_ID_LEN);
        for ok in [
            "a",
            "abc-123",
            "A.b_c:d-e",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            max.as_str(),
        ] {
            let id = from(ok.as_bytes());
            assert_eq!(id.as_str(), ok);
            assert!(id.was_client_supplied());
            assert_eq!(id.to_string(), ok);
        }
    }

    #[test]
    fn replaces_unsafe_ids() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in [
            &b""[..],
            b" ",
            b"a b",
            b"a\tb",
            b"a/b",
            b"a\"b",
            b"a%0Ab",
            b"a=b",
            b"{json}",
            b"caf\xc3\xa9",
            b"\xff",
            long.as_bytes(),
        ] {
            let id = from(bad);
            assert!(!id.was_client_supplied(), "{bad:?}");
            assert!(is_uuid_v7(id.as_str()), "{}", id);
        }
        let id = RequestId::from_client(None);
        assert!(!id.was_client_supplied());
        assert!(is_uuid_v7(id.as_str()));
    }

    #[test]
    fn generated_ids_are_unique_and_valid() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert!(is_valid(a.as_str()));
        assert_eq!(a.as_ref().len(), 36);
        // A generated ID is itself acceptable as a client ID downstream.
        let again = RequestId::from_client(Some(&HeaderValue::from_str(a.as_str()).unwrap()));
        assert_eq!(again.as_str(), a.as_str());
    }
}
