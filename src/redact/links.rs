//! Links: absolute URLs that point at the upstream (`fullUrl`, paging
//! links, references, `Location`) rewritten to the public base the client
//! used, so every follow-up request comes back through phigate and is
//! decided again.
//!
//! It works on JSON already validated: a string that *starts* with an
//! upstream base (followed by `/`, `?`, `#` or the string's end) is
//! rewritten; a base in the middle of text, or behind an escaped quote, is
//! not a link and is left alone.

use memchr::memmem;

/// Upstream bases and the public base they become.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// `"` + each upstream base (no trailing slash).
    from: Vec<Vec<u8>>,
    to: Vec<u8>,
}

impl Links {
    /// `upstream`: the bases the upstream writes (`http://10.0.0.5:8080/fhir`);
    /// `public`: what the client used (`https://gw.example/fhir`).
    pub fn new(upstream: &[String], public: &str) -> Links {
        let public = public.trim_end_matches('/');
        let mut from: Vec<Vec<u8>> = upstream
            .iter()
            .map(|b| b.trim_end_matches('/'))
            .filter(|b| !b.is_empty() && *b != public)
            .map(|b| {
                let mut v = vec![b'"'];
                v.extend_from_slice(b.as_bytes());
                v
            })
            .collect();
        // Longest first: `…/fhir/r4` before `…/fhir`.
        from.sort_by_key(|f| std::cmp::Reverse(f.len()));
        from.dedup();
        Links {
            from,
            to: public.as_bytes().to_vec(),
        }
    }

    /// Nothing to rewrite.
    pub fn is_empty(&self) -> bool {
        self.from.is_empty()
    }

    /// Rewrites links in the JSON text `buf[start..]`.
    pub fn rewrite_json(&self, buf: &mut Vec<u8>, start: usize) {
        if self.from.is_empty() || start >= buf.len() {
            return;
        }
        // Fast path: most records carry no absolute upstream URL at all.
        let region = &buf[start..];
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for pattern in &self.from {
            for at in memmem::find_iter(region, pattern) {
                let after = region.get(at + pattern.len()).copied();
                let boundary = matches!(after, Some(b'/' | b'?' | b'#' | b'"'));
                let escaped = at > 0 && region[at - 1] == b'\\';
                let overlapping = hits
                    .iter()
                    .any(|(h, len)| at < h + len && *h < at + pattern.len());
                if boundary && !escaped && !overlapping {
                    hits.push((at, pattern.len()));
                }
            }
        }
        if hits.is_empty() {
            return;
        }
        hits.sort_unstable();
        let mut out = Vec::with_capacity(region.len());
        let mut last = 0;
        for (at, len) in hits {
            out.extend_from_slice(&region[last..at]);
            out.push(b'"');
            out.extend_from_slice(&self.to);
            last = at + len;
        }
        out.extend_from_slice(&region[last..]);
        buf.truncate(start);
        buf.extend_from_slice(&out);
    }

    /// A header value (`Location`, `Content-Location`), rewritten if it
    /// starts with an upstream base.
    pub fn rewrite_url(&self, url: &str) -> Option<String> {
        for pattern in &self.from {
            let base = std::str::from_utf8(&pattern[1..]).ok()?;
            if let Some(rest) = url.strip_prefix(base) {
                if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
                    return Some(format!("{}{rest}", String::from_utf8_lossy(&self.to)));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strings_that_start_with_an_upstream_base_are_rewritten() {
        let l = Links::new(
            &[
                "http://10.0.0.5:8080/fhir".into(),
                "http://10.0.0.5:8080/fhir/r4/".into(),
            ],
            "https://gw.example/fhir",
        );
        let mut buf = br#"{"fullUrl":"http://10.0.0.5:8080/fhir/Patient/1","u":"http://10.0.0.5:8080/fhir","x":"see http://10.0.0.5:8080/fhir/Patient/1","y":"http://10.0.0.5:8080/fhirx/1","z":"\"http://10.0.0.5:8080/fhir/Patient/1","r":"http://10.0.0.5:8080/fhir/r4/Patient/2"}"#.to_vec();
        l.rewrite_json(&mut buf, 0);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["fullUrl"], "https://gw.example/fhir/Patient/1");
        assert_eq!(v["u"], "https://gw.example/fhir");
        assert_eq!(v["x"], "see http://10.0.0.5:8080/fhir/Patient/1");
        assert_eq!(v["y"], "http://10.0.0.5:8080/fhirx/1");
        assert_eq!(v["z"], "\"http://10.0.0.5:8080/fhir/Patient/1");
        assert_eq!(v["r"], "https://gw.example/fhir/Patient/2");
        assert_eq!(
            l.rewrite_url("http://10.0.0.5:8080/fhir/Patient/1/_history/2")
                .as_deref(),
            Some("https://gw.example/fhir/Patient/1/_history/2")
        );
        assert_eq!(l.rewrite_url("http://elsewhere/fhir/Patient/1"), None);
        // Only from `start`.
        let mut buf = br#""http://10.0.0.5:8080/fhir/a" "http://10.0.0.5:8080/fhir/b""#.to_vec();
        l.rewrite_json(&mut buf, 10);
        assert!(buf.starts_with(br#""http://10.0.0.5"#));
        assert!(buf.ends_with(br#""https://gw.example/fhir/b""#));
    }
}
