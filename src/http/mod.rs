//! Request hygiene: is this request well-formed and unambiguous?
//!
//! Every request passes through here before routing. The result is the one
//! normalized view of the request that router, policy mapper and upstream all
//! see, so no two stages can disagree about which resource is asked for, where
//! the body ends, who the user or client is, or which request this is.
//!
//! Everything here is pure: no I/O, no async. Typical order for a request:
//! [`check_framing_for_version`], [`normalize_path`], [`RequestId::from_client`],
//! [`forwarded_headers`] (reads the client's forwarding headers), then
//! [`headers_to_strip`] (removes them, with identity and hop-by-hop headers)
//! before the proxy adds its own.

pub mod config;
pub mod cookies;
mod form;
mod forwarded;
mod framing;
mod head;
mod headers;
mod path;
mod request_id;

pub use form::{decode_component, FormError};
pub use forwarded::{forwarded_headers, is_valid_host, ForwardedFor, TrustedProxies};
pub use framing::{
    check_framing, check_framing_for_version, framing_headers_from_raw, request_target_from_raw,
    FramingRejection, MAX_CONTENT_LENGTH_DIGITS,
};
pub use head::{HeadTracker, RawHead, MAX_FIELDS};
pub use headers::{
    headers_to_strip, hop_by_hop_headers, is_websocket_upgrade, IdentityHeaderRules,
    FORWARDING_HEADERS, HOP_BY_HOP_HEADERS, ROUTING_OVERRIDE_HEADERS,
};
pub use path::{normalize_path, NormalizedPath, PathPolicy, PathRejection, DEFAULT_MAX_PATH_LEN};
pub use request_id::{RequestId, MAX_REQUEST_ID_LEN};
