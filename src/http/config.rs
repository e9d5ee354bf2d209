//! Request hygiene's configuration: limits, deadlines, headers to strip,
//! trusted proxies. `config/` composes it into `phigate.toml`.

use crate::units::{ByteSize, HumanDuration};
use ipnet::IpNet;
use serde::Deserialize;

/// Request hygiene, applied before routing to every request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HygieneConfig {
    /// Longest accepted request target (path and query), in bytes. Default 8192.
    pub max_uri_length: usize,
    /// Longest accepted path, in bytes. Default 2048.
    pub max_path_length: usize,
    /// Total size of all request header names and values. Default `"32KiB"`.
    /// Larger requests get 431.
    pub max_header_bytes: ByteSize,
    /// Number of request header lines. Default 100. More get 431.
    pub max_headers: usize,
    /// Header names the proxy owns and always strips from client requests
    /// (case-insensitive), in addition to the built-in list
    /// (`X-Forwarded-User`, `X-Forwarded-Email`, `X-Remote-User`, ...).
    pub strip_headers: Vec<String>,
    /// Header name prefixes always stripped from client requests, in addition
    /// to `X-Phigate-` and `X-Auth-`.
    pub strip_header_prefixes: Vec<String>,
    /// Peers (CIDRs) whose `X-Forwarded-For`/`-Proto`/`-Host` are believed.
    /// Default: none, so client-supplied forwarding headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a client may take between body reads before the request is
    /// cut with `408` (slow-body protection). Default `"30s"`.
    pub client_body_timeout: HumanDuration,
    /// How long a new connection may take to send the first byte of its
    /// first request (after the TLS handshake). Default `"10s"`.
    pub first_request_timeout: HumanDuration,
    /// How long a request head may take from its first byte to its last,
    /// however slowly it trickles in. Default `"10s"`.
    pub request_head_timeout: HumanDuration,
    /// How long an idle keep-alive connection (HTTP/1.1 between requests,
    /// HTTP/2 with no streams) stays open. Whole seconds. Default `"60s"`.
    pub keepalive_timeout: HumanDuration,
    /// Requests served on one HTTP/1.1 connection before it is closed.
    /// Default 1000.
    pub max_requests_per_connection: u32,
    /// Forward request headers whose names contain `_`. Default `false`:
    /// they are dropped (as nginx does), because CGI-style servers read
    /// `X_Remote_User` as `X-Remote-User`. Even when allowed, underscored
    /// forms of identity and forwarding headers are stripped.
    pub allow_underscore_headers: bool,
}

impl Default for HygieneConfig {
    fn default() -> Self {
        Self {
            max_uri_length: 8192,
            max_path_length: 2048,
            max_header_bytes: ByteSize::kib(32),
            max_headers: 100,
            strip_headers: Vec::new(),
            strip_header_prefixes: Vec::new(),
            trusted_proxies: Vec::new(),
            client_body_timeout: HumanDuration::secs(30),
            first_request_timeout: HumanDuration::secs(10),
            request_head_timeout: HumanDuration::secs(10),
            keepalive_timeout: HumanDuration::secs(60),
            max_requests_per_connection: 1000,
            allow_underscore_headers: false,
        }
    }
}

impl HygieneConfig {
    /// Problems with the hygiene settings, as (dotted key, message).
    pub fn check(&self, out: &mut Vec<(String, String)>) {
        if self.max_headers == 0 || self.max_header_bytes.bytes() < 1024 {
            out.push((
                "hygiene.max_header_bytes".into(),
                "header limits are too small to serve real clients (at least 1KiB and 1 header)"
                    .into(),
            ));
        }
        for (i, h) in self.strip_headers.iter().enumerate() {
            if ::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                out.push((
                    format!("hygiene.strip_headers[{i}]"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
        }
    }
}
