//! Request-smuggling checks on message framing headers. If the proxy and the
//! upstream could disagree on where a request body ends, a second request can
//! hide inside the first; so any framing that is not plainly unambiguous
//! (one `Content-Length` of digits, or exactly `Transfer-Encoding: chunked`)
//! is refused before the request goes anywhere.

use ::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use ::http::{HeaderMap, Version};

/// Most digits accepted in a `Content-Length` (19 digits always fit a `u64`).
pub const MAX_CONTENT_LENGTH_DIGITS: usize = 19;

/// Why a request's framing was refused. Every variant maps to a 400 and the
/// connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FramingRejection {
    /// Both `Content-Length` and `Transfer-Encoding` are present.
    #[error("both Content-Length and Transfer-Encoding present")]
    ContentLengthAndTransferEncoding,
    /// More than one `Content-Length` field, or a comma list in one, even
    /// when the values agree (`5, 5`).
    #[error("more than one Content-Length")]
    DuplicateContentLength,
    /// A `Content-Length` that is not 1 to 19 ASCII digits (no sign, no
    /// whitespace, no hex).
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// More than one `Transfer-Encoding` field.
    #[error("more than one Transfer-Encoding field")]
    DuplicateTransferEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 §6.1: faulty
    /// framing) or an HTTP/2 or HTTP/3 request (connection-specific there).
    #[error("Transfer-Encoding not allowed in this HTTP version")]
    TransferEncodingNotAllowed,
    /// HTTP/0.9.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
}

impl FramingRejection {
    /// Every variant, e.g. to pre-register metric labels.
    pub const ALL: &'static [FramingRejection] = &[
        Self::ContentLengthAndTransferEncoding,
        Self::DuplicateContentLength,
        Self::InvalidContentLength,
        Self::DuplicateTransferEncoding,
        Self::UnsupportedTransferEncoding,
        Self::TransferEncodingNotAllowed,
        Self::UnsupportedVersion,
    ];

    /// Stable snake_case label for metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ContentLengthAndTransferEncoding => "content_length_and_transfer_encoding",
            Self::DuplicateContentLength => "duplicate_content_length",
            Self::InvalidContentLength => "invalid_content_length",
            Self::DuplicateTransferEncoding => "duplicate_transfer_encoding",
            Self::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Self::TransferEncodingNotAllowed => "transfer_encoding_not_allowed",
            Self::UnsupportedVersion => "unsupported_version",
        }
    }
}

/// Checks `Content-Length` / `Transfer-Encoding` with HTTP/1.1 rules:
/// at most one of the two; one `Content-Length` field of 1–19 ASCII digits;
/// one `Transfer-Encoding` field equal to `chunked` (case-insensitive,
/// surrounding spaces ignored; tabs and any other byte are not).
pub fn check_framing(headers: &HeaderMap) -> Result<(), FramingRejection> {
    let mut cl = headers.get_all(CONTENT_LENGTH).iter();
    let mut te = headers.get_all(TRANSFER_ENCODING).iter();
    let (first_cl, first_te) = (cl.next(), te.next());
    if first_cl.is_some() && first_te.is_some() {
        return Err(FramingRejection::ContentLengthAndTransferEncoding);
    }
    if let Some(v) = first_cl {
        if cl.next().is_some() {
            return Err(FramingRejection::DuplicateContentLength);
        }
        check_content_length(v.as_bytes())?;
    }
    if let Some(v) = first_te {
        if te.next().is_some() {
            return Err(FramingRejection::DuplicateTransferEncoding);
        }
        if !is_exactly_chunked(v.as_bytes()) {
            return Err(FramingRejection::UnsupportedTransferEncoding);
        }
    }
    Ok(())
}

/// [`check_framing`], plus version rules: `Transfer-Encoding` is refused in
/// HTTP/1.0, HTTP/2 and HTTP/3 requests, and HTTP/0.9 is refused outright.
pub fn check_framing_for_version(
    version: Version,
    headers: &HeaderMap,
) -> Result<(), FramingRejection> {
    if version == Version::HTTP_09 {
        return Err(FramingRejection::UnsupportedVersion);
    }
    if version != Version::HTTP_11 && headers.contains_key(TRANSFER_ENCODING) {
        return Err(FramingRejection::TransferEncodingNotAllowed);
    }
    check_framing(headers)
}

