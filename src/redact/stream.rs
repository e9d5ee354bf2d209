//! The streaming JSON transformer: a resumable scanner over a response
//! body that copies what it does not change byte for byte, drops or
//! captures the members and elements a [`Plan`] selects, and repairs the
//! commas around what it drops.
//!
//! It is fed chunks as they arrive ([`Transformer::feed`]) and keeps only
//! the state it needs between them: the container stack, a key or scalar
//! being read, held separators, and a captured value (a Bundle entry, held
//! whole so it can be decided as one record). Memory is bounded by the
//! largest captured value and the nesting depth, not by the body.
//!
//! Keys are compared after unescaping (`"tele\u0063om"` is `telecom`);
//! numbers and strings are never re-encoded. Anything that is not one JSON
//! value is an error, and an error is final: the response must be aborted.

use memchr::memchr2;

/// One step from the root to a member or element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// What to do with one member or element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Copy it through (its own members are asked about in turn).
    Keep,
    /// Leave it out, key and all.
    Remove,
    /// Hold its whole value and hand it to [`Plan::captured`].
    Capture,
}

/// What became of a captured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured {
    /// Left out, as if removed.
    Remove,
    /// The plan wrote one JSON value in its place.
    Written,
}

/// Decides, member by member, what a response keeps.
pub trait Plan {
    /// Member `key` of the object at `path`.
    fn member(&mut self, path: &[Step], key: &str) -> Action;
    /// Element `index` of the array at `path`.
    fn element(&mut self, path: &[Step], index: usize) -> Action;
    /// A captured value, complete; `path` ends with its own step. To keep
    /// it, append what goes in its place to `out` (one JSON value) and say
    /// [`Captured::Written`]; what was appended is discarded otherwise.
    fn captured(
        &mut self,
        path: &[Step],
        value: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Captured, String>;
}

/// Why a body could not be transformed. Every one aborts the response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("malformed JSON at byte {0}")]
    Malformed(u64),
    #[error("JSON nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("a captured value is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body ended inside a JSON value")]
    Truncated,
    #[error("the plan refused a record: {0}")]
    Plan(String),
}

/// Deepest nesting accepted (serde_json's own limit).
pub const MAX_DEPTH: usize = 128;

/// One open object or array.
#[derive(Debug)]
struct Frame {
    is_object: bool,
    /// Members or elements begun so far (removed ones too).
    seen: usize,
    /// Members or elements written so far.
    written: usize,
    /// Inside a dropped or captured value: nothing here is asked about.
    quiet: bool,
}

/// What the scanner expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    /// A key or `}`, right after `{`.
    KeyOrEnd,
    /// A key, after `,` in an object.
    Key,
    Colon,
    /// A value or `]`, right after `[`.
    ValueOrEnd,
    CommaOrEnd,
    /// Only whitespace, after the root value.
    Done,
}

/// The step of the value that comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Root,
    Key,
    Index(usize),
}

/// Where the current value's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Out,
    Drop,
    Capture,
}

/// A member or element the plan did not keep, until its value ends.
#[derive(Debug)]
struct Held {
    action: Action,
    /// Separator and raw key (`, "name"`) to write before a replacement.
    prefix: Vec<u8>,
    key: Option<Vec<u8>>,
    step: Step,
    /// Stack depth of the container holding it.
    depth: usize,
}

/// The transformer. See the module docs.
pub struct Transformer<P> {
    plan: P,
    stack: Vec<Frame>,
    /// Steps to the innermost open (non-quiet) container, and key strings
    /// kept from popped steps for the next ones.
    path: Vec<Step>,
    spare: Vec<String>,
    expect: Expect,
    /// The step of the member or element whose value comes next (a key's
    /// name is in `name`): a `String` is made only for a container.
    next: Next,
    /// Raw bytes of the key being read, quotes included, and its name.
    key: Vec<u8>,
    name: String,
    in_key: bool,
    /// Separator bytes (`,` and whitespace) held until the next member is
    /// known to be kept.
    pending: Vec<u8>,
    sink: Sink,
    /// For a member not kept: where its value goes once it starts (its
    /// colon goes nowhere).
    value_sink: Option<Sink>,
    held: Option<Held>,
    captured: Vec<u8>,
    max_capture: usize,
    /// A scalar is being read: a string, or a number or literal (whose text
    /// is kept to check it).
    in_string: bool,
    in_bare: bool,
    bare: Vec<u8>,
    escaped: bool,
    /// Hex digits still due in a `\u` escape.
    hex_left: u8,
    offset: u64,
    failed: Option<StreamError>,
}

