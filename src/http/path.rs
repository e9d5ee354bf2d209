//! Path normalization before routing. Router, policy mapper and upstream must
//! all agree on which resource a request names, so anything two HTTP stacks
//! could read differently (dot segments, encoded slashes, double encodings,
//! stray bytes) is rejected here, and harmless variation is made canonical.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Default for [`PathPolicy::max_len`], in bytes.
pub const DEFAULT_MAX_PATH_LEN: usize = 2048;

/// Tunables for [`normalize_path`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathPolicy {
    /// Longest accepted path (the part before `?`, raw, before decoding), in
    /// bytes. The query is not counted: bound the whole request target at the
    /// HTTP parser. Default 2048.
    pub max_len: usize,
    /// Accept empty segments (`/a//b`); they are kept as-is, never merged.
    /// A leading `//` is rejected regardless, because URL joiners read it as
    /// a scheme-relative authority. Default `false`.
    pub allow_double_slash: bool,
}

impl Default for PathPolicy {
    fn default() -> Self {
        Self {
            max_len: DEFAULT_MAX_PATH_LEN,
            allow_double_slash: false,
        }
    }
}

/// A request target that passed [`normalize_path`]: the canonical path plus
/// the raw query, stored in one buffer ready to send upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath {
    /// `path` or `path?query`; always ASCII.
    uri: String,
    /// Byte length of the path inside `uri`.
    path_len: usize,
    /// Whether a `?` followed the path (an empty query is kept as `Some("")`).
    has_query: bool,
}

impl NormalizedPath {
    /// The normalized path; always starts with `/`.
    pub fn path(&self) -> &str {
        self.uri.get(..self.path_len).unwrap_or("/")
    }

    /// The query without its `?`, byte-for-byte as received; `None` when the
    /// target had no `?`, `Some("")` when it ended in a bare `?`.
    pub fn query(&self) -> Option<&str> {
        if self.has_query {
            self.uri.get(self.path_len.saturating_add(1)..)
        } else {
            None
        }
    }

    /// `path`, plus `?query` if there was one: the target to send upstream.
    pub fn to_uri_string(&self) -> String {
        self.uri.clone()
    }

    /// Same as [`to_uri_string`](Self::to_uri_string), borrowed.
    pub fn as_uri_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Why a request target was refused. Every variant maps to a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PathRejection {
    /// Not origin-form (`/path?query`): absolute-form, authority-form, `*`
    /// or empty. The proxy handles those before normalization.
    #[error("request target is not in origin-form")]
    NotOriginForm,
    /// The path is longer than [`PathPolicy::max_len`].
    #[error("path is too long")]
    TooLong,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    InvalidPercentEncoding,
    /// `%2F`: an encoded `/` that some backends decode before routing.
    #[error("encoded slash (%2F) in path")]
    EncodedSlash,
    /// `%5C`: an encoded `\`.
    #[error("encoded backslash (%5C) in path")]
    EncodedBackslash,
    /// A raw `\`, which Windows and some frameworks treat as `/`.
    #[error("backslash in path")]
    Backslash,
    /// A `.` or `..` segment (after decoding unreserved characters, and
    /// ignoring `;` path parameters, so `..;x` counts).
    #[error("dot segment in path")]
    DotSegment,
    /// An empty segment (`//`).
    #[error("empty path segment (//)")]
    DoubleSlash,
    /// A raw or percent-encoded control byte (0x00–0x1F, 0x7F).
    #[error("control byte in request target")]
    ControlByte,
    /// Percent-encoded bytes that are not valid UTF-8.
    #[error("percent-encoded bytes are not valid UTF-8")]
    InvalidUtf8,
    /// A raw byte >= 0x80; request targets are ASCII, UTF-8 must be encoded.
    #[error("raw non-ASCII byte in request target")]
    NonAscii,
    /// A `#`: fragments are never sent to a server.
    #[error("fragment (#) in request target")]
    Fragment,
    /// `%25` followed by two hex digits (`%252F`, `%25%32%66`): a second
    /// decoding pass downstream would produce a different path.
    #[error("double percent-encoding (%25XX) in path")]
    DoubleEncoding,
    /// A raw byte not allowed in a request target: space, or in the path one
    /// of `"` `<` `>` `` ` `` `{` `}`.
    #[error("character not allowed in request target")]
    InvalidCharacter,
    /// A percent-encoded code point that upstream Unicode folding turns into
    /// `.`, `/` or `\\` (e.g. `%EF%BC%8E`, fullwidth full stop).
    #[error("encoded character that folds to a separator or dot")]
    ConfusableCharacter,
}

impl PathRejection {
    /// Every variant, e.g. to pre-register metric labels.
    pub const ALL: &'static [PathRejection] = &[
        Self::NotOriginForm,
        Self::TooLong,
        Self::InvalidPercentEncoding,
        Self::EncodedSlash,
        Self::EncodedBackslash,
        Self::Backslash,
        Self::DotSegment,
        Self::DoubleSlash,
        Self::ControlByte,
        Self::InvalidUtf8,
        Self::NonAscii,
        Self::Fragment,
        Self::DoubleEncoding,
        Self::InvalidCharacter,
        Self::ConfusableCharacter,
    ];

