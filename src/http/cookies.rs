//! Cookie names and values as browsers and servers read them, parsed by
//! the `cookie` crate: `name = value` is `name`, whatever the whitespace.
//! A `Cookie` header is split on `;` here only to keep each pair's bytes
//! (a value may be non-ASCII or not UTF-8, and must reach the app as sent);
//! the pair itself is judged by the parser, on a lossy UTF-8 view (bytes
//! that are not UTF-8 never spell an ASCII name).

use std::borrow::Cow;

/// The cookie a `Cookie` pair or a `Set-Cookie` value names and sets, if it
/// parses as one.
fn parse(piece: &[u8]) -> Option<cookie::Cookie<'static>> {
    let text = String::from_utf8_lossy(piece);
    cookie::Cookie::parse(text.into_owned()).ok()
}

/// Whether `piece` (a `Cookie` pair or a `Set-Cookie` value) is for the
/// cookie `name`.
pub fn names(piece: &[u8], name: &str) -> bool {
    parse(piece).is_some_and(|c| c.name() == name)
}

/// The pairs of a `Cookie` header value, trimmed, empty ones skipped.
pub fn pairs(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

/// The value of the first cookie named `name` in a `Cookie` header value.
pub fn value_of<'h>(header: &'h [u8], name: &str) -> Option<Cow<'h, str>> {
    pairs(header).find_map(|pair| {
        let c = parse(pair)?;
        (c.name() == name).then(|| Cow::Owned(c.value().to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_a_browser_reads_them() {
        assert!(names(b"sid=1", "sid"));
        assert!(names(b"sid = 1", "sid"), "whitespace around the name");
        assert!(names(b"sid=1; Path=/; Secure", "sid"));
        assert!(names(b"sid=\xff\xfe", "sid"), "a value that is not UTF-8");
        assert!(!names(b"sidx=1", "sid"));
        assert!(!names(b"xsid=1", "sid"));
        assert!(!names(b"Sid=1", "sid"), "names are case-sensitive");
        assert!(!names(b"sid", "sid"), "no value: not a cookie");
    }

    #[test]
    fn values_and_pairs() {
        let header = b"a=1; sid = s\xc3\xa9cret ;b=2; sid=second";
        assert_eq!(value_of(header, "sid").as_deref(), Some("s\u{e9}cret"));
        assert_eq!(value_of(header, "c"), None);
        let all: Vec<&[u8]> = pairs(b" a=1;; b=2 ;").collect();
        assert_eq!(all, [&b"a=1"[..], &b"b=2"[..]]);
    }
}
