//! HTTP/1 request heads exactly as the client sent them.
//!
//! hyper reconciles framing while it parses: it folds equal duplicate
//! `Content-Length` fields and drops one that follows `Transfer-Encoding`,
//! and it parses the target into a URI. The smuggling and ambiguity checks
//! must judge the bytes, so [`HeadTracker`] follows a connection's inbound
//! bytes with the parser hyper itself uses (httparse), records each request's
//! raw facts as a [`RawHead`], and skips its body by the framing it has just
//! checked (decoding chunks as hyper does). Whatever it cannot follow makes
//! the connection [`HeadTracker::is_poisoned`]: a request that then finds no
//! raw head is refused, never judged on hyper's view alone.

use super::framing::{check_framing_for_version, FramingRejection};
use ::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use ::http::{HeaderMap, HeaderValue, Version};
use std::collections::VecDeque;

/// The most field lines a head may have here (hyper must refuse more).
pub const MAX_FIELDS: usize = 512;

/// What the bytes of one request head say, before any parser reconciled them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHead {
    /// The request target as sent on the request line.
    pub target: Box<[u8]>,
    /// The strict framing verdict on the raw `Content-Length` and
    /// `Transfer-Encoding` fields.
    pub framing: Result<(), FramingRejection>,
    /// How many `Host` fields the head carried.
    pub hosts: usize,
    /// Total bytes of the head (request line, fields, blank line).
    pub len: usize,
}

/// Where the tracker is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Inside a body of known length: this many bytes remain.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// After an upgrade or CONNECT request: no longer HTTP/1 requests, or
    /// not knowable from the bytes alone.
    Opaque,
    /// The bytes could not be followed; no later head is trusted.
    Poisoned,
}

/// The chunked decoder's states, as in hyper's `ChunkedState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// Follows one HTTP/1 connection's inbound bytes.
#[derive(Debug)]
pub struct HeadTracker {
    state: State,
    /// Bytes of a head that spans reads.
    partial: Vec<u8>,
    max_head: usize,
    max_headers: usize,
    heads: VecDeque<RawHead>,
    /// Whether any byte of the current head has arrived (for deadlines).
    head_started: bool,
}

impl HeadTracker {
    /// `max_head` bounds a head in bytes and `max_headers` its field lines;
    /// both must be at least hyper's limits, so hyper refuses anything this
    /// tracker cannot hold.
    pub fn new(max_head: usize, max_headers: usize) -> HeadTracker {
        HeadTracker {
            state: State::Head,
            partial: Vec::new(),
            max_head,
            max_headers,
            heads: VecDeque::new(),
            head_started: false,
        }
    }

    /// The next complete head, in request order.
    pub fn pop(&mut self) -> Option<RawHead> {
        self.heads.pop_front()
    }

    /// True when the bytes could not be followed.
    pub fn is_poisoned(&self) -> bool {
        self.state == State::Poisoned
    }

