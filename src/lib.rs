//! phigate: a reverse proxy that brokers every access to protected health
//! information. Each stage of a request's journey is a module with a pure
//! core; `proxy` is the pipeline that calls them in order, on hyper.
#![forbid(unsafe_code)]

pub mod audit;
pub mod authn;
pub mod authz;
pub mod config;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod redact;
pub mod secret;
pub mod server;
pub mod units;