impl<P: Plan> Transformer<P> {
    /// A transformer for one body; a captured value may be at most
    /// `max_capture` bytes.
    pub fn new(plan: P, max_capture: usize) -> Self {
        Transformer {
            plan,
            stack: Vec::new(),
            path: Vec::new(),
            spare: Vec::new(),
            expect: Expect::Value,
            next: Next::Root,
            key: Vec::new(),
            name: String::new(),
            in_key: false,
            pending: Vec::new(),
            sink: Sink::Out,
            value_sink: None,
            held: None,
            captured: Vec::new(),
            max_capture,
            in_string: false,
            in_bare: false,
            bare: Vec::new(),
            escaped: false,
            hex_left: 0,
            offset: 0,
            failed: None,
        }
    }

    /// The plan, for what it learned along the way.
    pub fn plan(&self) -> &P {
        &self.plan
    }

    pub fn plan_mut(&mut self) -> &mut P {
        &mut self.plan
    }

    /// The plan, once the body is done.
    pub fn into_plan(self) -> P {
        self.plan
    }

    /// Feeds the next chunk (`end`: it is the last) and appends what may be
    /// sent to `out`. After an error, every call fails the same way.
    pub fn feed(&mut self, chunk: &[u8], end: bool, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut r = self.run(chunk, out);
        if r.is_ok() && end {
            r = self.finish(out);
        }
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if self.in_bare {
            // A number at the very end of the body ends with it.
            self.end_bare(out)?;
        }
        if self.expect == Expect::Done && !self.in_string && !self.in_key {
            out.extend_from_slice(&std::mem::take(&mut self.pending));
            Ok(())
        } else {
            Err(StreamError::Truncated)
        }
    }

    fn malformed(&self, at: usize) -> StreamError {
        StreamError::Malformed(self.offset + at as u64)
    }