/// The request target exactly as sent on an HTTP/1 request line.
///
/// URI parsers quietly drop parts of a target (a `#fragment`, for one), so
/// normalization must judge the bytes on the wire, not a parsed URI.
pub fn request_target_from_raw(raw: &[u8]) -> Option<&[u8]> {
    // HTTP parsers skip empty lines before the request line (RFC 9112 2.2).
    let start_of_line = raw.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let raw = &raw[start_of_line..];
    let line_end = raw.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = &raw[..line_end];
    let start = line.iter().position(|&b| b == b' ')? + 1;
    let len = line[start..].iter().rposition(|&b| b == b' ')?;
    Some(&line[start..start + len])
}

/// The framing headers (`Content-Length`, `Transfer-Encoding`) exactly as a
/// client sent them in a raw HTTP/1 header block.
///
/// HTTP libraries reconcile framing while parsing (Pingora drops
/// `Content-Length` when `Transfer-Encoding` is present and folds identical
/// duplicates), which hides the ambiguity a smuggling check must see. Lines
/// that are not `name: value` are skipped here; the parser rejects them.
pub fn framing_headers_from_raw(raw: &[u8]) -> HeaderMap {
    let mut out = HeaderMap::new();
    let start_of_line = raw
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(raw.len());
    // Lines are found with memchr: a bearer token makes one header line
    // about a kilobyte long, and a byte-by-byte split showed in profiles.
    for line in lines(&raw[start_of_line..]).skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let name = if name.eq_ignore_ascii_case(b"content-length") {
            CONTENT_LENGTH
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            TRANSFER_ENCODING
        } else {
            continue;
        };
        // Keep the value's bytes as sent, minus the optional whitespace
        // around it (spaces and tabs, RFC 9110 5.5); anything else stays and
        // makes the value invalid.
        let value = trim_ows(value);
        match ::http::HeaderValue::from_bytes(value) {
            Ok(v) => {
                out.append(name, v);
            }
            // A value the header type refuses (control bytes): keep a marker
            // that neither the Content-Length nor the Transfer-Encoding check accepts.
            Err(_) => {
                out.append(name, ::http::HeaderValue::from_static("invalid"));
            }
        }
    }
    out
}

/// `raw` split at every `\n` (as `split`, including a last, possibly empty,
/// piece).
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(raw);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// `chunked`, case-insensitive, with only ASCII spaces around it.
fn is_exactly_chunked(v: &[u8]) -> bool {
    trim_spaces(v).eq_ignore_ascii_case(b"chunked")
}

fn check_content_length(v: &[u8]) -> Result<(), FramingRejection> {
    if v.contains(&b',') {
        return Err(FramingRejection::DuplicateContentLength);
    }
    if v.is_empty() || v.len() > MAX_CONTENT_LENGTH_DIGITS || !v.iter().all(u8::is_ascii_digit) {
        return Err(FramingRejection::InvalidContentLength);
    }
    Ok(())
}

