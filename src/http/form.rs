//! `application/x-www-form-urlencoded` components (query strings and form
//! bodies), decoded strictly: a `%` not followed by two hex digits, or
//! bytes that are not UTF-8 once decoded, are errors rather than passed
//! through, because a server that decodes them differently would search for
//! something else than what was decided. Decoding itself is
//! `percent-encoding`'s; this adds only the strictness.

use percent_encoding::percent_decode;
use std::borrow::Cow;

/// Why a component cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("malformed percent-encoding")]
    Escape,
    #[error("not valid UTF-8 once decoded")]
    Utf8,
}

/// Decodes one component: `+` is a space, `%XX` a byte. Borrows when there
/// is nothing to decode.
pub fn decode_component(raw: &str) -> Result<Cow<'_, str>, FormError> {
    let bytes = raw.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    for (i, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'%') {
        let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(i + 1) && hex(i + 2)) {
            return Err(FormError::Escape);
        }
    }
    let spaced: Cow<'_, [u8]> = if bytes.contains(&b'+') {
        Cow::Owned(
            bytes
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(bytes)
    };
    let decoded: Vec<u8> = percent_decode(&spaced).collect();
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| FormError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert!(matches!(decode_component("abc"), Ok(Cow::Borrowed("abc"))));
        assert_eq!(decode_component("a+b%20c").unwrap(), "a b c");
        assert_eq!(decode_component("%2B%2b").unwrap(), "++");
        assert_eq!(decode_component("Patient%2F1").unwrap(), "Patient/1");
        assert_eq!(decode_component("%C3%A9").unwrap(), "é");
        assert_eq!(decode_component("%"), Err(FormError::Escape));
        assert_eq!(decode_component("%4"), Err(FormError::Escape));
        assert_eq!(decode_component("%zz"), Err(FormError::Escape));
        assert_eq!(decode_component("a%2"), Err(FormError::Escape));
        assert_eq!(decode_component("%FF"), Err(FormError::Utf8));
        assert_eq!(decode_component("%C3"), Err(FormError::Utf8));
    }
}