    /// True when no more heads will be recorded (upgraded or poisoned).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Opaque | State::Poisoned)
    }

    /// Waiting for a request head: `Some(false)` before its first byte,
    /// `Some(true)` once part of it arrived, `None` inside a body or after
    /// an upgrade.
    pub fn awaiting_head(&self) -> Option<bool> {
        (self.state == State::Head).then_some(self.head_started)
    }

    /// Feeds bytes as they are read from the client, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Opaque | State::Poisoned => return,
                State::Head => {
                    let used = self.feed_head(bytes);
                    bytes = &bytes[used..];
                }
                State::Body(left) => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n {
                        State::Head
                    } else {
                        State::Body(left - n)
                    };
                }
                State::Chunked(c) => {
                    let used = self.feed_chunked(c, bytes);
                    bytes = &bytes[used..];
                }
            }
        }
    }

    /// Consumes head bytes; returns how many were used.
    fn feed_head(&mut self, bytes: &[u8]) -> usize {
        self.head_started = true;
        let (parsed, used) = if self.partial.is_empty() {
            match self.parse(bytes) {
                Parsed::Complete(head, len) => (Some(head), len),
                Parsed::Partial => {
                    self.partial.extend_from_slice(bytes);
                    (None, bytes.len())
                }
                Parsed::Invalid => {
                    self.state = State::Poisoned;
                    return bytes.len();
                }
            }
        } else {
            let before = self.partial.len();
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(bytes);
            // A head ends with an empty line: parse again only when the new
            // bytes (with the last three before them) could hold its end, so
            // a head trickled byte by byte costs linear, not quadratic, work.
            let tail = &joined[before.saturating_sub(3)..];
            if !tail.windows(2).any(|w| w == b"\n\n" || w == b"\n\r") {
                self.partial = joined;
                if self.partial.len() > self.max_head {
                    self.state = State::Poisoned;
                    self.partial = Vec::new();
                }
                return bytes.len();
            }
            let outcome = self.parse(&joined);
            match outcome {
                Parsed::Complete(head, len) => match len.checked_sub(before) {
                    Some(used) => (Some(head), used),
                    // httparse took fewer bytes than were already held: the
                    // stream cannot be followed.
                    None => {
                        self.state = State::Poisoned;
                        return bytes.len();
                    }
                },
                Parsed::Partial => {
                    self.partial = joined;
                    (None, bytes.len())
                }
                Parsed::Invalid => {
                    self.state = State::Poisoned;
                    return bytes.len();
                }
            }
        };
        if self.partial.len() > self.max_head {
            self.state = State::Poisoned;
            self.partial = Vec::new();
            return used;
        }
        if let Some((head, next)) = parsed {
            self.partial = Vec::new();
            self.head_started = false;
            self.state = next;
            self.heads.push_back(head);
        }
        used
    }

    fn parse(&self, bytes: &[u8]) -> Parsed {
        // Uninitialized slots: nothing is zeroed per request.
        let mut fields =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req
            .parse_with_uninit_headers(bytes, &mut fields[..self.max_headers.min(MAX_FIELDS)])
        {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Invalid,
        };
        if len > self.max_head {
            return Parsed::Invalid;
        }
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            return Parsed::Invalid;
        };
        let version = if version == 1 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let mut framing = HeaderMap::new();
        let mut hosts = 0;
        let mut upgrade = method == "CONNECT";
        for f in req.headers.iter() {
            if f.name.eq_ignore_ascii_case("host") {
                hosts += 1;
            } else if f.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
            let name = if f.name.eq_ignore_ascii_case("content-length") {
                CONTENT_LENGTH
            } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
                TRANSFER_ENCODING
            } else {
                continue;
            };
            match HeaderValue::from_bytes(f.value) {
                Ok(v) => {
                    framing.append(name, v);
                }
                Err(_) => return Parsed::Invalid,
            }
        }
        let verdict = check_framing_for_version(version, &framing);
        let next = match verdict {
            // Ambiguous framing: the request is refused and the connection
            // closed, so there is nothing after it to follow.
            Err(_) => State::Poisoned,
            Ok(()) if upgrade => State::Opaque,
            Ok(()) => {
                if framing.contains_key(TRANSFER_ENCODING) {
                    State::Chunked(Chunk::Start)
                } else {
                    match framing
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                    {
                        Some(0) | None => State::Head,
                        Some(n) => State::Body(n),
                    }
                }
            }
        };
        Parsed::Complete(
            (
                RawHead {
                    target: target.as_bytes().into(),
                    framing: verdict,
                    hosts,
                    len,
                },
                next,
            ),
            len,
        )
    }

    /// Consumes chunked-body bytes; returns how many were used.
    fn feed_chunked(&mut self, mut c: Chunk, bytes: &[u8]) -> usize {
        let mut i = 0;
        while i < bytes.len() {
            if let Chunk::Data(left) = c {
                let n = ((bytes.len() - i) as u64).min(left);
                i += n as usize;
                c = if n == left {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left - n)
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            let next = match (c, b) {
                (Chunk::Start, _) => hex(b).map(Chunk::Size),
                (Chunk::Size(n), b'\t' | b' ') => Some(Chunk::SizeLws(n)),
                (Chunk::Size(n), b';') => Some(Chunk::Extension(n)),
                (Chunk::Size(n), b'\r') => Some(Chunk::SizeLf(n)),
                (Chunk::Size(n), _) => hex(b).and_then(|d| {
                    n.checked_mul(16)
                        .and_then(|n| n.checked_add(d))
                        .map(Chunk::Size)
                }),
                (Chunk::SizeLws(n), b'\t' | b' ') => Some(Chunk::SizeLws(n)),
                (Chunk::SizeLws(n), b';') => Some(Chunk::Extension(n)),
                (Chunk::SizeLws(n), b'\r') => Some(Chunk::SizeLf(n)),
                (Chunk::SizeLws(_), _) => None,
                (Chunk::Extension(n), b'\r') => Some(Chunk::SizeLf(n)),
                (Chunk::Extension(_), b'\n') => None,
                (Chunk::Extension(n), _) => Some(Chunk::Extension(n)),
                (Chunk::SizeLf(0), b'\n') => Some(Chunk::EndCr),
                (Chunk::SizeLf(n), b'\n') => Some(Chunk::Data(n)),
                (Chunk::SizeLf(_), _) => None,
                (Chunk::DataCr, b'\r') => Some(Chunk::DataLf),
                (Chunk::DataLf, b'\n') => Some(Chunk::Start),
                (Chunk::DataCr | Chunk::DataLf, _) => None,
                (Chunk::EndCr, b'\r') => Some(Chunk::EndLf),
                (Chunk::EndCr, _) => Some(Chunk::Trailer),
                (Chunk::Trailer, b'\r') => Some(Chunk::TrailerLf),
                (Chunk::Trailer, _) => Some(Chunk::Trailer),
                (Chunk::TrailerLf, b'\n') => Some(Chunk::EndCr),
                (Chunk::TrailerLf, _) => None,
                (Chunk::EndLf, b'\n') => {
                    self.state = State::Head;
                    return i;
                }
                (Chunk::EndLf, _) => None,
                // Consumed in bulk above; were it ever here, poison.
                (Chunk::Data(_), _) => None,
            };
            match next {
                Some(n) => c = n,
                None => {
                    self.state = State::Poisoned;
                    return bytes.len();
                }
            }
        }
        self.state = State::Chunked(c);
        i
    }
}