    /// Stable snake_case label for metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotOriginForm => "not_origin_form",
            Self::TooLong => "too_long",
            Self::InvalidPercentEncoding => "invalid_percent_encoding",
            Self::EncodedSlash => "encoded_slash",
            Self::EncodedBackslash => "encoded_backslash",
            Self::Backslash => "backslash",
            Self::DotSegment => "dot_segment",
            Self::DoubleSlash => "double_slash",
            Self::ControlByte => "control_byte",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::NonAscii => "non_ascii",
            Self::Fragment => "fragment",
            Self::DoubleEncoding => "double_encoding",
            Self::InvalidCharacter => "invalid_character",
            Self::ConfusableCharacter => "confusable_character",
        }
    }
}

/// Normalizes an origin-form request target as received on the wire.
///
/// The target is split at the first `?`. In the path:
/// - `%XX` escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
///   decoded; every other escape stays encoded with uppercase hex;
/// - rejected: `%2F`, `%5C`, `\`, `#`, control bytes raw or encoded, raw
///   space, `"`, `<`, `>`, `` ` ``, `{`, `}`, raw bytes >= 0x80, malformed
///   escapes, escapes that are not valid UTF-8, `%25` followed by two hex
///   digits, `.`/`..` segments, empty segments (see
///   [`PathPolicy::allow_double_slash`]);
/// - `;` is kept (legacy Java apps use `;jsessionid=`), but a segment whose
///   part before its first `;` (or `%3B`) is `.` or `..` is a dot segment,
///   because Tomcat strips path parameters before resolving dots (`/..;/`).
///
/// The query is passed through untouched, but control bytes, space, `#` and
/// non-ASCII bytes are rejected there too. The result is idempotent: feeding
/// [`NormalizedPath::as_uri_str`] back in returns the same value.
///
/// Allocates exactly one `String` (sized to the input) on success.
pub fn normalize_path(
    raw_target: &[u8],
    policy: &PathPolicy,
) -> Result<NormalizedPath, PathRejection> {
    if raw_target.first() != Some(&b'/') {
        return Err(PathRejection::NotOriginForm);
    }
    let mut parts = raw_target.splitn(2, |b| *b == b'?');
    let path = parts.next().unwrap_or_default();
    let query = parts.next();
    if path.len() > policy.max_len {
        return Err(PathRejection::TooLong);
    }

    let mut out: Vec<u8> = Vec::with_capacity(raw_target.len());
    out.push(b'/');
    let mut seg_start = out.len();
    let mut i = 1;
    while let Some(&b) = path.get(i) {
        match b {
            b'/' => {
                end_segment(&out, seg_start, false, policy)?;
                out.push(b'/');
                seg_start = out.len();
                i += 1;
            }
            b'%' => {
                let v = decode_escape(path, i)?;
                match v {
                    _ if is_unreserved(v) => push_literal(&mut out, v)?,
                    b'/' => return Err(PathRejection::EncodedSlash),
                    b'\\' => return Err(PathRejection::EncodedBackslash),
                    0x00..=0x1F | 0x7F => return Err(PathRejection::ControlByte),
                    0x80..=0xFF => {
                        i = push_utf8_escapes(&mut out, path, i, v)?;
                        continue;
                    }
                    _ => push_escape(&mut out, v),
                }
                i += 3;
            }
            _ if is_path_literal(b) => {
                push_literal(&mut out, b)?;
                i += 1;
            }
            _ => return Err(reject_byte(b)),
        }
    }
    end_segment(&out, seg_start, true, policy)?;
    let path_len = out.len();

    if let Some(q) = query {
        if let Some(&bad) = q.iter().find(|&&b| !is_query_byte(b)) {
            return Err(reject_byte(bad));
        }
        out.push(b'?');
        out.extend_from_slice(q);
    }
    let uri = String::from_utf8(out).map_err(|_| PathRejection::InvalidUtf8)?;
    Ok(NormalizedPath {
        uri,
        path_len,
        has_query: query.is_some(),
    })
}

/// ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 §2.3).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes copied verbatim into the path: unreserved, sub-delims, `:` `@`, and
/// `| ^ [ ]`, which browsers send unencoded (WHATWG path percent-encode set).
fn is_path_literal(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'|'
                | b'^'
                | b'['
                | b']'
        )
}

/// Query bytes passed through: visible ASCII except `#`.
fn is_query_byte(b: u8) -> bool {
    (0x21..=0x7E).contains(&b) && b != b'#'
}

/// The rejection for a raw byte that is not accepted where it appeared.
fn reject_byte(b: u8) -> PathRejection {
    match b {
        0x00..=0x1F | 0x7F => PathRejection::ControlByte,
        0x80..=0xFF => PathRejection::NonAscii,
        b'\\' => PathRejection::Backslash,
        b'#' => PathRejection::Fragment,
        _ => PathRejection::InvalidCharacter,
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_upper(nibble: u8) -> u8 {
    match nibble & 0x0F {
        n @ 0..=9 => b'0' + n,
        n => b'A' + (n - 10),
    }
}

/// Decodes the `%XX` starting at `path[i]` (which is `%`).
fn decode_escape(path: &[u8], i: usize) -> Result<u8, PathRejection> {
    let hi = path.get(i + 1).copied().and_then(hex_value);
    let lo = path.get(i + 2).copied().and_then(hex_value);
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathRejection::InvalidPercentEncoding),
    }
}

fn push_escape(out: &mut Vec<u8>, v: u8) {
    out.extend_from_slice(&[b'%', hex_upper(v >> 4), hex_upper(v)]);
}

/// Appends a literal byte, refusing the second hex digit after a `%25`.
fn push_literal(out: &mut Vec<u8>, b: u8) -> Result<(), PathRejection> {
    if b.is_ascii_hexdigit() {
        if let [.., b'%', b'2', b'5', h] = out.as_slice() {
            if h.is_ascii_hexdigit() {
                return Err(PathRejection::DoubleEncoding);
            }
        }
    }
    out.push(b);
    Ok(())
}

/// Handles an escape decoding to `lead >= 0x80` at `path[i]`: the whole
/// UTF-8 sequence must follow as escapes. Re-emits it with uppercase hex and
/// returns the index after it.
fn push_utf8_escapes(
    out: &mut Vec<u8>,
    path: &[u8],
    i: usize,
    lead: u8,
) -> Result<usize, PathRejection> {
    let width = match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Err(PathRejection::InvalidUtf8),
    };
    let mut buf = [lead, 0, 0, 0];
    let mut pos = i + 3;
    for slot in buf.iter_mut().take(width).skip(1) {
        if path.get(pos) != Some(&b'%') {
            return Err(PathRejection::InvalidUtf8);
        }
        *slot = decode_escape(path, pos)?;
        pos += 3;
    }
    let seq = buf.get(..width).unwrap_or_default();
    let Ok(decoded) = std::str::from_utf8(seq) else {
        return Err(PathRejection::InvalidUtf8);
    };
    if decoded.chars().any(is_confusable_separator) {
        return Err(PathRejection::ConfusableCharacter);
    }
    for &v in seq {
        push_escape(out, v);
    }
    Ok(pos)
}