    #[inline]
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        match self.sink {
            Sink::Out => out.extend_from_slice(bytes),
            Sink::Drop => {}
            Sink::Capture => {
                if self.captured.len() + bytes.len() > self.max_capture {
                    return Err(StreamError::TooLarge(self.max_capture));
                }
                self.captured.extend_from_slice(bytes);
            }
        }
        Ok(())
    }

    fn quiet(&self) -> bool {
        self.stack.last().is_some_and(|f| f.quiet)
    }

    fn run(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        let mut i = 0;
        while i < chunk.len() {
            if self.in_key {
                i = self.read_key(chunk, i, out)?;
                continue;
            }
            if self.in_string {
                i = self.read_string(chunk, i, out)?;
                continue;
            }
            let b = chunk[i];
            if self.in_bare {
                if matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'+' | b'-' | b'.' | b'E') {
                    if self.bare.len() > 64 {
                        return Err(self.malformed(i));
                    }
                    self.bare.push(b);
                    self.emit(&[b], out)?;
                    i += 1;
                    continue;
                }
                self.end_bare(out)?;
            }
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                if self.pending.is_empty() {
                    self.emit(&[b], out)?;
                } else {
                    self.pending.push(b);
                }
                i += 1;
                continue;
            }
            self.token(b, i, out)?;
            i += 1;
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// One structural byte or the first byte of a scalar.
    fn token(&mut self, b: u8, i: usize, out: &mut Vec<u8>) -> Result<(), StreamError> {
        match (self.expect, b) {
            (Expect::KeyOrEnd | Expect::Key, b'"') => {
                self.in_key = true;
                self.escaped = false;
                self.key.clear();
                self.key.push(b'"');
            }
            (Expect::KeyOrEnd, b'}')
            | (Expect::ValueOrEnd, b']')
            | (Expect::CommaOrEnd, b'}' | b']') => {
                let is_object = self.stack.last().is_some_and(|f| f.is_object);
                if is_object != (b == b'}') {
                    return Err(self.malformed(i));
                }
                self.close(b, out)?;
            }
            (Expect::Colon, b':') => {
                self.emit(b":", out)?;
                self.expect = Expect::Value;
            }
            (Expect::CommaOrEnd, b',') => {
                let is_object = self.stack.last().is_some_and(|f| f.is_object);
                if self.quiet() {
                    self.emit(b",", out)?;
                } else {
                    self.pending.push(b',');
                }
                self.expect = if is_object {
                    Expect::Key
                } else {
                    Expect::Value
                };
            }
            (Expect::Value | Expect::ValueOrEnd, _) => {
                if !matches!(
                    b,
                    b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
                ) {
                    return Err(self.malformed(i));
                }
                self.begin_value(out)?;
                match b {
                    b'{' | b'[' => self.open(b, out)?,
                    b'"' => {
                        self.in_string = true;
                        self.escaped = false;
                        self.emit(b"\"", out)?;
                    }
                    _ => {
                        self.in_bare = true;
                        self.bare.clear();
                        self.bare.push(b);
                        self.emit(&[b], out)?;
                    }
                }
            }
            _ => return Err(self.malformed(i)),
        }
        Ok(())
    }

    /// A value starts: a held member's value goes where it was decided; in
    /// a (non-quiet) array, the element is asked about.
    fn begin_value(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if let Some(sink) = self.value_sink.take() {
            self.sink = sink;
            return Ok(());
        }
        let Some(top) = self.stack.last_mut() else {
            return Ok(());
        };
        if top.is_object || top.quiet {
            return Ok(());
        }
        let index = top.seen;
        top.seen += 1;
        let action = self.plan.element(&self.path, index);
        self.next = Next::Index(index);
        self.decided(action, false, out)
    }

    /// The plan's answer for a member or element whose value comes next.
    fn decided(
        &mut self,
        action: Action,
        has_key: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        let depth = self.stack.len();
        let Some(top) = self.stack.last_mut() else {
            return Ok(());
        };
        match action {
            Action::Keep => {
                if top.written > 0 {
                    out.extend_from_slice(&self.pending);
                } else {
                    // The first written: what was before it is gone.
                    out.extend(self.pending.iter().filter(|b| **b != b','));
                }
                self.pending.clear();
                top.written += 1;
                if has_key {
                    out.extend_from_slice(&self.key);
                }
                self.sink = Sink::Out;
            }
            Action::Remove | Action::Capture => {
                let target = if action == Action::Remove {
                    Sink::Drop
                } else {
                    self.captured.clear();
                    Sink::Capture
                };
                if has_key {
                    // The colon is not part of the value.
                    self.sink = Sink::Drop;
                    self.value_sink = Some(target);
                } else {
                    self.sink = target;
                }
                let step = match self.next {
                    Next::Index(i) => Step::Index(i),
                    _ => Step::Key(self.name.clone()),
                };
                self.held = Some(Held {
                    action,
                    prefix: std::mem::take(&mut self.pending),
                    key: has_key.then(|| self.key.clone()),
                    step,
                    depth,
                });
            }
        }
        Ok(())
    }

    fn open(&mut self, b: u8, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(StreamError::TooDeep);
        }
        self.emit(&[b], out)?;
        let quiet = self.sink != Sink::Out;
        if !quiet {
            match std::mem::replace(&mut self.next, Next::Root) {
                Next::Root => {}
                Next::Key => {
                    let mut key = self.spare.pop().unwrap_or_default();
                    key.clear();
                    key.push_str(&self.name);
                    self.path.push(Step::Key(key));
                }
                Next::Index(i) => self.path.push(Step::Index(i)),
            }
        }
        self.stack.push(Frame {
            is_object: b == b'{',
            seen: 0,
            written: 0,
            quiet,
        });
        self.expect = if b == b'{' {
            Expect::KeyOrEnd
        } else {
            Expect::ValueOrEnd
        };
        Ok(())
    }

    fn close(&mut self, b: u8, out: &mut Vec<u8>) -> Result<(), StreamError> {
        // Separators after the last kept member go: `[1, 2]` without the 2
        // is `[1]`; whitespace before the bracket stays.
        let pending = std::mem::take(&mut self.pending);
        out.extend(pending.iter().filter(|b| **b != b','));
        self.emit(&[b], out)?;
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        if !frame.quiet && !self.stack.is_empty() {
            self.pop_step();
        }
        self.value_done(out)
    }

    /// A value ended: finish a dropped or captured one, and move on.
    fn value_done(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        self.expect = if self.stack.is_empty() {
            Expect::Done
        } else {
            Expect::CommaOrEnd
        };
        let ends_held = self
            .held
            .as_ref()
            .is_some_and(|h| h.depth == self.stack.len());
        if !ends_held {
            return Ok(());
        }
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        self.sink = Sink::Out;
        if held.action == Action::Remove {
            return Ok(());
        }
        // Written in place, then taken back if the plan leaves it out.
        let mark = out.len();
        let first = self.stack.last().is_none_or(|top| top.written == 0);
        if first {
            out.extend(held.prefix.iter().filter(|b| **b != b','));
        } else {
            out.extend_from_slice(&held.prefix);
        }
        if let Some(key) = &held.key {
            out.extend_from_slice(key);
            out.push(b':');
        }
        let value = std::mem::take(&mut self.captured);
        self.path.push(held.step);
        let decided = self.plan.captured(&self.path, &value, out);
        self.pop_step();
        self.captured = value;
        self.captured.clear();
        match decided.map_err(StreamError::Plan)? {
            Captured::Remove => out.truncate(mark),
            Captured::Written => {
                if let Some(top) = self.stack.last_mut() {
                    top.written += 1;
                }
            }
        }
        Ok(())
    }

    fn pop_step(&mut self) {
        if let Some(Step::Key(key)) = self.path.pop() {
            self.spare.push(key);
        }
    }

    /// Makes this transformer ready for another body, keeping its buffers.
    pub fn reset(&mut self) {
        self.stack.clear();
        while !self.path.is_empty() {
            self.pop_step();
        }
        self.expect = Expect::Value;
        self.next = Next::Root;
        self.key.clear();
        self.in_key = false;
        self.pending.clear();
        self.sink = Sink::Out;
        self.value_sink = None;
        self.held = None;
        self.captured.clear();
        self.in_string = false;
        self.in_bare = false;
        self.bare.clear();
        self.escaped = false;
        self.hex_left = 0;
        self.offset = 0;
        self.failed = None;
    }

    /// Scans string bytes from `i`: the end of the run that belongs to the
    /// string (exclusive), and whether the closing quote was in it.
    /// Escapes are checked as they pass, across chunks.
    fn scan_string(&mut self, chunk: &[u8], mut i: usize) -> Result<(usize, bool), StreamError> {
        loop {
            while self.escaped {
                let Some(&b) = chunk.get(i) else {
                    return Ok((i, false));
                };
                self.escape_byte(b).map_err(|()| self.malformed(i))?;
                i += 1;
            }
            let rest = chunk.get(i..).unwrap_or_default();
            let Some(at) = memchr2(b'"', b'\\', rest) else {
                return Ok((chunk.len(), false));
            };
            i += at + 1;
            if rest[at] == b'"' {
                return Ok((i, true));
            }
            self.escaped = true;
        }
    }

    fn read_key(
        &mut self,
        chunk: &[u8],
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, StreamError> {
        let (end, closed) = self.scan_string(chunk, i)?;
        self.key.extend_from_slice(&chunk[i..end]);
        if self.key.len() > 4096 {
            return Err(self.malformed(end));
        }
        if !closed {
            return Ok(end);
        }
        self.in_key = false;
        self.expect = Expect::Colon;
        if self.quiet() {
            let key = std::mem::take(&mut self.key);
            self.emit(&key, out)?;
            self.key = key;
            return Ok(end);
        }
        // The name as a server reads it: escapes decoded.
        let raw = &self.key[1..self.key.len() - 1];
        self.name.clear();
        if raw.contains(&b'\\') {
            let Ok(name) = serde_json::from_slice::<String>(&self.key) else {
                return Err(self.malformed(end));
            };
            self.name = name;
        } else {
            let Ok(name) = std::str::from_utf8(raw) else {
                return Err(self.malformed(end));
            };
            self.name.push_str(name);
        }
        if let Some(top) = self.stack.last_mut() {
            top.seen += 1;
        }
        let action = self.plan.member(&self.path, &self.name);
        self.next = Next::Key;
        self.decided(action, true, out)?;
        Ok(end)
    }

    fn read_string(
        &mut self,
        chunk: &[u8],
        i: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, StreamError> {
        let (end, closed) = self.scan_string(chunk, i)?;
        self.emit(&chunk[i..end], out)?;
        if closed {
            self.in_string = false;
            self.value_done(out)?;
        }
        Ok(end)
    }

    /// One byte of an escape sequence after a backslash: one of `"\/bfnrt`, or
    /// `u` and four hex digits. Anything else is not JSON (a lenient client
    /// parser could read the string's end differently from here).
    fn escape_byte(&mut self, b: u8) -> Result<(), ()> {
        if self.hex_left > 0 {
            if !b.is_ascii_hexdigit() {
                return Err(());
            }
            self.hex_left -= 1;
            self.escaped = self.hex_left > 0;
            return Ok(());
        }
        match b {
            b'u' => self.hex_left = 4,
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.escaped = false,
            _ => return Err(()),
        }
        Ok(())
    }

    /// A number or literal ended (at a delimiter, or the body's end).
    fn end_bare(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        self.in_bare = false;
        if !is_literal_or_number(&self.bare) {
            return Err(StreamError::Malformed(self.offset));
        }
        self.value_done(out)
    }
}

/// `true`, `false`, `null`, or a JSON number as RFC 8259 writes it.
fn is_literal_or_number(s: &[u8]) -> bool {
    if matches!(s, b"true" | b"false" | b"null") {
        return true;
    }
    let digits = |s: &[u8], i: usize| {
        s.get(i..)
            .map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count())
    };
    let mut i = usize::from(s.first() == Some(&b'-'));
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(s, i),
        _ => return false,
    }
    if s.get(i) == Some(&b'.') {
        let n = digits(s, i + 1);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(s, i);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Drops members named in `remove` at any depth; captures the elements
    /// of a top-level `entry` array, leaves out those with `"drop": true`
    /// and transforms the rest with the same plan.
    struct TestPlan {
        remove: &'static [&'static str],
    }

    impl Plan for TestPlan {
        fn member(&mut self, _path: &[Step], key: &str) -> Action {
            if self.remove.contains(&key) {
                Action::Remove
            } else {
                Action::Keep
            }
        }

        fn element(&mut self, path: &[Step], _index: usize) -> Action {
            if path == [Step::Key("entry".into())] {
                Action::Capture
            } else {
                Action::Keep
            }
        }

        fn captured(
            &mut self,
            _path: &[Step],
            value: &[u8],
            out: &mut Vec<u8>,
        ) -> Result<Captured, String> {
            let v: Value = serde_json::from_slice(value).map_err(|e| e.to_string())?;
            // Something written before a removal is taken back.
            out.extend_from_slice(b"garbage");
            if v.get("drop") == Some(&Value::Bool(true)) {
                return Ok(Captured::Remove);
            }
            out.truncate(out.len() - 7);
            let mut inner = Transformer::new(
                TestPlan {
                    remove: self.remove,
                },
                usize::MAX,
            );
            inner.feed(value, true, out).map_err(|e| e.to_string())?;
            Ok(Captured::Written)
        }
    }

    const REMOVE: &[&str] = &["telecom", "address"];

    fn run(
        input: &[u8],
        remove: &'static [&'static str],
        cuts: &[usize],
    ) -> Result<Vec<u8>, StreamError> {
        let mut t = Transformer::new(TestPlan { remove }, 1 << 20);
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let cut = cut.clamp(start, input.len());
            t.feed(&input[start..cut], cut == input.len(), &mut out)?;
            start = cut;
        }
        Ok(out)
    }

    /// What the transformation means, on parsed values.
    fn oracle(v: &Value, remove: &[&str], top: bool) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !remove.contains(&k.as_str()))
                    .map(|(k, v)| {
                        let v = match (top, k.as_str(), v) {
                            (true, "entry", Value::Array(items)) => Value::Array(
                                items
                                    .iter()
                                    .filter(|e| e.get("drop") != Some(&Value::Bool(true)))
                                    .map(|e| oracle(e, remove, true))
                                    .collect(),
                            ),
                            _ => oracle(v, remove, false),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| oracle(i, remove, false)).collect())
            }
            other => other.clone(),
        }
    }

    #[test]
    fn members_are_dropped_and_commas_repaired() {
        let cases: &[(&str, &str)] = &[
            (r#"{"a":1,"telecom":2,"b":3}"#, r#"{"a":1,"b":3}"#),
            (r#"{"telecom":2,"b":3}"#, r#"{"b":3}"#),
            (r#"{"a":1,"telecom":2}"#, r#"{"a":1}"#),
            (r#"{"telecom":{"x":[1,{"y":"}"}]}}"#, r#"{}"#),
            // Whitespace after a dropped value stays where it was.
            (
                r#"{ "a" : 1 , "telecom" : [ ] , "b" : 3 }"#,
                r#"{ "a" : 1  , "b" : 3 }"#,
            ),
            (
                r#"{"tele\u0063om":"x","b":"\"telecom\""}"#,
                r#"{"b":"\"telecom\""}"#,
            ),
            (
                r#"[1, 2.5e-3, true, null, "s\\"]"#,
                r#"[1, 2.5e-3, true, null, "s\\"]"#,
            ),
            (
                r#"{"entry":[{"drop":true},{"a":1,"telecom":1},{"drop":true}]}"#,
                r#"{"entry":[{"a":1}]}"#,
            ),
            (
                r#"{"entry":[{"drop":true}],"n":-0}"#,
                r#"{"entry":[],"n":-0}"#,
            ),
            (r#"  7  "#, r#"  7  "#),
            (r#""x""#, r#""x""#),
        ];
        for (input, want) in cases {
            let got = run(input.as_bytes(), REMOVE, &[]).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), *want, "{input}");
        }
    }

    #[test]
    fn anything_that_is_not_one_json_value_fails() {
        for bad in [
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a" 1}"#,
            r#"{"a":tru}"#,
            r#"{"a":01}"#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"["x"#,
            r#"{"a":-}"#,
            r#"{"a":1.}"#,
            r#"{1:2}"#,
            r#"[}"#,
            r#"{]"#,
            r#""#,
            r#"{"a\x":1}"#,
            r#"{"a":"\q"}"#,
            r#"{"a":"\u12"}"#,
            r#"["\u00zz"]"#,
            // Inside a dropped member too: the body is one JSON value or
            // nothing.
            r#"{"telecom":{"\q":1}}"#,
            r#"{"telecom":"\u12"}"#,
            r#"{"a":nul"#,
        ] {
            assert!(run(bad.as_bytes(), REMOVE, &[]).is_err(), "{bad}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(run(deep.as_bytes(), REMOVE, &[]), Err(StreamError::TooDeep));
        // An error is final.
        let mut t = Transformer::new(TestPlan { remove: REMOVE }, 1 << 20);
        let mut out = Vec::new();
        assert!(t.feed(b"{,", false, &mut out).is_err());
        assert!(t.feed(b"}", true, &mut out).is_err());
    }

    #[test]
    fn escapes_are_followed_across_any_split() {
        let body = br#"{"a":"\u00e9\"\\\/\b\f\n\r\t","tele\u0063om":"\u0041","b":["\"]"]}"#;
        let want = run(body, REMOVE, &[]).unwrap();
        assert_eq!(
            String::from_utf8(want.clone()).unwrap(),
            r#"{"a":"\u00e9\"\\\/\b\f\n\r\t","b":["\"]"]}"#
        );
        for at in 0..=body.len() {
            assert_eq!(run(body, REMOVE, &[at]).unwrap(), want, "split at {at}");
        }
        let every: Vec<usize> = (1..body.len()).collect();
        assert_eq!(run(body, REMOVE, &every).unwrap(), want);
    }

    #[test]
    fn a_reset_transformer_answers_as_a_new_one() {
        let mut t = Transformer::new(TestPlan { remove: REMOVE }, 1 << 20);
        let body = br#"{"entry":[{"telecom":1,"a":{"b":[1]}}],"x":{"y":{"z":2}}}"#;
        let mut first = Vec::new();
        t.feed(body, true, &mut first).unwrap();
        // Even after a failure mid-way.
        t.reset();
        let mut broken = Vec::new();
        assert!(t.feed(br#"{"a":{"b":["#, true, &mut broken).is_err());
        t.reset();
        let mut again = Vec::new();
        t.feed(body, true, &mut again).unwrap();
        assert_eq!(first, again);
        assert_eq!(first, run(body, REMOVE, &[]).unwrap());
    }

    #[test]
    fn a_captured_value_over_the_limit_fails() {
        let mut t = Transformer::new(TestPlan { remove: REMOVE }, 10);
        let mut out = Vec::new();
        let r = t.feed(br#"{"entry":[{"a":"0123456789"}]}"#, true, &mut out);
        assert_eq!(r, Err(StreamError::TooLarge(10)));
    }

    fn values() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec![
            "a", "b", "telecom", "address", "entry", "drop", "é\"k",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-z\\\\\"é\u{1F600}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn streaming_matches_the_oracle_at_any_split(v in values(), pretty in any::<bool>(), escaped in any::<bool>(), cut in any::<prop::sample::Index>()) {
            let mut text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
            if escaped {
                text = text.replace("\"telecom\"", "\"tele\\u0063om\"");
            }
            let input = text.as_bytes();
            let whole = run(input, REMOVE, &[]).unwrap();
            // Valid JSON, meaning what the oracle says.
            let parsed: Value = serde_json::from_slice(&whole).unwrap();
            let read: Value = serde_json::from_slice(input).unwrap();
            prop_assert_eq!(&parsed, &oracle(&read, REMOVE, true));
            // The same at a random split, and at every split of small inputs.
            let at = cut.index(input.len() + 1);
            prop_assert_eq!(&run(input, REMOVE, &[at]).unwrap(), &whole);
            if input.len() < 200 {
                for at in 0..=input.len() {
                    prop_assert_eq!(&run(input, REMOVE, &[at]).unwrap(), &whole);
                }
                let bytes: Vec<usize> = (1..input.len()).collect();
                prop_assert_eq!(&run(input, REMOVE, &bytes).unwrap(), &whole, "byte by byte");
            }
            // Idempotent.
            prop_assert_eq!(&run(&whole, REMOVE, &[]).unwrap(), &whole);
            // Nothing selected: byte-identical.
            prop_assert_eq!(run(input, &[], &[]).map(|o| o == input || v.get("entry").is_some()), Ok(true));
        }
    }
}