/// A chunk-size digit.
fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

enum Parsed {
    Complete((RawHead, State), usize),
    Partial,
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> HeadTracker {
        HeadTracker::new(64 * 1024, 200)
    }

    fn heads(input: &[u8]) -> (Vec<RawHead>, HeadTracker) {
        let mut t = tracker();
        t.feed(input);
        let mut out = Vec::new();
        while let Some(h) = t.pop() {
            out.push(h);
        }
        (out, t)
    }

    #[test]
    fn raw_framing_hyper_would_reconcile_is_seen() {
        for (head, why) in [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                FramingRejection::ContentLengthAndTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
                FramingRejection::DuplicateContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                FramingRejection::UnsupportedTransferEncoding,
            ),
        ] {
            let (h, t) = heads(head.as_bytes());
            assert_eq!(h.len(), 1, "{head}");
            assert_eq!(h[0].framing, Err(why), "{head}");
            assert!(t.is_poisoned(), "nothing after an ambiguous head is followed");
        }
    }

    #[test]
    fn target_and_hosts_are_the_bytes_sent() {
        let (h, _) = heads(b"\r\nGET /a#frag?x HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
        assert_eq!(&*h[0].target, b"/a#frag?x");
        assert_eq!(h[0].hosts, 2);
    }

    #[test]
    fn bodies_are_skipped_by_length_and_by_chunks() {
        let input = b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcde(\
POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nGET \r\n0\r\nX-T: 1\r\n\r\n\
GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
        // Six bytes where the length says five: the next head starts with
        // "(", which is no method.
        let (h, t) = heads(input);
        assert_eq!(h.len(), 1);
        assert!(t.is_poisoned());
        let fixed = String::from_utf8_lossy(input).replace("abcde(", "abcde");
        let (h, t) = heads(fixed.as_bytes());
        let targets: Vec<&[u8]> = h.iter().map(|h| &*h.target).collect();
        assert_eq!(targets, vec![&b"/1"[..], b"/2", b"/3"]);
        assert!(!t.is_poisoned());
    }

    #[test]
    fn any_split_gives_the_same_heads() {
        let input = b"POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\n\r\n";
        let (whole, _) = heads(input);
        assert_eq!(whole.len(), 3);
        for cut in 0..input.len() {
            for cut2 in cut..input.len() {
                let mut t = tracker();
                t.feed(&input[..cut]);
                t.feed(&input[cut..cut2]);
                t.feed(&input[cut2..]);
                let mut got = Vec::new();
                while let Some(h) = t.pop() {
                    got.push(h);
                }
                assert_eq!(got, whole, "split at {cut}/{cut2}");
            }
        }
    }

    #[test]
    fn malformed_chunks_poison() {
        for body in [
            "zz\r\nabc\r\n0\r\n\r\n",
            "3\nabc\r\n0\r\n\r\n",
            "3\r\nabcX\n",
            "3;a\nb\r\n",
        ] {
            let input =
                format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            let (_, t) = heads(input.as_bytes());
            assert!(t.is_poisoned(), "{body:?}");
        }
    }

    #[test]
    fn upgrades_end_tracking_and_oversized_heads_poison() {
        let (h, t) =
            heads(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
        assert_eq!(h.len(), 1);
        assert!(t.is_done() && !t.is_poisoned());
        let mut t = HeadTracker::new(100, 10);
        t.feed(b"GET / HTTP/1.1\r\nX: ");
        t.feed(&[b'a'; 200]);
        assert!(t.is_poisoned());
    }

    #[test]
    fn deadline_state_follows_the_head() {
        let mut t = tracker();
        assert_eq!(t.awaiting_head(), Some(false));
        t.feed(b"GET / HT");
        assert_eq!(t.awaiting_head(), Some(true));
        t.feed(b"TP/1.1\r\nContent-Length: 2\r\n\r\na");
        assert_eq!(t.awaiting_head(), None);
        t.feed(b"b");
        assert_eq!(t.awaiting_head(), Some(false));
    }
}