/// Code points that Unicode normalization (NFKC), IIS "best fit" mapping or
/// similar upstream folding turn into `.`, `/` or `\\` — a dot segment or a
/// separator the path check never saw.
fn is_confusable_separator(c: char) -> bool {
    matches!(
        c,
        '\u{FF0E}' // FULLWIDTH FULL STOP
            | '\u{FE52}' // SMALL FULL STOP
            | '\u{2024}' // ONE DOT LEADER
            | '\u{2025}' // TWO DOT LEADER
            | '\u{2026}' // HORIZONTAL ELLIPSIS
            | '\u{FF0F}' // FULLWIDTH SOLIDUS
            | '\u{2215}' // DIVISION SLASH
            | '\u{2044}' // FRACTION SLASH
            | '\u{29F8}' // BIG SOLIDUS
            | '\u{FF3C}' // FULLWIDTH REVERSE SOLIDUS
            | '\u{FE68}' // SMALL REVERSE SOLIDUS
            | '\u{29F5}' // REVERSE SOLIDUS OPERATOR
            | '\u{29F9}' // BIG REVERSE SOLIDUS
    )
}

/// Checks the segment `out[seg_start..]` that a `/` (or the end) just closed.
fn end_segment(
    out: &[u8],
    seg_start: usize,
    last: bool,
    policy: &PathPolicy,
) -> Result<(), PathRejection> {
    let seg = out.get(seg_start..).unwrap_or_default();
    if seg.is_empty() {
        // A trailing slash (or the root) ends in an empty last segment: fine.
        // A leading `//` is never fine.
        if !last && (!policy.allow_double_slash || seg_start == 1) {
            return Err(PathRejection::DoubleSlash);
        }
        return Ok(());
    }
    if matches!(segment_name(seg), b"." | b"..") {
        return Err(PathRejection::DotSegment);
    }
    Ok(())
}

/// A segment without its path parameters: the part before the first `;` or
/// `%3B` (already uppercased in `out`).
fn segment_name(seg: &[u8]) -> &[u8] {
    let semi = seg.iter().position(|&b| b == b';');
    let encoded = seg.windows(3).position(|w| w == b"%3B");
    let end = match (semi, encoded) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => seg.len(),
    };
    seg.get(..end).unwrap_or(seg)
}

#[cfg(test)]
mod tests {
    use super::PathRejection::*;
    use super::*;

    fn norm(s: &str) -> Result<String, PathRejection> {
        normalize_path(s.as_bytes(), &PathPolicy::default()).map(|n| n.to_uri_string())
    }