/// Strips ASCII spaces (only 0x20) from both ends.
fn trim_spaces(mut v: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' '] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::FramingRejection::*;
    use super::*;
    use ::http::HeaderValue;

    #[test]
    fn lines_split_like_split() {
        for raw in [
            &b""[..],
            b"\n",
            b"a",
            b"a\n",
            b"a\r\nb: c\r\n\r\n",
            b"\n\nx\ny\n",
        ] {
            let ours: Vec<&[u8]> = lines(raw).collect();
            let split: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
            assert_eq!(ours, split, "{raw:?}");
        }
    }

    fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            let name = ::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            m.append(name, HeaderValue::from_bytes(v).unwrap());
        }
        m
    }

    type Headers = &'static [(&'static str, &'static [u8])];

    const CASES: &[(Headers, Result<(), FramingRejection>)] = &[
        (&[], Ok(())),
        (&[("content-length", b"0")], Ok(())),
        (&[("content-length", b"5")], Ok(())),
        (&[("content-length", b"007")], Ok(())),
        (&[("content-length", b"9999999999999999999")], Ok(())),
        (&[("transfer-encoding", b"chunked")], Ok(())),
        (&[("transfer-encoding", b"Chunked")], Ok(())),
        (&[("transfer-encoding", b"CHUNKED")], Ok(())),
        (&[("transfer-encoding", b" chunked ")], Ok(())),
        (&[("host", b"a"), ("content-type", b"x")], Ok(())),
        (
            &[("content-length", b"5"), ("transfer-encoding", b"chunked")],
            Err(ContentLengthAndTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"chunked"), ("content-length", b"0")],
            Err(ContentLengthAndTransferEncoding),
        ),
        (
            &[("content-length", b"x"), ("transfer-encoding", b"gzip")],
            Err(ContentLengthAndTransferEncoding),
        ),
        (
            &[("content-length", b"5"), ("content-length", b"5")],
            Err(DuplicateContentLength),
        ),
        (
            &[("content-length", b"5"), ("content-length", b"6")],
            Err(DuplicateContentLength),
        ),
        (&[("content-length", b"5, 5")], Err(DuplicateContentLength)),
        (&[("content-length", b"5,6")], Err(DuplicateContentLength)),
        (&[("content-length", b",5")], Err(DuplicateContentLength)),
        (&[("content-length", b"")], Err(InvalidContentLength)),
        (&[("content-length", b"+5")], Err(InvalidContentLength)),
        (&[("content-length", b"-1")], Err(InvalidContentLength)),
        (&[("content-length", b" 5")], Err(InvalidContentLength)),
        (&[("content-length", b"5 ")], Err(InvalidContentLength)),
        (&[("content-length", b"0x5")], Err(InvalidContentLength)),
        (&[("content-length", b"5.0")], Err(InvalidContentLength)),
        (&[("content-length", b"1e3")], Err(InvalidContentLength)),
        (&[("content-length", b"\t5")], Err(InvalidContentLength)),
        (
            &[("content-length", b"10000000000000000000")],
            Err(InvalidContentLength),
        ),
        (
            &[("content-length", b"99999999999999999999999")],
            Err(InvalidContentLength),
        ),
        (
            &[
                ("transfer-encoding", b"chunked"),
                ("transfer-encoding", b"chunked"),
            ],
            Err(DuplicateTransferEncoding),
        ),
        (
            &[
                ("transfer-encoding", b"gzip"),
                ("transfer-encoding", b"chunked"),
            ],
            Err(DuplicateTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"chunked, chunked")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"gzip, chunked")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"chunked, gzip")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"identity")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"xchunked")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"chunkedx")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"chunked;foo")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"chunked\t")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"\tchunked")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"chun ked")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"\"chunked\"")],
            Err(UnsupportedTransferEncoding),
        ),
        (
            &[("transfer-encoding", b"ch\xc3\xbcnked")],
            Err(UnsupportedTransferEncoding),
        ),
    ];

    #[test]
    fn table() {
        for (pairs, want) in CASES {
            assert_eq!(check_framing(&map(pairs)), *want, "{pairs:?}");
        }
    }

    /// `HeaderValue::from_bytes` refuses vertical tab, CR and NUL, but a
    /// value built through an unchecked constructor could still carry them.
    #[test]
    fn control_bytes_in_values() {
        for bad in [
            &b"\x0bchunked"[..],
            b"chunked\x0b",
            b"\x0cchunked",
            b"chunked\r",
            b"chunked\0",
            b"\tchunked",
        ] {
            assert!(!is_exactly_chunked(bad), "{bad:?}");
        }
        for bad in [&b"\x0b5"[..], b"5\0", b"5\r"] {
            assert_eq!(check_content_length(bad), Err(InvalidContentLength));
        }
    }

    #[test]
    fn versions() {
        let te = map(&[("transfer-encoding", b"chunked")]);
        let cl = map(&[("content-length", b"3")]);
        let none = HeaderMap::new();
        assert_eq!(check_framing_for_version(Version::HTTP_11, &te), Ok(()));
        for v in [Version::HTTP_10, Version::HTTP_2, Version::HTTP_3] {
            assert_eq!(
                check_framing_for_version(v, &te),
                Err(TransferEncodingNotAllowed)
            );
            assert_eq!(check_framing_for_version(v, &cl), Ok(()));
            assert_eq!(check_framing_for_version(v, &none), Ok(()));
        }
        assert_eq!(
            check_framing_for_version(Version::HTTP_09, &none),
            Err(UnsupportedVersion)
        );
        let bad = map(&[("content-length", b"1"), ("content-length", b"1")]);
        assert_eq!(
            check_framing_for_version(Version::HTTP_2, &bad),
            Err(DuplicateContentLength)
        );
    }

    #[test]
    fn trim() {
        assert_eq!(trim_spaces(b""), b"");
        assert_eq!(trim_spaces(b"   "), b"");
        assert_eq!(trim_spaces(b"  a b  "), b"a b");
        assert_eq!(trim_spaces(b"\ta\t"), b"\ta\t");
    }

    #[test]
    fn reasons_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in FramingRejection::ALL {
            let s = r.reason();
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{s}"
            );
            assert!(seen.insert(s), "duplicate {s}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_values_never_panic(
                cl in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 0..3),
                te in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 0..3),
            ) {
                let mut m = HeaderMap::new();
                for v in &cl {
                    if let Ok(v) = HeaderValue::from_bytes(v) { m.append(CONTENT_LENGTH, v); }
                }
                for v in &te {
                    if let Ok(v) = HeaderValue::from_bytes(v) { m.append(TRANSFER_ENCODING, v); }
                }
                let r = check_framing(&m);
                if r.is_ok() {
                    let ncl = m.get_all(CONTENT_LENGTH).iter().count();
                    let nte = m.get_all(TRANSFER_ENCODING).iter().count();
                    prop_assert!(ncl + nte <= 1);
                    if let Some(v) = m.get(CONTENT_LENGTH) {
                        prop_assert!(std::str::from_utf8(v.as_bytes()).ok().and_then(|s| s.parse::<u64>().ok()).is_some());
                    }
                }
            }

            #[test]
            fn any_digits_up_to_19_accepted(n in any::<u64>()) {
                let s = n.to_string();
                let m = map(&[("content-length", s.as_bytes())]);
                prop_assert_eq!(check_framing(&m), if s.len() <= 19 { Ok(()) } else { Err(InvalidContentLength) });
            }
        }
    }

    #[test]
    fn raw_view_sees_what_the_parser_hides() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\ntransfer-encoding: chunked\r\n\r\n";
        let h = framing_headers_from_raw(raw);
        assert_eq!(
            check_framing(&h),
            Err(FramingRejection::ContentLengthAndTransferEncoding)
        );

        let raw = b"POST /x HTTP/1.1\r\nContent-Length: 4\r\nContent-Length:\t4 \r\n\r\n";
        let h = framing_headers_from_raw(raw);
        assert_eq!(
            check_framing(&h),
            Err(FramingRejection::DuplicateContentLength)
        );

        let raw = b"POST /x HTTP/1.1\r\nTransfer-Encoding: \x0bchunked\r\n\r\n";
        let h = framing_headers_from_raw(raw);
        assert_eq!(
            check_framing(&h),
            Err(FramingRejection::UnsupportedTransferEncoding)
        );

        let raw = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Content-Length: 5\r\n\r\n";
        assert!(framing_headers_from_raw(raw).is_empty());
        let raw = b"POST /x HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(check_framing(&framing_headers_from_raw(raw)), Ok(()));
    }

    #[test]
    fn raw_request_target() {
        assert_eq!(
            request_target_from_raw(b"GET /a#f?x HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(&b"/a#f?x"[..])
        );
        assert_eq!(
            request_target_from_raw(b"OPTIONS * HTTP/1.1\r\n\r\n"),
            Some(&b"*"[..])
        );
        assert_eq!(
            request_target_from_raw(b"\r\n\r\nGET /x HTTP/1.1\r\n\r\n"),
            Some(&b"/x"[..])
        );
        let h = framing_headers_from_raw(b"\r\nPOST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(h.len(), 1);
        assert_eq!(request_target_from_raw(b"GET\r\n"), None);
        assert_eq!(request_target_from_raw(b""), None);
    }
}
