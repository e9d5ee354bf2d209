//! May this principal do this now? Request-phase authorization with Cedar.
//!
//! The request is mapped to what it asks of whom ([`mapping`]), the
//! principal's and patient's relationships are loaded ([`entities`]), and
//! the policies in force ([`store`]) decide ([`engine`]). Pure cores; the
//! proxy only calls them.

pub mod cli;
pub mod config;
pub mod engine;
pub mod entities;
pub mod eval;
pub mod index;
pub mod mapping;
pub mod policy_tests;
pub mod routed;
pub mod runtime;
pub mod source;
pub mod store;

pub use config::{AuthorizationConfig, EnforcementMode, RouteAuthzConfig};
pub use engine::{Decision, DenyReason, RequestFacts, StepUpNeed};
pub use runtime::{Authorization, Decided, Loaded, Reloaded, RouteAuthz, Snapshot, Verdict};