    /// (input, expected output or rejection)
    const CASES: &[(&str, Result<&str, PathRejection>)] = &[
        // --- accepted, unchanged
        ("/", Ok("/")),
        ("/a", Ok("/a")),
        ("/a/b/c", Ok("/a/b/c")),
        ("/a/b/", Ok("/a/b/")),
        ("/fhir/Patient/123", Ok("/fhir/Patient/123")),
        ("/a.b/c..d/...", Ok("/a.b/c..d/...")),
        ("/.well-known/x", Ok("/.well-known/x")),
        ("/..a/b..", Ok("/..a/b..")),
        ("/a;jsessionid=ABC", Ok("/a;jsessionid=ABC")),
        ("/a;b=c/d;e", Ok("/a;b=c/d;e")),
        ("/~user/!$&'()*+,=:@", Ok("/~user/!$&'()*+,=:@")),
        ("/a|b^c[0]", Ok("/a|b^c[0]")),
        ("/a%20b", Ok("/a%20b")),
        ("/100%25", Ok("/100%25")),
        ("/100%25off", Ok("/100%25off")),
        ("/%25G1", Ok("/%25G1")),
        ("/%25a", Ok("/%25a")),
        ("/%3F%23", Ok("/%3F%23")),
        // --- accepted, normalized
        ("/%41%42c", Ok("/ABc")),
        ("/%7e%7E%2d%5f", Ok("/~~-_")),
        ("/a%2eb", Ok("/a.b")),
        ("/%2e%2e%2e", Ok("/...")),
        ("/%3a%3A", Ok("/%3A%3A")),
        ("/%c3%a9", Ok("/%C3%A9")),
        ("/%E2%82%AC", Ok("/%E2%82%AC")),
        ("/%f0%9f%98%80", Ok("/%F0%9F%98%80")),
        ("/%7b%7d", Ok("/%7B%7D")),
        // --- queries pass through
        ("/a?b=c", Ok("/a?b=c")),
        ("/a?", Ok("/a?")),
        ("/?x", Ok("/?x")),
        ("/a?%2F..//%zz", Ok("/a?%2F..//%zz")),
        ("/a?x=1?y=2", Ok("/a?x=1?y=2")),
        ("/a?q={\"k\":\"v\"}", Ok("/a?q={\"k\":\"v\"}")),
        ("/%2e%2E?q", Err(DotSegment)),
        ("/a?b c", Err(InvalidCharacter)),
        ("/a?b\0", Err(ControlByte)),
        ("/a?b\tc", Err(ControlByte)),
        ("/a?b#c", Err(Fragment)),
        ("/a?\u{e9}", Err(NonAscii)),
        // --- not origin-form
        ("", Err(NotOriginForm)),
        ("*", Err(NotOriginForm)),
        ("http://evil/a", Err(NotOriginForm)),
        ("example.com:443", Err(NotOriginForm)),
        ("a/b", Err(NotOriginForm)),
        ("?q", Err(NotOriginForm)),
        (" /a", Err(NotOriginForm)),
        // --- percent-encoding
        ("/%", Err(InvalidPercentEncoding)),
        ("/a%", Err(InvalidPercentEncoding)),
        ("/%1", Err(InvalidPercentEncoding)),
        ("/%G1", Err(InvalidPercentEncoding)),
        ("/%1G", Err(InvalidPercentEncoding)),
        ("/%%41", Err(InvalidPercentEncoding)),
        ("/%-1", Err(InvalidPercentEncoding)),
        ("/%2F", Err(EncodedSlash)),
        ("/a%2fb", Err(EncodedSlash)),
        ("/%5C", Err(EncodedBackslash)),
        ("/a%5cb", Err(EncodedBackslash)),
        ("/a\\b", Err(Backslash)),
        ("/..\\", Err(Backslash)),
        // --- double encoding
        ("/%252F", Err(DoubleEncoding)),
        ("/%252f", Err(DoubleEncoding)),
        ("/%252e%252e/", Err(DoubleEncoding)),
        ("/%25%32%66", Err(DoubleEncoding)),
        ("/%25%32f", Err(DoubleEncoding)),
        ("/%252%46", Err(DoubleEncoding)),
        ("/%2525", Err(DoubleEncoding)),
        ("/%25ab", Err(DoubleEncoding)),
        ("/%2500", Err(DoubleEncoding)),
        // --- control bytes
        ("/%00", Err(ControlByte)),
        ("/a%0d%0a", Err(ControlByte)),
        ("/%1f", Err(ControlByte)),
        ("/%7F", Err(ControlByte)),
        ("/a\0", Err(ControlByte)),
        ("/a\r\nb", Err(ControlByte)),
        ("/a\tb", Err(ControlByte)),
        ("/a\x7f", Err(ControlByte)),
        ("/a b", Err(InvalidCharacter)),
        ("/a\"b", Err(InvalidCharacter)),
        ("/<script>", Err(InvalidCharacter)),
        ("/a`b", Err(InvalidCharacter)),
        ("/{id}", Err(InvalidCharacter)),
        // --- dot segments
        ("/.", Err(DotSegment)),
        ("/..", Err(DotSegment)),
        ("/a/.", Err(DotSegment)),
        ("/a/..", Err(DotSegment)),
        ("/a/./b", Err(DotSegment)),
        ("/a/../b", Err(DotSegment)),
        ("/./", Err(DotSegment)),
        ("/../etc/passwd", Err(DotSegment)),
        ("/%2e", Err(DotSegment)),
        ("/%2e%2e/", Err(DotSegment)),
        ("/.%2E/", Err(DotSegment)),
        ("/%2E./x", Err(DotSegment)),
        ("/a/..;/admin", Err(DotSegment)),
        ("/a/.;x=1/b", Err(DotSegment)),
        ("/a/..%3Bx/admin", Err(DotSegment)),
        ("/a/..%3b", Err(DotSegment)),
        ("/%2e%2e;jsessionid=1/admin", Err(DotSegment)),
        // --- empty segments
        ("//", Err(DoubleSlash)),
        ("//evil.com/a", Err(DoubleSlash)),
        ("/a//b", Err(DoubleSlash)),
        ("/a//", Err(DoubleSlash)),
        ("/a///b", Err(DoubleSlash)),
        // --- fragments, non-ASCII
        ("/a#b", Err(Fragment)),
        ("/a#b?c", Err(Fragment)),
        ("/#", Err(Fragment)),
        ("/caf\u{e9}", Err(NonAscii)),
        ("/\u{1f600}", Err(NonAscii)),
        ("/%EF%BC%8E%EF%BC%8E/admin", Err(ConfusableCharacter)),
        ("/a%EF%BC%8Fb", Err(ConfusableCharacter)),
        ("/a%E2%88%95b", Err(ConfusableCharacter)),
        ("/%c3", Err(InvalidUtf8)),
        ("/%c3a", Err(InvalidUtf8)),
        ("/%c3%41", Err(InvalidUtf8)),
        ("/%c3%zz", Err(InvalidPercentEncoding)),
        ("/%80", Err(InvalidUtf8)),
        ("/%ff", Err(InvalidUtf8)),
        ("/%c0%af", Err(InvalidUtf8)),
        ("/%e0%80%af", Err(InvalidUtf8)),
        ("/%ed%a0%80", Err(InvalidUtf8)),
        ("/%f4%90%80%80", Err(InvalidUtf8)),
        ("/%e2%82", Err(InvalidUtf8)),
        ("/%c3%a9%a9", Err(InvalidUtf8)),
    ];

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for (input, want) in CASES {
            let got = norm(input);
            let want = want.map(str::to_owned);
            if got != want {
                failures.push(format!("{input:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(CASES.len() >= 60);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn accepted_outputs_are_fixed_points() {
        for (input, want) in CASES {
            if let Ok(out) = want {
                assert_eq!(norm(out).as_deref(), Ok(*out), "{input:?}");
            }
        }
    }

    #[test]
    fn raw_bytes_not_utf8() {
        let p = PathPolicy::default();
        assert_eq!(normalize_path(b"/a\xff", &p), Err(NonAscii));
        assert_eq!(normalize_path(b"/a?\xc3\x28", &p), Err(NonAscii));
        assert_eq!(normalize_path(b"\xff/", &p), Err(NotOriginForm));
    }

    #[test]
    fn double_slash_allowed() {
        let p = PathPolicy {
            allow_double_slash: true,
            ..PathPolicy::default()
        };
        let n = |s: &str| normalize_path(s.as_bytes(), &p).map(|n| n.to_uri_string());
        assert_eq!(n("/a//b").as_deref(), Ok("/a//b"));
        assert_eq!(n("/a///").as_deref(), Ok("/a///"));
        assert_eq!(n("//a"), Err(DoubleSlash));
        assert_eq!(n("//"), Err(DoubleSlash));
        assert_eq!(n("/a//../b"), Err(DotSegment));
    }

    #[test]
    fn length_limit_counts_raw_path_only() {
        let p = PathPolicy {
            max_len: 8,
            ..PathPolicy::default()
        };
        assert!(normalize_path(b"/1234567", &p).is_ok());
        assert_eq!(normalize_path(b"/12345678", &p), Err(TooLong));
        // Raw length counts, even if decoding would shrink it.
        assert_eq!(normalize_path(b"/%41%41%41", &p), Err(TooLong));
        assert!(normalize_path(b"/a?0123456789", &p).is_ok());
        let long = format!("/{}", "a".repeat(DEFAULT_MAX_PATH_LEN));
        assert_eq!(norm(&long), Err(TooLong));
        assert!(norm(&long[..DEFAULT_MAX_PATH_LEN]).is_ok());
    }

    #[test]
    fn accessors() {
        let p = PathPolicy::default();
        let n = normalize_path(b"/%7Ea/b?x=%2F&y", &p).unwrap();
        assert_eq!(n.path(), "/~a/b");
        assert_eq!(n.query(), Some("x=%2F&y"));
        assert_eq!(n.to_uri_string(), "/~a/b?x=%2F&y");
        assert_eq!(n.to_string(), "/~a/b?x=%2F&y");
        let n = normalize_path(b"/a", &p).unwrap();
        assert_eq!((n.path(), n.query()), ("/a", None));
        let n = normalize_path(b"/a?", &p).unwrap();
        assert_eq!((n.path(), n.query()), ("/a", Some("")));
        assert_eq!(n.as_uri_str(), "/a?");
    }

    #[test]
    fn clean_path_allocates_once_sized_to_input() {
        let raw = b"/fhir/Patient/123/_history?_count=10";
        let n = normalize_path(raw, &PathPolicy::default()).unwrap();
        assert_eq!(n.uri.capacity(), raw.len());
    }

    #[test]
    fn reasons_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in PathRejection::ALL {
            let s = r.reason();
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{s}"
            );
            assert!(seen.insert(s), "duplicate {s}");
            assert!(!r.to_string().is_empty());
        }
        assert_eq!(EncodedSlash.reason(), "encoded_slash");
    }

    #[test]
    fn policy_deserializes_with_defaults() {
        // serde's own value deserializer keeps this free of format crates.
        use serde::de::value::{Error, MapDeserializer};
        let m: MapDeserializer<'_, _, Error> =
            MapDeserializer::new(std::iter::once(("allow_double_slash", true)));
        let p = PathPolicy::deserialize(m).unwrap();
        assert_eq!(p.max_len, DEFAULT_MAX_PATH_LEN);
        assert!(p.allow_double_slash);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// Fully percent-decodes (one pass), as a naive backend would.
        fn decode_once(s: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut i = 0;
            while let Some(&b) = s.get(i) {
                if b == b'%' {
                    if let (Some(h), Some(l)) = (
                        s.get(i + 1).copied().and_then(hex_value),
                        s.get(i + 2).copied().and_then(hex_value),
                    ) {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                }
                out.push(b);
                i += 1;
            }
            out
        }

        fn check_output(out: &NormalizedPath, policy: &PathPolicy) {
            let path = out.path();
            assert!(path.starts_with('/'));
            assert!(path.is_ascii());
            for seg in path.split('/').skip(1) {
                let name = segment_name(seg.as_bytes());
                assert!(name != b"." && name != b"..", "dot segment in {path:?}");
            }
            assert!(
                policy.allow_double_slash || !path.contains("//"),
                "{path:?}"
            );
            assert!(!path.starts_with("//"));
            let upper = path.to_ascii_uppercase();
            assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{path:?}");
            // No double encoding: decoding once leaves no escape that a
            // second pass would turn into something else.
            let once = decode_once(path.as_bytes());
            let twice = decode_once(&once);
            assert_eq!(once, twice, "double decoding changes {path:?}");
            // Decoding introduces no separators.
            let slashes = |b: &[u8]| b.iter().filter(|c| **c == b'/').count();
            assert_eq!(slashes(&once), slashes(path.as_bytes()));
            assert!(!once.contains(&b'\\'));
            // Idempotent.
            let again = normalize_path(out.as_uri_str().as_bytes(), policy);
            assert_eq!(again.as_ref(), Ok(out));
        }

        fn token() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "/",
                "/",
                "a",
                "Z",
                "0",
                "f",
                ".",
                "..",
                "%2e",
                "%2E",
                "%41",
                "%7e",
                "%25",
                "%2f",
                "%5c",
                "%32",
                "%66",
                "%3B",
                ";",
                "%20",
                "%c3%a9",
                "%C3",
                "%e2%82%ac",
                "%00",
                "~",
                "-",
                "_",
                "%",
                "%g",
                "\\",
                "#",
                "?",
                "=",
                "&",
                ":",
                "@",
                "|",
                " ",
                "%ff",
                "x=1",
            ])
        }

        fn policy() -> impl Strategy<Value = PathPolicy> {
            (any::<bool>(), 0usize..64).prop_map(|(allow_double_slash, max)| PathPolicy {
                max_len: if max == 0 { DEFAULT_MAX_PATH_LEN } else { max },
                allow_double_slash,
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            #[test]
            fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..64), p in policy()) {
                if let Ok(out) = normalize_path(&raw, &p) {
                    check_output(&out, &p);
                }
            }

            #[test]
            fn slash_prefixed_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..64), p in policy()) {
                let mut t = vec![b'/'];
                t.extend(raw);
                if let Ok(out) = normalize_path(&t, &p) {
                    check_output(&out, &p);
                }
            }

            #[test]
            fn structured_targets(tokens in prop::collection::vec(token(), 0..16), p in policy()) {
                let raw = format!("/{}", tokens.concat());
                if let Ok(out) = normalize_path(raw.as_bytes(), &p) {
                    check_output(&out, &p);
                    // Meaning is preserved: one decoding pass of input and
                    // output name the same bytes.
                    let (rp, _) = raw.split_once('?').unwrap_or((&raw, ""));
                    prop_assert_eq!(decode_once(rp.as_bytes()), decode_once(out.path().as_bytes()));
                    let rq = raw.split_once('?').map(|(_, q)| q);
                    prop_assert_eq!(rq, out.query());
                }
            }
        }
    }
}
